//! Runs started from the page in this process: their progress counters while they go, then
//! their outcome, so the run page can stream them (server-sent events). Finished runs are read
//! back from the store; only runs that ended without a report (refused) are kept here for long.

use crate::sync::engine::Progress;
use crate::sync::progress::Counters;
use crate::sync::RunReport;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;

/// How many runs the map keeps (newest win): the page starts one at a time.
const KEEP: usize = 32;

/// Per-process state of the admin pages.
#[derive(Default)]
pub struct AdminRuntime {
    pub key: tokio::sync::OnceCell<super::session::SessionKey>,
    pub limiter: crate::outbound::limiter::RateLimiter,
    /// The tenant's ID-token validator of the OIDC sign-in (its key set cached for the process).
    pub oidc: std::sync::OnceLock<Arc<crate::bot::auth::validate::TokenValidator>>,
    runs: Mutex<HashMap<String, Arc<LiveRun>>>,
}

/// What a run ended with: its report, or why it did not run.
pub type Outcome = Result<RunReport, String>;

pub struct LiveRun {
    pub counters: Counters,
    pub started: Instant,
    done: watch::Sender<Option<Outcome>>,
}

/// `read / planned / written` now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub read: u64,
    pub planned: u64,
    pub written: u64,
}

impl LiveRun {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            read: self.counters.read.load(Ordering::Relaxed),
            planned: self.counters.planned.load(Ordering::Relaxed),
            written: self.counters.written.load(Ordering::Relaxed),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Outcome>> {
        self.done.subscribe()
    }

    pub fn outcome(&self) -> Option<Outcome> {
        self.done.borrow().clone()
    }

    pub fn finish(&self, outcome: Outcome) {
        self.done.send_replace(Some(outcome));
    }
}

impl AdminRuntime {
    /// Register a run about to start; the returned progress feeds its counters.
    pub fn start(&self, run_id: &str) -> (Arc<LiveRun>, Progress) {
        let run = Arc::new(LiveRun {
            counters: Counters::default(),
            started: Instant::now(),
            done: watch::channel(None).0,
        });
        let mut map = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= KEEP {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, r)| r.started)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(run_id.to_string(), run.clone());
        let feed = run.clone();
        let progress: Progress = Arc::new(move |step| feed.counters.apply(step));
        (run, progress)
    }

    pub fn get(&self, run_id: &str) -> Option<Arc<LiveRun>> {
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(run_id)
            .cloned()
    }
}
