//! One real Azurite per test process, started on first use, on free loopback ports.
//!
//! Cleanup: a `static` is never dropped, and a test binary can also die from a signal, so a
//! `Drop` guard or an exit hook is not enough. Instead Azurite runs under a tiny `sh` watchdog
//! that polls the test process's PID (every 0.5 s) and kills Azurite (TERM, then KILL) as soon
//! as the test process is gone, whatever the way it ended (normal exit, panic, SIGKILL). The
//! watchdog also exits when Azurite dies, which is how a failed start is detected.

use bridge::config::{AzureStorageSettings, Secret};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const ACCOUNT: &str = "devstoreaccount1";
const START_TIMEOUT: Duration = Duration::from_secs(30);

const WATCHDOG: &str = r#"
test_pid="$1"; shift
"$@" &
az=$!
# Ctrl-C reaches the whole process group, but a background job ignores SIGINT: forward it.
trap 'kill -TERM "$az" 2>/dev/null; exit 0' INT TERM HUP
while kill -0 "$test_pid" 2>/dev/null && kill -0 "$az" 2>/dev/null; do sleep 0.5; done
kill -TERM "$az" 2>/dev/null
i=0
while kill -0 "$az" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.25; i=$((i+1)); done
kill -KILL "$az" 2>/dev/null
wait "$az" 2>/dev/null
"#;

pub struct Azurite {
    pub blob_port: u16,
    pub queue_port: u16,
    pub table_port: u16,
    /// PID of the watchdog shell (Azurite is its child).
    pub pid: u32,
    pub log: PathBuf,
    _child: Mutex<Child>,
}

impl Azurite {
    pub fn table_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.table_port)
    }

    pub fn blob_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.blob_port)
    }

    pub fn queue_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.queue_port)
    }

    /// `UseDevelopmentStorage`-style connection string with this instance's endpoints.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={};BlobEndpoint={};QueueEndpoint={};TableEndpoint={}",
            azure_storage::EMULATOR_ACCOUNT_KEY,
            self.blob_endpoint(),
            self.queue_endpoint(),
            self.table_endpoint()
        )
    }
}

fn binary() -> PathBuf {
    crate::repo_root().join("tools/node_modules/.bin/azurite")
}

fn listening(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// One attempt; `Err` when Azurite exited early (e.g. a port taken between `free_port` and bind).
fn start_once(bin: &Path, attempt: u32) -> Result<Azurite, String> {
    let (blob_port, queue_port, table_port) =
        (crate::free_port(), super::free_port(), super::free_port());
    let log =
        std::env::temp_dir().join(format!("azurite-test-{}-{attempt}.log", std::process::id()));
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("azurite-watchdog")
        .arg(std::process::id().to_string())
        .arg(bin)
        .args([
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
        ])
        .args(["--extentMemoryLimit", "256"])
        .args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &blob_port.to_string(),
        ])
        .args([
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            &queue_port.to_string(),
        ])
        .args([
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            &table_port.to_string(),
        ])
        // In-memory mode writes nothing, but keep any stray file out of the repository.
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .spawn()
        .map_err(|e| format!("cannot run sh to start Azurite: {e}"))?;
    let pid = child.id();
    let mut child = child;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if [table_port, blob_port, queue_port]
            .iter()
            .all(|p| listening(*p))
        {
            return Ok(Azurite {
                blob_port,
                queue_port,
                table_port,
                pid,
                log,
                _child: Mutex::new(child),
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "Azurite exited ({status}) during start-up; log tail:\n{}",
                tail(&log)
            ));
        }
        if Instant::now() > deadline {
            // Kill Azurite (the watchdog's only child) first, then the watchdog itself.
            let _ = Command::new("pkill")
                .args(["-TERM", "-P", &pid.to_string()])
                .status();
            let _ = child.kill();
            panic!(
                "Azurite did not listen on 127.0.0.1:{table_port}/{blob_port}/{queue_port} within {}s; log tail:\n{}",
                START_TIMEOUT.as_secs(),
                tail(&log)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start() -> Azurite {
    let bin = binary();
    if !bin.exists() {
        panic!(
            "Azurite is not installed at {}: run `bash scripts/install-test-deps.sh` \
             (or `cd tools && npm ci --no-audit --no-fund`) first",
            bin.display()
        );
    }
    let mut last = String::new();
    for attempt in 0..3 {
        match start_once(&bin, attempt) {
            Ok(az) => return az,
            Err(e) => last = e,
        }
    }
    panic!("Azurite failed to start 3 times: {last}");
}

/// The process-wide Azurite (started on first call; blocks until its ports accept connections).
pub fn azurite() -> &'static Azurite {
    static AZURITE: OnceLock<Azurite> = OnceLock::new();
    AZURITE.get_or_init(start)
}

/// Settings for this process's Azurite, with a table prefix no other test in the process uses.
/// The prefix keeps the letters and digits of `prefix` (Azure table names are alphanumeric).
pub fn storage_settings(prefix: &str) -> AzureStorageSettings {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let az = azurite();
    let clean: String = prefix
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(30)
        .collect();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    AzureStorageSettings {
        account: ACCOUNT.into(),
        key: Some(Secret::new(azure_storage::EMULATOR_ACCOUNT_KEY)),
        table_endpoint: Some(az.table_endpoint()),
        blob_endpoint: Some(az.blob_endpoint()),
        managed_identity_client_id: None,
        identity: Default::default(),
        table_prefix: format!("t{clean}{n}x"),
    }
}
