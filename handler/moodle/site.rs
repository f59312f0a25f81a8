//! What the bot reads about a user: find them (by e-mail or username, never a field taken from
//! input) and list the courses they are enrolled in.

use super::{Form, MoodleClient, MoodleError};
use crate::ids::{MoodleCourseId, MoodleUserId};
use serde::Deserialize;

/// The only fields the bot looks users up by (an unknown field is a `codingerror`).
#[derive(Debug, Clone, Copy)]
pub enum UserLookupField {
    Email,
    Username,
}

impl UserLookupField {
    fn as_str(self) -> &'static str {
        match self {
            UserLookupField::Email => "email",
            UserLookupField::Username => "username",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct FoundUser {
    pub id: MoodleUserId,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub fullname: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub suspended: Option<bool>,
}

/// `core_user_get_users_by_field`: values that match nothing are simply absent.
pub async fn find_users(
    client: &MoodleClient,
    field: UserLookupField,
    values: &[&str],
) -> Result<Vec<FoundUser>, MoodleError> {
    let mut form = Form::new().field("field", field.as_str());
    for (i, v) in values.iter().enumerate() {
        form.push(format!("values[{i}]"), v);
    }
    client.call("core_user_get_users_by_field", &form).await
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserCourse {
    pub id: MoodleCourseId,
    #[serde(default)]
    pub shortname: String,
    #[serde(default)]
    pub fullname: String,
    #[serde(default)]
    pub displayname: Option<String>,
    #[serde(default)]
    pub visible: Option<i64>,
    #[serde(default)]
    pub hidden: Option<bool>,
    #[serde(default)]
    pub enddate: Option<i64>,
}

impl UserCourse {
    pub fn title(&self) -> &str {
        self.displayname
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.fullname)
    }
}

/// `core_enrol_get_users_courses`: an unknown user gives `[]`.
pub async fn user_courses(
    client: &MoodleClient,
    user: MoodleUserId,
) -> Result<Vec<UserCourse>, MoodleError> {
    client
        .call(
            "core_enrol_get_users_courses",
            &Form::new().field("userid", user),
        )
        .await
}

/// The parts of `core_webservice_get_site_info` the sync needs: who the token's user is.
/// The call needs no capability (`success_nocap`).
#[derive(Debug, Clone, Deserialize)]
pub struct SiteInfo {
    pub userid: MoodleUserId,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub userissiteadmin: bool,
    #[serde(default)]
    pub siteid: Option<i64>,
}

/// `core_webservice_get_site_info`.
pub async fn site_info(client: &MoodleClient) -> Result<SiteInfo, MoodleError> {
    client
        .call("core_webservice_get_site_info", &Form::new())
        .await
}
