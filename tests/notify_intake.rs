//! `POST /api/webhook` (issue 19 item 1): the authentication and schema matrix. Every refusal
//! queues nothing; a 202 means the message is on the `notify` queue.

use bridge::notify::auth::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use serde_json::{json, Value};
use testkit::bot_app::{now, spawn_bot_app, BotAppOptions, BotTestApp};

const SECRET: &str = "test-webhook-secret-0123456789";

async fn app_with(secret: Option<&str>) -> BotTestApp {
    let mut extra = vec![("WEBHOOK_MAX_BODY_BYTES".to_string(), "4096".to_string())];
    if let Some(s) = secret {
        extra.push(("WEBHOOK_SECRET".into(), s.into()));
    }
    let app = spawn_bot_app(BotAppOptions {
        extra,
        ..Default::default()
    })
    .await;
    let course = testkit::fake_moodle::FakeMoodle::fixture_body(
        "core_course_get_courses_by_field/by_shortname.json",
    );
    app.moodle().reply(
        "core_course_get_courses_by_field",
        &[("value", "2")],
        course,
    );
    app.moodle().reply(
        "core_course_get_courses_by_field",
        &[("value", "999")],
        json!({"courses": [], "warnings": []}),
    );
    app
}

fn notification() -> Value {
    json!({"kind": "assignment_due", "course": 2, "recipients": [7, 8], "title": "Essai 2",
           "text": "À rendre vendredi", "link": "https://moodle.example/mod/assign/view.php?id=5",
           "idempotency_key": "assign-5-due"})
}

async fn post(app: &BotTestApp, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    let mut req = app
        .client
        .post(format!("http://{}/api/webhook", app.addr))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn signed_at(ts: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        (TIMESTAMP_HEADER, ts.to_string()),
        (SIGNATURE_HEADER, sign(SECRET, ts, body)),
    ]
}

async fn queued(app: &BotTestApp) -> Vec<Value> {
    app.store
        .query(bridge::store::tables::QUEUE, "notify", None, 100)
        .await
        .unwrap()
        .entities
        .iter()
        .map(|e| serde_json::from_str(e.str("body").unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_signed_notification_is_queued_and_answered_202() {
    let app = app_with(Some(SECRET)).await;
    let body = notification().to_string().into_bytes();
    let (status, answer) = post(&app, &signed_at(now(), &body), &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["queued"], "assign-5-due");
    let q = queued(&app).await;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["stage"], "fanout");
    assert_eq!(q[0]["notification"]["recipients"], json!({"users": [7, 8]}));
}

#[tokio::test]
async fn every_authentication_failure_is_401_with_nothing_queued() {
    let app = app_with(Some(SECRET)).await;
    let body = notification().to_string().into_bytes();
    let t = now();
    let other = {
        let mut b = notification();
        b["title"] = json!("changed");
        b.to_string().into_bytes()
    };
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no credentials", vec![]),
        (
            "bad signature",
            vec![
                (TIMESTAMP_HEADER, t.to_string()),
                (SIGNATURE_HEADER, "sha256=00ff".into()),
            ],
        ),
        (
            "signature of another body",
            vec![
                (TIMESTAMP_HEADER, t.to_string()),
                (SIGNATURE_HEADER, sign(SECRET, t, &other)),
            ],
        ),
        (
            "signed with another secret",
            vec![
                (TIMESTAMP_HEADER, t.to_string()),
                (
                    SIGNATURE_HEADER,
                    sign("another-secret-0123456789", t, &body),
                ),
            ],
        ),
        ("stale timestamp", signed_at(t - 301, &body)),
        ("future timestamp", signed_at(t + 301, &body)),
        (
            "no timestamp",
            vec![(SIGNATURE_HEADER, sign(SECRET, t, &body))],
        ),
        (
            "wrong bearer",
            vec![("authorization", "Bearer not-the-secret".into())],
        ),
    ];
    for (what, headers) in cases {
        let (status, answer) = post(&app, &headers, &body).await;
        assert_eq!(status, 401, "{what}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .starts_with("authentication failed"),
            "{what}"
        );
    }
    assert!(queued(&app).await.is_empty());
}

#[tokio::test]
async fn a_replayed_signature_is_refused() {
    let app = app_with(Some(SECRET)).await;
    let body = notification().to_string().into_bytes();
    let headers = signed_at(now(), &body);
    assert_eq!(post(&app, &headers, &body).await.0, 202);
    let (status, answer) = post(&app, &headers, &body).await;
    assert_eq!(status, 401);
    assert!(
        answer["error"].as_str().unwrap().contains("already used"),
        "{answer}"
    );
    assert_eq!(queued(&app).await.len(), 1, "the replay queued nothing");
}

#[tokio::test]
async fn no_secret_configured_refuses_everything() {
    let app = app_with(None).await;
    let body = notification().to_string().into_bytes();
    let (status, answer) = post(&app, &signed_at(now(), &body), &body).await;
    assert_eq!(status, 401);
    assert!(
        answer["error"].as_str().unwrap().contains("WEBHOOK_SECRET"),
        "{answer}"
    );
    let (status, _) = post(&app, &[("authorization", "Bearer ".into())], &body).await;
    assert_eq!(status, 401);
    assert!(queued(&app).await.is_empty());
}

#[tokio::test]
async fn bearer_secret_oversized_malformed_schema_and_unknown_course() {
    let app = app_with(Some(SECRET)).await;
    let bearer = vec![("authorization", format!("Bearer {SECRET}"))];
    let body = notification().to_string().into_bytes();
    assert_eq!(post(&app, &bearer, &body).await.0, 202);
    assert_eq!(queued(&app).await.len(), 1);

    let mut big = notification();
    big["text"] = json!("x".repeat(5000));
    let big = big.to_string().into_bytes();
    assert_eq!(
        post(&app, &signed_at(now(), &big), &big).await.0,
        413,
        "over WEBHOOK_MAX_BODY_BYTES"
    );

    let malformed = b"{\"kind\": \"custom\",".to_vec();
    let (status, answer) = post(&app, &signed_at(now(), &malformed), &malformed).await;
    assert_eq!(
        (status, answer["field"].clone()),
        (400, json!("/")),
        "{answer}"
    );

    let mut wrong = notification();
    wrong["kind"] = json!("gossip");
    let wrong = wrong.to_string().into_bytes();
    let (status, answer) = post(&app, &signed_at(now(), &wrong), &wrong).await;
    assert_eq!(
        (status, answer["field"].clone()),
        (400, json!("/kind")),
        "{answer}"
    );

    let mut missing = notification();
    missing.as_object_mut().unwrap().remove("recipients");
    let missing = missing.to_string().into_bytes();
    let (status, answer) = post(&app, &signed_at(now(), &missing), &missing).await;
    assert_eq!(
        (status, answer["field"].clone()),
        (400, json!("/recipients")),
        "{answer}"
    );

    let mut unknown = notification();
    unknown["course"] = json!(999);
    let unknown = unknown.to_string().into_bytes();
    let (status, answer) = post(&app, &signed_at(now(), &unknown), &unknown).await;
    assert_eq!(
        (status, answer["field"].clone()),
        (400, json!("/course")),
        "{answer}"
    );
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("unknown course 999"));
    assert_eq!(queued(&app).await.len(), 1, "no refusal queued anything");
}

#[tokio::test]
async fn the_legacy_local_o365_shape_is_accepted() {
    let app = app_with(Some(SECRET)).await;
    let body = json!({"user": "AAD00000-0000-4000-8000-00000000A007", "message": "Nouvelle note\nHistoire: 15/20",
                      "listItems": [{"title": "Histoire", "content": "15/20", "url": "https://moodle.example/grade/report/user/index.php?id=2"}],
                      "team": "2"})
    .to_string()
    .into_bytes();
    let (status, answer) = post(&app, &signed_at(now(), &body), &body).await;
    assert_eq!(status, 202, "{answer}");
    let q = queued(&app).await;
    let n = &q[0]["notification"];
    assert_eq!(n["kind"], "custom");
    assert_eq!(n["course"], 2);
    assert_eq!(
        n["recipients"],
        json!({"entra": ["aad00000-0000-4000-8000-00000000a007"]})
    );
    assert!(n["id"].as_str().unwrap().starts_with("legacy-"));
}

/// What local_o365 itself posts: `team` is the course team's group id (found through the course ↔
/// team mapping), `user` an Entra object id, items with `action`. An unlinked team still queues
/// the personal message, without a course.
#[tokio::test]
async fn the_local_o365_body_finds_its_course_through_the_team() {
    let app = app_with(Some(SECRET)).await;
    let mut link = bridge::teams_sync::link::CourseTeam::new(
        2,
        "math-tg1".into(),
        "MATH-TG1".into(),
        bridge::teams_sync::link::Stage::Active,
    );
    link.team_id = Some("0f3a0000-0000-4000-8000-0000000000c2".into());
    bridge::teams_sync::link::save(&app.store, &link)
        .await
        .unwrap();
    let body_for = |team: &str| {
        json!({"team": team, "user": "aad00000-0000-4000-8000-00000000a007", "message": "Devoir noté",
               "listItems": [{"title": "Essai", "subtitle": "", "icon": "https://moodle.example/local/o365/pix/moodle.png",
                              "action": "https://moodle.example/mod/assign/view.php?id=4", "actionType": "openUrl"}]})
        .to_string()
        .into_bytes()
    };
    let body = body_for("0F3A0000-0000-4000-8000-0000000000C2");
    let (status, answer) = post(&app, &signed_at(now(), &body), &body).await;
    assert_eq!(status, 202, "{answer}");
    let body = body_for("0f3a0000-0000-4000-8000-0000000000ff");
    let (status, answer) = post(&app, &signed_at(now(), &body), &body).await;
    assert_eq!(status, 202, "{answer}");
    let q = queued(&app).await;
    assert_eq!(q.len(), 2);
    // Two bodies, two idempotency keys (digests of the bytes); row order is not promised.
    let (linked, unlinked): (Vec<&Value>, Vec<&Value>) = q
        .iter()
        .map(|m| &m["notification"])
        .partition(|n| n["course"] == 2);
    assert_eq!((linked.len(), unlinked.len()), (1, 1), "{q:?}");
    assert_eq!(
        linked[0]["link"],
        "https://moodle.example/mod/assign/view.php?id=4"
    );
    assert_eq!(linked[0]["items"][0]["title"], "Essai");
    assert_eq!(unlinked[0]["course"], Value::Null);
    assert_eq!(
        unlinked[0]["recipients"],
        json!({"entra": ["aad00000-0000-4000-8000-00000000a007"]})
    );
}

/// Under the Functions host the message rides on the `notify` output binding of the answer.
#[tokio::test]
async fn under_the_host_the_message_is_an_output_binding_and_refusals_have_none() {
    let app = app_with(Some(SECRET)).await;
    let body = notification().to_string();
    let invoke = |headers: Value| {
        let invocation = json!({
            "Data": {"req": {"Url": format!("http://{}/api/webhook", app.addr), "Method": "POST",
                             "Headers": headers, "Body": body}},
            "Metadata": {}
        });
        let client = app.client.clone();
        let url = format!("http://{}/MoodleWebhook", app.addr);
        async move {
            let r = client.post(url).json(&invocation).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let t = now();
    let good = invoke(json!({"Content-Type": ["application/json"],
        "X-Bridge-Timestamp": [t.to_string()], "X-Bridge-Signature": [sign(SECRET, t, body.as_bytes())]}))
    .await;
    assert_eq!(good["Outputs"]["res"]["statusCode"], 202, "{good}");
    let out = good["Outputs"]["notify"].as_array().unwrap();
    assert_eq!(out.len(), 1);
    let bad = invoke(json!({"Content-Type": ["application/json"],
        "X-Bridge-Timestamp": [t.to_string()], "X-Bridge-Signature": ["sha256=00"]}))
    .await;
    assert_eq!(bad["Outputs"]["res"]["statusCode"], 401);
    assert!(bad["Outputs"].get("notify").is_none(), "{bad}");
    assert!(
        queued(&app).await.is_empty(),
        "the host writes outputs, not the handler"
    );
}
