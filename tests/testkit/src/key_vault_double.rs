//! A Key Vault secrets double (REST api-version 7.4, as the Set/Get/Update Secret reference pages
//! show it) and the App Service managed-identity endpoint that hands out its tokens.
//!
//! Contract enforced, so a client that gets it wrong fails here as it would in Azure:
//! - `api-version` must be given; names must match `^[0-9a-zA-Z-]{1,127}$` (400 `BadParameter`);
//! - `Authorization: Bearer <token>` must carry a token the identity endpoint issued for the
//!   resource `https://vault.azure.net` (401 `Unauthorized` with Key Vault's `WWW-Authenticate`
//!   challenge otherwise); [`KeyVaultDouble::deny`] turns every call into 403 `Forbidden`
//!   (`ForbiddenByRbac`: the identity lacks its role);
//! - `GET /secrets/{name}[/{version}]`: the latest version (or that one) with its `value` and
//!   `id` `…/secrets/{name}/{version}`; 404 `SecretNotFound` when absent; 403 on a disabled one;
//! - `PUT /secrets/{name}` with a string `value` adds a version (32 hex digits), answers its bundle;
//! - `PATCH /secrets/{name}/{version}` updates `attributes` (the value cannot be changed there).
//!
//! The identity endpoint is `GET /msi/token?api-version=2019-08-01&resource=…[&client_id=…]`
//! with `X-IDENTITY-HEADER` (App Service / Functions); its answers are counted.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub const IDENTITY_HEADER: &str = "identity-header-secret-of-the-app";
pub const RESOURCE: &str = "https://vault.azure.net";

#[derive(Debug, Clone)]
pub struct Version {
    pub id: String,
    pub value: String,
    pub enabled: bool,
    pub content_type: Option<String>,
}

#[derive(Debug, Default)]
pub struct VaultState {
    /// name → versions, oldest first.
    pub secrets: BTreeMap<String, Vec<Version>>,
    /// Tokens the identity endpoint issued.
    pub issued: Vec<String>,
    /// `(method, path)` of every vault request, and whether it carried a valid token.
    pub log: Vec<(String, String, bool)>,
    /// Managed identity: `(resource, client_id)` of each token request.
    pub token_requests: Vec<(String, Option<String>)>,
    /// The identity lacks its role: every vault call answers 403.
    pub denied: bool,
    /// Tokens the vault no longer accepts (a rotation): 401 until a new one is fetched.
    pub revoked: Vec<String>,
    /// No token is accepted (wrong tenant or audience of the identity): 401 always.
    pub refuse_all: bool,
    next: u64,
}

pub struct KeyVaultDouble {
    pub addr: std::net::SocketAddr,
    pub state: Arc<Mutex<VaultState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KeyVaultDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeyVaultDouble {
    pub async fn start() -> KeyVaultDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(VaultState::default()));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        KeyVaultDouble { addr, state, task }
    }

    /// The vault URL (`TEAMS_APP_TOKEN_VAULT_URL`).
    pub fn vault_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The managed-identity endpoint (`IDENTITY_ENDPOINT`).
    pub fn identity_endpoint(&self) -> String {
        format!("http://{}/msi/token", self.addr)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, VaultState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn deny(&self, denied: bool) {
        self.lock().denied = denied;
    }

    /// Every token issued so far stops working (the next call gets 401).
    pub fn revoke_tokens(&self) {
        let mut s = self.lock();
        let issued = s.issued.clone();
        s.revoked.extend(issued);
    }

    pub fn versions(&self, name: &str) -> Vec<Version> {
        self.lock().secrets.get(name).cloned().unwrap_or_default()
    }
}

fn kv_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn bundle(base: &str, name: &str, v: &Version, with_value: bool) -> Value {
    let mut b = json!({
        "id": format!("{base}/secrets/{name}/{}", v.id),
        "attributes": {"enabled": v.enabled, "created": 1_493_938_410, "updated": 1_493_938_410, "recoveryLevel": "Recoverable+Purgeable"},
    });
    if with_value {
        b["value"] = json!(v.value);
    }
    if let Some(ct) = &v.content_type {
        b["contentType"] = json!(ct);
    }
    b
}

fn is_name(n: &str) -> bool {
    (1..=127).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

async fn handle(
    State(state): State<Arc<Mutex<VaultState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let query: BTreeMap<String, String> =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let base = format!("http://{host}");

    if uri.path() == "/msi/token" {
        if headers
            .get("x-identity-header")
            .and_then(|h| h.to_str().ok())
            != Some(IDENTITY_HEADER)
            || query.get("api-version").map(String::as_str) != Some("2019-08-01")
        {
            return (StatusCode::BAD_REQUEST, "bad identity request").into_response();
        }
        let resource = query.get("resource").cloned().unwrap_or_default();
        s.token_requests
            .push((resource.clone(), query.get("client_id").cloned()));
        if resource != RESOURCE {
            // Any other audience is of no use to the vault: hand out a token it will refuse.
            return axum::Json(json!({"access_token": format!("token-for-{resource}"), "expires_on": "4102444800", "resource": resource, "token_type": "Bearer"})).into_response();
        }
        s.next += 1;
        let token = format!("kv-access-token-{}", s.next);
        s.issued.push(token.clone());
        return axum::Json(json!({"access_token": token, "expires_on": "4102444800", "resource": resource, "token_type": "Bearer"})).into_response();
    }

    let bearer = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_string);
    let valid = !s.refuse_all
        && bearer
            .as_ref()
            .is_some_and(|t| s.issued.contains(t) && !s.revoked.contains(t));
    s.log
        .push((method.to_string(), uri.path().to_string(), valid));
    if !valid {
        let mut r = kv_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            if bearer.is_none() {
                "AKV10000: Request is missing a Bearer or PoP token."
            } else {
                "AKV10032: Invalid issuer or audience."
            },
        );
        r.headers_mut().insert(
            "www-authenticate",
            "Bearer authorization=\"https://login.microsoftonline.com/00000000-aaaa-4aaa-8aaa-000000000001\", resource=\"https://vault.azure.net\""
                .parse()
                .unwrap(),
        );
        return r;
    }
    if query.get("api-version").map(String::as_str) != Some("7.4") {
        return kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request URI contains an invalid api-version.",
        );
    }
    if s.denied {
        let mut r = kv_error(StatusCode::FORBIDDEN, "Forbidden", "Caller is not authorized to perform action on resource. Action: 'Microsoft.KeyVault/vaults/secrets/setSecret/action'");
        *r.body_mut() = axum::body::Body::from(
            json!({"error": {"code": "Forbidden", "message": "Caller is not authorized to perform action on resource.", "innererror": {"code": "ForbiddenByRbac"}}}).to_string(),
        );
        return r;
    }
    let parts: Vec<&str> = uri.path().split('/').filter(|p| !p.is_empty()).collect();
    let (name, version) = match parts.as_slice() {
        ["secrets", name] => (*name, None),
        ["secrets", name, v] => (*name, Some(*v)),
        _ => return kv_error(StatusCode::NOT_FOUND, "NotFound", "No such operation."),
    };
    if !is_name(name) {
        return kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The secret name is invalid.",
        );
    }
    let missing = || {
        kv_error(StatusCode::NOT_FOUND, "SecretNotFound", &format!("A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command."))
    };
    match (method.as_str(), version) {
        ("GET", v) => {
            let Some(versions) = s.secrets.get(name) else {
                return missing();
            };
            let found = match v {
                Some(v) => versions.iter().find(|x| x.id == v),
                None => versions.last(),
            };
            match found {
                Some(x) if !x.enabled => kv_error(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "Operation get is not allowed on a disabled secret.",
                ),
                Some(x) => axum::Json(bundle(&base, name, x, true)).into_response(),
                None => missing(),
            }
        }
        ("PUT", None) => {
            let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let Some(value) = b["value"].as_str() else {
                return kv_error(
                    StatusCode::BAD_REQUEST,
                    "BadParameter",
                    "Property value is required.",
                );
            };
            s.next += 1;
            let v = Version {
                id: format!("{:032x}", 0x4387_e9f3_u128 * 1_000 + s.next as u128),
                value: value.to_string(),
                enabled: b["attributes"]["enabled"].as_bool().unwrap_or(true),
                content_type: b["contentType"].as_str().map(str::to_string),
            };
            let out = bundle(&base, name, &v, true);
            s.secrets.entry(name.to_string()).or_default().push(v);
            axum::Json(out).into_response()
        }
        ("PATCH", Some(v)) => {
            let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let Some(x) = s
                .secrets
                .get_mut(name)
                .and_then(|vs| vs.iter_mut().find(|x| x.id == v))
            else {
                return missing();
            };
            if let Some(e) = b["attributes"]["enabled"].as_bool() {
                x.enabled = e;
            }
            let x = x.clone();
            axum::Json(bundle(&base, name, &x, false)).into_response()
        }
        _ => kv_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadParameter",
            "Method not allowed.",
        ),
    }
}
