//! Parents: the pupils a Moodle user may ask about. The authority is Moodle itself — the parent
//! role assigned to the asker in a pupil's user context (what the sync writes, or an administrator
//! by hand) — read again on every question, never cached, so a link removed in Moodle stops the
//! answers at once.
//!
//! Moodle core has no web-service function listing the role assignments of a user context
//! (`lib/db/services.php` only has `core_role_assign_roles` / `core_role_unassign_roles`), so the
//! links are read through a report-builder custom report on the "Roles" source
//! (`BOT_PARENT_LINKS_REPORT`): columns `user:fullnamewithlink` (the assignee), `role:shortname`,
//! `context:link` (the pupil's profile link: its URL carries the pupil's id, its text their
//! name), condition context level = user, filter `user:userselect`. The filter value is a
//! preference of the calling account, shared by every bot instance using the token: calls are
//! serialised here, and every row is checked to be about the asker — a row about someone else
//! means another instance moved the filter in between, and the read is repeated, so a race can
//! only delay an answer, never show another family's child.

use crate::ids::MoodleUserId;
use crate::moodle::reports::{self, ReportData, ReportId};
use crate::moodle::{MoodleClient, MoodleError};
use serde_json::json;

/// `core_reportbuilder\local\filters\user::USER_SELECT`.
const USER_SELECT: i64 = 2;
/// A family has a few children; more rows than this is read page by page.
const PER_PAGE: u32 = 50;
const MAX_PAGES: u32 = 4;
/// Reads repeated when another instance moved the shared filter in between.
const ATTEMPTS: usize = 3;
const COLUMNS: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub id: MoodleUserId,
    /// Full name as Moodle shows it.
    pub name: String,
}

pub struct ParentLinks {
    report: ReportId,
    role: String,
    serial: tokio::sync::Mutex<()>,
}

/// One row of the report, checked.
#[derive(Debug, PartialEq)]
struct Link {
    parent: MoodleUserId,
    role: String,
    child: Child,
}

fn user_id_in(url: &url::Url) -> Option<MoodleUserId> {
    let is_profile =
        url.path().ends_with("/user/profile.php") || url.path().ends_with("/user/view.php");
    if !is_profile {
        return None;
    }
    url.query_pairs()
        .find(|(k, _)| k == "id")
        .and_then(|(_, v)| v.parse::<MoodleUserId>().ok())
}

fn parse_row(columns: &[String]) -> Result<Link, MoodleError> {
    let bad = |what: &str| {
        MoodleError::Protocol(format!(
            "parent-links report: {what} (expected the columns user full name with link, role short name, context URL)"
        ))
    };
    if columns.len() != COLUMNS {
        return Err(bad(&format!("{} columns", columns.len())));
    }
    let (parent_url, _) =
        reports::parse_link(&columns[0]).ok_or_else(|| bad("first column is not a user link"))?;
    let parent = user_id_in(&parent_url).ok_or_else(|| bad("first column is not a user link"))?;
    let (child_url, context_name) = reports::parse_link(&columns[2])
        .ok_or_else(|| bad("third column is not a context link"))?;
    let child = user_id_in(&child_url).ok_or_else(|| bad("third column is not a user context"))?;
    // The context name is "User: Léa Martin" (or the site language's "Utilisateur : …").
    let name = context_name
        .split_once(':')
        .map(|(_, n)| n)
        .unwrap_or(&context_name)
        .trim()
        .to_string();
    Ok(Link {
        parent,
        role: columns[1].trim().to_string(),
        child: Child { id: child, name },
    })
}

impl ParentLinks {
    pub fn new(report: ReportId, role: &str) -> ParentLinks {
        ParentLinks {
            report,
            role: role.to_string(),
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// The children `parent` holds the parent role for, by name.
    pub async fn children_of(
        &self,
        moodle: &MoodleClient,
        parent: MoodleUserId,
    ) -> Result<Vec<Child>, MoodleError> {
        let _one_at_a_time = self.serial.lock().await;
        for attempt in 1..=ATTEMPTS {
            match self.read(moodle, parent).await? {
                Some(children) => return Ok(children),
                None => tracing::warn!(
                    attempt,
                    "the parent-links report answered for another user (its filter is shared); reading again"
                ),
            }
        }
        Err(MoodleError::Protocol(format!(
            "parent-links report answered for another user {ATTEMPTS} times in a row"
        )))
    }

    /// `None` when a row is about someone else (the shared filter moved).
    async fn read(
        &self,
        moodle: &MoodleClient,
        parent: MoodleUserId,
    ) -> Result<Option<Vec<Child>>, MoodleError> {
        let values = json!({
            "user:userselect_operator": USER_SELECT,
            "user:userselect_value": [parent.get()],
        });
        reports::set_filters(moodle, self.report, &values).await?;
        let mut children: Vec<Child> = Vec::new();
        for page in 0..MAX_PAGES {
            let data = reports::retrieve(moodle, self.report, page, PER_PAGE).await?;
            let done = last_page(&data, page);
            for row in &data.rows {
                let link = parse_row(&row.columns)?;
                if link.parent != parent {
                    return Ok(None);
                }
                if link.role == self.role && !children.iter().any(|c| c.id == link.child.id) {
                    children.push(link.child);
                }
            }
            if done {
                break;
            }
        }
        children.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(Some(children))
    }

    /// For `check-config`: the report answers this token and has the expected columns.
    pub async fn probe(&self, moodle: &MoodleClient) -> Result<String, String> {
        let data = reports::retrieve(moodle, self.report, 0, 1)
            .await
            .map_err(|e| format!("parent-links report {}: {e}", self.report.get()))?;
        if data.headers.len() != COLUMNS {
            return Err(format!(
                "parent-links report {}: {} columns, expected 3 (user full name with link, role short name, context URL)",
                self.report.get(),
                data.headers.len()
            ));
        }
        if let Some(row) = data.rows.first() {
            parse_row(&row.columns).map_err(|e| e.to_string())?;
        }
        Ok(format!(
            "parent-links report {} readable",
            self.report.get()
        ))
    }
}

fn last_page(data: &ReportData, page: u32) -> bool {
    data.rows.is_empty() || u64::from(page + 1) * u64::from(PER_PAGE) >= data.totalrowcount
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(parent: i64, role: &str, child: i64, name: &str) -> Vec<String> {
        vec![
            format!("<a href=\"http://127.0.0.1:8089/moodle/user/profile.php?id={parent}\">Paul Probe</a>"),
            role.to_string(),
            format!("<a href=\"http://127.0.0.1:8089/moodle/user/profile.php?id={child}\">User: {name}</a>"),
        ]
    }

    #[test]
    fn rows_as_the_lab_answers_them() {
        let link = parse_row(&row(11, "parent", 7, "Léa Martin")).unwrap();
        assert_eq!(
            link,
            Link {
                parent: MoodleUserId::new(11).unwrap(),
                role: "parent".into(),
                child: Child {
                    id: MoodleUserId::new(7).unwrap(),
                    name: "Léa Martin".into()
                }
            }
        );
    }

    #[test]
    fn a_report_with_other_columns_fails_loudly() {
        let mut r = row(11, "parent", 7, "Léa Martin");
        r.pop();
        assert!(parse_row(&r).unwrap_err().to_string().contains("2 columns"));
        let mut r = row(11, "parent", 7, "Léa Martin");
        r[2] = "<a href=\"http://m/course/view.php?id=7\">Course: Maths</a>".into();
        assert!(parse_row(&r)
            .unwrap_err()
            .to_string()
            .contains("user context"));
        let mut r = row(11, "parent", 7, "Léa Martin");
        r[0] = "Paul Probe".into();
        assert!(parse_row(&r).is_err());
    }
}
