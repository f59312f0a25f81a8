//! Notification settings (Azure app-setting names). Read unconditionally so `handler settings`
//! lists them; the intake refuses every post while `WEBHOOK_SECRET` is unset.

use crate::config::{Secret, Source};
use url::Url;

#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// Shared secret of `/api/webhook` (HMAC key and bearer secret). None: every post refused.
    pub webhook_secret: Option<Secret>,
    /// How far a signed request's timestamp may lie from now, either way, in seconds.
    pub replay_window_secs: i64,
    /// Largest notification body accepted, in bytes (below the app-wide `MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Six-field NCRONTAB schedule of the pull timer (`NotifySweep`).
    pub sweep_schedule: String,
    /// Courses the pull timer reads (Moodle course ids); empty = the timer does nothing.
    pub sweep_courses: Vec<crate::ids::MoodleCourseId>,
    /// How far ahead "assignment due" reminders look, in hours.
    pub due_window_hours: i64,
    /// Days delivery outcomes and the pull timer's marks are kept (`notify::cleanup`).
    pub retention_days: i64,
    /// Test doubles only: a loopback `http` base that receives, in place of the real host,
    /// every channel post whose Workflows URL passed the allow-list (path and query kept).
    pub webhook_double_url: Option<Url>,
    /// Extra host origins whose messages the configuration page's Teams library accepts
    /// (`app.initialize(validMessageOrigins)`): none in Teams; the stub host in tests.
    pub host_origins: Vec<String>,
    /// OpenID metadata of the Entra tenant (signing keys of SSO tokens).
    pub sso_openid_metadata_url: Option<Url>,
}

fn loopback_http(u: &Url) -> bool {
    u.scheme() == "http" && matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

impl NotifySettings {
    pub fn load(src: &mut Source) -> Self {
        let webhook_secret = src.secret(
            "WEBHOOK_SECRET",
            "shared secret of /api/webhook (HMAC-SHA256 key, or bearer secret); unset = every post refused",
        );
        let replay_window_secs = src.parse(
            "WEBHOOK_REPLAY_WINDOW_SECS",
            300i64,
            "seconds a signed webhook's timestamp may be off from now (either way); a signature is accepted once",
        );
        let max_body_bytes = src.parse(
            "WEBHOOK_MAX_BODY_BYTES",
            64 * 1024usize,
            "largest notification accepted on /api/webhook, in bytes",
        );
        let sweep_schedule = src.string(
            "NOTIFY_SWEEP_SCHEDULE",
            "0 */30 * * * *",
            "six-field NCRONTAB schedule of NotifySweep (pull timer: due assignments, released grades, announcements)",
        );
        if let Err(e) = crate::schedule::Schedule::parse(&sweep_schedule) {
            src.problem(format!("NOTIFY_SWEEP_SCHEDULE: {e}"));
        }
        let courses = src.string(
            "NOTIFY_SWEEP_COURSES",
            "",
            "Moodle course ids NotifySweep reads, comma-separated (empty: the pull timer is off)",
        );
        let mut sweep_courses = Vec::new();
        for part in courses.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<crate::ids::MoodleCourseId>() {
                Ok(id) => sweep_courses.push(id),
                _ => src.problem(format!(
                    "NOTIFY_SWEEP_COURSES: {part:?} is not a Moodle course id"
                )),
            }
        }
        let due_window_hours = src.parse(
            "NOTIFY_DUE_WINDOW_HOURS",
            48i64,
            "hours ahead an assignment counts as due soon for NotifySweep's reminders",
        );
        let retention_days = src.parse(
            "NOTIFY_RETENTION_DAYS",
            30i64,
            "days notification delivery records (and the pull timer's marks) are kept; at least 7 (a queue message's lifetime) and longer than NOTIFY_DUE_WINDOW_HOURS",
        );
        let webhook_double_url = src.url(
            "NOTIFY_WEBHOOK_DOUBLE_URL",
            &["http"],
            "tests only: loopback base that receives channel posts in place of the Workflows host (loopback only)",
        );
        let origins = src.string(
            "CONNECTOR_HOST_ORIGINS",
            "",
            "extra host origins the configuration page's Teams library accepts messages from, comma-separated (tests: the stub host; Teams needs none)",
        );
        let host_origins: Vec<String> = origins
            .split(',')
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
            .collect();
        let sso_openid_metadata_url = src.url(
            "CONNECTOR_SSO_OPENID_METADATA_URL",
            &["https", "http"],
            "override of the Entra OpenID metadata URL for Teams SSO tokens of /connector (default: the tenant's v2.0 metadata)",
        );
        if let Some(u) = &webhook_double_url {
            if !loopback_http(u) {
                src.problem("NOTIFY_WEBHOOK_DOUBLE_URL: loopback http only (a test double)");
            }
        }
        if !(10..=3600).contains(&replay_window_secs) {
            src.problem("WEBHOOK_REPLAY_WINDOW_SECS: between 10 and 3600");
        }
        if !(1024..=1024 * 1024).contains(&max_body_bytes) {
            src.problem("WEBHOOK_MAX_BODY_BYTES: between 1024 and 1048576");
        }
        if !(1..=24 * 14).contains(&due_window_hours) {
            src.problem("NOTIFY_DUE_WINDOW_HOURS: between 1 and 336");
        }
        if !(7..=3650).contains(&retention_days) {
            src.problem("NOTIFY_RETENTION_DAYS: between 7 and 3650");
        } else if retention_days * 24 <= due_window_hours {
            // A mark that expired while its assignment is still due soon would be queued again.
            src.problem("NOTIFY_RETENTION_DAYS: must be longer than NOTIFY_DUE_WINDOW_HOURS");
        }
        if let Some(s) = &webhook_secret {
            if s.expose().len() < 16 {
                src.problem("WEBHOOK_SECRET: at least 16 characters");
            }
        }
        NotifySettings {
            webhook_secret,
            replay_window_secs,
            max_body_bytes,
            sweep_schedule,
            sweep_courses,
            due_window_hours,
            retention_days,
            webhook_double_url,
            host_origins,
            sso_openid_metadata_url,
        }
    }
}
