//! Builds the application once: shared state and the one router that the custom-handler mode,
//! `serve` and Lambda all feed (zero2prod's `Application::build`).

use crate::host::Outbox;
use crate::moodle::MoodleClient;
use crate::queue::DurableQueue;
use crate::settings::Settings;
use crate::store::{BlobStore, SharedStore};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

pub struct AppInner {
    pub settings: Settings,
    pub store: SharedStore,
    pub blobs: Arc<dyn BlobStore>,
    pub moodle: Option<MoodleClient>,
    /// The process's one outbound HTTP client ([`crate::outbound::http`]): Moodle, Bot
    /// Connector, token endpoints and storage identity share its pool.
    pub http: reqwest::Client,
    /// Present under `handler serve`: where outbox messages go. Under the Functions host the
    /// host's queues do that job and this is `None`.
    pub local_queue: Option<DurableQueue>,
    pub bot: Option<crate::bot::BotRuntime>,
    /// One Graph client per process (its token cache and pacing are shared by every caller),
    /// when `GRAPH_*` is configured.
    pub graph: Option<Arc<crate::graph::GraphClient>>,
    pub notify: crate::notify::NotifyRuntime,
    /// Admin page: session key, sign-in limiter, runs started from the page.
    pub admin: crate::admin::live::AdminRuntime,
}

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// Wire everything from settings. Cheap: no network calls, so the port is bound fast.
    pub async fn build(settings: Settings, with_local_queue: bool) -> anyhow::Result<Self> {
        let (store, blobs) = crate::store::open(&settings.storage).await?;
        Self::from_parts(settings, store, blobs, with_local_queue)
    }

    pub fn from_parts(
        settings: Settings,
        store: SharedStore,
        blobs: Arc<dyn BlobStore>,
        with_local_queue: bool,
    ) -> anyhow::Result<Self> {
        let moodle = settings
            .moodle
            .as_ref()
            .map(MoodleClient::new)
            .transpose()?;
        let http = crate::outbound::http::shared()?;
        let visibility_ms = settings.core.queue_visibility_secs.saturating_mul(1000) as i64;
        let local_queue = with_local_queue
            .then(|| DurableQueue::new(store.clone()).with_visibility_ms(visibility_ms));
        let bot = crate::bot::BotRuntime::from_settings(settings.bot.as_ref(), &http)?;
        let graph = settings
            .graph
            .as_ref()
            .map(|g| crate::graph::GraphClient::from_settings(http.clone(), g).map(Arc::new))
            .transpose()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let notify = crate::notify::NotifyRuntime::new(
            &settings,
            &http,
            crate::outbound::public_dns::PublicResolver::default(),
        )?;
        Ok(AppState(Arc::new(AppInner {
            settings,
            store,
            blobs,
            moodle,
            http,
            local_queue,
            bot,
            graph,
            notify,
            admin: Default::default(),
        })))
    }
}

/// Readiness: the host polls `GET /` every 25 ms until anything answers; keep it trivial.
async fn ready() -> &'static str {
    "ok"
}

/// Routes a client (the host's forwarder, Teams, Moodle, a browser) may call.
pub fn public_router(state: AppState) -> Router {
    let max_body = state.settings.core.max_body_bytes;
    Router::new()
        .route("/", get(ready))
        .route("/api/health", get(ready))
        .merge(crate::bot::router())
        .merge(crate::sync::router())
        .merge(crate::teams_app::http::router())
        .merge(crate::notify::router())
        .merge(crate::admin::http::router())
        .merge(crate::host::functions::not_built_router())
        .fallback(crate::error::no_route)
        .layer(middleware::from_fn_with_state(state.clone(), outbox_layer))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(max_body))
        .layer(middleware::map_response(
            crate::error::json_payload_too_large,
        ))
        .with_state(state)
}

/// Everything the custom handler answers: the public routes plus `POST /<FunctionName>`.
pub fn custom_handler_router(state: AppState) -> Router {
    // An HTTP invocation wraps the original body in JSON (escaped), so allow for that growth.
    let limit = state.settings.core.max_body_bytes * 4 + 64 * 1024;
    let invocations = crate::host::router::router()
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(middleware::map_response(
            crate::error::json_payload_too_large,
        ))
        .with_state(state.clone());
    public_router(state).merge(invocations)
}

/// Gives handlers an `Outbox` and, under `serve`, writes its messages to the durable local
/// queue before the response leaves. A non-forwarded host invocation brings its own outbox.
async fn outbox_layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if req.extensions().get::<Outbox>().is_some() {
        return next.run(req).await;
    }
    let outbox = Outbox::default();
    req.extensions_mut().insert(outbox.clone());
    let response = next.run(req).await;
    let messages = outbox.take();
    if messages.is_empty() || !response.status().is_success() {
        return response;
    }
    let Some(queue) = &state.local_queue else {
        // A forwarded function has no output binding: losing the messages silently would be worse than failing.
        tracing::error!(
            count = messages.len(),
            "messages queued by a route with no queue output"
        );
        return (StatusCode::INTERNAL_SERVER_ERROR, "queue unavailable").into_response();
    };
    for (q, body) in messages {
        // A client is waiting (Teams gives up after ~15 s): a store that hangs must not hold it.
        let enqueue = queue.enqueue(&q, &body);
        let limit = crate::store::deadline::REQUEST_PATH;
        if let Err(e) = crate::store::deadline::within(limit, enqueue).await {
            tracing::error!(error = %e, queue = q, "could not queue message");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "could not queue the request; retry",
            )
                .into_response();
        }
    }
    response
}

/// One line of `handler check-config`: a service and whether it answered.
#[derive(Debug, Clone)]
pub struct Check {
    pub service: String,
    pub outcome: Result<String, String>,
}

/// Lists the app packages, then writes, reads back and removes a probe blob.
async fn blob_probe(blobs: &dyn crate::store::BlobStore) -> crate::store::StoreResult<usize> {
    let n = blobs.list("teams-app", "").await?.len();
    let name = format!("check/probe-{}.txt", uuid::Uuid::new_v4().simple());
    blobs
        .put("sync-runs", &name, vec![b'x'; 8 * 1024], "text/plain")
        .await?;
    let back = blobs.get("sync-runs", &name).await?;
    blobs.delete("sync-runs", &name).await?;
    match back {
        Some(b) if b.len() == 8 * 1024 => Ok(n),
        _ => Err(crate::store::StoreError::Backend(
            "probe blob written but not read back".into(),
        )),
    }
}

/// Reachability of every configured service, each check independent of the others.
pub async fn check_services(state: &AppState) -> Vec<Check> {
    let mut checks = Vec::new();
    // Reachable, tables there, and a real write (a full disk or a read-only store fails here).
    let within = std::time::Duration::from_secs(state.settings.core.store_check_secs);
    let store = crate::store::check(&state.settings.storage, state.store.as_ref(), within)
        .await
        .map(|_| format!("{} (written and read back)", state.store.describe()))
        .map_err(|e| format!("{e:#}"));
    checks.push(Check {
        service: "store".into(),
        outcome: store,
    });
    let blobs = match crate::store::reachable(&state.settings.storage, "blob", within).await {
        Err(e) => Err(format!("{e:#}")),
        Ok(()) => match tokio::time::timeout(within, blob_probe(state.blobs.as_ref())).await {
            Ok(r) => r
                .map(|n| {
                    format!(
                        "{} ({n} blobs, written and read back)",
                        state.blobs.describe()
                    )
                })
                .map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "{}: no answer within {} s (STORE_CHECK_TIMEOUT_SECS)",
                state.blobs.describe(),
                within.as_secs()
            )),
        },
    };
    checks.push(Check {
        service: "blobs".into(),
        outcome: blobs,
    });
    if let Some(m) = &state.moodle {
        let outcome = m
            .call_value("core_webservice_get_site_info", &crate::moodle::Form::new())
            .await
            .map(|v| {
                format!(
                    "{} ({})",
                    v.get("sitename").and_then(|s| s.as_str()).unwrap_or("?"),
                    v.get("release").and_then(|s| s.as_str()).unwrap_or("?")
                )
            })
            .map_err(|e| e.to_string());
        checks.push(Check {
            service: "moodle".into(),
            outcome,
        });
    }
    checks.extend(crate::sync::reachability(state).await);
    checks.extend(crate::bot::reachability(state).await);
    checks.extend(crate::graph::check::reachability(state).await);
    checks
}
