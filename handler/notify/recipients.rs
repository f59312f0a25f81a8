//! Moodle user → Teams user, through `mappings`: partition
//! [`crate::bot::mapping::MOODLE_USER_PARTITION`], row = Moodle user id, property
//! [`crate::bot::mapping::ENTRA_OBJECT_ID_PROP`] — written beside the forward row wherever a
//! Teams user is matched to a Moodle user (the bot's mapper; the Entra sync).

use crate::bot::mapping::{ENTRA_OBJECT_ID_PROP, MOODLE_USER_PARTITION};
use crate::store::tables::MAPPINGS;
use crate::store::{SharedStore, StoreResult};

pub async fn entra_of(store: &SharedStore, moodle: i64) -> StoreResult<Option<String>> {
    Ok(store
        .get(MAPPINGS, MOODLE_USER_PARTITION, &moodle.to_string())
        .await?
        .and_then(|e| e.str(ENTRA_OBJECT_ID_PROP).map(|s| s.to_ascii_lowercase())))
}
