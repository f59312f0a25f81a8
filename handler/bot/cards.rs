//! Adaptive Cards (schema 1.5) and the activities that carry them. `Action.Execute` buttons carry
//! an `Action.Submit` fallback for clients without Universal Actions. A reply never carries text
//! and an attachment together (Teams would split it into two messages).

use crate::bot::activity::Activity;
use crate::bot::i18n::{t, Lang, Text};
use serde_json::{json, Value};

pub const CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

/// What the bot answers: a plain text or a card (with a notification summary).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Text(String),
    Card { summary: String, card: Value },
}

pub fn card(body: Vec<Value>, actions: Vec<Value>) -> Value {
    json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "body": body,
        "actions": actions,
    })
}

pub fn title(text: &str) -> Value {
    json!({"type": "TextBlock", "text": text, "weight": "Bolder", "size": "Medium", "wrap": true})
}

pub fn text(text: &str) -> Value {
    json!({"type": "TextBlock", "text": text, "wrap": true})
}

pub fn subtle(text: &str) -> Value {
    json!({"type": "TextBlock", "text": text, "isSubtle": true, "size": "Small", "wrap": true})
}

pub fn facts(pairs: Vec<(String, String)>) -> Value {
    let facts: Vec<Value> = pairs
        .into_iter()
        .map(|(title, value)| json!({"title": title, "value": value}))
        .collect();
    json!({"type": "FactSet", "facts": facts})
}

/// Markdown link text for a TextBlock; brackets in names would break the link syntax.
pub fn link(label: &str, url: &str) -> String {
    let label = label.replace(['[', ']'], "");
    format!("[{label}]({url})")
}

pub fn execute(title: &str, verb: &str, data: Value) -> Value {
    let mut fallback_data = match &data {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    fallback_data.insert("verb".into(), Value::String(verb.into()));
    json!({
        "type": "Action.Execute",
        "title": title,
        "verb": verb,
        "data": data,
        "fallback": {"type": "Action.Submit", "title": title, "data": Value::Object(fallback_data)},
    })
}

pub fn open_url(title: &str, url: &str) -> Value {
    json!({"type": "Action.OpenUrl", "title": title, "url": url})
}

/// The main menu as card buttons.
pub fn menu_actions(lang: Lang) -> Vec<Value> {
    vec![
        execute(t(lang, Text::BtnCourses), "courses", json!({})),
        execute(t(lang, Text::BtnAssignments), "assignments", json!({})),
        execute(t(lang, Text::BtnGrades), "grades", json!({})),
    ]
}

/// Suggested-action buttons under a message, so nobody has to guess the phrasing.
fn suggested_actions(lang: Lang) -> Value {
    let actions: Vec<Value> = [
        Text::BtnCourses,
        Text::BtnAssignments,
        Text::BtnGrades,
        Text::BtnHelp,
    ]
    .into_iter()
    .map(|k| json!({"type": "imBack", "title": t(lang, k), "value": t(lang, k)}))
    .collect();
    json!({ "actions": actions })
}

/// The outgoing message activity answering `incoming`.
pub fn message_for(reply: &Reply, lang: Lang, incoming: &Activity) -> Value {
    let mut m = json!({
        "type": "message",
        "locale": lang.tag(),
    });
    if let Some(r) = &incoming.recipient {
        m["from"] = json!(r);
    }
    if let Some(f) = &incoming.from {
        m["recipient"] = json!(f);
    }
    if let Some(c) = &incoming.conversation {
        m["conversation"] = json!(c);
    }
    if let Some(id) = &incoming.id {
        m["replyToId"] = json!(id);
    }
    fill(&mut m, reply);
    // Suggested actions only render in personal chats.
    if incoming.conversation_type() == "personal" {
        m["suggestedActions"] = suggested_actions(lang);
    }
    m
}

/// A message for a proactive send (no incoming activity).
pub fn proactive_message(reply: &Reply, lang: Lang) -> Value {
    let mut m = json!({"type": "message", "locale": lang.tag()});
    fill(&mut m, reply);
    m
}

fn fill(m: &mut Value, reply: &Reply) {
    match reply {
        Reply::Text(s) => {
            m["text"] = json!(s);
            m["textFormat"] = json!("plain");
        }
        Reply::Card { summary, card } => {
            m["summary"] = json!(summary);
            m["attachments"] = json!([{ "contentType": CARD_CONTENT_TYPE, "content": card }]);
        }
    }
}

/// Body of the HTTP 200 answering an `adaptiveCard/action` invoke.
pub fn invoke_response(reply: &Reply) -> Value {
    match reply {
        Reply::Card { card, .. } => {
            json!({"statusCode": 200, "type": CARD_CONTENT_TYPE, "value": card})
        }
        Reply::Text(s) => {
            json!({"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": s})
        }
    }
}

pub fn invoke_error(status: u16, code: &str, message: &str) -> Value {
    json!({"statusCode": status, "type": "application/vnd.microsoft.error", "value": {"code": code, "message": message}})
}
