//! The manual-sync admin page (`AdminSync`, issue 21): refusals on every route (anonymous,
//! wrong group, no sign-in configured, forged cookie, CSRF), the password sign-in and its rate
//! limit, a simulation run from the page followed to its report through server-sent events, the
//! history and trace, and screenshots of the pages in headless Chromium.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine;
use bridge::app::AppState;
use std::collections::BTreeMap;
use std::process::Command;
use testkit::ent_data::{self, Spec};
use testkit::fake_moodle::FakeMoodle;
use tower::ServiceExt;

const GROUP: &str = "0a0a0a0a-0000-4000-8000-000000000001";
const TENANT: &str = "00000000-aaaa-4000-8000-000000000001";
const PASSWORD: &str = "correct horse battery staple";

struct Page {
    state: AppState,
    _dir: tempfile::TempDir,
    _moodle: Option<FakeMoodle>,
}

async fn page(extra: &[(&str, String)], with_moodle: bool) -> Page {
    bridge::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let mut env: BTreeMap<String, String> = [
        ("SQLITE_PATH", dir.path().join("s.sqlite")),
        ("BLOB_DIR", dir.path().join("blobs")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string_lossy().to_string()))
    .collect();
    let moodle = if with_moodle {
        let spec = Spec::new(30);
        let ldif = dir.path().join("people.ldif");
        ent_data::write_ldif(&mut std::fs::File::create(&ldif).unwrap(), &spec).unwrap();
        let fake = FakeMoodle::start().await;
        let s = fake.settings();
        env.insert("SYNC_SOURCE".into(), "ldif".into());
        env.insert(
            "SYNC_SOURCE_FILE".into(),
            ldif.to_string_lossy().to_string(),
        );
        env.insert("MOODLE_URL".into(), s.url.to_string());
        env.insert("MOODLE_TOKEN".into(), s.token.expose().to_string());
        Some(fake)
    } else {
        None
    };
    for (k, v) in extra {
        env.insert(k.to_string(), v.clone());
    }
    let settings =
        bridge::settings::Settings::load(&mut bridge::config::Source::from_map(env)).unwrap();
    let state = AppState::build(settings, true).await.unwrap();
    state.store.ensure_tables().await.unwrap();
    Page {
        state,
        _dir: dir,
        _moodle: moodle,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn call(
    p: &Page,
    method: &str,
    uri: &str,
    headers: &[(&str, String)],
    form: Option<String>,
) -> Answer {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    let body = match form {
        Some(f) => {
            b = b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(f)
        }
        None => Body::empty(),
    };
    let res = bridge::app::public_router(p.state.clone())
        .oneshot(b.body(body).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 16 << 20)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).to_string(),
    }
}

fn principal(group: &str) -> String {
    let json = serde_json::json!({
        "auth_typ": "aad",
        "claims": [
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "11111111-0000-4000-8000-000000000001"},
            {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": TENANT},
            {"typ": "preferred_username", "val": "admin@school.example"},
            {"typ": "groups", "val": group},
        ],
    });
    base64::engine::general_purpose::STANDARD.encode(json.to_string())
}

/// Every admin route, with a method it answers.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/manage/sync"),
    ("POST", "/manage/sync/run"),
    ("GET", "/manage/sync/runs/20260101T000000Z-00000000"),
    ("GET", "/manage/sync/runs/20260101T000000Z-00000000/events"),
    ("GET", "/manage/sync/runs/20260101T000000Z-00000000/trace"),
    ("POST", "/manage/sync/logout"),
    ("GET", "/manage/sync/anything"),
    // ManifestPublish: the same extractor (and, for POSTs, the same CSRF check).
    ("GET", "/manage/teams-app/status"),
    ("GET", "/manage/teams-app/package"),
    ("POST", "/manage/teams-app/build"),
    ("POST", "/manage/teams-app/publish"),
];

fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

fn assert_refused(a: &Answer, what: &str) {
    assert!(
        a.status == StatusCode::UNAUTHORIZED
            || a.status == StatusCode::FORBIDDEN
            || (a.status == StatusCode::SEE_OTHER
                && a.headers[header::LOCATION] == "/manage/sync/login"),
        "{what}: {} {}",
        a.status,
        a.body
    );
    assert!(!a.body.contains("<form"), "{what}: page content leaked");
}

#[tokio::test]
async fn every_admin_route_refuses_anonymous_and_wrong_group_requests() {
    // In Azure: App Service authentication plus the admin group.
    let azure = page(
        &[
            ("WEBSITE_AUTH_ENABLED", "True".into()),
            ("ADMIN_GROUP_IDS", GROUP.into()),
            ("ADMIN_TENANT_ID", TENANT.into()),
        ],
        false,
    )
    .await;
    let wrong = principal("0a0a0a0a-0000-4000-8000-000000000002");
    for (m, uri) in ROUTES {
        let anon = call(&azure, m, uri, &[], Some(String::new())).await;
        assert_eq!(anon.status, StatusCode::UNAUTHORIZED, "anonymous {m} {uri}");
        assert_refused(&anon, &format!("anonymous {m} {uri}"));
        let w = call(
            &azure,
            m,
            uri,
            &[("x-ms-client-principal", wrong.clone())],
            Some(String::new()),
        )
        .await;
        assert_eq!(w.status, StatusCode::FORBIDDEN, "wrong group {m} {uri}");
        assert_refused(&w, &format!("wrong group {m} {uri}"));
    }
    let ok = call(
        &azure,
        "GET",
        "/manage/sync",
        &[("x-ms-client-principal", principal(GROUP))],
        None,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(ok.body.contains("admin@school.example"));
    // A member's form still needs its CSRF token.
    let no_csrf = call(
        &azure,
        "POST",
        "/manage/sync/run",
        &[("x-ms-client-principal", principal(GROUP))],
        Some(form(&[("simulate", "1")])),
    )
    .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN, "{}", no_csrf.body);
    assert!(no_csrf.body.contains("CSRF"));

    // Under serve with a password: anonymous browsers are sent to sign in, anything else refused;
    // a forged or foreign cookie is anonymous.
    let serve = page(
        &[("ADMIN_PASSWORD_HASH", testkit::cheap_admin_hash(PASSWORD))],
        false,
    )
    .await;
    let forged = format!(
        "bridge_admin=v1.99999999999.{}.{}",
        "00".repeat(16),
        "ab".repeat(32)
    );
    for (m, uri) in ROUTES {
        for cookie in [None, Some(forged.clone())] {
            let h: Vec<(&str, String)> = cookie.iter().map(|c| ("cookie", c.clone())).collect();
            let a = call(&serve, m, uri, &h, Some(String::new())).await;
            assert_refused(&a, &format!("{m} {uri} cookie {}", cookie.is_some()));
            if *m == "POST" {
                assert_eq!(a.status, StatusCode::UNAUTHORIZED);
            } else {
                assert_eq!(a.status, StatusCode::SEE_OTHER);
            }
        }
        // App Service headers mean nothing outside App Service.
        let a = call(
            &serve,
            m,
            uri,
            &[("x-ms-client-principal", principal(GROUP))],
            Some(String::new()),
        )
        .await;
        assert_refused(&a, &format!("{m} {uri} with a client-sent principal"));
    }

    // Nothing configured: every route refused, saying what to set.
    let bare = page(&[], false).await;
    for (m, uri) in ROUTES.iter().chain(&[("GET", "/manage/sync/login")]) {
        let a = call(&bare, m, uri, &[], Some(String::new())).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{m} {uri}");
        assert!(a.body.contains("ADMIN_PASSWORD_HASH"), "{}", a.body);
    }
}

fn set_cookie(a: &Answer, name: &str) -> String {
    let c = a
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", a.headers));
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/manage"] {
        assert!(c.contains(attr), "{c} lacks {attr}");
    }
    c.split(';').next().unwrap().to_string()
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + html[at..].find('"').unwrap()].to_string()
}

/// Sign in through the form; the session cookie.
async fn sign_in(p: &Page) -> String {
    let form_page = call(p, "GET", "/manage/sync/login?lang=fr", &[], None).await;
    assert_eq!(form_page.status, StatusCode::OK);
    assert!(form_page.body.contains("Mot de passe administrateur"));
    let login = set_cookie(&form_page, "bridge_admin_login");
    let csrf = csrf_of(&form_page.body);
    let a = call(
        p,
        "POST",
        "/manage/sync/login",
        &[("cookie", login)],
        Some(form(&[
            ("csrf", &csrf),
            ("password", PASSWORD),
            ("lang", "fr"),
        ])),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    set_cookie(&a, "bridge_admin")
}

#[tokio::test]
async fn login_attempts_are_rate_limited_and_need_the_form_token() {
    let p = page(
        &[("ADMIN_PASSWORD_HASH", testkit::cheap_admin_hash(PASSWORD))],
        false,
    )
    .await;
    let f = call(&p, "GET", "/manage/sync/login", &[], None).await;
    let login = set_cookie(&f, "bridge_admin_login");
    let csrf = csrf_of(&f.body);
    let no_token = call(
        &p,
        "POST",
        "/manage/sync/login",
        &[("cookie", login.clone())],
        Some(form(&[("password", PASSWORD)])),
    )
    .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let a = call(
            &p,
            "POST",
            "/manage/sync/login",
            &[("cookie", login.clone())],
            Some(form(&[("csrf", &csrf), ("password", "guess")])),
        )
        .await;
        statuses.push(a.status.as_u16());
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(a.headers.contains_key(header::RETRY_AFTER));
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    // Even the right password waits now.
    let a = call(
        &p,
        "POST",
        "/manage/sync/login",
        &[("cookie", login)],
        Some(form(&[("csrf", &csrf), ("password", PASSWORD)])),
    )
    .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
}

fn shots_dir() -> std::path::PathBuf {
    let d = std::path::PathBuf::from(
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()),
    )
    .join("admin-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The HTML as served, saved and photographed by headless Chromium (no cookie needed: the page
/// works without JavaScript, so the saved copy shows what the admin saw).
fn screenshot(name: &str, html: &str) -> std::path::PathBuf {
    let dir = shots_dir();
    let file = dir.join(format!("{name}.html"));
    std::fs::write(&file, html).unwrap();
    let shot = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&shot);
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1200,1400",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--screenshot={}", shot.display()),
            &format!("file://{}", file.display()),
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {chromium} (scripts/install-test-deps.sh installs it): {e}")
        });
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "screenshot {} not written: {}",
        shot.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    shot
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_run_a_simulation_follow_it_live_and_find_it_in_the_history() {
    let p = page(
        &[("ADMIN_PASSWORD_HASH", testkit::cheap_admin_hash(PASSWORD))],
        true,
    )
    .await;
    let session = sign_in(&p).await;
    let auth = [("cookie", session.clone())];
    let overview = call(&p, "GET", "/manage/sync?lang=en", &auth, None).await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    for text in [
        "User accounts",
        "Only this user",
        "Cohorts",
        "Role assignments",
        "Force all entries",
        "Update existing only",
        "Simulation",
        "More trace output",
        "Disable the automatic cohort lock",
        "Warning: without the lock",
        "SyncTimer",
        "SYNC_SCHEDULE",
        "moodle",
        "No run yet.",
    ] {
        assert!(overview.body.contains(text), "{text} missing");
    }
    let fr = call(
        &p,
        "GET",
        "/manage/sync",
        &[
            ("cookie", session.clone()),
            ("accept-language", "fr-FR,fr;q=0.9".into()),
        ],
        None,
    )
    .await;
    assert!(
        fr.body.contains("Lancer une synchronisation"),
        "French from the browser"
    );
    let csrf = csrf_of(&overview.body);

    // A forged token is refused and starts nothing.
    let bad = call(
        &p,
        "POST",
        "/manage/sync/run",
        &auth,
        Some(form(&[("csrf", "00"), ("users", "1"), ("simulate", "1")])),
    )
    .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);

    let started = call(
        &p,
        "POST",
        "/manage/sync/run",
        &auth,
        Some(form(&[
            ("csrf", &csrf),
            ("lang", "en"),
            ("users", "1"),
            ("cohorts", "1"),
            ("roles", "1"),
            ("simulate", "1"),
            ("verbose", "1"),
        ])),
    )
    .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let at = started.body.find("/manage/sync/runs/").unwrap() + "/manage/sync/runs/".len();
    let run_id: String = started.body[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();

    // The live stream: progress events, then the report, then it ends.
    let events = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        call(
            &p,
            "GET",
            &format!("/manage/sync/runs/{run_id}/events"),
            &auth,
            None,
        ),
    )
    .await
    .expect("the event stream ends with the run");
    assert_eq!(events.status, StatusCode::OK);
    assert_eq!(events.headers[header::CONTENT_TYPE], "text/event-stream");
    assert!(events.body.contains("event: report"), "{}", events.body);
    assert!(
        events.body.contains("simulation: nothing written"),
        "{}",
        events.body
    );

    let run = call(
        &p,
        "GET",
        &format!("/manage/sync/runs/{run_id}?lang=en"),
        &auth,
        None,
    )
    .await;
    assert_eq!(run.status, StatusCode::OK);
    assert!(
        run.body.contains("simulation: nothing written"),
        "{}",
        run.body
    );
    assert!(run.body.contains("users"));
    let trace = call(
        &p,
        "GET",
        &format!("/manage/sync/runs/{run_id}/trace"),
        &auth,
        None,
    )
    .await;
    assert_eq!(trace.status, StatusCode::OK);
    assert!(trace.body.contains(&run_id), "{}", trace.body);

    let after = call(&p, "GET", "/manage/sync?lang=en", &auth, None).await;
    assert!(after.body.contains(&run_id), "history lists the run");
    assert!(after.body.contains(">page<"), "trigger shown");
    assert!(after
        .body
        .contains(&format!("/manage/sync/runs/{run_id}/trace")));

    // Screenshots for a person to look at.
    screenshot("admin-sync", &after.body);
    screenshot("admin-sync-fr", &fr.body);
    screenshot("admin-run", &run.body);
    let login = call(&p, "GET", "/manage/sync/login", &[], None).await;
    screenshot("admin-login", &login.body);

    // The same session reaches ManifestPublish (the cookie's path covers /manage), and its
    // form posts need the session's token.
    let st = call(&p, "GET", "/manage/teams-app/status", &auth, None).await;
    assert_eq!(st.status, StatusCode::OK, "{}", st.body);
    let forged = call(
        &p,
        "POST",
        "/manage/teams-app/build",
        &auth,
        Some(form(&[("csrf", "00")])),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let built = call(
        &p,
        "POST",
        "/manage/teams-app/build",
        &auth,
        Some(form(&[("csrf", &csrf)])),
    )
    .await;
    assert_eq!(built.status, StatusCode::SEE_OTHER, "{}", built.body);
    let shown = call(&p, "GET", "/manage/sync?lang=en", &auth, None).await;
    assert!(shown.body.contains("id=teams-app"), "{}", shown.body);
    assert!(shown.body.contains("Last action:"), "{}", shown.body);

    // Signing out ends the browser's session cookie.
    let out = call(
        &p,
        "POST",
        "/manage/sync/logout",
        &auth,
        Some(form(&[("csrf", &csrf)])),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    // ... and on the server: a copy of the cookie kept elsewhere no longer signs anyone in.
    let again = call(&p, "GET", "/manage/sync", &auth, None).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.body);
    assert_eq!(again.headers[header::LOCATION], "/manage/sync/login");
    let again = call(&p, "GET", "/manage/teams-app/status", &auth, None).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let again = call(
        &p,
        "POST",
        "/manage/sync/run",
        &auth,
        Some(form(&[
            ("csrf", &csrf),
            ("users", "on"),
            ("simulate", "on"),
        ])),
    )
    .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_users_run_from_the_page_through_the_cli_path_into_the_report_and_history() {
    let graph = testkit::graph_double::GraphDouble::start().await;
    for (id, upn) in [
        (
            "11111111-1111-4111-8111-000000000001",
            "claire.martin@ecole.example",
        ),
        (
            "11111111-1111-4111-8111-000000000002",
            "louis.bernard@ecole.example",
        ),
    ] {
        graph.lock().users.upsert(serde_json::json!({
            "id": id, "userPrincipalName": upn, "mail": upn, "givenName": "Demo",
            "surname": "User", "accountEnabled": true,
        }));
    }
    let mut extra: Vec<(&str, String)> =
        vec![("ADMIN_PASSWORD_HASH", testkit::cheap_admin_hash(PASSWORD))];
    let genv = graph.env();
    for (k, v) in &genv {
        extra.push((k.as_str(), v.clone()));
    }
    let p = page(&extra, true).await;
    // Claire has a Moodle account already (linked by username = UPN); Louis has none (created).
    p._moodle
        .as_ref()
        .unwrap()
        .lock()
        .insert_user(testkit::fake_moodle::FakeUser {
            username: "claire.martin@ecole.example".into(),
            firstname: "Claire".into(),
            lastname: "Martin".into(),
            email: "claire.martin@ecole.example".into(),
            auth: "oauth2".into(),
            ..Default::default()
        });
    let session = sign_in(&p).await;
    let auth = [("cookie", session.clone())];
    let overview = call(&p, "GET", "/manage/sync?lang=en", &auth, None).await;
    assert!(
        overview.body.contains("name=\"entra\""),
        "Entra users offered with Graph configured"
    );
    let csrf = csrf_of(&overview.body);
    let started = call(
        &p,
        "POST",
        "/manage/sync/run",
        &auth,
        Some(form(&[("csrf", &csrf), ("lang", "en"), ("entra", "1")])),
    )
    .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let at = started.body.find("/manage/sync/runs/").unwrap() + "/manage/sync/runs/".len();
    let run_id: String = started.body[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let events = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        call(
            &p,
            "GET",
            &format!("/manage/sync/runs/{run_id}/events"),
            &auth,
            None,
        ),
    )
    .await
    .expect("the run ends");
    assert!(events.body.contains("event: report"), "{}", events.body);
    let run = call(
        &p,
        "GET",
        &format!("/manage/sync/runs/{run_id}?lang=en"),
        &auth,
        None,
    )
    .await;
    assert!(run.body.contains("entra-users"), "{}", run.body);
    // Only Entra ran: no directory entity in the report.
    assert!(!run.body.contains("<td>users</td>"), "{}", run.body);
    let moodle = p._moodle.as_ref().unwrap();
    let louis = moodle
        .lock()
        .user_by_username("louis.bernard@ecole.example")
        .cloned();
    assert!(louis.is_some(), "created by the Entra pass");
    // The stored report (history) has the Entra counts: one created, one linked.
    let history = bridge::sync::run::latest_reports(&p.state.store, 5)
        .await
        .unwrap();
    let r = history
        .iter()
        .find(|r| r.run_id == run_id)
        .expect("in the history");
    let c = &r.counts[&bridge::sync::entra::ENTITY];
    assert_eq!(c.created, 1, "{}", r.render());
    assert_eq!(
        r.entra.as_ref().map(|e| e.linked),
        Some(1),
        "{}",
        r.render()
    );
    assert!(r.options.entra, "the option is recorded with the run");
    let after = call(&p, "GET", "/manage/sync?lang=en", &auth, None).await;
    assert!(after.body.contains(&run_id));
}

#[tokio::test]
async fn a_one_time_link_signs_a_browser_in_once() {
    let p = page(
        &[("ADMIN_PASSWORD_HASH", testkit::cheap_admin_hash(PASSWORD))],
        false,
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let token = bridge::admin::link::create(&p.state.store, now)
        .await
        .unwrap();
    let url = format!("/manage/sync/login/link?token={token}");
    let a = call(&p, "GET", &url, &[], None).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.headers[header::LOCATION], "/manage/sync");
    let session = set_cookie(&a, "bridge_admin");
    let overview = call(
        &p,
        "GET",
        "/manage/sync?lang=en",
        &[("cookie", session)],
        None,
    )
    .await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    assert!(overview.body.contains("Run a sync"));
    // Used: a second visit, a made-up token and no token are refused, with what to do.
    for u in [
        url.clone(),
        format!("/manage/sync/login/link?token={}", "ab".repeat(32)),
        "/manage/sync/login/link".to_string(),
    ] {
        let a = call(&p, "GET", &u, &[], None).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{u}: {}", a.body);
        assert!(a.body.contains("handler admin sign-in-link"), "{}", a.body);
        assert!(a.headers.get(header::SET_COOKIE).is_none());
    }
    // Without a serve sign-in configured, a link (even a valid one) signs nobody in.
    let bare = page(&[], false).await;
    let token = bridge::admin::link::create(&bare.state.store, now)
        .await
        .unwrap();
    let a = call(
        &bare,
        "GET",
        &format!("/manage/sync/login/link?token={token}"),
        &[],
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("ADMIN_PASSWORD_HASH"));
}

/// Post the run form with `fields` and wait for the run's report (server-sent events).
async fn run_from_page(p: &Page, auth: &[(&str, String)], fields: &[(&str, &str)]) -> String {
    let overview = call(p, "GET", "/manage/sync?lang=en", auth, None).await;
    let csrf = csrf_of(&overview.body);
    let mut pairs = vec![("csrf", csrf.as_str()), ("lang", "en")];
    pairs.extend_from_slice(fields);
    let started = call(p, "POST", "/manage/sync/run", auth, Some(form(&pairs))).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.body);
    let at = started.body.find("/manage/sync/runs/").unwrap() + "/manage/sync/runs/".len();
    let run_id: String = started.body[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let events = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        call(
            p,
            "GET",
            &format!("/manage/sync/runs/{run_id}/events"),
            auth,
            None,
        ),
    )
    .await
    .expect("the run ends");
    assert!(events.body.contains("event: report"), "{}", events.body);
    run_id
}

/// The overview lists every course waiting for its team from the store (course, reason, since,
/// in French and English), also after a run that had nothing to do; the course goes from the
/// list once its teacher is linked to Entra and its team requested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn courses_waiting_for_a_linked_owner_are_listed_until_their_team_is_created() {
    use testkit::graph_double::{teams, GraphDouble};
    let graph = GraphDouble::start().await;
    teams::with(&graph, |t| t.polls_to_finish = 0);
    let mut extra: Vec<(&str, String)> = vec![
        ("ADMIN_PASSWORD_HASH", testkit::cheap_admin_hash(PASSWORD)),
        ("TEAMS_COURSES", "all".into()),
    ];
    let genv = graph.env();
    for (k, v) in &genv {
        extra.push((k.as_str(), v.clone()));
    }
    let p = page(&extra, true).await;
    let (course, teacher) = {
        let mut m = p._moodle.as_ref().unwrap().lock();
        let course = m.insert_course("PHYS-2B", "PHYS-2B-2026", 1);
        m.courses.last_mut().unwrap().fullname = "Physique <2nde B>".into();
        let teacher = m.insert_user(testkit::fake_moodle::FakeUser {
            username: "m.durand".into(),
            firstname: "Marc".into(),
            lastname: "Durand".into(),
            email: "m.durand@ecole.example".into(),
            auth: "manual".into(),
            ..Default::default()
        });
        m.enrolments.insert((3, teacher, course));
        (course, teacher)
    };
    let session = sign_in(&p).await;
    let auth = [("cookie", session.clone())];
    let before = call(&p, "GET", "/manage/sync?lang=en", &auth, None).await;
    assert!(
        before.body.contains("Courses waiting for their team (0)"),
        "the Teams sync is on: the list is shown, empty"
    );
    for _ in 0..2 {
        // The second run has nothing new to do: the list still comes from the store.
        run_from_page(&p, &auth, &[("teams", "1")]).await;
    }
    let en = call(&p, "GET", "/manage/sync?lang=en", &auth, None).await;
    let fr = call(&p, "GET", "/manage/sync?lang=fr", &auth, None).await;
    let since = bridge::teams_sync::pending::list(&p.state.store)
        .await
        .unwrap()[0]
        .since
        .clone();
    let shown_since = since.get(..16).unwrap().replace('T', " ");
    for (html, title, reason) in [
        (
            &en.body,
            "Courses waiting for their team (1)",
            "none of the 1 owner(s) is linked to an Entra account",
        ),
        (
            &fr.body,
            "Cours en attente de leur équipe (1)",
            "aucun des 1 propriétaire(s) n&#39;est lié à un compte Entra",
        ),
    ] {
        assert!(html.contains(title), "{html}");
        assert!(
            html.contains("Physique &lt;2nde B&gt;"),
            "escaped course name"
        );
        assert!(html.contains(&format!("(id {course})")));
        assert!(html.contains(reason), "{reason} in {html}");
        assert!(
            html.contains(&format!("{shown_since} UTC")),
            "since {since}"
        );
    }
    let shot = screenshot("overview-pending-fr", &fr.body);
    eprintln!("screenshot: {}", shot.display());

    // The teacher is linked (as the Entra sync would): the next run requests the team.
    let entra = "11111111-1111-4111-8111-0000000000aa";
    p.state
        .store
        .upsert(
            bridge::store::tables::MAPPINGS,
            &bridge::teams_sync::users::link_row(entra, teacher),
        )
        .await
        .unwrap();
    run_from_page(&p, &auth, &[("teams", "1")]).await;
    assert_eq!(teams::with(&graph, |t| t.teams.len()), 1, "team created");
    let after = call(&p, "GET", "/manage/sync?lang=en", &auth, None).await;
    assert!(
        after.body.contains("Courses waiting for their team (0)"),
        "{}",
        after.body
    );
    assert!(
        !after.body.contains("Physique &lt;2nde B&gt; <span"),
        "{}",
        after.body
    );
}
