//! An HTTP double of the Entra endpoints an OpenID Connect sign-in uses, for the admin page's
//! tests: the tenant's OpenID metadata, its JWKS (the TEST-ONLY key of
//! `fixtures/botframework/jwks-other-issuer.json`), `/authorize` (signs the browser in at once:
//! issues a code for the request and sends the browser, from a page of its own, to its
//! `redirect_uri` with `code` and `state`) and
//! `/token`, which checks what Entra checks — the grant type, the client id, a code it issued and
//! has not redeemed, the same redirect URI, and the PKCE verifier against the challenge
//! (RFC 7636) — then answers an ID token signed with the test key.

use crate::bot_app::{header_for, mint_raw, TestKey};
use crate::fixture_json;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// What the token endpoint answers for one code, and what it expects with it.
#[derive(Clone)]
pub struct Grant {
    pub challenge: String,
    pub redirect_uri: String,
    pub claims: Value,
    pub key: TestKey,
}

/// What `/authorize` does with a browser: the claims of the ID token it will issue, given the
/// request's nonce.
pub type SignIn = Arc<dyn Fn(&str) -> Value + Send + Sync>;

#[derive(Clone)]
pub struct EntraDouble {
    /// `http://host:port` (no trailing slash); the authority is this plus `/`.
    pub base: String,
    pub client_id: String,
    pub grants: Arc<Mutex<HashMap<String, Grant>>>,
    pub token_calls: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    pub sign_in: Arc<Mutex<Option<SignIn>>>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// PKCE S256 of a verifier (RFC 7636 §4.2), computed here, not by the code under test.
pub fn challenge(verifier: &str) -> String {
    use sha2::Digest;
    b64(&sha2::Sha256::digest(verifier.as_bytes()))
}

async fn metadata(State(e): State<EntraDouble>, Path(tenant): Path<String>) -> Json<Value> {
    Json(json!({
        "issuer": format!("https://login.microsoftonline.com/{tenant}/v2.0"),
        "authorization_endpoint": format!("{}/{tenant}/oauth2/v2.0/authorize", e.base),
        "token_endpoint": format!("{}/{tenant}/oauth2/v2.0/token", e.base),
        "jwks_uri": format!("{}/{tenant}/discovery/v2.0/keys", e.base),
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn keys() -> Json<Value> {
    Json(fixture_json("botframework/jwks-other-issuer.json"))
}

async fn authorize(
    State(e): State<EntraDouble>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(sign_in) = e.sign_in.lock().unwrap().clone() else {
        return (StatusCode::NOT_FOUND, "no sign-in scripted").into_response();
    };
    let (Some(redirect), Some(state), Some(nonce), Some(challenge)) = (
        q.get("redirect_uri"),
        q.get("state"),
        q.get("nonce"),
        q.get("code_challenge"),
    ) else {
        return (StatusCode::BAD_REQUEST, "AADSTS900144: missing parameter").into_response();
    };
    let code = format!("code-{}", e.grants.lock().unwrap().len() + 1);
    e.grants.lock().unwrap().insert(
        code.clone(),
        Grant {
            challenge: challenge.clone(),
            redirect_uri: redirect.clone(),
            claims: sign_in(nonce),
            key: TestKey::OtherIssuer,
        },
    );
    let mut to = url::Url::parse(redirect).expect("redirect_uri");
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", state);
    // A page of Entra's own that sends the browser back, as the real sign-in page does once the
    // user is through: the navigation back is then started by another site, so the app's
    // SameSite cookies behave as they will in production.
    let to = serde_json::to_string(to.as_str()).expect("JSON string");
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!("<!doctype html><title>Sign in</title><p>Signed in.</p><script>setTimeout(function(){{location.assign({to});}}, 50);</script>"),
    )
        .into_response()
}

async fn token(
    State(e): State<EntraDouble>,
    Form(form): Form<BTreeMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    e.token_calls.lock().unwrap().push(form.clone());
    let invalid = |d: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": d})),
        )
    };
    if form.get("grant_type").map(String::as_str) != Some("authorization_code")
        || form.get("client_id") != Some(&e.client_id)
    {
        return invalid("AADSTS900144: bad request");
    }
    let Some(g) = form
        .get("code")
        .and_then(|c| e.grants.lock().unwrap().remove(c))
    else {
        return invalid("AADSTS70008: the provided authorization code is expired or unknown");
    };
    if form.get("redirect_uri") != Some(&g.redirect_uri) {
        return invalid("AADSTS50011: redirect URI mismatch");
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if challenge(&verifier) != g.challenge {
        return invalid("AADSTS501481: the code_verifier does not match the code_challenge");
    }
    let id_token = mint_raw(&header_for(g.key), &g.claims, g.key);
    (
        StatusCode::OK,
        Json(
            json!({"token_type": "Bearer", "scope": "openid profile", "expires_in": 3600,
                    "access_token": "not-used", "id_token": id_token}),
        ),
    )
}

impl EntraDouble {
    /// Listening on `host` (e.g. `127.0.0.1`, or `localhost` to be another site than the app).
    pub async fn start(host: &str, client_id: &str) -> EntraDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let e = EntraDouble {
            base: format!("http://{host}:{port}"),
            client_id: client_id.into(),
            grants: Arc::default(),
            token_calls: Arc::default(),
            sign_in: Arc::default(),
        };
        let router = Router::new()
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                get(metadata),
            )
            .route("/{tenant}/discovery/v2.0/keys", get(keys))
            .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .with_state(e.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        e
    }

    /// Entra issues `code` for an authorize request whose query was `q`.
    pub fn issue(&self, q: &HashMap<String, String>, code: &str, claims: Value, key: TestKey) {
        self.grants.lock().unwrap().insert(
            code.into(),
            Grant {
                challenge: q["code_challenge"].clone(),
                redirect_uri: q["redirect_uri"].clone(),
                claims,
                key,
            },
        );
    }

    /// From now on `/authorize` signs every browser in with the claims `f(nonce)` gives.
    pub fn sign_in_with(&self, f: impl Fn(&str) -> Value + Send + Sync + 'static) {
        *self.sign_in.lock().unwrap() = Some(Arc::new(f));
    }
}
