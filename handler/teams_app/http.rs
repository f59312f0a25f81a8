//! `ManifestPublish` (admin only, App Service authentication + admin group): download the
//! current package, build it, publish it to the org catalog, install it.
//! - `GET  /teams-app/package` → the latest zip;
//! - `GET  /teams-app/status`  → what `latest.json` says;
//! - `POST /teams-app/build`   → build, validate and store (version bumped when content changed);
//! - `POST /teams-app/install` → install or upgrade the catalog's version in every synced team.
//!
//! Publishing needs the admin's interactive sign-in, so it stays with `handler teams-app publish`.

use super::{package, TeamsAppError};
use crate::admin::auth::Admin;
use crate::app::AppState;
use crate::error::AppError;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

/// One route, as function.json declares it (`teams-app/{*rest}`); the admin check comes first,
/// so an unknown action tells nothing to someone who is not an admin.
pub fn router() -> Router<AppState> {
    Router::new().route("/teams-app/{*rest}", get(on_get).post(on_post))
}

async fn on_get(
    State(state): State<AppState>,
    admin: Admin,
    Path(rest): Path<String>,
) -> Result<Response, AppError> {
    match rest.as_str() {
        "package" => download(state, admin).await,
        "status" => status(state, admin).await,
        other => Err(unknown("GET", other)),
    }
}

async fn on_post(
    State(state): State<AppState>,
    admin: Admin,
    Path(rest): Path<String>,
) -> Result<Response, AppError> {
    match rest.as_str() {
        "build" => build(state, admin).await,
        "install" => install(state, admin).await,
        other => Err(unknown("POST", other)),
    }
}

fn unknown(method: &str, action: &str) -> AppError {
    AppError::NotFound(format!(
        "no Teams app action {method} /teams-app/{action} (GET package|status, POST build|install)"
    ))
}

impl From<TeamsAppError> for AppError {
    fn from(e: TeamsAppError) -> Self {
        match e {
            TeamsAppError::Settings(_) | TeamsAppError::Invalid(_) | TeamsAppError::Icon { .. } => {
                AppError::Conflict(e.to_string())
            }
            TeamsAppError::Store(s) => s.into(),
            other => AppError::Internal(anyhow::anyhow!(other.to_string())),
        }
    }
}

async fn download(state: AppState, _admin: Admin) -> Result<Response, AppError> {
    let built = package::load_latest(state.blobs.as_ref())
        .await?
        .ok_or_else(|| AppError::NotFound("no package built yet: POST /teams-app/build".into()))?;
    let disposition = format!(
        "attachment; filename=\"moodle-teams-app-{}.zip\"",
        built.latest.version
    );
    Ok((
        [
            (header::CONTENT_TYPE, package::ZIP_CONTENT_TYPE.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        built.zip,
    )
        .into_response())
}

async fn status(state: AppState, _admin: Admin) -> Result<Response, AppError> {
    let latest = package::latest(state.blobs.as_ref()).await?;
    Ok(Json(serde_json::json!({ "latest": latest })).into_response())
}

async fn build(state: AppState, admin: Admin) -> Result<Response, AppError> {
    let built = package::build_and_store(&state.settings, state.blobs.as_ref()).await?;
    tracing::info!(admin = %admin.object_id, version = %built.latest.version, changed = built.changed, "Teams app package built");
    Ok(Json(serde_json::json!({
        "version": built.latest.version,
        "blob": format!("{}/{}", super::CONTAINER, built.latest.blob),
        "changed": built.changed,
        "content_hash": built.latest.content_hash,
    }))
    .into_response())
}

async fn install(state: AppState, admin: Admin) -> Result<Response, AppError> {
    let report = super::install::install_from_settings(&state, true, &[]).await?;
    tracing::info!(admin = %admin.object_id, version = %report.version, targets = report.targets.len(), failed = report.failed(), "Teams app install run");
    Ok(Json(report_json(&report)).into_response())
}

pub fn report_json(r: &super::install::InstallReport) -> serde_json::Value {
    serde_json::json!({
        "version": r.version,
        "catalog_id": r.catalog_id,
        "failed": r.failed(),
        "stopped": r.stopped,
        "targets": r.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
    })
}
