//! A user's action events (assignment due dates still to act on), by time.

use super::{Form, MoodleClient, MoodleError};
use crate::ids::{MoodleCourseId, MoodleUserId};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct EventCourse {
    pub id: MoodleCourseId,
    #[serde(default)]
    pub fullname: String,
    #[serde(default)]
    pub viewurl: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActionEvent {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub activityname: Option<String>,
    #[serde(default)]
    pub modulename: Option<String>,
    pub timesort: i64,
    #[serde(default)]
    pub overdue: bool,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub course: Option<EventCourse>,
}

impl ActionEvent {
    pub fn title(&self) -> &str {
        self.activityname
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.name)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActionEvents {
    #[serde(default)]
    pub events: Vec<ActionEvent>,
}

/// `core_calendar_get_action_events_by_timesort` for another user (needs `moodle/calendar:manageentries`).
pub async fn action_events(
    client: &MoodleClient,
    user: MoodleUserId,
    from: i64,
    to: i64,
    limit: u32,
) -> Result<ActionEvents, MoodleError> {
    let form = Form::new()
        .field("timesortfrom", from)
        .field("timesortto", to)
        .field("limitnum", limit)
        .field("userid", user);
    client
        .call("core_calendar_get_action_events_by_timesort", &form)
        .await
}
