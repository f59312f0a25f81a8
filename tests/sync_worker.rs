//! SyncWorker under the Functions host contract (`POST /SyncWorker`, the router the custom
//! handler serves): what each shard outcome answers, what it does to the message and to the run.
//! A retryable failure answers non-2xx (the host retries, then poisons with the reason); a
//! permanent one answers 2xx with the message on the `syncWorkPoison` output and marks the run
//! failed; a shard that must not run is refused before any Moodle call.

use bridge::app::AppState;
use bridge::config::Source;
use bridge::settings::Settings;
use bridge::store::blob::FsBlobStore;
use bridge::store::sqlite::SqliteStore;
use bridge::store::{tables, SharedStore};
use bridge::sync::lease;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use testkit::ent_data::{self, Spec};
use testkit::fake_moodle::FakeMoodle;
use testkit::sync_env::pairs;
use tower::ServiceExt;

/// The app as the custom handler builds it, on a SQLite store in `dir` (one store per test;
/// several states may share it, as several instances of a Function App share their storage).
fn state(dir: &Path, moodle_url: &str, extra: &[(&str, &str)]) -> AppState {
    let sqlite = dir.join("s.sqlite");
    let blobs = dir.join("blobs");
    let ldif = dir.join("export.ldif");
    if !ldif.exists() {
        let mut data = Vec::new();
        ent_data::write_ldif(&mut data, &Spec::new(12)).unwrap();
        std::fs::write(&ldif, data).unwrap();
    }
    let mut m = pairs(&[
        ("SQLITE_PATH", sqlite.to_str().unwrap()),
        ("BLOB_DIR", blobs.to_str().unwrap()),
        ("MOODLE_URL", moodle_url),
        ("MOODLE_TOKEN", "TOKEN"),
        ("MOODLE_TIMEOUT_SECS", "2"),
        ("SYNC_ENABLED", "true"),
        ("SYNC_SOURCE", "ldif"),
        ("SYNC_SOURCE_FILE", ldif.to_str().unwrap()),
        ("SYNC_ROLE_RULES", "-"),
        ("SYNC_OVERLAP_SECS", "0"),
    ]);
    m.extend(pairs(extra));
    let settings = Settings::load(&mut Source::from_map(m)).expect("settings");
    let store: SharedStore = Arc::new(SqliteStore::open(&sqlite).unwrap());
    AppState::from_parts(settings, store, Arc::new(FsBlobStore::new(blobs)), false).unwrap()
}

/// One invocation as the host sends it; returns status and the JSON answer.
async fn invoke(state: &AppState, function: &str, data: Value) -> (u16, Value) {
    let body = json!({ "Data": data, "Metadata": { "DequeueCount": "1" } }).to_string();
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(format!("/{function}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap();
    let res = bridge::app::custom_handler_router(state.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = res.status().as_u16();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 22)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).expect("JSON answer"))
}

/// Fire SyncTimer; returns the shard messages it put on `syncWork`.
async fn plan(state: &AppState) -> Vec<String> {
    state.store.ensure_tables().await.unwrap();
    let timer = json!({ "timer": { "IsPastDue": false } });
    let (status, v) = invoke(state, "SyncTimer", timer).await;
    assert_eq!(status, 200, "{v}");
    v["Outputs"]["syncWork"]
        .as_array()
        .unwrap_or_else(|| panic!("no shards: {v}"))
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

async fn shard(state: &AppState, text: &str) -> (u16, Value) {
    invoke(state, "SyncWorker", json!({ "msg": text })).await
}

fn run_id(msg: &str) -> String {
    serde_json::from_str::<Value>(msg).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn run_row(state: &AppState, run: &str) -> bridge::store::Entity {
    state
        .store
        .get(tables::RUNS, run, "run")
        .await
        .unwrap()
        .expect("run row")
}

fn poisoned(v: &Value) -> Vec<String> {
    v["Outputs"]["syncWorkPoison"]
        .as_array()
        .map(|a| a.iter().map(|m| m.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_failed_source_read_fails_the_invocation_so_the_host_retries_it() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path(), &fake.url, &[]);
    let msgs = plan(&st).await;
    // The export disappears between planning and the worker: the read fails.
    std::fs::remove_file(dir.path().join("export.ldif")).unwrap();
    let (status, v) = shard(&st, &msgs[0]).await;
    assert_eq!(status, 500, "{v}");
    assert_eq!(v["retryable"], true, "{v}");
    assert!(v["error"].as_str().unwrap().contains("export.ldif"), "{v}");
    assert!(poisoned(&v).is_empty(), "{v}");
    let run = run_row(&st, &run_id(&msgs[0])).await;
    assert_eq!(run.str("status"), Some("planned"), "the run is not done");
    assert_eq!(run.int("done"), Some(0), "the shard is not counted");
}

#[tokio::test]
async fn a_read_that_fails_part_way_fails_the_invocation() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    // LDAP on a closed loopback port: the reader fails after the shard started.
    let url = format!("ldap://127.0.0.1:{}", testkit::free_port());
    let ldap = [
        ("SYNC_SOURCE", "ldap"),
        ("LDAP_URL", url.as_str()),
        ("LDAP_TIMEOUT_SECS", "2"),
    ];
    let st = state(dir.path(), &fake.url, &ldap);
    let msgs = plan(&st).await;
    let (status, v) = shard(&st, &msgs[0]).await;
    assert_eq!(status, 500, "{v}");
    assert_eq!(v["retryable"], true);
    assert!(v["error"].as_str().unwrap().contains("read failed"), "{v}");
    let run = run_row(&st, &run_id(&msgs[0])).await;
    assert_eq!(run.int("done"), Some(0), "the shard is not counted");
    assert!(
        st.store
            .get(tables::RUNS, &run_id(&msgs[0]), "shard-0")
            .await
            .unwrap()
            .is_none(),
        "no shard report that would look done"
    );
}

#[tokio::test]
async fn a_rejected_token_poisons_the_shard_at_once_and_fails_the_run() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path(), &fake.url, &[]);
    let msgs = plan(&st).await;
    fake.lock().token = "ROTATED".into();
    let (status, v) = shard(&st, &msgs[0]).await;
    assert_eq!(status, 200, "answered so that the host does not retry: {v}");
    assert_eq!(poisoned(&v), vec![msgs[0].clone()], "{v}");
    assert!(v["Outputs"].get("syncWork").is_none(), "{v}");
    let logs = v["Logs"].to_string();
    assert!(
        logs.contains("invalidtoken") && logs.contains("sync-work-poison"),
        "{logs}"
    );
    let run = run_row(&st, &run_id(&msgs[0])).await;
    assert_eq!(run.str("status"), Some("failed"));
    assert!(
        run.str("error").unwrap().contains("MOODLE_TOKEN"),
        "{run:?}"
    );
    assert!(
        lease::current(&st.store).await.unwrap().is_none(),
        "the failed run gives the lease back"
    );
    // The other shards of that run are refused without touching Moodle.
    fake.reset_calls();
    let (status, v) = shard(&st, &msgs[1]).await;
    assert_eq!(status, 200, "{v}");
    assert!(
        poisoned(&v).is_empty() && v["Outputs"].as_object().unwrap().is_empty(),
        "{v}"
    );
    assert!(v["Logs"].to_string().contains("already failed"), "{v}");
    assert_eq!(fake.lock().total_calls(), 0);
}

#[tokio::test]
async fn a_missing_capability_is_permanent_and_says_so() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path(), &fake.url, &[]);
    let msgs = plan(&st).await;
    // Moodle answers "nopermissions" to every user creation.
    fake.fail_with_exception("core_user_create_users", "nopermissions");
    let (status, v) = shard(&st, &msgs[0]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(poisoned(&v), vec![msgs[0].clone()], "{v}");
    assert!(v["Logs"].to_string().contains("capability"), "{v}");
    assert_eq!(
        run_row(&st, &run_id(&msgs[0])).await.str("status"),
        Some("failed")
    );
}

#[tokio::test]
async fn shards_of_unknown_runs_or_with_sync_disabled_are_refused_before_any_work() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path(), &fake.url, &[]);
    let msgs = plan(&st).await;

    // A shard naming a run nobody planned: poisoned at once, nothing read, nothing written.
    let forged = msgs[0].replace(&run_id(&msgs[0]), "20260101T000000Z-deadbeef");
    let (status, v) = shard(&st, &forged).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(poisoned(&v), vec![forged.clone()]);
    assert!(v["Logs"].to_string().contains("unknown"), "{v}");
    assert!(st
        .store
        .get(tables::RUNS, "20260101T000000Z-deadbeef", "run")
        .await
        .unwrap()
        .is_none());

    // Sync switched off while shards were queued: not applied, the run marked failed.
    let off = state(dir.path(), &fake.url, &[("SYNC_ENABLED", "false")]);
    let (status, v) = shard(&off, &msgs[0]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(poisoned(&v), vec![msgs[0].clone()]);
    assert!(v["Logs"].to_string().contains("SYNC_ENABLED=false"), "{v}");
    let run = run_row(&st, &run_id(&msgs[0])).await;
    assert_eq!(run.str("status"), Some("failed"));
    assert_eq!(run.int("done"), Some(0));
    assert_eq!(fake.lock().total_calls(), 0, "{:?}", fake.calls());
}

#[tokio::test]
async fn a_shard_while_another_run_holds_the_lease_is_refused() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path(), &fake.url, &[]);
    let msgs = plan(&st).await;
    // The run's lease lapsed and another run took it.
    lease::release(&st.store, &run_id(&msgs[0])).await.unwrap();
    lease::acquire(&st.store, "other-run", 600).await.unwrap();
    let (status, v) = shard(&st, &msgs[0]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(poisoned(&v), vec![msgs[0].clone()]);
    assert!(v["Logs"].to_string().contains("other-run"), "{v}");
    assert_eq!(fake.lock().total_calls(), 0);
    assert_eq!(
        lease::current(&st.store).await.unwrap().unwrap().owner,
        "other-run",
        "the other run keeps its lease"
    );
}

#[tokio::test]
async fn an_idle_shard_checks_the_token_and_a_wrong_one_fails_the_run() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path(), &fake.url, &[("SYNC_TOKEN_RECHECK_SECS", "0")]);
    // A first full run, so that the next one has nothing to read (same export file).
    for m in plan(&st).await {
        assert_eq!(shard(&st, &m).await.0, 200);
    }
    fake.lock().token = "ROTATED".into();
    let msgs = plan(&st).await;
    fake.reset_calls();
    let (last, first) = msgs.split_last().unwrap();
    for m in first {
        let (status, v) = shard(&st, m).await;
        assert_eq!((status, poisoned(&v).len()), (200, 0), "{v}");
    }
    // The last shard finds that no shard of the run called Moodle: it checks the token once.
    let (status, v) = shard(&st, last).await;
    assert_eq!(
        fake.calls(),
        [("core_webservice_get_site_info".to_string(), 1)].into(),
        "one token check for the whole run"
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(poisoned(&v), vec![last.clone()], "{v}");
    assert!(v["Logs"].to_string().contains("token check"), "{v}");
    let run = run_row(&st, &run_id(last)).await;
    assert_eq!(run.str("status"), Some("failed"), "not reported as done");
    assert!(
        run.str("error").unwrap().contains("MOODLE_TOKEN"),
        "{run:?}"
    );
}

/// Every timer's last run is recorded where the admin page reads it (the host router and
/// `serve` both go through `host::timer_runs`): when it ran and whether it failed.
#[tokio::test]
async fn a_timer_invocation_records_its_last_run_for_the_admin_page() {
    let moodle = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = state(dir.path(), moodle.settings().url.as_str(), &[]);
    use bridge::host::timer_runs;
    assert_eq!(
        timer_runs::last(s.store.as_ref(), "SyncTimer")
            .await
            .unwrap(),
        None
    );
    let before = chrono::Utc::now().timestamp();
    plan(&s).await;
    let last = timer_runs::last(s.store.as_ref(), "SyncTimer")
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(last.failure, None);
    let started = chrono::DateTime::parse_from_rfc3339(&last.started_at)
        .unwrap()
        .timestamp();
    assert!(started >= before - 1, "{last:?}");
    assert!(last.finished_at >= last.started_at);
    // A failing timer is recorded as failed, with the start of its reason, and still fails.
    fn failing<'a>(
        _: &'a AppState,
        _: &'a bridge::host::functions::InvocationContext,
        _: bridge::host::TimerInfo,
    ) -> futures::future::BoxFuture<'a, bridge::host::functions::FunctionResult> {
        Box::pin(async {
            Err(bridge::error::FunctionError::NotConfigured(
                "NOTIFY_SWEEP_SCHEDULE: not a schedule ".repeat(20),
            ))
        })
    }
    let ctx = bridge::host::functions::InvocationContext {
        invocation_id: bridge::ids::InvocationId::mint(),
        function: "NotifySweep",
    };
    let timer = bridge::host::TimerInfo {
        is_past_due: false,
        last: None,
        next: None,
    };
    assert!(timer_runs::run(&s, &ctx, failing, timer).await.is_err());
    let last = timer_runs::last(s.store.as_ref(), "NotifySweep")
        .await
        .unwrap()
        .expect("recorded");
    let failure = last.failure.expect("recorded as failed");
    assert!(
        failure.starts_with("not configured: NOTIFY_SWEEP_SCHEDULE"),
        "{failure}"
    );
    assert!(failure.chars().count() <= 301, "cut to a line: {failure}");
    // SyncTimer's own record is untouched.
    assert!(timer_runs::last(s.store.as_ref(), "SyncTimer")
        .await
        .unwrap()
        .unwrap()
        .failure
        .is_none());
}
