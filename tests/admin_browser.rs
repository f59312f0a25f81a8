//! The admin page in headless Chromium with JavaScript on (issue 21): sign in through the form,
//! run a simulation from the page and watch the live progress the server-sent events write into
//! the page, then the report, the history and the trace; a tampered CSRF token refused; another
//! browser (anonymous) sent to the sign-in page; in App Service mode a principal of the wrong
//! group refused and one of the admin group let in (headers set the way the platform sets them).
//! A screenshot of each page goes to `$CARGO_TARGET_DIR/admin-screenshots/browser-*.png`.

use base64::Engine;
use bridge::app::AppState;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use testkit::browser::Browser;
use testkit::ent_data::{self, Spec};
use testkit::entra_double::EntraDouble;
use testkit::fake_moodle::FakeMoodle;

const PASSWORD: &str = "correct horse battery staple";
const GROUP: &str = "0a0a0a0a-0000-4000-8000-000000000001";
const TENANT: &str = "00000000-aaaa-4000-8000-000000000001";

struct Served {
    base: String,
    _state: AppState,
    _dir: tempfile::TempDir,
    _moodle: FakeMoodle,
}

/// The app on a real port (the browser needs one), with a directory export and a Moodle double
/// slow enough (150 ms a call, batches of 10) that a simulation lasts a few seconds.
async fn serve(extra: &[(&str, String)]) -> Served {
    bridge::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec::new(120);
    let ldif = dir.path().join("people.ldif");
    ent_data::write_ldif(&mut std::fs::File::create(&ldif).unwrap(), &spec).unwrap();
    let moodle = FakeMoodle::start().await;
    moodle.lock().latency = Some(Duration::from_millis(150));
    let s = moodle.settings();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in [
        (
            "SQLITE_PATH",
            dir.path().join("s.sqlite").display().to_string(),
        ),
        ("BLOB_DIR", dir.path().join("blobs").display().to_string()),
        ("SYNC_SOURCE", "ldif".into()),
        ("SYNC_SOURCE_FILE", ldif.display().to_string()),
        ("SYNC_BATCH_SIZE", "10".into()),
        ("MOODLE_URL", s.url.to_string()),
        ("MOODLE_TOKEN", s.token.expose().to_string()),
        ("LOG_LEVEL", "warn".into()),
    ] {
        env.insert(k.into(), v);
    }
    // Bound first: SERVE_ADDR (the default OIDC redirect URI) names the real port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    env.insert("SERVE_ADDR".into(), addr.to_string());
    for (k, v) in extra {
        env.insert(k.to_string(), v.clone());
    }
    let settings =
        bridge::settings::Settings::load(&mut bridge::config::Source::from_map(env)).unwrap();
    let state = AppState::build(settings, true).await.unwrap();
    state.store.ensure_tables().await.unwrap();
    let router = bridge::app::public_router(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Served {
        base,
        _state: state,
        _dir: dir,
        _moodle: moodle,
    }
}

fn shot(name: &str) -> PathBuf {
    let d = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("admin-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(format!("browser-{name}.png"));
    let _ = std::fs::remove_file(&p);
    p
}

fn assert_png(p: &std::path::Path) {
    let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    assert!(len > 10_000, "{} is {len} bytes", p.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_run_a_simulation_and_watch_it_live_in_chromium() {
    let app = serve(&[("ADMIN_PASSWORD_HASH", testkit::cheap_admin_hash(PASSWORD))]).await;
    let base = app.base.clone();
    tokio::task::spawn_blocking(move || {
        let browser = Browser::launch();
        let tab = browser.tab(false);
        let wait = Duration::from_secs(20);

        // Anonymous: the page sends the browser to the sign-in form.
        tab.goto(&format!("{base}/manage/sync?lang=en"));
        tab.wait_until("location.pathname === '/manage/sync/login'", wait);
        assert!(tab.text().contains("Admin password"), "{}", tab.text());
        let p = shot("login");
        tab.screenshot(&p);
        assert_png(&p);

        // A wrong password is refused on the page.
        tab.eval("document.querySelector('input[name=password]').value = 'wrong password'; document.querySelector('form').submit(); true");
        tab.wait_until("document.body && document.body.innerText.includes('Wrong password')", wait);
        // The right one signs in (the session cookie is HttpOnly: the page cannot read it).
        tab.eval(&format!("document.querySelector('input[name=password]').value = {PASSWORD:?}; document.querySelector('form').submit(); true"));
        tab.wait_until("location.pathname === '/manage/sync' && !!document.querySelector('form[action=\"/manage/sync/run\"]')", wait);
        assert_eq!(tab.eval("document.cookie"), json!(""), "HttpOnly cookies are invisible to scripts");
        let overview = tab.text();
        for t in ["User accounts", "Cohorts", "Role assignments", "Simulation", "No run yet.", "SyncTimer"] {
            assert!(overview.contains(t), "{t} missing: {overview}");
        }
        let p = shot("overview-empty");
        tab.screenshot(&p);
        assert_png(&p);

        // A tampered CSRF token is refused and starts nothing.
        tab.eval("var f = document.querySelector('form[action=\"/manage/sync/run\"]'); f.querySelector('input[name=csrf]').value = '00'; f.querySelector('input[name=simulate]').checked = true; f.submit(); true");
        tab.wait_until("document.body && document.body.innerText.includes('CSRF')", wait);
        assert!(tab.text().contains("Access refused"), "{}", tab.text());
        let p = shot("csrf-refused");
        tab.screenshot(&p);
        tab.goto(&format!("{base}/manage/sync?lang=en"));
        assert!(tab.text().contains("No run yet."), "the refused form started nothing");

        // Run a simulation from the page: the run page follows it live.
        tab.eval("document.querySelector('input[name=simulate]').checked = true; document.querySelector('input[name=verbose]').checked = true; document.querySelector('form[action=\"/manage/sync/run\"]').querySelector('button[type=submit]').click(); true");
        tab.wait_until("location.pathname.startsWith('/manage/sync/runs/')", wait);
        let run_id = tab.url().split("/manage/sync/runs/").nth(1).unwrap().split('?').next().unwrap().to_string();
        let mut seen: Vec<(u64, u64)> = Vec::new();
        let mut running_shot = false;
        let end = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let v = tab.eval("(function(){var r=document.getElementById('read'),p=document.getElementById('planned');return r&&p?[+r.textContent,+p.textContent]:null;})()");
            if let Some(a) = v.as_array() {
                let pair = (a[0].as_u64().unwrap_or(0), a[1].as_u64().unwrap_or(0));
                if seen.last() != Some(&pair) {
                    seen.push(pair);
                }
                if !running_shot && pair.1 > 0 {
                    let p = shot("run-live");
                    tab.screenshot(&p);
                    running_shot = true;
                }
            } else if tab.text().contains("simulation: nothing written") {
                break;
            }
            assert!(std::time::Instant::now() < end, "the run did not finish: {}", tab.text());
            std::thread::sleep(Duration::from_millis(40));
        }
        // The numbers moved in the open page (events, not reloads: the page loaded once while
        // running, with the counts of that moment).
        assert!(seen.len() >= 3, "live progress seen: {seen:?}");
        assert!(seen.windows(2).all(|w| w[1].1 >= w[0].1), "planned never goes down: {seen:?}");
        assert!(seen.last().unwrap().1 > seen[0].1, "planned grew while watching: {seen:?}");
        let report = tab.text();
        for t in ["simulation: nothing written", "users", "Full trace"] {
            assert!(report.contains(t), "{t} missing: {report}");
        }
        let p = shot("run-report");
        tab.screenshot(&p);
        assert_png(&p);

        // The trace, and the history with the run, its trigger and options.
        tab.goto(&format!("{base}/manage/sync/runs/{run_id}/trace"));
        assert!(tab.text().contains(&run_id), "{}", tab.text());
        tab.goto(&format!("{base}/manage/sync?lang=en"));
        let history = tab.text();
        assert!(history.contains(&run_id) && history.contains("page") && history.contains("simulation"), "{history}");
        let p = shot("overview-history");
        tab.screenshot(&p);
        assert_png(&p);
        tab.goto(&format!("{base}/manage/sync?lang=fr"));
        assert!(tab.text().contains("Lancer une synchronisation"));
        let p = shot("overview-fr");
        tab.screenshot(&p);

        // Another browser, not signed in: every page sends it to sign in, the event stream too.
        let other = browser.tab(true);
        for path in ["/manage/sync", &format!("/manage/sync/runs/{run_id}"), &format!("/manage/sync/runs/{run_id}/trace")] {
            other.goto(&format!("{base}{path}"));
            other.wait_until("location.pathname === '/manage/sync/login'", wait);
        }
        let status = other.eval("fetch('/manage/sync/run', {method: 'POST', body: new URLSearchParams({simulate: '1'})}).then(r => r.status)");
        assert_eq!(status, json!(401), "an anonymous POST is refused");

        // Signing out ends the session.
        tab.eval("document.querySelector('form[action=\"/manage/sync/logout\"]').submit(); true");
        tab.wait_until("location.pathname === '/manage/sync/login'", wait);
        tab.goto(&format!("{base}/manage/sync"));
        tab.wait_until("location.pathname === '/manage/sync/login'", wait);
    })
    .await
    .unwrap();
}

fn principal(group: &str) -> String {
    let json = json!({
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_service_principals_are_checked_in_chromium() {
    let app = serve(&[
        ("WEBSITE_AUTH_ENABLED", "True".into()),
        ("ADMIN_GROUP_IDS", GROUP.into()),
        ("ADMIN_TENANT_ID", TENANT.into()),
    ])
    .await;
    let base = app.base.clone();
    tokio::task::spawn_blocking(move || {
        let browser = Browser::launch();
        let wait = Duration::from_secs(20);
        // No principal: 401.
        let anon = browser.tab(true);
        anon.goto(&format!("{base}/manage/sync"));
        assert!(
            anon.text().contains("authentication required") || anon.text().contains("error"),
            "{}",
            anon.text()
        );
        assert!(!anon.text().contains("Run a sync"));
        // A principal of another group: 403, saying why.
        let wrong = browser.tab(true);
        wrong.extra_headers(
            json!({"x-ms-client-principal": principal("0a0a0a0a-0000-4000-8000-000000000002")}),
        );
        wrong.goto(&format!("{base}/manage/sync"));
        wrong.wait_until(
            "document.body && document.body.innerText.includes('not a member of an admin group')",
            wait,
        );
        assert!(
            wrong.text().contains("Access refused"),
            "an error page, not JSON: {}",
            wrong.text()
        );
        let p = shot("app-service-wrong-group");
        wrong.screenshot(&p);
        // The admin group's member gets the page, and its forms carry the CSRF token.
        let admin = browser.tab(true);
        admin.extra_headers(json!({"x-ms-client-principal": principal(GROUP)}));
        admin.goto(&format!("{base}/manage/sync?lang=en"));
        admin.wait_until(
            "!!document.querySelector('form[action=\"/manage/sync/run\"]')",
            wait,
        );
        assert!(admin.text().contains("admin@school.example"));
        assert!(
            admin
                .eval("document.querySelector('input[name=csrf]').value.length")
                .as_u64()
                .unwrap()
                >= 64
        );
        let p = shot("app-service-admin");
        admin.screenshot(&p);
        assert_png(&p);
    })
    .await
    .unwrap();
}

const CLIENT: &str = "c1e00000-0000-4000-8000-000000000021";

fn id_claims(nonce: &str, group: &str) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        "aud": CLIENT, "tid": TENANT, "oid": "11111111-0000-4000-8000-000000000001",
        "preferred_username": "it.admin@college.example", "nonce": nonce,
        "iat": now, "nbf": now - 60, "exp": now + 3600, "ver": "2.0", "groups": [group],
    })
}

/// The whole OpenID Connect round trip in a browser, with Entra on another site (`localhost`
/// against the app's `127.0.0.1`, as login.microsoftonline.com is against the school's host):
/// the Lax state cookie rides the cross-site return, and the Strict session cookie is sent once
/// the callback page has moved on by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_sign_in_across_sites_in_chromium() {
    let entra = EntraDouble::start("localhost", CLIENT).await;
    entra.sign_in_with(|nonce| id_claims(nonce, GROUP));
    let app = serve(&[
        ("ADMIN_OIDC_CLIENT_ID", CLIENT.into()),
        ("ADMIN_OIDC_CLIENT_SECRET", "test-client-secret".into()),
        ("ADMIN_OIDC_TENANT_ID", TENANT.into()),
        ("ADMIN_OIDC_AUTHORITY", format!("{}/", entra.base)),
        ("ADMIN_GROUP_IDS", GROUP.into()),
    ])
    .await;
    let base = app.base.clone();
    let e2 = entra.clone();
    tokio::task::spawn_blocking(move || {
        let browser = Browser::launch();
        let wait = Duration::from_secs(20);
        let tab = browser.tab(true);
        tab.goto(&format!("{base}/manage/sync?lang=en"));
        tab.wait_until("location.pathname === '/manage/sync/login'", wait);
        assert!(tab.text().contains("Sign in with Microsoft"), "{}", tab.text());
        let p = shot("login-oidc");
        tab.screenshot(&p);
        tab.eval("document.querySelector('a[href=\"/manage/sync/login/oidc\"]').click(); true");
        tab.wait_until("location.pathname === '/manage/sync' && !!document.querySelector('form[action=\"/manage/sync/run\"]')", wait);
        assert!(tab.text().contains("it.admin@college.example"), "{}", tab.text());
        assert!(tab.url().starts_with(&base), "back on the app: {}", tab.url());
        // Signing out, then a member of another group: refused on a page that says why.
        tab.eval("document.querySelector('form[action=\"/manage/sync/logout\"]').submit(); true");
        tab.wait_until("location.pathname === '/manage/sync/login'", wait);
        e2.sign_in_with(|nonce| id_claims(nonce, "0a0a0a0a-0000-4000-8000-000000000002"));
        tab.eval("document.querySelector('a[href=\"/manage/sync/login/oidc\"]').click(); true");
        tab.wait_until("document.body && document.body.innerText.includes('not a member of an admin group')", wait);
        assert!(tab.text().contains("Access refused"));
        let p = shot("oidc-wrong-group");
        tab.screenshot(&p);
        tab.goto(&format!("{base}/manage/sync"));
        tab.wait_until("location.pathname === '/manage/sync/login'", wait);
    })
    .await
    .unwrap();
    assert_eq!(
        entra.token_calls.lock().unwrap().len(),
        2,
        "one code exchange per sign-in"
    );
}
