//! Teams bot at `/api/messages` (issue #6): Bot Connector REST protocol directly, no SDK.
//!
//! - `auth/`: inbound JWT validation as an extractor (keys from the OpenID metadata, cached);
//! - `activity`: typed activities; `conversations`: references in the Store;
//! - `intents`, `answers`, `cards`, `i18n`: what the bot understands and says (FR/EN);
//! - `mapping`: Teams user → Moodle user; `connector`: outbound client (token, limits, retries);
//! - `handler`: the route.

pub mod activity;
pub mod answers;
pub mod auth;
pub mod cards;
pub mod children;
pub mod connector;
pub mod conversations;
pub mod handler;
pub mod i18n;
pub mod intents;
pub mod mapping;
pub mod parents;
pub mod replies;
pub mod settings;

pub use settings::BotSettings;

use crate::app::AppState;
use crate::ids::MoodleUserId;
use crate::store::{deadline, SharedStore, StoreResult};
use answers::Action;
use auth::openid::KeyCache;
use auth::validate::TokenValidator;
use axum::routing::post;
use axum::Router;
use cards::Reply;
use connector::{Connector, ResourceResponse, SendError};
use conversations::{ConversationKind, ConversationRef};
use i18n::Lang;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type AnswerKey = (MoodleUserId, Action, Lang);

/// Long-lived bot state (key cache, token cache, rate limiters, small caches).
pub struct BotRuntime {
    pub settings: BotSettings,
    pub validator: TokenValidator,
    pub connector: Connector,
    pub mapper: mapping::UserMapper,
    /// Parents' children, read from Moodle (None: `BOT_PARENT_LINKS_REPORT` unset).
    pub parent_links: Option<children::ParentLinks>,
    /// Conversation references already in the Store as (conversation id, service URL): a message
    /// rewrites its reference only when it changed.
    written: Mutex<HashMap<(ConversationKind, String), (String, String)>>,
    answers: Mutex<HashMap<AnswerKey, (Reply, Instant)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProactiveError {
    #[error("no stored conversation for {0:?} {1}")]
    NoReference(ConversationKind, String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Send(#[from] SendError),
}

impl BotRuntime {
    /// None when the bot is off (no `BOT_APP_ID`).
    pub fn from_settings(
        bot: Option<&BotSettings>,
        http: &reqwest::Client,
    ) -> anyhow::Result<Option<Self>> {
        let Some(bot) = bot.cloned() else {
            return Ok(None);
        };
        let keys = Arc::new(KeyCache::new(http.clone(), bot.openid_metadata_url.clone()));
        Ok(Some(BotRuntime {
            validator: TokenValidator::new(keys, &bot.app_id),
            connector: Connector::new(http.clone(), &bot),
            mapper: mapping::UserMapper::default(),
            parent_links: bot
                .parent_links_report
                .map(|r| children::ParentLinks::new(r, &bot.parent_role)),
            written: Mutex::default(),
            answers: Mutex::default(),
            settings: bot,
        }))
    }

    fn answer_ttl(&self) -> Duration {
        Duration::from_secs(self.settings.answer_cache_secs)
    }

    pub(crate) fn cached_answer(
        &self,
        user: MoodleUserId,
        action: &Action,
        lang: Lang,
    ) -> Option<Reply> {
        if self.settings.answer_cache_secs == 0 {
            return None;
        }
        let g = self.answers.lock().ok()?;
        let (reply, at) = g.get(&(user, action.clone(), lang))?;
        (at.elapsed() < self.answer_ttl()).then(|| reply.clone())
    }

    pub(crate) fn remember_answer(
        &self,
        user: MoodleUserId,
        action: &Action,
        lang: Lang,
        reply: &Reply,
    ) {
        if self.settings.answer_cache_secs == 0 {
            return;
        }
        if let Ok(mut g) = self.answers.lock() {
            if g.len() > 20_000 {
                let ttl = self.answer_ttl();
                g.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            g.insert(
                (user, action.clone(), lang),
                (reply.clone(), Instant::now()),
            );
        }
    }

    /// Store (or refresh) the reference of the activity's conversation. A failure (or a store
    /// that does not answer within [`deadline::REQUEST_PATH`]) is logged and does not hold the
    /// answer; the reference is not marked written, so the next message tries again.
    pub async fn remember_conversation(&self, store: &SharedStore, a: &activity::Activity) {
        let Some(r) = ConversationRef::from_activity(a) else {
            return;
        };
        let id = (r.kind, r.key.clone());
        let value = (r.conversation_id.clone(), r.service_url.clone());
        if self
            .written
            .lock()
            .ok()
            .and_then(|g| g.get(&id).cloned())
            .as_ref()
            == Some(&value)
        {
            return;
        }
        if let Err(e) = self.save(store, &r).await {
            tracing::warn!(error = %e, "could not store the conversation reference; the next message retries");
        }
    }

    /// Write a reference, bounded by the request-path deadline (the callers answer Teams).
    pub async fn save(&self, store: &SharedStore, r: &ConversationRef) -> StoreResult<()> {
        deadline::within(deadline::REQUEST_PATH, conversations::save(store, r)).await?;
        if let Ok(mut g) = self.written.lock() {
            if g.len() > 100_000 {
                g.clear();
            }
            g.insert(
                (r.kind, r.key.clone()),
                (r.conversation_id.clone(), r.service_url.clone()),
            );
        }
        Ok(())
    }

    pub async fn forget(
        &self,
        store: &SharedStore,
        kind: ConversationKind,
        key: &str,
    ) -> StoreResult<()> {
        if let Ok(mut g) = self.written.lock() {
            g.remove(&(kind, key.to_string()));
        }
        deadline::within(
            deadline::REQUEST_PATH,
            conversations::remove(store, kind, key),
        )
        .await
    }

    /// `forget`, logging instead of failing (used after a permanent 403).
    pub async fn forget_conversation(
        &self,
        store: &SharedStore,
        kind: ConversationKind,
        key: &str,
    ) {
        if let Err(e) = self.forget(store, kind, key).await {
            tracing::warn!(error = %e, "could not delete the conversation reference");
        }
    }

    /// Proactive send to a stored conversation (references come from the Store, so this works
    /// after a restart and on any instance). A permanent 403 deletes the reference.
    pub async fn send_proactive(
        &self,
        store: &SharedStore,
        kind: ConversationKind,
        key: &str,
        activity: &serde_json::Value,
    ) -> Result<ResourceResponse, ProactiveError> {
        let r = conversations::load(store, kind, key)
            .await?
            .ok_or_else(|| ProactiveError::NoReference(kind, key.to_string()))?;
        match self
            .connector
            .send(&r.service_url, &r.conversation_id, None, activity)
            .await
        {
            Err(SendError::Forbidden { code }) => {
                tracing::warn!(
                    code,
                    ?kind,
                    "proactive send refused permanently; forgetting the conversation"
                );
                self.forget_conversation(store, kind, &r.key).await;
                Err(SendError::Forbidden { code }.into())
            }
            other => Ok(other?),
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/api/messages", post(handler::messages))
}

/// Reachability checks for `handler check-config`: signing keys and the outbound token.
pub async fn reachability(state: &AppState) -> Vec<crate::app::Check> {
    let Some(bot) = state.bot.as_ref() else {
        return Vec::new();
    };
    let mut needed = crate::moodle::access::BOT_FUNCTIONS.to_vec();
    if bot.parent_links.is_some() {
        needed.extend_from_slice(crate::moodle::access::BOT_PARENT_FUNCTIONS);
    }
    let mut access = Vec::new();
    if let Some(m) = &state.moodle {
        access.push(crate::app::Check {
            service: "moodle access (bot)".into(),
            outcome: crate::moodle::access::check(m, &needed).await,
        });
        if let Some(links) = &bot.parent_links {
            access.push(crate::app::Check {
                service: "moodle parent links (bot)".into(),
                outcome: links.probe(m).await,
            });
        }
    }
    let keys = match bot.validator.keys().key("reachability-check").await {
        Ok(_) => Ok("keys loaded".to_string()),
        Err(auth::openid::KeyError::UnknownKid(_)) => Ok(format!(
            "keys loaded from {}",
            bot.settings.openid_metadata_url
        )),
        Err(e) => Err(e.to_string()),
    };
    let token = bot
        .connector
        .tokens
        .token()
        .await
        .map(|_| "token issued".to_string())
        .map_err(|e| e.to_string());
    let mut checks = vec![
        crate::app::Check {
            service: "bot signing keys".into(),
            outcome: keys,
        },
        crate::app::Check {
            service: "bot outbound token".into(),
            outcome: token,
        },
    ];
    checks.extend(access);
    checks
}
