//! Who may post to `/api/webhook`: a sender holding `WEBHOOK_SECRET`, proved either by an
//! HMAC-SHA256 signature over `<timestamp>.<body>` (headers [`TIMESTAMP_HEADER`] and
//! [`SIGNATURE_HEADER`] = `sha256=<hex>`), with the timestamp inside the replay window, or by
//! `Authorization: Bearer <secret>`. Compared in constant time; no secret configured = refused.

use crate::config::Secret;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const TIMESTAMP_HEADER: &str = "x-bridge-timestamp";
pub const SIGNATURE_HEADER: &str = "x-bridge-signature";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("WEBHOOK_SECRET is not configured: every notification is refused")]
    NotConfigured,
    #[error("no signature and no bearer secret")]
    Missing,
    #[error("bad signature")]
    BadSignature,
    #[error("bad bearer secret")]
    BadBearer,
    #[error("timestamp missing or not a Unix time")]
    BadTimestamp,
    #[error("timestamp outside the replay window")]
    Stale,
    #[error("signature already used")]
    Replayed,
}

/// How the sender proved itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// Signed: the digest of the signature, recorded so it is accepted once.
    Signed {
        replay_key: String,
    },
    Bearer,
}

/// The header value a sender puts in [`SIGNATURE_HEADER`] (used by tests and the bench; the
/// Moodle plugin computes the same in PHP: `hash_hmac('sha256', "$ts.$body", $secret)`).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub fn verify(
    secret: Option<&Secret>,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    window_secs: i64,
) -> Result<Proof, AuthError> {
    let secret = secret
        .filter(|s| !s.is_empty())
        .ok_or(AuthError::NotConfigured)?;
    if let Some(auth) = header(headers, "authorization") {
        let Some(token) = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
        else {
            return Err(AuthError::BadBearer);
        };
        return if secret.matches(token.trim().as_bytes()) {
            Ok(Proof::Bearer)
        } else {
            Err(AuthError::BadBearer)
        };
    }
    let Some(signature) = header(headers, SIGNATURE_HEADER) else {
        return Err(AuthError::Missing);
    };
    let ts: i64 = header(headers, TIMESTAMP_HEADER)
        .and_then(|t| t.parse().ok())
        .ok_or(AuthError::BadTimestamp)?;
    let given = signature
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(AuthError::BadSignature)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("any key length");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given)
        .map_err(|_| AuthError::BadSignature)?;
    // Checked after the signature so an unsigned probe learns nothing about the clock.
    if (now - ts).abs() > window_secs {
        return Err(AuthError::Stale);
    }
    Ok(Proof::Signed {
        replay_key: hex::encode(&Sha256::digest(&given)[..16]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn signature_bearer_and_every_refusal() {
        let secret = Secret::new("0123456789abcdef-secret");
        let s = Some(&secret);
        let body = br#"{"a":1}"#;
        let now = 1_800_000_000;
        let good = headers(&[
            (TIMESTAMP_HEADER, now.to_string()),
            (SIGNATURE_HEADER, sign(secret.expose(), now, body)),
        ]);
        assert!(matches!(
            verify(s, &good, body, now, 300),
            Ok(Proof::Signed { .. })
        ));
        assert_eq!(
            verify(None, &good, body, now, 300),
            Err(AuthError::NotConfigured)
        );
        assert_eq!(
            verify(s, &good, br#"{"a":2}"#, now, 300),
            Err(AuthError::BadSignature),
            "body changed"
        );
        let other_key = headers(&[
            (TIMESTAMP_HEADER, now.to_string()),
            (SIGNATURE_HEADER, sign("another-secret-value", now, body)),
        ]);
        assert_eq!(
            verify(s, &other_key, body, now, 300),
            Err(AuthError::BadSignature)
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = headers(&[
            (TIMESTAMP_HEADER, (now + 1).to_string()),
            (SIGNATURE_HEADER, sign(secret.expose(), now, body)),
        ]);
        assert_eq!(
            verify(s, &moved, body, now, 300),
            Err(AuthError::BadSignature)
        );
        for ts in [now - 301, now + 301] {
            let h = headers(&[
                (TIMESTAMP_HEADER, ts.to_string()),
                (SIGNATURE_HEADER, sign(secret.expose(), ts, body)),
            ]);
            assert_eq!(verify(s, &h, body, now, 300), Err(AuthError::Stale), "{ts}");
        }
        assert_eq!(
            verify(s, &HeaderMap::new(), body, now, 300),
            Err(AuthError::Missing)
        );
        let bearer = headers(&[("authorization", format!("Bearer {}", secret.expose()))]);
        assert_eq!(verify(s, &bearer, body, now, 300), Ok(Proof::Bearer));
        let wrong = headers(&[("authorization", "Bearer 0123456789abcdef-secreT".into())]);
        assert_eq!(verify(s, &wrong, body, now, 300), Err(AuthError::BadBearer));
        let basic = headers(&[("authorization", "Basic abc".into())]);
        assert_eq!(verify(s, &basic, body, now, 300), Err(AuthError::BadBearer));
    }
}
