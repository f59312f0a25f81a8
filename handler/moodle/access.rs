//! What the bridge's token may do, for `handler check-config`: the functions its external service
//! lists (site info) against those the configured features call, then harmless reads that fail
//! or come back empty when the service account lacks the capabilities (Moodle often answers a
//! missing capability with an empty list rather than an error).

use super::{users, Form, MoodleClient, MoodleError};

/// Functions the sync calls (the README lists the same ones).
pub const SYNC_FUNCTIONS: &[&str] = &[
    "core_user_create_users",
    "core_user_update_users",
    "core_user_get_users_by_field",
    "core_cohort_create_cohorts",
    "core_cohort_get_cohorts",
    "core_cohort_add_cohort_members",
    "core_cohort_delete_cohort_members",
    "core_cohort_get_cohort_members",
    "core_role_assign_roles",
    "core_role_unassign_roles",
    "core_course_get_courses_by_field",
    "core_course_get_categories",
];

/// Functions the Teams bot calls.
pub const BOT_FUNCTIONS: &[&str] = &[
    "core_enrol_get_users_courses",
    "core_enrol_get_enrolled_users",
    "core_calendar_get_action_events_by_timesort",
    "mod_assign_get_assignments",
    "mod_assign_get_submissions",
    "gradereport_overview_get_course_grades",
    "gradereport_user_get_grade_items",
];

/// Functions the bot calls for parents (`BOT_PARENT_LINKS_REPORT`): the parent links are read
/// through a report-builder custom report (core has no function listing user-context role
/// assignments). The service account also needs `moodle/reportbuilder:view` and to be in the
/// report's audience, or `moodle/reportbuilder:viewall`.
pub const BOT_PARENT_FUNCTIONS: &[&str] = &[
    "core_reportbuilder_set_filters",
    "core_reportbuilder_retrieve_report",
];

/// Functions the Entra sync calls for profile photos (`ENTRA_SYNC_PHOTO`), besides
/// `webservice/upload.php`, which needs "Can upload files" on the service (`uploadfiles` in the
/// site info; checked with these). The service account also needs `moodle/user:editprofile`,
/// which no harmless probe shows: the first refused picture names it.
pub const PHOTO_FUNCTIONS: &[&str] = &[super::pictures::UPDATE_PICTURE];

/// Moodle's first administrator: created by the installer right after the guest account.
const FIRST_ADMIN_ID: i64 = 2;

/// `Ok(summary)` when every function in `needed` is in the token's service and the probes show
/// the capabilities; `Err` lists everything missing at once.
pub async fn check(client: &MoodleClient, needed: &[&str]) -> Result<String, String> {
    let info: serde_json::Value = client
        .call_value("core_webservice_get_site_info", &Form::new())
        .await
        .map_err(|e| e.to_string())?;
    let listed: Vec<&str> = info
        .get("functions")
        .and_then(|f| f.as_array())
        .map(|a| a.iter().filter_map(|f| f.get("name")?.as_str()).collect())
        .unwrap_or_default();
    let account = info
        .get("username")
        .and_then(|u| u.as_str())
        .unwrap_or("?")
        .to_string();
    let mut problems = Vec::new();
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|f| !listed.contains(f))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "the external service of the token lacks {}",
            missing.join(", ")
        ));
    }
    if needed.contains(&super::pictures::UPDATE_PICTURE)
        && !info
            .get("uploadfiles")
            .is_some_and(|v| v.as_i64() == Some(1) || v.as_bool() == Some(true))
    {
        problems.push(
            "the external service does not allow file uploads (uploadfiles): tick \"Can upload files\" on it, webservice/upload.php refuses the photos otherwise".to_string(),
        );
    }
    if needed.contains(&"core_user_get_users_by_field")
        && !missing.contains(&"core_user_get_users_by_field")
    {
        let found =
            users::get_by_field(client, users::UserField::Id, &[FIRST_ADMIN_ID.to_string()]).await;
        match found {
            Ok(list) if list.is_empty() => problems.push(format!(
                "{account} cannot see other users (moodle/user:viewdetails, moodle/user:viewalldetails)"
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!("core_user_get_users_by_field: {e}")),
        }
    }
    if needed.contains(&"core_cohort_get_cohorts") && !missing.contains(&"core_cohort_get_cohorts")
    {
        if let Err(e) = super::cohorts::get_all(client).await {
            problems.push(match e {
                MoodleError::MissingCapability(m) => {
                    format!("{account} cannot read cohorts (moodle/cohort:view): {m}")
                }
                other => format!("core_cohort_get_cohorts: {other}"),
            });
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{account}: {} function(s) needed, all in the service; probes passed",
            needed.len()
        ))
    } else {
        Err(problems.join("; "))
    }
}
