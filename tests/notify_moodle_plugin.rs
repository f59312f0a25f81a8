//! The Moodle message output `message_teamsbridge` (infra/moodle/) against the real Moodle lab:
//! installed into the lab's tree (upgrade.php, as an admin would), configured with the URL of a
//! real `handler serve` and the shared secret, turned on by a user for assignment notifications;
//! a real `message_send()` then reaches `/api/webhook`, is verified, queued, fanned out and
//! delivered to the Bot Connector double as one card. With the bridge silent (no answer) or down,
//! Moodle's page waits the configured timeout at most: the notification waits as an adhoc task and
//! Moodle's task runner delivers it later, once. A wrong secret is refused by the bridge and not
//! retried.

use bridge::bot::conversations::{ConversationKind, ConversationRef};
use bridge::notify::deliveries;
use bridge::store::sqlite::SqliteStore;
use bridge::store::SharedStore;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::app::Handler;
use testkit::bot_app::{APP_ID, TENANT_ID};
use testkit::moodle_lab::{lab, unique_prefix};
use testkit::notify_doubles::LimitedConnector;

const SECRET: &str = "lab-webhook-secret-0123456789";
const PLUGIN: &str = "message/output/teamsbridge";

/// The installable zip of `infra/moodle/package.sh`, unpacked as Moodle's installer does: its one
/// top folder `teamsbridge/` is the plugin.
fn packaged_plugin(dir: &Path) -> std::path::PathBuf {
    let out = std::process::Command::new("bash")
        .arg(testkit::repo_root().join("infra/moodle/package.sh"))
        .arg("--out")
        .arg(dir)
        .output()
        .expect("run infra/moodle/package.sh");
    assert!(
        out.status.success(),
        "package.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let zip_path = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        zip_path.ends_with(".zip") && zip_path.contains("message_teamsbridge-20"),
        "{zip_path}"
    );
    let file = std::fs::File::open(&zip_path).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    assert!(
        names.iter().all(|n| n.starts_with("teamsbridge/")),
        "one top folder: {names:?}"
    );
    for needed in [
        "teamsbridge/version.php",
        "teamsbridge/message_output_teamsbridge.php",
        "teamsbridge/settings.php",
        "teamsbridge/db/install.php",
        "teamsbridge/lang/en/message_teamsbridge.php",
        "teamsbridge/lang/fr/message_teamsbridge.php",
        "teamsbridge/classes/task/send_notification.php",
    ] {
        assert!(names.iter().any(|n| n == needed), "{needed} in {names:?}");
    }
    let unpacked = dir.join("unpacked");
    zip.extract(&unpacked).unwrap();
    unpacked.join("teamsbridge")
}

async fn php(args: Vec<String>) -> Value {
    tokio::task::spawn_blocking(move || lab().php_json("notify.php", &args))
        .await
        .unwrap()
}

async fn setup(username: &str, url: &str, secret: &str) -> Value {
    php(vec![
        "--action=setup".into(),
        format!("--username={username}"),
        format!("--bridgeurl={url}"),
        format!("--secret={secret}"),
        "--timeout=2".into(),
    ])
    .await
}

async fn send(username: &str, course: i64, subject: &str) -> Value {
    php(vec![
        "--action=send".into(),
        format!("--username={username}"),
        format!("--course={course}"),
        format!("--subject={subject}"),
    ])
    .await
}

fn serve(dir: &Path, connector: &LimitedConnector) -> Handler {
    let lab = lab();
    let token_endpoint = format!("{}/oauth2/v2.0/token", connector.uri());
    let trusted = connector.uri();
    let env = [
        ("MOODLE_URL", lab.url.as_str()),
        ("MOODLE_TOKEN", lab.token()),
        ("WEBHOOK_SECRET", SECRET),
        ("BOT_APP_ID", APP_ID),
        ("BOT_APP_TYPE", "SingleTenant"),
        ("BOT_TENANT_ID", TENANT_ID),
        ("BOT_APP_PASSWORD", "test-client-secret"),
        ("BOT_TOKEN_ENDPOINT", token_endpoint.as_str()),
        ("BOT_TRUSTED_SERVICE_URLS", trusted.as_str()),
    ];
    Handler::serve(dir, &env)
}

async fn wait_for_sends(connector: &LimitedConnector, conversation: &str, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let sent = connector.sends_to(conversation);
        if sent.len() >= n || start.elapsed() > Duration::from_secs(30) {
            return sent;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn webhook_url(h: &Handler) -> String {
    format!("{}/api/webhook", h.base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_moodle_notification_reaches_teams_once_even_when_the_bridge_was_down() {
    let lab = lab();
    let pkg = tempfile::tempdir().unwrap();
    let src = packaged_plugin(pkg.path());
    tokio::task::spawn_blocking(move || lab.ensure_plugin("message_teamsbridge", PLUGIN, &src))
        .await
        .unwrap();
    let course: i64 = {
        let seed: Value =
            serde_json::from_str(&std::fs::read_to_string(lab.dir.join("seed.json")).unwrap())
                .unwrap();
        seed["courses"]["math"].as_i64().unwrap()
    };
    let username = unique_prefix("notif");
    let connector = LimitedConnector::start().await;

    // The Moodle user (and their notification preference) first: the bridge's store maps them.
    let first = setup(&username, "http://127.0.0.1:9/api/webhook", SECRET).await;
    assert_eq!(first["processor_enabled"], 1, "{first}");
    let uid = first["userid"].as_i64().unwrap();
    let aad = format!("aad00000-0000-4000-8000-{uid:012}");
    let conversation = format!("a:lab-conv-{username}");
    let dir = tempfile::tempdir().unwrap();
    {
        let store: SharedStore =
            Arc::new(SqliteStore::open(&dir.path().join("bridge.sqlite")).unwrap());
        store.ensure_tables().await.unwrap();
        bridge::bot::mapping::remember_pair(
            &store,
            &aad,
            bridge::ids::MoodleUserId::new(uid).unwrap(),
        )
        .await
        .unwrap();
        bridge::bot::conversations::save(
            &store,
            &ConversationRef {
                kind: ConversationKind::User,
                key: aad.clone(),
                conversation_id: conversation.clone(),
                service_url: connector.service_url(),
                tenant_id: Some(TENANT_ID.into()),
                user_id: Some(format!("29:user-{uid}")),
                team_id: None,
                team_name: None,
                bot_id: Some(format!("28:{APP_ID}")),
                locale: Some("fr-FR".into()),
            },
        )
        .await
        .unwrap();
    }

    // 1. Bridge up: message_send() posts, the bridge verifies, queues and delivers.
    let mut handler = serve(dir.path(), &connector);
    setup(&username, &webhook_url(&handler), SECRET).await;
    let sent = send(&username, course, "Retour sur Essai").await;
    let first_id = sent["messageid"]
        .as_i64()
        .expect("message_send returned an id");
    assert_eq!(sent["queued_tasks"], serde_json::json!([]), "{sent}");
    let cards = wait_for_sends(&connector, &conversation, 1).await;
    assert_eq!(cards.len(), 1, "one card delivered: {cards:?}");
    let card = &cards[0]["attachments"][0]["content"];
    let text = card.to_string();
    assert!(text.contains("Retour sur Essai"), "{text}");
    assert!(
        text.contains("Nouvelle note"),
        "grade_released in French: {text}"
    );
    assert!(text.contains("/mod/assign/view.php?id=1"), "{text}");
    let site_key = |id: i64| {
        let site = &bridge_site_hash(&lab.url);
        format!("moodle:{site}:n{id}:u{uid}")
    };
    let store: SharedStore =
        Arc::new(SqliteStore::open(&dir.path().join("bridge.sqlite")).unwrap());
    let target = format!("user:{uid}");
    assert_eq!(
        deliveries::state(&store, &site_key(first_id), &target)
            .await
            .unwrap()
            .map(|s| s.0),
        Some("sent".to_string())
    );

    // 2a. A bridge that accepts the connection and never answers: the page waits the configured
    // timeout (2 s), no longer, and the notification waits as an adhoc task.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/api/webhook", silent.local_addr().unwrap());
    setup(&username, &silent_url, SECRET).await;
    let slow = send(&username, course, "Retour pendant une panne").await;
    let slow_id = slow["messageid"]
        .as_i64()
        .expect("message_send still succeeds");
    let elapsed = slow["elapsed_ms"].as_i64().unwrap();
    assert!(
        (1800..6000).contains(&elapsed),
        "waited the 2 s timeout, not more: {slow}"
    );
    assert_eq!(slow["queued_tasks"].as_array().unwrap().len(), 1, "{slow}");
    drop(silent);

    // 2b. Bridge down: connection refused, queued at once.
    handler.kill9();
    setup(&username, &webhook_url(&handler), SECRET).await;
    let down = send(&username, course, "Deuxième retour").await;
    let second_id = down["messageid"]
        .as_i64()
        .expect("message_send still succeeds");
    let tasks = down["queued_tasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 2, "{down}");
    assert!(
        down["elapsed_ms"].as_i64().unwrap() < 3000,
        "message_send waited too long: {down}"
    );

    // 3. Bridge back (new port): Moodle's task runner delivers both, once each.
    let handler = serve(dir.path(), &connector);
    setup(&username, &webhook_url(&handler), SECRET).await;
    for task in &tasks {
        let task_id = task.as_i64().unwrap();
        let root = lab.root();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("php")
                .arg(root.join("admin/cli/adhoc_task.php"))
                .args([format!("--id={task_id}"), "--force".into()])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let log = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(log.contains("delivered to the bridge (HTTP 202)"), "{log}");
    }
    let cards = wait_for_sends(&connector, &conversation, 3).await;
    assert_eq!(cards.len(), 3, "{cards:?}");
    let all = serde_json::to_string(&cards).unwrap();
    assert!(all.contains("Deuxième retour") && all.contains("Retour pendant une panne"));
    let left = php(vec![
        "--action=tasks".into(),
        format!("--username={username}"),
    ])
    .await;
    assert_eq!(
        left["queued_tasks"],
        serde_json::json!([]),
        "tasks done: {left}"
    );
    for id in [slow_id, second_id] {
        assert_eq!(
            deliveries::state(&store, &site_key(id), &target)
                .await
                .unwrap()
                .map(|s| s.0),
            Some("sent".to_string())
        );
    }

    // 4. A wrong secret: 401, not retried (no task), nothing delivered.
    setup(
        &username,
        &webhook_url(&handler),
        "not-the-bridge-secret-000",
    )
    .await;
    let refused = send(&username, course, "Jamais livré").await;
    assert!(refused["messageid"].as_i64().is_some(), "{refused}");
    assert_eq!(refused["queued_tasks"], serde_json::json!([]), "{refused}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        connector.sends_to(&conversation).len(),
        3,
        "nothing more, nothing twice"
    );
    drop(handler);
}

/// The site part of the plugin's idempotency keys (payload::idempotency_key).
fn bridge_site_hash(wwwroot: &str) -> String {
    let out = std::process::Command::new("php")
        .args(["-r", &format!("echo substr(sha1('{wwwroot}'), 0, 10);")])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}
