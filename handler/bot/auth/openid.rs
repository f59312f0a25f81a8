//! Bot Connector signing keys: OpenID metadata → `jwks_uri` → RSA keys with their channel
//! endorsements. Cached; reloaded every 12 h (the service asks for < 24 h); an unknown `kid`
//! triggers one reload at most every 5 minutes; a failed reload keeps the last good set; no
//! token is ever accepted before a set has loaded.

use crate::telemetry::capped;
use base64::Engine;
use ring::signature::RsaPublicKeyComponents;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use url::Url;

const REFRESH_EVERY: Duration = Duration::from_secs(12 * 3600);
const UNKNOWN_KID_MIN_INTERVAL: Duration = Duration::from_secs(300);
/// While no set has ever loaded, retry the fetch at most this often.
const UNLOADED_RETRY: Duration = Duration::from_secs(1);

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
    loaded_at: Instant,
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

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    last_forced: Option<Instant>,
}

pub struct KeyCache {
    http: reqwest::Client,
    metadata_url: Url,
    set: RwLock<Option<Arc<KeySet>>>,
    fetch: tokio::sync::Mutex<FetchState>,
    fetches: std::sync::atomic::AtomicU64,
    generation: std::sync::atomic::AtomicU64,
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
            http,
            metadata_url,
            set: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            fetches: Default::default(),
            generation: Default::default(),
        }
    }

    /// Changes every time a key set is loaded: verifications cached under an older set are redone.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Number of key-set loads attempted (tests assert the unknown-kid rate limit with it).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.set.read().ok().and_then(|g| g.clone())
    }

    /// The key for `kid`, loading or reloading the set when needed.
    pub async fn key(&self, kid: &str) -> Result<Arc<SigningKey>, KeyError> {
        if let Some(set) = self.snapshot() {
            if set.loaded_at.elapsed() < REFRESH_EVERY {
                if let Some(k) = set.keys.get(kid) {
                    return Ok(k.clone());
                }
            }
        }
        self.reload_for(kid).await
    }

    async fn reload_for(&self, kid: &str) -> Result<Arc<SigningKey>, KeyError> {
        let mut state = self.fetch.lock().await;
        // Someone else may have reloaded while we waited for the lock.
        let current = self.snapshot();
        if let Some(set) = &current {
            if let Some(k) = set.keys.get(kid) {
                if set.loaded_at.elapsed() < REFRESH_EVERY {
                    return Ok(k.clone());
                }
            }
        }
        let now = Instant::now();
        let may_fetch = match &current {
            None => state
                .last_attempt
                .is_none_or(|t| now.duration_since(t) >= UNLOADED_RETRY),
            Some(set) if set.loaded_at.elapsed() >= REFRESH_EVERY => true,
            // Unknown kid with a fresh set: a rotation is possible, but an attacker can send
            // random kids, so refetch at most once per interval.
            Some(_) => state
                .last_forced
                .is_none_or(|t| now.duration_since(t) >= UNKNOWN_KID_MIN_INTERVAL),
        };
        if may_fetch {
            state.last_attempt = Some(now);
            if current.is_some() {
                state.last_forced = Some(now);
            }
            match self.load().await {
                Ok(set) => {
                    let set = Arc::new(set);
                    if let Ok(mut g) = self.set.write() {
                        *g = Some(set.clone());
                    }
                    self.generation
                        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    return set
                        .keys
                        .get(kid)
                        .cloned()
                        .ok_or_else(|| KeyError::unknown_kid(kid));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not load Bot Connector signing keys; keeping the last good set");
                    if current.is_none() {
                        return Err(KeyError::Unavailable(e));
                    }
                }
            }
        }
        match current {
            // A stale set still beats none while the metadata endpoint is down.
            Some(set) => set
                .keys
                .get(kid)
                .cloned()
                .ok_or_else(|| KeyError::unknown_kid(kid)),
            None => Err(KeyError::Unavailable("signing keys not loaded yet".into())),
        }
    }

    async fn load(&self) -> Result<KeySet, String> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            loaded_at: Instant::now(),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: Url) -> Result<T, String> {
        let resp = self
            .http
            .get(url.clone())
            .timeout(Duration::from_secs(10))
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
