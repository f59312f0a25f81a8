//! Notifications (issue 19): Moodle → `/api/webhook` → queue `notify` → Teams.
//!
//! - `schema` (+ `notification.schema.json`): the documented body, both shapes;
//! - `auth`: HMAC signature with a replay window, or bearer secret; `intake`: `MoodleWebhook`;
//! - `queue`: what travels on `notify`; `fanout`: `NotifyFanout`, one message per target;
//! - `deliveries`: at most once per (notification, target); `recipients`: Moodle → Teams user;
//! - `card`: the Adaptive Card (FR/EN), as bot activity and as Workflows payload;
//! - `channels`: channel configurations (`webhooks` table); `webhook_url`: the allow-list;
//!   `webhook_send`: posts through the outbound layer (no redirects, public addresses only);
//! - `sweep`: `NotifySweep`, the pull timer for sites without the Moodle plugin; `cleanup`: old
//!   delivery rows expire (run by each sweep);
//! - `config_page`: `ConnectorConfig`, the channel configuration page and its API; `tab_page`:
//!   the tab's content, the course the channel's team is synced with.

pub mod auth;
pub mod card;
pub mod channels;
pub mod cleanup;
pub mod config_page;
pub mod deliveries;
pub mod fanout;
pub mod intake;
pub mod queue;
pub mod recipients;
pub mod schema;
pub mod settings;
pub mod sweep;
pub mod tab_page;
pub mod webhook_send;
pub mod webhook_url;

pub use settings::NotifySettings;

use crate::app::AppState;
use crate::outbound::public_dns::PublicResolver;
use axum::routing::post;
use axum::Router;

/// Long-lived notification state: the webhook sender and its per-webhook limiter.
pub struct NotifyRuntime {
    pub webhooks: webhook_send::WebhookSender,
    /// Teams SSO token check of the configuration page (None: not configured, API answers 503).
    pub sso: Option<crate::bot::auth::validate::TokenValidator>,
}

impl NotifyRuntime {
    pub fn new(
        settings: &crate::settings::Settings,
        http: &reqwest::Client,
        resolver: PublicResolver,
    ) -> anyhow::Result<Self> {
        Ok(NotifyRuntime {
            webhooks: webhook_send::WebhookSender::new(
                resolver,
                settings.notify.webhook_double_url.clone(),
            )?,
            sso: config_page::sso_validator(settings, http),
        })
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/webhook", post(intake::webhook))
        .merge(config_page::router())
}
