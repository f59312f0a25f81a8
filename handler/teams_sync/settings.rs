//! Settings of the Moodle courses → Teams sync (`TEAMS_*`). Read unconditionally so `handler
//! settings` lists them all; the sync is on when `TEAMS_COURSES` selects something and Graph is
//! configured.

use crate::config::Source;
use regex::Regex;

/// Which Moodle courses get a team.
#[derive(Debug, Clone)]
pub enum CourseSelection {
    None,
    All,
    Ids(Vec<i64>),
    /// Courses directly in one of these categories (by category id).
    Categories(Vec<i64>),
    /// Courses whose idnumber matches the pattern (a regular expression).
    IdnumberPattern(Regex),
}

impl CourseSelection {
    pub fn is_none(&self) -> bool {
        matches!(self, CourseSelection::None)
    }
}

/// The part of the course a team's display name is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameField {
    Fullname,
    Shortname,
    Idnumber,
}

/// Graph team template: a standard team, or a class team (Teams for Education).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamTemplate {
    Standard,
    EducationClass,
}

impl TeamTemplate {
    pub fn graph_name(self) -> &'static str {
        match self {
            TeamTemplate::Standard => "standard",
            TeamTemplate::EducationClass => "educationClass",
        }
    }
}

/// Graph asks for more than 30 s between two polls of an operation.
pub const MIN_POLL_SECS: u64 = 30;

/// Courses in flight at once by default. Each course's calls to its own team are spaced 250 ms
/// apart (4/s per team), so a course takes about a second of Graph time: measured with `bench
/// teams` (README, Benchmarks), this many keep the 30/s Teams write rate and the 10/s
/// `POST /teams` rate busy.
pub const DEFAULT_CONCURRENCY: usize = 32;
pub const MAX_CONCURRENCY: usize = 256;

#[derive(Debug, Clone)]
pub struct TeamsSettings {
    pub selection: CourseSelection,
    /// Moodle role shortnames whose holders are team owners (default editingteacher).
    pub owner_roles: Vec<String>,
    /// Moodle role shortnames whose holders are team members (default student).
    pub member_roles: Vec<String>,
    pub name_prefix: String,
    pub name_field: NameField,
    pub name_suffix: String,
    /// Start of every team's mailNickname; the course id follows, so nicknames never collide.
    pub nickname_prefix: String,
    pub template: TeamTemplate,
    /// `private` or `public`.
    pub visibility: String,
    pub archive_ended: bool,
    pub archive_hidden: bool,
    pub courses_per_shard: usize,
    /// Courses worked at once within a pass (a shard, or the CLI's run).
    pub concurrency: usize,
    /// Seconds between two polls of a team creation (across runs).
    pub poll_secs: u64,
    /// 404 on a group created moments ago: tries in this run, and the wait between them.
    pub fresh_group_tries: u32,
    pub fresh_group_wait_secs: u64,
}

impl Default for TeamsSettings {
    fn default() -> Self {
        TeamsSettings::load(&mut Source::default())
    }
}

fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn ids(src: &mut Source, name: &str, raw: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for v in list(raw) {
        match v.parse::<i64>() {
            Ok(id) if id > 0 => out.push(id),
            _ => src.problem(format!("{name}: {v:?} is not a Moodle id")),
        }
    }
    if out.is_empty() {
        src.problem(format!("{name}: at least one id is needed"));
    }
    out
}

impl TeamsSettings {
    pub fn load(src: &mut Source) -> Self {
        let mode = src.string(
            "TEAMS_COURSES",
            "none",
            "which Moodle courses get a team: none, all, ids (TEAMS_COURSE_IDS), category (TEAMS_COURSE_CATEGORIES) or idnumber (TEAMS_COURSE_IDNUMBER_PATTERN)",
        );
        let ids_raw = src.string(
            "TEAMS_COURSE_IDS",
            "",
            "course ids for TEAMS_COURSES=ids, comma-separated",
        );
        let cats_raw = src.string(
            "TEAMS_COURSE_CATEGORIES",
            "",
            "category ids for TEAMS_COURSES=category (courses directly in them), comma-separated",
        );
        let pattern = src.string(
            "TEAMS_COURSE_IDNUMBER_PATTERN",
            "",
            "regular expression a course idnumber must match for TEAMS_COURSES=idnumber, e.g. ^FR-LYC-2026-",
        );
        let selection = match mode.as_str() {
            "none" => CourseSelection::None,
            "all" => CourseSelection::All,
            "ids" => CourseSelection::Ids(ids(src, "TEAMS_COURSE_IDS", &ids_raw)),
            "category" => {
                CourseSelection::Categories(ids(src, "TEAMS_COURSE_CATEGORIES", &cats_raw))
            }
            "idnumber" => match Regex::new(&pattern) {
                Ok(_) if pattern.is_empty() => {
                    src.problem(
                        "TEAMS_COURSE_IDNUMBER_PATTERN: required with TEAMS_COURSES=idnumber",
                    );
                    CourseSelection::None
                }
                Ok(r) => CourseSelection::IdnumberPattern(r),
                Err(e) => {
                    src.problem(format!("TEAMS_COURSE_IDNUMBER_PATTERN: {e}"));
                    CourseSelection::None
                }
            },
            other => {
                src.problem(format!(
                    "TEAMS_COURSES: {other:?} is not none, all, ids, category or idnumber"
                ));
                CourseSelection::None
            }
        };
        let owner_roles = list(&src.string(
            "TEAMS_OWNER_ROLES",
            "editingteacher",
            "Moodle role shortnames whose holders own the course's team, comma-separated",
        ));
        let member_roles = list(&src.string(
            "TEAMS_MEMBER_ROLES",
            "student",
            "Moodle role shortnames whose holders are members of the course's team, comma-separated",
        ));
        if owner_roles.is_empty() {
            src.problem("TEAMS_OWNER_ROLES: at least one role (a team needs an owner)");
        }
        let name_prefix = src.string(
            "TEAMS_NAME_PREFIX",
            "",
            "text before the course's name in the team's display name",
        );
        let field = src.string(
            "TEAMS_NAME_FIELD",
            "fullname",
            "course field the team's display name is built from: fullname, shortname or idnumber (an empty idnumber falls back to the shortname)",
        );
        let name_field = match field.as_str() {
            "fullname" => NameField::Fullname,
            "shortname" => NameField::Shortname,
            "idnumber" => NameField::Idnumber,
            other => {
                src.problem(format!(
                    "TEAMS_NAME_FIELD: {other:?} is not fullname, shortname or idnumber"
                ));
                NameField::Fullname
            }
        };
        let name_suffix = src.string(
            "TEAMS_NAME_SUFFIX",
            "",
            "text after the course's name in the team's display name",
        );
        let nickname_prefix = src.string(
            "TEAMS_MAIL_NICKNAME_PREFIX",
            "moodle-",
            "start of each team's mailNickname (letters, digits, . - _); the course id and shortname follow, so it is unique",
        );
        if !nickname_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            || nickname_prefix.len() > 20
        {
            src.problem("TEAMS_MAIL_NICKNAME_PREFIX: at most 20 letters, digits, '.', '-' or '_'");
        }
        let template = match src
            .string(
                "TEAMS_TEMPLATE",
                "standard",
                "team template: standard, or educationClass (class teams; needs an education tenant)",
            )
            .as_str()
        {
            "standard" => TeamTemplate::Standard,
            "educationClass" => TeamTemplate::EducationClass,
            other => {
                src.problem(format!(
                    "TEAMS_TEMPLATE: {other:?} is not standard or educationClass"
                ));
                TeamTemplate::Standard
            }
        };
        let visibility = src.string(
            "TEAMS_VISIBILITY",
            "private",
            "visibility of created teams: private or public",
        );
        if visibility != "private" && visibility != "public" {
            src.problem(format!(
                "TEAMS_VISIBILITY: {visibility:?} is not private or public"
            ));
        }
        let archive_ended = src.flag(
            "TEAMS_ARCHIVE_ENDED",
            false,
            "archive a course's team once the course's end date has passed",
        );
        let archive_hidden = src.flag(
            "TEAMS_ARCHIVE_HIDDEN",
            false,
            "archive a course's team while the course is hidden from students",
        );
        let courses_per_shard = src.parse(
            "TEAMS_COURSES_PER_SHARD",
            50usize,
            "courses per sync-work message (one SyncWorker invocation)",
        );
        if courses_per_shard == 0 {
            src.problem("TEAMS_COURSES_PER_SHARD: at least 1");
        }
        let concurrency = src.parse(
            "TEAMS_CONCURRENCY",
            DEFAULT_CONCURRENCY,
            "courses worked at once (in a shard, or by `handler sync --teams`): enough to use Graph's per-tenant rates while each team stays under its 4 requests per second (README: bench teams)",
        );
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            src.problem(format!(
                "TEAMS_CONCURRENCY: 1 to {MAX_CONCURRENCY} courses at once"
            ));
        }
        let poll_secs = src.parse(
            "TEAMS_POLL_SECS",
            60u64,
            "seconds between two polls of a pending team creation (across runs; Graph asks for more than 30)",
        );
        if poll_secs < MIN_POLL_SECS {
            src.problem(format!(
                "TEAMS_POLL_SECS: at least {MIN_POLL_SECS} (Graph asks for more than 30 s between polls)"
            ));
        }
        let fresh_group_tries = src.parse(
            "TEAMS_FRESH_GROUP_TRIES",
            3u32,
            "tries of a team call answered 404 because its group is minutes old (Graph: 3, 10 s apart); then the course waits for the next run",
        );
        let fresh_group_wait_secs = src.parse(
            "TEAMS_FRESH_GROUP_WAIT_SECS",
            10u64,
            "seconds between those tries",
        );
        if fresh_group_tries == 0 || fresh_group_wait_secs > 60 {
            src.problem(
                "TEAMS_FRESH_GROUP_TRIES: at least 1; TEAMS_FRESH_GROUP_WAIT_SECS: at most 60",
            );
        }
        TeamsSettings {
            selection,
            owner_roles,
            member_roles,
            name_prefix,
            name_field,
            name_suffix,
            nickname_prefix,
            template,
            visibility,
            archive_ended,
            archive_hidden,
            courses_per_shard,
            concurrency: concurrency.clamp(1, MAX_CONCURRENCY),
            poll_secs,
            fresh_group_tries,
            fresh_group_wait_secs,
        }
    }

    pub fn selects_courses(&self) -> bool {
        !self.selection.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> (TeamsSettings, Vec<String>) {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut src = Source::from_map(map);
        let s = TeamsSettings::load(&mut src);
        (s, src.take_problems())
    }

    #[test]
    fn defaults_select_nothing_with_teachers_owning_and_students_members() {
        let (s, p) = load(&[]);
        assert!(p.is_empty(), "{p:?}");
        assert!(s.selection.is_none());
        assert_eq!(s.owner_roles, vec!["editingteacher"]);
        assert_eq!(s.member_roles, vec!["student"]);
        assert_eq!(s.template, TeamTemplate::Standard);
        assert!(s.poll_secs >= MIN_POLL_SECS);
    }

    #[test]
    fn each_selection_reads_its_own_setting_and_bad_values_are_named() {
        let (s, p) = load(&[("TEAMS_COURSES", "ids"), ("TEAMS_COURSE_IDS", "4, 9")]);
        assert!(p.is_empty(), "{p:?}");
        assert!(matches!(s.selection, CourseSelection::Ids(ref v) if v == &[4, 9]));
        let (_, p) = load(&[("TEAMS_COURSES", "ids"), ("TEAMS_COURSE_IDS", "x")]);
        assert!(p.iter().any(|m| m.starts_with("TEAMS_COURSE_IDS")), "{p:?}");
        let (s, _) = load(&[
            ("TEAMS_COURSES", "idnumber"),
            ("TEAMS_COURSE_IDNUMBER_PATTERN", "^FR-"),
        ]);
        assert!(matches!(s.selection, CourseSelection::IdnumberPattern(_)));
        let (_, p) = load(&[
            ("TEAMS_COURSES", "idnumber"),
            ("TEAMS_COURSE_IDNUMBER_PATTERN", "("),
        ]);
        assert!(
            p.iter()
                .any(|m| m.starts_with("TEAMS_COURSE_IDNUMBER_PATTERN")),
            "{p:?}"
        );
        let (_, p) = load(&[("TEAMS_COURSES", "some")]);
        assert!(p.iter().any(|m| m.starts_with("TEAMS_COURSES")), "{p:?}");
        let (_, p) = load(&[("TEAMS_POLL_SECS", "5")]);
        assert!(p.iter().any(|m| m.starts_with("TEAMS_POLL_SECS")), "{p:?}");
        let (s, p) = load(&[("TEAMS_OWNER_ROLES", "editingteacher, teacher")]);
        assert!(p.is_empty());
        assert_eq!(s.owner_roles, vec!["editingteacher", "teacher"]);
    }
}
