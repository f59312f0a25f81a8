//! Pure planning of a team's membership: what the course says (owners and members by Entra
//! object id) against what the team has, as the calls to make. Never plans away the last owner.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Owner,
    Member,
}

/// One member of the team as Graph lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The conversationMember id (what DELETE and PATCH address).
    pub membership_id: String,
    /// Entra object id, lower case.
    pub user_id: String,
    pub owner: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipPlan {
    /// (user id, owner?) to add, in bulk.
    pub add: Vec<(String, bool)>,
    pub promote: Vec<Current>,
    pub demote: Vec<Current>,
    pub remove: Vec<Current>,
    /// An owner kept although the course no longer makes them one: the team would have no owner.
    pub kept_last_owner: Option<String>,
}

impl MembershipPlan {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.promote.is_empty()
            && self.demote.is_empty()
            && self.remove.is_empty()
    }
}

/// `desired`: user id (lower case) → role. Owners are added and promoted before anyone is
/// demoted or removed, so the owner count the check below relies on holds at every step.
pub fn plan(desired: &BTreeMap<String, Role>, current: &[Current]) -> MembershipPlan {
    let mut p = MembershipPlan::default();
    let present: BTreeSet<&str> = current.iter().map(|c| c.user_id.as_str()).collect();
    for (user, role) in desired {
        if !present.contains(user.as_str()) {
            p.add.push((user.clone(), *role == Role::Owner));
        }
    }
    for c in current {
        match desired.get(&c.user_id) {
            Some(Role::Owner) if !c.owner => p.promote.push(c.clone()),
            Some(Role::Member) if c.owner => p.demote.push(c.clone()),
            Some(_) => {}
            None => p.remove.push(c.clone()),
        }
    }
    let owners_after = current.iter().filter(|c| c.owner).count()
        + p.promote.len()
        + p.add.iter().filter(|(_, o)| *o).count()
        - p.demote.len()
        - p.remove.iter().filter(|c| c.owner).count();
    if owners_after == 0 {
        // Keep one owner: prefer one the course still has as a member over one it dropped.
        if let Some(i) = (!p.demote.is_empty()).then_some(0) {
            let kept = p.demote.remove(i);
            p.kept_last_owner = Some(kept.user_id);
        } else if let Some(i) = p.remove.iter().position(|c| c.owner) {
            let kept = p.remove.remove(i);
            p.kept_last_owner = Some(kept.user_id);
        }
    }
    p
}

/// Fingerprint of what a course asks of its team (names and members): a run that finds the same
/// fingerprint as the last applied one has nothing to do and calls Graph not at all.
pub fn fingerprint(display_name: &str, archived: bool, desired: &BTreeMap<String, Role>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(display_name.as_bytes());
    h.update([0, archived as u8]);
    for (u, r) in desired {
        h.update(u.as_bytes());
        h.update([0, (*r == Role::Owner) as u8]);
    }
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(user: &str, owner: bool) -> Current {
        Current {
            membership_id: format!("m-{user}"),
            user_id: user.into(),
            owner,
        }
    }

    fn want(pairs: &[(&str, Role)]) -> BTreeMap<String, Role> {
        pairs.iter().map(|(u, r)| (u.to_string(), *r)).collect()
    }

    #[test]
    fn adds_removes_promotes_and_demotes() {
        let d = want(&[
            ("t1", Role::Owner),
            ("t2", Role::Owner),
            ("s1", Role::Member),
            ("s3", Role::Member),
        ]);
        let c = [
            cur("t1", true),
            cur("t2", false),
            cur("s1", true),
            cur("s2", false),
        ];
        let p = plan(&d, &c);
        assert_eq!(p.add, vec![("s3".to_string(), false)]);
        assert_eq!(p.promote, vec![cur("t2", false)]);
        assert_eq!(p.demote, vec![cur("s1", true)]);
        assert_eq!(p.remove, vec![cur("s2", false)]);
        assert_eq!(p.kept_last_owner, None);
        assert!(plan(
            &d,
            &[
                cur("t1", true),
                cur("t2", true),
                cur("s1", false),
                cur("s3", false)
            ]
        )
        .is_empty());
    }

    #[test]
    fn never_plans_away_the_last_owner() {
        // The only teacher became a student: demoting would leave the team without an owner.
        let p = plan(&want(&[("t1", Role::Member)]), &[cur("t1", true)]);
        assert!(p.demote.is_empty());
        assert_eq!(p.kept_last_owner.as_deref(), Some("t1"));
        // The only teacher left the course and nobody replaces them.
        let p = plan(
            &want(&[("s1", Role::Member)]),
            &[cur("t1", true), cur("s1", false)],
        );
        assert!(p.remove.is_empty());
        assert_eq!(p.kept_last_owner.as_deref(), Some("t1"));
        // A new owner arrives in the same run: the old one may go.
        let p = plan(&want(&[("t2", Role::Owner)]), &[cur("t1", true)]);
        assert_eq!(p.remove, vec![cur("t1", true)]);
        assert_eq!(p.kept_last_owner, None);
    }

    #[test]
    fn the_fingerprint_changes_with_names_roles_and_members() {
        let d = want(&[("t1", Role::Owner)]);
        let f = fingerprint("A", false, &d);
        assert_eq!(f, fingerprint("A", false, &d));
        assert_ne!(f, fingerprint("B", false, &d));
        assert_ne!(f, fingerprint("A", true, &d));
        assert_ne!(f, fingerprint("A", false, &want(&[("t1", Role::Member)])));
    }
}
