//! Token checks that need no request body: algorithm allow-list fixed in code, key by `kid` from
//! the Bot Connector set only (never from the token), signature, exact issuer, audience = app id,
//! `exp` required and `nbf` checked with 5 minutes of skew, `serviceurl` claim present.

use super::openid::{KeyCache, KeyError, SigningKey};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use std::sync::Arc;

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
}

/// What a valid token vouches for; the body is cross-checked against it.
pub struct VerifiedToken {
    pub service_url: String,
    pub key: Arc<SigningKey>,
}

pub struct TokenValidator {
    keys: Arc<KeyCache>,
    validations: [Validation; 3],
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
        TokenValidator { keys, validations: ALLOWED.map(make) }
    }

    pub fn keys(&self) -> &Arc<KeyCache> {
        &self.keys
    }

    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
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
        let service_url = data.claims.serviceurl.filter(|s| !s.is_empty()).ok_or(TokenError::NoServiceUrl)?;
        Ok(VerifiedToken { service_url, key })
    }
}
