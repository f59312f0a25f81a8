//! A Microsoft Graph double over real HTTP that enforces what Graph does, with the answer shapes of
//! `shared/fixtures/graph/`: the client-credentials token endpoint (form checked, bad secret →
//! 401 `invalid_client` AADSTS7000215), bearer tokens on every call, application permissions
//! (403 `Authorization_RequestDenied`), `@odata.nextLink` paging, `/users/delta` rounds with every
//! expiry form of the fixtures (410 + Location, 400 `resyncRequired`, PascalCase
//! `SyncStateNotFound`, `Directory_ExpiredPageToken` for a stale skip token), the throttling
//! table's limits (429 + fractional `Retry-After` when one is exceeded), `$batch` (≤ 20, unique
//! ids, items throttled on their own, 424 for dependants), and injected 429/503/504.
//!
//! Other route families (teams, app catalog) are added from their own files through
//! [`GraphDouble::route`]: a method, a path pattern (`/teams/{id}/members/add`), the permission
//! the route needs, and a handler over [`GraphRequest`] and the shared [`GraphState`]; routes
//! registered that way get tokens, permissions, throttling, faults and `$batch` for free.

mod batch;
pub mod teams;
mod throttle;
mod users;

pub use throttle::Limits;
pub use users::Photo;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

pub const TENANT_ID: &str = "00000000-aaaa-4aaa-8aaa-000000000001";
pub const CLIENT_ID: &str = "00000000-bbbb-4bbb-8bbb-000000000002";
pub const CLIENT_SECRET: &str = "PLACEHOLDER-CLIENT-SECRET-VALUE";
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
const ODATA_JSON: &str =
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// The application permissions the double knows (granted by default).
pub const PERMISSIONS: &[&str] = &[
    "User.Read.All",
    "GroupMember.Read.All",
    "Group.ReadWrite.All",
    "Team.Create",
    "TeamMember.Read.All",
    "TeamMember.ReadWrite.All",
    "TeamSettings.ReadWrite.All",
    "Team.ReadBasic.All",
    "AppCatalog.Read.All",
    "TeamsAppInstallation.ReadWriteForTeam.All",
    "TeamsAppInstallation.ReadForTeam.All",
    "TeamsAppInstallation.ReadWriteSelfForUser.All",
    "TeamsAppInstallation.ReadForUser.All",
];

/// One request as a route handler sees it (inner `$batch` requests too).
#[derive(Debug, Clone)]
pub struct GraphRequest {
    pub method: String,
    /// Path below the version root, e.g. `/teams/22…/members/add`.
    pub path: String,
    /// The path with its query as sent (faults match on it).
    pub target: String,
    /// Path segments (as sent, not lower-cased).
    pub segments: Vec<String>,
    /// Query parameters, decoded (`$select` → `id,mail`).
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

impl GraphRequest {
    /// The `{…}` segments of the route pattern that matched, in order.
    pub fn param(&self, pattern: &str, index: usize) -> Option<&str> {
        pattern
            .split('/')
            .filter(|s| !s.is_empty())
            .zip(&self.segments)
            .filter(|(p, _)| p.starts_with('{'))
            .nth(index)
            .map(|(_, s)| s.as_str())
    }
}

/// What a route answers.
#[derive(Debug, Clone)]
pub struct GraphReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// `None` = empty body (202 of POST /teams, 204).
    pub body: Option<Value>,
    /// A binary body and its content type (`/users/{id}/photo/$value`), instead of `body`.
    pub raw: Option<(String, Vec<u8>)>,
}

impl GraphReply {
    pub fn json(status: u16, body: Value) -> Self {
        GraphReply {
            status,
            headers: Vec::new(),
            body: Some(body),
            raw: None,
        }
    }

    /// A binary answer.
    pub fn bytes(status: u16, content_type: &str, bytes: Vec<u8>) -> Self {
        GraphReply {
            status,
            headers: Vec::new(),
            body: None,
            raw: Some((content_type.to_string(), bytes)),
        }
    }

    pub fn empty(status: u16) -> Self {
        GraphReply {
            status,
            headers: Vec::new(),
            body: None,
            raw: None,
        }
    }

    /// Graph's error shape (`{"error": {"code", "message", "innerError": {date, request-id, …}}}`).
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        GraphReply::json(
            status,
            json!({"error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": "2026-11-26T02:30:00",
                    "request-id": "66666666-6666-4666-8666-000000000099",
                    "client-request-id": "66666666-6666-4666-8666-000000000099"
                }
            }}),
        )
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

pub type Handler = Arc<dyn Fn(&GraphRequest, &mut GraphState) -> GraphReply + Send + Sync>;

#[derive(Clone)]
struct Route {
    method: String,
    pattern: Vec<String>,
    permission: String,
    handler: Handler,
}

impl Route {
    fn matches(&self, method: &str, segments: &[String]) -> bool {
        self.method.eq_ignore_ascii_case(method)
            && self.pattern.len() == segments.len()
            && self
                .pattern
                .iter()
                .zip(segments)
                .all(|(p, s)| p.starts_with('{') || p.eq_ignore_ascii_case(s))
    }
}

/// An injected failure: the next `times` requests whose path (with its query) starts with `path_prefix` (and, when
/// given, whose method is `method`) get `status`, with `Retry-After` when given.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Option<String>,
    pub path_prefix: String,
    pub status: u16,
    pub retry_after: Option<String>,
    pub times: u32,
}

/// How an expired delta token is answered (the fixtures' family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaExpiry {
    /// 410 Gone + `Location: …/users/delta?$deltatoken=`, code `syncStateNotFound`.
    Gone,
    /// 400, code `resyncRequired`.
    ResyncRequired,
    /// 410, code `SyncStateNotFound` in PascalCase, no Location (the real capture of docs #2350).
    GonePascalCase,
}

/// Everything the double holds; routes added from other files get it mutably.
pub struct GraphState {
    pub base: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub granted: BTreeSet<String>,
    tokens: HashSet<String>,
    pub token_requests: u64,
    pub users: users::Users,
    pub limits: Limits,
    throttle: throttle::Windows,
    pub faults: Vec<Fault>,
    /// Every Graph request (not token requests): method and path with query.
    pub log: Vec<(String, String)>,
    /// Inner `$batch` requests, same form.
    pub batch_log: Vec<(String, String)>,
    /// 429s answered because a limit was exceeded (not injected ones).
    pub throttled: u64,
    /// Free-form state of route families added from other files.
    pub ext: HashMap<String, Box<dyn std::any::Any + Send>>,
    seq: u64,
}

impl GraphState {
    fn new(base: String) -> Self {
        GraphState {
            base,
            tenant_id: TENANT_ID.into(),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            granted: PERMISSIONS.iter().map(|p| p.to_string()).collect(),
            tokens: HashSet::new(),
            token_requests: 0,
            users: users::Users::default(),
            limits: Limits::graph(),
            throttle: throttle::Windows::default(),
            faults: Vec::new(),
            log: Vec::new(),
            batch_log: Vec::new(),
            throttled: 0,
            ext: HashMap::new(),
            seq: 0,
        }
    }

    /// A fresh opaque id (skip/delta tokens, access tokens).
    pub fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!(
            "{prefix}{:016x}{:08x}",
            self.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            self.seq
        )
    }

    /// Requests of `method` whose path starts with `prefix`, outer and inside batches.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.log
            .iter()
            .chain(&self.batch_log)
            .filter(|(m, p)| m.eq_ignore_ascii_case(method) && p.starts_with(prefix))
            .count()
    }
}

pub struct Shared {
    state: Mutex<GraphState>,
    routes: RwLock<Vec<Route>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, GraphState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct GraphDouble {
    pub addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GraphDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GraphDouble {
    pub async fn start() -> GraphDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind graph double");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(GraphState::new(format!("http://{addr}/v1.0"))),
            routes: RwLock::new(Vec::new()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let double = GraphDouble { addr, shared, task };
        users::register(&double);
        teams::register(&double);
        double
    }

    /// `http://127.0.0.1:port/v1.0`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1.0", self.addr)
    }

    /// The tenant's token endpoint on this double.
    pub fn token_url(&self) -> String {
        format!(
            "http://{}/{}/oauth2/v2.0/token",
            self.addr,
            self.lock().tenant_id
        )
    }

    pub fn lock(&self) -> MutexGuard<'_, GraphState> {
        self.shared.lock()
    }

    /// Adds a route: `pattern` is a path below the version root, `{name}` matching one segment.
    pub fn route<F>(&self, method: &str, pattern: &str, permission: &str, handler: F)
    where
        F: Fn(&GraphRequest, &mut GraphState) -> GraphReply + Send + Sync + 'static,
    {
        let route = Route {
            method: method.to_ascii_uppercase(),
            pattern: pattern
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            permission: permission.to_string(),
            handler: Arc::new(handler),
        };
        self.shared
            .routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(route);
    }

    /// Graph settings for the bridge pointing at this double (client secret).
    pub fn settings(&self) -> bridge::graph::GraphSettings {
        let s = self.lock();
        bridge::graph::GraphSettings {
            tenant_id: s.tenant_id.clone(),
            client_id: s.client_id.clone(),
            auth: bridge::graph::GraphAuth::Secret(bridge::config::Secret::new(
                s.client_secret.clone(),
            )),
            base_url: url::Url::parse(&s.base).expect("base"),
            token_endpoint: Some(
                url::Url::parse(&format!(
                    "http://{}/{}/oauth2/v2.0/token",
                    self.addr, s.tenant_id
                ))
                .expect("token url"),
            ),
            identity_ru_per_10s: s.limits.identity_ru_per_10s,
            platform_identity: Default::default(),
        }
    }

    /// App settings (environment form) for the bridge pointing at this double.
    pub fn env(&self) -> Vec<(String, String)> {
        let s = self.lock();
        vec![
            ("GRAPH_CLIENT_ID".into(), s.client_id.clone()),
            ("GRAPH_TENANT_ID".into(), s.tenant_id.clone()),
            ("GRAPH_CLIENT_SECRET".into(), s.client_secret.clone()),
            ("GRAPH_BASE_URL".into(), s.base.clone()),
            (
                "GRAPH_TOKEN_ENDPOINT".into(),
                format!("http://{}/{}/oauth2/v2.0/token", self.addr, s.tenant_id),
            ),
        ]
    }

    /// Invalidates every access token issued so far (next call: 401).
    pub fn revoke_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// Every bearer token the double issued or was told to accept (tests check none is logged).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.lock().tokens.iter().cloned().collect()
    }

    /// Accepts `token` as a valid bearer token from now on (delegated tokens of an Entra double).
    pub fn accept_token(&self, token: &str) {
        self.lock().tokens.insert(token.to_string());
    }

    pub fn deny(&self, permission: &str) {
        self.lock().granted.remove(permission);
    }

    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Graph requests so far (token requests not included; a `$batch` counts once).
    pub fn calls(&self) -> usize {
        self.lock().log.len()
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let reply = if path.ends_with("/oauth2/v2.0/token") && method == Method::POST {
        token(&shared, &path, &body)
    } else if let Some(rel) = path.strip_prefix("/v1.0") {
        graph(&shared, method.as_str(), rel, uri.query(), &headers, &body)
    } else {
        GraphReply::error(404, "NotFound", "no such endpoint on the Graph double")
    };
    into_response(reply)
}

fn into_response(reply: GraphReply) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("request-id", "66666666-6666-4666-8666-000000000099")
        .header("client-request-id", "66666666-6666-4666-8666-000000000099")
        .header("Cache-Control", "no-cache");
    for (k, v) in &reply.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    if let Some((content_type, bytes)) = reply.raw {
        return builder
            .header("Content-Type", content_type)
            .body(axum::body::Body::from(bytes))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    match reply.body {
        Some(b) => builder
            .header("Content-Type", ODATA_JSON)
            .body(axum::body::Body::from(b.to_string())),
        None => builder.body(axum::body::Body::empty()),
    }
    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The client-credentials grant, as `token-client-credentials.json` shows it.
fn token(shared: &Shared, path: &str, body: &[u8]) -> GraphReply {
    let form: BTreeMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let mut s = shared.lock();
    s.token_requests += 1;
    let tenant_ok = path == format!("/{}/oauth2/v2.0/token", s.tenant_id);
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if !tenant_ok || get("grant_type") != "client_credentials" || get("scope") != GRAPH_SCOPE {
        return GraphReply::json(
            400,
            json!({"error": "invalid_request", "error_description": "AADSTS70011: The provided request must include a valid 'scope' input parameter.", "error_codes": [70011]}),
        );
    }
    let proof_ok = get("client_id") == s.client_id
        && (get("client_secret") == s.client_secret
            || (get("client_assertion_type")
                == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                && !get("client_assertion").is_empty()));
    if !proof_ok {
        return GraphReply::json(
            401,
            json!({
                "error": "invalid_client",
                "error_description": format!("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.", get("client_id")),
                "error_codes": [7000215],
                "timestamp": "2026-11-26 02:30:00Z",
                "trace_id": "77777777-7777-4777-8777-000000000001",
                "correlation_id": "77777777-7777-4777-8777-000000000002",
                "error_uri": "https://login.microsoftonline.com/error?code=7000215"
            }),
        );
    }
    // A JWT as Entra issues app-only Graph tokens (header of the fixture's token): the granted
    // application permissions in `roles` (access-token claims reference, entra-docs); the
    // signature part is a placeholder.
    let granted: Vec<&String> = s.granted.iter().collect();
    let claims = json!({
        "aud": "https://graph.microsoft.com",
        "iss": format!("https://sts.windows.net/{}/", s.tenant_id),
        "tid": s.tenant_id,
        "appid": s.client_id,
        "roles": granted,
    });
    let payload = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    };
    let access = s.next_id(&format!(
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.{payload}.double"
    ));
    s.tokens.insert(access.clone());
    GraphReply::json(
        200,
        json!({"token_type": "Bearer", "expires_in": 3599, "access_token": access}),
    )
    .header("Cache-Control", "no-store, no-cache")
}

fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// An outer Graph request: bearer token, then the common path.
fn graph(
    shared: &Shared,
    method: &str,
    rel: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> GraphReply {
    let with_query = match query {
        Some(q) => format!("{rel}?{q}"),
        None => rel.to_string(),
    };
    {
        let mut s = shared.lock();
        s.log.push((method.to_string(), with_query.clone()));
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !s.tokens.contains(bearer) {
            return GraphReply::error(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            );
        }
    }
    let zip = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/zip"));
    let body: Value = if body.is_empty() {
        Value::Null
    } else if zip {
        // A Teams app package upload: handed to the route as base64 under `$zip`.
        use base64::Engine;
        json!({ "$zip": base64::engine::general_purpose::STANDARD.encode(body) })
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => {
                return GraphReply::error(400, "BadRequest", "Unable to read JSON request payload.")
            }
        }
    };
    let request = GraphRequest {
        method: method.to_ascii_uppercase(),
        path: rel.to_string(),
        target: with_query.clone(),
        segments: segments(rel),
        query: parse_query(query),
        headers: headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().ok()?.to_string(),
                ))
            })
            .collect(),
        body,
    };
    if request.method == "POST" && request.segments == ["$batch"] {
        return batch::run(shared, &request);
    }
    dispatch(shared, &request)
}

/// Faults, throttling, route, permission, handler: the same for outer and `$batch` requests.
fn dispatch(shared: &Shared, request: &GraphRequest) -> GraphReply {
    // Like a real router: the most literal pattern wins (`/appCatalogs/teamsApps` over a
    // catch-all `/{a}/{b}`); between equals the one added last, so a test can override a route.
    let route = shared
        .routes
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .enumerate()
        .filter(|(_, r)| r.matches(&request.method, &request.segments))
        .max_by_key(|(i, r)| (r.pattern.iter().filter(|p| !p.starts_with('{')).count(), *i))
        .map(|(_, r)| r.clone());
    let mut s = shared.lock();
    if let Some(i) = s.faults.iter().position(|f| {
        f.times > 0
            && request.target.starts_with(&f.path_prefix)
            && f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(&request.method))
    }) {
        let f = &mut s.faults[i];
        f.times -= 1;
        let (status, retry_after) = (f.status, f.retry_after.clone());
        let mut reply = match status {
            429 => GraphReply::error(429, "TooManyRequests", "Please retry again later."),
            503 => GraphReply::error(
                503,
                "serviceNotAvailable",
                "The service is temporarily unavailable. Try again after a delay.",
            ),
            504 => GraphReply::error(504, "UnknownError", ""),
            s => GraphReply::error(s, "UnknownError", "injected"),
        };
        if let Some(ra) = retry_after {
            reply = reply.header("Retry-After", ra);
        }
        return reply;
    }
    let Some(route) = route else {
        return GraphReply::error(
            400,
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}'.",
                request.segments.last().map(String::as_str).unwrap_or("")
            ),
        );
    };
    if let Some(wait) = throttle::admit(&mut s, request) {
        s.throttled += 1;
        return GraphReply::error(429, "TooManyRequests", "Too many requests, retry later.")
            .header(
                "Retry-After",
                format!("{:.3}", wait.as_secs_f64().max(0.001)),
            );
    }
    if !s.granted.contains(&route.permission) {
        return GraphReply::error(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        );
    }
    (route.handler)(request, &mut s)
}

/// Shorthand for tests: a duration as Graph writes it in `Retry-After`.
pub fn retry_after_text(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}
