//! Bounded write concurrency (SYNC_WRITE_CONCURRENCY): the create calls of one batch go out
//! together, never more than the setting, and the result is the same as one at a time.

use bridge::sync::run::run_inline;
use bridge::sync::SyncOptions;
use std::time::Duration;
use testkit::ent_data::{self, Spec};
use testkit::fake_moodle::FakeMoodle;
use testkit::sync_env::{sync_settings, world_with};

async fn load(concurrency: &str) -> (u64, usize, u64) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.ldif");
    let spec = Spec::new(400);
    let mut data = Vec::new();
    ent_data::write_ldif(&mut data, &spec).unwrap();
    std::fs::write(&file, data).unwrap();
    let fake = FakeMoodle::start().await;
    fake.lock().latency = Some(Duration::from_millis(40));
    let settings = sync_settings(
        &[
            ("SYNC_SOURCE", "ldif"),
            ("SYNC_SOURCE_FILE", file.to_str().unwrap()),
            ("SYNC_ROLE_RULES", "-"),
        ],
        &[("SYNC_WRITE_CONCURRENCY", concurrency)],
    );
    let w = world_with(settings, fake).await;
    let opts = SyncOptions {
        users: true,
        ..Default::default()
    };
    let r = run_inline(&w.env, &opts, None).await.unwrap();
    assert!(r.complete && r.errors.is_empty(), "{}", r.render());
    assert_eq!(r.counts["users"].failed, 0, "{}", r.render());
    let st = w.fake.lock();
    (r.counts["users"].created, st.users.len(), st.max_in_flight)
}

#[tokio::test]
async fn create_calls_of_a_batch_overlap_up_to_the_setting() {
    let (created1, users1, max1) = load("1").await;
    let (created4, users4, max4) = load("4").await;
    assert_eq!(max1, 1, "one connection at a time");
    assert!(max4 > 1 && max4 <= 4, "in flight at once: {max4}");
    assert_eq!((created1, users1), (created4, users4), "same outcome");
    assert_eq!(created4 as usize, ent_data::expected_users(&Spec::new(400)));
}
