//! At most one delivery per (notification, target), in the `deliveries` table (partition
//! [`PARTITION`]): a worker claims the key before sending (insert; a second copy of the message
//! finds the claim), records the outcome after, and releases the claim when the send failed in
//! a way worth retrying. A claim older than [`CLAIM_LEASE`] belongs to a worker that died and is
//! taken over; only a crash between the send and the record can still repeat a message.

use crate::store::tables::DELIVERIES;
use crate::store::{key_escape, Entity, SharedStore, StoreError, StoreResult};

pub const PARTITION: &str = "notify";
/// Longer than one delivery can take (rate-limit wait + retries).
pub const CLAIM_LEASE_SECS: i64 = 600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours: send, then [`record`] or [`release`].
    Acquired(crate::store::ETag),
    /// Settled before with this state: do nothing.
    Done(String),
    /// Another worker is sending it now.
    Busy,
}

pub fn key(notification: &str, target: &str) -> String {
    key_escape(&format!("{notification}|{target}"))
}

pub async fn claim(store: &SharedStore, key: &str) -> StoreResult<Claim> {
    let now = chrono::Utc::now().timestamp();
    let row = Entity::new(PARTITION, key)
        .with("state", "sending")
        .with("at", now);
    match store.insert(DELIVERIES, &row).await {
        Ok(etag) => return Ok(Claim::Acquired(etag)),
        Err(StoreError::Conflict) => {}
        Err(e) => return Err(e),
    }
    let Some(existing) = store.get(DELIVERIES, PARTITION, key).await? else {
        // Released in between: the next try claims it.
        return Ok(Claim::Busy);
    };
    let state = existing.str("state").unwrap_or_default().to_string();
    if state != "sending" {
        return Ok(Claim::Done(state));
    }
    if now - existing.int("at").unwrap_or(0) < CLAIM_LEASE_SECS {
        return Ok(Claim::Busy);
    }
    let Some(etag) = existing.etag.clone() else {
        return Ok(Claim::Busy);
    };
    match store.replace(DELIVERIES, &row, &etag).await {
        Ok(etag) => Ok(Claim::Acquired(etag)),
        Err(StoreError::PreconditionFailed | StoreError::NotFound) => Ok(Claim::Busy),
        Err(e) => Err(e),
    }
}

/// The outcome of a claimed delivery (`sent`, `refused`, `failed`, `pending-install`…).
pub async fn record(store: &SharedStore, key: &str, state: &str, detail: &str) -> StoreResult<()> {
    let row = Entity::new(PARTITION, key)
        .with("state", state)
        .with("detail", detail.chars().take(1000).collect::<String>())
        .with("at", chrono::Utc::now().timestamp());
    store.upsert(DELIVERIES, &row).await.map(|_| ())
}

/// Give the claim back so a retry may send.
pub async fn release(store: &SharedStore, key: &str, etag: &crate::store::ETag) {
    match store.delete(DELIVERIES, PARTITION, key, Some(etag)).await {
        Ok(()) | Err(StoreError::NotFound | StoreError::PreconditionFailed) => {}
        // The lease then expires on its own.
        Err(e) => tracing::warn!(error = %e, "could not release a delivery claim"),
    }
}

/// The recorded state of a delivery, if any (tests and reports).
pub async fn state(
    store: &SharedStore,
    notification: &str,
    target: &str,
) -> StoreResult<Option<(String, String)>> {
    Ok(store
        .get(DELIVERIES, PARTITION, &key(notification, target))
        .await?
        .map(|e| {
            (
                e.str("state").unwrap_or_default().to_string(),
                e.str("detail").unwrap_or_default().to_string(),
            )
        }))
}
