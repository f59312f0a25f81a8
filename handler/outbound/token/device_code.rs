//! Delegated tokens through the device-code flow (RFC 8628 as Entra implements it), for the
//! calls that refuse app-only tokens (publishing the Teams app to the org catalog needs a
//! signed-in admin). The admin is shown a code and a URL; the app polls the token endpoint at
//! the interval the service asked for (`authorization_pending` → keep polling, `slow_down` →
//! poll 5 s further apart, `authorization_declined` / `expired_token` / anything else → stop).
//! Once signed in, the refresh token renews the access token without asking again.

use super::response::{error_code, exchange, parse_answer, refused, request_token};
use super::{endpoint_label, AccessToken, Fetch, TokenError};
use crate::config::Secret;
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8628 §3.5: after `slow_down`, poll this much further apart.
const SLOW_DOWN_STEP: u64 = 5;
/// RFC 8628 §3.2: the interval when the service gives none.
const DEFAULT_INTERVAL: u64 = 5;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// What the signing-in admin must be told.
#[derive(Debug, Clone)]
pub struct DeviceCodePrompt {
    pub user_code: String,
    pub verification_uri: String,
    /// Entra's own sentence ("To sign in, use a web browser to open the page … and enter the code …").
    pub message: String,
    pub expires_in: Duration,
}

#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    verification_uri: String,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
    #[serde(default)]
    message: Option<String>,
}

type Prompt = Arc<dyn Fn(&DeviceCodePrompt) + Send + Sync>;

pub struct DeviceCode {
    http: reqwest::Client,
    /// `…/<tenant>/oauth2/v2.0/devicecode`
    devicecode_endpoint: url::Url,
    /// `…/<tenant>/oauth2/v2.0/token`
    token_endpoint: url::Url,
    client_id: String,
    prompt: Prompt,
    refresh_token: Mutex<Option<Secret>>,
    /// The protocol's second; tests shrink it so a poll loop takes milliseconds.
    second: Duration,
}

impl std::fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCode")
            .field("token_endpoint", &self.token_endpoint.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl DeviceCode {
    /// `authority` is `https://login.microsoftonline.com/<tenant>/` (or a test double's URL);
    /// `prompt` shows the admin where to sign in.
    pub fn new(
        http: reqwest::Client,
        authority: &url::Url,
        client_id: impl Into<String>,
        prompt: impl Fn(&DeviceCodePrompt) + Send + Sync + 'static,
    ) -> Result<Self, TokenError> {
        let join = |p: &str| {
            let mut base = authority.clone();
            if !base.path().ends_with('/') {
                base.set_path(&format!("{}/", base.path()));
            }
            base.join(p)
                .map_err(|e| TokenError::Config(format!("authority {authority}: {e}")))
        };
        Ok(DeviceCode {
            http,
            devicecode_endpoint: join("oauth2/v2.0/devicecode")?,
            token_endpoint: join("oauth2/v2.0/token")?,
            client_id: client_id.into(),
            prompt: Arc::new(prompt),
            refresh_token: Mutex::new(None),
            second: Duration::from_secs(1),
        })
    }

    /// Shrink the protocol's second (tests only need the sequence of polls, not the wall time).
    pub fn with_second(mut self, second: Duration) -> Self {
        self.second = second;
        self
    }

    /// Start from a refresh token kept from an earlier sign-in (the admin is only asked again
    /// when Entra no longer accepts it).
    pub fn with_refresh_token(self, refresh_token: Secret) -> Self {
        *self.refresh_token.lock().unwrap_or_else(|p| p.into_inner()) = Some(refresh_token);
        self
    }

    /// The newest refresh token, to be kept (encrypted) for the next run.
    pub fn refresh_token(&self) -> Option<Secret> {
        self.refresh_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn cached(self) -> super::Cached<Self> {
        super::Cached::new(self)
    }

    fn keep_refresh_token(&self, refresh_token: Option<String>) {
        if let Some(rt) = refresh_token {
            // Entra's answers are scrubbed from any error text that might quote them.
            crate::redact::register(&rt);
            *self.refresh_token.lock().unwrap_or_else(|p| p.into_inner()) = Some(Secret::new(rt));
        }
    }

    async fn post(
        &self,
        url: &url::Url,
        form: &[(&str, &str)],
    ) -> Result<(u16, bytes::Bytes), TokenError> {
        let request = self.http.post(url.clone()).form(form);
        exchange(&endpoint_label(url), request, REQUEST_TIMEOUT).await
    }

    /// The refresh-token grant; `None` when there is no refresh token or it no longer works.
    async fn refresh(&self, scope: &str) -> Option<AccessToken> {
        let rt = self
            .refresh_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let scope = with_offline_access(scope);
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("scope", scope.as_str()),
            ("refresh_token", rt.expose()),
        ];
        let label = endpoint_label(&self.token_endpoint);
        let request = self.http.post(self.token_endpoint.clone()).form(&form);
        match request_token(&label, request, REQUEST_TIMEOUT, Some(DEFAULT_LIFETIME)).await {
            Ok((token, refresh)) => {
                self.keep_refresh_token(refresh);
                Some(token)
            }
            Err(e) => {
                tracing::warn!(error = %e, "refresh token not accepted; a new device sign-in is needed");
                None
            }
        }
    }

    async fn sign_in(&self, scope: &str) -> Result<AccessToken, TokenError> {
        let scope = with_offline_access(scope);
        let label = endpoint_label(&self.devicecode_endpoint);
        let (status, body) = self
            .post(
                &self.devicecode_endpoint,
                &[
                    ("client_id", self.client_id.as_str()),
                    ("scope", scope.as_str()),
                ],
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(refused(&label, status, &body));
        }
        let auth: DeviceAuthorization =
            serde_json::from_slice(&body).map_err(|_| TokenError::Protocol {
                endpoint: label.clone(),
                detail: "the answer is not a device authorization".into(),
            })?;
        let prompt = DeviceCodePrompt {
            message: auth.message.clone().unwrap_or_else(|| {
                format!(
                    "To sign in, open {} and enter the code {}",
                    auth.verification_uri, auth.user_code
                )
            }),
            user_code: auth.user_code,
            verification_uri: auth.verification_uri,
            expires_in: Duration::from_secs(auth.expires_in),
        };
        (self.prompt)(&prompt);
        let deadline = Instant::now()
            .checked_add(
                self.second
                    .saturating_mul(auth.expires_in.min(u32::MAX as u64) as u32),
            )
            .unwrap_or_else(Instant::now);
        let mut interval = auth.interval.unwrap_or(DEFAULT_INTERVAL).max(1);
        let token_label = endpoint_label(&self.token_endpoint);
        let form = [
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", self.client_id.as_str()),
            ("device_code", auth.device_code.as_str()),
        ];
        loop {
            let wait = self
                .second
                .saturating_mul(interval.min(u32::MAX as u64) as u32);
            if Instant::now() + wait > deadline {
                return Err(TokenError::DeviceCode(
                    "expired before the admin signed in".into(),
                ));
            }
            tokio::time::sleep(wait).await;
            let (status, body) = self.post(&self.token_endpoint, &form).await?;
            if (200..300).contains(&status) {
                let mut answer = parse_answer(&token_label, &body)?;
                self.keep_refresh_token(answer.refresh_token.take());
                return answer.into_token(&token_label, Some(DEFAULT_LIFETIME));
            }
            match error_code(&body).as_str() {
                "authorization_pending" => {}
                "slow_down" => interval += SLOW_DOWN_STEP,
                "authorization_declined" => {
                    return Err(TokenError::DeviceCode("was declined by the user".into()))
                }
                "expired_token" => {
                    return Err(TokenError::DeviceCode(
                        "expired before the admin signed in".into(),
                    ))
                }
                _ => return Err(refused(&token_label, status, &body)),
            }
        }
    }
}

/// Delegated scopes plus `offline_access`, so Entra also hands out a refresh token.
fn with_offline_access(scope: &str) -> String {
    if scope.split_whitespace().any(|s| s == "offline_access") {
        scope.to_string()
    } else {
        format!("{scope} offline_access")
    }
}

#[async_trait::async_trait]
impl Fetch for DeviceCode {
    async fn fetch(self: Arc<Self>, scope: String) -> Result<AccessToken, TokenError> {
        if let Some(t) = self.refresh(&scope).await {
            return Ok(t);
        }
        self.sign_in(&scope).await
    }
}
