//! Embedded store: one SQLite file in WAL mode. All tables share one physical table keyed by
//! (table, pk, rk); ETags are per-row version counters, so replace-if-match is one UPDATE
//! whose WHERE clause carries the version: the database, not our code, decides the winner.

use super::{
    validate_batch, validate_key, validate_props, BatchOp, ETag, Entity, Page, Prop, Store,
    StoreError, StoreResult,
};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

fn etag_of(version: i64) -> ETag {
    ETag(format!("W/\"{version}\""))
}

fn version_of(etag: &ETag) -> Option<i64> {
    etag.0.strip_prefix("W/\"")?.strip_suffix('"')?.parse().ok()
}

fn encode(props: &BTreeMap<String, Prop>) -> StoreResult<String> {
    serde_json::to_string(props).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn decode(pk: String, rk: String, props: &str, version: i64) -> StoreResult<Entity> {
    let props: BTreeMap<String, Prop> = serde_json::from_str(props)
        .map_err(|e| StoreError::Backend(format!("corrupt row {pk}/{rk}: {e}")))?;
    Ok(Entity {
        partition_key: pk,
        row_key: rk,
        props,
        etag: Some(etag_of(version)),
    })
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        // Names, e-mails and reports: owner-only from the first byte (`private_fs`).
        super::private_fs::private_db_file(path)
            .map_err(|e| anyhow::anyhow!("store file {}: {e}", path.display()))?;
        let conn = Connection::open(path)?;
        // WAL lets readers run beside the writer; busy_timeout lets a second process wait for the lock
        // instead of failing; synchronous=NORMAL in WAL mode is durable across process crashes.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS entities (
               tbl TEXT NOT NULL, pk TEXT NOT NULL, rk TEXT NOT NULL,
               props TEXT NOT NULL, version INTEGER NOT NULL,
               PRIMARY KEY (tbl, pk, rk)
             ) WITHOUT ROWID;",
        )?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("sqlite connection poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite task: {e}")))?
    }
}

fn next_version(tx: &Connection) -> StoreResult<i64> {
    // A global counter keeps ETags unique even when a row is deleted and re-created,
    // so a stale ETag from the old row can never match the new one.
    tx.query_row(
        "INSERT INTO entities (tbl, pk, rk, props, version) VALUES ('', '', 'version', '{}', 1)
         ON CONFLICT (tbl, pk, rk) DO UPDATE SET version = version + 1 RETURNING version",
        [],
        |r| r.get(0),
    )
    .map_err(db_err)
}

fn insert_row(tx: &Connection, table: &str, e: &Entity) -> StoreResult<ETag> {
    let v = next_version(tx)?;
    let props = encode(&e.props)?;
    match tx.execute(
        "INSERT INTO entities (tbl, pk, rk, props, version) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![table, e.partition_key, e.row_key, props, v],
    ) {
        Ok(_) => Ok(etag_of(v)),
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::Conflict)
        }
        Err(e) => Err(db_err(e)),
    }
}

fn upsert_row(tx: &Connection, table: &str, e: &Entity) -> StoreResult<ETag> {
    let v = next_version(tx)?;
    tx.execute(
        "INSERT INTO entities (tbl, pk, rk, props, version) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tbl, pk, rk) DO UPDATE SET props = excluded.props, version = excluded.version",
        params![table, e.partition_key, e.row_key, encode(&e.props)?, v],
    )
    .map_err(db_err)?;
    Ok(etag_of(v))
}

fn replace_row(tx: &Connection, table: &str, e: &Entity, if_match: &ETag) -> StoreResult<ETag> {
    let expected = version_of(if_match).ok_or(StoreError::PreconditionFailed)?;
    let v = next_version(tx)?;
    let n = tx
        .execute(
            "UPDATE entities SET props = ?1, version = ?2 WHERE tbl = ?3 AND pk = ?4 AND rk = ?5 AND version = ?6",
            params![encode(&e.props)?, v, table, e.partition_key, e.row_key, expected],
        )
        .map_err(db_err)?;
    if n == 1 {
        return Ok(etag_of(v));
    }
    Err(if exists(tx, table, &e.partition_key, &e.row_key)? {
        StoreError::PreconditionFailed
    } else {
        StoreError::NotFound
    })
}

fn delete_row(
    tx: &Connection,
    table: &str,
    pk: &str,
    rk: &str,
    if_match: Option<&ETag>,
) -> StoreResult<()> {
    let n = match if_match {
        None => tx
            .execute(
                "DELETE FROM entities WHERE tbl = ?1 AND pk = ?2 AND rk = ?3",
                params![table, pk, rk],
            )
            .map_err(db_err)?,
        Some(tag) => {
            let expected = version_of(tag).ok_or(StoreError::PreconditionFailed)?;
            tx.execute(
                "DELETE FROM entities WHERE tbl = ?1 AND pk = ?2 AND rk = ?3 AND version = ?4",
                params![table, pk, rk, expected],
            )
            .map_err(db_err)?
        }
    };
    if n == 1 {
        return Ok(());
    }
    Err(if exists(tx, table, pk, rk)? {
        StoreError::PreconditionFailed
    } else {
        StoreError::NotFound
    })
}

fn exists(tx: &Connection, table: &str, pk: &str, rk: &str) -> StoreResult<bool> {
    tx.query_row(
        "SELECT 1 FROM entities WHERE tbl = ?1 AND pk = ?2 AND rk = ?3",
        params![table, pk, rk],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
    .map_err(db_err)
}

fn check_table(table: &str) -> StoreResult<()> {
    if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Invalid(format!("bad table name {table:?}")));
    }
    Ok(())
}

fn check_entity(table: &str, e: &Entity) -> StoreResult<()> {
    check_table(table)?;
    validate_key("partition key", &e.partition_key)?;
    validate_key("row key", &e.row_key)?;
    validate_props(e)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ensure_tables(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn get(&self, table: &str, pk: &str, rk: &str) -> StoreResult<Option<Entity>> {
        check_table(table)?;
        let (table, pk, rk) = (table.to_string(), pk.to_string(), rk.to_string());
        self.with_conn(move |c| {
            let row = c
                .query_row(
                    "SELECT props, version FROM entities WHERE tbl = ?1 AND pk = ?2 AND rk = ?3",
                    params![table, pk, rk],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
                )
                .optional()
                .map_err(db_err)?;
            row.map(|(p, v)| decode(pk, rk, &p, v)).transpose()
        })
        .await
    }

    async fn insert(&self, table: &str, entity: &Entity) -> StoreResult<ETag> {
        check_entity(table, entity)?;
        let (table, e) = (table.to_string(), entity.clone());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(db_err)?;
            let tag = insert_row(&tx, &table, &e)?;
            tx.commit().map_err(db_err)?;
            Ok(tag)
        })
        .await
    }

    async fn upsert(&self, table: &str, entity: &Entity) -> StoreResult<ETag> {
        check_entity(table, entity)?;
        let (table, e) = (table.to_string(), entity.clone());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(db_err)?;
            let tag = upsert_row(&tx, &table, &e)?;
            tx.commit().map_err(db_err)?;
            Ok(tag)
        })
        .await
    }

    async fn replace(&self, table: &str, entity: &Entity, if_match: &ETag) -> StoreResult<ETag> {
        check_entity(table, entity)?;
        let (table, e, tag) = (table.to_string(), entity.clone(), if_match.clone());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(db_err)?;
            let out = replace_row(&tx, &table, &e, &tag)?;
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
        .await
    }

    async fn delete(
        &self,
        table: &str,
        pk: &str,
        rk: &str,
        if_match: Option<&ETag>,
    ) -> StoreResult<()> {
        check_table(table)?;
        let (table, pk, rk, tag) = (
            table.to_string(),
            pk.to_string(),
            rk.to_string(),
            if_match.cloned(),
        );
        self.with_conn(move |c| delete_row(c, &table, &pk, &rk, tag.as_ref()))
            .await
    }

    async fn query(
        &self,
        table: &str,
        pk: &str,
        continuation: Option<&str>,
        page_size: usize,
    ) -> StoreResult<Page> {
        check_table(table)?;
        let page_size = page_size.clamp(1, 1000);
        let (table, pk, after) = (
            table.to_string(),
            pk.to_string(),
            continuation.map(str::to_string),
        );
        self.with_conn(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT rk, props, version FROM entities WHERE tbl = ?1 AND pk = ?2 AND rk > ?3 ORDER BY rk LIMIT ?4",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map(params![table, pk, after.unwrap_or_default(), page_size as i64 + 1], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(db_err)?;
            let mut entities = Vec::new();
            for row in rows {
                let (rk, props, v) = row.map_err(db_err)?;
                entities.push(decode(pk.clone(), rk, &props, v)?);
            }
            // One extra row tells whether another page exists without a wasted round trip.
            let next = if entities.len() > page_size {
                entities.truncate(page_size);
                entities.last().map(|e| e.row_key.clone())
            } else {
                None
            };
            Ok(Page { entities, next })
        })
        .await
    }

    async fn batch(&self, table: &str, pk: &str, ops: Vec<BatchOp>) -> StoreResult<()> {
        check_table(table)?;
        validate_batch(pk, &ops)?;
        for op in &ops {
            match op {
                BatchOp::Insert(e) | BatchOp::Upsert(e) | BatchOp::Replace(e, _) => {
                    check_entity(table, e)?
                }
                BatchOp::Delete { row_key, .. } => validate_key("row key", row_key)?,
            }
        }
        let (table, pk) = (table.to_string(), pk.to_string());
        self.with_conn(move |c| {
            let tx = c.transaction().map_err(db_err)?;
            for op in &ops {
                match op {
                    BatchOp::Insert(e) => insert_row(&tx, &table, e).map(drop)?,
                    BatchOp::Upsert(e) => upsert_row(&tx, &table, e).map(drop)?,
                    BatchOp::Replace(e, tag) => replace_row(&tx, &table, e, tag).map(drop)?,
                    BatchOp::Delete { row_key, if_match } => {
                        delete_row(&tx, &table, &pk, row_key, if_match.as_ref())?
                    }
                }
            }
            // Dropping `tx` on an early `?` rolls back: all or nothing.
            tx.commit().map_err(db_err)
        })
        .await
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}
