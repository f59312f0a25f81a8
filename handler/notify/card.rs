//! The notification as an Adaptive Card 1.5, in French or English: the same card goes to a
//! personal chat (bot activity, card only — text and card together would be split in two
//! messages) and to a channel (the Workflows envelope of the fixtures, one attachment).

use super::schema::{Kind, Notification};
use crate::bot::cards::{self, CARD_CONTENT_TYPE};
use crate::bot::i18n::{format_time, Lang};
use serde_json::{json, Value};

fn kind_label(lang: Lang, kind: Kind) -> &'static str {
    match (lang, kind) {
        (Lang::Fr, Kind::AssignmentDue) => "Devoir à rendre",
        (Lang::En, Kind::AssignmentDue) => "Assignment due",
        (Lang::Fr, Kind::GradeReleased) => "Nouvelle note",
        (Lang::En, Kind::GradeReleased) => "Grade released",
        (Lang::Fr, Kind::ForumPost) => "Nouveau message sur le forum",
        (Lang::En, Kind::ForumPost) => "New forum post",
        (Lang::Fr, Kind::Announcement) => "Annonce",
        (Lang::En, Kind::Announcement) => "Announcement",
        (Lang::Fr, Kind::Custom) => "Notification Moodle",
        (Lang::En, Kind::Custom) => "Moodle notification",
    }
}

fn open_label(lang: Lang) -> &'static str {
    match lang {
        Lang::Fr => "Ouvrir dans Moodle",
        Lang::En => "Open in Moodle",
    }
}

fn due_label(lang: Lang) -> &'static str {
    match lang {
        Lang::Fr => "À rendre le",
        Lang::En => "Due",
    }
}

/// Cards stay far below Teams' ~28 KB limit: texts are capped by the schema, items here.
const MAX_ITEMS: usize = 10;

pub fn card(n: &Notification, lang: Lang) -> Value {
    let mut body = vec![
        cards::subtle(kind_label(lang, n.kind)),
        cards::title(&n.title),
    ];
    if !n.text.is_empty() && n.text != n.title {
        body.push(cards::text(&n.text));
    }
    let mut facts: Vec<(String, String)> = n
        .items
        .iter()
        .take(MAX_ITEMS)
        .filter(|i| !i.title.is_empty() || !i.content.is_empty())
        .map(|i| (i.title.clone(), i.content.clone()))
        .collect();
    if let Some(due) = n.due {
        facts.push((
            due_label(lang).into(),
            format!("{} UTC", format_time(lang, due, 0)),
        ));
    }
    if !facts.is_empty() {
        body.push(cards::facts(facts));
    }
    let actions = n
        .link
        .as_deref()
        .map(|l| vec![cards::open_url(open_label(lang), l)])
        .unwrap_or_default();
    cards::card(body, actions)
}

/// A proactive bot message carrying the card.
pub fn bot_activity(n: &Notification, lang: Lang) -> Value {
    json!({
        "type": "message",
        "summary": n.title,
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": card(n, lang)}],
    })
}

/// The body Workflows' "when a Teams webhook request is received" trigger takes.
pub fn workflows_payload(n: &Notification, lang: Lang) -> Value {
    json!({
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": null, "content": card(n, lang)}],
    })
}
