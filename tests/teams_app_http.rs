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

#[tokio::test]
async fn anonymous_and_wrong_group_callers_are_refused_and_an_admin_builds_and_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path(), &[]).await;
    for (method, path) in [
        ("GET", "/teams-app/package"),
        ("GET", "/teams-app/status"),
        ("POST", "/teams-app/build"),
        ("POST", "/teams-app/install"),
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
    let (status, _) = call(&s, "GET", "/teams-app/package", Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing built yet");
    let (status, body) = call(&s, "POST", "/teams-app/build", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["blob"], "teams-app/1.0.0.zip");
    let (status, zip) = call(&s, "GET", "/teams-app/package", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bridge::teams_app::package::check_zip(&zip).unwrap(), vec![]);
    let (status, body) = call(&s, "POST", "/teams-app/install", Some(&admin)).await;
    assert_eq!(status, StatusCode::CONFLICT, "no Graph settings");
    assert!(String::from_utf8_lossy(&body).contains("GRAPH_CLIENT_ID"));
    let (status, _) = call(&s, "POST", "/teams-app/unknown", Some(&admin)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(&s, "GET", "/teams-app/status", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["latest"]["version"], "1.0.0");
}

#[tokio::test]
async fn no_configured_group_or_no_platform_authentication_refuses_even_a_real_admin() {
    let dir = tempfile::tempdir().unwrap();
    let admin = principal(GROUP, TENANT);
    let no_group = state(dir.path(), &[("ADMIN_GROUP_IDS", "")]).await;
    let (status, body) = call(&no_group, "POST", "/teams-app/build", Some(&admin)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("ADMIN_GROUP_IDS"));
    // Without the platform's authentication a client could have written the header itself.
    let no_easy_auth = state(dir.path(), &[("WEBSITE_AUTH_ENABLED", "")]).await;
    let (status, body) = call(&no_easy_auth, "POST", "/teams-app/build", Some(&admin)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("WEBSITE_AUTH_ENABLED"));
}
