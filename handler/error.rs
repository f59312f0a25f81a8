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
        (status, Json(serde_json::json!({ "error": self.to_string() }))).into_response()
    }
}

/// What a timer or queue function returns; a failure answers non-2xx so the host retries.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("bad input: {0}")]
    BadInput(String),
    #[error("not configured: {0}")]
    NotConfigured(String),
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

impl FunctionError {
    pub fn status(&self) -> StatusCode {
        match self {
            FunctionError::BadInput(_) => StatusCode::BAD_REQUEST,
            FunctionError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            FunctionError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
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
