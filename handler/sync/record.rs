//! Typed records: what one directory entry means for Moodle, before any comparison.

use crate::moodle::roles::ContextLevel;
use crate::moodle::users::UserFields;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A cohort as the source defines it: key `<school>$<class>` (or a group name) and display name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CohortRef {
    pub key: String,
    pub name: String,
}

/// A role in a context given by its idnumber (course or category).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RoleRef {
    pub role: String,
    pub level: ContextLevel,
    pub context: String,
}

impl RoleRef {
    pub fn label(&self) -> String {
        format!("{}@{}:{}", self.role, self.level.as_str(), self.context)
    }
}

/// One person from the source, mapped to Moodle fields.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonRecord {
    /// Stable source key (uid), never the login.
    pub key: String,
    pub dn: String,
    pub fields: UserFields,
    pub cohorts: BTreeSet<CohortRef>,
    pub roles: BTreeSet<RoleRef>,
    /// Planned deletion date from the directory (`ENTPersonDateSuppression`), if any.
    pub leaves_on: Option<chrono::NaiveDate>,
    /// Notes for the verbose trace (placeholder e-mail, dropped values…).
    pub notes: Vec<String>,
    /// Values cut (or replaced) to fit Moodle's columns: reported, not only traced.
    pub shortened: Vec<String>,
}

impl PersonRecord {
    /// Hash of the Moodle fields: an equal fingerprint means nothing to write for the user.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let text = serde_json::to_string(&self.fields).unwrap_or_default();
        hex::encode(&Sha256::digest(text.as_bytes())[..16])
    }

    /// The planned deletion date has come (on `today` or before).
    pub fn has_left(&self, today: chrono::NaiveDate) -> bool {
        self.leaves_on.is_some_and(|d| d <= today)
    }
}
