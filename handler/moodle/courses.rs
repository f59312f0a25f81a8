//! core_course_get_courses_by_field: find a course by a fixed field (idnumber, shortname, id), or
//! list them all, several by id, or those of a category (the Teams sync's course selection).

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
    #[serde(default, deserialize_with = "crate::ids::zero_is_none")]
    pub categoryid: Option<MoodleCategoryId>,
    /// 0 when hidden from students (absent from a reduced answer: taken as visible).
    #[serde(default)]
    pub visible: Option<i64>,
    /// Unix time; 0 = no end date.
    #[serde(default)]
    pub enddate: Option<i64>,
    /// `site` for the front page (course 1), which is never a real course.
    #[serde(default)]
    pub format: String,
}

impl Course {
    pub fn is_site(&self) -> bool {
        self.format == "site" || self.id.get() == 1
    }
    pub fn hidden(&self) -> bool {
        self.visible == Some(0)
    }
    /// Whether the end date is set and passed at `now` (unix seconds).
    pub fn ended(&self, now: i64) -> bool {
        self.enddate.is_some_and(|e| e > 0 && e < now)
    }
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
    /// A comma-separated list of ids.
    Ids,
    Category,
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
        CourseField::Ids => "ids",
        CourseField::Category => "category",
    };
    let form = Form::new().field("field", name).field("value", value);
    let a: CoursesAnswer = client
        .call("core_course_get_courses_by_field", &form)
        .await?;
    Ok(a.courses)
}

/// Every course of the site (front page included: callers skip it with [`Course::is_site`]).
pub async fn all(client: &MoodleClient) -> Result<Vec<Course>, MoodleError> {
    let a: CoursesAnswer = client
        .call("core_course_get_courses_by_field", &Form::new())
        .await?;
    Ok(a.courses)
}
