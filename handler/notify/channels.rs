//! Channel configurations (`webhooks` table, written by the configuration page): partition =
//! Moodle course id, row = configuration id (the tab's `entityId`). Each names the channel's
//! Workflows URL — a bearer secret: stored, never logged — and the kinds it wants. A
//! configuration whose URL is refused or gone (403/404) is disabled with the reason, not deleted,
//! so the teacher sees why on the page.

use super::schema::Kind;
use crate::store::tables::WEBHOOKS;
use crate::store::{key_escape, Entity, SharedStore, StoreError, StoreResult};

#[derive(Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    pub id: String,
    pub course: i64,
    pub url: String,
    pub kinds: Vec<Kind>,
    /// Entra object id of the teacher who saved it.
    pub owner: String,
    pub lang: String,
    pub channel_name: String,
    pub disabled: Option<String>,
}

impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("id", &self.id)
            .field("course", &self.course)
            .field("url", &"[redacted]")
            .field("kinds", &self.kinds)
            .field("disabled", &self.disabled)
            .finish()
    }
}

impl ChannelConfig {
    fn to_entity(&self) -> StoreResult<Entity> {
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.as_str()).collect();
        let mut e = Entity::new(self.course.to_string(), key_escape(&self.id))
            .with("id", self.id.as_str())
            .with("url", self.url.as_str())
            .with("owner", self.owner.as_str())
            .with("lang", self.lang.as_str())
            .with("channel_name", self.channel_name.as_str())
            .with("updated", chrono::Utc::now().timestamp())
            .with_json("kinds", &kinds)?;
        if let Some(r) = &self.disabled {
            e.set("disabled", r.as_str());
        }
        Ok(e)
    }

    fn from_entity(course: i64, e: &Entity) -> StoreResult<ChannelConfig> {
        let kinds: Vec<String> = e.json("kinds")?.unwrap_or_default();
        Ok(ChannelConfig {
            id: e.str("id").unwrap_or(&e.row_key).to_string(),
            course,
            url: e.str("url").unwrap_or_default().to_string(),
            kinds: kinds.iter().filter_map(|k| Kind::parse(k)).collect(),
            owner: e.str("owner").unwrap_or_default().to_string(),
            lang: e.str("lang").unwrap_or("fr").to_string(),
            channel_name: e.str("channel_name").unwrap_or_default().to_string(),
            disabled: e.str("disabled").map(str::to_string),
        })
    }
}

pub async fn save(store: &SharedStore, c: &ChannelConfig) -> StoreResult<()> {
    store.upsert(WEBHOOKS, &c.to_entity()?).await.map(|_| ())
}

pub async fn load(
    store: &SharedStore,
    course: i64,
    id: &str,
) -> StoreResult<Option<ChannelConfig>> {
    match store
        .get(WEBHOOKS, &course.to_string(), &key_escape(id))
        .await?
    {
        Some(e) => ChannelConfig::from_entity(course, &e).map(Some),
        None => Ok(None),
    }
}

pub async fn remove(store: &SharedStore, course: i64, id: &str) -> StoreResult<()> {
    match store
        .delete(WEBHOOKS, &course.to_string(), &key_escape(id), None)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Every configuration of a course (enabled or not).
pub async fn of_course(store: &SharedStore, course: i64) -> StoreResult<Vec<ChannelConfig>> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = store
            .query(WEBHOOKS, &course.to_string(), next.as_deref(), 500)
            .await?;
        for e in &page.entities {
            out.push(ChannelConfig::from_entity(course, e)?);
        }
        match page.next {
            Some(n) => next = Some(n),
            None => return Ok(out),
        }
    }
}

/// Stop posting to a configuration, keeping why.
pub async fn disable(store: &SharedStore, course: i64, id: &str, reason: &str) -> StoreResult<()> {
    if let Some(mut c) = load(store, course, id).await? {
        c.disabled = Some(reason.chars().take(500).collect());
        save(store, &c).await?;
    }
    Ok(())
}
