//! Token checks that need no request body: algorithm allow-list fixed in code, key by `kid` from
//! the Bot Connector set only (never from the token), signature, exact issuer, audience = app id,
//! `exp` required and `nbf` checked with 5 minutes of skew, `serviceurl` claim present.

use super::openid::{KeyCache, KeyError, SigningKey};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const BOT_CONNECTOR_ISSUER: &str = "https://api.botframework.com";
pub const CLOCK_SKEW_SECS: u64 = 300;
const ALLOWED: [Algorithm; 3] = [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];

/// Why a token was refused (logged; the client only ever sees 401).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm {0} not allowed")]
    Algorithm(String),
    #[error("token has no kid")]
    NoKid,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("token has no serviceurl claim")]
    NoServiceUrl,
}

impl TokenError {
    /// Keys that could not be loaded are our problem, not the caller's.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, TokenError::Key(KeyError::Unavailable(_)))
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    serviceurl: Option<String>,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
}

/// A token already verified: the Bot Connector sends the same token for many requests (it lives
/// about an hour), so the signature check is done once per token and key set; the time checks
/// are repeated on every use.
struct Verified {
    service_url: String,
    key: Arc<SigningKey>,
    exp: i64,
    nbf: Option<i64>,
    generation: u64,
}

const CACHE_MAX: usize = 10_000;

/// What a valid token vouches for; the body is cross-checked against it.
#[derive(Clone)]
pub struct VerifiedToken {
    pub service_url: String,
    pub key: Arc<SigningKey>,
}

pub struct TokenValidator {
    keys: Arc<KeyCache>,
    validations: [Validation; 3],
    verified: Mutex<HashMap<String, Verified>>,
}

impl TokenValidator {
    pub fn new(keys: Arc<KeyCache>, app_id: &str) -> Self {
        let make = |alg| {
            let mut v = Validation::new(alg);
            v.leeway = CLOCK_SKEW_SECS;
            v.validate_exp = true;
            v.validate_nbf = true;
            v.validate_aud = true;
            v.set_issuer(&[BOT_CONNECTOR_ISSUER]);
            v.set_audience(&[app_id]);
            v.set_required_spec_claims(&["exp", "iss", "aud"]);
            v
        };
        TokenValidator { keys, validations: ALLOWED.map(make), verified: Mutex::new(HashMap::new()) }
    }

    pub fn keys(&self) -> &Arc<KeyCache> {
        &self.keys
    }

    /// Full verification, reusing an earlier signature check of the exact same token (same key
    /// set); expiry and not-before are checked on every call.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let now = chrono::Utc::now().timestamp();
        let skew = CLOCK_SKEW_SECS as i64;
        let generation = self.keys.generation();
        if let Some(hit) = self.verified.lock().ok().and_then(|g| {
            g.get(token).filter(|v| v.generation == generation).map(|v| (v.exp, v.nbf, v.service_url.clone(), v.key.clone()))
        }) {
            let (exp, nbf, service_url, key) = hit;
            if now > exp + skew {
                return Err(TokenError::Invalid("ExpiredSignature".into()));
            }
            if nbf.is_some_and(|nbf| now < nbf - skew) {
                return Err(TokenError::Invalid("ImmatureSignature".into()));
            }
            return Ok(VerifiedToken { service_url, key });
        }
        let (verified, exp, nbf) = self.verify_uncached(token).await?;
        if let Ok(mut g) = self.verified.lock() {
            if g.len() >= CACHE_MAX {
                g.retain(|_, v| v.exp + skew >= now && v.generation == generation);
                if g.len() >= CACHE_MAX {
                    g.clear();
                }
            }
            g.insert(
                token.to_string(),
                Verified { service_url: verified.service_url.clone(), key: verified.key.clone(), exp, nbf, generation },
            );
        }
        Ok(verified)
    }

    /// The signature and claim checks, always done in full (the benchmark measures this too).
    pub async fn verify_uncached(&self, token: &str) -> Result<(VerifiedToken, i64, Option<i64>), TokenError> {
        if token.split('.').count() != 3 {
            return Err(TokenError::Malformed("not a compact JWS".into()));
        }
        // `alg: none` fails here: the crate's Algorithm enum has no such variant.
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let idx = ALLOWED
            .iter()
            .position(|a| *a == header.alg)
            .ok_or_else(|| TokenError::Algorithm(format!("{:?}", header.alg)))?;
        let kid = header.kid.ok_or(TokenError::NoKid)?;
        let key = self.keys.key(&kid).await?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &self.validations[idx])
            .map_err(|e| TokenError::Invalid(format!("{:?}", e.into_kind())))?;
        let Claims { serviceurl, exp, nbf } = data.claims;
        let service_url = serviceurl.filter(|s| !s.is_empty()).ok_or(TokenError::NoServiceUrl)?;
        Ok((VerifiedToken { service_url, key }, exp, nbf))
    }
}
