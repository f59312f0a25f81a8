//! SyncTimer and SyncWorker entry points.
//!
//! A shard's outcome decides its message's fate (see `crate::error::FunctionError`):
//! - applied: the message is consumed;
//! - a failure a later try may fix (source read failed, Moodle or the store unreachable):
//!   the invocation fails, the queue retries it and poisons it after 5 tries with the reason;
//! - a failure no retry can fix (token refused, missing capability, function not in the
//!   external service, unknown run, another run holding the lease, sync disabled): the run is
//!   marked failed with the reason, an error is logged, and the message goes to
//!   `sync-work-poison` at once;
//! - a shard of a run already finished (a redelivery): consumed without running again.

use super::report::SyncOptions;
use super::run::{apply_shard, mark_failed, plan_run, RunError, SyncEnv};
use super::shard::Shard;
use crate::app::AppState;
use crate::error::{FunctionError, FunctionOutputs};
use crate::host::functions::{InvocationContext, QUEUE_SYNC_WORK};
use crate::host::{QueueMessage, TimerInfo};

const DISABLED: &str = "sync is disabled (SYNC_ENABLED=false)";

impl From<RunError> for FunctionError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Moodle { context, source } => match FunctionError::from(source) {
                FunctionError::Permanent(m) => FunctionError::Permanent(format!("{context}: {m}")),
                other => FunctionError::Failed(anyhow::anyhow!("{context}: {other}")),
            },
            e if e.retryable() => FunctionError::Failed(anyhow::anyhow!("{e}")),
            e => FunctionError::Permanent(e.to_string()),
        }
    }
}

/// Take the lease, plan one shard per population, enqueue them on `sync-work`.
pub async fn on_timer(
    state: &AppState,
    ctx: &InvocationContext,
    _timer: TimerInfo,
) -> Result<FunctionOutputs, FunctionError> {
    if !state.settings.sync.enabled {
        return Ok(FunctionOutputs::default().log(DISABLED));
    }
    let env = match SyncEnv::from_app(state) {
        Ok(env) => env,
        Err(e) => return Ok(FunctionOutputs::default().log(format!("sync not run: {e}"))),
    };
    match plan_run(&env, &SyncOptions::scheduled()).await {
        Ok(shards) => {
            let mut out = FunctionOutputs::default().log(format!(
                "{}: sync run {} planned, {} shard(s)",
                ctx.invocation_id,
                shards.first().map(|s| s.run_id.as_str()).unwrap_or("-"),
                shards.len()
            ));
            for s in shards {
                out.enqueue(QUEUE_SYNC_WORK, s.to_json());
            }
            Ok(out)
        }
        Err(RunError::Busy(e)) => {
            Ok(FunctionOutputs::default().log(format!("sync not started: {e}")))
        }
        Err(e @ RunError::Moodle { .. }) => {
            tracing::error!(error = %e, "sync run refused by Moodle");
            Err(e.into())
        }
        Err(e) => Err(FunctionError::Failed(anyhow::anyhow!(
            "planning the sync run: {e}"
        ))),
    }
}

/// Apply one shard (see the module comment for what each outcome does to the message).
pub async fn on_shard(
    state: &AppState,
    _ctx: &InvocationContext,
    msg: QueueMessage,
) -> Result<FunctionOutputs, FunctionError> {
    let shard = Shard::parse(&msg.text).map_err(FunctionError::BadInput)?;
    let env = SyncEnv::from_app(state).map_err(FunctionError::NotConfigured)?;
    let result = if state.settings.sync.enabled {
        apply_shard(&env, &shard).await
    } else {
        Err(RunError::Permanent(format!(
            "{DISABLED}: shard {} of run {} not applied",
            shard.population, shard.run_id
        )))
    };
    let report = match result {
        Ok(r) => r,
        Err(e @ RunError::Finished(..)) => {
            tracing::warn!(error = %e, "shard of a finished run ignored");
            return Ok(FunctionOutputs::default().log(e.to_string()));
        }
        Err(e) if !e.retryable() => {
            let reason = e.to_string();
            tracing::error!(error = %reason, run = %shard.run_id, "sync shard failed for good");
            if !matches!(e, RunError::UnknownRun(_) | RunError::Busy(_)) {
                // Unknown run: nothing to mark; another run's lease: that run is not ours.
                mark_failed(&env, &shard.run_id, &reason).await?;
            }
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    let t = report.total();
    Ok(FunctionOutputs::default().log(format!(
        "sync run {} shard {}: created {} updated {} unchanged {} skipped {} failed {}",
        shard.run_id, shard.population, t.created, t.updated, t.unchanged, t.skipped, t.failed
    )))
}
