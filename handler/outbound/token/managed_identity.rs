//! Tokens for a managed identity (system-assigned, or user-assigned by client id), without the
//! heavy `azure_identity` crate. App Service / Functions expose `IDENTITY_ENDPOINT` +
//! `IDENTITY_HEADER` (api-version 2019-08-01); elsewhere (VMs, containers) the Instance Metadata
//! Service answers at a fixed link-local address. The scope is the v1 resource
//! (`https://storage.azure.com/`); a v2 `…/.default` scope is turned into it.

use super::response::request_token;
use super::{endpoint_label, AccessToken, Fetch, TokenError};
use crate::config::{IdentitySettings, Secret};
use std::sync::Arc;
use std::time::Duration;

const APP_SERVICE_API_VERSION: &str = "2019-08-01";
const IMDS_API_VERSION: &str = "2018-02-01";
pub const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where managed-identity tokens come from.
#[derive(Clone, PartialEq, Eq)]
pub enum MsiEndpoint {
    /// App Service / Functions: `IDENTITY_ENDPOINT`, sent with `X-IDENTITY-HEADER: <IDENTITY_HEADER>`.
    AppService { endpoint: String, header: Secret },
    /// Instance Metadata Service (`Metadata: true`); the URL is a parameter so tests can point it elsewhere.
    Imds { endpoint: String },
}

impl std::fmt::Debug for MsiEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // IDENTITY_HEADER is a secret too: it is what proves the caller is the app.
            MsiEndpoint::AppService { endpoint, .. } => write!(f, "AppService({endpoint})"),
            MsiEndpoint::Imds { endpoint } => write!(f, "Imds({endpoint})"),
        }
    }
}

impl MsiEndpoint {
    /// App Service when both of its settings are there, IMDS otherwise.
    pub fn from_settings(identity: &IdentitySettings) -> Self {
        match (&identity.endpoint, &identity.header) {
            (Some(endpoint), Some(header)) => MsiEndpoint::AppService {
                endpoint: endpoint.clone(),
                header: header.clone(),
            },
            _ => MsiEndpoint::Imds {
                endpoint: IMDS_ENDPOINT.to_string(),
            },
        }
    }
}

/// `https://storage.azure.com/.default` → `https://storage.azure.com/` (the v1 `resource` form).
pub fn resource_of(scope: &str) -> &str {
    scope.strip_suffix(".default").unwrap_or(scope)
}

#[derive(Debug)]
pub struct ManagedIdentity {
    http: reqwest::Client,
    endpoint: MsiEndpoint,
    /// The user-assigned identity; `None` = the system-assigned one.
    client_id: Option<String>,
}

impl ManagedIdentity {
    pub fn new(http: reqwest::Client, endpoint: MsiEndpoint, client_id: Option<String>) -> Self {
        ManagedIdentity {
            http,
            endpoint,
            client_id,
        }
    }

    pub fn cached(self) -> super::Cached<Self> {
        super::Cached::new(self)
    }

    pub fn endpoint(&self) -> &MsiEndpoint {
        &self.endpoint
    }
}

#[async_trait::async_trait]
impl Fetch for ManagedIdentity {
    async fn fetch(self: Arc<Self>, scope: String) -> Result<AccessToken, TokenError> {
        let mut query: Vec<(&str, &str)> = vec![("resource", resource_of(&scope))];
        if let Some(id) = &self.client_id {
            query.push(("client_id", id));
        }
        let (url, request) = match &self.endpoint {
            MsiEndpoint::AppService { endpoint, header } => (
                endpoint,
                self.http
                    .get(endpoint)
                    .query(&[("api-version", APP_SERVICE_API_VERSION)])
                    .query(&query)
                    .header("X-IDENTITY-HEADER", header.expose()),
            ),
            MsiEndpoint::Imds { endpoint } => (
                endpoint,
                self.http
                    .get(endpoint)
                    .query(&[("api-version", IMDS_API_VERSION)])
                    .query(&query)
                    .header("Metadata", "true"),
            ),
        };
        let label = url::Url::parse(url)
            .map(|u| endpoint_label(&u))
            .unwrap_or_else(|_| format!("{:?}", self.endpoint));
        let (token, _) = request_token(&label, request, REQUEST_TIMEOUT, None).await?;
        tracing::debug!(endpoint = ?self.endpoint, resource = resource_of(&scope), "managed identity token obtained");
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCOPE: &str = "https://storage.azure.com/.default";

    fn from(endpoint: Option<&str>, header: Option<&str>) -> MsiEndpoint {
        MsiEndpoint::from_settings(&IdentitySettings {
            endpoint: endpoint.map(str::to_string),
            header: header.map(Secret::new),
        })
    }

    // Moved from store/managed_identity.rs: the endpoint now comes from the settings source.
    #[test]
    fn source_selection_and_scope_mapping() {
        assert_eq!(
            from(None, None),
            MsiEndpoint::Imds {
                endpoint: IMDS_ENDPOINT.into()
            }
        );
        // One variable alone is not enough.
        let only_endpoint = from(Some("http://x"), None);
        assert!(matches!(only_endpoint, MsiEndpoint::Imds { .. }));
        assert_eq!(resource_of(SCOPE), "https://storage.azure.com/");
        let src = MsiEndpoint::AppService {
            endpoint: "http://e".into(),
            header: Secret::new("hdr-secret"),
        };
        assert!(!format!("{src:?}").contains("hdr-secret"));
        assert_eq!(from(Some("http://e"), Some("hdr-secret")), src);
    }
}
