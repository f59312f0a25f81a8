//! What the demo's Moodle double answers to the bot, beside the model the sync writes to: the
//! pupil's courses, what is due and grades, in the shapes recorded from a real Moodle
//! (`shared/fixtures/moodle/core_enrol_get_users_courses/student.json`,
//! `core_calendar_get_action_events_by_timesort/student_upcoming.json`,
//! `gradereport_overview_get_course_grades/student.json`): every field of the recordings, with
//! the demo school's values. `tests/testkit/tests/demo_loop.rs` checks the key sets against the recordings.

use crate::fake_moodle::{FakeCourse, FakeMoodle};
use serde_json::{json, Value};

pub const SITE: &str = "http://moodle.demo.invalid";

/// One `core_enrol_get_users_courses` item.
pub fn user_course(c: &FakeCourse, users: usize) -> Value {
    json!({
        "id": c.id, "shortname": c.shortname, "fullname": c.fullname, "displayname": c.fullname,
        "enrolledusercount": users, "idnumber": c.idnumber, "visible": 1, "summary": "",
        "summaryformat": 1, "format": "topics",
        "courseimage": format!("{SITE}/pluginfile.php/16/course/generated/course.svg"),
        "showgrades": true, "lang": "", "enablecompletion": true, "completionhascriteria": false,
        "completionusertracked": false, "category": c.category, "progress": null,
        "completed": null, "startdate": 1_788_220_800, "enddate": 1_814_400_000, "marker": 0,
        "lastaccess": null, "isfavourite": false, "hidden": false, "overviewfiles": [],
        "showactivitydates": false, "showcompletionconditions": true, "timemodified": 1_795_661_283
    })
}

/// One `core_calendar_get_action_events_by_timesort` event: an assignment due at `due`.
pub fn due_event(id: i64, c: &FakeCourse, name: &str, due: i64) -> Value {
    let view = format!("{SITE}/mod/assign/view.php?id={}", 100 + id);
    let course = json!({
        "id": c.id, "fullname": c.fullname, "shortname": c.shortname, "idnumber": c.idnumber,
        "summary": "", "summaryformat": 1, "startdate": 1_788_220_800, "enddate": 1_814_400_000,
        "visible": true, "showactivitydates": false, "showcompletionconditions": true,
        "pdfexportfont": "", "fullnamedisplay": c.fullname,
        "viewurl": format!("{SITE}/course/view.php?id={}", c.id),
        "courseimage": format!("{SITE}/pluginfile.php/16/course/generated/course.svg"),
        "progress": 0, "hasprogress": false, "isfavourite": false, "hidden": false,
        "showshortname": false, "coursecategory": "Collège démo"
    });
    let icon = json!({"key": "monologo", "component": "assign", "alttext": "Activity event",
        "iconurl": format!("{SITE}/theme/image.php/boost/assign/1/monologo?filtericon=1"), "iconclass": ""});
    let action = json!({"name": "Add submission", "url": format!("{view}&action=editsubmission"),
        "itemcount": 1, "actionable": true, "showitemcount": false});
    let mut e = json!({
        "id": id, "name": format!("{name} is due"), "description": format!("Consignes : {name}"),
        "descriptionformat": 1, "location": "", "categoryid": null, "groupid": null, "userid": 2,
        "repeatid": null, "eventcount": null, "component": "mod_assign", "modulename": "assign",
        "activityname": name, "activitystr": "Assignment is due", "instance": 100 + id,
        "eventtype": "due", "timestart": due, "timeduration": 0, "timesort": due,
        "timeusermidnight": due - due % 86_400, "visible": 1, "timemodified": due - 86_400 * 7,
        "overdue": false, "icon": icon, "course": course
    });
    let rest = json!({
        "subscription": {"displayeventsource": false}, "canedit": false, "candelete": false,
        "deleteurl": format!("{SITE}/calendar/delete.php?id={id}&course={}", c.id),
        "editurl": format!("{SITE}/course/mod.php?update={}&return=1", 100 + id),
        "viewurl": format!("{SITE}/calendar/view.php?view=day&course={}&time={due}#event_{id}", c.id),
        "formattedtime": "", "formattedlocation": "", "isactionevent": true,
        "iscourseevent": false, "iscategoryevent": false, "groupname": null,
        "normalisedeventtype": "course", "normalisedeventtypetext": "Course event",
        "action": action, "purpose": "assessment", "branded": false, "url": view
    });
    if let (Some(m), Value::Object(r)) = (e.as_object_mut(), rest) {
        m.extend(r);
    }
    e
}

/// The bot's reads for `user`, enrolled in `courses` (the first has two assignments due soon
/// and a grade).
pub fn answer_for(moodle: &FakeMoodle, user: i64, courses: &[FakeCourse], now: i64) {
    let uid = user.to_string();
    let list: Vec<Value> = courses.iter().map(|c| user_course(c, 30)).collect();
    moodle.reply(
        "core_enrol_get_users_courses",
        &[("userid", &uid)],
        Value::Array(list),
    );
    let mut events = Vec::new();
    if let Some(c) = courses.first() {
        events.push(due_event(
            1,
            c,
            "Exposé — le cycle de l'eau",
            now + 2 * 86_400,
        ));
        events.push(due_event(2, c, "Devoir 3 — fractions", now + 5 * 86_400));
    }
    moodle.reply(
        "core_calendar_get_action_events_by_timesort",
        &[("userid", &uid)],
        json!({"events": events, "firstid": 1, "lastid": events.len()}),
    );
    let grades: Vec<Value> = courses
        .iter()
        .enumerate()
        .map(|(i, c)| match i {
            0 => json!({"courseid": c.id, "grade": "15.50", "rawgrade": "15.50000"}),
            _ => json!({"courseid": c.id, "grade": "-", "rawgrade": null}),
        })
        .collect();
    moodle.reply(
        "gradereport_overview_get_course_grades",
        &[("userid", &uid)],
        json!({"grades": grades, "warnings": []}),
    );
}
