//! `demo`: the whole bridge on this machine with no account anywhere (see `testkit::demo`).
//!
//! ```sh
//! cargo run -p testkit --bin demo                          # then open the printed link
//! cargo run -p testkit --bin demo -- --exit-after-summary  # CI: stop after the summary
//! ```

use std::process::ExitCode;

const HELP: &str =
    "demo: the bridge's whole loop with local doubles, then `serve` with the admin page

options:
  --addr HOST:PORT        where serve listens (default 127.0.0.1:7071; port 0 = any free port)
  --people N              size of the sample school (default 60, 20..=2000)
  --dir PATH              keep the store and the export here (default: a temporary folder)
  --exit-after-summary    stop after the summary instead of serving
  --help";

fn parse() -> Result<testkit::demo::Options, String> {
    let mut o = testkit::demo::Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--addr" => {
                let v = value("--addr")?;
                o.addr = v.parse().map_err(|e| format!("--addr {v}: {e}"))?;
            }
            "--people" => {
                let v = value("--people")?;
                o.people = v
                    .parse()
                    .ok()
                    .filter(|n| (20..=2000).contains(n))
                    .ok_or(format!("--people {v}: a number from 20 to 2000"))?;
            }
            "--dir" => o.dir = Some(value("--dir")?.into()),
            "--exit-after-summary" => o.exit_after_summary = true,
            "--help" | "-h" => return Err(HELP.into()),
            other => return Err(format!("unknown option {other}\n\n{HELP}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    bridge::install_crypto_provider();
    let opts = match parse() {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    match runtime.block_on(testkit::demo::run(opts, &mut stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "demo stopped: {}",
                bridge::redact::redact(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}
