//! Transport: one POST per call to `/webservice/rest/server.php`, token in the form body (never
//! in a URL that could be logged), JSON format always, errors mapped from HTTP-200 bodies.

use super::error::{MoodleError, MoodleException};
use super::form::Form;
use crate::config::{MoodleSettings, Secret};
use crate::outbound::{retry, Failure, RetryPolicy};
use crate::redact;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The name `upload_draft` calls are counted under (not a web-service function: a script).
pub const UPLOAD_CALL: &str = "webservice/upload.php";

/// A `multipart/form-data` body: text parts, then one file part.
fn multipart(boundary: &str, fields: &[(&str, &str)], file: (&str, &str, &str, &[u8])) -> Vec<u8> {
    let mut out = Vec::with_capacity(file.3.len() + 512);
    for (name, value) in fields {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    let (name, filename, content_type, bytes) = file;
    // The file name is ours (`entra-photo.jpg`), never user input: no quoting to escape.
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(bytes);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// Enough of a non-JSON answer to recognise it (an HTML error page, a proxy banner), and shorter
/// than the `wsfunction=…&moodlewsrestformat=json&` prefix an echo of our request starts with.
const BODY_EXCERPT_CHARS: usize = 48;

#[derive(Clone)]
pub struct MoodleClient {
    http: reqwest::Client,
    endpoint: url::Url,
    /// `webservice/upload.php` (files into the service account's draft area).
    upload: url::Url,
    token: Secret,
    max_form_fields: usize,
    calls: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Answers that were JSON and no exception: each proves the token works (`sync::token_check`).
    accepted: Arc<std::sync::atomic::AtomicU64>,
    timeout: Duration,
    retry: RetryPolicy,
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
        let http = crate::outbound::http::shared()
            .map_err(|e| MoodleError::Transport(redact::error_chain(&e)))?;
        let mut base = settings.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let endpoint = base
            .join("webservice/rest/server.php")
            .map_err(|e| MoodleError::Transport(e.to_string()))?;
        let upload = base
            .join("webservice/upload.php")
            .map_err(|e| MoodleError::Transport(e.to_string()))?;
        Ok(MoodleClient {
            http,
            endpoint,
            upload,
            token: settings.token.clone(),
            max_form_fields: settings.max_form_fields,
            calls: Arc::default(),
            accepted: Arc::default(),
            timeout: Duration::from_secs(settings.timeout_secs),
            retry: RetryPolicy::MOODLE,
        })
    }

    /// Largest number of form fields one call may carry (PHP `max_input_vars` minus our own 3, minus margin).
    pub fn field_budget(&self) -> usize {
        self.max_form_fields
            .saturating_sub(3 + self.max_form_fields / 20)
            .max(10)
    }

    /// Who this client speaks as: the first 16 hex digits of SHA-256 over the endpoint and the
    /// token. It lets the store remember that *this* token was proven to work (`sync::token_check`)
    /// without keeping the token: 64 bits of a hash of a 32-hex-digit random token give nothing back.
    pub fn identity(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(self.endpoint.as_str().as_bytes());
        ctx.update(b"\n");
        ctx.update(self.token.expose().as_bytes());
        ctx.finish().as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Calls made so far, per web-service function (benchmarks and the simulation proof use it).
    pub fn call_counts(&self) -> BTreeMap<String, u64> {
        self.calls.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Calls Moodle answered without an exception so far.
    pub fn accepted_calls(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
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
        self.retry
            .run(function, |_| async {
                let mut retry_after = None;
                self.call_once(function, form, &mut retry_after)
                    .await
                    .map_err(|e| {
                        if e.is_transient() {
                            Failure::retryable(e, retry_after)
                        } else {
                            Failure::permanent(e)
                        }
                    })
            })
            .await
    }

    /// `POST webservice/upload.php` (multipart): one file into the service account's draft area
    /// (`filearea=draft`, `itemid=0`: Moodle makes a new draft item). Answers Moodle's JSON as it
    /// is (an array of file records, or an AJAX error object): `moodle::pictures` reads it. The
    /// token is a form part, never in the URL; errors carry no part of the request. Counted under
    /// [`UPLOAD_CALL`] in the call counts (a write).
    pub async fn upload_draft(
        &self,
        filename: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<serde_json::Value, MoodleError> {
        let boundary = format!("----bridge{:032x}", rand::random::<u128>());
        let body = multipart(
            &boundary,
            // The token is not the first part, for the reason `call_once` gives.
            &[
                ("filearea", "draft"),
                ("itemid", "0"),
                ("filepath", "/"),
                ("token", self.token.expose()),
            ],
            ("file_1", filename, content_type, bytes),
        );
        self.retry
            .run(UPLOAD_CALL, |_| {
                let body = body.clone();
                let boundary = boundary.clone();
                async move {
                    if let Ok(mut m) = self.calls.lock() {
                        *m.entry(UPLOAD_CALL.to_string()).or_default() += 1;
                    }
                    let resp = self
                        .http
                        .post(self.upload.clone())
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            format!("multipart/form-data; boundary={boundary}"),
                        )
                        .body(body)
                        .timeout(self.timeout)
                        .send()
                        .await
                        .map_err(|e| {
                            Failure::retryable(
                                MoodleError::Transport(redact::error_chain(&e.without_url())),
                                None,
                            )
                        })?;
                    let status = resp.status();
                    if !status.is_success() {
                        let err = MoodleError::HttpStatus(status.as_u16());
                        let after = retry::retry_after(resp.headers());
                        return Err(if err.is_transient() {
                            Failure::retryable(err, after)
                        } else {
                            Failure::permanent(err)
                        });
                    }
                    let bytes = resp.bytes().await.map_err(|e| {
                        Failure::retryable(
                            MoodleError::Transport(redact::error_chain(&e.without_url())),
                            None,
                        )
                    })?;
                    serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|_| {
                        let head =
                            redact::excerpt(&String::from_utf8_lossy(&bytes), BODY_EXCERPT_CHARS);
                        Failure::permanent(MoodleError::Protocol(format!(
                            "{UPLOAD_CALL}: body is not JSON (starts with {head:?})"
                        )))
                    })
                }
            })
            .await
    }

    /// One POST; `retry_after` is set when an overloaded site says when to come back.
    async fn call_once(
        &self,
        function: &str,
        form: &Form,
        retry_after: &mut Option<Duration>,
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
            .timeout(self.timeout)
            .send()
            .await
            // The URL carries no token (it is in the body); the cause chain says why it failed.
            .map_err(|e| MoodleError::Transport(redact::error_chain(&e.without_url())))?;
        let status = resp.status();
        if !status.is_success() {
            *retry_after = retry::retry_after(resp.headers());
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
        self.accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn client(server: &MockServer) -> MoodleClient {
        MoodleClient::new(&MoodleSettings {
            url: server.uri().parse().unwrap(),
            token: Secret::new("TOKEN"),
            max_form_fields: 1000,
            timeout_secs: 5,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn an_overloaded_site_is_retried_after_its_retry_after() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "1"))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"ok": 1})))
            .mount(&server)
            .await;
        let c = client(&server);
        let started = Instant::now();
        let v = c
            .call_value("core_webservice_get_site_info", &Form::new())
            .await
            .unwrap();
        assert_eq!(v["ok"], 1);
        assert_eq!(c.total_calls(), 2);
        // The backoff alone would be at most 200 ms: the site's Retry-After was honoured.
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn transient_failures_stop_after_four_attempts_and_permanent_ones_at_once() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(502))
            .mount(&server)
            .await;
        let c = client(&server);
        let err = c
            .call_value("core_webservice_get_site_info", &Form::new())
            .await
            .unwrap_err();
        assert!(matches!(err, MoodleError::HttpStatus(502)), "{err}");
        assert_eq!(c.total_calls(), 4);

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(403))
            .mount(&server)
            .await;
        let c = client(&server);
        assert!(c
            .call_value("core_webservice_get_site_info", &Form::new())
            .await
            .is_err());
        assert_eq!(c.total_calls(), 1);
    }
}
