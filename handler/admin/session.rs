//! Who may see the admin pages, and the proofs they carry.
//!
//! - In Azure (App Service authentication on): the platform's signed-in principal, checked by
//!   [`super::auth::check`] (admin group, tenant). Nothing else is accepted there.
//! - Under `handler serve`: the admin password (argon2 hash in `ADMIN_PASSWORD_HASH`) buys a
//!   session cookie signed with HMAC-SHA256 (HttpOnly, SameSite=Strict, Secure, 8 hours).
//! - Neither configured: every request is refused (fail closed), saying what to set.
//!
//! Every form carries a CSRF token bound to the session (HMAC of its subject); every compare
//! of a MAC is constant-time (`Mac::verify_slice`), and login attempts are rate-limited.

use crate::app::AppState;
use crate::error::AppError;
use crate::outbound::limiter::{Quota, Window};
use crate::store::{tables, Entity, StoreError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::time::Duration;

pub const SESSION_COOKIE: &str = "bridge_admin";
pub const LOGIN_COOKIE: &str = "bridge_admin_login";
pub const LOGIN_PATH: &str = "/manage/sync/login";
const SESSION_SECS: i64 = 8 * 3600;
/// Where the generated session key is kept when `ADMIN_SESSION_KEY` is not set (the store is
/// owner-only: see tests/store_permissions.rs).
const KEY_PARTITION: &str = "admin";
const KEY_ROW: &str = "session-key";

type HmacSha256 = Hmac<Sha256>;

/// 5 attempts a minute, 30 an hour, for the whole server: one password guards it, so a
/// per-client key would only let a guesser spread over addresses.
pub fn login_quota() -> Quota {
    Quota {
        name: "admin-login",
        windows: vec![
            Window::new(5, Duration::from_secs(60)),
            Window::new(30, Duration::from_secs(3600)),
        ],
    }
}

/// Whether `phc` is an argon2 PHC string (what `ADMIN_PASSWORD_HASH` must hold).
pub fn check_hash(phc: &str) -> Result<(), String> {
    let h = PasswordHash::new(phc.trim()).map_err(|e| {
        format!("not a PHC string ({e}); make one with `handler admin hash-password`")
    })?;
    if !h.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "algorithm {} is not argon2; make one with `handler admin hash-password`",
            h.algorithm
        ));
    }
    Ok(())
}

/// Argon2id with the crate's default cost and a random salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Constant-time by construction (argon2 compares its outputs with `subtle`).
pub fn verify_password(phc: &str, password: &str) -> bool {
    let Ok(h) = PasswordHash::new(phc.trim()) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &h)
        .is_ok()
}

/// The key every session cookie and CSRF token is signed with.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    pub fn from_secret(s: &str) -> Self {
        SessionKey(Sha256::digest(s.as_bytes()).into())
    }

    fn mac(&self, parts: &[&str]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.0).expect("any key length");
        for p in parts {
            m.update(p.as_bytes());
            m.update(b"\x1f");
        }
        m
    }

    pub fn sign(&self, parts: &[&str]) -> String {
        hex::encode(self.mac(parts).finalize().into_bytes())
    }

    /// Constant-time check of a hex MAC.
    pub fn verify(&self, parts: &[&str], mac_hex: &str) -> bool {
        match hex::decode(mac_hex.trim()) {
            Ok(bytes) => self.mac(parts).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    /// `v1.<expiry>.<nonce>.<mac>`: stateless, so a restart keeps admins signed in.
    pub fn session_cookie_value(&self, now: i64) -> String {
        let expiry = (now + SESSION_SECS).to_string();
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let mac = self.sign(&["session", &expiry, &nonce]);
        format!("v1.{expiry}.{nonce}.{mac}")
    }

    /// The session's subject (`pw:<nonce>`) when the cookie is ours and not expired.
    pub fn check_session(&self, value: &str, now: i64) -> Option<String> {
        let mut it = value.split('.');
        let (Some("v1"), Some(expiry), Some(nonce), Some(mac), None) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            return None;
        };
        if !self.verify(&["session", expiry, nonce], mac) {
            return None;
        }
        (expiry.parse::<i64>().ok()? > now).then(|| format!("pw:{nonce}"))
    }

    /// `o1.<expiry>.<object id>.<name, base64url>.<mac>`: an admin signed in with Entra.
    pub fn oidc_cookie_value(&self, object_id: &str, name: &str, now: i64) -> String {
        use base64::Engine;
        let expiry = (now + SESSION_SECS).to_string();
        let name = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name.as_bytes());
        let mac = self.sign(&["oidc-session", &expiry, object_id, &name]);
        format!("o1.{expiry}.{object_id}.{name}.{mac}")
    }

    /// Subject and display name of a session cookie of either kind, when ours and unexpired.
    pub fn check_any_session(&self, value: &str, now: i64) -> Option<(String, String)> {
        use base64::Engine;
        if value.starts_with("v1.") {
            return self
                .check_session(value, now)
                .map(|s| (s, "admin".to_string()));
        }
        let mut it = value.split('.');
        let (Some("o1"), Some(expiry), Some(oid), Some(name), Some(mac), None) = (
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
        ) else {
            return None;
        };
        if !self.verify(&["oidc-session", expiry, oid, name], mac) {
            return None;
        }
        if expiry.parse::<i64>().ok()? <= now {
            return None;
        }
        let name = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(name)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())?;
        Some((format!("aad:{oid}"), name))
    }

    pub fn csrf(&self, subject: &str) -> String {
        self.sign(&["csrf", subject])
    }

    pub fn check_csrf(&self, subject: &str, token: &str) -> bool {
        self.verify(&["csrf", subject], token)
    }
}

/// The session key: the setting, else the one generated on first use and kept in the store
/// (inserted once, so every instance sharing the store agrees on it).
pub async fn key(state: &AppState) -> Result<SessionKey, AppError> {
    if let Some(k) = &state.settings.admin.session_key {
        return Ok(SessionKey::from_secret(k.expose()));
    }
    state
        .admin
        .key
        .get_or_try_init(|| async {
            let load =
                |e: Option<Entity>| e.and_then(|e| e.str("key").map(SessionKey::from_secret));
            let store = &state.store;
            if let Some(k) = load(store.get(tables::RUNS, KEY_PARTITION, KEY_ROW).await?) {
                return Ok(k);
            }
            let fresh = hex::encode(rand::random::<[u8; 32]>());
            let row = Entity::new(KEY_PARTITION, KEY_ROW).with("key", fresh.as_str());
            match store.insert(tables::RUNS, &row).await {
                Ok(_) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(e),
            }
            load(store.get(tables::RUNS, KEY_PARTITION, KEY_ROW).await?)
                .ok_or_else(|| StoreError::Backend("session key not read back".into()))
        })
        .await
        .cloned()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("admin session key: {e}")))
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn set_cookie(name: &str, value: &str, max_age: i64) -> String {
    format!("{name}={value}; Path=/manage; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}")
}

pub fn session_set_cookie(value: &str) -> String {
    set_cookie(SESSION_COOKIE, value, SESSION_SECS)
}

/// Where signed-out session cookies are remembered until they would have expired anyway: the
/// cookies are stateless (signed), so signing out must leave a trace every instance reads.
const SIGNED_OUT_PARTITION: &str = "admin-signed-out";

/// The row key of a cookie: a digest, so the store never holds a usable session cookie.
fn signed_out_key(cookie_value: &str) -> String {
    hex::encode(&Sha256::digest(cookie_value.as_bytes())[..16])
}

/// Ends a `serve` session on the server: the cookie is refused from now on, on every instance,
/// even if a copy of it survives in a browser or a proxy log.
pub async fn revoke(state: &AppState, cookie_value: &str) -> Result<(), AppError> {
    let row = Entity::new(SIGNED_OUT_PARTITION, signed_out_key(cookie_value))
        .with("at", chrono::Utc::now().timestamp().to_string().as_str());
    state
        .store
        .upsert(tables::RUNS, &row)
        .await
        .map(|_| ())
        .map_err(|e| {
            AppError::Unavailable(format!(
                "the sign-out could not be recorded ({e}): you are still signed in; try again"
            ))
        })
}

/// Whether this cookie was signed out. A store that cannot answer refuses the request (fail
/// closed: a revoked session must not come back while the store is down).
async fn signed_out(state: &AppState, cookie_value: &str) -> Result<bool, AppError> {
    state
        .store
        .get(
            tables::RUNS,
            SIGNED_OUT_PARTITION,
            &signed_out_key(cookie_value),
        )
        .await
        .map(|row| row.is_some())
        .map_err(|e| AppError::Unavailable(format!("admin sessions cannot be checked ({e})")))
}

/// A signed-in admin, however they signed in.
#[derive(Debug, Clone)]
pub struct AdminUser {
    /// `aad:<object id>` or `pw:<session nonce>`: what CSRF tokens are bound to.
    pub subject: String,
    pub name: String,
    /// Signed in to `serve` (password, link or Entra): a session cookie a sign-out button ends.
    pub password_session: bool,
    pub csrf: String,
}

impl AdminUser {
    pub async fn check_csrf(&self, state: &AppState, token: &str) -> Result<(), AppError> {
        if key(state).await?.check_csrf(&self.subject, token) {
            Ok(())
        } else {
            tracing::warn!(subject = %self.subject, "admin form refused: bad CSRF token");
            Err(AppError::Forbidden(
                "the form's CSRF token is missing or wrong: reload the page and try again".into(),
            ))
        }
    }
}

/// Why there is no admin: a browser that should sign in first, or a refusal.
#[derive(Debug)]
pub enum Denied {
    SignIn,
    Refused(AppError),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::SignIn => Redirect::to(LOGIN_PATH).into_response(),
            Denied::Refused(e) => e.into_response(),
        }
    }
}

pub const NOT_CONFIGURED: &str = "admin sign-in is not configured: set ADMIN_PASSWORD_HASH (handler serve; `handler admin hash-password`) or ADMIN_OIDC_CLIENT_ID with ADMIN_GROUP_IDS (OpenID Connect), or, in Azure, App Service authentication (the platform then sets WEBSITE_AUTH_ENABLED) with ADMIN_GROUP_IDS";

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Denied> {
        let admin = &state.settings.admin;
        let path = parts.uri.path().to_string();
        if admin.platform_auth {
            let a = super::auth::check(admin, &parts.headers).map_err(|r| {
                tracing::warn!(reason = %r, %path, "admin page refused");
                Denied::Refused(r.into())
            })?;
            let subject = format!("aad:{}", a.object_id);
            let csrf = key(state).await.map_err(Denied::Refused)?.csrf(&subject);
            return Ok(AdminUser {
                name: a.name.unwrap_or_else(|| a.object_id.clone()),
                subject,
                password_session: false,
                csrf,
            });
        }
        if !admin.serve_sign_in() {
            tracing::warn!(%path, "admin page refused: no sign-in configured");
            return Err(Denied::Refused(AppError::Forbidden(NOT_CONFIGURED.into())));
        }
        let k = key(state).await.map_err(Denied::Refused)?;
        let now = chrono::Utc::now().timestamp();
        let value = cookie(&parts.headers, SESSION_COOKIE);
        let mut session = value.and_then(|v| k.check_any_session(v, now));
        if let (Some(v), Some(_)) = (value, &session) {
            if signed_out(state, v).await.map_err(Denied::Refused)? {
                tracing::info!(%path, "admin page: a signed-out session cookie came back");
                session = None;
            }
        }
        match session {
            Some((subject, name)) => Ok(AdminUser {
                csrf: k.csrf(&subject),
                subject,
                name,
                password_session: true,
            }),
            None if parts.method == Method::GET => Err(Denied::SignIn),
            None => Err(Denied::Refused(AppError::Unauthorized)),
        }
    }
}

/// 429 with Retry-After, for the login form.
pub fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs().max(1);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, secs.to_string())],
        axum::Json(serde_json::json!({
            "error": format!("too many sign-in attempts; try again in {secs} s")
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_cookie_is_ours_only_while_unexpired_and_unaltered() {
        let k = SessionKey::from_secret("k".repeat(32).as_str());
        let v = k.session_cookie_value(1_000);
        assert!(k.check_session(&v, 1_001).unwrap().starts_with("pw:"));
        assert!(k.check_session(&v, 1_000 + SESSION_SECS).is_none());
        let other = SessionKey::from_secret("o".repeat(32).as_str());
        assert!(other.check_session(&v, 1_001).is_none());
        // A longer expiry with the old MAC is refused.
        let forged = v.replacen(&(1_000 + SESSION_SECS).to_string(), "99999999999", 1);
        assert!(k.check_session(&forged, 1_001).is_none());
        let s = k.check_session(&v, 1_001).unwrap();
        assert!(k.check_csrf(&s, &k.csrf(&s)));
        assert!(!k.check_csrf(&s, &k.csrf("pw:other")));
        assert!(!k.check_csrf(&s, "zz"));
    }

    #[test]
    fn hashes_are_argon2_phc_strings_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(check_hash(&h).is_ok());
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "wrong"));
        assert!(check_hash("plain-password").is_err());
        assert!(check_hash("$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA").is_err());
    }
}
