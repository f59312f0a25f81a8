//! Inbound authentication as an extractor: a handler that takes [`BotRequest`] cannot run
//! unless the bearer token validated, the body parsed, and the body agrees with the token
//! (channel endorsed for `msteams`, `serviceUrl` = `serviceurl` claim). Order: token first
//! (needs no body), then the size-limited body, then the cross-checks.

pub mod openid;
pub mod validate;

use crate::app::AppState;
use crate::bot::activity::Activity;
use crate::error::AppError;
use crate::telemetry::capped;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};

pub const TEAMS_CHANNEL: &str = "msteams";

/// An activity that came from the Bot Connector, authenticated.
pub struct BotRequest {
    pub activity: Activity,
}

/// The bearer token of a request: exactly one Authorization header, scheme `Bearer`, two parts.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None; // two Authorization headers: never "any of them"
    }
    let value = value.to_str().ok()?;
    let mut parts = value.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("Bearer"), Some(token), None) if !token.is_empty() => Some(token),
        _ => None,
    }
}

/// Body checks after a valid token: channel and service URL must match what the token vouches for.
pub fn cross_check(
    activity: &Activity,
    token: &validate::VerifiedToken,
) -> Result<(), &'static str> {
    if activity.channel_id.as_deref() != Some(TEAMS_CHANNEL) {
        return Err("channelId is not msteams");
    }
    if !token.key.endorses(TEAMS_CHANNEL) {
        return Err("signing key is not endorsed for msteams");
    }
    match activity.service_url.as_deref() {
        Some(s) if s.eq_ignore_ascii_case(&token.service_url) => Ok(()),
        _ => Err("serviceUrl differs from the token's serviceurl claim"),
    }
}

fn unauthorized(reason: &str) -> Response {
    // The reason can quote the token (its `kid`, an unknown `alg`): keep the line short.
    tracing::warn!(reason = %capped(reason), "Bot Connector request rejected");
    AppError::Unauthorized.into_response()
}

impl FromRequest<AppState> for BotRequest {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(bot) = state.bot.as_ref() else {
            return Err(AppError::NotFound("the bot is not configured".into()).into_response());
        };
        let Some(token) = bearer_token(req.headers()) else {
            return Err(unauthorized("missing or malformed Authorization header"));
        };
        let verified = match bot.validator.verify(token).await {
            Ok(v) => v,
            Err(e) if e.is_unavailable() => {
                tracing::error!(error = %e, "cannot validate Bot Connector tokens");
                return Err(
                    AppError::Unavailable("signing keys unavailable".into()).into_response()
                );
            }
            Err(e) => return Err(unauthorized(&e.to_string())),
        };
        // The body limit layer turns an oversized body into 413 here.
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let activity: Activity = serde_json::from_slice(&body).map_err(|e| {
            let e = e.to_string();
            AppError::BadRequest(format!("not an activity: {}", capped(&e))).into_response()
        })?;
        cross_check(&activity, &verified).map_err(unauthorized)?;
        Ok(BotRequest { activity })
    }
}
