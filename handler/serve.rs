//! `handler serve`: the same routes, plus what the Functions host would otherwise provide —
//! a scheduler for the timer functions and workers for the queue functions.

use crate::app::{public_router, AppState};
use crate::error::FunctionOutputs;
use crate::host::functions::{
    FunctionKind, InvocationContext, QueueHandler, TimerHandler, FUNCTIONS,
};
use crate::host::{QueueMessage, TimerInfo};
use crate::ids::InvocationId;
use crate::queue::DurableQueue;
use crate::schedule::Schedule;
use chrono::Utc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::Instrument;

/// Poll interval of idle queue workers.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Concurrent workers of a queue. `notify` carries one message per (notification, target), each
/// waiting for its own target's rate limit: one worker would make every channel post queue behind
/// personal messages waiting for the app's 50/s (and the reverse), so it gets as many as the
/// Functions host runs per instance (host.json `batchSize`). The others keep one worker: their
/// messages are few, or ordered work (sync shards).
fn workers_for(queue: &str) -> usize {
    if queue == crate::host::functions::QUEUE_NOTIFY {
        16
    } else {
        1
    }
}

pub async fn run(state: AppState, listener: TcpListener) -> anyhow::Result<()> {
    state.store.ensure_tables().await?;
    let queue = state
        .local_queue
        .clone()
        .ok_or_else(|| anyhow::anyhow!("serve needs the local queue"))?;
    for spec in FUNCTIONS {
        match spec.kind {
            FunctionKind::Timer {
                schedule_setting,
                schedule,
                run,
            } => {
                let schedule = Schedule::parse(schedule(&state.settings))
                    .map_err(|e| anyhow::anyhow!("{schedule_setting}: {e}"))?;
                tokio::spawn(timer_loop(
                    state.clone(),
                    queue.clone(),
                    spec.name,
                    schedule,
                    run,
                ));
            }
            FunctionKind::Queue {
                queue: name, run, ..
            } => {
                for _ in 0..workers_for(name) {
                    tokio::spawn(queue_worker(
                        state.clone(),
                        queue.clone(),
                        spec.name,
                        name,
                        run,
                    ));
                }
            }
            FunctionKind::Http { .. } => {}
        }
    }
    tracing::info!(addr = %listener.local_addr()?, store = %state.store.describe(), "serving");
    let limits = crate::http_server::Limits::from_settings(&state.settings.core);
    crate::http_server::serve(listener, public_router(state), limits, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn new_context(function: &'static str) -> InvocationContext {
    InvocationContext {
        invocation_id: InvocationId::mint(),
        function,
    }
}

async fn deliver(queue: &DurableQueue, out: FunctionOutputs) -> anyhow::Result<()> {
    for (q, body) in out.queue {
        queue.enqueue(&q, &body).await?;
    }
    for line in out.logs {
        tracing::info!("{line}");
    }
    Ok(())
}

async fn timer_loop(
    state: AppState,
    queue: DurableQueue,
    function: &'static str,
    schedule: Schedule,
    run: TimerHandler,
) {
    let mut last = None;
    loop {
        let now = Utc::now();
        let Some(next) = schedule.next_after(now) else {
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let ctx = new_context(function);
        let span = tracing::error_span!("invocation", function, invocation_id = %ctx.invocation_id);
        async {
            let timer = TimerInfo {
                is_past_due: Utc::now() - next > chrono::Duration::seconds(60),
                last,
                next: schedule.next_after(next),
            };
            match crate::host::timer_runs::run(&state, &ctx, run, timer).await {
                Ok(out) => {
                    if let Err(e) = deliver(&queue, out).await {
                        tracing::error!(error = %e, "could not queue timer outputs");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "timer function failed"),
            }
        }
        .instrument(span)
        .await;
        last = Some(next);
    }
}

async fn queue_worker(
    state: AppState,
    queue: DurableQueue,
    function: &'static str,
    name: &'static str,
    run: QueueHandler,
) {
    loop {
        let claimed = match queue.receive(name).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, queue = name, "queue read failed");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let ctx = new_context(function);
        let span = tracing::error_span!("invocation", function, invocation_id = %ctx.invocation_id, dequeue_count = claimed.dequeue_count);
        async {
            let msg = QueueMessage {
                text: claimed.body.clone(),
                dequeue_count: claimed.dequeue_count,
                id: Some(claimed.row_key.clone()),
            };
            let result = match run(&state, &ctx, msg).await {
                Ok(out) => deliver(&queue, out)
                    .await
                    .map_err(|e| (e.to_string(), true)),
                Err(e) => Err((e.to_string(), e.retryable())),
            };
            // Same rule as under the host (see `FunctionError`): retry what may pass later,
            // poison at once what cannot.
            let outcome = match result {
                Ok(()) => queue.complete(&claimed).await.map(|_| false),
                Err((error, true)) => {
                    tracing::warn!(%error, "queue function failed");
                    queue.fail(&claimed, &error).await
                }
                Err((error, false)) => {
                    tracing::error!(%error, "permanent failure: no retry");
                    queue.poison(&claimed, &error).await.map(|_| true)
                }
            };
            match outcome {
                Ok(true) => tracing::error!(
                    queue = name,
                    "message moved to {}",
                    crate::queue::poison_name(name)
                ),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "could not settle queue message"),
            }
        }
        .instrument(span)
        .await;
    }
}
