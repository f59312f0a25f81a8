//! Where settings come from and the settings every capability shares. The environment (Azure-style
//! app settings) is layered over `local.settings.json` in [`Source`], which every loader reads from
//! and which records what was read, so `handler settings` lists the real set; problems are collected
//! and reported all at once.
//!
//! This module names no capability: the sync and the bot declare and load their own settings beside
//! their code, and `crate::settings` gathers them (see there for why this direction, and
//! `layering` for the check that keeps it).

pub mod connection_string;
pub mod identity;
#[cfg(test)]
mod layering;
pub mod platform;
pub mod secret;
pub mod source;

pub use identity::IdentitySettings;
pub use platform::Platform;
pub use secret::Secret;
pub use source::{pick, SettingDoc, Source};

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct CoreSettings {
    pub log_level: String,
    pub log_json: bool,
    /// Address `handler serve` listens on (custom-handler mode always uses 127.0.0.1:port).
    pub serve_addr: SocketAddr,
    /// Largest request body accepted on any route.
    pub max_body_bytes: usize,
    /// Six-field NCRONTAB expression of the SyncTimer function.
    pub sync_schedule: String,
    /// Public base URL of this app (links in pages and cards), e.g. https://bridge.example.org
    pub public_url: Option<url::Url>,
    /// `serve` only: how long a claimed queue message stays invisible before another try.
    pub queue_visibility_secs: u64,
    /// How long start-up (and `check-config`) waits for the store before failing loudly.
    pub store_check_secs: u64,
    /// Longest wait for a request's headers, and between two pieces of its body.
    pub read_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

#[derive(Debug, Clone)]
pub enum StorageSettings {
    /// Embedded default: one SQLite file and a folder of blobs.
    Local {
        sqlite_path: PathBuf,
        blob_dir: PathBuf,
    },
    /// Azure Storage (or Azurite) through a connection string or an account name + managed identity.
    Azure(AzureStorageSettings),
}

#[derive(Debug, Clone)]
pub struct AzureStorageSettings {
    pub account: String,
    pub key: Option<Secret>,
    pub table_endpoint: Option<String>,
    pub blob_endpoint: Option<String>,
    /// Client id of the user-assigned managed identity, when no key is given.
    pub managed_identity_client_id: Option<String>,
    /// Where that identity's tokens come from (App Service endpoint, or IMDS).
    pub identity: IdentitySettings,
    /// Prefix for table names, so several deployments (or tests) can share one account.
    pub table_prefix: String,
}

#[derive(Debug, Clone)]
pub struct MoodleSettings {
    pub url: url::Url,
    pub token: Secret,
    /// PHP `max_input_vars` of the site: batches are sized to stay under it.
    pub max_form_fields: usize,
    pub timeout_secs: u64,
}

/// Whether `host` is this machine (localhost, 127.0.0.0/8, ::1): credentials sent there in clear
/// text never cross a network, so tests and local labs may use plain `http://` / `ldap://`.
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        // Non-special schemes (ldap://) leave an IPv4 address as an opaque "domain".
        url::Host::Domain(d) => match d.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost")
            }
        },
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Every problem found, one line each, with the setting's name.
#[derive(Debug, thiserror::Error)]
#[error("configuration has {} problem(s):\n  - {}", .0.len(), .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl CoreSettings {
    pub fn load(src: &mut Source) -> Self {
        let serve_addr = src.parse(
            "SERVE_ADDR",
            SocketAddr::from(([127, 0, 0, 1], 7071)),
            "address `handler serve` listens on",
        );
        let log_level = src.string(
            "LOG_LEVEL",
            "info",
            "tracing filter: error, warn, info, debug, trace, or a directive list",
        );
        // EnvFilter takes a bare word as a target name, so "loud" would silently log nothing useful:
        // accept level names, or `target=level` directives.
        let levels = ["error", "warn", "info", "debug", "trace", "off"];
        let plausible = log_level
            .split(',')
            .all(|d| d.contains('=') || levels.contains(&d.trim().to_ascii_lowercase().as_str()));
        if !plausible || tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            src.problem(format!("LOG_LEVEL: {log_level:?} is not a valid filter"));
        }
        let log_json = src
            .choice(
                "LOG_FORMAT",
                "json",
                &[("json", true), ("text", false)],
                "json (default) or text",
            )
            .unwrap_or(true);
        let max_body_bytes = src.parse(
            "MAX_BODY_BYTES",
            256 * 1024,
            "largest request body accepted, in bytes",
        );
        let sync_schedule = src.string(
            "SYNC_SCHEDULE",
            "0 */15 * * * *",
            "six-field NCRONTAB schedule of SyncTimer (sec min hour day month weekday)",
        );
        if let Err(e) = crate::schedule::Schedule::parse(&sync_schedule) {
            src.problem(format!("SYNC_SCHEDULE: {e}"));
        }
        let public_url = src.url(
            "PUBLIC_URL",
            &["https", "http"],
            "public base URL of this app, used in links",
        );
        let queue_visibility_secs = src.parse(
            "SERVE_QUEUE_VISIBILITY_SECS",
            300u64,
            "`serve` only: seconds a claimed queue message stays invisible; a crashed worker's message comes back after this",
        );
        if queue_visibility_secs == 0 {
            src.problem("SERVE_QUEUE_VISIBILITY_SECS: at least 1");
        }
        let store_check_secs = src.parse(
            "STORE_CHECK_TIMEOUT_SECS",
            5u64,
            "seconds start-up and `check-config` wait for the store before failing with its endpoint and the cause",
        );
        let read_timeout_secs = src.parse(
            "HTTP_READ_TIMEOUT_SECS",
            10u64,
            "seconds a client may take to send a request's headers, and between two pieces of its body; then the connection is closed",
        );
        let max_connections = src.parse(
            "HTTP_MAX_CONNECTIONS",
            512usize,
            "connections served at once; further ones wait in the listen backlog",
        );
        for (name, v) in [
            ("STORE_CHECK_TIMEOUT_SECS", store_check_secs),
            ("HTTP_READ_TIMEOUT_SECS", read_timeout_secs),
            ("HTTP_MAX_CONNECTIONS", max_connections as u64),
        ] {
            if v == 0 {
                src.problem(format!("{name}: at least 1"));
            }
        }
        CoreSettings {
            store_check_secs,
            read_timeout_secs,
            max_connections,
            queue_visibility_secs,
            log_level,
            log_json,
            serve_addr,
            max_body_bytes,
            sync_schedule,
            public_url,
        }
    }
}

impl StorageSettings {
    pub fn load(src: &mut Source, identity: &IdentitySettings) -> Self {
        #[derive(Clone, Copy)]
        enum Backend {
            Sqlite,
            Azure,
            Auto,
        }
        let backend = src.choice(
            "STORE_BACKEND",
            "auto",
            &[
                ("sqlite", Backend::Sqlite),
                ("azure", Backend::Azure),
                ("auto", Backend::Auto),
            ],
            "sqlite, azure, or auto (azure when AzureWebJobsStorage is set)",
        );
        let conn = src.secret(
            "AzureWebJobsStorage",
            "storage connection string (the host's own setting, reused for the app's tables and blobs)",
        );
        let account_name = src.opt(
            "AzureWebJobsStorage__accountName",
            "storage account name for identity-based connections",
        );
        let client_id = src.opt(
            "AzureWebJobsStorage__clientId",
            "client id of the user-assigned managed identity for storage",
        );
        let table_uri = src.opt(
            "AzureWebJobsStorage__tableServiceUri",
            "table endpoint (identity-based)",
        );
        let blob_uri = src.opt(
            "AzureWebJobsStorage__blobServiceUri",
            "blob endpoint (identity-based)",
        );
        let table_prefix = src.string(
            "STORE_TABLE_PREFIX",
            "bridge",
            "prefix of the app's table names (letters and digits)",
        );
        if !table_prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
            src.problem("STORE_TABLE_PREFIX: letters and digits only (Azure table names)");
        }
        let sqlite_path = src.path(
            "SQLITE_PATH",
            "data/bridge.sqlite",
            "embedded store file (a relative path is taken from the settings file's folder)",
        );
        let blob_dir = src.path(
            "BLOB_DIR",
            "data/blobs",
            "folder for blobs when running standalone (relative: from the settings file's folder)",
        );
        let azure_wanted = match backend {
            Some(Backend::Azure) => true,
            Some(Backend::Auto) => conn.is_some() || account_name.is_some(),
            // Not one of them (a problem already): the embedded store, nothing reached.
            Some(Backend::Sqlite) | None => false,
        };
        if !azure_wanted {
            return StorageSettings::Local {
                sqlite_path,
                blob_dir,
            };
        }
        if let Some(conn) = conn {
            match connection_string::parse(conn.expose()) {
                Ok(mut az) => {
                    az.table_prefix = table_prefix;
                    az.identity = identity.clone();
                    return StorageSettings::Azure(az);
                }
                Err(e) => src.problem(format!("AzureWebJobsStorage: {e}")),
            }
        } else if let Some(account) = account_name {
            return StorageSettings::Azure(AzureStorageSettings {
                table_endpoint: table_uri
                    .or_else(|| Some(format!("https://{account}.table.core.windows.net"))),
                blob_endpoint: blob_uri
                    .or_else(|| Some(format!("https://{account}.blob.core.windows.net"))),
                account,
                key: None,
                managed_identity_client_id: client_id,
                identity: identity.clone(),
                table_prefix,
            });
        } else {
            src.problem(
                "STORE_BACKEND=azure needs AzureWebJobsStorage or AzureWebJobsStorage__accountName",
            );
        }
        StorageSettings::Local {
            sqlite_path,
            blob_dir,
        }
    }
}

impl MoodleSettings {
    pub fn load(src: &mut Source) -> Option<Self> {
        let url = src.url(
            "MOODLE_URL",
            &["https", "http"],
            "base URL of the Moodle site, e.g. https://moodle.example.org",
        );
        let token = src.secret(
            "MOODLE_TOKEN",
            "web-service token of the bridge's Moodle service account",
        );
        let max_form_fields = src.parse(
            "MOODLE_MAX_FORM_FIELDS",
            1000usize,
            "PHP max_input_vars of the Moodle site; write batches stay under it",
        );
        let timeout_secs = src.parse(
            "MOODLE_TIMEOUT_SECS",
            60u64,
            "timeout of one Moodle web-service call",
        );
        if max_form_fields < 50 {
            src.problem("MOODLE_MAX_FORM_FIELDS: at least 50 (one user needs about 10 fields)");
        }
        let allow_insecure = src.flag(
            "MOODLE_ALLOW_INSECURE",
            false,
            "accept an http:// MOODLE_URL to another host: the token then crosses the network in clear text",
        );
        if let Some(u) = url.as_ref().filter(|u| u.scheme() == "http") {
            let local = u.host().as_ref().is_some_and(is_loopback_host);
            if !local && !allow_insecure {
                src.problem(format!(
                    "MOODLE_URL: http:// would send the web-service token in clear text to {}; use https://, \
                     or set MOODLE_ALLOW_INSECURE=true if the network path is trusted",
                    u.host_str().unwrap_or("?")
                ));
            }
        }
        match (url, token) {
            (Some(url), Some(token)) => Some(MoodleSettings {
                url,
                token,
                max_form_fields,
                timeout_secs,
            }),
            (None, None) => None,
            (Some(_), None) => {
                src.problem("MOODLE_TOKEN: required when MOODLE_URL is set");
                None
            }
            (None, Some(_)) => {
                src.problem("MOODLE_URL: required when MOODLE_TOKEN is set");
                None
            }
        }
    }
}
