//! The embedded store holds names, e-mails and reports: its SQLite file (with `-wal` / `-shm`)
//! and its blob folder are owner-only whatever the umask, and an existing store others could
//! read is tightened with a warning.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `handler serve` under `umask 000` (the most permissive), logs to `log`.
fn serve_with_open_umask(data: &Path, log: &Path) -> std::process::Child {
    let base = testkit::app::base_command(data, &[("LOG_LEVEL", "warn")]);
    let mut cmd = Command::new("sh");
    cmd.env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let addr = format!("127.0.0.1:{}", testkit::free_port());
    cmd.args(["-c", "umask 000 && exec \"$0\" serve --addr \"$1\""])
        .arg(base.get_program())
        .arg(addr)
        .current_dir(data.parent().unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    cmd.spawn().unwrap()
}

fn wait_for_files(paths: &[&Path]) {
    let start = Instant::now();
    while !paths.iter().all(|p| p.exists()) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never created: {paths:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_new_store_is_owner_only_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    // The data folder itself is created by the handler (missing parents are owner-only too).
    let data = dir.path().join("data");
    let db = data.join("bridge.sqlite");
    let (wal, shm, blobs) = (
        data.join("bridge.sqlite-wal"),
        data.join("bridge.sqlite-shm"),
        data.join("blobs"),
    );
    let mut child = serve_with_open_umask(&data, &dir.path().join("serve.log"));
    wait_for_files(&[&db, &wal, &shm]);
    for (p, want) in [(&db, 0o600), (&wal, 0o600), (&shm, 0o600), (&data, 0o700)] {
        assert_eq!(mode(p), want, "{} is {:o}", p.display(), mode(p));
    }
    // The blob folder exists from the start, before any blob is written.
    wait_for_files(&[&blobs]);
    assert_eq!(mode(&blobs), 0o700, "blob folder is {:o}", mode(&blobs));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn an_existing_world_readable_store_is_tightened_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bridge.sqlite");
    let blobs = dir.path().join("blobs");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::create_dir(&blobs).unwrap();
    std::fs::set_permissions(&blobs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, text) = testkit::app::run_cli(dir.path(), &[], &["check-config"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&blobs), 0o700);
    assert!(
        text.contains("readable by other users") && text.contains("bridge.sqlite"),
        "the tightening is logged:\n{text}"
    );
}
