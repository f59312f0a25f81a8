//! Where people come from. The engine is source-neutral: it asks a [`PersonSource`] for the
//! people of a [`Selection`] and gets [`Item`]s back — each a [`PersonRecord`] already mapped
//! to Moodle fields, or an entry that could not become one (reported as skipped). Every source
//! streams through a bounded channel, so the whole population is never held in memory; the
//! reader's summary (complete or failed, request count) arrives on the handle when it ends.
//!
//! Today's sources are directory-shaped ([`directory::Directory`]: an LDAP directory with paged
//! search, or an LDIF / CSV export file); they read [`Entry`]s and map them with the configured
//! attribute mapping (`sync::mapping`). How a new source plugs in (e.g. Microsoft Entra users
//! through Graph):
//! 1. add a `SourceKind` variant in the sync settings and a module here with a type
//!    implementing [`PersonSource`]: it turns its own records into `PersonRecord`s (key: a
//!    stable id, never the login), honours the selection (a population, only the given keys
//!    when the retry set is re-read, one person for `--user`) and reports what it read;
//! 2. return it from [`for_settings`];
//! 3. pick its [`PersonSource::checkpoint_partition`]: change markers and progress of its passes
//!    are kept apart from the other sources' (`sync::checkpoint`).
//!
//! Nothing else changes: plan, writes, mapping rows, retry set and removals work on records.
//! Directory groups (`SYNC_COHORT_SOURCE=groups`) and school names stay directory features and
//! read raw entries with [`spawn_read`].

pub mod csv;
pub mod directory;
pub mod ldap;
pub mod ldif;
pub mod parent_links;

use super::filter::Filter;
use super::record::PersonRecord;
use super::settings::{Population, SourceKind, SyncSettings};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One directory entry; attribute names are lowercased.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entry {
    pub dn: String,
    pub attrs: BTreeMap<String, Vec<String>>,
}

impl Entry {
    pub fn new(dn: impl Into<String>) -> Self {
        Entry {
            dn: dn.into(),
            attrs: BTreeMap::new(),
        }
    }

    pub fn push(&mut self, attr: &str, value: impl Into<String>) {
        self.attrs
            .entry(attr.to_ascii_lowercase())
            .or_default()
            .push(value.into());
    }

    pub fn all(&self, attr: &str) -> &[String] {
        self.attrs
            .get(&attr.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn first(&self, attr: &str) -> Option<&str> {
        self.all(attr)
            .first()
            .map(String::as_str)
            .filter(|s| !s.trim().is_empty())
    }

    /// Value of the first RDN (`uid=F0100001,ou=people,…` → `F0100001`).
    pub fn rdn_value(dn: &str) -> Option<&str> {
        let first = dn.split(',').next()?;
        first.split_once('=').map(|(_, v)| v.trim())
    }
}

/// One search: base, population filter, optional change marker, attributes to fetch.
#[derive(Debug, Clone)]
pub struct Query {
    pub base: String,
    pub filter: String,
    /// GeneralizedTime; entries changed at or after it.
    pub since: Option<String>,
    pub attrs: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadSummary {
    /// Requests made to the source (search pages, or 1 per file read).
    pub requests: u64,
    pub entries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("LDAP: {0}")]
    Ldap(String),
    #[error("file {path}: {message}")]
    File { path: String, message: String },
    #[error("bad filter: {0}")]
    Filter(String),
}

pub type EntryStream = mpsc::Receiver<Entry>;
pub type ReadHandle = JoinHandle<Result<ReadSummary, SourceError>>;

/// What a person source hands the engine for each entry it read.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Person(Box<PersonRecord>),
    /// An entry that cannot become a person (no login, a refused address…): skipped, with why.
    Unmapped {
        key: String,
        reason: String,
    },
}

impl Item {
    /// The source key (for an unmapped entry: the best the source could tell).
    pub fn key(&self) -> &str {
        match self {
            Item::Person(r) => &r.key,
            Item::Unmapped { key, .. } => key,
        }
    }
}

/// Which people of a population to read.
#[derive(Debug, Clone, PartialEq)]
pub enum Only {
    /// Everyone (changed since the marker, if one is given).
    All,
    /// These source keys (the retry set re-read by key).
    Keys(Vec<String>),
    /// One person by source key or login (`handler sync --user`).
    Person(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub population: Population,
    /// Entries changed at or after this GeneralizedTime (incremental pass); None: all.
    pub since: Option<String>,
    pub only: Only,
}

pub type ItemStream = mpsc::Receiver<Item>;

/// A source of people (see the module comment for how one plugs in).
pub trait PersonSource: Send + Sync {
    /// Partition of the `checkpoints` table holding this source's change markers.
    fn checkpoint_partition(&self) -> &'static str;
    /// Content hash when the source is one file: an unchanged file needs no pass. None otherwise.
    fn content_hash(&self) -> Result<Option<String>, SourceError>;
    /// Start reading; items arrive on the receiver, the handle tells whether the read was complete.
    fn read(&self, sel: &Selection) -> (ItemStream, ReadHandle);
    /// Requests a read of `entries` entries took (or had taken when it stopped).
    fn requests_for(&self, entries: u64) -> u64;
    /// How many waiting keys one re-read asks for (`waiting` are waiting in all).
    fn keys_per_read(&self, waiting: usize) -> usize;
    /// One line for the verbose trace: what `read` will ask the source for.
    fn describe(&self, sel: &Selection) -> String;
}

/// The person source the settings select.
pub fn for_settings(settings: &Arc<SyncSettings>) -> Arc<dyn PersonSource> {
    Arc::new(directory::Directory::new(settings.clone()))
}

/// Requests a read of `entries` entries took (or had taken when it stopped): search pages for
/// LDAP, one per export file.
pub fn requests_for(settings: &SyncSettings, entries: u64) -> u64 {
    match settings.source {
        SourceKind::Ldap => entries / settings.ldap.page_size.max(1) as u64 + 1,
        SourceKind::Ldif(_) | SourceKind::Csv(_) => 1,
    }
}

/// Start reading; entries arrive on the receiver, the handle tells whether the read was complete.
pub fn spawn_read(settings: &SyncSettings, query: Query) -> (EntryStream, ReadHandle) {
    let (tx, rx) = mpsc::channel(1024);
    let handle = match &settings.source {
        SourceKind::Ldap => {
            let ldap = settings.ldap.clone();
            tokio::spawn(async move { ldap::read(&ldap, &query, tx).await })
        }
        SourceKind::Ldif(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || ldif::read(&path, &query, &tx))
        }
        SourceKind::Csv(path) => {
            let path = path.clone();
            let key = settings.mapping.key.clone();
            tokio::task::spawn_blocking(move || csv::read(&path, &key, &query, &tx))
        }
    };
    (rx, handle)
}

/// For file sources: does this entry belong to the query (base, population filter, change marker)?
/// Entries without `modifyTimestamp` always pass the marker test (fingerprints decide then).
pub(crate) fn file_selects(entry: &Entry, query: &Query, filter: &Filter) -> bool {
    let base = query.base.to_ascii_lowercase();
    // CSV rows without a dn column get a one-RDN dn: the base cannot apply to them.
    if !base.is_empty() && entry.dn.contains(',') && !entry.dn.to_ascii_lowercase().ends_with(&base)
    {
        return false;
    }
    if !filter.matches(&entry.attrs) {
        return false;
    }
    match (&query.since, entry.first("modifyTimestamp")) {
        (Some(since), Some(ts)) => ts >= since.as_str(),
        _ => true,
    }
}

/// Content hash of an export file: an unchanged file needs no pass at all.
pub fn file_hash(path: &std::path::Path) -> Result<String, SourceError> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let err = |e: std::io::Error| SourceError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
