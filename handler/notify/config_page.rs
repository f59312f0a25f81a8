//! `ConnectorConfig` (`/connector/…`): the configurable tab's configuration page that Teams
//! opens in an iframe when a channel adds the app, server-rendered in French or English, with
//! the Teams JavaScript library served from here (pinned 2.58.0, no CDN), and its API. Every API
//! call carries the user's Teams SSO token, validated here (Entra keys of the configured tenant,
//! audience = the app's `api://` resource); the user must teach the course in Moodle, and only
//! they may change or remove a configuration they saved. The tab's content page, which uses the
//! same token check, is `tab_page`.

use super::channels::{self, ChannelConfig};
use super::schema::Kind;
use super::webhook_url;
use crate::app::AppState;
use crate::bot::auth::openid::KeyCache;
use crate::bot::auth::validate::TokenValidator;
use crate::bot::i18n::Lang;
use crate::bot::mapping::{ENTRA_USER_PARTITION, MOODLE_USER_ID_PROP};
use crate::error::AppError;
use crate::ids::{MoodleCourseId, MoodleUserId};
use crate::store::tables::MAPPINGS;
use crate::store::{deadline, key_escape};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub const TEAMS_JS_VERSION: &str = "2.58.0";
const TEAMS_JS: &[u8] = include_bytes!("static/teams-js-2.58.0.min.js");
const PAGE_JS: &str = include_str!("static/config.js");

/// The SSO token check, when the tenant and the app are configured.
pub fn sso_validator(
    settings: &crate::settings::Settings,
    http: &reqwest::Client,
) -> Option<TokenValidator> {
    let bot = settings.bot.as_ref()?;
    let tenant = settings
        .teams_app
        .tenant_id
        .clone()
        .or_else(|| match &bot.identity {
            crate::bot::settings::BotIdentity::SingleTenant { tenant_id, .. } => {
                Some(tenant_id.clone())
            }
            _ => None,
        })?;
    // Same default as the manifest's webApplicationInfo.resource (teams_app::manifest).
    let resource = settings.teams_app.sso_resource.clone().or_else(|| {
        let host = settings.core.public_url.as_ref()?.host_str()?.to_string();
        Some(format!("api://{host}/{}", bot.app_id))
    })?;
    let metadata = settings
        .notify
        .sso_openid_metadata_url
        .clone()
        .or_else(|| {
            url::Url::parse(&format!(
                "https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration"
            ))
            .ok()
        })?;
    let keys = Arc::new(KeyCache::new(http.clone(), metadata));
    // v2 tokens name the client id as audience, v1 tokens the api:// resource.
    Some(TokenValidator::entra(
        keys,
        &tenant,
        vec![resource, bot.app_id.clone()],
    ))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/connector/config", get(config_page))
        .route("/connector/remove", get(remove_page))
        .route("/connector/tab", get(super::tab_page::tab_page))
        .route("/connector/config.js", get(page_js))
        .route("/connector/tab.js", get(super::tab_page::tab_js))
        .route(
            &format!("/connector/teams-js/{TEAMS_JS_VERSION}/MicrosoftTeams.min.js"),
            get(teams_js),
        )
        .route("/connector/api/courses", get(api_courses))
        .route("/connector/api/tab", get(super::tab_page::api_tab))
        .route("/connector/api/check-url", post(api_check_url))
        .route("/connector/api/configs", post(api_create))
        .route(
            "/connector/api/configs/{entity}",
            get(api_get).post(api_update).delete(api_delete),
        )
        // The rest of the function's declared route: its own answer, not the router's 404.
        .route(
            "/connector/{*rest}",
            get(unknown).post(unknown).delete(unknown),
        )
}

async fn unknown(uri: axum::http::Uri) -> AppError {
    AppError::NotFound(format!(
        "the configuration page has nothing at {}",
        uri.path()
    ))
}

// ---------------------------------------------------------------------------------------------
// Pages

#[derive(Deserialize, Default)]
pub(super) struct PageQuery {
    #[serde(default)]
    lang: Option<String>,
}

pub(super) fn lang_of(q: &PageQuery, headers: &HeaderMap) -> Lang {
    q.lang
        .as_deref()
        .and_then(Lang::from_locale)
        .or_else(|| {
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| Lang::from_locale(v.split(';').next().unwrap_or_default().trim()))
        })
        .unwrap_or(Lang::Fr)
}

struct Texts {
    title: &'static str,
    intro: &'static str,
    course: &'static str,
    kinds: &'static str,
    url: &'static str,
    url_hint: &'static str,
    remove_title: &'static str,
    remove_intro: &'static str,
}

fn texts(lang: Lang) -> Texts {
    match lang {
        Lang::Fr => Texts {
            title: "Notifications Moodle dans ce canal",
            intro: "Choisissez un de vos cours et les notifications à publier ici.",
            course: "Cours",
            kinds: "Notifications",
            url: "URL du flux Workflows du canal",
            url_hint: "Dans le canal : ⋯ › Workflows › « Publier dans un canal lorsqu’une requête webhook est reçue », puis collez l’URL donnée.",
            remove_title: "Retirer les notifications Moodle",
            remove_intro: "Ce canal ne recevra plus les notifications de ce cours.",
        },
        Lang::En => Texts {
            title: "Moodle notifications in this channel",
            intro: "Pick one of your courses and the notifications to post here.",
            course: "Course",
            kinds: "Notifications",
            url: "Workflows URL of the channel",
            url_hint: "In the channel: ⋯ › Workflows › “Post to a channel when a webhook request is received”, then paste the URL it gives.",
            remove_title: "Remove Moodle notifications",
            remove_intro: "This channel will no longer receive this course's notifications.",
        },
    }
}

fn kind_name(lang: Lang, k: Kind) -> &'static str {
    match (lang, k) {
        (Lang::Fr, Kind::AssignmentDue) => "Devoirs à rendre",
        (Lang::En, Kind::AssignmentDue) => "Assignments due",
        (Lang::Fr, Kind::GradeReleased) => "Notes publiées",
        (Lang::En, Kind::GradeReleased) => "Grades released",
        (Lang::Fr, Kind::ForumPost) => "Messages des forums",
        (Lang::En, Kind::ForumPost) => "Forum posts",
        (Lang::Fr, Kind::Announcement) => "Annonces",
        (Lang::En, Kind::Announcement) => "Announcements",
        (Lang::Fr, Kind::Custom) => "Autres notifications",
        (Lang::En, Kind::Custom) => "Other notifications",
    }
}

fn script_texts(lang: Lang) -> Value {
    match lang {
        Lang::Fr => json!({
            "pickCourse": "— choisir un cours —", "urlNeeded": "Collez l’URL Workflows du canal.",
            "urlInvalid": "Cette URL n’est pas une URL Workflows acceptée.", "saving": "Enregistrement…",
            "saved": "Enregistré.", "saveFailed": "Échec de l’enregistrement.", "loadFailed": "Chargement impossible.",
            "disabled": "Désactivée :", "removed": "Retiré.", "removeFailed": "Échec du retrait.",
            "teamsFailed": "Teams n’a pas répondu"
        }),
        Lang::En => json!({
            "pickCourse": "— pick a course —", "urlNeeded": "Paste the channel's Workflows URL.",
            "urlInvalid": "This is not an accepted Workflows URL.", "saving": "Saving…",
            "saved": "Saved.", "saveFailed": "Saving failed.", "loadFailed": "Could not load.",
            "disabled": "Disabled:", "removed": "Removed.", "removeFailed": "Removing failed.",
            "teamsFailed": "Teams did not answer"
        }),
    }
}

/// Only Teams (and configured stub hosts) may frame the page; scripts only from here.
pub(super) fn security_headers(state: &AppState, mut r: Response) -> Response {
    let mut ancestors = vec![
        "'self'".to_string(),
        "https://teams.microsoft.com".into(),
        "https://*.teams.microsoft.com".into(),
        "https://teams.microsoft.us".into(),
        "https://*.teams.microsoft.us".into(),
        "https://teams.cloud.microsoft".into(),
    ];
    ancestors.extend(state.settings.notify.host_origins.iter().cloned());
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors {}",
        ancestors.join(" ")
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn page(state: &AppState, lang: Lang, mode: &str) -> Response {
    let t = texts(lang);
    let data = json!({
        "mode": mode,
        "lang": lang.tag(),
        "texts": script_texts(lang),
        "origins": state.settings.notify.host_origins,
    });
    // JSON inside <script>: no "</script>" can close it early.
    let data = data.to_string().replace('<', "\\u003c");
    let kinds: String = Kind::ALL
        .iter()
        .map(|k| {
            format!(
                r#"<label><input type="checkbox" name="kind" value="{v}"> {n}</label>"#,
                v = k.as_str(),
                n = kind_name(lang, *k)
            )
        })
        .collect::<Vec<_>>()
        .join("\n        ");
    let body = if mode == "remove" {
        format!(
            r#"<h1>{title}</h1><p>{intro}</p><p id="status" role="status"></p>"#,
            title = t.remove_title,
            intro = t.remove_intro
        )
    } else {
        format!(
            r#"<h1>{title}</h1>
    <p>{intro}</p>
    <form id="form" onsubmit="return false">
      <label for="course">{course}</label>
      <select id="course" name="course"><option value="">…</option></select>
      <fieldset><legend>{kinds_label}</legend>
        {kinds}
      </fieldset>
      <label for="url">{url}</label>
      <input id="url" name="url" type="url" autocomplete="off" spellcheck="false" placeholder="https://…environment.api.powerplatform.com/…">
      <p class="hint">{hint}</p>
      <p id="url-help" class="error" aria-live="polite"></p>
    </form>
    <p id="status" role="status"></p>"#,
            title = t.title,
            intro = t.intro,
            course = t.course,
            kinds_label = t.kinds,
            url = t.url,
            hint = t.url_hint,
        )
    };
    let html = format!(
        r#"<!doctype html>
<html lang="{lang}">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <style>
    body {{ font-family: "Segoe UI", system-ui, sans-serif; margin: 1.5rem; color: #242424; max-width: 40rem; }}
    h1 {{ font-size: 1.25rem; }} label {{ display: block; margin: .5rem 0 .25rem; }}
    fieldset label {{ display: inline-block; margin-right: 1rem; }}
    select, input[type=url] {{ width: 100%; padding: .4rem; font-size: 1rem; box-sizing: border-box; }}
    fieldset {{ border: 1px solid #d1d1d1; margin: 1rem 0; }} .hint {{ color: #616161; font-size: .85rem; }}
    .error {{ color: #c4314b; }} .ok {{ color: #237b4b; }}
  </style>
</head>
<body>
    {body}
  <script type="application/json" id="page-data">{data}</script>
  <script src="/connector/teams-js/{v}/MicrosoftTeams.min.js"></script>
  <script src="/connector/config.js"></script>
</body>
</html>
"#,
        lang = lang.tag(),
        title = if mode == "remove" {
            t.remove_title
        } else {
            t.title
        },
        v = TEAMS_JS_VERSION,
    );
    security_headers(state, Html(html).into_response())
}

async fn config_page(
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    page(&state, lang_of(&q, &headers), "config")
}

async fn remove_page(
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    page(&state, lang_of(&q, &headers), "remove")
}

async fn page_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE_JS,
    )
        .into_response()
}

async fn teams_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            // The path carries the version: it never changes under that name.
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        TEAMS_JS,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// API

/// The Teams user behind the request's SSO token, and their Moodle account.
pub(super) async fn sso_user(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(String, MoodleUserId), AppError> {
    let validator = state.notify.sso.as_ref().ok_or_else(|| {
        AppError::Unavailable(
            "Teams sign-in is not configured (BOT_APP_ID, tenant and PUBLIC_URL or TEAMS_APP_SSO_RESOURCE)".into(),
        )
    })?;
    let token = crate::bot::auth::bearer_token(headers).ok_or(AppError::Unauthorized)?;
    let verified = validator.verify(token).await.map_err(|e| {
        if e.is_unavailable() {
            AppError::Unavailable("cannot load the Entra signing keys".into())
        } else {
            tracing::warn!(error = %e, "configuration page: SSO token refused");
            AppError::Unauthorized
        }
    })?;
    let aad = verified.object_id.ok_or(AppError::Unauthorized)?;
    let row = deadline::within(
        deadline::REQUEST_PATH,
        state
            .store
            .get(MAPPINGS, ENTRA_USER_PARTITION, &key_escape(&aad)),
    )
    .await?;
    let moodle = row
        .and_then(|e| e.int(MOODLE_USER_ID_PROP))
        .ok_or_else(|| {
            AppError::Forbidden("your Teams account is not linked to a Moodle account".into())
        })?;
    let moodle = MoodleUserId::new(moodle).map_err(|e| {
        AppError::Internal(anyhow::anyhow!("the mapping row holds an invalid id: {e}"))
    })?;
    Ok((aad, moodle))
}

/// The courses this Moodle user teaches (editing or non-editing teacher).
async fn taught(state: &AppState, user: MoodleUserId) -> Result<Vec<(i64, String)>, AppError> {
    let moodle = state
        .moodle
        .as_ref()
        .ok_or_else(|| AppError::Unavailable("Moodle is not configured".into()))?;
    let unavailable = |e: crate::moodle::MoodleError| AppError::Unavailable(format!("Moodle: {e}"));
    let courses = crate::moodle::site::user_courses(moodle, user)
        .await
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for c in courses {
        let members = crate::moodle::enrolled::enrolled_users(moodle, c.id)
            .await
            .map_err(unavailable)?;
        if members.iter().any(|m| m.id == user && m.is_teacher()) {
            let name = c
                .displayname
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or(c.fullname.clone());
            out.push((c.id.get(), name));
        }
    }
    Ok(out)
}

async fn teaches(state: &AppState, user: MoodleUserId, course: i64) -> Result<(), AppError> {
    let moodle = state
        .moodle
        .as_ref()
        .ok_or_else(|| AppError::Unavailable("Moodle is not configured".into()))?;
    let id = MoodleCourseId::new(course).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let members = crate::moodle::enrolled::enrolled_users(moodle, id)
        .await
        .map_err(|e| AppError::Forbidden(format!("you do not teach course {course} ({e})")))?;
    if members.iter().any(|m| m.id == user && m.is_teacher()) {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "you do not teach course {course}"
        )))
    }
}

async fn api_courses(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    let (_, user) = sso_user(&state, &headers).await?;
    let courses: Vec<Value> = taught(&state, user)
        .await?
        .into_iter()
        .map(|(id, name)| json!({"id": id, "name": name}))
        .collect();
    Ok(Json(json!({ "courses": courses })))
}

#[derive(Deserialize)]
struct UrlBody {
    url: String,
}

async fn api_check_url(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(b): Json<UrlBody>,
) -> Result<Json<Value>, AppError> {
    sso_user(&state, &headers).await?;
    Ok(Json(match webhook_url::check(&b.url) {
        Ok(_) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }))
}

#[derive(Deserialize)]
struct SaveBody {
    course: i64,
    kinds: Vec<String>,
    url: String,
    #[serde(default)]
    channel_name: String,
}

/// `<course>.<random>`: the course is part of the id, so a configuration is found from it alone.
fn split_entity(entity: &str) -> Result<(i64, &str), AppError> {
    let (course, rest) = entity
        .split_once('.')
        .ok_or_else(|| AppError::NotFound("no such configuration".into()))?;
    let course = course
        .parse::<i64>()
        .map_err(|_| AppError::NotFound("no such configuration".into()))?;
    if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(AppError::NotFound("no such configuration".into()));
    }
    Ok((course, rest))
}

async fn owned(
    state: &AppState,
    entity: &str,
    aad: &str,
) -> Result<Option<ChannelConfig>, AppError> {
    let (course, _) = split_entity(entity)?;
    let existing = channels::load(&state.store, course, entity).await?;
    if let Some(c) = &existing {
        if c.owner != aad {
            return Err(AppError::Forbidden(
                "this channel's configuration was saved by another teacher".into(),
            ));
        }
    }
    Ok(existing)
}

async fn save(
    state: &AppState,
    headers: &HeaderMap,
    entity: Option<String>,
    b: SaveBody,
) -> Result<Json<Value>, AppError> {
    let (aad, user) = sso_user(state, headers).await?;
    let mut kinds = Vec::new();
    for k in &b.kinds {
        kinds.push(
            Kind::parse(k)
                .ok_or_else(|| AppError::BadRequest(format!("kinds: unknown kind {k:?}")))?,
        );
    }
    if kinds.is_empty() {
        return Err(AppError::BadRequest("kinds: pick at least one".into()));
    }
    webhook_url::check(&b.url).map_err(|e| AppError::BadRequest(format!("url: {e}")))?;
    teaches(state, user, b.course).await?;
    let previous = match &entity {
        Some(e) => owned(state, e, &aad).await?,
        None => None,
    };
    // A new course means a new id (the course is part of it); the old row goes.
    let id = match (&entity, &previous) {
        (Some(e), Some(p)) if p.course == b.course => e.clone(),
        _ => format!("{}.{}", b.course, uuid::Uuid::new_v4().simple()),
    };
    let config = ChannelConfig {
        id: id.clone(),
        course: b.course,
        url: b.url.trim().to_string(),
        kinds,
        owner: aad,
        lang: previous
            .as_ref()
            .map(|p| p.lang.clone())
            .unwrap_or_else(|| "fr".into()),
        channel_name: b.channel_name.chars().take(200).collect(),
        disabled: None,
    };
    channels::save(&state.store, &config).await?;
    if let Some(p) = previous.filter(|p| p.id != id) {
        channels::remove(&state.store, p.course, &p.id).await?;
    }
    tracing::info!(course = b.course, "channel configuration saved");
    Ok(Json(json!({
        "entity_id": id,
        "content_path": format!("/connector/tab?entity={id}"),
        "remove_path": "/connector/remove",
        "display_name": "Moodle",
    })))
}

async fn api_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(b): Json<SaveBody>,
) -> Result<Json<Value>, AppError> {
    save(&state, &headers, None, b).await
}

async fn api_update(
    State(state): State<AppState>,
    Path(entity): Path<String>,
    headers: HeaderMap,
    Json(b): Json<SaveBody>,
) -> Result<Json<Value>, AppError> {
    save(&state, &headers, Some(entity), b).await
}

async fn api_get(
    State(state): State<AppState>,
    Path(entity): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    let (aad, _) = sso_user(&state, &headers).await?;
    let c = owned(&state, &entity, &aad)
        .await?
        .ok_or_else(|| AppError::NotFound("no such configuration".into()))?;
    let kinds: Vec<&str> = c.kinds.iter().map(|k| k.as_str()).collect();
    // The URL goes back only to the teacher who pasted it.
    Ok(Json(
        json!({"course": c.course, "kinds": kinds, "url": c.url, "disabled": c.disabled}),
    ))
}

async fn api_delete(
    State(state): State<AppState>,
    Path(entity): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let (aad, _) = sso_user(&state, &headers).await?;
    let (course, _) = split_entity(&entity)?;
    owned(&state, &entity, &aad).await?;
    channels::remove(&state.store, course, &entity).await?;
    Ok((StatusCode::OK, Json(json!({"removed": entity}))).into_response())
}
