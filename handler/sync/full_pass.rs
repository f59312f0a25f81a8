//! The full-pass schedule: an incremental read only sees entries whose `modifyTimestamp` moved,
//! so it never sees who left the directory (a deleted entry has no timestamp) nor a planned
//! deletion date that has just come (the entry did not change). A run becomes a full pass
//! (every entry read, removals allowed, unchanged people still cost no Moodle call) when
//! `SYNC_FULL_SCHEDULE` has fired since the last complete full pass.

use crate::store::{tables, Entity, SharedStore, StoreError};
use chrono::{DateTime, Utc};

const PARTITION: &str = "full-pass";
const ROW: &str = "last";

/// When the last complete full pass started, if one ever finished.
pub async fn last(store: &SharedStore) -> Result<Option<DateTime<Utc>>, StoreError> {
    let Some(e) = store.get(tables::CHECKPOINTS, PARTITION, ROW).await? else {
        return Ok(None);
    };
    Ok(e.str("started_at")
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc)))
}

/// Remember a complete full pass that started at `started`.
pub async fn record(store: &SharedStore, started: DateTime<Utc>) -> Result<(), StoreError> {
    let e = Entity::new(PARTITION, ROW).with("started_at", started.to_rfc3339());
    store.upsert(tables::CHECKPOINTS, &e).await.map(|_| ())
}

/// Is a full pass due at `now`? Never without a schedule. The schedule starts counting at the
/// first run (which reads everything anyway, having no checkpoint yet).
pub async fn due(
    store: &SharedStore,
    schedule: Option<&crate::schedule::Schedule>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let Some(schedule) = schedule else {
        return Ok(false);
    };
    match last(store).await? {
        None => {
            record(store, now).await?;
            Ok(false)
        }
        Some(t) => Ok(schedule.next_after(t).is_some_and(|next| next <= now)),
    }
}
