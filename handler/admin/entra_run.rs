//! "Entra users" on the manual-sync page: the Entra → Moodle pass `handler sync --entra` runs
//! ([`EntraSync`], same settings, same options: simulation, trace, force), folded into the
//! page's run report so the run page and the history show it beside the directory's entities.
//! It runs after the directory pass (the accounts it links to exist by then) and before the page
//! reports the run finished.

use crate::app::AppState;
use crate::sync::entra::{EntraOptions, EntraReport, EntraSync};
use crate::sync::{RunReport, SyncOptions};

pub const ENTITY: &str = "entra users";
/// Entra accounts newly linked to an existing Moodle account (a linked account may also be
/// updated in the same run, so links are counted apart).
pub const LINKS: &str = "entra links";

/// Why the entity cannot be offered, when Graph or Moodle is missing.
pub fn unavailable(state: &AppState) -> Option<&'static str> {
    if state.graph.is_none() {
        Some("GRAPH_CLIENT_ID, GRAPH_TENANT_ID and a secret, certificate or managed identity")
    } else if state.moodle.is_none() {
        Some("MOODLE_URL and MOODLE_TOKEN")
    } else {
        None
    }
}

/// Run the Entra pass with the page's options and add what it did to `report`.
pub async fn run(state: &AppState, opts: &SyncOptions, report: &mut RunReport) {
    let (Some(graph), Some(moodle)) = (&state.graph, &state.moodle) else {
        report.complete = false;
        report.errors.push(format!(
            "{ENTITY}: not run: set {}",
            unavailable(state).unwrap_or("the Graph settings")
        ));
        return;
    };
    let sync = EntraSync {
        graph: graph.as_ref(),
        moodle,
        store: &state.store,
        settings: &state.settings.entra,
        removal_max_share: state.settings.sync.removal_max_share,
        opts: EntraOptions {
            simulate: opts.simulate,
            verbose: opts.verbose,
            force: opts.force || opts.allow_mass_removal,
        },
    };
    match sync.run().await {
        Ok(e) => merge(report, &e),
        Err(e) => {
            // Credentials, a missing permission (named) or the store.
            report.complete = false;
            report.errors.push(format!(
                "{ENTITY}: stopped: {}",
                crate::redact::redact(&e.to_string())
            ));
        }
    }
}

/// The Entra report in the run report's terms: re-enables count as updates, suspensions and
/// deletions as removals, new links under their own entity.
pub fn merge(report: &mut RunReport, e: &EntraReport) {
    if e.linked > 0 {
        report.counts(LINKS).created += e.linked;
    }
    let c = report.counts(ENTITY);
    c.created += e.created;
    c.updated += e.updated + e.reenabled;
    c.unchanged += e.unchanged;
    c.skipped += e.skipped.len() as u64;
    c.failed += e.failed.len() as u64;
    c.removed += e.suspended + e.deleted;
    for (k, why) in &e.skipped {
        report.issue(ENTITY, k, "skipped", why.as_str());
    }
    for (k, why) in &e.failed {
        report.issue(ENTITY, k, "failed", why.as_str());
    }
    if let Some(r) = &e.removals_refused {
        report
            .warnings
            .push(format!("{ENTITY}: removals not applied: {r}"));
    }
    for err in &e.errors {
        report.errors.push(format!("{ENTITY}: {err}"));
    }
    if !e.complete {
        report.complete = false;
    }
    report.entries_read += e.users_read + e.removed_read;
    *report
        .graph_calls
        .entry("entra: users delta".into())
        .or_default() += e.graph_calls;
    let mut lines = e.trace.clone();
    lines.extend(e.render().lines().map(str::to_string));
    for line in lines {
        report.trace(|| line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_entra_report_lands_in_the_run_report_terms() {
        let opts = SyncOptions {
            verbose: true,
            ..Default::default()
        };
        let mut r = RunReport::new("run-1", &opts, 100);
        let e = EntraReport {
            complete: true,
            users_read: 5,
            created: 1,
            linked: 2,
            updated: 1,
            unchanged: 1,
            suspended: 1,
            skipped: BTreeMap::from([("u-1".into(), "no username".into())]),
            failed: BTreeMap::from([("u-2".into(), "Moodle refused".into())]),
            graph_calls: 1,
            ..Default::default()
        };
        merge(&mut r, &e);
        let c = &r.counts[ENTITY];
        assert_eq!(
            (
                c.created,
                c.updated,
                c.unchanged,
                c.skipped,
                c.failed,
                c.removed
            ),
            (1, 1, 1, 1, 1, 1)
        );
        assert_eq!(r.counts[LINKS].created, 2);
        assert_eq!(r.entries_read, 5);
        assert!(r
            .issues
            .iter()
            .any(|i| i.key == "u-2" && i.outcome == "failed"));
        assert!(r.trace.iter().any(|l| l.contains("Entra → Moodle")));
        let incomplete = EntraReport::default();
        merge(&mut r, &incomplete);
        assert!(!r.complete);
    }
}
