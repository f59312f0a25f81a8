//! Configuration is validated at start with every problem named at once; logs are JSON lines
//! carrying the invocation id; secrets reach neither.

mod common;

use common::app::{run_cli, Handler};
use serde_json::Value;

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
    let url = format!("http://127.0.0.1:{}/moodle", common::free_port());
    let env = [
        ("MOODLE_URL", url.as_str()),
        ("MOODLE_TOKEN", "tok-very-secret-789"),
        ("MOODLE_TIMEOUT_SECS", "2"),
    ];
    let (code, text) = run_cli(dir.path(), &env, &["check-config"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("moodle: FAILED"), "{text}");
    assert!(!text.contains("tok-very-secret-789"));
}

#[test]
fn invocation_logs_are_json_lines_with_the_invocation_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("handler.log");
    let env = [
        ("LOG_LEVEL", "info"),
        ("MOODLE_URL", "https://moodle.example.org"),
        ("MOODLE_TOKEN", "tok-in-env-000"),
    ];
    let mut h = Handler::custom_handler_logged(dir.path(), &env, &log);
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/SyncTimer", h.base))
        .header(
            "X-Azure-Functions-InvocationId",
            "11111111-2222-3333-4444-555555555555",
        )
        .body(common::fixture(
            "azure-functions/requests/timer.schedule-status-set.json",
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    h.kill9();
    let text = std::fs::read_to_string(&log).unwrap();
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
    let az = common::azurite::azurite();
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

    let h = Handler::custom_handler(dir.path(), &env);
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/SyncTimer", h.base))
        .body(common::fixture(
            "azure-functions/requests/timer.schedule-status-null.json",
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}
