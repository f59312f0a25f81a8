//! Teams user → Moodle user. First the `mappings` table the sync writes (partition
//! [`ENTRA_USER_PARTITION`], row key = Entra object id in lower case, property
//! [`MOODLE_USER_ID_PROP`]); else the user's UPN / e-mail from the Bot Connector roster, looked up
//! in Moodle by e-mail, then by username. Results are cached briefly (unknown users for less).

use crate::bot::activity::Activity;
use crate::bot::connector::Connector;
use crate::ids::MoodleUserId;
use crate::moodle::site::{find_users, UserLookupField};
use crate::moodle::{MoodleClient, MoodleError};
use crate::store::tables::MAPPINGS;
use crate::store::{deadline, key_escape, SharedStore};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Contract with the sync: `mappings` rows `(ENTRA_USER_PARTITION, <object id lower case>)`.
pub const ENTRA_USER_PARTITION: &str = "entra-user";
pub const MOODLE_USER_ID_PROP: &str = "moodle_user_id";
/// The reverse row, for notifications (Moodle user → Teams user): `(MOODLE_USER_PARTITION,
/// <Moodle user id>)` with [`ENTRA_OBJECT_ID_PROP`].
pub const MOODLE_USER_PARTITION: &str = "moodle-user";
pub const ENTRA_OBJECT_ID_PROP: &str = "entra_object_id";

/// Write both directions of a match, so notifications can find the Teams user of a Moodle user.
pub async fn remember_pair(
    store: &SharedStore,
    aad: &str,
    moodle: MoodleUserId,
) -> crate::store::StoreResult<()> {
    let aad = aad.to_ascii_lowercase();
    let forward = crate::store::Entity::new(ENTRA_USER_PARTITION, key_escape(&aad))
        .with(MOODLE_USER_ID_PROP, moodle.get());
    let reverse = crate::store::Entity::new(MOODLE_USER_PARTITION, moodle.get().to_string())
        .with(ENTRA_OBJECT_ID_PROP, aad.as_str());
    store.upsert(MAPPINGS, &forward).await?;
    store.upsert(MAPPINGS, &reverse).await.map(|_| ())
}

const KNOWN_TTL: Duration = Duration::from_secs(600);
const UNKNOWN_TTL: Duration = Duration::from_secs(60);
const MAX_ENTRIES: usize = 50_000;

#[derive(Default)]
pub struct UserMapper {
    cache: Mutex<HashMap<String, (Option<MoodleUserId>, Instant)>>,
}

impl UserMapper {
    fn cached(&self, aad: &str) -> Option<Option<MoodleUserId>> {
        let g = self.cache.lock().ok()?;
        let (v, at) = g.get(aad)?;
        let ttl = if v.is_some() { KNOWN_TTL } else { UNKNOWN_TTL };
        (at.elapsed() < ttl).then_some(*v)
    }

    fn remember(&self, aad: &str, v: Option<MoodleUserId>) {
        if let Ok(mut g) = self.cache.lock() {
            if g.len() >= MAX_ENTRIES {
                g.clear();
            }
            g.insert(aad.to_string(), (v, Instant::now()));
        }
    }

    /// The Moodle user behind the activity's sender; `Ok(None)` for a user Moodle does not know.
    pub async fn resolve(
        &self,
        activity: &Activity,
        store: &SharedStore,
        moodle: &MoodleClient,
        connector: &Connector,
    ) -> Result<Option<MoodleUserId>, MoodleError> {
        let Some(from) = activity.from.as_ref() else {
            return Ok(None);
        };
        let aad = from
            .aad_object_id
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !aad.is_empty() {
            if let Some(v) = self.cached(&aad) {
                return Ok(v);
            }
            let row_key = key_escape(&aad);
            let lookup = store.get(MAPPINGS, ENTRA_USER_PARTITION, &row_key);
            match deadline::within(deadline::REQUEST_PATH, lookup).await {
                Ok(Some(e)) => {
                    if let Some(id) = e
                        .int(MOODLE_USER_ID_PROP)
                        .and_then(|i| MoodleUserId::new(i).ok())
                    {
                        self.remember(&aad, Some(id));
                        return Ok(Some(id));
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "mappings lookup failed; trying the roster"),
            }
        }
        let found = self.by_roster(activity, moodle, connector).await?;
        if !aad.is_empty() {
            self.remember(&aad, found);
            if let Some(id) = found {
                // Lets notifications reach this user; the answer does not wait on it.
                let write = remember_pair(store, &aad, id);
                if let Err(e) = deadline::within(deadline::REQUEST_PATH, write).await {
                    tracing::warn!(error = %e, "could not store the Teams user of a Moodle user");
                }
            }
        }
        Ok(found)
    }

    async fn by_roster(
        &self,
        activity: &Activity,
        moodle: &MoodleClient,
        connector: &Connector,
    ) -> Result<Option<MoodleUserId>, MoodleError> {
        let (Some(service_url), Some(conversation), Some(from)) = (
            activity.service_url.as_deref(),
            activity.conversation_id(),
            activity.from.as_ref(),
        ) else {
            return Ok(None);
        };
        let member = match connector.member(service_url, conversation, &from.id).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the user's UPN from the roster");
                return Ok(None);
            }
        };
        let mut addresses: Vec<String> = [member.email, member.user_principal_name]
            .into_iter()
            .flatten()
            .map(|s| s.trim().to_lowercase())
            .filter(|s| s.contains('@'))
            .collect();
        addresses.dedup();
        if addresses.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
        let active = |users: Vec<crate::moodle::site::FoundUser>| {
            users
                .into_iter()
                .find(|u| u.suspended != Some(true))
                .map(|u| u.id)
        };
        if let Some(id) = active(find_users(moodle, UserLookupField::Email, &refs).await?) {
            return Ok(Some(id));
        }
        // Schools with Entra sign-in often use the UPN as Moodle username (always lower case).
        Ok(active(
            find_users(moodle, UserLookupField::Username, &refs).await?,
        ))
    }
}
