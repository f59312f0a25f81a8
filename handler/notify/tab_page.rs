//! The configurable channel tab's content (`/connector/tab`): the Moodle course the channel's
//! team is synced with (the course ↔ team rows of `teams_sync::link`), its assignments due in the
//! next [`DUE_DAYS`] days and its latest announcements, in French or English by the Teams locale.
//!
//! The page is a shell; its script reads the team's group id from the Teams context and calls
//! `/connector/api/tab` with the user's Teams SSO token, checked by the configuration page's own
//! check (`config_page::sso_user`). The team id comes from the browser, so it decides nothing by
//! itself: the signed-in user must be enrolled in that course (teachers are enrolled too), or
//! nothing of it is sent. The script writes every text with `textContent`, so Moodle's strings
//! are never read as HTML.

use super::config_page::{lang_of, security_headers, sso_user, PageQuery, TEAMS_JS_VERSION};
use crate::app::AppState;
use crate::bot::i18n::Lang;
use crate::error::AppError;
use crate::ids::{MoodleCourseId, MoodleUserId, TeamId};
use crate::moodle::{MoodleClient, MoodleError};
use crate::store::deadline;
use crate::teams_sync::link;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// Assignments due within this many days are listed.
pub const DUE_DAYS: i64 = 14;
/// Announcements shown (the newest).
const ANNOUNCEMENTS: usize = 3;
const TAB_JS: &str = include_str!("static/tab.js");

fn texts(lang: Lang) -> Value {
    match lang {
        Lang::Fr => json!({
            "title": "Cours Moodle de l’équipe", "loading": "Chargement…",
            "open": "Ouvrir le cours dans Moodle", "due": "À rendre dans les 14 jours",
            "noDue": "Aucun devoir à rendre dans les 14 prochains jours.",
            "news": "Dernières annonces", "noNews": "Aucune annonce.",
            "newsUnavailable": "Les annonces n’ont pas pu être lues.",
            "dueOn": "à rendre le",
            "unmapped": "Cette équipe n’est liée à aucun cours Moodle. Elle est liée lors de la synchronisation des équipes ; demandez au référent numérique si elle devrait l’être.",
            "notEnrolled": "Désolé, ce cours est réservé à ses participants : vous n’y êtes pas inscrit(e) dans Moodle.",
            "notLinked": "Votre compte Teams n’est pas encore relié à un compte Moodle. Il le sera lors de la prochaine synchronisation ; sinon, contactez le référent numérique.",
            "noTeam": "Cet onglet s’affiche dans le canal d’une équipe.",
            "failed": "Le cours n’a pas pu être chargé.", "teamsFailed": "Teams n’a pas répondu"
        }),
        Lang::En => json!({
            "title": "The team's Moodle course", "loading": "Loading…",
            "open": "Open the course in Moodle", "due": "Due in the next 14 days",
            "noDue": "Nothing due in the next 14 days.",
            "news": "Latest announcements", "noNews": "No announcements.",
            "newsUnavailable": "The announcements could not be read.",
            "dueOn": "due",
            "unmapped": "This team is not linked to a Moodle course. Teams are linked by the team sync; ask your school's IT contact if this one should be.",
            "notEnrolled": "Sorry, this course is for its participants only: you are not enrolled in it in Moodle.",
            "notLinked": "Your Teams account is not linked to a Moodle account yet. It will be after the next sync; otherwise ask your school's IT contact.",
            "noTeam": "This tab is shown in a team's channel.",
            "failed": "The course could not be loaded.", "teamsFailed": "Teams did not answer"
        }),
    }
}

pub(super) async fn tab_page(
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    // The server's guess (query, then browser); the script switches to the Teams locale.
    let lang = lang_of(&q, &headers);
    let data = json!({
        "lang": lang.tag(),
        "texts": {"fr": texts(Lang::Fr), "en": texts(Lang::En)},
        "origins": state.settings.notify.host_origins,
    });
    // JSON inside <script>: no "</script>" can close it early.
    let data = data.to_string().replace('<', "\\u003c");
    let title = texts(lang)["title"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let html = format!(
        r#"<!doctype html>
<html lang="{tag}">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <style>
    body {{ font-family: "Segoe UI", system-ui, sans-serif; margin: 1.5rem; color: #242424; max-width: 46rem; line-height: 1.4; }}
    h1 {{ font-size: 1.4rem; margin: 0 0 .25rem; }} h2 {{ font-size: 1.05rem; margin: 1.5rem 0 .5rem; }}
    a {{ color: #5b5fc7; }}
    .open {{ display: inline-block; margin: .6rem 0 .25rem; padding: .4rem .9rem; border-radius: 4px; background: #5b5fc7; color: #fff; text-decoration: none; font-weight: 600; }}
    .open:hover, .open:focus {{ background: #4f52b2; }}
    ul {{ list-style: none; padding: 0; margin: 0; }}
    li {{ padding: .55rem .75rem; border: 1px solid #e0e0e0; border-radius: 4px; margin-bottom: .4rem; background: #fafafa; }}
    .when {{ display: block; color: #616161; font-size: .85rem; }}
    .muted {{ color: #616161; }} .error {{ color: #c4314b; }}
    .notice {{ padding: .75rem 1rem; border-left: 4px solid #5b5fc7; background: #f5f5fb; }} .shortname {{ color: #616161; font-size: .9rem; }}
    [hidden] {{ display: none !important; }}
  </style>
</head>
<body>
  <p id="status" role="status">{loading}</p>
  <main id="course" hidden>
    <h1 id="course-name"></h1>
    <div class="shortname" id="course-short"></div>
    <a id="course-link" class="open" target="_blank" rel="noopener noreferrer"></a>
    <section><h2 id="due-title"></h2><ul id="due"></ul><p id="no-due" class="muted" hidden></p></section>
    <section><h2 id="news-title"></h2><ul id="news"></ul><p id="no-news" class="muted" hidden></p></section>
  </main>
  <script type="application/json" id="page-data">{data}</script>
  <script src="/connector/teams-js/{v}/MicrosoftTeams.min.js"></script>
  <script src="/connector/tab.js"></script>
</body>
</html>
"#,
        tag = lang.tag(),
        loading = texts(lang)["loading"].as_str().unwrap_or_default(),
        v = TEAMS_JS_VERSION,
    );
    security_headers(&state, Html(html).into_response())
}

pub(super) async fn tab_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        TAB_JS,
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct TabQuery {
    /// The team's group id, from the Teams context (`team.groupId`).
    team: String,
}

/// What the tab shows. `status`: `ok` (with the course) or `unmapped`; a user who is not
/// enrolled gets 403 with `reason: not_enrolled` and nothing about the course.
pub(super) async fn api_tab(
    State(state): State<AppState>,
    Query(q): Query<TabQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    // Who is asking first: nothing, not even whether a team is linked, goes to an unknown caller.
    let (_, user) = sso_user(&state, &headers).await?;
    let team =
        TeamId::new(q.team.trim()).map_err(|e| AppError::BadRequest(format!("team: {e}")))?;
    let course = deadline::within(
        deadline::REQUEST_PATH,
        link::course_of_team(&state.store, team.as_str()),
    )
    .await?;
    let Some(course) = course else {
        return Ok(Json(json!({"status": "unmapped"})).into_response());
    };
    let course = MoodleCourseId::new(course)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("the team's mapping row holds {e}")))?;
    let moodle = state
        .moodle
        .as_ref()
        .ok_or_else(|| AppError::Unavailable("Moodle is not configured".into()))?;
    let base = state
        .settings
        .moodle
        .as_ref()
        .map(|m| m.url.to_string())
        .unwrap_or_default();
    let unavailable = |e: MoodleError| AppError::Unavailable(format!("Moodle: {e}"));
    let Some(enrolled) = enrolment(moodle, user, course).await.map_err(unavailable)? else {
        tracing::info!(course = course.get(), "course tab refused: not enrolled");
        return Ok((
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": "you are not enrolled in this team's course",
                "reason": "not_enrolled",
            })),
        )
            .into_response());
    };
    let now = chrono::Utc::now().timestamp();
    let due = due_soon(moodle, &base, course, now)
        .await
        .map_err(unavailable)?;
    // Announcements are extra: a site whose token lacks the forum functions still gets the rest.
    let news = match crate::moodle::forum::announcements(moodle, course, ANNOUNCEMENTS).await {
        Ok(list) => Value::Array(
            list.into_iter()
                .map(|d| {
                    json!({
                        "title": d.name,
                        "created": d.created,
                        "url": join(&base, &format!("mod/forum/discuss.php?d={}", d.discussion)),
                    })
                })
                .collect(),
        ),
        Err(e) => {
            tracing::warn!(course = course.get(), error = %e, "course tab: announcements not read");
            Value::Null
        }
    };
    Ok(Json(json!({
        "status": "ok",
        "course": {
            "id": course.get(),
            "name": enrolled.title(),
            "shortname": enrolled.shortname,
            "url": join(&base, &format!("course/view.php?id={}", course.get())),
        },
        "assignments": due,
        "announcements": news,
    }))
    .into_response())
}

fn join(base: &str, path: &str) -> String {
    format!("{}/{path}", base.trim_end_matches('/'))
}

/// The user's active enrolment in `course` (`core_enrol_get_users_courses` lists active ones
/// only), with the course's names; None when they are not enrolled.
async fn enrolment(
    moodle: &MoodleClient,
    user: MoodleUserId,
    course: MoodleCourseId,
) -> Result<Option<crate::moodle::site::UserCourse>, MoodleError> {
    Ok(crate::moodle::site::user_courses(moodle, user)
        .await?
        .into_iter()
        .find(|c| c.id == course))
}

/// Assignments of `course` due after `now` and within [`DUE_DAYS`], soonest first.
async fn due_soon(
    moodle: &MoodleClient,
    base: &str,
    course: MoodleCourseId,
    now: i64,
) -> Result<Vec<Value>, MoodleError> {
    let end = now + DUE_DAYS * 86_400;
    let mut due: Vec<_> = crate::moodle::assign::assignments(moodle, &[course])
        .await?
        .courses
        .into_iter()
        .filter(|c| c.id == course)
        .flat_map(|c| c.assignments)
        .filter(|a| a.duedate > now && a.duedate <= end)
        .collect();
    due.sort_by_key(|a| a.duedate);
    Ok(due
        .into_iter()
        .map(|a| {
            json!({
                "name": a.name,
                "due": a.duedate,
                "url": join(base, &format!("mod/assign/view.php?id={}", a.cmid)),
            })
        })
        .collect())
}
