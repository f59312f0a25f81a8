//! The bot answers Teams fast whatever happens behind it (issue 14 items 4 and 5): a reply that
//! cannot go within the request's budget is queued (local durable queue under `serve`, the
//! `botReplies` output binding under the Functions host) and sent by `BotReplies` within Teams'
//! limits, each exactly once; a store that does not answer does not hold the reply.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testkit::bot_app::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

fn help_message(app: &BotTestApp, id: &str) -> Value {
    let mut a = personal_message(&app.service_url(), "aide", "fr-FR", USER_AAD);
    a["id"] = json!(id);
    a
}

/// `times` sorted: no window of `period` holds more than `limit` of them (with slack for the time
/// between booking a slot and the double seeing the request: on a loaded 2-core CI machine one
/// send was seen 69 ms late while the next was on time). The limiter's own unit tests check the
/// booked moments exactly; this checks that nothing bypasses it.
fn assert_window(times: &[Instant], limit: usize, period: Duration) {
    let slack = Duration::from_millis(200);
    for i in 0..times.len().saturating_sub(limit) {
        let span = times[i + limit] - times[i];
        assert!(
            span + slack >= period,
            "{} sends within {span:?} (limit {limit} per {period:?})",
            limit + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_70_messages_in_one_conversation_is_answered_at_once_and_each_reply_sent_once_within_the_limits(
) {
    let app = spawn_bot_app(BotAppOptions {
        with_moodle: false,
        ..Default::default()
    })
    .await;
    let sends = app.log_sends().await;
    // One token for the burst, as the Bot Connector reuses its token (signing one per request
    // would make the test, not the bot, the bottleneck).
    let auth = format!("Bearer {}", valid_token(&app.service_url()));
    let url = format!("http://{}/api/messages", app.addr);
    let requests: Vec<_> = (0..70)
        .map(|i| {
            let body = help_message(&app, &format!("burst-{i}")).to_string();
            let (client, url, auth) = (app.client.clone(), url.clone(), auth.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                let resp = client
                    .post(url)
                    .header("authorization", auth)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (resp.status(), t.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for r in requests {
        answers.push(r.await.unwrap());
    }
    for (status, _) in &answers {
        assert_eq!(*status, 200);
    }
    let slowest = answers.iter().map(|(_, t)| *t).max().unwrap();
    // The old limiter held the 70th reply ~30 s inside its request.
    assert!(
        slowest < Duration::from_secs(5),
        "slowest answer {slowest:?}"
    );
    let sent_in_request = sends.paths().len();
    let queue = app.state.local_queue.as_ref().unwrap();
    let queued = queue.len("bot-replies").await.unwrap();
    assert!(sent_in_request >= 7, "the first replies go at once");
    assert!(queued > 0, "the rest is queued, not dropped");
    assert_eq!(sent_in_request + queued, 70);

    let bodies = app.drain_replies().await;
    assert_eq!(bodies.len(), queued);
    let mut paths = sends.paths();
    paths.sort();
    let mut expected: Vec<String> = (0..70)
        .map(|i| format!("/emea/v3/conversations/a%3Aconv-{USER_AAD}/activities/burst-{i}"))
        .collect();
    expected.sort();
    assert_eq!(paths, expected, "every reply exactly once, in its thread");
    let times = sends.times();
    assert_window(&times, 7, Duration::from_secs(1));
    assert_window(&times, 8, Duration::from_secs(2));
    assert_window(&times, 60, Duration::from_secs(30));

    // The queue delivers a message again (a worker died after sending): not sent twice.
    queue.enqueue("bot-replies", &bodies[0]).await.unwrap();
    assert_eq!(app.drain_replies().await.len(), 1);
    assert_eq!(sends.paths().len(), 70);
}

#[tokio::test(flavor = "multi_thread")]
async fn under_the_host_a_reply_that_cannot_go_in_time_rides_the_output_binding() {
    let app = spawn_bot_app(BotAppOptions {
        with_moodle: false,
        ..Default::default()
    })
    .await;
    // The token endpoint takes longer than the request's budget.
    Mock::given(method("POST"))
        .and(path("/oauth2/v2.0/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"token_type": "Bearer", "expires_in": 3599, "access_token": ACCESS_TOKEN}))
                .set_delay(Duration::from_secs(4)),
        )
        .with_priority(1)
        .mount(&app.connector)
        .await;
    let sends = app.log_sends().await;
    let token = valid_token(&app.service_url());
    let body = help_message(&app, "slow-1").to_string();
    let t = Instant::now();
    let answer = app
        .invoke_messages(Some(&format!("Bearer {token}")), body.as_bytes())
        .await;
    assert!(
        t.elapsed() < Duration::from_millis(3500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(answer["Outputs"]["res"]["statusCode"], 200, "{answer}");
    let queued = answer["Outputs"]["botReplies"]
        .as_array()
        .unwrap_or_else(|| panic!("no botReplies output: {answer}"));
    assert_eq!(queued.len(), 1);
    assert!(sends.paths().is_empty(), "nothing sent inside the request");

    // The host delivers the message to BotReplies: the reply goes out once.
    let msg = bridge::host::QueueMessage {
        text: queued[0].as_str().unwrap().to_string(),
        dequeue_count: 1,
        id: None,
    };
    let ctx = bridge::host::functions::InvocationContext {
        invocation_id: bridge::ids::InvocationId::new("host-1").unwrap(),
        function: "BotReplies",
    };
    bridge::bot::replies::on_queued_reply(&app.state, &ctx, msg.clone())
        .await
        .unwrap();
    bridge::bot::replies::on_queued_reply(&app.state, &ctx, msg)
        .await
        .unwrap();
    assert_eq!(
        sends.paths(),
        [format!(
            "/emea/v3/conversations/a%3Aconv-{USER_AAD}/activities/slow-1"
        )]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_store_does_not_hold_the_reply_and_the_reference_is_saved_later() {
    let app = spawn_bot_app(BotAppOptions {
        with_moodle: false,
        ..Default::default()
    })
    .await;
    let sends = app.log_sends().await;
    // Another process holds the SQLite write lock (busy_timeout is 5 s).
    let other = rusqlite::Connection::open(&app.sqlite_path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let t = Instant::now();
    let resp = app.post(&help_message(&app, "locked-1")).await;
    let took = t.elapsed();
    assert_eq!(resp.status(), 200);
    // The old code awaited the reference write first: 5 s of busy_timeout before any reply.
    assert!(
        took < Duration::from_millis(4500),
        "answered after {took:?}"
    );
    assert_eq!(sends.paths().len(), 1, "the user got an answer");
    other.execute_batch("ROLLBACK").unwrap();
    drop(other);
    // The next message stores the reference that could not be saved.
    tokio::time::sleep(Duration::from_secs(4)).await;
    app.post(&help_message(&app, "locked-2")).await;
    let rows = app.conversation_rows("user").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].str("conversation_id"),
        Some(format!("a:conv-{USER_AAD}").as_str())
    );
}
