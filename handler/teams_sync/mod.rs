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
pub mod pending;
pub mod plan;
pub mod select;
pub mod settings;
pub mod users;

pub use settings::TeamsSettings;

use crate::moodle::{MoodleClient, MoodleError};
use crate::store::{SharedStore, StoreError};
use crate::sync::report::{RunReport, SyncOptions};
use api::{GraphReply, GraphRequest, GraphSend, Method, TeamsError};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Shard names of the Teams pass start with this (`teams-0`, `teams-1`, …).
pub const SHARD_PREFIX: &str = "teams-";

/// The parts the Teams pass talks to.
#[derive(Clone)]
pub struct TeamsEnv {
    pub settings: Arc<TeamsSettings>,
    pub store: SharedStore,
    pub moodle: MoodleClient,
    pub graph: Arc<dyn GraphSend>,
    /// Told which teams a pass made ready, so the Teams app goes into them at once
    /// (`teams_app::install::AfterTeamsSync`); None: nothing is told (tests, the benchmark).
    pub after_ready: Option<Arc<dyn TeamsReady>>,
}

/// What follows a pass that made teams ready (created or linked and now usable).
pub trait TeamsReady: Send + Sync {
    fn teams_ready(
        &self,
        teams: Vec<String>,
    ) -> futures::future::BoxFuture<'_, crate::teams_app::install::AfterSyncLines>;
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

/// Moodle reads (`core_enrol_get_enrolled_users`) in flight at once, whatever
/// `TEAMS_CONCURRENCY` says: a course's Moodle read takes milliseconds, its Graph calls are paced
/// over hundreds, so a few PHP workers keep up, and a school's Moodle is spared a burst.
pub const MOODLE_READS_AT_ONCE: usize = 4;

/// What the courses of one pass share: clients, the Entra links read once, the stop signal.
#[derive(Clone)]
struct Shared {
    settings: Arc<TeamsSettings>,
    store: SharedStore,
    moodle: MoodleClient,
    graph: Arc<dyn GraphSend>,
    links: Arc<users::EntraLinks>,
    pending: Arc<pending::Known>,
    opts: SyncOptions,
    now: i64,
    /// Set by the first fatal answer (bad credentials, missing permission): the courses still in
    /// flight make no further call, so one refusal is not repeated by every course.
    stop: Arc<AtomicBool>,
    moodle_slots: Arc<Semaphore>,
    /// Teams this pass made ready, for [`TeamsEnv::after_ready`].
    ready: Arc<std::sync::Mutex<Vec<String>>>,
}

/// One course's view: the shared parts and the course's own report, merged into the run's in
/// course order once the course is done (courses run `TEAMS_CONCURRENCY` at a time).
pub struct TeamsCtx {
    pub settings: Arc<TeamsSettings>,
    pub store: SharedStore,
    pub moodle: MoodleClient,
    graph: Arc<dyn GraphSend>,
    pub links: Arc<users::EntraLinks>,
    pub pending: Arc<pending::Known>,
    pub opts: SyncOptions,
    /// Unix seconds at the start of the run.
    pub now: i64,
    pub report: RunReport,
    stop: Arc<AtomicBool>,
    moodle_slots: Arc<Semaphore>,
    ready: Arc<std::sync::Mutex<Vec<String>>>,
}

impl TeamsCtx {
    fn of(sh: &Shared, report: RunReport) -> Self {
        TeamsCtx {
            settings: sh.settings.clone(),
            store: sh.store.clone(),
            moodle: sh.moodle.clone(),
            graph: sh.graph.clone(),
            links: sh.links.clone(),
            pending: sh.pending.clone(),
            opts: sh.opts.clone(),
            now: sh.now,
            report,
            stop: sh.stop.clone(),
            moodle_slots: sh.moodle_slots.clone(),
            ready: sh.ready.clone(),
        }
    }

    /// `team` became usable in this pass (its creation or linking just ended).
    pub fn made_ready(&self, team: &str) {
        self.ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(team.to_string());
    }

    /// A slot for one Moodle read (see [`MOODLE_READS_AT_ONCE`]).
    pub async fn moodle_slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.moodle_slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

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
        if self.stop.load(Ordering::SeqCst) {
            return Err(TeamsError::Fatal(
                "stopped: another course of this run met a fatal Graph error".into(),
            ));
        }
        *self
            .report
            .graph_calls
            .entry(call_kind(method, &path))
            .or_default() += 1;
        let r = self.graph.send(GraphRequest { method, path, body }).await;
        if matches!(r, Err(TeamsError::Fatal(_))) {
            self.stop.store(true, Ordering::SeqCst);
        }
        r
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
        after_ready: crate::teams_app::install::AfterTeamsSync::from_app(state)
            .map(|a| Arc::new(a) as Arc<dyn TeamsReady>),
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
            .map(|c| c.id.get())
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
    let links = Arc::new(users::EntraLinks::load(&env.store).await?);
    let known = Arc::new(pending::Known::load(&env.store).await?);
    let sh = Shared {
        settings: env.settings.clone(),
        store: env.store.clone(),
        moodle: env.moodle.clone(),
        graph: env.graph.clone(),
        links,
        pending: known.clone(),
        opts: opts.clone(),
        now: unix_now(),
        stop: Arc::new(AtomicBool::new(false)),
        moodle_slots: Arc::new(Semaphore::new(MOODLE_READS_AT_ONCE)),
        ready: Arc::new(std::sync::Mutex::new(Vec::new())),
    };
    let linked = sh.links.len();
    report.trace(|| {
        format!(
            "teams: {} course(s), {linked} Moodle user(s) linked to Entra, {} at a time",
            list.len(),
            env.settings.concurrency
        )
    });
    // Every course on its own report, `TEAMS_CONCURRENCY` at a time: Graph's limits are per team
    // (4/s) and per tenant (10/s POST /teams, 30/s other Teams writes), so one course at a time
    // uses a fraction of them. Results come back as courses finish; reports are merged in course
    // order so the run's report reads the same whatever the timing.
    let template = RunReport::new(&report.run_id, opts, report.trace_limit);
    let seen: std::collections::BTreeSet<i64> = list.iter().map(|c| c.id.get()).collect();
    let total = list.len();
    let mut results = futures::stream::iter(list.into_iter().enumerate())
        .map(|(i, c)| {
            let mut ctx = TeamsCtx::of(&sh, template.clone());
            async move {
                let r = course::sync_course(&mut ctx, &c).await;
                (i, c, r, ctx.report)
            }
        })
        .buffer_unordered(env.settings.concurrency.max(1));
    let mut done: Vec<(usize, RunReport)> = Vec::with_capacity(total);
    let mut stopped: Option<TeamsRunError> = None;
    while let Some((i, c, r, mut rep)) = results.next().await {
        match r {
            Ok(()) => {}
            Err(course::CourseError::Graph(TeamsError::Fatal(m))) => {
                stopped.get_or_insert(TeamsRunError::Fatal(m));
            }
            Err(course::CourseError::Moodle(e)) if crate::error::moodle_permanent(&e) => {
                stopped.get_or_insert(TeamsRunError::Moodle(e));
            }
            Err(e) => {
                rep.counts(course::ENTITY).failed += 1;
                rep.issue(
                    course::ENTITY,
                    &c.id.to_string(),
                    "failed",
                    format!("{e}; the other courses go on, this one is tried again next run"),
                );
            }
        }
        done.push((i, rep));
        if stopped.is_some() {
            // The courses still in flight are dropped where they stand: each records its step
            // before and after every creation, so the next run resumes them (as after a kill).
            break;
        }
    }
    drop(results);
    done.sort_by_key(|(i, _)| *i);
    for (_, rep) in &done {
        report.merge(rep);
    }
    // Even when a fatal answer stopped the pass: the teams made ready before it are usable.
    let ready = std::mem::take(&mut *sh.ready.lock().unwrap_or_else(|p| p.into_inner()));
    if let (Some(after), false) = (&env.after_ready, ready.is_empty()) {
        let lines = after.teams_ready(ready).await;
        for l in lines.trace {
            report.trace(|| l);
        }
        report.warnings.extend(lines.warnings);
    }
    if let Some(e) = stopped {
        return Err(e);
    }
    if courses.is_none() && opts.course.is_none() {
        // Every selected course was seen: a pending row of a course no longer selected goes.
        pending::forget_others(&env.store, &known, &seen).await?;
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
