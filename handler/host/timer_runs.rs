//! The last run of each timer function, kept in the store (`runs`, partition `timer-runs`, one
//! row per function) by the one wrapper both the Functions host and `serve` call. The admin page
//! shows it for every timer: the sync's run reports only cover `SyncTimer`, and a sweep or an
//! install run that failed at 03:00 must show up somewhere an IT admin looks.

use super::functions::{FunctionResult, InvocationContext, TimerHandler};
use super::TimerInfo;
use crate::app::AppState;
use crate::store::{tables, Entity, Store, StoreResult};
use chrono::{SecondsFormat, Utc};

pub const PARTITION: &str = "timer-runs";
/// Enough of an error to say what failed; the full text is in the invocation's log.
const DETAIL_CHARS: usize = 300;

/// What the page shows for one timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRun {
    pub started_at: String,
    pub finished_at: String,
    /// `None` when it succeeded, else the start of its error.
    pub failure: Option<String>,
}

/// Runs a timer function and records how it ended. A record that cannot be written is logged
/// and does not change the function's own result (the run itself happened, or failed, as it says).
pub async fn run(
    state: &AppState,
    ctx: &InvocationContext,
    run: TimerHandler,
    timer: TimerInfo,
) -> FunctionResult {
    let started = Utc::now();
    let result = run(state, ctx, timer).await;
    let failure = result.as_ref().err().map(|e| {
        let text = e.to_string();
        match text.char_indices().nth(DETAIL_CHARS) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    });
    let last = LastRun {
        started_at: started.to_rfc3339_opts(SecondsFormat::Secs, true),
        finished_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        failure,
    };
    if let Err(e) = record(state.store.as_ref(), ctx.function, &last).await {
        tracing::warn!(error = %e, "could not record the timer's last run");
    }
    result
}

pub async fn record(store: &dyn Store, function: &str, last: &LastRun) -> StoreResult<()> {
    let mut row = Entity::new(PARTITION, function)
        .with("started_at", last.started_at.as_str())
        .with("finished_at", last.finished_at.as_str())
        .with("ok", last.failure.is_none());
    if let Some(f) = &last.failure {
        row = row.with("failure", f.as_str());
    }
    store.upsert(tables::RUNS, &row).await.map(|_| ())
}

/// The recorded last run of `function`, if any.
pub async fn last(store: &dyn Store, function: &str) -> StoreResult<Option<LastRun>> {
    Ok(store
        .get(tables::RUNS, PARTITION, function)
        .await?
        .and_then(|e| {
            Some(LastRun {
                started_at: e.str("started_at")?.to_string(),
                finished_at: e.str("finished_at")?.to_string(),
                failure: match e.bool("ok") {
                    Some(true) => None,
                    _ => Some(e.str("failure").unwrap_or("failed").to_string()),
                },
            })
        }))
}
