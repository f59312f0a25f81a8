//! Bot Framework activities, typed for the fields we use; unknown fields are ignored and
//! optional ones may be missing (Teams varies what it sends).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Mention entities looked at per message.
const MAX_MENTIONS: usize = 16;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelAccount {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aad_object_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationAccount {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_group: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdName {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub aad_group_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelData {
    #[serde(default)]
    pub team: Option<IdName>,
    #[serde(default)]
    pub channel: Option<IdName>,
    #[serde(default)]
    pub tenant: Option<IdName>,
    #[serde(default)]
    pub event_type: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub local_timestamp: Option<String>,
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub service_url: Option<String>,
    #[serde(default)]
    pub from: Option<ChannelAccount>,
    #[serde(default)]
    pub conversation: Option<ConversationAccount>,
    #[serde(default)]
    pub recipient: Option<ChannelAccount>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub entities: Vec<Value>,
    #[serde(default)]
    pub channel_data: Option<ChannelData>,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub reply_to_id: Option<String>,
    #[serde(default)]
    pub members_added: Vec<ChannelAccount>,
    #[serde(default)]
    pub members_removed: Vec<ChannelAccount>,
}

impl Activity {
    /// The user's locale: the activity's, else the `clientInfo` entity's.
    pub fn user_locale(&self) -> Option<&str> {
        self.locale
            .as_deref()
            .filter(|l| !l.is_empty())
            .or_else(|| {
                self.entities
                    .iter()
                    .find(|e| e.get("type").and_then(Value::as_str) == Some("clientInfo"))
                    .and_then(|e| e.get("locale"))
                    .and_then(Value::as_str)
            })
    }

    /// The user's UTC offset in minutes, read from `localTimestamp` (no tz database needed).
    pub fn utc_offset_minutes(&self) -> Option<i32> {
        let ts = self.local_timestamp.as_deref()?;
        chrono::DateTime::parse_from_rfc3339(ts)
            .ok()
            .map(|d| d.offset().local_minus_utc() / 60)
    }

    pub fn conversation_id(&self) -> Option<&str> {
        self.conversation
            .as_ref()
            .map(|c| c.id.as_str())
            .filter(|s| !s.is_empty())
    }

    pub fn conversation_type(&self) -> &str {
        self.conversation
            .as_ref()
            .and_then(|c| c.conversation_type.as_deref())
            .unwrap_or("personal")
    }

    pub fn tenant_id(&self) -> Option<&str> {
        self.conversation
            .as_ref()
            .and_then(|c| c.tenant_id.as_deref())
            .or_else(|| {
                self.channel_data
                    .as_ref()
                    .and_then(|d| d.tenant.as_ref())
                    .map(|t| t.id.as_str())
            })
            .filter(|s| !s.is_empty())
    }

    pub fn team(&self) -> Option<&IdName> {
        self.channel_data
            .as_ref()
            .and_then(|d| d.team.as_ref())
            .filter(|t| !t.id.is_empty())
    }

    /// The message text with the bot's own `<at>…</at>` mentions removed.
    pub fn text_without_bot_mention(&self) -> String {
        let mut text = self.text.clone().unwrap_or_default();
        let bot_id = self
            .recipient
            .as_ref()
            .map(|r| r.id.as_str())
            .unwrap_or_default();
        let mentions = self
            .entities
            .iter()
            .filter(|e| e.get("type").and_then(Value::as_str) == Some("mention"))
            // The sender chooses how many entities to send; a real message mentions a few.
            .take(MAX_MENTIONS);
        for e in mentions {
            let mentioned = e
                .get("mentioned")
                .and_then(|m| m.get("id"))
                .and_then(Value::as_str);
            if mentioned.is_some() && mentioned != Some(bot_id) {
                continue;
            }
            // `replace("", " ")` would insert a space between every character, doubling the
            // text per entity; a non-empty fragment can only shrink it.
            if let Some(fragment) = e
                .get("text")
                .and_then(Value::as_str)
                .filter(|f| !f.is_empty())
            {
                text = text.replace(fragment, " ");
            }
        }
        // A mention without an entity (older clients) still reads as <at>…</at>.
        while let (Some(a), Some(b)) = (text.find("<at>"), text.find("</at>")) {
            if b < a {
                break;
            }
            text.replace_range(a..b + 5, " ");
        }
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(text: &str, entities: Vec<Value>) -> Activity {
        serde_json::from_value(json!({
            "type": "message", "text": text, "entities": entities,
            "recipient": {"id": "28:bot"}
        }))
        .unwrap()
    }

    #[test]
    fn empty_mention_texts_do_not_grow_the_text() {
        // Entities with an empty text: each used to double the text (25 of them in a 3 KB body
        // made 209 MB; 12 keep the old behaviour's failure at a few MB).
        let text = "mes notes ".repeat(300);
        let entities = (0..12)
            .map(|_| json!({"type": "mention", "mentioned": {"id": "28:bot"}, "text": ""}))
            .collect();
        let out = message(&text, entities).text_without_bot_mention();
        assert!(out.len() <= text.len(), "{} > {}", out.len(), text.len());
        assert!(out.starts_with("mes notes mes notes"));
    }

    #[test]
    fn only_the_first_mentions_are_processed() {
        let mut entities: Vec<Value> = (0..MAX_MENTIONS)
            .map(|i| json!({"type": "mention", "mentioned": {"id": "28:bot"}, "text": format!("x{i}y")}))
            .collect();
        entities.push(json!({"type": "mention", "mentioned": {"id": "28:bot"}, "text": "late"}));
        let out = message("x0y late notes", entities).text_without_bot_mention();
        assert_eq!(out, "late notes");
        let bot =
            json!({"type": "mention", "mentioned": {"id": "28:bot"}, "text": "<at>Moodle</at>"});
        assert_eq!(
            message("<at>Moodle</at> mes notes", vec![bot]).text_without_bot_mention(),
            "mes notes"
        );
    }
}
