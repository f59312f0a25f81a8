//! Teams bot at /api/messages. Placeholder until issue 6 lands.

use crate::app::AppState;
use crate::config::{Settings, Source};
use axum::Router;

#[derive(Debug, Clone)]
pub struct BotSettings {}

impl BotSettings {
    pub fn load(_src: &mut Source) -> Option<Self> {
        None
    }
}

/// Long-lived bot state (key cache, token cache, rate limiters).
pub struct BotRuntime {}

impl BotRuntime {
    pub fn from_settings(_settings: &Settings, _http: &reqwest::Client) -> anyhow::Result<Option<Self>> {
        Ok(None)
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
}

/// Reachability checks for `handler check-config`.
pub async fn reachability(_state: &AppState) -> Vec<crate::app::Check> {
    Vec::new()
}
