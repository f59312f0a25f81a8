//! Tokens for a (user-assigned) managed identity, without the heavy `azure_identity` crate.
//!
//! App Service / Functions expose `IDENTITY_ENDPOINT` + `IDENTITY_HEADER` (api-version 2019-08-01);
//! elsewhere (VMs, containers) the Instance Metadata Service answers at a fixed link-local address.
//! Tokens are cached per resource until five minutes before they expire. The token value is held
//! in `azure_core::auth::Secret`, whose `Debug` is redacted, and never appears in logs or errors.

use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_core::error::{Error, ErrorKind};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::Mutex;

const APP_SERVICE_API_VERSION: &str = "2019-08-01";
const IMDS_API_VERSION: &str = "2018-02-01";
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// A cached token is renewed once it has less than this left.
const REFRESH_MARGIN: time::Duration = time::Duration::minutes(5);

/// Where tokens come from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// App Service / Functions: `IDENTITY_ENDPOINT`, sent with `X-IDENTITY-HEADER: <IDENTITY_HEADER>`.
    AppService { endpoint: String, header: String },
    /// Instance Metadata Service (`Metadata: true`); the URL is a parameter so tests can point it elsewhere.
    Imds { endpoint: String },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // IDENTITY_HEADER is a secret too: it is what proves the caller is the app.
            TokenSource::AppService { endpoint, .. } => write!(f, "AppService({endpoint})"),
            TokenSource::Imds { endpoint } => write!(f, "Imds({endpoint})"),
        }
    }
}

impl TokenSource {
    /// App Service variables when both are set, IMDS otherwise.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let non_empty = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        match (non_empty("IDENTITY_ENDPOINT"), non_empty("IDENTITY_HEADER")) {
            (Some(endpoint), Some(header)) => TokenSource::AppService { endpoint, header },
            _ => TokenSource::Imds {
                endpoint: IMDS_ENDPOINT.to_string(),
            },
        }
    }
}

pub struct ManagedIdentityCredential {
    client_id: Option<String>,
    source: TokenSource,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, AccessToken>>,
}

impl std::fmt::Debug for ManagedIdentityCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedIdentityCredential")
            .field("client_id", &self.client_id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_on: Option<serde_json::Value>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// The endpoints send numbers as JSON strings ("1700000000") or as numbers.
fn as_i64(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn credential_error(msg: impl Into<String>) -> Error {
    Error::message(ErrorKind::Credential, msg.into())
}

impl ManagedIdentityCredential {
    /// `client_id` of the user-assigned identity (`None` = the system-assigned one).
    pub fn new(client_id: Option<String>) -> Self {
        Self::with_source(client_id, TokenSource::from_env())
    }

    pub fn with_source(client_id: Option<String>, source: TokenSource) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        ManagedIdentityCredential {
            client_id,
            source,
            http,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn source(&self) -> &TokenSource {
        &self.source
    }

    async fn fetch(&self, resource: &str) -> azure_core::Result<AccessToken> {
        let mut query: Vec<(&str, &str)> = vec![("resource", resource)];
        if let Some(id) = &self.client_id {
            query.push(("client_id", id));
        }
        let request = match &self.source {
            TokenSource::AppService { endpoint, header } => self
                .http
                .get(endpoint)
                .query(&[("api-version", APP_SERVICE_API_VERSION)])
                .query(&query)
                .header("X-IDENTITY-HEADER", header),
            TokenSource::Imds { endpoint } => self
                .http
                .get(endpoint)
                .query(&[("api-version", IMDS_API_VERSION)])
                .query(&query)
                .header("Metadata", "true"),
        };
        let response = request.send().await.map_err(|e| {
            credential_error(format!(
                "managed identity endpoint {:?} unreachable: {}",
                self.source,
                crate::redact::error_chain(&e.without_url())
            ))
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            credential_error(format!(
                "managed identity endpoint {:?}: {}",
                self.source,
                crate::redact::error_chain(&e.without_url())
            ))
        })?;
        if !status.is_success() {
            // A short excerpt tells the operator what is wrong; scrubbed in case it echoes the request.
            let excerpt = crate::redact::excerpt(&String::from_utf8_lossy(&body), 200);
            return Err(credential_error(format!(
                "managed identity endpoint {:?} answered {status}: {excerpt}",
                self.source
            )));
        }
        // Never include the body of a success answer in an error: it holds the token.
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            credential_error(format!(
                "managed identity answer is not a token response ({e})"
            ))
        })?;
        let now = OffsetDateTime::now_utc();
        let expires_on = if let Some(ts) = parsed.expires_on.as_ref().and_then(as_i64) {
            OffsetDateTime::from_unix_timestamp(ts).map_err(|_| {
                credential_error("managed identity answer has an invalid expires_on")
            })?
        } else if let Some(secs) = parsed.expires_in.as_ref().and_then(as_i64) {
            now + time::Duration::seconds(secs)
        } else {
            return Err(credential_error(
                "managed identity answer has neither expires_on nor expires_in",
            ));
        };
        tracing::debug!(source = ?self.source, resource, %expires_on, "managed identity token obtained");
        Ok(AccessToken::new(
            Secret::new(parsed.access_token),
            expires_on,
        ))
    }
}

/// `https://storage.azure.com/.default` → `https://storage.azure.com/` (the v1 `resource` form).
pub fn resource_of(scope: &str) -> &str {
    scope.strip_suffix(".default").unwrap_or(scope)
}

#[async_trait::async_trait]
impl TokenCredential for ManagedIdentityCredential {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(credential_error(format!(
                "managed identity takes exactly one scope, got {}",
                scopes.len()
            )));
        };
        let resource = resource_of(scope);
        // Holding the lock while fetching makes concurrent callers share one request.
        let mut cache = self.cache.lock().await;
        if let Some(token) = cache.get(resource) {
            if token.expires_on - REFRESH_MARGIN > OffsetDateTime::now_utc() {
                return Ok(token.clone());
            }
        }
        let token = self.fetch(resource).await?;
        cache.insert(resource.to_string(), token.clone());
        Ok(token)
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        self.cache.lock().await.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const SCOPE: &str = "https://storage.azure.com/.default";

    fn app_service(server: &MockServer) -> TokenSource {
        let uri = format!("{}/msi/token", server.uri());
        TokenSource::from_lookup(|k| match k {
            "IDENTITY_ENDPOINT" => Some(uri.clone()),
            "IDENTITY_HEADER" => Some("hdr-secret".into()),
            _ => None,
        })
    }

    fn expiring_in(secs: i64) -> String {
        (OffsetDateTime::now_utc().unix_timestamp() + secs).to_string()
    }

    #[test]
    fn source_selection_and_scope_mapping() {
        assert_eq!(
            TokenSource::from_lookup(|_| None),
            TokenSource::Imds {
                endpoint: IMDS_ENDPOINT.into()
            }
        );
        // One variable alone is not enough.
        let only_endpoint =
            TokenSource::from_lookup(|k| (k == "IDENTITY_ENDPOINT").then(|| "http://x".into()));
        assert!(matches!(only_endpoint, TokenSource::Imds { .. }));
        assert_eq!(resource_of(SCOPE), "https://storage.azure.com/");
        let src = TokenSource::AppService {
            endpoint: "http://e".into(),
            header: "hdr-secret".into(),
        };
        assert!(!format!("{src:?}").contains("hdr-secret"));
    }

    #[tokio::test]
    async fn app_service_token_is_requested_correctly_and_cached() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/msi/token"))
            .and(query_param("api-version", "2019-08-01"))
            .and(query_param("resource", "https://storage.azure.com/"))
            .and(query_param("client_id", "client-123"))
            .and(header("X-IDENTITY-HEADER", "hdr-secret"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "access_token": "tok-very-secret",
                "expires_on": expiring_in(3600),
                "resource": "https://storage.azure.com/",
                "token_type": "Bearer",
                "client_id": "client-123"
            })))
            .expect(1)
            .mount(&server)
            .await;
        let cred =
            ManagedIdentityCredential::with_source(Some("client-123".into()), app_service(&server));
        let t1 = cred.get_token(&[SCOPE]).await.unwrap();
        let t2 = cred.get_token(&[SCOPE]).await.unwrap();
        assert_eq!(t1.token.secret(), "tok-very-secret");
        assert_eq!(t1.expires_on, t2.expires_on);
        assert!(!format!("{cred:?} {t1:?}").contains("tok-very-secret"));
        // `expect(1)` is checked when the server drops: the second call came from the cache.
    }

    #[tokio::test]
    async fn token_close_to_expiry_is_renewed() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "access_token": "short-lived",
                "expires_on": expiring_in(120).parse::<i64>().unwrap(),
            })))
            .expect(2)
            .mount(&server)
            .await;
        let cred = ManagedIdentityCredential::with_source(None, app_service(&server));
        cred.get_token(&[SCOPE]).await.unwrap();
        cred.get_token(&[SCOPE]).await.unwrap();
    }

    #[tokio::test]
    async fn imds_shape_uses_metadata_header_and_expires_in() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/metadata/identity/oauth2/token"))
            .and(header("Metadata", "true"))
            .and(query_param("resource", "https://storage.azure.com/"))
            .and(query_param("client_id", "abc"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "access_token": "imds-token",
                "expires_in": "3599",
            })))
            .expect(1)
            .mount(&server)
            .await;
        let source = TokenSource::Imds {
            endpoint: format!("{}/metadata/identity/oauth2/token", server.uri()),
        };
        let cred = ManagedIdentityCredential::with_source(Some("abc".into()), source);
        let t = cred.get_token(&[SCOPE]).await.unwrap();
        assert_eq!(t.token.secret(), "imds-token");
        assert!(t.expires_on > OffsetDateTime::now_utc() + time::Duration::minutes(55));
    }

    #[tokio::test]
    async fn errors_are_credential_errors_without_secrets() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(400).set_body_string("{\"error\":\"invalid_request\"}"),
            )
            .mount(&server)
            .await;
        let cred = ManagedIdentityCredential::with_source(Some("x".into()), app_service(&server));
        let err = cred.get_token(&[SCOPE]).await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Credential));
        let text = err.to_string();
        assert!(
            text.contains("400") && text.contains("invalid_request"),
            "{text}"
        );
        assert!(!text.contains("hdr-secret"));
        assert!(cred.get_token(&[]).await.is_err());
    }
}
