//! Course ↔ team in `mappings`: one row per course (partition [`COURSE_PK`], row key = course id)
//! holding where its team's provisioning stands, and one per team (partition [`TEAM_PK`], row key
//! = team id) for readers going the other way (the bot, notifications).
//!
//! The course row is written before every step that creates something in Graph and after it, so
//! a worker killed at any point resumes from it without creating a second team.

use crate::store::{tables, Entity, SharedStore, StoreError};
use serde::{Deserialize, Serialize};

pub const COURSE_PK: &str = "teams-course";
pub const TEAM_PK: &str = "teams-team";
pub const COURSE_ID_PROP: &str = "course_id";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// About to create the group (standard template): it may exist if the worker died after.
    CreatingGroup,
    /// The group exists; the team is to be made from it.
    GroupCreated,
    /// About to `POST /teams` (class template): the team may exist if the worker died after.
    CreatingTeam,
    /// `POST /teams` accepted: the operation is polled until it ends.
    Provisioning,
    /// The team is usable; memberships are kept in step.
    Active,
    Archived,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CourseTeam {
    pub course_id: i64,
    pub stage: Stage,
    pub mail_nickname: String,
    pub display_name: String,
    /// Group id = team id, once known.
    #[serde(default)]
    pub team_id: Option<String>,
    /// `Location` of the pending operation (relative to the Graph root).
    #[serde(default)]
    pub operation: Option<String>,
    /// Unix seconds of the last poll (or of the POST), so polls stay `TEAMS_POLL_SECS` apart.
    #[serde(default)]
    pub polled_at: i64,
    /// Unix seconds the group was created (Graph answers 404 for minutes after).
    #[serde(default)]
    pub group_created_at: i64,
    /// What the course asked of the team when it was last applied in full (`plan::fingerprint`).
    #[serde(default)]
    pub applied: Option<String>,
    /// Users `members/add` refused (207) last time, with Graph's code: retried, alone, next run.
    #[serde(default)]
    pub refused: Vec<(String, String)>,
    /// Failed creations in a row (a failed operation starts over).
    #[serde(default)]
    pub failures: u32,
}

impl CourseTeam {
    pub fn new(course_id: i64, mail_nickname: String, display_name: String, stage: Stage) -> Self {
        CourseTeam {
            course_id,
            stage,
            mail_nickname,
            display_name,
            team_id: None,
            operation: None,
            polled_at: 0,
            group_created_at: 0,
            applied: None,
            refused: Vec::new(),
            failures: 0,
        }
    }
}

pub async fn load(store: &SharedStore, course_id: i64) -> Result<Option<CourseTeam>, StoreError> {
    let Some(e) = store
        .get(tables::MAPPINGS, COURSE_PK, &course_id.to_string())
        .await?
    else {
        return Ok(None);
    };
    e.json("link")
}

pub async fn save(store: &SharedStore, link: &CourseTeam) -> Result<(), StoreError> {
    let mut e = Entity::new(COURSE_PK, link.course_id.to_string())
        .with(
            "stage",
            serde_json::to_value(link.stage)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        )
        .with_json("link", link)?;
    if let Some(t) = &link.team_id {
        e.set("team_id", t.as_str());
    }
    store.upsert(tables::MAPPINGS, &e).await?;
    if let Some(t) = &link.team_id {
        let rev = Entity::new(TEAM_PK, crate::store::key_escape(&t.to_ascii_lowercase()))
            .with(COURSE_ID_PROP, link.course_id);
        store.upsert(tables::MAPPINGS, &rev).await?;
    }
    Ok(())
}

/// The Moodle course a team was made for (bot, notifications).
pub async fn course_of_team(store: &SharedStore, team_id: &str) -> Result<Option<i64>, StoreError> {
    let key = crate::store::key_escape(&team_id.to_ascii_lowercase());
    Ok(store
        .get(tables::MAPPINGS, TEAM_PK, &key)
        .await?
        .and_then(|e| e.int(COURSE_ID_PROP)))
}
