//! Issue 20, the bot for parents: a parent asks about their children ("les devoirs de Léa", "mes
//! enfants", "grades of my son") and gets the child's answers; the children are those Moodle links
//! to them (the parent role in the child's user context, read through the parent-links report on
//! every question). Parent of one and of two children (picker), a child not linked (refused), a
//! pupil (never parent answers), both languages, against the Moodle double.

use serde_json::{json, Value};
use testkit::bot_app::*;
use testkit::fake_moodle::{FakeUser, ParentLinksReport};

const REPORT: i64 = 42;
const PARENT_ROLE: i64 = 11;
const TUTOR_ROLE: i64 = 12;
/// Recorded users: student.martin (Léa Martin) 7, student.bernard (Hugo Bernard) 8.
const LEA: i64 = 7;
const HUGO: i64 = 8;
const PAUL: i64 = 201; // Léa's father
const CLAIRE: i64 = 202; // mother of Léa and Hugo
const PAUL_AAD: &str = "aad00000-0000-4000-8000-00000000a201";
const CLAIRE_AAD: &str = "aad00000-0000-4000-8000-00000000a202";

fn user(id: i64, username: &str, first: &str, last: &str) -> FakeUser {
    FakeUser {
        id,
        username: username.into(),
        firstname: first.into(),
        lastname: last.into(),
        email: format!("{username}@example.test"),
        auth: "manual".into(),
        ..Default::default()
    }
}

async fn parents_app(report_on: bool) -> BotTestApp {
    let extra = if report_on {
        vec![
            ("BOT_PARENT_LINKS_REPORT".to_string(), REPORT.to_string()),
            ("BOT_PARENT_ROLE".to_string(), "parent".to_string()),
        ]
    } else {
        Vec::new()
    };
    let app = spawn_bot_app(BotAppOptions {
        extra,
        ..Default::default()
    })
    .await;
    {
        let mut st = app.moodle().lock();
        st.insert_user(user(LEA, "student.martin", "Léa", "Martin"));
        st.insert_user(user(HUGO, "student.bernard", "Hugo", "Bernard"));
        st.insert_user(user(PAUL, "paul.martin", "Paul", "Martin"));
        st.insert_user(user(CLAIRE, "claire.bernard", "Claire", "Bernard"));
        st.parent_links_report = Some(ParentLinksReport {
            id: REPORT,
            roles: [
                (PARENT_ROLE, "parent".to_string()),
                (TUTOR_ROLE, "tutor".to_string()),
            ]
            .into(),
        });
        for (role, who, child) in [
            (PARENT_ROLE, PAUL, LEA),
            (PARENT_ROLE, CLAIRE, LEA),
            (PARENT_ROLE, CLAIRE, HUGO),
            // Another role in a user context is no parent link.
            (TUTOR_ROLE, PAUL, HUGO),
        ] {
            st.role_assignments
                .insert((role, who, "user".into(), child));
        }
    }
    app.map_user(USER_AAD, LEA).await;
    app.map_user(PAUL_AAD, PAUL).await;
    app.map_user(CLAIRE_AAD, CLAIRE).await;
    // Hugo's grades (the recordings only hold Léa's): a value of his own, so a mix-up shows.
    app.moodle().reply(
        "gradereport_overview_get_course_grades",
        &[("userid", "8")],
        json!({"grades": [{"courseid": 3, "grade": "12.00", "rawgrade": "12.00000", "rank": null}], "warnings": []}),
    );
    app.moodle().reply(
        "core_enrol_get_users_courses",
        &[("userid", "8")],
        testkit::fake_moodle::FakeMoodle::fixture_body("core_enrol_get_users_courses/student.json"),
    );
    app
}

async fn ask(app: &BotTestApp, aad: &str, text: &str, locale: &str) -> Value {
    let su = app.service_url();
    let resp = app.post(&personal_message(&su, text, locale, aad)).await;
    assert_eq!(resp.status(), 200);
    app.sent_activities().await.pop().expect("a reply").1
}

/// A card button pressed (the `Action.Submit` fallback: a message whose value carries the verb).
async fn press(app: &BotTestApp, aad: &str, data: &Value, locale: &str) -> Value {
    let su = app.service_url();
    let mut a = personal_message(&su, "", locale, aad);
    a["value"] = data.clone();
    let resp = app.post(&a).await;
    assert_eq!(resp.status(), 200);
    app.sent_activities().await.pop().expect("a reply").1
}

fn card(reply: &Value) -> &Value {
    assert_eq!(
        reply["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive",
        "{reply:#}"
    );
    &reply["attachments"][0]["content"]
}

fn text(reply: &Value) -> String {
    reply["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a text reply: {reply:#}"))
        .to_string()
}

/// The `userid`s the answers' Moodle reads were about (the report reads excluded).
fn asked_about(app: &BotTestApp) -> Vec<String> {
    let mut ids: Vec<String> = [
        "core_enrol_get_users_courses",
        "core_calendar_get_action_events_by_timesort",
        "gradereport_overview_get_course_grades",
        "gradereport_user_get_grade_items",
    ]
    .iter()
    .flat_map(|f| app.moodle().requests(f))
    .filter_map(|p| p.get("userid").cloned())
    .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn forget_requests(app: &BotTestApp) {
    if let Some(r) = app.moodle().lock().recorded.as_mut() {
        r.clear();
    }
}

#[tokio::test]
async fn parent_of_one_child_gets_the_childs_answers_in_french_and_english() {
    let app = parents_app(true).await;
    let reply = ask(&app, PAUL_AAD, "les devoirs de Léa", "fr-FR").await;
    let c = card(&reply);
    assert_eq!(c["body"][0]["text"], "Devoirs à rendre", "{c:#}");
    assert_eq!(c["body"][1]["text"], "Pour Léa Martin");
    assert!(reply["summary"].as_str().unwrap().ends_with("— Léa Martin"));
    for a in c["actions"].as_array().unwrap() {
        if a["type"] == "Action.Execute" {
            assert_eq!(a["data"]["childId"], LEA, "{a}");
        }
    }
    assert_eq!(asked_about(&app), vec![LEA.to_string()]);
    // The filter of every read is the asker, set right before it.
    let filters = app.moodle().requests("core_reportbuilder_set_filters");
    assert_eq!(filters.len(), 1);
    let values: Value = serde_json::from_str(&filters[0]["values"]).unwrap();
    assert_eq!(
        values,
        json!({"user:userselect_operator": 2, "user:userselect_value": [PAUL]})
    );

    let reply = ask(&app, PAUL_AAD, "grades of my son", "en-US").await;
    let c = card(&reply);
    assert_eq!(c["body"][0]["text"], "Your grades");
    assert_eq!(c["body"][1]["text"], "For Léa Martin");
    assert!(c["body"][2]["facts"].to_string().contains("87.5"), "{c:#}");

    // "Mes enfants": only the parent role counts (Paul is Hugo's tutor, not his parent).
    let reply = ask(&app, PAUL_AAD, "mes enfants", "fr-FR").await;
    let c = card(&reply);
    assert_eq!(c["body"][0]["text"], "Vos enfants");
    let listed = c.to_string();
    assert!(
        listed.contains("Léa Martin") && !listed.contains("Hugo"),
        "{c:#}"
    );
    assert_eq!(c["actions"][0]["verb"], "child.menu");
    // Its button: what can be asked about Léa, every button keeping her.
    let reply = press(
        &app,
        PAUL_AAD,
        &c["actions"][0]["fallback"]["data"],
        "fr-FR",
    )
    .await;
    let c = card(&reply);
    assert_eq!(c["body"][0]["text"], "Léa Martin");
    let verbs: Vec<&str> = c["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["verb"].as_str().unwrap())
        .collect();
    assert_eq!(verbs, ["courses", "assignments", "grades"]);
    let reply = press(
        &app,
        PAUL_AAD,
        &c["actions"][0]["fallback"]["data"],
        "fr-FR",
    )
    .await;
    assert_eq!(card(&reply)["body"][0]["text"], "Vos cours");
    assert_eq!(card(&reply)["body"][1]["text"], "Pour Léa Martin");
}

#[tokio::test]
async fn parent_of_two_children_picks_one_then_gets_that_childs_answer() {
    let app = parents_app(true).await;
    for (text_asked, locale, title) in [
        (
            "notes de mon enfant",
            "fr-FR",
            "Pour lequel de vos enfants ?",
        ),
        (
            "grades of my children",
            "en-GB",
            "For which of your children?",
        ),
    ] {
        let reply = ask(&app, CLAIRE_AAD, text_asked, locale).await;
        let c = card(&reply);
        assert_eq!(c["body"][0]["text"], title, "{c:#}");
        let buttons: Vec<(String, String, i64)> = c["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["title"].as_str().unwrap().to_string(),
                    a["verb"].as_str().unwrap().to_string(),
                    a["data"]["childId"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            buttons,
            vec![
                ("Hugo Bernard".to_string(), "grades".to_string(), HUGO),
                ("Léa Martin".to_string(), "grades".to_string(), LEA),
            ]
        );
    }
    assert!(
        asked_about(&app).is_empty(),
        "no child's data before the pick"
    );

    // Hugo's button, as an invoke (answered in the HTTP response).
    let su = app.service_url();
    let mut inv = activity("invoke-adaptiveCard-action.json", &su);
    inv["from"]["aadObjectId"] = json!(CLAIRE_AAD);
    inv["value"]["action"]["verb"] = json!("grades");
    inv["value"]["action"]["data"] = json!({"childId": HUGO});
    let body: Value = app.post(&inv).await.json().await.unwrap();
    assert_eq!(body["statusCode"], 200, "{body:#}");
    assert_eq!(body["value"]["body"][0]["text"], "Vos notes");
    assert_eq!(body["value"]["body"][1]["text"], "Pour Hugo Bernard");
    let facts = body["value"]["body"][2]["facts"].to_string();
    assert!(
        facts.contains("12") && !facts.contains("87"),
        "Hugo's grade, not Léa's: {facts}"
    );
    assert_eq!(asked_about(&app), vec![HUGO.to_string()]);

    // Naming one of two children needs no picker.
    forget_requests(&app);
    let reply = ask(&app, CLAIRE_AAD, "What is due for Léa?", "en-US").await;
    let c = card(&reply);
    assert_eq!(c["body"][0]["text"], "Assignments due");
    assert_eq!(c["body"][1]["text"], "For Léa Martin");
    assert_eq!(asked_about(&app), vec![LEA.to_string()]);
}

#[tokio::test]
async fn a_parent_asking_about_a_child_not_linked_to_them_is_refused() {
    let app = parents_app(true).await;
    let said = text(&ask(&app, PAUL_AAD, "les notes de Hugo", "fr-FR").await);
    assert!(
        said.starts_with("Je ne trouve pas cet élève parmi les enfants rattachés"),
        "{said}"
    );
    assert!(
        said.contains("Léa Martin") && !said.contains("Hugo Bernard"),
        "{said}"
    );
    let said = text(&ask(&app, PAUL_AAD, "Hugo's homework", "en-US").await);
    assert!(
        said.starts_with("I cannot find this pupil among the children linked"),
        "{said}"
    );
    // A forged button with Hugo's id (button data is not trusted).
    let said = text(
        &press(
            &app,
            PAUL_AAD,
            &json!({"verb": "grades", "childId": HUGO}),
            "en-US",
        )
        .await,
    );
    assert!(said.starts_with("I cannot find this pupil"), "{said}");
    assert!(
        asked_about(&app).is_empty(),
        "nothing read about anyone: {:?}",
        asked_about(&app)
    );
}

#[tokio::test]
async fn a_pupil_never_gets_parent_answers() {
    let app = parents_app(true).await;
    // Léa names her classmate: she gets her own grades, never Hugo's.
    let reply = ask(&app, USER_AAD, "les notes de Hugo", "fr-FR").await;
    let c = card(&reply);
    assert_eq!(c["body"][0]["text"], "Vos notes");
    assert!(!c.to_string().contains("Pour "), "{c:#}");
    assert_eq!(asked_about(&app), vec![LEA.to_string()]);
    for (t, locale, expected) in [
        (
            "mes enfants",
            "fr-FR",
            "Aucun enfant n'est rattaché à votre compte Moodle",
        ),
        (
            "grades of my son",
            "en-US",
            "No child is linked to your Moodle account",
        ),
    ] {
        let said = text(&ask(&app, USER_AAD, t, locale).await);
        assert!(said.starts_with(expected), "{said}");
    }
    let said = text(
        &press(
            &app,
            USER_AAD,
            &json!({"verb": "grades", "childId": HUGO}),
            "fr-FR",
        )
        .await,
    );
    assert!(said.starts_with("Aucun enfant"), "{said}");
    assert_eq!(asked_about(&app), vec![LEA.to_string()]);
}

#[tokio::test]
async fn the_link_is_read_in_moodle_on_every_question() {
    let app = parents_app(true).await;
    let reply = ask(&app, PAUL_AAD, "notes de mon fils", "fr-FR").await;
    assert_eq!(card(&reply)["body"][1]["text"], "Pour Léa Martin");
    // Another bot instance moved the shared report filter between our two calls: the rows are
    // about Claire, so the read is repeated and Paul still only sees Léa.
    app.moodle().lock().report_filter_race = Some(CLAIRE);
    let reply = ask(&app, PAUL_AAD, "mes enfants", "fr-FR").await;
    let listed = card(&reply).to_string();
    assert!(
        listed.contains("Léa Martin") && !listed.contains("Hugo"),
        "{listed}"
    );
    assert_eq!(
        app.moodle()
            .requests("core_reportbuilder_retrieve_report")
            .len(),
        3
    );
    // The link is removed in Moodle: the very next question is refused.
    app.moodle()
        .lock()
        .role_assignments
        .remove(&(PARENT_ROLE, PAUL, "user".into(), LEA));
    let said = text(&ask(&app, PAUL_AAD, "notes de mon fils", "fr-FR").await);
    assert!(said.starts_with("Aucun enfant"), "{said}");
}

#[tokio::test]
async fn without_the_report_setting_parents_are_told_and_pupils_unchanged() {
    let app = parents_app(false).await;
    let said = text(&ask(&app, PAUL_AAD, "mes enfants", "fr-FR").await);
    assert!(
        said.starts_with("Les réponses aux parents ne sont pas activées"),
        "{said}"
    );
    let reply = ask(&app, USER_AAD, "les devoirs de Physique", "fr-FR").await;
    assert_eq!(card(&reply)["body"][0]["text"], "Devoirs à rendre");
    assert_eq!(
        app.moodle().calls().get("core_reportbuilder_set_filters"),
        None
    );
}
