//! A Moodle double that replays the recorded responses of `../shared/fixtures/moodle/`: a request
//! is answered with the recorded case of the same `wsfunction` whose form parameters match best
//! (time-window parameters ignored, id parameters must not conflict). Tests can override any
//! answer, and read back the calls made. In echo mode ([`MoodleDouble::echo`]) it reflects the
//! request instead, as a proxy, WAF or debug page might.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

type Params = BTreeMap<String, String>;

/// Parameters that change between runs and never select a case.
const VOLATILE: &[&str] = &[
    "wstoken",
    "moodlewsrestformat",
    "timesortfrom",
    "timesortto",
    "limitnum",
];

fn is_identity(key: &str) -> bool {
    [
        "userid",
        "courseid",
        "field",
        "values[",
        "courseids[",
        "assignmentids[",
        "criteria[",
    ]
    .iter()
    .any(|p| key.starts_with(p))
}

struct Case {
    function: String,
    params: Params,
    body: Value,
}

struct Override {
    function: String,
    params: Params,
    body: Value,
}

#[derive(Default)]
struct State {
    /// Answer every call 200 with its own form body as HTML (see [`MoodleDouble::echo`]).
    echo: bool,
    cases: Vec<Case>,
    overrides: Vec<Override>,
    calls: Vec<(String, Params)>,
}

#[derive(Clone)]
struct Responder(Arc<Mutex<State>>);

fn select(params: &Params) -> Params {
    params
        .iter()
        .filter(|(k, _)| !VOLATILE.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Score of a candidate: equal parameters count, a conflicting identity parameter disqualifies.
fn score(candidate: &Params, request: &Params) -> Option<usize> {
    let mut score = 0;
    for (k, v) in candidate {
        match request.get(k) {
            Some(rv) if rv == v => score += 1,
            Some(_) if is_identity(k) => return None,
            None if is_identity(k) => return None,
            _ => {}
        }
    }
    for k in request.keys() {
        if is_identity(k) && !candidate.contains_key(k) {
            return None;
        }
    }
    Some(score)
}

pub fn moodle_error(code: &str, message: &str) -> Value {
    json!({"exception": "core\\exception\\moodle_exception", "errorcode": code, "message": message})
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if self.0.lock().unwrap().echo {
            let mut page = request.body.clone();
            page.extend_from_slice(b"\n<html><body>request logged</body></html>");
            return ResponseTemplate::new(200).set_body_raw(page, "text/html");
        }
        let form: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&request.body).unwrap_or_default();
        let params: Params = form.into_iter().collect();
        let function = params.get("wsfunction").cloned().unwrap_or_default();
        let wanted = select(&params);
        let mut st = self.0.lock().unwrap();
        st.calls.push((function.clone(), params.clone()));
        if params.get("wstoken").map(String::as_str) != Some("TOKEN") {
            return ResponseTemplate::new(200).set_body_json(moodle_error(
                "invalidtoken",
                "Invalid token - token not found",
            ));
        }
        // Newest override first, then the best recorded case.
        let from_override = st
            .overrides
            .iter()
            .rev()
            .filter(|o| o.function == function)
            .find(|o| o.params.iter().all(|(k, v)| wanted.get(k) == Some(v)))
            .map(|o| o.body.clone());
        let body = from_override.or_else(|| {
            st.cases
                .iter()
                .filter(|c| c.function == function)
                .filter_map(|c| score(&c.params, &wanted).map(|s| (s, c)))
                .max_by_key(|(s, _)| *s)
                .map(|(_, c)| c.body.clone())
        });
        let body = body.unwrap_or_else(|| {
            json!({"exception": "core\\exception\\invalid_parameter_exception", "errorcode": "invalidparameter",
                   "message": "Invalid parameter value detected"})
        });
        ResponseTemplate::new(200).set_body_json(body)
    }
}

pub struct MoodleDouble {
    pub server: MockServer,
    state: Arc<Mutex<State>>,
}

impl MoodleDouble {
    /// Serve every recorded JSON case made with the service token (`TOKEN`).
    pub async fn start() -> Self {
        let mut cases = Vec::new();
        let root = crate::fixtures_dir().join("moodle");
        for dir in std::fs::read_dir(&root).expect("moodle fixtures") {
            let dir = dir.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&dir).unwrap() {
                let file = file.unwrap().path();
                if file.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                let v: Value =
                    serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
                let Some(form) = v.pointer("/request/form").and_then(Value::as_object) else {
                    continue;
                };
                if v.pointer("/response/content_type").and_then(Value::as_str)
                    != Some("application/json")
                {
                    continue;
                }
                if form.get("wstoken").and_then(Value::as_str) != Some("TOKEN") {
                    continue;
                }
                let params: Params = form
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                let function = params.get("wsfunction").cloned().unwrap_or_default();
                // Error cases are only served when a test asks for them explicitly.
                let name = file.file_stem().unwrap().to_string_lossy().to_string();
                if name.starts_with("error") || name.starts_with("debug") || name.contains("nocap")
                {
                    continue;
                }
                cases.push(Case {
                    function,
                    params: select(&params),
                    body: v["response"]["body"].clone(),
                });
            }
        }
        Self::serve(State {
            cases,
            ..Default::default()
        })
        .await
    }

    /// A Moodle that reflects the request: every POST to the web-service endpoint is answered
    /// 200 with its own form body as HTML, so whatever the bridge copies from a non-JSON answer
    /// is exactly what it sent, token included.
    pub async fn echo() -> Self {
        Self::serve(State {
            echo: true,
            ..Default::default()
        })
        .await
    }

    async fn serve(state: State) -> Self {
        let state = Arc::new(Mutex::new(state));
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/webservice/rest/server.php"))
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        MoodleDouble { server, state }
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Every request received, as sent (wiremock's record).
    pub async fn received_requests(&self) -> Option<Vec<Request>> {
        self.server.received_requests().await
    }

    /// Answer `function` with `body` whenever the request has all of `params`.
    pub fn reply(&self, function: &str, params: &[(&str, &str)], body: Value) {
        let params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.state.lock().unwrap().overrides.push(Override {
            function: function.into(),
            params,
            body,
        });
    }

    /// The recorded response body of a fixture case, e.g. `"core_enrol_get_users_courses/student.json"`.
    pub fn fixture_body(case: &str) -> Value {
        crate::fixture_json(&format!("moodle/{case}"))["response"]["body"].clone()
    }

    pub fn calls(&self, function: &str) -> Vec<Params> {
        self.state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|(f, _)| f == function)
            .map(|(_, p)| p.clone())
            .collect()
    }

    pub fn total_calls(&self) -> usize {
        self.state.lock().unwrap().calls.len()
    }
}
