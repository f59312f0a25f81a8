//! core_role_assign_roles / core_role_unassign_roles: a role in a context, independent of enrolment.
//! Moodle has no web service that lists role ids by shortname: the ids come from settings.

use super::{Form, MoodleClient, MoodleError};
use crate::ids::{MoodleRoleId, MoodleUserId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContextLevel {
    Course,
    Coursecat,
    /// A user's own context (instance id = that user's Moodle id): where Moodle's "parent"
    /// role pattern assigns a parent over a child.
    User,
}

impl ContextLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            ContextLevel::Course => "course",
            ContextLevel::Coursecat => "coursecat",
            ContextLevel::User => "user",
        }
    }
}

/// `course`, `coursecat` (also spelt `category`) or `user`; anything else is refused, never guessed.
impl std::str::FromStr for ContextLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "course" => Ok(ContextLevel::Course),
            "coursecat" | "category" => Ok(ContextLevel::Coursecat),
            "user" => Ok(ContextLevel::User),
            other => Err(format!(
                "{other:?}: context level is course or coursecat (user for parent links)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Assignment {
    pub roleid: MoodleRoleId,
    pub userid: MoodleUserId,
    pub level: ContextLevel,
    pub instanceid: i64,
}

pub const ASSIGN_FIELDS: usize = 4;

fn form_of(prefix: &str, items: &[Assignment]) -> Form {
    let mut form = Form::new();
    for (i, a) in items.iter().enumerate() {
        form.push(format!("{prefix}[{i}][roleid]"), a.roleid);
        form.push(format!("{prefix}[{i}][userid]"), a.userid);
        form.push(format!("{prefix}[{i}][contextlevel]"), a.level.as_str());
        form.push(format!("{prefix}[{i}][instanceid]"), a.instanceid);
    }
    form
}

/// All or nothing: one non-assignable role or unknown context fails the whole call.
pub async fn assign(client: &MoodleClient, items: &[Assignment]) -> Result<(), MoodleError> {
    let _: serde_json::Value = client
        .call("core_role_assign_roles", &form_of("assignments", items))
        .await?;
    Ok(())
}

/// Unassigning a role the user does not hold is a silent no-op.
pub async fn unassign(client: &MoodleClient, items: &[Assignment]) -> Result<(), MoodleError> {
    let _: serde_json::Value = client
        .call("core_role_unassign_roles", &form_of("unassignments", items))
        .await?;
    Ok(())
}
