//! `ManifestPublish` (admin only, App Service authentication + admin group): download the
//! current package, build it, publish it to the org catalog, install it.
//! - `GET  /teams-app/package` → the latest zip;
//! - `GET  /teams-app/status`  → what `latest.json` says;
//! - `POST /teams-app/build`   → build, validate and store (version bumped when content changed);
//! - `POST /teams-app/install` → install or upgrade the catalog's version in every synced team;
//! - `POST /teams-app/publish` → build, then publish to the org catalog with the kept delegated
//!   sign-in (200 with the outcome); when none is kept (or Entra no longer takes it), 202 with the
//!   device code and URL for the admin, while the app polls, keeps the new refresh token (Key
//!   Vault in Azure) and publishes; the outcome lands in `GET /teams-app/status` (`publish`).

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
        "publish" => publish(state, admin).await,
        other => Err(unknown("POST", other)),
    }
}

fn unknown(method: &str, action: &str) -> AppError {
    AppError::NotFound(format!(
        "no Teams app action {method} /teams-app/{action} (GET package|status, POST build|install|publish)"
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
    let publish = state
        .blobs
        .get(super::CONTAINER, PUBLISH_STATUS)
        .await?
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    Ok(Json(serde_json::json!({ "latest": latest, "publish": publish })).into_response())
}

/// The last publish run's outcome (`GET /teams-app/status`), for sign-ins that end after the
/// request that started them.
const PUBLISH_STATUS: &str = "publish-status.json";
/// How long `POST /teams-app/publish` waits for the publish or for Entra's device code.
const PUBLISH_WAIT: std::time::Duration = std::time::Duration::from_secs(90);

fn outcome_json(r: &super::catalog::PublishReport) -> serde_json::Value {
    use super::catalog::Published;
    let outcome = match r.outcome {
        Published::Created { .. } => "published",
        Published::Updated { .. } => "updated",
        Published::AlreadyCurrent { .. } => "already current",
    };
    serde_json::json!({
        "state": outcome,
        "version": r.version,
        "catalog_id": r.catalog_id(),
        "requires_review": r.requires_review,
        "conflict_resolved": r.conflict_resolved,
    })
}

async fn record_publish(state: &AppState, v: &serde_json::Value) {
    if let Err(e) = state
        .blobs
        .put(
            super::CONTAINER,
            PUBLISH_STATUS,
            v.to_string().into_bytes(),
            "application/json",
        )
        .await
    {
        tracing::warn!(error = %e, "cannot record the Teams app publish outcome");
    }
}

async fn publish(state: AppState, admin: Admin) -> Result<Response, AppError> {
    use super::catalog::{self, Catalog, SignIn};
    let built = package::build_and_store(&state.settings, state.blobs.as_ref()).await?;
    let version = built.latest.version.clone();
    let manual = format!(
        "or download GET /teams-app/package and upload it by hand: {}",
        catalog::manual_upload_hint(std::path::Path::new(&format!(
            "moodle-teams-app-{version}.zip"
        )))
    );
    let sign_in = SignIn::from_settings(&state.settings, state.http.clone())
        .map_err(|e| AppError::Conflict(format!("{e}\n{manual}")))?;
    let app_id = super::manifest::Inputs::from_settings(&state.settings)?.app_id;
    let (tx, rx) = tokio::sync::oneshot::channel::<crate::outbound::token::DeviceCodePrompt>();
    let tx = std::sync::Mutex::new(Some(tx));
    let task_state = state.clone();
    let task_version = version.clone();
    let mut task = tokio::spawn(async move {
        let s = task_state;
        let prompt = move |p: &crate::outbound::token::DeviceCodePrompt| {
            if let Some(tx) = tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = tx.send(p.clone());
            }
        };
        let token = sign_in.token(s.http.clone(), prompt, None).await?;
        let cat = Catalog::new(s.http.clone(), catalog::graph_base(&s.settings), token);
        let r = cat
            .publish(&built.zip, &app_id, &task_version, false)
            .await?;
        Ok::<_, super::TeamsAppError>(r)
    });
    let finished = |state: AppState, r: Result<super::catalog::PublishReport, String>| async move {
        let v = match &r {
            Ok(r) => outcome_json(r),
            Err(e) => serde_json::json!({"state": "failed", "detail": e}),
        };
        record_publish(&state, &v).await;
        v
    };
    tokio::select! {
        joined = &mut task => {
            let r = joined
                .map_err(|e| format!("the publish task stopped: {e}"))
                .and_then(|r| r.map_err(|e| e.to_string()));
            let failed = r.is_err();
            let v = finished(state, r).await;
            tracing::info!(admin = %admin.object_id, version = %version, outcome = %v["state"], "Teams app publish");
            if failed {
                return Err(AppError::Conflict(format!("publish failed: {}\n{manual}", v["detail"].as_str().unwrap_or(""))));
            }
            Ok(Json(v).into_response())
        }
        Ok(prompt) = rx => {
            // The admin signs in elsewhere; the task keeps polling and publishes afterwards.
            tracing::info!(admin = %admin.object_id, version = %version, "Teams app publish waits for the admin's device sign-in");
            record_publish(&state, &serde_json::json!({"state": "waiting for sign-in", "version": version})).await;
            let bg = state.clone();
            tokio::spawn(async move {
                let r = task
                    .await
                    .map_err(|e| format!("the publish task stopped: {e}"))
                    .and_then(|r| r.map_err(|e| e.to_string()));
                let v = finished(bg, r).await;
                tracing::info!(outcome = %v["state"], "Teams app publish after the device sign-in");
            });
            Ok((
                axum::http::StatusCode::ACCEPTED,
                Json(serde_json::json!({
                    "state": "waiting for sign-in",
                    "version": version,
                    "sign_in": {
                        "user_code": prompt.user_code,
                        "verification_uri": prompt.verification_uri,
                        "message": prompt.message,
                        "expires_in_secs": prompt.expires_in.as_secs(),
                    },
                    "then": "GET /teams-app/status shows the outcome",
                    "manual": manual,
                })),
            )
                .into_response())
        }
        _ = tokio::time::sleep(PUBLISH_WAIT) => {
            let bg = state.clone();
            tokio::spawn(async move {
                let r = task
                    .await
                    .map_err(|e| format!("the publish task stopped: {e}"))
                    .and_then(|r| r.map_err(|e| e.to_string()));
                finished(bg, r).await;
            });
            Err(AppError::Conflict(format!("publish did not answer within {} s; GET /teams-app/status shows the outcome later\n{manual}", PUBLISH_WAIT.as_secs())))
        }
    }
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
