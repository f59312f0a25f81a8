//! Blobs: built Teams app packages and full run traces. Azure Blob storage in the Functions
//! deployment, a plain folder when standalone.

use super::{StoreError, StoreResult};
use async_trait::async_trait;
use std::path::{Component, Path, PathBuf};

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    async fn put(
        &self,
        container: &str,
        name: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> StoreResult<()>;
    async fn get(&self, container: &str, name: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn list(&self, container: &str, prefix: &str) -> StoreResult<Vec<String>>;
    async fn delete(&self, container: &str, name: &str) -> StoreResult<()>;
    fn describe(&self) -> String;
}

/// Container and blob names as Azure accepts them; checked on both backends so data can move.
pub(crate) fn check_names(container: &str, name: &str) -> StoreResult<()> {
    let container_ok = (3..=63).contains(&container.len())
        && container
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !container.starts_with('-')
        && !container.contains("--");
    if !container_ok {
        return Err(StoreError::Invalid(format!(
            "bad container name {container:?}"
        )));
    }
    let path_ok = !name.is_empty()
        && name.len() <= 1024
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        && !name.contains('\\');
    if !path_ok {
        return Err(StoreError::Invalid(format!("bad blob name {name:?}")));
    }
    Ok(())
}

pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub fn new(root: PathBuf) -> Self {
        FsBlobStore { root }
    }

    fn path(&self, container: &str, name: &str) -> StoreResult<PathBuf> {
        check_names(container, name)?;
        Ok(self.root.join(container).join(name))
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("blob folder: {e}"))
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(
        &self,
        container: &str,
        name: &str,
        bytes: Vec<u8>,
        _content_type: &str,
    ) -> StoreResult<()> {
        let path = self.path(container, name)?;
        // Write then rename, so a reader never sees half a package; folders and files owner-only.
        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
        let dir = path.parent().map(Path::to_path_buf);
        let written = tmp.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            if let Some(dir) = dir {
                super::private_fs::private_dir(&dir)?;
            }
            let mut f = std::fs::OpenOptions::new();
            f.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut f, super::private_fs::FILE_MODE);
            f.open(&written)?.write_all(&bytes)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("blob folder: {e}")))?
        .map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)
    }

    async fn get(&self, container: &str, name: &str) -> StoreResult<Option<Vec<u8>>> {
        match tokio::fs::read(self.path(container, name)?).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn list(&self, container: &str, prefix: &str) -> StoreResult<Vec<String>> {
        check_names(container, "x")?;
        let base = self.root.join(container);
        let mut out = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            let mut rd = match tokio::fs::read_dir(&dir).await {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            };
            while let Some(entry) = rd.next_entry().await.map_err(io)? {
                let p = entry.path();
                if entry.file_type().await.map_err(io)?.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&base) {
                    let rel = rel.to_string_lossy().to_string();
                    if rel.starts_with(prefix) && !rel.contains(".tmp-") {
                        out.push(rel);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn delete(&self, container: &str, name: &str) -> StoreResult<()> {
        match tokio::fs::remove_file(self.path(container, name)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound),
            Err(e) => Err(io(e)),
        }
    }

    fn describe(&self) -> String {
        format!("folder:{}", self.root.display())
    }
}

pub use super::azure_blob::AzureBlobStore;

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn blobs_and_their_folders_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path().join("blobs"));
        store
            .put(
                "run-traces",
                "2026/run.json",
                b"{}".to_vec(),
                "application/json",
            )
            .await
            .unwrap();
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let root = dir.path().join("blobs");
        assert_eq!(mode(root.join("run-traces/2026/run.json")), 0o600);
        assert_eq!(mode(root.join("run-traces/2026")), 0o700);
        assert_eq!(mode(root.join("run-traces")), 0o700);
    }
}
