//! Azure Table storage backend (azure_data_tables 0.21). See tests/store_contract.rs.
//!
//! Entities travel as `serde_json` maps so every property keeps its exact type:
//! `Prop::Int` goes out as an `Edm.Int64` string (a bare JSON number is stored as a double and
//! loses precision above 2^53), `Prop::Float` as an annotated `Edm.Double`.
//! Keys go into OData URLs such as `t(PartitionKey='..',RowKey='..')`; the crate does not double
//! single quotes, so this module does (a key like `o'connor` would otherwise break the URL).

use super::managed_identity::ManagedIdentityCredential;
use super::{
    is_reserved_property, validate_batch, validate_key, validate_props, BatchOp, ETag, Entity,
    Page, Prop, Store, StoreError, StoreResult,
};
use crate::config::AzureStorageSettings;
use crate::outbound::token::MsiEndpoint;
use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::{Etag, StatusCode};
use azure_data_tables::clients::TableServiceClientBuilder;
use azure_data_tables::prelude::*;
use azure_storage::{CloudLocation, StorageCredentials};
use futures::StreamExt;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

type Json = Map<String, Value>;

pub struct AzureTableStore {
    service: TableServiceClient,
    prefix: String,
    account: String,
    endpoint: String,
}

/// Shared-key credentials when a key is configured, the managed identity otherwise.
pub(crate) fn credentials(settings: &AzureStorageSettings) -> anyhow::Result<StorageCredentials> {
    credentials_from(settings, MsiEndpoint::from_settings(&settings.identity))
}

fn credentials_from(
    settings: &AzureStorageSettings,
    source: MsiEndpoint,
) -> anyhow::Result<StorageCredentials> {
    Ok(match &settings.key {
        Some(key) => {
            StorageCredentials::access_key(settings.account.clone(), key.expose().to_string())
        }
        None => StorageCredentials::token_credential(Arc::new(ManagedIdentityCredential::new(
            crate::outbound::http::shared()?,
            settings.managed_identity_client_id.clone(),
            source,
        ))),
    })
}

/// Endpoints without a trailing slash (`…/devstoreaccount1/` turns into `…//Tables`).
pub(crate) fn endpoint(configured: Option<&str>, account: &str, service: &str) -> String {
    configured
        .map(|e| e.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("https://{account}.{service}.core.windows.net"))
}

impl AzureTableStore {
    pub fn new(settings: &AzureStorageSettings) -> anyhow::Result<Self> {
        Self::with_credentials(settings, credentials(settings)?)
    }

    fn with_credentials(
        settings: &AzureStorageSettings,
        credentials: StorageCredentials,
    ) -> anyhow::Result<Self> {
        let endpoint = endpoint(
            settings.table_endpoint.as_deref(),
            &settings.account,
            "table",
        );
        url::Url::parse(&endpoint)
            .map_err(|e| anyhow::anyhow!("table endpoint {endpoint:?}: {e}"))?;
        if !settings.table_prefix.is_empty() {
            check_table_name(&settings.table_prefix, "x").map_err(|_| {
                anyhow::anyhow!(
                    "table prefix {:?}: letters and digits only, starting with a letter",
                    settings.table_prefix
                )
            })?;
        }
        let location = CloudLocation::Custom {
            account: settings.account.clone(),
            uri: endpoint.clone(),
        };
        let service = TableServiceClientBuilder::with_location(location, credentials).build();
        Ok(AzureTableStore {
            service,
            prefix: settings.table_prefix.clone(),
            account: settings.account.clone(),
            endpoint,
        })
    }

    fn table(&self, table: &str) -> StoreResult<TableClient> {
        let name = check_table_name(&self.prefix, table)?;
        Ok(self.service.table_client(name))
    }

    fn partition(&self, table: &str, pk: &str) -> StoreResult<PartitionKeyClient> {
        validate_key("partition key", pk)?;
        Ok(self.table(table)?.partition_key_client(odata_quote(pk)))
    }

    fn entity(&self, table: &str, pk: &str, rk: &str) -> StoreResult<EntityClient> {
        validate_key("row key", rk)?;
        Ok(self.partition(table, pk)?.entity_client(odata_quote(rk)))
    }
}

/// Azure table names: alphanumeric, starting with a letter, 3 to 63 characters.
fn check_table_name(prefix: &str, table: &str) -> StoreResult<String> {
    let name = format!("{prefix}{table}");
    let ok = (3..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric());
    if !ok {
        return Err(StoreError::Invalid(format!(
            "bad table name {name:?} (Azure: letters and digits, 3-63)"
        )));
    }
    Ok(name)
}

/// OData string literal body: a single quote is written twice.
fn odata_quote(s: &str) -> String {
    s.replace('\'', "''")
}

fn map_err(e: azure_core::Error) -> StoreError {
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code } => match status {
            StatusCode::Conflict => StoreError::Conflict,
            StatusCode::PreconditionFailed => StoreError::PreconditionFailed,
            StatusCode::NotFound if error_code.as_deref() == Some("TableNotFound") => {
                StoreError::Backend(format!(
                    "table does not exist (run ensure_tables first): {e}"
                ))
            }
            StatusCode::NotFound => StoreError::NotFound,
            StatusCode::BadRequest => {
                StoreError::Invalid(format!("azure table rejected the request: {e}"))
            }
            _ => StoreError::Backend(format!("azure table: {}", crate::redact::error_chain(&e))),
        },
        // The SDK's retry policy wraps the last error ("retry policy expired"): show the cause.
        _ => StoreError::Backend(format!("azure table: {}", crate::redact::error_chain(&e))),
    }
}

/// Map the status of one operation inside a failed entity-group transaction.
fn map_status(status: StatusCode) -> StoreError {
    match status {
        StatusCode::Conflict => StoreError::Conflict,
        StatusCode::PreconditionFailed => StoreError::PreconditionFailed,
        StatusCode::NotFound => StoreError::NotFound,
        StatusCode::BadRequest => {
            StoreError::Invalid("azure table rejected an operation of the batch (400)".into())
        }
        s => StoreError::Backend(format!(
            "azure table batch operation failed with status {}",
            s as u16
        )),
    }
}

fn etag_of(etag: &Etag) -> ETag {
    ETag(etag.to_string())
}

fn if_match(etag: &ETag) -> IfMatchCondition {
    IfMatchCondition::Etag(Etag::from(etag.0.clone()))
}

/// Table ETags are always weak (`W/"datetime'…'"`). Anything else can match no entity, and the
/// service answers 400 for it, so it is refused here as the mismatch it is (as SQLite does).
fn check_etag(etag: &ETag) -> StoreResult<()> {
    let ok = etag.0.strip_prefix("W/").is_some_and(|t| {
        t.len() >= 2 && t.starts_with('"') && t.ends_with('"') && !t.chars().any(|c| c.is_control())
    });
    if ok {
        Ok(())
    } else {
        Err(StoreError::PreconditionFailed)
    }
}

const EDM_INT64: &str = "Edm.Int64";
const EDM_DOUBLE: &str = "Edm.Double";

/// Entity → JSON body with OData type annotations.
fn to_json(e: &Entity) -> StoreResult<Json> {
    let mut m = Json::new();
    m.insert(
        "PartitionKey".into(),
        Value::String(e.partition_key.clone()),
    );
    m.insert("RowKey".into(), Value::String(e.row_key.clone()));
    for (name, prop) in &e.props {
        let annotation = format!("{name}@odata.type");
        match prop {
            Prop::Bool(b) => {
                m.insert(name.clone(), Value::Bool(*b));
            }
            Prop::Int(v) => {
                m.insert(annotation, Value::String(EDM_INT64.into()));
                m.insert(name.clone(), Value::String(v.to_string()));
            }
            Prop::Float(v) => {
                let n = serde_json::Number::from_f64(*v).ok_or_else(|| {
                    StoreError::Invalid(format!("property {name}: {v} is not a finite number"))
                })?;
                m.insert(annotation, Value::String(EDM_DOUBLE.into()));
                m.insert(name.clone(), Value::Number(n));
            }
            Prop::Str(s) => {
                m.insert(name.clone(), Value::String(s.clone()));
            }
        }
    }
    Ok(m)
}

/// JSON entity (full metadata) → Entity. The ETag comes from `odata.etag` or the response header.
fn from_json(mut m: Json, header_etag: Option<&Etag>) -> StoreResult<Entity> {
    let take_str = |m: &mut Json, k: &str| match m.remove(k) {
        Some(Value::String(s)) => Ok(s),
        other => Err(StoreError::Backend(format!(
            "entity without {k}: {other:?}"
        ))),
    };
    let pk = take_str(&mut m, "PartitionKey")?;
    let rk = take_str(&mut m, "RowKey")?;
    let etag = match (header_etag, m.get("odata.etag")) {
        (Some(t), _) => Some(etag_of(t)),
        (None, Some(Value::String(s))) => Some(ETag(s.clone())),
        _ => None,
    };
    let mut props = BTreeMap::new();
    for (name, value) in &m {
        if is_reserved_property(name) || name.contains('@') {
            continue;
        }
        let annotation = m.get(&format!("{name}@odata.type")).and_then(Value::as_str);
        let prop = match (annotation, value) {
            (Some("Edm.Int64" | "Edm.Int32"), Value::String(s)) => {
                Prop::Int(s.parse().map_err(|_| {
                    StoreError::Backend(format!("property {name}: bad Edm.Int64 {s:?}"))
                })?)
            }
            (Some("Edm.Int64" | "Edm.Int32"), Value::Number(n)) if n.is_i64() => {
                Prop::Int(n.as_i64().unwrap_or_default())
            }
            (Some("Edm.Double"), Value::Number(n)) => Prop::Float(n.as_f64().unwrap_or_default()),
            (Some("Edm.Double"), Value::String(s)) => Prop::Float(match s.as_str() {
                "Infinity" | "INF" => f64::INFINITY,
                "-Infinity" | "-INF" => f64::NEG_INFINITY,
                other => other.parse().unwrap_or(f64::NAN),
            }),
            (_, Value::Bool(b)) => Prop::Bool(*b),
            // Unannotated numbers: Edm.Int32 when integral, Edm.Double otherwise.
            (None, Value::Number(n)) if n.is_i64() => Prop::Int(n.as_i64().unwrap_or_default()),
            (_, Value::Number(n)) => Prop::Float(n.as_f64().unwrap_or_default()),
            // Edm.String, Edm.DateTime, Edm.Guid, Edm.Binary (base64): kept as text.
            (_, Value::String(s)) => Prop::Str(s.clone()),
            (_, Value::Null) => continue,
            (_, other) => Prop::Str(other.to_string()),
        };
        props.insert(name.clone(), prop);
    }
    Ok(Entity {
        partition_key: pk,
        row_key: rk,
        props,
        etag,
    })
}

fn check_entity(e: &Entity) -> StoreResult<()> {
    validate_key("partition key", &e.partition_key)?;
    validate_key("row key", &e.row_key)?;
    validate_props(e)
}

#[async_trait]
impl Store for AzureTableStore {
    async fn ensure_tables(&self) -> StoreResult<()> {
        for name in super::tables::ALL {
            match self.table(name)?.create().await {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::HttpResponse {
                            status: StatusCode::Conflict,
                            ..
                        }
                    ) => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        Ok(())
    }

    async fn get(&self, table: &str, pk: &str, rk: &str) -> StoreResult<Option<Entity>> {
        let client = self.entity(table, pk, rk)?;
        match client.get::<Json>().await {
            Ok(resp) => from_json(resp.entity, Some(&resp.etag)).map(Some),
            Err(e) => match map_err(e) {
                StoreError::NotFound => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn insert(&self, table: &str, entity: &Entity) -> StoreResult<ETag> {
        check_entity(entity)?;
        let body = to_json(entity)?;
        let resp = self
            .table(table)?
            .insert::<_, Json>(&body)
            .map_err(map_err)?
            .await
            .map_err(map_err)?;
        Ok(etag_of(&resp.etag))
    }

    async fn upsert(&self, table: &str, entity: &Entity) -> StoreResult<ETag> {
        check_entity(entity)?;
        let body = to_json(entity)?;
        let client = self.entity(table, &entity.partition_key, &entity.row_key)?;
        let resp = client
            .insert_or_replace(&body)
            .map_err(map_err)?
            .await
            .map_err(map_err)?;
        Ok(etag_of(&resp.etag))
    }

    async fn replace(&self, table: &str, entity: &Entity, etag: &ETag) -> StoreResult<ETag> {
        check_entity(entity)?;
        check_etag(etag)?;
        let body = to_json(entity)?;
        let client = self.entity(table, &entity.partition_key, &entity.row_key)?;
        let resp = client
            .update(&body, if_match(etag))
            .map_err(map_err)?
            .await
            .map_err(map_err)?;
        Ok(etag_of(&resp.etag))
    }

    async fn delete(
        &self,
        table: &str,
        pk: &str,
        rk: &str,
        etag: Option<&ETag>,
    ) -> StoreResult<()> {
        let client = self.entity(table, pk, rk)?;
        if let Some(tag) = etag {
            check_etag(tag)?;
        }
        let cond = etag.map(if_match).unwrap_or(IfMatchCondition::Any);
        client.delete().if_match(cond).await.map_err(map_err)?;
        Ok(())
    }

    async fn query(
        &self,
        table: &str,
        pk: &str,
        continuation: Option<&str>,
        page_size: usize,
    ) -> StoreResult<Page> {
        validate_key("partition key", pk)?;
        let page_size = page_size.clamp(1, 1000);
        let mut filter = format!("PartitionKey eq '{}'", odata_quote(pk));
        if let Some(after) = continuation {
            filter.push_str(&format!(" and RowKey gt '{}'", odata_quote(after)));
        }
        // One extra row tells whether another page exists without a wasted round trip (max top is 1000).
        let top = (page_size + 1).min(1000) as u32;
        let mut stream = self
            .table(table)?
            .query()
            .filter(Filter::new(filter))
            .top(Top::new(top))
            .into_stream::<Json>();
        let mut entities = Vec::new();
        let mut more = false;
        // The service may answer a short (even empty) page plus its own continuation; keep reading
        // until we hold more than a page or the results end.
        while let Some(page) = stream.next().await {
            let page = page.map_err(map_err)?;
            for m in page.entities {
                entities.push(from_json(m, None)?);
            }
            if entities.len() > page_size {
                more = true;
                break;
            }
        }
        let next = if more {
            entities.truncate(page_size);
            entities.last().map(|e| e.row_key.clone())
        } else {
            None
        };
        Ok(Page { entities, next })
    }

    async fn batch(&self, table: &str, pk: &str, ops: Vec<BatchOp>) -> StoreResult<()> {
        validate_batch(pk, &ops)?;
        if ops.is_empty() {
            return Ok(());
        }
        let partition = self.partition(table, pk)?;
        let mut tx = partition.transaction();
        for op in &ops {
            tx = match op {
                BatchOp::Insert(e) => {
                    check_entity(e)?;
                    tx.insert(to_json(e)?).map_err(map_err)?
                }
                BatchOp::Upsert(e) => {
                    check_entity(e)?;
                    tx.insert_or_replace(odata_quote(&e.row_key), to_json(e)?)
                        .map_err(map_err)?
                }
                BatchOp::Replace(e, tag) => {
                    check_entity(e)?;
                    check_etag(tag)?;
                    tx.update(odata_quote(&e.row_key), to_json(e)?, Some(if_match(tag)))
                        .map_err(map_err)?
                }
                BatchOp::Delete {
                    row_key,
                    if_match: tag,
                } => {
                    validate_key("row key", row_key)?;
                    if let Some(tag) = tag {
                        check_etag(tag)?;
                    }
                    tx.delete(odata_quote(row_key), tag.as_ref().map(if_match))
                        .map_err(map_err)?
                }
            };
        }
        // A failed transaction still comes back as `Ok`: the verdict is in each operation's status.
        let resp = tx.await.map_err(map_err)?;
        if let Some(failed) = resp
            .operation_responses
            .iter()
            .find(|r| !r.status_code.is_success())
        {
            return Err(map_status(failed.status_code));
        }
        if resp.operation_responses.len() != ops.len() {
            return Err(StoreError::Backend(format!(
                "azure table batch: {} operations sent, {} answers received",
                ops.len(),
                resp.operation_responses.len()
            )));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("azure-table:{}@{}", self.account, self.endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_azure_rules() {
        assert_eq!(check_table_name("t123", "runs").unwrap(), "t123runs");
        assert!(check_table_name("", "ab").is_err());
        assert!(check_table_name("1abc", "runs").is_err());
        assert!(check_table_name("a_b", "runs").is_err());
        assert!(check_table_name(&"a".repeat(60), "runs").is_err());
    }

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(odata_quote("o'connor"), "o''connor");
        assert_eq!(odata_quote("''"), "''''");
    }

    #[test]
    fn int64_goes_out_as_annotated_string_and_comes_back_exact() {
        let e = Entity::new("p", "r")
            .with("big", 9_007_199_254_740_993i64)
            .with("max", i64::MAX)
            .with("f", 2.0)
            .with("b", true)
            .with("s", "o'connor");
        let json = to_json(&e).unwrap();
        assert_eq!(json["big"], Value::String("9007199254740993".into()));
        assert_eq!(json["big@odata.type"], Value::String("Edm.Int64".into()));
        assert_eq!(json["f@odata.type"], Value::String("Edm.Double".into()));
        let mut back = json.clone();
        back.insert("odata.etag".into(), Value::String("W/\"x\"".into()));
        back.insert(
            "Timestamp".into(),
            Value::String("2026-01-01T00:00:00Z".into()),
        );
        back.insert(
            "Timestamp@odata.type".into(),
            Value::String("Edm.DateTime".into()),
        );
        let got = from_json(back, None).unwrap();
        assert_eq!(got.props, e.props);
        assert_eq!(got.etag, Some(ETag("W/\"x\"".into())));
    }

    #[test]
    fn unannotated_numbers_and_reserved_names() {
        let m: Json =
            serde_json::from_str(r#"{"PartitionKey":"p","RowKey":"r","i":5,"d":1.5}"#).unwrap();
        let e = from_json(m, None).unwrap();
        assert_eq!(e.props["i"], Prop::Int(5));
        assert_eq!(e.props["d"], Prop::Float(1.5));
        assert!(check_entity(&Entity::new("p", "r").with("Timestamp", "x")).is_err());
        assert!(to_json(&Entity::new("p", "r").with("nan", f64::NAN)).is_err());
    }

    /// Without a key, requests carry a bearer token from the managed identity endpoint.
    #[tokio::test]
    async fn managed_identity_token_reaches_the_table_service() {
        use wiremock::matchers::{header, method, path, query_param};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        Mock::given(method("GET"))
            .and(path("/msi"))
            .and(query_param("client_id", "mi-client"))
            .and(query_param("resource", "https://storage.azure.com/"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"access_token": "mi-token", "expires_on": expires.to_string()}),
            ))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/school/brmappings(PartitionKey='o''c',RowKey='r')"))
            .and(header("authorization", "Bearer mi-token"))
            .respond_with(
                ResponseTemplate::new(404)
                    .insert_header("x-ms-error-code", "ResourceNotFound")
                    .set_body_json(
                        serde_json::json!({"odata.error": {"code": "ResourceNotFound"}}),
                    ),
            )
            .expect(2)
            .mount(&server)
            .await;
        let settings = AzureStorageSettings {
            account: "school".into(),
            key: None,
            table_endpoint: Some(format!("{}/school/", server.uri())),
            blob_endpoint: None,
            managed_identity_client_id: Some("mi-client".into()),
            identity: Default::default(),
            table_prefix: "br".into(),
        };
        let source = MsiEndpoint::AppService {
            endpoint: format!("{}/msi", server.uri()),
            header: crate::config::Secret::new("h"),
        };
        let store = AzureTableStore::with_credentials(
            &settings,
            credentials_from(&settings, source).unwrap(),
        )
        .unwrap();
        assert!(store.get("mappings", "o'c", "r").await.unwrap().is_none());
        // The second call reuses the cached token (the token mock expects exactly one call).
        assert!(store.get("mappings", "o'c", "r").await.unwrap().is_none());
        assert!(!store.describe().contains("mi-token"));
    }
}
