//! Every setting of the app, gathered: the one module that names every capability's settings.
//!
//! Direction: `config` is where settings come from (`Source`, `Secret`, `choice`) plus the
//! settings every capability shares (core, storage, Moodle, managed identity); each capability
//! declares and loads its own beside its code (`sync::settings`, `bot::settings`) from a
//! `Source`; this module puts them together. Imports go capability → config and settings →
//! both, never config → capability, so no import circle joins them (`config::layering` checks
//! it). Of the two layouts issue 16 allows — capability settings declared under `config/`, or
//! owned by each capability and only gathered — this one moved the least code: each loader
//! stays beside the types and checks it uses (LDAP filters, role context levels, locales).
//!
//! A new capability's settings: `XSettings::load(&mut Source)` beside the capability, one field
//! and one line in [`Settings::load`] here; the docs follow (`scripts/regen-settings-docs.sh`).

use crate::config::{
    ConfigError, CoreSettings, IdentitySettings, MoodleSettings, SettingDoc, Source,
    StorageSettings,
};

#[derive(Debug, Clone)]
pub struct Settings {
    pub core: CoreSettings,
    pub storage: StorageSettings,
    pub moodle: Option<MoodleSettings>,
    pub sync: crate::sync::SyncSettings,
    /// Moodle courses → Teams.
    pub teams: crate::teams_sync::TeamsSettings,
    pub bot: Option<crate::bot::BotSettings>,
    pub notify: crate::notify::NotifySettings,
    /// Microsoft Graph (Entra users, Teams); on when `GRAPH_CLIENT_ID` is set.
    pub graph: Option<crate::graph::GraphSettings>,
    /// Entra → Moodle users (`handler sync --entra`).
    pub entra: crate::sync::entra::EntraSettings,
    /// The platform's managed-identity endpoint (storage and bot tokens without secrets).
    pub identity: IdentitySettings,
    pub teams_app: crate::teams_app::TeamsAppSettings,
    pub admin: crate::admin::AdminSettings,
}

impl Settings {
    /// Environment over `local.settings.json` in the working directory (or `BRIDGE_SETTINGS_FILE`).
    pub fn from_process() -> Result<Self, ConfigError> {
        Self::load(&mut Source::from_process_and_file())
    }

    pub fn load(src: &mut Source) -> Result<Self, ConfigError> {
        let identity = IdentitySettings::load(src);
        let settings = Settings {
            core: CoreSettings::load(src),
            storage: StorageSettings::load(src, &identity),
            moodle: MoodleSettings::load(src),
            sync: crate::sync::SyncSettings::load(src),
            teams: crate::teams_sync::TeamsSettings::load(src),
            bot: crate::bot::BotSettings::load(src),
            notify: crate::notify::NotifySettings::load(src),
            teams_app: crate::teams_app::TeamsAppSettings::load(src),
            admin: crate::admin::AdminSettings::load(src),
            graph: crate::graph::GraphSettings::load(src, &identity),
            entra: crate::sync::entra::EntraSettings::load(src),
            identity,
        };
        let problems = src.take_problems();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError(problems))
        }
    }

    /// Every setting the app reads, with descriptions: loads from an empty source and reports what was asked for.
    pub fn documented() -> Vec<SettingDoc> {
        let mut src = Source::default();
        let _ = Self::load(&mut src);
        src.documented()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(&mut Source::from_map(map))
    }

    #[test]
    fn empty_environment_gives_the_embedded_default() {
        let s = load(&[]).unwrap();
        assert!(matches!(s.storage, StorageSettings::Local { .. }));
        assert!(s.moodle.is_none());
        assert_eq!(s.core.sync_schedule, "0 */15 * * * *");
    }

    #[test]
    fn every_problem_is_reported_at_once_and_secrets_stay_hidden() {
        let err = load(&[
            ("SERVE_ADDR", "nope"),
            ("SYNC_SCHEDULE", "every tuesday"),
            ("MOODLE_TOKEN", "s3cr3t-token"),
            ("STORE_BACKEND", "mongo"),
        ])
        .unwrap_err();
        let text = err.to_string();
        for name in ["SERVE_ADDR", "SYNC_SCHEDULE", "MOODLE_URL", "STORE_BACKEND"] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
        assert!(!text.contains("s3cr3t-token"));
    }

    #[test]
    fn an_unresolved_key_vault_reference_is_a_named_problem() {
        let err = load(&[
            ("MOODLE_URL", "https://moodle.example.org"),
            (
                "MOODLE_TOKEN",
                "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/moodle-token/)",
            ),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("MOODLE_TOKEN: the Key Vault reference was not resolved"),
            "{err}"
        );
    }

    #[test]
    fn relative_store_paths_are_taken_from_the_settings_file_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("local.settings.json");
        std::fs::write(&file, r#"{"Values":{"SQLITE_PATH":"state/b.sqlite"}}"#).unwrap();
        let mut src = Source::from_map(BTreeMap::new()).with_local_settings(&file);
        let s = Settings::load(&mut src).unwrap();
        let StorageSettings::Local {
            sqlite_path,
            blob_dir,
        } = s.storage
        else {
            panic!("expected the local store");
        };
        // The working directory (the crate root under cargo test) plays no part.
        assert_eq!(sqlite_path, dir.path().join("state/b.sqlite"));
        assert_eq!(blob_dir, dir.path().join("data/blobs"));
        let mut src =
            Source::from_map([("SQLITE_PATH".to_string(), "/srv/b.sqlite".to_string())].into())
                .with_local_settings(&file);
        let s = Settings::load(&mut src).unwrap();
        assert!(
            matches!(s.storage, StorageSettings::Local { ref sqlite_path, .. } if sqlite_path == std::path::Path::new("/srv/b.sqlite"))
        );
    }

    #[test]
    fn a_clear_text_moodle_url_to_another_host_is_refused_unless_allowed() {
        let with = |url: &str, extra: &[(&str, &str)]| {
            let mut pairs = vec![("MOODLE_URL", url), ("MOODLE_TOKEN", "tok-123456")];
            pairs.extend_from_slice(extra);
            load(&pairs)
        };
        let err = with("http://moodle.example.org", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MOODLE_URL")
                && err.contains("clear text")
                && err.contains("MOODLE_ALLOW_INSECURE=true"),
            "{err}"
        );
        assert!(!err.contains("tok-123456"), "{err}");
        assert!(with("http://10.0.0.5/moodle", &[]).is_err());
        assert!(with(
            "http://moodle.example.org",
            &[("MOODLE_ALLOW_INSECURE", "true")]
        )
        .is_ok());
        for ok in [
            "https://moodle.example.org",
            "http://127.0.0.1:8080/moodle",
            "http://127.3.2.1/",
            "http://localhost:8080",
            "http://[::1]:8080",
        ] {
            assert!(with(ok, &[]).is_ok(), "{ok} refused");
        }
    }

    #[test]
    fn development_storage_maps_to_azurite() {
        let s = load(&[("AzureWebJobsStorage", "UseDevelopmentStorage=true")]).unwrap();
        match s.storage {
            StorageSettings::Azure(az) => {
                assert_eq!(az.account, "devstoreaccount1");
                assert_eq!(
                    az.table_endpoint.as_deref(),
                    Some("http://127.0.0.1:10002/devstoreaccount1")
                );
            }
            other => panic!("expected azure, got {other:?}"),
        }
    }
}
