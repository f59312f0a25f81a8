//! Who qualifies: one population per kind of person (students, teachers, staff, parents), each a
//! base DN and a filter.

use crate::config::Source;

/// One population (students, teachers, staff): where to search and which entries qualify.
#[derive(Debug, Clone, PartialEq)]
pub struct Population {
    pub name: String,
    pub base: String,
    pub filter: String,
}

/// The parents' default filter leaves out people another population takes (a teacher who is
/// also a parent is synced once, as a teacher, with their children's links all the same).
const PARENTS_FILTER: &str = "(&(objectClass=ENTAuxPersRelEleve)(!(objectClass=ENTEleve))(!(objectClass=ENTAuxEnseignant))(!(objectClass=ENTAuxNonEnsEtab))(!(objectClass=ENTAuxNonEnsCollLoc)))";

fn defaults(base: &str) -> Vec<(String, String, String)> {
    vec![
        (
            "students".into(),
            base.into(),
            "(objectClass=ENTEleve)".into(),
        ),
        (
            "teachers".into(),
            base.into(),
            "(objectClass=ENTAuxEnseignant)".into(),
        ),
        (
            "staff".into(),
            base.into(),
            // School staff and the local authority's staff working in schools (agents of the
            // collectivité: canteen, maintenance, IT), whom the ENT gives the same access.
            "(|(objectClass=ENTAuxNonEnsEtab)(objectClass=ENTAuxNonEnsCollLoc))".into(),
        ),
        // Last: the children's accounts exist by the time their parents' links are written.
        ("parents".into(), base.into(), PARENTS_FILTER.into()),
    ]
}

/// The populations, and the people base (where parents' children are looked up).
pub(super) fn load(src: &mut Source, parents_on: bool) -> (Vec<Population>, String) {
    let base = src.string(
        "LDAP_PEOPLE_BASE",
        "ou=people,dc=ent,dc=example",
        "base DN of person entries",
    );
    let mut populations = Vec::new();
    for (name, default_base, filter) in defaults(&base) {
        let upper = name.to_uppercase();
        let b = src.string(
            &format!("LDAP_{upper}_BASE"),
            &default_base,
            &format!("base DN of {name} (default LDAP_PEOPLE_BASE)"),
        );
        let f = src.string(
            &format!("LDAP_{upper}_FILTER"),
            &filter,
            &format!("LDAP filter selecting {name}; `-` disables the population"),
        );
        if f == "-" || (name == "parents" && !parents_on) {
            continue;
        }
        if let Err(e) = crate::sync::filter::Filter::parse(&f) {
            src.problem(format!("LDAP_{upper}_FILTER: {e}"));
        }
        populations.push(Population {
            name,
            base: b,
            filter: f,
        });
    }
    (populations, base)
}

#[cfg(test)]
mod tests {
    use crate::sync::filter::Filter;
    use crate::sync::source::Entry;
    use crate::sync::SyncSettings;

    fn with(classes: &[&str]) -> Entry {
        let mut e = Entry::new("uid=X,ou=people,dc=ent,dc=example");
        for c in classes {
            e.push("objectClass", *c);
        }
        e
    }

    #[test]
    fn default_staff_filter_takes_school_and_local_authority_staff() {
        let s = SyncSettings::default();
        let staff = s.populations.iter().find(|p| p.name == "staff").unwrap();
        let f = Filter::parse(&staff.filter).unwrap();
        assert!(f.matches(&with(&["ENTPerson", "ENTAuxNonEnsEtab"]).attrs));
        assert!(f.matches(&with(&["ENTPerson", "ENTAuxNonEnsCollLoc"]).attrs));
        assert!(!f.matches(&with(&["ENTPerson", "ENTAuxPersRelEleve"]).attrs));
    }
}
