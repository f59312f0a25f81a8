//! The Teams app package: build it from the settings (manifest v1.30, `fr.json`, two icons),
//! validate it (official schema, strict semantics, plus the rules the schema leaves out), zip it
//! into Blob storage as `teams-app/<version>.zip`, publish it to the organisation's catalog
//! (delegated admin sign-in) and install it in synced teams and for users (app-only).
//!
//! - `settings`: the `TEAMS_APP_*` settings;
//! - `manifest`: manifest and localization file from the settings;
//! - `icons`: the icons, drawn or read, and their checks;
//! - `validate`: schema + own rules, each failure with its JSON path and rule;
//! - `package`: zip layout, version (pinned or bumped when the content changes), blob storage;
//! - `catalog`: publish/update in the org catalog with the admin's delegated token;
//! - `install`: app-only installs in synced teams and for users, personal chats stored;
//! - `token_store`: where the publish sign-in's refresh token is kept, and the encrypted
//!   owner-only file (`serve`, an admin's machine);
//! - `key_vault`: the same token as a Key Vault secret, with the app's managed identity (Azure);
//! - `cli`: `handler teams-app build | validate | publish | install`;
//! - `http`: the admin-only `ManifestPublish` routes.

pub mod catalog;
pub mod cli;
pub mod functions;
pub mod http;
pub mod icons;
pub mod install;
pub mod key_vault;
pub mod manifest;
pub mod package;
pub mod settings;
pub mod token_store;
pub mod validate;

pub use settings::TeamsAppSettings;
pub use validate::Violation;

/// Blob container of the packages (`<version>.zip` and the `latest.json` marker).
pub const CONTAINER: &str = "teams-app";

/// Why a package could not be built, checked, stored, published or installed.
#[derive(Debug, thiserror::Error)]
pub enum TeamsAppError {
    #[error("the Teams app cannot be built:\n  - {}", .0.join("\n  - "))]
    Settings(Vec<String>),
    #[error("{file} {problem}")]
    Icon { file: &'static str, problem: String },
    #[error("cannot read {path}: {detail}")]
    File { path: String, detail: String },
    #[error("the package is not valid ({} problem(s)):\n  - {}", .0.len(), .0.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n  - "))]
    Invalid(Vec<Violation>),
    #[error("zip: {0}")]
    Zip(String),
    #[error("blob store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Token(#[from] crate::outbound::TokenError),
    #[error("refresh token store: {0}")]
    TokenStore(String),
    #[error("{0}")]
    Graph(#[from] crate::graph::GraphError),
}
