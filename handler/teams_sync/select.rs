//! The courses the Teams sync looks after, read from Moodle as `TEAMS_COURSES` selects them.
//! The front page (course 1, format `site`) is never one.

use super::settings::CourseSelection;
use crate::moodle::courses::{self, Course, CourseField};
use crate::moodle::{MoodleClient, MoodleError};

/// Ids per `core_course_get_courses_by_field` call with `field=ids`.
const IDS_PER_CALL: usize = 100;

pub async fn selected(
    moodle: &MoodleClient,
    selection: &CourseSelection,
) -> Result<Vec<Course>, MoodleError> {
    let mut out = match selection {
        CourseSelection::None => Vec::new(),
        CourseSelection::All => courses::all(moodle).await?,
        CourseSelection::Ids(ids) => by_ids(moodle, ids).await?,
        CourseSelection::Categories(cats) => {
            let mut v = Vec::new();
            for c in cats {
                v.extend(courses::by_field(moodle, CourseField::Category, &c.to_string()).await?);
            }
            v
        }
        CourseSelection::IdnumberPattern(re) => courses::all(moodle)
            .await?
            .into_iter()
            .filter(|c| !c.idnumber.is_empty() && re.is_match(&c.idnumber))
            .collect(),
    };
    out.retain(|c| !c.is_site());
    out.sort_by_key(|c| c.id);
    out.dedup_by_key(|c| c.id);
    Ok(out)
}

pub async fn by_ids(moodle: &MoodleClient, ids: &[i64]) -> Result<Vec<Course>, MoodleError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IDS_PER_CALL) {
        let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
        out.extend(courses::by_field(moodle, CourseField::Ids, &list.join(",")).await?);
    }
    out.retain(|c| !c.is_site());
    Ok(out)
}
