//! The Functions host contract, fed with the recorded payload shapes of
//! `../shared/fixtures/azure-functions/` against the real binary in custom-handler mode.

use bridge::host::InvocationRequest;
use serde_json::{json, Value};
use testkit::app::Handler;
use testkit::{fixture, fixture_json};

fn parse(rel: &str) -> InvocationRequest {
    InvocationRequest::parse(fixture(rel).as_bytes()).unwrap()
}

#[test]
fn queue_payloads_decode_to_the_message_text_whatever_the_encoding() {
    let plain = parse("azure-functions/requests/queue.plain-string.json")
        .queue("msg")
        .unwrap();
    assert_eq!(plain.text, "grade-released:42:1337");
    assert_eq!(plain.dequeue_count, 1);
    assert_eq!(
        plain.id.as_deref(),
        Some("8d2f5a3e-0c4b-4f7e-9a61-3b1e2d4c5f60")
    );

    let object = parse("azure-functions/requests/queue.json-object.json")
        .queue("msg")
        .unwrap();
    assert_eq!(
        object.dequeue_count, 3,
        "DequeueCount arrives as the string \"3\""
    );
    let v: Value =
        serde_json::from_str(&object.text).expect("message text is the JSON, decoded once");
    assert_eq!(v["courseId"], 42);
    assert_eq!(v["title"], "Essay 2 – “Migration”");

    let doc = parse("azure-functions/requests/queue.doc-sample-variant.json")
        .queue("msg")
        .unwrap();
    assert_eq!(
        doc.text, object.text,
        "documented single-encoded shape gives the same text"
    );
    assert_eq!(doc.dequeue_count, 1);
    assert_eq!(
        doc.id.as_deref(),
        Some("5c9e0d7b-6a1f-4e2d-8b3c-9f0a1b2c3d4e")
    );
}

#[test]
fn timer_payloads_parse_with_and_without_schedule_status() {
    let set = parse("azure-functions/requests/timer.schedule-status-set.json")
        .timer("timer")
        .unwrap();
    assert!(!set.is_past_due);
    assert_eq!(set.next.unwrap().to_rfc3339(), "2026-11-26T02:00:00+00:00");
    assert!(set.last.is_some());
    let null = parse("azure-functions/requests/timer.schedule-status-null.json")
        .timer("timer")
        .unwrap();
    assert_eq!(
        (null.is_past_due, null.last, null.next),
        (false, None, None)
    );
    let late = parse("azure-functions/requests/timer.past-due.json")
        .timer("timer")
        .unwrap();
    assert!(late.is_past_due);
    let never = InvocationRequest::parse(br#"{"Data":{"timer":{"ScheduleStatus":{"Last":"0001-01-01T00:00:00","Next":"2026-11-26T02:00:00"},"IsPastDue":false}}}"#)
        .unwrap()
        .timer("timer")
        .unwrap();
    assert_eq!(never.last, None, "0001-01-01 means never ran");
    assert!(never.next.is_some(), "a time without zone is taken as UTC");
}

#[test]
fn http_invocation_gives_path_query_headers_and_body() {
    let req = parse("azure-functions/requests/http.not-forwarded.json")
        .http("req")
        .unwrap();
    assert_eq!(
        req.path_and_query().unwrap(),
        "/api/notify/grade-released?source=moodle"
    );
    assert_eq!(req.method, "POST");
    assert_eq!(
        String::from_utf8(req.body_bytes()).unwrap(),
        r#"{"courseId":42,"itemId":1337,"title":"Essay 2"}"#
    );
    assert_eq!(req.headers["Content-Type"].values(), ["application/json"]);
}

fn post(
    h: &Handler,
    function: &str,
    body: impl Into<reqwest::blocking::Body>,
) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .post(format!("{}/{function}", h.base))
        .header("Content-Type", "application/json; charset=utf-8")
        .header(
            "X-Azure-Functions-InvocationId",
            "6b0c2f0e-5d7e-4a43-9a39-2f6f5c1d9e11",
        )
        .body(body)
        .send()
        .unwrap()
}

/// The keys every non-forwarded answer carries, as in the response fixtures.
fn assert_invocation_shape(v: &Value) {
    let model = fixture_json("azure-functions/responses/timer.no-outputs.json");
    for key in model.as_object().unwrap().keys() {
        assert!(v.get(key).is_some(), "answer lacks {key}: {v}");
    }
    assert!(v["Outputs"].is_object() && v["Logs"].is_array(), "{v}");
}

#[test]
fn the_binary_answers_every_fixture_payload_as_the_host_expects() {
    let dir = tempfile::tempdir().unwrap();
    let h = Handler::custom_handler(dir.path(), &[]);

    // Readiness: the host polls GET / until anything answers.
    let ready = reqwest::blocking::get(format!("{}/", h.base)).unwrap();
    assert!(ready.status().is_success());

    for timer in [
        "timer.schedule-status-set.json",
        "timer.schedule-status-null.json",
        "timer.past-due.json",
    ] {
        let r = post(
            &h,
            "SyncTimer",
            fixture(&format!("azure-functions/requests/{timer}")),
        );
        assert_eq!(r.status(), 200, "{timer}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let v: Value = r.json().unwrap();
        assert_invocation_shape(&v);
        // With the sync off (the default) the timer plans nothing and queues nothing, and says why.
        assert_eq!(v["Outputs"], json!({}), "{timer}: {v}");
        assert_eq!(
            v["Logs"],
            json!(["sync is disabled (SYNC_ENABLED=false)"]),
            "{timer}"
        );
    }
    let rows = |table: &str| -> i64 {
        rusqlite::Connection::open(dir.path().join("bridge.sqlite"))
            .unwrap()
            .query_row(
                "SELECT count(*) FROM entities WHERE tbl = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap()
    };
    // The only row in `runs`: the timer's own last-run record (host::timer_runs), no sync run.
    let timer_rows = rusqlite::Connection::open(dir.path().join("bridge.sqlite"))
        .unwrap()
        .query_row(
            "SELECT group_concat(pk || '/' || rk) FROM entities WHERE tbl = 'runs'",
            [],
            |r| r.get::<_, Option<String>>(0),
        )
        .unwrap();
    assert_eq!(
        timer_rows.as_deref(),
        Some("timer-runs/SyncTimer"),
        "no run recorded"
    );
    assert_eq!(rows("leases"), 0, "no lease taken");
    assert_eq!(rows("queue"), 0, "nothing queued");

    // A queue function that cannot process a message answers non-2xx so the host retries, then poisons it.
    for queue in [
        "queue.plain-string.json",
        "queue.json-object.json",
        "queue.doc-sample-variant.json",
    ] {
        let r = post(
            &h,
            "NotifyFanout",
            fixture(&format!("azure-functions/requests/{queue}")),
        );
        assert!(!r.status().is_success(), "{queue}: {}", r.status());
        let v: Value = r.json().expect("failure body is JSON too");
        assert!(v["Logs"][0].as_str().unwrap().contains("not"), "{v}");
    }

    // Non-forwarded HTTP: the request inside Data.req runs through the same routes; answer in Outputs.res.
    let mut http = fixture_json("azure-functions/requests/http.not-forwarded.json");
    let r = post(&h, "MoodleWebhook", http.to_string());
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_invocation_shape(&v);
    assert_eq!(
        v["Outputs"]["res"]["statusCode"], 404,
        "fixture route is not one of ours: {v}"
    );
    assert!(
        v["Outputs"].get("notify").is_none(),
        "a failed request queues nothing"
    );
    let outputs: Vec<&String> = v["Outputs"].as_object().unwrap().keys().collect();
    assert_eq!(outputs, ["res"], "only the HTTP answer: {v}");
    let body: Value = serde_json::from_str(v["Outputs"]["res"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["error"], "no route for POST /api/notify/grade-released",
        "{v}"
    );
    // MoodleWebhook's own route, with no WEBHOOK_SECRET configured: refused, and nothing queued.
    http["Data"]["req"]["Url"] = json!("http://localhost:7071/api/webhook");
    let v: Value = post(&h, "MoodleWebhook", http.to_string()).json().unwrap();
    assert_eq!(v["Outputs"]["res"]["statusCode"], 401, "{v}");
    let body: Value = serde_json::from_str(v["Outputs"]["res"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["error"],
        "authentication failed: WEBHOOK_SECRET is not configured: every notification is refused",
        "{v}"
    );
    let outputs: Vec<&String> = v["Outputs"].as_object().unwrap().keys().collect();
    assert_eq!(outputs, ["res"], "nothing queued on notify: {v}");
    http["Data"]["req"]["Url"] = json!("http://localhost:7071/api/health");
    http["Data"]["req"]["Method"] = json!("GET");
    let v: Value = post(&h, "MoodleWebhook", http.to_string()).json().unwrap();
    assert_eq!(v["Outputs"]["res"]["statusCode"], 200);
    assert_eq!(v["Outputs"]["res"]["body"], "ok");

    // Forwarded HTTP: the original path, method and query, answered directly.
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/api/health?probe=1", h.base))
        .header("X-Azure-Functions-HostVersion", "4.1040.300")
        .send()
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().unwrap().as_str()),
        (200, "ok")
    );
}

#[test]
fn malformed_or_unknown_invocations_get_clear_errors_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Handler::custom_handler(dir.path(), &[]);

    let r = post(&h, "SyncTimer", "{\"Data\": {\"timer\": ");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("not valid JSON"),
        "{v}"
    );

    let r = post(
        &h,
        "SyncWorker",
        r#"{"Data":{"wrongName":"\"x\""},"Metadata":{}}"#,
    );
    assert_eq!(r.status(), 400);
    assert!(
        r.text().unwrap().contains("msg"),
        "names the missing binding"
    );

    let r = post(&h, "SyncTimer", r#"{"Data":{"timer":"yesterday"}}"#);
    assert_eq!(r.status(), 400);

    let r = post(
        &h,
        "SyncWorker",
        r#"{"Data":{"msg":"\"not json at all\""},"Metadata":{"DequeueCount":"1"}}"#,
    );
    assert_eq!(
        r.status(),
        400,
        "a shard that is not JSON fails the invocation"
    );

    let r = post(&h, "NoSuchFunction", "{}");
    assert_eq!(r.status(), 404);

    let big = format!(
        "{{\"Data\":{{\"msg\":\"{}\"}}}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let r = post(&h, "SyncWorker", big);
    assert_eq!(r.status(), 413, "oversized bodies are refused");

    // Still alive after all of that.
    assert!(h.child.try_wait().unwrap().is_none(), "handler exited");
    assert!(reqwest::blocking::get(format!("{}/", h.base))
        .unwrap()
        .status()
        .is_success());
    h.kill9();
}
