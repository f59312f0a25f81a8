//! An idle run (nothing to write) proves the Moodle token with one site-info call unless a run
//! proved this very token within `SYNC_TOKEN_RECHECK_SECS` (issue 15: that one call was the whole
//! cost of a no-change run). A changed token, a stale proof or a failed check never count as proof.

use bridge::app::AppState;
use bridge::sync::token_check::{self, Proof};
use std::path::Path;
use testkit::ent_data::{self, Spec};
use testkit::fake_moodle::FakeMoodle;
use testkit::sync_env::{self, cli_sync as sync};

const SITE_INFO: &str = "core_webservice_get_site_info";

fn app(dir: &Path, fake: &FakeMoodle, token: &str, extra: &[(&str, &str)]) -> AppState {
    let ldif = dir.join("export.ldif");
    if !ldif.exists() {
        let mut data = Vec::new();
        ent_data::write_ldif(&mut data, &Spec::new(6)).unwrap();
        std::fs::write(&ldif, data).unwrap();
    }
    let mut m = vec![
        ("SYNC_SOURCE", "ldif"),
        ("SYNC_SOURCE_FILE", ldif.to_str().unwrap()),
        ("SYNC_ROLE_RULES", "-"),
    ];
    m.extend_from_slice(extra);
    sync_env::app_state(dir, fake, token, &m)
}

#[tokio::test]
async fn a_run_that_wrote_spares_the_next_idle_runs_their_token_call() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = app(dir.path(), &fake, "TOKEN", &[]);
    let (code, first) = sync(&state, &[]).await;
    assert_eq!(code, 0, "{}", first.render());
    assert!(first.moodle_writes() > 0, "{}", first.render());

    fake.reset_calls();
    let (code, idle) = sync(&state, &["--verbose"]).await;
    assert_eq!(code, 0, "{}", idle.render());
    assert!(idle.complete);
    let calls = fake.calls();
    assert!(calls.is_empty(), "{calls:?}");
    assert!(idle.moodle_calls.is_empty(), "{:?}", idle.moodle_calls);
    let trace = std::fs::read_to_string(
        dir.path()
            .join("blobs/sync-runs")
            .join(&idle.run_id)
            .join("run.trace.txt"),
    )
    .expect("the verbose run's trace");
    assert!(
        trace.contains("Moodle token: proven at"),
        "the trace says why no call was made: {trace}"
    );
}

#[tokio::test]
async fn another_token_is_checked_and_a_wrong_one_fails_the_idle_run() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (code, _) = sync(&app(dir.path(), &fake, "TOKEN", &[]), &[]).await;
    assert_eq!(code, 0);

    // The settings now carry another token (same store): the old proof does not cover it.
    let rotated = app(dir.path(), &fake, "NEW-TOKEN-NOT-IN-MOODLE", &[]);
    fake.reset_calls();
    let (code, refused) = sync(&rotated, &[]).await;
    assert_eq!(fake.calls().get(SITE_INFO), Some(&1), "{:?}", fake.calls());
    assert_eq!(code, 1, "{}", refused.render());
    assert!(!refused.complete);
    assert!(
        refused
            .errors
            .iter()
            .any(|e| e.contains("token check") && e.contains("MOODLE_TOKEN")),
        "{:?}",
        refused.errors
    );

    // A failed check is no proof: the next idle run with that token checks (and fails) again.
    fake.reset_calls();
    let (code, _) = sync(&rotated, &[]).await;
    assert_eq!(code, 1);
    assert_eq!(fake.calls().get(SITE_INFO), Some(&1), "{:?}", fake.calls());
}

#[tokio::test]
async fn a_stale_proof_is_renewed_and_zero_means_every_time() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = app(dir.path(), &fake, "TOKEN", &[]);
    let moodle = state.moodle.clone().unwrap();
    let now = chrono::Utc::now();

    fake.reset_calls();
    let p = token_check::prove_if_stale(&state.store, &moodle, 3600, now)
        .await
        .unwrap();
    assert_eq!(p, Proof::Checked, "no proof yet");
    let p = token_check::prove_if_stale(&state.store, &moodle, 3600, now)
        .await
        .unwrap();
    assert!(matches!(p, Proof::Recent(_)), "{p:?}");
    assert_eq!(fake.calls().get(SITE_INFO), Some(&1));

    // One hour later the proof is stale; a clock gone backwards proves nothing either.
    let later = now + chrono::Duration::seconds(3600);
    let p = token_check::prove_if_stale(&state.store, &moodle, 3600, later)
        .await
        .unwrap();
    assert_eq!(p, Proof::Checked);
    let earlier = now - chrono::Duration::seconds(60);
    let p = token_check::prove_if_stale(&state.store, &moodle, 3600, earlier)
        .await
        .unwrap();
    assert_eq!(p, Proof::Checked);
    // 0: every idle run calls Moodle.
    let p = token_check::prove_if_stale(&state.store, &moodle, 0, earlier)
        .await
        .unwrap();
    assert_eq!(p, Proof::Checked);
    assert_eq!(fake.calls().get(SITE_INFO), Some(&4));
}

#[tokio::test]
async fn the_store_keeps_no_token_only_its_hash() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = app(dir.path(), &fake, "TOKEN-abcdef0123456789", &[]);
    let moodle = state.moodle.clone().unwrap();
    token_check::remember(&state.store, &moodle, chrono::Utc::now()).await;
    let bytes = std::fs::read(dir.path().join("s.sqlite")).unwrap();
    let wal = std::fs::read(dir.path().join("s.sqlite-wal")).unwrap_or_default();
    for b in [bytes, wal] {
        assert!(
            !b.windows(b"abcdef0123456789".len())
                .any(|w| w == b"abcdef0123456789"),
            "token found in the store"
        );
    }
    assert_eq!(moodle.identity().len(), 16);
}

#[tokio::test]
async fn re_read_entries_that_all_turn_out_unchanged_make_no_moodle_call() {
    let fake = FakeMoodle::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = app(dir.path(), &fake, "TOKEN", &[]);
    let (code, first) = sync(&state, &[]).await;
    assert_eq!(code, 0, "{}", first.render());

    // The export is written again with the same people (as an incremental run re-reads its
    // overlap window): every entry is read, found unchanged, and Moodle is not called — not even
    // for who the token belongs to, which the first run remembered.
    let ldif = dir.path().join("export.ldif");
    let mut data = std::fs::read(&ldif).unwrap();
    data.extend_from_slice(b"\n");
    std::fs::write(&ldif, data).unwrap();
    fake.reset_calls();
    let (code, again) = sync(&state, &[]).await;
    assert_eq!(code, 0, "{}", again.render());
    assert!(again.complete, "{}", again.render());
    assert_eq!(again.entries_read, first.entries_read, "{}", again.render());
    assert_eq!(again.counts["users"].unchanged, 6, "{}", again.render());
    let calls = fake.calls();
    assert!(calls.is_empty(), "{calls:?}");

    // Another token is another account as far as the bridge knows: site info is read again.
    let rotated = app(dir.path(), &fake, "TOKEN-2", &[]);
    fake.lock().token = "TOKEN-2".into();
    let mut data = std::fs::read(&ldif).unwrap();
    data.extend_from_slice(b"\n");
    std::fs::write(&ldif, data).unwrap();
    fake.reset_calls();
    let (code, rotated_run) = sync(&rotated, &[]).await;
    assert_eq!(code, 0, "{}", rotated_run.render());
    assert_eq!(fake.calls().get(SITE_INFO), Some(&1), "{:?}", fake.calls());
}
