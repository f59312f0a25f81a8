//! A sync environment for in-process tests: settings from name/value pairs, a SQLite store in a
//! temp dir, and the Moodle double. Shared by the sync test binaries.

use crate::fake_moodle::FakeMoodle;
use bridge::config::Source;
use bridge::store::sqlite::SqliteStore;
use bridge::store::SharedStore;
use bridge::sync::run::SyncEnv;
use bridge::sync::SyncSettings;
use std::collections::BTreeMap;
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
