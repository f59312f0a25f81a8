//! When and how runs go: the incremental overlap, the full-pass schedule, the lease, the token re-check, the trace.

use crate::config::Source;
use crate::schedule::Schedule;

pub(super) struct Runs {
    pub overlap_secs: i64,
    pub full_schedule: Option<Schedule>,
    pub lease_secs: i64,
    pub token_recheck_secs: u64,
    pub trace_limit: usize,
}

pub(super) fn load(src: &mut Source) -> Runs {
    let overlap_secs = src.parse(
        "SYNC_OVERLAP_SECS",
        120i64,
        "incremental runs re-read this many seconds before the checkpoint (clock skew, whole-second timestamps)",
    );
    let full_raw = src.string(
        "SYNC_FULL_SCHEDULE",
        "0 0 2 * * *",
        "NCRONTAB schedule of full passes (every entry read, so leavers are seen without --force); `-` for none",
    );
    let full_schedule = match full_raw.trim() {
        "" | "-" => None,
        expr => match Schedule::parse(expr) {
            Ok(s) => Some(s),
            Err(e) => {
                src.problem(format!("SYNC_FULL_SCHEDULE: {e}"));
                None
            }
        },
    };
    let lease_secs = src.parse(
        "SYNC_LEASE_SECS",
        1800i64,
        "how long a sync run holds its lease before another run may take over",
    );
    let token_recheck_secs = src.parse(
        "SYNC_TOKEN_RECHECK_SECS",
        3600u64,
        "a run with nothing to write proves the Moodle token with one call unless a run proved it within this many seconds (0: every time)",
    );
    let trace_limit = src.parse(
        "SYNC_TRACE_LIMIT",
        20000usize,
        "most per-entry trace lines kept for a verbose run",
    );
    Runs {
        overlap_secs: overlap_secs.max(0),
        full_schedule,
        lease_secs,
        token_recheck_secs,
        trace_limit,
    }
}
