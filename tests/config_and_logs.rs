//! Configuration is validated at start with every problem named at once; logs are JSON lines
//! carrying the invocation id; secrets reach neither.

use serde_json::Value;
use testkit::app::{run_cli, Handler};

#[test]
fn check_config_lists_every_problem_and_never_echoes_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("MOODLE_TOKEN", "tok-very-secret-123"),
        ("SYNC_SCHEDULE", "*/5 * * * *"),
        ("SERVE_ADDR", "localhost"),
        ("LOG_LEVEL", "loud"),
        (
            "AzureWebJobsStorage",
            "AccountName=x;AccountKey=key-very-secret-456",
        ),
        ("STORE_BACKEND", "azure"),
        ("MAX_BODY_BYTES", "-1"),
    ];
    let (code, text) = run_cli(dir.path(), &env, &["check-config", "--offline"]);
    assert_eq!(code, Some(1), "{text}");
    for name in [
        "MOODLE_URL",
        "SYNC_SCHEDULE",
        "SERVE_ADDR",
        "LOG_LEVEL",
        "MAX_BODY_BYTES",
    ] {
        assert!(text.contains(name), "{name} not reported in:\n{text}");
    }
    assert!(
        text.contains("six"),
        "schedule problem explains the format:\n{text}"
    );
    assert!(
        !text.contains("tok-very-secret-123") && !text.contains("key-very-secret-456"),
        "secret leaked:\n{text}"
    );
}

#[test]
fn check_config_passes_on_the_embedded_default_and_checks_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = run_cli(dir.path(), &[], &["check-config"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("settings: ok") && text.contains("store: ok — sqlite:"),
        "{text}"
    );
}

#[test]
fn check_config_reports_an_unreachable_moodle_without_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/moodle", testkit::free_port());
    let env = [
        ("MOODLE_URL", url.as_str()),
        ("MOODLE_TOKEN", "tok-very-secret-789"),
        ("MOODLE_TIMEOUT_SECS", "2"),
    ];
    let (code, text) = run_cli(dir.path(), &env, &["check-config"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("moodle: FAILED"), "{text}");
    // The cause, not only reqwest's "error sending request".
    assert!(
        text.contains("cannot reach Moodle: error sending request")
            && text.contains("Connection refused"),
        "{text}"
    );
    assert!(!text.contains("tok-very-secret-789"));
}

#[test]
fn invocation_logs_are_json_lines_with_the_invocation_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("handler.log");
    // The token is sent (the timer checks it before planning a run) to a Moodle that echoes it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let echo = rt.block_on(testkit::fake_moodle::FakeMoodle::echo());
    let uri = echo.base_url();
    let ldif = dir.path().join("people.ldif");
    testkit::ent_data::write_ldif(
        &mut std::fs::File::create(&ldif).unwrap(),
        &testkit::ent_data::Spec::new(12),
    )
    .unwrap();
    let env = [
        ("LOG_LEVEL", "info"),
        ("MOODLE_URL", uri.as_str()),
        ("MOODLE_TOKEN", "tok-in-env-000"),
        ("SYNC_ENABLED", "true"),
        ("SYNC_SOURCE", "ldif"),
        ("SYNC_SOURCE_FILE", ldif.to_str().unwrap()),
    ];
    let mut h = Handler::custom_handler_logged(dir.path(), &env, &log);
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/SyncTimer", h.base))
        .header(
            "X-Azure-Functions-InvocationId",
            "11111111-2222-3333-4444-555555555555",
        )
        .body(testkit::fixture(
            "azure-functions/requests/timer.schedule-status-set.json",
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let planned: Value = r.json().unwrap();
    // Each shard, as the host would deliver it: its worker sends the token to Moodle.
    let shards = planned["Outputs"]["syncWork"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!shards.is_empty(), "the timer planned shards: {planned}");
    let mut worked = String::new();
    for shard in shards {
        let answer = reqwest::blocking::Client::new()
            .post(format!("{}/SyncWorker", h.base))
            .json(&serde_json::json!({"Data": {"msg": shard}, "Metadata": {"DequeueCount": "1"}}))
            .send()
            .unwrap()
            .text()
            .unwrap();
        worked.push_str(&answer);
    }
    h.kill9();
    let text = std::fs::read_to_string(&log).unwrap();
    let echoed = echo.received_requests();
    assert!(
        echoed
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("wstoken=tok-in-env-000")),
        "the worker sent the token to the echoing Moodle"
    );
    assert!(
        text.contains("not JSON") || worked.contains("not JSON"),
        "the echoed answer was reported:\n{worked}\n{text}"
    );
    assert!(
        !worked.contains("tok-in-env-000"),
        "token in the invocation answer (its Logs go to the host):\n{worked}"
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| {
            let s = l.to_string();
            s.contains("11111111-2222-3333-4444-555555555555") && s.contains("SyncTimer")
        }),
        "no log line carries the invocation id:\n{text}"
    );
    assert!(!text.contains("tok-in-env-000"));
}

#[test]
fn the_custom_handler_runs_on_azure_storage_through_the_hosts_connection_string() {
    let az = testkit::azurite::azurite();
    let dir = tempfile::tempdir().unwrap();
    let conn = az.connection_string();
    let prefix = format!("ch{}", std::process::id());
    let env = [
        ("AzureWebJobsStorage", conn.as_str()),
        ("STORE_TABLE_PREFIX", prefix.as_str()),
    ];
    let (code, text) = run_cli(dir.path(), &env, &["check-config"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("store: ok — azure-table"), "{text}");
    assert!(text.contains("blobs: ok — azure-blob"), "{text}");
    assert!(
        !text.contains(azure_storage::EMULATOR_ACCOUNT_KEY),
        "account key printed"
    );
    assert!(
        !dir.path().join("bridge.sqlite").exists(),
        "no SQLite file when Azure storage is configured"
    );

    // A SyncTimer that really uses the storage: with the sync on, it takes the lease and writes
    // the run row in Azurite (planning calls no Moodle, so Moodle's address is never dialled).
    let ldif = dir.path().join("export.ldif");
    let mut data = Vec::new();
    testkit::ent_data::write_ldif(&mut data, &testkit::ent_data::Spec::new(6)).unwrap();
    std::fs::write(&ldif, data).unwrap();
    let moodle = format!("http://127.0.0.1:{}/", testkit::free_port());
    let mut sync_env = env.to_vec();
    sync_env.extend([
        ("SYNC_ENABLED", "true"),
        ("SYNC_SOURCE", "ldif"),
        ("SYNC_SOURCE_FILE", ldif.to_str().unwrap()),
        ("MOODLE_URL", moodle.as_str()),
        ("MOODLE_TOKEN", "tok-azurite-000"),
    ]);
    let h = Handler::custom_handler(dir.path(), &sync_env);
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/SyncTimer", h.base))
        .body(testkit::fixture(
            "azure-functions/requests/timer.schedule-status-null.json",
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    let shards: Vec<Value> = v["Outputs"]["syncWork"]
        .as_array()
        .unwrap_or_else(|| panic!("no shards queued: {v}"))
        .iter()
        .map(|m| serde_json::from_str(m.as_str().unwrap()).unwrap())
        .collect();
    assert!(!shards.is_empty(), "{v}");
    let run_id = shards[0]["run_id"].as_str().unwrap().to_string();
    assert!(shards.iter().all(|s| s["run_id"] == run_id.as_str()));

    // Read it back from Azurite with the app's own store, through the same table prefix.
    let mut settings = testkit::azurite::storage_settings("readback");
    settings.table_prefix = prefix.clone();
    let store = bridge::store::azure_table::AzureTableStore::new(&settings).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (run, held) = rt.block_on(async {
        let run = bridge::store::Store::get(&store, bridge::store::tables::RUNS, &run_id, "run")
            .await
            .unwrap();
        let store: bridge::store::SharedStore = std::sync::Arc::new(store);
        (run, bridge::sync::lease::current(&store).await.unwrap())
    });
    let run = run.expect("run row written to Azure tables");
    assert_eq!(run.str("status"), Some("planned"));
    assert_eq!(run.int("total"), Some(shards.len() as i64));
    assert_eq!(run.int("done"), Some(0));
    assert_eq!(
        held.expect("lease row written").owner,
        run_id,
        "the run holds the lease"
    );
    assert!(
        !dir.path().join("bridge.sqlite").exists(),
        "nothing went to a local file"
    );
}

/// Every byte the run left behind: the SQLite file with its journal files, and every blob.
fn stored_bytes(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                pending.push(p);
            } else if p.extension().is_none_or(|e| e != "log" && e != "ldif") {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every SQLite text value (queue `last_error`, runs, reports, blobs), read through SQL so
/// compressed or split storage cannot hide a row from the raw-byte check.
fn store_rows(db: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut rows = Vec::new();
    for t in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = stmt.column_count();
        let mut q = stmt.query([]).unwrap();
        while let Some(row) = q.next().unwrap() {
            let mut line = format!("{t}:");
            for i in 0..n {
                match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
                        line.push(' ');
                        line.push_str(&String::from_utf8_lossy(b));
                    }
                    _ => {}
                }
            }
            rows.push(line);
        }
    }
    rows
}

const ECHOED_TOKEN: &str = "tokECHO0123456789secret";

/// The paths where the token IS sent, to a Moodle whose answer reflects the request: the token
/// appears in no output, log line, report or store row, yet the failure itself is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moodle_answer_echoing_the_request_never_leaks_the_token() {
    use testkit::ent_data::{self, Spec};
    let echo = testkit::fake_moodle::FakeMoodle::echo().await;
    let dir = tempfile::tempdir().unwrap();
    let ldif = dir.path().join("people.ldif");
    ent_data::write_ldif(&mut std::fs::File::create(&ldif).unwrap(), &Spec::new(5)).unwrap();
    let uri = echo.base_url();
    let env = [
        ("MOODLE_URL", uri.as_str()),
        ("MOODLE_TOKEN", ECHOED_TOKEN),
        ("MOODLE_TIMEOUT_SECS", "5"),
        ("SYNC_ENABLED", "true"),
        ("SYNC_SOURCE", "ldif"),
        ("SYNC_SOURCE_FILE", ldif.to_str().unwrap()),
        ("SYNC_SCHEDULE", "* * * * * *"),
        ("SERVE_QUEUE_VISIBILITY_SECS", "1"),
        ("LOG_LEVEL", "info"),
    ];

    let mut outputs = Vec::new();
    for args in [
        &["check-config"][..],
        &["sync", "--users"][..],
        &["sync", "--users", "--json"][..],
    ] {
        // The double answers from its own thread; a blocking wait here is fine.
        let (_, text) = run_cli(dir.path(), &env, args);
        outputs.push((args.join(" "), text));
    }
    let check = &outputs[0].1;
    assert!(
        check.contains("moodle: FAILED") && check.contains("not JSON"),
        "the echoed answer is reported as such:\n{check}"
    );

    let log = dir.path().join("serve.log");
    let mut serve = Handler::serve_logged(dir.path(), &env, &log);
    // Until the echoed failure has reached both the log and the store.
    let start = std::time::Instant::now();
    loop {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let stored = stored_bytes(dir.path())
            .iter()
            .any(|(_, b)| contains(b, "not JSON"));
        if logged.contains("not JSON") && stored {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(40),
            "the echoed failure never reached the log and the store:\n{logged}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    serve.kill9();
    let received = echo.received_requests();
    assert!(
        received
            .iter()
            .any(|r| contains(&r.body, &format!("wstoken={ECHOED_TOKEN}"))),
        "the token was sent, so the echo carried it back"
    );

    outputs.push(("serve log".into(), std::fs::read_to_string(&log).unwrap()));
    for (what, text) in &outputs {
        assert!(
            !text.contains(ECHOED_TOKEN),
            "token leaked in `{what}`:\n{text}"
        );
    }
    for (file, bytes) in stored_bytes(dir.path()) {
        assert!(!contains(&bytes, ECHOED_TOKEN), "token stored in {file}");
    }
    for row in store_rows(&dir.path().join("bridge.sqlite")) {
        assert!(!row.contains(ECHOED_TOKEN), "token stored in row {row}");
    }
}

/// `handler settings | head`: the reader goes away before the command writes. Every printing
/// command ends quietly with the SIGPIPE status instead of panicking.
#[test]
fn printing_commands_end_quietly_when_stdout_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["settings"][..],
        &["settings", "--format", "json"][..],
        &["settings", "--format", "markdown"][..],
        &["settings", "--format", "example"][..],
        &["check-config", "--offline"][..],
        &["check-config"][..],
        &["enqueue", "replay", "{}"][..],
    ] {
        let mut child = testkit::app::base_command(dir.path(), &[])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the child can write: spawn returns once the program is exec'd.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && stderr.trim().is_empty(),
            "handler {args:?} wrote to stderr:\n{stderr}"
        );
        assert_eq!(out.status.code(), Some(141), "handler {args:?}: {stderr}");
    }
}
