//! OpenID Connect sign-in to the admin page under `serve` (issue 21), against an HTTP double of
//! Entra's endpoints (OpenID metadata, JWKS from the TEST-ONLY fixture keys, a token endpoint
//! that checks the code, the redirect URI and the PKCE verifier): the authorize redirect's
//! parameters, a member of the admin group signed in, and every refusal — no or foreign state
//! cookie, state, nonce, audience, issuer, expiry, an unknown signing key, PKCE, Entra's own
//! error, not in the group, group overage.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use bridge::app::AppState;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use testkit::bot_app::TestKey;
use testkit::entra_double::{challenge, EntraDouble};
use tower::ServiceExt;

const TENANT: &str = "00000000-aaaa-4000-8000-000000000001";
const CLIENT: &str = "c1e00000-0000-4000-8000-000000000021";
const GROUP: &str = "0a0a0a0a-0000-4000-8000-000000000001";
const OID: &str = "11111111-0000-4000-8000-000000000001";

struct Page {
    state: AppState,
    entra: EntraDouble,
    _dir: tempfile::TempDir,
}

async fn page(extra: &[(&str, &str)]) -> Page {
    bridge::install_crypto_provider();
    let entra = EntraDouble::start("127.0.0.1", CLIENT).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in [
        (
            "SQLITE_PATH",
            dir.path().join("s.sqlite").display().to_string(),
        ),
        ("BLOB_DIR", dir.path().join("blobs").display().to_string()),
        ("ADMIN_OIDC_CLIENT_ID", CLIENT.into()),
        ("ADMIN_OIDC_CLIENT_SECRET", "test-client-secret".into()),
        ("ADMIN_OIDC_TENANT_ID", TENANT.into()),
        ("ADMIN_OIDC_AUTHORITY", format!("{}/", entra.base)),
        ("ADMIN_GROUP_IDS", GROUP.into()),
        ("SERVE_ADDR", "127.0.0.1:7071".into()),
    ] {
        env.insert(k.into(), v);
    }
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    let settings =
        bridge::settings::Settings::load(&mut bridge::config::Source::from_map(env)).unwrap();
    let state = AppState::build(settings, true).await.unwrap();
    state.store.ensure_tables().await.unwrap();
    Page {
        state,
        entra,
        _dir: dir,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn get_page(p: &Page, uri: &str, cookie: Option<&str>) -> Answer {
    let mut b = Request::builder().method("GET").uri(uri);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    let res = bridge::app::public_router(p.state.clone())
        .oneshot(b.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).to_string(),
    }
}

fn cookie(a: &Answer, name: &str) -> Option<String> {
    a.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// Leg 1 as a browser does it: the authorize URL's query and the state cookie.
async fn begin(p: &Page) -> (HashMap<String, String>, String) {
    let a = get_page(p, "/manage/sync/login/oidc", None).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let location = a.headers[header::LOCATION].to_str().unwrap().to_string();
    let url = url::Url::parse(&location).unwrap();
    assert_eq!(
        url.as_str().split('?').next().unwrap(),
        format!("{}/{TENANT}/oauth2/v2.0/authorize", p.entra.base)
    );
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let set = cookie(&a, "bridge_admin_oidc").expect("a state cookie");
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/manage/sync/login/oidc",
    ] {
        assert!(set.contains(attr), "{set} lacks {attr}");
    }
    (q, set.split(';').next().unwrap().to_string())
}

fn good_claims(nonce: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        "aud": CLIENT, "tid": TENANT, "oid": OID, "sub": "pairwise-subject",
        "preferred_username": "it.admin@college.example", "name": "IT Admin",
        "nonce": nonce, "iat": now, "nbf": now - 60, "exp": now + 3600, "ver": "2.0",
        "groups": ["ffffffff-0000-4000-8000-000000000009", GROUP],
    })
}

fn issue(p: &Page, q: &HashMap<String, String>, code: &str, claims: Value, key: TestKey) {
    p.entra.issue(q, code, claims, key);
}

async fn callback(p: &Page, query: &str, state_cookie: Option<&str>) -> Answer {
    get_page(
        p,
        &format!("/manage/sync/login/oidc/callback?{query}"),
        state_cookie,
    )
    .await
}

#[tokio::test]
async fn a_member_of_the_admin_group_signs_in_with_entra() {
    let p = page(&[]).await;
    // The login page offers it.
    let login = get_page(&p, "/manage/sync/login?lang=en", None).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert!(
        login.body.contains("/manage/sync/login/oidc"),
        "{}",
        login.body
    );
    assert!(login.body.contains("Sign in with Microsoft"));
    assert!(
        !login.body.contains("type=\"password\""),
        "no password configured"
    );

    let (q, state_cookie) = begin(&p).await;
    assert_eq!(q["client_id"], CLIENT);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["response_mode"], "query");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(
        q["redirect_uri"],
        "http://127.0.0.1:7071/manage/sync/login/oidc/callback"
    );
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43);
    assert_eq!(q["code_challenge"].len(), 43, "base64url SHA-256");

    issue(
        &p,
        &q,
        "code-1",
        good_claims(&q["nonce"]),
        TestKey::OtherIssuer,
    );
    let a = callback(
        &p,
        &format!("code=code-1&state={}", q["state"]),
        Some(&state_cookie),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    // The code went with the verifier and the secret.
    let calls = p.entra.token_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["client_secret"], "test-client-secret");
    assert!(calls[0].contains_key("code_verifier"));
    // The session is set and the pending sign-in cleared; the page moves on by itself.
    let session = cookie(&a, "bridge_admin").expect("a session cookie");
    assert!(session.contains("SameSite=Strict") && session.contains("HttpOnly"));
    assert!(cookie(&a, "bridge_admin_oidc")
        .unwrap()
        .contains("Max-Age=0"));
    assert!(a.body.contains("url=/manage/sync"), "{}", a.body);
    let session = session.split(';').next().unwrap().to_string();
    let overview = get_page(&p, "/manage/sync?lang=en", Some(&session)).await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    assert!(overview.body.contains("it.admin@college.example"));
    assert!(overview.body.contains("Sign out"));

    // The same code cannot be used twice (Entra forgets it; a replayed callback fails).
    let again = callback(
        &p,
        &format!("code=code-1&state={}", q["state"]),
        Some(&state_cookie),
    )
    .await;
    assert_ne!(again.status, StatusCode::OK);
    assert!(cookie(&again, "bridge_admin").is_none());
}

/// How a case alters the good claims.
type ClaimsChange = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn every_doubtful_sign_in_is_refused() {
    let p = page(&[]).await;
    let now = chrono::Utc::now().timestamp();
    // (what, claims change, signing key, expected text)
    let cases: Vec<(&str, ClaimsChange, TestKey, &str)> = vec![
        (
            "other nonce",
            Box::new(|c| c["nonce"] = json!("x".repeat(43))),
            TestKey::OtherIssuer,
            "nonce",
        ),
        (
            "no nonce",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
            TestKey::OtherIssuer,
            "nonce",
        ),
        (
            "other audience",
            Box::new(|c| c["aud"] = json!("00000000-0000-4000-8000-0000000000aa")),
            TestKey::OtherIssuer,
            "audience",
        ),
        (
            "other issuer",
            Box::new(|c| {
                c["iss"] = json!(
                    "https://login.microsoftonline.com/99999999-aaaa-4000-8000-000000000001/v2.0"
                )
            }),
            TestKey::OtherIssuer,
            "issuer",
        ),
        (
            "expired",
            Box::new(move |c| {
                c["exp"] = json!(now - 600);
                c["nbf"] = json!(now - 7200);
            }),
            TestKey::OtherIssuer,
            "expired",
        ),
        (
            "unknown key",
            Box::new(|_| {}),
            TestKey::NotEndorsed,
            "refused",
        ),
        (
            "not in the group",
            Box::new(|c| c["groups"] = json!(["ffffffff-0000-4000-8000-000000000009"])),
            TestKey::OtherIssuer,
            "not a member of an admin group",
        ),
        (
            "group overage without Graph",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("groups");
                c["_claim_names"] = json!({"groups": "src1"});
            }),
            TestKey::OtherIssuer,
            "left out the groups",
        ),
    ];
    for (i, (what, change, key, expect)) in cases.into_iter().enumerate() {
        let (q, state_cookie) = begin(&p).await;
        let mut claims = good_claims(&q["nonce"]);
        change(&mut claims);
        let code = format!("code-{i}");
        issue(&p, &q, &code, claims, key);
        let a = callback(
            &p,
            &format!("code={code}&state={}", q["state"]),
            Some(&state_cookie),
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{what}: {}", a.body);
        assert!(a.body.contains(expect), "{what}: {}", a.body);
        assert!(cookie(&a, "bridge_admin").is_none(), "{what}: no session");
    }

    // State: missing cookie, a cookie from another sign-in, a forged cookie, a wrong state.
    let (q, state_cookie) = begin(&p).await;
    issue(
        &p,
        &q,
        "code-s",
        good_claims(&q["nonce"]),
        TestKey::OtherIssuer,
    );
    let ok_query = format!("code=code-s&state={}", q["state"]);
    let (_, other_cookie) = begin(&p).await;
    let forged = state_cookie.replacen("v1.", "v1.A", 1);
    for (what, query, c) in [
        ("no state cookie", ok_query.clone(), None),
        (
            "another sign-in's cookie",
            ok_query.clone(),
            Some(other_cookie.as_str()),
        ),
        ("forged cookie", ok_query.clone(), Some(forged.as_str())),
        (
            "wrong state",
            "code=code-s&state=abc".to_string(),
            Some(state_cookie.as_str()),
        ),
    ] {
        let a = callback(&p, &query, c).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{what}: {}", a.body);
        assert!(cookie(&a, "bridge_admin").is_none(), "{what}");
    }
    assert!(
        p.entra
            .token_calls
            .lock()
            .unwrap()
            .iter()
            .all(|f| f["code"] != "code-s"),
        "no code exchanged without the right state"
    );

    // PKCE: Entra holds another challenge for the code, so the verifier does not match.
    let (mut q, state_cookie) = begin(&p).await;
    q.insert("code_challenge".into(), challenge("another verifier"));
    issue(
        &p,
        &q,
        "code-p",
        good_claims(&q["nonce"]),
        TestKey::OtherIssuer,
    );
    let a = callback(
        &p,
        &format!("code=code-p&state={}", q["state"]),
        Some(&state_cookie),
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert!(a.body.contains("AADSTS501481"), "{}", a.body);
    assert!(!a.body.contains("test-client-secret"));

    // Entra's own refusal comes back as an error, not a session.
    let (q, state_cookie) = begin(&p).await;
    let a = callback(
        &p,
        &format!(
            "error=access_denied&error_description=AADSTS50105%3A+not+assigned&state={}",
            q["state"]
        ),
        Some(&state_cookie),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert!(a.body.contains("AADSTS50105"), "{}", a.body);
}

#[tokio::test]
async fn oidc_is_refused_where_it_does_not_apply() {
    // Not configured: the routes say what to set.
    bridge::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let env: BTreeMap<String, String> = [
        (
            "SQLITE_PATH",
            dir.path().join("s.sqlite").display().to_string(),
        ),
        ("BLOB_DIR", dir.path().join("b").display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let settings =
        bridge::settings::Settings::load(&mut bridge::config::Source::from_map(env)).unwrap();
    let state = AppState::build(settings, true).await.unwrap();
    state.store.ensure_tables().await.unwrap();
    let bare = Page {
        state,
        entra: EntraDouble::start("127.0.0.1", CLIENT).await,
        _dir: dir,
    };
    let a = get_page(&bare, "/manage/sync/login/oidc", None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("ADMIN_OIDC_CLIENT_ID"), "{}", a.body);

    // In Azure, App Service authentication is the only way in.
    let p = page(&[("WEBSITE_AUTH_ENABLED", "true")]).await;
    let a = get_page(&p, "/manage/sync/login/oidc", None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);

    // A bad setting is named at start.
    let mut src = bridge::config::Source::from_map(
        [
            ("ADMIN_OIDC_CLIENT_ID", "not-a-guid"),
            ("ADMIN_OIDC_AUTHORITY", "http://login.example.org/"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    let err = bridge::settings::Settings::load(&mut src)
        .unwrap_err()
        .to_string();
    for text in ["ADMIN_OIDC_CLIENT_ID", "ADMIN_OIDC_TENANT_ID"] {
        assert!(err.contains(text), "{text}: {err}");
    }
}

/// A token whose groups overflowed: Graph decides (`checkMemberGroups`), with the permission
/// named when it is missing.
#[tokio::test]
async fn a_group_overage_is_decided_by_graph() {
    let graph = testkit::graph_double::GraphDouble::start().await;
    graph.route(
        "POST",
        "/users/{id}/checkMemberGroups",
        "GroupMember.Read.All",
        |req, _| {
            let asked: Vec<String> = req.body["groupIds"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            // Only OID is in the admin group.
            let member_of = if req.param("/users/{id}/checkMemberGroups", 0) == Some(OID) {
                asked.into_iter().filter(|g| g == GROUP).collect()
            } else {
                Vec::new()
            };
            testkit::graph_double::GraphReply::json(
                200,
                json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)", "value": member_of}),
            )
        },
    );
    let genv = graph.env();
    let extra: Vec<(&str, &str)> = genv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let p = page(&extra).await;
    let overage = |nonce: &str, oid: &str| {
        let mut c = good_claims(nonce);
        c.as_object_mut().unwrap().remove("groups");
        c["_claim_names"] = json!({"groups": "src1"});
        c["oid"] = json!(oid);
        c
    };
    let (q, state_cookie) = begin(&p).await;
    issue(
        &p,
        &q,
        "code-g1",
        overage(&q["nonce"], OID),
        TestKey::OtherIssuer,
    );
    let a = callback(
        &p,
        &format!("code=code-g1&state={}", q["state"]),
        Some(&state_cookie),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(cookie(&a, "bridge_admin").is_some());
    let (q, state_cookie) = begin(&p).await;
    let other = "22222222-0000-4000-8000-000000000002";
    issue(
        &p,
        &q,
        "code-g2",
        overage(&q["nonce"], other),
        TestKey::OtherIssuer,
    );
    let a = callback(
        &p,
        &format!("code=code-g2&state={}", q["state"]),
        Some(&state_cookie),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert!(
        a.body.contains("not a member of an admin group"),
        "{}",
        a.body
    );
    // Without the permission, the refusal names it.
    graph.deny("GroupMember.Read.All");
    let (q, state_cookie) = begin(&p).await;
    issue(
        &p,
        &q,
        "code-g3",
        overage(&q["nonce"], OID),
        TestKey::OtherIssuer,
    );
    let a = callback(
        &p,
        &format!("code=code-g3&state={}", q["state"]),
        Some(&state_cookie),
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert!(a.body.contains("GroupMember.Read.All"), "{}", a.body);
    assert!(cookie(&a, "bridge_admin").is_none());
}
