//! What a sync run counts and reports on: users, cohorts, memberships, role assignments, teams,
//! team members and Entra users. One enum, so the report, the checkpoints, the admin page and the history
//! cannot disagree on a spelling; the text form is what reports and the store always held.

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum EntityKind {
    Users,
    Cohorts,
    Memberships,
    Roles,
    Teams,
    TeamMembers,
    /// The Entra → Moodle pass inside a sync run.
    EntraUsers,
    /// Entra profile photos → Moodle user pictures (`ENTRA_SYNC_PHOTO`), within the Entra pass.
    EntraPhotos,
}

impl EntityKind {
    pub const ALL: [EntityKind; 8] = [
        EntityKind::Users,
        EntityKind::Cohorts,
        EntityKind::Memberships,
        EntityKind::Roles,
        EntityKind::Teams,
        EntityKind::TeamMembers,
        EntityKind::EntraUsers,
        EntityKind::EntraPhotos,
    ];

    /// The ENT entities a run selects one by one (page checkboxes, CLI flags), in run order.
    pub const ENT: [EntityKind; 3] = [EntityKind::Users, EntityKind::Cohorts, EntityKind::Roles];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Users => "users",
            EntityKind::Cohorts => "cohorts",
            EntityKind::Memberships => "memberships",
            EntityKind::Roles => "roles",
            EntityKind::Teams => "teams",
            EntityKind::TeamMembers => "team members",
            EntityKind::EntraUsers => "entra-users",
            EntityKind::EntraPhotos => "entra-photos",
        }
    }

    /// The page's label for it (English, French).
    pub fn label(self) -> (&'static str, &'static str) {
        match self {
            EntityKind::Users => ("users", "comptes"),
            EntityKind::Cohorts => ("cohorts", "cohortes"),
            EntityKind::Memberships => ("memberships", "inscriptions aux cohortes"),
            EntityKind::Roles => ("roles", "rôles"),
            EntityKind::Teams => ("teams", "équipes"),
            EntityKind::TeamMembers => ("team members", "membres d'équipe"),
            EntityKind::EntraUsers => ("Entra users", "utilisateurs Entra"),
            EntityKind::EntraPhotos => ("Entra photos", "photos Entra"),
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so report tables can align it (`{:<12}`).
        f.pad(self.as_str())
    }
}

impl FromStr for EntityKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EntityKind::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a sync entity"))
    }
}

impl TryFrom<String> for EntityKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<EntityKind> for &'static str {
    fn from(e: EntityKind) -> &'static str {
        e.as_str()
    }
}

/// Ordered by name, as the report's tables always were; with `Borrow<str>`, a report's counts
/// are read by name (`counts["users"]`) as well as by kind.
impl Ord for EntityKind {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for EntityKind {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Borrow<str> for EntityKind {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for EntityKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for EntityKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn names_read_back_and_unknown_ones_are_refused() {
        for e in EntityKind::ALL {
            assert_eq!(e.as_str().parse::<EntityKind>(), Ok(e));
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.as_str()));
            assert_eq!(serde_json::from_str::<EntityKind>(&json).unwrap(), e);
        }
        assert!("user".parse::<EntityKind>().is_err());
        assert_eq!(format!("{:<7}|", EntityKind::Roles), "roles  |");
        assert!(serde_json::from_str::<EntityKind>("\"planets\"").is_err());
    }

    #[test]
    fn a_map_by_kind_orders_and_reads_by_name() {
        let mut m: BTreeMap<EntityKind, u32> = BTreeMap::new();
        for (i, e) in EntityKind::ALL.into_iter().enumerate() {
            m.insert(e, i as u32);
        }
        let names: Vec<&str> = m.keys().map(|e| e.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(m["team members"], 5);
        assert_eq!(m["entra-users"], 6);
        assert_eq!(m["entra-photos"], 7);
        assert_eq!(m.get("users"), Some(&0));
        let json = serde_json::to_string(&m).unwrap();
        assert!(
            json.starts_with("{\"cohorts\":1,\"entra-photos\":7,\"entra-users\":6,"),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<BTreeMap<EntityKind, u32>>(&json).unwrap(),
            m
        );
    }
}
