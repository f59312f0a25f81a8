//! One sync run at a time: an ETag lease with an expiry in `leases`. Taking an expired lease is
//! a replace-if-match, so two runs racing for it cannot both win.

use crate::store::{tables, Entity, SharedStore, StoreError};
use chrono::Utc;

const PK: &str = "sync";
const RK: &str = "run";

#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub owner: String,
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("another sync run ({0}) holds the lease until {1}")]
    Busy(String, String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn entity(owner: &str, secs: i64) -> Entity {
    Entity::new(PK, RK)
        .with("owner", owner)
        .with("expires_at", Utc::now().timestamp() + secs)
}

pub async fn acquire(store: &SharedStore, owner: &str, secs: i64) -> Result<(), LeaseError> {
    let now = Utc::now().timestamp();
    match store.get(tables::LEASES, PK, RK).await? {
        None => match store.insert(tables::LEASES, &entity(owner, secs)).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict) => Err(LeaseError::Busy("?".into(), "unknown".into())),
            Err(e) => Err(e.into()),
        },
        Some(cur) => {
            let holder = cur.str("owner").unwrap_or_default().to_string();
            let expires = cur.int("expires_at").unwrap_or(0);
            if expires > now && holder != owner {
                let until = chrono::DateTime::from_timestamp(expires, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                return Err(LeaseError::Busy(holder, until));
            }
            let etag = cur
                .etag
                .clone()
                .ok_or_else(|| StoreError::Backend("lease row without ETag".into()))?;
            match store
                .replace(tables::LEASES, &entity(owner, secs), &etag)
                .await
            {
                Ok(_) => Ok(()),
                Err(StoreError::PreconditionFailed | StoreError::NotFound) => {
                    Err(LeaseError::Busy("?".into(), "unknown".into()))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Keep (or take back) the lease for `owner`, e.g. a run's shard: like `acquire`, but a race
/// with another holder of the same run (two shards renewing at once) is not a refusal.
pub async fn hold(store: &SharedStore, owner: &str, secs: i64) -> Result<(), LeaseError> {
    match acquire(store, owner, secs).await {
        Err(LeaseError::Busy(..)) => match current(store).await? {
            Some(h) if h.owner == owner => Ok(()),
            Some(h) => Err(LeaseError::Busy(
                h.owner,
                chrono::DateTime::from_timestamp(h.expires_at, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
            )),
            None => acquire(store, owner, secs).await,
        },
        other => other,
    }
}

/// Release only our own lease.
pub async fn release(store: &SharedStore, owner: &str) -> Result<(), StoreError> {
    if let Some(cur) = store.get(tables::LEASES, PK, RK).await? {
        if cur.str("owner") == Some(owner) {
            match store
                .delete(tables::LEASES, PK, RK, cur.etag.as_ref())
                .await
            {
                Ok(()) | Err(StoreError::NotFound | StoreError::PreconditionFailed) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

pub async fn current(store: &SharedStore) -> Result<Option<Held>, StoreError> {
    Ok(store.get(tables::LEASES, PK, RK).await?.map(|e| Held {
        owner: e.str("owner").unwrap_or_default().to_string(),
        expires_at: e.int("expires_at").unwrap_or(0),
    }))
}
