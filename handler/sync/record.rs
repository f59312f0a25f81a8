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
    /// `role@level:context`, as remembered in the mapping rows.
    pub fn label(&self) -> String {
        format!("{}@{}:{}", self.role, self.level.as_str(), self.context)
    }
}

/// A label written by [`RoleRef::label`]; an unknown context level is an error.
impl std::str::FromStr for RoleRef {
    type Err = String;

    fn from_str(label: &str) -> Result<Self, String> {
        let (role, rest) = label
            .split_once('@')
            .ok_or_else(|| format!("{label:?} is not role@level:context"))?;
        let (level, context) = rest
            .split_once(':')
            .ok_or_else(|| format!("{label:?} is not role@level:context"))?;
        if role.is_empty() || context.is_empty() {
            return Err(format!("{label:?} is not role@level:context"));
        }
        Ok(RoleRef {
            role: role.to_string(),
            level: level.parse()?,
            context: context.to_string(),
        })
    }
}

/// A role assignment the bridge remembers having given (mapping rows, `roles`): the label it
/// wrote, parsed once when the row is read. An unreadable label stays as it was read, so the
/// plan keeps it (never unassigns what it cannot read) instead of re-parsing it per pass.
/// Equality and order are the label's, so a set of them is looked up by label.
#[derive(Debug, Clone)]
pub struct StoredRole {
    label: String,
    parsed: Result<RoleRef, String>,
}

impl StoredRole {
    /// Read a stored label (never fails: an unreadable one is kept with its reason).
    pub fn read(label: &str) -> Self {
        StoredRole {
            label: label.to_string(),
            parsed: label.parse(),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn parsed(&self) -> Result<&RoleRef, &str> {
        self.parsed.as_ref().map_err(String::as_str)
    }
}

impl From<&RoleRef> for StoredRole {
    fn from(r: &RoleRef) -> Self {
        StoredRole {
            label: r.label(),
            parsed: Ok(r.clone()),
        }
    }
}

impl PartialEq for StoredRole {
    fn eq(&self, other: &Self) -> bool {
        self.label == other.label
    }
}

impl Eq for StoredRole {}

impl PartialOrd for StoredRole {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StoredRole {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.label.cmp(&other.label)
    }
}

impl std::borrow::Borrow<str> for StoredRole {
    fn borrow(&self) -> &str {
        &self.label
    }
}

impl Serialize for StoredRole {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.label)
    }
}

impl<'de> Deserialize<'de> for StoredRole {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(StoredRole::read(&String::deserialize(d)?))
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
    /// Role assignments neither given nor taken away this run (a parent ↔ child link the two
    /// sides of the directory disagree on): what Moodle holds stays as it is.
    pub held_roles: BTreeSet<RoleRef>,
    /// Planned deletion date from the directory (`ENTPersonDateSuppression`), if any.
    pub leaves_on: Option<chrono::NaiveDate>,
    /// Notes for the verbose trace (placeholder e-mail, dropped values…).
    pub notes: Vec<String>,
    /// Values cut (or replaced) to fit Moodle's columns: reported, not only traced.
    pub shortened: Vec<String>,
    /// Contradictions in the source the admin must settle (reported as issues, never guessed).
    pub conflicts: Vec<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_labels_read_back_what_they_wrote() {
        let rr = RoleRef {
            role: "editingteacher".into(),
            level: ContextLevel::Coursecat,
            context: "S$6A:x".into(),
        };
        assert_eq!(rr.label().parse::<RoleRef>(), Ok(rr));
        assert_eq!(
            "student@course:C1".parse::<RoleRef>().unwrap().level,
            ContextLevel::Course
        );
    }

    #[test]
    fn an_unknown_context_level_is_an_error_not_a_course() {
        let err = "editingteacher@planet:C1".parse::<RoleRef>().unwrap_err();
        assert!(err.contains("course or coursecat"), "{err}");
        for bad in [
            "editingteacher",
            "editingteacher@course",
            "@course:C1",
            "r@course:",
        ] {
            assert!(bad.parse::<RoleRef>().is_err(), "{bad}");
        }
    }
}
