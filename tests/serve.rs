//! `handler serve`: the standalone server with its scheduler and durable queue.

use std::time::{Duration, Instant};
use testkit::app::{base_command, Handler};

fn enqueue(dir: &std::path::Path, queue: &str, body: &str) -> String {
    let out = base_command(dir, &[])
        .args(["enqueue", queue, body])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "enqueue failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn queue_rows(dir: &std::path::Path, partition: &str) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(dir.join("bridge.sqlite")).unwrap();
    let mut stmt = conn
        .prepare("SELECT rk, props FROM entities WHERE tbl = 'queue' AND pk = ?1 ORDER BY rk")
        .unwrap();
    stmt.query_map([partition], |r| {
        let props: String = r.get(1)?;
        let v: serde_json::Value = serde_json::from_str(&props).unwrap();
        Ok((
            r.get::<_, String>(0)?,
            v["dequeue_count"].as_i64().unwrap_or(-1),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// The recorded error of the first message of a queue, once a try has failed.
fn queue_last_error(dir: &std::path::Path, partition: &str) -> Option<String> {
    let conn = rusqlite::Connection::open(dir.join("bridge.sqlite")).unwrap();
    let props: String = conn
        .query_row(
            "SELECT props FROM entities WHERE tbl = 'queue' AND pk = ?1 ORDER BY rk LIMIT 1",
            [partition],
            |r| r.get(0),
        )
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&props).ok()?;
    v["last_error"].as_str().map(str::to_owned)
}

#[test]
fn serve_answers_public_routes_but_not_host_invocations() {
    let dir = tempfile::tempdir().unwrap();
    let h = Handler::serve(dir.path(), &[]);
    let client = reqwest::blocking::Client::new();
    assert_eq!(
        client.get(format!("{}/", h.base)).send().unwrap().status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{}/api/health", h.base))
            .send()
            .unwrap()
            .status(),
        200
    );
    // Nobody outside may fire a timer or forge a queue message on a standalone server.
    let r = client
        .post(format!("{}/SyncTimer", h.base))
        .body("{}")
        .send()
        .unwrap();
    assert!(r.status() == 404 || r.status() == 405, "{}", r.status());
    assert!(
        dir.path().join("bridge.sqlite").exists(),
        "embedded store created"
    );
}

#[test]
fn queued_messages_survive_kill_9_and_keep_their_retry_count() {
    let dir = tempfile::tempdir().unwrap();
    // Written durably before any server runs: this is what a crash right after enqueue leaves.
    let id = enqueue(
        dir.path(),
        "notify",
        r#"{"kind":"grade-released","courseId":42}"#,
    );
    assert_eq!(queue_rows(dir.path(), "notify"), vec![(id.clone(), 0)]);

    // A claim dies with its worker after 2 s (the kill may land between the claim and the
    // record of the failed try), so the restarted server sees the message within seconds.
    let env = [("SERVE_QUEUE_VISIBILITY_SECS", "2")];
    let mut h = Handler::serve(dir.path(), &env);
    // The notify worker claims it; it is not a notify message of this build (an old shape), so
    // the try fails and is counted like any bad input.
    // Wait for the failure to be recorded, not only the claim, so the restart always begins from
    // "tried once and failed" rather than from a claim that still has to expire.
    let start = Instant::now();
    while queue_rows(dir.path(), "notify").first().map(|r| r.1) != Some(1)
        || queue_last_error(dir.path(), "notify").is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "message never tried: {:?}",
            queue_rows(dir.path(), "notify")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    h.kill9();

    // Nothing lost, nothing duplicated, the try count kept for the poison rule.
    assert_eq!(queue_rows(dir.path(), "notify"), vec![(id.clone(), 1)]);
    let _h2 = Handler::serve(dir.path(), &env);
    // The restarted worker takes the same message once its backoff (2 s after the first try)
    // or the dead worker's claim is over, and counts this second try.
    let start = Instant::now();
    while queue_rows(dir.path(), "notify").first().map(|r| r.1) != Some(2) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the restarted server never retried the message: {:?}",
            queue_rows(dir.path(), "notify")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rows = queue_rows(dir.path(), "notify");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, id);
    assert_eq!(rows, vec![(id.clone(), 2)], "same message, second try");
    assert!(queue_rows(dir.path(), "notify-poison").is_empty());
    // The second try's failure is recorded once the worker settles it.
    let start = Instant::now();
    let last_error = || queue_last_error(dir.path(), "notify").unwrap_or_default();
    while !last_error().contains("not a notify message") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the try's failure is not recorded: {:?}",
            last_error()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_scheduler_fires_timer_functions_from_their_ncrontab_setting() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    // Every second, so the test sees two firings quickly.
    let _h = Handler::serve_logged(
        dir.path(),
        &[("SYNC_SCHEDULE", "* * * * * *"), ("LOG_LEVEL", "info")],
        &log,
    );
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let firings = text
            .lines()
            .filter(|l| l.contains("\"function\":\"SyncTimer\"") && l.contains("invocation_id"))
            .count();
        if firings >= 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "SyncTimer fired {firings} times:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A permanent failure is poisoned on its first try, with the reason, instead of five retries.
#[test]
fn a_shard_that_cannot_succeed_is_poisoned_at_once_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ldif = dir.path().join("export.ldif");
    std::fs::write(&ldif, "").unwrap();
    let moodle = format!("http://127.0.0.1:{}/", testkit::free_port());
    let env = [
        ("SYNC_ENABLED", "true"),
        ("SYNC_SOURCE", "ldif"),
        ("SYNC_SOURCE_FILE", ldif.to_str().unwrap()),
        ("MOODLE_URL", moodle.as_str()),
        ("MOODLE_TOKEN", "tok"),
        ("MOODLE_ALLOW_INSECURE", "true"),
    ];
    // A shard of a run this store never planned.
    let shard = r#"{"run_id":"20260101T000000Z-deadbeef","index":0,"total":1,"population":"students","options":{"users":true,"cohorts":true,"roles":true,"user":null,"force":false,"update_only":false,"simulate":false,"verbose":false,"no_cohort_lock":false,"allow_mass_removal":false}}"#;
    let id = base_command(dir.path(), &env)
        .args(["enqueue", "sync-work", shard])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(id.status.success());
    let id = String::from_utf8(id.stdout).unwrap().trim().to_string();
    let _h = Handler::serve(dir.path(), &env);
    let start = Instant::now();
    // Poisoning writes the poison row, then removes the original: wait for both.
    while queue_rows(dir.path(), "sync-work-poison").is_empty()
        || !queue_rows(dir.path(), "sync-work").is_empty()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never poisoned: {:?}",
            queue_rows(dir.path(), "sync-work")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        queue_rows(dir.path(), "sync-work-poison"),
        vec![(id, 1)],
        "poisoned on the first try"
    );
    assert!(queue_rows(dir.path(), "sync-work").is_empty());
    let conn = rusqlite::Connection::open(dir.path().join("bridge.sqlite")).unwrap();
    let props: String = conn
        .query_row(
            "SELECT props FROM entities WHERE tbl = 'queue' AND pk = 'sync-work-poison'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&props).unwrap();
    assert!(
        v["last_error"].as_str().unwrap().contains("is unknown"),
        "{v}"
    );
}
