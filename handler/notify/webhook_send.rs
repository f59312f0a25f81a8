//! Channel posts to Workflows URLs: the URL is checked against the allow-list before every
//! send (a stored URL may predate a rule), the client follows no redirect and connects only to
//! public addresses ([`crate::outbound::http::untrusted`]), each webhook gets at most 4 posts
//! per second ([`Quota::webhook`]), and 429/412/5xx are retried with jitter honouring
//! `Retry-After`. 403/404/410 mean the flow is gone: permanent, the configuration is disabled.

use super::webhook_url::{self, UrlRefusal};
use crate::outbound::limiter::{Quota, RateLimiter};
use crate::outbound::public_dns::PublicResolver;
use crate::outbound::{retry, Failure, RetryPolicy};
use crate::redact;
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    #[error("webhook URL refused: {0}")]
    Refused(#[from] UrlRefusal),
    #[error("the flow is gone or refuses us (HTTP {0})")]
    Gone(u16),
    #[error("the webhook answered a redirect (HTTP {0}); redirects are not followed")]
    Redirect(u16),
    #[error("the webhook answered HTTP {0}")]
    Status(u16),
    #[error("cannot reach the webhook: {0}")]
    Transport(String),
    #[error("address refused: {0}")]
    Address(String),
    #[error("rate limit: the next free slot is {0:?} away")]
    RateLimited(Duration),
}

impl PostError {
    pub fn is_retryable(&self) -> bool {
        match self {
            PostError::Transport(_) | PostError::RateLimited(_) => true,
            PostError::Status(s) => retry::is_retryable_status(*s) || *s == 500,
            _ => false,
        }
    }

    /// The configuration should stop receiving posts until a teacher fixes it.
    pub fn disables(&self) -> bool {
        matches!(
            self,
            PostError::Refused(_)
                | PostError::Gone(_)
                | PostError::Redirect(_)
                | PostError::Address(_)
        )
    }
}

/// Retries of one post: a few, spread out (Workflows has no documented per-URL rate).
pub const WEBHOOK_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 5,
    base_backoff: Duration::from_millis(500),
    max_backoff: Duration::from_secs(30),
    max_total_wait: Duration::from_secs(90),
};

pub struct WebhookSender {
    http: reqwest::Client,
    resolver: PublicResolver,
    pub limiter: RateLimiter,
    quota: Quota,
    /// Tests only: where allowed URLs are really sent (see `NOTIFY_WEBHOOK_DOUBLE_URL`).
    double: Option<url::Url>,
    pub retry: RetryPolicy,
}

impl WebhookSender {
    pub fn new(resolver: PublicResolver, double: Option<url::Url>) -> Result<Self, reqwest::Error> {
        Ok(WebhookSender {
            http: crate::outbound::http::untrusted(resolver.clone())?,
            resolver,
            limiter: RateLimiter::new(),
            // A post that reaches the flow early would be throttled: keep a margin (10%:
            // webhook posts are few, a missed 429 costs a whole Retry-After).
            quota: Quota::webhook().with_margin(Duration::from_millis(100)),
            double,
            retry: WEBHOOK_RETRY,
        })
    }

    /// How long a post to this webhook would wait for its rate limit now.
    pub fn would_wait(&self, key: &str) -> Duration {
        self.limiter
            .would_wait(&[self.quota.key(key)], Instant::now())
    }

    fn destination(&self, checked: &url::Url) -> String {
        match &self.double {
            Some(base) => {
                let mut u = base.clone();
                u.set_path(&format!(
                    "{}{}",
                    base.path().trim_end_matches('/'),
                    checked.path()
                ));
                u.set_query(checked.query());
                u.to_string()
            }
            None => checked.to_string(),
        }
    }

    /// Post `payload` to the webhook `raw_url` (rate-limited under `key`, one per configuration).
    pub async fn post(&self, key: &str, raw_url: &str, payload: &Value) -> Result<(), PostError> {
        let checked = webhook_url::check(raw_url)?;
        let host = webhook_url::loggable(&checked);
        if self.double.is_none() {
            // Resolve first so a private address is a clear, permanent refusal; the client's
            // resolver applies the same rule when it connects (no window for a rebind).
            self.resolver
                .resolve_public(checked.host_str().unwrap_or_default())
                .await
                .map_err(|e| PostError::Address(e.0))?;
        }
        let to = self.destination(&checked);
        let body = serde_json::to_vec(payload).map_err(|e| PostError::Transport(e.to_string()))?;
        let slot = [self.quota.key(key)];
        self.retry
            .run("webhook post", |_| {
                let (to, body) = (&to, &body);
                let host = host.as_str();
                async move {
                    self.limiter.acquire(&slot).await;
                    self.post_once(to, body, host).await.map_err(|(e, after)| {
                        if e.is_retryable() {
                            Failure::retryable(e, after)
                        } else {
                            Failure::permanent(e)
                        }
                    })
                }
            })
            .await
    }

    async fn post_once(
        &self,
        to: &str,
        body: &[u8],
        host: &str,
    ) -> Result<(), (PostError, Option<Duration>)> {
        let resp = self
            .http
            .post(to)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| {
                // Never the URL: its query holds the flow's `sig`.
                let chain = redact::error_chain(&e.without_url());
                let error = if chain.contains("non-public address") {
                    PostError::Address(chain)
                } else {
                    PostError::Transport(chain)
                };
                (error, None)
            })?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let after = retry::retry_after(resp.headers());
        tracing::warn!(status, host, "webhook post failed");
        let e = match status {
            300..=399 => PostError::Redirect(status),
            401 | 403 | 404 | 410 => PostError::Gone(status),
            _ => PostError::Status(status),
        };
        Err((e, after))
    }
}
