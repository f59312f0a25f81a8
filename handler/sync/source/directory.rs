//! The directory-shaped person source: an LDAP directory or an LDIF / CSV export of one. It
//! builds the search (population filter, change marker, keys), reads raw entries through
//! [`spawn_read`] and maps each one to a person with the configured attribute mapping.

use super::{
    file_hash, parent_links, requests_for, spawn_read, Entry, EntryStream, Item, ItemStream, Only,
    PersonSource, Query, ReadHandle, Selection, SourceError,
};
use crate::sync::filter::equals;
use crate::sync::mapping::map_person;
use crate::sync::settings::{SourceKind, SyncSettings};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A directory keeps its checkpoints in the partition every source used before they were keyed
/// by source; its export files get their own.
pub const LDAP_PARTITION: &str = "ldap";
pub const LDIF_PARTITION: &str = "ldif";
pub const CSV_PARTITION: &str = "csv";

pub struct Directory {
    settings: Arc<SyncSettings>,
}

impl Directory {
    pub fn new(settings: Arc<SyncSettings>) -> Self {
        Directory { settings }
    }

    fn query(&self, sel: &Selection) -> Query {
        let s = &self.settings;
        let pop = &sel.population;
        let filter = match &sel.only {
            Only::All => pop.filter.clone(),
            Only::Keys(keys) => {
                let any: String = keys.iter().map(|k| equals(&s.mapping.key, k)).collect();
                format!("(&{}(|{any}))", pop.filter)
            }
            Only::Person(u) => format!(
                "(&{}(|{}{}))",
                pop.filter,
                equals(&s.mapping.key, u),
                equals(&s.mapping.username.attr, u)
            ),
        };
        Query {
            base: pop.base.clone(),
            filter,
            since: sel.since.clone(),
            attrs: s.person_attributes(),
        }
    }
}

/// An entry the mapping refuses is reported under its source key when it has one, else under
/// the value of its first RDN (else its whole dn).
fn item(settings: &SyncSettings, e: Entry) -> Item {
    match map_person(settings, &e) {
        Ok(r) => Item::Person(Box::new(r)),
        Err(reason) => Item::Unmapped {
            key: e
                .first(&settings.mapping.key)
                .or_else(|| Entry::rdn_value(&e.dn))
                .unwrap_or(&e.dn)
                .to_string(),
            reason,
        },
    }
}

/// Parents per search of their pupils' back-links.
const LINK_CHUNK: usize = 100;

/// Like the plain loop, but in chunks: the parents of a chunk get their children's links from
/// one search of the pupils either side names (`parent_links`).
async fn with_links(settings: &SyncSettings, mut raw: EntryStream, tx: mpsc::Sender<Item>) {
    // An export file is read once for every chunk's pupils (see `parent_links::FileIndex`).
    let is_file = !matches!(settings.source, SourceKind::Ldap);
    let mut file_index: Option<Result<parent_links::FileIndex, String>> = None;
    while let Some(first) = raw.recv().await {
        let mut chunk = vec![first];
        while chunk.len() < LINK_CHUNK {
            match raw.try_recv() {
                Ok(e) => chunk.push(e),
                Err(_) => break,
            }
        }
        let parents: Vec<&Entry> = chunk
            .iter()
            .filter(|e| parent_links::is_parent(e))
            .collect();
        let pupils = if parents.is_empty() {
            Ok(Vec::new())
        } else if is_file {
            if file_index.is_none() {
                file_index = Some(index_file(settings).await);
            }
            match file_index.as_ref() {
                Some(Ok(ix)) => Ok(ix.pupils_for(settings, &parents)),
                Some(Err(e)) => Err(e.clone()),
                None => Err("pupils not indexed".to_string()),
            }
        } else {
            read_all(settings, parent_links::pupils_query(settings, &parents)).await
        };
        for e in chunk {
            let it = match (&pupils, parent_links::is_parent(&e)) {
                (_, false) => item(settings, e),
                (Ok(pupils), true) => {
                    let links = parent_links::links(settings, &e, pupils);
                    match item(settings, e) {
                        Item::Person(mut r) => {
                            parent_links::attach(settings, &mut r, links);
                            Item::Person(r)
                        }
                        other => other,
                    }
                }
                // Without the links a parent's assignments would look gone: leave them be.
                (Err(why), true) => Item::Unmapped {
                    key: e
                        .first(&settings.mapping.key)
                        .or_else(|| Entry::rdn_value(&e.dn))
                        .unwrap_or(&e.dn)
                        .to_string(),
                    reason: format!("children's links could not be read: {why}"),
                },
            };
            if tx.send(it).await.is_err() {
                return;
            }
        }
    }
}

async fn index_file(settings: &SyncSettings) -> Result<parent_links::FileIndex, String> {
    let (mut rx, handle) = spawn_read(settings, parent_links::all_pupils_query(settings));
    let mut ix = parent_links::FileIndex::default();
    while let Some(e) = rx.recv().await {
        ix.add(settings, &e);
    }
    match handle.await {
        Ok(Ok(_)) => Ok(ix),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("reader crashed: {e}")),
    }
}

async fn read_all(settings: &SyncSettings, query: Query) -> Result<Vec<Entry>, String> {
    let (mut rx, handle) = spawn_read(settings, query);
    let mut out = Vec::new();
    while let Some(e) = rx.recv().await {
        out.push(e);
    }
    match handle.await {
        Ok(Ok(_)) => Ok(out),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("reader crashed: {e}")),
    }
}

impl PersonSource for Directory {
    fn checkpoint_partition(&self) -> &'static str {
        match self.settings.source {
            SourceKind::Ldap => LDAP_PARTITION,
            SourceKind::Ldif(_) => LDIF_PARTITION,
            SourceKind::Csv(_) => CSV_PARTITION,
        }
    }

    fn content_hash(&self) -> Result<Option<String>, SourceError> {
        match &self.settings.source {
            SourceKind::Ldif(p) | SourceKind::Csv(p) => file_hash(p).map(Some),
            SourceKind::Ldap => Ok(None),
        }
    }

    fn read(&self, sel: &Selection) -> (ItemStream, ReadHandle) {
        let (mut raw, handle) = spawn_read(&self.settings, self.query(sel));
        // The reader's channel is the buffer: this one only hands mapped entries over, so the
        // source stays at most about one channel ahead of the engine (a read that fails midway
        // has not run far ahead of what was applied).
        let (tx, rx) = mpsc::channel(16);
        let settings = self.settings.clone();
        // Mapping runs beside the reader; a consumer that stops closes `rx`, this task ends and
        // drops `raw`, which stops the reader too.
        tokio::spawn(async move {
            if settings.parents.enabled {
                with_links(&settings, raw, tx).await;
                return;
            }
            while let Some(e) = raw.recv().await {
                if tx.send(item(&settings, e)).await.is_err() {
                    break;
                }
            }
        });
        (rx, handle)
    }

    fn requests_for(&self, entries: u64) -> u64 {
        requests_for(&self.settings, entries)
    }

    fn keys_per_read(&self, waiting: usize) -> usize {
        // A directory answers a filter of 100 keys from its index; an export file has no
        // index, so every query is a full scan: read it once for all waiting keys.
        match self.settings.source {
            SourceKind::Ldap => 100,
            _ => waiting.max(1),
        }
    }

    fn describe(&self, sel: &Selection) -> String {
        let q = self.query(sel);
        format!("search {} under {}", q.filter, q.base)
    }
}
