//! OAuth access tokens for outbound calls. [`TokenSource`] is what a client holds; each way of
//! getting a token (client secret, client certificate, managed identity, device code) is a
//! [`Fetch`] wrapped in one [`Cached`], which keeps a token per scope until five minutes before
//! it expires and lets concurrent callers share one request.

mod cache;
pub mod client_credentials;
pub mod device_code;
pub mod managed_identity;
mod response;

pub use cache::{Cached, REFRESH_MARGIN};
pub use client_credentials::{ClientCertificate, ClientCredentials};
pub use device_code::{DeviceCode, DeviceCodePrompt};
pub use managed_identity::{ManagedIdentity, MsiEndpoint};

use crate::config::Secret;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Longest lifetime believed from a token answer: a huge `expires_in` must neither overflow the
/// clock arithmetic nor keep a token for ever. Entra and managed-identity tokens live at most a day.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// An access token; the value only leaves through `secret.expose()`.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub secret: Secret,
    pub expires_at: SystemTime,
}

impl AccessToken {
    /// A token that lives `lifetime` from now (capped at [`MAX_LIFETIME`]).
    pub fn expiring_in(secret: Secret, lifetime: Duration) -> Self {
        let now = SystemTime::now();
        AccessToken {
            secret,
            expires_at: now.checked_add(lifetime.min(MAX_LIFETIME)).unwrap_or(now),
        }
    }
}

/// Why no token could be had. Texts that came from the token service are redacted excerpts.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("cannot reach the token endpoint {endpoint}: {detail}")]
    Transport { endpoint: String, detail: String },
    #[error("token endpoint {endpoint} answered {status} ({code}){}", detail_suffix(.detail))]
    Refused {
        endpoint: String,
        status: u16,
        code: String,
        detail: String,
    },
    #[error("token endpoint {endpoint}: {detail}")]
    Protocol { endpoint: String, detail: String },
    #[error("{0}")]
    Config(String),
    #[error("device sign-in {0}")]
    DeviceCode(String),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl TokenError {
    /// A token service that cannot be reached or is overloaded may answer the next time.
    pub fn is_transient(&self) -> bool {
        match self {
            TokenError::Transport { .. } => true,
            TokenError::Refused { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// Hands out access tokens for a scope (`https://graph.microsoft.com/.default`, or the resource
/// URI for a managed identity).
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    async fn token(&self, scope: &str) -> Result<AccessToken, TokenError>;

    /// Drop the cached token of `scope` (a service answered 401 to it: revoked or rotated), so the
    /// next `token` call fetches a fresh one. Sources without a cache have nothing to drop.
    fn forget(&self, _scope: &str) {}
}

/// One request for a fresh token; [`Cached`] decides when to call it.
#[async_trait::async_trait]
pub trait Fetch: Send + Sync + 'static {
    async fn fetch(self: Arc<Self>, scope: String) -> Result<AccessToken, TokenError>;
}

/// `https://host/path?query` → `https://host/path`: what errors and logs may name.
pub(crate) fn endpoint_label(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}
