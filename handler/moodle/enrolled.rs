//! Who is enrolled in a course, with roles (`core_enrol_get_enrolled_users`): the bot checks that
//! a user teaches the course and lists its students. One type for every caller.

use super::{Form, MoodleClient, MoodleError};
use crate::ids::{MoodleCourseId, MoodleRoleId, MoodleUserId};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct EnrolledRole {
    #[serde(default)]
    pub roleid: Option<MoodleRoleId>,
    #[serde(default)]
    pub shortname: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EnrolledUser {
    pub id: MoodleUserId,
    #[serde(default)]
    pub fullname: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub idnumber: String,
    #[serde(default)]
    pub roles: Vec<EnrolledRole>,
}

impl EnrolledUser {
    pub fn has_role(&self, names: &[&str]) -> bool {
        self.roles
            .iter()
            .any(|r| names.contains(&r.shortname.as_str()))
    }
    pub fn is_teacher(&self) -> bool {
        self.has_role(&["editingteacher", "teacher"])
    }
    pub fn is_student(&self) -> bool {
        self.has_role(&["student"])
    }
}

/// `core_enrol_get_enrolled_users` limited to the fields the bridge uses, active enrolments only.
pub async fn enrolled_users(
    client: &MoodleClient,
    course: MoodleCourseId,
) -> Result<Vec<EnrolledUser>, MoodleError> {
    let form = Form::new()
        .field("courseid", course)
        .field("options[0][name]", "userfields")
        .field("options[0][value]", "id,fullname,username,idnumber,roles")
        .field("options[1][name]", "onlyactive")
        .field("options[1][value]", 1);
    client.call("core_enrol_get_enrolled_users", &form).await
}
