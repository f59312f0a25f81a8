//! The forgery matrix of `fixtures/botframework/tokens.md` against `/api/messages`, with tokens
//! minted here from the TEST-ONLY fixture keys and served by a local key server. A rejection is
//! 401, nothing is stored and nothing is sent.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use testkit::bot_app::*;

struct Case {
    name: &'static str,
    token: String,
    activity: Value,
    accept: bool,
}

fn tampered(service_url: &str, other_service_url: &str) -> String {
    let mut claims = base_claims(other_service_url);
    claims["aud"] = json!(OTHER_APP_ID);
    let signed = mint_raw(
        &header_for(TestKey::EndorsedMsteams),
        &claims,
        TestKey::EndorsedMsteams,
    );
    let parts: Vec<&str> = signed.split('.').collect();
    let mut good = claims.clone();
    good["aud"] = json!(APP_ID);
    good["serviceurl"] = json!(service_url);
    format!(
        "{}.{}.{}",
        parts[0],
        b64(good.to_string().as_bytes()),
        parts[2]
    )
}

fn matrix(app: &BotTestApp) -> Vec<Case> {
    let su = app.service_url();
    let other_su = format!("{}/amer/", app.connector.uri());
    let n = now();
    let base = base_claims(&su);
    let act = activity("message-personal.json", &su);
    let bf = TestKey::EndorsedMsteams;
    let hdr = header_for(bf);
    let with = |changes: Value| {
        let mut c = base.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let rs = |claims: Value| mint_raw(&hdr, &claims, bf);
    let case = |name, token, accept| Case {
        name,
        token,
        activity: act.clone(),
        accept,
    };
    let other_hdr = header_for(TestKey::OtherIssuer);
    let emulator_v1 = json!({"aud": APP_ID, "iss": "https://sts.windows.net/d6d49420-f39b-4df7-a1dc-d59a935871db/",
        "nbf": n - 300, "exp": n + 3600, "appid": APP_ID, "tid": "d6d49420-f39b-4df7-a1dc-d59a935871db", "ver": "1.0"});
    let mut emulator_v2 = emulator_v1.clone();
    emulator_v2["iss"] =
        json!("https://login.microsoftonline.com/d6d49420-f39b-4df7-a1dc-d59a935871db/v2.0");
    emulator_v2["ver"] = json!("2.0");
    emulator_v2.as_object_mut().unwrap().remove("appid");
    emulator_v2["azp"] = json!(APP_ID);
    let mut emulator_bf = emulator_v1.clone();
    emulator_bf["serviceurl"] = json!(su);
    let entra = json!({"aud": APP_ID, "iss": format!("https://login.microsoftonline.com/{TENANT_ID}/v2.0"),
        "nbf": n - 300, "exp": n + 3600, "azp": OTHER_APP_ID, "tid": TENANT_ID, "ver": "2.0"});
    let b64j = |v: &Value| b64(v.to_string().as_bytes());
    let alg_none = format!(
        "{}.{}.",
        b64j(&json!({"typ": "JWT", "alg": "none", "kid": bf.kid()})),
        b64j(&base)
    );
    let hs_input = format!(
        "{}.{}",
        b64j(&json!({"typ": "JWT", "alg": "HS256", "kid": bf.kid()})),
        b64j(&base)
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(bf.public_pem().as_bytes()).unwrap();
    mac.update(hs_input.as_bytes());
    let hs256 = format!("{hs_input}.{}", b64(&mac.finalize().into_bytes()));
    let mut act_webchat = act.clone();
    act_webchat["channelId"] = json!("webchat");
    let mut act_no_channel = act.clone();
    act_no_channel["channelId"] = Value::Null;
    let mut act_attacker = act.clone();
    act_attacker["serviceUrl"] = json!("https://attacker.example/");

    vec![
        case("valid", rs(base.clone()), true),
        case(
            "exp_within_skew",
            rs(with(json!({"nbf": n - 3900, "exp": n - 240}))),
            true,
        ),
        case(
            "expired_beyond_skew",
            rs(with(json!({"nbf": n - 4000, "exp": n - 360}))),
            false,
        ),
        case("nbf_within_skew", rs(with(json!({"nbf": n + 240}))), true),
        case(
            "nbf_future_beyond_skew",
            rs(with(json!({"nbf": n + 360}))),
            false,
        ),
        case("missing_exp", rs(with(json!({"exp": null}))), false),
        case(
            "wrong_issuer_entra_tenant",
            rs(with(
                json!({"iss": format!("https://sts.windows.net/{TENANT_ID}/")}),
            )),
            false,
        ),
        case(
            "issuer_trailing_slash",
            rs(with(json!({"iss": "https://api.botframework.com/"}))),
            false,
        ),
        case(
            "wrong_audience",
            rs(with(json!({"aud": OTHER_APP_ID}))),
            false,
        ),
        case(
            "audience_botframework_api",
            rs(with(json!({"aud": "https://api.botframework.com"}))),
            false,
        ),
        case("alg_none", alg_none, false),
        case("hs256_public_key_as_secret", hs256, false),
        case(
            "no_kid",
            mint_raw(&json!({"typ": "JWT", "alg": "RS256"}), &base, bf),
            false,
        ),
        case(
            "unknown_kid",
            mint_raw(
                &json!({"typ": "JWT", "alg": "RS256", "kid": "test-kid-unknown"}),
                &base,
                TestKey::OtherIssuer,
            ),
            false,
        ),
        case(
            "kid_endorsed_signed_by_other_key",
            mint_raw(&hdr, &base, TestKey::OtherIssuer),
            false,
        ),
        case("tampered_payload", tampered(&su, &other_su), false),
        case(
            "not_endorsed_for_msteams",
            mint_raw(
                &header_for(TestKey::NotEndorsed),
                &base,
                TestKey::NotEndorsed,
            ),
            false,
        ),
        Case {
            name: "channel_id_not_msteams",
            token: rs(base.clone()),
            activity: act_webchat,
            accept: false,
        },
        Case {
            name: "channel_id_missing",
            token: rs(base.clone()),
            activity: act_no_channel,
            accept: false,
        },
        case(
            "serviceurl_mismatch",
            rs(with(json!({"serviceurl": other_su}))),
            false,
        ),
        Case {
            name: "serviceurl_activity_points_elsewhere",
            token: rs(base.clone()),
            activity: act_attacker,
            accept: false,
        },
        case(
            "missing_serviceurl",
            rs(with(json!({"serviceurl": null}))),
            false,
        ),
        case(
            "emulator_issuer_v1",
            mint_raw(&other_hdr, &emulator_v1, TestKey::OtherIssuer),
            false,
        ),
        case(
            "emulator_issuer_v2",
            mint_raw(&other_hdr, &emulator_v2, TestKey::OtherIssuer),
            false,
        ),
        case("emulator_issuer_signed_with_bf_key", rs(emulator_bf), false),
        case(
            "entra_single_tenant_issuer",
            mint_raw(&other_hdr, &entra, TestKey::OtherIssuer),
            false,
        ),
        case(
            "rs512_allowed",
            mint_raw(
                &json!({"typ": "JWT", "alg": "RS512", "kid": bf.kid()}),
                &base,
                bf,
            ),
            true,
        ),
    ]
}

#[tokio::test]
async fn forgery_matrix() {
    let app = spawn_bot_app(BotAppOptions {
        with_moodle: false,
        ..Default::default()
    })
    .await;
    let mut failures = Vec::new();
    for c in matrix(&app) {
        let before = app.sent_activities().await.len();
        let rows_before = app.conversation_rows("user").await.len();
        let resp = app
            .post_raw(
                Some(&format!("Bearer {}", c.token)),
                c.activity.to_string().into_bytes(),
            )
            .await;
        let status = resp.status().as_u16();
        let sent = app.sent_activities().await.len() - before;
        let ok = if c.accept {
            status == 200 && sent == 1
        } else {
            status == 401 && sent == 0
        };
        if !ok {
            failures.push(format!("{}: status {status}, replies sent {sent}", c.name));
        }
        if !c.accept && app.conversation_rows("user").await.len() != rows_before {
            failures.push(format!(
                "{}: a rejected request stored a conversation",
                c.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "matrix failures:\n{}",
        failures.join("\n")
    );
}

/// The same matrix as the Functions host delivers it: BotMessages has a queue output, so it is
/// not forwarded and each request arrives inside an invocation (`POST /BotMessages`).
#[tokio::test]
async fn forgery_matrix_through_the_host_invocation() {
    let app = spawn_bot_app(BotAppOptions {
        with_moodle: false,
        ..Default::default()
    })
    .await;
    let mut failures = Vec::new();
    for c in matrix(&app) {
        let before = app.sent_activities().await.len();
        let rows_before = app.conversation_rows("user").await.len();
        let answer = app
            .invoke_messages(
                Some(&format!("Bearer {}", c.token)),
                c.activity.to_string().as_bytes(),
            )
            .await;
        let status = answer["Outputs"]["res"]["statusCode"].as_u64().unwrap_or(0);
        let sent = app.sent_activities().await.len() - before;
        let queued = answer["Outputs"]["botReplies"]
            .as_array()
            .map_or(0, Vec::len);
        let ok = if c.accept {
            status == 200 && sent + queued == 1
        } else {
            status == 401 && sent == 0 && queued == 0
        };
        if !ok {
            failures.push(format!(
                "{}: status {status}, replies sent {sent}, queued {queued}",
                c.name
            ));
        }
        if !c.accept && app.conversation_rows("user").await.len() != rows_before {
            failures.push(format!(
                "{}: a rejected request stored a conversation",
                c.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "matrix failures:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn rejected_requests_store_and_send_nothing() {
    let app = spawn_bot_app(BotAppOptions {
        with_moodle: false,
        ..Default::default()
    })
    .await;
    let act = activity("installationUpdate-add.json", &app.service_url());
    let mut claims = base_claims(&app.service_url());
    claims["aud"] = json!(OTHER_APP_ID);
    let token = mint_raw(
        &header_for(TestKey::EndorsedMsteams),
        &claims,
        TestKey::EndorsedMsteams,
    );
    let resp = app
        .post_raw(
            Some(&format!("Bearer {token}")),
            act.to_string().into_bytes(),
        )
        .await;
    assert_eq!(resp.status(), 401);
    assert!(app.conversation_rows("user").await.is_empty());
    assert!(app.sent_activities().await.is_empty());
    // The same install with a valid token is stored.
    assert_eq!(app.post(&act).await.status(), 200);
    assert_eq!(app.conversation_rows("user").await.len(), 1);
}

#[tokio::test]
async fn request_level_cases() {
    let app = spawn_bot_app(BotAppOptions {
        with_moodle: false,
        ..Default::default()
    })
    .await;
    let su = app.service_url();
    let body = activity("message-personal.json", &su)
        .to_string()
        .into_bytes();
    let token = valid_token(&su);

    assert_eq!(
        app.post_raw(None, body.clone()).await.status(),
        401,
        "no Authorization header"
    );
    assert_eq!(
        app.post_raw(Some(&format!("Basic {token}")), body.clone())
            .await
            .status(),
        401,
        "wrong scheme"
    );
    assert_eq!(
        app.post_raw(Some(&format!("bearer {token}")), body.clone())
            .await
            .status(),
        401,
        "scheme is case-sensitive"
    );
    assert_eq!(
        app.post_raw(Some(&format!("Bearer {token} extra")), body.clone())
            .await
            .status(),
        401,
        "extra parts"
    );
    assert_eq!(
        app.post_raw(Some("Bearer "), body.clone()).await.status(),
        401,
        "empty token"
    );

    // Two Authorization headers: never "any of them".
    let resp = app
        .client
        .post(format!("http://{}/api/messages", app.addr))
        .header("authorization", "Bearer bogus.bogus.bogus")
        .header("authorization", format!("Bearer {token}"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "two Authorization headers");

    // Oversized body: 413 before any JSON parsing.
    let big = vec![b' '; 300 * 1024];
    assert_eq!(
        app.post_raw(Some(&format!("Bearer {token}")), big.clone())
            .await
            .status(),
        413
    );
    // Non-JSON body: 400 with a valid token, 401 without one (the token is checked first).
    assert_eq!(
        app.post_raw(Some(&format!("Bearer {token}")), b"not json".to_vec())
            .await
            .status(),
        400
    );
    assert_eq!(
        app.post_raw(Some("Bearer x.y.z"), b"not json".to_vec())
            .await
            .status(),
        401
    );
    assert!(app.sent_activities().await.is_empty());
    // The valid request still works.
    assert_eq!(
        app.post_raw(Some(&format!("Bearer {token}")), body)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn unknown_kid_refetches_the_key_set_at_most_once() {
    let app = spawn_bot_app(BotAppOptions {
        with_moodle: false,
        ..Default::default()
    })
    .await;
    let su = app.service_url();
    let body = activity("message-personal.json", &su)
        .to_string()
        .into_bytes();
    assert_eq!(
        app.post(&activity("message-personal.json", &su))
            .await
            .status(),
        200
    );
    assert_eq!(app.key_fetches().await, 1);
    let unknown = mint_raw(
        &json!({"typ": "JWT", "alg": "RS256", "kid": "test-kid-unknown"}),
        &base_claims(&su),
        TestKey::OtherIssuer,
    );
    for _ in 0..5 {
        let resp = app
            .post_raw(Some(&format!("Bearer {unknown}")), body.clone())
            .await;
        assert_eq!(resp.status(), 401);
    }
    assert_eq!(
        app.key_fetches().await,
        2,
        "one rate-limited refetch for unknown kids"
    );
}

#[tokio::test]
async fn key_rotation_is_accepted_after_one_refetch() {
    let app = spawn_bot_app(BotAppOptions {
        with_moodle: false,
        ..Default::default()
    })
    .await;
    let su = app.service_url();
    assert_eq!(
        app.post(&activity("message-personal.json", &su))
            .await
            .status(),
        200
    );
    // The key server rotates to a new key (kid never seen before), endorsed for msteams.
    let mut jwks = testkit::fixture_json("botframework/jwks-other-issuer.json");
    jwks["keys"][0]["kid"] = json!("test-kid-rotated");
    jwks["keys"][0]["endorsements"] = json!(["msteams"]);
    app.keys.reset().await;
    mount_keys(&app.keys, jwks).await;
    let token = mint_raw(
        &json!({"typ": "JWT", "alg": "RS256", "kid": "test-kid-rotated"}),
        &base_claims(&su),
        TestKey::OtherIssuer,
    );
    let body = activity("message-personal.json", &su)
        .to_string()
        .into_bytes();
    assert_eq!(
        app.post_raw(Some(&format!("Bearer {token}")), body)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.key_fetches().await,
        1,
        "exactly one refetch after the reset"
    );
}

#[tokio::test]
async fn key_endpoint_down_at_startup_never_accepts_then_recovers() {
    let app = spawn_bot_app(BotAppOptions {
        with_moodle: false,
        keys_up: false,
        ..Default::default()
    })
    .await;
    let su = app.service_url();
    let act = activity("message-personal.json", &su);
    let status = app.post(&act).await.status().as_u16();
    assert!(status == 503 || status == 401, "got {status}");
    assert!(app.sent_activities().await.is_empty());
    mount_keys(&app.keys, testkit::fixture_json("botframework/jwks.json")).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.post(&act).await.status(), 200);
}

#[tokio::test]
async fn other_issuer_key_set_is_never_consulted() {
    // Even with the Entra-style key set served as the *only* key set, an Entra/emulator token
    // fails on the issuer check.
    let app = spawn_bot_app(BotAppOptions {
        with_moodle: false,
        keys_up: false,
        ..Default::default()
    })
    .await;
    mount_keys(
        &app.keys,
        testkit::fixture_json("botframework/jwks-other-issuer.json"),
    )
    .await;
    let su = app.service_url();
    let n = now();
    let claims = json!({"aud": APP_ID, "iss": format!("https://login.microsoftonline.com/{TENANT_ID}/v2.0"),
        "nbf": n - 300, "exp": n + 3600, "tid": TENANT_ID, "ver": "2.0", "serviceurl": su});
    let token = mint_raw(
        &header_for(TestKey::OtherIssuer),
        &claims,
        TestKey::OtherIssuer,
    );
    let body = activity("message-personal.json", &su)
        .to_string()
        .into_bytes();
    assert_eq!(
        app.post_raw(Some(&format!("Bearer {token}")), body)
            .await
            .status(),
        401
    );
}

/// Attacker-supplied values are capped in logs: a huge `kid` (or `alg`) in an unauthenticated
/// token used to be written whole into the rejection log line.
#[tokio::test(flavor = "multi_thread")]
async fn a_huge_kid_or_alg_does_not_make_a_huge_log_line() {
    let keys = wiremock::MockServer::start().await;
    mount_keys(&keys, testkit::fixture_json("botframework/jwks.json")).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("handler.log");
    let metadata = format!("{}/v1/.well-known/openidconfiguration", keys.uri());
    let env = [
        ("LOG_LEVEL", "warn"),
        ("BOT_APP_ID", APP_ID),
        ("BOT_TENANT_ID", TENANT_ID),
        ("BOT_APP_PASSWORD", "test-client-secret"),
        ("BOT_OPENID_METADATA_URL", metadata.as_str()),
    ];
    let mut h = testkit::app::Handler::serve_logged(dir.path(), &env, &log);
    let huge = "k".repeat(200 * 1024);
    let su = "https://smba.trafficmanager.net/emea/";
    let tokens = [
        mint_raw(
            &json!({"typ": "JWT", "alg": "RS256", "kid": huge}),
            &base_claims(su),
            TestKey::EndorsedMsteams,
        ),
        format!(
            "{}.{}.c2ln",
            b64(json!({"typ": "JWT", "alg": huge, "kid": "k"})
                .to_string()
                .as_bytes()),
            b64(b"{}")
        ),
    ];
    let client = reqwest::Client::new();
    for token in tokens {
        let resp = client
            .post(format!("{}/api/messages", h.base))
            .header("authorization", format!("Bearer {token}"))
            .body(activity("message-personal.json", su).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    h.kill9();
    let text = std::fs::read_to_string(&log).unwrap();
    let rejections = text.matches("Bot Connector request rejected").count();
    assert_eq!(rejections, 2, "{}", &text[..text.len().min(2000)]);
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 2048, "a log line of {longest} bytes");
}

fn metadata_gets(requests: &[wiremock::Request]) -> usize {
    requests
        .iter()
        .filter(|r| r.url.path() == "/v1/.well-known/openidconfiguration")
        .count()
}

/// A valid token that no earlier request used (so the verification cache cannot answer).
fn fresh_token(su: &str, i: i64) -> String {
    let mut claims = base_claims(su);
    claims["exp"] = json!(now() + 3600 + i);
    mint_raw(
        &header_for(TestKey::EndorsedMsteams),
        &claims,
        TestKey::EndorsedMsteams,
    )
}

async fn post_concurrently(
    app: &BotTestApp,
    tokens: Vec<String>,
) -> Vec<(u16, std::time::Duration)> {
    let body = activity("message-personal.json", &app.service_url()).to_string();
    let url = format!("http://{}/api/messages", app.addr);
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let (client, url, body) = (app.client.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                let t = std::time::Instant::now();
                let status = client
                    .post(url)
                    .header("authorization", format!("Bearer {token}"))
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                (status, t.elapsed())
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn mount_hanging_metadata(keys: &wiremock::MockServer) {
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path(
            "/v1/.well-known/openidconfiguration",
        ))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(60)),
        )
        .mount(keys)
        .await;
}

/// One fetch in flight shared by every waiter: with a hanging key endpoint the old code
/// answered four concurrent requests after 10, 20, 30 and 40 s (one fetch each, in turn).
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_key_endpoint_is_fetched_once_and_every_request_answered_within_seconds() {
    let app = spawn_bot_app(BotAppOptions {
        with_moodle: false,
        keys_up: false,
        ..Default::default()
    })
    .await;
    mount_hanging_metadata(&app.keys).await;
    let su = app.service_url();
    let answers = post_concurrently(&app, (0..4).map(|i| fresh_token(&su, i)).collect()).await;
    for (status, took) in &answers {
        assert_eq!(*status, 503, "no key set: unavailable, never accepted");
        assert!(
            *took < std::time::Duration::from_secs(8),
            "answered after {took:?}"
        );
    }
    let requests = app.keys.received_requests().await.unwrap();
    assert_eq!(metadata_gets(&requests), 1, "one fetch shared by the four");
    assert!(app.sent_activities().await.is_empty());
}

/// A stale set (older than 12 h) stays in use while the endpoint fails, and failures back off:
/// the old code fetched once per new token (20 GETs for 20 requests).
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_set_stays_in_use_while_refreshes_fail_and_failures_back_off() {
    let app = spawn_bot_app(BotAppOptions {
        with_moodle: false,
        ..Default::default()
    })
    .await;
    let su = app.service_url();
    assert_eq!(
        app.post(&activity("message-personal.json", &su))
            .await
            .status(),
        200
    );
    let keys = app.state.bot.as_ref().unwrap().validator.keys().clone();

    app.keys.reset().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(wiremock::ResponseTemplate::new(503))
        .mount(&app.keys)
        .await;
    // Minted first: signing in a debug build is slow enough to spread the requests out.
    let tokens: Vec<String> = (0..20).map(|i| fresh_token(&su, i)).collect();
    keys.age_out();
    // Twenty requests at once, as the Bot Connector sends them.
    for (i, (status, _)) in post_concurrently(&app, tokens).await.iter().enumerate() {
        assert_eq!(*status, 200, "request {i}: the stale set still verifies");
    }
    let requests = app.keys.received_requests().await.unwrap();
    let gets = metadata_gets(&requests);
    assert!((1..=2).contains(&gets), "{gets} GETs for 20 requests");

    // A hanging endpoint does not hold requests either: the stale key answers at once.
    app.keys.reset().await;
    mount_hanging_metadata(&app.keys).await;
    let tokens: Vec<String> = (100..104).map(|i| fresh_token(&su, i)).collect();
    tokio::time::sleep(std::time::Duration::from_millis(4100)).await; // past the backoff
    let answers = post_concurrently(&app, tokens).await;
    for (status, took) in &answers {
        assert_eq!(*status, 200);
        assert!(
            *took < std::time::Duration::from_secs(3),
            "answered after {took:?}"
        );
    }
    let requests = app.keys.received_requests().await.unwrap();
    assert!(metadata_gets(&requests) <= 1);
}
