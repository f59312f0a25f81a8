//! The storage SDK's `TokenCredential` over the outbound managed-identity token source
//! ([`crate::outbound::token::ManagedIdentity`]), so storage shares its cache, its single-flight
//! refresh and its HTTP client instead of a heavy `azure_identity`. The token value is handed to
//! the SDK in `azure_core::auth::Secret`, whose `Debug` is redacted.

use crate::outbound::token::{Cached, ManagedIdentity, MsiEndpoint};
use crate::outbound::TokenSource;
use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_core::error::{Error, ErrorKind};
use time::OffsetDateTime;

pub struct ManagedIdentityCredential {
    client_id: Option<String>,
    tokens: Cached<ManagedIdentity>,
}

impl std::fmt::Debug for ManagedIdentityCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedIdentityCredential")
            .field("client_id", &self.client_id)
            .field("source", self.tokens.inner().endpoint())
            .finish_non_exhaustive()
    }
}

fn credential_error(msg: impl Into<String>) -> Error {
    Error::message(ErrorKind::Credential, msg.into())
}

impl ManagedIdentityCredential {
    /// `client_id` of the user-assigned identity (`None` = the system-assigned one).
    pub fn new(http: reqwest::Client, client_id: Option<String>, source: MsiEndpoint) -> Self {
        ManagedIdentityCredential {
            tokens: ManagedIdentity::new(http, source, client_id.clone()).cached(),
            client_id,
        }
    }

    pub fn source(&self) -> &MsiEndpoint {
        self.tokens.inner().endpoint()
    }
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
        let token = self
            .tokens
            .token(scope)
            .await
            .map_err(|e| credential_error(format!("managed identity: {e}")))?;
        // Lifetimes are capped by the token source, so this stays inside OffsetDateTime's range.
        let expires_on = OffsetDateTime::from(token.expires_at);
        Ok(AccessToken::new(
            Secret::new(token.secret.expose().to_string()),
            expires_on,
        ))
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        self.tokens.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IdentitySettings;
    use wiremock::matchers::{header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const SCOPE: &str = "https://storage.azure.com/.default";

    fn app_service(server: &MockServer) -> MsiEndpoint {
        MsiEndpoint::from_settings(&IdentitySettings {
            endpoint: Some(format!("{}/msi/token", server.uri())),
            header: Some(crate::config::Secret::new("hdr-secret")),
        })
    }

    fn with_source(client_id: Option<String>, source: MsiEndpoint) -> ManagedIdentityCredential {
        ManagedIdentityCredential::new(reqwest::Client::new(), client_id, source)
    }

    fn expiring_in(secs: i64) -> String {
        (OffsetDateTime::now_utc().unix_timestamp() + secs).to_string()
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
        let cred = with_source(Some("client-123".into()), app_service(&server));
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
        let cred = with_source(None, app_service(&server));
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
        let source = MsiEndpoint::Imds {
            endpoint: format!("{}/metadata/identity/oauth2/token", server.uri()),
        };
        let cred = with_source(Some("abc".into()), source);
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
        let cred = with_source(Some("x".into()), app_service(&server));
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
