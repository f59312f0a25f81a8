//! Every fixture activity, conversations in French and English against the Moodle double, the
//! teacher question, user mapping, and proactive sends from Store references after a restart.

use serde_json::{json, Value};
use testkit::bot_app::*;
use testkit::fake_moodle::FakeMoodle;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

async fn last_reply(app: &BotTestApp) -> (String, Value, String) {
    app.sent_activities().await.pop().expect("a reply was sent")
}

fn card_of(activity: &Value) -> &Value {
    assert_eq!(
        activity["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive",
        "{activity:#}"
    );
    assert!(activity.get("text").is_none(), "no text beside a card");
    let card = &activity["attachments"][0]["content"];
    assert_eq!(card["version"], "1.5");
    assert_eq!(card["type"], "AdaptiveCard");
    card
}

fn card_text(card: &Value) -> String {
    card.to_string()
}

async fn mapped_app() -> BotTestApp {
    let app = spawn_bot_app(BotAppOptions::default()).await;
    app.map_user(USER_AAD, 7).await;
    app.map_user(TEACHER_AAD, 5).await;
    app
}

#[tokio::test]
async fn grades_in_french_and_english() {
    let app = mapped_app().await;
    let su = app.service_url();
    let resp = app.post(&activity("message-personal.json", &su)).await; // "mes notes", fr-FR
    assert_eq!(resp.status(), 200);
    let (path, reply, auth) = last_reply(&app).await;
    assert_eq!(
        path,
        "/emea/v3/conversations/a%3A1personal-conversation/activities/1700000000001"
    );
    assert_eq!(auth, format!("Bearer {ACCESS_TOKEN}"));
    assert_eq!(reply["replyToId"], "1700000000001");
    assert_eq!(reply["locale"], "fr-FR");
    let card = card_of(&reply);
    assert_eq!(card["body"][0]["text"], "Vos notes");
    let facts = &card["body"][1]["facts"];
    assert!(
        facts
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["title"] == "Physics 101" && f["value"] == "87,5"),
        "{facts}"
    );
    assert!(
        facts
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["value"] == "pas encore noté"),
        "{facts}"
    );
    assert!(card_text(card).contains("/grade/report/overview/index.php"));
    // Suggested actions so nobody has to guess phrasing (personal chat).
    assert_eq!(
        reply["suggestedActions"]["actions"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let resp = app
        .post(&personal_message(&su, "my grades", "en-US", USER_AAD))
        .await;
    assert_eq!(resp.status(), 200);
    let (_, reply, _) = last_reply(&app).await;
    let card = card_of(&reply);
    assert_eq!(card["body"][0]["text"], "Your grades");
    assert!(card["body"][1]["facts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["value"] == "87.5"));
    assert_eq!(
        reply["suggestedActions"]["actions"][2]["title"],
        "My grades"
    );
}

#[tokio::test]
async fn courses_with_links_back_to_moodle_and_typos() {
    let app = mapped_app().await;
    let su = app.service_url();
    app.post(&personal_message(&su, "mes cuors", "fr-FR", USER_AAD))
        .await;
    let (_, reply, _) = last_reply(&app).await;
    let card = card_of(&reply);
    assert_eq!(card["body"][0]["text"], "Vos cours");
    let text = card_text(card);
    assert!(
        text.contains(&format!("{}/course/view.php?id=2", app.moodle().base_url())),
        "{text}"
    );
    assert!(text.contains("Physics 101"));
    app.post(&personal_message(
        &su,
        "Which courses am I enrolled in?",
        "en-GB",
        USER_AAD,
    ))
    .await;
    let (_, reply, _) = last_reply(&app).await;
    assert_eq!(card_of(&reply)["body"][0]["text"], "Your courses");
}

/// The recorded calendar answer moved to "now": one item due in 2 days, one overdue, one in 10 days.
fn events_around_now() -> Value {
    let mut body = FakeMoodle::fixture_body(
        "core_calendar_get_action_events_by_timesort/student_upcoming.json",
    );
    let n = now();
    let events = body["events"].as_array_mut().unwrap();
    let mut overdue = events[0].clone();
    overdue["id"] = json!(99);
    overdue["activityname"] = json!("Exercices p. 112");
    overdue["timesort"] = json!(n - 86_400);
    overdue["overdue"] = json!(true);
    events[0]["timesort"] = json!(n + 2 * 86_400);
    events[1]["timesort"] = json!(n + 10 * 86_400);
    events.push(overdue);
    body
}

#[tokio::test]
async fn assignments_due_soon_and_overdue_both_languages() {
    let app = mapped_app().await;
    app.moodle().reply(
        "core_calendar_get_action_events_by_timesort",
        &[("userid", "7")],
        events_around_now(),
    );
    let su = app.service_url();
    app.post(&personal_message(&su, "mes devoirs", "fr-FR", USER_AAD))
        .await;
    let (_, reply, _) = last_reply(&app).await;
    let card = card_of(&reply);
    assert_eq!(card["body"][0]["text"], "Devoirs à rendre");
    let facts = card["body"][1]["facts"].as_array().unwrap();
    assert_eq!(
        facts.len(),
        2,
        "the item due in 10 days is outside the 7-day window: {facts:?}"
    );
    assert!(facts[0]["title"]
        .as_str()
        .unwrap()
        .starts_with("Exercices p. 112"));
    assert!(
        facts[0]["value"]
            .as_str()
            .unwrap()
            .starts_with("⚠ EN RETARD"),
        "overdue first and flagged"
    );
    assert!(facts[1]["title"]
        .as_str()
        .unwrap()
        .starts_with("Devoir 1 — Fonctions"));
    assert!(facts[1]["value"]
        .as_str()
        .unwrap()
        .starts_with("à rendre le"));
    assert!(
        card_text(card).contains("/mod/assign/view.php?id=4"),
        "links back to Moodle"
    );
    let calls = app
        .moodle()
        .requests("core_calendar_get_action_events_by_timesort");
    assert_eq!(calls.last().unwrap()["userid"], "7");

    app.post(&personal_message(
        &su,
        "what's due soon?",
        "en-US",
        USER_AAD,
    ))
    .await;
    let (_, reply, _) = last_reply(&app).await;
    let card = card_of(&reply);
    assert_eq!(card["body"][0]["text"], "Assignments due");
    assert!(card["body"][1]["facts"][0]["value"]
        .as_str()
        .unwrap()
        .starts_with("⚠ OVERDUE"));
}

#[tokio::test]
async fn channel_mention_is_stripped_and_answered_in_thread() {
    let app = mapped_app().await;
    app.moodle().reply(
        "core_calendar_get_action_events_by_timesort",
        &[("userid", "7")],
        events_around_now(),
    );
    let su = app.service_url();
    let resp = app
        .post(&activity("message-channel-mention.json", &su))
        .await; // "<at>Moodle</at> devoirs de la semaine"
    assert_eq!(resp.status(), 200);
    let (path, reply, _) = last_reply(&app).await;
    assert_eq!(
        path,
        "/emea/v3/conversations/19%3Achannel-1%40thread.tacv2%3Bmessageid%3D1700000000001/activities/1700000000001"
    );
    assert_eq!(card_of(&reply)["body"][0]["text"], "Devoirs à rendre");
    assert!(
        reply.get("suggestedActions").is_none(),
        "suggested actions are personal-chat only"
    );
    let rows = app.conversation_rows("channel").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].str("conversation_id"),
        Some("19:channel-1@thread.tacv2")
    );
    assert_eq!(rows[0].str("team_id"), Some("19:team-1@thread.tacv2"));
}

#[tokio::test]
async fn help_and_not_understood_offer_buttons() {
    let app = mapped_app().await;
    let su = app.service_url();
    app.post(&personal_message(&su, "aide", "fr-FR", USER_AAD))
        .await;
    let (_, reply, _) = last_reply(&app).await;
    let card = card_of(&reply);
    assert!(card["body"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("Bonjour"));
    assert_eq!(card["actions"].as_array().unwrap().len(), 3);
    assert_eq!(card["actions"][0]["type"], "Action.Execute");
    assert_eq!(card["actions"][0]["fallback"]["type"], "Action.Submit");
    app.post(&personal_message(&su, "blorp zzz", "en-US", USER_AAD))
        .await;
    let (_, reply, _) = last_reply(&app).await;
    assert!(card_of(&reply)["body"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("Sorry, I did not understand"));
    // A locale that is neither French nor English falls back to BOT_DEFAULT_LOCALE (fr).
    app.post(&personal_message(&su, "help", "de-DE", USER_AAD))
        .await;
    let (_, reply, _) = last_reply(&app).await;
    assert_eq!(reply["locale"], "fr-FR");
    // The Action.Submit fallback arrives as a message whose value carries the verb.
    let mut submit = personal_message(&su, "", "en-US", USER_AAD);
    submit.as_object_mut().unwrap().remove("text");
    submit["value"] = json!({"verb": "courses"});
    app.post(&submit).await;
    let (_, reply, _) = last_reply(&app).await;
    assert_eq!(card_of(&reply)["body"][0]["text"], "Your courses");
}

#[tokio::test]
async fn invoke_adaptive_card_action_answers_in_the_http_response() {
    let app = mapped_app().await;
    app.moodle().reply(
        "core_calendar_get_action_events_by_timesort",
        &[("userid", "7")],
        events_around_now(),
    );
    let su = app.service_url();
    let resp = app
        .post(&activity("invoke-adaptiveCard-action.json", &su))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let expected = testkit::fixture_json("botframework/invoke-adaptiveCard-action.response.json");
    assert_eq!(body["statusCode"], expected["statusCode"]);
    assert_eq!(body["type"], expected["type"]);
    assert_eq!(body["value"]["version"], "1.5");
    let title = body["value"]["body"][0]["text"].as_str().unwrap();
    assert!(
        title.starts_with("Devoirs à rendre - Mathématiques"),
        "{title}"
    );
    assert_eq!(body["value"]["actions"][0]["verb"], "assignments.refresh");
    assert_eq!(body["value"]["actions"][0]["data"]["courseId"], 2);
    assert!(
        app.sent_activities().await.is_empty(),
        "an invoke is answered inline, not by a reply"
    );

    let mut bad = activity("invoke-adaptiveCard-action.json", &su);
    bad["value"]["action"]["verb"] = json!("self.destruct");
    let body: Value = app.post(&bad).await.json().await.unwrap();
    assert_eq!(body["statusCode"], 400);
    assert_eq!(body["type"], "application/vnd.microsoft.error");
}

#[tokio::test]
async fn installation_and_conversation_updates_store_and_delete_references() {
    let app = mapped_app().await;
    let su = app.service_url();
    assert_eq!(
        app.post(&activity("installationUpdate-add.json", &su))
            .await
            .status(),
        200
    );
    let rows = app.conversation_rows("user").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].row_key, USER_AAD);
    assert_eq!(
        rows[0].str("conversation_id"),
        Some("a:1personal-conversation")
    );
    assert_eq!(rows[0].str("service_url"), Some(su.as_str()));
    assert_eq!(rows[0].str("tenant_id"), Some(TENANT_ID));
    assert_eq!(rows[0].str("user_id"), Some("29:1user-teams-id"));
    assert_eq!(
        app.post(&activity("installationUpdate-remove.json", &su))
            .await
            .status(),
        200
    );
    assert!(app.conversation_rows("user").await.is_empty());

    assert_eq!(
        app.post(&activity("conversationUpdate-team-membersAdded.json", &su))
            .await
            .status(),
        200
    );
    let rows = app.conversation_rows("team").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].str("team_name"), Some("3e B - Mathématiques"));
    assert_eq!(
        rows[0].str("conversation_id"),
        Some("19:team-1@thread.tacv2")
    );
    let mut removed = activity("conversationUpdate-team-membersAdded.json", &su);
    removed["membersRemoved"] = removed["membersAdded"].take();
    removed.as_object_mut().unwrap().remove("membersAdded");
    removed["channelData"]["eventType"] = json!("teamMemberRemoved");
    assert_eq!(app.post(&removed).await.status(), 200);
    assert!(app.conversation_rows("team").await.is_empty());

    // Other activity types are acknowledged and ignored.
    let mut typing = activity("message-personal.json", &su);
    typing["type"] = json!("typing");
    assert_eq!(app.post(&typing).await.status(), 200);
    assert!(app.sent_activities().await.is_empty());
}

async fn mount_roster(app: &BotTestApp, email: &str) {
    Mock::given(method("GET"))
        .and(path_regex(r"^/emea/v3/conversations/[^/]+/members/[^/]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "29:1user-teams-id", "email": email, "userPrincipalName": email, "aadObjectId": USER_AAD})))
        .mount(&app.connector)
        .await;
}

#[tokio::test]
async fn unmapped_user_found_by_email_and_unknown_user_gets_a_polite_message() {
    let app = spawn_bot_app(BotAppOptions::default()).await;
    let su = app.service_url();
    mount_roster(&app, "Student.Nguyen@lab.example.test").await;
    app.moodle().reply(
        "gradereport_overview_get_course_grades",
        &[("userid", "9")],
        json!({"grades": [{"courseid": 3, "grade": "12.00", "rawgrade": "12.00000"}], "warnings": []}),
    );
    app.moodle().reply(
        "core_enrol_get_users_courses",
        &[("userid", "9")],
        FakeMoodle::fixture_body("core_enrol_get_users_courses/student.json"),
    );
    app.post(&activity("message-personal.json", &su)).await;
    let (_, reply, _) = last_reply(&app).await;
    let card = card_of(&reply);
    assert_eq!(card["body"][1]["facts"][0]["value"], "12");
    let lookups = app.moodle().requests("core_user_get_users_by_field");
    assert_eq!(lookups[0]["field"], "email");
    assert_eq!(lookups[0]["values[0]"], "student.nguyen@lab.example.test");

    // Somebody Moodle does not know: a clear message, not an error.
    let app = spawn_bot_app(BotAppOptions::default()).await;
    let su = app.service_url();
    mount_roster(&app, "nobody@lab.example.test").await;
    // Values that match nothing are simply absent (fixture core_user_get_users_by_field/not_found).
    app.moodle().reply(
        "core_user_get_users_by_field",
        &[],
        FakeMoodle::fixture_body("core_user_get_users_by_field/not_found.json"),
    );
    let resp = app
        .post(&personal_message(&su, "my grades", "en-US", "aad-unknown"))
        .await;
    assert_eq!(resp.status(), 200);
    let (_, reply, _) = last_reply(&app).await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("I cannot find your Moodle account"),
        "{reply}"
    );
}

fn teacher_setup(app: &BotTestApp) {
    let m = app.moodle();
    let courses = FakeMoodle::fixture_body("core_enrol_get_users_courses/student.json");
    m.reply(
        "core_enrol_get_users_courses",
        &[("userid", "5")],
        json!([courses[1].clone()]),
    );
    let mut assignments =
        FakeMoodle::fixture_body("mod_assign_get_assignments/by_courses_not_enrolled.json");
    assignments["courses"].as_array_mut().unwrap().truncate(1);
    m.reply(
        "mod_assign_get_assignments",
        &[("courseids[0]", "2")],
        assignments,
    );
    m.reply(
        "mod_assign_get_submissions",
        &[("assignmentids[0]", "1")],
        json!({"assignments": [{"assignmentid": 1, "submissions": [
            {"id": 1, "userid": 7, "status": "submitted"}, {"id": 2, "userid": 8, "status": "new"}]}], "warnings": []}),
    );
}

#[tokio::test]
async fn teacher_asks_who_has_not_submitted() {
    let app = mapped_app().await;
    teacher_setup(&app);
    let su = app.service_url();
    app.post(&personal_message(
        &su,
        "Qui n'a pas rendu le devoir 1 fonctions ?",
        "fr-FR",
        TEACHER_AAD,
    ))
    .await;
    let (_, reply, _) = last_reply(&app).await;
    let card = card_of(&reply);
    let text = card_text(card);
    assert!(
        card["body"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("N'ont pas rendu — Devoir 1 — Fonctions"),
        "{text}"
    );
    assert!(text.contains("Hugo Bernard"), "{text}");
    assert!(
        !text.contains("Léa Martin"),
        "submitted students are not listed: {text}"
    );
    assert!(!text.contains("Élodie Durand"), "teachers are not listed");
    assert!(text.contains("/mod/assign/view.php?id=4&action=grading"));

    // Without a name, the teacher picks from buttons.
    app.post(&personal_message(
        &su,
        "who has not submitted?",
        "en-US",
        TEACHER_AAD,
    ))
    .await;
    let (_, reply, _) = last_reply(&app).await;
    let card = card_of(&reply);
    assert_eq!(card["body"][0]["text"], "Which assignment?");
    assert_eq!(card["actions"][0]["verb"], "missing.assignment");

    // A student asking gets no list.
    let student_courses = FakeMoodle::fixture_body("core_enrol_get_users_courses/student.json");
    app.moodle().reply(
        "core_enrol_get_users_courses",
        &[("userid", "7")],
        json!([student_courses[1].clone()]),
    );
    app.post(&personal_message(
        &su,
        "who has not submitted Devoir 1",
        "en-US",
        USER_AAD,
    ))
    .await;
    let (_, reply, _) = last_reply(&app).await;
    assert_eq!(
        reply["text"],
        "Only the course's teachers can see this list."
    );
}

#[tokio::test]
async fn proactive_send_after_restart_uses_store_references() {
    let first = spawn_bot_app(BotAppOptions::default()).await;
    let su = first.service_url();
    assert_eq!(
        first
            .post(&activity("installationUpdate-add.json", &su))
            .await
            .status(),
        200
    );

    // A new process on the same store: nothing in memory, the reference comes from SQLite.
    let second = spawn_bot_app_in(
        BotAppOptions {
            sqlite_path: Some(first.sqlite_path.clone()),
            extra: vec![("BOT_TRUSTED_SERVICE_URLS".into(), first.connector.uri())],
            ..Default::default()
        },
        first.dir.clone(),
    )
    .await;
    let bot = second.state.bot.as_ref().unwrap();
    let msg = json!({"type": "message", "text": "Nouveau devoir publié"});
    let sent = bot
        .send_proactive(
            &second.store,
            bridge::bot::conversations::ConversationKind::User,
            USER_AAD,
            &msg,
        )
        .await
        .expect("proactive send");
    assert_eq!(sent.id.as_deref(), Some("sent-1"));
    let (path, body, auth) = last_reply(&first).await;
    assert_eq!(
        path,
        "/emea/v3/conversations/a%3A1personal-conversation/activities"
    );
    assert_eq!(body["text"], "Nouveau devoir publié");
    assert_eq!(auth, format!("Bearer {ACCESS_TOKEN}"));
}

#[tokio::test]
async fn connector_403_removes_the_reference_and_429_is_retried() {
    let app = spawn_bot_app(BotAppOptions::default()).await;
    let su = app.service_url();
    assert_eq!(
        app.post(&activity("installationUpdate-add.json", &su))
            .await
            .status(),
        200
    );
    let bot = app.state.bot.as_ref().unwrap();
    let user = bridge::bot::conversations::ConversationKind::User;
    let msg = json!({"type": "message", "text": "hello"});

    // 429 once (Retry-After: 0), then success.
    Mock::given(method("POST"))
        .and(path_regex(r"/activities$"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "0")
                .set_body_json(testkit::fixture_json("botframework/connector-429.json")),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.connector)
        .await;
    bot.send_proactive(&app.store, user, USER_AAD, &msg)
        .await
        .expect("retried after 429");
    assert_eq!(app.sent_activities().await.len(), 2);

    // 403 is permanent: no retry, and the reference is gone.
    Mock::given(method("POST"))
        .and(path_regex(r"/activities$"))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(testkit::fixture_json(
                "botframework/connector-error-403-message-writes-blocked.json",
            )),
        )
        .with_priority(1)
        .mount(&app.connector)
        .await;
    let err = bot
        .send_proactive(&app.store, user, USER_AAD, &msg)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("MessageWritesBlocked"), "{err}");
    assert_eq!(app.sent_activities().await.len(), 3);
    assert!(app.conversation_rows("user").await.is_empty());
    assert!(matches!(
        bot.send_proactive(&app.store, user, USER_AAD, &msg).await,
        Err(bridge::bot::ProactiveError::NoReference(..))
    ));
}
