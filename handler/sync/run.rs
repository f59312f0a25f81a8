//! Runs: in-process (CLI, admin "run now") or sharded (SyncTimer plans, SyncWorkers apply).
//! Either way one lease guards the run and one report lands in `runs`.

use super::engine::{run_population, Ctx, PassError, PassState, Progress};
use super::full_pass;
use super::groups::{self, run_groups};
use super::lease::{self, LeaseError};
use super::removal::run_removals;
use super::report::{RunReport, SyncOptions};
use super::settings::{CohortSourceKind, SyncSettings};
use super::shard::Shard;
use super::token_check;
use crate::moodle::{MoodleClient, MoodleError};
use crate::store::{tables, BlobStore, Entity, SharedStore, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The parts a run talks to; built from `AppState` or directly by tests and the benchmark.
#[derive(Clone)]
pub struct SyncEnv {
    pub settings: Arc<SyncSettings>,
    pub store: SharedStore,
    pub blobs: Option<Arc<dyn BlobStore>>,
    pub moodle: MoodleClient,
    /// Moodle courses → Teams, when TEAMS_COURSES selects courses and Graph is configured.
    pub teams: Option<crate::teams_sync::TeamsEnv>,
    /// Entra ID → Moodle users, when Graph is configured.
    pub entra: Option<super::entra::EntraEnv>,
}

impl SyncEnv {
    pub fn from_app(state: &crate::app::AppState) -> Result<Self, String> {
        let moodle = state
            .moodle
            .clone()
            .ok_or("MOODLE_URL and MOODLE_TOKEN are not set")?;
        Ok(SyncEnv {
            settings: Arc::new(state.settings.sync.clone()),
            store: state.store.clone(),
            blobs: Some(state.blobs.clone()),
            teams: crate::teams_sync::env_from_app(state, &moodle),
            entra: super::entra::EntraEnv::from_app(state),
            moodle,
        })
    }

    fn ctx(&self, run_id: &str, opts: &SyncOptions, progress: Option<Progress>) -> Ctx {
        Ctx {
            settings: self.settings.clone(),
            store: self.store.clone(),
            moodle: self.moodle.clone(),
            source: super::source::for_settings(&self.settings),
            opts: opts.clone(),
            run_id: run_id.to_string(),
            progress,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Busy(#[from] LeaseError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A shard failed in a way a later try may not (network, Moodle overloaded, source read).
    #[error("{0}")]
    Invalid(String),
    /// Moodle refused the run itself (token check, or a fatal answer inside a shard).
    #[error("{context}: {source}")]
    Moodle {
        context: String,
        #[source]
        source: MoodleError,
    },
    /// A shard whose run is not in `runs`: planned elsewhere, or its rows were removed.
    #[error("sync run {0} is unknown: shard refused")]
    UnknownRun(String),
    /// A shard delivered again after its run ended (done or failed): nothing to do.
    #[error("sync run {0} is already {1}: shard not applied again")]
    Finished(String, String),
    /// Retrying cannot help (e.g. the shard names a population the settings no longer have).
    #[error("{0}")]
    Permanent(String),
}

impl RunError {
    /// Whether trying the same shard again may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            RunError::Store(_) | RunError::Invalid(_) => true,
            RunError::Moodle { source, .. } => !crate::error::moodle_permanent(source),
            RunError::Busy(_)
            | RunError::UnknownRun(_)
            | RunError::Finished(..)
            | RunError::Permanent(_) => false,
        }
    }
}

pub fn new_run_id() -> String {
    format!(
        "{}-{:08x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    )
}

fn normalise(env: &SyncEnv, opts: &SyncOptions) -> SyncOptions {
    let mut o = opts.clone();
    if o.course.is_some() {
        o.teams = true;
    }
    if !o.users && !o.cohorts && !o.roles && !o.teams && !o.entra {
        o.users = true;
        o.cohorts = true;
        o.roles = true;
        o.teams = true;
    }
    // ENTRA_SYNC=true: Entra users are part of every run that syncs users (the timer's too).
    if o.users && o.user.is_none() && env.entra.as_ref().is_some_and(|e| e.settings.scheduled) {
        o.entra = true;
    }
    o
}

/// Whether the Entra pass runs: asked for (or implied, see `normalise`), and Graph configured.
fn entra_wanted(env: &SyncEnv, opts: &SyncOptions) -> bool {
    opts.entra && env.entra.is_some()
}

fn entra_error(context: &str, e: super::entra::EntraError) -> RunError {
    use super::entra::EntraError as E;
    match e {
        // Refused credentials or a missing permission (named): no retry helps.
        E::Graph(g) => RunError::Permanent(format!("{context}: {g}")),
        E::Moodle(source) => RunError::Moodle {
            context: context.to_string(),
            source,
        },
        E::Store(e) => RunError::Store(e),
    }
}

/// The Entra pass into `report`.
async fn run_entra(
    env: &SyncEnv,
    opts: &SyncOptions,
    report: &mut RunReport,
) -> Result<(), super::entra::EntraError> {
    let Some(e) = &env.entra else { return Ok(()) };
    super::entra::EntraPass {
        env: e,
        moodle: &env.moodle,
        store: &env.store,
        sync: &env.settings,
        opts,
    }
    .run(report)
    .await
}

/// Whether a run with these options reads the ENT/LDAP side at all (a `--teams` run does not).
fn ent_entities(opts: &SyncOptions) -> bool {
    opts.users || opts.cohorts || opts.roles
}

/// Whether the Teams pass runs: asked for, and set up (courses selected, Graph configured; an
/// explicit `--course` needs only Graph).
fn teams_wanted(env: &SyncEnv, opts: &SyncOptions) -> bool {
    opts.teams
        && opts.user.is_none()
        && env
            .teams
            .as_ref()
            .is_some_and(|t| opts.course.is_some() || t.settings.selects_courses())
}

fn teams_error(context: &str, e: crate::teams_sync::TeamsRunError) -> RunError {
    use crate::teams_sync::TeamsRunError as T;
    match e {
        T::Fatal(m) => RunError::Permanent(format!("{context}: {m}")),
        T::Moodle(source) => RunError::Moodle {
            context: context.to_string(),
            source,
        },
        T::Store(e) => RunError::Store(e),
    }
}

/// Name of the one shard of a scheduled full pass: every population, then the removals.
pub const FULL_PASS: &str = "full-pass";

/// Turn an incremental run into a full pass when SYNC_FULL_SCHEDULE has fired since the last one.
async fn with_full_pass(env: &SyncEnv, mut opts: SyncOptions) -> Result<SyncOptions, StoreError> {
    if !opts.force
        && !opts.full
        && opts.user.is_none()
        && full_pass::due(
            &env.store,
            env.settings.full_schedule.as_ref(),
            chrono::Utc::now(),
        )
        .await?
    {
        opts.full = true;
    }
    Ok(opts)
}

/// A complete full read of everything is remembered, so the schedule knows when the next is due.
async fn record_full_pass(
    ctx: &Ctx,
    report: &RunReport,
    started: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    let o = &ctx.opts;
    if (o.full || o.force)
        && o.user.is_none()
        && !o.simulate
        && o.users
        && report.complete
        && report.errors.is_empty()
    {
        full_pass::record(&ctx.store, started).await?;
    }
    Ok(())
}

/// Shards of a run: one per population, plus the group pass when cohorts come from groups.
fn shard_names(s: &SyncSettings, opts: &SyncOptions) -> Vec<String> {
    if !ent_entities(opts) {
        return Vec::new();
    }
    let mut names: Vec<String> = s.populations.iter().map(|p| p.name.clone()).collect();
    if opts.cohorts
        && opts.user.is_none()
        && matches!(s.cohorts.kind, CohortSourceKind::Groups { .. })
    {
        names.push(groups::POPULATION.into());
    }
    names
}

fn calls_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

async fn run_one(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
    name: &str,
) -> Result<(), PassError> {
    if name == FULL_PASS {
        // One worker reads everything, so it knows who is gone when the read ends.
        let started = chrono::Utc::now();
        for n in shard_names(&ctx.settings, &ctx.opts) {
            Box::pin(run_one(ctx, st, report, &n)).await?;
        }
        if let Err(e) = run_removals(ctx, st, report).await {
            report.errors.push(format!("removals: {e}"));
        }
        record_full_pass(ctx, report, started).await?;
        return Ok(());
    }
    if name == groups::POPULATION {
        return run_groups(ctx, st, report).await;
    }
    let Some(pop) = ctx.settings.populations.iter().find(|p| p.name == name) else {
        report.errors.push(format!("unknown population {name}"));
        report.complete = false;
        return Ok(());
    };
    run_population(ctx, st, report, pop).await
}

/// A run that had nothing to do never called Moodle: prove the token (see `token_check`). A run
/// that Moodle answered at least once without an exception has proven it: remember that.
async fn check_token_if_idle(
    env: &SyncEnv,
    before: &BTreeMap<String, u64>,
    accepted_before: u64,
    st: &PassState,
    report: &mut RunReport,
) -> Result<(), MoodleError> {
    let idle = idle_pass(env, before, st);
    if let Some(at) = prove_token(env, accepted_before, idle).await? {
        report.trace(|| {
            format!(
                "Moodle token: proven at {} (no call needed)",
                at.to_rfc3339()
            )
        });
    }
    Ok(())
}

/// No Moodle call in this pass, not even the protection check's.
fn idle_pass(env: &SyncEnv, before: &BTreeMap<String, u64>, st: &PassState) -> bool {
    st.protected.is_none() && env.moodle.call_counts() == *before
}

/// The one token rule of a run and of a shard: an accepted answer is remembered as a proof; an
/// `idle` pass proves the token unless the last proof is recent, whose time it then returns.
async fn prove_token(
    env: &SyncEnv,
    accepted_before: u64,
    idle: bool,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, MoodleError> {
    if env.moodle.accepted_calls() > accepted_before {
        token_check::remember(&env.store, &env.moodle, chrono::Utc::now()).await;
    }
    if !idle {
        return Ok(None);
    }
    let proof = token_check::prove_if_stale(
        &env.store,
        &env.moodle,
        env.settings.token_recheck_secs,
        chrono::Utc::now(),
    )
    .await?;
    Ok(match proof {
        token_check::Proof::Recent(at) => Some(at),
        token_check::Proof::Checked => None,
    })
}

/// Whole run in this process: lease, every population, optional removals, report.
pub async fn run_inline(
    env: &SyncEnv,
    opts: &SyncOptions,
    progress: Option<Progress>,
) -> Result<RunReport, RunError> {
    run_inline_as(env, &new_run_id(), opts, progress).await
}

/// [`run_inline`] under a run id the caller chose: the admin page links to the run before it
/// starts.
pub async fn run_inline_as(
    env: &SyncEnv,
    run_id: &str,
    opts: &SyncOptions,
    progress: Option<Progress>,
) -> Result<RunReport, RunError> {
    let run_id = run_id.to_string();
    lease::acquire(&env.store, &run_id, env.settings.lease_secs).await?;
    let opts = match with_full_pass(env, normalise(env, opts)).await {
        Ok(o) => o,
        Err(e) => {
            let _ = lease::release(&env.store, &run_id).await;
            return Err(e.into());
        }
    };
    let started_at = chrono::Utc::now();
    let started = Instant::now();
    let accepted_before = env.moodle.accepted_calls();
    let before = env.moodle.call_counts();
    let ctx = env.ctx(&run_id, &opts, progress);
    let mut report = RunReport::new(&run_id, &opts, env.settings.trace_limit);
    let mut st = PassState::default();
    let mut failed = false;
    for name in shard_names(&env.settings, &opts) {
        if let Err(e) = run_one(&ctx, &mut st, &mut report, &name).await {
            report.complete = false;
            report.errors.push(format!("{name}: {e}"));
            failed = true;
            break;
        }
    }
    if !failed && ent_entities(&opts) {
        if let Err(e) = run_removals(&ctx, &mut st, &mut report).await {
            report.errors.push(format!("removals: {e}"));
        }
        if let Err(e) = check_token_if_idle(env, &before, accepted_before, &st, &mut report).await {
            report.complete = false;
            report.errors.push(format!("Moodle token check: {e}"));
        }
        if let Err(e) = record_full_pass(&ctx, &report, started_at).await {
            report.errors.push(format!("full-pass record: {e}"));
        }
    }
    if !failed && entra_wanted(env, &opts) {
        // Before the Teams pass: it puts into teams the users this pass links.
        let before = env.moodle.call_counts();
        let accepted = env.moodle.accepted_calls();
        match run_entra(env, &opts, &mut report).await {
            Ok(()) if !ent_entities(&opts) => {
                let st = PassState::default();
                if let Err(e) = check_token_if_idle(env, &before, accepted, &st, &mut report).await
                {
                    report.complete = false;
                    report.errors.push(format!("Moodle token check: {e}"));
                }
            }
            Ok(()) => {}
            Err(e) => {
                report.complete = false;
                report.errors.push(entra_error("entra", e).to_string());
            }
        }
    }
    if !failed && teams_wanted(env, &opts) {
        if let Some(t) = &env.teams {
            if let Err(e) = crate::teams_sync::run(t, &opts, None, &mut report).await {
                report.complete = false;
                report.errors.push(teams_error("teams", e).to_string());
            }
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    report.moodle_calls = calls_delta(&before, &env.moodle.call_counts());
    let saved = save_report(env, &report, "run", "done").await;
    let released = lease::release(&env.store, &run_id).await;
    saved?;
    released?;
    Ok(report)
}

/// SyncTimer: take the lease, record the run, return the shard messages to enqueue.
pub async fn plan_run(env: &SyncEnv, opts: &SyncOptions) -> Result<Vec<Shard>, RunError> {
    let run_id = new_run_id();
    lease::acquire(&env.store, &run_id, env.settings.lease_secs).await?;
    let opts = match with_full_pass(env, normalise(env, opts)).await {
        Ok(o) => o,
        Err(e) => {
            let _ = lease::release(&env.store, &run_id).await;
            return Err(e.into());
        }
    };
    let mut names = if !ent_entities(&opts) {
        Vec::new()
    } else if opts.full || opts.force {
        vec![FULL_PASS.to_string()]
    } else {
        shard_names(&env.settings, &opts)
    };
    if entra_wanted(env, &opts) {
        names.push(super::entra::SHARD.to_string());
    }
    let mut batches = vec![Vec::new(); names.len()];
    if teams_wanted(env, &opts) {
        if let Some(t) = &env.teams {
            match crate::teams_sync::plan_batches(t, &opts).await {
                Ok(b) => {
                    for (i, courses) in b.into_iter().enumerate() {
                        names.push(format!("{}{i}", crate::teams_sync::SHARD_PREFIX));
                        batches.push(courses);
                    }
                }
                Err(e) => {
                    let _ = lease::release(&env.store, &run_id).await;
                    return Err(teams_error("listing the courses for Teams", e));
                }
            }
        }
    }
    if names.is_empty() {
        // Nothing to hand out: a run that does nothing still ends (and frees the lease).
        let report = RunReport::new(&run_id, &opts, env.settings.trace_limit);
        let saved = save_report(env, &report, "run", "done").await;
        let released = lease::release(&env.store, &run_id).await;
        saved?;
        released?;
        return Ok(Vec::new());
    }
    let total = names.len();
    let report = RunReport::new(&run_id, &opts, env.settings.trace_limit);
    let row = Entity::new(&run_id, "run")
        .with("status", "planned")
        .with("total", total as i64)
        .with("done", 0i64)
        .with_json("report", &report)?;
    env.store.upsert(tables::RUNS, &row).await?;
    Ok(names
        .into_iter()
        .zip(batches)
        .enumerate()
        .map(|(index, (population, courses))| Shard {
            run_id: run_id.clone(),
            index,
            total,
            population,
            options: opts.clone(),
            courses,
        })
        .collect())
}

/// SyncWorker: apply one shard. A redelivered shard re-runs idempotently but is counted once;
/// the last shard to finish writes the run's report and releases the lease.
pub async fn apply_shard(env: &SyncEnv, shard: &Shard) -> Result<RunReport, RunError> {
    check_shard(env, shard).await?;
    let started = Instant::now();
    let accepted_before = env.moodle.accepted_calls();
    let before = env.moodle.call_counts();
    let ctx = env.ctx(&shard.run_id, &shard.options, None);
    let mut report = RunReport::new(&shard.run_id, &shard.options, env.settings.trace_limit);
    report.shard = Some(shard.population.clone());
    let mut st = PassState::default();
    let context = format!("shard {} of run {}", shard.population, shard.run_id);
    if shard
        .population
        .starts_with(crate::teams_sync::SHARD_PREFIX)
    {
        let Some(t) = &env.teams else {
            return Err(RunError::Permanent(format!(
                "{context}: Teams is not configured (GRAPH_* settings) any more"
            )));
        };
        crate::teams_sync::run(t, &shard.options, Some(&shard.courses), &mut report)
            .await
            .map_err(|e| teams_error(&context, e))?;
    } else if shard.population == super::entra::SHARD {
        if env.entra.is_none() {
            return Err(RunError::Permanent(format!(
                "{context}: Entra is not configured (GRAPH_* settings) any more"
            )));
        }
        run_entra(env, &shard.options, &mut report)
            .await
            .map_err(|e| entra_error(&context, e))?;
    } else {
        match run_one(&ctx, &mut st, &mut report, &shard.population).await {
            Ok(()) => {}
            Err(PassError::Moodle(source)) => return Err(RunError::Moodle { context, source }),
            // Transient Moodle/store failure: fail the invocation so the queue retries.
            Err(e) => return Err(RunError::Invalid(format!("{context}: {e}"))),
        }
    }
    if !report.complete {
        // The source read failed part-way: the shard is not done, and must not look done.
        return Err(RunError::Invalid(format!(
            "{context}: {}",
            report.errors.join("; ")
        )));
    }

    // Only the last shard of a run that called Moodle nowhere proves the token; checked before
    // this shard is counted, so a retry after a transient failure runs it again.
    let idle = idle_pass(env, &before, &st) && last_of_an_idle_run(env, shard).await?;
    if let Err(source) = prove_token(env, accepted_before, idle).await {
        return Err(RunError::Moodle {
            context: format!("sync run {}: Moodle token check", shard.run_id),
            source,
        });
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    report.moodle_calls = calls_delta(&before, &env.moodle.call_counts());
    let rk = format!("shard-{}", shard.index);
    let row = Entity::new(&shard.run_id, &rk).with_json("report", &report)?;
    match env.store.insert(tables::RUNS, &row).await {
        Ok(_) => {}
        Err(StoreError::Conflict) => return Ok(report), // redelivery: already counted
        Err(e) => return Err(e.into()),
    }
    write_trace(env, &report, &rk).await;
    // Count this shard done; optimistic concurrency against the other workers.
    loop {
        let Some(run) = env.store.get(tables::RUNS, &shard.run_id, "run").await? else {
            return Ok(report);
        };
        let etag = run
            .etag
            .clone()
            .ok_or_else(|| StoreError::Backend("run row without ETag".into()))?;
        let done = run.int("done").unwrap_or(0) + 1;
        let total = run.int("total").unwrap_or(shard.total as i64);
        let mut next = run.clone();
        next.set("done", done);
        if done >= total {
            let mut summary: RunReport = run
                .json("report")?
                .unwrap_or_else(|| RunReport::new(&shard.run_id, &shard.options, 0));
            summary.complete = true;
            for i in 0..total {
                if let Some(r) = env
                    .store
                    .get(tables::RUNS, &shard.run_id, &format!("shard-{i}"))
                    .await?
                {
                    if let Some(sr) = r.json::<RunReport>("report")? {
                        summary.merge(&sr);
                    }
                }
            }
            summary.duration_ms = chrono::DateTime::parse_from_rfc3339(&summary.started_at)
                .map(|t| {
                    (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                        .num_milliseconds()
                        .max(0) as u64
                })
                .unwrap_or(0);
            next.set("status", "done");
            next = next.with_json("report", &summary)?;
            match env.store.replace(tables::RUNS, &next, &etag).await {
                Ok(_) => {
                    index_report(env, &summary).await?;
                    lease::release(&env.store, &shard.run_id).await?;
                    return Ok(report);
                }
                Err(StoreError::PreconditionFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        match env.store.replace(tables::RUNS, &next, &etag).await {
            Ok(_) => return Ok(report),
            Err(StoreError::PreconditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether `shard` is the last one of its run still to be counted and no counted shard called
/// Moodle: then nothing in the run has shown that the token works (see `check_token_if_idle`).
async fn last_of_an_idle_run(env: &SyncEnv, shard: &Shard) -> Result<bool, StoreError> {
    let Some(run) = env.store.get(tables::RUNS, &shard.run_id, "run").await? else {
        return Ok(false);
    };
    let total = run.int("total").unwrap_or(shard.total as i64);
    if run.int("done").unwrap_or(0) + 1 < total {
        return Ok(false);
    }
    for i in (0..total as usize).filter(|i| *i != shard.index) {
        let row = env
            .store
            .get(tables::RUNS, &shard.run_id, &format!("shard-{i}"))
            .await?;
        let Some(r) = row
            .map(|r| r.json::<RunReport>("report"))
            .transpose()?
            .flatten()
        else {
            return Ok(false);
        };
        if !r.moodle_calls.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Refuse cheaply what must not run: a shard of an unknown or finished run, of a population
/// the settings no longer have, or while another run holds the lease. Renews this run's lease
/// (a shard retried after the lease lapsed takes it back if nobody else did).
async fn check_shard(env: &SyncEnv, shard: &Shard) -> Result<(), RunError> {
    let Some(run) = env.store.get(tables::RUNS, &shard.run_id, "run").await? else {
        return Err(RunError::UnknownRun(shard.run_id.clone()));
    };
    if let Some(status @ ("done" | "failed")) = run.str("status") {
        return Err(RunError::Finished(shard.run_id.clone(), status.to_string()));
    }
    if shard.population != FULL_PASS
        && shard.population != super::entra::SHARD
        && !shard
            .population
            .starts_with(crate::teams_sync::SHARD_PREFIX)
        && !shard_names(&env.settings, &shard.options).contains(&shard.population)
    {
        return Err(RunError::Permanent(format!(
            "shard {} of run {}: no such population in the settings",
            shard.population, shard.run_id
        )));
    }
    lease::hold(&env.store, &shard.run_id, env.settings.lease_secs).await?;
    Ok(())
}

/// A shard failed for good: the run is marked failed with the reason (visible in the run
/// listing), and its lease released so the next run can start. Shards of it still queued are
/// then refused as `Finished`.
pub async fn mark_failed(env: &SyncEnv, run_id: &str, reason: &str) -> Result<(), StoreError> {
    loop {
        let Some(run) = env.store.get(tables::RUNS, run_id, "run").await? else {
            return Ok(());
        };
        if matches!(run.str("status"), Some("done" | "failed")) {
            return Ok(());
        }
        let etag = run
            .etag
            .clone()
            .ok_or_else(|| StoreError::Backend("run row without ETag".into()))?;
        let mut summary: RunReport = run
            .json("report")?
            .unwrap_or_else(|| RunReport::new(run_id, &SyncOptions::default(), 0));
        summary.complete = false;
        summary.errors.push(reason.to_string());
        let mut next = run.clone().with_json("report", &summary)?;
        next.set("status", "failed");
        next.set("error", reason);
        match env.store.replace(tables::RUNS, &next, &etag).await {
            Ok(_) => {
                index_report(env, &summary).await?;
                return lease::release(&env.store, run_id).await;
            }
            Err(StoreError::PreconditionFailed) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Run row (`<run id>/run`), an index row for listings (newest first) and the trace blob.
async fn save_report(
    env: &SyncEnv,
    report: &RunReport,
    rk: &str,
    status: &str,
) -> Result<(), StoreError> {
    let row = Entity::new(&report.run_id, rk)
        .with("status", status)
        .with_json("report", report)?;
    env.store.upsert(tables::RUNS, &row).await?;
    index_report(env, report).await?;
    write_trace(env, report, rk).await;
    Ok(())
}

async fn index_report(env: &SyncEnv, report: &RunReport) -> Result<(), StoreError> {
    let t = report.total();
    let inverted = i64::MAX - chrono::Utc::now().timestamp_millis();
    let row = Entity::new("index", format!("{inverted:020}-{}", report.run_id))
        .with("run_id", report.run_id.as_str())
        .with("simulate", report.options.simulate)
        .with("complete", report.complete)
        .with("created", t.created as i64)
        .with("updated", t.updated as i64)
        .with("unchanged", t.unchanged as i64)
        .with("skipped", t.skipped as i64)
        .with("failed", t.failed as i64)
        .with("duration_ms", report.duration_ms as i64);
    env.store.upsert(tables::RUNS, &row).await.map(|_| ())
}

async fn write_trace(env: &SyncEnv, report: &RunReport, rk: &str) {
    let (Some(blobs), false) = (&env.blobs, report.trace.is_empty()) else {
        return;
    };
    let text = report.trace.join("\n");
    if let Err(e) = blobs
        .put(
            "sync-runs",
            &format!("{}/{rk}.trace.txt", report.run_id),
            text.into_bytes(),
            "text/plain; charset=utf-8",
        )
        .await
    {
        tracing::warn!(error = %e, run = %report.run_id, "could not store the run trace");
    }
}

/// Newest run reports first (admin page, CLI).
pub async fn latest_reports(store: &SharedStore, n: usize) -> Result<Vec<RunReport>, StoreError> {
    let page = store.query(tables::RUNS, "index", None, n).await?;
    let mut out = Vec::new();
    for e in page.entities {
        let Some(id) = e.str("run_id") else { continue };
        if let Some(run) = store.get(tables::RUNS, id, "run").await? {
            if let Some(r) = run.json::<RunReport>("report")? {
                out.push(r);
            }
        }
    }
    Ok(out)
}
