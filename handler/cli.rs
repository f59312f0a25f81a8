//! Command line: `handler` with no arguments is the custom handler (when the Functions host set
//! its port); everything else is for admins and CI.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;

#[derive(Debug, Parser)]
#[command(
    name = "handler",
    version,
    about = "moodle-teams-bridge: ENT/LDAP + Entra → Moodle → Teams"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Standalone server: HTTP routes, timer scheduler and durable queue workers (SQLite by default).
    Serve {
        /// Listen address (default: SERVE_ADDR, else 127.0.0.1:7071).
        #[arg(long)]
        addr: Option<SocketAddr>,
    },
    /// Validate every setting, then check that each configured service answers.
    CheckConfig {
        /// Only validate settings; make no network call.
        #[arg(long)]
        offline: bool,
    },
    /// List every setting the app reads (name, secret or not, description).
    Settings {
        /// Output format.
        #[arg(long, value_enum, default_value_t = SettingsFormat::Table)]
        format: SettingsFormat,
    },
    /// Put one message on a durable local queue (standalone mode), e.g. to replay a poison message.
    Enqueue { queue: String, body: String },
    /// Run a sync now (same options as the manual-sync page).
    Sync(crate::sync::cli::SyncArgs),
    /// Teams app package: build, validate, publish to the org catalog, install.
    TeamsApp(crate::teams_app::cli::TeamsAppArgs),
    /// Admin page helpers.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The whole loop on this machine with no account anywhere (directory, Moodle, Graph, the
    /// bot, a notification), then `serve` with the admin page open. The doubles it needs live in
    /// the test-support crate, kept out of this binary: this runs the `demo` binary built beside
    /// it, or, inside a checkout, `cargo run -p testkit --bin demo`; else it says how to get it.
    Demo {
        /// Passed to the demo (`--exit-after-summary`, `--people N`, `--addr`, `--dir`, `--help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// How `handler demo` starts the demo.
#[derive(Debug, PartialEq, Eq)]
pub enum DemoLaunch {
    /// The `demo` binary next to this one (a `cargo build --workspace` puts them side by side).
    Sibling(std::path::PathBuf),
    /// A checkout of the project: `cargo run -p testkit --bin demo` in it.
    Checkout(std::path::PathBuf),
    /// Neither: print [`DEMO_HOWTO`] and fail (exit 2), not pretend.
    Howto,
}

/// Where the demo is, from this executable's path and the current directory.
pub fn demo_launch(exe: Option<&std::path::Path>, cwd: Option<&std::path::Path>) -> DemoLaunch {
    if let Some(dir) = exe.and_then(|e| e.parent()) {
        let sibling = dir.join(format!("demo{}", std::env::consts::EXE_SUFFIX));
        if sibling.is_file() {
            return DemoLaunch::Sibling(sibling);
        }
    }
    let mut at = cwd;
    while let Some(d) = at {
        if d.join("tests/testkit/src/bin/demo.rs").is_file() && d.join("Cargo.toml").is_file() {
            return DemoLaunch::Checkout(d.to_path_buf());
        }
        at = d.parent();
    }
    DemoLaunch::Howto
}

/// What `handler demo` prints: the demo is the test-support crate's `demo` binary.
pub const DEMO_HOWTO: &str =
    "The demo runs the real bridge against local doubles of the directory, Moodle, Microsoft Graph,
the Bot Connector and a Workflows webhook. Those doubles live in the test-support crate and are
kept out of this release binary, so the demo is its own binary, and no `demo` binary is beside
this one and this is not a checkout of the project. From a checkout of the project's repository
(with the Rust toolchain):

    cargo run -p testkit --bin demo

It prints each step, then leaves `serve` running and prints a one-time link that opens the
admin page signed in. `--exit-after-summary` stops after the summary; `--help` lists the rest.";

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Read a password on stdin (one line) and print its argon2 hash for ADMIN_PASSWORD_HASH.
    /// The password is never taken as an argument (it would show in `ps` and shell history).
    HashPassword,
    /// Print a one-time link (valid 10 minutes, used once) that signs a browser in to the admin
    /// page of `handler serve`. Needs a serve sign-in configured (ADMIN_PASSWORD_HASH or OIDC).
    SignInLink,
}

/// Exit status after stdout was closed early: what a shell reports for a process ended by
/// SIGPIPE (128 + 13), so `set -o pipefail` scripts see the same as with any other tool.
pub const CLOSED_STDOUT_EXIT: i32 = 141;

/// Command output: a closed stdout (`handler settings | head`) ends the process quietly instead
/// of panicking as `println!` does; any other write failure is reported and exits non-zero.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(CLOSED_STDOUT_EXIT);
        }
        let _ = writeln!(std::io::stderr(), "cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// `println!` for command output, through [`write_stdout`].
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for command output, through [`write_stdout`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*))
    };
}

/// Formats of `handler settings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SettingsFormat {
    /// One line per setting: name, secret or not, description.
    Table,
    /// Machine-readable list with defaults.
    Json,
    /// The README's settings table.
    Markdown,
    /// A local.settings.json skeleton.
    Example,
}

#[cfg(test)]
mod tests {
    use super::{demo_launch, DemoLaunch};

    #[test]
    fn handler_demo_finds_the_demo_beside_it_else_in_a_checkout_else_says_how() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let exe = bin.join("handler");
        let checkout = dir.path().join("repo");
        std::fs::create_dir_all(checkout.join("tests/testkit/src/bin")).unwrap();
        std::fs::create_dir_all(checkout.join("handler/admin")).unwrap();
        let deep = checkout.join("handler/admin");
        assert_eq!(demo_launch(Some(&exe), Some(&deep)), DemoLaunch::Howto);
        std::fs::write(checkout.join("Cargo.toml"), "").unwrap();
        std::fs::write(checkout.join("tests/testkit/src/bin/demo.rs"), "").unwrap();
        assert_eq!(
            demo_launch(Some(&exe), Some(&deep)),
            DemoLaunch::Checkout(checkout.clone())
        );
        let sibling = bin.join(format!("demo{}", std::env::consts::EXE_SUFFIX));
        std::fs::write(&sibling, "").unwrap();
        assert_eq!(
            demo_launch(Some(&exe), Some(&deep)),
            DemoLaunch::Sibling(sibling)
        );
        assert_eq!(demo_launch(None, None), DemoLaunch::Howto);
    }

    use super::*;
    use clap::CommandFactory;

    #[test]
    fn settings_help_lists_every_format_and_unknown_formats_are_refused() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("settings")
            .expect("settings subcommand")
            .render_long_help()
            .to_string();
        for f in ["table", "json", "markdown", "example"] {
            assert!(help.contains(f), "{f} missing from:\n{help}");
        }
        assert!(Cli::try_parse_from(["handler", "settings", "--format", "yaml"]).is_err());
        let cli = Cli::try_parse_from(["handler", "settings", "--format", "markdown"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Settings {
                format: SettingsFormat::Markdown
            })
        ));
    }
}
