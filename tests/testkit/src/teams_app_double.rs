//! Teams app doubles (issue 18): the org app catalog and app installations as routes of the
//! Graph double (fixtures `appcatalog-*.json`, `*installedapps*.json`, `user-installedapp-chat.json`),
//! and an Entra double for the admin's device-code sign-in.
//!
//! Publishing is delegated-only in Graph: the catalog's POST routes answer 403 to any token but
//! the delegated one the Entra double hands out ([`DELEGATED_TOKEN`], accepted by the Graph
//! double through `accept_token`). Uploaded zips are read: the manifest's `id` and `version`
//! become the catalog entry, as Graph does.

use crate::graph_double::{GraphDouble, GraphReply, GraphRequest, GraphState};
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub const DELEGATED_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.delegated-admin.sig";
pub const REFRESH_TOKEN: &str = "0.AAAA-refresh-token-of-the-admin-PLACEHOLDER";
pub const USER_CODE: &str = "GBZ4Q7QLX";
const EXT: &str = "teams_app";

#[derive(Debug, Clone, Default)]
pub struct CatalogEntry {
    pub id: String,
    pub external_id: String,
    pub name: String,
    /// (version, publishingState)
    pub definitions: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Installation {
    pub id: String,
    pub app_id: String,
    pub version: String,
}

#[derive(Debug, Default)]
pub struct AppsState {
    pub catalog: Vec<CatalogEntry>,
    /// Teams that exist (install into another → 404).
    pub teams: Vec<String>,
    pub team_installs: BTreeMap<String, Installation>,
    pub user_installs: BTreeMap<String, Installation>,
    /// Answer 409 to the next publish although the lookup said "not there" (a race).
    pub conflict_next_publish: bool,
}

fn apps(s: &mut GraphState) -> &mut AppsState {
    s.ext
        .entry(EXT.to_string())
        .or_insert_with(|| Box::new(AppsState::default()))
        .downcast_mut::<AppsState>()
        .expect("teams_app state")
}

/// Runs `f` on the catalog/installation state of `graph`.
pub fn with_apps<T>(graph: &GraphDouble, f: impl FnOnce(&mut AppsState) -> T) -> T {
    f(apps(&mut graph.lock()))
}

fn delegated(req: &GraphRequest) -> bool {
    req.headers
        .get("authorization")
        .is_some_and(|a| a == &format!("Bearer {DELEGATED_TOKEN}"))
}

/// `id` and `version` of the manifest inside an uploaded zip.
fn manifest_of(req: &GraphRequest) -> Option<(String, String, String)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(req.body["$zip"].as_str()?)
        .ok()?;
    let mut a = zip::ZipArchive::new(std::io::Cursor::new(raw)).ok()?;
    let f = a.by_name("manifest.json").ok()?;
    let m: Value = serde_json::from_reader(f).ok()?;
    Some((
        m["id"].as_str()?.to_string(),
        m["version"].as_str()?.to_string(),
        m["name"]["short"].as_str().unwrap_or("").to_string(),
    ))
}

fn entry_json(e: &CatalogEntry) -> Value {
    let defs: Vec<Value> = e
        .definitions
        .iter()
        .map(|(v, state)| {
            json!({
                "id": format!("def-{}-{v}", e.id),
                "teamsAppId": e.id,
                "displayName": e.name,
                "version": v,
                "publishingState": state,
            })
        })
        .collect();
    json!({
        "id": e.id,
        "externalId": e.external_id,
        "displayName": e.name,
        "distributionMethod": "organization",
        "appDefinitions": defs,
    })
}

fn quoted_after<'a>(filter: &'a str, key: &str) -> Option<&'a str> {
    let rest = filter.split_once(key)?.1;
    let start = rest.find('\'')? + 1;
    let len = rest[start..].find('\'')?;
    Some(&rest[start..start + len])
}

fn published(e: &CatalogEntry) -> Option<String> {
    e.definitions
        .iter()
        .filter(|(_, s)| s == "published")
        .map(|(v, _)| v.clone())
        .max_by_key(|v| {
            v.split('.')
                .map(|p| p.parse::<u64>().unwrap_or(0))
                .collect::<Vec<_>>()
        })
}

fn forbidden_app_only() -> GraphReply {
    GraphReply::error(
        403,
        "Forbidden",
        "Application permissions are not supported for this API; a delegated AppCatalog.ReadWrite.All token is required.",
    )
}

/// Adds the catalog and installation routes to `graph`.
pub fn register(graph: &GraphDouble) {
    graph.route(
        "GET",
        "/appCatalogs/teamsApps",
        "AppCatalog.Read.All",
        |req, s| {
            let filter = req.query.get("$filter").cloned().unwrap_or_default();
            let want = quoted_after(&filter, "externalId eq").map(str::to_string);
            let value: Vec<Value> = apps(s)
                .catalog
                .iter()
                .filter(|e| want.as_deref().is_none_or(|w| w.eq_ignore_ascii_case(&e.external_id)))
                .map(entry_json)
                .collect();
            GraphReply::json(
                200,
                json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#appCatalogs/teamsApps(appDefinitions())", "value": value}),
            )
        },
    );
    graph.route(
        "POST",
        "/appCatalogs/teamsApps",
        "AppCatalog.Read.All",
        |req, s| {
            if !delegated(req) {
                return forbidden_app_only();
            }
            let Some((external_id, version, name)) = manifest_of(req) else {
                return GraphReply::error(400, "BadRequest", "The app package is not valid.");
            };
            let review = req.query.get("requiresReview").is_some_and(|v| v == "true");
            let catalog_id = s.next_id("44444444-");
            let a = apps(s);
            if std::mem::take(&mut a.conflict_next_publish)
                || a.catalog.iter().any(|e| e.external_id == external_id)
            {
                if !a.catalog.iter().any(|e| e.external_id == external_id) {
                    // The race: someone else published it a moment ago.
                    a.catalog.push(CatalogEntry {
                        id: format!("race-{catalog_id}"),
                        external_id: external_id.clone(),
                        name: name.clone(),
                        definitions: vec![("0.9.0".into(), "published".into())],
                    });
                }
                return GraphReply::json(
                    409,
                    json!({"error": {"code": "Conflict", "message": "Conflict", "innerError": {"message": "", "code": "AppDefinitionAlreadyExists", "innerError": {}}}}),
                );
            }
            let state = if review { "submitted" } else { "published" };
            let e = CatalogEntry {
                id: catalog_id,
                external_id,
                name,
                definitions: vec![(version, state.into())],
            };
            let body = json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#appCatalogs/teamsApps/$entity",
                "id": e.id, "externalId": e.external_id, "displayName": e.name,
                "distributionMethod": "organization",
            });
            a.catalog.push(e);
            GraphReply::json(201, body)
        },
    );
    graph.route(
        "POST",
        "/appCatalogs/teamsApps/{id}/appDefinitions",
        "AppCatalog.Read.All",
        |req, s| {
            if !delegated(req) {
                return forbidden_app_only();
            }
            let id = req.param("/appCatalogs/teamsApps/{id}/appDefinitions", 0).unwrap_or("").to_string();
            let Some((external_id, version, _)) = manifest_of(req) else {
                return GraphReply::error(400, "BadRequest", "The app package is not valid.");
            };
            let review = req.query.get("requiresReview").is_some_and(|v| v == "true");
            let a = apps(s);
            let Some(e) = a.catalog.iter_mut().find(|e| e.id == id) else {
                return GraphReply::error(404, "NotFound", "Teams app not found in the app catalog.");
            };
            if e.external_id != external_id {
                return GraphReply::error(400, "BadRequest", "The manifest id does not match the app.");
            }
            if e.definitions.iter().any(|(v, _)| *v == version) {
                return GraphReply::json(
                    409,
                    json!({"error": {"code": "Conflict", "message": "Conflict", "innerError": {"code": "AppDefinitionAlreadyExists"}}}),
                );
            }
            if review {
                e.definitions.push((version.clone(), "submitted".into()));
                return GraphReply::json(
                    201,
                    json!({"id": format!("def-{id}-{version}"), "teamsAppId": id, "version": version, "publishingState": "submitted"}),
                );
            }
            e.definitions.push((version, "published".into()));
            GraphReply::empty(204)
        },
    );
    graph.route(
        "GET",
        "/teams/{id}/installedApps",
        "TeamsAppInstallation.ReadForTeam.All",
        |req, s| {
            let team = req.param("/teams/{id}/installedApps", 0).unwrap_or("").to_string();
            let filter = req.query.get("$filter").cloned().unwrap_or_default();
            let want = quoted_after(&filter, "teamsApp/id eq").map(str::to_string);
            let a = apps(s);
            let value: Vec<Value> = a
                .team_installs
                .get(&team)
                .filter(|i| want.as_deref().is_none_or(|w| w == i.app_id))
                .map(|i| {
                    vec![json!({
                        "id": i.id,
                        "teamsApp": {"id": i.app_id, "distributionMethod": "organization"},
                        "teamsAppDefinition": {"id": format!("def-{}-{}", i.app_id, i.version), "teamsAppId": i.app_id, "version": i.version},
                    })]
                })
                .unwrap_or_default();
            GraphReply::json(200, json!({"value": value}))
        },
    );
    graph.route(
        "POST",
        "/teams/{id}/installedApps",
        "TeamsAppInstallation.ReadWriteForTeam.All",
        |req, s| {
            let team = req
                .param("/teams/{id}/installedApps", 0)
                .unwrap_or("")
                .to_string();
            let inst = s.next_id("inst-");
            // A team is there when a test named it, or when the teams side of the double made
            // it (a course sync created it and its creation finished).
            let made = s
                .ext
                .get("teams")
                .and_then(|t| t.downcast_ref::<crate::graph_double::teams::TeamsState>())
                .is_some_and(|t| t.teams.get(&team).is_some_and(|t| t.ready));
            let a = apps(s);
            if !made && !a.teams.contains(&team) {
                return GraphReply::error(404, "NotFound", "No team found with Group Id");
            }
            let Some((app_id, version)) = bound_app(req, a) else {
                return GraphReply::error(
                    404,
                    "NotFound",
                    "Teams app not found in the app catalog.",
                );
            };
            if a.team_installs.contains_key(&team) {
                return GraphReply::error(
                    409,
                    "Conflict",
                    "The app is already installed in this team.",
                );
            }
            a.team_installs.insert(
                team,
                Installation {
                    id: inst,
                    app_id,
                    version,
                },
            );
            GraphReply::empty(200)
        },
    );
    graph.route(
        "POST",
        "/teams/{id}/installedApps/{inst}/upgrade",
        "TeamsAppInstallation.ReadWriteForTeam.All",
        |req, s| {
            let pattern = "/teams/{id}/installedApps/{inst}/upgrade";
            let team = req.param(pattern, 0).unwrap_or("").to_string();
            let inst = req.param(pattern, 1).unwrap_or("").to_string();
            let a = apps(s);
            let latest = a
                .team_installs
                .get(&team)
                .filter(|i| i.id == inst)
                .and_then(|i| {
                    a.catalog
                        .iter()
                        .find(|e| e.id == i.app_id)
                        .and_then(published)
                });
            match (latest, a.team_installs.get_mut(&team)) {
                (Some(v), Some(i)) => {
                    i.version = v;
                    GraphReply::empty(204)
                }
                _ => GraphReply::error(404, "NotFound", "Installation not found."),
            }
        },
    );
    graph.route(
        "GET",
        "/users/{id}/teamwork/installedApps",
        "TeamsAppInstallation.ReadForUser.All",
        |req, s| {
            let user = req.param("/users/{id}/teamwork/installedApps", 0).unwrap_or("").to_ascii_lowercase();
            let filter = req.query.get("$filter").cloned().unwrap_or_default();
            let want = quoted_after(&filter, "teamsAppId eq").map(str::to_string);
            let value: Vec<Value> = apps(s)
                .user_installs
                .get(&user)
                .filter(|i| want.as_deref().is_none_or(|w| w == i.app_id))
                .map(|i| {
                    vec![json!({
                        "id": i.id,
                        "teamsAppDefinition": {"id": format!("def-{}-{}", i.app_id, i.version), "teamsAppId": i.app_id, "version": i.version},
                    })]
                })
                .unwrap_or_default();
            GraphReply::json(200, json!({"value": value}))
        },
    );
    graph.route(
        "POST",
        "/users/{id}/teamwork/installedApps",
        "TeamsAppInstallation.ReadWriteSelfForUser.All",
        |req, s| {
            let user = req
                .param("/users/{id}/teamwork/installedApps", 0)
                .unwrap_or("")
                .to_ascii_lowercase();
            let inst = s.next_id("uinst-");
            let a = apps(s);
            let Some((app_id, version)) = bound_app(req, a) else {
                return GraphReply::error(
                    404,
                    "NotFound",
                    "Teams app not found in the app catalog.",
                );
            };
            if a.user_installs.contains_key(&user) {
                return GraphReply::error(
                    409,
                    "Conflict",
                    "The app is already installed for this user.",
                );
            }
            a.user_installs.insert(
                user,
                Installation {
                    id: inst,
                    app_id,
                    version,
                },
            );
            GraphReply::empty(201)
        },
    );
    graph.route(
        "POST",
        "/users/{id}/teamwork/installedApps/{inst}/upgrade",
        "TeamsAppInstallation.ReadWriteSelfForUser.All",
        |req, s| {
            let pattern = "/users/{id}/teamwork/installedApps/{inst}/upgrade";
            let user = req.param(pattern, 0).unwrap_or("").to_ascii_lowercase();
            let inst = req.param(pattern, 1).unwrap_or("").to_string();
            let a = apps(s);
            let latest = a
                .user_installs
                .get(&user)
                .filter(|i| i.id == inst)
                .and_then(|i| {
                    a.catalog
                        .iter()
                        .find(|e| e.id == i.app_id)
                        .and_then(published)
                });
            match (latest, a.user_installs.get_mut(&user)) {
                (Some(v), Some(i)) => {
                    i.version = v;
                    GraphReply::empty(204)
                }
                _ => GraphReply::error(404, "NotFound", "Installation not found."),
            }
        },
    );
    graph.route(
        "GET",
        "/users/{id}/teamwork/installedApps/{inst}/chat",
        "TeamsAppInstallation.ReadForUser.All",
        |req, s| {
            let pattern = "/users/{id}/teamwork/installedApps/{inst}/chat";
            let user = req.param(pattern, 0).unwrap_or("").to_ascii_lowercase();
            let inst = req.param(pattern, 1).unwrap_or("").to_string();
            match apps(s).user_installs.get(&user).filter(|i| i.id == inst) {
                Some(_) => GraphReply::json(
                    200,
                    json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#chats/$entity", "id": chat_id(&user)}),
                ),
                None => GraphReply::error(404, "NotFound", "Installation not found."),
            }
        },
    );
}

/// The personal chat id the double answers for `user`.
pub fn chat_id(user: &str) -> String {
    format!("19:bot_{user}@unq.gbl.spaces")
}

/// `teamsApp@odata.bind` → the catalog app and its published version.
fn bound_app(req: &GraphRequest, a: &AppsState) -> Option<(String, String)> {
    let bind = req.body["teamsApp@odata.bind"].as_str()?;
    let id = bind.rsplit('/').next()?;
    let e = a.catalog.iter().find(|e| e.id == id)?;
    Some((e.id.clone(), published(e)?))
}

/// What the device-code double answers to the polls, in order (the last one repeats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    Pending,
    SlowDown,
    Success,
    Expired,
}

#[derive(Default)]
pub struct EntraState {
    pub polls: Vec<Poll>,
    pub poll_count: usize,
    pub device_requests: usize,
    pub refresh_requests: usize,
    /// Form fields of every token request (grant_type …), for the tests.
    pub forms: Vec<BTreeMap<String, String>>,
    pub refresh_token: String,
}

/// Entra's `/devicecode` and `/token` for one tenant (device-code and refresh-token grants).
pub struct EntraDouble {
    pub addr: std::net::SocketAddr,
    pub state: Arc<Mutex<EntraState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EntraDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EntraDouble {
    pub async fn start(polls: Vec<Poll>) -> EntraDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(EntraState {
            polls,
            refresh_token: REFRESH_TOKEN.into(),
            ..Default::default()
        }));
        let app = Router::new().fallback(entra).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        EntraDouble { addr, state, task }
    }

    /// The authority (without the tenant) for `TEAMS_APP_AUTHORITY`.
    pub fn authority(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

async fn entra(
    State(state): State<Arc<Mutex<EntraState>>>,
    uri: Uri,
    body: axum::body::Bytes,
) -> Response {
    let form: BTreeMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let err = |code: &str| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": code, "error_description": format!("AADSTS: {code}")})),
        )
            .into_response()
    };
    let token = |s: &EntraState| {
        axum::Json(json!({
            "token_type": "Bearer",
            "scope": "https://graph.microsoft.com/AppCatalog.ReadWrite.All",
            "expires_in": 3599,
            "access_token": DELEGATED_TOKEN,
            "refresh_token": s.refresh_token,
        }))
        .into_response()
    };
    if uri.path().ends_with("/oauth2/v2.0/devicecode") {
        s.device_requests += 1;
        return axum::Json(json!({
            "device_code": "DAQABAAEAAAD-device-code",
            "user_code": USER_CODE,
            "verification_uri": "https://microsoft.com/devicelogin",
            "expires_in": 900,
            "interval": 1,
            "message": format!("To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code {USER_CODE} to authenticate."),
        }))
        .into_response();
    }
    if !uri.path().ends_with("/oauth2/v2.0/token") {
        return err("invalid_request");
    }
    s.forms.push(form.clone());
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            s.refresh_requests += 1;
            if form.get("refresh_token") == Some(&s.refresh_token) {
                token(&s)
            } else {
                err("invalid_grant")
            }
        }
        Some("urn:ietf:params:oauth:grant-type:device_code") => {
            let i = s.poll_count.min(s.polls.len().saturating_sub(1));
            s.poll_count += 1;
            match s.polls.get(i).copied().unwrap_or(Poll::Expired) {
                Poll::Pending => err("authorization_pending"),
                Poll::SlowDown => err("slow_down"),
                Poll::Expired => err("expired_token"),
                Poll::Success => token(&s),
            }
        }
        _ => err("unsupported_grant_type"),
    }
}
