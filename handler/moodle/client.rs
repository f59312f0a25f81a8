//! Transport: one POST per call to `/webservice/rest/server.php`, token in the form body (never
//! in a URL that could be logged), JSON format always, errors mapped from HTTP-200 bodies.

use super::error::{MoodleError, MoodleException};
use super::form::Form;
use crate::config::{MoodleSettings, Secret};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
        f.debug_struct("MoodleClient").field("endpoint", &self.endpoint.as_str()).finish_non_exhaustive()
    }
}

impl MoodleClient {
    pub fn new(settings: &MoodleSettings) -> Result<Self, MoodleError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs))
            .pool_max_idle_per_host(8)
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
        self.max_form_fields.saturating_sub(3 + self.max_form_fields / 20).max(10)
    }

    /// Calls made so far, per web-service function (benchmarks and the simulation proof use it).
    pub fn call_counts(&self) -> BTreeMap<String, u64> {
        self.calls.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn total_calls(&self) -> u64 {
        self.call_counts().values().sum()
    }

    /// Call `function` and decode its JSON answer into `T`.
    pub async fn call<T: DeserializeOwned>(&self, function: &str, form: &Form) -> Result<T, MoodleError> {
        let value = self.call_value(function, form).await?;
        serde_json::from_value(value).map_err(|e| MoodleError::Protocol(format!("{function}: {e}")))
    }

    pub async fn call_value(&self, function: &str, form: &Form) -> Result<serde_json::Value, MoodleError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call_once(function, form).await {
                Err(e) if e.is_transient() && attempt <= self.retries => {
                    let wait = Duration::from_millis(200 * 2u64.pow(attempt - 1) + rand::random::<u64>() % 100);
                    tracing::warn!(function, attempt, error = %e, "transient Moodle failure, retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn call_once(&self, function: &str, form: &Form) -> Result<serde_json::Value, MoodleError> {
        if let Ok(mut m) = self.calls.lock() {
            *m.entry(function.to_string()).or_default() += 1;
        }
        let mut fields: Vec<(&str, &str)> = Vec::with_capacity(form.len() + 3);
        fields.push(("wstoken", self.token.expose()));
        fields.push(("wsfunction", function));
        fields.push(("moodlewsrestformat", "json"));
        fields.extend(form.fields().iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let resp = self
            .http
            .post(self.endpoint.clone())
            .form(&fields)
            .send()
            .await
            // reqwest errors include the URL, which carries no token here: the token is in the body.
            .map_err(|e| MoodleError::Transport(e.without_url().to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(MoodleError::HttpStatus(status.as_u16()));
        }
        let bytes = resp.bytes().await.map_err(|e| MoodleError::Transport(e.without_url().to_string()))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
            let head: String = String::from_utf8_lossy(&bytes).chars().take(80).collect();
            MoodleError::Protocol(format!("{function}: body is not JSON (starts with {head:?})"))
        })?;
        if value.get("exception").is_some() {
            let ex: MoodleException =
                serde_json::from_value(value).map_err(|e| MoodleError::Protocol(format!("{function}: {e}")))?;
            return Err(MoodleError::from_exception(function, ex));
        }
        Ok(value)
    }
}
