//! The standalone server's durable queue, kept in the Store (table `queue`, one partition per
//! queue name) so it survives restarts and is visible with any table viewer. Semantics follow
//! Azure queues under the Functions host: at-least-once, visibility timeout, dequeue count,
//! `<queue>-poison` after `MAX_DEQUEUE` failed tries.

use crate::store::{tables, BatchOp, ETag, Entity, SharedStore, StoreError, StoreResult};
use chrono::Utc;

pub const MAX_DEQUEUE: u32 = 5;

#[derive(Clone)]
pub struct DurableQueue {
    store: SharedStore,
    /// How long a claimed message stays invisible; a worker that dies lets it come back after this.
    pub visibility_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Claimed {
    pub queue: String,
    pub row_key: String,
    pub body: String,
    pub dequeue_count: u32,
    etag: ETag,
}

pub fn poison_name(queue: &str) -> String {
    format!("{queue}-poison")
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl DurableQueue {
    pub fn new(store: SharedStore) -> Self {
        DurableQueue {
            store,
            visibility_ms: 5 * 60 * 1000,
        }
    }

    pub fn with_visibility_ms(mut self, ms: i64) -> Self {
        self.visibility_ms = ms;
        self
    }

    pub async fn enqueue(&self, queue: &str, body: &str) -> StoreResult<String> {
        // Time-ordered keys give FIFO-ish order within a partition scan.
        let rk = format!("{:013}-{}", now_ms(), uuid::Uuid::new_v4().simple());
        let e = Entity::new(queue, rk.clone())
            .with("body", body)
            .with("dequeue_count", 0i64)
            .with("visible_at", 0i64)
            .with("inserted_at", Utc::now().to_rfc3339());
        self.store.insert(tables::QUEUE, &e).await?;
        Ok(rk)
    }

    /// Claim the oldest visible message, if any. Safe with several workers: the claim is a
    /// replace-if-match, so exactly one worker wins each message.
    pub async fn receive(&self, queue: &str) -> StoreResult<Option<Claimed>> {
        let mut cont: Option<String> = None;
        loop {
            let page = self
                .store
                .query(tables::QUEUE, queue, cont.as_deref(), 200)
                .await?;
            let now = now_ms();
            for e in page.entities {
                if e.int("visible_at").unwrap_or(0) > now {
                    continue;
                }
                let Some(etag) = e.etag.clone() else { continue };
                let count = e.int("dequeue_count").unwrap_or(0) as u32 + 1;
                let mut claimed = e.clone();
                claimed.set("dequeue_count", count as i64);
                claimed.set("visible_at", now + self.visibility_ms);
                match self.store.replace(tables::QUEUE, &claimed, &etag).await {
                    Ok(new_tag) => {
                        return Ok(Some(Claimed {
                            queue: queue.to_string(),
                            body: e.str("body").unwrap_or_default().to_string(),
                            row_key: e.row_key,
                            dequeue_count: count,
                            etag: new_tag,
                        }))
                    }
                    Err(StoreError::PreconditionFailed | StoreError::NotFound) => continue,
                    Err(other) => return Err(other),
                }
            }
            match page.next {
                Some(n) => cont = Some(n),
                None => return Ok(None),
            }
        }
    }

    /// Done: remove the message, but only if our claim is still the current one. A worker whose
    /// claim expired must not delete the message another worker now holds.
    pub async fn complete(&self, c: &Claimed) -> StoreResult<()> {
        match self
            .store
            .delete(tables::QUEUE, &c.queue, &c.row_key, Some(&c.etag))
            .await
        {
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(StoreError::PreconditionFailed) => {
                tracing::warn!(queue = %c.queue, "claim expired before completion; another worker holds the message");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Failed: make it visible again after a backoff, or move it to the poison queue.
    pub async fn fail(&self, c: &Claimed, error: &str) -> StoreResult<bool> {
        if c.dequeue_count >= MAX_DEQUEUE {
            self.poison(c, error).await?;
            return Ok(true);
        }
        let backoff_ms =
            1000i64 * 2i64.pow(c.dequeue_count.min(8)) + rand::random::<u64>() as i64 % 500;
        let e = Entity::new(c.queue.clone(), c.row_key.clone())
            .with("body", c.body.as_str())
            .with("dequeue_count", c.dequeue_count as i64)
            .with("visible_at", now_ms() + backoff_ms)
            .with("last_error", truncate(error, 2000));
        match self
            .store
            .batch(
                tables::QUEUE,
                &c.queue,
                vec![BatchOp::Replace(e, c.etag.clone())],
            )
            .await
        {
            Ok(()) | Err(StoreError::PreconditionFailed | StoreError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Move to `<queue>-poison` now, with the reason: for failures no retry can fix.
    pub async fn poison(&self, c: &Claimed, error: &str) -> StoreResult<()> {
        // Same row key in the poison partition: a crash between the two steps re-runs the
        // upsert harmlessly instead of duplicating the message.
        let poisoned = Entity::new(poison_name(&c.queue), c.row_key.clone())
            .with("body", c.body.as_str())
            .with("dequeue_count", c.dequeue_count as i64)
            .with("last_error", truncate(error, 2000))
            .with("poisoned_at", Utc::now().to_rfc3339());
        self.store.upsert(tables::QUEUE, &poisoned).await?;
        self.complete(c).await
    }

    /// Messages waiting (visible or not), for status pages and tests.
    pub async fn len(&self, queue: &str) -> StoreResult<usize> {
        let mut n = 0;
        let mut cont: Option<String> = None;
        loop {
            let page = self
                .store
                .query(tables::QUEUE, queue, cont.as_deref(), 1000)
                .await?;
            n += page.entities.len();
            match page.next {
                Some(c) => cont = Some(c),
                None => return Ok(n),
            }
        }
    }
}

/// A stored error may quote a remote answer: bounded and scrubbed (`crate::redact`) before it is kept.
fn truncate(s: &str, max: usize) -> String {
    crate::redact::excerpt(s, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use std::sync::Arc;

    fn queue(dir: &tempfile::TempDir) -> DurableQueue {
        DurableQueue::new(Arc::new(
            SqliteStore::open(&dir.path().join("q.sqlite")).unwrap(),
        ))
    }

    #[tokio::test]
    async fn a_message_survives_reopening_and_is_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        queue(&dir).enqueue("sync-work", "{\"n\":1}").await.unwrap();
        // A new store on the same file: nothing in memory carries over.
        let q = queue(&dir);
        let c = q.receive("sync-work").await.unwrap().expect("message kept");
        assert_eq!((c.body.as_str(), c.dequeue_count), ("{\"n\":1}", 1));
        assert!(
            q.receive("sync-work").await.unwrap().is_none(),
            "claimed message is invisible"
        );
        q.complete(&c).await.unwrap();
        assert_eq!(q.len("sync-work").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_dead_worker_s_claim_expires_and_the_message_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = queue(&dir);
        q.visibility_ms = 0;
        q.enqueue("notify", "m").await.unwrap();
        let first = q.receive("notify").await.unwrap().unwrap();
        let second = q.receive("notify").await.unwrap().unwrap();
        assert_eq!(second.dequeue_count, 2);
        // The first worker's late completion must not delete the message the second one holds.
        q.complete(&first).await.unwrap();
        assert_eq!(q.len("notify").await.unwrap(), 1);
        q.complete(&second).await.unwrap();
        assert_eq!(q.len("notify").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn poison_after_five_failures() {
        let dir = tempfile::tempdir().unwrap();
        let q = queue(&dir);
        q.enqueue("notify", "bad").await.unwrap();
        for attempt in 1..=MAX_DEQUEUE {
            // Make it visible at once instead of waiting out the backoff.
            let page = q
                .store
                .query(tables::QUEUE, "notify", None, 10)
                .await
                .unwrap();
            let mut e = page.entities[0].clone();
            let tag = e.etag.clone().unwrap();
            e.set("visible_at", 0i64);
            q.store.replace(tables::QUEUE, &e, &tag).await.unwrap();
            let c = q.receive("notify").await.unwrap().unwrap();
            assert_eq!(c.dequeue_count, attempt);
            let poisoned = q.fail(&c, "boom").await.unwrap();
            assert_eq!(poisoned, attempt == MAX_DEQUEUE);
        }
        assert_eq!(q.len("notify").await.unwrap(), 0);
        assert_eq!(q.len("notify-poison").await.unwrap(), 1);
    }
}
