//! `NotifySweep` (issue 19's pull timer) against the real Moodle of `../shared/moodle-lab`, not
//! the double: a fresh course made by `tests/moodle-lab/sweep.php` (Moodle's own data generator)
//! with an assignment due inside the window, one due after it, and two announcements, one older
//! than the window. The sweep queues the due assignment and the fresh announcement once; a
//! second sweep queues nothing new. Also confirms on the real Moodle that the forum sort order
//! the bridge sends (3) lists the newest discussion first.
//!
//! Real-Moodle tests share the lab's SMTP port: run them one binary at a time.

use bridge::app::AppState;
use bridge::config::Source;
use bridge::notify::queue::NotifyMessage;
use bridge::notify::schema::{Kind, Notification, Recipients};
use bridge::settings::Settings;
use testkit::moodle_lab::{lab, unique_prefix};

const WINDOW_HOURS: i64 = 24;

async fn state_for(course: i64, dir: &std::path::Path) -> AppState {
    bridge::install_crypto_provider();
    let l = lab();
    let map: std::collections::BTreeMap<String, String> = [
        ("MOODLE_URL", l.url.clone()),
        ("MOODLE_TOKEN", l.token().to_string()),
        ("NOTIFY_SWEEP_COURSES", course.to_string()),
        ("NOTIFY_DUE_WINDOW_HOURS", WINDOW_HOURS.to_string()),
        ("SQLITE_PATH", dir.join("b.sqlite").display().to_string()),
        ("BLOB_DIR", dir.join("blobs").display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let settings = Settings::load(&mut Source::from_map(map)).expect("settings");
    let state = AppState::build(settings, false).await.expect("state");
    state.store.ensure_tables().await.unwrap();
    state
}

async fn sweep(state: &AppState) -> Vec<Notification> {
    let ctx = bridge::host::functions::InvocationContext {
        invocation_id: bridge::ids::InvocationId::new("sweep-real").unwrap(),
        function: "NotifySweep",
    };
    let timer = bridge::host::TimerInfo {
        is_past_due: false,
        last: None,
        next: None,
    };
    let out = bridge::notify::sweep::on_timer(state, &ctx, timer)
        .await
        .unwrap_or_else(|e| panic!("NotifySweep against the lab: {e}"));
    out.queue
        .iter()
        .map(|(q, body)| {
            assert_eq!(q, "notify");
            match serde_json::from_str(body).unwrap() {
                NotifyMessage::Fanout { notification } => notification,
                other => panic!("the sweep queues fan-outs only: {other:?}"),
            }
        })
        .collect()
}

#[tokio::test]
async fn the_sweep_queues_a_real_due_assignment_and_announcement_once() {
    let l = lab();
    // A course of its own per run: the store is fresh each run, the lab is not.
    let shortname = unique_prefix("sweep").to_ascii_uppercase();
    let made = l.php_json(
        "sweep.php",
        &[format!("--shortname={shortname}"), "--duehours=5".into()],
    );
    let course = made["course"].as_i64().unwrap();
    let soon = &made["soon"];
    let newer = made["newer"]["id"].as_i64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = state_for(course, dir.path()).await;

    let first = sweep(&state).await;
    let mut ids: Vec<&str> = first.iter().map(|n| n.id.as_str()).collect();
    ids.sort();
    let due_id = format!(
        "sweep:assign-due:{}:{}",
        soon["id"].as_i64().unwrap(),
        soon["duedate"].as_i64().unwrap()
    );
    let news_id = format!("sweep:news:{newer}");
    let mut want = vec![due_id.as_str(), news_id.as_str()];
    want.sort();
    assert_eq!(
        ids, want,
        "the assignment due in 5 h and the 2-hour-old announcement; not the one due in 30 days \
         nor the 3-day-old announcement ({made})"
    );
    let due = first.iter().find(|n| n.id == due_id).unwrap();
    assert_eq!(due.kind, Kind::AssignmentDue);
    assert_eq!(due.course, Some(course));
    assert_eq!(due.recipients, Recipients::CourseMembers);
    assert_eq!(due.title, "Exposé à rendre bientôt");
    assert_eq!(due.due, soon["duedate"].as_i64());
    assert_eq!(
        due.link.as_deref(),
        Some(
            format!(
                "{}/mod/assign/view.php?id={}",
                l.url.trim_end_matches('/'),
                soon["cmid"]
            )
            .as_str()
        )
    );
    let news = first.iter().find(|n| n.id == news_id).unwrap();
    assert_eq!(news.kind, Kind::Announcement);
    assert_eq!(news.title, "Sortie au musée jeudi");
    assert_eq!(
        news.text, "Rendez-vous à 9 h devant le lycée !",
        "Moodle's HTML as plain text"
    );

    // Each reminder once: the next sweep finds the same things and queues none of them.
    let second = sweep(&state).await;
    assert!(second.is_empty(), "queued again: {second:?}");

    // The sort order the bridge sends (3, created descending) is honoured by this Moodle:
    // asked for one discussion, it gets the newest.
    let client = l.client();
    let newest = bridge::moodle::forum::announcements(
        &client,
        bridge::ids::MoodleCourseId::new(course).unwrap(),
        1,
    )
    .await
    .unwrap();
    assert_eq!(
        newest.iter().map(|d| d.discussion).collect::<Vec<_>>(),
        vec![newer],
        "sortorder 3 = newest first ({made})"
    );
    let both = bridge::moodle::forum::announcements(
        &client,
        bridge::ids::MoodleCourseId::new(course).unwrap(),
        5,
    )
    .await
    .unwrap();
    assert_eq!(
        both.iter().map(|d| d.discussion).collect::<Vec<_>>(),
        vec![newer, made["older"]["id"].as_i64().unwrap()]
    );
    assert!(both[0].created > both[1].created);
}
