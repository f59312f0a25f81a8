//! core_user_* functions. Lookups only ever use the fixed fields `username` / `idnumber` / `id`
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

    /// Form fields of one `core_user_create_users` item. `createpassword=1`: Moodle makes a
    /// password for internal auth; SSO auths (cas, shibboleth…) ignore it.
    pub fn create_item(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(12);
        self.push_common(&mut out, false);
        out.push(("createpassword".into(), "1".into()));
        out
    }

    /// Number of form fields `create_item` produces (for batch sizing).
    pub fn create_field_count(&self) -> usize {
        self.create_item().len()
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
}

impl UserField {
    fn as_str(self) -> &'static str {
        match self {
            UserField::Id => "id",
            UserField::Username => "username",
            UserField::Idnumber => "idnumber",
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
