//! core_cohort_* functions. Web services cannot set a cohort's `component`, so cohorts created by
//! the bridge are recognised by their idnumber prefix (see sync settings).

use super::users::{Warning, WarningsOnly};
use super::{Form, MoodleClient, MoodleError};
use crate::ids::{MoodleCohortId, MoodleUserId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Cohort {
    pub id: MoodleCohortId,
    pub name: String,
    #[serde(default)]
    pub idnumber: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub visible: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewCohort {
    pub name: String,
    pub idnumber: String,
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CohortMembers {
    pub cohortid: MoodleCohortId,
    #[serde(default)]
    pub userids: Vec<MoodleUserId>,
}

/// Every cohort the service account can see (no `cohortids`).
pub async fn get_all(client: &MoodleClient) -> Result<Vec<Cohort>, MoodleError> {
    client.call("core_cohort_get_cohorts", &Form::new()).await
}

/// `core_cohort_create_cohorts` at system level: all or nothing.
pub async fn create(
    client: &MoodleClient,
    cohorts: &[NewCohort],
) -> Result<Vec<Cohort>, MoodleError> {
    let mut form = Form::new();
    for (i, c) in cohorts.iter().enumerate() {
        form.push(format!("cohorts[{i}][categorytype][type]"), "system");
        form.push(format!("cohorts[{i}][categorytype][value]"), "");
        form.push(format!("cohorts[{i}][name]"), &c.name);
        form.push(format!("cohorts[{i}][idnumber]"), &c.idnumber);
        form.push(format!("cohorts[{i}][description]"), &c.description);
        form.push(format!("cohorts[{i}][visible]"), 1);
    }
    client.call("core_cohort_create_cohorts", &form).await
}

pub const CREATE_FIELDS: usize = 6;
pub const MEMBER_FIELDS: usize = 4;

/// `core_cohort_add_cohort_members` by cohort id and user id: problems come back as warnings
/// (code "2": cohort or user missing, "3": already a member) and the good members are added.
pub async fn add_members(
    client: &MoodleClient,
    members: &[(MoodleCohortId, MoodleUserId)],
) -> Result<Vec<Warning>, MoodleError> {
    let mut form = Form::new();
    for (i, (c, u)) in members.iter().enumerate() {
        form.push(format!("members[{i}][cohorttype][type]"), "id");
        form.push(format!("members[{i}][cohorttype][value]"), c);
        form.push(format!("members[{i}][usertype][type]"), "id");
        form.push(format!("members[{i}][usertype][value]"), u);
    }
    let r: WarningsOnly = client.call("core_cohort_add_cohort_members", &form).await?;
    Ok(r.warnings)
}

/// `core_cohort_delete_cohort_members`: removing a non-member is a silent no-op.
pub async fn delete_members(
    client: &MoodleClient,
    members: &[(MoodleCohortId, MoodleUserId)],
) -> Result<(), MoodleError> {
    let mut form = Form::new();
    for (i, (c, u)) in members.iter().enumerate() {
        form.push(format!("members[{i}][cohortid]"), c);
        form.push(format!("members[{i}][userid]"), u);
    }
    let _: serde_json::Value = client
        .call("core_cohort_delete_cohort_members", &form)
        .await?;
    Ok(())
}

pub async fn get_members(
    client: &MoodleClient,
    ids: &[MoodleCohortId],
) -> Result<Vec<CohortMembers>, MoodleError> {
    let mut form = Form::new();
    for (i, id) in ids.iter().enumerate() {
        form.push(format!("cohortids[{i}]"), id);
    }
    client.call("core_cohort_get_cohort_members", &form).await
}
