//! core_course_get_categories. Searching by `idnumber` needs `moodle/category:manage`; without it
//! Moodle answers `criteriaerror`, which callers report as a missing capability.

use super::{Form, MoodleClient, MoodleError};
use crate::ids::MoodleCategoryId;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Category {
    pub id: MoodleCategoryId,
    pub name: String,
    #[serde(default)]
    pub idnumber: Option<String>,
    #[serde(default)]
    pub parent: i64,
}

pub async fn by_idnumber(
    client: &MoodleClient,
    idnumber: &str,
) -> Result<Vec<Category>, MoodleError> {
    let form = Form::new()
        .field("criteria[0][key]", "idnumber")
        .field("criteria[0][value]", idnumber)
        .field("addsubcategories", 0);
    match client.call("core_course_get_categories", &form).await {
        Err(MoodleError::InvalidParameter { code, .. }) if code == "criteriaerror" => {
            Err(MoodleError::MissingCapability(
                "moodle/category:manage is needed to find categories by idnumber".into(),
            ))
        }
        other => other,
    }
}
