//! SyncTimer and SyncWorker entry points.

use crate::app::AppState;
use crate::error::{FunctionError, FunctionOutputs};
use crate::host::functions::InvocationContext;
use crate::host::{QueueMessage, TimerInfo};

pub async fn on_timer(
    _state: &AppState,
    _ctx: &InvocationContext,
    _timer: TimerInfo,
) -> Result<FunctionOutputs, FunctionError> {
    Ok(FunctionOutputs::default().log("sync is not configured"))
}

pub async fn on_shard(
    _state: &AppState,
    _ctx: &InvocationContext,
    msg: QueueMessage,
) -> Result<FunctionOutputs, FunctionError> {
    let _: serde_json::Value = serde_json::from_str(&msg.text)
        .map_err(|e| FunctionError::BadInput(format!("shard is not JSON: {e}")))?;
    Err(FunctionError::NotConfigured(
        "sync is not configured".into(),
    ))
}
