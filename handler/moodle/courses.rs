//! core_course_get_courses_by_field: find a course by a fixed field (idnumber, shortname, id).

use super::{Form, MoodleClient, MoodleError};
use crate::ids::{MoodleCategoryId, MoodleCourseId};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Course {
    pub id: MoodleCourseId,
    #[serde(default)]
    pub shortname: String,
    #[serde(default)]
    pub fullname: String,
    #[serde(default)]
    pub idnumber: String,
    #[serde(default)]
    pub categoryid: Option<MoodleCategoryId>,
}

#[derive(Debug, Clone, Deserialize)]
struct CoursesAnswer {
    #[serde(default)]
    courses: Vec<Course>,
}

#[derive(Debug, Clone, Copy)]
pub enum CourseField {
    Id,
    Idnumber,
    Shortname,
}

/// `{courses: [], warnings: []}` when nothing matches.
pub async fn by_field(
    client: &MoodleClient,
    field: CourseField,
    value: &str,
) -> Result<Vec<Course>, MoodleError> {
    let name = match field {
        CourseField::Id => "id",
        CourseField::Idnumber => "idnumber",
        CourseField::Shortname => "shortname",
    };
    let form = Form::new().field("field", name).field("value", value);
    let a: CoursesAnswer = client
        .call("core_course_get_courses_by_field", &form)
        .await?;
    Ok(a.courses)
}
