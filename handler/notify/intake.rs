//! `MoodleWebhook` (`POST /api/webhook`): authenticate, check the body against the schema and
//! the course against Moodle, then queue one fan-out message on `notify`. 202 only once queued:
//! the outbox writes it (output binding under the host, durable local queue under `serve`)
//! before the answer leaves, and a failed write turns the answer into a 503.

use super::auth::{self, AuthError, Proof};
use super::queue::NotifyMessage;
use super::schema::{self, SchemaError};
use crate::app::AppState;
use crate::error::AppError;
use crate::host::functions::QUEUE_NOTIFY;
use crate::host::Outbox;
use crate::moodle::courses::{by_field, CourseField};
use crate::store::tables::DELIVERIES;
use crate::store::{deadline, Entity, StoreError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// `deliveries` partition of accepted signatures (each is accepted once).
pub const SIGNATURE_PARTITION: &str = "webhook-signature";

fn refuse(e: AuthError) -> Response {
    // Loud: a refused sender is either misconfigured or hostile, both worth seeing.
    tracing::warn!(reason = %e, "webhook refused");
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": format!("authentication failed: {e}") })),
    )
        .into_response()
}

fn invalid(e: SchemaError) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": e.to_string(), "field": e.field })),
    )
        .into_response()
}

pub async fn webhook(
    State(state): State<AppState>,
    Extension(outbox): Extension<Outbox>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let settings = &state.settings.notify;
    if body.len() > settings.max_body_bytes {
        return Err(AppError::PayloadTooLarge);
    }
    let now = chrono::Utc::now().timestamp();
    let proof = match auth::verify(
        settings.webhook_secret.as_ref(),
        &headers,
        &body,
        now,
        settings.replay_window_secs,
    ) {
        Ok(p) => p,
        Err(e) => return Ok(refuse(e)),
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return Ok(invalid(SchemaError {
                field: "/".into(),
                reason: format!("not JSON ({})", e.classify_label()),
            }))
        }
    };
    let legacy_key = format!("legacy-{}", hex::encode(&Sha256::digest(&body)[..12]));
    let mut notification = match schema::parse(&value, &legacy_key) {
        Ok(n) => n,
        Err(e) => return Ok(invalid(e)),
    };
    if let Some(group) = schema::legacy_team_group(&value) {
        let course = deadline::within(
            deadline::REQUEST_PATH,
            crate::teams_sync::link::course_of_team(&state.store, &group),
        )
        .await
        .map_err(|e| AppError::Unavailable(format!("store: {e}")))?;
        if course.is_none() {
            // The personal message still goes; only channel posts need the course.
            tracing::warn!(
                "legacy notification names a team no course is linked to; no channel post"
            );
        }
        notification.course = course;
    }
    if let Some(course) = notification.course {
        let moodle = state.moodle.as_ref().ok_or_else(|| {
            AppError::Unavailable("Moodle is not configured: cannot check the course".into())
        })?;
        // Moodle answers a course lookup fast; a sender waiting longer would retry anyway.
        let found = tokio::time::timeout(
            deadline::REQUEST_PATH,
            by_field(moodle, CourseField::Id, &course.to_string()),
        )
        .await
        .map_err(|_| {
            AppError::Unavailable("Moodle did not answer the course check in time".into())
        })?
        .map_err(|e| AppError::Unavailable(format!("cannot check the course in Moodle: {e}")))?;
        if found.is_empty() {
            return Ok(invalid(SchemaError {
                field: "/course".into(),
                reason: format!("unknown course {course}"),
            }));
        }
    }
    if let Proof::Signed { replay_key } = &proof {
        let row = Entity::new(SIGNATURE_PARTITION, replay_key.as_str()).with("at", now);
        match deadline::within(deadline::REQUEST_PATH, state.store.insert(DELIVERIES, &row)).await {
            Ok(_) => {}
            Err(StoreError::Conflict) => return Ok(refuse(AuthError::Replayed)),
            Err(e) => return Err(AppError::Unavailable(format!("store: {e}"))),
        }
    }
    let id = notification.id.clone();
    let message = NotifyMessage::Fanout { notification };
    outbox.push(QUEUE_NOTIFY, message.to_json());
    tracing::info!(notification = %id, "notification queued");
    Ok((StatusCode::ACCEPTED, Json(json!({ "queued": id }))).into_response())
}

trait Classify {
    fn classify_label(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    /// The category only: the parser's message quotes the body.
    fn classify_label(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "wrong data",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}
