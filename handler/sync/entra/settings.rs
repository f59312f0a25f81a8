//! Entra → Moodle user settings (`ENTRA_*`). Read unconditionally so `handler settings` lists
//! them; the sync runs with `handler sync --entra` once Graph is configured, and in every run
//! that syncs users (SyncTimer, the admin page, `handler sync`) when `ENTRA_SYNC=true`.

use crate::config::Source;

/// When a mapped field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Only when the account is created.
    Create,
    /// Only on later updates (an existing account), not at creation.
    Update,
    Always,
}

/// A Moodle user field fed from Entra attributes (`mail|userPrincipalName`: the first present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMap {
    pub moodle: String,
    pub entra: Vec<String>,
    pub when: When,
}

/// Moodle fields a mapping may write (`profile_field_<shortname>` for custom profile fields).
const MOODLE_FIELDS: &[&str] = &[
    "firstname",
    "lastname",
    "email",
    "idnumber",
    "institution",
    "department",
];

/// Moodle fields an existing account can be matched on (lookups by fixed field only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchField {
    Username,
    Email,
    Idnumber,
}

impl MatchField {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchField::Username => "username",
            MatchField::Email => "email",
            MatchField::Idnumber => "idnumber",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "username" | "login" => Some(MatchField::Username),
            "email" | "mail" => Some(MatchField::Email),
            "idnumber" | "uid" | "key" => Some(MatchField::Idnumber),
            _ => None,
        }
    }
}

/// Which accounts the sync may create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateFilter {
    Everyone,
    /// Direct members of this Entra group (object id).
    Group(String),
    /// Users whose attribute equals the value (a trailing `*` matches a prefix).
    Attribute {
        name: String,
        value: String,
    },
}

#[derive(Debug, Clone)]
pub struct EntraSettings {
    /// Part of every run that syncs users (the timer's too), not only of `--entra`.
    pub scheduled: bool,
    pub create: bool,
    pub update: bool,
    /// Suspend accounts of users disabled or removed in Entra.
    pub suspend: bool,
    /// Re-enable accounts this sync suspended once the Entra user is enabled again.
    pub reenable: bool,
    /// Delete (instead of suspend) accounts of users permanently deleted in Entra.
    pub delete: bool,
    /// Entra attribute(s) giving the Moodle username (lower-cased).
    pub username: Vec<String>,
    /// Matching of existing Moodle accounts, in order: Moodle field ↔ Entra attribute(s).
    pub matching: Vec<(MatchField, Vec<String>)>,
    pub fields: Vec<FieldMap>,
    pub auth: String,
    pub create_filter: CreateFilter,
    /// ENT schools: the ENT sync owns the accounts; Entra users are only linked to the account
    /// whose Moodle field (fed by the ENT attribute) equals their Entra attribute.
    pub ent_link: Option<(MatchField, Vec<String>)>,
    /// Moodle users per lookup / create call.
    pub batch_size: usize,
    /// Copy Entra profile photos to Moodle user pictures (`ENTRA_SYNC_PHOTO`).
    pub photo: bool,
    /// Linked users' photos are re-checked (metadata only) once their last check is older than
    /// this (`ENTRA_PHOTO_RECHECK_HOURS`; 0 = every run): the delta round never reports photos.
    pub photo_recheck_hours: u64,
}

fn attrs(spec: &str) -> Vec<String> {
    spec.split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `field=attr[|attr…]` pairs, comma-separated.
fn match_pairs(src: &mut Source, name: &str, text: &str) -> Vec<(MatchField, Vec<String>)> {
    let mut out = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair
            .split_once('=')
            .and_then(|(f, a)| Some((MatchField::parse(f)?, attrs(a))))
        {
            Some((f, a)) if !a.is_empty() => out.push((f, a)),
            _ => src.problem(format!(
                "{name}: {pair:?} is not <username|email|idnumber>=<Entra attribute>"
            )),
        }
    }
    out
}

impl EntraSettings {
    pub fn load(src: &mut Source) -> Self {
        let scheduled = src.flag(
            "ENTRA_SYNC",
            false,
            "Entra → Moodle users in every run that syncs users (SyncTimer's shards, the admin page, handler sync); off: only handler sync --entra",
        );
        let create = src.flag(
            "ENTRA_SYNC_CREATE",
            true,
            "Entra → Moodle: create accounts for Entra users with none",
        );
        let update = src.flag(
            "ENTRA_SYNC_UPDATE",
            true,
            "Entra → Moodle: update mapped fields of linked accounts",
        );
        let suspend = src.flag(
            "ENTRA_SYNC_SUSPEND",
            true,
            "Entra → Moodle: suspend the account of a user disabled (accountEnabled=false) or removed in Entra",
        );
        let reenable = src.flag(
            "ENTRA_SYNC_REENABLE",
            true,
            "Entra → Moodle: re-enable an account this sync suspended once the Entra user is enabled again",
        );
        let delete = src.flag(
            "ENTRA_SYNC_DELETE",
            false,
            "Entra → Moodle: delete (not suspend) the account of a user permanently deleted in Entra",
        );
        let username = attrs(&src.string(
            "ENTRA_USERNAME_ATTRIBUTE",
            "userPrincipalName",
            "Entra attribute(s) giving the Moodle username of a created account (a|b: first present; lower-cased)",
        ));
        let match_text = src.string(
            "ENTRA_MATCH",
            "username=userPrincipalName,email=mail",
            "how existing Moodle accounts are found, in order: <username|email|idnumber>=<Entra attribute, e.g. userPrincipalName, mail, employeeId, onPremisesSamAccountName>, comma-separated",
        );
        let matching = match_pairs(src, "ENTRA_MATCH", &match_text);
        let map_text = src.string(
            "ENTRA_FIELD_MAP",
            "firstname=givenName:always,lastname=surname:always,email=mail|userPrincipalName:always,department=department:always",
            "Moodle field = Entra attribute(s) : create | update | always, comma-separated (fields: firstname, lastname, email, idnumber, institution, department, profile_field_<shortname>)",
        );
        let mut fields = Vec::new();
        for item in map_text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parsed = item.split_once('=').and_then(|(m, rest)| {
                let (a, when) = rest.rsplit_once(':').unwrap_or((rest, "always"));
                let when = match when.trim() {
                    "create" => When::Create,
                    "update" => When::Update,
                    "always" => When::Always,
                    _ => return None,
                };
                let m = m.trim().to_string();
                let known = MOODLE_FIELDS.contains(&m.as_str())
                    || m.strip_prefix("profile_field_")
                        .is_some_and(|s| !s.is_empty());
                (known && !attrs(a).is_empty()).then(|| FieldMap {
                    moodle: m,
                    entra: attrs(a),
                    when,
                })
            });
            match parsed {
                Some(f) => fields.push(f),
                None => src.problem(format!(
                    "ENTRA_FIELD_MAP: {item:?} is not <Moodle field>=<Entra attribute>[:create|update|always]"
                )),
            }
        }
        let auth = src.string(
            "ENTRA_AUTH",
            "oauth2",
            "Moodle authentication method of accounts the Entra sync creates (oauth2: sign-in with Microsoft)",
        );
        let filter_text = src.string(
            "ENTRA_CREATE_FILTER",
            "",
            "which Entra users get an account: empty = all, group:<object id> = direct members of that group, <attribute>=<value> (a trailing * matches a prefix)",
        );
        let create_filter = match filter_text.trim() {
            "" => CreateFilter::Everyone,
            t => match t.strip_prefix("group:") {
                Some(g) if !g.trim().is_empty() => CreateFilter::Group(g.trim().to_string()),
                Some(_) => {
                    src.problem("ENTRA_CREATE_FILTER: group: needs the group's object id");
                    CreateFilter::Everyone
                }
                None => match t.split_once('=') {
                    Some((n, v)) if !n.trim().is_empty() => CreateFilter::Attribute {
                        name: n.trim().to_string(),
                        value: v.trim().to_string(),
                    },
                    _ => {
                        src.problem(format!(
                            "ENTRA_CREATE_FILTER: {t:?} is not group:<id> or <attribute>=<value>"
                        ));
                        CreateFilter::Everyone
                    }
                },
            },
        };
        let link_text = src.string(
            "ENTRA_ENT_LINK",
            "",
            "ENT schools: <ENT side: mail | login | idnumber>=<Entra attribute> (e.g. mail=mail, login=onPremisesSamAccountName); the ENT sync owns the accounts, Entra users are only linked to them",
        );
        let ent_link = match link_text.trim() {
            "" => None,
            t => match_pairs(src, "ENTRA_ENT_LINK", t).into_iter().next(),
        };
        let batch_size = src.parse(
            "ENTRA_BATCH_SIZE",
            100usize,
            "Entra users per Moodle lookup / create call",
        );
        if batch_size == 0 {
            src.problem("ENTRA_BATCH_SIZE: at least 1");
        }
        let photo = src.flag(
            "ENTRA_SYNC_PHOTO",
            false,
            "Entra → Moodle: copy users' Entra profile photos to their Moodle pictures (new and newly linked users at once, the others every ENTRA_PHOTO_RECHECK_HOURS); needs core_user_update_picture, file uploads on the external service and moodle/user:editprofile",
        );
        let photo_recheck_hours = src.parse(
            "ENTRA_PHOTO_RECHECK_HOURS",
            168u64,
            "Entra → Moodle photos: re-check a linked user's photo (metadata only; downloaded when it changed) once the last check is this many hours old (0 = every run)",
        );
        if username.is_empty() {
            src.problem("ENTRA_USERNAME_ATTRIBUTE: at least one attribute");
        }
        EntraSettings {
            scheduled,
            create,
            update,
            suspend,
            reenable,
            delete,
            username,
            matching,
            fields,
            auth,
            create_filter,
            ent_link,
            batch_size: batch_size.max(1),
            photo,
            photo_recheck_hours,
        }
    }

    /// The `$select` of the delta query: every attribute a setting names, plus id and accountEnabled.
    pub fn select(&self) -> Vec<String> {
        let mut out: Vec<String> = vec!["id".into(), "accountEnabled".into()];
        let mut add = |a: &String| {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(a)) {
                out.push(a.clone());
            }
        };
        self.username.iter().for_each(&mut add);
        self.matching.iter().flat_map(|(_, a)| a).for_each(&mut add);
        self.fields.iter().flat_map(|f| &f.entra).for_each(&mut add);
        self.ent_link.iter().flat_map(|(_, a)| a).for_each(&mut add);
        if let CreateFilter::Attribute { name, .. } = &self.create_filter {
            add(name);
        }
        out
    }

    /// Hash of what decides the written fields: a change re-examines every linked account.
    pub fn config_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let text = format!(
            "{:?}|{:?}|{:?}|{}|{:?}",
            self.username, self.matching, self.fields, self.auth, self.ent_link
        );
        hex::encode(&Sha256::digest(text.as_bytes())[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> (EntraSettings, Vec<String>) {
        let env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut src = Source::from_map(env);
        let s = EntraSettings::load(&mut src);
        (s, src.take_problems())
    }

    #[test]
    fn defaults_and_parsing() {
        let (s, p) = load(&[]);
        assert!(p.is_empty(), "{p:?}");
        assert!(
            s.create && s.update && s.suspend && s.reenable && !s.delete,
            "delete is off by default"
        );
        assert_eq!(
            s.matching[0],
            (MatchField::Username, vec!["userPrincipalName".to_string()])
        );
        assert!(s.select().contains(&"mail".to_string()));
        assert!(!s.photo, "photos are off by default");
        assert_eq!(s.photo_recheck_hours, 168);
        let (s, p) = load(&[
            ("ENTRA_SYNC_PHOTO", "true"),
            ("ENTRA_PHOTO_RECHECK_HOURS", "0"),
        ]);
        assert!(
            p.is_empty() && s.photo && s.photo_recheck_hours == 0,
            "{p:?}"
        );
        let (_, p) = load(&[("ENTRA_PHOTO_RECHECK_HOURS", "-1")]);
        assert_eq!(p.len(), 1, "{p:?}");
        let (s, p) = load(&[
            (
                "ENTRA_MATCH",
                "idnumber=employeeId,username=onPremisesSamAccountName",
            ),
            (
                "ENTRA_FIELD_MAP",
                "idnumber=employeeId:create,profile_field_classe=department:update",
            ),
            ("ENTRA_CREATE_FILTER", "group:abc"),
            ("ENTRA_ENT_LINK", "login=onPremisesSamAccountName"),
        ]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(s.fields[1].when, When::Update);
        assert_eq!(s.create_filter, CreateFilter::Group("abc".into()));
        assert_eq!(s.ent_link.unwrap().0, MatchField::Username);
        let (_, p) = load(&[
            ("ENTRA_FIELD_MAP", "password=x"),
            ("ENTRA_MATCH", "phone=mobile"),
        ]);
        assert_eq!(p.len(), 2, "{p:?}");
    }
}
