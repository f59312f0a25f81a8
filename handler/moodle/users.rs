//! core_user_* functions. Lookups only ever use the fixed fields `username` / `idnumber` / `id` / `email`
//! (`core_user_get_users` with an unknown criteria key returns EVERY user, so it is not used here).

use super::{Form, MoodleClient, MoodleError};
use crate::ids::MoodleUserId;
use serde::{Deserialize, Serialize};

/// A user as `core_user_get_users_by_field` returns it (optional fields are omitted when empty).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct MoodleUser {
    pub id: MoodleUserId,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub firstname: String,
    #[serde(default)]
    pub lastname: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub idnumber: String,
    #[serde(default)]
    pub institution: String,
    #[serde(default)]
    pub department: String,
    #[serde(default)]
    pub auth: String,
    #[serde(default)]
    pub suspended: bool,
    #[serde(default)]
    pub customfields: Vec<CustomFieldValue>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct CustomFieldValue {
    #[serde(default)]
    pub shortname: String,
    #[serde(default)]
    pub value: String,
}

/// Fields the sync writes. Empty optional fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserFields {
    pub username: String,
    pub firstname: String,
    pub lastname: String,
    pub email: String,
    pub idnumber: String,
    pub institution: String,
    pub department: String,
    pub auth: String,
    /// profile field shortname → value
    pub custom: Vec<(String, String)>,
}

impl UserFields {
    fn push_common(&self, out: &mut Vec<(String, String)>, all: bool) {
        for (k, v) in [
            ("username", &self.username),
            ("firstname", &self.firstname),
            ("lastname", &self.lastname),
            ("email", &self.email),
            ("idnumber", &self.idnumber),
            ("institution", &self.institution),
            ("department", &self.department),
            ("auth", &self.auth),
        ] {
            if all || !v.is_empty() {
                out.push((k.to_string(), v.clone()));
            }
        }
        for (i, (name, value)) in self.custom.iter().enumerate() {
            out.push((format!("customfields][{i}][type"), name.clone()));
            out.push((format!("customfields][{i}][value"), value.clone()));
        }
    }

    /// Form fields of one `core_user_create_users` item. `createpassword=1` makes Moodle e-mail
    /// a temporary password and force a change at first login, whatever the auth plugin, so it is
    /// only sent for an internal auth (`manual`…) when `password_mail` allows it. An internal
    /// account without that mail gets a random password nobody knows (Moodle requires one; the
    /// person uses "forgotten password" or an admin sets it); SSO accounts get none.
    pub fn create_item(&self, password_mail: bool) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(12);
        self.push_common(&mut out, false);
        if is_internal_auth(&self.auth) {
            if password_mail {
                out.push(("createpassword".into(), "1".into()));
            } else {
                out.push(("password".into(), unknown_password()));
            }
        }
        out
    }

    /// Compare with what Moodle holds: the names of the fields that differ.
    pub fn diff(&self, current: &MoodleUser) -> Vec<&'static str> {
        let mut d = Vec::new();
        let pairs: [(&'static str, &str, &str); 8] = [
            ("username", &self.username, &current.username),
            ("firstname", &self.firstname, &current.firstname),
            ("lastname", &self.lastname, &current.lastname),
            ("email", &self.email, &current.email),
            ("idnumber", &self.idnumber, &current.idnumber),
            ("institution", &self.institution, &current.institution),
            ("department", &self.department, &current.department),
            ("auth", &self.auth, &current.auth),
        ];
        for (name, want, have) in pairs {
            if want != have {
                d.push(name);
            }
        }
        for (name, value) in &self.custom {
            let have = current
                .customfields
                .iter()
                .find(|c| &c.shortname == name)
                .map(|c| c.value.as_str());
            if have.unwrap_or("") != value {
                d.push("customfields");
                break;
            }
        }
        if current.suspended {
            d.push("suspended");
        }
        d
    }

    /// Same comparison against the values last written (stored beside the mapping).
    pub fn diff_fields(&self, old: &UserFields) -> Vec<&'static str> {
        let mut d = Vec::new();
        let pairs: [(&'static str, &str, &str); 8] = [
            ("username", &self.username, &old.username),
            ("firstname", &self.firstname, &old.firstname),
            ("lastname", &self.lastname, &old.lastname),
            ("email", &self.email, &old.email),
            ("idnumber", &self.idnumber, &old.idnumber),
            ("institution", &self.institution, &old.institution),
            ("department", &self.department, &old.department),
            ("auth", &self.auth, &old.auth),
        ];
        for (name, want, have) in pairs {
            if want != have {
                d.push(name);
            }
        }
        if self.custom != old.custom {
            d.push("customfields");
        }
        d
    }

    /// Form fields of one `core_user_update_users` item holding only `changed` fields.
    pub fn update_item(&self, id: MoodleUserId, changed: &[&str]) -> Vec<(String, String)> {
        let mut all = Vec::new();
        self.push_common(&mut all, true);
        let mut out = vec![("id".to_string(), id.to_string())];
        for (k, v) in all {
            let base = k.split(']').next().unwrap_or(&k);
            if changed.contains(&base) {
                out.push((k, v));
            }
        }
        if changed.contains(&"suspended") {
            out.push(("suspended".into(), "0".into()));
        }
        out
    }
}

/// Width of Moodle's `user` columns (lib/db/install.xml), in characters: PostgreSQL and MySQL
/// `varchar(n)` count characters, not bytes, so `Léa` is 3. A longer value makes Moodle fail the
/// whole create batch with `dmlwriteexception`.
pub fn column_chars(field: &str) -> Option<usize> {
    match field {
        "username" | "firstname" | "lastname" | "email" => Some(100),
        "idnumber" | "institution" | "department" => Some(255),
        "auth" => Some(20),
        _ => None,
    }
}

/// `value` cut to `max` characters (never inside a character), trailing spaces dropped.
pub fn cut_chars(value: &str, max: usize) -> Option<String> {
    if value.chars().count() <= max {
        return None;
    }
    Some(
        value
            .chars()
            .take(max)
            .collect::<String>()
            .trim_end()
            .to_string(),
    )
}

/// Auth plugins whose passwords live in Moodle (`is_internal()` in Moodle core): a created
/// account must come with a password or `createpassword`.
pub fn is_internal_auth(auth: &str) -> bool {
    matches!(auth, "manual" | "email" | "nologin" | "webservice")
}

/// A random password meeting Moodle's default policy (upper, lower, digit, symbol, ≥ 8), never
/// stored or shown: the account is usable only once someone sets a known password.
fn unknown_password() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("Aa1!{}", Alphanumeric.sample_string(&mut rand::rng(), 28))
}

/// A per-item problem of `core_user_update_users` (the other items were applied).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Warning {
    #[serde(default)]
    pub item: Option<String>,
    #[serde(default)]
    pub itemid: Option<i64>,
    #[serde(default)]
    pub warningcode: String,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WarningsOnly {
    #[serde(default)]
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CreatedUser {
    pub id: MoodleUserId,
    pub username: String,
}

/// Which fixed field a lookup uses; never built from input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserField {
    Id,
    Username,
    Idnumber,
    /// The Entra sync matches existing accounts by e-mail too.
    Email,
}

impl UserField {
    fn as_str(self) -> &'static str {
        match self {
            UserField::Id => "id",
            UserField::Username => "username",
            UserField::Idnumber => "idnumber",
            UserField::Email => "email",
        }
    }
}

fn push_item(form: &mut Form, prefix: &str, index: usize, item: &[(String, String)]) {
    for (k, v) in item {
        form.push(format!("{prefix}[{index}][{k}]"), v);
    }
}

/// `core_user_get_users_by_field`: unknown values are simply absent; order is the database's.
pub async fn get_by_field(
    client: &MoodleClient,
    field: UserField,
    values: &[String],
) -> Result<Vec<MoodleUser>, MoodleError> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let mut form = Form::new().field("field", field.as_str());
    for (i, v) in values.iter().enumerate() {
        form.push(format!("values[{i}]"), v);
    }
    client.call("core_user_get_users_by_field", &form).await
}

/// `core_user_create_users`: all or nothing (Moodle rolls the batch back on one bad item).
pub async fn create(
    client: &MoodleClient,
    users: &[Vec<(String, String)>],
) -> Result<Vec<CreatedUser>, MoodleError> {
    let mut form = Form::new();
    for (i, u) in users.iter().enumerate() {
        push_item(&mut form, "users", i, u);
    }
    client.call("core_user_create_users", &form).await
}

/// `core_user_update_users`: good items are applied, bad ones come back as warnings.
pub async fn update(
    client: &MoodleClient,
    users: &[Vec<(String, String)>],
) -> Result<Vec<Warning>, MoodleError> {
    let mut form = Form::new();
    for (i, u) in users.iter().enumerate() {
        push_item(&mut form, "users", i, u);
    }
    let r: WarningsOnly = client.call("core_user_update_users", &form).await?;
    Ok(r.warnings)
}

/// Suspend (not delete) users: `suspended=1` through update_users.
pub async fn suspend(
    client: &MoodleClient,
    ids: &[MoodleUserId],
) -> Result<Vec<Warning>, MoodleError> {
    let items: Vec<Vec<(String, String)>> = ids
        .iter()
        .map(|id| {
            vec![
                ("id".to_string(), id.to_string()),
                ("suspended".to_string(), "1".to_string()),
            ]
        })
        .collect();
    update(client, &items).await
}

/// `core_user_delete_users`: all or nothing; answers `null`.
pub async fn delete(client: &MoodleClient, ids: &[MoodleUserId]) -> Result<(), MoodleError> {
    let mut form = Form::new();
    for (i, id) in ids.iter().enumerate() {
        form.push(format!("userids[{i}]"), id);
    }
    let _: serde_json::Value = client.call("core_user_delete_users", &form).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(auth: &str) -> UserFields {
        UserFields {
            username: "lea.martin".into(),
            firstname: "Léa".into(),
            lastname: "Martin".into(),
            email: "lea.martin@ent.example".into(),
            auth: auth.into(),
            ..Default::default()
        }
    }

    fn has(item: &[(String, String)], key: &str) -> bool {
        item.iter().any(|(k, _)| k == key)
    }

    #[test]
    fn only_internal_accounts_get_a_password_and_only_on_request_a_mail() {
        for auth in ["cas", "ldap", "shibboleth"] {
            for mail in [false, true] {
                let item = fields(auth).create_item(mail);
                assert!(
                    !has(&item, "createpassword") && !has(&item, "password"),
                    "{auth}"
                );
            }
        }
        let quiet = fields("manual").create_item(false);
        assert!(!has(&quiet, "createpassword"));
        let pw = &quiet.iter().find(|(k, _)| k == "password").unwrap().1;
        assert!(pw.len() >= 32 && pw != &fields("manual").create_item(false)[4].1);
        let mailed = fields("manual").create_item(true);
        assert!(has(&mailed, "createpassword") && !has(&mailed, "password"));
    }
}
