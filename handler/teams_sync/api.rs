//! The Teams calls of the course sync: request bodies and answers exactly as the fixtures of
//! `shared/fixtures/graph` show them (tests below compare), over [`GraphSend`], the seam to the
//! Graph client (`crate::graph`: token, retries, pacing). Paths are relative to the Graph root.

use super::plan::Current;
use async_trait::async_trait;
use serde_json::{json, Value};

/// `@odata.bind` values name Graph's own URLs whatever address requests go to (a test double).
pub const BIND_ROOT: &str = "https://graph.microsoft.com/v1.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    pub fn is_write(self) -> bool {
        self != Method::Get
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

#[derive(Debug, Clone)]
pub struct GraphRequest {
    pub method: Method,
    /// `/teams/{id}/members`, or an absolute `@odata.nextLink`.
    pub path: String,
    pub body: Option<Value>,
}

#[derive(Debug, Clone, Default)]
pub struct GraphReply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl GraphReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum TeamsError {
    /// 404: the object is not there (yet: a group minutes old answers 404 too).
    #[error("not found: {0}")]
    NotFound(String),
    /// Bad credentials or a missing permission: the run stops, naming it.
    #[error("{0}")]
    Fatal(String),
    /// This course, this run (throttled beyond the retry budget, 5xx, a refused request): the
    /// next run tries again.
    #[error("{0}")]
    Failed(String),
}

/// One Graph request with the client's token, retries and pacing. A 4xx other than 401/403/404
/// comes back as a reply, so callers can read Graph's error; 2xx as a reply too.
#[async_trait]
pub trait GraphSend: Send + Sync {
    async fn send(&self, req: GraphRequest) -> Result<GraphReply, TeamsError>;
}

fn user_bind(id: &str) -> String {
    format!("{BIND_ROOT}/users('{id}')")
}

fn member_body(user: &str, owner: bool, with_hash: bool) -> Value {
    let kind = if with_hash {
        "#microsoft.graph.aadUserConversationMember"
    } else {
        // members/add writes the type without '#' (conversationmembers-add.md).
        "microsoft.graph.aadUserConversationMember"
    };
    json!({
        "@odata.type": kind,
        "roles": if owner { vec!["owner"] } else { Vec::<&str>::new() },
        "user@odata.bind": user_bind(user),
    })
}

/// `POST /teams` from a template with the first owner as member (app-only needs one member).
pub fn team_from_template_body(
    template: &str,
    display_name: &str,
    description: &str,
    visibility: &str,
    owner: &str,
) -> Value {
    json!({
        "template@odata.bind": format!("{BIND_ROOT}/teamsTemplates('{template}')"),
        "displayName": display_name,
        "description": description,
        "visibility": visibility,
        "members": [member_body(owner, true, true)],
    })
}

/// `POST /teams` from an existing group (which carries name, visibility and members).
pub fn team_from_group_body(template: &str, group_id: &str) -> Value {
    json!({
        "template@odata.bind": format!("{BIND_ROOT}/teamsTemplates('{template}')"),
        "group@odata.bind": format!("{BIND_ROOT}/groups('{group_id}')"),
    })
}

/// `POST /groups`: a Microsoft 365 group with our mailNickname and the owner as owner and member
/// (POST /teams ignores a mailNickname and derives one from the display name, which collides:
/// microsoftgraph/microsoft-graph-docs#12236, msgraph-sdk-powershell#2297). Not in the fixtures:
/// shape from group-post-groups.md.
pub fn group_body(
    display_name: &str,
    description: &str,
    mail_nickname: &str,
    visibility: &str,
    owner: &str,
) -> Value {
    let vis = if visibility == "public" {
        "Public"
    } else {
        "Private"
    };
    json!({
        "displayName": display_name,
        "description": description,
        "mailNickname": mail_nickname,
        "mailEnabled": true,
        "securityEnabled": false,
        "groupTypes": ["Unified"],
        "visibility": vis,
        "owners@odata.bind": [user_bind(owner)],
        "members@odata.bind": [user_bind(owner)],
    })
}

pub fn members_add_body(users: &[(String, bool)]) -> Value {
    json!({"values": users.iter().map(|(u, o)| member_body(u, *o, false)).collect::<Vec<_>>()})
}

pub fn role_body(owner: bool) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.aadUserConversationMember",
        "roles": if owner { vec!["owner"] } else { Vec::<&str>::new() },
    })
}

/// The quoted id in `/teams('…')` or `/operations('…')`, or a plain trailing segment.
fn quoted(s: &str, segment: &str) -> Option<String> {
    let start = s.find(&format!("{segment}('"))? + segment.len() + 2;
    let end = s[start..].find("')")? + start;
    Some(s[start..end].to_string())
}

/// 202 of `POST /teams`: team id from `Content-Location` (else from `Location`), the operation
/// to poll from `Location`.
pub fn accepted(reply: &GraphReply) -> Result<(String, String), TeamsError> {
    let location = reply
        .header("location")
        .ok_or_else(|| TeamsError::Failed("202 without a Location header".into()))?;
    let team = reply
        .header("content-location")
        .and_then(|c| quoted(c, "teams"))
        .or_else(|| quoted(location, "teams"))
        .ok_or_else(|| TeamsError::Failed(format!("no team id in Location {location}")))?;
    Ok((team, location.to_string()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpStatus {
    Running,
    Succeeded,
    Failed(String),
}

/// A `teamsAsyncOperation`: notStarted / inProgress keep waiting; anything unknown too
/// (`unknownFutureValue`); `invalid` and `failed` end it with Graph's error.
pub fn operation_status(body: &Value) -> OpStatus {
    let status = body["status"].as_str().unwrap_or_default();
    match status {
        "succeeded" => OpStatus::Succeeded,
        "failed" | "invalid" => {
            let e = &body["error"];
            OpStatus::Failed(format!(
                "{status}: {} {}",
                e["code"].as_str().unwrap_or("-"),
                e["message"].as_str().unwrap_or("")
            ))
        }
        _ => OpStatus::Running,
    }
}

/// `GET /teams/{id}/members` items (conversationMember: `id` is the membership, `userId` the
/// Entra user; shape from conversationmember-list.md, not in the fixtures).
pub fn current_members(body: &Value) -> Vec<Current> {
    body["value"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    Some(Current {
                        membership_id: m["id"].as_str()?.to_string(),
                        user_id: m["userId"].as_str()?.to_ascii_lowercase(),
                        owner: m["roles"]
                            .as_array()
                            .is_some_and(|r| r.iter().any(|x| x == "owner")),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Per-user failures of `members/add` (200 or 207): (user id, Graph's code).
pub fn add_failures(body: &Value) -> Vec<(String, String)> {
    body["value"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| !r["error"].is_null())
                .map(|r| {
                    (
                        r["userId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_ascii_lowercase(),
                        r["error"]["code"].as_str().unwrap_or("error").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn next_link(body: &Value) -> Option<String> {
    body["@odata.nextLink"].as_str().map(str::to_string)
}

/// Graph's `error.code: message` of a refused request, for the report.
pub fn error_text(reply: &GraphReply) -> String {
    let e = reply.body.as_ref().map(|b| &b["error"]);
    match e {
        Some(e) if !e.is_null() => format!(
            "HTTP {} {}: {}",
            reply.status,
            e["code"].as_str().unwrap_or("-"),
            e["message"].as_str().unwrap_or("")
        ),
        _ => format!("HTTP {}", reply.status),
    }
}

/// An OData string literal: a quote is doubled.
pub fn odata_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `../shared/fixtures` beside the clone (CI), or FIXTURES_DIR; missing fixtures fail the test.
    fn fixture(name: &str) -> Value {
        let dir = std::env::var("FIXTURES_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
            });
        let p = dir.join("graph").join(name);
        let text = std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("fixture {} (set FIXTURES_DIR): {e}", p.display()));
        serde_json::from_str(&text).unwrap()
    }

    fn reply_of(ex: &Value) -> GraphReply {
        GraphReply {
            status: ex["status"].as_u64().unwrap() as u16,
            headers: ex["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_string()))
                .collect(),
            body: Some(ex["body"].clone()).filter(|b| !b.is_null()),
        }
    }

    #[test]
    fn request_bodies_are_the_fixtures_bodies() {
        let f = fixture("teams-create-from-template.json");
        let owner = "11111111-1111-4111-8111-000000000001";
        let main = team_from_template_body(
            "standard",
            "MATH-2B-2026 Mathematiques 2nde B",
            "Equipe du cours Moodle MATH-2B-2026 (id 1234)",
            "private",
            owner,
        );
        assert_eq!(main, f["request"]["body"]);
        let class = team_from_template_body(
            "educationClass",
            "MATH-2B-2026 Mathematiques 2nde B",
            "Equipe du cours Moodle MATH-2B-2026 (id 1234)",
            "private",
            owner,
        );
        assert_eq!(class, f["more_exchanges"][0]["request"]["body"]);
        let from_group = team_from_group_body("standard", "22222222-2222-4222-8222-000000000002");
        assert_eq!(from_group, f["more_exchanges"][1]["request"]["body"]);
        let (team, op) = accepted(&reply_of(&f["response"])).unwrap();
        assert_eq!(team, "22222222-2222-4222-8222-000000000001");
        assert_eq!(
            op,
            "/teams('22222222-2222-4222-8222-000000000001')/operations('33333333-3333-4333-8333-000000000001')"
        );

        let add = fixture("teams-members-add.json");
        let users = vec![
            ("11111111-1111-4111-8111-000000000002".to_string(), false),
            ("11111111-1111-4111-8111-0000000000ff".to_string(), false),
            (owner.to_string(), true),
        ];
        assert_eq!(members_add_body(&users), add["request"]["body"]);
        assert_eq!(
            add_failures(&add["response"]["body"]),
            vec![(
                "11111111-1111-4111-8111-0000000000ff".to_string(),
                "NotFound".to_string()
            )]
        );
        assert!(add_failures(&add["more_exchanges"][0]["response"]["body"]).is_empty());
    }

    #[test]
    fn operation_states_follow_the_fixture() {
        let f = fixture("teams-async-operation.json");
        assert_eq!(operation_status(&f["response"]["body"]), OpStatus::Running);
        assert_eq!(
            operation_status(&f["more_exchanges"][0]["response"]["body"]),
            OpStatus::Succeeded
        );
        assert!(matches!(
            operation_status(&f["more_exchanges"][1]["response"]["body"]),
            OpStatus::Failed(m) if m.contains("Conflict")
        ));
        assert_eq!(
            operation_status(&json!({"status": "notStarted"})),
            OpStatus::Running
        );
        let archive = fixture("team-archive.json");
        assert_eq!(
            archive["request"]["body"],
            json!({"shouldSetSpoSiteReadOnlyForMembers": true})
        );
    }

    #[test]
    fn odata_literals_double_their_quotes() {
        assert_eq!(odata_quote("l'ecole"), "'l''ecole'");
    }
}
