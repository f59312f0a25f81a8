//! Configuration is validated at start with every problem named at once; logs are JSON lines
//! carrying the invocation id; secrets reach neither.

mod common;

use common::app::{base_command, Handler};
use serde_json::Value;
use std::process::Stdio;

#[test]
fn check_config_lists_every_problem_and_never_echoes_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = base_command(
        dir.path(),
        &[
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
        ],
    )
    .args(["check-config", "--offline"])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
    let out = base_command(dir.path(), &[])
        .arg("check-config")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("settings: ok") && stdout.contains("store: ok — sqlite:"),
        "{stdout}"
    );
}

#[test]
fn check_config_reports_an_unreachable_moodle_without_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let closed = common::free_port();
    let out = base_command(
        dir.path(),
        &[
            ("MOODLE_URL", &format!("http://127.0.0.1:{closed}/moodle")),
            ("MOODLE_TOKEN", "tok-very-secret-789"),
            ("MOODLE_TIMEOUT_SECS", "2"),
        ],
    )
    .arg("check-config")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("moodle: FAILED"), "{stdout}");
    assert!(!stdout.contains("tok-very-secret-789"));
}

#[test]
fn invocation_logs_are_json_lines_with_the_invocation_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("handler.log");
    let mut h = Handler::custom_handler_logged(
        dir.path(),
        &[
            ("LOG_LEVEL", "info"),
            ("MOODLE_URL", "https://moodle.example.org"),
            ("MOODLE_TOKEN", "tok-in-env-000"),
        ],
        &log,
    );
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
        lines.iter().any(|l| l
            .to_string()
            .contains("11111111-2222-3333-4444-555555555555")
            && l.to_string().contains("SyncTimer")),
        "no log line carries the invocation id:\n{text}"
    );
    assert!(!text.contains("tok-in-env-000"));
}
