//! `@odata.nextLink` paging and `/…/delta` rounds. A page is handed over as soon as it arrives
//! (50,000 users never sit in memory at once); links are followed whole, never rebuilt.
//!
//! Delta: the whole `@odata.deltaLink` is the checkpoint, handed out only once the last page of a
//! round was read. The "start over" family of the fixtures README — no checkpoint, one older than
//! [`DELTA_MAX_AGE`], 410 Gone, a 4xx with `syncStateNotFound` / `resyncRequired`, or
//! `Directory_ExpiredPageToken` mid-round — turns the round into a *full* round from the initial
//! URL; only a complete full round may be used to remove what it did not list.

use super::client::{decode, GraphClient, Repeat};
use super::error::GraphError;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Delta tokens live 7 days; one older than this is not used (start over before the error).
pub const DELTA_MAX_AGE: Duration = Duration::from_secs(6 * 24 * 3600);
/// Full-round restarts within one round before giving up (a token expiring again and again).
const MAX_RESTARTS: u32 = 2;

#[derive(Deserialize)]
struct RawPage {
    #[serde(default)]
    value: Vec<Value>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    delta_link: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The last page of a delta round carries the link of the next round.
    pub delta_link: Option<String>,
}

/// Pages of a list, followed through `@odata.nextLink` until a page has none.
pub struct Pages<'c, T> {
    client: &'c GraphClient,
    next: Option<String>,
    headers: Vec<(String, String)>,
    _item: PhantomData<T>,
}

impl GraphClient {
    /// Pages of `path` (relative to the version root).
    pub fn pages<T: DeserializeOwned>(&self, path: &str) -> Pages<'_, T> {
        Pages {
            client: self,
            next: Some(path.to_string()),
            headers: Vec::new(),
            _item: PhantomData,
        }
    }

    /// Every item of `path`, all pages (small lists only: owners, members of one team).
    pub async fn all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, GraphError> {
        let mut pages = self.pages::<T>(path);
        let mut out = Vec::new();
        while let Some(p) = pages.next_page().await? {
            out.extend(p.items);
        }
        Ok(out)
    }

    /// A delta round of `initial` (e.g. `/users/delta?$select=…`), incremental from `checkpoint`
    /// when it is fresh, full otherwise.
    pub fn delta<T: DeserializeOwned>(
        &self,
        initial: &str,
        checkpoint: Option<&DeltaCheckpoint>,
    ) -> DeltaRound<'_, T> {
        let now = SystemTime::now();
        let (next, why_full) = match checkpoint {
            None => (initial.to_string(), Some(StartOver::NoCheckpoint)),
            Some(c) if c.is_stale(now) => (initial.to_string(), Some(StartOver::CheckpointTooOld)),
            Some(c) => (c.link.clone(), None),
        };
        DeltaRound {
            client: self,
            initial: initial.to_string(),
            next: Some(next),
            why_full,
            restarted: None,
            restarts: 0,
            checkpoint: None,
            _item: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Pages<'_, T> {
    /// Sent with every page (Graph does not carry `ConsistencyLevel` etc. over to later pages).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The next page, or `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Page<T>>, GraphError> {
        let Some(link) = self.next.take() else {
            return Ok(None);
        };
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = self
            .client
            .send(Method::GET, &link, None, &headers, Repeat::Idempotent)
            .await?;
        let raw: RawPage = decode(&link, r.body)?;
        self.next = raw.next_link;
        let items = raw
            .value
            .into_iter()
            .map(|v| decode(&link, v))
            .collect::<Result<Vec<T>, _>>()?;
        Ok(Some(Page {
            items,
            delta_link: raw.delta_link,
        }))
    }
}

/// The stored link of the next delta round, with when it was received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaCheckpoint {
    pub link: String,
    /// Unix seconds.
    pub saved_at: u64,
}

impl DeltaCheckpoint {
    pub fn new(link: String, at: SystemTime) -> Self {
        DeltaCheckpoint {
            link,
            saved_at: at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
        }
    }

    pub fn is_stale(&self, now: SystemTime) -> bool {
        let saved = UNIX_EPOCH + Duration::from_secs(self.saved_at);
        now.duration_since(saved).unwrap_or_default() > DELTA_MAX_AGE
    }
}

/// Why a round is a full one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOver {
    NoCheckpoint,
    CheckpointTooOld,
    /// Graph said the delta state is gone (410, `syncStateNotFound`, `resyncRequired`).
    StateGone {
        status: u16,
        code: String,
    },
    /// A skip token expired while the round was being read (`Directory_ExpiredPageToken`).
    PageTokenExpired,
}

impl std::fmt::Display for StartOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartOver::NoCheckpoint => write!(f, "no delta checkpoint yet"),
            StartOver::CheckpointTooOld => write!(f, "the delta checkpoint is older than 6 days"),
            StartOver::StateGone { status, code } => {
                write!(f, "Graph dropped the delta state ({status} {code})")
            }
            StartOver::PageTokenExpired => write!(f, "a page token expired mid-round"),
        }
    }
}

/// One entry of a delta page: an object (all selected properties; absent = never set), or a
/// removal (`@removed`: `changed` = soft-deleted and restorable, `deleted` = gone for good).
#[derive(Debug, Clone, PartialEq)]
pub enum DeltaItem<T> {
    Present(T),
    Removed { id: String, reason: String },
}

#[derive(Debug, Clone)]
pub struct DeltaPage<T> {
    pub items: Vec<DeltaItem<T>>,
    /// The round started over as a full round just before this page: whatever the caller
    /// gathered from earlier pages of this round is not a complete picture any more — reset it.
    pub restarted: Option<StartOver>,
}

pub struct DeltaRound<'c, T> {
    client: &'c GraphClient,
    initial: String,
    next: Option<String>,
    why_full: Option<StartOver>,
    restarted: Option<StartOver>,
    restarts: u32,
    checkpoint: Option<DeltaCheckpoint>,
    _item: PhantomData<T>,
}

impl<T: DeserializeOwned> DeltaRound<'_, T> {
    /// A full round lists every object: what it does not list is gone (once it is complete).
    pub fn is_full(&self) -> bool {
        self.why_full.is_some()
    }

    pub fn why_full(&self) -> Option<&StartOver> {
        self.why_full.as_ref()
    }

    /// The next round's checkpoint, once the last page was read (`None` before, or after a failure).
    pub fn checkpoint(&self) -> Option<&DeltaCheckpoint> {
        self.checkpoint.as_ref()
    }

    pub fn is_complete(&self) -> bool {
        self.checkpoint.is_some()
    }

    /// The next page, `None` once the round is complete. An error ends the round without a
    /// checkpoint: the caller keeps its old one and must not remove anything.
    pub async fn next_page(&mut self) -> Result<Option<DeltaPage<T>>, GraphError> {
        loop {
            let Some(link) = self.next.take() else {
                return Ok(None);
            };
            let answer = self
                .client
                .send(Method::GET, &link, None, &[], Repeat::Idempotent)
                .await;
            let body = match answer {
                Ok(r) => r.body,
                Err(GraphError::ResyncRequired {
                    status,
                    code,
                    location,
                }) if self.restarts < MAX_RESTARTS => {
                    self.restarts += 1;
                    let why = if code.eq_ignore_ascii_case("Directory_ExpiredPageToken") {
                        StartOver::PageTokenExpired
                    } else {
                        StartOver::StateGone { status, code }
                    };
                    tracing::warn!(reason = %why, "Graph delta: starting a full round");
                    self.next = Some(self.restart_link(location));
                    self.why_full = Some(why.clone());
                    self.restarted = Some(why);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let raw: RawPage = decode(&link, body)?;
            let items = raw
                .value
                .into_iter()
                .map(|v| delta_item(&link, v))
                .collect::<Result<Vec<_>, _>>()?;
            match (raw.next_link, raw.delta_link) {
                (Some(next), _) => self.next = Some(next),
                (None, Some(delta)) => {
                    self.checkpoint = Some(DeltaCheckpoint::new(delta, SystemTime::now()))
                }
                (None, None) => {
                    return Err(GraphError::Decode {
                        path: super::client::path_label(&link),
                        detail: "a delta page with neither @odata.nextLink nor @odata.deltaLink"
                            .into(),
                    })
                }
            }
            return Ok(Some(DeltaPage {
                items,
                restarted: self.restarted.take(),
            }));
        }
    }

    /// Where a full round starts: Graph's `Location` when it keeps our `$select` (the
    /// fixture's Location drops it: `…/users/delta?$deltatoken=`), the initial URL otherwise, so
    /// the full round tracks the same properties.
    fn restart_link(&self, location: Option<String>) -> String {
        match location {
            Some(l)
                if self.client.url(&l).is_ok()
                    && (l.contains("$select=") || !self.initial.contains("$select=")) =>
            {
                l
            }
            _ => self.initial.clone(),
        }
    }
}

fn delta_item<T: DeserializeOwned>(link: &str, v: Value) -> Result<DeltaItem<T>, GraphError> {
    if let Some(removed) = v.get("@removed") {
        let id = v["id"].as_str().unwrap_or("").to_string();
        if id.is_empty() {
            return Err(GraphError::Decode {
                path: super::client::path_label(link),
                detail: "an @removed entry without id".into(),
            });
        }
        let reason = removed["reason"].as_str().unwrap_or("").to_string();
        return Ok(DeltaItem::Removed { id, reason });
    }
    decode(link, v).map(DeltaItem::Present)
}
