//! `NotifyFanout` (queue `notify`): a notification becomes one message per target (a course of
//! 300 is 300 messages, each rate-limited and retried on its own); each target message is
//! delivered at most once ([`super::deliveries`]): a personal bot message on the user's stored
//! conversation, or a channel post to a configuration's Workflows URL. What cannot be delivered
//! is recorded and reported, never dropped: a message that fails for good, or keeps failing,
//! goes to `notify-poison` with its reason.

use super::card;
use super::channels;
use super::deliveries::{self, Claim};
use super::queue::{NotifyMessage, Poisoned, Target};
use super::recipients;
use super::schema::{Notification, Recipients};
use crate::app::AppState;
use crate::bot::connector::SendError;
use crate::bot::conversations::{self, ConversationKind};
use crate::bot::i18n::Lang;
use crate::error::{FunctionError, FunctionOutputs};
use crate::host::functions::{InvocationContext, QUEUE_NOTIFY, QUEUE_NOTIFY_POISON};
use crate::host::QueueMessage;
use std::time::{Duration, Instant};

/// A worker waits this long at most for a rate-limit slot; longer and the message is retried later.
const WORKER_MAX_WAIT: Duration = Duration::from_secs(300);

/// What became of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Settled by an earlier copy of the message.
    AlreadyDone(String),
    /// The user has no conversation with the bot yet: waiting for the app to be installed for
    /// them (Teams-app issue); recorded as `pending-install`, reported.
    PendingInstall,
    /// No Teams user is known for this Moodle user.
    Unmapped,
    /// Teams or the flow refused for good (403/404, URL refused): conversation forgotten or
    /// configuration disabled, recorded.
    Refused(String),
    /// The channel configuration was removed or is disabled.
    Skipped(String),
}

impl Outcome {
    fn state(&self) -> &str {
        match self {
            Outcome::Sent => "sent",
            Outcome::AlreadyDone(s) => s,
            Outcome::PendingInstall => "pending-install",
            Outcome::Unmapped => "unmapped",
            Outcome::Refused(_) => "refused",
            Outcome::Skipped(_) => "skipped",
        }
    }
}

/// Why a delivery did not settle: retry later, or never.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("{0}")]
    Retry(String),
    #[error("{0}")]
    Permanent(String),
}

/// `NotifyFanout`: one queue message.
pub async fn on_message(
    state: &AppState,
    _ctx: &InvocationContext,
    msg: QueueMessage,
) -> Result<FunctionOutputs, FunctionError> {
    let parsed: Result<NotifyMessage, _> = serde_json::from_str(&msg.text);
    let result = match parsed {
        // Retried like any bad input: during a deployment another build may read it.
        Err(e) => Err(DeliverError::Retry(format!("not a notify message: {e}"))),
        Ok(NotifyMessage::Fanout { notification }) => split(state, &notification).await,
        Ok(NotifyMessage::Deliver {
            notification,
            target,
        }) => deliver(state, &notification, &target)
            .await
            .map(|o| FunctionOutputs::default().log(format!("{}: {}", target.key(), o.state()))),
    };
    match result {
        Ok(out) => Ok(out),
        Err(DeliverError::Retry(reason)) if msg.dequeue_count < crate::queue::MAX_DEQUEUE => {
            Err(FunctionError::Failed(anyhow::anyhow!("{reason}")))
        }
        // Last try, or hopeless: the reason goes with the message, so nothing vanishes unexplained.
        Err(e) => {
            let reason = e.to_string();
            tracing::error!(%reason, attempts = msg.dequeue_count, "notification moved to {QUEUE_NOTIFY_POISON}");
            let poisoned = Poisoned {
                message: serde_json::from_str(&msg.text)
                    .unwrap_or(serde_json::Value::String(msg.text.clone())),
                reason: reason.clone(),
                attempts: msg.dequeue_count,
            };
            let mut out = FunctionOutputs::default().log(format!("poisoned: {reason}"));
            out.enqueue(
                QUEUE_NOTIFY_POISON,
                serde_json::to_string(&poisoned).expect("plain data"),
            );
            Ok(out)
        }
    }
}

/// The targets of a notification, deduplicated, channels last.
pub async fn targets(state: &AppState, n: &Notification) -> Result<Vec<Target>, DeliverError> {
    let mut out: Vec<Target> = Vec::new();
    match &n.recipients {
        Recipients::Users(ids) => out.extend(ids.iter().map(|id| Target::User { moodle: *id })),
        Recipients::Entra(ids) => out.extend(ids.iter().map(|id| Target::Entra {
            object_id: id.clone(),
        })),
        Recipients::CourseMembers => {
            let course = n
                .course
                .ok_or_else(|| DeliverError::Permanent("course_members without a course".into()))?;
            let moodle = state.moodle.as_ref().ok_or_else(|| {
                DeliverError::Retry(
                    "Moodle is not configured; cannot list the course members".into(),
                )
            })?;
            let course = crate::ids::MoodleCourseId::new(course)
                .map_err(|e| DeliverError::Permanent(format!("course_members: {e}")))?;
            let users = crate::moodle::enrolled::enrolled_users(moodle, course)
                .await
                .map_err(|e| {
                    if crate::error::moodle_permanent(&e) {
                        DeliverError::Permanent(format!("course members: {e}"))
                    } else {
                        DeliverError::Retry(format!("course members: {e}"))
                    }
                })?;
            out.extend(users.iter().map(|u| Target::User { moodle: u.id.get() }));
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|t| seen.insert(t.key()));
    if let Some(course) = n.course {
        let configs = channels::of_course(&state.store, course)
            .await
            .map_err(|e| DeliverError::Retry(format!("channel configurations: {e}")))?;
        out.extend(
            configs
                .into_iter()
                .filter(|c| c.disabled.is_none() && c.kinds.contains(&n.kind))
                .map(|c| Target::Channel {
                    course,
                    config: c.id,
                }),
        );
    }
    Ok(out)
}

async fn split(state: &AppState, n: &Notification) -> Result<FunctionOutputs, DeliverError> {
    let targets = targets(state, n).await?;
    let mut out = FunctionOutputs::default().log(format!(
        "notification {}: {} target(s)",
        n.id,
        targets.len()
    ));
    if targets.is_empty() {
        tracing::warn!(notification = %n.id, "notification has no target (no recipient, no channel configuration)");
    }
    for target in targets {
        let m = NotifyMessage::Deliver {
            notification: n.clone(),
            target,
        };
        out.enqueue(QUEUE_NOTIFY, m.to_json());
    }
    Ok(out)
}

fn store_err(e: crate::store::StoreError) -> DeliverError {
    DeliverError::Retry(format!("store: {e}"))
}

/// Deliver one (notification, target) at most once.
pub async fn deliver(
    state: &AppState,
    n: &Notification,
    target: &Target,
) -> Result<Outcome, DeliverError> {
    let store = &state.store;
    let key = deliveries::key(&n.id, &target.key());
    let etag = match deliveries::claim(store, &key).await.map_err(store_err)? {
        Claim::Acquired(etag) => etag,
        Claim::Done(s) => return Ok(Outcome::AlreadyDone(s)),
        Claim::Busy => {
            return Err(DeliverError::Retry(
                "another worker is delivering this target now".into(),
            ))
        }
    };
    let result = match target {
        Target::User { moodle } => match recipients::entra_of(store, *moodle).await {
            Ok(Some(aad)) => to_user(state, n, &aad).await,
            Ok(None) => Ok(Outcome::Unmapped),
            Err(e) => Err(store_err(e)),
        },
        Target::Entra { object_id } => to_user(state, n, object_id).await,
        Target::Channel { course, config } => to_channel(state, n, *course, config).await,
    };
    let detail = match &result {
        Ok(Outcome::Refused(d) | Outcome::Skipped(d)) => d.clone(),
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    match &result {
        Ok(o) => {
            if matches!(
                o,
                Outcome::PendingInstall | Outcome::Unmapped | Outcome::Refused(_)
            ) {
                tracing::warn!(notification = %n.id, target = %target.key(), state = o.state(), detail, "notification not delivered");
            }
            // The send happened: failing now would send it again, so a failed record is logged.
            if let Err(e) = deliveries::record(store, &key, o.state(), &detail).await {
                tracing::error!(error = %e, "could not record a notification delivery");
            }
        }
        Err(DeliverError::Retry(_)) => deliveries::release(store, &key, &etag).await,
        Err(DeliverError::Permanent(_)) => {
            if let Err(e) = deliveries::record(store, &key, "failed", &detail).await {
                tracing::error!(error = %e, "could not record a notification delivery");
            }
        }
    }
    result
}

async fn to_user(state: &AppState, n: &Notification, aad: &str) -> Result<Outcome, DeliverError> {
    let bot = state.bot.as_ref().ok_or_else(|| {
        DeliverError::Retry("the bot is not configured; the notification waits".into())
    })?;
    let store = &state.store;
    let mut reference = conversations::load(store, ConversationKind::User, aad)
        .await
        .map_err(store_err)?;
    if reference.is_none() {
        reference = install_for(state, aad).await?;
    }
    let Some(r) = reference else {
        return Ok(Outcome::PendingInstall);
    };
    let lang = r
        .locale
        .as_deref()
        .and_then(Lang::from_locale)
        .unwrap_or(bot.settings.default_lang);
    let wait = bot.connector.would_wait(&r.conversation_id, Instant::now());
    if wait > WORKER_MAX_WAIT {
        return Err(DeliverError::Retry(format!(
            "rate limit: next slot for this conversation in {wait:?}"
        )));
    }
    let activity = card::bot_activity(n, lang);
    match bot
        .connector
        .send(&r.service_url, &r.conversation_id, None, &activity)
        .await
    {
        Ok(_) => Ok(Outcome::Sent),
        Err(SendError::Forbidden { code }) => {
            bot.forget_conversation(store, ConversationKind::User, aad)
                .await;
            Ok(Outcome::Refused(format!(
                "403 {code}: conversation forgotten"
            )))
        }
        Err(SendError::Status { status: 404, code }) => {
            bot.forget_conversation(store, ConversationKind::User, aad)
                .await;
            Ok(Outcome::Refused(format!(
                "404 {code}: conversation forgotten"
            )))
        }
        Err(e) if e.is_retryable() => Err(DeliverError::Retry(format!("bot message: {e}"))),
        Err(e) => Err(DeliverError::Permanent(format!("bot message: {e}"))),
    }
}

/// No conversation with the user yet: install the app for them through Graph (Teams-app
/// install, which stores the personal chat it gets back), then use that chat. Without Graph
/// settings, or when the app is not in the catalog, the delivery stays `pending-install`.
async fn install_for(
    state: &AppState,
    aad: &str,
) -> Result<Option<crate::bot::conversations::ConversationRef>, DeliverError> {
    if state.settings.graph.is_none() {
        return Ok(None);
    }
    let users = [aad.to_string()];
    match crate::teams_app::install::install_from_settings(state, false, &users).await {
        Ok(report) if report.failed() > 0 || report.stopped.is_some() => {
            return Err(DeliverError::Retry(format!(
                "installing the app for the user failed: {}",
                report
                    .stopped
                    .unwrap_or_else(|| "see the install report".into())
            )))
        }
        Ok(_) => {}
        Err(crate::teams_app::TeamsAppError::Settings(problems)) => {
            tracing::warn!(problems = ?problems, "cannot install the app for a user; the notification stays pending");
            return Ok(None);
        }
        Err(e) => {
            return Err(DeliverError::Retry(format!(
                "installing the app for the user: {e}"
            )))
        }
    }
    conversations::load(&state.store, ConversationKind::User, aad)
        .await
        .map_err(store_err)
}

async fn to_channel(
    state: &AppState,
    n: &Notification,
    course: i64,
    config: &str,
) -> Result<Outcome, DeliverError> {
    let store = &state.store;
    let Some(c) = channels::load(store, course, config)
        .await
        .map_err(store_err)?
    else {
        return Ok(Outcome::Skipped("configuration removed".into()));
    };
    if let Some(reason) = &c.disabled {
        return Ok(Outcome::Skipped(format!(
            "configuration disabled: {reason}"
        )));
    }
    let sender = &state.notify.webhooks;
    let wait = sender.would_wait(&c.id);
    if wait > WORKER_MAX_WAIT {
        return Err(DeliverError::Retry(format!(
            "rate limit: next slot for this webhook in {wait:?}"
        )));
    }
    let lang = Lang::from_locale(&c.lang).unwrap_or(Lang::Fr);
    match sender
        .post(&c.id, &c.url, &card::workflows_payload(n, lang))
        .await
    {
        Ok(()) => Ok(Outcome::Sent),
        Err(e) if e.disables() => {
            let reason = e.to_string();
            channels::disable(store, course, &c.id, &reason)
                .await
                .map_err(store_err)?;
            Ok(Outcome::Refused(format!(
                "configuration disabled: {reason}"
            )))
        }
        Err(e) if e.is_retryable() => Err(DeliverError::Retry(format!("channel post: {e}"))),
        Err(e) => Err(DeliverError::Permanent(format!("channel post: {e}"))),
    }
}
