//! Reading token service answers: the OAuth success shape (`access_token`, `expires_in`, the
//! managed-identity endpoints' `expires_on`, numbers sometimes sent as strings) and the error
//! shape (`error`, `error_description`), whose text is redacted before it goes anywhere.

use super::{AccessToken, TokenError, MAX_LIFETIME};
use crate::config::Secret;
use serde::Deserialize;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How much of a token service's error description an error keeps.
const DETAIL_CHARS: usize = 200;

#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<Value>,
    #[serde(default)]
    pub expires_on: Option<Value>,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// The endpoints send numbers as JSON strings ("3599") or as numbers.
fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl TokenAnswer {
    /// The answer's token; `default_lifetime` when it states none (`None` = that is an error).
    pub fn into_token(
        self,
        endpoint: &str,
        default_lifetime: Option<Duration>,
    ) -> Result<AccessToken, TokenError> {
        let protocol = |detail: &str| TokenError::Protocol {
            endpoint: endpoint.to_string(),
            detail: detail.to_string(),
        };
        let secret = Secret::new(self.access_token);
        if let Some(v) = &self.expires_on {
            let at = as_u64(v).ok_or_else(|| protocol("the answer has an invalid expires_on"))?;
            let now = SystemTime::now();
            let latest = now.checked_add(MAX_LIFETIME).unwrap_or(now);
            let expires_at = UNIX_EPOCH
                .checked_add(Duration::from_secs(at))
                .map_or(latest, |t| t.min(latest));
            return Ok(AccessToken { secret, expires_at });
        }
        let lifetime = match self.expires_in.as_ref().and_then(as_u64) {
            Some(secs) => Duration::from_secs(secs),
            None => default_lifetime
                .ok_or_else(|| protocol("the answer has neither expires_on nor expires_in"))?,
        };
        Ok(AccessToken::expiring_in(secret, lifetime))
    }
}

/// A success body as a token answer; never quotes the body (it holds the token).
pub(crate) fn parse_answer(endpoint: &str, body: &[u8]) -> Result<TokenAnswer, TokenError> {
    serde_json::from_slice(body).map_err(|e| TokenError::Protocol {
        endpoint: endpoint.to_string(),
        detail: format!("the answer is not a token response ({})", e.classify_name()),
    })
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "missing or mistyped fields",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// The OAuth error code of an error body (`"unknown"` when there is none).
pub(crate) fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// A refusal, with the service's own explanation (redacted and short): an operator needs the
/// AADSTS code, and a proxy or debug page may have echoed the request, secret included.
pub(crate) fn refused(endpoint: &str, status: u16, body: &[u8]) -> TokenError {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let description = parsed
        .as_ref()
        .and_then(|v| v.get("error_description").and_then(Value::as_str))
        .map(str::to_string);
    let text = match description {
        Some(d) => d,
        None if parsed.is_some() => String::new(),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    TokenError::Refused {
        endpoint: endpoint.to_string(),
        status,
        code: crate::redact::redact(&error_code(body)),
        detail: crate::redact::excerpt(text.lines().next().unwrap_or_default(), DETAIL_CHARS),
    }
}

/// Send a token request (with its timeout); the status and body of whatever answered.
pub(crate) async fn exchange(
    endpoint: &str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<(u16, bytes::Bytes), TokenError> {
    let resp = request
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| transport(endpoint, e))?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| transport(endpoint, e))?;
    Ok((status, body))
}

/// Send a token request and read its token; any non-2xx answer is a refusal.
pub(crate) async fn request_token(
    endpoint: &str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
    default_lifetime: Option<Duration>,
) -> Result<(AccessToken, Option<String>), TokenError> {
    let (status, body) = exchange(endpoint, request, timeout).await?;
    if !(200..300).contains(&status) {
        return Err(refused(endpoint, status, &body));
    }
    let mut answer = parse_answer(endpoint, &body)?;
    let refresh = answer.refresh_token.take();
    Ok((answer.into_token(endpoint, default_lifetime)?, refresh))
}

/// A transport failure: the cause chain, redacted (reqwest already dropped the URL).
pub(crate) fn transport(endpoint: &str, e: reqwest::Error) -> TokenError {
    TokenError::Transport {
        endpoint: endpoint.to_string(),
        detail: crate::redact::error_chain(&e.without_url()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_from_numbers_strings_and_timestamps() {
        let answer = |v: Value| serde_json::from_value::<TokenAnswer>(v).unwrap();
        let t = answer(serde_json::json!({"access_token": "a", "expires_in": "3599"}))
            .into_token("e", None)
            .unwrap();
        let left = t.expires_at.duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(3590) && left <= Duration::from_secs(3599));
        let t = answer(serde_json::json!({"access_token": "a", "expires_in": u64::MAX}))
            .into_token("e", None)
            .unwrap();
        assert!(t.expires_at <= SystemTime::now() + MAX_LIFETIME);
        let t =
            answer(serde_json::json!({"access_token": "a", "expires_on": u64::MAX.to_string()}))
                .into_token("e", None)
                .unwrap();
        assert!(t.expires_at <= SystemTime::now() + MAX_LIFETIME);
        let t = answer(serde_json::json!({"access_token": "a"}))
            .into_token("e", Some(Duration::from_secs(3600)))
            .unwrap();
        assert!(t.expires_at > SystemTime::now() + Duration::from_secs(3500));
        assert!(answer(serde_json::json!({"access_token": "a"}))
            .into_token("e", None)
            .is_err());
        let Err(bad) = parse_answer("e", br#"{"access_token": 5, "x": "tok-secret"}"#) else {
            panic!("a numeric access_token is not a token answer");
        };
        assert!(!bad.to_string().contains("tok-secret"), "{bad}");
    }

    #[test]
    fn refusals_keep_the_code_and_a_redacted_first_line() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. client_secret=hunter2-secret\r\nTrace ID: 1"}"#;
        let e = refused("https://login/t/token", 401, body);
        let text = e.to_string();
        assert!(
            text.contains("401") && text.contains("invalid_client"),
            "{text}"
        );
        assert!(text.contains("AADSTS7000215"), "{text}");
        assert!(
            !text.contains("hunter2-secret") && !text.contains("Trace ID"),
            "{text}"
        );
        let e = refused("e", 502, b"<html>Bad gateway</html>");
        assert!(e.to_string().contains("Bad gateway") && e.is_transient());
    }
}
