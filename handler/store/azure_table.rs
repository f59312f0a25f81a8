//! Azure Table storage backend (azure_data_tables 0.21). See tests/store_contract.rs.

use super::{BatchOp, ETag, Entity, Page, Store, StoreError, StoreResult};
use crate::config::AzureStorageSettings;
use async_trait::async_trait;

pub struct AzureTableStore {
    settings: AzureStorageSettings,
}

impl AzureTableStore {
    pub fn new(settings: &AzureStorageSettings) -> anyhow::Result<Self> {
        Ok(AzureTableStore { settings: settings.clone() })
    }
}

fn todo_err() -> StoreError {
    StoreError::Backend("azure table backend not implemented yet".into())
}

#[async_trait]
impl Store for AzureTableStore {
    async fn ensure_tables(&self) -> StoreResult<()> { Err(todo_err()) }
    async fn get(&self, _: &str, _: &str, _: &str) -> StoreResult<Option<Entity>> { Err(todo_err()) }
    async fn insert(&self, _: &str, _: &Entity) -> StoreResult<ETag> { Err(todo_err()) }
    async fn upsert(&self, _: &str, _: &Entity) -> StoreResult<ETag> { Err(todo_err()) }
    async fn replace(&self, _: &str, _: &Entity, _: &ETag) -> StoreResult<ETag> { Err(todo_err()) }
    async fn delete(&self, _: &str, _: &str, _: &str, _: Option<&ETag>) -> StoreResult<()> { Err(todo_err()) }
    async fn query(&self, _: &str, _: &str, _: Option<&str>, _: usize) -> StoreResult<Page> { Err(todo_err()) }
    async fn batch(&self, _: &str, _: &str, _: Vec<BatchOp>) -> StoreResult<()> { Err(todo_err()) }
    fn describe(&self) -> String { format!("azure-table:{}", self.settings.account) }
}
