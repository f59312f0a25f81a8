//! SyncTimer and SyncWorker entry points.

use super::report::SyncOptions;
use super::run::{apply_shard, plan_run, RunError, SyncEnv};
use super::shard::Shard;
use crate::app::AppState;
use crate::error::{FunctionError, FunctionOutputs};
use crate::host::functions::{InvocationContext, QUEUE_SYNC_WORK};
use crate::host::{QueueMessage, TimerInfo};

/// Take the lease, plan one shard per population, enqueue them on `sync-work`.
pub async fn on_timer(
    state: &AppState,
    ctx: &InvocationContext,
    _timer: TimerInfo,
) -> Result<FunctionOutputs, FunctionError> {
    if !state.settings.sync.enabled {
        return Ok(FunctionOutputs::default().log("sync is disabled (SYNC_ENABLED=false)"));
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
        Err(e) => Err(FunctionError::Failed(anyhow::anyhow!(
            "planning the sync run: {e}"
        ))),
    }
}

/// Apply one shard; a failure answers non-2xx so the host retries the message.
pub async fn on_shard(
    state: &AppState,
    _ctx: &InvocationContext,
    msg: QueueMessage,
) -> Result<FunctionOutputs, FunctionError> {
    let shard = Shard::parse(&msg.text).map_err(FunctionError::BadInput)?;
    let env = SyncEnv::from_app(state).map_err(FunctionError::NotConfigured)?;
    let report = apply_shard(&env, &shard)
        .await
        .map_err(|e| FunctionError::Failed(anyhow::anyhow!("{e}")))?;
    let t = report.total();
    Ok(FunctionOutputs::default().log(format!(
        "sync run {} shard {}: created {} updated {} unchanged {} skipped {} failed {}",
        shard.run_id, shard.population, t.created, t.updated, t.unchanged, t.skipped, t.failed
    )))
}
