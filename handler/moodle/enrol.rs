//! enrol_manual_* and core_enrol_* functions (course membership; the Teams part uses them too).

use super::{Form, MoodleClient, MoodleError};
use crate::ids::{MoodleCourseId, MoodleRoleId, MoodleUserId};

#[derive(Debug, Clone, PartialEq)]
pub struct Enrolment {
    pub roleid: MoodleRoleId,
    pub userid: MoodleUserId,
    pub courseid: MoodleCourseId,
}

/// All or nothing (`wsusercannotassign` on one item rolls back the rest); answers `null`.
pub async fn enrol(client: &MoodleClient, items: &[Enrolment]) -> Result<(), MoodleError> {
    let mut form = Form::new();
    for (i, e) in items.iter().enumerate() {
        form.push(format!("enrolments[{i}][roleid]"), e.roleid);
        form.push(format!("enrolments[{i}][userid]"), e.userid);
        form.push(format!("enrolments[{i}][courseid]"), e.courseid);
    }
    let _: serde_json::Value = client.call("enrol_manual_enrol_users", &form).await?;
    Ok(())
}

/// Unenrolling a user who is not enrolled answers `null` too.
pub async fn unenrol(
    client: &MoodleClient,
    items: &[(MoodleUserId, MoodleCourseId)],
) -> Result<(), MoodleError> {
    let mut form = Form::new();
    for (i, (u, c)) in items.iter().enumerate() {
        form.push(format!("enrolments[{i}][userid]"), u);
        form.push(format!("enrolments[{i}][courseid]"), c);
    }
    let _: serde_json::Value = client.call("enrol_manual_unenrol_users", &form).await?;
    Ok(())
}
