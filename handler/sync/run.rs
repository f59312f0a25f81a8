//! Runs: in-process (CLI, admin "run now") or sharded (SyncTimer plans, SyncWorkers apply).
//! Either way one lease guards the run and one report lands in `runs`.

use super::engine::{run_population, Ctx, PassError, PassState, Progress};
use super::groups::{self, run_groups};
use super::lease::{self, LeaseError};
use super::removal::run_removals;
use super::report::{RunReport, SyncOptions};
use super::settings::{CohortSourceKind, SyncSettings};
use super::shard::Shard;
use crate::moodle::MoodleClient;
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
            moodle,
        })
    }

    fn ctx(&self, run_id: &str, opts: &SyncOptions, progress: Option<Progress>) -> Ctx {
        Ctx {
            settings: self.settings.clone(),
            store: self.store.clone(),
            moodle: self.moodle.clone(),
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
    #[error("{0}")]
    Invalid(String),
}

pub fn new_run_id() -> String {
    format!(
        "{}-{:08x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    )
}

fn normalise(opts: &SyncOptions) -> SyncOptions {
    let mut o = opts.clone();
    if !o.users && !o.cohorts && !o.roles {
        o.users = true;
        o.cohorts = true;
        o.roles = true;
    }
    o
}

/// Shards of a run: one per population, plus the group pass when cohorts come from groups.
fn shard_names(s: &SyncSettings, opts: &SyncOptions) -> Vec<String> {
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

/// Whole run in this process: lease, every population, optional removals, report.
pub async fn run_inline(
    env: &SyncEnv,
    opts: &SyncOptions,
    progress: Option<Progress>,
) -> Result<RunReport, RunError> {
    let opts = normalise(opts);
    let run_id = new_run_id();
    lease::acquire(&env.store, &run_id, env.settings.lease_secs).await?;
    let started = Instant::now();
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
    if !failed {
        if let Err(e) = run_removals(&ctx, &mut st, &mut report).await {
            report.errors.push(format!("removals: {e}"));
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    report.moodle_calls = calls_delta(&before, &env.moodle.call_counts());
    let saved = save_report(env, &report, "run").await;
    let released = lease::release(&env.store, &run_id).await;
    saved?;
    released?;
    Ok(report)
}

/// SyncTimer: take the lease, record the run, return the shard messages to enqueue.
pub async fn plan_run(env: &SyncEnv, opts: &SyncOptions) -> Result<Vec<Shard>, RunError> {
    let opts = normalise(opts);
    let run_id = new_run_id();
    lease::acquire(&env.store, &run_id, env.settings.lease_secs).await?;
    let names = shard_names(&env.settings, &opts);
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
        .enumerate()
        .map(|(index, population)| Shard {
            run_id: run_id.clone(),
            index,
            total,
            population,
            options: opts.clone(),
        })
        .collect())
}

/// SyncWorker: apply one shard. A redelivered shard re-runs idempotently but is counted once;
/// the last shard to finish writes the run's report and releases the lease.
pub async fn apply_shard(env: &SyncEnv, shard: &Shard) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let before = env.moodle.call_counts();
    let ctx = env.ctx(&shard.run_id, &shard.options, None);
    let mut report = RunReport::new(&shard.run_id, &shard.options, env.settings.trace_limit);
    report.shard = Some(shard.population.clone());
    let mut st = PassState::default();
    if let Err(e) = run_one(&ctx, &mut st, &mut report, &shard.population).await {
        // Transient or fatal Moodle/store failure: fail the invocation so the queue retries.
        return Err(RunError::Invalid(format!(
            "shard {} of run {}: {e}",
            shard.population, shard.run_id
        )));
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

/// Run row (`<run id>/run`), an index row for listings (newest first) and the trace blob.
async fn save_report(env: &SyncEnv, report: &RunReport, rk: &str) -> Result<(), StoreError> {
    let row = Entity::new(&report.run_id, rk)
        .with("status", "done")
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
