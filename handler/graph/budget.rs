//! Graph's throttling table (fixtures README, "Throttling limits that matter here") as budgets of
//! the outbound limiter, so the client paces itself below each limit instead of collecting 429s:
//! every request books a slot in each limit that counts it before it goes.
//!
//! Identity calls (users, groups, directory) are billed in resource units: GET `users` 2, GET
//! `groups/{id}/members` 3, other GET 1, a write 1 (and one write), `$select` −1, `$expand` +1,
//! `$top` < 20 −1, at least 1. Whether `users/delta` is billed as `users` is unconfirmed; it is
//! billed as `users` (the dearer reading).

use crate::outbound::limiter::{Quota, RateLimiter, Slot, Window};
use std::time::{Duration, Instant};

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The budgets of one app in one tenant.
#[derive(Debug, Clone)]
pub struct Budgets {
    /// Any Graph request of the app: 2,000 rps.
    pub app: Quota,
    /// `POST /teams`: 10 rps per app per tenant.
    pub teams_create: Quota,
    /// `PUT /groups/{id}/team`, clone: 6 rps.
    pub team_from_group: Quota,
    /// Teams rows by kind (`get`, `get-members`, `write`, `delete`): 30 / 60 / 30 / 15 rps.
    pub teams_rows: Quota,
    pub teams_members_get: Quota,
    pub teams_delete: Quota,
    /// Any single team: 4 rps per app.
    pub per_team: Quota,
    /// Identity resource units per 10 s.
    pub identity_ru: Quota,
    /// Identity writes: 3,000 per 2 min 30 s.
    pub identity_writes: Quota,
}

/// Added to every window: requests booked exactly one period apart can arrive closer together
/// (a fresh connection delays the first of a burst, a warm one does not), and Graph counts
/// arrivals. With 50 ms a 1 s limit is used to 95%.
pub const SLACK: Duration = Duration::from_millis(50);

impl Budgets {
    pub fn graph(identity_ru_per_10s: usize) -> Self {
        // Per-second limits are also spread evenly over the second (one every period/limit):
        // a burst of ten at once would open ten connections whose set-up times differ.
        let q = |name, limit: usize, period: Duration| {
            let mut windows = vec![Window::new(limit, period + SLACK)];
            if period <= secs(1) && limit > 1 {
                windows.push(Window::new(1, period / limit as u32));
            }
            Quota { name, windows }
        };
        Budgets {
            app: q("graph-app", 2_000, secs(1)),
            teams_create: q("graph-teams-create", 10, secs(1)),
            team_from_group: q("graph-team-from-group", 6, secs(1)),
            teams_rows: q("graph-teams", 30, secs(1)),
            teams_members_get: q("graph-teams-members-get", 60, secs(1)),
            teams_delete: q("graph-teams-delete", 15, secs(1)),
            per_team: q("graph-team", 4, secs(1)),
            identity_ru: q("graph-identity-ru", identity_ru_per_10s, secs(10)),
            identity_writes: q("graph-identity-writes", 3_000, secs(150)),
        }
    }
}

/// Which limits one request counts against, and its identity cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// (quota, key) pairs booked once each.
    pub slots: Vec<(Limit, String)>,
    /// Identity resource units (0 for non-identity calls).
    pub resource_units: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    App,
    TeamsCreate,
    TeamFromGroup,
    TeamsRow,
    TeamsMembersGet,
    TeamsDelete,
    PerTeam,
    IdentityWrites,
}

/// What `method path` (relative to the version root, query included) is charged.
pub fn charge(method: &str, path_and_query: &str) -> Charge {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    // `/teams('{id}')/operations('{op}')` (the Location of an async operation) is counted as
    // `/teams/{id}/operations/{op}`: a Teams GET on that team.
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .flat_map(|s| match s.split_once("('") {
            Some((name, rest)) => vec![name.to_string(), rest.trim_end_matches("')").to_string()],
            None => vec![s.to_string()],
        })
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let seg = |i: usize| segs.get(i).map(String::as_str);
    let get = method.eq_ignore_ascii_case("GET");
    let mut slots = vec![(Limit::App, String::new())];
    let mut resource_units = 0;
    match seg(0) {
        Some("teams") => {
            match (segs.len(), seg(2)) {
                (1, _) if !get => slots.push((Limit::TeamsCreate, String::new())),
                (_, Some("members")) if get => slots.push((Limit::TeamsMembersGet, String::new())),
                _ if method.eq_ignore_ascii_case("DELETE") => {
                    slots.push((Limit::TeamsDelete, String::new()))
                }
                _ => slots.push((
                    Limit::TeamsRow,
                    if get { "get" } else { "write" }.to_string(),
                )),
            }
            if let Some(team) = seg(1) {
                slots.push((Limit::PerTeam, team.to_string()));
            }
        }
        Some("groups") if seg(2) == Some("team") && !get => {
            slots.push((Limit::TeamFromGroup, String::new()));
        }
        Some("appcatalogs") | Some("chats") => {
            slots.push((
                Limit::TeamsRow,
                if get { "get" } else { "write" }.to_string(),
            ));
        }
        Some("users" | "groups" | "directoryobjects" | "directory" | "organization") => {
            let mut ru: i64 = if !get {
                slots.push((Limit::IdentityWrites, String::new()));
                1
            } else if seg(0) == Some("users")
                && segs.len() <= 2
                && seg(1).is_none_or(|s| s == "delta")
            {
                2
            } else if seg(0) == Some("groups") && seg(2) == Some("members") {
                3
            } else {
                1
            };
            let q = query.to_ascii_lowercase();
            if q.contains("$select=") {
                ru -= 1;
            }
            if q.contains("$expand=") {
                ru += 1;
            }
            if let Some(top) = q
                .split('&')
                .find_map(|kv| kv.strip_prefix("$top="))
                .and_then(|v| v.parse::<u32>().ok())
            {
                if top < 20 {
                    ru -= 1;
                }
            }
            resource_units = ru.max(1) as usize;
        }
        _ => {}
    }
    Charge {
        slots,
        resource_units,
    }
}

/// Books `charge` on the limiter and waits for its moment.
pub async fn pace(limiter: &RateLimiter, budgets: &Budgets, charge: &Charge) {
    let quota = |l: Limit| match l {
        Limit::App => &budgets.app,
        Limit::TeamsCreate => &budgets.teams_create,
        Limit::TeamFromGroup => &budgets.team_from_group,
        Limit::TeamsRow => &budgets.teams_rows,
        Limit::TeamsMembersGet => &budgets.teams_members_get,
        Limit::TeamsDelete => &budgets.teams_delete,
        Limit::PerTeam => &budgets.per_team,
        Limit::IdentityWrites => &budgets.identity_writes,
    };
    // The app-wide budget (2,000 rps) is left out of this booking and booked on its own once
    // the request is due (below). Booked together, it chained every row to every other: the
    // limiter serves each key in booking order, so one app-wide key meant a `members/add` whose
    // row was free waited behind the operation polls queued a second ahead on the Teams GET row,
    // and the write row went unused while they waited (run 2 of `bench teams` reached 80% of
    // the 30/s write rate, not the 95% the row's own spacing allows).
    let narrow: Vec<Slot<'_>> = charge
        .slots
        .iter()
        .filter(|(l, _)| *l != Limit::App)
        .map(|(l, key)| quota(*l).key(key))
        .collect();
    // First wait, without booking, until this one team has room: a tenant-wide row booked at a
    // moment pushed late by one team's spacing (4/s) would leave a gap in that row no other team
    // could use (bookings only go after the last one), and with many teams in flight those gaps
    // cost most of the row's rate. One team's calls come one after another, so once its slot is
    // free nobody else takes it before the booking below.
    let team: Vec<Slot<'_>> = charge
        .slots
        .iter()
        .filter(|(l, _)| *l == Limit::PerTeam)
        .map(|(l, key)| quota(*l).key(key))
        .collect();
    if !team.is_empty() {
        let wait = limiter.would_wait(&team, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    let now = Instant::now();
    let mut at = if narrow.is_empty() {
        now
    } else {
        limiter.reserve(&narrow, now, Duration::MAX).unwrap_or(now)
    };
    // One booking per resource unit; the limiter serves bookings in order, so the last is the moment.
    for _ in 0..charge.resource_units {
        let ru = [budgets.identity_ru.key("")];
        if let Ok(t) = limiter.reserve(&ru, now, Duration::MAX) {
            at = at.max(t);
        }
    }
    if at > now {
        tokio::time::sleep_until(at.into()).await;
    }
    // Due now by every narrower limit: the app-wide slot is taken at this moment, so it only
    // ever lines requests up behind requests that are going too (a few hundred µs apart).
    if charge.slots.iter().any(|(l, _)| *l == Limit::App) {
        let app = [budgets.app.key("")];
        let now = Instant::now();
        let at = limiter.reserve(&app, now, Duration::MAX).unwrap_or(now);
        if at > now {
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(c: &Charge) -> Vec<Limit> {
        c.slots.iter().map(|(l, _)| *l).collect()
    }

    #[test]
    fn each_row_of_the_table_charges_its_limits() {
        let c = charge("POST", "/teams");
        assert_eq!(limits(&c), [Limit::App, Limit::TeamsCreate]);
        let c = charge("POST", "/teams/T1/members/add");
        assert_eq!(limits(&c), [Limit::App, Limit::TeamsRow, Limit::PerTeam]);
        assert_eq!(c.slots[2].1, "t1");
        assert_eq!(
            limits(&charge("GET", "/teams/t/members")),
            [Limit::App, Limit::TeamsMembersGet, Limit::PerTeam]
        );
        assert_eq!(
            limits(&charge("DELETE", "/teams/t/members/m")),
            [Limit::App, Limit::TeamsDelete, Limit::PerTeam]
        );
        assert_eq!(
            limits(&charge("PUT", "/groups/g/team")),
            [Limit::App, Limit::TeamFromGroup]
        );
        assert_eq!(charge("GET", "/teams/t").resource_units, 0);
        let poll = charge("GET", "/teams('T1')/operations('op')");
        assert_eq!(
            limits(&poll),
            [Limit::App, Limit::TeamsRow, Limit::PerTeam],
            "an operation poll is a Teams GET on its team"
        );
        assert_eq!(poll.slots[2].1, "t1");
    }

    #[test]
    fn identity_calls_cost_resource_units_by_the_documented_rules() {
        assert_eq!(charge("GET", "/users").resource_units, 2);
        assert_eq!(charge("GET", "/users?$select=id").resource_units, 1);
        assert_eq!(charge("GET", "/users/delta?$skiptoken=x").resource_units, 2);
        assert_eq!(charge("GET", "/users/u1").resource_units, 1);
        assert_eq!(charge("GET", "/groups/g/members").resource_units, 3);
        assert_eq!(
            charge("GET", "/groups/g/members?$expand=manager").resource_units,
            4
        );
        assert_eq!(
            charge("GET", "/users?$select=id&$top=5").resource_units,
            1,
            "minimum 1"
        );
        let w = charge("PATCH", "/users/u1");
        assert_eq!(w.resource_units, 1);
        assert!(limits(&w).contains(&Limit::IdentityWrites));
    }

    #[tokio::test]
    async fn pacing_keeps_post_teams_at_ten_per_second() {
        let limiter = RateLimiter::new();
        let budgets = Budgets::graph(3_500);
        let c = charge("POST", "/teams");
        let t0 = Instant::now();
        for _ in 0..11 {
            pace(&limiter, &budgets, &c).await;
        }
        assert!(
            t0.elapsed() >= Duration::from_millis(990),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test]
    async fn a_free_row_is_not_held_behind_another_rows_queue() {
        use futures::FutureExt as _;
        let limiter = RateLimiter::new();
        let budgets = Budgets::graph(3_500);
        // Sixty operation polls on sixty teams: the Teams GET row (30/s) books them up to two
        // seconds ahead. Polled once each, so each has booked its place and is left waiting.
        for i in 0..60 {
            let poll = charge("GET", &format!("/teams('t{i}')/operations('o')"));
            let _ = pace(&limiter, &budgets, &poll).now_or_never();
        }
        let polls = [budgets.teams_rows.key("get")];
        assert!(
            limiter.would_wait(&polls, Instant::now()) > Duration::from_secs(1),
            "the GET row is booked ahead"
        );
        // A members/add is on the write row, which is free: it goes now, not after the polls.
        let t0 = Instant::now();
        pace(&limiter, &budgets, &charge("POST", "/teams/w/members/add")).await;
        assert!(
            t0.elapsed() < Duration::from_millis(200),
            "waited {:?} behind another row",
            t0.elapsed()
        );
    }

    #[tokio::test]
    async fn resource_units_are_booked_one_by_one() {
        let limiter = RateLimiter::new();
        let budgets = Budgets::graph(4);
        let c = charge("GET", "/users");
        let t0 = Instant::now();
        pace(&limiter, &budgets, &c).await;
        pace(&limiter, &budgets, &c).await;
        assert!(t0.elapsed() < Duration::from_millis(500));
        let wait = limiter.would_wait(&[budgets.identity_ru.key("")], Instant::now());
        assert!(
            wait > Duration::from_secs(9),
            "4 RU used of 4 per 10 s: {wait:?}"
        );
    }
}
