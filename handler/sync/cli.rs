//! `handler sync`: the ENT manual-sync page's options on the command line, with a progress bar
//! and the report at the end.

use super::report::SyncOptions;
use super::run::{run_inline, SyncEnv};
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Sync user accounts (no entity flag = all entities).
    #[arg(long)]
    pub users: bool,
    /// Sync cohorts (class/level values or directory groups).
    #[arg(long)]
    pub cohorts: bool,
    /// Sync role assignments in course/category contexts.
    #[arg(long)]
    pub roles: bool,
    /// Moodle courses → Teams: a team per selected course (TEAMS_COURSES), owners and members
    /// kept in step.
    #[arg(long)]
    pub teams: bool,
    /// Only this Moodle course's team (implies --teams).
    #[arg(long, value_name = "COURSE_ID")]
    pub course: Option<i64>,
    /// Only this person (login or uid): push a changed entry now.
    #[arg(long, value_name = "LOGIN_OR_UID")]
    pub user: Option<String>,
    /// Re-examine every entry, not only those changed since the checkpoint.
    #[arg(long)]
    pub force: bool,
    /// Read every entry and allow removals, like the scheduled full pass (SYNC_FULL_SCHEDULE),
    /// without re-writing what the store says is already in Moodle.
    #[arg(long)]
    pub full: bool,
    /// Refresh records that exist in Moodle; create nothing.
    #[arg(long)]
    pub update_only: bool,
    /// Compute and report every change; write nothing.
    #[arg(long, alias = "simulation", alias = "dry-run")]
    pub simulate: bool,
    /// Per-entry trace of what was compared and decided.
    #[arg(long, short)]
    pub verbose: bool,
    /// Disable the automatic cohort lock: manage cohorts the bridge did not create too.
    #[arg(long)]
    pub no_cohort_lock: bool,
    /// Allow removing more users than SYNC_REMOVAL_MAX_SHARE.
    #[arg(long)]
    pub allow_mass_removal: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Entra ID → Moodle users through Graph (ENTRA_* settings); alone, only that pass runs.
    /// `--force` reads a full round and allows removals above SYNC_REMOVAL_MAX_SHARE.
    #[arg(long)]
    pub entra: bool,
}

impl SyncArgs {
    pub fn options(&self) -> SyncOptions {
        SyncOptions {
            users: self.users,
            cohorts: self.cohorts,
            roles: self.roles,
            user: self.user.clone(),
            force: self.force,
            full: self.full,
            update_only: self.update_only,
            simulate: self.simulate,
            verbose: self.verbose,
            no_cohort_lock: self.no_cohort_lock,
            allow_mass_removal: self.allow_mass_removal,
            teams: self.teams || self.course.is_some(),
            course: self.course,
            trigger: Some("cli".into()),
            entra: self.entra,
        }
    }
}

/// Exit codes: 0 done, 1 run incomplete or refused, 3 done with failed entries.
pub async fn run(state: crate::app::AppState, args: SyncArgs) -> anyhow::Result<i32> {
    state.store.ensure_tables().await?;
    let env = SyncEnv::from_app(&state).map_err(|e| anyhow::anyhow!(e))?;
    if args.entra && env.entra.is_none() {
        eprintln!("sync --entra needs Graph (GRAPH_CLIENT_ID, GRAPH_TENANT_ID and a secret, certificate or managed identity) and Moodle (MOODLE_URL, MOODLE_TOKEN)");
        return Ok(2);
    }
    // The store holds the checkpoints: say which one, so a run against the wrong file is visible.
    eprintln!("store: {}", state.store.describe());
    // The last complete full read says how many entries to expect (the ETA); a first run has none.
    let expected = super::run::latest_reports(&state.store, 10)
        .await
        .ok()
        .and_then(|rs| {
            rs.into_iter()
                .find(|r| {
                    r.complete && (r.options.full || r.options.force) && r.options.user.is_none()
                })
                .map(|r| r.entries_read)
        });
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let display = super::progress::Display::start(terminal, expected);
    let result = run_inline(&env, &args.options(), Some(display.progress.clone())).await;
    display.finish();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sync not run: {}", crate::redact::redact(&e.to_string()));
            return Ok(1);
        }
    };
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for line in &report.trace {
            crate::outln!("{line}");
        }
        crate::out!("{}", report.render());
    }
    if let (Some(who), 0) = (&args.user, report.entries_read) {
        // Exit 0 with nothing done would read as "pushed"; say the person was not found.
        eprintln!(
            "error: no directory entry matches --user {who:?} (by {} or {}) in the configured populations",
            env.settings.mapping.key,
            env.settings.mapping.username.describe()
        );
        return Ok(1);
    }
    Ok(if !report.complete || !report.errors.is_empty() {
        1
    } else if report.total().failed > 0 {
        3
    } else {
        0
    })
}
