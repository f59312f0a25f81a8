//! Where people come from: an LDAP directory (paged search) or an export file (LDIF, CSV).
//! Every source streams entries through a bounded channel, so the directory is never held in
//! memory; the reader's summary (complete or failed, request count) arrives when it ends.

pub mod csv;
pub mod ldap;
pub mod ldif;

use super::filter::Filter;
use super::settings::{SourceKind, SyncSettings};
use std::collections::BTreeMap;
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
