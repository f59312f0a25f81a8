//! The whole standalone path under a crash: `handler serve` fires SyncTimer from its schedule,
//! the shard goes through the durable queue to SyncWorker, the process is killed with SIGKILL
//! in the middle of the shard, and a restarted server finishes the same run with nothing lost
//! and nothing created twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use testkit::app::Handler;
use testkit::ent_data::{self, Spec};
use testkit::fake_moodle::FakeMoodle;

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn usernames(fake: &FakeMoodle) -> Vec<String> {
    fake.lock()
        .users
        .values()
        .map(|u| u.username.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_mid_shard_resumes_after_restart_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec::new(600);
    let ldif = dir.path().join("people.ldif");
    ent_data::write_ldif(&mut std::fs::File::create(&ldif).unwrap(), &spec).unwrap();
    let expected = ent_data::expected_users(&spec);

    let fake = FakeMoodle::start().await;
    let moodle = fake.settings();
    // The fake starts with Moodle's own accounts (admin, guest, the service account).
    let seeded = usernames(&fake).len();
    // Moodle stops answering user creations after two batches: the shard is left half done.
    fake.fail_after("core_user_create_users", 2, 503, None);

    let token = moodle.token.expose().to_string();
    let env = [
        ("SYNC_ENABLED", "true"),
        ("SYNC_SOURCE", "ldif"),
        ("SYNC_SOURCE_FILE", ldif.to_str().unwrap()),
        ("SYNC_SCHEDULE", "* * * * * *"),
        ("MOODLE_URL", moodle.url.as_str()),
        ("MOODLE_TOKEN", token.as_str()),
        ("MOODLE_TIMEOUT_SECS", "5"),
        ("SERVE_QUEUE_VISIBILITY_SECS", "2"),
        ("LOG_LEVEL", "error"),
    ];
    let mut first = Handler::serve(dir.path(), &env);
    // The fake counts answered calls: two creations done, the third is failing and being retried.
    wait_for(
        "the shard to start creating users",
        Duration::from_secs(30),
        || {
            fake.calls()
                .get("core_user_create_users")
                .copied()
                .unwrap_or(0)
                >= 2
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill9();

    let created_before_crash = usernames(&fake).len();
    let created_before_crash = created_before_crash - seeded;
    assert!(
        created_before_crash > 0 && created_before_crash < expected,
        "{created_before_crash} of {expected}"
    );

    // Moodle is back; a new server on the same store picks the shard up again.
    fake.clear_failures();
    let _second = Handler::serve(dir.path(), &env);
    wait_for("every user to exist", Duration::from_secs(60), || {
        usernames(&fake).len() >= seeded + expected
    })
    .await;
    // Give a duplicate a chance to show up before judging.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let names = usernames(&fake);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &names {
        *counts.entry(n.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dups.is_empty(), "users created twice: {dups:?}");
    assert_eq!(
        names.len() - seeded,
        expected,
        "every person of the directory exists exactly once"
    );
}
