//! JSON `$batch`: up to 20 requests in one call. Each inner request is throttled on its own
//! (Graph counts the 20 as 20), so each is paced on its own budgets before the envelope goes;
//! items that fail on their own (429 with their own `Retry-After`, 503/504 for safe methods, and
//! the 424s that depended on them) are sent again in a later batch, only them; other failures
//! come back per item as typed errors.

use super::budget;
use super::client::{error_for, GraphClient, Repeat};
use super::error::GraphError;
use crate::outbound::retry::parse_retry_after;
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

/// Graph's ceiling of requests per batch.
pub const MAX_BATCH: usize = 20;

/// One inner request; `url` is relative to the version root (`/users/{id}?$select=…`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchRequest {
    pub id: String,
    pub method: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Ids of requests of the same batch (same group of 20) this one waits for.
    #[serde(rename = "dependsOn", skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

impl BatchRequest {
    pub fn get(id: impl Into<String>, url: impl Into<String>) -> Self {
        BatchRequest {
            id: id.into(),
            method: "GET".into(),
            url: url.into(),
            body: None,
            depends_on: Vec::new(),
        }
    }

    pub fn with_body(
        id: impl Into<String>,
        method: &str,
        url: impl Into<String>,
        body: Value,
    ) -> Self {
        BatchRequest {
            id: id.into(),
            method: method.to_ascii_uppercase(),
            url: url.into(),
            body: Some(body),
            depends_on: Vec::new(),
        }
    }

    fn wire(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if self.body.is_some() {
            // Graph requires Content-Type on every inner request with a body.
            v["headers"] = json!({"Content-Type": "application/json"});
        }
        v
    }

    fn safe_to_repeat(&self) -> bool {
        !self.method.eq_ignore_ascii_case("POST")
    }
}

/// A successful inner answer.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchAnswer {
    pub status: u16,
    pub body: Value,
}

/// Per request id, in the order given.
pub type BatchResults = Vec<(String, Result<BatchAnswer, GraphError>)>;

impl GraphClient {
    /// Runs `requests` in batches of [`MAX_BATCH`]; one result per request, in the given order.
    /// `Err` only when a whole envelope fails (credentials, permission, transport).
    pub async fn batch(&self, requests: Vec<BatchRequest>) -> Result<BatchResults, GraphError> {
        let ids: BTreeSet<&str> = requests.iter().map(|r| r.id.as_str()).collect();
        if ids.len() != requests.len() {
            return Err(GraphError::Decode {
                path: "/$batch".into(),
                detail: "duplicate request ids (Graph rejects the whole batch)".into(),
            });
        }
        let mut done: BTreeMap<String, Result<BatchAnswer, GraphError>> = BTreeMap::new();
        for group in requests.chunks(MAX_BATCH) {
            self.batch_group(group, &mut done).await?;
        }
        Ok(requests
            .iter()
            .map(|r| {
                let result = done.remove(&r.id).unwrap_or_else(|| {
                    Err(GraphError::Decode {
                        path: "/$batch".into(),
                        detail: format!("no answer for request {}", r.id),
                    })
                });
                (r.id.clone(), result)
            })
            .collect())
    }

    async fn batch_group(
        &self,
        group: &[BatchRequest],
        done: &mut BTreeMap<String, Result<BatchAnswer, GraphError>>,
    ) -> Result<(), GraphError> {
        let mut pending: Vec<&BatchRequest> = group.iter().collect();
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            for r in &pending {
                budget::pace(
                    &self.limiter,
                    &self.budgets,
                    &budget::charge(&r.method, &r.url),
                )
                .await;
            }
            let envelope =
                json!({"requests": pending.iter().map(|r| r.wire()).collect::<Vec<_>>()});
            // 424 as the envelope's status: an older doc said a batch with a throttled item
            // "fails with 424"; its inner answers are read all the same (fixture: unconfirmed).
            let outer = self
                .exchange(
                    Method::POST,
                    "/$batch",
                    Some(&envelope),
                    &[],
                    Repeat::OnlyIfThrottled,
                    &[424],
                )
                .await?;
            let answers: BTreeMap<String, &Value> = outer.body["responses"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| Some((r["id"].as_str()?.to_string(), r)))
                        .collect()
                })
                .unwrap_or_default();
            let mut again: Vec<&BatchRequest> = Vec::new();
            let mut longest = Duration::ZERO;
            let mut retried: BTreeSet<&str> = BTreeSet::new();
            let last_try = attempt >= self.retry.max_attempts;
            for r in &pending {
                let Some(a) = answers.get(&r.id) else {
                    done.insert(r.id.clone(), Err(missing(&r.id)));
                    continue;
                };
                let status = a["status"].as_u64().unwrap_or(0) as u16;
                let retry_after = inner_header(a, "retry-after")
                    .and_then(|v| parse_retry_after(&v, SystemTime::now()));
                if status == 429 {
                    self.counters
                        .throttled
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let repeatable = status == 429
                    || ((502..=504).contains(&status) && r.safe_to_repeat())
                    || (status == 424 && r.depends_on.iter().any(|d| retried.contains(d.as_str())));
                if repeatable && !last_try {
                    longest =
                        longest.max(retry_after.unwrap_or_else(|| self.retry.backoff(attempt)));
                    retried.insert(r.id.as_str());
                    again.push(r);
                } else if (200..300).contains(&status) {
                    done.insert(
                        r.id.clone(),
                        Ok(BatchAnswer {
                            status,
                            body: a["body"].clone(),
                        }),
                    );
                } else {
                    let location = inner_header(a, "location");
                    done.insert(
                        r.id.clone(),
                        Err(error_for(
                            &r.method,
                            &r.url,
                            status,
                            location,
                            retry_after,
                            &a["body"],
                        )),
                    );
                }
            }
            if again.is_empty() {
                break;
            }
            if waited + longest > self.retry.max_total_wait {
                for r in again {
                    done.insert(
                        r.id.clone(),
                        Err(GraphError::Busy {
                            method: r.method.clone(),
                            path: super::client::path_label(&r.url),
                            status: 429,
                            retry_after: Some(longest),
                        }),
                    );
                }
                break;
            }
            tracing::warn!(
                items = again.len(),
                wait_ms = longest.as_millis() as u64,
                "graph $batch: retrying throttled items"
            );
            tokio::time::sleep(longest).await;
            waited += longest;
            pending = again;
        }
        Ok(())
    }
}

fn missing(id: &str) -> GraphError {
    GraphError::Decode {
        path: "/$batch".into(),
        detail: format!("no answer for request {id}"),
    }
}

/// A header of an inner answer, name compared case-insensitively.
fn inner_header(answer: &Value, name: &str) -> Option<String> {
    answer["headers"].as_object()?.iter().find_map(|(k, v)| {
        k.eq_ignore_ascii_case(name)
            .then(|| v.as_str().map(str::to_string))
            .flatten()
    })
}
