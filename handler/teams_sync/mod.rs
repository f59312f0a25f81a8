//! Moodle courses → Microsoft Teams: a team per selected course, owned by the holders of the
//! owner roles and joined by the holders of the member roles who are linked to an Entra account,
//! kept in step on every run; optional archive when a course ends or is hidden.
//!
//! - `settings`: `TEAMS_*`; `select`: which courses; `naming`: display name and mailNickname;
//! - `users`: Moodle user → Entra object id (the Entra sync's links); `link`: course ↔ team and
//!   where its provisioning stands, in `mappings`;
//! - `plan`: membership diff (pure); `api`: the Graph requests and answers; `course`: one course.
//!
//! Runs in the sync's run (`handler sync --teams`, SyncTimer → `sync-work` shards of
//! `TEAMS_COURSES_PER_SHARD` courses → SyncWorker), into its report.

pub mod api;
pub mod course;
pub mod graph;
pub mod link;
pub mod naming;
pub mod plan;
pub mod select;
pub mod settings;
pub mod users;

pub use settings::TeamsSettings;

use crate::moodle::{MoodleClient, MoodleError};
use crate::store::{SharedStore, StoreError};
use crate::sync::report::{RunReport, SyncOptions};
use api::{GraphReply, GraphRequest, GraphSend, Method, TeamsError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Shard names of the Teams pass start with this (`teams-0`, `teams-1`, …).
pub const SHARD_PREFIX: &str = "teams-";

/// The parts the Teams pass talks to.
#[derive(Clone)]
pub struct TeamsEnv {
    pub settings: Arc<TeamsSettings>,
    pub store: SharedStore,
    pub moodle: MoodleClient,
    pub graph: Arc<dyn GraphSend>,
}

#[derive(Debug, thiserror::Error)]
pub enum TeamsRunError {
    /// Bad credentials, a missing Graph permission, a refused Moodle token: no course can work.
    #[error("{0}")]
    Fatal(String),
    #[error("Moodle: {0}")]
    Moodle(#[from] MoodleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One run's view: the clients, the Entra links read once, and the report decisions go into.
pub struct TeamsCtx<'a> {
    pub settings: Arc<TeamsSettings>,
    pub store: SharedStore,
    pub moodle: MoodleClient,
    graph: Arc<dyn GraphSend>,
    pub links: users::EntraLinks,
    pub opts: SyncOptions,
    /// Unix seconds at the start of the run.
    pub now: i64,
    pub report: &'a mut RunReport,
}

impl TeamsCtx<'_> {
    /// Every Graph call of the pass goes through here: counted for the report, and a write in a
    /// simulation is refused loudly (the course code never asks for one; this makes sure).
    pub async fn send(
        &mut self,
        method: Method,
        path: String,
        body: Option<serde_json::Value>,
    ) -> Result<GraphReply, TeamsError> {
        if self.opts.simulate && method.is_write() {
            return Err(TeamsError::Fatal(format!(
                "simulation: {} {path} refused (a simulation writes nothing)",
                method.as_str()
            )));
        }
        *self
            .report
            .graph_calls
            .entry(call_kind(method, &path))
            .or_default() += 1;
        self.graph.send(GraphRequest { method, path, body }).await
    }
}

/// `GET /teams/{id}/members` for `GET /teams/2222…/members?$top=…`: ids and queries dropped.
pub fn call_kind(method: Method, path: &str) -> String {
    let start = ["/teams", "/groups"]
        .iter()
        .filter_map(|p| path.find(p))
        .min()
        .unwrap_or(0);
    let path = path[start..].split('?').next().unwrap_or_default();
    let segs: Vec<String> = path
        .split('/')
        .map(|s| {
            if s.contains("('") || s.chars().filter(char::is_ascii_digit).count() >= 6 {
                match s.split_once("('") {
                    Some((name, _)) => format!("{name}/{{id}}"),
                    None => "{id}".to_string(),
                }
            } else {
                s.to_string()
            }
        })
        .collect();
    format!("{} {}", method.as_str(), segs.join("/"))
}

/// The Teams pass of the app: none without Graph (`GRAPH_*`). Whether it runs also depends on
/// `TEAMS_COURSES` (or `--course`), decided by the run.
pub fn env_from_app(state: &crate::app::AppState, moodle: &MoodleClient) -> Option<TeamsEnv> {
    let graph = state.graph.clone()?;
    Some(TeamsEnv {
        settings: Arc::new(state.settings.teams.clone()),
        store: state.store.clone(),
        moodle: moodle.clone(),
        graph,
    })
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The selected courses' ids in batches of `TEAMS_COURSES_PER_SHARD`, for SyncTimer's shards.
pub async fn plan_batches(
    env: &TeamsEnv,
    opts: &SyncOptions,
) -> Result<Vec<Vec<i64>>, TeamsRunError> {
    let ids: Vec<i64> = match opts.course {
        Some(c) => vec![c],
        None => select::selected(&env.moodle, &env.settings.selection)
            .await?
            .into_iter()
            .map(|c| c.id.0)
            .collect(),
    };
    Ok(ids
        .chunks(env.settings.courses_per_shard.max(1))
        .map(<[i64]>::to_vec)
        .collect())
}

/// The Teams pass over `courses` (a shard's batch), or over every selected course (`None`; just
/// `--course` when given). One course's failure is reported and the next course goes on.
pub async fn run(
    env: &TeamsEnv,
    opts: &SyncOptions,
    courses: Option<&[i64]>,
    report: &mut RunReport,
) -> Result<(), TeamsRunError> {
    let list = match (courses, opts.course) {
        (Some(ids), _) => select::by_ids(&env.moodle, ids).await?,
        (None, Some(c)) => select::by_ids(&env.moodle, &[c]).await?,
        (None, None) => select::selected(&env.moodle, &env.settings.selection).await?,
    };
    if let (Some(c), true) = (opts.course, list.is_empty()) {
        report
            .errors
            .push(format!("--course {c}: no such Moodle course"));
        report.complete = false;
        return Ok(());
    }
    let links = users::EntraLinks::load(&env.store).await?;
    let mut ctx = TeamsCtx {
        settings: env.settings.clone(),
        store: env.store.clone(),
        moodle: env.moodle.clone(),
        graph: env.graph.clone(),
        links,
        opts: opts.clone(),
        now: unix_now(),
        report,
    };
    let linked = ctx.links.len();
    ctx.report.trace(|| {
        format!(
            "teams: {} course(s), {linked} Moodle user(s) linked to Entra",
            list.len()
        )
    });
    for c in &list {
        match course::sync_course(&mut ctx, c).await {
            Ok(()) => {}
            Err(course::CourseError::Graph(TeamsError::Fatal(m))) => {
                return Err(TeamsRunError::Fatal(m))
            }
            Err(course::CourseError::Moodle(e)) if crate::error::moodle_permanent(&e) => {
                return Err(TeamsRunError::Moodle(e))
            }
            Err(e) => {
                ctx.report.counts(course::ENTITY).failed += 1;
                ctx.report.issue(
                    course::ENTITY,
                    &c.id.to_string(),
                    "failed",
                    format!("{e}; the other courses go on, this one is tried again next run"),
                );
            }
        }
    }
    Ok(())
}

/// Graph calls per kind, summed: what the report and the benchmark show.
pub fn total_calls(calls: &BTreeMap<String, u64>) -> u64 {
    calls.values().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_kinds_drop_ids_and_queries() {
        assert_eq!(
            call_kind(
                Method::Get,
                "/teams/22222222-2222-4222-8222-000000000001/members"
            ),
            "GET /teams/{id}/members"
        );
        assert_eq!(
            call_kind(
                Method::Get,
                "/teams('22222222-2222-4222-8222-000000000001')/operations('33333333-3333-4333-8333-000000000001')"
            ),
            "GET /teams/{id}/operations/{id}"
        );
        assert_eq!(
            call_kind(Method::Get, "/groups?$filter=mailNickname%20eq%20'x'"),
            "GET /groups"
        );
        assert_eq!(
            call_kind(
                Method::Get,
                "http://127.0.0.1:9/v1.0/teams/2222222222/members?$skiptoken=1"
            ),
            "GET /teams/{id}/members"
        );
    }
}
