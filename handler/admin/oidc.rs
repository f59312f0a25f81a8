//! OpenID Connect sign-in against Entra ID for the admin page under `serve` (when
//! `ADMIN_OIDC_CLIENT_ID` is set): authorization code flow with PKCE (S256), `state` and `nonce`.
//!
//! 1. `GET /manage/sync/login/oidc`: fresh state, nonce and code verifier, kept in a cookie signed
//!    with the session key (nothing stored server-side), then a redirect to the tenant's
//!    `/oauth2/v2.0/authorize`.
//! 2. `GET /manage/sync/login/oidc/callback?code&state`: the cookie's MAC and age, `state`
//!    (constant-time), then the code is exchanged at `/oauth2/v2.0/token` with the verifier (and
//!    the client secret when one is set). The ID token is checked by the bot's Entra validator —
//!    signature against the tenant's JWKS (`kid` from the key set only, RS256/384/512), issuer
//!    `login.microsoftonline.com/<tenant>/v2.0`, audience the client id, expiry, tenant — then
//!    `nonce` (constant-time) and membership of an `ADMIN_GROUP_IDS` group in its `groups` claim.
//!    A token that left the groups out (overage: the person is in too many groups) is decided by
//!    Graph when the app has it (`POST /users/{oid}/checkMemberGroups`, app-only,
//!    `GroupMember.Read.All`), and refused, saying so, when it has not.
//!
//! The state cookie is `SameSite=Lax`: Entra brings the browser back with a top-level GET from
//! another site, which a Strict cookie would not ride along. The session cookie stays Strict, so
//! the callback answers a page that moves on to `/manage/sync` itself (a same-site navigation)
//! rather than a redirect, which browsers would still count as part of the cross-site chain.

use super::session::{self, SessionKey};
use crate::app::AppState;
use crate::bot::auth::openid::KeyCache;
use crate::bot::auth::validate::TokenValidator;
use crate::config::{Secret, Source};
use crate::error::AppError;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub const START_PATH: &str = "/manage/sync/login/oidc";
pub const CALLBACK_PATH: &str = "/manage/sync/login/oidc/callback";
pub const STATE_COOKIE: &str = "bridge_admin_oidc";
/// How long a sign-in may take at Entra (typing a password, MFA).
const STATE_SECS: i64 = 600;

#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub tenant_id: String,
    /// `https://login.microsoftonline.com/` (or a test double), with the trailing slash.
    pub authority: url::Url,
    /// Where Entra sends the browser back: must be a redirect URI of the app registration
    /// (default: from PUBLIC_URL or SERVE_ADDR, see [`OidcSettings::redirect`]).
    pub redirect_url: Option<url::Url>,
}

impl OidcSettings {
    /// `None` when `ADMIN_OIDC_CLIENT_ID` is not set; problems are recorded in `src`.
    pub fn load(src: &mut Source, tenant: Option<&str>) -> Option<OidcSettings> {
        let client_id = src.opt(
            "ADMIN_OIDC_CLIENT_ID",
            "client id of the Entra app registration admins sign in with under `handler serve` (OpenID Connect); none set = no OIDC sign-in",
        );
        let client_secret = src.secret(
            "ADMIN_OIDC_CLIENT_SECRET",
            "client secret of that app registration (a Web platform app needs one; PKCE is used either way)",
        );
        let tenant_setting = src.opt(
            "ADMIN_OIDC_TENANT_ID",
            "tenant admins sign in to (default: ADMIN_TENANT_ID, else BOT_TENANT_ID)",
        );
        let authority = src.url(
            "ADMIN_OIDC_AUTHORITY",
            &["https", "http"],
            "Entra authority of the admin sign-in, without the tenant (default https://login.microsoftonline.com/)",
        );
        let redirect = src.url(
            "ADMIN_OIDC_REDIRECT_URL",
            &["https", "http"],
            "redirect URI registered for the admin sign-in (default: PUBLIC_URL, else http://SERVE_ADDR, + /manage/sync/login/oidc/callback)",
        );
        let client_id = client_id?.trim().to_string();
        if uuid::Uuid::parse_str(&client_id).is_err() {
            src.problem(format!(
                "ADMIN_OIDC_CLIENT_ID: {client_id:?} is not an application (client) id (GUID)"
            ));
        }
        let Some(tenant_id) = tenant_setting
            .or_else(|| tenant.map(str::to_string))
            .map(|t| t.trim().to_string())
        else {
            src.problem(
                "ADMIN_OIDC_CLIENT_ID is set but no tenant is: set ADMIN_OIDC_TENANT_ID (or ADMIN_TENANT_ID)"
                    .to_string(),
            );
            return None;
        };
        if uuid::Uuid::parse_str(&tenant_id).is_err() {
            src.problem(format!(
                "ADMIN_OIDC_TENANT_ID: {tenant_id:?} is not a tenant id (GUID); a domain name would let another tenant's metadata in"
            ));
        }
        let mut authority = authority.unwrap_or_else(|| {
            url::Url::parse("https://login.microsoftonline.com/").expect("static URL")
        });
        if !authority.path().ends_with('/') {
            let p = format!("{}/", authority.path());
            authority.set_path(&p);
        }
        if authority.scheme() == "http" && !loopback(&authority) {
            src.problem(
                "ADMIN_OIDC_AUTHORITY: http:// only on this machine (a test double); Entra is https"
                    .to_string(),
            );
        }
        Some(OidcSettings {
            client_id,
            client_secret,
            tenant_id,
            authority,
            redirect_url: redirect,
        })
    }

    fn endpoint(&self, rest: &str) -> String {
        format!("{}{}/{rest}", self.authority, self.tenant_id)
    }

    /// The redirect URI: the setting, else PUBLIC_URL or `http://SERVE_ADDR` + the callback path.
    pub fn redirect(&self, core: &crate::config::CoreSettings) -> String {
        if let Some(u) = &self.redirect_url {
            return u.to_string();
        }
        let base = core
            .public_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("http://{}", core.serve_addr));
        format!("{base}{CALLBACK_PATH}")
    }

    pub fn metadata_url(&self) -> String {
        self.endpoint("v2.0/.well-known/openid-configuration")
    }
}

fn loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn random() -> String {
    b64(&rand::random::<[u8; 32]>())
}

/// PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn challenge(verifier: &str) -> String {
    b64(&Sha256::digest(verifier.as_bytes()))
}

/// What the state cookie carries between the two legs.
#[derive(Debug, PartialEq, Eq)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    expiry: i64,
}

impl Pending {
    fn cookie(&self, key: &SessionKey) -> String {
        let expiry = self.expiry.to_string();
        let mac = key.sign(&["oidc", &self.state, &self.nonce, &self.verifier, &expiry]);
        format!(
            "v1.{}.{}.{}.{expiry}.{mac}",
            self.state, self.nonce, self.verifier
        )
    }

    fn parse(key: &SessionKey, value: &str, now: i64) -> Option<Pending> {
        let mut it = value.split('.');
        let (Some("v1"), Some(state), Some(nonce), Some(verifier), Some(expiry), Some(mac), None) = (
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
        ) else {
            return None;
        };
        if !key.verify(&["oidc", state, nonce, verifier, expiry], mac) {
            return None;
        }
        let expiry: i64 = expiry.parse().ok()?;
        (expiry > now).then(|| Pending {
            state: state.into(),
            nonce: nonce.into(),
            verifier: verifier.into(),
            expiry,
        })
    }
}

fn state_cookie(value: &str, max_age: i64) -> String {
    format!(
        "{STATE_COOKIE}={value}; Path=/manage/sync/login/oidc; HttpOnly; Secure; SameSite=Lax; Max-Age={max_age}"
    )
}

/// Leg 1: where to send the browser, and the cookie to set.
pub async fn start(state: &AppState, o: &OidcSettings) -> Result<(String, String), AppError> {
    let key = session::key(state).await?;
    let p = Pending {
        state: random(),
        nonce: random(),
        verifier: random(),
        expiry: chrono::Utc::now().timestamp() + STATE_SECS,
    };
    let mut url = url::Url::parse(&o.endpoint("oauth2/v2.0/authorize"))
        .map_err(|e| AppError::Internal(anyhow::anyhow!("authorize URL: {e}")))?;
    url.query_pairs_mut()
        .append_pair("client_id", &o.client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &o.redirect(&state.settings.core))
        .append_pair("response_mode", "query")
        .append_pair("scope", "openid profile")
        .append_pair("state", &p.state)
        .append_pair("nonce", &p.nonce)
        .append_pair("code_challenge", &challenge(&p.verifier))
        .append_pair("code_challenge_method", "S256");
    Ok((url.to_string(), state_cookie(&p.cookie(&key), STATE_SECS)))
}

/// The cookie that ends the pending sign-in (set on every callback answer).
pub fn clear_state_cookie() -> String {
    state_cookie("", 0)
}

#[derive(Debug, Deserialize, Default)]
pub struct Callback {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
}

/// Why a sign-in did not go through (logged in full; the page shows the message).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the sign-in expired or was started in another browser: sign in again")]
    NoPendingSignIn,
    #[error("the sign-in answer does not match the request (state): sign in again")]
    StateMismatch,
    #[error("Entra refused the sign-in: {0}")]
    Refused(String),
    #[error("the code could not be exchanged at Entra's token endpoint: {0}")]
    TokenEndpoint(String),
    #[error("the ID token was refused: {0}")]
    BadToken(String),
    #[error("the ID token's nonce does not match this sign-in")]
    NonceMismatch,
    #[error(
        "the sign-in token left out the groups (too many): configure Graph (GRAPH_*, with GroupMember.Read.All) so membership is checked there, or emit only the groups assigned to the app"
    )]
    GroupOverage,
    #[error("the admin group membership could not be checked through Graph: {0}")]
    GroupCheck(String),
    #[error("signed in as {0}, who is not a member of an admin group (ADMIN_GROUP_IDS)")]
    NotInGroup(String),
    #[error("no admin group is configured (ADMIN_GROUP_IDS): OIDC sign-in is refused")]
    NoGroupConfigured,
}

impl From<OidcError> for AppError {
    fn from(e: OidcError) -> Self {
        match e {
            OidcError::TokenEndpoint(_) | OidcError::GroupCheck(_) => {
                AppError::Unavailable(e.to_string())
            }
            _ => AppError::Forbidden(e.to_string()),
        }
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct IdClaims {
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default, rename = "_claim_names")]
    claim_names: Option<serde_json::Value>,
    #[serde(default)]
    hasgroups: Option<serde_json::Value>,
}

/// A signed-in admin from Entra.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcAdmin {
    pub object_id: String,
    pub name: String,
}

/// The tenant's key set, cached for the process (one validator per process).
fn validator(state: &AppState, o: &OidcSettings) -> Result<Arc<TokenValidator>, OidcError> {
    let meta = url::Url::parse(&o.metadata_url())
        .map_err(|e| OidcError::BadToken(format!("metadata URL: {e}")))?;
    let v = state.admin.oidc.get_or_init(|| {
        let keys = Arc::new(KeyCache::new(state.http.clone(), meta));
        Arc::new(TokenValidator::entra(
            keys,
            &o.tenant_id,
            vec![o.client_id.clone()],
        ))
    });
    Ok(v.clone())
}

fn eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Leg 2: check everything and say who signed in.
pub async fn finish(
    state: &AppState,
    o: &OidcSettings,
    cookie: Option<&str>,
    cb: &Callback,
) -> Result<OidcAdmin, OidcError> {
    let key = session::key(state)
        .await
        .map_err(|e| OidcError::TokenEndpoint(e.to_string()))?;
    let now = chrono::Utc::now().timestamp();
    let pending = cookie
        .and_then(|c| Pending::parse(&key, c, now))
        .ok_or(OidcError::NoPendingSignIn)?;
    if let Some(err) = &cb.error {
        return Err(OidcError::Refused(format!(
            "{err}: {}",
            crate::telemetry::capped(cb.error_description.as_deref().unwrap_or_default())
        )));
    }
    if !cb.state.as_deref().is_some_and(|s| eq(s, &pending.state)) {
        return Err(OidcError::StateMismatch);
    }
    let code = cb
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OidcError::Refused("no code in the answer".into()))?;
    let admins = &state.settings.admin.group_ids;
    if admins.is_empty() {
        return Err(OidcError::NoGroupConfigured);
    }
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("client_id", o.client_id.clone()),
        ("code", code.to_string()),
        ("redirect_uri", o.redirect(&state.settings.core)),
        ("code_verifier", pending.verifier.clone()),
        ("scope", "openid profile".to_string()),
    ];
    if let Some(s) = &o.client_secret {
        form.push(("client_secret", s.expose().to_string()));
    }
    let answer = state
        .http
        .post(o.endpoint("oauth2/v2.0/token"))
        .form(&form)
        .timeout(std::time::Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| OidcError::TokenEndpoint(crate::redact::redact(&e.to_string())))?;
    let status = answer.status();
    let body: TokenAnswer = answer
        .json()
        .await
        .map_err(|e| OidcError::TokenEndpoint(format!("HTTP {status}: {e}")))?;
    let Some(id_token) = body.id_token.filter(|_| status.is_success()) else {
        // Entra's error text names the cause (AADSTS…) and carries no secret.
        return Err(OidcError::TokenEndpoint(format!(
            "HTTP {status} {}: {}",
            body.error.unwrap_or_default(),
            crate::telemetry::capped(body.error_description.as_deref().unwrap_or_default())
        )));
    };
    let verified = validator(state, o)?
        .verify(&id_token)
        .await
        .map_err(|e| OidcError::BadToken(e.to_string()))?;
    // Signature checked above: the payload is the issuer's.
    let payload = id_token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .ok_or_else(|| OidcError::BadToken("payload".into()))?;
    let claims: IdClaims =
        serde_json::from_slice(&payload).map_err(|e| OidcError::BadToken(e.to_string()))?;
    if !claims
        .nonce
        .as_deref()
        .is_some_and(|n| eq(n, &pending.nonce))
    {
        return Err(OidcError::NonceMismatch);
    }
    let object_id = verified
        .object_id
        .or(claims.oid.map(|o| o.to_ascii_lowercase()))
        .ok_or_else(|| OidcError::BadToken("no oid claim".into()))?;
    let name = claims
        .preferred_username
        .or(claims.name)
        .unwrap_or_else(|| object_id.clone());
    let member = claims
        .groups
        .iter()
        .any(|g| admins.iter().any(|a| a.eq_ignore_ascii_case(g.trim())));
    let overage = claims.claim_names.is_some() || claims.hasgroups.is_some();
    let member = member
        || match (overage, &state.graph) {
            (true, Some(graph)) => graph_member(graph, &object_id, admins).await?,
            (true, None) => return Err(OidcError::GroupOverage),
            (false, _) => false,
        };
    if !member {
        return Err(OidcError::NotInGroup(name));
    }
    Ok(OidcAdmin { object_id, name })
}

/// Whether `object_id` is a member (transitively) of one of `groups`, asked of Graph: the
/// `checkMemberGroups` action returns the subset of the ids the user belongs to.
async fn graph_member(
    graph: &crate::graph::GraphClient,
    object_id: &str,
    groups: &[String],
) -> Result<bool, OidcError> {
    if uuid::Uuid::parse_str(object_id).is_err() {
        return Err(OidcError::BadToken("oid is not an object id".into()));
    }
    let r = graph
        .post_json(
            &format!("/users/{object_id}/checkMemberGroups"),
            &serde_json::json!({ "groupIds": groups }),
        )
        .await
        .map_err(|e| OidcError::GroupCheck(crate::redact::redact(&e.to_string())))?;
    if r.status / 100 != 2 {
        return Err(OidcError::GroupCheck(format!("HTTP {}", r.status)));
    }
    let found = r.body["value"]
        .as_array()
        .ok_or_else(|| OidcError::GroupCheck("no value list in the answer".into()))?;
    Ok(found
        .iter()
        .filter_map(|v| v.as_str())
        .any(|id| groups.iter().any(|g| g.eq_ignore_ascii_case(id.trim()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_cookie_is_ours_only_unaltered_and_in_time() {
        let k = SessionKey::from_secret(&"k".repeat(32));
        let p = Pending {
            state: random(),
            nonce: random(),
            verifier: random(),
            expiry: 2_000,
        };
        let c = p.cookie(&k);
        assert_eq!(Pending::parse(&k, &c, 1_000), Some(p));
        assert!(Pending::parse(&k, &c, 2_000).is_none(), "expired");
        let other = SessionKey::from_secret(&"o".repeat(32));
        assert!(Pending::parse(&other, &c, 1_000).is_none());
        let forged = c.replacen("v1.", "v1.x", 1);
        assert!(Pending::parse(&k, &forged, 1_000).is_none());
    }

    #[test]
    fn pkce_challenge_is_rfc7636_s256() {
        // RFC 7636 appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
