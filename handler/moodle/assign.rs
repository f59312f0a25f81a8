//! Assignments of courses and their submissions.

use super::{Form, MoodleClient, MoodleError};
use crate::ids::{MoodleAssignmentId, MoodleCourseId, MoodleUserId};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Warning {
    #[serde(default)]
    pub item: Option<String>,
    #[serde(default)]
    pub itemid: Option<i64>,
    #[serde(default)]
    pub warningcode: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Assignment {
    pub id: MoodleAssignmentId,
    pub cmid: i64,
    pub course: MoodleCourseId,
    pub name: String,
    #[serde(default)]
    pub duedate: i64,
    #[serde(default)]
    pub nosubmissions: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CourseAssignments {
    pub id: MoodleCourseId,
    #[serde(default)]
    pub fullname: String,
    #[serde(default)]
    pub shortname: String,
    #[serde(default)]
    pub assignments: Vec<Assignment>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AssignmentsResult {
    #[serde(default)]
    pub courses: Vec<CourseAssignments>,
    #[serde(default)]
    pub warnings: Vec<Warning>,
}

/// `mod_assign_get_assignments` for the given courses. `includenotenrolledcourses=1` because the
/// service account is not enrolled (without it Moodle answers only warnings).
pub async fn assignments(
    client: &MoodleClient,
    courses: &[MoodleCourseId],
) -> Result<AssignmentsResult, MoodleError> {
    if courses.is_empty() {
        return Ok(AssignmentsResult {
            courses: Vec::new(),
            warnings: Vec::new(),
        });
    }
    let mut form = Form::new();
    for (i, c) in courses.iter().enumerate() {
        form.push(format!("courseids[{i}]"), c);
    }
    form.push("includenotenrolledcourses", 1);
    client.call("mod_assign_get_assignments", &form).await
}

#[derive(Debug, Clone, Deserialize)]
pub struct Submission {
    pub userid: MoodleUserId,
    #[serde(default)]
    pub status: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AssignmentSubmissions {
    pub assignmentid: MoodleAssignmentId,
    #[serde(default)]
    pub submissions: Vec<Submission>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SubmissionsResult {
    #[serde(default)]
    pub assignments: Vec<AssignmentSubmissions>,
    #[serde(default)]
    pub warnings: Vec<Warning>,
}

/// `mod_assign_get_submissions` (latest attempt of each user; status `new`, `draft`, `submitted`, `reopened`).
pub async fn submissions(
    client: &MoodleClient,
    assignment: MoodleAssignmentId,
) -> Result<SubmissionsResult, MoodleError> {
    client
        .call(
            "mod_assign_get_submissions",
            &Form::new().field("assignmentids[0]", assignment),
        )
        .await
}
