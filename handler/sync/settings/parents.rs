//! Parents and legal guardians (`ENTAuxPersRelEleve`): the fourth population, off unless
//! SYNC_PARENTS is on, and the Moodle role each parent ↔ child link becomes in the child's
//! user context.

use crate::config::Source;

/// Object class marking a parent or legal guardian (also carried by teachers who are parents).
pub const PARENT_CLASS: &str = "ENTAuxPersRelEleve";
/// On the parent: DNs of the children.
pub const CHILDREN_ATTR: &str = "ENTAuxPersRelEleveEleve";
/// On the pupil: DNs of the parents (back-links; either one counts).
pub const BACK_LINK_ATTRS: [&str; 2] = ["ENTEleveParents", "ENTEleveAutoriteParentale"];

#[derive(Debug, Clone, PartialEq)]
pub struct ParentSettings {
    pub enabled: bool,
    /// Shortname of the role given in the child's user context (its id comes from SYNC_ROLE_IDS).
    pub role: String,
    /// Where the pupils carrying back-links are searched (LDAP_PEOPLE_BASE; set by the caller).
    pub pupils_base: String,
}

pub(super) fn load(src: &mut Source) -> ParentSettings {
    let enabled = src.flag(
        "SYNC_PARENTS",
        false,
        "sync parents and legal guardians (ENTAuxPersRelEleve) and their links to their children",
    );
    let role = src.string(
        "SYNC_PARENT_ROLE",
        "parent",
        "role shortname (id in SYNC_ROLE_IDS) assigned to a parent in each linked child's user context",
    );
    if role.trim().is_empty() {
        src.problem("SYNC_PARENT_ROLE: empty role shortname");
    }
    ParentSettings {
        enabled,
        role: role.trim().to_string(),
        pupils_base: String::new(),
    }
}
