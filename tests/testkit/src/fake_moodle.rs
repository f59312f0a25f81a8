//! The Moodle double, over real HTTP. Its answers come from one of three places:
//! - the model (default, [`FakeMoodle::start`]): users, cohorts, members, courses, categories and
//!   role assignments in memory, answering with the shapes recorded in `shared/fixtures/moodle`
//!   (errors as HTTP 200 `{exception, errorcode, message}`, whole-batch rollback for create/delete/
//!   cohort create/role assign/enrol, per-item warnings for update_users and add_cohort_members,
//!   `max_input_vars` truncation) — what the sync writes to, checked against the recordings by
//!   `tests/sync_fixture_shapes.rs`;
//! - the recordings ([`FakeMoodle::replaying`]): a request is answered with the recorded case of the
//!   same `wsfunction` whose form parameters match best (time-window parameters ignored, id
//!   parameters must not conflict) — what the bot reads;
//! - the request itself ([`FakeMoodle::echo`]): every POST answered 200 with its own form as HTML,
//!   as a proxy, WAF or debug page might.
//!
//! In every mode it checks the token, counts calls per function, can inject failures, and lets a
//! test override any answer ([`FakeMoodle::reply`]). Used by the integration tests and `bench sync`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FakeUser {
    pub id: i64,
    pub username: String,
    pub firstname: String,
    pub lastname: String,
    pub email: String,
    pub idnumber: String,
    pub institution: String,
    pub department: String,
    pub auth: String,
    pub suspended: bool,
    pub custom: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeCohort {
    pub id: i64,
    pub name: String,
    pub idnumber: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeCourse {
    pub id: i64,
    pub shortname: String,
    pub fullname: String,
    pub idnumber: String,
    pub category: i64,
    pub visible: bool,
    /// Unix time; 0 = none.
    pub enddate: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeCategory {
    pub id: i64,
    pub name: String,
    pub idnumber: String,
}

/// An injected failure: after `after` answered calls of `function` (or of any write when
/// `function` is `*write`), answer HTTP `status` `times` times (None = forever).
#[derive(Debug, Clone)]
pub struct FailRule {
    pub function: String,
    pub after: u64,
    pub status: u16,
    pub times: Option<u64>,
    /// Answer HTTP 200 with this Moodle exception `errorcode` instead of `status`.
    pub exception: Option<String>,
}

/// One recorded request: function and form fields.
pub type Recorded = (String, Vec<(String, String)>);

#[derive(Debug)]
pub struct FakeState {
    pub token: String,
    pub max_input_vars: usize,
    pub users: BTreeMap<i64, FakeUser>,
    by_username: HashMap<String, i64>,
    by_email: HashMap<String, i64>,
    pub cohorts: BTreeMap<i64, FakeCohort>,
    pub members: HashMap<i64, BTreeSet<i64>>,
    pub courses: Vec<FakeCourse>,
    pub categories: Vec<FakeCategory>,
    /// (roleid, userid, contextlevel, instanceid)
    pub role_assignments: BTreeSet<(i64, i64, String, i64)>,
    pub enrolments: BTreeSet<(i64, i64, i64)>,
    /// Roles the service account may assign (the fixtures: editingteacher 3, teacher 4, student 5).
    pub assignable_roles: BTreeSet<i64>,
    /// `moodle/category:manage` granted (the fixtures' service role does not have it).
    pub category_manage: bool,
    pub calls: BTreeMap<String, u64>,
    /// Every request's form, when recording is on (tests inspect exact fields).
    pub recorded: Option<Vec<Recorded>>,
    pub fail: Vec<FailRule>,
    /// `core_cohort_get_cohort_members` answers as if read before someone else added the
    /// members (a concurrent writer): empty member lists.
    pub stale_member_reads: bool,
    /// Usernames Moodle would have sent a "New user account" password mail to (createpassword=1).
    pub password_mails: Vec<String>,
    /// Every request waits this long before it is answered (a busy site), so overlap shows.
    pub latency: Option<std::time::Duration>,
    in_flight: u64,
    /// Most requests being answered at the same time so far.
    pub max_in_flight: u64,
    next_id: i64,
    answers: Answers,
    /// Answers set by [`FakeMoodle::reply`], newest first, before the model and the recordings.
    overrides: Vec<Override>,
    /// Every request body as sent, in echo mode.
    echoed: Vec<Vec<u8>>,
    /// The custom report the bot reads parent links from, as `tests/moodle-lab/parent_links.php`
    /// builds it in the lab (Roles source; columns `user:fullnamewithlink`, `role:shortname`,
    /// `context:link`; condition context level = user; filter `user:userselect`). Answered in
    /// every mode (the recordings have no report-builder case).
    pub parent_links_report: Option<ParentLinksReport>,
    /// Filter values per report, as `core_reportbuilder_set_filters` left them for the service
    /// account (Moodle keeps them as a preference of the caller).
    pub report_filters: BTreeMap<i64, Value>,
    /// The next `core_reportbuilder_retrieve_report` answers as if another caller had set the
    /// filter to this user in between (two bot instances sharing the token), then it is cleared.
    pub report_filter_race: Option<i64>,
    /// Draft items of the service account (`webservice/upload.php`): item id → (file name, bytes).
    pub drafts: BTreeMap<i64, (String, Vec<u8>)>,
    /// User pictures set by `core_user_update_picture`: user id → the image's bytes.
    pub pictures: BTreeMap<i64, Vec<u8>>,
    /// "Can upload files" on the external service (upload.php refuses every upload without it).
    pub uploadfiles: bool,
    /// `moodle/user:editprofile` granted to the service account (core_user_update_picture for others).
    pub editprofile: bool,
}

/// See [`FakeState::parent_links_report`].
#[derive(Debug, Clone)]
pub struct ParentLinksReport {
    pub id: i64,
    /// Short names of role ids beyond the fixtures' 3, 4, 5 (e.g. the parent role).
    pub roles: BTreeMap<i64, String>,
}

/// Where answers come from (see the module comment).
#[derive(Debug, Default)]
enum Answers {
    #[default]
    Model,
    Recorded(Vec<Case>),
    Echo,
}

impl Default for FakeState {
    fn default() -> Self {
        let mut s = FakeState {
            token: "TOKEN".into(),
            max_input_vars: 1000,
            users: BTreeMap::new(),
            by_username: HashMap::new(),
            by_email: HashMap::new(),
            cohorts: BTreeMap::new(),
            members: HashMap::new(),
            courses: Vec::new(),
            categories: vec![FakeCategory {
                id: 1,
                name: "Category 1".into(),
                idnumber: String::new(),
            }],
            role_assignments: BTreeSet::new(),
            enrolments: BTreeSet::new(),
            assignable_roles: [3, 4, 5].into(),
            category_manage: false,
            calls: BTreeMap::new(),
            recorded: None,
            fail: Vec::new(),
            stale_member_reads: false,
            password_mails: Vec::new(),
            latency: None,
            in_flight: 0,
            max_in_flight: 0,
            next_id: 100,
            answers: Answers::Model,
            overrides: Vec::new(),
            echoed: Vec::new(),
            parent_links_report: None,
            report_filters: BTreeMap::new(),
            report_filter_race: None,
            drafts: BTreeMap::new(),
            pictures: BTreeMap::new(),
            uploadfiles: true,
            editprofile: true,
        };
        // Moodle's own ids: guest 1, admin 2; the service account is 3 as in the recordings.
        for (id, name, email) in [
            (1, "guest", "root@localhost"),
            (2, "admin", "admin@lab.example.test"),
            (3, "bridge_ws", "bridge_ws@lab.example.test"),
        ] {
            s.insert_user(FakeUser {
                id,
                username: name.into(),
                firstname: name.into(),
                lastname: "User".into(),
                email: email.into(),
                auth: "manual".into(),
                ..Default::default()
            });
        }
        s
    }
}

impl FakeState {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// Seed a user (tests); returns its id.
    pub fn insert_user(&mut self, mut u: FakeUser) -> i64 {
        if u.id == 0 {
            u.id = self.id();
        }
        self.by_username.insert(u.username.clone(), u.id);
        self.by_email.insert(u.email.to_lowercase(), u.id);
        let id = u.id;
        self.users.insert(id, u);
        id
    }

    pub fn insert_cohort(&mut self, name: &str, idnumber: &str) -> i64 {
        let id = self.id();
        self.cohorts.insert(
            id,
            FakeCohort {
                id,
                name: name.into(),
                idnumber: idnumber.into(),
                description: String::new(),
            },
        );
        id
    }

    pub fn insert_course(&mut self, shortname: &str, idnumber: &str, category: i64) -> i64 {
        let id = self.id();
        self.courses.push(FakeCourse {
            id,
            shortname: shortname.into(),
            fullname: shortname.into(),
            idnumber: idnumber.into(),
            category,
            visible: true,
            enddate: 0,
        });
        id
    }

    pub fn user_by_username(&self, username: &str) -> Option<&FakeUser> {
        self.by_username
            .get(username)
            .and_then(|id| self.users.get(id))
    }

    /// (holder login, child login) of every assignment of `role` in a user context; one in any
    /// other context fails the test (the parent role is only ever given in the child's).
    pub fn links_of_role(&self, role: i64) -> std::collections::BTreeSet<(String, String)> {
        let login = |id: i64| self.users.get(&id).map(|u| u.username.clone()).unwrap();
        self.role_assignments
            .iter()
            .filter(|(r, _, _, _)| *r == role)
            .map(|(_, user, level, inst)| {
                assert_eq!(level, "user", "role {role} outside a user context");
                (login(*user), login(*inst))
            })
            .collect()
    }

    pub fn cohort_by_idnumber(&self, idnumber: &str) -> Option<&FakeCohort> {
        self.cohorts.values().find(|c| c.idnumber == idnumber)
    }

    pub fn members_of(&self, idnumber: &str) -> BTreeSet<String> {
        let Some(c) = self.cohort_by_idnumber(idnumber) else {
            return BTreeSet::new();
        };
        self.members
            .get(&c.id)
            .into_iter()
            .flatten()
            .filter_map(|u| self.users.get(u).map(|u| u.username.clone()))
            .collect()
    }

    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    pub fn write_calls(&self) -> u64 {
        self.calls
            .iter()
            .filter(|(f, _)| bridge::sync::report::is_write(f))
            .map(|(_, n)| n)
            .sum()
    }
}

pub struct FakeMoodle {
    pub url: String,
    pub state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeMoodle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeMoodle {
    pub async fn start() -> FakeMoodle {
        Self::start_with(FakeState::default()).await
    }

    /// Answers from the recordings of `shared/fixtures/moodle` (every JSON case made with the
    /// service token `TOKEN`; error, debug and second-token cases only when a test asks for them
    /// with [`FakeMoodle::reply`]); every request's form is kept ([`FakeMoodle::requests`]).
    pub async fn replaying() -> FakeMoodle {
        Self::start_with(FakeState {
            answers: Answers::Recorded(recorded_cases()),
            recorded: Some(Vec::new()),
            ..FakeState::default()
        })
        .await
    }

    /// A Moodle that reflects the request: every POST to the web-service endpoint is answered
    /// 200 with its own form body as HTML, so whatever the bridge copies from a non-JSON answer
    /// is exactly what it sent, token included.
    pub async fn echo() -> FakeMoodle {
        Self::start_with(FakeState {
            answers: Answers::Echo,
            ..FakeState::default()
        })
        .await
    }

    pub async fn start_with(state: FakeState) -> FakeMoodle {
        let state = Arc::new(Mutex::new(state));
        let app = Router::new()
            .route("/webservice/rest/server.php", post(handle).get(handle_get))
            .route("/webservice/upload.php", post(handle_upload))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake moodle");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeMoodle {
            url: format!("http://{addr}/"),
            state,
            task,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moodle settings pointing at this double.
    pub fn settings(&self) -> bridge::config::MoodleSettings {
        let max = self.lock().max_input_vars;
        bridge::config::MoodleSettings {
            url: self.url.parse().expect("url"),
            token: bridge::config::Secret::new("TOKEN"),
            max_form_fields: max,
            timeout_secs: 30,
        }
    }

    pub fn client(&self) -> bridge::moodle::MoodleClient {
        bridge::moodle::MoodleClient::new(&self.settings()).expect("client")
    }

    pub fn fail_after(&self, function: &str, after: u64, status: u16, times: Option<u64>) {
        self.lock().fail.push(FailRule {
            function: function.into(),
            after,
            status,
            times,
            exception: None,
        });
    }

    /// Every call of `function` answers the Moodle exception `errorcode` (as Moodle does: HTTP 200).
    pub fn fail_with_exception(&self, function: &str, errorcode: &str) {
        self.lock().fail.push(FailRule {
            function: function.into(),
            after: 0,
            status: 200,
            times: None,
            exception: Some(errorcode.into()),
        });
    }

    pub fn clear_failures(&self) {
        self.lock().fail.clear();
    }

    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    /// Calls answered so far, every function together.
    pub fn total_calls(&self) -> u64 {
        self.lock().total_calls()
    }

    pub fn reset_calls(&self) {
        self.lock().calls.clear();
    }

    /// The site's base URL without the trailing slash (`MOODLE_URL`, and links the bot builds).
    pub fn base_url(&self) -> String {
        self.url.trim_end_matches('/').to_string()
    }

    /// Answer `function` with `body` whenever the request has all of `params` (newest first).
    pub fn reply(&self, function: &str, params: &[(&str, &str)], body: Value) {
        let params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.lock().overrides.push(Override {
            function: function.into(),
            params,
            body,
        });
    }

    /// The forms of the calls of `function`, in order (recording is on in replay mode; set
    /// `lock().recorded = Some(Vec::new())` for the model).
    pub fn requests(&self, function: &str) -> Vec<Params> {
        self.lock()
            .recorded
            .iter()
            .flatten()
            .filter(|(f, _)| f == function)
            .map(|(_, fields)| fields.iter().cloned().collect())
            .collect()
    }

    /// Every request received in echo mode, as sent.
    pub fn received_requests(&self) -> Vec<Received> {
        self.lock()
            .echoed
            .iter()
            .map(|body| Received { body: body.clone() })
            .collect()
    }

    /// The recorded response body of a fixture case, e.g. `"core_enrol_get_users_courses/student.json"`.
    pub fn fixture_body(case: &str) -> Value {
        crate::fixture_json(&format!("moodle/{case}"))["response"]["body"].clone()
    }
}

async fn handle_get(State(state): State<Arc<Mutex<FakeState>>>, uri: axum::http::Uri) -> Response {
    let body = uri.query().unwrap_or_default().as_bytes().to_vec();
    answer(&state, &body)
}

async fn handle(State(state): State<Arc<Mutex<FakeState>>>, body: axum::body::Bytes) -> Response {
    let latency = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        st.in_flight += 1;
        st.max_in_flight = st.max_in_flight.max(st.in_flight);
        st.latency
    };
    if let Some(d) = latency {
        tokio::time::sleep(d).await;
    }
    let response = answer(&state, &body);
    state.lock().unwrap_or_else(|p| p.into_inner()).in_flight -= 1;
    response
}

fn json_response(v: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn exception(class: &str, code: &str, message: &str) -> Value {
    json!({"exception": class, "errorcode": code, "message": message})
}

fn invalid_parameter() -> Value {
    exception(
        "core\\exception\\invalid_parameter_exception",
        "invalidparameter",
        "Invalid parameter value detected",
    )
}

fn answer(state: &Arc<Mutex<FakeState>>, body: &[u8]) -> Response {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Answers::Echo = st.answers {
        st.echoed.push(body.to_vec());
        let mut page = body.to_vec();
        page.extend_from_slice(b"\n<html><body>request logged</body></html>");
        return ([(header::CONTENT_TYPE, "text/html")], page).into_response();
    }
    let mut fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    // PHP drops every variable after max_input_vars (and only logs a warning).
    fields.truncate(st.max_input_vars);
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let function = get("wsfunction").unwrap_or_default();
    if get("moodlewsrestformat").as_deref() != Some("json") {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<EXCEPTION class=\"core\\exception\\moodle_exception\">\n<ERRORCODE>xmlonly</ERRORCODE>\n<MESSAGE>the double answers XML errors only</MESSAGE>\n</EXCEPTION>\n";
        return (
            [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
            xml,
        )
            .into_response();
    }
    let n = st.calls.get(&function).copied().unwrap_or(0);
    let is_write = bridge::sync::report::is_write(&function);
    let writes = st.write_calls();
    for rule in st.fail.iter_mut() {
        let (hit, count) = match rule.function.as_str() {
            "*write" => (is_write, writes),
            f => (f == function, n),
        };
        if hit && count >= rule.after && rule.times != Some(0) {
            if let Some(t) = rule.times.as_mut() {
                *t -= 1;
            }
            if let Some(code) = &rule.exception {
                return json_response(exception(
                    "core\\exception\\moodle_exception",
                    code,
                    "injected exception",
                ));
            }
            return (
                StatusCode::from_u16(rule.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "injected failure",
            )
                .into_response();
        }
    }
    *st.calls.entry(function.clone()).or_default() += 1;
    if let Some(rec) = st.recorded.as_mut() {
        rec.push((function.clone(), fields.clone()));
    }
    if get("wstoken").as_deref() != Some(st.token.as_str()) {
        return json_response(exception(
            "core\\exception\\moodle_exception",
            "invalidtoken",
            "Invalid token - token not found",
        ));
    }
    let form: Params = fields.iter().cloned().collect();
    if let Some(body) = overridden(&st.overrides, &function, &form) {
        return json_response(body);
    }
    if function.starts_with("core_reportbuilder_") {
        let params = nest(&fields);
        return json_response(report_builder(&mut st, &function, &params).unwrap_or_else(|e| e));
    }
    if let Answers::Recorded(cases) = &st.answers {
        return json_response(best_case(cases, &function, &form).unwrap_or_else(invalid_parameter));
    }
    let params = nest(&fields);
    let result = match function.as_str() {
        "core_webservice_get_site_info" => Ok(site_info(st.uploadfiles)),
        "core_user_update_picture" => update_picture(&mut st, &params),
        "core_user_create_users" => create_users(&mut st, &params),
        "core_user_update_users" => update_users(&mut st, &params),
        "core_user_get_users_by_field" => users_by_field(&st, &params),
        "core_user_get_users" => get_users(&st, &params),
        "core_user_delete_users" => delete_users(&mut st, &params),
        "core_cohort_create_cohorts" => create_cohorts(&mut st, &params),
        "core_cohort_get_cohorts" => get_cohorts(&st, &params),
        "core_cohort_add_cohort_members" => add_members(&mut st, &params),
        "core_cohort_delete_cohort_members" => delete_members(&mut st, &params),
        "core_cohort_get_cohort_members" => get_members(&st, &params),
        "core_role_assign_roles" => assign_roles(&mut st, &params, true),
        "core_role_unassign_roles" => assign_roles(&mut st, &params, false),
        "core_course_get_courses_by_field" => courses_by_field(&st, &params),
        "core_course_get_categories" => get_categories(&st, &params),
        "enrol_manual_enrol_users" => enrol(&mut st, &params),
        "core_enrol_get_enrolled_users" => enrolled_users(&st, &params),
        _ => Err(exception(
            "dml_missing_record_exception",
            "invalidrecord",
            "Can't find data record in database table external_functions.",
        )),
    };
    json_response(result.unwrap_or_else(|e| e))
}

/// A request as received in echo mode.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Vec<u8>,
}

/// A request's form fields by name.
pub type Params = BTreeMap<String, String>;

/// Parameters that change between runs and never select a recorded case.
pub const VOLATILE: &[&str] = &[
    "wstoken",
    "moodlewsrestformat",
    "timesortfrom",
    "timesortto",
    "limitnum",
];

/// Parameters naming whom or what a call is about: a case recorded for another id never answers.
fn is_identity(key: &str) -> bool {
    [
        "userid",
        "courseid",
        "field",
        "values[",
        "courseids[",
        "assignmentids[",
        "criteria[",
        // Without it, "all courses" was answered with the recording of two courses by id.
        "options[ids][",
    ]
    .iter()
    .any(|p| key.starts_with(p))
}

/// One recorded answer: the function, the form that selects it, the body.
#[derive(Debug)]
struct Case {
    function: String,
    params: Params,
    body: Value,
}

/// An answer a test set: served when the request has all of `params`.
#[derive(Debug)]
struct Override {
    function: String,
    params: Params,
    body: Value,
}

fn selecting(params: &Params) -> Params {
    params
        .iter()
        .filter(|(k, _)| !VOLATILE.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn overridden(overrides: &[Override], function: &str, form: &Params) -> Option<Value> {
    overrides
        .iter()
        .rev()
        .filter(|o| o.function == function)
        .find(|o| o.params.iter().all(|(k, v)| form.get(k) == Some(v)))
        .map(|o| o.body.clone())
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

fn best_case(cases: &[Case], function: &str, form: &Params) -> Option<Value> {
    let wanted = selecting(form);
    cases
        .iter()
        .filter(|c| c.function == function)
        .filter_map(|c| score(&c.params, &wanted).map(|s| (s, c)))
        .max_by_key(|(s, _)| *s)
        .map(|(_, c)| c.body.clone())
}

/// Every recorded JSON case of `shared/fixtures/moodle` made with the service token `TOKEN`,
/// but the error, debugging and second-token ones.
fn recorded_cases() -> Vec<Case> {
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
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
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
            if name.starts_with("error") || name.starts_with("debug") || name.contains("nocap") {
                continue;
            }
            cases.push(Case {
                function,
                params: selecting(&params),
                body: v["response"]["body"].clone(),
            });
        }
    }
    cases
}

/// PHP-style `a[0][b]=v` fields → nested JSON objects (numeric keys stay object keys).
fn nest(fields: &[(String, String)]) -> Value {
    let mut root = Map::new();
    for (k, v) in fields {
        let mut path: Vec<String> = Vec::new();
        let (head, rest) = match k.find('[') {
            Some(p) => (&k[..p], &k[p..]),
            None => (k.as_str(), ""),
        };
        path.push(head.to_string());
        for seg in rest.split('[').skip(1) {
            path.push(seg.trim_end_matches(']').to_string());
        }
        let mut cur = &mut root;
        for (i, p) in path.iter().enumerate() {
            if i + 1 == path.len() {
                cur.insert(p.clone(), Value::String(v.clone()));
            } else {
                let next = cur
                    .entry(p.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !next.is_object() {
                    *next = Value::Object(Map::new());
                }
                cur = next.as_object_mut().expect("object");
            }
        }
    }
    Value::Object(root)
}

/// Items of an indexed array parameter, in index order.
fn items(params: &Value, name: &str) -> Option<Vec<Map<String, Value>>> {
    let obj = params.get(name)?.as_object()?;
    let mut v: Vec<(usize, Map<String, Value>)> = obj
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_object()?.clone())))
        .collect();
    v.sort_by_key(|(i, _)| *i);
    Some(v.into_iter().map(|(_, m)| m).collect())
}

fn scalars(params: &Value, name: &str) -> Vec<String> {
    let Some(obj) = params.get(name).and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut v: Vec<(usize, String)> = obj
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
        .collect();
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, s)| s).collect()
}

fn s(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_string)
}

fn int(m: &Map<String, Value>, k: &str) -> Result<i64, Value> {
    s(m, k)
        .and_then(|v| v.parse().ok())
        .ok_or_else(invalid_parameter)
}

fn valid_username(u: &str) -> bool {
    !u.is_empty()
        && u.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.@".contains(c))
}

fn valid_email(e: &str) -> bool {
    bridge::sync::mapping::plausible_email(e)
}

fn user_json(u: &FakeUser) -> Value {
    let mut m = json!({
        "id": u.id, "username": u.username, "firstname": u.firstname, "lastname": u.lastname,
        "fullname": format!("{} {}", u.firstname, u.lastname), "email": u.email, "department": u.department,
        "firstaccess": 0, "lastaccess": 0, "auth": u.auth, "suspended": u.suspended, "confirmed": true,
        "lang": "en", "theme": "", "timezone": "99", "mailformat": 1, "trackforums": 0,
        "profileimageurlsmall": "http://127.0.0.1/theme/image.php/boost/core/1/u/f2",
        "profileimageurl": "http://127.0.0.1/theme/image.php/boost/core/1/u/f1"
    });
    let o = m.as_object_mut().expect("object");
    // Moodle omits empty optional fields in JSON.
    if !u.idnumber.is_empty() {
        o.insert("idnumber".into(), json!(u.idnumber));
    }
    if !u.institution.is_empty() {
        o.insert("institution".into(), json!(u.institution));
    }
    if !u.custom.is_empty() {
        let cf: Vec<Value> = u.custom.iter().map(|(k, v)| json!({"type": "text", "value": v, "displayvalue": v, "name": k, "shortname": k})).collect();
        o.insert("customfields".into(), Value::Array(cf));
    }
    m
}

fn customfields(m: &Map<String, Value>) -> BTreeMap<String, String> {
    items(&Value::Object(m.clone()), "customfields")
        .unwrap_or_default()
        .iter()
        .filter_map(|c| Some((s(c, "type")?, s(c, "value").unwrap_or_default())))
        .collect()
}

/// Moodle's `user` columns are `varchar(n)`: a longer value (in characters) fails the write.
fn too_long(u: &Map<String, Value>) -> bool {
    [
        "username",
        "firstname",
        "lastname",
        "email",
        "idnumber",
        "institution",
        "department",
        "auth",
    ]
    .iter()
    .any(|f| {
        let max = bridge::moodle::users::column_chars(f).unwrap_or(usize::MAX);
        s(u, f).is_some_and(|v| v.chars().count() > max)
    })
}

fn dml_write() -> Value {
    exception(
        "core\\exception\\dml_write_exception",
        "dmlwriteexception",
        "Error writing to database",
    )
}

fn create_users(st: &mut FakeState, p: &Value) -> Result<Value, Value> {
    let list = items(p, "users")
        .filter(|l| !l.is_empty())
        .ok_or_else(invalid_parameter)?;
    let mut new = Vec::new();
    let mut names = BTreeSet::new();
    let mut mails = BTreeSet::new();
    let mut password_mails = Vec::new();
    // Validate everything first: one bad item rolls the whole batch back.
    for u in &list {
        let (Some(username), Some(firstname), Some(lastname), Some(email)) = (
            s(u, "username"),
            s(u, "firstname"),
            s(u, "lastname"),
            s(u, "email"),
        ) else {
            return Err(invalid_parameter());
        };
        if !valid_username(&username) || !valid_email(&email) {
            return Err(invalid_parameter());
        }
        if too_long(u) {
            // The real site rolls the whole batch back (recorded on the lab, see its README).
            return Err(dml_write());
        }
        let auth = s(u, "auth").unwrap_or_else(|| "manual".into());
        let createpassword = s(u, "createpassword").as_deref() == Some("1");
        // Moodle wants a password (or createpassword) only for internal auths.
        if bridge::moodle::users::is_internal_auth(&auth)
            && s(u, "password").is_none()
            && !createpassword
        {
            return Err(invalid_parameter());
        }
        if createpassword {
            // Moodle mails a temporary password for any auth when asked to create one.
            password_mails.push(username.clone());
        }
        if st.by_username.contains_key(&username) || !names.insert(username.clone()) {
            return Err(invalid_parameter());
        }
        let lower = email.to_lowercase();
        if st.by_email.contains_key(&lower) || !mails.insert(lower) {
            return Err(invalid_parameter());
        }
        new.push(FakeUser {
            id: 0,
            username,
            firstname,
            lastname,
            email,
            idnumber: s(u, "idnumber").unwrap_or_default(),
            institution: s(u, "institution").unwrap_or_default(),
            department: s(u, "department").unwrap_or_default(),
            auth,
            suspended: false,
            custom: customfields(u),
        });
    }
    st.password_mails.extend(password_mails);
    let out: Vec<Value> = new
        .into_iter()
        .map(|u| {
            let name = u.username.clone();
            let id = st.insert_user(u);
            json!({"id": id, "username": name})
        })
        .collect();
    Ok(Value::Array(out))
}

fn update_users(st: &mut FakeState, p: &Value) -> Result<Value, Value> {
    let list = items(p, "users").ok_or_else(invalid_parameter)?;
    let mut warnings = Vec::new();
    for u in list {
        let id = int(&u, "id")?;
        let warn = |code: &str, msg: &str| json!({"item": "user", "itemid": id, "warningcode": code, "message": msg});
        let Some(cur) = st.users.get(&id).cloned() else {
            warnings.push(warn("invaliduserid", "Invalid user ID"));
            continue;
        };
        if too_long(&u) {
            warnings.push(warn("dmlwriteexception", "Error writing to database"));
            continue;
        }
        let mut next = cur.clone();
        if let Some(n) = s(&u, "username") {
            if st.by_username.get(&n).is_some_and(|o| *o != id) || !valid_username(&n) {
                warnings.push(warn("dmlwriteexception", "Error writing to database"));
                continue;
            }
            next.username = n;
        }
        if let Some(e) = s(&u, "email") {
            if !valid_email(&e) {
                warnings.push(warn("useremailinvalid", "error/useremailinvalid"));
                continue;
            }
            next.email = e;
        }
        for (k, f) in [
            ("firstname", &mut next.firstname),
            ("lastname", &mut next.lastname),
            ("idnumber", &mut next.idnumber),
            ("institution", &mut next.institution),
            ("department", &mut next.department),
            ("auth", &mut next.auth),
        ] {
            if let Some(v) = s(&u, k) {
                *f = v;
            }
        }
        if let Some(v) = s(&u, "suspended") {
            next.suspended = v == "1";
        }
        next.custom.extend(customfields(&u));
        st.by_username.remove(&cur.username);
        st.by_email.remove(&cur.email.to_lowercase());
        st.insert_user(next);
    }
    Ok(json!({"warnings": warnings}))
}

fn users_by_field(st: &FakeState, p: &Value) -> Result<Value, Value> {
    let field = p
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let values = scalars(p, "values");
    if p.get("values").is_none() {
        return Err(invalid_parameter());
    }
    let mut out: Vec<&FakeUser> =
        match field.as_str() {
            "id" => values
                .iter()
                .filter_map(|v| v.parse().ok().and_then(|id: i64| st.users.get(&id)))
                .collect(),
            "username" => values
                .iter()
                .filter_map(|v| st.user_by_username(v))
                .collect(),
            "email" => values
                .iter()
                .filter_map(|v| {
                    st.by_email
                        .get(&v.to_lowercase())
                        .and_then(|id| st.users.get(id))
                })
                .collect(),
            "idnumber" => {
                let want: BTreeSet<&String> = values.iter().collect();
                st.users
                    .values()
                    .filter(|u| !u.idnumber.is_empty() && want.contains(&u.idnumber))
                    .collect()
            }
            _ => return Err(exception(
                "core\\exception\\coding_exception",
                "codingerror",
                "Coding error detected, it must be fixed by a programmer: invalid field parameter",
            )),
        };
    // Database order, not request order.
    out.sort_by_key(|u| u.id);
    out.dedup_by_key(|u| u.id);
    Ok(Value::Array(out.into_iter().map(user_json).collect()))
}

fn get_users(st: &FakeState, p: &Value) -> Result<Value, Value> {
    let criteria = items(p, "criteria").ok_or_else(invalid_parameter)?;
    let mut warnings = Vec::new();
    let mut users: Vec<&FakeUser> = st.users.values().collect();
    for c in criteria {
        let key = s(&c, "key").unwrap_or_default();
        let value = s(&c, "value").unwrap_or_default();
        match key.as_str() {
            "username" => users.retain(|u| u.username == value),
            "idnumber" => users.retain(|u| u.idnumber == value),
            "email" => users.retain(|u| u.email == value),
            "id" => users.retain(|u| u.id.to_string() == value),
            // An unknown key is dropped with a warning: the call returns every user.
            _ => warnings.push(json!({"item": key, "warningcode": "invalidfieldparameter", "message": format!("The search key '{key}' is not supported, look at the web service documentation")})),
        }
    }
    Ok(json!({"users": users.into_iter().map(user_json).collect::<Vec<_>>(), "warnings": warnings}))
}

fn delete_users(st: &mut FakeState, p: &Value) -> Result<Value, Value> {
    let ids: Vec<i64> = scalars(p, "userids")
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    for id in &ids {
        match st.users.get(id) {
            None => {
                return Err(exception(
                    "dml_missing_record_exception",
                    "invaliduser",
                    "Invalid user",
                ))
            }
            Some(u) if u.username == "admin" => {
                return Err(exception(
                    "core\\exception\\moodle_exception",
                    "useradminodelete",
                    "Administrator accounts cannot be deleted.",
                ))
            }
            Some(_) => {}
        }
    }
    for id in ids {
        if let Some(u) = st.users.remove(&id) {
            st.by_username.remove(&u.username);
            st.by_email.remove(&u.email.to_lowercase());
        }
        for m in st.members.values_mut() {
            m.remove(&id);
        }
    }
    Ok(Value::Null)
}

fn cohort_json(c: &FakeCohort, with_custom: bool) -> Value {
    let mut v = json!({"id": c.id, "name": c.name, "idnumber": c.idnumber, "description": c.description, "descriptionformat": 1, "visible": true, "theme": ""});
    if with_custom {
        v["customfields"] = json!([]);
    }
    v
}

fn create_cohorts(st: &mut FakeState, p: &Value) -> Result<Value, Value> {
    let list = items(p, "cohorts")
        .filter(|l| !l.is_empty())
        .ok_or_else(invalid_parameter)?;
    let mut seen = BTreeSet::new();
    for c in &list {
        let idn = s(c, "idnumber").unwrap_or_default();
        let cat = c.get("categorytype").and_then(Value::as_object);
        let (ctype, cval) = (
            cat.and_then(|t| s(t, "type")),
            cat.and_then(|t| s(t, "value")).unwrap_or_default(),
        );
        // The context must exist: "system", or a category found by id / idnumber.
        let context_ok = match ctype.as_deref() {
            Some("system") => true,
            Some("id") => st.categories.iter().any(|k| k.id.to_string() == cval),
            Some("idnumber") => st
                .categories
                .iter()
                .any(|k| !k.idnumber.is_empty() && k.idnumber == cval),
            _ => false,
        };
        if s(c, "name").is_none()
            || !context_ok
            || (!idn.is_empty()
                && (st.cohort_by_idnumber(&idn).is_some() || !seen.insert(idn.clone())))
        {
            return Err(invalid_parameter());
        }
    }
    let mut out = Vec::new();
    for c in list {
        let id = st.id();
        let cohort = FakeCohort {
            id,
            name: s(&c, "name").unwrap_or_default(),
            idnumber: s(&c, "idnumber").unwrap_or_default(),
            description: s(&c, "description").unwrap_or_default(),
        };
        out.push(cohort_json(&cohort, false));
        st.cohorts.insert(id, cohort);
    }
    Ok(Value::Array(out))
}

fn get_cohorts(st: &FakeState, p: &Value) -> Result<Value, Value> {
    let ids = scalars(p, "cohortids");
    if ids.is_empty() {
        return Ok(Value::Array(
            st.cohorts.values().map(|c| cohort_json(c, true)).collect(),
        ));
    }
    let ids: Vec<i64> = ids
        .iter()
        .map(|v| v.parse().map_err(|_| invalid_parameter()))
        .collect::<Result<_, _>>()?;
    Ok(Value::Array(
        ids.iter()
            .filter_map(|id| st.cohorts.get(id))
            .map(|c| cohort_json(c, true))
            .collect(),
    ))
}

fn add_members(st: &mut FakeState, p: &Value) -> Result<Value, Value> {
    let list = items(p, "members").ok_or_else(invalid_parameter)?;
    let mut warnings = Vec::new();
    for m in list {
        let ct = m
            .get("cohorttype")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let ut = m
            .get("usertype")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let (ctype, cval) = (
            s(&ct, "type").unwrap_or_default(),
            s(&ct, "value").unwrap_or_default(),
        );
        let (utype, uval) = (
            s(&ut, "type").unwrap_or_default(),
            s(&ut, "value").unwrap_or_default(),
        );
        let cohort = match ctype.as_str() {
            "id" => cval
                .parse()
                .ok()
                .and_then(|id: i64| st.cohorts.get(&id))
                .cloned(),
            "idnumber" => st.cohort_by_idnumber(&cval).cloned(),
            _ => return Err(invalid_parameter()),
        };
        let Some(cohort) = cohort else {
            warnings.push(
                json!({"warningcode": "2", "message": format!("cohort {ctype}={cval} not exists")}),
            );
            continue;
        };
        let user = match utype.as_str() {
            "id" => uval
                .parse()
                .ok()
                .and_then(|id: i64| st.users.get(&id))
                .cloned(),
            "username" => st.user_by_username(&uval).cloned(),
            _ => return Err(invalid_parameter()),
        };
        let Some(user) = user else {
            warnings.push(
                json!({"warningcode": "2", "message": format!("user {utype}={uval} not exists")}),
            );
            continue;
        };
        if !st.members.entry(cohort.id).or_default().insert(user.id) {
            warnings.push(json!({"warningcode": "3", "message": format!("record already exists: cohort(idnumber={} username={})", cohort.idnumber, user.username)}));
        }
    }
    Ok(json!({"warnings": warnings}))
}

fn delete_members(st: &mut FakeState, p: &Value) -> Result<Value, Value> {
    let list = items(p, "members").ok_or_else(invalid_parameter)?;
    for m in &list {
        let cid = int(m, "cohortid")?;
        if !st.cohorts.contains_key(&cid) {
            return Err(exception(
                "dml_missing_record_exception",
                "invalidrecord",
                "Can't find data record in database table cohort.",
            ));
        }
    }
    for m in list {
        let (cid, uid) = (int(&m, "cohortid")?, int(&m, "userid")?);
        if let Some(set) = st.members.get_mut(&cid) {
            set.remove(&uid);
        }
    }
    Ok(Value::Null)
}

fn get_members(st: &FakeState, p: &Value) -> Result<Value, Value> {
    let mut out = Vec::new();
    for id in scalars(p, "cohortids") {
        let id: i64 = id.parse().map_err(|_| invalid_parameter())?;
        if !st.cohorts.contains_key(&id) {
            return Err(exception(
                "dml_missing_record_exception",
                "invalidrecord",
                "Can't find data record in database table cohort.",
            ));
        }
        let users: Vec<i64> = st
            .members
            .get(&id)
            .into_iter()
            .flatten()
            .copied()
            .filter(|_| !st.stale_member_reads)
            .collect();
        out.push(json!({"cohortid": id, "userids": users}));
    }
    Ok(Value::Array(out))
}

fn assign_roles(st: &mut FakeState, p: &Value, assign: bool) -> Result<Value, Value> {
    let list = items(
        p,
        if assign {
            "assignments"
        } else {
            "unassignments"
        },
    )
    .ok_or_else(invalid_parameter)?;
    let mut todo = Vec::new();
    for a in &list {
        let (role, user, inst) = (int(a, "roleid")?, int(a, "userid")?, int(a, "instanceid")?);
        let level = s(a, "contextlevel").unwrap_or_default();
        let context_ok = match level.as_str() {
            "course" => st.courses.iter().any(|c| c.id == inst),
            "coursecat" => st.categories.iter().any(|c| c.id == inst),
            // A user's own context (Moodle's "parent" role pattern): instanceid is the user id.
            "user" => st.users.contains_key(&inst),
            _ => false,
        };
        // "Can not assign roleid=… in contextid=": the whole call fails, nothing is kept.
        if !context_ok
            || !st.users.contains_key(&user)
            || (assign && !st.assignable_roles.contains(&role))
        {
            return Err(invalid_parameter());
        }
        todo.push((role, user, level, inst));
    }
    for t in todo {
        if assign {
            st.role_assignments.insert(t);
        } else {
            st.role_assignments.remove(&t);
        }
    }
    Ok(Value::Null)
}

/// `webservice/upload.php` as Moodle's code has it (no recording exists): multipart with
/// `token`, `filearea` (only `draft`), `itemid` (0 = a new draft item) and file parts; errors as
/// its AJAX error object (HTTP 200), success as an array of file records with `itemid`.
async fn handle_upload(
    State(state): State<Arc<Mutex<FakeState>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let ajax_error = |code: &str, message: &str| {
        json_response(
            json!({"error": message, "errorcode": code, "stacktrace": null,
            "debuginfo": null, "reproductionlink": null}),
        )
    };
    let boundary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("boundary=").nth(1))
        .map(|b| b.trim_matches('"').to_string());
    let Some(boundary) = boundary else {
        return ajax_error("invalidparameter", "not a multipart form");
    };
    let parts = multipart_parts(&body, &boundary);
    let text = |name: &str| {
        parts
            .iter()
            .find(|p| p.name == name && p.filename.is_none())
            .map(|p| String::from_utf8_lossy(&p.data).to_string())
    };
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    *st.calls
        .entry(bridge::moodle::client::UPLOAD_CALL.to_string())
        .or_default() += 1;
    if text("token").as_deref() != Some(st.token.as_str()) {
        return ajax_error("invalidtoken", "Invalid token - token not found");
    }
    if !st.uploadfiles {
        return ajax_error(
            "accessexception",
            "Web service file upload must be enabled in external service settings",
        );
    }
    match text("filearea").as_deref().unwrap_or("private") {
        "draft" => {}
        "private" => return ajax_error("privatefilesupload", "Private files upload is disabled"),
        _ => return ajax_error("error", "File error"),
    }
    let files: Vec<&Part> = parts.iter().filter(|p| p.filename.is_some()).collect();
    if files.is_empty() {
        return json_response(json!([]));
    }
    let mut itemid: i64 = text("itemid").and_then(|v| v.parse().ok()).unwrap_or(0);
    if itemid <= 0 {
        itemid = 100_000_000 + st.id();
    }
    let mut out = Vec::new();
    for f in files {
        let filename = f.filename.clone().unwrap_or_default();
        st.drafts.insert(itemid, (filename.clone(), f.data.clone()));
        out.push(json!({"component": "user", "contextid": 30, "userid": "3", "filearea": "draft",
            "filename": filename, "filepath": "/", "itemid": itemid, "license": "allrightsreserved",
            "author": "Bridge Service", "source": format!("O:8:\"stdClass\":1:{{s:6:\"source\";s:{}:\"{filename}\";}}", filename.len())}));
    }
    json_response(Value::Array(out))
}

struct Part {
    name: String,
    filename: Option<String>,
    data: Vec<u8>,
}

/// Just enough multipart/form-data for upload.php: parts split on the boundary, the name and
/// filename of `Content-Disposition`, the raw bytes after the blank line.
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<Part> {
    let delim = format!("--{boundary}");
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    let mut parts = Vec::new();
    let mut at = match find(body, delim.as_bytes(), 0) {
        Some(i) => i + delim.len(),
        None => return parts,
    };
    while let Some(end) = find(body, format!("\r\n{delim}").as_bytes(), at) {
        let chunk = &body[at..end];
        let chunk = chunk.strip_prefix(b"\r\n").unwrap_or(chunk);
        if let Some(split) = find(chunk, b"\r\n\r\n", 0) {
            let head = String::from_utf8_lossy(&chunk[..split]).to_string();
            let attr = |key: &str| {
                let marker = format!("{key}=\"");
                let start = head.find(&marker)? + marker.len();
                let len = head[start..].find('"')?;
                Some(head[start..start + len].to_string())
            };
            parts.push(Part {
                name: attr("name").unwrap_or_default(),
                filename: attr("filename"),
                data: chunk[split + 4..].to_vec(),
            });
        }
        at = end + 2 + delim.len();
        if body.get(at..at + 2) == Some(b"--") {
            break;
        }
    }
    parts
}

/// `core_user_update_picture` as `user/externallib.php` has it: another user needs
/// `moodle/user:editprofile`, an active account, a draft item of the caller holding an image.
fn update_picture(st: &mut FakeState, p: &Value) -> Result<Value, Value> {
    let o = p.as_object().cloned().unwrap_or_default();
    let draft = int(&o, "draftitemid")?;
    let userid = o
        .get("userid")
        .and_then(|v| v.as_str()?.parse::<i64>().ok())
        .unwrap_or(3);
    let delete = o.get("delete").and_then(|v| v.as_str()) == Some("1");
    if userid != 3 && !st.editprofile {
        return Err(exception(
            "core\\exception\\required_capability_exception",
            "nopermissions",
            "Sorry, but you do not currently have permissions to do that (Edit user profile).",
        ));
    }
    let Some(user) = st.users.get(&userid) else {
        return Err(exception(
            "dml_missing_record_exception",
            "invaliduser",
            "Invalid user",
        ));
    };
    if user.suspended {
        return Err(exception(
            "core\\exception\\moodle_exception",
            "suspended",
            "User is suspended",
        ));
    }
    if delete {
        st.pictures.remove(&userid);
        return Ok(json!({"success": true, "warnings": []}));
    }
    let image = st.drafts.get(&draft).map(|(_, b)| b.clone()).filter(|b| {
        b.starts_with(&[0xFF, 0xD8, 0xFF]) || b.starts_with(b"\x89PNG") || b.starts_with(b"GIF8")
    });
    match image {
        Some(bytes) => {
            st.pictures.insert(userid, bytes);
            Ok(json!({"success": true, "warnings": [],
                "profileimageurl": format!("http://127.0.0.1/pluginfile.php/{}/user/icon/boost/f1?rev=1", 30 + userid)}))
        }
        None => Ok(json!({"success": false, "warnings": []})),
    }
}

/// Every key the recorded answer has (`core_webservice_get_site_info/success`).
fn site_info(uploadfiles: bool) -> Value {
    let functions: Vec<Value> = [
        "core_user_create_users",
        "core_user_update_users",
        "core_user_get_users_by_field",
        "core_user_delete_users",
        "core_cohort_create_cohorts",
        "core_cohort_get_cohorts",
        "core_cohort_add_cohort_members",
        "core_cohort_delete_cohort_members",
        "core_cohort_get_cohort_members",
        "core_role_assign_roles",
        "core_role_unassign_roles",
        "core_course_get_courses_by_field",
        "core_course_get_categories",
        "enrol_manual_enrol_users",
        "core_user_update_picture",
    ]
    .iter()
    .map(|f| json!({"name": f, "version": "2024100700"}))
    .collect();
    json!({
        "sitename": "Fake Moodle", "username": "bridge_ws", "firstname": "Bridge", "lastname": "Service",
        "fullname": "Bridge Service", "lang": "en", "userid": 3, "siteurl": "http://127.0.0.1/moodle",
        "userpictureurl": "http://127.0.0.1/moodle/theme/image.php/boost/core/1/u/f1", "functions": functions,
        "downloadfiles": 0, "uploadfiles": i32::from(uploadfiles), "release": "5.0dev (Build: 20241007)", "version": "2024100700",
        "mobilecssurl": "", "advancedfeatures": [{"name": "usecomments", "value": 1}],
        "usercanmanageownfiles": true, "userquota": 104857600, "usermaxuploadfilesize": 67108864,
        "userhomepage": 1, "userprivateaccesskey": "PRIVATE_ACCESS_KEY", "siteid": 1,
        "sitecalendartype": "gregorian", "usercalendartype": "gregorian", "userissiteadmin": false,
        "theme": "boost", "limitconcurrentlogins": 0, "policyagreed": 0,
    })
}

/// Every key of a recorded course (`core_course_get_courses_by_field/by_shortname`).
fn course_json(c: &FakeCourse, categories: &[FakeCategory]) -> Value {
    let categoryname = categories
        .iter()
        .find(|k| k.id == c.category)
        .map(|k| k.name.clone())
        .unwrap_or_default();
    let mut v = json!({
        "id": c.id, "fullname": c.fullname, "displayname": c.fullname, "shortname": c.shortname,
        "courseimage": format!("http://127.0.0.1/moodle/pluginfile.php/{}/course/generated/course.svg", c.id),
        "categoryid": c.category, "categoryname": categoryname, "sortorder": 10000 + c.id,
        "summary": "", "summaryformat": 1, "summaryfiles": [], "overviewfiles": [],
        "showactivitydates": false, "showcompletionconditions": true, "contacts": [],
        "enrollmentmethods": ["manual"], "idnumber": c.idnumber,
    });
    // Two halves: one `json!` this large exceeds the macro recursion limit.
    let rest = json!({
        "format": "topics", "showgrades": 1,
        "newsitems": 1, "startdate": 0, "enddate": c.enddate, "maxbytes": 0, "showreports": 0,
        "visible": i64::from(c.visible),
        "groupmode": 0, "groupmodeforce": 0, "defaultgroupingid": 0, "enablecompletion": 1,
        "completionnotify": 0, "lang": "", "theme": "", "marker": 0, "legacyfiles": 0,
        "calendartype": "", "timecreated": 0, "timemodified": 0, "requested": 0, "cacherev": 0,
        "filters": [{"filter": "activitynames", "localstate": 0, "inheritedstate": 1}],
        "courseformatoptions": [{"name": "hiddensections", "value": 1}],
    });
    if let (Some(a), Value::Object(b)) = (v.as_object_mut(), rest) {
        a.extend(b);
    }
    v
}

fn courses_by_field(st: &FakeState, p: &Value) -> Result<Value, Value> {
    let field = p.get("field").and_then(Value::as_str).unwrap_or_default();
    let value = p.get("value").and_then(Value::as_str).unwrap_or_default();
    let list: Vec<Value> = match field {
        "" => st
            .courses
            .iter()
            .map(|c| course_json(c, &st.categories))
            .collect(),
        "id" => st
            .courses
            .iter()
            .filter(|c| c.id.to_string() == value)
            .map(|c| course_json(c, &st.categories))
            .collect(),
        "ids" => {
            let ids: BTreeSet<&str> = value.split(',').map(str::trim).collect();
            st.courses
                .iter()
                .filter(|c| ids.contains(c.id.to_string().as_str()))
                .map(|c| course_json(c, &st.categories))
                .collect()
        }
        "idnumber" => st
            .courses
            .iter()
            .filter(|c| c.idnumber == value)
            .map(|c| course_json(c, &st.categories))
            .collect(),
        "shortname" => st
            .courses
            .iter()
            .filter(|c| c.shortname == value)
            .map(|c| course_json(c, &st.categories))
            .collect(),
        "category" => st
            .courses
            .iter()
            .filter(|c| c.category.to_string() == value)
            .map(|c| course_json(c, &st.categories))
            .collect(),
        _ => return Err(invalid_parameter()),
    };
    Ok(json!({"courses": list, "warnings": []}))
}

fn get_categories(st: &FakeState, p: &Value) -> Result<Value, Value> {
    let criteria = items(p, "criteria").unwrap_or_default();
    let criteria_error = exception(
        "core\\exception\\moodle_exception",
        "criteriaerror",
        "Missing permissions to search on a criterion.",
    );
    let mut cats: Vec<&FakeCategory> = st.categories.iter().collect();
    for c in criteria {
        let (key, value) = (
            s(&c, "key").unwrap_or_default(),
            s(&c, "value").unwrap_or_default(),
        );
        match key.as_str() {
            "name" => cats.retain(|c| c.name == value),
            "id" => cats.retain(|c| c.id.to_string() == value),
            "idnumber" if st.category_manage => cats.retain(|c| c.idnumber == value),
            _ => return Err(criteria_error),
        }
    }
    Ok(Value::Array(
        cats.into_iter()
            .map(|c| {
                let mut v = json!({"id": c.id, "name": c.name, "description": "", "descriptionformat": 1, "parent": 0, "sortorder": 10000, "coursecount": 0, "depth": 1, "path": format!("/{}", c.id)});
                if st.category_manage {
                    v["idnumber"] = json!(c.idnumber);
                }
                v
            })
            .collect(),
    ))
}

fn enrol(st: &mut FakeState, p: &Value) -> Result<Value, Value> {
    let list = items(p, "enrolments").ok_or_else(invalid_parameter)?;
    let mut todo = Vec::new();
    for e in &list {
        let (role, user, course) = (int(e, "roleid")?, int(e, "userid")?, int(e, "courseid")?);
        if !st.courses.iter().any(|c| c.id == course) {
            return Err(invalid_parameter());
        }
        if !st.assignable_roles.contains(&role) {
            return Err(exception("core\\exception\\moodle_exception", "wsusercannotassign", &format!("You don't have the permission to assign this role ({role}) to this user ({user}) in this course ({course}).")));
        }
        if !st.users.contains_key(&user) {
            return Err(
                json!({"exception": "TypeError", "message": "core\\user::get_name_placeholders(): Argument #1 ($user) must be of type stdClass, bool given, called in [dirroot]/lib/enrollib.php on line 3674"}),
            );
        }
        todo.push((role, user, course));
    }
    st.enrolments.extend(todo);
    Ok(Value::Null)
}

/// Role shortnames of the fixtures' site (core_enrol_get_enrolled_users answers them).
fn role_shortname(id: i64) -> &'static str {
    match id {
        3 => "editingteacher",
        4 => "teacher",
        5 => "student",
        _ => "",
    }
}

/// `core_enrol_get_enrolled_users` (shape of `core_enrol_get_enrolled_users/success.json`): the
/// users of `enrolments` in the course, each with the roles they were enrolled with.
fn enrolled_users(st: &FakeState, p: &Value) -> Result<Value, Value> {
    let course = p
        .get("courseid")
        .and_then(Value::as_str)
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(invalid_parameter)?;
    if !st.courses.iter().any(|c| c.id == course) {
        return Err(exception(
            "dml_missing_record_exception",
            "invalidrecord",
            "Can't find data record in database table course.",
        ));
    }
    let mut roles: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (role, user, c) in &st.enrolments {
        if *c == course {
            roles.entry(*user).or_default().push(*role);
        }
    }
    let list: Vec<Value> = roles
        .into_iter()
        .filter_map(|(uid, rs)| {
            let u = st.users.get(&uid)?;
            Some(json!({
                "id": u.id, "username": u.username, "firstname": u.firstname, "lastname": u.lastname,
                "fullname": format!("{} {}", u.firstname, u.lastname), "email": u.email,
                "idnumber": u.idnumber, "firstaccess": 0, "lastaccess": 0, "lastcourseaccess": 0,
                "roles": rs.iter().map(|r| json!({"roleid": r, "name": "", "shortname": role_shortname(*r), "sortorder": 0})).collect::<Vec<_>>(),
            }))
        })
        .collect();
    Ok(Value::Array(list))
}

/// `core_reportbuilder_set_filters` / `core_reportbuilder_retrieve_report` on the parent-links
/// report. Shapes recorded from the lab (Moodle 5.0dev 20241007): set_filters answers `true`;
/// retrieve answers `{details, data: {headers, rows: [{columns}], totalrowcount}, warnings}`, the
/// user column `<a href="…/user/profile.php?id=N">First Last</a>`, the context column
/// `<a href="…/user/profile.php?id=N">User: First Last</a>`; an unknown report id is
/// `dml_missing_record_exception` / `invalidrecord`.
fn report_builder(st: &mut FakeState, function: &str, p: &Value) -> Result<Value, Value> {
    let id = p
        .get("reportid")
        .and_then(Value::as_str)
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(invalid_parameter)?;
    let Some(report) = st.parent_links_report.clone().filter(|r| r.id == id) else {
        return Err(exception(
            "dml_missing_record_exception",
            "invalidrecord",
            "Can't find data record in database table reportbuilder_report.",
        ));
    };
    match function {
        "core_reportbuilder_set_filters" => {
            let values: Value = p
                .get("values")
                .and_then(Value::as_str)
                .and_then(|v| serde_json::from_str(v).ok())
                .ok_or_else(invalid_parameter)?;
            st.report_filters.insert(id, values);
            Ok(Value::Bool(true))
        }
        "core_reportbuilder_retrieve_report" => {
            let num = |k: &str, d: usize| {
                p.get(k)
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(d)
            };
            let (page, per_page) = (num("page", 0), num("perpage", 10).max(1));
            let filters = st.report_filters.get(&id).cloned().unwrap_or(Value::Null);
            let mut selected: Option<BTreeSet<i64>> = (filters["user:userselect_operator"] == 2)
                .then(|| {
                    filters["user:userselect_value"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_i64).collect())
                        .unwrap_or_default()
                });
            if let Some(other) = st.report_filter_race.take() {
                selected = Some([other].into());
            }
            let link = |u: &FakeUser, prefix: &str| {
                format!(
                    "<a href=\"http://127.0.0.1/moodle/user/profile.php?id={}\">{prefix}{} {}</a>",
                    u.id, u.firstname, u.lastname
                )
            };
            let mut rows: Vec<Vec<String>> = st
                .role_assignments
                .iter()
                .filter(|(_, _, level, _)| level == "user")
                .filter(|(_, user, _, _)| selected.as_ref().is_none_or(|s| s.contains(user)))
                .filter_map(|(role, user, _, child)| {
                    let (u, c) = (st.users.get(user)?, st.users.get(child)?);
                    let shortname = report
                        .roles
                        .get(role)
                        .cloned()
                        .unwrap_or_else(|| role_shortname(*role).to_string());
                    Some(vec![link(u, ""), shortname, link(c, "User: ")])
                })
                .collect();
            rows.sort();
            let total = rows.len();
            let rows: Vec<Value> = rows
                .into_iter()
                .skip(page * per_page)
                .take(per_page)
                .map(|columns| json!({ "columns": columns }))
                .collect();
            Ok(json!({
                "details": {
                    "name": "Teams bridge: parent links",
                    "source": "core_role\\reportbuilder\\datasource\\roles",
                    "type": 0, "uniquerows": false,
                    "conditiondata": "{\"context:level_operator\":1,\"context:level_value\":30}",
                    "settingsdata": null, "contextid": 1, "component": "", "area": "", "itemid": 0,
                    "usercreated": 2, "id": id, "timecreated": 1796186546, "timemodified": 1796186546,
                    "usermodified": 2, "sourcename": "Roles", "tags": [],
                },
                "data": {
                    "headers": ["Full name with link", "Short name", "Context URL"],
                    "rows": rows,
                    "totalrowcount": total,
                },
                "warnings": [],
            }))
        }
        _ => Err(exception(
            "dml_missing_record_exception",
            "invalidrecord",
            "Can't find data record in database table external_functions.",
        )),
    }
}
