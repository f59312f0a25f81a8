//! `POST /api/messages`: dispatch an authenticated activity. Messages are answered with an
//! outbound reply to the Connector before the 200 goes back (the turn completes inside the
//! request, so nothing runs after the Functions host considers the invocation done) — when the
//! reply can go within [`REPLY_BUDGET`]; otherwise it is handed to the `bot-replies` queue
//! (`bot::replies`) and the 200 goes back at once: the Bot Connector gives up after ~15 s and
//! retries, so holding the request would turn into duplicate replies. Invokes answer in the
//! HTTP response; conversation events update the Store.

use crate::app::AppState;
use crate::bot::activity::Activity;
use crate::bot::answers::{self, Action, Turn};
use crate::bot::auth::BotRequest;
use crate::bot::cards::{self, Reply};
use crate::bot::connector::SendError;
use crate::bot::conversations::{ConversationKind, ConversationRef};
use crate::bot::i18n::{t, Lang, Text};
use crate::bot::intents;
use crate::bot::parents::{self, Subject};
use crate::bot::replies::{delivery_key, PendingReply};
use crate::bot::BotRuntime;
use crate::host::functions::QUEUE_BOT_REPLIES;
use crate::host::Outbox;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::time::Duration;

/// Longest a reply may wait for a rate-limit slot (and a token) inside the request.
pub const REPLY_BUDGET: Duration = Duration::from_secs(2);

pub async fn messages(
    State(state): State<AppState>,
    axum::Extension(outbox): axum::Extension<Outbox>,
    req: BotRequest,
) -> Response {
    let Some(bot) = state.bot.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let a = req.activity;
    match a.kind.as_str() {
        "message" => on_message(&state, bot, &a, &outbox).await,
        "invoke" => on_invoke(&state, bot, &a).await,
        "conversationUpdate" => on_conversation_update(&state, bot, &a).await,
        "installationUpdate" => on_installation_update(&state, bot, &a).await,
        // typing, messageReaction, event, … : acknowledged and ignored.
        _ => StatusCode::OK.into_response(),
    }
}

fn turn_for(state: &AppState, bot: &BotRuntime, a: &Activity) -> Turn {
    let lang = a
        .user_locale()
        .and_then(Lang::from_locale)
        .unwrap_or(bot.settings.default_lang);
    let moodle_url = state
        .settings
        .moodle
        .as_ref()
        .map(|m| m.url.as_str().trim_end_matches('/').to_string())
        .unwrap_or_default();
    Turn {
        lang,
        utc_offset_minutes: a.utc_offset_minutes().unwrap_or(0),
        now: chrono::Utc::now().timestamp(),
        moodle_url,
        due_soon_days: bot.settings.due_soon_days,
    }
}

/// The answer to an action, or a polite text when Moodle or the user's account is missing.
async fn respond(
    state: &AppState,
    bot: &BotRuntime,
    a: &Activity,
    turn: &Turn,
    action: &Action,
    subject: &Subject,
    fresh: bool,
) -> Reply {
    if !action.needs_moodle() {
        return answers::help(turn, *action == Action::NotUnderstood);
    }
    let Some(moodle) = state.moodle.as_ref() else {
        return Reply::Text(t(turn.lang, Text::NotConfigured).into());
    };
    let user = match bot
        .mapper
        .resolve(a, &state.store, moodle, &bot.connector)
        .await
    {
        Ok(Some(u)) => u,
        Ok(None) => return Reply::Text(t(turn.lang, Text::UnknownUser).into()),
        Err(e) => {
            tracing::error!(error = %e, "Moodle user lookup failed");
            return Reply::Text(t(turn.lang, Text::MoodleDown).into());
        }
    };
    if subject.is_parent_question(action) {
        // Never cached: the links are checked in Moodle on every question.
        let parent_answer = match bot.parent_links.as_ref() {
            // A name alone may be a course or a classmate: with parents off, the asker's own answer.
            None if matches!(subject, Subject::Named(_)) && action.about_a_child() => None,
            None => Some(Reply::Text(t(turn.lang, Text::ParentsOff).into())),
            Some(links) => {
                match parents::answer(moodle, links, turn, user, subject, action).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, ?action, "Moodle query failed (parent)");
                        Some(Reply::Text(t(turn.lang, Text::MoodleDown).into()))
                    }
                }
            }
        };
        if let Some(r) = parent_answer {
            return r;
        }
    }
    if !fresh {
        if let Some(r) = bot.cached_answer(user, action, turn.lang) {
            return r;
        }
    }
    match answers::answer(moodle, turn, user, action).await {
        Ok(r) => {
            bot.remember_answer(user, action, turn.lang, &r);
            r
        }
        Err(e) => {
            tracing::error!(error = %e, ?action, "Moodle query failed");
            Reply::Text(t(turn.lang, Text::MoodleDown).into())
        }
    }
}

/// A card button's verb and data: `invoke.value.action` or an `Action.Submit` message's value.
fn verb_of(value: &Value) -> Option<(&str, &Value)> {
    if let Some(action) = value.get("action") {
        return Some((
            action.get("verb")?.as_str()?,
            action.get("data").unwrap_or(&Value::Null),
        ));
    }
    Some((value.get("verb")?.as_str()?, value))
}

async fn on_message(state: &AppState, bot: &BotRuntime, a: &Activity, outbox: &Outbox) -> Response {
    // The reference write runs beside the answer, not before it; it is bounded and its failure
    // only logged (the next message retries).
    let (message, ()) = tokio::join!(
        answer_message(state, bot, a),
        bot.remember_conversation(&state.store, a)
    );
    let (Some(service_url), Some(conversation)) = (a.service_url.as_deref(), a.conversation_id())
    else {
        return StatusCode::OK.into_response();
    };
    let sent = bot
        .connector
        .send_within(
            service_url,
            conversation,
            a.id.as_deref(),
            &message,
            REPLY_BUDGET,
        )
        .await;
    match sent {
        Ok(_) => {}
        Err(SendError::Forbidden { code }) => {
            tracing::warn!(
                code,
                "reply refused permanently; forgetting the conversation"
            );
            if let Some(r) = ConversationRef::from_activity(a) {
                bot.forget_conversation(&state.store, r.kind, &r.key).await;
            }
        }
        Err(e) if e.is_retryable() => {
            let pending = PendingReply {
                delivery: delivery_key(conversation, a.id.as_deref()),
                service_url: service_url.to_string(),
                conversation_id: conversation.to_string(),
                reply_to: a.id.clone(),
                activity: message,
                reference: ConversationRef::from_activity(a).map(|r| (r.kind, r.key)),
            };
            match serde_json::to_string(&pending) {
                Ok(body) => {
                    tracing::info!(reason = %e, "reply queued: it could not go within the request");
                    outbox.push(QUEUE_BOT_REPLIES, body);
                }
                Err(e) => tracing::error!(error = %e, "could not queue the reply"),
            }
        }
        Err(e) => tracing::error!(error = %e, "could not send the reply"),
    }
    StatusCode::OK.into_response()
}

/// The reply activity for a message.
async fn answer_message(state: &AppState, bot: &BotRuntime, a: &Activity) -> Value {
    let (action, subject, fresh) = match a.value.as_ref().and_then(verb_of) {
        Some((verb, data)) => (
            Action::from_verb(verb, data).unwrap_or(Action::NotUnderstood),
            Subject::of_button(data),
            verb.ends_with(".refresh"),
        ),
        None => {
            let text = a.text_without_bot_mention();
            (
                Action::from_intent(intents::recognize(&text)),
                Subject::of_text(&text),
                false,
            )
        }
    };
    let turn = turn_for(state, bot, a);
    let reply = respond(state, bot, a, &turn, &action, &subject, fresh).await;
    cards::message_for(&reply, turn.lang, a)
}

async fn on_invoke(state: &AppState, bot: &BotRuntime, a: &Activity) -> Response {
    if a.name.as_deref() != Some("adaptiveCard/action") {
        return (StatusCode::OK, Json(json!({}))).into_response();
    }
    let turn = turn_for(state, bot, a);
    let parsed = a.value.as_ref().and_then(verb_of).map(|(verb, data)| {
        (
            verb,
            Action::from_verb(verb, data),
            Subject::of_button(data),
        )
    });
    let body = match parsed {
        Some((verb, Some(action), subject)) => {
            let fresh = verb.ends_with(".refresh");
            let reply = respond(state, bot, a, &turn, &action, &subject, fresh).await;
            cards::invoke_response(&reply)
        }
        _ => cards::invoke_error(400, "BadRequest", t(turn.lang, Text::UnknownAction)),
    };
    (StatusCode::OK, Json(body)).into_response()
}

fn is_bot(a: &Activity, id: &str) -> bool {
    a.recipient.as_ref().is_some_and(|r| r.id == id)
}

async fn on_conversation_update(state: &AppState, bot: &BotRuntime, a: &Activity) -> Response {
    let event = a
        .channel_data
        .as_ref()
        .and_then(|d| d.event_type.as_deref())
        .unwrap_or_default();
    let store = &state.store;
    let result = if a.members_removed.iter().any(|m| is_bot(a, &m.id)) || event == "teamDeleted" {
        match ConversationRef::from_activity(a) {
            Some(r) => bot.forget(store, r.kind, &r.key).await,
            None => Ok(()),
        }
    } else if event == "channelDeleted" {
        match a.channel_data.as_ref().and_then(|d| d.channel.as_ref()) {
            Some(c) => bot.forget(store, ConversationKind::Channel, &c.id).await,
            None => Ok(()),
        }
    } else if a.members_added.iter().any(|m| is_bot(a, &m.id)) {
        match ConversationRef::from_activity(a) {
            Some(r) => bot.save(store, &r).await,
            None => Ok(()),
        }
    } else {
        Ok(())
    };
    store_result(result)
}

async fn on_installation_update(state: &AppState, bot: &BotRuntime, a: &Activity) -> Response {
    let Some(r) = ConversationRef::from_activity(a) else {
        return StatusCode::OK.into_response();
    };
    let result = match a.action.as_deref() {
        Some("add" | "add-upgrade") => bot.save(&state.store, &r).await,
        Some("remove" | "remove-upgrade") => bot.forget(&state.store, r.kind, &r.key).await,
        _ => Ok(()),
    };
    store_result(result)
}

fn store_result(result: crate::store::StoreResult<()>) -> Response {
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => crate::error::AppError::from(e).into_response(),
    }
}
