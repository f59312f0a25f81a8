//! Replies that could not go within the request's budget (a burst in one conversation, a slow
//! token endpoint, a 429): queued on `bot-replies` — an output binding under the Functions host,
//! the local durable queue under `serve` — and sent by `BotReplies` within the rate limits, so
//! `/api/messages` answers Teams at once and no reply is dropped.
//!
//! Each reply carries a delivery key (conversation + the inbound activity's id). The worker reads
//! its `deliveries` row before sending and writes it after, so a message the queue delivers
//! again (a worker that died after sending, an expired visibility timeout, the same activity
//! queued twice because Teams retried it) is not sent a second time.

use crate::app::AppState;
use crate::bot::connector::SendError;
use crate::bot::conversations::ConversationKind;
use crate::error::{FunctionError, FunctionOutputs};
use crate::host::functions::InvocationContext;
use crate::host::QueueMessage;
use crate::store::tables::DELIVERIES;
use crate::store::{deadline, key_escape, Entity, SharedStore};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, Instant};

/// `deliveries` partition of bot replies.
pub const DELIVERY_PARTITION: &str = "bot-reply";
/// A worker waits this long at most for a rate-limit slot; longer and the message is retried later.
const WORKER_MAX_WAIT: Duration = Duration::from_secs(300);

/// A reply waiting in the `bot-replies` queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingReply {
    /// Idempotency key: see [`delivery_key`].
    pub delivery: String,
    pub service_url: String,
    pub conversation_id: String,
    #[serde(default)]
    pub reply_to: Option<String>,
    pub activity: Value,
    /// The stored reference to forget if Teams refuses permanently (403).
    #[serde(default)]
    pub reference: Option<(ConversationKind, String)>,
}

/// One key per inbound activity: Teams retrying the same activity yields the same key.
pub fn delivery_key(conversation_id: &str, activity_id: Option<&str>) -> String {
    match activity_id.filter(|id| !id.is_empty()) {
        Some(id) => format!("{conversation_id}|{id}"),
        None => format!("{conversation_id}|{}", uuid::Uuid::new_v4().simple()),
    }
}

/// What became of a delivery (`state` of its row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// 403: the user blocked the bot or it was removed; the reference is forgotten.
    Refused,
    /// Another permanent answer (400, 404, 413, 500): reported, not retried.
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// The recorded outcome of a delivery, if it was settled already.
pub async fn recorded(store: &SharedStore, delivery: &str) -> Result<Option<String>, String> {
    let row = deadline::within(
        deadline::REQUEST_PATH,
        store.get(DELIVERIES, DELIVERY_PARTITION, &key_escape(delivery)),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(row.and_then(|e| e.str("state").map(str::to_string)))
}

async fn record(store: &SharedStore, delivery: &str, outcome: Outcome, detail: &str) {
    let row = Entity::new(DELIVERY_PARTITION, key_escape(delivery))
        .with("state", outcome.as_str())
        .with("detail", detail)
        .with("at", chrono::Utc::now().timestamp());
    let write = store.upsert(DELIVERIES, &row);
    if let Err(e) = deadline::within(deadline::REQUEST_PATH, write).await {
        // The send already happened; failing the message now would send it again.
        tracing::error!(error = %e, outcome = outcome.as_str(), "could not record a bot reply delivery");
    }
}

/// `BotReplies`: send one queued reply, at most once.
pub async fn on_queued_reply(
    state: &AppState,
    _ctx: &InvocationContext,
    msg: QueueMessage,
) -> Result<FunctionOutputs, FunctionError> {
    let reply: PendingReply = serde_json::from_str(&msg.text)
        .map_err(|e| FunctionError::BadInput(format!("not a queued bot reply: {e}")))?;
    let Some(bot) = state.bot.as_ref() else {
        return Err(FunctionError::NotConfigured(
            "the bot is not configured; the reply stays queued".into(),
        ));
    };
    let store = &state.store;
    match recorded(store, &reply.delivery).await {
        Ok(Some(done)) => {
            return Ok(
                FunctionOutputs::default().log(format!("reply already {done}; not sent again"))
            )
        }
        Ok(None) => {}
        // Without the guard a resend could duplicate the reply: try again later.
        Err(e) => return Err(FunctionError::Failed(anyhow::anyhow!("deliveries: {e}"))),
    }
    let connector = &bot.connector;
    let wait = connector.would_wait(&reply.conversation_id, Instant::now());
    if wait > WORKER_MAX_WAIT {
        return Err(FunctionError::Failed(anyhow::anyhow!(
            "rate limit: next slot for this conversation in {wait:?}; retried later"
        )));
    }
    let sent = connector
        .send(
            &reply.service_url,
            &reply.conversation_id,
            reply.reply_to.as_deref(),
            &reply.activity,
        )
        .await;
    let (outcome, detail) = match sent {
        Ok(r) => (Outcome::Sent, r.id.unwrap_or_default()),
        Err(SendError::Forbidden { code }) => {
            tracing::warn!(
                code,
                "queued reply refused permanently; forgetting the conversation"
            );
            if let Some((kind, key)) = &reply.reference {
                bot.forget_conversation(store, *kind, key).await;
            }
            (Outcome::Refused, code)
        }
        Err(e) if e.is_retryable() => {
            return Err(FunctionError::Failed(anyhow::anyhow!(
                "bot reply not sent yet: {e}"
            )))
        }
        Err(e) => {
            tracing::error!(error = %e, "queued reply failed permanently");
            (Outcome::Failed, e.to_string())
        }
    };
    record(store, &reply.delivery, outcome, &detail).await;
    Ok(FunctionOutputs::default().log(format!("reply {}", outcome.as_str())))
}
