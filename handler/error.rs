//! The HTTP edge's error: each variant maps to one status; internal details are logged, not sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("{0}")]
    Unavailable(String),
    /// A declared function whose route this build does not implement yet.
    #[error("{0}")]
    NotBuilt(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::NotBuilt(_) => StatusCode::NOT_IMPLEMENTED,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError as S;
        match e {
            S::Conflict => AppError::Conflict("already exists".into()),
            S::PreconditionFailed => AppError::Conflict("changed concurrently, retry".into()),
            S::NotFound => AppError::NotFound("not found".into()),
            S::Invalid(m) => AppError::BadRequest(m),
            S::Backend(m) => AppError::Internal(anyhow::anyhow!("store: {m}")),
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        AppError::Internal(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let AppError::Internal(e) = &self {
            tracing::error!(error = %format!("{e:#}"), "request failed");
        }
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

/// Body-size refusals come from the framework as plain text (tower-http's limit layer on the
/// declared length, axum's extractors while reading): answer them like every other error.
pub async fn json_payload_too_large(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        return AppError::PayloadTooLarge.into_response();
    }
    response
}

/// Answer for a path no route matches: JSON like every other error, and distinct from a
/// handler's own 404 ("no route" names the method and path).
pub async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> AppError {
    AppError::NotFound(format!("no route for {method} {}", uri.path()))
}

/// What a timer or queue function returns. Every layer's error converts into it (the `From`
/// impls below), and this is the one place where a failure becomes an answer to the host
/// (`into_response`) and where a queue message's fate is decided (`retryable`):
/// - retryable: answered non-2xx; the Functions host makes the message visible again and moves
///   it to `<queue>-poison` after `maxDequeueCount` (5) tries; `serve`'s queue does the same.
/// - permanent: retrying cannot help (a rejected token, a missing capability, a function not in
///   the external service, a shard of a run that no longer exists). Five retries would only
///   delay the alarm, so the message goes to the poison queue at once, with the reason logged
///   as an error (see `host::router` and `serve::queue_worker`).
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// The invocation or its message could not be read. Answered 400 and retried like a
    /// transient failure: during a deployment an instance of another build may read it.
    #[error("bad input: {0}")]
    BadInput(String),
    /// A setting this function needs is missing; retried, so the messages wait for the fix.
    #[error("not configured: {0}")]
    NotConfigured(String),
    /// May succeed later (network, storage, Moodle overloaded, source read failed).
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
    /// Will fail the same way every time: poisoned at once instead of retried.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl FunctionError {
    pub fn status(&self) -> StatusCode {
        match self {
            FunctionError::BadInput(_) => StatusCode::BAD_REQUEST,
            FunctionError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            FunctionError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            FunctionError::Permanent(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// Whether trying the same message again may succeed.
    pub fn retryable(&self) -> bool {
        !matches!(self, FunctionError::Permanent(_))
    }
}

/// A failed invocation: non-2xx so the host retries (queue) or reports it (timer), as JSON.
impl IntoResponse for FunctionError {
    fn into_response(self) -> Response {
        invocation_failure(self.status(), self.to_string(), self.retryable())
    }
}

/// The body of every failed invocation, whatever failed (the function, or the invocation itself).
pub fn invocation_failure(status: StatusCode, message: String, retryable: bool) -> Response {
    // The host stores Logs (Application Insights): the last net for a quoted remote answer.
    let message = crate::redact::redact(&message);
    (
        status,
        Json(serde_json::json!({
            "Outputs": {},
            "Logs": [message.clone()],
            "ReturnValue": null,
            "error": message,
            "retryable": retryable,
        })),
    )
        .into_response()
}

impl From<crate::store::StoreError> for FunctionError {
    fn from(e: crate::store::StoreError) -> Self {
        FunctionError::Failed(anyhow::anyhow!("store: {e}"))
    }
}

impl From<crate::moodle::MoodleError> for FunctionError {
    fn from(e: crate::moodle::MoodleError) -> Self {
        if moodle_permanent(&e) {
            FunctionError::Permanent(e.to_string())
        } else {
            FunctionError::Failed(anyhow::anyhow!("{e}"))
        }
    }
}

/// Moodle answers that no retry can change: the token, the service account's rights or the
/// external service's function list must be fixed by an administrator first.
pub fn moodle_permanent(e: &crate::moodle::MoodleError) -> bool {
    use crate::moodle::MoodleError as M;
    matches!(
        e,
        M::InvalidToken
            | M::MissingCapability(_)
            | M::FunctionNotEnabled(_)
            | M::UnknownFunction(_)
    )
}

/// Outputs of a timer or queue function: messages for output queues and log lines for the host.
#[derive(Debug, Default, Clone)]
pub struct FunctionOutputs {
    pub queue: Vec<(String, String)>,
    pub logs: Vec<String>,
}

impl FunctionOutputs {
    pub fn log(mut self, line: impl Into<String>) -> Self {
        self.logs.push(line.into());
        self
    }

    pub fn enqueue(&mut self, queue: &str, body: String) {
        self.queue.push((queue.to_string(), body));
    }
}
