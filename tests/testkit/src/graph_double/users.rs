//! Users: `GET /users` (paged by `$top`, `$select`, null for unset selected properties),
//! `GET /users/{id}`, and `GET /users/delta` rounds as the delta fixtures show them: the initial
//! round lists every user, a round from a delta token lists users changed since (all selected
//! properties, absent when never set) and `@removed` entries (`changed` = soft delete, `deleted` =
//! permanent); `$deltatoken=latest` answers only a deltaLink. Skip tokens expire after
//! `skiptoken_ttl`; delta tokens can be expired in any of the fixtures' forms.

use super::{DeltaExpiry, GraphDouble, GraphReply, GraphRequest, GraphState};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

pub struct Users {
    /// id → the full user object.
    pub by_id: BTreeMap<String, Value>,
    /// id → change sequence of its last change.
    changed: HashMap<String, u64>,
    /// id → (change sequence, `changed` | `deleted`).
    removed: HashMap<String, (u64, &'static str)>,
    seq: u64,
    rounds: HashMap<String, Round>,
    /// delta token → (sequence it covers up to, `$select`).
    delta_tokens: HashMap<String, (u64, Option<String>)>,
    expired: HashMap<String, DeltaExpiry>,
    pub delta_page_size: usize,
    pub list_page_size: usize,
    pub skiptoken_ttl: Duration,
    /// Delta rounds started (initial or incremental), for tests.
    pub rounds_started: u64,
    /// Group object id → member user ids (`GET /groups/{id}/members`).
    pub groups: BTreeMap<String, Vec<String>>,
    /// User id → profile photo (`GET /users/{id}/photo`, `/photo/$value`); absent = 404.
    pub photos: BTreeMap<String, Photo>,
}

/// A user's profile photo as the double serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Photo {
    pub bytes: Vec<u8>,
    pub content_type: String,
    /// `@odata.mediaEtag`; `None` leaves it out of the metadata.
    pub etag: Option<String>,
    pub width: u32,
    pub height: u32,
}

impl Photo {
    /// A small JPEG-looking photo (JPEG's start bytes, then `seed`): its etag changes with `seed`.
    pub fn jpeg(seed: &str) -> Photo {
        let mut bytes = vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00,
        ];
        bytes.extend_from_slice(seed.as_bytes());
        bytes.extend_from_slice(&[0xFF, 0xD9]);
        let etag = {
            use sha2::{Digest, Sha256};
            format!("W/\"{}\"", hex_of(&Sha256::digest(&bytes)[..16]))
        };
        Photo {
            bytes,
            content_type: "image/jpeg".into(),
            etag: Some(etag),
            width: 240,
            height: 240,
        }
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

impl Default for Users {
    fn default() -> Self {
        Users {
            by_id: BTreeMap::new(),
            changed: HashMap::new(),
            removed: HashMap::new(),
            seq: 0,
            rounds: HashMap::new(),
            delta_tokens: HashMap::new(),
            expired: HashMap::new(),
            delta_page_size: 200,
            list_page_size: 100,
            skiptoken_ttl: Duration::from_secs(300),
            rounds_started: 0,
            groups: BTreeMap::new(),
            photos: BTreeMap::new(),
        }
    }
}

struct Round {
    /// Entries left to serve: ids (rendered at serve time: present → object, gone → @removed).
    left: Vec<String>,
    select: Option<String>,
    /// The sequence the next round's token covers.
    upto: u64,
    issued: Instant,
    delta: bool,
}

impl Users {
    /// Adds or replaces a user (a change the next delta round reports).
    pub fn upsert(&mut self, user: Value) {
        let id = user["id"].as_str().expect("user id").to_string();
        self.seq += 1;
        self.removed.remove(&id);
        self.changed.insert(id.clone(), self.seq);
        self.by_id.insert(id, user);
    }

    /// Changes some properties of a user.
    pub fn patch(&mut self, id: &str, fields: Value) {
        let mut user = self.by_id.get(id).cloned().expect("known user");
        for (k, v) in fields.as_object().expect("object") {
            user[k] = v.clone();
        }
        self.upsert(user);
    }

    /// Removes a user: soft (`changed`, restorable) or permanent (`deleted`).
    pub fn remove(&mut self, id: &str, permanent: bool) {
        self.seq += 1;
        self.by_id.remove(id);
        self.changed.remove(id);
        self.removed.insert(
            id.to_string(),
            (self.seq, if permanent { "deleted" } else { "changed" }),
        );
    }

    /// Every delta token issued so far will be answered with `form`.
    pub fn expire_delta_tokens(&mut self, form: DeltaExpiry) {
        for t in self.delta_tokens.keys() {
            self.expired.insert(t.clone(), form);
        }
    }

    /// Every skip token issued so far is stale (`Directory_ExpiredPageToken`).
    pub fn expire_skip_tokens(&mut self) {
        for r in self.rounds.values_mut() {
            r.issued = Instant::now() - Duration::from_secs(24 * 3600);
        }
    }
}

pub(super) fn register(double: &GraphDouble) {
    double.route("GET", "/groups/{id}/members", "GroupMember.Read.All", |req, s| {
        let Some(members) = s.users.groups.get(&req.segments[1]) else {
            return GraphReply::error(404, "Request_ResourceNotFound", "Resource does not exist.");
        };
        let value: Vec<Value> = members
            .iter()
            .map(|id| json!({"@odata.type": "#microsoft.graph.user", "id": id}))
            .collect();
        GraphReply::json(
            200,
            json!({"@odata.context": format!("{}/$metadata#directoryObjects(id)", s.base), "value": value}),
        )
    });
    // Profile photos: User.Read.All covers them app-only (the least privileged is
    // ProfilePhoto.Read.All, Microsoft Learn "Get profilePhoto"). A user without a photo: 404
    // `ImageNotFound` (the code current Graph answers; older answers said `ErrorItemNotFound`).
    double.route("GET", "/users/{id}/photo", "User.Read.All", |req, s| {
        let id = &req.segments[1];
        match s.users.photos.get(id) {
            Some(p) => {
                let mut body = json!({
                    "@odata.context": format!("{}/$metadata#users('{id}')/photo/$entity", s.base),
                    "@odata.mediaContentType": p.content_type,
                    "id": format!("{}X{}", p.width, p.height),
                    "height": p.height,
                    "width": p.width,
                });
                if let Some(t) = &p.etag {
                    body["@odata.mediaEtag"] = json!(t);
                }
                GraphReply::json(200, body)
            }
            None => no_photo(),
        }
    });
    double.route(
        "GET",
        "/users/{id}/photo/$value",
        "User.Read.All",
        |req, s| match s.users.photos.get(&req.segments[1]) {
            Some(p) => GraphReply::bytes(200, &p.content_type, p.bytes.clone()),
            None => no_photo(),
        },
    );
    double.route("GET", "/users/delta", "User.Read.All", delta);
    double.route("GET", "/users", "User.Read.All", list);
    double.route("GET", "/users/{id}", "User.Read.All", |req, s| {
        let id = req.segments[1].clone();
        // Graph takes `/users/{id | userPrincipalName}` (UPN compared case-insensitively).
        let by_upn = || {
            s.users.by_id.values().find(|u| {
                u["userPrincipalName"]
                    .as_str()
                    .is_some_and(|upn| upn.eq_ignore_ascii_case(&id))
            })
        };
        match s.users.by_id.get(&id).or_else(by_upn) {
            Some(u) => {
                let select = req.query.get("$select").cloned();
                let mut body = project(u, select.as_deref(), true);
                body.insert(
                    "@odata.context".into(),
                    json!(format!("{}/$metadata#users({})/$entity", s.base, select.unwrap_or_default())),
                );
                GraphReply::json(200, Value::Object(body))
            }
            None => GraphReply::error(
                404,
                "Request_ResourceNotFound",
                &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
            ),
        }
    });
}

fn no_photo() -> GraphReply {
    GraphReply::error(
        404,
        "ImageNotFound",
        "Exception of type 'Microsoft.Fast.Profile.Core.Exception.ImageNotFoundException' was thrown.",
    )
}

/// The selected properties of `user` (`id` always); unset ones absent (delta) or null (lists).
fn project(user: &Value, select: Option<&str>, nulls: bool) -> Map<String, Value> {
    let obj = user.as_object().cloned().unwrap_or_default();
    let Some(select) = select else {
        return obj;
    };
    let mut out = Map::new();
    out.insert("id".into(), obj.get("id").cloned().unwrap_or(Value::Null));
    for field in select
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty() && *f != "id")
    {
        match obj.get(field) {
            Some(v) => {
                out.insert(field.to_string(), v.clone());
            }
            None if nulls => {
                out.insert(field.to_string(), Value::Null);
            }
            None => {}
        }
    }
    out
}

fn context(base: &str, select: Option<&str>) -> String {
    match select {
        Some(sel) => format!("{base}/$metadata#users({sel})"),
        None => format!("{base}/$metadata#users"),
    }
}

fn expired_page_token() -> GraphReply {
    GraphReply::error(
        400,
        "Directory_ExpiredPageToken",
        "The specified page token value has expired and can no longer be included in your request.",
    )
}

fn delta(req: &GraphRequest, s: &mut GraphState) -> GraphReply {
    let base = s.base.clone();
    let round_id = if let Some(skip) = req.query.get("$skiptoken") {
        let Some(r) = s.users.rounds.get(skip) else {
            return expired_page_token();
        };
        if r.issued.elapsed() > s.users.skiptoken_ttl {
            s.users.rounds.remove(skip);
            return expired_page_token();
        }
        skip.clone()
    } else {
        let token = req.query.get("$deltatoken").cloned();
        let (since, select, latest) = match token.as_deref() {
            None => (None, req.query.get("$select").cloned(), false),
            Some("latest") => (None, req.query.get("$select").cloned(), true),
            Some(t) => {
                if let Some(form) = s.users.expired.get(t) {
                    return expiry_reply(*form, &base);
                }
                match s.users.delta_tokens.get(t) {
                    Some((upto, select)) => (Some(*upto), select.clone(), false),
                    // Unknown, or the empty token of a 410's Location: a fresh full round.
                    None if t.is_empty() => (None, req.query.get("$select").cloned(), false),
                    None => return expiry_reply(DeltaExpiry::ResyncRequired, &base),
                }
            }
        };
        let u = &mut s.users;
        u.rounds_started += 1;
        let left: Vec<String> = if latest {
            Vec::new()
        } else {
            match since {
                None => u.by_id.keys().cloned().collect(),
                Some(since) => {
                    let mut changed: Vec<(u64, String)> = u
                        .changed
                        .iter()
                        .filter(|(_, seq)| **seq > since)
                        .map(|(id, seq)| (*seq, id.clone()))
                        .chain(
                            u.removed
                                .iter()
                                .filter(|(_, (seq, _))| *seq > since)
                                .map(|(id, (seq, _))| (*seq, id.clone())),
                        )
                        .collect();
                    changed.sort();
                    changed.into_iter().map(|(_, id)| id).collect()
                }
            }
        };
        let id = s.next_id("sNPERZECR_");
        s.users.rounds.insert(
            id.clone(),
            Round {
                left,
                select,
                upto: s.users.seq,
                issued: Instant::now(),
                delta: since.is_some(),
            },
        );
        id
    };
    let page_size = s.users.delta_page_size.max(1);
    let (items, select, done, upto) = {
        let u = &mut s.users;
        let r = u.rounds.get_mut(&round_id).expect("round");
        let take = r.left.len().min(page_size);
        let ids: Vec<String> = r.left.drain(..take).collect();
        let select = r.select.clone();
        let done = r.left.is_empty();
        let upto = r.upto;
        let delta_round = r.delta;
        let items: Vec<Value> = ids
            .iter()
            .filter_map(|id| match u.by_id.get(id) {
                Some(user) => Some(Value::Object(project(user, select.as_deref(), false))),
                None => {
                    let reason = u.removed.get(id).map(|(_, r)| *r).unwrap_or("deleted");
                    // The initial round only lists what exists (a user gone mid-round is left out).
                    delta_round.then(|| json!({"id": id, "@removed": {"reason": reason}}))
                }
            })
            .collect();
        (items, select, done, upto)
    };
    let mut body = json!({
        "@odata.context": context(&base, select.as_deref()),
        "value": items,
    });
    if done {
        s.users.rounds.remove(&round_id);
        let token = s.next_id("uXVdUb1zePoEh00vTKGO3Y8joaqcOpxLWEJrkQRZnB6gCOZpKf6buI0TEqMZ");
        s.users.delta_tokens.insert(token.clone(), (upto, select));
        body["@odata.deltaLink"] = json!(format!("{base}/users/delta?$deltatoken={token}"));
    } else {
        if let Some(r) = s.users.rounds.get_mut(&round_id) {
            // Graph's skip tokens are short-lived from each page.
            r.issued = Instant::now();
        }
        body["@odata.nextLink"] = json!(format!("{base}/users/delta?$skiptoken={round_id}"));
    }
    GraphReply::json(200, body)
}

fn expiry_reply(form: DeltaExpiry, base: &str) -> GraphReply {
    match form {
        DeltaExpiry::Gone => GraphReply::error(
            410,
            "syncStateNotFound",
            "The delta token is no longer valid; a full synchronization is required.",
        )
        .header("Location", format!("{base}/users/delta?$deltatoken=")),
        DeltaExpiry::GonePascalCase => GraphReply::error(
            410,
            "SyncStateNotFound",
            "The sync state generation is not found.",
        ),
        DeltaExpiry::ResyncRequired => GraphReply::error(
            400,
            "resyncRequired",
            "The delta token is no longer valid, and the app must reset the sync state.",
        ),
    }
}

fn list(req: &GraphRequest, s: &mut GraphState) -> GraphReply {
    let base = s.base.clone();
    let select = req.query.get("$select").cloned();
    let top: usize = req
        .query
        .get("$top")
        .and_then(|t| t.parse().ok())
        .unwrap_or(s.users.list_page_size)
        .clamp(1, 999);
    let start: usize = match req.query.get("$skiptoken") {
        None => 0,
        Some(t) => match s.users.rounds.get(t) {
            Some(r) if r.issued.elapsed() <= s.users.skiptoken_ttl => r.upto as usize,
            _ => return expired_page_token(),
        },
    };
    let ids: Vec<String> = s
        .users
        .by_id
        .keys()
        .skip(start)
        .take(top + 1)
        .cloned()
        .collect();
    let more = ids.len() > top;
    let value: Vec<Value> = ids
        .iter()
        .take(top)
        .map(|id| Value::Object(project(&s.users.by_id[id], select.as_deref(), true)))
        .collect();
    let mut body = json!({"@odata.context": context(&base, select.as_deref()), "value": value});
    if more {
        let token = s.next_id("RFNwdAIAAQAAACM66I92ZRFxba0Q");
        s.users.rounds.insert(
            token.clone(),
            Round {
                left: Vec::new(),
                select: select.clone(),
                upto: (start + top) as u64,
                issued: Instant::now(),
                delta: false,
            },
        );
        let mut link = format!("{base}/users?");
        if let Some(sel) = &select {
            link.push_str(&format!("$select={sel}&"));
        }
        link.push_str(&format!("$top={top}&$skiptoken={token}"));
        body["@odata.nextLink"] = json!(link);
    }
    GraphReply::json(200, body)
}
