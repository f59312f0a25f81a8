//! Cohorts: where class membership comes from (an attribute on people, or directory groups),
//! and how the bridge recognises and names the cohorts it owns.

use crate::config::Source;

#[derive(Debug, Clone, PartialEq)]
pub enum CohortSourceKind {
    /// Class/level values on user entries, `<structure>$<class>`.
    Attribute(String),
    /// Directory group entries with member DNs.
    Groups {
        base: String,
        filter: String,
        name_attr: String,
        member_attr: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CohortSettings {
    pub kind: CohortSourceKind,
    /// idnumber prefix that marks the cohorts the bridge created (the "cohort lock").
    pub prefix: String,
    /// Where the school (structure) entries are, to name class cohorts after the school.
    pub structures_base: String,
    /// Attribute of a structure entry giving its name; None: the structure id is used.
    pub school_name_attr: Option<String>,
}

#[derive(Clone, Copy)]
enum Mode {
    Attribute,
    Groups,
}

pub(super) fn load(src: &mut Source) -> CohortSettings {
    let mode = src
        .choice(
            "SYNC_COHORT_SOURCE",
            "attribute",
            &[("attribute", Mode::Attribute), ("groups", Mode::Groups)],
            "cohort discriminator: attribute (class values on people) or groups (directory groups)",
        )
        .unwrap_or(Mode::Attribute);
    let cohort_attr = src.string(
        "SYNC_COHORT_ATTRIBUTE",
        "ENTEleveClasses",
        "attribute holding <structure>$<class> values",
    );
    let groups_base = src.string(
        "LDAP_GROUPS_BASE",
        "ou=groups,dc=ent,dc=example",
        "base DN of group entries (groups mode)",
    );
    let groups_filter = src.string(
        "LDAP_GROUPS_FILTER",
        "(objectClass=groupOfNames)",
        "filter selecting group entries (groups mode)",
    );
    let name_attr = src.string(
        "LDAP_GROUP_NAME_ATTRIBUTE",
        "cn",
        "group attribute giving the cohort key and name",
    );
    let member_attr = src.string(
        "LDAP_GROUP_MEMBER_ATTRIBUTE",
        "member",
        "group attribute listing member DNs",
    );
    let prefix = src.string(
        "SYNC_COHORT_PREFIX",
        "ent_",
        "idnumber prefix of the cohorts the bridge creates and owns",
    );
    let structures_base = src.string(
        "LDAP_STRUCTURES_BASE",
        "ou=structures,dc=ent,dc=example",
        "base DN of the school (structure) entries whose names class cohorts carry",
    );
    let school_name_attr = src.string(
        "SYNC_SCHOOL_NAME_ATTRIBUTE",
        "ENTStructureNomCourant",
        "attribute of a structure entry naming the school in cohort names (`3A (COLLÈGE …)`); `-` keeps the structure id",
    );
    let school_name_attr =
        (!school_name_attr.is_empty() && school_name_attr != "-").then_some(school_name_attr);
    if prefix.is_empty() {
        src.problem(
            "SYNC_COHORT_PREFIX: cannot be empty (it is how the bridge recognises its cohorts)",
        );
    }
    let kind = match mode {
        Mode::Groups => CohortSourceKind::Groups {
            base: groups_base,
            filter: groups_filter,
            name_attr,
            member_attr,
        },
        Mode::Attribute => CohortSourceKind::Attribute(cohort_attr),
    };
    CohortSettings {
        kind,
        prefix,
        structures_base,
        school_name_attr,
    }
}
