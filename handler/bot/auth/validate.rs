//! Token checks that need no request body, in the order of the Bot Framework rules: compact JWS,
//! algorithm on a fixed allow-list (RS256/384/512; `none` and HS* never reach key lookup), `kid`
//! looked up in the Bot Connector key set only (never a key from the token), RSA signature
//! (checked with `ring`, already linked through rustls and far faster than the pure-Rust `rsa`),
//! then the claims: `iss` exactly `https://api.botframework.com`, `aud` = the app id, `exp`
//! required and `nbf` checked with 5 minutes of skew, `serviceurl` present.

use super::openid::{KeyCache, KeyError, SigningKey};
use crate::telemetry::capped;
use base64::Engine;
use jsonwebtoken::Algorithm;
use ring::signature::{
    RsaParameters, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384,
    RSA_PKCS1_2048_8192_SHA512,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const BOT_CONNECTOR_ISSUER: &str = "https://api.botframework.com";
pub const CLOCK_SKEW_SECS: i64 = 300;
const CACHE_MAX: usize = 10_000;

fn rsa_params(alg: Algorithm) -> Option<&'static RsaParameters> {
    match alg {
        Algorithm::RS256 => Some(&RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Some(&RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Some(&RSA_PKCS1_2048_8192_SHA512),
        _ => None,
    }
}

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
    #[error("bad signature")]
    Signature,
    #[error("token rejected: {0}")]
    Invalid(&'static str),
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
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    nbf: Option<Value>,
    #[serde(default)]
    serviceurl: Option<String>,
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    tid: Option<String>,
}

/// Latest accepted time claim (9999-12-31T23:59:59Z): beyond it a value is a forgery or a bug,
/// and keeping claims this small keeps every sum with the skew far from overflowing.
const MAX_TIME_CLAIM: i64 = 253_402_300_799;

/// A NumericDate claim in whole seconds; negative, non-finite or absurdly large values are refused.
fn numeric(v: &Option<Value>) -> Result<Option<i64>, TokenError> {
    let Some(v) = v else {
        return Ok(None);
    };
    let f = v
        .as_f64()
        .ok_or(TokenError::Invalid("time claim is not a number"))?;
    if !f.is_finite() || f < 0.0 || f > MAX_TIME_CLAIM as f64 {
        return Err(TokenError::Invalid("time claim out of range"));
    }
    Ok(Some(f.floor() as i64))
}

/// What a valid token vouches for; the body is cross-checked against it.
#[derive(Clone)]
pub struct VerifiedToken {
    /// Empty for tokens that carry none (Entra SSO tokens).
    pub service_url: String,
    pub key: Arc<SigningKey>,
    /// Entra object id of the user (SSO tokens).
    pub object_id: Option<String>,
    pub tenant_id: Option<String>,
}

/// A token already verified: the Bot Connector sends the same token for many requests (it lives
/// about an hour), so the signature check is done once per token and key set; the time checks
/// are repeated on every use.
struct Verified {
    token: VerifiedToken,
    exp: i64,
    nbf: Option<i64>,
    generation: u64,
}

/// Checked arithmetic: a value that would overflow with the skew is refused, never wrapped.
fn check_times(now: i64, exp: i64, nbf: Option<i64>) -> Result<(), TokenError> {
    let out_of_range = TokenError::Invalid("time claim out of range");
    let latest = exp.checked_add(CLOCK_SKEW_SECS).ok_or(out_of_range)?;
    if now > latest {
        return Err(TokenError::Invalid("expired"));
    }
    if let Some(nbf) = nbf {
        let earliest = nbf
            .checked_sub(CLOCK_SKEW_SECS)
            .ok_or(TokenError::Invalid("time claim out of range"))?;
        if now < earliest {
            return Err(TokenError::Invalid("not yet valid"));
        }
    }
    Ok(())
}

pub struct TokenValidator {
    keys: Arc<KeyCache>,
    /// Accepted `aud` values (the bot: its app id).
    audiences: Vec<String>,
    /// Accepted `iss` values, exactly.
    issuers: Vec<String>,
    /// Bot Connector tokens must name the service URL; Entra SSO tokens have none.
    require_service_url: bool,
    /// SSO tokens: `tid`, when present, must be this tenant.
    tenant: Option<String>,
    verified: Mutex<HashMap<String, Verified>>,
}

impl TokenValidator {
    /// Bot Connector tokens for this bot.
    pub fn new(keys: Arc<KeyCache>, app_id: &str) -> Self {
        TokenValidator {
            keys,
            audiences: vec![app_id.to_string()],
            issuers: vec![BOT_CONNECTOR_ISSUER.to_string()],
            require_service_url: true,
            tenant: None,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Teams SSO tokens (Entra access tokens) of one tenant for the app's resource: issuer
    /// `login.microsoftonline.com/<tenant>/v2.0` or `sts.windows.net/<tenant>/` (v1 tokens),
    /// audience one of `audiences`, keys from the tenant's OpenID metadata.
    pub fn entra(keys: Arc<KeyCache>, tenant: &str, audiences: Vec<String>) -> Self {
        TokenValidator {
            keys,
            audiences,
            issuers: vec![
                format!("https://login.microsoftonline.com/{tenant}/v2.0"),
                format!("https://sts.windows.net/{tenant}/"),
            ],
            require_service_url: false,
            tenant: Some(tenant.to_string()),
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn keys(&self) -> &Arc<KeyCache> {
        &self.keys
    }

    /// Full verification, reusing an earlier signature check of the exact same token under the
    /// same key set; expiry and not-before are checked on every call.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let now = chrono::Utc::now().timestamp();
        let generation = self.keys.generation();
        let hit = self.verified.lock().ok().and_then(|g| {
            g.get(token)
                .filter(|v| v.generation == generation)
                .map(|v| (v.token.clone(), v.exp, v.nbf))
        });
        if let Some((verified, exp, nbf)) = hit {
            check_times(now, exp, nbf)?;
            return Ok(verified);
        }
        let (verified, exp, nbf) = self.verify_uncached(token, now).await?;
        if let Ok(mut g) = self.verified.lock() {
            if g.len() >= CACHE_MAX {
                g.retain(|_, v| {
                    v.exp.saturating_add(CLOCK_SKEW_SECS) >= now && v.generation == generation
                });
                if g.len() >= CACHE_MAX {
                    g.clear();
                }
            }
            g.insert(
                token.to_string(),
                Verified {
                    token: verified.clone(),
                    exp,
                    nbf,
                    generation,
                },
            );
        }
        Ok(verified)
    }

    /// Every check, always done in full (the benchmark measures this path too).
    pub async fn verify_uncached(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(VerifiedToken, i64, Option<i64>), TokenError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not a compact JWS".into()));
        };
        // `alg: none` fails here: the crate's Algorithm enum has no such variant.
        // Errors quote parts of the header (an unknown `alg`): capped like every logged value.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| TokenError::Malformed(capped(&e.to_string()).into_owned()))?;
        let params = rsa_params(header.alg)
            .ok_or_else(|| TokenError::Algorithm(format!("{:?}", header.alg)))?;
        let kid = header.kid.ok_or(TokenError::NoKid)?;
        let key = self.keys.key(&kid).await?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signature = b64
            .decode(sig_b64)
            .map_err(|_| TokenError::Malformed("signature is not base64url".into()))?;
        let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        key.public
            .verify(params, signed, &signature)
            .map_err(|_| TokenError::Signature)?;

        let payload = b64
            .decode(payload_b64)
            .map_err(|_| TokenError::Malformed("payload is not base64url".into()))?;
        let claims: Claims = serde_json::from_slice(&payload)
            .map_err(|e| TokenError::Malformed(capped(&e.to_string()).into_owned()))?;
        if !claims
            .iss
            .as_deref()
            .is_some_and(|i| self.issuers.iter().any(|ok| ok == i))
        {
            return Err(TokenError::Invalid("issuer"));
        }
        let ours = |a: &str| self.audiences.iter().any(|ok| ok == a);
        let audience_ok = match &claims.aud {
            Some(Value::String(a)) => ours(a),
            // `aud` may be an array in JWT; accept only when it holds one of ours.
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str().is_some_and(ours)),
            _ => false,
        };
        if !audience_ok {
            return Err(TokenError::Invalid("audience"));
        }
        let exp = numeric(&claims.exp)?.ok_or(TokenError::Invalid("no exp"))?;
        let nbf = numeric(&claims.nbf)?;
        check_times(now, exp, nbf)?;
        if let (Some(want), Some(tid)) = (&self.tenant, &claims.tid) {
            if !tid.eq_ignore_ascii_case(want) {
                return Err(TokenError::Invalid("tenant"));
            }
        }
        let service_url = match claims.serviceurl.filter(|s| !s.is_empty()) {
            Some(s) => s,
            None if self.require_service_url => return Err(TokenError::NoServiceUrl),
            None => String::new(),
        };
        let verified = VerifiedToken {
            service_url,
            key,
            object_id: claims.oid.map(|o| o.to_ascii_lowercase()),
            tenant_id: claims.tid,
        };
        Ok((verified, exp, nbf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extreme_time_claims_are_refused_without_overflow() {
        let now = 1_767_225_600;
        assert!(check_times(now, now + 3600, Some(now - 300)).is_ok());
        // These used to overflow `exp + skew` / `nbf - skew` (a panic in debug builds, a wrap in release).
        assert!(check_times(now, i64::MAX, None).is_err());
        assert!(check_times(now, now + 3600, Some(i64::MIN)).is_err());
        for v in [
            json!(1e300),
            json!(-1),
            json!(-1e300),
            json!(i64::MAX),
            json!(u64::MAX),
        ] {
            assert!(
                matches!(numeric(&Some(v.clone())), Err(TokenError::Invalid(_))),
                "{v}"
            );
        }
        assert_eq!(numeric(&Some(json!(1767225600.9))).unwrap(), Some(now));
        assert_eq!(
            numeric(&Some(json!(MAX_TIME_CLAIM))).unwrap(),
            Some(MAX_TIME_CLAIM)
        );
    }
}
