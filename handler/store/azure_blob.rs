//! Azure Blob storage backend (azure_storage_blobs 0.21).

use super::blob::BlobStore;
use super::{StoreError, StoreResult};
use crate::config::AzureStorageSettings;
use async_trait::async_trait;

pub struct AzureBlobStore {
    settings: AzureStorageSettings,
}

impl AzureBlobStore {
    pub fn new(settings: &AzureStorageSettings) -> anyhow::Result<Self> {
        Ok(AzureBlobStore { settings: settings.clone() })
    }
}

fn todo_err() -> StoreError {
    StoreError::Backend("azure blob backend not implemented yet".into())
}

#[async_trait]
impl BlobStore for AzureBlobStore {
    async fn put(&self, _: &str, _: &str, _: Vec<u8>, _: &str) -> StoreResult<()> { Err(todo_err()) }
    async fn get(&self, _: &str, _: &str) -> StoreResult<Option<Vec<u8>>> { Err(todo_err()) }
    async fn list(&self, _: &str, _: &str) -> StoreResult<Vec<String>> { Err(todo_err()) }
    async fn delete(&self, _: &str, _: &str) -> StoreResult<()> { Err(todo_err()) }
    fn describe(&self) -> String { format!("azure-blob:{}", self.settings.account) }
}
