//! A store that cannot be used is reported at once, with its endpoint and the cause: an
//! unreachable Azure endpoint stops `serve`, the custom handler and `check-config` within
//! seconds; a full disk (or a store that cannot be written) fails `check-config`.

use std::process::Stdio;
use std::time::{Duration, Instant};
use testkit::app::{base_command, run_cli};

/// AzureWebJobsStorage whose table and blob endpoints are a closed loopback port.
fn closed_port_storage() -> (String, u16) {
    let port = testkit::free_port();
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1",
        azure_storage::EMULATOR_ACCOUNT_KEY
    );
    (conn, port)
}

/// Run `handler` with `args` (and the custom-handler port when `args` is empty) until it exits;
/// returns how long it took, its exit code and its stderr.
fn run_until_exit(env: &[(&str, &str)], args: &[&str]) -> (Duration, Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = base_command(dir.path(), env);
    if args.is_empty() {
        cmd.env(
            "FUNCTIONS_CUSTOMHANDLER_PORT",
            testkit::free_port().to_string(),
        );
    }
    let start = Instant::now();
    let mut child = cmd
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = start.elapsed();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (took, out.status.code(), text)
}

#[test]
fn an_unreachable_azure_store_stops_serve_and_the_custom_handler_within_seconds() {
    let (conn, port) = closed_port_storage();
    let env = [
        ("AzureWebJobsStorage", conn.as_str()),
        ("STORE_CHECK_TIMEOUT_SECS", "3"),
    ];
    let addr = format!("127.0.0.1:{}", testkit::free_port());
    for (mode, args) in [
        ("serve", vec!["serve", "--addr", addr.as_str()]),
        ("custom handler", vec![]),
    ] {
        let (took, code, text) = run_until_exit(&env, &args);
        assert!(took < Duration::from_secs(8), "{mode}: {took:?}\n{text}");
        assert_ne!(code, Some(0), "{mode}: {text}");
        assert!(
            text.contains(&format!("127.0.0.1:{port}")),
            "{mode}: names the endpoint:\n{text}"
        );
        assert!(
            text.to_lowercase().contains("connection refused"),
            "{mode}: names the cause:\n{text}"
        );
        assert!(!text.contains("retry policy expired"), "{mode}: {text}");
        assert!(
            !text.contains(azure_storage::EMULATOR_ACCOUNT_KEY),
            "{mode}: key printed"
        );
    }
}

#[test]
fn check_config_reports_an_unreachable_azure_store_within_seconds() {
    let (conn, port) = closed_port_storage();
    let env = [
        ("AzureWebJobsStorage", conn.as_str()),
        ("STORE_CHECK_TIMEOUT_SECS", "3"),
    ];
    let (took, code, text) = run_until_exit(&env, &["check-config"]);
    assert!(took < Duration::from_secs(10), "{took:?}\n{text}");
    assert_eq!(code, Some(1), "{text}");
    for service in ["store", "blobs"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{service}: ")))
            .unwrap_or_else(|| panic!("no {service} line:\n{text}"));
        assert!(line.contains("FAILED"), "{line}");
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    }
    assert!(text.to_lowercase().contains("connection refused"), "{text}");
}

/// A store folder where nothing more can be written: a full 512 KiB tmpfs when this process
/// may mount one (root, as in CI), otherwise a read-only folder (which root would ignore).
struct Unwritable {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Unwritable {
    fn new() -> Unwritable {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        Unwritable { dir, mounted }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Take away the space left (tmpfs) or the write permission (plain folder).
    fn fill(&self) {
        use std::os::unix::fs::PermissionsExt;
        if self.mounted {
            let mut f = std::fs::File::create(self.path().join("filler")).unwrap();
            let chunk = vec![0u8; 4096];
            while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
            let _ = f.sync_all();
            // Give back 36 KiB: enough for SQLite to open the file and read (its 32 KiB shared
            // memory index), not enough to write a row. Reads pass; only a write shows the problem.
            let len = f.metadata().unwrap().len();
            f.set_len(len.saturating_sub(36 * 1024)).unwrap();
        } else {
            for e in std::fs::read_dir(self.path()).unwrap() {
                let p = e.unwrap().path();
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o500));
            }
            std::fs::set_permissions(self.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
        }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount")
                .arg(self.dir.path())
                .status();
        }
    }
}

#[test]
fn check_config_reports_a_store_that_cannot_be_written() {
    let store = Unwritable::new();
    let sqlite = store.path().join("bridge.sqlite");
    let blobs = store.path().join("blobs");
    let env = [
        ("SQLITE_PATH", sqlite.to_str().unwrap()),
        ("BLOB_DIR", blobs.to_str().unwrap()),
        ("STORE_CHECK_TIMEOUT_SECS", "3"),
    ];
    let home = tempfile::tempdir().unwrap();
    // While there is room: both fine, and the store now exists (tables created).
    let (code, text) = run_cli(home.path(), &env, &["check-config"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("store: ok"), "{text}");
    store.fill();
    let (code, text) = run_cli(home.path(), &env, &["check-config"]);
    assert_eq!(code, Some(1), "mounted tmpfs: {}\n{text}", store.mounted);
    let line = text
        .lines()
        .find(|l| l.starts_with("store: "))
        .unwrap_or_else(|| panic!("no store line:\n{text}"));
    assert!(line.contains("FAILED"), "{line}");
    assert!(line.contains("bridge.sqlite"), "names the store: {line}");
    let (store_cause, blob_cause) = if store.mounted {
        ("disk is full", "no space left on device")
    } else {
        ("readonly", "permission denied")
    };
    assert!(
        line.to_lowercase().contains(store_cause),
        "names the cause: {line}"
    );
    let blob_line = text.lines().find(|l| l.starts_with("blobs: ")).unwrap();
    assert!(blob_line.contains("FAILED"), "{blob_line}");
    assert!(
        blob_line.to_lowercase().contains(blob_cause),
        "names the cause: {blob_line}"
    );
}
