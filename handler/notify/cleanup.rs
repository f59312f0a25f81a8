//! Old notification rows expire (`deliveries` table): delivery outcomes and claims (partition
//! [`super::deliveries::PARTITION`]) and the pull timer's "already queued" marks
//! ([`super::sweep::PARTITION`]) after `NOTIFY_RETENTION_DAYS`; accepted webhook signatures
//! ([`super::intake::SIGNATURE_PARTITION`]) once they are older than twice the replay window, when
//! the intake refuses their timestamp anyway. Run at the start of every `NotifySweep`, bounded
//! per run so one run stays short; what is left goes next time.
//!
//! Why a retention floor of 7 days: a delivery row is what stops a redelivered queue message from
//! sending twice, and a queue message lives at most 7 days (Azure queues' default time to live;
//! the local queue gives up after 5 tries).

use crate::store::tables::DELIVERIES;
use crate::store::{BatchOp, SharedStore, StoreError, StoreResult, MAX_BATCH};

/// Rows examined per partition and run (a run that stops early resumes next time).
pub const MAX_SCANNED: usize = 50_000;
const PAGE: usize = 1000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    pub deliveries: usize,
    pub signatures: usize,
    pub sweep: usize,
    /// A partition had more rows than [`MAX_SCANNED`]: the rest is looked at next run.
    pub incomplete: bool,
}

impl Expired {
    pub fn total(&self) -> usize {
        self.deliveries + self.signatures + self.sweep
    }
}

/// Delete rows of `partition` whose `at` (Unix seconds) is before `cutoff`. A row without `at`
/// is kept (nothing says it is old). Returns (deleted, scanned everything).
async fn expire_partition(
    store: &SharedStore,
    partition: &str,
    cutoff: i64,
) -> StoreResult<(usize, bool)> {
    let mut continuation: Option<String> = None;
    let mut scanned = 0usize;
    let mut doomed = Vec::new();
    loop {
        let page = store
            .query(DELIVERIES, partition, continuation.as_deref(), PAGE)
            .await?;
        scanned += page.entities.len();
        for e in page.entities {
            if e.int("at").is_some_and(|at| at < cutoff) {
                doomed.push((e.row_key.clone(), e.etag.clone()));
            }
        }
        continuation = page.next;
        if continuation.is_none() || scanned >= MAX_SCANNED {
            break;
        }
    }
    let complete = continuation.is_none();
    let mut deleted = 0;
    for chunk in doomed.chunks(MAX_BATCH) {
        // Only rows unchanged since they were read: a row rewritten meanwhile (a claim taken
        // over, an outcome recorded) is young again.
        let ops = chunk
            .iter()
            .map(|(rk, etag)| BatchOp::Delete {
                row_key: rk.clone(),
                if_match: etag.clone(),
            })
            .collect();
        match store.batch(DELIVERIES, partition, ops).await {
            Ok(()) => deleted += chunk.len(),
            // One row of the chunk moved or went: settle them one by one.
            Err(StoreError::PreconditionFailed | StoreError::NotFound | StoreError::Conflict) => {
                for (rk, etag) in chunk {
                    match store.delete(DELIVERIES, partition, rk, etag.as_ref()).await {
                        Ok(()) => deleted += 1,
                        Err(StoreError::PreconditionFailed | StoreError::NotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok((deleted, complete))
}

/// Expire what is older than `retention_secs` (deliveries, sweep marks) and signatures older
/// than twice `replay_window_secs`, as of `now`.
pub async fn expire(
    store: &SharedStore,
    now: i64,
    retention_secs: i64,
    replay_window_secs: i64,
) -> StoreResult<Expired> {
    let (deliveries, a) =
        expire_partition(store, super::deliveries::PARTITION, now - retention_secs).await?;
    let (sweep, b) = expire_partition(store, super::sweep::PARTITION, now - retention_secs).await?;
    let (signatures, c) = expire_partition(
        store,
        super::intake::SIGNATURE_PARTITION,
        now - 2 * replay_window_secs - 60,
    )
    .await?;
    let out = Expired {
        deliveries,
        signatures,
        sweep,
        incomplete: !(a && b && c),
    };
    if out.total() > 0 {
        tracing::info!(
            deliveries = out.deliveries,
            signatures = out.signatures,
            sweep = out.sweep,
            incomplete = out.incomplete,
            "expired old notification rows"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::Entity;
    use std::sync::Arc;

    async fn rows(store: &SharedStore, pk: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = store
                .query(DELIVERIES, pk, next.as_deref(), 500)
                .await
                .unwrap();
            out.extend(page.entities.into_iter().map(|e| e.row_key));
            next = page.next;
            if next.is_none() {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn old_rows_go_young_rows_and_other_partitions_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
        store.ensure_tables().await.unwrap();
        let now = 1_800_000_000i64;
        let day = 86_400;
        let put = |pk: &'static str, rk: String, at: Option<i64>| {
            let store = store.clone();
            async move {
                let mut e = Entity::new(pk, rk).with("state", "sent");
                if let Some(at) = at {
                    e = e.with("at", at);
                }
                store.upsert(DELIVERIES, &e).await.unwrap();
            }
        };
        // 250 old deliveries (three batches), 5 young ones, one without a date.
        for i in 0..250 {
            put("notify", format!("old-{i:03}"), Some(now - 31 * day)).await;
        }
        for i in 0..5 {
            put("notify", format!("young-{i}"), Some(now - 29 * day)).await;
        }
        put("notify", "undated".into(), None).await;
        put("sweep", "old-mark".into(), Some(now - 40 * day)).await;
        put("sweep", "young-mark".into(), Some(now - day)).await;
        // Signatures: older than twice the 300 s window (+60 s) go; a recent one stays.
        put("webhook-signature", "old-sig".into(), Some(now - 661)).await;
        put("webhook-signature", "recent-sig".into(), Some(now - 500)).await;
        // Another feature's partition of the same table is not touched, however old.
        put("bot-reply", "ancient".into(), Some(now - 400 * day)).await;

        let expired = expire(&store, now, 30 * day, 300).await.unwrap();
        assert_eq!(
            expired,
            Expired {
                deliveries: 250,
                signatures: 1,
                sweep: 1,
                incomplete: false
            }
        );
        let mut left = rows(&store, "notify").await;
        left.sort();
        assert_eq!(
            left,
            ["undated", "young-0", "young-1", "young-2", "young-3", "young-4"]
        );
        assert_eq!(rows(&store, "sweep").await, ["young-mark"]);
        assert_eq!(rows(&store, "webhook-signature").await, ["recent-sig"]);
        assert_eq!(rows(&store, "bot-reply").await, ["ancient"]);
        // Nothing left to do: a second run deletes nothing.
        assert_eq!(expire(&store, now, 30 * day, 300).await.unwrap().total(), 0);
    }
}
