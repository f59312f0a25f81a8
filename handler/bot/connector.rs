//! Outbound Bot Connector client: bot token (client credentials for a single-tenant bot, or a
//! user-assigned managed identity), cached until shortly before expiry; per-conversation rate
//! limits (7 per second, 60 per 30 s); retries of 429/412/502/503/504 with jitter, honouring
//! `Retry-After`; 403 is permanent. The token only ever goes to a trusted service URL.

use crate::bot::settings::{BotIdentity, BotSettings};
use crate::redact;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const BOT_SCOPE: &str = "https://api.botframework.com/.default";
pub const BOT_RESOURCE: &str = "https://api.botframework.com";
const MAX_ATTEMPTS: u32 = 5;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(
        "service URL {0} is not a trusted Bot Connector host; not sending the bot token there"
    )]
    UntrustedServiceUrl(String),
    #[error("Bot Connector refused permanently (403 {code})")]
    Forbidden { code: String },
    #[error("Bot Connector answered {status} ({code})")]
    Status { status: u16, code: String },
    #[error("cannot reach the Bot Connector: {0}")]
    Transport(String),
    #[error("cannot get a bot token: {0}")]
    Token(String),
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TeamsMember {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub aad_object_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct ResourceResponse {
    #[serde(default)]
    pub id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Token

struct CachedToken {
    value: String,
    refresh_at: Instant,
}

pub struct TokenProvider {
    http: reqwest::Client,
    identity: BotIdentity,
    app_id: String,
    endpoint: Option<url::Url>,
    cached: Mutex<Option<CachedToken>>,
    fetch: tokio::sync::Mutex<()>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Seconds; the MSI endpoint sends it as a string.
    #[serde(default)]
    expires_in: Option<Value>,
}

impl TokenProvider {
    pub fn new(http: reqwest::Client, settings: &BotSettings) -> Self {
        TokenProvider {
            http,
            identity: settings.identity.clone(),
            app_id: settings.app_id.clone(),
            endpoint: settings.token_endpoint.clone(),
            cached: Mutex::new(None),
            fetch: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self) -> Option<String> {
        let g = self.cached.lock().ok()?;
        g.as_ref()
            .filter(|t| Instant::now() < t.refresh_at)
            .map(|t| t.value.clone())
    }

    pub async fn token(&self) -> Result<String, SendError> {
        if let Some(t) = self.cached() {
            return Ok(t);
        }
        let _one_at_a_time = self.fetch.lock().await;
        if let Some(t) = self.cached() {
            return Ok(t);
        }
        let resp = self.request().await?;
        let lifetime = resp
            .expires_in
            .as_ref()
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(3600);
        // The lifetime comes from the remote answer: `u64::MAX` must not overflow the Instant
        // (a panic on the reply path). Entra tokens live 60-90 min; trust at most a day.
        let lifetime = lifetime.min(MAX_TOKEN_LIFETIME_SECS);
        // Refresh five minutes early (or at half-life for very short tokens).
        let margin = if lifetime > 600 { 300 } else { lifetime / 2 };
        let now = Instant::now();
        let refresh_at = now
            .checked_add(Duration::from_secs(lifetime - margin))
            .unwrap_or(now);
        if let Ok(mut g) = self.cached.lock() {
            *g = Some(CachedToken {
                value: resp.access_token.clone(),
                refresh_at,
            });
        }
        Ok(resp.access_token)
    }

    async fn request(&self) -> Result<TokenResponse, SendError> {
        let err = |e: String| SendError::Token(e);
        let req = match &self.identity {
            BotIdentity::SingleTenant {
                tenant_id,
                password,
            } => {
                let url = match &self.endpoint {
                    Some(u) => u.to_string(),
                    None => {
                        format!("https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token")
                    }
                };
                self.http.post(url).form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", self.app_id.as_str()),
                    ("client_secret", password.expose()),
                    ("scope", BOT_SCOPE),
                ])
            }
            BotIdentity::UserAssignedMsi { client_id } => {
                let endpoint = match &self.endpoint {
                    Some(u) => u.to_string(),
                    None => std::env::var("IDENTITY_ENDPOINT").map_err(|_| {
                        err("IDENTITY_ENDPOINT is not set (no managed identity here)".into())
                    })?,
                };
                let header = std::env::var("IDENTITY_HEADER").unwrap_or_default();
                self.http
                    .get(endpoint)
                    .query(&[
                        ("api-version", "2019-08-01"),
                        ("resource", BOT_RESOURCE),
                        ("client_id", client_id.as_str()),
                    ])
                    .header("X-IDENTITY-HEADER", header)
            }
        };
        let resp = req
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .map_err(|e| err(redact::error_chain(&e.without_url())))?;
        let status = resp.status();
        if !status.is_success() {
            // The body may echo request details; keep only the status and the error code.
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let code = body
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| "unknown".into(), |c| redact::excerpt(c, CODE_CHARS));
            return Err(err(format!("token endpoint answered {status} ({code})")));
        }
        // A decoding error never quotes the body here (it would hold the token).
        resp.json::<TokenResponse>()
            .await
            .map_err(|e| err(redact::error_chain(&e.without_url())))
    }
}

// ---------------------------------------------------------------------------------------------
// Rate limiter: per conversation, 7 per 1 s and 60 per 30 s (Teams' documented thread limits).

pub struct RateLimiter {
    windows: Vec<(Duration, usize)>,
    sent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(vec![
            (Duration::from_secs(1), 7),
            (Duration::from_secs(30), 60),
        ])
    }
}

impl RateLimiter {
    pub fn new(windows: Vec<(Duration, usize)>) -> Self {
        RateLimiter {
            windows,
            sent: Mutex::new(HashMap::new()),
        }
    }

    fn longest(&self) -> Duration {
        self.windows.iter().map(|w| w.0).max().unwrap_or_default()
    }

    /// How long to wait before `key` may send; records the send when it may go now.
    fn try_acquire(&self, key: &str, now: Instant) -> Option<Duration> {
        let longest = self.longest();
        let mut map = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < longest));
        }
        let q = map.entry(key.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= longest) {
            q.pop_front();
        }
        let mut wait = Duration::ZERO;
        for (window, limit) in &self.windows {
            let in_window: Vec<&Instant> = q
                .iter()
                .filter(|t| now.duration_since(**t) < *window)
                .collect();
            if in_window.len() >= *limit {
                // Free once the oldest send that still counts leaves the window.
                let oldest = in_window[in_window.len() - limit];
                wait = wait.max(*window - now.duration_since(*oldest));
            }
        }
        if wait.is_zero() {
            q.push_back(now);
            None
        } else {
            Some(wait)
        }
    }

    pub async fn acquire(&self, key: &str) {
        while let Some(wait) = self.try_acquire(key, Instant::now()) {
            tokio::time::sleep(wait + Duration::from_millis(1)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connector

/// A configured service URL (`BOT_TRUSTED_SERVICE_URLS`), parsed once: a URL is under it when
/// scheme, host and port are equal and its normalised path lies under the base path,
/// segment-wise (`/svc` admits `/svc/emea/`, not `/svcx/`).
struct TrustedBase {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: String,
}

impl TrustedBase {
    fn parse(text: &str) -> Option<TrustedBase> {
        let u = url::Url::parse(text).ok()?;
        let mut path = u.path().to_string();
        if !path.ends_with('/') {
            path.push('/');
        }
        Some(TrustedBase {
            scheme: u.scheme().to_string(),
            host: u.host_str()?.to_ascii_lowercase(),
            port: u.port_or_known_default(),
            path,
        })
    }

    fn admits(&self, u: &url::Url) -> bool {
        let mut path = u.path().to_string();
        if !path.ends_with('/') {
            path.push('/');
        }
        u.scheme() == self.scheme
            && u.host_str()
                .is_some_and(|h| h.eq_ignore_ascii_case(&self.host))
            && u.port_or_known_default() == self.port
            && path.starts_with(&self.path)
    }
}

pub struct Connector {
    http: reqwest::Client,
    pub tokens: TokenProvider,
    pub limiter: RateLimiter,
    trusted: Vec<TrustedBase>,
    /// First retry delay when the service gives no Retry-After.
    pub base_backoff: Duration,
}

/// encodeURIComponent: conversation ids carry `:`, `;`, `@`.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Connector {
    pub fn new(http: reqwest::Client, settings: &BotSettings) -> Self {
        Connector {
            tokens: TokenProvider::new(http.clone(), settings),
            http,
            limiter: RateLimiter::default(),
            trusted: settings
                .trusted_service_urls
                .iter()
                .filter_map(|t| TrustedBase::parse(t))
                .collect(),
            base_backoff: Duration::from_millis(500),
        }
    }

    /// Only Teams' Bot Connector hosts (and configured test doubles) receive the bot token.
    pub fn is_trusted(&self, service_url: &str) -> bool {
        self.trusted_base(service_url).is_some()
    }

    /// The service URL parsed and normalised (`..`, `%2e%2e`, case, default port), if it may
    /// receive the bot token. Requests are built from this URL, so what was checked is what is
    /// called: comparing raw prefixes let `…/svc/../other/` through.
    fn trusted_base(&self, service_url: &str) -> Option<url::Url> {
        let u = url::Url::parse(service_url).ok()?;
        if !u.username().is_empty()
            || u.password().is_some()
            || u.query().is_some()
            || u.fragment().is_some()
        {
            return None;
        }
        let host = u.host_str()?.to_ascii_lowercase();
        let teams_host = u.scheme() == "https"
            && u.port().is_none()
            && (host == "smba.trafficmanager.net"
                || host.ends_with(".teams.microsoft.com")
                || host.ends_with(".teams.microsoft.us"));
        (teams_host || self.trusted.iter().any(|t| t.admits(&u))).then_some(u)
    }

    fn activities_url(base: &url::Url, conversation_id: &str, reply_to: Option<&str>) -> String {
        let base = base.as_str().trim_end_matches('/');
        let mut url = format!(
            "{base}/v3/conversations/{}/activities",
            encode_segment(conversation_id)
        );
        if let Some(id) = reply_to {
            url.push('/');
            url.push_str(&encode_segment(id));
        }
        url
    }

    /// Reply in a thread (`replyToId`) or post to a conversation (proactive when `reply_to` is None).
    pub async fn send(
        &self,
        service_url: &str,
        conversation_id: &str,
        reply_to: Option<&str>,
        activity: &Value,
    ) -> Result<ResourceResponse, SendError> {
        let base = self.checked_base(service_url)?;
        let url = Self::activities_url(&base, conversation_id, reply_to);
        let body = serde_json::to_vec(activity).map_err(|e| SendError::Transport(e.to_string()))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.limiter.acquire(conversation_id).await;
            let token = self.tokens.token().await?;
            let result = self
                .http
                .post(&url)
                .bearer_auth(&token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let resp = match result {
                Ok(r) => r,
                Err(e) if attempt < MAX_ATTEMPTS => {
                    tracing::warn!(attempt, error = %e.without_url(), "Bot Connector unreachable, retrying");
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                    continue;
                }
                Err(e) => return Err(SendError::Transport(redact::error_chain(&e.without_url()))),
            };
            let status = resp.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(resp.json::<ResourceResponse>().await.unwrap_or_default());
            }
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let correlation = resp
                .headers()
                .get("x-correlating-operationid")
                .and_then(|v| v.to_str().ok())
                .map(|c| crate::telemetry::capped(c).into_owned())
                .unwrap_or_default();
            let code = error_code(&resp.bytes().await.unwrap_or_default());
            tracing::warn!(status, code, correlation, attempt, "Bot Connector error");
            match status {
                403 => return Err(SendError::Forbidden { code }),
                429 | 412 | 502 | 503 | 504 if attempt < MAX_ATTEMPTS => {
                    tokio::time::sleep(self.backoff(attempt, retry_after)).await;
                }
                _ => return Err(SendError::Status { status, code }),
            }
        }
    }

    /// One member of a conversation (`GET …/members/{userId}`): gives the UPN and e-mail that
    /// activities do not carry.
    pub async fn member(
        &self,
        service_url: &str,
        conversation_id: &str,
        user_id: &str,
    ) -> Result<TeamsMember, SendError> {
        let base = self.checked_base(service_url)?;
        let url = format!(
            "{}/v3/conversations/{}/members/{}",
            base.as_str().trim_end_matches('/'),
            encode_segment(conversation_id),
            encode_segment(user_id)
        );
        self.limiter.acquire(conversation_id).await;
        let token = self.tokens.token().await?;
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| SendError::Transport(redact::error_chain(&e.without_url())))?;
        let status = resp.status().as_u16();
        if status == 403 {
            return Err(SendError::Forbidden {
                code: error_code(&resp.bytes().await.unwrap_or_default()),
            });
        }
        if !(200..300).contains(&status) {
            return Err(SendError::Status {
                status,
                code: error_code(&resp.bytes().await.unwrap_or_default()),
            });
        }
        resp.json::<TeamsMember>()
            .await
            .map_err(|e| SendError::Transport(redact::error_chain(&e.without_url())))
    }

    fn checked_base(&self, service_url: &str) -> Result<url::Url, SendError> {
        self.trusted_base(service_url).ok_or_else(|| {
            SendError::UntrustedServiceUrl(crate::telemetry::capped(service_url).into_owned())
        })
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let jitter = |d: Duration| {
            d + Duration::from_millis(rand::random::<u64>() % (d.as_millis() as u64 / 2 + 1))
        };
        match retry_after {
            Some(d) => jitter(d.min(MAX_RETRY_AFTER)),
            None => jitter(self.base_backoff * 2u32.pow(attempt.saturating_sub(1))),
        }
    }
}

/// The error code of both Connector error shapes: `{"error":{"code"}}` and the proactive
/// `{"errorCode":209,"message":"{ \"subCode\": \"MessageWritesBlocked\" … }"}`; capped, as it
/// is logged and comes from the remote side.
pub fn error_code(body: &[u8]) -> String {
    // The code is remote text that lands in logs and errors: short and scrubbed.
    redact::excerpt(&raw_error_code(body), CODE_CHARS)
}

/// Longest error code kept from a remote answer.
const CODE_CHARS: usize = 64;

fn raw_error_code(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return "unknown".into();
    };
    if let Some(code) = v.pointer("/error/code").and_then(Value::as_str) {
        return code.to_string();
    }
    if let Some(msg) = v.get("message").and_then(Value::as_str) {
        if let Ok(inner) = serde_json::from_str::<Value>(msg) {
            if let Some(sub) = inner.get("subCode").and_then(Value::as_str) {
                return sub.to_string();
            }
        }
    }
    v.get("errorCode")
        .map(|c| c.to_string())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_allows_seven_per_second_then_waits() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..7 {
            assert!(l.try_acquire("c", t0).is_none());
        }
        let wait = l.try_acquire("c", t0).expect("8th must wait");
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900));
        assert!(
            l.try_acquire("other", t0).is_none(),
            "limits are per conversation"
        );
    }

    #[test]
    fn limiter_caps_sixty_per_thirty_seconds() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for i in 0..60u64 {
            // 6 per second: never hits the 1-second limit.
            let t = t0 + Duration::from_millis(i * 1000 / 6);
            assert!(l.try_acquire("c", t).is_none(), "send {i}");
        }
        let t = t0 + Duration::from_millis(10_500);
        let wait = l.try_acquire("c", t).expect("61st within 30 s must wait");
        assert!(wait > Duration::from_secs(19), "{wait:?}");
    }

    #[test]
    fn only_teams_hosts_and_configured_prefixes_get_the_token() {
        let mut settings = crate::bot::settings::tests::minimal();
        settings.trusted_service_urls = vec!["http://127.0.0.1:80".into()];
        let c = Connector::new(reqwest::Client::new(), &settings);
        assert!(c.is_trusted("https://smba.trafficmanager.net/emea/"));
        assert!(c.is_trusted("https://smba.infra.gcc.teams.microsoft.com/gcc"));
        assert!(c.is_trusted("http://127.0.0.1:80/emea/"));
        assert!(!c.is_trusted("http://127.0.0.1:8080/emea/"));
        assert!(!c.is_trusted("https://attacker.example/"));
        assert!(!c.is_trusted("https://smba.trafficmanager.net.attacker.example/"));
        assert!(!c.is_trusted("http://smba.trafficmanager.net/emea/"));
        assert!(!c.is_trusted("https://canary.botapi.skype.com/amer/"));
    }

    #[test]
    fn trusted_urls_are_parsed_and_normalised_not_prefix_matched() {
        let mut settings = crate::bot::settings::tests::minimal();
        settings.trusted_service_urls = vec!["http://127.0.0.1:8080/svc/".into()];
        let c = Connector::new(reqwest::Client::new(), &settings);
        assert!(c.is_trusted("http://127.0.0.1:8080/svc/emea/"));
        assert!(c.is_trusted("HTTP://127.0.0.1:8080/svc"));
        // A raw prefix comparison let these through.
        assert!(!c.is_trusted("http://127.0.0.1:8080/svc/../other/"));
        assert!(!c.is_trusted("http://127.0.0.1:8080/svc/%2e%2e/other/"));
        assert!(!c.is_trusted("http://127.0.0.1:8080/svcx/"));
        assert!(!c.is_trusted("http://127.0.0.1:8080@attacker.example/svc/"));
        assert!(!c.is_trusted("http://127.0.0.1:8081/svc/"));
        assert!(!c.is_trusted("https://127.0.0.1:8080/svc/"));
        assert!(!c.is_trusted("https://smba.trafficmanager.net/emea/../../x?y=1"));
        assert!(!c.is_trusted("https://smba.trafficmanager.net:8443/emea/"));
        assert!(c.is_trusted("https://SMBA.trafficmanager.net:443/emea/"));
        // What is sent to is the normalised URL that was checked.
        let base = c.trusted_base("http://127.0.0.1:8080/svc/./emea/").unwrap();
        assert_eq!(
            Connector::activities_url(&base, "a:1", Some("2")),
            "http://127.0.0.1:8080/svc/emea/v3/conversations/a%3A1/activities/2"
        );
    }

    #[tokio::test]
    async fn a_huge_expires_in_is_saturated_not_a_panic() {
        use wiremock::matchers::method;
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(
                r#"{"token_type":"Bearer","expires_in":18446744073709551615,"access_token":"t1"}"#,
                "application/json",
            ))
            .expect(1)
            .mount(&server)
            .await;
        let mut settings = crate::bot::settings::tests::minimal();
        settings.token_endpoint = Some(url::Url::parse(&server.uri()).unwrap());
        let tokens = TokenProvider::new(reqwest::Client::new(), &settings);
        assert_eq!(tokens.token().await.unwrap(), "t1");
        // Cached (for at most a day), not fetched again.
        assert_eq!(tokens.token().await.unwrap(), "t1");
    }

    #[test]
    fn error_codes_of_both_shapes() {
        assert_eq!(
            error_code(br#"{"error":{"code":"Throttled","message":"x"}}"#),
            "Throttled"
        );
        let blocked =
            br#"{"errorCode":209,"message":"{\r\n  \"subCode\": \"MessageWritesBlocked\"}"}"#;
        assert_eq!(error_code(blocked), "MessageWritesBlocked");
        let huge = format!(r#"{{"error":{{"code":"{}"}}}}"#, "x".repeat(100_000));
        assert!(error_code(huge.as_bytes()).len() < 200);
        assert_eq!(
            encode_segment("a:1;messageid=2@x"),
            "a%3A1%3Bmessageid%3D2%40x"
        );
    }
}
