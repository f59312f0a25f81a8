//! What the bot says: each action becomes Moodle reads and a card. Functions take the Moodle
//! client as a parameter so tests drive them against the Moodle double.

use crate::bot::cards::{self, Reply};
use crate::bot::i18n::{format_number, format_time, t, Lang, Text};
use crate::bot::intents::{match_score, Intent};
use crate::ids::{MoodleAssignmentId, MoodleCourseId, MoodleUserId};
use crate::moodle::{assign, calendar, enrolled, grades, site, MoodleClient, MoodleError};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

/// What the user asked for, from free text or from a card button.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    Help,
    NotUnderstood,
    Courses,
    Assignments {
        course: Option<MoodleCourseId>,
    },
    Grades,
    GradeItems {
        course: MoodleCourseId,
    },
    Missing {
        query: String,
    },
    MissingFor {
        assignment: MoodleAssignmentId,
        course: MoodleCourseId,
    },
    /// Parent: the children linked to them.
    Children,
    /// Parent: what can be asked about one child (the menu, for that child).
    ChildMenu,
}

impl Action {
    pub fn from_intent(i: Intent) -> Action {
        match i {
            Intent::Help => Action::Help,
            Intent::Courses => Action::Courses,
            Intent::Assignments => Action::Assignments { course: None },
            Intent::Grades => Action::Grades,
            Intent::Missing { query } => Action::Missing { query },
            Intent::Children => Action::Children,
            Intent::Unknown => Action::NotUnderstood,
        }
    }

    /// A card button's verb and data (`Action.Execute`, or its `Action.Submit` fallback).
    pub fn from_verb(verb: &str, data: &Value) -> Option<Action> {
        // A card's data is input: an id that is not a positive number is no id.
        fn card_id<T: TryFrom<i64>>(data: &Value, name: &str) -> Option<T> {
            let v = data.get(name)?;
            let n = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))?;
            T::try_from(n).ok()
        }
        Some(match verb {
            "help" => Action::Help,
            "courses" => Action::Courses,
            "assignments" | "assignments.refresh" => Action::Assignments {
                course: card_id(data, "courseId"),
            },
            "grades" => Action::Grades,
            "grades.course" => Action::GradeItems {
                course: card_id(data, "courseId")?,
            },
            "missing.assignment" => Action::MissingFor {
                assignment: card_id(data, "assignmentId")?,
                course: card_id(data, "courseId")?,
            },
            "children" => Action::Children,
            "child.menu" => Action::ChildMenu,
            _ => return None,
        })
    }

    /// The button that asks this again (a child picker's buttons carry it with the child's id).
    pub fn verb_and_data(&self) -> Option<(&'static str, Value)> {
        Some(match self {
            Action::Courses => ("courses", json!({})),
            Action::Assignments { course: None } => ("assignments", json!({})),
            Action::Assignments { course: Some(c) } => {
                ("assignments", json!({"courseId": c.get()}))
            }
            Action::Grades => ("grades", json!({})),
            Action::GradeItems { course } => ("grades.course", json!({"courseId": course.get()})),
            Action::Children | Action::ChildMenu => ("child.menu", json!({})),
            Action::Help
            | Action::NotUnderstood
            | Action::Missing { .. }
            | Action::MissingFor { .. } => return None,
        })
    }

    /// What a parent may ask about a child: the pupil's own questions.
    pub fn about_a_child(&self) -> bool {
        self.verb_and_data().is_some()
    }

    /// Help needs no Moodle account.
    pub fn needs_moodle(&self) -> bool {
        !matches!(self, Action::Help | Action::NotUnderstood)
    }
}

/// Per-turn facts the answers need.
#[derive(Debug, Clone)]
pub struct Turn {
    pub lang: Lang,
    pub utc_offset_minutes: i32,
    pub now: i64,
    /// Moodle base URL without trailing slash, for links.
    pub moodle_url: String,
    pub due_soon_days: i64,
}

impl Turn {
    fn time(&self, unix: i64) -> String {
        format_time(self.lang, unix, self.utc_offset_minutes)
    }
    fn tx(&self, k: Text) -> &'static str {
        t(self.lang, k)
    }
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.moodle_url, path)
    }
}

pub fn help(turn: &Turn, not_understood: bool) -> Reply {
    let mut body = Vec::new();
    if not_understood {
        body.push(cards::text(turn.tx(Text::NotUnderstood)));
    } else {
        body.push(cards::title(turn.tx(Text::HelpTitle)));
        body.push(cards::text(turn.tx(Text::HelpBody)));
    }
    let summary = if not_understood {
        turn.tx(Text::NotUnderstood)
    } else {
        turn.tx(Text::HelpTitle)
    };
    Reply::Card {
        summary: summary.into(),
        card: cards::card(body, cards::menu_actions(turn.lang)),
    }
}

pub async fn answer(
    moodle: &MoodleClient,
    turn: &Turn,
    user: MoodleUserId,
    action: &Action,
) -> Result<Reply, MoodleError> {
    match action {
        Action::Help => Ok(help(turn, false)),
        Action::NotUnderstood => Ok(help(turn, true)),
        Action::Courses => courses(moodle, turn, user).await,
        Action::Assignments { course } => assignments(moodle, turn, user, *course).await,
        Action::Grades => grades_overview(moodle, turn, user).await,
        Action::GradeItems { course } => grade_items(moodle, turn, user, *course).await,
        Action::Missing { query } => missing_pick(moodle, turn, user, query).await,
        Action::MissingFor { assignment, course } => {
            missing_for(moodle, turn, user, *assignment, *course).await
        }
        // Answered by `bot::parents` once the child is known; asked of nobody, it is the menu.
        Action::Children | Action::ChildMenu => Ok(help(turn, false)),
    }
}

fn visible(c: &site::UserCourse) -> bool {
    c.hidden != Some(true) && c.visible != Some(0)
}

async fn courses(
    moodle: &MoodleClient,
    turn: &Turn,
    user: MoodleUserId,
) -> Result<Reply, MoodleError> {
    let list: Vec<site::UserCourse> = site::user_courses(moodle, user)
        .await?
        .into_iter()
        .filter(visible)
        .collect();
    if list.is_empty() {
        return Ok(Reply::Text(turn.tx(Text::NoCourses).into()));
    }
    let mut body = vec![cards::title(turn.tx(Text::CoursesTitle))];
    for c in &list {
        let line = format!(
            "{} — {}",
            cards::link(
                c.title(),
                &turn.url(&format!("/course/view.php?id={}", c.id))
            ),
            c.shortname
        );
        body.push(cards::text(&line));
    }
    let mut actions = cards::menu_actions(turn.lang);
    actions.remove(0);
    actions.push(cards::open_url(
        turn.tx(Text::OpenInMoodle),
        &turn.url("/my/courses.php"),
    ));
    Ok(Reply::Card {
        summary: turn.tx(Text::CoursesTitle).into(),
        card: cards::card(body, actions),
    })
}

async fn assignments(
    moodle: &MoodleClient,
    turn: &Turn,
    user: MoodleUserId,
    course: Option<MoodleCourseId>,
) -> Result<Reply, MoodleError> {
    let horizon = turn.now + turn.due_soon_days * 86_400;
    // Overdue items stay actionable for a while; look back 30 days to flag them.
    let events = calendar::action_events(moodle, user, turn.now - 30 * 86_400, horizon, 50).await?;
    let mut items: Vec<(bool, &calendar::ActionEvent)> = events
        .events
        .iter()
        .filter(|e| e.timesort <= horizon)
        .filter(|e| course.is_none() || e.course.as_ref().map(|c| c.id) == course)
        .map(|e| (e.overdue || e.timesort < turn.now, e))
        .collect();
    items.sort_by_key(|(overdue, e)| (!*overdue, e.timesort));
    let course_name = course.and_then(|c| {
        events
            .events
            .iter()
            .filter_map(|e| e.course.as_ref())
            .find(|ec| ec.id == c)
            .map(|ec| ec.fullname.clone())
    });
    let heading = match &course_name {
        Some(n) => format!("{} - {}", turn.tx(Text::AssignmentsTitle), n),
        None => turn.tx(Text::AssignmentsTitle).to_string(),
    };
    let mut body = vec![cards::title(&heading)];
    if items.is_empty() {
        body.push(cards::text(turn.tx(Text::NoAssignmentsDue)));
    } else {
        let facts = items
            .iter()
            .map(|(overdue, e)| {
                let when = format!("{} {}", turn.tx(Text::DueOn), turn.time(e.timesort));
                let value = if *overdue {
                    format!("{} — {}", turn.tx(Text::Overdue), when)
                } else {
                    when
                };
                let name = match (&course_name, &e.course) {
                    (None, Some(c)) => format!("{} ({})", e.title(), c.fullname),
                    _ => e.title().to_string(),
                };
                (name, value)
            })
            .collect();
        body.push(cards::facts(facts));
        for (_, e) in items.iter().take(5) {
            if let Some(u) = &e.url {
                body.push(cards::text(&cards::link(e.title(), u)));
            }
        }
    }
    body.push(cards::subtle(&format!(
        "{} {}",
        turn.tx(Text::UpdatedAt),
        turn.time(turn.now)
    )));
    let data = match course {
        Some(c) => json!({"courseId": c.get()}),
        None => json!({}),
    };
    let open = match course {
        Some(c) => turn.url(&format!("/course/view.php?id={c}")),
        None => turn.url("/calendar/view.php?view=upcoming"),
    };
    let actions = vec![
        cards::execute(turn.tx(Text::Refresh), "assignments.refresh", data),
        cards::open_url(turn.tx(Text::OpenInMoodle), &open),
    ];
    Ok(Reply::Card {
        summary: heading,
        card: cards::card(body, actions),
    })
}

/// Moodle formats grades as "87.50" (or "-"): show them in the user's number format.
fn show_grade(turn: &Turn, raw: Option<&str>) -> String {
    match raw.map(str::trim) {
        None | Some("") | Some("-") => turn.tx(Text::NotGradedYet).to_string(),
        Some(s) => match s.parse::<f64>() {
            Ok(v) => format_number(turn.lang, v),
            Err(_) => s.to_string(),
        },
    }
}

async fn grades_overview(
    moodle: &MoodleClient,
    turn: &Turn,
    user: MoodleUserId,
) -> Result<Reply, MoodleError> {
    let (grades, courses) = tokio::join!(
        grades::course_grades(moodle, user),
        site::user_courses(moodle, user)
    );
    let (grades, courses) = (grades?, courses?);
    let names: HashMap<MoodleCourseId, &site::UserCourse> =
        courses.iter().map(|c| (c.id, c)).collect();
    let mut rows: Vec<(&site::UserCourse, &grades::CourseGrade)> = grades
        .grades
        .iter()
        .filter_map(|g| names.get(&g.courseid).map(|c| (*c, g)))
        .filter(|(c, _)| visible(c))
        .collect();
    rows.sort_by(|a, b| a.0.title().cmp(b.0.title()));
    if rows.is_empty() {
        return Ok(Reply::Text(turn.tx(Text::NoGrades).into()));
    }
    let facts = rows
        .iter()
        .map(|(c, g)| (c.title().to_string(), show_grade(turn, g.grade.as_deref())))
        .collect();
    let body = vec![
        cards::title(turn.tx(Text::GradesTitle)),
        cards::facts(facts),
    ];
    let mut actions: Vec<Value> = rows
        .iter()
        .filter(|(_, g)| g.rawgrade.is_some())
        .take(4)
        .map(|(c, _)| {
            cards::execute(
                &format!("{} : {}", turn.tx(Text::Details), c.shortname),
                "grades.course",
                json!({"courseId": c.id.get()}),
            )
        })
        .collect();
    actions.push(cards::open_url(
        turn.tx(Text::OpenGradebook),
        &turn.url("/grade/report/overview/index.php"),
    ));
    Ok(Reply::Card {
        summary: turn.tx(Text::GradesTitle).into(),
        card: cards::card(body, actions),
    })
}

async fn grade_items(
    moodle: &MoodleClient,
    turn: &Turn,
    user: MoodleUserId,
    course: MoodleCourseId,
) -> Result<Reply, MoodleError> {
    let report = grades::grade_items(moodle, course, user).await?;
    let Some(mine) = report.usergrades.iter().find(|u| u.userid == user) else {
        return Ok(Reply::Text(turn.tx(Text::NoGrades).into()));
    };
    let facts: Vec<(String, String)> = mine
        .gradeitems
        .iter()
        .filter(|i| i.itemtype != "course" && i.gradeishidden != Some(true))
        .map(|i| {
            let value = match (i.graderaw, i.grademax) {
                (Some(g), Some(max)) => format!(
                    "{} / {}",
                    format_number(turn.lang, g),
                    format_number(turn.lang, max)
                ),
                (Some(g), None) => format_number(turn.lang, g),
                _ => turn.tx(Text::NotGradedYet).to_string(),
            };
            (i.itemname.clone().unwrap_or_default(), value)
        })
        .collect();
    if facts.is_empty() {
        return Ok(Reply::Text(turn.tx(Text::NoGrades).into()));
    }
    let body = vec![
        cards::title(turn.tx(Text::GradeItemsTitle)),
        cards::facts(facts),
    ];
    let actions = vec![cards::open_url(
        turn.tx(Text::OpenGradebook),
        &turn.url(&format!("/grade/report/user/index.php?id={course}")),
    )];
    Ok(Reply::Card {
        summary: turn.tx(Text::GradeItemsTitle).into(),
        card: cards::card(body, actions),
    })
}

/// Teacher asked "who has not submitted X": find X among the assignments of their courses.
async fn missing_pick(
    moodle: &MoodleClient,
    turn: &Turn,
    user: MoodleUserId,
    query: &str,
) -> Result<Reply, MoodleError> {
    let courses = site::user_courses(moodle, user).await?;
    let ids: Vec<MoodleCourseId> = courses.iter().map(|c| c.id).collect();
    let result = assign::assignments(moodle, &ids).await?;
    let all: Vec<&assign::Assignment> = result
        .courses
        .iter()
        .flat_map(|c| c.assignments.iter())
        .collect();
    if all.is_empty() {
        return Ok(Reply::Text(turn.tx(Text::NoAssignmentFound).into()));
    }
    let mut scored: Vec<(f64, &assign::Assignment)> = all
        .iter()
        .map(|a| (match_score(query, &a.name), *a))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.duedate.cmp(&a.1.duedate)));
    let best = scored[0].0;
    let clear_winner = best >= 0.5 && scored.get(1).is_none_or(|s| s.0 < best);
    if clear_winner || all.len() == 1 {
        let a = scored[0].1;
        return missing_for(moodle, turn, user, a.id, a.course).await;
    }
    let candidates: Vec<&assign::Assignment> = scored
        .iter()
        .filter(|(s, _)| best == 0.0 || *s >= best * 0.5)
        .map(|(_, a)| *a)
        .take(6)
        .collect();
    let actions = candidates
        .iter()
        .map(|a| {
            cards::execute(
                &a.name,
                "missing.assignment",
                json!({"assignmentId": a.id.get(), "courseId": a.course.get()}),
            )
        })
        .collect();
    let body = vec![cards::title(turn.tx(Text::MissingPick))];
    Ok(Reply::Card {
        summary: turn.tx(Text::MissingPick).into(),
        card: cards::card(body, actions),
    })
}

async fn missing_for(
    moodle: &MoodleClient,
    turn: &Turn,
    user: MoodleUserId,
    assignment: MoodleAssignmentId,
    course: MoodleCourseId,
) -> Result<Reply, MoodleError> {
    let course_ids = [course];
    let (people, list) = tokio::join!(
        enrolled::enrolled_users(moodle, course),
        assign::assignments(moodle, &course_ids)
    );
    let (people, list) = (people?, list?);
    // Only the course's teachers may see who has not submitted; button data is not trusted.
    if !people.iter().any(|p| p.id == user && p.is_teacher()) {
        return Ok(Reply::Text(turn.tx(Text::NotTeacher).into()));
    }
    let Some(a) = list
        .courses
        .iter()
        .flat_map(|c| c.assignments.iter())
        .find(|a| a.id == assignment && a.course == course)
    else {
        return Ok(Reply::Text(turn.tx(Text::NoAssignmentFound).into()));
    };
    let subs = assign::submissions(moodle, assignment).await?;
    let submitted: HashSet<MoodleUserId> = subs
        .assignments
        .iter()
        .filter(|s| s.assignmentid == assignment)
        .flat_map(|s| s.submissions.iter())
        .filter(|s| s.status == "submitted")
        .map(|s| s.userid)
        .collect();
    let mut missing: Vec<&str> = people
        .iter()
        .filter(|p| p.is_student() && !submitted.contains(&p.id))
        .map(|p| p.fullname.as_str())
        .collect();
    missing.sort_unstable();
    let heading = format!("{} — {}", turn.tx(Text::MissingTitle), a.name);
    let mut body = vec![cards::title(&heading)];
    if a.duedate > 0 {
        body.push(cards::subtle(&format!(
            "{} {}",
            turn.tx(Text::DueOn),
            turn.time(a.duedate)
        )));
    }
    if missing.is_empty() {
        body.push(cards::text(turn.tx(Text::MissingNone)));
    } else {
        body.push(cards::text(
            &missing
                .iter()
                .map(|n| format!("- {n}"))
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    let actions = vec![
        cards::execute(
            turn.tx(Text::Refresh),
            "missing.assignment",
            json!({"assignmentId": assignment.get(), "courseId": course.get()}),
        ),
        cards::open_url(
            turn.tx(Text::OpenInMoodle),
            &turn.url(&format!(
                "/mod/assign/view.php?id={}&action=grading",
                a.cmid
            )),
        ),
    ];
    Ok(Reply::Card {
        summary: heading,
        card: cards::card(body, actions),
    })
}
