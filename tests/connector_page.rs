//! The channel configuration page (issue 19 item 4) in headless Chromium, with Teams stubbed at
//! the Teams JavaScript library's postMessage boundary (`tests/connector/host.html`, served with
//! the page through one origin so the stub can fill the form): save, edit, remove, invalid and
//! retired URLs, a course the user does not teach; a screenshot is written to
//! `$CARGO_TARGET_DIR/connector-config.png`. Plus the API refusals without a browser.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{json, Value};
use std::process::Command;
use std::sync::Arc;
use testkit::bot_app::{
    header_for, map_user, mint_raw, now, spawn_bot_app, BotAppOptions, BotTestApp, TestKey, APP_ID,
    TEACHER_AAD, TENANT_ID,
};
use testkit::fixture_json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TEACHER: i64 = 5;
const STUDENT: i64 = 7;
const STUDENT_AAD: &str = "aad00000-0000-4000-8000-00000000a007";
/// A pupil of the school who is not in the team's course.
const OUTSIDER: i64 = 8;
const OUTSIDER_AAD: &str = "aad00000-0000-4000-8000-00000000a008";
/// The team synced with course 4, and a team the sync never linked.
const TEAM: &str = "7ea40000-0000-4000-8000-000000000004";
const UNLINKED_TEAM: &str = "7ea40000-0000-4000-8000-0000000000ff";
const RESOURCE: &str = "api://bridge.example.org/b0700000-0000-4000-8000-000000000001";

fn sso_token(oid: &str, aud: &str, iss_tenant: &str) -> String {
    let t = now();
    mint_raw(
        &header_for(TestKey::OtherIssuer),
        &json!({"iss": format!("https://login.microsoftonline.com/{iss_tenant}/v2.0"), "aud": aud,
                "oid": oid, "tid": iss_tenant, "nbf": t - 60, "exp": t + 3600, "ver": "2.0"}),
        TestKey::OtherIssuer,
    )
}

struct Page {
    app: BotTestApp,
    _entra: MockServer,
    host: String,
}

async fn entra_keys() -> MockServer {
    let s = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/tenant/v2.0/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": format!("https://login.microsoftonline.com/{TENANT_ID}/v2.0"),
            "jwks_uri": format!("{}/tenant/discovery/v2.0/keys", s.uri())})))
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path("/tenant/discovery/v2.0/keys"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture_json("botframework/jwks-other-issuer.json")),
        )
        .mount(&s)
        .await;
    s
}

#[derive(Clone)]
struct Proxy {
    app: String,
    host_page: Arc<String>,
    /// The SSO token the stub host hands out, by the page's `who` parameter (default: the teacher).
    tokens: Arc<Vec<(&'static str, String)>>,
}

/// One origin for the stub host page and the app (so the stub can drive the form).
async fn proxy(
    State(p): State<Proxy>,
    m: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() == "/host.html" {
        let who = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("who="))
            .unwrap_or("teacher");
        let token = &p.tokens.iter().find(|(w, _)| *w == who).unwrap().1;
        return Html(p.host_page.replace("{{TOKEN}}", token)).into_response();
    }
    let client = reqwest::Client::new();
    let url = format!(
        "{}{}",
        p.app,
        uri.path_and_query().map(|x| x.as_str()).unwrap_or("/")
    );
    let mut req = client.request(m, url).body(body.to_vec());
    for name in ["authorization", "content-type", "accept-language"] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v);
        }
    }
    let r = req.send().await.unwrap();
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
    let mut out = Response::builder().status(status);
    for (k, v) in r.headers() {
        if k != "content-length" && k != "transfer-encoding" {
            out = out.header(k, v);
        }
    }
    out.body(Body::from(r.bytes().await.unwrap())).unwrap()
}

async fn start() -> Page {
    let entra = entra_keys().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    let app = spawn_bot_app(BotAppOptions {
        extra: vec![
            ("PUBLIC_URL".into(), "https://bridge.example.org".into()),
            (
                "CONNECTOR_SSO_OPENID_METADATA_URL".into(),
                format!(
                    "{}/tenant/v2.0/.well-known/openid-configuration",
                    entra.uri()
                ),
            ),
            ("CONNECTOR_HOST_ORIGINS".into(), host.clone()),
        ],
        ..Default::default()
    })
    .await;
    map_user(&app.store, TEACHER_AAD, TEACHER).await.unwrap();
    let m = app.moodle();
    m.reply(
        "core_enrol_get_users_courses",
        &[("userid", "5")],
        json!([{"id": 2, "shortname": "MATH-TG1", "fullname": "Mathématiques TG1", "displayname": "Mathématiques TG1"},
               {"id": 3, "shortname": "PHYS101", "fullname": "Physique", "displayname": "Physique"}]),
    );
    m.reply(
        "core_enrol_get_enrolled_users",
        &[("courseid", "2")],
        json!([{"id": 5, "fullname": "M. Durand", "roles": [{"roleid": 3, "shortname": "editingteacher"}]},
               {"id": 7, "fullname": "Léa Martin", "roles": [{"roleid": 5, "shortname": "student"}]}]),
    );
    m.reply(
        "core_enrol_get_enrolled_users",
        &[("courseid", "3")],
        json!([{"id": 5, "fullname": "M. Durand", "roles": [{"roleid": 5, "shortname": "student"}]}]),
    );
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/connector/host.html"
    ))
    .unwrap()
    .replace("{{OID}}", TEACHER_AAD)
    .replace("{{TENANT}}", TENANT_ID);
    let p = Proxy {
        app: format!("http://{}", app.addr),
        host_page: Arc::new(page),
        tokens: Arc::new(vec![
            ("teacher", sso_token(TEACHER_AAD, RESOURCE, TENANT_ID)),
            ("student", sso_token(STUDENT_AAD, RESOURCE, TENANT_ID)),
            ("outsider", sso_token(OUTSIDER_AAD, RESOURCE, TENANT_ID)),
        ]),
    };
    let router = axum::Router::new().fallback(proxy).with_state(p);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Page {
        app,
        _entra: entra,
        host,
    }
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

fn run_chromium(args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (scripts/install-test-deps.sh installs it): {e}",
                chromium()
            )
        });
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn result_of(dom: &str) -> Value {
    let start = dom
        .find("RESULT")
        .unwrap_or_else(|| panic!("no result in the page: {dom}"))
        + 6;
    let end = dom[start..].find("END").unwrap() + start;
    let text = dom[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_edit_remove_and_refusals_in_headless_chromium() {
    let page = start().await;
    let url = format!("{}/host.html", page.host);
    let dom = tokio::task::spawn_blocking(move || {
        run_chromium(&[
            "--virtual-time-budget=30000".into(),
            "--dump-dom".into(),
            url,
        ])
    })
    .await
    .unwrap();
    let r = result_of(&dom);
    assert!(r.get("error").is_none(), "{r:#}");
    assert_eq!(r["heading"], "Notifications Moodle dans ce canal");
    assert_eq!(
        r["courses"],
        json!(["=— choisir un cours —", "2=Mathématiques TG1"]),
        "only the course the user teaches"
    );
    assert_eq!(r["retiredValid"], false);
    assert!(
        r["retiredHelp"].as_str().unwrap().contains("Workflows"),
        "{r:#}"
    );
    assert_eq!(r["httpValid"], false);
    assert_eq!(
        r["goodValid"], true,
        "Save enabled only once the form is valid"
    );
    assert_eq!(r["saveEvents"], json!(["save-success"]), "{r:#}");
    let entity = r["saved"]["entityId"].as_str().unwrap().to_string();
    assert!(entity.starts_with("2."), "{entity}");
    assert!(r["saved"]["contentUrl"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/connector/tab?entity={entity}")));
    assert!(r["saved"]["removeUrl"]
        .as_str()
        .unwrap()
        .ends_with("/connector/remove"));
    // Reloaded for editing, in English this time.
    assert_eq!(r["editHeading"], "Moodle notifications in this channel");
    assert_eq!(r["editCourse"], "2");
    assert!(r["editUrl"]
        .as_str()
        .unwrap()
        .starts_with("https://prod-27.westus.logic.azure.com"));
    assert_eq!(r["editKinds"], json!(["assignment_due", "announcement"]));
    assert_eq!(r["editValid"], true);
    assert_eq!(r["notTaught"], json!([403, "you do not teach course 3"]));
    assert_eq!(r["removeEvents"], json!(["remove-success"]), "{r:#}");
    assert!(
        bridge::notify::channels::of_course(&page.app.store, 2)
            .await
            .unwrap()
            .is_empty(),
        "removed from the store"
    );

    // A screenshot of the filled form, for a person to look at.
    let shot = std::path::PathBuf::from(
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()),
    )
    .join("connector-config.png");
    let _ = std::fs::remove_file(&shot);
    let url = format!("{}/host.html?scenario=screenshot", page.host);
    let arg = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || {
        run_chromium(&[
            "--virtual-time-budget=15000".into(),
            "--window-size=1000,900".into(),
            arg,
            url,
        ])
    })
    .await
    .unwrap();
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "screenshot written: {}",
        shot.display()
    );
}

#[tokio::test]
async fn the_api_refuses_bad_tokens_other_teachers_and_bad_input() {
    let page = start().await;
    let base = format!("http://{}", page.app.addr);
    let client = reqwest::Client::new();
    let call = |m: reqwest::Method, p: &str, token: Option<String>, body: Option<Value>| {
        let mut req = client.request(m, format!("{base}{p}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let r = req.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let good = sso_token(TEACHER_AAD, RESOURCE, TENANT_ID);
    let get = reqwest::Method::GET;
    assert_eq!(
        call(get.clone(), "/connector/api/courses", None, None)
            .await
            .0,
        401
    );
    for (what, token) in [
        (
            "other audience",
            sso_token(TEACHER_AAD, "api://other.example/x", TENANT_ID),
        ),
        (
            "other tenant",
            sso_token(
                TEACHER_AAD,
                RESOURCE,
                "00000000-0000-4000-8000-0000000000ff",
            ),
        ),
        (
            "bot connector key",
            mint_raw(
                &header_for(TestKey::EndorsedMsteams),
                &json!({"iss": format!("https://login.microsoftonline.com/{TENANT_ID}/v2.0"), "aud": RESOURCE,
                    "oid": TEACHER_AAD, "tid": TENANT_ID, "nbf": now() - 60, "exp": now() + 3600}),
                TestKey::EndorsedMsteams,
            ),
        ),
    ] {
        assert_eq!(
            call(get.clone(), "/connector/api/courses", Some(token), None)
                .await
                .0,
            401,
            "{what}"
        );
    }
    let (s, b) = call(
        get.clone(),
        "/connector/api/courses",
        Some(good.clone()),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        b["courses"],
        json!([{"id": 2, "name": "Mathématiques TG1"}])
    );
    let post = reqwest::Method::POST;
    let good_url = testkit::notify_doubles::workflows_url("abc");
    let (s, b) = call(
        post.clone(),
        "/connector/api/configs",
        Some(good.clone()),
        Some(json!({"course": 2, "kinds": ["custom"], "url": "https://169.254.169.254/latest"})),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str().unwrap().starts_with("url:")),
        (400, true),
        "{b}"
    );
    let (s, _) = call(
        post.clone(),
        "/connector/api/configs",
        Some(good.clone()),
        Some(json!({"course": 2, "kinds": [], "url": good_url})),
    )
    .await;
    assert_eq!(s, 400);
    let (s, b) = call(
        post.clone(),
        "/connector/api/configs",
        Some(good.clone()),
        Some(json!({"course": 2, "kinds": ["announcement"], "url": good_url})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let entity = b["entity_id"].as_str().unwrap().to_string();
    // Another teacher of the same course may not change or remove it.
    let other = "aad00000-0000-4000-8000-00000000b001";
    map_user(&page.app.store, other, TEACHER).await.unwrap();
    let theirs = sso_token(other, APP_ID, TENANT_ID);
    let (s, b) = call(
        post.clone(),
        &format!("/connector/api/configs/{entity}"),
        Some(theirs.clone()),
        Some(json!({"course": 2, "kinds": ["custom"], "url": good_url})),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    let (s, _) = call(
        reqwest::Method::DELETE,
        &format!("/connector/api/configs/{entity}"),
        Some(theirs),
        None,
    )
    .await;
    assert_eq!(s, 403);
    let stored = bridge::notify::channels::load(&page.app.store, 2, &entity)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.kinds,
        vec![bridge::notify::schema::Kind::Announcement]
    );
    assert_eq!(stored.owner, TEACHER_AAD);
    // A user without a Moodle account gets a clear refusal.
    let stranger = sso_token("aad00000-0000-4000-8000-00000000c001", RESOURCE, TENANT_ID);
    let (s, b) = call(get, "/connector/api/courses", Some(stranger), None).await;
    assert_eq!(s, 403, "{b}");
}

/// The tab's page in the stub host: `who` signs in, `group` is the channel's team.
async fn tab_in_chromium(page: &Page, who: &str, group: &str, locale: &str) -> Value {
    let url = format!(
        "{}/host.html?scenario=tab&who={who}&group={group}&locale={locale}",
        page.host
    );
    let dom = tokio::task::spawn_blocking(move || {
        run_chromium(&[
            "--virtual-time-budget=20000".into(),
            "--dump-dom".into(),
            url,
        ])
    })
    .await
    .unwrap();
    let r = result_of(&dom);
    assert!(r.get("error").is_none(), "{who} in {group}: {r:#}");
    r
}

fn iso(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Issue 18: the configurable channel tab shows the course the team is synced with, to the
/// people enrolled in it only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_tab_shows_the_teams_course_to_its_members_only() {
    let page = start().await;
    map_user(&page.app.store, STUDENT_AAD, STUDENT)
        .await
        .unwrap();
    map_user(&page.app.store, OUTSIDER_AAD, OUTSIDER)
        .await
        .unwrap();
    let mut linked = bridge::teams_sync::link::CourseTeam::new(
        4,
        "hg-tg1".into(),
        "HG TG1".into(),
        bridge::teams_sync::link::Stage::Active,
    );
    // Graph writes group ids in either case; the reverse row is kept lower-case.
    linked.team_id = Some(TEAM.to_ascii_uppercase());
    bridge::teams_sync::link::save(&page.app.store, &linked)
        .await
        .unwrap();
    // Moodle's strings are text: markup in them must come out as characters.
    let course_name = "Histoire <b>&</b> géo <img src=x onerror=alert(1)>";
    let t = now();
    let m = page.app.moodle();
    m.reply(
        "core_enrol_get_users_courses",
        &[("userid", "7")],
        json!([{"id": 2, "shortname": "MATH-TG1", "fullname": "Mathématiques TG1"},
               {"id": 4, "shortname": "HG-TG1", "fullname": "Histoire-géographie", "displayname": course_name}]),
    );
    m.reply(
        "core_enrol_get_users_courses",
        &[("userid", "8")],
        json!([{"id": 3, "shortname": "PHYS101", "fullname": "Physique"}]),
    );
    m.reply(
        "mod_assign_get_assignments",
        &[("courseids[0]", "4")],
        json!({"courses": [{"id": 4, "fullname": "Histoire-géographie", "shortname": "HG-TG1", "assignments": [
            {"id": 11, "cmid": 41, "course": 4, "name": "Exposé <script>alert(1)</script>", "duedate": t + 3 * 86_400},
            {"id": 12, "cmid": 42, "course": 4, "name": "Carte des fleuves", "duedate": t + 86_400},
            {"id": 13, "cmid": 43, "course": 4, "name": "Dissertation (dans 20 jours)", "duedate": t + 20 * 86_400},
            {"id": 14, "cmid": 44, "course": 4, "name": "Déjà rendu hier", "duedate": t - 86_400},
            {"id": 15, "cmid": 45, "course": 4, "name": "Sans date", "duedate": 0}]}],
         "warnings": []}),
    );
    m.reply(
        "mod_forum_get_forums_by_courses",
        &[("courseids[0]", "4")],
        json!([{"id": 9, "course": 4, "type": "general", "name": "Forum"},
               {"id": 10, "course": 4, "type": "news", "name": "Annonces"}]),
    );
    m.reply(
        "mod_forum_get_forum_discussions",
        &[("forumid", "10")],
        json!({"discussions": [{"discussion": 31, "name": "Sortie au musée jeudi", "message": "<p>Rendez-vous à 9 h</p>", "created": t - 2 * 86_400}],
               "warnings": []}),
    );

    let r = tab_in_chromium(&page, "student", TEAM, "fr-FR").await;
    assert_eq!(r["state"], "course", "{r:#}");
    assert_eq!(r["lang"], "fr-FR");
    assert_eq!(r["name"], course_name, "shown as text");
    assert_eq!(r["injected"], 0, "no element came out of Moodle's text");
    assert_eq!(r["linkText"], "Ouvrir le cours dans Moodle");
    assert!(
        r["link"]
            .as_str()
            .unwrap()
            .ends_with("/course/view.php?id=4"),
        "{r:#}"
    );
    let due: Vec<(&str, &str, &str)> = r["due"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap(),
                d["href"].as_str().unwrap(),
                d["when"].as_str().unwrap(),
            )
        })
        .collect();
    let base = page.app.moodle().base_url();
    let base = base.trim_end_matches('/');
    let (near, later) = (
        format!("{base}/mod/assign/view.php?id=42"),
        format!("{base}/mod/assign/view.php?id=41"),
    );
    assert_eq!(
        due,
        vec![
            ("Carte des fleuves", near.as_str(), iso(t + 86_400).as_str()),
            (
                "Exposé <script>alert(1)</script>",
                later.as_str(),
                iso(t + 3 * 86_400).as_str()
            ),
        ],
        "due within 14 days, soonest first; past, undated and later ones left out"
    );
    assert!(
        r["due"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("à rendre le "),
        "{r:#}"
    );
    assert_eq!(r["news"], json!(["Sortie au musée jeudi"]));

    // The Teams locale decides the language, whatever the server guessed.
    let r = tab_in_chromium(&page, "student", TEAM, "en-GB").await;
    assert_eq!(r["state"], "course", "{r:#}");
    assert_eq!(r["linkText"], "Open the course in Moodle");
    assert!(r["due"][0]["text"].as_str().unwrap().starts_with("due "));

    // Not enrolled: a polite refusal and nothing of the course.
    let r = tab_in_chromium(&page, "outsider", TEAM, "fr-FR").await;
    assert_eq!(r["state"], "not-enrolled", "{r:#}");
    assert!(
        r["status"]
            .as_str()
            .unwrap()
            .starts_with("Désolé, ce cours est réservé à ses participants"),
        "{r:#}"
    );
    assert_eq!(r["name"], Value::Null);
    assert_eq!(r["due"], json!([]));

    // A team the sync never linked says so.
    let r = tab_in_chromium(&page, "student", UNLINKED_TEAM, "en-US").await;
    assert_eq!(r["state"], "unmapped", "{r:#}");
    assert!(
        r["status"]
            .as_str()
            .unwrap()
            .starts_with("This team is not linked to a Moodle course"),
        "{r:#}"
    );

    // The API behind it, without a browser: the refusal carries nothing of the course.
    let client = reqwest::Client::new();
    let api = |who: Option<&str>, team: &str| {
        let mut req = client.get(format!(
            "http://{}/connector/api/tab?team={team}",
            page.app.addr
        ));
        if let Some(aad) = who {
            req = req.bearer_auth(sso_token(aad, RESOURCE, TENANT_ID));
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (s, body) = api(Some(OUTSIDER_AAD), TEAM).await;
    assert_eq!(s, 403, "{body}");
    for secret in ["Histoire", "Exposé", "Carte", "musée", "view.php"] {
        assert!(!body.contains(secret), "{secret} leaked: {body}");
    }
    assert_eq!(api(None, TEAM).await.0, 401, "no token");
    assert_eq!(api(None, UNLINKED_TEAM).await.0, 401, "not even unmapped");
    let (s, body) = api(Some(STUDENT_AAD), "19:team@thread.tacv2").await;
    assert_eq!(s, 400, "a team id is a group GUID: {body}");
    let (s, body) = api(Some(STUDENT_AAD), &TEAM.to_ascii_uppercase()).await;
    assert_eq!(s, 200, "{body}");

    // A screenshot of the tab, for a person to look at.
    let shot = std::path::PathBuf::from(
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()),
    )
    .join("connector-tab.png");
    let _ = std::fs::remove_file(&shot);
    let url = format!(
        "{}/host.html?scenario=tab-screenshot&who=student&group={TEAM}&locale=fr-FR",
        page.host
    );
    let arg = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || {
        run_chromium(&[
            "--virtual-time-budget=15000".into(),
            "--window-size=1000,800".into(),
            arg,
            url,
        ])
    })
    .await
    .unwrap();
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "screenshot written: {}",
        shot.display()
    );
}
