//! A sync environment for in-process tests: settings from name/value pairs, a SQLite store in a
//! temp dir, and the Moodle double. Shared by the sync test binaries.

use crate::fake_moodle::FakeMoodle;
use bridge::app::AppState;
use bridge::config::Source;
use bridge::settings::Settings;
use bridge::store::blob::FsBlobStore;
use bridge::store::sqlite::SqliteStore;
use bridge::store::SharedStore;
use bridge::sync::run::{latest_reports, SyncEnv};
use bridge::sync::{RunReport, SyncSettings};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Settings as the app reads them; a later pair overrides an earlier one with the same name.
pub fn pairs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Sync settings from pairs; any configuration problem fails the test.
pub fn sync_settings(base: &[(&str, &str)], extra: &[(&str, &str)]) -> SyncSettings {
    let mut map = pairs(base);
    map.extend(pairs(extra));
    let mut src = Source::from_map(map);
    let s = SyncSettings::load(&mut src);
    assert!(src.problems().is_empty(), "{:?}", src.problems());
    s
}

pub struct World {
    pub env: SyncEnv,
    pub fake: FakeMoodle,
    _dir: tempfile::TempDir,
}

/// The sync wired to `fake` and a fresh SQLite store (kept until the world is dropped).
pub async fn world_with(settings: SyncSettings, fake: FakeMoodle) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store: SharedStore = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
    store.ensure_tables().await.unwrap();
    let env = SyncEnv {
        settings: Arc::new(settings),
        store,
        blobs: None,
        moodle: fake.client(),
        teams: None,
        entra: None,
    };
    World {
        env,
        fake,
        _dir: dir,
    }
}

/// The whole app's settings (as `handler` loads them) on a SQLite store and a blob folder in
/// `dir`, with `fake` as Moodle under `token`; `extra` pairs override the defaults (no overlap
/// window, so a test's second run reads only what changed).
pub fn app_state(dir: &Path, fake: &FakeMoodle, token: &str, extra: &[(&str, &str)]) -> AppState {
    let sqlite = dir.join("s.sqlite");
    let blobs = dir.join("blobs");
    let mut m = pairs(&[
        ("STORE_BACKEND", "sqlite"),
        ("SQLITE_PATH", sqlite.to_str().unwrap()),
        ("BLOB_DIR", blobs.to_str().unwrap()),
        ("MOODLE_URL", fake.url.as_str()),
        ("MOODLE_TOKEN", token),
        ("SYNC_OVERLAP_SECS", "0"),
    ]);
    m.extend(pairs(extra));
    let settings = Settings::load(&mut Source::from_map(m)).expect("settings");
    let store: SharedStore = Arc::new(SqliteStore::open(&sqlite).unwrap());
    AppState::from_parts(settings, store, Arc::new(FsBlobStore::new(blobs)), false).unwrap()
}

/// `handler sync <args>` through the CLI's own entry point: its exit code and the report it
/// stored.
pub async fn cli_sync(state: &AppState, args: &[&str]) -> (i32, RunReport) {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: bridge::sync::cli::SyncArgs,
    }
    let mut argv = vec!["sync"];
    argv.extend_from_slice(args);
    let code = bridge::sync::cli::run(state.clone(), Cli::parse_from(argv).args)
        .await
        .unwrap();
    let report = latest_reports(&state.store, 1)
        .await
        .unwrap()
        .pop()
        .expect("a stored report");
    (code, report)
}
