//! `ManifestPublish` (admin only, the admin page's own sign-in: [`AdminUser`]): download the
//! current package, build it, publish it to the org catalog, install it.
//! - `GET  /manage/teams-app/package` → the latest zip;
//! - `GET  /manage/manage/teams-app/status`  → what `latest.json` says, the last publish and action, and
//!   the caller's CSRF token (for API clients);
//! - `POST /manage/teams-app/build`   → build, validate and store (version bumped when content changed);
//! - `POST /manage/teams-app/install` → install or upgrade the catalog's version in every synced team;
//! - `POST /manage/teams-app/publish` → build, then publish to the org catalog with the kept delegated
//!   sign-in (200 with the outcome); when none is kept (or Entra no longer takes it), 202 with the
//!   device code and URL for the admin, while the app polls, keeps the new refresh token (Key
//!   Vault in Azure) and publishes; the outcome lands in `GET /manage/manage/teams-app/status` (`publish`).
//!
//! Under `/manage` (not `/admin`: the Functions host reserves routes starting with `admin` for its
//! own API and refuses a function that claims one), so the admin session cookie (`Path=/manage`)
//! reaches it. Every POST carries the session's CSRF token (`x-csrf-token` header or a `csrf`
//! form field); a form post from the admin page is answered with a redirect back to it, and its
//! outcome is shown there (`last-action.json`).

use super::{package, TeamsAppError};
use crate::admin::session::AdminUser;
use crate::app::AppState;
use crate::error::AppError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};

pub const BASE: &str = "/manage/teams-app";
/// Where a form post from the admin page returns to.
const BACK_TO_PAGE: &str = "/manage/sync#teams-app";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The outcome of the last build / install / publish asked for, shown on the admin page.
pub const LAST_ACTION: &str = "last-action.json";

/// One route, as function.json declares it (`manage/teams-app/{*rest}`); the admin check comes
/// first, so an unknown action tells nothing to someone who is not an admin.
pub fn router() -> Router<AppState> {
    Router::new().route("/manage/teams-app/{*rest}", get(on_get).post(on_post))
}

async fn on_get(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(rest): Path<String>,
) -> Result<Response, AppError> {
    match rest.as_str() {
        "package" => download(state, admin).await,
        "status" => status(state, admin).await,
        other => Err(unknown("GET", other)),
    }
}

#[derive(serde::Deserialize, Default)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

async fn on_post(
    State(state): State<AppState>,
    admin: AdminUser,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let form = is_form(&headers);
    let token = match headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        Some(t) => t.to_string(),
        None if form => serde_urlencoded::from_bytes::<ActionForm>(&body)
            .map(|f| f.csrf)
            .unwrap_or_default(),
        None => String::new(),
    };
    // Before anything else: a forged cross-site post must not even learn whether the action exists.
    admin.check_csrf(&state, &token).await?;
    let result = match rest.as_str() {
        "build" => build(&state, &admin).await,
        "install" => install(&state, &admin).await,
        "publish" => publish(&state, &admin).await,
        other => return Err(unknown("POST", other)),
    };
    let (ok, detail) = match &result {
        Ok(r) if r.status() == axum::http::StatusCode::ACCEPTED => {
            (true, "waiting for the admin's sign-in".to_string())
        }
        Ok(_) => (true, String::new()),
        Err(e) => (false, e.to_string()),
    };
    record_action(&state, &rest, &admin, ok, &detail).await;
    if form {
        // The page shows the outcome (and a device code to enter) from what was just recorded.
        return Ok(Redirect::to(BACK_TO_PAGE).into_response());
    }
    result
}

fn unknown(method: &str, action: &str) -> AppError {
    AppError::NotFound(format!(
        "no Teams app action {method} {BASE}/{action} (GET package|status, POST build|install|publish)"
    ))
}

/// What the admin page says about the last action; a failure is recorded as one, with its reason.
async fn record_action(state: &AppState, action: &str, admin: &AdminUser, ok: bool, detail: &str) {
    let v = serde_json::json!({
        "action": action,
        "ok": ok,
        "detail": detail,
        "by": admin.name,
        "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if let Err(e) = state
        .blobs
        .put(
            super::CONTAINER,
            LAST_ACTION,
            v.to_string().into_bytes(),
            "application/json",
        )
        .await
    {
        tracing::warn!(error = %e, "cannot record the Teams app action's outcome");
    }
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

async fn download(state: AppState, _admin: AdminUser) -> Result<Response, AppError> {
    let built = package::load_latest(state.blobs.as_ref())
        .await?
        .ok_or_else(|| {
            AppError::NotFound("no package built yet: POST /manage/teams-app/build".into())
        })?;
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

async fn status(state: AppState, admin: AdminUser) -> Result<Response, AppError> {
    let s = read_status(&state).await?;
    Ok(Json(serde_json::json!({
        "latest": s.latest,
        "publish": s.publish,
        "last_action": s.last_action,
        "csrf": admin.csrf,
    }))
    .into_response())
}

/// What the admin page and `GET status` show: the latest package, the last publish and the
/// last action asked for.
pub struct Status {
    pub latest: Option<package::Latest>,
    pub publish: Option<serde_json::Value>,
    pub last_action: Option<serde_json::Value>,
}

pub async fn read_status(state: &AppState) -> Result<Status, TeamsAppError> {
    let json = |b: Option<Vec<u8>>| b.and_then(|b| serde_json::from_slice(&b).ok());
    Ok(Status {
        latest: package::latest(state.blobs.as_ref()).await?,
        publish: json(state.blobs.get(super::CONTAINER, PUBLISH_STATUS).await?),
        last_action: json(state.blobs.get(super::CONTAINER, LAST_ACTION).await?),
    })
}

/// The last publish run's outcome (`GET /manage/teams-app/status`), for sign-ins that end after the
/// request that started them.
const PUBLISH_STATUS: &str = "publish-status.json";
/// How long `POST /manage/teams-app/publish` waits for the publish or for Entra's device code.
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

async fn publish(state: &AppState, admin: &AdminUser) -> Result<Response, AppError> {
    let state = state.clone();
    use super::catalog::{self, Catalog, SignIn};
    let built = package::build_and_store(&state.settings, state.blobs.as_ref()).await?;
    let version = built.latest.version.clone();
    let manual = format!(
        "or download GET /manage/teams-app/package and upload it by hand: {}",
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
            tracing::info!(admin = %admin.name, version = %version, outcome = %v["state"], "Teams app publish");
            if failed {
                return Err(AppError::Conflict(format!("publish failed: {}\n{manual}", v["detail"].as_str().unwrap_or(""))));
            }
            Ok(Json(v).into_response())
        }
        Ok(prompt) = rx => {
            // The admin signs in elsewhere; the task keeps polling and publishes afterwards.
            tracing::info!(admin = %admin.name, version = %version, "Teams app publish waits for the admin's device sign-in");
            // The page shows the code to the admin until it expires: it is the one-time code Entra
            // asks the admin to type, not the device code the app polls with (never stored).
            let expires_at = chrono::Utc::now()
                + chrono::Duration::from_std(prompt.expires_in).unwrap_or_default();
            record_publish(&state, &serde_json::json!({
                "state": "waiting for sign-in",
                "version": version,
                "sign_in": {
                    "user_code": prompt.user_code,
                    "verification_uri": prompt.verification_uri,
                    "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                },
            })).await;
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
                    "then": "GET /manage/teams-app/status shows the outcome",
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
            Err(AppError::Conflict(format!("publish did not answer within {} s; GET /manage/teams-app/status shows the outcome later\n{manual}", PUBLISH_WAIT.as_secs())))
        }
    }
}

async fn build(state: &AppState, admin: &AdminUser) -> Result<Response, AppError> {
    let built = package::build_and_store(&state.settings, state.blobs.as_ref()).await?;
    tracing::info!(admin = %admin.name, version = %built.latest.version, changed = built.changed, "Teams app package built");
    Ok(Json(serde_json::json!({
        "version": built.latest.version,
        "blob": format!("{}/{}", super::CONTAINER, built.latest.blob),
        "changed": built.changed,
        "content_hash": built.latest.content_hash,
    }))
    .into_response())
}

async fn install(state: &AppState, admin: &AdminUser) -> Result<Response, AppError> {
    let report = super::install::install_from_settings(state, true, &[]).await?;
    tracing::info!(admin = %admin.name, version = %report.version, targets = report.targets.len(), failed = report.failed(), "Teams app install run");
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
