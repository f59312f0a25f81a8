//! The eight functions, their triggers and bindings. `functions/<Name>/function.json` is
//! checked against this table by tests/functions_layout.rs, so the two cannot drift apart.

use crate::app::AppState;
use crate::error::{FunctionError, FunctionOutputs};
use crate::host::{QueueMessage, TimerInfo};
use crate::ids::InvocationId;

pub const QUEUE_SYNC_WORK: &str = "sync-work";
pub const QUEUE_NOTIFY: &str = "notify";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FunctionKind {
    /// Timer trigger named `timer`; `schedule_setting` is the app setting holding the NCRONTAB.
    Timer { schedule_setting: &'static str },
    /// Queue trigger named `msg`.
    Queue { queue: &'static str },
    /// HTTP trigger named `req`, HTTP output `res`. Forwarded as-is when it has no other output.
    Http { route: &'static str, methods: &'static [&'static str] },
}

#[derive(Debug, Clone, Copy)]
pub struct FunctionSpec {
    pub name: &'static str,
    pub kind: FunctionKind,
    /// Output queues (each becomes an output binding named by `binding_for_queue`).
    pub outputs: &'static [&'static str],
}

impl FunctionSpec {
    /// The host forwards the raw request only for HTTP-in + HTTP-out functions.
    pub fn forwarded(&self) -> bool {
        matches!(self.kind, FunctionKind::Http { .. }) && self.outputs.is_empty()
    }
}

pub const FUNCTIONS: &[FunctionSpec] = &[
    FunctionSpec { name: "SyncTimer", kind: FunctionKind::Timer { schedule_setting: "SYNC_SCHEDULE" }, outputs: &[QUEUE_SYNC_WORK] },
    FunctionSpec { name: "SyncWorker", kind: FunctionKind::Queue { queue: QUEUE_SYNC_WORK }, outputs: &[QUEUE_SYNC_WORK] },
    FunctionSpec {
        name: "AdminSync",
        kind: FunctionKind::Http { route: "admin/sync/{*rest}", methods: &["get", "post"] },
        outputs: &[QUEUE_SYNC_WORK],
    },
    FunctionSpec { name: "BotMessages", kind: FunctionKind::Http { route: "api/messages", methods: &["post"] }, outputs: &[] },
    FunctionSpec {
        name: "MoodleWebhook",
        kind: FunctionKind::Http { route: "api/webhook", methods: &["post"] },
        outputs: &[QUEUE_NOTIFY],
    },
    FunctionSpec { name: "NotifyFanout", kind: FunctionKind::Queue { queue: QUEUE_NOTIFY }, outputs: &[] },
    FunctionSpec {
        name: "ConnectorConfig",
        kind: FunctionKind::Http { route: "connector/{*rest}", methods: &["get", "post", "delete"] },
        outputs: &[],
    },
    FunctionSpec {
        name: "ManifestPublish",
        kind: FunctionKind::Http { route: "teams-app/{*rest}", methods: &["get", "post"] },
        outputs: &[],
    },
];

pub fn find(name: &str) -> Option<&'static FunctionSpec> {
    FUNCTIONS.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

/// Output binding name for a queue: `sync-work` → `syncWork`.
pub fn binding_for_queue(queue: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in queue.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Context every function run gets: who is running, for logs and reports.
#[derive(Debug, Clone)]
pub struct InvocationContext {
    pub invocation_id: InvocationId,
    pub function: &'static str,
}

pub async fn run_timer(
    state: &AppState,
    ctx: &InvocationContext,
    timer: TimerInfo,
) -> Result<FunctionOutputs, FunctionError> {
    match ctx.function {
        "SyncTimer" => crate::sync::functions::on_timer(state, ctx, timer).await,
        other => Err(FunctionError::BadInput(format!("{other} is not a timer function"))),
    }
}

pub async fn run_queue(
    state: &AppState,
    ctx: &InvocationContext,
    msg: QueueMessage,
) -> Result<FunctionOutputs, FunctionError> {
    match ctx.function {
        "SyncWorker" => crate::sync::functions::on_shard(state, ctx, msg).await,
        "NotifyFanout" => Err(FunctionError::NotConfigured(
            "notification fan-out is not part of this build yet; the message stays queued".into(),
        )),
        other => Err(FunctionError::BadInput(format!("{other} is not a queue function"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_names() {
        assert_eq!(binding_for_queue("sync-work"), "syncWork");
        assert_eq!(binding_for_queue("notify"), "notify");
        assert!(find("botmessages").unwrap().forwarded());
        assert!(!find("MoodleWebhook").unwrap().forwarded());
    }
}
