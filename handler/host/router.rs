//! `POST /<FunctionName>`: invocations from the Functions host (custom-handler mode only; under
//! `serve` these routes are not mounted, so nobody outside can fire a timer or forge a queue message).

use super::functions::{self, binding_for_queue, FunctionKind, InvocationContext};
use super::invocation::{InvocationRequest, PayloadError};
use super::outbox::Outbox;
use crate::app::AppState;
use crate::error::{FunctionError, FunctionOutputs};
use crate::ids::InvocationId;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tracing::Instrument;

pub fn router() -> Router<AppState> {
    Router::new().route("/{function}", post(invoke))
}

fn invocation_id(headers: &HeaderMap, req: Option<&InvocationRequest>) -> InvocationId {
    headers
        .get("x-azure-functions-invocationid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            req.and_then(|r| {
                r.metadata
                    .get("sys")?
                    .get("RandGuid")?
                    .as_str()
                    .map(str::to_string)
            })
        })
        .and_then(|id| InvocationId::new(id).ok())
        .unwrap_or_else(InvocationId::mint)
}

/// A failed invocation that never reached a function (unknown name, unreadable request).
fn failure(status: StatusCode, message: String) -> Response {
    crate::error::invocation_failure(status, message, true)
}

fn success(outputs: Map<String, Value>, logs: Vec<String>) -> Response {
    // The host stores Logs (Application Insights): the last net for a quoted remote answer.
    let logs: Vec<String> = logs.iter().map(|l| crate::redact::redact(l)).collect();
    Json(json!({ "Outputs": outputs, "Logs": logs, "ReturnValue": null })).into_response()
}

/// Group queue messages by output binding; several messages to one binding become an array.
fn queue_outputs(
    spec_outputs: &[&str],
    messages: Vec<(String, String)>,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (queue, body) in messages {
        if !spec_outputs.contains(&queue.as_str()) {
            return Err(format!(
                "function has no output binding for queue {queue:?}"
            ));
        }
        let slot = out
            .entry(binding_for_queue(&queue))
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = slot {
            a.push(Value::String(body));
        }
    }
    Ok(out)
}

async fn invoke(
    State(state): State<AppState>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(spec) = functions::find(&function) else {
        return failure(
            StatusCode::NOT_FOUND,
            format!("no function named {function:?}"),
        );
    };
    let parsed = InvocationRequest::parse(&body);
    let id = invocation_id(&headers, parsed.as_ref().ok());
    // Error level so the span (and its invocation id) is kept whatever LOG_LEVEL filters out.
    let span = tracing::error_span!("invocation", function = spec.name, invocation_id = %id);
    async move {
        let req = match parsed {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "malformed invocation");
                return failure(StatusCode::BAD_REQUEST, e.to_string());
            }
        };
        let ctx = InvocationContext {
            invocation_id: id,
            function: spec.name,
        };
        let (result, poison) = match spec.kind {
            FunctionKind::Timer { run, .. } => match req.timer("timer") {
                Ok(t) => (super::timer_runs::run(&state, &ctx, run, t).await, None),
                Err(e) => (Err(bad(e)), None),
            },
            FunctionKind::Queue { run, poison, .. } => match req.queue("msg") {
                Ok(m) => {
                    let text = m.text.clone();
                    (run(&state, &ctx, m).await, poison.map(|q| (q, text)))
                }
                Err(e) => (Err(bad(e)), None),
            },
            FunctionKind::Http { .. } => return invoke_http(&state, spec.outputs, &req).await,
        };
        answer(spec.outputs, result, poison)
    }
    .instrument(span)
    .await
}

/// The host's answer to a timer or queue invocation. A permanent failure of a queue function
/// with a poison output is answered 2xx with the message on that output: the host then writes
/// it to `<queue>-poison` at once instead of retrying it five times for nothing, and the error
/// is logged (and recorded by the function, e.g. the sync run marked failed).
fn answer(
    outputs: &[&str],
    result: Result<FunctionOutputs, FunctionError>,
    poison: Option<(&'static str, String)>,
) -> Response {
    match result {
        Ok(out) => match queue_outputs(outputs, out.queue) {
            Ok(map) => {
                tracing::info!(logs = out.logs.len(), "invocation succeeded");
                success(map, out.logs)
            }
            Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        Err(e) if !e.retryable() && poison.is_some() => {
            let (queue, text) = poison.expect("checked");
            tracing::error!(error = %e, poison = queue, "permanent failure: message moved to the poison queue without retries");
            match queue_outputs(outputs, vec![(queue.to_string(), text)]) {
                Ok(map) => success(map, vec![format!("{e}; message moved to {queue}")]),
                Err(bind) => failure(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}; {bind}")),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, retryable = e.retryable(), "invocation failed");
            e.into_response()
        }
    }
}

fn bad(e: PayloadError) -> FunctionError {
    FunctionError::BadInput(e.to_string())
}

/// A non-forwarded HTTP invocation: rebuild the request, run it through the same router the
/// forwarded routes use, and wrap the answer in `Outputs.res` plus any queue outputs.
async fn invoke_http(state: &AppState, outputs: &[&str], req: &InvocationRequest) -> Response {
    let data = match req.http("req") {
        Ok(d) => d,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let path = match data.path_and_query() {
        Ok(p) => p,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e),
    };
    let method = match Method::from_bytes(data.method.to_ascii_uppercase().as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            return failure(
                StatusCode::BAD_REQUEST,
                format!("bad method {:?}", data.method),
            )
        }
    };
    let mut builder = Request::builder().method(method).uri(path);
    for (name, values) in &data.headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        for v in values.values() {
            if let Ok(v) = HeaderValue::from_str(v) {
                builder = builder.header(name.clone(), v);
            }
        }
    }
    let outbox = Outbox::default();
    let request = match builder
        .extension(outbox.clone())
        .body(Body::from(data.body_bytes()))
    {
        Ok(r) => r,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let response =
        match tower::ServiceExt::oneshot(crate::app::public_router(state.clone()), request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
    let status = response.status();
    let mut headers = Map::new();
    for (k, v) in response.headers() {
        if let Ok(v) = v.to_str() {
            headers.insert(k.to_string(), Value::String(v.to_string()));
        }
    }
    let body = match axum::body::to_bytes(response.into_body(), usize::MAX).await {
        Ok(b) => String::from_utf8_lossy(&b).to_string(),
        Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // Queue outputs only ride along on success: a failed request must not enqueue anything.
    let messages = if status.is_success() {
        outbox.take()
    } else {
        Vec::new()
    };
    let mut out = match queue_outputs(outputs, messages) {
        Ok(o) => o,
        Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    out.insert(
        "res".into(),
        json!({ "statusCode": status.as_u16(), "headers": headers, "body": body }),
    );
    success(out, vec![format!("HTTP {}", status.as_u16())])
}
