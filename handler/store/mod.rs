//! Table-shaped storage that lasts: partition key + row key + typed properties + ETag.
//! Two backends share one contract (tests/store_contract.rs): Azure Table storage for the
//! Functions deployment and an embedded SQLite file for `handler serve`.

pub mod azure_blob;
pub mod azure_table;
pub mod blob;
pub mod deadline;
pub mod managed_identity;
pub mod private_fs;
pub mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use blob::BlobStore;

/// Table names the app uses (the design's list); backends add the configured prefix.
pub mod tables {
    pub const CHECKPOINTS: &str = "checkpoints";
    pub const MAPPINGS: &str = "mappings";
    pub const RUNS: &str = "runs";
    pub const CONVERSATIONS: &str = "conversations";
    pub const WEBHOOKS: &str = "webhooks";
    pub const DELIVERIES: &str = "deliveries";
    pub const LEASES: &str = "leases";
    /// The standalone server's durable queue (one partition per queue name).
    pub const QUEUE: &str = "queue";
    pub const ALL: &[&str] = &[
        CHECKPOINTS,
        MAPPINGS,
        RUNS,
        CONVERSATIONS,
        WEBHOOKS,
        DELIVERIES,
        LEASES,
        QUEUE,
    ];
}

/// A property value. Integers are kept exact on every backend (Azure gets `Edm.Int64` strings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prop {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl From<&str> for Prop {
    fn from(s: &str) -> Self {
        Prop::Str(s.to_string())
    }
}
impl From<String> for Prop {
    fn from(s: String) -> Self {
        Prop::Str(s)
    }
}
impl From<i64> for Prop {
    fn from(v: i64) -> Self {
        Prop::Int(v)
    }
}
impl From<bool> for Prop {
    fn from(v: bool) -> Self {
        Prop::Bool(v)
    }
}
impl From<f64> for Prop {
    fn from(v: f64) -> Self {
        Prop::Float(v)
    }
}

/// Opaque concurrency token returned by every write.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ETag(pub String);

#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub partition_key: String,
    pub row_key: String,
    pub props: BTreeMap<String, Prop>,
    /// Set on entities read from a store; ignored on insert/upsert.
    pub etag: Option<ETag>,
}

impl Entity {
    pub fn new(partition_key: impl Into<String>, row_key: impl Into<String>) -> Self {
        Entity {
            partition_key: partition_key.into(),
            row_key: row_key.into(),
            props: BTreeMap::new(),
            etag: None,
        }
    }

    pub fn with(mut self, name: &str, value: impl Into<Prop>) -> Self {
        self.props.insert(name.to_string(), value.into());
        self
    }

    pub fn set(&mut self, name: &str, value: impl Into<Prop>) {
        self.props.insert(name.to_string(), value.into());
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        match self.props.get(name) {
            Some(Prop::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.props.get(name) {
            Some(Prop::Int(v)) => Some(*v),
            Some(Prop::Float(v)) if v.fract() == 0.0 => Some(*v as i64),
            Some(Prop::Str(s)) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.props.get(name) {
            Some(Prop::Bool(v)) => Some(*v),
            _ => None,
        }
    }

    /// Store a whole serde value as one JSON string property (for nested records).
    pub fn with_json<T: Serialize>(self, name: &str, value: &T) -> Result<Self, StoreError> {
        let text = serde_json::to_string(value).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(self.with(name, text))
    }

    pub fn json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.str(name) {
            None => Ok(None),
            Some(s) => serde_json::from_str(s)
                .map(Some)
                .map_err(|e| StoreError::Invalid(format!("property {name}: {e}"))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub entities: Vec<Entity>,
    /// Pass back to `query` to get the next page; `None` when done.
    pub next: Option<String>,
}

#[derive(Debug, Clone)]
pub enum BatchOp {
    Insert(Entity),
    Upsert(Entity),
    /// Replace only if the stored ETag still matches.
    Replace(Entity, ETag),
    Delete {
        row_key: String,
        if_match: Option<ETag>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("entity already exists")]
    Conflict,
    #[error("entity was changed by someone else (ETag mismatch)")]
    PreconditionFailed,
    #[error("entity not found")]
    NotFound,
    #[error("invalid entity: {0}")]
    Invalid(String),
    #[error("storage backend error: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn backend(e: impl std::fmt::Display) -> Self {
        StoreError::Backend(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Create the tables the app uses (idempotent).
    async fn ensure_tables(&self) -> StoreResult<()>;
    async fn get(&self, table: &str, pk: &str, rk: &str) -> StoreResult<Option<Entity>>;
    /// Fails with `Conflict` when the row exists.
    async fn insert(&self, table: &str, entity: &Entity) -> StoreResult<ETag>;
    async fn upsert(&self, table: &str, entity: &Entity) -> StoreResult<ETag>;
    /// Fails with `PreconditionFailed` when the stored ETag differs, `NotFound` when the row is gone.
    async fn replace(&self, table: &str, entity: &Entity, if_match: &ETag) -> StoreResult<ETag>;
    /// `if_match: None` deletes unconditionally; deleting a missing row is `NotFound`.
    async fn delete(
        &self,
        table: &str,
        pk: &str,
        rk: &str,
        if_match: Option<&ETag>,
    ) -> StoreResult<()>;
    /// One partition in row-key order, `page_size` at most per call.
    async fn query(
        &self,
        table: &str,
        pk: &str,
        continuation: Option<&str>,
        page_size: usize,
    ) -> StoreResult<Page>;
    /// Atomic: all operations (same partition, at most 100) apply or none do.
    async fn batch(&self, table: &str, pk: &str, ops: Vec<BatchOp>) -> StoreResult<()>;
    /// Short name for logs and `check-config`.
    fn describe(&self) -> String;
}

pub type SharedStore = Arc<dyn Store>;

pub const MAX_BATCH: usize = 100;

/// Checks shared by both backends, so they reject the same inputs.
pub(crate) fn validate_key(kind: &str, key: &str) -> StoreResult<()> {
    // Azure forbids / \ # ? and control characters in keys; enforce it everywhere so
    // data written by `serve` can move to Azure unchanged.
    if key.len() > 1024 {
        return Err(StoreError::Invalid(format!("{kind} longer than 1 KiB")));
    }
    if key
        .chars()
        .any(|c| matches!(c, '/' | '\\' | '#' | '?') || c.is_control())
    {
        return Err(StoreError::Invalid(format!(
            "{kind} contains a character Azure tables forbid"
        )));
    }
    Ok(())
}

/// Names Azure tables keep for themselves (system properties and OData metadata).
pub(crate) fn is_reserved_property(name: &str) -> bool {
    matches!(name, "PartitionKey" | "RowKey" | "Timestamp" | "ETag") || name.starts_with("odata.")
}

/// Property rules of Azure tables, enforced on every backend so a standalone store can move to Azure.
pub(crate) fn validate_props(e: &Entity) -> StoreResult<()> {
    for (name, prop) in &e.props {
        if is_reserved_property(name) || name.contains('@') || name.is_empty() {
            return Err(StoreError::Invalid(format!(
                "property name {name:?} is reserved"
            )));
        }
        if let Prop::Float(v) = prop {
            if !v.is_finite() {
                return Err(StoreError::Invalid(format!(
                    "property {name}: {v} is not a finite number"
                )));
            }
        }
    }
    Ok(())
}

pub(crate) fn validate_batch(pk: &str, ops: &[BatchOp]) -> StoreResult<()> {
    if ops.len() > MAX_BATCH {
        return Err(StoreError::Invalid(format!(
            "batch of {} operations (max {MAX_BATCH})",
            ops.len()
        )));
    }
    for op in ops {
        let epk = match op {
            BatchOp::Insert(e) | BatchOp::Upsert(e) | BatchOp::Replace(e, _) => &e.partition_key,
            BatchOp::Delete { .. } => continue,
        };
        if epk != pk {
            return Err(StoreError::Invalid("batch spans partitions".into()));
        }
    }
    Ok(())
}

/// Escape a value for use inside a row key: keeps keys valid for Azure and sortable.
pub fn key_escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '/' | '\\' | '#' | '?' | '%' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_control() => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Open the configured store and blob store.
pub async fn open(
    settings: &crate::config::StorageSettings,
) -> anyhow::Result<(SharedStore, Arc<dyn BlobStore>)> {
    use crate::config::StorageSettings;
    let pair: (SharedStore, Arc<dyn BlobStore>) = match settings {
        StorageSettings::Local {
            sqlite_path,
            blob_dir,
        } => {
            // Created (or tightened) owner-only now, before any blob is written.
            private_fs::private_dir(blob_dir)
                .map_err(|e| anyhow::anyhow!("blob folder {}: {e}", blob_dir.display()))?;
            (
                Arc::new(sqlite::SqliteStore::open(sqlite_path)?),
                Arc::new(blob::FsBlobStore::new(blob_dir.clone())),
            )
        }
        StorageSettings::Azure(az) => (
            Arc::new(azure_table::AzureTableStore::new(az)?),
            Arc::new(blob::AzureBlobStore::new(az)?),
        ),
    };
    Ok(pair)
}

/// Fail fast and say why when the store cannot be used: each Azure endpoint must accept a TCP
/// connection, then the tables must be created and a probe row written and removed, all within
/// `within`. Without this the SDK's retry policy spends ~80 s on a closed port and reports only
/// "retry policy expired". A full disk or a read-only store shows up in the write.
pub async fn check(
    settings: &crate::config::StorageSettings,
    store: &dyn Store,
    within: std::time::Duration,
) -> anyhow::Result<()> {
    reachable(settings, "table", within).await?;
    reachable(settings, "blob", within).await?;
    let name = store.describe();
    let work = async {
        store.ensure_tables().await?;
        probe_write(store).await
    };
    match tokio::time::timeout(within, work).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow::anyhow!("store {name}: {e}")),
        Err(_) => Err(anyhow::anyhow!(
            "store {name}: no answer within {} s (STORE_CHECK_TIMEOUT_SECS)",
            within.as_secs()
        )),
    }
}

/// For Azure storage: the `service` ("table" or "blob") endpoint accepts a TCP connection.
pub async fn reachable(
    settings: &crate::config::StorageSettings,
    service: &str,
    within: std::time::Duration,
) -> anyhow::Result<()> {
    let crate::config::StorageSettings::Azure(az) = settings else {
        return Ok(());
    };
    let configured = match service {
        "table" => az.table_endpoint.as_deref(),
        _ => az.blob_endpoint.as_deref(),
    };
    let endpoint = azure_table::endpoint(configured, &az.account, service);
    connect(&endpoint, within)
        .await
        .map_err(|e| anyhow::anyhow!("{service} storage at {endpoint}: {e}"))
}

/// Write, read back and delete one row the size of a real one (a few KiB).
pub async fn probe_write(store: &dyn Store) -> StoreResult<()> {
    let rk = format!("probe-{}", uuid::Uuid::new_v4().simple());
    let e = Entity::new("check", rk.clone()).with("fill", "x".repeat(8 * 1024));
    store.insert(tables::LEASES, &e).await?;
    let back = store.get(tables::LEASES, "check", &rk).await?;
    let removed = store.delete(tables::LEASES, "check", &rk, None).await;
    if back.is_none() {
        return Err(StoreError::Backend(
            "probe row written but not read back".into(),
        ));
    }
    removed
}

async fn connect(endpoint: &str, within: std::time::Duration) -> anyhow::Result<()> {
    let url = url::Url::parse(endpoint)?;
    let host = url
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("no host in the URL"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| anyhow::anyhow!("no port for scheme {}", url.scheme()))?;
    match tokio::time::timeout(
        within,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(anyhow::anyhow!("cannot connect to {host}:{port}: {e}")),
        Err(_) => Err(anyhow::anyhow!(
            "no connection to {host}:{port} within {} s",
            within.as_secs()
        )),
    }
}
