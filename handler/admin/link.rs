//! One-time sign-in links for `serve`: someone at the server's console (who can read the store
//! anyway) runs `handler admin sign-in-link` and opens the printed URL; the link buys one admin
//! session, once, within [`LINK_SECS`]. The store keeps only the SHA-256 of the token, so a copy
//! of the store does not sign anyone in; redeeming deletes the row under its ETag, so two
//! browsers racing with one link get one session between them.

use crate::store::{tables, Entity, SharedStore, StoreError};
use sha2::{Digest, Sha256};

pub const LINK_PATH: &str = "/manage/sync/login/link";
/// Ten minutes: long enough to copy the link into a browser, short enough to be useless later.
pub const LINK_SECS: i64 = 600;
const PARTITION: &str = "admin-link";

fn row_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// A fresh link token (kept hashed in the store until redeemed or expired).
pub async fn create(store: &SharedStore, now: i64) -> Result<String, StoreError> {
    let token = hex::encode(rand::random::<[u8; 32]>());
    let row = Entity::new(PARTITION, row_key(&token)).with("expires", now + LINK_SECS);
    store.insert(tables::RUNS, &row).await?;
    Ok(token)
}

/// Whether `token` is a link that was issued, has not expired and was not used; used up either way.
pub async fn redeem(store: &SharedStore, token: &str, now: i64) -> Result<bool, StoreError> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(false);
    }
    let key = row_key(token);
    let Some(row) = store.get(tables::RUNS, PARTITION, &key).await? else {
        return Ok(false);
    };
    match store
        .delete(tables::RUNS, PARTITION, &key, row.etag.as_ref())
        .await
    {
        Ok(()) => {}
        // Someone redeemed it between our read and our delete.
        Err(StoreError::NotFound | StoreError::PreconditionFailed) => return Ok(false),
        Err(e) => return Err(e),
    }
    Ok(row.int("expires").is_some_and(|e| e > now))
}

/// The URL to open, from the address `serve` listens on.
pub fn url(serve_addr: &std::net::SocketAddr, token: &str) -> String {
    let host = if serve_addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        match serve_addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        }
    };
    format!(
        "http://{host}:{}{LINK_PATH}?token={token}",
        serve_addr.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_link_signs_in_once_and_only_before_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(
            crate::store::sqlite::SqliteStore::open(&dir.path().join("s.sqlite")).unwrap(),
        );
        store.ensure_tables().await.unwrap();
        let t = create(&store, 1_000).await.unwrap();
        assert!(!redeem(&store, &"0".repeat(64), 1_001).await.unwrap());
        assert!(!redeem(&store, "not hex", 1_001).await.unwrap());
        assert!(redeem(&store, &t, 1_001).await.unwrap());
        assert!(!redeem(&store, &t, 1_002).await.unwrap(), "used once");
        let late = create(&store, 1_000).await.unwrap();
        assert!(!redeem(&store, &late, 1_000 + LINK_SECS).await.unwrap());
        assert!(
            !redeem(&store, &late, 1_001).await.unwrap(),
            "an expired try uses it up"
        );
        let addr: std::net::SocketAddr = "0.0.0.0:7071".parse().unwrap();
        assert_eq!(
            url(&addr, "ab"),
            "http://127.0.0.1:7071/manage/sync/login/link?token=ab"
        );
    }
}
