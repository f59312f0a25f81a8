//! deploy.sh run twice against a stand-in `az` (infra/testing/az): the second run writes nothing
//! (no secret set, no publish), no secret value reaches the output, and --what-if only asks Azure's
//! what-if. This checks the script's own logic; the real Azure CLI and Azure are not involved.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(state: &Path, extra: &[&str]) -> Output {
    let path = format!(
        "{}:{}",
        repo().join("infra/testing").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .arg(repo().join("infra/deploy.sh"))
        .args([
            "--resource-group",
            "rg",
            "--binary",
            env!("CARGO_BIN_EXE_handler"),
        ])
        .args(extra)
        .env("PATH", path)
        .env("FAKEAZ_STATE", state)
        .env("MOODLE_TOKEN", "moodle-token-value-1234")
        .env("BOT_APP_PASSWORD", "bot-secret-value-5678")
        .env_remove("WEBHOOK_SECRET")
        .env_remove("LDAP_BIND_PASSWORD")
        .output()
        .expect("run deploy.sh")
}

fn log_lines(state: &Path) -> Vec<String> {
    std::fs::read_to_string(state.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn second_run_changes_nothing_and_secrets_stay_hidden() {
    let state = tempfile::tempdir().unwrap();
    let first = deploy(state.path(), &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(first.status.success(), "first run failed:\n{text}");
    let after_first = log_lines(state.path());
    let writes = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| {
                l.contains("secret set")
                    || l.contains("config-zip")
                    || l.contains("tag update")
                    || l.starts_with("az group create")
            })
            .cloned()
            .collect()
    };
    assert_eq!(
        writes(&after_first).len(),
        6,
        "first run: rg, 3 secrets, publish, tag:\n{after_first:#?}"
    );
    assert!(text.contains("adminconsent?client_id=app-id"));
    assert!(text.contains("handler teams-app publish"));

    let second = deploy(state.path(), &[]);
    let text2 = format!(
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(second.status.success(), "second run failed:\n{text2}");
    let second_lines: Vec<String> = log_lines(state.path())[after_first.len()..].to_vec();
    assert!(
        writes(&second_lines).is_empty(),
        "second run wrote: {:?}",
        writes(&second_lines)
    );
    assert!(text2.contains("not published again"));

    let log = std::fs::read_to_string(state.path().join("log")).unwrap();
    for secret in ["moodle-token-value-1234", "bot-secret-value-5678"] {
        assert!(
            !text.contains(secret) && !text2.contains(secret),
            "{secret} printed"
        );
        assert!(
            !log.contains(secret),
            "{secret} passed on an az command line"
        );
    }
}

#[test]
fn what_if_only_previews() {
    let state = tempfile::tempdir().unwrap();
    std::fs::write(state.path().join("rg"), "").unwrap(); // the resource group exists
    let out = deploy(state.path(), &["--what-if"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = log_lines(state.path());
    assert!(log
        .iter()
        .any(|l| l.starts_with("az deployment group what-if")));
    assert!(!log.iter().any(|l| l.contains("deployment group create")
        || l.contains("secret")
        || l.contains("config-zip")));
}
