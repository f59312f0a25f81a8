//! `handler teams-app …`: build, validate, publish and install the Teams app package.

use super::package;
use crate::app::AppState;
use crate::outln;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct TeamsAppArgs {
    #[command(subcommand)]
    pub command: TeamsAppCommand,
}

#[derive(Debug, Subcommand)]
pub enum TeamsAppCommand {
    /// Build the package from the settings, validate it, store it as teams-app/<version>.zip.
    Build {
        /// Also write the zip to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a package zip: layout, schema (strict), own rules, icons. Exit 1 when invalid.
    Validate { zip: PathBuf },
}

/// Exit code: 0 done, 1 the package or a call failed, 2 settings missing.
pub async fn run(state: AppState, args: TeamsAppArgs) -> anyhow::Result<i32> {
    match args.command {
        TeamsAppCommand::Build { out } => {
            let built = match package::build_and_store(&state.settings, state.blobs.as_ref()).await
            {
                Ok(b) => b,
                Err(e @ super::TeamsAppError::Settings(_)) => {
                    eprintln!("{e}");
                    return Ok(2);
                }
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(1);
                }
            };
            let l = &built.latest;
            outln!(
                "built Teams app {} ({}) → {}/{} in {}{}",
                l.version,
                &l.content_hash[..12],
                super::CONTAINER,
                l.blob,
                state.blobs.describe(),
                if built.changed { "" } else { " (unchanged)" }
            );
            if let Some(path) = out {
                std::fs::write(&path, &built.zip)?;
                outln!("written to {}", path.display());
            }
            Ok(0)
        }
        TeamsAppCommand::Validate { zip } => {
            let bytes = std::fs::read(&zip)?;
            let violations = match package::check_zip(&bytes) {
                Ok(v) => v,
                Err(e) => {
                    outln!("{}: INVALID — {e}", zip.display());
                    return Ok(1);
                }
            };
            if violations.is_empty() {
                outln!("{}: valid", zip.display());
                Ok(0)
            } else {
                outln!(
                    "{}: INVALID ({} problem(s))",
                    zip.display(),
                    violations.len()
                );
                for v in &violations {
                    outln!("  {v}");
                }
                Ok(1)
            }
        }
    }
}
