//! Doubles that enforce Teams' limits, for the notification tests and `bench notify`:
//! - [`LimitedConnector`]: Bot Connector (token endpoint + `…/v3/conversations/{id}/activities`)
//!   that answers 429 + `Retry-After` as soon as a send would pass 7 per 1 s, 8 per 2 s, 60 per
//!   30 s or 1,800 per hour in one conversation, or 50 per second for the whole app;
//! - [`LimitedWebhook`]: Workflows trigger double (any path) with 4 posts per second per URL,
//!   answering 202 like Workflows.
//!
//! Both count what they accepted and what they throttled, and can be scripted per conversation
//! or per path (a status to answer for the next N requests, or always).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sliding windows over accepted requests of one key.
#[derive(Default)]
struct Windows(VecDeque<Instant>);

impl Windows {
    /// Accept at `now` if every `(limit, period)` has room; otherwise how long until it would.
    fn admit(&mut self, now: Instant, limits: &[(usize, Duration)]) -> Result<(), Duration> {
        let longest = limits.iter().map(|l| l.1).max().unwrap_or_default();
        while self
            .0
            .front()
            .is_some_and(|t| now.duration_since(*t) >= longest)
        {
            self.0.pop_front();
        }
        let mut wait = Duration::ZERO;
        for (limit, period) in limits {
            let inside: Vec<&Instant> = self
                .0
                .iter()
                .filter(|t| now.duration_since(**t) < *period)
                .collect();
            if inside.len() >= *limit {
                let oldest = inside[inside.len() - limit];
                wait = wait.max(*period - now.duration_since(*oldest));
            }
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        self.0.push_back(now);
        Ok(())
    }
}

/// A status to answer instead of the normal one: `remaining` times (None = always).
#[derive(Clone, Debug)]
pub struct Scripted {
    pub status: u16,
    pub remaining: Option<usize>,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Scripted {
    pub fn always(status: u16) -> Self {
        Scripted {
            status,
            remaining: None,
            headers: Vec::new(),
            body: json!({"error": {"code": "Scripted", "message": "scripted answer"}}),
        }
    }
    pub fn times(status: u16, n: usize) -> Self {
        Scripted {
            remaining: Some(n),
            ..Scripted::always(status)
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn body(mut self, body: Value) -> Self {
        self.body = body;
        self
    }
}

fn take_script(scripts: &mut HashMap<String, Scripted>, key: &str) -> Option<Scripted> {
    let s = scripts.get_mut(key)?;
    match &mut s.remaining {
        Some(0) => None,
        Some(n) => {
            *n -= 1;
            Some(s.clone())
        }
        None => Some(s.clone()),
    }
}

fn answer(s: Scripted) -> Response {
    let mut r = (StatusCode::from_u16(s.status).unwrap(), Json(s.body)).into_response();
    for (k, v) in s.headers {
        r.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    r
}

fn throttled(wait: Duration) -> Response {
    let secs = wait.as_secs_f64().max(0.05);
    let mut r = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"error": {"code": "Throttled", "message": "Too many requests"}})),
    )
        .into_response();
    r.headers_mut()
        .insert("retry-after", format!("{secs:.3}").parse().unwrap());
    r
}

// ---------------------------------------------------------------------------------------------

/// The card's title (second body element), what a slim log keeps of a message.
fn card_title(v: &Value) -> Value {
    v["attachments"][0]["content"]["body"][1]["text"].clone()
}

#[derive(Default)]
pub struct ConnectorLog {
    /// Accepted sends: (conversation id, activity, arrival).
    pub sent: Vec<(String, Value, Instant)>,
    /// Keep only each card's title in `sent` (the benchmark: 20,000 whole cards would weigh more
    /// than the bridge it measures).
    pub slim: bool,
    pub throttled: usize,
    pub scripted: usize,
    conversations: HashMap<String, Windows>,
    app: Windows,
    scripts: HashMap<String, Scripted>,
}

#[derive(Clone)]
pub struct LimitedConnector {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<ConnectorLog>>,
    /// Requests per second for the whole app (Teams: 50).
    pub app_rate: usize,
}

const CONVERSATION_LIMITS: [(usize, Duration); 4] = [
    (7, Duration::from_secs(1)),
    (8, Duration::from_secs(2)),
    (60, Duration::from_secs(30)),
    (1800, Duration::from_secs(3600)),
];

async fn connector_send(
    State(c): State<LimitedConnector>,
    Path((_region, conversation)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let mut log = c.log.lock().unwrap();
    if let Some(s) = take_script(&mut log.scripts, &conversation) {
        log.scripted += 1;
        return answer(s);
    }
    // The app-wide budget counts every request, throttled or not, like the real service.
    let app_limit = [(c.app_rate, Duration::from_secs(1))];
    if let Err(wait) = log.app.admit(now, &app_limit) {
        log.throttled += 1;
        return throttled(wait);
    }
    let admitted = log
        .conversations
        .entry(conversation.clone())
        .or_default()
        .admit(now, &CONVERSATION_LIMITS);
    if let Err(wait) = admitted {
        log.throttled += 1;
        return throttled(wait);
    }
    let mut activity: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if log.slim {
        activity = card_title(&activity);
    }
    let n = log.sent.len();
    log.sent.push((conversation, activity, now));
    Json(json!({"id": format!("activity-{n}")})).into_response()
}

async fn connector_reply(
    state: State<LimitedConnector>,
    Path((region, conversation, _reply_to)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    connector_send(state, Path((region, conversation)), body).await
}

async fn token() -> Json<Value> {
    Json(
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                "access_token": crate::bot_app::ACCESS_TOKEN}),
    )
}

impl LimitedConnector {
    pub async fn start() -> Self {
        Self::start_with_rate(50).await
    }

    pub async fn start_with_rate(app_rate: usize) -> Self {
        let log = Arc::new(Mutex::new(ConnectorLog::default()));
        // The address is only known after binding: bind first, then build the state.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let c = LimitedConnector {
            addr,
            log,
            app_rate,
        };
        let router = Router::new()
            .route("/oauth2/v2.0/token", post(token))
            .route(
                "/{region}/v3/conversations/{conversation}/activities",
                post(connector_send),
            )
            // Replies to an activity (the bot answering a message) count like any send.
            .route(
                "/{region}/v3/conversations/{conversation}/activities/{reply_to}",
                post(connector_reply),
            )
            .with_state(c.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        c
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The service URL stored conversations carry.
    pub fn service_url(&self) -> String {
        format!("{}/emea/", self.uri())
    }

    pub fn script(&self, conversation: &str, s: Scripted) {
        self.log
            .lock()
            .unwrap()
            .scripts
            .insert(conversation.to_string(), s);
    }

    /// Accepted sends per conversation.
    pub fn sends_to(&self, conversation: &str) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .sent
            .iter()
            .filter(|(c, _, _)| c == conversation)
            .map(|(_, a, _)| a.clone())
            .collect()
    }

    pub fn sent_count(&self) -> usize {
        self.log.lock().unwrap().sent.len()
    }

    pub fn throttled(&self) -> usize {
        self.log.lock().unwrap().throttled
    }

    pub fn arrivals(&self) -> Vec<Instant> {
        self.log.lock().unwrap().sent.iter().map(|s| s.2).collect()
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Default)]
pub struct WebhookLog {
    /// Accepted posts: (path and query, body, arrival).
    pub posts: Vec<(String, Value, Instant)>,
    /// Keep only each card's title in `posts` (see [`ConnectorLog::slim`]).
    pub slim: bool,
    pub throttled: usize,
    hooks: HashMap<String, Windows>,
    scripts: HashMap<String, Scripted>,
}

#[derive(Clone)]
pub struct LimitedWebhook {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<WebhookLog>>,
}

async fn webhook_post(
    State(w): State<LimitedWebhook>,
    uri: Uri,
    _h: HeaderMap,
    body: Bytes,
) -> Response {
    let now = Instant::now();
    let key = uri.path().to_string();
    let mut log = w.log.lock().unwrap();
    if let Some(s) = take_script(&mut log.scripts, &key) {
        return answer(s);
    }
    let admitted = log
        .hooks
        .entry(key)
        .or_default()
        .admit(now, &[(4, Duration::from_secs(1))]);
    if let Err(wait) = admitted {
        log.throttled += 1;
        return throttled(wait);
    }
    let mut v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if log.slim {
        v = card_title(&v);
    }
    let full = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    log.posts.push((full, v, now));
    StatusCode::ACCEPTED.into_response()
}

impl LimitedWebhook {
    pub async fn start() -> Self {
        let log = Arc::new(Mutex::new(WebhookLog::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let w = LimitedWebhook { addr, log };
        let router = Router::new()
            .fallback(post(webhook_post))
            .with_state(w.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        w
    }

    /// The base `NOTIFY_WEBHOOK_DOUBLE_URL` points at.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Script the answers of one webhook path (`/workflows/<id>/triggers/manual/paths/invoke`).
    pub fn script(&self, path: &str, s: Scripted) {
        self.log.lock().unwrap().scripts.insert(path.to_string(), s);
    }

    pub fn posts_to(&self, path: &str) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .posts
            .iter()
            .filter(|(p, _, _)| p.split('?').next() == Some(path))
            .map(|(_, v, _)| v.clone())
            .collect()
    }

    pub fn post_count(&self) -> usize {
        self.log.lock().unwrap().posts.len()
    }

    pub fn throttled(&self) -> usize {
        self.log.lock().unwrap().throttled
    }
}

/// A Workflows URL on the allow-list (older Logic Apps form) whose path names `id`.
pub fn workflows_url(id: &str) -> String {
    format!(
        "https://prod-27.westus.logic.azure.com:443/workflows/{id}/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=test-sig-{id}"
    )
}

/// The path [`workflows_url`] posts to.
pub fn workflows_path(id: &str) -> String {
    format!("/workflows/{id}/triggers/manual/paths/invoke")
}
