//! What the bridge remembers per person in `mappings`: source key ↔ Moodle user id, the fields
//! last written (fingerprint), and the cohorts and role assignments it gave them. An entry whose
//! fingerprint and sets are unchanged needs no Moodle call at all.

use crate::ids::MoodleUserId;
use crate::moodle::users::UserFields;
use crate::store::{key_escape, tables, BatchOp, Entity, SharedStore, StoreError};
use crate::sync::record::StoredRole;
use std::collections::BTreeSet;

pub const USER_PK: &str = "user";
pub const COHORT_PK: &str = "cohort";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MappingRow {
    pub key: String,
    pub moodle_id: Option<MoodleUserId>,
    pub username: String,
    pub fields: Option<UserFields>,
    pub fingerprint: String,
    pub cohorts: BTreeSet<String>,
    /// Parsed once here; see [`StoredRole`].
    pub roles: BTreeSet<StoredRole>,
    pub suspended: bool,
}

impl MappingRow {
    pub fn from_entity(e: &Entity) -> Result<Self, StoreError> {
        Ok(MappingRow {
            key: e.str("key").unwrap_or_default().to_string(),
            moodle_id: e
                .int("moodle_id")
                .map(MoodleUserId::new)
                .transpose()
                .map_err(|err| StoreError::Invalid(format!("mapping row: {err}")))?,
            username: e.str("username").unwrap_or_default().to_string(),
            fields: e.json("fields")?,
            fingerprint: e.str("fp").unwrap_or_default().to_string(),
            cohorts: e.json("cohorts")?.unwrap_or_default(),
            roles: e.json("roles")?.unwrap_or_default(),
            suspended: e.bool("suspended").unwrap_or(false),
        })
    }

    pub fn to_entity(&self) -> Result<Entity, StoreError> {
        let mut e = Entity::new(USER_PK, key_escape(&self.key))
            .with("key", self.key.as_str())
            .with("username", self.username.as_str())
            .with("fp", self.fingerprint.as_str())
            .with("suspended", self.suspended)
            .with_json("cohorts", &self.cohorts)?
            .with_json("roles", &self.roles)?;
        if let Some(id) = self.moodle_id {
            e.set("moodle_id", id.get());
        }
        if let Some(f) = &self.fields {
            e = e.with_json("fields", f)?;
        }
        Ok(e)
    }
}

pub async fn load(store: &SharedStore, key: &str) -> Result<Option<MappingRow>, StoreError> {
    match store
        .get(tables::MAPPINGS, USER_PK, &key_escape(key))
        .await?
    {
        Some(e) => MappingRow::from_entity(&e).map(Some),
        None => Ok(None),
    }
}

/// Upsert rows in store batches (≤100 per partition batch).
pub async fn save_all(store: &SharedStore, rows: &[MappingRow]) -> Result<(), StoreError> {
    for chunk in rows.chunks(crate::store::MAX_BATCH) {
        let ops = chunk
            .iter()
            .map(|r| r.to_entity().map(BatchOp::Upsert))
            .collect::<Result<Vec<_>, _>>()?;
        store.batch(tables::MAPPINGS, USER_PK, ops).await?;
    }
    Ok(())
}

/// Every mapping row, page by page (removals only).
pub async fn all(store: &SharedStore) -> Result<Vec<MappingRow>, StoreError> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = store
            .query(tables::MAPPINGS, USER_PK, next.as_deref(), 1000)
            .await?;
        for e in &page.entities {
            out.push(MappingRow::from_entity(e)?);
        }
        match page.next {
            Some(n) => next = Some(n),
            None => return Ok(out),
        }
    }
}
