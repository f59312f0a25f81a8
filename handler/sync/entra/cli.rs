//! `handler sync --entra [--simulate] [--verbose] [--force] [--json]`.

use super::{EntraOptions, EntraSync};
use crate::graph::GraphClient;
use crate::sync::cli::SyncArgs;

/// Exit codes: 0 done, 1 incomplete or refused, 2 not configured, 3 done with failed users.
pub async fn run(state: &crate::app::AppState, args: &SyncArgs) -> anyhow::Result<i32> {
    let (Some(graph), Some(moodle)) = (&state.settings.graph, &state.moodle) else {
        eprintln!("sync --entra needs Graph (GRAPH_CLIENT_ID, GRAPH_TENANT_ID and a secret, certificate or managed identity) and Moodle (MOODLE_URL, MOODLE_TOKEN)");
        return Ok(2);
    };
    let client = match GraphClient::from_settings(state.http.clone(), graph) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sync --entra not run: {e}");
            return Ok(1);
        }
    };
    eprintln!("store: {}", state.store.describe());
    let sync = EntraSync {
        graph: &client,
        moodle,
        store: &state.store,
        settings: &state.settings.entra,
        removal_max_share: state.settings.sync.removal_max_share,
        opts: EntraOptions {
            simulate: args.simulate,
            verbose: args.verbose,
            force: args.force || args.allow_mass_removal,
        },
    };
    let report = match sync.run().await {
        Ok(r) => r,
        Err(e) => {
            // Credentials, a missing permission (named) or the store: nothing else can go on.
            eprintln!(
                "sync --entra stopped: {}",
                crate::redact::redact(&e.to_string())
            );
            return Ok(1);
        }
    };
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for line in &report.trace {
            crate::outln!("{line}");
        }
        crate::out!("{}", report.render());
    }
    Ok(if !report.complete || !report.errors.is_empty() {
        1
    } else if !report.failed.is_empty() {
        3
    } else {
        0
    })
}
