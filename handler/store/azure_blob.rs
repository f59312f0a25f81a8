//! Azure Blob storage backend (azure_storage_blobs 0.21).
//!
//! Containers are created on demand: a put that finds no container creates it and tries again,
//! so the common path costs one request.

use super::azure_table::{credentials, endpoint};
use super::blob::{check_names, BlobStore};
use super::{StoreError, StoreResult};
use crate::config::AzureStorageSettings;
use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::StatusCode;
use azure_storage::CloudLocation;
use azure_storage_blobs::prelude::*;
use futures::StreamExt;

pub struct AzureBlobStore {
    service: BlobServiceClient,
    account: String,
    endpoint: String,
}

impl AzureBlobStore {
    pub fn new(settings: &AzureStorageSettings) -> anyhow::Result<Self> {
        let endpoint = endpoint(settings.blob_endpoint.as_deref(), &settings.account, "blob");
        url::Url::parse(&endpoint)
            .map_err(|e| anyhow::anyhow!("blob endpoint {endpoint:?}: {e}"))?;
        let location = CloudLocation::Custom {
            account: settings.account.clone(),
            uri: endpoint.clone(),
        };
        let service =
            ClientBuilder::with_location(location, credentials(settings)?).blob_service_client();
        Ok(AzureBlobStore {
            service,
            account: settings.account.clone(),
            endpoint,
        })
    }
}

fn status_of(e: &azure_core::Error) -> Option<(StatusCode, Option<&str>)> {
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code } => Some((*status, error_code.as_deref())),
        _ => None,
    }
}

fn is_not_found(e: &azure_core::Error) -> bool {
    matches!(status_of(e), Some((StatusCode::NotFound, _)))
}

fn backend(e: azure_core::Error) -> StoreError {
    StoreError::Backend(format!("azure blob: {}", crate::redact::error_chain(&e)))
}

#[async_trait]
impl BlobStore for AzureBlobStore {
    async fn put(
        &self,
        container: &str,
        name: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> StoreResult<()> {
        check_names(container, name)?;
        let containers = self.service.container_client(container);
        let blob = containers.blob_client(name);
        let put = || {
            blob.put_block_blob(bytes.clone())
                .content_type(content_type.to_string())
        };
        match put().await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    status_of(&e),
                    Some((StatusCode::NotFound, Some("ContainerNotFound")))
                ) =>
            {
                match containers.create().await {
                    Ok(_) => {}
                    // Someone else created it in between: fine.
                    Err(e) if matches!(status_of(&e), Some((StatusCode::Conflict, _))) => {}
                    Err(e) => return Err(backend(e)),
                }
                put().await.map(drop).map_err(backend)
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn get(&self, container: &str, name: &str) -> StoreResult<Option<Vec<u8>>> {
        check_names(container, name)?;
        let blob = self.service.container_client(container).blob_client(name);
        match blob.get_content().await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if is_not_found(&e) => Ok(None),
            // The crate reads in ranges; an empty blob has no first range and answers 416.
            Err(e)
                if matches!(
                    status_of(&e),
                    Some((StatusCode::RequestedRangeNotSatisfiable, _))
                ) =>
            {
                match blob.get_properties().await {
                    Ok(p) if p.blob.properties.content_length == 0 => Ok(Some(Vec::new())),
                    Ok(_) => Err(backend(e)),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(backend(e)),
                }
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn list(&self, container: &str, prefix: &str) -> StoreResult<Vec<String>> {
        check_names(container, "x")?;
        let mut builder = self.service.container_client(container).list_blobs();
        if !prefix.is_empty() {
            builder = builder.prefix(prefix.to_string());
        }
        let mut stream = builder.into_stream();
        let mut out = Vec::new();
        while let Some(page) = stream.next().await {
            match page {
                Ok(page) => out.extend(page.blobs.blobs().map(|b| b.name.clone())),
                // No container yet means nothing was ever put: an empty list, like the folder backend.
                Err(e) if is_not_found(&e) => return Ok(Vec::new()),
                Err(e) => return Err(backend(e)),
            }
        }
        out.sort();
        Ok(out)
    }

    async fn delete(&self, container: &str, name: &str) -> StoreResult<()> {
        check_names(container, name)?;
        match self
            .service
            .container_client(container)
            .blob_client(name)
            .delete()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Err(StoreError::NotFound),
            Err(e) => Err(backend(e)),
        }
    }

    fn describe(&self) -> String {
        format!("azure-blob:{}@{}", self.account, self.endpoint)
    }
}
