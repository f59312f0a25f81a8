//! The Moodle double answers like the real Moodle recorded in `shared/fixtures/moodle`: every
//! recorded request form of every function the double implements is sent to it, and the answer
//! is compared by SHAPE with the recording (same JSON types; same keys in objects, recursively;
//! list items like the recorded first item; for errors the same `exception` and `errorcode`).
//! Seed data differs from the recording lab, so values are not compared. In replay mode (what the
//! bot tests use) the same double answers each recorded case with exactly its recording.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use testkit::fake_moodle::{
    FakeCategory, FakeCohort, FakeCourse, FakeMoodle, FakeState, FakeUser, VOLATILE,
};

/// Functions the double implements.
const FUNCTIONS: &[&str] = &[
    "core_webservice_get_site_info",
    "core_user_create_users",
    "core_user_update_users",
    "core_user_get_users_by_field",
    "core_user_get_users",
    "core_user_delete_users",
    "core_cohort_create_cohorts",
    "core_cohort_get_cohorts",
    "core_cohort_add_cohort_members",
    "core_cohort_delete_cohort_members",
    "core_cohort_get_cohort_members",
    "core_role_assign_roles",
    "core_role_unassign_roles",
    "core_course_get_courses_by_field",
    "core_course_get_categories",
    "enrol_manual_enrol_users",
];

/// Cases the double does not model, with the reason.
const NOT_MODELLED: &[(&str, &str)] = &[
    ("nocap", "capabilities of a second token are not modelled"),
    ("xml_", "the double answers JSON only"),
    (
        "debug_",
        "debugging-on answers (debuginfo) are not modelled",
    ),
    ("error_weak_password", "the password policy is not modelled"),
    ("error_wrong_type", "PARAM types beyond ids are not checked"),
];

/// Moodle omits these user/course keys in JSON when they have no value: present on one side only is fine.
const OMITTED_WHEN_EMPTY: &[&str] = &[
    "idnumber",
    "institution",
    "department",
    "city",
    "country",
    "address",
    "phone1",
    "phone2",
    "customfields",
    "description",
    "descriptionformat",
    "preferences",
    "roles",
    "enrolledcourses",
    "interests",
    "url",
];

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Shape differences between the recorded `want` and the double's `got`.
fn shape(want: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    match (want, got) {
        // A recorded null (optional value) says nothing about the type.
        (Value::Null, _) if !path.is_empty() => {}
        (_, Value::Null) if !path.is_empty() => {}
        (Value::Object(w), Value::Object(g)) => {
            let wk: BTreeSet<&String> = w.keys().collect();
            let gk: BTreeSet<&String> = g.keys().collect();
            for k in wk.difference(&gk) {
                if !OMITTED_WHEN_EMPTY.contains(&k.as_str()) {
                    out.push(format!("{path}.{k}: missing in the double"));
                }
            }
            for k in gk.difference(&wk) {
                if !OMITTED_WHEN_EMPTY.contains(&k.as_str()) {
                    out.push(format!("{path}.{k}: not in the recording"));
                }
            }
            for k in wk.intersection(&gk) {
                shape(&w[*k], &g[*k], &format!("{path}.{k}"), out);
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            // Each item against the closest recorded item (a list can mix kinds, e.g. the site
            // course has no format options).
            for (i, item) in g.iter().enumerate() {
                let best = w
                    .iter()
                    .map(|rec| {
                        let mut d = Vec::new();
                        shape(rec, item, &format!("{path}[{i}]"), &mut d);
                        d
                    })
                    .min_by_key(Vec::len);
                out.extend(best.unwrap_or_default());
            }
        }
        (w, g) if type_name(w) != type_name(g) => out.push(format!(
            "{path}: {} recorded, {} from the double ({g})",
            type_name(w),
            type_name(g)
        )),
        _ => {}
    }
}

fn is_error(v: &Value) -> bool {
    v.as_object().is_some_and(|o| o.contains_key("exception"))
}

fn user(id: i64, username: &str, first: &str, last: &str, idnumber: &str) -> FakeUser {
    FakeUser {
        id,
        username: username.into(),
        firstname: first.into(),
        lastname: last.into(),
        email: format!("{username}@lab.example.test"),
        idnumber: idnumber.into(),
        institution: "Lycée Demo".into(),
        department: "Sciences".into(),
        auth: "manual".into(),
        ..Default::default()
    }
}

/// The recording lab's seed data (README "Seed data"), plus the `fx.*` users and `FX-COH-1`
/// cohort that earlier cases of a recording run had created.
fn seeded(function: &str, case: &str) -> FakeState {
    let mut st = FakeState::default();
    for u in [
        user(5, "teacher.durand", "Élodie", "Durand", "T-1001"),
        user(6, "teacher.smith", "John", "Smith", "T-1002"),
        user(7, "student.martin", "Léa", "Martin", "S-2001"),
        user(8, "student.bernard", "Hugo", "Bernard", "S-2002"),
        user(9, "student.nguyen", "Chloé", "Nguyen", "S-2003"),
        user(10, "student.oconnor", "Seán", "O'Connor", "S-2004"),
    ] {
        st.insert_user(u);
    }
    if function != "core_user_create_users" {
        for (id, name) in [
            (1868, "fx.alice"),
            (1869, "fx.b1"),
            (1870, "fx.b2"),
            (1871, "fx.b3"),
        ] {
            let mut u = user(id, name, "Fixture", name, "");
            u.email = format!("{name}@fixtures.example.test");
            st.insert_user(u);
        }
    }
    st.cohorts.insert(
        1,
        FakeCohort {
            id: 1,
            name: "Terminale G1 2024".into(),
            idnumber: "COH-TG1-2024".into(),
            description: "Lab cohort".into(),
        },
    );
    st.members.insert(1, [7, 8, 9].into());
    if !(function == "core_cohort_create_cohorts" && case.starts_with("success")) {
        st.cohorts.insert(
            11,
            FakeCohort {
                id: 11,
                name: "FX cohort 1".into(),
                idnumber: "FX-COH-1".into(),
                description: "Fixture cohort".into(),
            },
        );
        st.members.insert(11, [1869].into());
    }
    st.categories.push(FakeCategory {
        id: 2,
        name: "Lycée Demo".into(),
        idnumber: "LYC-DEMO".into(),
    });
    for (id, short, idn) in [
        (2, "MATH-TG1", "FR-LYC-2024-MATH-TG1"),
        (3, "PHYS101", ""),
        (4, "HIST2", ""),
    ] {
        st.courses.push(FakeCourse {
            id,
            shortname: short.into(),
            fullname: short.into(),
            idnumber: idn.into(),
            category: 2,
            visible: true,
            enddate: 0,
        });
    }
    st
}

async fn send(fake: &FakeMoodle, request: &Value) -> Value {
    let http = reqwest::Client::new();
    let url = format!("{}webservice/rest/server.php", fake.url);
    let params: Vec<(String, String)> = request
        .get("form")
        .or_else(|| request.get("query"))
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    // As recorded: the ws* parameters first, then the function's (the JSON map is sorted).
    let mut params = params;
    params.sort_by_key(|(k, _)| !k.starts_with("ws") && k != "moodlewsrestformat");
    let resp = if request["method"] == "GET" {
        http.get(&url).query(&params).send().await
    } else {
        http.post(&url).form(&params).send().await
    }
    .expect("request");
    assert_eq!(resp.status(), 200, "Moodle answers 200, errors included");
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(ct, "application/json");
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[tokio::test]
async fn every_recorded_case_of_every_implemented_function_has_the_recorded_shape() {
    let root = testkit::fixtures_dir().join("moodle");
    let mut problems = Vec::new();
    let mut checked = BTreeSet::new();
    for function in FUNCTIONS {
        let mut cases: Vec<_> = std::fs::read_dir(root.join(function))
            .unwrap_or_else(|e| panic!("{function}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        cases.sort();
        for path in cases {
            let case = path.file_stem().unwrap().to_str().unwrap().to_string();
            if NOT_MODELLED.iter().any(|(p, _)| case.contains(p)) {
                continue;
            }
            let fx: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let fake = FakeMoodle::start_with(seeded(function, &case)).await;
            let got = send(&fake, &fx["request"]).await;
            let want = &fx["response"]["body"];
            let name = format!("{function}/{case}");
            checked.insert(name.clone());
            if is_error(want) || is_error(&got) {
                for k in ["exception", "errorcode"] {
                    if want.get(k) != got.get(k) {
                        problems.push(format!(
                            "{name}: {k} recorded {:?}, double {:?}",
                            want.get(k),
                            got.get(k)
                        ));
                    }
                }
                continue;
            }
            if type_name(want) != type_name(&got) {
                problems.push(format!(
                    "{name}: {} recorded, {} from the double",
                    type_name(want),
                    type_name(&got)
                ));
                continue;
            }
            let mut diffs = Vec::new();
            shape(want, &got, "", &mut diffs);
            problems.extend(diffs.into_iter().map(|d| format!("{name}: {d}")));
            // Warnings must carry the recorded codes where the double sees the same situation.
            if let (Some(w), Some(g)) = (want.get("warnings"), got.get("warnings")) {
                let codes = |v: &Value| -> BTreeSet<String> {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x["warningcode"].as_str().map(str::to_string))
                        .collect()
                };
                if !codes(w).is_subset(&codes(g)) {
                    problems.push(format!(
                        "{name}: warning codes recorded {:?}, double {:?}",
                        codes(w),
                        codes(g)
                    ));
                }
            }
        }
    }
    assert!(
        checked.len() >= 70,
        "{} recorded cases checked",
        checked.len()
    );
    for must in [
        "core_user_create_users/success_batch3",
        "core_user_create_users/error_batch_duplicate_username",
        "core_user_update_users/batch_second_invalid_email",
        "core_user_update_users/unknown_user_id",
        "core_user_get_users_by_field/by_idnumber",
        "core_cohort_create_cohorts/success",
        "core_cohort_add_cohort_members/unknown_user_id",
        "core_cohort_add_cohort_members/already_member",
        "core_role_assign_roles/success_course_context",
        "core_role_unassign_roles/success",
        "core_course_get_courses_by_field/by_idnumber",
    ] {
        assert!(checked.contains(must), "{must} not checked");
    }
    assert!(
        problems.is_empty(),
        "{} difference(s) from the recordings:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Replay mode serves the recordings themselves: every JSON case made with the service token
/// (error, debugging and second-token cases are served only on request) comes back exactly as
/// recorded when its request is sent again, unless another recording has the same request.
#[tokio::test]
async fn replay_mode_answers_each_recorded_request_with_its_recording() {
    let root = testkit::fixtures_dir().join("moodle");
    // (function, selecting form) → the recorded (case, form, body) with that request.
    type Cases = Vec<(String, Vec<(String, String)>, Value)>;
    let mut by_request: BTreeMap<(String, BTreeMap<String, String>), Cases> = BTreeMap::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let name = file.file_stem().unwrap().to_string_lossy().to_string();
            if file.extension().is_none_or(|e| e != "json")
                || name.starts_with("error")
                || name.starts_with("debug")
                || name.contains("nocap")
            {
                continue;
            }
            let fx: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let Some(form) = fx.pointer("/request/form").and_then(Value::as_object) else {
                continue;
            };
            if fx["response"]["content_type"] != "application/json" || form["wstoken"] != "TOKEN" {
                continue;
            }
            let form: Vec<(String, String)> = form
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let function = form
                .iter()
                .find(|(k, _)| k == "wsfunction")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let selecting = form
                .iter()
                .filter(|(k, _)| !VOLATILE.contains(&k.as_str()))
                .cloned()
                .collect();
            let case = format!("{}/{name}", dir.file_name().unwrap().to_string_lossy());
            by_request.entry((function, selecting)).or_default().push((
                case,
                form,
                fx["response"]["body"].clone(),
            ));
        }
    }
    let fake = FakeMoodle::replaying().await;
    let http = reqwest::Client::new();
    let url = format!("{}webservice/rest/server.php", fake.url);
    let (mut checked, mut problems) = (BTreeSet::new(), Vec::new());
    for cases in by_request.values().filter(|c| c.len() == 1) {
        let (case, form, want) = &cases[0];
        let got: Value = http
            .post(&url)
            .form(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if &got != want {
            problems.push(format!("{case}: answered {got}"));
        }
        checked.insert(case.clone());
    }
    for must in [
        "core_enrol_get_users_courses/student",
        "gradereport_overview_get_course_grades/student",
        "mod_assign_get_assignments/by_courses_not_enrolled",
        "core_webservice_get_site_info/success",
    ] {
        assert!(checked.contains(must), "{must} not checked: {checked:?}");
    }
    assert!(
        problems.is_empty(),
        "{} of {} recordings answered otherwise:\n{}",
        problems.len(),
        checked.len(),
        problems.join("\n")
    );
    // Sent as recorded, so every one was counted and kept.
    assert_eq!(fake.total_calls(), checked.len() as u64);
    assert_eq!(fake.requests("core_webservice_get_site_info").len(), 1);
}
