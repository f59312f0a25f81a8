//! The sync's command line and its reports in the cases a school trips over: an unknown `--user`,
//! a run interrupted by Moodle, an LDIF change file given as the export, and the settings
//! skeleton used as a standalone `local.settings.json`.

use bridge::config::{Source, StorageSettings};
use bridge::settings::Settings;
use bridge::sync::run::run_inline;
use bridge::sync::SyncOptions;
use testkit::app::run_cli;
use testkit::fake_moodle::FakeMoodle;
use testkit::sync_env::{sync_settings, world_with};

fn sample_path() -> String {
    testkit::fixtures_dir()
        .join("ent/sample-school.ldif")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_exits_non_zero_with_a_message_and_a_known_one_is_pushed() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = sample_path();
    let url = fake.settings().url.to_string();
    let env: Vec<(String, String)> = [
        ("MOODLE_URL", url.as_str()),
        ("MOODLE_TOKEN", "TOKEN"),
        ("STORE_BACKEND", "sqlite"),
        ("SYNC_SOURCE", "ldif"),
        ("SYNC_SOURCE_FILE", file.as_str()),
        ("SYNC_ROLE_RULES", "-"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // The double answers on this runtime while the CLI runs on a blocking thread.
    let cli = |user: &'static str| {
        let d = dir.path().to_path_buf();
        let env = env.clone();
        tokio::task::spawn_blocking(move || {
            let pairs: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            run_cli(&d, &pairs, &["sync", "--user", user])
        })
    };
    let (code, out) = cli("nobody.here").await.unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("no directory entry matches --user \"nobody.here\""),
        "{out}"
    );
    assert!(fake.lock().user_by_username("lea.martin").is_none());
    let (code, out) = cli("lea.martin").await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(fake.lock().user_by_username("lea.martin").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_reports_the_requests_it_made() {
    let fake = FakeMoodle::start().await;
    // Every create fails (after the client's retries): the run stops in its first batch.
    fake.fail_after("core_user_create_users", 0, 500, None);
    let file = sample_path();
    let s = sync_settings(
        &[("SYNC_SOURCE", "ldif"), ("SYNC_SOURCE_FILE", file.as_str())],
        &[],
    );
    let w = world_with(s, fake).await;
    let r = run_inline(&w.env, &SyncOptions::scheduled(), None)
        .await
        .unwrap();
    assert!(!r.complete, "{}", r.render());
    assert!(r.entries_read > 0);
    assert_eq!(r.source_requests, 1, "{}", r.render());
    assert!(!r.render().contains("in 0 request(s)"), "{}", r.render());
}

#[tokio::test]
async fn an_ldif_change_file_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("changes.ldif");
    std::fs::write(
        &file,
        "dn: uid=F0100001,ou=people,dc=ent,dc=example\nchangetype: modify\nreplace: sn\nsn: Durand\n-\n\n\
         dn: uid=F0100002,ou=people,dc=ent,dc=example\nchangetype: delete\n\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let s = sync_settings(
        &[("SYNC_SOURCE", "ldif"), ("SYNC_SOURCE_FILE", path.as_str())],
        &[],
    );
    let w = world_with(s, FakeMoodle::start().await).await;
    let r = run_inline(&w.env, &SyncOptions::scheduled(), None)
        .await
        .unwrap();
    assert!(!r.complete);
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains("change file") && e.contains("changetype: modify")),
        "{:?}",
        r.errors
    );
    assert_eq!(w.fake.lock().write_calls(), 0, "nothing applied");
}

#[test]
fn the_settings_skeleton_is_a_working_standalone_file() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .args(["settings", "--format", "example"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(dir.path())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    assert_eq!(code, Some(0));
    let file = dir.path().join("local.settings.json");
    std::fs::write(&file, &out).unwrap();
    let mut src = Source::default().with_local_settings(&file);
    let settings = Settings::load(&mut src).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(settings.storage, StorageSettings::Local { .. }),
        "the skeleton must not select Azure storage: {:?}",
        settings.storage
    );
}

/// A create Moodle refused (an address already taken) waits in the retry set; once the cause is
/// gone the next run creates the person, although the export file did not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_is_retried_although_the_export_did_not_change() {
    let fake = FakeMoodle::start().await;
    let squatter = fake.lock().insert_user(testkit::fake_moodle::FakeUser {
        username: "someone.else".into(),
        firstname: "Some".into(),
        lastname: "One".into(),
        email: "lea.martin@ent.example".into(),
        auth: "manual".into(),
        ..Default::default()
    });
    let file = sample_path();
    let s = sync_settings(
        &[
            ("SYNC_SOURCE", "ldif"),
            ("SYNC_SOURCE_FILE", file.as_str()),
            ("SYNC_ROLE_RULES", "-"),
        ],
        &[],
    );
    let w = world_with(s, fake).await;
    let r = run_inline(&w.env, &SyncOptions::scheduled(), None)
        .await
        .unwrap();
    assert_eq!(r.counts["users"].failed, 1, "{}", r.render());
    assert_eq!(r.waiting.get("users failed"), Some(&1), "{}", r.render());
    assert!(r.render().contains("users failed: 1"), "{}", r.render());
    assert!(w.fake.lock().user_by_username("lea.martin").is_none());

    bridge::moodle::users::delete(
        &w.env.moodle,
        &[bridge::ids::MoodleUserId::new(squatter).unwrap()],
    )
    .await
    .unwrap();
    let again = run_inline(&w.env, &SyncOptions::scheduled(), None)
        .await
        .unwrap();
    assert_eq!(
        again.entries_read,
        0,
        "the file did not change: {}",
        again.render()
    );
    assert_eq!(again.retry_examined, 1, "{}", again.render());
    assert_eq!(again.counts["users"].created, 1, "{}", again.render());
    assert!(again.waiting.is_empty(), "{}", again.render());
    assert!(w.fake.lock().user_by_username("lea.martin").is_some());
}

/// Teachers whose courses do not exist yet wait in the retry set. While none of their courses
/// exists, a run re-reads none of them (it looks the courses up, as their plan would, and
/// writes nothing); once one course exists, exactly the teachers waiting for it are re-read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teachers_waiting_for_courses_are_re_read_only_once_one_of_their_courses_exists() {
    let file = sample_path();
    let s = sync_settings(
        &[("SYNC_SOURCE", "ldif"), ("SYNC_SOURCE_FILE", file.as_str())],
        &[],
    );
    let w = world_with(s, FakeMoodle::start().await).await;
    let first = run_inline(&w.env, &SyncOptions::scheduled(), None)
        .await
        .unwrap();
    let waiting = first.waiting.get("role context missing").copied();
    assert_eq!(waiting, Some(5), "{}", first.render());

    w.fake.reset_calls();
    let idle = run_inline(&w.env, &SyncOptions::scheduled(), None)
        .await
        .unwrap();
    assert_eq!(idle.entries_read, 0, "{}", idle.render());
    assert_eq!(
        idle.retry_examined,
        0,
        "nothing to re-read: {}",
        idle.render()
    );
    assert_eq!(idle.waiting.get("role context missing").copied(), waiting);
    assert_eq!(w.fake.lock().write_calls(), 0);
    let calls = w.fake.calls();
    assert!(
        calls
            .keys()
            .all(|f| f == "core_course_get_courses_by_field"),
        "only the courses are looked up: {calls:?}"
    );

    // One of the missing courses appears: those waiting for it are re-read and get their role.
    w.fake.lock().insert_course("6A", "99900100000016$6A", 1);
    let after = run_inline(&w.env, &SyncOptions::scheduled(), None)
        .await
        .unwrap();
    assert!(
        after.retry_examined >= 1 && after.retry_examined < 5,
        "{}",
        after.render()
    );
    assert!(after.counts["roles"].created >= 1, "{}", after.render());
    // Each of them still teaches a class whose course is missing: they go on waiting for those.
    assert_eq!(after.waiting.get("role context missing"), Some(&5));
    assert!(w
        .fake
        .lock()
        .role_assignments
        .iter()
        .any(|(role, _, level, _)| *role == 3 && level == "course"));
}
