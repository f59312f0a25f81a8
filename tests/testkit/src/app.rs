//! Starting the real `handler` binary on a free port, as the Functions host or an admin would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

enum Mode {
    CustomHandler,
    Serve,
}

pub struct Handler {
    pub child: Child,
    pub port: u16,
    pub base: String,
}

impl Handler {
    /// Custom-handler mode: the host sets FUNCTIONS_CUSTOMHANDLER_PORT and runs `handler` bare.
    pub fn custom_handler(data_dir: &Path, extra_env: &[(&str, &str)]) -> Handler {
        Handler::spawn(Mode::CustomHandler, data_dir, extra_env, None)
    }

    /// Custom-handler mode with stderr (the JSON logs) written to `log_file`.
    pub fn custom_handler_logged(
        data_dir: &Path,
        extra_env: &[(&str, &str)],
        log_file: &Path,
    ) -> Handler {
        Handler::spawn(Mode::CustomHandler, data_dir, extra_env, Some(log_file))
    }

    /// `handler serve` on a free port.
    pub fn serve(data_dir: &Path, extra_env: &[(&str, &str)]) -> Handler {
        Handler::spawn(Mode::Serve, data_dir, extra_env, None)
    }

    /// `handler serve` with stderr (the JSON logs) written to `log_file`.
    pub fn serve_logged(data_dir: &Path, extra_env: &[(&str, &str)], log_file: &Path) -> Handler {
        Handler::spawn(Mode::Serve, data_dir, extra_env, Some(log_file))
    }

    fn spawn(
        mode: Mode,
        data_dir: &Path,
        extra_env: &[(&str, &str)],
        log_file: Option<&Path>,
    ) -> Handler {
        let port = crate::free_port();
        let mut cmd = base_command(data_dir, extra_env);
        match mode {
            Mode::CustomHandler => cmd.env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string()),
            Mode::Serve => cmd.args(["serve", "--addr", &format!("127.0.0.1:{port}")]),
        };
        if let Some(path) = log_file {
            cmd.stderr(std::fs::File::create(path).expect("log file"));
        }
        Handler::start(cmd, port)
    }

    fn start(mut cmd: Command, port: u16) -> Handler {
        let child = cmd.spawn().expect("spawn handler");
        let h = Handler {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
        };
        h.wait_ready(Duration::from_secs(20));
        h
    }

    /// Poll like the host does: any HTTP answer on `/` means ready.
    pub fn wait_ready(&self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("handler not ready on port {} after {limit:?}", self.port);
    }

    /// kill -9: no shutdown hook runs, nothing is flushed by us.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The `handler` binary Cargo built beside the running test (`target/<profile>/deps/<test>` →
/// `target/<profile>/handler`): `CARGO_BIN_EXE_handler` exists only when compiling the main
/// package's own integration tests, not this crate.
pub fn handler_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let mut dir = exe
        .parent()
        .expect("test executable's directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let handler = dir.join(format!("handler{}", std::env::consts::EXE_SUFFIX));
    assert!(
        handler.exists(),
        "{} not found: the main package's integration tests build it (cargo test)",
        handler.display()
    );
    handler
}

/// Environment for a hermetic run: SQLite and blobs in `data_dir`, no inherited app settings.
pub fn base_command(data_dir: &Path, extra_env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(handler_exe());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SQLITE_PATH", data_dir.join("bridge.sqlite"))
        .env("BLOB_DIR", data_dir.join("blobs"))
        .env(
            "BRIDGE_SETTINGS_FILE",
            data_dir.join("no-local-settings.json"),
        )
        .env("LOG_LEVEL", "warn")
        .current_dir(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd
}

/// Run a `handler` subcommand to completion; returns exit code and stdout + stderr.
pub fn run_cli(
    data_dir: &Path,
    extra_env: &[(&str, &str)],
    args: &[&str],
) -> (Option<i32>, String) {
    let out = base_command(data_dir, extra_env)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run handler");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}
