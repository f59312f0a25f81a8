//! Per-entity checkpoints in the `checkpoints` table. The change marker only advances once a
//! whole pass was read and applied; after each applied batch the row records progress (and the
//! mapping rows written with the batch make a repeated batch a no-op), so a crashed run resumes
//! from the old marker without duplicates.
//!
//! Checkpoints are keyed by source: each person source names its partition
//! (`PersonSource::checkpoint_partition`), so markers of an LDAP directory, an export file or
//! another kind of source never stand in for each other. Before that, every source wrote to
//! [`LEGACY_PARTITION`]; those rows are still read so an upgraded install does not start over.

use super::entity::EntityKind;
use crate::store::{key_escape, Entity, SharedStore, StoreError};
use chrono::{DateTime, Utc};

/// The one partition of every source before checkpoints were keyed by source.
pub const LEGACY_PARTITION: &str = "ldap";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// GeneralizedTime of the start of the last complete pass.
    pub marker: Option<String>,
    pub config_hash: String,
    pub file_hash: Option<String>,
    pub run_id: String,
    /// Entries applied so far by the pass in progress (informative; resume relies on mappings).
    pub progress: i64,
}

pub fn row_key(entity: EntityKind, population: &str) -> String {
    key_escape(&format!("{entity}-{population}"))
}

/// The checkpoint of (`entity`, `population`) of the source whose partition is `partition`.
/// The directory sources (LDAP, LDIF, CSV) fall back to the legacy partition, where all of them
/// wrote before; a source that came later has no legacy rows.
pub async fn load(
    store: &SharedStore,
    partition: &str,
    entity: EntityKind,
    population: &str,
) -> Result<Option<Checkpoint>, StoreError> {
    use crate::sync::source::directory::{CSV_PARTITION, LDIF_PARTITION};
    let key = row_key(entity, population);
    if let Some(cp) = read(store, partition, &key).await? {
        return Ok(Some(cp));
    }
    match partition {
        LDIF_PARTITION | CSV_PARTITION => read(store, LEGACY_PARTITION, &key).await,
        _ => Ok(None),
    }
}

async fn read(
    store: &SharedStore,
    partition: &str,
    key: &str,
) -> Result<Option<Checkpoint>, StoreError> {
    let Some(e) = store
        .get(crate::store::tables::CHECKPOINTS, partition, key)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(Checkpoint {
        marker: e.str("marker").map(str::to_string),
        config_hash: e.str("config_hash").unwrap_or_default().to_string(),
        file_hash: e.str("file_hash").map(str::to_string),
        run_id: e.str("run_id").unwrap_or_default().to_string(),
        progress: e.int("progress").unwrap_or(0),
    }))
}

pub async fn save(
    store: &SharedStore,
    partition: &str,
    entity: EntityKind,
    population: &str,
    cp: &Checkpoint,
) -> Result<(), StoreError> {
    let mut e = Entity::new(partition, row_key(entity, population))
        .with("config_hash", cp.config_hash.as_str())
        .with("run_id", cp.run_id.as_str())
        .with("progress", cp.progress)
        .with("updated_at", Utc::now().to_rfc3339());
    if let Some(m) = &cp.marker {
        e.set("marker", m.as_str());
    }
    if let Some(h) = &cp.file_hash {
        e.set("file_hash", h.as_str());
    }
    store
        .upsert(crate::store::tables::CHECKPOINTS, &e)
        .await
        .map(|_| ())
}

/// LDAP GeneralizedTime, whole seconds, UTC.
pub fn generalized(t: DateTime<Utc>) -> String {
    t.format("%Y%m%d%H%M%SZ").to_string()
}

pub fn parse_generalized(s: &str) -> Option<DateTime<Utc>> {
    let digits = s.trim_end_matches('Z');
    let digits = digits.split('.').next()?;
    chrono::NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M%S")
        .ok()
        .map(|n| n.and_utc())
}

/// Marker minus the overlap (clock skew, entries written during the last pass's second).
pub fn since_with_overlap(marker: &str, overlap_secs: i64) -> Option<String> {
    parse_generalized(marker).map(|t| generalized(t - chrono::Duration::seconds(overlap_secs)))
}
