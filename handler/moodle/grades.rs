//! A user's grades: course totals (overview report) and one course's items (user report).

use super::{Form, MoodleClient, MoodleError};
use crate::ids::{MoodleCourseId, MoodleUserId};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct CourseGrade {
    pub courseid: MoodleCourseId,
    /// Formatted by Moodle: "87.50", or "-" when nothing is graded.
    #[serde(default)]
    pub grade: Option<String>,
    /// A string too ("87.50000"), or null.
    #[serde(default)]
    pub rawgrade: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CourseGrades {
    #[serde(default)]
    pub grades: Vec<CourseGrade>,
}

/// `gradereport_overview_get_course_grades` for one user.
pub async fn course_grades(
    client: &MoodleClient,
    user: MoodleUserId,
) -> Result<CourseGrades, MoodleError> {
    client
        .call(
            "gradereport_overview_get_course_grades",
            &Form::new().field("userid", user),
        )
        .await
}

#[derive(Debug, Clone, Deserialize)]
pub struct GradeItem {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default)]
    pub itemname: Option<String>,
    #[serde(default)]
    pub itemtype: String,
    #[serde(default)]
    pub cmid: Option<i64>,
    #[serde(default)]
    pub graderaw: Option<f64>,
    #[serde(default)]
    pub gradeformatted: Option<String>,
    #[serde(default)]
    pub grademax: Option<f64>,
    #[serde(default)]
    pub gradeishidden: Option<bool>,
    /// Unix time the grade was given; null while ungraded.
    #[serde(default)]
    pub gradedategraded: Option<i64>,
    /// Hidden until a date that has not come yet.
    #[serde(default)]
    pub gradehiddenbydate: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserGrades {
    pub courseid: MoodleCourseId,
    pub userid: MoodleUserId,
    #[serde(default)]
    pub gradeitems: Vec<GradeItem>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GradeItems {
    #[serde(default)]
    pub usergrades: Vec<UserGrades>,
}

/// `gradereport_user_get_grade_items` for one user in one course.
pub async fn grade_items(
    client: &MoodleClient,
    course: MoodleCourseId,
    user: MoodleUserId,
) -> Result<GradeItems, MoodleError> {
    let form = Form::new().field("courseid", course).field("userid", user);
    client.call("gradereport_user_get_grade_items", &form).await
}

/// `gradereport_user_get_grade_items` for every user of one course (no `userid`).
pub async fn course_grade_items(
    client: &MoodleClient,
    course: MoodleCourseId,
) -> Result<GradeItems, MoodleError> {
    let form = Form::new().field("courseid", course);
    client.call("gradereport_user_get_grade_items", &form).await
}
