//! Moodle user → Entra object id, from the links the Entra sync writes in `mappings` (partition
//! `entra-user`, row key = object id in lower case, `moodle_user_id`; the bot reads the same rows).
//! Read once per shard: one partition scan costs less than a lookup per enrolled user. Links the
//! Entra sync marks `suspended` (account disabled in Entra) are left out.

use crate::bot::mapping::{ENTRA_USER_PARTITION, MOODLE_USER_ID_PROP};
use crate::store::{tables, SharedStore, StoreError};
use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct EntraLinks {
    by_moodle: HashMap<i64, String>,
}

impl EntraLinks {
    pub async fn load(store: &SharedStore) -> Result<Self, StoreError> {
        let mut by_moodle = HashMap::new();
        let mut next: Option<String> = None;
        loop {
            let page = store
                .query(
                    tables::MAPPINGS,
                    ENTRA_USER_PARTITION,
                    next.as_deref(),
                    1000,
                )
                .await?;
            for e in page.entities {
                // Disabled in Entra (the Entra sync suspended the Moodle account): such an
                // account cannot use Teams, so it is not added to any team.
                if e.bool("suspended") == Some(true) {
                    continue;
                }
                if let Some(id) = e.int(MOODLE_USER_ID_PROP) {
                    // The row key is the object id escaped for the store; ids are GUIDs, which
                    // escaping leaves alone.
                    by_moodle.insert(id, e.row_key.to_ascii_lowercase());
                }
            }
            match page.next {
                Some(n) => next = Some(n),
                None => break,
            }
        }
        Ok(EntraLinks { by_moodle })
    }

    pub fn entra_id(&self, moodle_user: i64) -> Option<&str> {
        self.by_moodle.get(&moodle_user).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_moodle.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_moodle.is_empty()
    }
}

/// Test and benchmark helper: the row the Entra sync writes for one link.
pub fn link_row(entra_id: &str, moodle_user: i64) -> crate::store::Entity {
    crate::store::Entity::new(ENTRA_USER_PARTITION, entra_id.to_ascii_lowercase())
        .with(MOODLE_USER_ID_PROP, moodle_user)
}
