//! `NotifySweep` (timer `NOTIFY_SWEEP_SCHEDULE`), for sites that cannot install the Moodle
//! plugin: reads the configured courses through web services and turns what is new into the
//! same notifications the webhook takes — assignments due within `NOTIFY_DUE_WINDOW_HOURS`,
//! grades given within that many hours, announcements posted within it. Each becomes one
//! notification with a key derived from what it is about, recorded in `deliveries` (partition
//! [`PARTITION`]) so a later sweep does not queue it again; even if it did, every (notification,
//! target) is delivered once.

use super::queue::NotifyMessage;
use super::schema::{Kind, Notification, Recipients};
use crate::app::AppState;
use crate::error::{FunctionError, FunctionOutputs};
use crate::host::functions::{InvocationContext, QUEUE_NOTIFY};
use crate::host::TimerInfo;
use crate::ids::MoodleCourseId;
use crate::moodle::MoodleClient;
use crate::store::tables::DELIVERIES;
use crate::store::{key_escape, Entity, SharedStore, StoreError};

pub const PARTITION: &str = "sweep";
/// Announcements read per course and sweep (the newest).
const ANNOUNCEMENTS_PER_COURSE: usize = 20;

fn link(base: &str, path: &str) -> String {
    format!("{}/{path}", base.trim_end_matches('/'))
}

/// Moodle messages are HTML; the card takes plain text (Markdown at most).
pub fn plain_text(html: &str, max: usize) -> String {
    let mut out = String::with_capacity(html.len().min(max));
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'");
    out.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(max)
        .collect()
}

/// What one course has that is worth a notification now.
pub async fn course_notifications(
    moodle: &MoodleClient,
    base: &str,
    id: MoodleCourseId,
    now: i64,
    window_secs: i64,
) -> Result<Vec<Notification>, crate::moodle::MoodleError> {
    let course = id.get();
    let mut out = Vec::new();
    let assignments = crate::moodle::assign::assignments(moodle, &[id]).await?;
    for c in assignments.courses {
        for a in c.assignments {
            if a.duedate > now && a.duedate <= now + window_secs {
                out.push(Notification {
                    id: format!("sweep:assign-due:{}:{}", a.id, a.duedate),
                    kind: Kind::AssignmentDue,
                    course: Some(course),
                    recipients: Recipients::CourseMembers,
                    title: a.name.clone(),
                    text: c.fullname.clone(),
                    link: Some(link(base, &format!("mod/assign/view.php?id={}", a.cmid))),
                    due: Some(a.duedate),
                    items: Vec::new(),
                });
            }
        }
    }
    let grades = crate::moodle::grades::course_grade_items(moodle, id).await?;
    for u in grades.usergrades {
        for g in u.gradeitems.iter().filter(|g| g.itemtype == "mod") {
            let (Some(item), Some(at)) = (g.id, g.gradedategraded) else {
                continue;
            };
            let hidden = g.gradeishidden == Some(true) || g.gradehiddenbydate == Some(true);
            if hidden || at <= now - window_secs || at > now {
                continue;
            }
            let name = g.itemname.clone().unwrap_or_default();
            out.push(Notification {
                id: format!("sweep:grade:{item}:{}:{at}", u.userid.get()),
                kind: Kind::GradeReleased,
                course: Some(course),
                recipients: Recipients::Users(vec![u.userid.get()]),
                title: name,
                text: g
                    .gradeformatted
                    .clone()
                    .filter(|f| f != "-")
                    .unwrap_or_default(),
                link: Some(link(
                    base,
                    &format!("grade/report/user/index.php?id={course}"),
                )),
                due: None,
                items: Vec::new(),
            });
        }
    }
    let news = crate::moodle::forum::announcements(moodle, id, ANNOUNCEMENTS_PER_COURSE).await?;
    for d in news {
        if d.created <= now - window_secs || d.created > now {
            continue;
        }
        out.push(Notification {
            id: format!("sweep:news:{}", d.discussion),
            kind: Kind::Announcement,
            course: Some(course),
            recipients: Recipients::CourseMembers,
            title: d.name.chars().take(250).collect(),
            text: plain_text(&d.message, 4000),
            link: Some(link(
                base,
                &format!("mod/forum/discuss.php?d={}", d.discussion),
            )),
            due: None,
            items: Vec::new(),
        });
    }
    // Grades go to one user each: a course channel must not show them.
    Ok(out)
}

/// Record `id` as queued; false when an earlier sweep queued it already.
async fn first_time(store: &SharedStore, id: &str, now: i64) -> Result<bool, StoreError> {
    let row = Entity::new(PARTITION, key_escape(id)).with("at", now);
    match store.insert(DELIVERIES, &row).await {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict) => Ok(false),
        Err(e) => Err(e),
    }
}

pub async fn on_timer(
    state: &AppState,
    _ctx: &InvocationContext,
    _timer: TimerInfo,
) -> Result<FunctionOutputs, FunctionError> {
    let settings = &state.settings.notify;
    // Expiry first, and whether or not courses are swept: the plugin's deliveries age too.
    let expired = super::cleanup::expire(
        &state.store,
        chrono::Utc::now().timestamp(),
        settings.retention_days * 86_400,
        settings.replay_window_secs,
    )
    .await
    .map_err(|e| FunctionError::Failed(anyhow::anyhow!("expiring old delivery rows: {e}")))?;
    let expired_note = format!(
        "expired {} delivery, {} sweep and {} signature row(s){}",
        expired.deliveries,
        expired.sweep,
        expired.signatures,
        if expired.incomplete {
            " (more next run)"
        } else {
            ""
        }
    );
    if settings.sweep_courses.is_empty() {
        return Ok(FunctionOutputs::default()
            .log(expired_note)
            .log("NOTIFY_SWEEP_COURSES is empty: nothing to sweep"));
    }
    let moodle = state.moodle.as_ref().ok_or_else(|| {
        FunctionError::NotConfigured("NotifySweep needs MOODLE_URL and MOODLE_TOKEN".into())
    })?;
    let base = state
        .settings
        .moodle
        .as_ref()
        .map(|m| m.url.to_string())
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    let window = settings.due_window_hours * 3600;
    let mut out = FunctionOutputs::default();
    let mut queued = 0;
    for course in &settings.sweep_courses {
        let found = course_notifications(moodle, &base, *course, now, window).await?;
        for n in found {
            if !first_time(&state.store, &n.id, now).await? {
                continue;
            }
            queued += 1;
            out.enqueue(
                QUEUE_NOTIFY,
                NotifyMessage::Fanout { notification: n }.to_json(),
            );
        }
    }
    Ok(out.log(expired_note).log(format!(
        "NotifySweep: {queued} new notification(s) from {} course(s)",
        settings.sweep_courses.len()
    )))
}

#[cfg(test)]
mod tests {
    #[test]
    fn html_becomes_plain_text() {
        assert_eq!(
            super::plain_text(
                "<p>Bienvenue&nbsp;en <b>Terminale</b> &amp; bonne année</p>",
                100
            ),
            "Bienvenue en Terminale & bonne année"
        );
        assert_eq!(super::plain_text("<p>abcdef</p>", 3), "abc");
    }
}
