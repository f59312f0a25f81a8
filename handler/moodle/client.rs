//! Transport: one POST per call to `/webservice/rest/server.php`, token in the form body (never
//! in a URL that could be logged), JSON format always, errors mapped from HTTP-200 bodies.

use super::error::{MoodleError, MoodleException};
use super::form::Form;
use crate::config::{MoodleSettings, Secret};
use crate::redact;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Enough of a non-JSON answer to recognise it (an HTML error page, a proxy banner), and shorter
/// than the `wsfunction=…&moodlewsrestformat=json&` prefix an echo of our request starts with.
const BODY_EXCERPT_CHARS: usize = 48;

#[derive(Clone)]
pub struct MoodleClient {
    http: reqwest::Client,
    endpoint: url::Url,
    token: Secret,
    max_form_fields: usize,
    calls: Arc<Mutex<BTreeMap<String, u64>>>,
    retries: u32,
}

impl std::fmt::Debug for MoodleClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoodleClient")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl MoodleClient {
    pub fn new(settings: &MoodleSettings) -> Result<Self, MoodleError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("moodle-teams-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| MoodleError::Transport(e.to_string()))?;
        let mut base = settings.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let endpoint = base
            .join("webservice/rest/server.php")
            .map_err(|e| MoodleError::Transport(e.to_string()))?;
        Ok(MoodleClient {
            http,
            endpoint,
            token: settings.token.clone(),
            max_form_fields: settings.max_form_fields,
            calls: Arc::default(),
            retries: 3,
        })
    }

    /// Largest number of form fields one call may carry (PHP `max_input_vars` minus our own 3, minus margin).
    pub fn field_budget(&self) -> usize {
        self.max_form_fields
            .saturating_sub(3 + self.max_form_fields / 20)
            .max(10)
    }

    /// Calls made so far, per web-service function (benchmarks and the simulation proof use it).
    pub fn call_counts(&self) -> BTreeMap<String, u64> {
        self.calls.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn total_calls(&self) -> u64 {
        self.call_counts().values().sum()
    }

    /// Call `function` and decode its JSON answer into `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        function: &str,
        form: &Form,
    ) -> Result<T, MoodleError> {
        let value = self.call_value(function, form).await?;
        // serde quotes the offending value, which came from Moodle.
        serde_json::from_value(value)
            .map_err(|e| MoodleError::Protocol(redact::redact(&format!("{function}: {e}"))))
    }

    pub async fn call_value(
        &self,
        function: &str,
        form: &Form,
    ) -> Result<serde_json::Value, MoodleError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call_once(function, form).await {
                Err(e) if e.is_transient() && attempt <= self.retries => {
                    let wait = Duration::from_millis(
                        200 * 2u64.pow(attempt - 1) + rand::random::<u64>() % 100,
                    );
                    tracing::warn!(function, attempt, error = %e, "transient Moodle failure, retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn call_once(
        &self,
        function: &str,
        form: &Form,
    ) -> Result<serde_json::Value, MoodleError> {
        if let Ok(mut m) = self.calls.lock() {
            *m.entry(function.to_string()).or_default() += 1;
        }
        // The token is never first: an answer that echoes the request (proxy, WAF, debug page)
        // shows its start, and the excerpt we keep (redacted anyway) ends before the token. Nor is
        // it last: PHP drops every field past `max_input_vars`, so a token at the end would turn a
        // truncated batch (which the sync splits and retries) into a fatal "invalid token".
        let mut fields: Vec<(&str, &str)> = Vec::with_capacity(form.len() + 3);
        fields.push(("wsfunction", function));
        fields.push(("moodlewsrestformat", "json"));
        fields.push(("wstoken", self.token.expose()));
        fields.extend(form.fields().iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let resp = self
            .http
            .post(self.endpoint.clone())
            .form(&fields)
            .send()
            .await
            // The URL carries no token (it is in the body); the cause chain says why it failed.
            .map_err(|e| MoodleError::Transport(redact::error_chain(&e.without_url())))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(MoodleError::HttpStatus(status.as_u16()));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| MoodleError::Transport(redact::error_chain(&e.without_url())))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
            let head = redact::excerpt(&String::from_utf8_lossy(&bytes), BODY_EXCERPT_CHARS);
            MoodleError::Protocol(format!(
                "{function}: body is not JSON (starts with {head:?})"
            ))
        })?;
        if value.get("exception").is_some() {
            let mut ex: MoodleException = serde_json::from_value(value)
                .map_err(|e| MoodleError::Protocol(redact::redact(&format!("{function}: {e}"))))?;
            // Debug-mode Moodle quotes parameter values back in `message` / `debuginfo`.
            ex.message = ex.message.as_deref().map(redact::redact);
            ex.debuginfo = ex.debuginfo.as_deref().map(redact::redact);
            return Err(MoodleError::from_exception(function, ex));
        }
        Ok(value)
    }
}
