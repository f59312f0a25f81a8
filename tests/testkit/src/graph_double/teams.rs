//! Teams routes of the Graph double, as Graph behaves per `shared/fixtures/graph/`: groups made
//! with a chosen mailNickname (unique: a second one is refused), `POST /teams` from a template
//! (app-only: at least one owner in `members`) or from a group (404 while the group is younger
//! than [`TeamsState::fresh_group`], 409 once it has a team), 202 + `Location` of an operation
//! that takes [`TeamsState::polls_to_finish`] polls and fails when told to, team members listed
//! in pages, `members/add` (≤ 200, 207 with a per-user `NotFound` for users Entra does not know),
//! one-by-one removal and role changes (the last owner can be neither), rename, archive and unarchive.
//!
//! Shapes not in the fixtures (group create/list, member list, PATCH/DELETE member) follow the
//! Graph v1.0 reference pages named in `handler/teams_sync/api.rs`.

use super::{GraphDouble, GraphReply, GraphState};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const BIND: &str = "https://graph.microsoft.com/v1.0";
/// Members per page of `GET /teams/{id}/members`.
pub const MEMBERS_PAGE: usize = 100;

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub display_name: String,
    pub description: String,
    pub mail_nickname: String,
    pub created: Instant,
    pub owners: BTreeSet<String>,
    pub members: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: String,
    pub owner: bool,
}

#[derive(Debug, Clone)]
pub struct Team {
    pub id: String,
    pub display_name: String,
    /// Usable once its creation operation succeeded.
    pub ready: bool,
    pub archived: bool,
    /// Membership id → member.
    pub members: BTreeMap<String, Member>,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub team_id: String,
    pub kind: &'static str,
    pub polls_left: u32,
    pub fail: bool,
    pub done: Option<bool>,
    pub last_poll: Option<Instant>,
}

/// The teams side of the double, in `GraphState::ext["teams"]`.
#[derive(Debug, Default)]
pub struct TeamsState {
    pub groups: BTreeMap<String, Group>,
    pub teams: BTreeMap<String, Team>,
    pub operations: BTreeMap<String, Operation>,
    /// Polls an operation answers `inProgress` before it ends.
    pub polls_to_finish: u32,
    /// The next this many team creations fail at their last poll.
    pub fail_next: u32,
    /// Team calls on a group younger than this answer 404 (replication delay).
    pub fresh_group: Duration,
    /// Users `members/add` answers `NotFound` for (not replicated yet).
    pub unknown_users: BTreeSet<String>,
    /// Two polls of one operation closer than 30 s (Graph asks for more).
    pub early_polls: u64,
    /// Members sent by each `members/add` call, in order.
    pub add_sizes: Vec<usize>,
    /// `POST /teams/{id}/unarchive` calls answered.
    pub unarchives: u64,
    seq: u64,
}

impl TeamsState {
    fn id(&mut self, kind: u32) -> String {
        self.seq += 1;
        format!("{kind:08x}-2222-4222-8222-{:012x}", self.seq)
    }

    /// Teams by display name (tests look duplicates up with it).
    pub fn teams_named(&self, name: &str) -> usize {
        self.teams
            .values()
            .filter(|t| t.display_name == name)
            .count()
    }

    /// (user id, owner) of a team, sorted.
    pub fn roster(&self, team: &str) -> Vec<(String, bool)> {
        let mut v: Vec<(String, bool)> = self
            .teams
            .get(team)
            .map(|t| {
                t.members
                    .values()
                    .map(|m| (m.user_id.clone(), m.owner))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

fn state(s: &mut GraphState) -> &mut TeamsState {
    s.ext
        .entry("teams".to_string())
        .or_insert_with(|| {
            Box::new(TeamsState {
                polls_to_finish: 2,
                ..Default::default()
            })
        })
        .downcast_mut::<TeamsState>()
        .expect("teams state")
}

/// Runs `f` on the double's teams state (tests set it up and read it back).
pub fn with<R>(double: &GraphDouble, f: impl FnOnce(&mut TeamsState) -> R) -> R {
    let mut s = double.lock();
    f(state(&mut s))
}

fn bound_id(v: &Value) -> Option<String> {
    let s = v.as_str()?;
    let (_, rest) = s.rsplit_once("('")?;
    Some(rest.trim_end_matches("')").to_ascii_lowercase())
}

fn bad(message: &str) -> GraphReply {
    GraphReply::error(400, "BadRequest", message)
}

fn not_found(message: &str) -> GraphReply {
    GraphReply::error(404, "NotFound", message)
}

fn group_json(g: &Group) -> Value {
    json!({
        "id": g.id, "displayName": g.display_name, "description": g.description,
        "mailNickname": g.mail_nickname, "mailEnabled": true, "securityEnabled": false,
        "groupTypes": ["Unified"], "visibility": "Private",
        "createdDateTime": "2026-11-26T02:30:00Z",
    })
}

fn member_json(mid: &str, m: &Member) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.aadUserConversationMember",
        "id": mid,
        "roles": if m.owner { vec!["owner"] } else { Vec::<&str>::new() },
        "displayName": format!("User {}", &m.user_id[m.user_id.len().saturating_sub(4)..]),
        "userId": m.user_id,
        "email": format!("{}@ecole.example", m.user_id),
        "tenantId": super::TENANT_ID,
    })
}

/// A team that may be used now: ready, and its group old enough to have replicated.
fn usable<'a>(t: &'a mut TeamsState, id: &str) -> Result<&'a mut Team, GraphReply> {
    let fresh = t.fresh_group;
    if t.groups
        .get(id)
        .is_some_and(|g| g.created.elapsed() < fresh)
    {
        return Err(not_found(&format!("No team found with Group Id {id}")));
    }
    match t.teams.get_mut(id) {
        Some(team) if team.ready => Ok(team),
        _ => Err(not_found(&format!("No team found with Group Id {id}"))),
    }
}

/// One step of the creation operation of team `id`, as a poll would take it.
fn advance_unpolled(t: &mut TeamsState, id: &str) {
    let Some(o) = t
        .operations
        .values_mut()
        .find(|o| o.team_id == id && o.kind == "createTeam" && o.done.is_none())
    else {
        return;
    };
    if o.polls_left > 0 {
        o.polls_left -= 1;
        return;
    }
    o.done = Some(!o.fail);
    if o.fail {
        t.teams.remove(id);
    } else if let Some(team) = t.teams.get_mut(id) {
        team.ready = true;
    }
}

fn owners(team: &Team) -> usize {
    team.members.values().filter(|m| m.owner).count()
}

pub(super) fn register(double: &GraphDouble) {
    double.route("POST", "/groups", "Group.ReadWrite.All", |req, s| {
        let b = &req.body;
        let nick = b["mailNickname"].as_str().unwrap_or_default().to_string();
        let valid = !nick.is_empty()
            && nick.len() <= 64
            && nick
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid {
            return bad("Invalid value specified for property 'mailNickname' of resource 'Group'.");
        }
        if b["groupTypes"] != json!(["Unified"]) || b["mailEnabled"] != json!(true) {
            return bad("A Microsoft 365 group needs groupTypes [Unified] and mailEnabled true.");
        }
        let owners: BTreeSet<String> = b["owners@odata.bind"]
            .as_array()
            .map(|a| a.iter().filter_map(bound_id).collect())
            .unwrap_or_default();
        let members: BTreeSet<String> = b["members@odata.bind"]
            .as_array()
            .map(|a| a.iter().filter_map(bound_id).collect())
            .unwrap_or_default();
        let t = state(s);
        if t.groups
            .values()
            .any(|g| g.mail_nickname.eq_ignore_ascii_case(&nick))
        {
            return GraphReply::error(
                400,
                "Request_BadRequest",
                "Another object with the same value for property mailNickname already exists.",
            );
        }
        let id = t.id(0x2222_2222);
        let g = Group {
            id: id.clone(),
            display_name: b["displayName"].as_str().unwrap_or_default().to_string(),
            description: b["description"].as_str().unwrap_or_default().to_string(),
            mail_nickname: nick,
            created: Instant::now(),
            owners,
            members,
        };
        let body = group_json(&g);
        t.groups.insert(id, g);
        GraphReply::json(201, body)
    });
    double.route("GET", "/groups", "GroupMember.Read.All", |req, s| {
        let filter = req.query.get("$filter").cloned().unwrap_or_default();
        let Some((field, value)) = filter.split_once(" eq ") else {
            return bad("Only 'eq' filters are supported by this double.");
        };
        let value = value.trim().trim_matches('\'').replace("''", "'");
        let t = state(s);
        let list: Vec<Value> = t
            .groups
            .values()
            .filter(|g| match field.trim() {
                "mailNickname" => g.mail_nickname.eq_ignore_ascii_case(&value),
                "displayName" => g.display_name == value,
                _ => false,
            })
            .map(group_json)
            .collect();
        GraphReply::json(
            200,
            json!({"@odata.context": format!("{BIND}/$metadata#groups"), "value": list}),
        )
    });
    double.route("POST", "/teams", "Team.Create", |req, s| {
        let b = &req.body;
        let Some(template) = b["template@odata.bind"].as_str() else {
            return bad("template@odata.bind is required.");
        };
        let template = template.to_string();
        let t = state(s);
        let team_id = if let Some(group) = bound_id(&b["group@odata.bind"]) {
            if b.get("displayName").is_some() || b.get("members").is_some() {
                return bad("Properties of the group cannot be set when creating a team from a group.");
            }
            let fresh = t.fresh_group;
            let Some(g) = t.groups.get(&group) else {
                return not_found(&format!("No group found with Id {group}"));
            };
            if g.created.elapsed() < fresh {
                return not_found(&format!("No team found with Group Id {group}"));
            }
            if g.owners.is_empty() {
                return bad("The group must have at least one owner.");
            }
            if t.teams.contains_key(&group) {
                return GraphReply::error(409, "Conflict", "A team already exists for this group.");
            }
            let mut members = BTreeMap::new();
            for u in g.members.union(&g.owners) {
                members.insert(
                    format!("member-{group}-{u}"),
                    Member { user_id: u.clone(), owner: g.owners.contains(u) },
                );
            }
            let name = g.display_name.clone();
            t.teams.insert(
                group.clone(),
                Team { id: group.clone(), display_name: name, ready: false, archived: false, members },
            );
            group
        } else {
            let members = b["members"].as_array().cloned().unwrap_or_default();
            let owner_ids: Vec<String> = members
                .iter()
                .filter(|m| m["roles"].as_array().is_some_and(|r| r.iter().any(|x| x == "owner")))
                .filter_map(|m| bound_id(&m["user@odata.bind"]))
                .collect();
            if owner_ids.is_empty() {
                return bad("An owner must be given in members when creating a team with application permissions.");
            }
            let Some(name) = b["displayName"].as_str() else {
                return bad("displayName is required.");
            };
            let id = t.id(0x2222_2222);
            let nick: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
            t.groups.insert(
                id.clone(),
                Group {
                    id: id.clone(),
                    display_name: name.to_string(),
                    description: b["description"].as_str().unwrap_or_default().to_string(),
                    mail_nickname: nick,
                    created: Instant::now(),
                    owners: owner_ids.iter().cloned().collect(),
                    members: owner_ids.iter().cloned().collect(),
                },
            );
            let members = owner_ids
                .iter()
                .map(|u| (format!("member-{id}-{u}"), Member { user_id: u.clone(), owner: true }))
                .collect();
            t.teams.insert(
                id.clone(),
                Team { id: id.clone(), display_name: name.to_string(), ready: false, archived: false, members },
            );
            id
        };
        let _ = template;
        let op = t.id(0x3333_3333);
        let fail = t.fail_next > 0;
        t.fail_next = t.fail_next.saturating_sub(1);
        let polls = t.polls_to_finish;
        t.operations.insert(
            op.clone(),
            Operation { team_id: team_id.clone(), kind: "createTeam", polls_left: polls, fail, done: None, last_poll: None },
        );
        GraphReply::empty(202)
            .header("Location", format!("/teams('{team_id}')/operations('{op}')"))
            .header("Content-Location", format!("/teams('{team_id}')"))
    });
    // `/teams('{id}')/operations('{opId}')` (the fixture's form) and `/teams/{id}`.
    double.route("GET", "/{a}/{b}", "Team.ReadBasic.All", |req, s| {
        let (a, b) = (req.segments[0].clone(), req.segments[1].clone());
        if a.eq_ignore_ascii_case("teams") {
            let t = state(s);
            let id = b.to_ascii_lowercase();
            // Graph finishes an operation whether or not anyone polls it: a client that lost the
            // 202 (killed, or 409 on asking again) looks the team up instead. Each look-up stands
            // for the time a poll would have let pass.
            advance_unpolled(t, &id);
            return match usable(t, &id) {
                Ok(team) => GraphReply::json(
                    200,
                    json!({"id": team.id, "displayName": team.display_name, "isArchived": team.archived}),
                ),
                Err(r) => r,
            };
        }
        let quoted = |x: &str, name: &str| {
            x.strip_prefix(&format!("{name}('"))
                .and_then(|r| r.strip_suffix("')"))
                .map(str::to_ascii_lowercase)
        };
        let (Some(team), Some(op)) = (quoted(&a, "teams"), quoted(&b, "operations")) else {
            return bad(&format!("Resource not found for the segment '{b}'."));
        };
        let t = state(s);
        let Some(o) = t.operations.get_mut(&op).filter(|o| o.team_id == team) else {
            return not_found("operation not found");
        };
        let early = o.last_poll.is_some_and(|p| p.elapsed() < Duration::from_secs(30));
        o.last_poll = Some(Instant::now());
        if o.done.is_none() {
            if o.polls_left > 0 {
                o.polls_left -= 1;
            } else {
                o.done = Some(!o.fail);
            }
        }
        let (status, error) = match o.done {
            None => ("inProgress", Value::Null),
            Some(true) => ("succeeded", Value::Null),
            Some(false) => ("failed", json!({"code": "Conflict", "message": "A team already exists for this group."})),
        };
        let kind = o.kind;
        let done = o.done;
        if early {
            t.early_polls += 1;
        }
        match (kind, done) {
            ("createTeam", Some(true)) => {
                if let Some(team) = t.teams.get_mut(&team) {
                    team.ready = true;
                }
            }
            ("createTeam", Some(false)) => {
                t.teams.remove(&team);
            }
            _ => {}
        }
        GraphReply::json(
            200,
            json!({
                "@odata.context": format!("{BIND}/$metadata#teams('{team}')/operations/$entity"),
                "id": op, "operationType": kind, "createdDateTime": "2026-11-26T02:31:00.1234567Z",
                "attemptsCount": 1, "targetResourceId": team,
                "targetResourceLocation": format!("/teams('{team}')"),
                "error": error, "status": status, "lastActionDateTime": "2026-11-26T02:31:05.0000000Z",
            }),
        )
    });
    double.route(
        "PATCH",
        "/teams/{id}",
        "TeamSettings.ReadWrite.All",
        |req, s| {
            let id = req.segments[1].to_ascii_lowercase();
            let name = req.body["displayName"].as_str().map(str::to_string);
            let t = state(s);
            match usable(t, &id) {
                Ok(team) => {
                    if let Some(n) = name.clone() {
                        team.display_name = n;
                    }
                    if let (Some(g), Some(n)) = (t.groups.get_mut(&id), name) {
                        g.display_name = n;
                    }
                    GraphReply::empty(204)
                }
                Err(r) => r,
            }
        },
    );
    double.route(
        "GET",
        "/teams/{id}/members",
        "TeamMember.Read.All",
        |req, s| {
            let id = req.segments[1].to_ascii_lowercase();
            let skip: usize = req
                .query
                .get("$skiptoken")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let base = s.base.clone();
            let t = state(s);
            let team = match usable(t, &id) {
                Ok(team) => team,
                Err(r) => return r,
            };
            let all: Vec<Value> = team
                .members
                .iter()
                .map(|(mid, m)| member_json(mid, m))
                .collect();
            let page: Vec<Value> = all.iter().skip(skip).take(MEMBERS_PAGE).cloned().collect();
            let mut body = json!({
                "@odata.context": format!("{BIND}/$metadata#teams('{id}')/members"),
                "@odata.count": all.len(),
                "value": page,
            });
            if skip + MEMBERS_PAGE < all.len() {
                body["@odata.nextLink"] = json!(format!(
                    "{base}/teams/{id}/members?$skiptoken={}",
                    skip + MEMBERS_PAGE
                ));
            }
            GraphReply::json(200, body)
        },
    );
    double.route("POST", "/teams/{id}/members/add", "TeamMember.ReadWrite.All", |req, s| {
        let id = req.segments[1].to_ascii_lowercase();
        let values = req.body["values"].as_array().cloned().unwrap_or_default();
        if values.is_empty() || values.len() > 200 {
            return bad("values must hold 1 to 200 members.");
        }
        let t = state(s);
        t.add_sizes.push(values.len());
        let unknown = t.unknown_users.clone();
        let team = match usable(t, &id) {
            Ok(team) => team,
            Err(r) => return r,
        };
        let mut results = Vec::new();
        let mut partial = false;
        for v in values {
            if v["@odata.type"] != json!("microsoft.graph.aadUserConversationMember") {
                return bad("@odata.type must be microsoft.graph.aadUserConversationMember.");
            }
            let Some(user) = bound_id(&v["user@odata.bind"]) else {
                return bad("user@odata.bind is required.");
            };
            let owner = v["roles"].as_array().is_some_and(|r| r.iter().any(|x| x == "owner"));
            if unknown.contains(&user) {
                partial = true;
                results.push(json!({"@odata.type": "#microsoft.graph.aadUserConversationMemberResult", "userId": user, "error": {"code": "NotFound", "message": ""}}));
                continue;
            }
            let existing = team.members.iter().find(|(_, m)| m.user_id == user).map(|(k, _)| k.clone());
            match existing {
                Some(k) => {
                    if let Some(m) = team.members.get_mut(&k) {
                        m.owner |= owner;
                    }
                }
                None => {
                    team.members.insert(format!("member-{id}-{user}"), Member { user_id: user.clone(), owner });
                }
            }
            results.push(json!({"@odata.type": "#microsoft.graph.aadUserConversationMemberResult", "userId": user, "error": null}));
        }
        GraphReply::json(
            if partial { 207 } else { 200 },
            json!({"@odata.context": format!("{BIND}/$metadata#Collection(microsoft.graph.aadUserConversationMemberResult)"), "value": results}),
        )
    });
    double.route(
        "PATCH",
        "/teams/{id}/members/{mid}",
        "TeamMember.ReadWrite.All",
        |req, s| {
            let (id, mid) = (
                req.segments[1].to_ascii_lowercase(),
                req.segments[3].clone(),
            );
            let owner = req.body["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "owner"));
            if req.body["@odata.type"] != json!("#microsoft.graph.aadUserConversationMember") {
                return bad("@odata.type #microsoft.graph.aadUserConversationMember is required.");
            }
            let t = state(s);
            let team = match usable(t, &id) {
                Ok(team) => team,
                Err(r) => return r,
            };
            let last_owner = owners(team) == 1;
            let Some(m) = team.members.get_mut(&mid) else {
                return not_found("member not found");
            };
            if m.owner && !owner && last_owner {
                return bad("The last owner of a team cannot be demoted.");
            }
            m.owner = owner;
            let body = member_json(&mid, m);
            GraphReply::json(200, body)
        },
    );
    double.route(
        "DELETE",
        "/teams/{id}/members/{mid}",
        "TeamMember.ReadWrite.All",
        |req, s| {
            let (id, mid) = (
                req.segments[1].to_ascii_lowercase(),
                req.segments[3].clone(),
            );
            let t = state(s);
            let team = match usable(t, &id) {
                Ok(team) => team,
                Err(r) => return r,
            };
            let last_owner = owners(team) == 1;
            match team.members.get(&mid) {
                None => not_found("member not found"),
                Some(m) if m.owner && last_owner => {
                    bad("The last owner of a team cannot be removed.")
                }
                Some(_) => {
                    team.members.remove(&mid);
                    GraphReply::empty(204)
                }
            }
        },
    );
    double.route(
        "POST",
        "/teams/{id}/archive",
        "TeamSettings.ReadWrite.All",
        |req, s| {
            let id = req.segments[1].to_ascii_lowercase();
            let t = state(s);
            let op = t.id(0x3333_3333);
            let team = match usable(t, &id) {
                Ok(team) => team,
                Err(r) => return r,
            };
            if owners(team) == 0 {
                return bad("A team needs an owner to be archived.");
            }
            team.archived = true;
            t.operations.insert(
                op.clone(),
                Operation {
                    team_id: id.clone(),
                    kind: "archiveTeam",
                    polls_left: 0,
                    fail: false,
                    done: Some(true),
                    last_poll: None,
                },
            );
            GraphReply::empty(202).header("Location", format!("/teams('{id}')/operations('{op}')"))
        },
    );
    // team-archive.json notes: "POST /teams/{id}/unarchive reverses it (also async)": the same
    // 202 + Location of an operation as archive.
    double.route(
        "POST",
        "/teams/{id}/unarchive",
        "TeamSettings.ReadWrite.All",
        |req, s| {
            let id = req.segments[1].to_ascii_lowercase();
            let t = state(s);
            let op = t.id(0x3333_3333);
            let team = match usable(t, &id) {
                Ok(team) => team,
                Err(r) => return r,
            };
            team.archived = false;
            t.unarchives += 1;
            t.operations.insert(
                op.clone(),
                Operation {
                    team_id: id.clone(),
                    kind: "unarchiveTeam",
                    polls_left: 0,
                    fail: false,
                    done: Some(true),
                    last_poll: None,
                },
            );
            GraphReply::empty(202).header("Location", format!("/teams('{id}')/operations('{op}')"))
        },
    );
}
