//! The Graph client: one authenticated, paced, retried request, on the outbound layer (shared
//! HTTP client, cached app-only token, [`RetryPolicy`], keyed limiter). Paging, delta and `$batch`
//! build on [`GraphClient::send`]; endpoint files (users, teams, apps) build on the typed helpers.

use super::budget::{self, Budgets};
use super::error::{is_resync_code, GraphError};
use super::permissions::required_permission;
use super::settings::{GraphAuth, GraphSettings};
use crate::outbound::limiter::RateLimiter;
use crate::outbound::token::client_credentials::{
    tenant_token_endpoint, ClientCertificate, ClientProof,
};
use crate::outbound::token::{ClientCredentials, ManagedIdentity, MsiEndpoint};
use crate::outbound::{retry, Failure, RetryPolicy, TokenSource};
use crate::redact;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// App-only tokens: the resource's `/.default` scope (a managed identity gets the v1 resource).
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What Graph answered to a successful call. `body` is `Null` for an empty body (202 of
/// `POST /teams`, 204s); `location` / `content_location` carry the async operation and the new
/// team (`/teams('{id}')/operations('{opId}')`, `/teams('{id}')`).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphResponse {
    pub status: u16,
    pub location: Option<String>,
    pub content_location: Option<String>,
    pub body: Value,
}

/// A binary answer ([`GraphClient::get_bytes`]): the bytes and the `Content-Type` Graph gave.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphBytes {
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// How a successful answer's body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Json,
    /// Raw bytes, at most this many (refused from `Content-Length`, or once the stream passes it).
    Bytes(usize),
}

/// What one attempt read: JSON (the usual case) or the raw bytes of a binary answer.
enum Read {
    Json(GraphResponse),
    Bytes(GraphBytes),
}

/// Calls made so far by this client (each HTTP request once, a `$batch` as one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphStats {
    pub requests: u64,
    /// Requests other than GET (a `$batch` counts once).
    pub writes: u64,
    /// 429 answers received (outer and inside batches).
    pub throttled: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) requests: AtomicU64,
    pub(super) writes: AtomicU64,
    pub(super) throttled: AtomicU64,
}

/// Whether a failed attempt may be repeated without risking a second side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Safe to repeat after a timeout or a 5xx (GET, PUT, DELETE, PATCH, `members/add`).
    Idempotent,
    /// Repeated only after 429 (Graph did not run it); after a 5xx or a lost answer the caller
    /// must check for the side effect first (`POST /teams`).
    OnlyIfThrottled,
}

pub struct GraphClient {
    http: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    /// `https://graph.microsoft.com/v1.0` (no trailing slash).
    base: Url,
    pub(super) limiter: Arc<RateLimiter>,
    pub(super) budgets: Budgets,
    /// How throttled and failed calls are retried; tests shorten it.
    pub retry: RetryPolicy,
    pub(super) counters: Counters,
}

impl GraphClient {
    pub fn new(
        http: reqwest::Client,
        tokens: Arc<dyn TokenSource>,
        base: Url,
        budgets: Budgets,
    ) -> Self {
        let mut base = base;
        let trimmed = base.path().trim_end_matches('/').to_string();
        base.set_path(&trimmed);
        base.set_query(None);
        GraphClient {
            http,
            tokens,
            base,
            limiter: Arc::new(RateLimiter::new()),
            budgets,
            retry: RetryPolicy::MICROSOFT,
            counters: Counters::default(),
        }
    }

    /// The client the settings describe: its token source (secret, certificate or managed
    /// identity) through the outbound layer's cache.
    pub fn from_settings(http: reqwest::Client, s: &GraphSettings) -> Result<Self, GraphError> {
        let tokens: Arc<dyn TokenSource> = match &s.auth {
            GraphAuth::Secret(_) | GraphAuth::Certificate { .. } => {
                let proof = match &s.auth {
                    GraphAuth::Secret(secret) => ClientProof::Secret(secret.clone()),
                    GraphAuth::Certificate { cert_pem, key_pem } => ClientProof::Certificate(
                        ClientCertificate::from_pem(cert_pem, key_pem)
                            .map_err(|e| GraphError::Credentials(e.to_string()))?,
                    ),
                    GraphAuth::ManagedIdentity { .. } => unreachable!("matched above"),
                };
                let endpoint = s
                    .token_endpoint
                    .clone()
                    .unwrap_or_else(|| tenant_token_endpoint(&s.tenant_id));
                Arc::new(
                    ClientCredentials::new(http.clone(), endpoint, &s.client_id, proof).cached(),
                )
            }
            GraphAuth::ManagedIdentity { client_id } => {
                let endpoint = match &s.token_endpoint {
                    Some(u) => MsiEndpoint::AppService {
                        endpoint: u.to_string(),
                        header: s.platform_identity.header.clone().unwrap_or_default(),
                    },
                    None => MsiEndpoint::from_settings(&s.platform_identity),
                };
                Arc::new(ManagedIdentity::new(http.clone(), endpoint, client_id.clone()).cached())
            }
        };
        Ok(GraphClient::new(
            http,
            tokens,
            s.base_url.clone(),
            Budgets::graph(s.identity_ru_per_10s),
        ))
    }

    /// The application permissions the app's token carries (its `roles` claim), for
    /// `handler check-config`: `Ok(None)` when the token cannot be read (Microsoft calls access
    /// tokens opaque to clients; Graph's app-only tokens are JWTs today). Only the claim names
    /// leave this function, never the token.
    pub async fn app_roles(&self) -> Result<Option<Vec<String>>, GraphError> {
        use base64::Engine as _;
        let token = self.tokens.token(GRAPH_SCOPE).await.map_err(|e| {
            if e.is_transient() {
                GraphError::Transport {
                    method: "POST".into(),
                    path: "token endpoint".into(),
                    detail: e.to_string(),
                }
            } else {
                GraphError::Credentials(e.to_string())
            }
        })?;
        let payload = token.secret.expose().split('.').nth(1).and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        });
        let claims: Option<Value> = payload.and_then(|b| serde_json::from_slice(&b).ok());
        Ok(claims.map(|c| {
            c["roles"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        }))
    }

    pub fn stats(&self) -> GraphStats {
        GraphStats {
            requests: self.counters.requests.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            throttled: self.counters.throttled.load(Ordering::Relaxed),
        }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `/users/delta?$select=id` (relative to the version root), or a whole link Graph gave
    /// (`@odata.nextLink`, `deltaLink`, `Location`) — which must lie under the configured root,
    /// or the token would go wherever a response pointed.
    pub fn url(&self, path_or_link: &str) -> Result<Url, GraphError> {
        if path_or_link.starts_with('/') {
            let text = format!(
                "{}{}",
                self.base.as_str().trim_end_matches('/'),
                path_or_link
            );
            return Url::parse(&text)
                .map_err(|_| GraphError::UntrustedLink(redact::excerpt(path_or_link, 120)));
        }
        let u = Url::parse(path_or_link)
            .map_err(|_| GraphError::UntrustedLink(redact::excerpt(path_or_link, 120)))?;
        let root = self.base.path().trim_end_matches('/');
        let under = u.path() == root || u.path().starts_with(&format!("{root}/"));
        let same_origin = u.scheme() == self.base.scheme()
            && u.host_str()
                .zip(self.base.host_str())
                .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
            && u.port_or_known_default() == self.base.port_or_known_default();
        if same_origin && under {
            Ok(u)
        } else {
            Err(GraphError::UntrustedLink(format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.path()
            )))
        }
    }

    /// The part of `url` below the version root, query included (`/users/delta?$skiptoken=…`).
    pub fn relative(&self, url: &Url) -> String {
        let root = self.base.path().trim_end_matches('/');
        let path = url.path().strip_prefix(root).unwrap_or(url.path());
        match url.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        }
    }

    /// `GET` and decode.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, GraphError> {
        let r = self
            .send(Method::GET, path, None, &[], Repeat::Idempotent)
            .await?;
        decode(path, r.body)
    }

    /// `POST` a JSON body; repeated only after 429 (see [`Repeat`]).
    pub async fn post_json<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<GraphResponse, GraphError> {
        let body = to_value(path, body)?;
        self.send(
            Method::POST,
            path,
            Some(&body),
            &[],
            Repeat::OnlyIfThrottled,
        )
        .await
    }

    /// `POST` whose repetition is harmless (`members/add`, `archive`): also retried after 5xx.
    pub async fn post_json_idempotent<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<GraphResponse, GraphError> {
        let body = to_value(path, body)?;
        self.send(Method::POST, path, Some(&body), &[], Repeat::Idempotent)
            .await
    }

    pub async fn put_json<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<GraphResponse, GraphError> {
        let body = to_value(path, body)?;
        self.send(Method::PUT, path, Some(&body), &[], Repeat::Idempotent)
            .await
    }

    pub async fn patch_json<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<GraphResponse, GraphError> {
        let body = to_value(path, body)?;
        self.send(Method::PATCH, path, Some(&body), &[], Repeat::Idempotent)
            .await
    }

    pub async fn delete(&self, path: &str) -> Result<GraphResponse, GraphError> {
        self.send(Method::DELETE, path, None, &[], Repeat::Idempotent)
            .await
    }

    /// `GET` a binary resource (`/users/{id}/photo/$value`), at most `max_bytes` of it: a larger
    /// answer is refused (from its `Content-Length`, or as soon as the stream passes the cap) with
    /// [`GraphError::TooLarge`], never held in memory. Errors are read as Graph's JSON errors.
    pub async fn get_bytes(&self, path: &str, max_bytes: usize) -> Result<GraphBytes, GraphError> {
        match self
            .exchange_as(
                Method::GET,
                path,
                None,
                &[],
                Repeat::Idempotent,
                &[],
                Want::Bytes(max_bytes),
            )
            .await?
        {
            Read::Bytes(b) => Ok(b),
            Read::Json(_) => Err(GraphError::Decode {
                path: path_label(path),
                detail: "expected a binary answer".into(),
            }),
        }
    }

    /// One call: paced by the budgets it counts against, with a cached token (dropped and
    /// fetched again once on a 401), retried per [`RetryPolicy`] on 429 (`Retry-After`, whole or
    /// fractional) and, when `repeat` allows, on 502/503/504 and lost answers.
    pub async fn send(
        &self,
        method: Method,
        path_or_link: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
        repeat: Repeat,
    ) -> Result<GraphResponse, GraphError> {
        self.exchange(method, path_or_link, body, headers, repeat, &[])
            .await
    }

    /// [`send`](Self::send), also accepting the statuses in `accept` as answers (the `$batch`
    /// envelope may come back 424 with its inner answers).
    pub(crate) async fn exchange(
        &self,
        method: Method,
        path_or_link: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
        repeat: Repeat,
        accept: &[u16],
    ) -> Result<GraphResponse, GraphError> {
        match self
            .exchange_as(
                method,
                path_or_link,
                body,
                headers,
                repeat,
                accept,
                Want::Json,
            )
            .await?
        {
            Read::Json(r) => Ok(r),
            Read::Bytes(_) => unreachable!("a JSON exchange reads JSON"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn exchange_as(
        &self,
        method: Method,
        path_or_link: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
        repeat: Repeat,
        accept: &[u16],
        want: Want,
    ) -> Result<Read, GraphError> {
        let url = self.url(path_or_link)?;
        let rel = self.relative(&url);
        let charge = budget::charge(method.as_str(), &rel);
        let label = path_label(&rel);
        let refreshed = AtomicBool::new(false);
        let what = format!("graph {method} {label}");
        let (url, rel, label, charge, refreshed, method) =
            (&url, &rel, &label, &charge, &refreshed, &method);
        self.retry
            .run(&what, move |_| async move {
                self.attempt(
                    method, url, rel, label, body, headers, repeat, accept, refreshed, charge, want,
                )
                .await
            })
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        rel: &str,
        label: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
        repeat: Repeat,
        accept: &[u16],
        refreshed: &AtomicBool,
        charge: &budget::Charge,
        want: Want,
    ) -> Result<Read, Failure<GraphError>> {
        let token = match self.tokens.token(GRAPH_SCOPE).await {
            Ok(t) => t,
            Err(e) if e.is_transient() => {
                return Err(Failure::retryable(
                    GraphError::Transport {
                        method: method.to_string(),
                        path: label.to_string(),
                        detail: e.to_string(),
                    },
                    None,
                ))
            }
            Err(e) => return Err(Failure::permanent(GraphError::Credentials(e.to_string()))),
        };
        // Booked after the token, right before the send: Graph counts arrivals, and a booking
        // made before a slow token fetch would arrive late and bunch up with the next second's.
        budget::pace(&self.limiter, &self.budgets, charge).await;
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(token.secret.expose())
            .header(
                reqwest::header::ACCEPT,
                match want {
                    Want::Json => "application/json",
                    Want::Bytes(_) => "*/*",
                },
            )
            .timeout(REQUEST_TIMEOUT);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if *method != Method::GET {
            self.counters.writes.fetch_add(1, Ordering::Relaxed);
        }
        let transport = |detail: String| GraphError::Transport {
            method: method.to_string(),
            path: label.to_string(),
            detail,
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let err = transport(redact::error_chain(&e));
                return Err(match repeat {
                    Repeat::Idempotent => Failure::retryable(err, None),
                    Repeat::OnlyIfThrottled => Failure::permanent(err),
                });
            }
        };
        let status = resp.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let location = header(reqwest::header::LOCATION);
        let content_location = header(reqwest::header::CONTENT_LOCATION);
        let retry_after = retry::retry_after(resp.headers());
        if let (Want::Bytes(max), true) = (want, (200..300).contains(&status)) {
            let content_type = header(reqwest::header::CONTENT_TYPE);
            return read_capped(resp, max, label)
                .await
                .map(|bytes| {
                    Read::Bytes(GraphBytes {
                        content_type,
                        bytes,
                    })
                })
                .map_err(|e| match (&e, repeat) {
                    (GraphError::Transport { .. }, Repeat::Idempotent) => {
                        Failure::retryable(e, None)
                    }
                    _ => Failure::permanent(e),
                });
        }
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => {
                let err = transport(redact::error_chain(&e));
                return Err(match repeat {
                    Repeat::Idempotent => Failure::retryable(err, None),
                    Repeat::OnlyIfThrottled => Failure::permanent(err),
                });
            }
        };
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(_) if (200..300).contains(&status) => {
                    return Err(Failure::permanent(GraphError::Decode {
                        path: label.to_string(),
                        detail: format!("{status} with a body that is not JSON"),
                    }))
                }
                Err(_) => Value::Null,
            }
        };
        if (200..300).contains(&status) || accept.contains(&status) {
            return Ok(Read::Json(GraphResponse {
                status,
                location,
                content_location,
                body,
            }));
        }
        if status == 429 {
            self.counters.throttled.fetch_add(1, Ordering::Relaxed);
        }
        let err = error_for(method.as_str(), rel, status, location, retry_after, &body);
        Err(match status {
            401 if !refreshed.swap(true, Ordering::SeqCst) => {
                // Revoked or rotated: one fresh token, one more try.
                self.tokens.forget(GRAPH_SCOPE);
                Failure::retryable(err, Some(Duration::ZERO))
            }
            429 => Failure::retryable(err, retry_after),
            s if retry::is_retryable_status(s) && repeat == Repeat::Idempotent => {
                Failure::retryable(err, retry_after)
            }
            _ => Failure::permanent(err),
        })
    }
}

/// The body of a binary answer, refused past `max` bytes (declared or streamed).
async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
    label: &str,
) -> Result<Vec<u8>, GraphError> {
    let too_large = |size: Option<u64>| GraphError::TooLarge {
        path: label.to_string(),
        limit: max as u64,
        size,
    };
    if let Some(n) = resp.content_length().filter(|n| *n > max as u64) {
        return Err(too_large(Some(n)));
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > max {
                    return Err(too_large(None));
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(GraphError::Transport {
                    method: "GET".into(),
                    path: label.to_string(),
                    detail: redact::error_chain(&e),
                })
            }
        }
    }
}

/// The typed error for a failed answer (also used for `$batch` items).
pub(crate) fn error_for(
    method: &str,
    rel: &str,
    status: u16,
    location: Option<String>,
    retry_after: Option<Duration>,
    body: &Value,
) -> GraphError {
    let code = body["error"]["code"].as_str().unwrap_or("").to_string();
    let message = redact::excerpt(body["error"]["message"].as_str().unwrap_or(""), 300);
    let path = path_label(rel);
    let method = method.to_string();
    match status {
        401 => GraphError::Unauthorized { method, path, code },
        403 => GraphError::Forbidden {
            permission: required_permission(&method, rel),
            method,
            path,
            code,
        },
        410 => GraphError::ResyncRequired {
            status,
            code,
            location,
        },
        400..=499 if is_resync_code(&code) => GraphError::ResyncRequired {
            status,
            code,
            location,
        },
        404 => GraphError::NotFound { method, path, code },
        429 | 502 | 503 | 504 => GraphError::Busy {
            method,
            path,
            status,
            retry_after,
        },
        _ => GraphError::Status {
            method,
            path,
            status,
            code,
            message,
        },
    }
}

/// A path fit for logs and errors: no query (skip and delta tokens are credentials of a sort).
pub(crate) fn path_label(rel: &str) -> String {
    rel.split('?').next().unwrap_or("").to_string()
}

pub(crate) fn decode<T: DeserializeOwned>(path: &str, body: Value) -> Result<T, GraphError> {
    serde_json::from_value(body).map_err(|e| GraphError::Decode {
        path: path_label(path),
        detail: e.to_string(),
    })
}

fn to_value<B: Serialize + ?Sized>(path: &str, body: &B) -> Result<Value, GraphError> {
    serde_json::to_value(body).map_err(|e| GraphError::Decode {
        path: path_label(path),
        detail: e.to_string(),
    })
}
