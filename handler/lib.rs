//! moodle-teams-bridge: connects a school's ENT/LDAP directory, its Moodle site and Microsoft Teams.
//! `main.rs` is the table of contents of the binary; this is the one of the library.

pub mod admin;
pub mod app;
pub mod bot;
pub mod cli;
pub mod config;
pub mod error;
pub mod graph;
pub mod host;
pub mod http_server;
pub mod ids;
pub mod moodle;
pub mod notify;
pub mod outbound;
pub mod queue;
pub mod redact;
pub mod schedule;
pub mod serve;
pub mod settings;
pub mod store;
pub mod sync;
pub mod teams_app;
pub mod teams_sync;
pub mod telemetry;

/// rustls panics at the first handshake when two crypto providers are linked and none is chosen;
/// ldap3 builds its TLS config from the process default. Choose ring once, before anything else.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
