//! `AdminSync` (`/manage/sync…`): the manual-sync page, starting a run, following it (page and
//! server-sent events), its trace, and the password sign-in used under `serve`.

use super::live::Outcome;
use super::page::{self, Lang, RunState, ServiceRow, TimerRow, Viewer};
use super::session::{self, AdminUser};
use crate::app::AppState;
use crate::error::AppError;
use crate::host::functions::{FunctionKind, FUNCTIONS, QUEUE_SYNC_WORK};
use crate::host::{timer_runs, Outbox};
use crate::sync::run::{latest_reports, new_run_id, plan_run, run_inline_as};
use crate::sync::{RunReport, SyncEnv, SyncOptions};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

const HISTORY: usize = 20;
const ENTRA_NOT_CONFIGURED: &str = "Entra users: not run: set GRAPH_CLIENT_ID, GRAPH_TENANT_ID and a secret, certificate or managed identity";
/// check-config's checks on the page: slow services must not hold it.
const CHECKS_WITHIN: Duration = Duration::from_secs(8);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/manage/sync", get(overview))
        .route("/manage/sync/", get(overview))
        .route("/manage/sync/run", post(start))
        .route("/manage/sync/runs/{id}", get(run_page))
        .route("/manage/sync/runs/{id}/events", get(events))
        .route("/manage/sync/runs/{id}/trace", get(trace))
        .route("/manage/sync/login", get(login_form).post(login))
        .route(super::link::LINK_PATH, get(link_sign_in))
        .route(super::oidc::START_PATH, get(oidc_start))
        .route(super::oidc::CALLBACK_PATH, get(oidc_callback))
        .route("/manage/sync/logout", post(logout))
        .route("/manage/sync/{*rest}", get(unknown).post(unknown))
        .layer(axum::middleware::from_fn(html_errors))
}

/// A browser navigating to an admin page gets its refusals and errors as a page (same status,
/// same headers, the same message) instead of the JSON every other client gets.
async fn html_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    // Owned before the await: the request body is not Sync, so no borrow of it may cross it.
    let (wants_html, lang) = {
        let h = req.headers();
        let get = |name: header::HeaderName| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let query_lang = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("lang="))
                .map(str::to_string)
        });
        (
            get(header::ACCEPT).is_some_and(|a| a.contains("text/html")),
            Lang::pick(
                query_lang.as_deref(),
                get(header::ACCEPT_LANGUAGE).as_deref(),
            ),
        )
    };
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !wants_html || !is_json || !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    Response::from_parts(
        parts,
        axum::body::Body::from(page::error(lang, status.as_u16(), &message)),
    )
}

fn lang(q: &HashMap<String, String>, headers: &HeaderMap) -> Lang {
    Lang::pick(
        q.get("lang").map(String::as_str),
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

fn viewer(u: &AdminUser) -> Viewer<'_> {
    Viewer {
        name: &u.name,
        csrf: &u.csrf,
        password_session: u.password_session,
    }
}

fn no_store(html: String) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// Signed in, but no such page: still JSON, still behind the sign-in.
async fn unknown(_u: AdminUser) -> AppError {
    AppError::NotFound("no such admin page".into())
}

/// The setting to fix for a failing check, by service name.
fn fix_for(service: &str) -> Option<&'static str> {
    let s = service.to_ascii_lowercase();
    Some(if s == "store" || s == "blobs" {
        "STORE_BACKEND, SQLITE_PATH / BLOB_DIR or AZURE_STORAGE_CONNECTION_STRING"
    } else if s.contains("moodle") {
        "MOODLE_URL, MOODLE_TOKEN (and the external service's functions, README)"
    } else if s.contains("source") || s.contains("ldap") {
        "SYNC_SOURCE, LDAP_URL, LDAP_BIND_DN, LDAP_BIND_PASSWORD"
    } else if s.contains("bot") || s.contains("entra") || s.contains("token") {
        "BOT_APP_ID, BOT_APP_PASSWORD, BOT_TENANT_ID"
    } else if s.contains("graph") || s.contains("teams") {
        "GRAPH_* settings"
    } else {
        return None;
    })
}

/// Each timer's schedule, next run and last run: the run recorded by [`timer_runs`] (every
/// timer), else, for `SyncTimer`, the newest scheduled sync report (runs from before the record).
async fn timers(state: &AppState, history: &[RunReport]) -> Vec<TimerRow> {
    let now = chrono::Utc::now();
    let short = |t: &str| t.get(..19).unwrap_or(t).replace('T', " ");
    let mut rows = Vec::new();
    for f in FUNCTIONS {
        let FunctionKind::Timer {
            schedule_setting,
            schedule,
            ..
        } = f.kind
        else {
            continue;
        };
        let expr = schedule(&state.settings).to_string();
        let next = crate::schedule::Schedule::parse(&expr)
            .ok()
            .and_then(|s| s.next_after(now))
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string());
        let (last, failure) = match timer_runs::last(state.store.as_ref(), f.name).await {
            Ok(Some(run)) => (Some(short(&run.started_at)), run.failure),
            Ok(None) => {
                let report = (f.name == "SyncTimer")
                    .then(|| {
                        history
                            .iter()
                            .find(|r| r.options.trigger.as_deref() == Some("schedule"))
                    })
                    .flatten();
                (report.map(|r| short(&r.started_at)), None)
            }
            Err(e) => (None, Some(format!("last run not readable: {e}"))),
        };
        rows.push(TimerRow {
            function: f.name,
            setting: schedule_setting,
            schedule: expr,
            last,
            failure,
            next,
        });
    }
    rows
}

async fn overview(
    user: AdminUser,
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let lang = lang(&q, &headers);
    let (history, notice) = match latest_reports(&state.store, HISTORY).await {
        Ok(h) => (h, None),
        Err(e) => (Vec::new(), Some(format!("run history: {e}"))),
    };
    let services =
        match tokio::time::timeout(CHECKS_WITHIN, crate::app::check_services(&state)).await {
            Ok(checks) => checks
                .into_iter()
                .map(|c| ServiceRow {
                    fix: fix_for(&c.service),
                    service: c.service,
                    outcome: c.outcome,
                })
                .collect(),
            Err(_) => vec![ServiceRow {
                service: "check-config".into(),
                outcome: Err(format!(
                    "the checks did not finish within {} s: run `handler check-config`",
                    CHECKS_WITHIN.as_secs()
                )),
                fix: None,
            }],
        };
    let teams = state.settings.teams.selects_courses() && state.settings.graph.is_some();
    let mut notice = notice;
    let pending = match crate::teams_sync::pending::list(&state.store).await {
        // Rows left from a time the sync was on are shown too: they are still true.
        Ok(list) if teams || !list.is_empty() => Some(list),
        Ok(_) => None,
        Err(e) => {
            let e = format!("courses waiting for their team: {e}");
            notice = Some(match notice {
                Some(n) => format!("{n}; {e}"),
                None => e,
            });
            None
        }
    };
    no_store(page::overview(
        lang,
        &page::Overview {
            viewer: viewer(&user),
            entra: crate::sync::entra::EntraEnv::from_app(&state).is_some(),
            teams,
            history: &history,
            pending: pending.as_deref(),
            timers: &timers(&state, &history).await,
            services: &services,
            teams_app: Some(teams_app_view(&state).await),
            notice,
        },
    ))
}

/// The Teams app section: what ManifestPublish recorded.
async fn teams_app_view(state: &AppState) -> page::TeamsAppView {
    let s = match crate::teams_app::http::read_status(state).await {
        Ok(s) => s,
        Err(e) => {
            return page::TeamsAppView {
                unreadable: Some(format!("Teams app state: {e}")),
                ..Default::default()
            }
        }
    };
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let now = chrono::Utc::now();
    page::TeamsAppView {
        latest: s.latest.map(|l| (l.version, l.built_at)),
        last_action: s.last_action.as_ref().map(|a| {
            (
                text(a, "action"),
                a["ok"].as_bool().unwrap_or(false),
                text(a, "detail"),
                text(a, "by"),
                text(a, "at"),
            )
        }),
        publish: s
            .publish
            .as_ref()
            .map(|p| (text(p, "state"), text(p, "version"))),
        sign_in: s.publish.as_ref().and_then(|p| {
            let si = &p["sign_in"];
            let live = p["state"] == "waiting for sign-in"
                && si["expires_at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t > now);
            live.then(|| (text(si, "user_code"), text(si, "verification_uri")))
        }),
        unreadable: None,
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct RunForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    users: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    cohorts: Option<String>,
    #[serde(default)]
    roles: Option<String>,
    #[serde(default)]
    teams: Option<String>,
    /// Entra ID → Moodle users (the pass `handler sync --entra` runs).
    #[serde(default)]
    entra: Option<String>,
    #[serde(default)]
    force: Option<String>,
    #[serde(default)]
    update_only: Option<String>,
    #[serde(default)]
    simulate: Option<String>,
    #[serde(default)]
    verbose: Option<String>,
    #[serde(default)]
    no_cohort_lock: Option<String>,
}

impl RunForm {
    fn options(&self) -> SyncOptions {
        let on = |v: &Option<String>| v.is_some();
        SyncOptions {
            users: on(&self.users),
            cohorts: on(&self.cohorts),
            roles: on(&self.roles),
            teams: on(&self.teams),
            entra: on(&self.entra),
            user: self
                .user
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string),
            force: on(&self.force),
            update_only: on(&self.update_only),
            simulate: on(&self.simulate),
            verbose: on(&self.verbose),
            no_cohort_lock: on(&self.no_cohort_lock),
            trigger: Some("page".into()),
            ..Default::default()
        }
    }
}

/// Run: under `serve` in a background task of this process (followed live); under the
/// Functions host planned here and its shards queued for SyncWorker, as the timer does.
async fn start(
    user: AdminUser,
    State(state): State<AppState>,
    Extension(outbox): Extension<Outbox>,
    Form(form): Form<RunForm>,
) -> Result<Response, AppError> {
    user.check_csrf(&state, &form.csrf).await?;
    let lang = Lang::pick(form.lang.as_deref(), None);
    let opts = form.options();
    let env = SyncEnv::from_app(&state)
        .map_err(|e| AppError::Unavailable(format!("sync not run: {e}")))?;
    if opts.entra && env.entra.is_none() {
        return Err(AppError::Unavailable(ENTRA_NOT_CONFIGURED.into()));
    }
    tracing::info!(admin = %user.subject, ?opts, "sync run requested from the admin page");
    let run_id = if state.local_queue.is_some() {
        let run_id = new_run_id();
        let (live, progress) = state.admin.start(&run_id);
        let id = run_id.clone();
        tokio::spawn(async move {
            // The same run `handler sync` makes: Entra users, when ticked, inside it.
            let outcome: Outcome = run_inline_as(&env, &id, &opts, Some(progress))
                .await
                .map_err(|e| e.to_string());
            if let Err(e) = &outcome {
                tracing::warn!(run = %id, error = %e, "sync run from the admin page failed");
            }
            live.finish(outcome);
        });
        run_id
    } else {
        let shards = plan_run(&env, &opts)
            .await
            .map_err(|e| AppError::Conflict(format!("sync not started: {e}")))?;
        let run_id = shards.first().map(|s| s.run_id.clone()).unwrap_or_default();
        for s in shards {
            outbox.push(QUEUE_SYNC_WORK, s.to_json());
        }
        run_id
    };
    Ok((
        StatusCode::ACCEPTED,
        [(header::CACHE_CONTROL, "no-store")],
        Html(page::started(lang, &run_id)),
    )
        .into_response())
}

fn valid_run_id(id: &str) -> Result<(), AppError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(AppError::NotFound("no such run".into()));
    }
    Ok(())
}

async fn stored_report(state: &AppState, id: &str) -> Result<Option<(RunReport, bool)>, AppError> {
    let run = state
        .store
        .get(crate::store::tables::RUNS, id, "run")
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    let Some(run) = run else { return Ok(None) };
    let finished = matches!(run.str("status"), Some("done" | "failed"));
    let report = run
        .json::<RunReport>("report")
        .map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    Ok(report.map(|r| (r, finished)))
}

/// Where a run stands: live in this process, or as the store has it.
async fn where_is(state: &AppState, id: &str) -> Result<Current, AppError> {
    if let Some(live) = state.admin.get(id) {
        match live.outcome() {
            None => return Ok(Current::Running(live.snapshot())),
            Some(Err(e)) => return Ok(Current::Failed(e)),
            Some(Ok(r)) => return Ok(Current::Done(Box::new(r))),
        }
    }
    match stored_report(state, id).await? {
        Some((r, true)) => Ok(Current::Done(Box::new(r))),
        Some((r, false)) => Ok(Current::Running(super::live::Snapshot {
            read: r.entries_read,
            planned: 0,
            written: 0,
        })),
        // Planned under the host but not stored yet, or unknown.
        None => Err(AppError::NotFound(format!("no run {id}"))),
    }
}

enum Current {
    Running(super::live::Snapshot),
    Done(Box<RunReport>),
    Failed(String),
}

async fn run_page(
    user: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    valid_run_id(&id)?;
    let lang = lang(&q, &headers);
    let current = where_is(&state, &id).await?;
    let st = match &current {
        Current::Running(s) => RunState::Running(*s),
        Current::Done(r) => RunState::Done(r),
        Current::Failed(e) => RunState::Failed(e),
    };
    Ok(no_store(page::run_page(lang, &viewer(&user), &id, &st)))
}

/// `progress` events (`{"read":…,"planned":…,"written":…}`) twice a second, then one `report`
/// event (the rendered report, or `{"error":…}`), then the stream ends.
async fn events(
    _user: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    valid_run_id(&id)?;
    where_is(&state, &id).await?;
    let stream = futures::stream::unfold(Some((state, id)), |st| async move {
        let (state, id) = st?;
        let current = match where_is(&state, &id).await {
            Ok(c) => c,
            Err(e) => Current::Failed(e.to_string()),
        };
        let event = match current {
            Current::Running(s) => {
                let first = state.admin.get(&id);
                let ev = Event::default()
                    .event("progress")
                    .json_data(s)
                    .unwrap_or_default();
                // Wait for the next tick or the end, whichever comes first.
                if let Some(live) = first {
                    let mut rx = live.subscribe();
                    let _ = tokio::time::timeout(Duration::from_millis(500), rx.changed()).await;
                } else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                return Some((Ok::<Event, Infallible>(ev), Some((state, id))));
            }
            Current::Done(r) => Event::default().event("report").data(r.render()),
            Current::Failed(e) => Event::default()
                .event("report")
                .json_data(serde_json::json!({ "error": e }))
                .unwrap_or_default(),
        };
        Some((Ok(event), None))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The run's full trace (every shard's), as plain text.
async fn trace(
    _user: AdminUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    valid_run_id(&id)?;
    let names = state
        .blobs
        .list("sync-runs", &format!("{id}/"))
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    let mut text = String::new();
    for n in names.iter().filter(|n| n.ends_with(".trace.txt")) {
        if let Some(b) = state
            .blobs
            .get("sync-runs", n)
            .await
            .map_err(|e| AppError::Unavailable(e.to_string()))?
        {
            text.push_str(&format!("# {n}\n"));
            text.push_str(&String::from_utf8_lossy(&b));
            text.push('\n');
        }
    }
    if text.is_empty() {
        text = match stored_report(&state, &id).await? {
            Some((r, _)) => format!(
                "{}\n(no per-entry trace stored: run with \"More trace output\" to get one)\n",
                r.render()
            ),
            None => return Err(AppError::NotFound(format!("no run {id}"))),
        };
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response())
}

async fn login_form(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let lang = lang(&q, &headers);
    if state.settings.admin.platform_auth || !state.settings.admin.serve_sign_in() {
        return Err(AppError::Forbidden(session::NOT_CONFIGURED.into()));
    }
    login_page(&state, lang, None, StatusCode::OK).await
}

/// The form with a fresh login nonce (cookie) and its CSRF token.
async fn login_page(
    state: &AppState,
    lang: Lang,
    error: Option<&str>,
    status: StatusCode,
) -> Result<Response, AppError> {
    let key = session::key(state).await?;
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let csrf = key.csrf(&format!("login:{nonce}"));
    Ok((
        status,
        [
            (
                header::SET_COOKIE,
                session::set_cookie(session::LOGIN_COOKIE, &nonce, 1800),
            ),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
        Html(page::login(
            lang,
            &csrf,
            error,
            state.settings.admin.password_hash.is_some(),
            state.settings.admin.oidc.is_some(),
        )),
    )
        .into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    lang: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    let Some(hash) = state.settings.admin.password_hash.clone() else {
        return Err(AppError::Forbidden(session::NOT_CONFIGURED.into()));
    };
    let lang = Lang::pick(form.lang.as_deref(), None);
    let key = session::key(&state).await?;
    let nonce = session::cookie(&headers, session::LOGIN_COOKIE).unwrap_or_default();
    if nonce.is_empty() || !key.check_csrf(&format!("login:{nonce}"), &form.csrf) {
        tracing::warn!("admin sign-in refused: bad CSRF token");
        return Err(AppError::Forbidden(
            "the form's CSRF token is missing or wrong: reload the sign-in page".into(),
        ));
    }
    let quota = session::login_quota();
    if let Err(w) = state.admin.limiter.reserve(
        &[quota.key("all")],
        std::time::Instant::now(),
        Duration::ZERO,
    ) {
        tracing::warn!(wait_s = w.wait.as_secs(), "admin sign-in rate-limited");
        return Ok(session::too_many(w.wait));
    }
    let password = form.password;
    let ok =
        tokio::task::spawn_blocking(move || session::verify_password(hash.expose(), &password))
            .await
            .unwrap_or(false);
    if !ok {
        tracing::warn!("admin sign-in refused: wrong password");
        let msg = match lang {
            Lang::Fr => "Mot de passe incorrect.",
            Lang::En => "Wrong password.",
        };
        return login_page(&state, lang, Some(msg), StatusCode::UNAUTHORIZED).await;
    }
    tracing::info!("admin signed in with the password");
    let value = key.session_cookie_value(chrono::Utc::now().timestamp());
    Ok((
        [(header::SET_COOKIE, session::session_set_cookie(&value))],
        Redirect::to(&format!("/manage/sync?lang={}", lang.code())),
    )
        .into_response())
}

const OIDC_NOT_CONFIGURED: &str = "OpenID Connect sign-in is not configured: set ADMIN_OIDC_CLIENT_ID (and ADMIN_OIDC_TENANT_ID, ADMIN_GROUP_IDS) under `handler serve`";

/// The OIDC settings, when this server signs admins in with Entra itself.
fn oidc_settings(state: &AppState) -> Result<&super::oidc::OidcSettings, AppError> {
    if state.settings.admin.platform_auth {
        return Err(AppError::Forbidden(
            "in Azure, App Service authentication signs admins in; this sign-in is for `handler serve`".into(),
        ));
    }
    state
        .settings
        .admin
        .oidc
        .as_ref()
        .ok_or_else(|| AppError::Forbidden(OIDC_NOT_CONFIGURED.into()))
}

async fn oidc_start(State(state): State<AppState>) -> Result<Response, AppError> {
    let o = oidc_settings(&state)?;
    let (to, cookie) = super::oidc::start(&state, o).await?;
    Ok((
        [
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
        Redirect::to(&to),
    )
        .into_response())
}

async fn oidc_callback(
    State(state): State<AppState>,
    Query(cb): Query<super::oidc::Callback>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let o = oidc_settings(&state)?;
    let pending = session::cookie(&headers, super::oidc::STATE_COOKIE);
    let clear = super::oidc::clear_state_cookie();
    let admin = match super::oidc::finish(&state, o, pending, &cb).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(reason = %e, "admin OIDC sign-in refused");
            let mut r = AppError::from(e).into_response();
            if let Ok(v) = clear.parse() {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            return Ok(r);
        }
    };
    tracing::info!(admin = %admin.object_id, "admin signed in with Entra (OIDC)");
    let key = session::key(&state).await?;
    let now = chrono::Utc::now().timestamp();
    let session =
        session::session_set_cookie(&key.oidc_cookie_value(&admin.object_id, &admin.name, now));
    let mut r = (
        [(header::CACHE_CONTROL, "no-store")],
        Html(page::signed_in(&admin.name)),
    )
        .into_response();
    for c in [session, clear] {
        if let Ok(v) = c.parse() {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(r)
}

#[derive(Deserialize)]
struct LinkQuery {
    #[serde(default)]
    token: String,
}

/// A one-time link from `handler admin sign-in-link`: one session, then the link is spent.
async fn link_sign_in(
    State(state): State<AppState>,
    Query(q): Query<LinkQuery>,
) -> Result<Response, AppError> {
    let admin = &state.settings.admin;
    if admin.platform_auth {
        return Err(AppError::Forbidden(
            "sign-in links are for `handler serve`; in Azure, App Service authentication signs admins in".into(),
        ));
    }
    if !admin.serve_sign_in() {
        return Err(AppError::Forbidden(session::NOT_CONFIGURED.into()));
    }
    let now = chrono::Utc::now().timestamp();
    let ok = super::link::redeem(&state.store, &q.token, now)
        .await
        .map_err(|e| AppError::Unavailable(format!("sign-in link: {e}")))?;
    if !ok {
        tracing::warn!("admin sign-in link refused: unknown, used or expired");
        return Err(AppError::Forbidden(
            "this sign-in link is unknown, used or expired: run `handler admin sign-in-link` for a new one".into(),
        ));
    }
    tracing::info!("admin signed in with a one-time link");
    let key = session::key(&state).await?;
    Ok((
        [
            (
                header::SET_COOKIE,
                session::session_set_cookie(&key.session_cookie_value(now)),
            ),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
        Redirect::to("/manage/sync"),
    )
        .into_response())
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    user: AdminUser,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, AppError> {
    user.check_csrf(&state, &form.csrf).await?;
    if let Some(v) = session::cookie(&headers, session::SESSION_COOKIE) {
        session::revoke(&state, v).await?;
    }
    tracing::info!(admin = %user.name, "admin signed out");
    Ok((
        [(
            header::SET_COOKIE,
            session::set_cookie(session::SESSION_COOKIE, "", 0),
        )],
        Redirect::to(session::LOGIN_PATH),
    )
        .into_response())
}
