//! Conversation references in the Store (`conversations` table), so proactive sends work after a
//! restart and on any instance. Keys:
//! - `user` / Entra object id of the user → the personal chat with the bot;
//! - `team` / team id (`19:…@thread…`) → the team's General channel;
//! - `channel` / channel id → a channel the bot was used in;
//! - `chat` / conversation id → a group chat.

use crate::bot::activity::Activity;
use crate::store::tables::CONVERSATIONS;
use crate::store::{key_escape, Entity, SharedStore, StoreError, StoreResult};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConversationKind {
    User,
    Team,
    Channel,
    Chat,
}

impl ConversationKind {
    pub fn partition(self) -> &'static str {
        match self {
            ConversationKind::User => "user",
            ConversationKind::Team => "team",
            ConversationKind::Channel => "channel",
            ConversationKind::Chat => "chat",
        }
    }
}

/// Where a stored conversation lives and how to address it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRef {
    pub kind: ConversationKind,
    /// Row key before escaping: user object id, team id, channel id or chat id.
    pub key: String,
    pub conversation_id: String,
    pub service_url: String,
    pub tenant_id: Option<String>,
    /// Teams user id (`29:…`) for personal chats.
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub team_name: Option<String>,
    pub bot_id: Option<String>,
    /// The user's locale when the reference was written (language of proactive notifications).
    #[serde(default)]
    pub locale: Option<String>,
}

impl ConversationRef {
    /// The reference an authenticated activity points at, if it names enough to send there later.
    pub fn from_activity(a: &Activity) -> Option<ConversationRef> {
        let conversation = a.conversation.as_ref()?;
        let service_url = a.service_url.clone()?;
        let base = |kind, key: String, conversation_id: String| ConversationRef {
            kind,
            key,
            conversation_id,
            service_url: service_url.clone(),
            tenant_id: a.tenant_id().map(str::to_string),
            user_id: None,
            team_id: a.team().map(|t| t.id.clone()),
            team_name: a.team().and_then(|t| t.name.clone()),
            bot_id: a.recipient.as_ref().map(|r| r.id.clone()),
            locale: a.user_locale().map(str::to_string),
        };
        match a.conversation_type() {
            "personal" => {
                let from = a.from.as_ref()?;
                let aad = from.aad_object_id.as_deref().filter(|s| !s.is_empty())?;
                let mut r = base(
                    ConversationKind::User,
                    aad.to_ascii_lowercase(),
                    conversation.id.clone(),
                );
                r.user_id = Some(from.id.clone());
                Some(r)
            }
            "channel" => {
                // `19:…@thread.tacv2;messageid=…` addresses a thread; the channel is the part before `;`.
                let channel_id = conversation
                    .id
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                match a.team() {
                    Some(team) if team.id == channel_id || a.kind != "message" => Some(base(
                        ConversationKind::Team,
                        team.id.clone(),
                        team.id.clone(),
                    )),
                    _ => Some(base(
                        ConversationKind::Channel,
                        channel_id.clone(),
                        channel_id,
                    )),
                }
            }
            _ => Some(base(
                ConversationKind::Chat,
                conversation.id.clone(),
                conversation.id.clone(),
            )),
        }
    }

    fn to_entity(&self) -> StoreResult<Entity> {
        let mut e = Entity::new(self.kind.partition(), key_escape(&self.key))
            .with("conversation_id", self.conversation_id.as_str())
            .with("service_url", self.service_url.as_str())
            .with("updated", chrono::Utc::now().timestamp());
        for (name, v) in [
            ("tenant_id", &self.tenant_id),
            ("user_id", &self.user_id),
            ("team_id", &self.team_id),
            ("team_name", &self.team_name),
            ("bot_id", &self.bot_id),
            ("locale", &self.locale),
        ] {
            if let Some(v) = v {
                e.set(name, v.as_str());
            }
        }
        Ok(e)
    }

    fn from_entity(kind: ConversationKind, key: &str, e: &Entity) -> Option<ConversationRef> {
        let s = |n: &str| e.str(n).map(str::to_string);
        Some(ConversationRef {
            kind,
            key: key.to_string(),
            conversation_id: s("conversation_id")?,
            service_url: s("service_url")?,
            tenant_id: s("tenant_id"),
            user_id: s("user_id"),
            team_id: s("team_id"),
            team_name: s("team_name"),
            bot_id: s("bot_id"),
            locale: s("locale"),
        })
    }
}

pub async fn save(store: &SharedStore, r: &ConversationRef) -> StoreResult<()> {
    store
        .upsert(CONVERSATIONS, &r.to_entity()?)
        .await
        .map(|_| ())
}

pub async fn load(
    store: &SharedStore,
    kind: ConversationKind,
    key: &str,
) -> StoreResult<Option<ConversationRef>> {
    let key = normalise_key(kind, key);
    let e = store
        .get(CONVERSATIONS, kind.partition(), &key_escape(&key))
        .await?;
    Ok(e.and_then(|e| ConversationRef::from_entity(kind, &key, &e)))
}

/// Deleting a reference that is already gone is fine.
pub async fn remove(store: &SharedStore, kind: ConversationKind, key: &str) -> StoreResult<()> {
    let key = normalise_key(kind, key);
    match store
        .delete(CONVERSATIONS, kind.partition(), &key_escape(&key), None)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

fn normalise_key(kind: ConversationKind, key: &str) -> String {
    match kind {
        ConversationKind::User => key.to_ascii_lowercase(),
        _ => key.to_string(),
    }
}
