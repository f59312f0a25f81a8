//! Sync settings. Every setting is read unconditionally so `handler settings` and the Bicep
//! cross-check see the full list; validation problems are reported all at once.

use crate::config::{Secret, Source};
use crate::moodle::roles::ContextLevel;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    Ldap,
    Ldif(PathBuf),
    Csv(PathBuf),
}

#[derive(Debug, Clone)]
pub struct LdapSettings {
    pub url: String,
    pub starttls: bool,
    pub no_tls_verify: bool,
    pub bind_dn: Option<String>,
    pub bind_password: Option<Secret>,
    pub page_size: i32,
    pub timeout_secs: u64,
}

/// One population (students, teachers, staff): where to search and which entries qualify.
#[derive(Debug, Clone, PartialEq)]
pub struct Population {
    pub name: String,
    pub base: String,
    pub filter: String,
}

/// Where a Moodle field comes from: `attr`, `attr:last` (last `$`-part), `attr:N` (N-th `$`-part, from 0),
/// `attr:after$` (everything after the first `$`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldSource {
    pub attr: String,
    pub part: Part,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Part {
    Whole,
    Last,
    Index(usize),
    AfterFirst,
}

impl FieldSource {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (attr, part) =
            match s.split_once(':') {
                None => (s, Part::Whole),
                Some((a, "last")) => (a, Part::Last),
                Some((a, "after$")) => (a, Part::AfterFirst),
                Some((a, n)) => (
                    a,
                    Part::Index(n.parse().map_err(|_| {
                        format!("{s:?}: use attr, attr:last, attr:after$ or attr:N")
                    })?),
                ),
            };
        if attr.is_empty()
            || !attr
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';')
        {
            return Err(format!("{s:?} is not an attribute name"));
        }
        Ok(FieldSource {
            attr: attr.to_string(),
            part,
        })
    }

    pub fn describe(&self) -> String {
        match &self.part {
            Part::Whole => self.attr.clone(),
            Part::Last => format!("{}:last", self.attr),
            Part::Index(n) => format!("{}:{n}", self.attr),
            Part::AfterFirst => format!("{}:after$", self.attr),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldMapping {
    pub key: String,
    pub username: FieldSource,
    pub idnumber: Option<FieldSource>,
    pub firstname: FieldSource,
    pub lastname: FieldSource,
    pub email: Option<FieldSource>,
    pub institution: Option<FieldSource>,
    pub department: Option<FieldSource>,
    /// Moodle profile field shortname → source.
    pub custom: Vec<(String, FieldSource)>,
    pub auth: String,
    /// Domain of the placeholder address given to entries without mail (Moodle requires one).
    pub fake_email_domain: String,
}

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

/// `attribute|level|role|template`: each value of `attribute` (`<structure>$<code>[$…]`) gives
/// `role` in the context whose idnumber is `template` with `{school}` / `{code}` / `{value}` filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleRule {
    pub attr: String,
    pub level: ContextLevel,
    pub role: String,
    pub template: String,
}

impl RoleRule {
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('|').map(str::trim).collect();
        let [attr, level, role, template] = parts.as_slice() else {
            return Err(format!(
                "{s:?}: expected attribute|course or coursecat|role shortname|idnumber template"
            ));
        };
        let level: ContextLevel = level.parse()?;
        Ok(RoleRule {
            attr: attr.to_string(),
            level,
            role: role.to_string(),
            template: template.to_string(),
        })
    }
}

/// What a suspended leaver keeps of what the bridge gave them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaverMemberships {
    /// Cohorts and role assignments stay: suspension alone blocks the account, and a cohort
    /// enrolment (which may unenrol and drop course data when a member leaves) is left alone.
    Keep,
    /// The bridge's cohort memberships and role assignments are taken away (others untouched).
    Remove,
}

/// People whose directory entry carries a planned deletion date.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaverSettings {
    /// Attribute holding the planned deletion date (`ENTPersonDateSuppression`); None: ignored.
    pub date_attr: Option<String>,
    /// Suspend the Moodle account from that date on.
    pub suspend_on_date: bool,
    pub memberships: LeaverMemberships,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalMode {
    Off,
    Suspend,
    Delete,
}

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
    pub role_ids: Vec<(String, i64)>,
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

fn default_populations(base: &str) -> Vec<(String, String, String)> {
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
    ]
}

impl SyncSettings {
    pub fn load(src: &mut Source) -> Self {
        let enabled = src.flag(
            "SYNC_ENABLED",
            false,
            "run the ENT/LDAP → Moodle sync on the SyncTimer schedule",
        );
        let kind = src.string(
            "SYNC_SOURCE",
            "ldap",
            "where people come from: ldap, ldif or csv (an export file)",
        );
        let file = src.opt(
            "SYNC_SOURCE_FILE",
            "path of the LDIF or CSV export when SYNC_SOURCE is ldif or csv",
        );
        let source = match (kind.as_str(), file) {
            ("ldap", _) => SourceKind::Ldap,
            ("ldif", Some(f)) => SourceKind::Ldif(f.into()),
            ("csv", Some(f)) => SourceKind::Csv(f.into()),
            ("ldif" | "csv", None) => {
                src.problem(format!(
                    "SYNC_SOURCE_FILE: required when SYNC_SOURCE={kind}"
                ));
                SourceKind::Ldap
            }
            (other, _) => {
                src.problem(format!("SYNC_SOURCE: {other:?} is not ldap, ldif or csv"));
                SourceKind::Ldap
            }
        };
        let url = src.string(
            "LDAP_URL",
            "ldap://127.0.0.1:389",
            "ENT directory URL, ldap:// or ldaps://",
        );
        if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
            src.problem(format!(
                "LDAP_URL: {url:?} must start with ldap:// or ldaps://"
            ));
        }
        let starttls = src.flag(
            "LDAP_STARTTLS",
            false,
            "upgrade an ldap:// connection with StartTLS",
        );
        if starttls && url.starts_with("ldaps://") {
            src.problem("LDAP_STARTTLS: not with ldaps:// (already TLS)");
        }
        let no_tls_verify = src.flag(
            "LDAP_TLS_NO_VERIFY",
            false,
            "accept any LDAP server certificate (tests only)",
        );
        let bind_dn = src.opt(
            "LDAP_BIND_DN",
            "DN the sync binds as (anonymous when empty)",
        );
        let bind_password = src.secret("LDAP_BIND_PASSWORD", "password of LDAP_BIND_DN");
        if bind_dn.is_some() && bind_password.is_none() {
            src.problem("LDAP_BIND_PASSWORD: required when LDAP_BIND_DN is set");
        }
        let allow_insecure = src.flag(
            "LDAP_ALLOW_INSECURE",
            false,
            "accept ldap:// without LDAP_STARTTLS to another host: the bind password then crosses the network in clear text",
        );
        if matches!(source, SourceKind::Ldap)
            && bind_password.is_some()
            && url.starts_with("ldap://")
            && !starttls
            && !allow_insecure
        {
            let host = url::Url::parse(&url).ok();
            let host = host.as_ref().and_then(|u| u.host());
            if !host.as_ref().is_some_and(crate::config::is_loopback_host) {
                src.problem(format!(
                    "LDAP_URL: ldap:// without StartTLS would send LDAP_BIND_PASSWORD in clear text to {}; \
                     use ldaps:// or LDAP_STARTTLS=true, or set LDAP_ALLOW_INSECURE=true if the network path is trusted",
                    host.map_or_else(|| "?".to_string(), |h| h.to_string())
                ));
            }
        }
        let page_size = src.parse(
            "LDAP_PAGE_SIZE",
            500i32,
            "entries per page of a paged search (RFC 2696)",
        );
        if page_size < 1 {
            src.problem("LDAP_PAGE_SIZE: at least 1");
        }
        let timeout_secs = src.parse(
            "LDAP_TIMEOUT_SECS",
            30u64,
            "LDAP connect and operation timeout",
        );
        let base = src.string(
            "LDAP_PEOPLE_BASE",
            "ou=people,dc=ent,dc=example",
            "base DN of person entries",
        );
        let mut populations = Vec::new();
        for (name, base, filter) in default_populations(&base) {
            let upper = name.to_uppercase();
            let b = src.string(
                &format!("LDAP_{upper}_BASE"),
                &base,
                &format!("base DN of {name} (default LDAP_PEOPLE_BASE)"),
            );
            let f = src.string(
                &format!("LDAP_{upper}_FILTER"),
                &filter,
                &format!("LDAP filter selecting {name}; `-` disables the population"),
            );
            if f == "-" {
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
        let field =
            |src: &mut Source, name: &str, default: &str, what: &str| -> Option<FieldSource> {
                let raw = src.string(
                    name,
                    default,
                    &format!("{what} (attribute, attr:last, attr:after$ or attr:N; `-` for none)"),
                );
                if raw == "-" || raw.is_empty() {
                    return None;
                }
                match FieldSource::parse(&raw) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        src.problem(format!("{name}: {e}"));
                        None
                    }
                }
            };
        let key = src.string(
            "SYNC_MAP_KEY",
            "uid",
            "stable source key of a person (RDN attribute)",
        );
        let username = field(
            src,
            "SYNC_MAP_USERNAME",
            "ENTPersonLogin",
            "Moodle username (lowercased)",
        );
        let idnumber = field(
            src,
            "SYNC_MAP_IDNUMBER",
            "ENTPersonJointure:after$",
            "Moodle idnumber",
        );
        let firstname = field(src, "SYNC_MAP_FIRSTNAME", "givenName", "Moodle first name");
        let lastname = field(src, "SYNC_MAP_LASTNAME", "sn", "Moodle last name");
        let email = field(src, "SYNC_MAP_EMAIL", "mail", "Moodle e-mail");
        let institution = field(src, "SYNC_MAP_INSTITUTION", "-", "Moodle institution");
        let department = field(
            src,
            "SYNC_MAP_DEPARTMENT",
            "ENTPersonFonctions:last",
            "Moodle department",
        );
        let custom_raw = src.string(
            "SYNC_MAP_CUSTOM",
            "",
            "custom profile fields: shortname=attribute[,shortname=attribute…]",
        );
        let mut custom = Vec::new();
        for pair in custom_raw
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match pair
                .split_once('=')
                .map(|(k, v)| (k.trim(), FieldSource::parse(v)))
            {
                Some((k, Ok(f))) if !k.is_empty() => custom.push((k.to_string(), f)),
                Some((_, Err(e))) => src.problem(format!("SYNC_MAP_CUSTOM: {e}")),
                _ => src.problem(format!(
                    "SYNC_MAP_CUSTOM: {pair:?} is not shortname=attribute"
                )),
            }
        }
        let auth = src.string(
            "SYNC_USER_AUTH",
            "cas",
            "Moodle auth plugin of created users (cas, ldap, shibboleth, manual…)",
        );
        let password_mail = src.flag(
            "SYNC_MANUAL_PASSWORD_MAIL",
            false,
            "accounts with an internal auth (SYNC_USER_AUTH=manual…): let Moodle create a password and e-mail it (otherwise a random password nobody knows; SSO accounts never get one)",
        );
        let duplicates = src.string(
            "SYNC_DECLARED_DUPLICATES",
            "skip",
            "entries carrying seeAlso (the ENT's declared duplicate accounts): skip, or sync them like any entry",
        );
        let skip_declared_duplicates = match duplicates.as_str() {
            "skip" => true,
            "sync" => false,
            other => {
                src.problem(format!(
                    "SYNC_DECLARED_DUPLICATES: {other:?} is not skip or sync"
                ));
                true
            }
        };
        let fake_email_domain = src.string(
            "SYNC_FAKE_EMAIL_DOMAIN",
            "no-mail.invalid",
            "domain of the placeholder e-mail of people without mail",
        );
        let (Some(username), Some(firstname), Some(lastname)) = (username, firstname, lastname)
        else {
            src.problem(
                "SYNC_MAP_USERNAME, SYNC_MAP_FIRSTNAME and SYNC_MAP_LASTNAME cannot be `-`",
            );
            return Self::fallback(src);
        };
        let mapping = FieldMapping {
            key,
            username,
            idnumber,
            firstname,
            lastname,
            email,
            institution,
            department,
            custom,
            auth,
            fake_email_domain,
        };

        let cohort_mode = src.string(
            "SYNC_COHORT_SOURCE",
            "attribute",
            "cohort discriminator: attribute (class values on people) or groups (directory groups)",
        );
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
        let kind = match cohort_mode.as_str() {
            "groups" => CohortSourceKind::Groups {
                base: groups_base,
                filter: groups_filter,
                name_attr,
                member_attr,
            },
            "attribute" => CohortSourceKind::Attribute(cohort_attr),
            other => {
                src.problem(format!(
                    "SYNC_COHORT_SOURCE: {other:?} is not attribute or groups"
                ));
                CohortSourceKind::Attribute(cohort_attr)
            }
        };
        let rules_raw = src.string(
            "SYNC_ROLE_RULES",
            "ENTAuxEnsClasses|course|editingteacher|{school}${code}",
            "role assignments: attribute|course or coursecat|role shortname|context idnumber template, separated by ;",
        );
        let mut role_rules = Vec::new();
        for r in rules_raw
            .split(';')
            .map(str::trim)
            .filter(|r| !r.is_empty() && *r != "-")
        {
            match RoleRule::parse(r) {
                Ok(r) => role_rules.push(r),
                Err(e) => src.problem(format!("SYNC_ROLE_RULES: {e}")),
            }
        }
        let ids_raw = src.string(
            "SYNC_ROLE_IDS",
            "manager=1,coursecreator=2,editingteacher=3,teacher=4,student=5",
            "Moodle role ids by shortname (Moodle's web services cannot list them)",
        );
        let mut role_ids = Vec::new();
        for pair in ids_raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once('=').and_then(|(k, v)| {
                v.trim()
                    .parse::<i64>()
                    .ok()
                    .map(|v| (k.trim().to_string(), v))
            }) {
                Some(p) => role_ids.push(p),
                None => src.problem(format!("SYNC_ROLE_IDS: {pair:?} is not shortname=id")),
            }
        }
        for r in &role_rules {
            if !role_ids.iter().any(|(k, _)| k == &r.role) {
                src.problem(format!(
                    "SYNC_ROLE_RULES: role {:?} has no id in SYNC_ROLE_IDS",
                    r.role
                ));
            }
        }
        let batch_size = src.parse("SYNC_BATCH_SIZE", 500usize, "people planned together: one lookup per batch, writes split further by MOODLE_MAX_FORM_FIELDS");
        let write_concurrency = src.parse(
            "SYNC_WRITE_CONCURRENCY",
            2usize,
            "Moodle write calls of one batch in flight at once (independent people; memberships wait for their users)",
        );
        if write_concurrency == 0 {
            src.problem("SYNC_WRITE_CONCURRENCY: at least 1");
        }
        let overlap_secs = src.parse("SYNC_OVERLAP_SECS", 120i64, "incremental runs re-read this many seconds before the checkpoint (clock skew, whole-second timestamps)");
        let removal_raw = src.string(
            "SYNC_REMOVAL",
            "off",
            "people who left the directory: off, suspend or delete (only on full passes: --force or SYNC_FULL_SCHEDULE)",
        );
        let removal = match removal_raw.as_str() {
            "off" => RemovalMode::Off,
            "suspend" => RemovalMode::Suspend,
            "delete" => RemovalMode::Delete,
            other => {
                src.problem(format!(
                    "SYNC_REMOVAL: {other:?} is not off, suspend or delete"
                ));
                RemovalMode::Off
            }
        };
        let removal_max_share = src.parse(
            "SYNC_REMOVAL_MAX_SHARE",
            0.05f64,
            "refuse removals touching more than this share of synced users unless forced",
        );
        if !(0.0..=1.0).contains(&removal_max_share) {
            src.problem("SYNC_REMOVAL_MAX_SHARE: between 0 and 1");
        }
        let date_attr = src.string(
            "SYNC_DELETION_DATE_ATTRIBUTE",
            "ENTPersonDateSuppression",
            "attribute with a person's planned deletion date (dd/mm/yyyy, yyyy-mm-dd or GeneralizedTime); `-` ignores it",
        );
        let suspend_on_date = src.flag(
            "SYNC_SUSPEND_ON_DELETION_DATE",
            true,
            "suspend the Moodle account of a person whose planned deletion date has come (not created if it has none)",
        );
        let memberships = match src
            .string(
                "SYNC_LEAVER_MEMBERSHIPS",
                "keep",
                "a suspended leaver's cohorts and role assignments given by the bridge: keep or remove",
            )
            .as_str()
        {
            "keep" => LeaverMemberships::Keep,
            "remove" => LeaverMemberships::Remove,
            other => {
                src.problem(format!(
                    "SYNC_LEAVER_MEMBERSHIPS: {other:?} is not keep or remove"
                ));
                LeaverMemberships::Keep
            }
        };
        let leavers = LeaverSettings {
            date_attr: (!date_attr.is_empty() && date_attr != "-").then_some(date_attr),
            suspend_on_date,
            memberships,
        };
        let full_raw = src.string(
            "SYNC_FULL_SCHEDULE",
            "0 0 2 * * *",
            "NCRONTAB schedule of full passes (every entry read, so leavers are seen without --force); `-` for none",
        );
        let full_schedule = match full_raw.trim() {
            "" | "-" => None,
            expr => match crate::schedule::Schedule::parse(expr) {
                Ok(s) => Some(s),
                Err(e) => {
                    src.problem(format!("SYNC_FULL_SCHEDULE: {e}"));
                    None
                }
            },
        };
        let lease_secs = src.parse(
            "SYNC_LEASE_SECS",
            1800i64,
            "how long a sync run holds its lease before another run may take over",
        );
        let trace_limit = src.parse(
            "SYNC_TRACE_LIMIT",
            20000usize,
            "most per-entry trace lines kept for a verbose run",
        );
        let protected_users: Vec<String> = src
            .string(
                "SYNC_PROTECTED_USERS",
                "",
                "extra Moodle usernames the sync never manages (other site administrators), comma-separated",
            )
            .split(',')
            .map(|u| u.trim().to_lowercase())
            .filter(|u| !u.is_empty())
            .collect();
        SyncSettings {
            protected_users,
            password_mail,
            skip_declared_duplicates,
            enabled,
            source,
            ldap: LdapSettings {
                url,
                starttls,
                no_tls_verify,
                bind_dn,
                bind_password,
                page_size,
                timeout_secs,
            },
            populations,
            mapping,
            cohorts: CohortSettings {
                kind,
                prefix,
                structures_base,
                school_name_attr,
            },
            role_rules,
            role_ids,
            batch_size: batch_size.max(1),
            write_concurrency: write_concurrency.max(1),
            overlap_secs: overlap_secs.max(0),
            removal,
            removal_max_share,
            leavers,
            full_schedule,
            lease_secs,
            trace_limit,
        }
    }

    fn fallback(src: &mut Source) -> Self {
        let mut ok = Source::default();
        let mut s = Self::load(&mut ok);
        s.enabled = false;
        let _ = src;
        s
    }

    /// Hash of everything that shapes a Moodle record: a change forces a full pass.
    pub fn config_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let text = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}",
            self.mapping,
            self.cohorts,
            self.role_rules,
            self.role_ids,
            self.populations,
            self.leavers,
            self.skip_declared_duplicates
        );
        hex::encode(&Sha256::digest(text.as_bytes())[..12])
    }

    /// The sync is meant to run here: scheduled, or given a bind DN or an export file (settings
    /// without defaults, so a bot-only deployment is not checked against a directory it lacks).
    pub fn in_use(&self) -> bool {
        self.enabled || self.ldap.bind_dn.is_some() || !matches!(self.source, SourceKind::Ldap)
    }

    pub fn role_id(&self, shortname: &str) -> Option<i64> {
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
        let mut seen = std::collections::BTreeSet::new();
        attrs.retain(|a| seen.insert(a.to_ascii_lowercase()));
        attrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::filter::Filter;
    use crate::sync::source::Entry;

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

    fn problems(pairs: &[(&str, &str)]) -> Vec<String> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut src = Source::from_map(map);
        let _ = SyncSettings::load(&mut src);
        src.take_problems()
    }

    #[test]
    fn a_bind_password_over_clear_ldap_to_another_host_is_refused_unless_allowed() {
        let bind = [
            ("LDAP_BIND_DN", "cn=sync,dc=ent"),
            ("LDAP_BIND_PASSWORD", "pw-very-secret"),
        ];
        let with = |url: &str, extra: &[(&str, &str)]| {
            let mut pairs = vec![("LDAP_URL", url)];
            pairs.extend_from_slice(&bind);
            pairs.extend_from_slice(extra);
            problems(&pairs)
        };
        let refused = with("ldap://ldap.example.org:389", &[]).join("\n");
        assert!(
            refused.contains("LDAP_URL")
                && refused.contains("clear text")
                && refused.contains("LDAP_ALLOW_INSECURE=true"),
            "{refused}"
        );
        assert!(!refused.contains("pw-very-secret"), "{refused}");
        for (url, extra) in [
            ("ldaps://ldap.example.org", &[][..]),
            ("ldap://ldap.example.org", &[("LDAP_STARTTLS", "true")][..]),
            (
                "ldap://ldap.example.org",
                &[("LDAP_ALLOW_INSECURE", "true")][..],
            ),
            ("ldap://127.0.0.1:3389", &[][..]),
            ("ldap://localhost", &[][..]),
            ("ldap://[::1]:389", &[][..]),
            // An export file is read instead: the password never travels.
            (
                "ldap://ldap.example.org",
                &[("SYNC_SOURCE", "csv"), ("SYNC_SOURCE_FILE", "p.csv")][..],
            ),
        ] {
            assert!(
                with(url, extra).is_empty(),
                "{url} {extra:?}: {:?}",
                with(url, extra)
            );
        }
        // Anonymous bind: nothing secret travels.
        assert!(problems(&[("LDAP_URL", "ldap://ldap.example.org")]).is_empty());
    }
}
