//! The retry set: entries that failed, or were skipped for a reason that can change without the
//! directory entry changing (update-only, a course or cohort that does not exist yet, users not
//! selected). The checkpoint moves past them, so they are kept in the store (`mappings`,
//! partition `retry`) and re-read by key on every run until they go through.

use crate::store::{key_escape, tables, BatchOp, Entity, SharedStore, StoreError, MAX_BATCH};
use std::collections::{BTreeMap, HashMap};

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
    /// The Moodle contexts (`level:idnumber`) it waits for, when that is all it waits for:
    /// re-read only once one of them exists. Empty: re-read on every run.
    pub needs: Vec<String>,
}

/// Why a batch left an entry waiting. Every reason the batch gave for it counts: its contexts
/// are gathered, and any reason that is not a context (`None` need) means "re-read every run".
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub why: String,
    pub reason: String,
    needs: Option<std::collections::BTreeSet<String>>,
}

impl Mark {
    pub fn new(why: &str, reason: &str) -> Self {
        Mark {
            why: why.to_string(),
            reason: reason.to_string(),
            needs: Some(Default::default()),
        }
    }

    /// One more reason of the same entry: a context it waits for, or (`None`) something else.
    pub fn add_need(&mut self, need: Option<String>) {
        match (need, self.needs.as_mut()) {
            (Some(n), Some(set)) => {
                set.insert(n);
            }
            (None, _) => self.needs = None,
            (Some(_), None) => {}
        }
    }

    fn needs(&self) -> Vec<String> {
        self.needs.iter().flatten().cloned().collect()
    }
}

/// A stored need as (level, idnumber); an unreadable one is None (the entry is then re-read).
pub fn parse_need(need: &str) -> Option<(crate::moodle::roles::ContextLevel, &str)> {
    let (level, idnumber) = need.split_once(':')?;
    Some((level.parse().ok()?, idnumber))
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
                // Rows written before needs were kept have none: re-read every run, as then.
                needs: e.json("needs").ok().flatten().unwrap_or_default(),
            });
        }
        match page.next {
            Some(n) => next = Some(n),
            None => return Ok(out),
        }
    }
}

fn to_entity(w: &Waiting) -> Result<Entity, StoreError> {
    let e = Entity::new(PARTITION, key_escape(&w.key))
        .with("key", w.key.as_str())
        .with("population", w.population.as_str())
        .with("why", w.why.as_str())
        .with("reason", w.reason.as_str())
        .with("since", w.since.as_str());
    if w.needs.is_empty() {
        Ok(e)
    } else {
        e.with_json("needs", &w.needs)
    }
}

/// The retry set after one batch of `population`: the entries of `keys` that `marks` names wait
/// (keeping the `since` of their first miss), the others no longer do. The store gets one batch
/// per 100 changed rows: an initial load that leaves thousands waiting (teachers of courses not
/// created yet) must not pay one round trip each.
pub async fn remember(
    store: &SharedStore,
    set: &mut HashMap<String, Waiting>,
    population: &str,
    keys: &[String],
    marks: &BTreeMap<String, Mark>,
) -> Result<(), StoreError> {
    let since = chrono::Utc::now().to_rfc3339();
    let mut saves = Vec::new();
    let mut clears = Vec::new();
    for k in keys {
        let known = set.get(k);
        match (marks.get(k), known) {
            (Some(mark), known) => {
                let w = Waiting {
                    key: k.clone(),
                    population: population.to_string(),
                    why: mark.why.clone(),
                    reason: mark.reason.clone(),
                    since: known.map_or_else(|| since.clone(), |w| w.since.clone()),
                    needs: mark.needs(),
                };
                if known != Some(&w) {
                    saves.push(w);
                }
            }
            (None, Some(_)) => clears.push(k.clone()),
            (None, None) => {}
        }
    }
    write(store, &saves, &clears).await?;
    for k in &clears {
        set.remove(k);
    }
    for w in saves {
        set.insert(w.key.clone(), w);
    }
    Ok(())
}

pub async fn clear(store: &SharedStore, key: &str) -> Result<(), StoreError> {
    delete_row(store, &key_escape(key)).await
}

/// Delete one row of the retry set; a row already gone is fine.
async fn delete_row(store: &SharedStore, row_key: &str) -> Result<(), StoreError> {
    match store
        .delete(tables::MAPPINGS, PARTITION, row_key, None)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Drop `keys` from the retry set (they went through, or left the source).
pub async fn forget(
    store: &SharedStore,
    set: &mut HashMap<String, Waiting>,
    keys: &[String],
) -> Result<(), StoreError> {
    let known: Vec<String> = keys
        .iter()
        .filter(|k| set.contains_key(*k))
        .cloned()
        .collect();
    write(store, &[], &known).await?;
    for k in &known {
        set.remove(k);
    }
    Ok(())
}

async fn write(
    store: &SharedStore,
    saves: &[Waiting],
    clears: &[String],
) -> Result<(), StoreError> {
    let mut ops = saves
        .iter()
        .map(|w| to_entity(w).map(BatchOp::Upsert))
        .collect::<Result<Vec<_>, _>>()?;
    ops.extend(clears.iter().map(|k| BatchOp::Delete {
        row_key: key_escape(k),
        if_match: None,
    }));
    for chunk in ops.chunks(MAX_BATCH) {
        match store
            .batch(tables::MAPPINGS, PARTITION, chunk.to_vec())
            .await
        {
            Ok(()) => {}
            // A row another run already cleared fails the whole batch: apply this chunk one by one.
            Err(StoreError::NotFound) => {
                for op in chunk {
                    match op {
                        BatchOp::Delete { row_key, .. } => delete_row(store, row_key).await?,
                        BatchOp::Upsert(e) => {
                            store.upsert(tables::MAPPINGS, e).await?;
                        }
                        _ => unreachable!("the retry set only upserts and deletes"),
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// How many wait, per reason class.
pub fn summary(all: &[Waiting]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for w in all {
        *m.entry(w.why.clone()).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn marks(keys: &[&str], why: &str) -> BTreeMap<String, Mark> {
        keys.iter()
            .map(|k| (k.to_string(), Mark::new(why, &format!("{k}: {why}"))))
            .collect()
    }

    #[tokio::test]
    async fn thousands_wait_in_batches_keep_their_first_date_and_leave_when_they_go_through() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(
            crate::store::sqlite::SqliteStore::open(&dir.path().join("s.sqlite")).unwrap(),
        );
        store.ensure_tables().await.unwrap();
        let keys: Vec<String> = (0..250).map(|i| format!("uid={i:04}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut set = HashMap::new();
        remember(
            &store,
            &mut set,
            "teachers",
            &keys,
            &marks(&refs, "course missing"),
        )
        .await
        .unwrap();
        let stored = load(&store).await.unwrap();
        assert_eq!(stored.len(), 250, "more rows than one store batch holds");
        assert_eq!(set.len(), 250);
        let first_since = set["uid=0007"].since.clone();

        // Next run: 0..100 went through, 100..250 still wait (same reason: no write, same date),
        // one of them for another reason now.
        let mut still = marks(&refs[100..], "course missing");
        still.insert("uid=0200".into(), Mark::new("create failed", "x"));
        remember(&store, &mut set, "teachers", &keys, &still)
            .await
            .unwrap();
        let stored = load(&store).await.unwrap();
        assert_eq!(stored.len(), 150);
        assert!(stored.iter().all(|w| w.key.as_str() >= "uid=0100"));
        assert_eq!(summary(&stored)["create failed"], 1);
        assert_eq!(set["uid=0150"].since, stored[50].since);
        assert!(!set.contains_key("uid=0007"));
        assert!(first_since <= set["uid=0150"].since);

        // Gone from the source: forgotten; a key never waiting is ignored; a row another run
        // already cleared does not fail the others.
        clear(&store, "uid=0101").await.unwrap();
        let gone = vec!["uid=0100".to_string(), "uid=0101".into(), "uid=9999".into()];
        forget(&store, &mut set, &gone).await.unwrap();
        let stored = load(&store).await.unwrap();
        assert_eq!(stored.len(), 148);
        assert_eq!(set.len(), 148);
    }
}
