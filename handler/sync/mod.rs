//! ENT/LDAP (and later Entra) → Moodle sync. Placeholder until issue 4 lands.

pub mod cli;
pub mod functions;

use crate::app::AppState;
use crate::config::Source;
use axum::Router;

#[derive(Debug, Clone, Default)]
pub struct SyncSettings {}

impl SyncSettings {
    pub fn load(_src: &mut Source) -> Self {
        SyncSettings {}
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
}

/// Reachability checks of the sync's sources for `handler check-config`.
pub async fn reachability(_state: &AppState) -> Vec<crate::app::Check> {
    Vec::new()
}
