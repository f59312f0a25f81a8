//! Outbound Bot Connector client: bot token (client credentials for a single-tenant bot, or a
//! user-assigned managed identity), cached until shortly before expiry; Teams' rate limits per
//! conversation and for the whole app ([`crate::outbound::limiter`]); retries of
//! 429/412/502/503/504 with jitter, honouring `Retry-After`; 403 is permanent. The token only ever
//! goes to a trusted service URL. The request path uses [`Connector::send_within`], which never
//! waits longer than its budget: what cannot go at once is queued by the caller.

use crate::bot::settings::{BotIdentity, BotSettings};
use crate::outbound::limiter::{Quota, RateLimiter, Slot, Window};
use crate::outbound::token::client_credentials::{tenant_token_endpoint, ClientProof};
use crate::outbound::token::{ClientCredentials, ManagedIdentity, MsiEndpoint};
use crate::outbound::{retry, Failure, RetryPolicy, TokenSource};
use crate::redact;
use serde::Deserialize;
use serde_json::Value;
use std::time::{Duration, Instant};

pub const BOT_SCOPE: &str = "https://api.botframework.com/.default";
pub const BOT_RESOURCE: &str = "https://api.botframework.com";
/// A send on the request path that got a slot: how long its POST may take. Longer and the
/// Bot Connector (which gives up after ~15 s) would retry the inbound activity.
const IN_REQUEST_POST_TIMEOUT: Duration = Duration::from_secs(5);
/// Margin of the app-wide window (see [`Quota::with_margin`]): 5% of the 50 per second.
const APP_WINDOW_MARGIN: Duration = Duration::from_millis(50);
/// Roster lookups run on the request path too (before the reply is even computed): how long
/// they may wait for a slot, and for the token and the GET each; the user then gets an answer
/// without the roster's e-mail rather than none.
const MEMBER_WAIT: Duration = Duration::from_secs(1);
const MEMBER_TIMEOUT: Duration = Duration::from_secs(3);

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
    #[error("rate limit: the next free slot is {0:?} away")]
    RateLimited(Duration),
}

impl SendError {
    /// Worth trying again later (from a queue): the Connector did not take the message for a
    /// reason that passes. 403 and other statuses are permanent ([MSG] retry table).
    pub fn is_retryable(&self) -> bool {
        match self {
            SendError::Transport(_) | SendError::Token(_) | SendError::RateLimited(_) => true,
            SendError::Status { status, .. } => retry::is_retryable_status(*status),
            SendError::UntrustedServiceUrl(_) | SendError::Forbidden { .. } => false,
        }
    }
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

/// The bot's outbound token: the outbound layer's cached source for its identity, asked for the
/// Bot Connector scope (the v1 resource for a managed identity).
pub struct TokenProvider {
    source: Box<dyn TokenSource>,
    scope: &'static str,
}

impl TokenProvider {
    pub fn new(http: reqwest::Client, settings: &BotSettings) -> Self {
        match &settings.identity {
            BotIdentity::SingleTenant {
                tenant_id,
                password,
            } => {
                let endpoint = settings
                    .token_endpoint
                    .clone()
                    .unwrap_or_else(|| tenant_token_endpoint(tenant_id));
                TokenProvider {
                    source: Box::new(
                        ClientCredentials::new(
                            http,
                            endpoint,
                            settings.app_id.clone(),
                            ClientProof::Secret(password.clone()),
                        )
                        .cached(),
                    ),
                    scope: BOT_SCOPE,
                }
            }
            BotIdentity::UserAssignedMsi { client_id } => {
                let endpoint = match &settings.token_endpoint {
                    Some(u) => MsiEndpoint::AppService {
                        endpoint: u.to_string(),
                        header: settings
                            .platform_identity
                            .header
                            .clone()
                            .unwrap_or_default(),
                    },
                    None => MsiEndpoint::from_settings(&settings.platform_identity),
                };
                TokenProvider {
                    source: Box::new(
                        ManagedIdentity::new(http, endpoint, Some(client_id.clone())).cached(),
                    ),
                    scope: BOT_RESOURCE,
                }
            }
        }
    }

    pub async fn token(&self) -> Result<String, SendError> {
        self.source
            .token(self.scope)
            .await
            .map(|t| t.secret.expose().to_string())
            .map_err(|e| SendError::Token(e.to_string()))
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
    /// Shared by replies, proactive sends and roster lookups of this instance.
    pub limiter: RateLimiter,
    conversation_quota: Quota,
    /// The same limits with a margin, for sends that can afford to wait (queue workers,
    /// proactive messages): same quota name, so both paths count the same bookings.
    queued_conversation_quota: Quota,
    members_quota: Quota,
    app_quota: Quota,
    trusted: Vec<TrustedBase>,
    /// How failed sends are retried (429/412/502/503/504, `Retry-After` honoured).
    pub retry: RetryPolicy,
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
            limiter: RateLimiter::new(),
            conversation_quota: Quota::teams_conversation(),
            queued_conversation_quota: Quota::teams_conversation().with_margin(APP_WINDOW_MARGIN),
            members_quota: teams_members_quota(),
            // Every send of every conversation counts here: the one window where the arrival
            // jitter of many concurrent senders adds up, so it keeps a margin.
            app_quota: Quota::teams_app(settings.app_rate_per_sec).with_margin(APP_WINDOW_MARGIN),
            trusted: settings
                .trusted_service_urls
                .iter()
                .filter_map(|t| TrustedBase::parse(t))
                .collect(),
            retry: RetryPolicy::MICROSOFT,
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

    fn send_slots<'a>(&'a self, conversation_id: &'a str) -> [Slot<'a>; 2] {
        [
            self.conversation_quota.key(conversation_id),
            self.app_quota.key(""),
        ]
    }

    /// Slots of a send off the request path: a booking exactly one period after an earlier one
    /// reaches Teams up to a few milliseconds early as often as late, and Teams counts arrivals.
    fn queued_slots<'a>(&'a self, conversation_id: &'a str) -> [Slot<'a>; 2] {
        [
            self.queued_conversation_quota.key(conversation_id),
            self.app_quota.key(""),
        ]
    }

    /// How long a send to this conversation would wait for the rate limits now.
    pub fn would_wait(&self, conversation_id: &str, now: Instant) -> Duration {
        self.limiter
            .would_wait(&self.send_slots(conversation_id), now)
    }

    /// Reply in a thread (`replyToId`) or post to a conversation (proactive when `reply_to` is
    /// None), waiting for the rate limits as long as needed and retrying what is retryable. For
    /// queue workers and proactive sends; the request path uses [`Connector::send_within`].
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
        self.retry
            .run("Bot Connector send", |_| async {
                // Token first: the slot's instant is then (nearly) when Teams sees the request.
                // A token failure ends this call; a queue worker tries the message again later.
                let token = self.tokens.token().await.map_err(Failure::permanent)?;
                self.limiter
                    .acquire(&self.queued_slots(conversation_id))
                    .await;
                self.post_once(&url, &body, &token, None)
                    .await
                    .map_err(|(e, retry_after)| {
                        if e.is_retryable() {
                            Failure::retryable(e, retry_after)
                        } else {
                            Failure::permanent(e)
                        }
                    })
            })
            .await
    }

    /// The request path's send: one attempt, made only if the rate limits give a slot within
    /// `budget` and a token is at hand by then; otherwise a retryable error at once, and the
    /// caller queues the reply instead of holding the HTTP request.
    pub async fn send_within(
        &self,
        service_url: &str,
        conversation_id: &str,
        reply_to: Option<&str>,
        activity: &Value,
        budget: Duration,
    ) -> Result<ResourceResponse, SendError> {
        let started = Instant::now();
        let base = self.checked_base(service_url)?;
        let url = Self::activities_url(&base, conversation_id, reply_to);
        let body = serde_json::to_vec(activity).map_err(|e| SendError::Transport(e.to_string()))?;
        // Token first, then the slot: a slot booked before a slow token fetch would let the
        // requests bunch up at Teams beyond the window.
        let token = tokio::time::timeout(budget, self.tokens.token())
            .await
            .map_err(|_| SendError::Token("not issued within the reply budget".into()))??;
        let left = budget.saturating_sub(started.elapsed());
        self.limiter
            .acquire_within(&self.send_slots(conversation_id), left)
            .await
            .map_err(|w| SendError::RateLimited(w.wait))?;
        self.post_once(&url, &body, &token, Some(IN_REQUEST_POST_TIMEOUT))
            .await
            .map_err(|(e, _)| e)
    }

    /// One POST; a failure comes with the `Retry-After` the service asked for, if any.
    async fn post_once(
        &self,
        url: &str,
        body: &[u8],
        token: &str,
        timeout: Option<Duration>,
    ) -> Result<ResourceResponse, (SendError, Option<Duration>)> {
        let mut req = self
            .http
            .post(url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|e| {
            (
                SendError::Transport(redact::error_chain(&e.without_url())),
                None,
            )
        })?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp.json::<ResourceResponse>().await.unwrap_or_default());
        }
        let retry_after = retry::retry_after(resp.headers());
        let correlation = resp
            .headers()
            .get("x-correlating-operationid")
            .and_then(|v| v.to_str().ok())
            .map(|c| crate::telemetry::capped(c).into_owned())
            .unwrap_or_default();
        let code = error_code(&resp.bytes().await.unwrap_or_default());
        tracing::warn!(status, code, correlation, "Bot Connector error");
        let error = match status {
            403 => SendError::Forbidden { code },
            _ => SendError::Status { status, code },
        };
        Err((error, retry_after))
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
        let slots = [
            self.members_quota.key(conversation_id),
            self.app_quota.key(""),
        ];
        let token = tokio::time::timeout(MEMBER_TIMEOUT, self.tokens.token())
            .await
            .map_err(|_| SendError::Token("not issued in time for a roster lookup".into()))??;
        self.limiter
            .acquire_within(&slots, MEMBER_WAIT)
            .await
            .map_err(|w| SendError::RateLimited(w.wait))?;
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&token)
            .timeout(MEMBER_TIMEOUT)
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
}

/// Teams: roster reads of one conversation ("get conversation members" row of [RATE]).
fn teams_members_quota() -> Quota {
    let s = Duration::from_secs;
    Quota {
        name: "teams-members",
        windows: vec![
            Window::new(14, s(1)),
            Window::new(16, s(2)),
            Window::new(120, s(30)),
            Window::new(3600, s(3600)),
        ],
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

    // The per-conversation limits the connector applies (moved from its own limiter to
    // outbound::limiter; the 8-per-2-s window is new, so the 60-per-30-s case sends 4 per second).
    #[test]
    fn limiter_allows_seven_per_second_then_waits() {
        let c = Connector::new(
            reqwest::Client::new(),
            &crate::bot::settings::tests::minimal(),
        );
        let l = &c.limiter;
        let t0 = Instant::now();
        for _ in 0..7 {
            assert!(l.reserve(&c.send_slots("c"), t0, Duration::ZERO).is_ok());
        }
        let wait = l
            .reserve(&c.send_slots("c"), t0, Duration::ZERO)
            .expect_err("8th must wait")
            .wait;
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900));
        assert!(
            l.reserve(&c.send_slots("other"), t0, Duration::ZERO)
                .is_ok(),
            "limits are per conversation"
        );
    }

    #[test]
    fn limiter_caps_sixty_per_thirty_seconds() {
        let c = Connector::new(
            reqwest::Client::new(),
            &crate::bot::settings::tests::minimal(),
        );
        let l = &c.limiter;
        let t0 = Instant::now();
        for i in 0..60u64 {
            // 4 per second: never hits the 1-second or 2-second limits.
            let t = t0 + Duration::from_millis(i * 1000 / 4);
            assert!(
                l.reserve(&c.send_slots("c"), t, Duration::ZERO).is_ok(),
                "send {i}"
            );
        }
        let t = t0 + Duration::from_millis(15_000);
        let wait = l.would_wait(&c.send_slots("c"), t);
        assert!(
            wait > Duration::from_secs(14),
            "61st within 30 s must wait: {wait:?}"
        );
    }

    #[test]
    fn queued_sends_keep_a_margin_and_share_the_bookings_of_the_request_path() {
        let c = Connector::new(
            reqwest::Client::new(),
            &crate::bot::settings::tests::minimal(),
        );
        let t0 = Instant::now();
        for _ in 0..7 {
            assert!(c
                .limiter
                .reserve(&c.send_slots("c"), t0, Duration::ZERO)
                .is_ok());
        }
        assert_eq!(
            c.limiter.would_wait(&c.queued_slots("c"), t0),
            Duration::from_secs(1) + APP_WINDOW_MARGIN
        );
    }

    #[test]
    fn the_whole_app_shares_one_budget() {
        let mut settings = crate::bot::settings::tests::minimal();
        settings.app_rate_per_sec = 3;
        let c = Connector::new(reqwest::Client::new(), &settings);
        let t0 = Instant::now();
        for conv in ["a", "b", "c"] {
            assert!(c
                .limiter
                .reserve(&c.send_slots(conv), t0, Duration::ZERO)
                .is_ok());
        }
        assert!(c.limiter.would_wait(&c.send_slots("d"), t0) > Duration::from_millis(900));
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

    #[tokio::test]
    async fn a_managed_identity_bot_finds_its_endpoint_in_the_settings_not_the_environment() {
        use wiremock::matchers::{header, method, path, query_param};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/msi/token"))
            .and(query_param("api-version", "2019-08-01"))
            .and(query_param("resource", BOT_RESOURCE))
            .and(query_param("client_id", "bot-mi"))
            .and(header("X-IDENTITY-HEADER", "platform-header"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "access_token": "mi-token",
                "expires_in": "3599",
            })))
            .expect(1)
            .mount(&server)
            .await;
        let endpoint = format!("{}/msi/token", server.uri());
        // Only the settings source has these: the process environment does not.
        let (settings, problems) = crate::bot::settings::tests::load(&[
            ("BOT_APP_ID", "app"),
            ("BOT_APP_TYPE", "UserAssignedMSI"),
            ("BOT_MSI_CLIENT_ID", "bot-mi"),
            ("IDENTITY_ENDPOINT", &endpoint),
            ("IDENTITY_HEADER", "platform-header"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let tokens = TokenProvider::new(reqwest::Client::new(), &settings.unwrap());
        assert_eq!(tokens.token().await.unwrap(), "mi-token");
        assert_eq!(tokens.token().await.unwrap(), "mi-token");
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
