//! Start-up figures of the release `handler` in custom-handler mode, as the Functions host sees
//! it: process spawn → first answer on `GET /`; idle RSS after a few requests; binary size.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn handler_path() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("handler");
    anyhow::ensure!(
        p.exists(),
        "{} not found: build it first (cargo build --release --bin handler)",
        p.display()
    );
    Ok(p)
}

/// One raw HTTP/1.1 GET, no client library in the way.
fn get_root(port: u16) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n])
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS"))
}

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let runs: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20);
    let handler = handler_path()?;
    let dir = std::env::temp_dir().join(format!("bench-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..runs {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let start = Instant::now();
        let mut child = Command::new(&handler)
            .env_clear()
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("SQLITE_PATH", dir.join("bench.sqlite"))
            .env("BLOB_DIR", dir.join("blobs"))
            .env("BRIDGE_SETTINGS_FILE", dir.join("none.json"))
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // Poll like the host (which waits 25 ms between tries; we spin to see the real figure).
        let mut attempts = 0u32;
        let ready = loop {
            attempts += 1;
            if get_root(port).is_some() {
                break start.elapsed();
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(10),
                "not ready after 10 s"
            );
            std::thread::sleep(Duration::from_micros(200));
        };
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!(
                "ready after {attempts} attempts, {:.1} ms",
                ready.as_secs_f64() * 1e3
            );
        }
        times.push(ready);
        for _ in 0..20 {
            get_root(port);
        }
        std::thread::sleep(Duration::from_millis(200));
        rss.push(rss_kib(child.id())?);
        child.kill()?;
        child.wait()?;
    }
    times.sort();
    rss.sort();
    let size = std::fs::metadata(&handler)?.len();
    println!("startup runs: {runs}");
    println!(
        "process start -> first answer on GET /: min {:.1} ms, median {:.1} ms, max {:.1} ms (target < 50 ms)",
        times[0].as_secs_f64() * 1e3,
        times[runs / 2].as_secs_f64() * 1e3,
        times[runs - 1].as_secs_f64() * 1e3
    );
    println!(
        "idle RSS after 21 requests: median {:.1} MiB, max {:.1} MiB (target < 20 MiB)",
        rss[runs / 2] as f64 / 1024.0,
        rss[runs - 1] as f64 / 1024.0
    );
    println!(
        "release binary {}: {:.1} MiB (target < 25 MiB)",
        handler.display(),
        size as f64 / 1048576.0
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
