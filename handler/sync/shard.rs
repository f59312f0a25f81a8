//! The message SyncTimer puts on `sync-work`: one population (or the groups pass) of one run.

use super::report::SyncOptions;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    pub run_id: String,
    pub index: usize,
    pub total: usize,
    /// A population name, `groups` for the directory-group cohort pass, or `teams-<n>` for a
    /// batch of courses of the Teams pass.
    pub population: String,
    pub options: SyncOptions,
    /// The Moodle course ids of a Teams shard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub courses: Vec<i64>,
}

impl Shard {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("shard serialises")
    }

    /// Hosts may deliver the JSON text encoded once more as a JSON string: accept both.
    pub fn parse(text: &str) -> Result<Shard, String> {
        match serde_json::from_str::<Shard>(text) {
            Ok(s) => Ok(s),
            Err(first) => match serde_json::from_str::<String>(text) {
                Ok(inner) => serde_json::from_str(&inner).map_err(|e| format!("shard: {e}")),
                Err(_) => Err(format!("shard: {first}")),
            },
        }
    }
}
