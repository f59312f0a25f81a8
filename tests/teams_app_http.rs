//! `ManifestPublish` (issue 18 item 5): admin-only through App Service authentication plus the
//! admin group, failing closed; an admin builds the package and downloads it.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use bridge::app::{self, AppState};
use bridge::config::Source;
use bridge::settings::Settings;
use tower::ServiceExt;

const GROUP: &str = "0a0a0a0a-0000-4000-8000-000000000001";
const TENANT: &str = "00000000-aaaa-4000-8000-000000000001";

async fn state(dir: &std::path::Path, extra: &[(&str, &str)]) -> AppState {
    let mut map: std::collections::BTreeMap<String, String> = [
        ("BOT_APP_ID", "00000000-0000-4000-8000-00000000b001"),
        ("BOT_TENANT_ID", TENANT),
        ("BOT_APP_PASSWORD", "pw-123456"),
        ("PUBLIC_URL", "https://bridge.example.org"),
        ("MOODLE_URL", "https://moodle.example.org"),
        ("MOODLE_TOKEN", "tok-123456"),
        ("ADMIN_GROUP_IDS", GROUP),
        ("WEBSITE_AUTH_ENABLED", "True"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    map.insert(
        "SQLITE_PATH".into(),
        dir.join("b.sqlite").display().to_string(),
    );
    map.insert("BLOB_DIR".into(), dir.join("blobs").display().to_string());
    for (k, v) in extra {
        if v.is_empty() {
            map.remove(*k);
        } else {
            map.insert(k.to_string(), v.to_string());
        }
    }
    let settings = Settings::load(&mut Source::from_map(map)).expect("settings");
    AppState::build(settings, false).await.expect("state")
}

fn principal(group: &str, tenant: &str) -> String {
    let json = serde_json::json!({
        "auth_typ": "aad",
        "claims": [
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "11111111-0000-4000-8000-000000000001"},
            {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": tenant},
            {"typ": "preferred_username", "val": "admin@school.example"},
            {"typ": "groups", "val": group},
        ],
        "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
    });
    base64::engine::general_purpose::STANDARD.encode(json.to_string())
}

async fn call(
    state: &AppState,
    method: &str,
    path: &str,
    principal: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(p) = principal {
        req = req.header("x-ms-client-principal", p);
    }
    let resp = app::public_router(state.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap()
        .to_vec();
    (status, body)
}

async fn call_with(
    state: &AppState,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app::public_router(state.clone())
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap()
        .to_vec();
    (status, headers, body)
}

/// The caller's CSRF token, as an API client reads it: `GET status`.
async fn csrf(state: &AppState, principal: &str) -> String {
    let (status, body) = call(state, "GET", "/manage/teams-app/status", Some(principal)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["csrf"].as_str().expect("a CSRF token").to_string()
}

/// An admin's POST with its CSRF token in the header.
async fn post(state: &AppState, path: &str, principal: &str) -> (StatusCode, Vec<u8>) {
    let token = csrf(state, principal).await;
    let (status, _, body) = call_with(
        state,
        "POST",
        path,
        &[
            ("x-ms-client-principal", principal),
            ("x-csrf-token", &token),
        ],
        "",
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn anonymous_and_wrong_group_callers_are_refused_and_an_admin_builds_and_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path(), &[]).await;
    for (method, path) in [
        ("GET", "/manage/teams-app/package"),
        ("GET", "/manage/teams-app/status"),
        ("POST", "/manage/teams-app/build"),
        ("POST", "/manage/teams-app/install"),
        ("POST", "/manage/teams-app/publish"),
    ] {
        let (status, _) = call(&s, method, path, None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "anonymous {method} {path}"
        );
        let other = principal("0a0a0a0a-0000-4000-8000-000000000002", TENANT);
        let (status, body) = call(&s, method, path, Some(&other)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "wrong group {method} {path}");
        assert!(String::from_utf8_lossy(&body).contains("admin group"));
        let foreign = principal(GROUP, "99999999-aaaa-4000-8000-000000000001");
        let (status, _) = call(&s, method, path, Some(&foreign)).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "other tenant {method} {path}"
        );
    }
    assert!(
        !dir.path().join("blobs/teams-app").exists(),
        "nothing was built by a refused call"
    );

    let admin = principal(GROUP, TENANT);
    let (status, _) = call(&s, "GET", "/manage/teams-app/package", Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing built yet");
    let (status, body) = post(&s, "/manage/teams-app/build", &admin).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["blob"], "teams-app/1.0.0.zip");
    let (status, zip) = call(&s, "GET", "/manage/teams-app/package", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bridge::teams_app::package::check_zip(&zip).unwrap(), vec![]);
    let (status, body) = post(&s, "/manage/teams-app/install", &admin).await;
    assert_eq!(status, StatusCode::CONFLICT, "no Graph settings");
    assert!(String::from_utf8_lossy(&body).contains("GRAPH_CLIENT_ID"));
    let (status, _) = post(&s, "/manage/teams-app/unknown", &admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(&s, "GET", "/manage/teams-app/status", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["latest"]["version"], "1.0.0");
}

#[tokio::test]
async fn no_configured_group_or_no_platform_authentication_refuses_even_a_real_admin() {
    let dir = tempfile::tempdir().unwrap();
    let admin = principal(GROUP, TENANT);
    let no_group = state(dir.path(), &[("ADMIN_GROUP_IDS", "")]).await;
    let (status, body) = call(&no_group, "POST", "/manage/teams-app/build", Some(&admin)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("ADMIN_GROUP_IDS"));
    // Without the platform's authentication a client could have written the header itself.
    let no_easy_auth = state(dir.path(), &[("WEBSITE_AUTH_ENABLED", "")]).await;
    let (status, body) = call(
        &no_easy_auth,
        "POST",
        "/manage/teams-app/build",
        Some(&admin),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("WEBSITE_AUTH_ENABLED"));
}

/// `POST /teams-app/publish` in Azure's shape: no sign-in kept yet → 202 with the device code
/// while the app polls Entra, keeps the refresh token in Key Vault and publishes; the next call
/// publishes at once with the kept sign-in. Non-admins are refused before anything runs.
#[tokio::test]
async fn an_admin_publishes_over_http_first_by_device_code_then_with_the_kept_sign_in() {
    use testkit::graph_double::GraphDouble;
    use testkit::key_vault_double::{KeyVaultDouble, IDENTITY_HEADER};
    use testkit::teams_app_double::{self as apps, EntraDouble, Poll, DELEGATED_TOKEN, USER_CODE};
    bridge::install_crypto_provider();
    let graph = GraphDouble::start().await;
    apps::register(&graph);
    graph.accept_token(DELEGATED_TOKEN);
    let entra = EntraDouble::start(vec![Poll::Pending, Poll::Success]).await;
    let kv = KeyVaultDouble::start().await;
    let mut extra: Vec<(String, String)> = graph.env();
    extra.extend(
        [
            (
                "TEAMS_APP_PUBLISH_CLIENT_ID",
                "00000000-cccc-4ccc-8ccc-000000000004".to_string(),
            ),
            ("TEAMS_APP_AUTHORITY", entra.authority()),
            ("TEAMS_APP_TOKEN_VAULT_URL", kv.vault_url()),
            ("IDENTITY_ENDPOINT", kv.identity_endpoint()),
            ("IDENTITY_HEADER", IDENTITY_HEADER.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let extra: Vec<(&str, &str)> = extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path(), &extra).await;
    s.store.ensure_tables().await.unwrap();

    let other = principal("0a0a0a0a-0000-4000-8000-000000000002", TENANT);
    let (status, _) = call(&s, "POST", "/manage/teams-app/publish", Some(&other)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(entra.state.lock().unwrap().device_requests, 0);

    let admin = principal(GROUP, TENANT);
    let (status, body) = post(&s, "/manage/teams-app/publish", &admin).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["sign_in"]["user_code"], USER_CODE);
    assert_eq!(v["version"], "1.0.0");
    assert!(v["manual"].as_str().unwrap().contains("by hand"), "{v}");

    // The app keeps polling after the answer; the outcome shows in the status.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status_v = loop {
        let (_, body) = call(&s, "GET", "/manage/teams-app/status", Some(&admin)).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if v["publish"]["state"] == "published" {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "not published: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(status_v["publish"]["version"], "1.0.0");
    assert_eq!(apps::with_apps(&graph, |a| a.catalog.len()), 1);
    assert_eq!(
        kv.versions("teams-app-publish-refresh-token").len(),
        1,
        "the sign-in is kept in Key Vault"
    );

    // Next publish: the kept sign-in, no device code, answered at once.
    let (status, body) = post(&s, "/manage/teams-app/publish", &admin).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["state"], "already current", "{v}");
    assert_eq!(entra.state.lock().unwrap().device_requests, 1);
}

#[tokio::test]
async fn publish_over_http_without_the_sign_in_settings_says_what_to_set_and_where_to_upload() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path(), &[]).await;
    let admin = principal(GROUP, TENANT);
    let (status, body) = post(&s, "/manage/teams-app/publish", &admin).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert!(
        text.contains("TEAMS_APP_PUBLISH_CLIENT_ID") && text.contains("by hand"),
        "{text}"
    );
    // The package was built all the same, ready for the manual upload.
    let (status, _) = call(&s, "GET", "/manage/teams-app/package", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
}

/// Every POST needs the session's CSRF token: none, a wrong one or another admin's is refused
/// before anything runs; the admin page's form post (token in the body) is answered with a
/// redirect back to the page, where the outcome is recorded.
#[tokio::test]
async fn posts_without_the_sessions_csrf_token_are_refused_and_the_pages_form_post_returns_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path(), &[]).await;
    let admin = principal(GROUP, TENANT);
    for token in [None, Some("00"), Some("not hex")] {
        let mut h = vec![("x-ms-client-principal", admin.as_str())];
        if let Some(t) = token {
            h.push(("x-csrf-token", t));
        }
        let (status, _, body) = call_with(&s, "POST", "/manage/teams-app/build", &h, "").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "token {token:?}");
        assert!(String::from_utf8_lossy(&body).contains("CSRF"));
    }
    let form = [
        ("x-ms-client-principal", admin.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let (status, _, _) = call_with(&s, "POST", "/manage/teams-app/build", &form, "csrf=abc").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a wrong token in the form");
    assert!(
        !dir.path().join("blobs/teams-app").exists(),
        "nothing was built by a refused call"
    );

    let token = csrf(&s, &admin).await;
    let (status, headers, _) = call_with(
        &s,
        "POST",
        "/manage/teams-app/build",
        &form,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/manage/sync#teams-app");
    let (_, body) = call(&s, "GET", "/manage/teams-app/status", Some(&admin)).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["latest"]["version"], "1.0.0");
    assert_eq!(v["last_action"]["action"], "build");
    assert_eq!(v["last_action"]["ok"], true);
    assert_eq!(v["last_action"]["by"], "admin@school.example");
    // A failing action is recorded as failed, with its reason (no Graph settings here).
    let (status, _, _) = call_with(
        &s,
        "POST",
        "/manage/teams-app/install",
        &form,
        &format!("csrf={token}"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, body) = call(&s, "GET", "/manage/teams-app/status", Some(&admin)).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["last_action"]["action"], "install");
    assert_eq!(v["last_action"]["ok"], false);
    assert!(
        v["last_action"]["detail"]
            .as_str()
            .unwrap()
            .contains("GRAPH_CLIENT_ID"),
        "{v}"
    );
}

/// The Functions host reserves routes that start with `admin` (its own API) or `runtime`, and
/// refuses to load a function that claims one ("The specified route conflicts with one or more
/// built in routes", azure-functions-host ScriptHost.ValidateFunction): no function may.
#[test]
fn no_function_route_starts_with_a_segment_the_functions_host_reserves() {
    for f in bridge::host::FUNCTIONS {
        if let bridge::host::FunctionKind::Http { route, .. } = f.kind {
            let r = route.trim_start_matches('/').to_ascii_lowercase();
            assert!(
                !r.starts_with("admin") && !r.starts_with("runtime"),
                "{}: route {route} is reserved by the Functions host",
                f.name
            );
        }
    }
}
