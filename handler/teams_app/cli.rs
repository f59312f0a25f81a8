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
    /// Build (if the content changed) and publish to the org catalog with an admin's
    /// device-code sign-in; without one, print where to upload the zip by hand.
    Publish {
        /// Where the zip is written for a manual upload (default ./moodle-teams-app-<version>.zip).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Submit for an admin's review instead of publishing at once (AppCatalog.Submit).
        #[arg(long)]
        review: bool,
    },
    /// Install the published version (app-only): in every synced team, and for users.
    Install {
        /// Every team the course sync created (the default when --users is not given).
        #[arg(long)]
        teams: bool,
        /// Users, comma-separated, by Entra object id, UPN or Moodle username: install (or
        /// upgrade) for them and store their personal chat.
        #[arg(long, value_delimiter = ',')]
        users: Vec<String>,
    },
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
        TeamsAppCommand::Publish { out, review } => publish(&state, out, review).await,
        TeamsAppCommand::Install { teams, users } => {
            let teams = teams || users.is_empty();
            match super::install::install_from_settings(&state, teams, &users).await {
                Ok(report) => {
                    outln!(
                        "Teams app {} (catalog id {}): {} target(s)",
                        report.version,
                        report.catalog_id,
                        report.targets.len()
                    );
                    for t in &report.targets {
                        outln!("  {t}");
                    }
                    if let Some(why) = &report.stopped {
                        outln!("stopped: {why}");
                    }
                    Ok(i32::from(report.failed() > 0 || report.stopped.is_some()))
                }
                Err(e @ super::TeamsAppError::Settings(_)) => {
                    eprintln!("{e}");
                    Ok(2)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(1)
                }
            }
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

async fn publish(state: &AppState, out: Option<PathBuf>, review: bool) -> anyhow::Result<i32> {
    use super::catalog::{self, Catalog, SignIn};
    let built = match package::build_and_store(&state.settings, state.blobs.as_ref()).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return Ok(if matches!(e, super::TeamsAppError::Settings(_)) {
                2
            } else {
                1
            });
        }
    };
    let version = built.latest.version.clone();
    let path = out.unwrap_or_else(|| PathBuf::from(format!("moodle-teams-app-{version}.zip")));
    std::fs::write(&path, &built.zip)?;
    outln!(
        "Teams app {version} built → {}/{} and {}",
        super::CONTAINER,
        built.latest.blob,
        path.display()
    );
    let sign_in = match SignIn::from_settings(&state.settings, state.http.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("no delegated sign-in possible: {e}");
            outln!("{}", catalog::manual_upload_hint(&path));
            return Ok(2);
        }
    };
    match &sign_in.store {
        Some(store) => eprintln!("the sign-in is kept in the {}", store.describe()),
        None => eprintln!(
            "neither TEAMS_APP_TOKEN_VAULT_URL nor TEAMS_APP_TOKEN_KEY is set: the sign-in is not kept, the next publish asks again"
        ),
    }
    // The code and URL are for the admin's eyes; neither is a credential on its own.
    let prompt = |p: &crate::outbound::token::DeviceCodePrompt| eprintln!("{}", p.message);
    let token = match sign_in.token(state.http.clone(), prompt, None).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sign-in failed: {e}");
            outln!("{}", catalog::manual_upload_hint(&path));
            return Ok(1);
        }
    };
    let inputs = super::manifest::Inputs::from_settings(&state.settings)?;
    let cat = Catalog::new(
        state.http.clone(),
        catalog::graph_base(&state.settings),
        token,
    );
    match cat
        .publish(&built.zip, &inputs.app_id, &version, review)
        .await
    {
        Ok(r) => {
            let what = match &r.outcome {
                catalog::Published::Created { .. } => "published to the org catalog",
                catalog::Published::Updated { .. } => "updated in the org catalog",
                catalog::Published::AlreadyCurrent { .. } => "already the catalog's version",
            };
            outln!(
                "Teams app {version} {what} (catalog id {}){}{}",
                r.catalog_id(),
                if r.conflict_resolved {
                    "; it existed already (409), so it was updated"
                } else {
                    ""
                },
                if r.requires_review {
                    "; requiresReview: an admin must approve it in the Teams admin center"
                } else {
                    ""
                }
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("publish failed: {e}");
            outln!("{}", catalog::manual_upload_hint(&path));
            Ok(1)
        }
    }
}
