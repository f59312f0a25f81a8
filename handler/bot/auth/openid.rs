//! Bot Connector signing keys: OpenID metadata → `jwks_uri` → RSA keys with their channel
//! endorsements. Cached; reloaded every 12 h (the service asks for < 24 h); an unknown `kid`
//! triggers one reload at most every 5 minutes; no token is ever accepted before a set has
//! loaded.
//!
//! One fetch at a time, shared by every caller that needs it, running in its own task so a
//! caller that gives up does not cancel it. After a failure the next attempt waits (1 s,
//! doubling, at most 5 minutes), and while a refresh fails the last good set stays in use: a
//! token signed by a key of the stale set is still verified at once, and the refresh of a
//! stale set never holds a request.

use crate::telemetry::capped;
use base64::Engine;
use futures::future::{BoxFuture, FutureExt, Shared};
use ring::signature::RsaPublicKeyComponents;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use url::Url;

const REFRESH_EVERY: Duration = Duration::from_secs(12 * 3600);
const UNKNOWN_KID_MIN_INTERVAL: Duration = Duration::from_secs(300);
/// First wait after a failed fetch; doubles with each failure in a row, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest a request waits for a fetch in flight (the fetch itself may take longer).
const WAIT_FOR_FETCH: Duration = Duration::from_secs(5);
/// Each GET of a fetch (metadata, then keys).
const GET_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SigningKey {
    pub kid: String,
    /// RSA public key (modulus and exponent, big-endian), checked with `ring`.
    pub public: RsaPublicKeyComponents<Vec<u8>>,
    /// Channel ids the key is endorsed for (e.g. `msteams`).
    pub endorsements: Vec<String>,
}

impl SigningKey {
    pub fn endorses(&self, channel_id: &str) -> bool {
        self.endorsements.iter().any(|e| e == channel_id)
    }
}

struct KeySet {
    keys: HashMap<String, Arc<SigningKey>>,
    /// When a refresh is due (loaded + 12 h).
    stale_at: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The `kid` comes from an unauthenticated token: kept capped.
    #[error("no signing key with kid {0:?}")]
    UnknownKid(String),
    #[error("signing keys unavailable: {0}")]
    Unavailable(String),
}

impl KeyError {
    fn unknown_kid(kid: &str) -> Self {
        KeyError::UnknownKid(capped(kid).into_owned())
    }
}

type Fetch = Shared<BoxFuture<'static, Result<(), String>>>;

/// Why a fetch is wanted: decides whether it may start.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// No set yet: nothing can be verified without one.
    FirstSet,
    /// The set is older than 12 h: refresh, but keep using it meanwhile.
    Stale,
    /// A `kid` the set does not have: a rotation, or an attacker sending random kids.
    UnknownKid,
}

#[derive(Default)]
struct FetchState {
    in_flight: Option<Fetch>,
    failures: u32,
    /// No new fetch before this instant (after a failure).
    retry_at: Option<Instant>,
    last_forced: Option<Instant>,
}

pub struct KeyCache {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    metadata_url: Url,
    set: RwLock<Option<Arc<KeySet>>>,
    /// Never held across an await.
    fetch: Mutex<FetchState>,
    fetches: AtomicU64,
    generation: AtomicU64,
}

#[derive(Deserialize)]
struct Metadata {
    jwks_uri: String,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<JwkEntry>,
}

#[derive(Deserialize)]
struct JwkEntry {
    #[serde(default)]
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    endorsements: Vec<String>,
}

impl KeyCache {
    pub fn new(http: reqwest::Client, metadata_url: Url) -> Self {
        KeyCache {
            inner: Arc::new(Inner {
                http,
                metadata_url,
                set: RwLock::new(None),
                fetch: Mutex::new(FetchState::default()),
                fetches: Default::default(),
                generation: Default::default(),
            }),
        }
    }

    /// Changes every time a key set is loaded: verifications cached under an older set are redone.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Number of key-set loads attempted (tests assert the unknown-kid rate limit with it).
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Treat the loaded set as older than 12 h from now on (the next use refreshes it); for
    /// tests of the stale path, which cannot wait half a day.
    pub fn age_out(&self) {
        let mut g = self.inner.set.write().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = g.as_ref() {
            *g = Some(Arc::new(KeySet {
                keys: set.keys.clone(),
                stale_at: Instant::now(),
            }));
        }
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.inner.set.read().ok().and_then(|g| g.clone())
    }

    fn lookup(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.snapshot().and_then(|s| s.keys.get(kid).cloned())
    }

    /// The key for `kid`, loading or reloading the set when needed.
    pub async fn key(&self, kid: &str) -> Result<Arc<SigningKey>, KeyError> {
        let now = Instant::now();
        if let Some(set) = self.snapshot() {
            if let Some(k) = set.keys.get(kid) {
                if now >= set.stale_at {
                    // Refreshed in the background; this request goes on with the stale key.
                    let _ = self.fetch(now, Need::Stale);
                }
                return Ok(k.clone());
            }
            let Some(fetch) = self.fetch(now, Need::UnknownKid) else {
                return Err(KeyError::unknown_kid(kid));
            };
            let _ = tokio::time::timeout(WAIT_FOR_FETCH, fetch).await;
            return self.lookup(kid).ok_or_else(|| KeyError::unknown_kid(kid));
        }
        let Some(fetch) = self.fetch(now, Need::FirstSet) else {
            return Err(KeyError::Unavailable(
                "signing keys not loaded yet (retrying after a failed fetch)".into(),
            ));
        };
        match tokio::time::timeout(WAIT_FOR_FETCH, fetch).await {
            Err(_) => Err(KeyError::Unavailable(format!(
                "the key endpoint did not answer within {WAIT_FOR_FETCH:?}"
            ))),
            Ok(Err(e)) => Err(KeyError::Unavailable(e)),
            Ok(Ok(())) => self.lookup(kid).ok_or_else(|| KeyError::unknown_kid(kid)),
        }
    }

    /// The fetch in flight, or a new one when allowed: not while backing off after a failure,
    /// and for an unknown kid at most once per `UNKNOWN_KID_MIN_INTERVAL`. `None`: no fetch now.
    fn fetch(&self, now: Instant, need: Need) -> Option<Fetch> {
        let mut st = self.inner.fetch.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = &st.in_flight {
            return Some(f.clone());
        }
        if st.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        if need == Need::UnknownKid {
            if st
                .last_forced
                .is_some_and(|t| now.duration_since(t) < UNKNOWN_KID_MIN_INTERVAL)
            {
                return None;
            }
            st.last_forced = Some(now);
        }
        let inner = self.inner.clone();
        let task = tokio::spawn(async move { inner.load_and_install().await });
        let fetch: Fetch = async move {
            task.await
                .unwrap_or_else(|e| Err(format!("key fetch task failed: {e}")))
        }
        .boxed()
        .shared();
        st.in_flight = Some(fetch.clone());
        Some(fetch)
    }
}

impl Inner {
    /// One fetch: install the set, or keep the last good one and back off.
    async fn load_and_install(self: Arc<Self>) -> Result<(), String> {
        let result = self.load().await;
        let mut st = self.fetch.lock().unwrap_or_else(|p| p.into_inner());
        st.in_flight = None;
        match result {
            Ok(set) => {
                if let Ok(mut g) = self.set.write() {
                    *g = Some(Arc::new(set));
                }
                self.generation.fetch_add(1, Ordering::AcqRel);
                st.failures = 0;
                st.retry_at = None;
                Ok(())
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                let backoff = FIRST_BACKOFF
                    .saturating_mul(2u32.saturating_pow(st.failures - 1))
                    .min(MAX_BACKOFF);
                st.retry_at = Some(Instant::now() + backoff);
                tracing::warn!(error = %e, failures = st.failures, retry_in = ?backoff,
                    "could not load Bot Connector signing keys; keeping the last good set");
                Err(e)
            }
        }
    }

    async fn load(&self) -> Result<KeySet, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let meta: Metadata = self.get_json(self.metadata_url.clone()).await?;
        let jwks_uri = Url::parse(&meta.jwks_uri).map_err(|e| format!("jwks_uri: {e}"))?;
        // The key URL must be as trustworthy as the metadata URL: https, or the same loopback host.
        let ok = jwks_uri.scheme() == "https"
            || (jwks_uri.scheme() == self.metadata_url.scheme()
                && jwks_uri.host() == self.metadata_url.host());
        if !ok {
            return Err(format!("jwks_uri {jwks_uri} is not https"));
        }
        let jwks: Jwks = self.get_json(jwks_uri).await?;
        let mut keys = HashMap::new();
        for k in jwks.keys {
            if k.kty != "RSA" || k.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let (Some(kid), Some(n), Some(e)) = (k.kid, k.n, k.e) else {
                continue;
            };
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            match (
                b64.decode(n.trim_end_matches('=')),
                b64.decode(e.trim_end_matches('=')),
            ) {
                (Ok(n), Ok(e)) if !n.is_empty() && !e.is_empty() => {
                    let public = RsaPublicKeyComponents { n, e };
                    keys.insert(
                        kid.clone(),
                        Arc::new(SigningKey {
                            kid,
                            public,
                            endorsements: k.endorsements,
                        }),
                    );
                }
                _ => {
                    tracing::warn!(kid = %capped(&kid), "skipping signing key with unreadable n/e")
                }
            }
        }
        if keys.is_empty() {
            return Err("key set has no usable RSA signing key".into());
        }
        tracing::info!(count = keys.len(), "Bot Connector signing keys loaded");
        Ok(KeySet {
            keys,
            stale_at: Instant::now() + REFRESH_EVERY,
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: Url) -> Result<T, String> {
        let resp = self
            .http
            .get(url.clone())
            .timeout(GET_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        resp.json::<T>()
            .await
            .map_err(|e| format!("GET {url}: {e}"))
    }
}
