//! What one Entra user means for Moodle, without any I/O: from the user's attributes, the link
//! row the sync keeps (`mappings`, partition `entra-user`) and what a Moodle lookup found, the
//! decision (create / link / update / suspend / re-enable / skip) and why.

use super::settings::{CreateFilter, EntraSettings, MatchField, When};
use crate::ids::MoodleUserId;
use crate::moodle::users::MoodleUser;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub type EntraUser = Map<String, Value>;

/// The first non-empty value among `names` (strings as they are, numbers and booleans as text).
pub fn attr(user: &EntraUser, names: &[String]) -> Option<String> {
    names.iter().find_map(|n| {
        let v = user
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v)?;
        let text = match v {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return None,
        };
        (!text.is_empty()).then_some(text)
    })
}

pub fn id(user: &EntraUser) -> String {
    user.get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// `accountEnabled` absent (never set, or not selected) counts as enabled.
pub fn enabled(user: &EntraUser) -> bool {
    user.get("accountEnabled").and_then(Value::as_bool) != Some(false)
}

/// The link row of one Entra user.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRow {
    pub moodle_id: MoodleUserId,
    /// Mapped field values as last written (or found), for the next comparison.
    pub fields: BTreeMap<String, String>,
    /// This sync suspended the account (only those are re-enabled).
    pub suspended: bool,
    /// Settings hash the fields were computed with.
    pub config: String,
}

/// What a Moodle lookup found for a user without a link row.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    Nothing,
    One(MoodleUser),
    /// Several accounts share the value: never guess.
    Several {
        field: MatchField,
        value: String,
        count: usize,
    },
    /// Moodle's own account (admin, the web-service user): never taken over.
    Protected(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    /// The account the user has or will be linked to.
    pub moodle_id: Option<MoodleUserId>,
    /// Write the link row (new link, changed fields, or a config change).
    pub remember: bool,
    /// Linked now to an account that already existed (no link row before): its photo is
    /// looked at this run, like a created account's.
    pub new_link: bool,
    /// Fields of a new account (`UserFields` form items), when one is created.
    pub create: Option<Vec<(String, String)>>,
    pub update: Vec<(String, String)>,
    pub suspend: bool,
    pub reenable: bool,
    pub skip: Option<String>,
    /// The skip may end while the Entra user does not change (an ENT account not made yet,
    /// update-only): the user waits in the retry set under this reason class.
    pub waiting: Option<&'static str>,
    /// The mapped fields to remember.
    pub fields: BTreeMap<String, String>,
    pub trace: Option<String>,
}

/// Mapped values of `user` for fields written at `when` (Always included).
pub fn mapped(s: &EntraSettings, user: &EntraUser, when: When) -> BTreeMap<String, String> {
    s.fields
        .iter()
        .filter(|f| f.when == when || f.when == When::Always)
        .filter_map(|f| Some((f.moodle.clone(), attr(user, &f.entra)?)))
        .collect()
}

fn current(mu: &MoodleUser, field: &str) -> String {
    match field {
        "firstname" => mu.firstname.clone(),
        "lastname" => mu.lastname.clone(),
        "email" => mu.email.clone(),
        "idnumber" => mu.idnumber.clone(),
        "institution" => mu.institution.clone(),
        "department" => mu.department.clone(),
        other => other
            .strip_prefix("profile_field_")
            .and_then(|short| mu.customfields.iter().find(|c| c.shortname == short))
            .map(|c| c.value.clone())
            .unwrap_or_default(),
    }
}

/// Does the creation filter admit `user`? `group` answers group membership (loaded by the caller).
pub fn admitted(s: &EntraSettings, user: &EntraUser, in_group: impl Fn(&str) -> bool) -> bool {
    match &s.create_filter {
        CreateFilter::Everyone => true,
        CreateFilter::Group(_) => in_group(&id(user)),
        CreateFilter::Attribute { name, value } => {
            let v = attr(user, std::slice::from_ref(name)).unwrap_or_default();
            match value.strip_suffix('*') {
                Some(prefix) => v.to_lowercase().starts_with(&prefix.to_lowercase()),
                None => v.eq_ignore_ascii_case(value),
            }
        }
    }
}

/// The decision for a user present in Entra.
pub fn present(
    s: &EntraSettings,
    user: &EntraUser,
    row: Option<&LinkRow>,
    found: &Found,
    may_create: bool,
) -> Decision {
    let key = id(user);
    let on = enabled(user);
    let want = mapped(s, user, When::Update);
    let config = s.config_hash();
    let mut d = Decision {
        fields: want.clone(),
        ..Decision::default()
    };
    if s.ent_link.is_some() {
        // The ENT sync owns the accounts: only the link is made here.
        match (row, found) {
            (Some(r), _) => d.moodle_id = Some(r.moodle_id),
            (None, Found::One(mu)) => {
                d.moodle_id = Some(mu.id);
                d.remember = true;
                d.new_link = !mu.suspended;
                d.trace = Some(format!(
                    "{key}: linked to the ENT account {:?}",
                    mu.username
                ));
            }
            (None, other) => {
                if matches!(other, Found::Nothing) {
                    d.waiting = Some("no ENT account yet");
                }
                d.skip = Some(not_found(other, "no ENT account to link to"))
            }
        }
        return d;
    }
    match (row, found) {
        (Some(r), _) => {
            d.moodle_id = Some(r.moodle_id);
            if s.update {
                let stale = r.config != config;
                d.update = want
                    .iter()
                    .filter(|(k, v)| stale || r.fields.get(*k) != Some(*v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
            }
            d.suspend = !on && !r.suspended && s.suspend;
            d.reenable = on && r.suspended && s.reenable;
            d.remember = !d.update.is_empty() || r.config != config;
        }
        (None, Found::One(mu)) => {
            d.moodle_id = Some(mu.id);
            d.remember = true;
            // Moodle sets no picture on a suspended account (core_user::require_active_user).
            d.new_link = on && !mu.suspended;
            if s.update {
                d.update = want
                    .iter()
                    .filter(|(k, v)| current(mu, k) != **v)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
            }
            d.suspend = !on && !mu.suspended && s.suspend;
            d.trace = Some(format!(
                "{key}: found in Moodle as {:?} (id {})",
                mu.username, mu.id
            ));
        }
        (None, Found::Nothing) if !on => {
            d.skip = Some("disabled in Entra: no account created".into())
        }
        (None, Found::Nothing) if !s.create => {
            d.skip = Some("no Moodle account and creation is off (ENTRA_SYNC_CREATE)".into())
        }
        (None, Found::Nothing) if !may_create => {
            d.skip = Some("no Moodle account; not admitted by ENTRA_CREATE_FILTER".into())
        }
        (None, Found::Nothing) => match new_account(s, user) {
            Ok(items) => {
                d.create = Some(items);
                d.remember = true;
            }
            Err(why) => d.skip = Some(why),
        },
        (None, other) => d.skip = Some(not_found(other, "")),
    }
    d
}

fn not_found(found: &Found, nothing: &str) -> String {
    match found {
        Found::Several {
            field,
            value,
            count,
        } => {
            format!(
                "{count} Moodle accounts share {} {value:?}: not linked",
                field.as_str()
            )
        }
        Found::Protected(label) => format!("matches Moodle's own account {label}: not linked"),
        _ => nothing.to_string(),
    }
}

/// The `core_user_create_users` item of a new account, or why it cannot be made.
fn new_account(s: &EntraSettings, user: &EntraUser) -> Result<Vec<(String, String)>, String> {
    let username = attr(user, &s.username)
        .map(|u| u.to_lowercase())
        .ok_or_else(|| format!("no {} in Entra: no username", s.username.join("|")))?;
    let fields = mapped(s, user, When::Create);
    let mut uf = crate::moodle::users::UserFields {
        username,
        auth: s.auth.clone(),
        ..Default::default()
    };
    for (k, v) in &fields {
        match k.as_str() {
            "firstname" => uf.firstname = v.clone(),
            "lastname" => uf.lastname = v.clone(),
            "email" => uf.email = v.clone(),
            "idnumber" => uf.idnumber = v.clone(),
            "institution" => uf.institution = v.clone(),
            "department" => uf.department = v.clone(),
            other => {
                if let Some(short) = other.strip_prefix("profile_field_") {
                    uf.custom.push((short.to_string(), v.clone()));
                }
            }
        }
    }
    for (field, value) in [
        ("firstname", &uf.firstname),
        ("lastname", &uf.lastname),
        ("email", &uf.email),
    ] {
        if value.is_empty() {
            return Err(format!(
                "Moodle needs a {field} and Entra gives none (ENTRA_FIELD_MAP): no account created"
            ));
        }
    }
    Ok(uf.create_item(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;
    use serde_json::json;

    fn settings(pairs: &[(&str, &str)]) -> EntraSettings {
        let env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EntraSettings::load(&mut Source::from_map(env))
    }

    fn user(v: Value) -> EntraUser {
        v.as_object().unwrap().clone()
    }

    fn claire() -> EntraUser {
        user(
            json!({"id": "U1", "userPrincipalName": "Claire.Martin@ecole.example", "mail": "claire.martin@ecole.example",
            "givenName": "Claire", "surname": "Martin", "accountEnabled": true, "department": "Maths", "employeeId": "T-0042"}),
        )
    }

    fn moodle_user(id: i64) -> MoodleUser {
        serde_json::from_value(
            json!({"id": id, "username": "cmartin", "firstname": "Claire", "lastname": "Martin",
            "email": "claire.martin@ecole.example", "department": "Old"}),
        )
        .unwrap()
    }

    #[test]
    fn new_users_are_created_with_the_create_and_always_fields() {
        let s = settings(&[("ENTRA_FIELD_MAP", "firstname=givenName,lastname=surname,email=mail,idnumber=employeeId:create,department=department:update")]);
        let d = present(&s, &claire(), None, &Found::Nothing, true);
        let items = d.create.expect("create");
        let get = |k: &str| items.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
        assert_eq!(get("username"), Some("claire.martin@ecole.example"));
        assert_eq!(
            get("idnumber"),
            Some("T-0042"),
            "create-only field at creation"
        );
        assert_eq!(get("department"), None, "update-only field not at creation");
        assert_eq!(get("auth"), Some("oauth2"));
        assert!(d.fields.contains_key("department") && !d.fields.contains_key("idnumber"));
    }

    #[test]
    fn each_switch_and_the_filter_hold_creation_back() {
        let s = settings(&[("ENTRA_SYNC_CREATE", "false")]);
        assert!(present(&s, &claire(), None, &Found::Nothing, true)
            .skip
            .is_some());
        let s = settings(&[("ENTRA_CREATE_FILTER", "department=Ma*")]);
        assert!(admitted(&s, &claire(), |_| false));
        let s = settings(&[("ENTRA_CREATE_FILTER", "department=Physique")]);
        assert!(!admitted(&s, &claire(), |_| true));
        assert!(present(&s, &claire(), None, &Found::Nothing, false)
            .skip
            .unwrap()
            .contains("ENTRA_CREATE_FILTER"));
        let mut disabled = claire();
        disabled.insert("accountEnabled".into(), json!(false));
        let d = present(&settings(&[]), &disabled, None, &Found::Nothing, true);
        assert!(
            d.create.is_none() && d.skip.is_some(),
            "a disabled user gets no account"
        );
        let mut no_mail = claire();
        no_mail.remove("mail");
        no_mail.remove("userPrincipalName");
        assert!(
            present(&settings(&[]), &no_mail, None, &Found::Nothing, true)
                .skip
                .is_some()
        );
    }

    #[test]
    fn a_found_account_is_linked_and_only_changed_fields_are_written() {
        let s = settings(&[]);
        let d = present(&s, &claire(), None, &Found::One(moodle_user(7)), true);
        assert_eq!(d.moodle_id.map(MoodleUserId::get), Some(7));
        assert!(d.remember && d.create.is_none());
        assert_eq!(
            d.update,
            vec![("department".to_string(), "Maths".to_string())]
        );
        let s = settings(&[("ENTRA_SYNC_UPDATE", "false")]);
        assert!(
            present(&s, &claire(), None, &Found::One(moodle_user(7)), true)
                .update
                .is_empty()
        );
        let d = present(
            &settings(&[]),
            &claire(),
            None,
            &Found::Several {
                field: MatchField::Email,
                value: "x".into(),
                count: 2,
            },
            true,
        );
        assert!(d.skip.unwrap().contains("2 Moodle accounts"));
        assert!(present(
            &settings(&[]),
            &claire(),
            None,
            &Found::Protected("admin".into()),
            true
        )
        .moodle_id
        .is_none());
    }

    #[test]
    fn a_linked_user_unchanged_needs_nothing_and_disable_suspends_then_reenables() {
        let s = settings(&[]);
        let row = LinkRow {
            moodle_id: MoodleUserId::new(7).unwrap(),
            fields: mapped(&s, &claire(), When::Update),
            suspended: false,
            config: s.config_hash(),
        };
        let d = present(&s, &claire(), Some(&row), &Found::Nothing, true);
        assert!(d.update.is_empty() && !d.remember && !d.suspend && !d.reenable);
        let mut off = claire();
        off.insert("accountEnabled".into(), json!(false));
        assert!(present(&s, &off, Some(&row), &Found::Nothing, true).suspend);
        let s_no = settings(&[("ENTRA_SYNC_SUSPEND", "false")]);
        assert!(!present(&s_no, &off, Some(&row), &Found::Nothing, true).suspend);
        let suspended = LinkRow {
            suspended: true,
            ..row.clone()
        };
        assert!(present(&s, &claire(), Some(&suspended), &Found::Nothing, true).reenable);
        let s_no = settings(&[("ENTRA_SYNC_REENABLE", "false")]);
        assert!(!present(&s_no, &claire(), Some(&suspended), &Found::Nothing, true).reenable);
    }

    #[test]
    fn ent_link_mode_only_links() {
        let s = settings(&[("ENTRA_ENT_LINK", "mail=mail")]);
        let d = present(&s, &claire(), None, &Found::One(moodle_user(9)), true);
        assert_eq!(d.moodle_id.map(MoodleUserId::get), Some(9));
        assert!(d.remember && d.update.is_empty() && d.create.is_none());
        let d = present(&s, &claire(), None, &Found::Nothing, true);
        assert!(d.create.is_none() && d.skip.is_some());
    }
}
