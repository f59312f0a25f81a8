//! The double's own reading of Graph's throttling table (fixtures README): sliding windows per
//! limit, written independently of the client's budgets so the client is checked against the
//! table, not against itself. A request over a limit is refused with the wait until the window
//! has room; refused requests are not counted (Graph counts them — the double is lenient there,
//! so a 429 it sends always means the client went over a limit).

use super::{GraphRequest, GraphState};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The limits enforced (per app and tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub app_per_sec: u32,
    pub teams_create_per_sec: u32,
    pub team_from_group_per_sec: u32,
    pub teams_per_sec: u32,
    pub teams_members_get_per_sec: u32,
    pub teams_delete_per_sec: u32,
    pub per_team_per_sec: u32,
    /// Identity resource units per 10 s.
    pub identity_ru_per_10s: usize,
    /// Identity writes per 150 s.
    pub identity_writes_per_150s: u32,
}

impl Limits {
    pub fn graph() -> Self {
        Limits {
            app_per_sec: 2_000,
            teams_create_per_sec: 10,
            team_from_group_per_sec: 6,
            teams_per_sec: 30,
            teams_members_get_per_sec: 60,
            teams_delete_per_sec: 15,
            per_team_per_sec: 4,
            identity_ru_per_10s: 3_500,
            identity_writes_per_150s: 3_000,
        }
    }
}

#[derive(Default)]
pub(super) struct Windows {
    /// (limit name, key) → (arrival, cost), oldest first.
    seen: HashMap<(String, String), VecDeque<(Instant, u32)>>,
}

/// Identity cost by the documented rules.
fn resource_units(req: &GraphRequest) -> u32 {
    let seg = |i: usize| req.segments.get(i).map(|s| s.to_ascii_lowercase());
    let mut ru: i32 = if req.method != "GET" {
        1
    } else if seg(0).as_deref() == Some("users")
        && (req.segments.len() == 1 || seg(1).as_deref() == Some("delta"))
    {
        2
    } else if seg(0).as_deref() == Some("groups") && seg(2).as_deref() == Some("members") {
        3
    } else {
        1
    };
    if req.query.contains_key("$select") {
        ru -= 1;
    }
    if req.query.contains_key("$expand") {
        ru += 1;
    }
    if req
        .query
        .get("$top")
        .and_then(|t| t.parse::<u32>().ok())
        .is_some_and(|t| t < 20)
    {
        ru -= 1;
    }
    ru.max(1) as u32
}

/// The limits `req` counts against: (name, key, limit, period, cost).
fn limits_of(l: &Limits, req: &GraphRequest) -> Vec<(&'static str, String, u32, Duration, u32)> {
    let sec = Duration::from_secs(1);
    // `/teams('{id}')/operations('{op}')` (the Location Graph gives) is `/teams/{id}/operations/{op}`.
    let segs: Vec<String> = req
        .segments
        .iter()
        .flat_map(|s| match s.split_once("('") {
            Some((name, rest)) => vec![name.to_string(), rest.trim_end_matches("')").to_string()],
            None => vec![s.clone()],
        })
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let seg = |i: usize| segs.get(i).cloned();
    let get = req.method == "GET";
    let mut out = vec![("app", String::new(), l.app_per_sec, sec, 1)];
    match seg(0).as_deref() {
        Some("teams") => {
            if segs.len() == 1 && !get {
                out.push((
                    "teams-create",
                    String::new(),
                    l.teams_create_per_sec,
                    sec,
                    1,
                ));
            } else if get && seg(2).as_deref() == Some("members") {
                out.push((
                    "teams-members-get",
                    String::new(),
                    l.teams_members_get_per_sec,
                    sec,
                    1,
                ));
            } else if req.method == "DELETE" {
                out.push((
                    "teams-delete",
                    String::new(),
                    l.teams_delete_per_sec,
                    sec,
                    1,
                ));
            } else {
                let row = if get { "get" } else { "write" };
                out.push(("teams", row.to_string(), l.teams_per_sec, sec, 1));
            }
            if let Some(team) = seg(1) {
                out.push(("team", team, l.per_team_per_sec, sec, 1));
            }
        }
        Some("groups") if seg(2).as_deref() == Some("team") && !get => {
            out.push((
                "team-from-group",
                String::new(),
                l.team_from_group_per_sec,
                sec,
                1,
            ));
        }
        Some("appcatalogs" | "chats") => {
            let row = if get { "get" } else { "write" };
            out.push(("teams", row.to_string(), l.teams_per_sec, sec, 1));
        }
        Some("users" | "groups" | "directoryobjects" | "organization") => {
            out.push((
                "identity-ru",
                String::new(),
                l.identity_ru_per_10s as u32,
                Duration::from_secs(10),
                resource_units(req),
            ));
            if !get {
                out.push((
                    "identity-writes",
                    String::new(),
                    l.identity_writes_per_150s,
                    Duration::from_secs(150),
                    1,
                ));
            }
        }
        _ => {}
    }
    out
}

/// `None` = admitted (and counted); `Some(wait)` = over a limit, retry after `wait`.
pub(super) fn admit(state: &mut GraphState, req: &GraphRequest) -> Option<Duration> {
    let now = Instant::now();
    let limits = limits_of(&state.limits, req);
    let mut wait = Duration::ZERO;
    for (name, key, limit, period, cost) in &limits {
        let q = state
            .throttle
            .seen
            .entry((name.to_string(), key.clone()))
            .or_default();
        while q
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= *period)
        {
            q.pop_front();
        }
        let used: u32 = q.iter().map(|(_, c)| c).sum();
        if used + cost > *limit {
            // Room once enough of the oldest arrivals leave the window.
            let mut freed = 0;
            for (t, c) in q.iter() {
                freed += c;
                if used + cost - freed <= *limit {
                    wait = wait.max((*t + *period).saturating_duration_since(now));
                    break;
                }
            }
        }
    }
    if wait > Duration::ZERO {
        return Some(wait);
    }
    for (name, key, _, _, cost) in limits {
        state
            .throttle
            .seen
            .entry((name.to_string(), key))
            .or_default()
            .push_back((now, cost));
    }
    None
}
