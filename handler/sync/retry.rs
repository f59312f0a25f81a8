//! The retry set: entries that failed, or were skipped for a reason that can change without the
//! directory entry changing (update-only, a course or cohort that does not exist yet, users not
//! selected). The checkpoint moves past them, so they are kept in the store (`mappings`,
//! partition `retry`) and re-read by key on every run until they go through.

use crate::store::{key_escape, tables, Entity, SharedStore, StoreError};
use std::collections::BTreeMap;

pub const PARTITION: &str = "retry";

/// One waiting entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub key: String,
    pub population: String,
    /// Short class of the reason (`create failed`, `course missing`…), for the report's summary.
    pub why: String,
    pub reason: String,
    pub since: String,
}

pub async fn load(store: &SharedStore) -> Result<Vec<Waiting>, StoreError> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = store
            .query(tables::MAPPINGS, PARTITION, next.as_deref(), 1000)
            .await?;
        for e in &page.entities {
            out.push(Waiting {
                key: e.str("key").unwrap_or_default().to_string(),
                population: e.str("population").unwrap_or_default().to_string(),
                why: e.str("why").unwrap_or_default().to_string(),
                reason: e.str("reason").unwrap_or_default().to_string(),
                since: e.str("since").unwrap_or_default().to_string(),
            });
        }
        match page.next {
            Some(n) => next = Some(n),
            None => return Ok(out),
        }
    }
}

pub async fn save(store: &SharedStore, w: &Waiting) -> Result<(), StoreError> {
    let e = Entity::new(PARTITION, key_escape(&w.key))
        .with("key", w.key.as_str())
        .with("population", w.population.as_str())
        .with("why", w.why.as_str())
        .with("reason", w.reason.as_str())
        .with("since", w.since.as_str());
    store.upsert(tables::MAPPINGS, &e).await.map(|_| ())
}

pub async fn clear(store: &SharedStore, key: &str) -> Result<(), StoreError> {
    match store
        .delete(tables::MAPPINGS, PARTITION, &key_escape(key), None)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// How many wait, per reason class.
pub fn summary(all: &[Waiting]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for w in all {
        *m.entry(w.why.clone()).or_default() += 1;
    }
    m
}
