//! The functions, their triggers, bindings, handlers and schedule settings, in one table.
//! `functions/<Name>/function.json` is checked against it by tests/functions_layout.rs, and the
//! Functions host router and `serve` both dispatch through it, so none of them can drift apart.

use crate::app::AppState;
use crate::error::{FunctionError, FunctionOutputs};
use crate::host::{QueueMessage, TimerInfo};
use crate::ids::InvocationId;
use crate::settings::Settings;
use futures::future::BoxFuture;

pub const QUEUE_SYNC_WORK: &str = "sync-work";
pub const QUEUE_SYNC_WORK_POISON: &str = "sync-work-poison";
pub const QUEUE_NOTIFY: &str = "notify";
pub const QUEUE_NOTIFY_POISON: &str = "notify-poison";
pub const QUEUE_BOT_REPLIES: &str = "bot-replies";

pub type FunctionResult = Result<FunctionOutputs, FunctionError>;
pub type TimerHandler =
    for<'a> fn(&'a AppState, &'a InvocationContext, TimerInfo) -> BoxFuture<'a, FunctionResult>;
pub type QueueHandler =
    for<'a> fn(&'a AppState, &'a InvocationContext, QueueMessage) -> BoxFuture<'a, FunctionResult>;

#[derive(Debug, Clone, Copy)]
pub enum FunctionKind {
    /// Timer trigger named `timer`; `schedule_setting` is the app setting holding the NCRONTAB
    /// (`%NAME%` in function.json) and `schedule` reads its value for `serve`'s scheduler.
    Timer {
        schedule_setting: &'static str,
        schedule: fn(&Settings) -> &str,
        run: TimerHandler,
    },
    /// Queue trigger named `msg`. `poison` is an output queue where a permanent failure sends the
    /// message at once (under the host; `serve` poisons in its own queue).
    Queue {
        queue: &'static str,
        poison: Option<&'static str>,
        run: QueueHandler,
    },
    /// HTTP trigger named `req`, HTTP output `res`. Forwarded as-is when it has no other output.
    /// `built: false` routes answer 501 "not in this build" (see `not_built_router`).
    Http {
        route: &'static str,
        methods: &'static [&'static str],
        built: bool,
    },
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

fn sync_schedule(s: &Settings) -> &str {
    &s.core.sync_schedule
}

fn sync_timer<'a>(
    state: &'a AppState,
    ctx: &'a InvocationContext,
    timer: TimerInfo,
) -> BoxFuture<'a, FunctionResult> {
    Box::pin(crate::sync::functions::on_timer(state, ctx, timer))
}

fn sync_worker<'a>(
    state: &'a AppState,
    ctx: &'a InvocationContext,
    msg: QueueMessage,
) -> BoxFuture<'a, FunctionResult> {
    Box::pin(crate::sync::functions::on_shard(state, ctx, msg))
}

fn sweep_schedule(s: &Settings) -> &str {
    &s.notify.sweep_schedule
}

fn notify_sweep<'a>(
    state: &'a AppState,
    ctx: &'a InvocationContext,
    timer: TimerInfo,
) -> BoxFuture<'a, FunctionResult> {
    Box::pin(crate::notify::sweep::on_timer(state, ctx, timer))
}

fn bot_replies<'a>(
    state: &'a AppState,
    ctx: &'a InvocationContext,
    msg: QueueMessage,
) -> BoxFuture<'a, FunctionResult> {
    Box::pin(crate::bot::replies::on_queued_reply(state, ctx, msg))
}

fn teams_app_schedule(s: &Settings) -> &str {
    &s.teams_app.install_schedule
}

fn teams_app_install<'a>(
    state: &'a AppState,
    ctx: &'a InvocationContext,
    timer: TimerInfo,
) -> BoxFuture<'a, FunctionResult> {
    Box::pin(crate::teams_app::functions::on_timer(state, ctx, timer))
}

fn notify_fanout<'a>(
    state: &'a AppState,
    ctx: &'a InvocationContext,
    msg: QueueMessage,
) -> BoxFuture<'a, FunctionResult> {
    Box::pin(crate::notify::fanout::on_message(state, ctx, msg))
}

pub const FUNCTIONS: &[FunctionSpec] = &[
    FunctionSpec {
        name: "SyncTimer",
        kind: FunctionKind::Timer {
            schedule_setting: "SYNC_SCHEDULE",
            schedule: sync_schedule,
            run: sync_timer,
        },
        outputs: &[QUEUE_SYNC_WORK],
    },
    FunctionSpec {
        name: "SyncWorker",
        kind: FunctionKind::Queue {
            queue: QUEUE_SYNC_WORK,
            poison: Some(QUEUE_SYNC_WORK_POISON),
            run: sync_worker,
        },
        outputs: &[QUEUE_SYNC_WORK, QUEUE_SYNC_WORK_POISON],
    },
    FunctionSpec {
        name: "AdminSync",
        kind: FunctionKind::Http {
            route: "manage/sync/{*rest}",
            methods: &["get", "post"],
            built: true,
        },
        outputs: &[QUEUE_SYNC_WORK],
    },
    FunctionSpec {
        name: "BotMessages",
        kind: FunctionKind::Http {
            route: "api/messages",
            methods: &["post"],
            built: true,
        },
        // Replies that cannot go within the request are queued: not a forwarded function.
        outputs: &[QUEUE_BOT_REPLIES],
    },
    FunctionSpec {
        name: "BotReplies",
        kind: FunctionKind::Queue {
            queue: QUEUE_BOT_REPLIES,
            poison: None,
            run: bot_replies,
        },
        outputs: &[],
    },
    FunctionSpec {
        name: "MoodleWebhook",
        kind: FunctionKind::Http {
            route: "api/webhook",
            methods: &["post"],
            built: true,
        },
        outputs: &[QUEUE_NOTIFY],
    },
    FunctionSpec {
        name: "NotifyFanout",
        kind: FunctionKind::Queue {
            queue: QUEUE_NOTIFY,
            // The function poisons itself, with the reason (see `notify::fanout`).
            poison: None,
            run: notify_fanout,
        },
        // Fan-out queues one message per target on `notify` itself.
        outputs: &[QUEUE_NOTIFY, QUEUE_NOTIFY_POISON],
    },
    FunctionSpec {
        name: "NotifySweep",
        kind: FunctionKind::Timer {
            schedule_setting: "NOTIFY_SWEEP_SCHEDULE",
            schedule: sweep_schedule,
            run: notify_sweep,
        },
        outputs: &[QUEUE_NOTIFY],
    },
    FunctionSpec {
        name: "ConnectorConfig",
        kind: FunctionKind::Http {
            route: "connector/{*rest}",
            methods: &["get", "post", "delete"],
            built: true,
        },
        outputs: &[],
    },
    FunctionSpec {
        name: "ManifestPublish",
        kind: FunctionKind::Http {
            route: "manage/teams-app/{*rest}",
            methods: &["get", "post"],
            built: true,
        },
        outputs: &[],
    },
    FunctionSpec {
        name: "TeamsAppInstall",
        kind: FunctionKind::Timer {
            schedule_setting: "TEAMS_APP_INSTALL_SCHEDULE",
            schedule: teams_app_schedule,
            run: teams_app_install,
        },
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

/// Routes of HTTP functions this build does not implement yet: a clear JSON 501 instead of a
/// bare 404, so a caller (or the host's forwarder) can tell "not yet" from "wrong URL".
pub fn not_built_router() -> axum::Router<AppState> {
    use axum::routing::{on, MethodFilter};
    let mut router = axum::Router::new();
    for spec in FUNCTIONS {
        let FunctionKind::Http {
            route,
            methods,
            built: false,
        } = spec.kind
        else {
            continue;
        };
        let filter = methods
            .iter()
            .filter_map(|m| {
                MethodFilter::try_from(
                    axum::http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok()?,
                )
                .ok()
            })
            .reduce(|a, b| a.or(b));
        let Some(filter) = filter else { continue };
        let name = spec.name;
        router = router.route(
            &format!("/{route}"),
            on(filter, move || async move {
                crate::error::AppError::NotBuilt(format!("{name} ({route}) is not in this build"))
            }),
        );
    }
    router
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_names() {
        assert_eq!(binding_for_queue("sync-work"), "syncWork");
        assert_eq!(binding_for_queue("notify"), "notify");
        // BotMessages has a queue output (bot-replies) since replies can be deferred.
        assert!(!find("botmessages").unwrap().forwarded());
        assert!(find("ConnectorConfig").unwrap().forwarded());
        assert!(!find("MoodleWebhook").unwrap().forwarded());
    }
}
