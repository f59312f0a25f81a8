//! Course announcements: the news forum of a course (`mod_forum_get_forums_by_courses`) and its
//! latest discussions (`mod_forum_get_forum_discussions`).

use super::{Form, MoodleClient, MoodleError};
use crate::ids::MoodleCourseId;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
struct Forum {
    id: i64,
    #[serde(default)]
    course: i64,
    #[serde(default, rename = "type")]
    kind: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Discussion {
    /// The discussion id (`discuss.php?d=`).
    pub discussion: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub created: i64,
}

#[derive(Debug, Clone, Deserialize)]
struct Discussions {
    #[serde(default)]
    discussions: Vec<Discussion>,
}

/// The latest `count` discussions of the course's news forum (none when it has none).
pub async fn announcements(
    client: &MoodleClient,
    course: MoodleCourseId,
    count: usize,
) -> Result<Vec<Discussion>, MoodleError> {
    let forums: Vec<Forum> = client
        .call(
            "mod_forum_get_forums_by_courses",
            &Form::new().field("courseids[0]", course),
        )
        .await?;
    let Some(news) = forums
        .iter()
        .find(|f| f.kind == "news" && (f.course == 0 || f.course == course.get()))
    else {
        return Ok(Vec::new());
    };
    let form = Form::new()
        .field("forumid", news.id)
        // 3 = newest discussion first (created, descending; discussion_list constants).
        .field("sortorder", 3)
        .field("page", 0)
        .field("perpage", count);
    let d: Discussions = client
        .call("mod_forum_get_forum_discussions", &form)
        .await?;
    Ok(d.discussions)
}
