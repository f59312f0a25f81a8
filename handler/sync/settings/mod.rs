//! Sync settings, one file per concern: where people come from (`source`), who qualifies
//! (`populations`), how an entry becomes a Moodle user (`mapping`, `accounts`), cohorts and role
//! assignments (`cohorts`, `roles`), removal and leavers (`removal`), and how runs write and are
//! scheduled (`writes`, `runs`). This module only puts the pieces together.
//!
//! The sync owns its settings and reads them from `crate::config::Source`; `crate::settings`
//! gathers them with the other capabilities'. `config` never names the sync, so no import circle
//! joins them (checked by `config::layering`). Every setting is read unconditionally so
//! `handler settings` and the Bicep cross-check see the full list; problems are reported all at once.

mod accounts;
mod cohorts;
mod mapping;
mod parents;
mod populations;
mod removal;
mod roles;
mod runs;
mod source;
mod writes;

pub use cohorts::{CohortSettings, CohortSourceKind};
pub use mapping::{FieldMapping, FieldSource, Part};
pub use parents::{ParentSettings, BACK_LINK_ATTRS, CHILDREN_ATTR, PARENT_CLASS};
pub use populations::Population;
pub use removal::{LeaverMemberships, LeaverSettings, RemovalMode};
pub use roles::RoleRule;
pub use source::{LdapSettings, SourceKind};

use crate::config::Source;

#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub enabled: bool,
    pub source: SourceKind,
    pub ldap: LdapSettings,
    pub populations: Vec<Population>,
    pub mapping: FieldMapping,
    pub cohorts: CohortSettings,
    pub role_rules: Vec<RoleRule>,
    /// Role shortname → Moodle role id (Moodle has no web service to list roles).
    pub role_ids: Vec<(String, crate::ids::MoodleRoleId)>,
    /// Parents and their links to their children (SYNC_PARENTS).
    pub parents: ParentSettings,
    pub batch_size: usize,
    /// Independent write calls of one batch in flight at once.
    pub write_concurrency: usize,
    pub overlap_secs: i64,
    pub removal: RemovalMode,
    pub removal_max_share: f64,
    pub leavers: LeaverSettings,
    /// When runs become full passes (every entry read, removals allowed); None: only --force.
    pub full_schedule: Option<crate::schedule::Schedule>,
    pub lease_secs: i64,
    /// How long a proof that the Moodle token works spares an idle run its site-info call.
    pub token_recheck_secs: u64,
    pub trace_limit: usize,
    /// Moodle usernames the sync must never manage, beyond guest, admin and its own account
    /// (other site administrators: web services cannot list them).
    pub protected_users: Vec<String>,
    /// `createpassword=1` (Moodle mails a temporary password) for internal-auth accounts.
    pub password_mail: bool,
    /// Entries with `seeAlso` (the ENT's declared duplicates) are left out.
    pub skip_declared_duplicates: bool,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings::load(&mut Source::default())
    }
}

impl SyncSettings {
    pub fn load(src: &mut Source) -> Self {
        let enabled = src.flag(
            "SYNC_ENABLED",
            false,
            "run the ENT/LDAP → Moodle sync on the SyncTimer schedule",
        );
        let source = source::load_kind(src);
        let ldap = source::load_ldap(src, &source);
        let mut parents = parents::load(src);
        let (populations, people_base) = populations::load(src, parents.enabled);
        parents.pupils_base = people_base;
        let mapping = mapping::load(src);
        let accounts = accounts::load(src);
        let Some(mapping) = mapping else {
            return Self::fallback();
        };
        let cohorts = cohorts::load(src);
        let roles = roles::load(src);
        if parents.enabled && !roles.ids.iter().any(|(k, _)| k == &parents.role) {
            src.problem(format!(
                "SYNC_PARENTS: the parent role {:?} (SYNC_PARENT_ROLE) has no id in SYNC_ROLE_IDS",
                parents.role
            ));
        }
        let writes = writes::load(src);
        let removal = removal::load(src);
        let runs = runs::load(src);
        SyncSettings {
            protected_users: accounts.protected_users,
            password_mail: accounts.password_mail,
            skip_declared_duplicates: accounts.skip_declared_duplicates,
            enabled,
            source,
            ldap,
            populations,
            mapping,
            cohorts,
            role_rules: roles.rules,
            role_ids: roles.ids,
            parents,
            batch_size: writes.batch_size,
            write_concurrency: writes.write_concurrency,
            overlap_secs: runs.overlap_secs,
            removal: removal.mode,
            removal_max_share: removal.max_share,
            leavers: removal.leavers,
            full_schedule: runs.full_schedule,
            lease_secs: runs.lease_secs,
            token_recheck_secs: runs.token_recheck_secs,
            trace_limit: runs.trace_limit,
        }
    }

    /// Settings to carry on with when the mapping is unusable (its problem is already recorded):
    /// the defaults, with the sync off.
    fn fallback() -> Self {
        let mut s = Self::load(&mut Source::default());
        s.enabled = false;
        s
    }

    /// Hash of everything that shapes a Moodle record: a change forces a full pass.
    pub fn config_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let text = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{:?}",
            self.mapping,
            self.cohorts,
            self.role_rules,
            // As plain numbers, so the hash (and the full pass a change forces) stays as it was.
            self.role_ids
                .iter()
                .map(|(k, v)| (k, v.get()))
                .collect::<Vec<_>>(),
            self.populations,
            self.leavers,
            self.skip_declared_duplicates,
            self.parents
        );
        hex::encode(&Sha256::digest(text.as_bytes())[..12])
    }

    /// The sync is meant to run here: scheduled, or given a bind DN or an export file (settings
    /// without defaults, so a bot-only deployment is not checked against a directory it lacks).
    pub fn in_use(&self) -> bool {
        self.enabled || self.ldap.bind_dn.is_some() || !matches!(self.source, SourceKind::Ldap)
    }

    pub fn role_id(&self, shortname: &str) -> Option<crate::ids::MoodleRoleId> {
        self.role_ids
            .iter()
            .find(|(k, _)| k == shortname)
            .map(|(_, v)| *v)
    }

    /// Every attribute the sync needs from a person entry.
    pub fn person_attributes(&self) -> Vec<String> {
        let m = &self.mapping;
        let mut attrs = vec![
            m.key.clone(),
            "modifyTimestamp".to_string(),
            "objectClass".to_string(),
        ];
        let sources = [
            Some(&m.username),
            m.idnumber.as_ref(),
            Some(&m.firstname),
            Some(&m.lastname),
            m.email.as_ref(),
            m.institution.as_ref(),
            m.department.as_ref(),
        ];
        attrs.extend(sources.into_iter().flatten().map(|f| f.attr.clone()));
        attrs.extend(m.custom.iter().map(|(_, f)| f.attr.clone()));
        if let CohortSourceKind::Attribute(a) = &self.cohorts.kind {
            attrs.push(a.clone());
        }
        if self.skip_declared_duplicates {
            attrs.push("seeAlso".to_string());
        }
        attrs.extend(self.role_rules.iter().map(|r| r.attr.clone()));
        attrs.extend(self.leavers.date_attr.clone());
        if self.parents.enabled {
            attrs.push(CHILDREN_ATTR.to_string());
        }
        let mut seen = std::collections::BTreeSet::new();
        attrs.retain(|a| seen.insert(a.to_ascii_lowercase()));
        attrs
    }

    /// Role assignments are written: course/category rules, or parents' links (a school may
    /// turn the rules off, `SYNC_ROLE_RULES=-`, and still sync parents).
    pub fn writes_roles(&self) -> bool {
        !self.role_rules.is_empty() || self.parents.enabled
    }
}

/// Problems a set of settings gives, for the loaders' tests.
#[cfg(test)]
fn problems(pairs: &[(&str, &str)]) -> Vec<String> {
    let map = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut src = Source::from_map(map);
    let _ = SyncSettings::load(&mut src);
    src.take_problems()
}
