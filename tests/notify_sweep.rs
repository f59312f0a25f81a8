//! `NotifySweep` (issue 19 item 3): the pull timer reads due assignments, fresh grades and
//! announcements through web services and queues each once, as the notifications the webhook
//! takes; they are then delivered like any other.

use bridge::notify::deliveries;
use bridge::notify::queue::NotifyMessage;
use serde_json::{json, Value};
use testkit::bot_app::now;
use testkit::notify_app::{conversation_of, spawn_notify_app, NotifyTestApp};

fn script_course(app: &NotifyTestApp, t: i64) {
    let m = app.app.moodle();
    m.reply(
        "mod_assign_get_assignments",
        &[("courseids[0]", "2")],
        json!({"courses": [{"id": 2, "fullname": "Mathématiques TG1", "shortname": "MATH-TG1", "assignments": [
            {"id": 11, "cmid": 41, "course": 2, "name": "Devoir maison 3", "duedate": t + 10 * 3600, "nosubmissions": 0},
            {"id": 12, "cmid": 42, "course": 2, "name": "Exposé", "duedate": t + 100 * 3600, "nosubmissions": 0},
            {"id": 13, "cmid": 43, "course": 2, "name": "Ancien devoir", "duedate": t - 3600, "nosubmissions": 0}
        ]}], "warnings": []}),
    );
    let item = |id: i64, graded: Value, hidden: bool| {
        json!({"id": id, "itemname": format!("Contrôle {id}"), "itemtype": "mod", "cmid": 40 + id,
               "graderaw": 15.5, "gradeformatted": "15,50", "grademax": 20, "gradeishidden": hidden,
               "gradehiddenbydate": false, "gradedategraded": graded})
    };
    m.reply(
        "gradereport_user_get_grade_items",
        &[("courseid", "2")],
        json!({"usergrades": [
            {"courseid": 2, "userid": 7, "gradeitems": [item(21, json!(t - 3600), false), item(22, json!(t - 200 * 3600), false)]},
            {"courseid": 2, "userid": 8, "gradeitems": [item(21, json!(t - 1800), true), item(23, Value::Null, false)]}
        ], "warnings": []}),
    );
    m.reply(
        "mod_forum_get_forums_by_courses",
        &[("courseids[0]", "2")],
        json!([{"id": 9, "course": 2, "type": "news", "name": "Annonces"}, {"id": 10, "course": 2, "type": "general", "name": "Forum"}]),
    );
    m.reply(
        "mod_forum_get_forum_discussions",
        &[("forumid", "9")],
        json!({"discussions": [
            {"id": 301, "discussion": 31, "name": "Sortie au musée", "message": "<p>Rendez-vous&nbsp;à 9 h</p>", "created": t - 3600},
            {"id": 300, "discussion": 30, "name": "Bienvenue", "message": "<p>Bonne année</p>", "created": t - 10 * 86400}
        ], "warnings": []}),
    );
    m.reply(
        "core_enrol_get_enrolled_users",
        &[("courseid", "2")],
        json!([{"id": 7, "fullname": "Léa Martin", "roles": [{"roleid": 5, "shortname": "student"}]},
               {"id": 8, "fullname": "Tom Bernard", "roles": [{"roleid": 5, "shortname": "student"}]}]),
    );
}

async fn sweep(app: &NotifyTestApp) -> Vec<NotifyMessage> {
    let ctx = bridge::host::functions::InvocationContext {
        invocation_id: bridge::ids::InvocationId::new("test").unwrap(),
        function: "NotifySweep",
    };
    let timer = bridge::host::TimerInfo {
        is_past_due: false,
        last: None,
        next: None,
    };
    let out = bridge::notify::sweep::on_timer(app.state(), &ctx, timer)
        .await
        .unwrap();
    out.queue
        .iter()
        .map(|(q, b)| {
            assert_eq!(q, "notify");
            serde_json::from_str(b).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn due_assignments_fresh_grades_and_announcements_are_queued_once_and_delivered() {
    let app = spawn_notify_app(vec![
        ("NOTIFY_SWEEP_COURSES".into(), "2".into()),
        ("NOTIFY_DUE_WINDOW_HOURS".into(), "48".into()),
    ])
    .await;
    script_course(&app, now());
    let first = sweep(&app).await;
    let ids: Vec<String> = first
        .iter()
        .map(|m| match m {
            NotifyMessage::Fanout { notification } => notification.id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        ids.iter().any(|i| i.starts_with("sweep:assign-due:11:")),
        "{ids:?}"
    );
    assert!(
        ids.iter().any(|i| i.starts_with("sweep:grade:21:7:")),
        "{ids:?}"
    );
    assert!(ids.iter().any(|i| i == "sweep:news:31"), "{ids:?}");
    assert!(sweep(&app).await.is_empty(), "each reminder is queued once");

    app.add_user(7, Some("fr-FR")).await;
    app.add_user(8, Some("en-US")).await;
    let drained = app.drain(first, 8).await;
    assert!(drained.poisoned.is_empty(), "{:?}", drained.poisoned);
    let kinds = |id: i64| -> Vec<String> {
        app.connector
            .sends_to(&conversation_of(id))
            .iter()
            .map(|a| {
                a["attachments"][0]["content"]["body"][0]["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let mut lea = kinds(7);
    lea.sort();
    assert_eq!(lea, ["Annonce", "Devoir à rendre", "Nouvelle note"]);
    let mut tom = kinds(8);
    tom.sort();
    assert_eq!(
        tom,
        ["Announcement", "Assignment due"],
        "no grade for Tom: his is hidden"
    );
    let news = app.connector.sends_to(&conversation_of(7));
    let text = serde_json::to_string(&news).unwrap();
    assert!(
        text.contains("Rendez-vous à 9 h"),
        "HTML turned into text: {text}"
    );
}

#[tokio::test]
async fn without_courses_the_sweep_does_nothing() {
    let app = spawn_notify_app(vec![]).await;
    assert!(sweep(&app).await.is_empty());
    assert_eq!(app.app.moodle().total_calls(), 0);
}

/// Every sweep expires delivery rows older than NOTIFY_RETENTION_DAYS (courses swept or not):
/// a delivered notification's row goes once it is old, a recent one stays and still stops a
/// second delivery.
#[tokio::test]
async fn the_sweep_expires_old_delivery_rows() {
    use bridge::store::tables::DELIVERIES;
    use bridge::store::Entity;
    let app = spawn_notify_app(vec![("NOTIFY_RETENTION_DAYS".into(), "7".into())]).await;
    let store = &app.app.store;
    let now = now();
    for (key, age_days) in [("old", 8), ("recent", 6)] {
        let row = Entity::new(
            deliveries::PARTITION,
            deliveries::key(&format!("n-{key}"), "user:1"),
        )
        .with("state", "sent")
        .with("at", now - age_days * 86_400);
        store.upsert(DELIVERIES, &row).await.unwrap();
    }
    assert!(sweep(&app).await.is_empty());
    assert_eq!(
        deliveries::state(store, "n-old", "user:1").await.unwrap(),
        None
    );
    assert_eq!(
        deliveries::state(store, "n-recent", "user:1")
            .await
            .unwrap()
            .map(|s| s.0),
        Some("sent".into())
    );
}
