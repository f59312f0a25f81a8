//! The publish sign-in's refresh token as a Key Vault secret (Azure): Key Vault encrypts it at
//! rest and only the app's managed identity may read or write it. REST, api-version 7.4:
//! - `GET {vault}/secrets/{name}?api-version=7.4` → `{"value", "id": ".../secrets/{name}/{version}"}`,
//!   404 `SecretNotFound` when nothing was stored yet (the latest version; disabled ones answer 403);
//! - `PUT {vault}/secrets/{name}?api-version=7.4` with `{"value", "contentType", "attributes"}` →
//!   a new version;
//! - `PATCH {vault}/secrets/{name}/{version}?api-version=7.4` with `{"attributes":{"enabled":false}}`:
//!   the version it replaced is disabled, so an older refresh token cannot be read back.
//!
//! Tokens come from the outbound layer's token source for `https://vault.azure.net` (the app's
//! managed identity); a 401 drops the cached token and tries once more. The value is never logged;
//! errors name the vault, the secret, the status and Key Vault's error code only.

use super::token_store::RefreshTokenStore;
use super::TeamsAppError;
use crate::config::Secret;
use crate::outbound::{retry, Failure, RetryPolicy, TokenSource};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const API_VERSION: &str = "7.4";
/// The Key Vault data-plane resource (v1 form, which is what managed identity endpoints take).
pub const RESOURCE: &str = "https://vault.azure.net";
const CONTENT_TYPE: &str = "application/vnd.moodle-teams-bridge.refresh-token";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Key Vault's own rule for secret names.
pub fn is_secret_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

pub struct KeyVaultStore {
    http: reqwest::Client,
    /// `https://<vault>.vault.azure.net/`
    vault: url::Url,
    name: String,
    tokens: Arc<dyn TokenSource>,
    /// The version read or written last: the one to disable after the next write.
    version: Mutex<Option<String>>,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for KeyVaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVaultStore")
            .field("vault", &self.vault.as_str())
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What one call answered (the body only for 2xx; errors are turned into text at once).
struct Answer {
    status: u16,
    body: Value,
}

impl KeyVaultStore {
    pub fn new(
        http: reqwest::Client,
        vault: url::Url,
        name: impl Into<String>,
        tokens: Arc<dyn TokenSource>,
    ) -> Result<Self, TeamsAppError> {
        let name = name.into();
        if !is_secret_name(&name) {
            return Err(TeamsAppError::TokenStore(format!(
                "{name:?} is not a Key Vault secret name (1-127 letters, digits, hyphens)"
            )));
        }
        Ok(KeyVaultStore {
            http,
            vault,
            name,
            tokens,
            version: Mutex::new(None),
            retry: RetryPolicy::MICROSOFT,
        })
    }

    fn url(&self, version: Option<&str>) -> String {
        let base = self.vault.as_str().trim_end_matches('/');
        match version {
            Some(v) => format!("{base}/secrets/{}/{v}?api-version={API_VERSION}", self.name),
            None => format!("{base}/secrets/{}?api-version={API_VERSION}", self.name),
        }
    }

    fn label(&self) -> String {
        format!(
            "Key Vault secret {} in {}",
            self.name,
            self.vault.as_str().trim_end_matches('/')
        )
    }

    fn fail(&self, what: &str, detail: impl std::fmt::Display) -> TeamsAppError {
        TeamsAppError::TokenStore(format!("{what} {}: {detail}", self.label()))
    }

    /// One request with a fresh-enough token; 429/5xx repeated (every call here is safe to
    /// repeat: a repeated PUT only adds a version), a 401 retried once with a new token.
    async fn call(
        &self,
        method: reqwest::Method,
        version: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, TeamsAppError> {
        let what = format!("{method} {}", self.label());
        let mut renewed = false;
        loop {
            let token = self
                .tokens
                .token(RESOURCE)
                .await
                .map_err(|e| self.fail("no managed-identity token for", e))?;
            let answer = self
                .retry
                .run(&what, |_| {
                    let method = method.clone();
                    let token = token.secret.clone();
                    async move {
                        let mut req = self
                            .http
                            .request(method, self.url(version))
                            .bearer_auth(token.expose())
                            .header(reqwest::header::ACCEPT, "application/json")
                            .timeout(REQUEST_TIMEOUT);
                        if let Some(b) = body {
                            req = req.json(b);
                        }
                        let resp = req.send().await.map_err(|e| {
                            Failure::retryable(
                                format!("cannot reach it: {}", crate::redact::error_chain(&e)),
                                None,
                            )
                        })?;
                        let status = resp.status().as_u16();
                        let after = retry::retry_after(resp.headers());
                        let text = resp.text().await.unwrap_or_default();
                        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        if (200..300).contains(&status) || matches!(status, 401 | 403 | 404) {
                            return Ok(Answer { status, body });
                        }
                        let err = format!("answered {status} ({})", error_code(&body));
                        if retry::is_retryable_status(status) || status >= 500 {
                            Err(Failure::retryable(err, after))
                        } else {
                            Err(Failure::permanent(err))
                        }
                    }
                })
                .await
                .map_err(|e| self.fail(&format!("{method}"), e))?;
            match answer.status {
                401 if !renewed => {
                    // Rotated or revoked: one more try with a token fetched now.
                    self.tokens.forget(RESOURCE);
                    renewed = true;
                }
                401 => {
                    return Err(self.fail(
                        &format!("{method}"),
                        format!(
                            "answered 401 ({}): the managed identity's token is refused",
                            error_code(&answer.body)
                        ),
                    ))
                }
                403 => {
                    return Err(self.fail(
                        &format!("{method}"),
                        format!(
                            "answered 403 ({}): the app's identity needs the role Key Vault Secrets Officer on the vault",
                            error_code(&answer.body)
                        ),
                    ))
                }
                _ => return Ok(answer),
            }
        }
    }
}

/// `error.code` of a Key Vault error body (its message may quote names; the code never does).
fn error_code(body: &Value) -> String {
    body["error"]["code"]
        .as_str()
        .unwrap_or("no error code")
        .to_string()
}

/// `…/secrets/{name}/{version}` → `version`.
fn version_of(id: &str) -> Option<String> {
    let rest = id.split_once("/secrets/")?.1.trim_end_matches('/');
    let (_name, v) = rest.split_once('/')?;
    (!v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric())).then(|| v.to_string())
}

#[async_trait::async_trait]
impl RefreshTokenStore for KeyVaultStore {
    fn describe(&self) -> String {
        self.label()
    }

    async fn load(&self) -> Result<Option<Secret>, TeamsAppError> {
        let a = self.call(reqwest::Method::GET, None, None).await?;
        if a.status == 404 {
            return Ok(None);
        }
        let value = a.body["value"]
            .as_str()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.fail("GET", "the answer holds no value"))?;
        crate::redact::register(value);
        if let Some(v) = a.body["id"].as_str().and_then(version_of) {
            *self.version.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
        }
        Ok(Some(Secret::new(value)))
    }

    async fn save(&self, token: &Secret) -> Result<(), TeamsAppError> {
        let body = json!({
            "value": token.expose(),
            "contentType": CONTENT_TYPE,
            "attributes": {"enabled": true},
            "tags": {"purpose": "teams-app-publish-sign-in"},
        });
        let a = self.call(reqwest::Method::PUT, None, Some(&body)).await?;
        if a.status == 404 {
            return Err(self.fail("PUT", "answered 404: is the vault URL right?"));
        }
        let new = a.body["id"].as_str().and_then(version_of);
        let old = std::mem::replace(
            &mut *self.version.lock().unwrap_or_else(|p| p.into_inner()),
            new.clone(),
        );
        if let Some(old) = old.filter(|o| Some(o) != new.as_ref()) {
            // The replaced refresh token must not stay readable; failing that is not worth
            // losing the new one, so it is only reported.
            let disable = json!({"attributes": {"enabled": false}});
            match self
                .call(reqwest::Method::PATCH, Some(&old), Some(&disable))
                .await
            {
                Ok(a) if (200..300).contains(&a.status) => {}
                Ok(a) => {
                    tracing::warn!(secret = %self.name, status = a.status, "the previous version of the refresh-token secret could not be disabled")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the previous version of the refresh-token secret could not be disabled")
                }
            }
        }
        tracing::info!(secret = %self.name, "publish sign-in kept in Key Vault");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert!(is_secret_name("teams-app-publish-refresh-token"));
        assert!(!is_secret_name("a_b") && !is_secret_name("") && !is_secret_name(&"a".repeat(128)));
        assert_eq!(
            version_of("https://v.vault.azure.net/secrets/n/4387e9f3d6e14c459867679a90fd0f79")
                .as_deref(),
            Some("4387e9f3d6e14c459867679a90fd0f79")
        );
        assert_eq!(version_of("https://v.vault.azure.net/secrets/n/"), None);
        assert_eq!(version_of("https://v.vault.azure.net/keys/n/x/y"), None);
    }
}
