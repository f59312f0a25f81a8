//! ENT/LDAP → Moodle sync: typed records → plan → batched writes, checkpoint after each
//! applied batch (kanidm sync-tool style). Entities and options of the ENT manual-sync page.

pub mod apply;
pub mod checkpoint;
pub mod cli;
pub mod create_rate;
pub mod engine;
pub mod entity;
pub mod entra;
pub mod filter;
pub mod full_pass;
pub mod functions;
pub mod groups;
pub mod lease;
pub mod mapping;
pub mod plan;
pub mod progress;
pub mod protect;
pub mod record;
pub mod removal;
pub mod report;
pub mod retry;
pub mod run;
pub mod schools;
pub mod settings;
pub mod shard;
pub mod source;
pub mod state;
pub mod token_check;

pub use entity::EntityKind;
pub use report::{RunReport, SyncOptions};
pub use run::SyncEnv;
pub use settings::SyncSettings;

use crate::app::AppState;
use axum::Router;

/// The admin page (`/manage/sync`) is a later issue; the sync adds no public route yet.
pub fn router() -> Router<AppState> {
    Router::new()
}

/// Not a failure, a fact the admin must know before a large load: Moodle's web services compare
/// each created or updated user's e-mail with every account, and web services cannot tell
/// whether the site is tuned, so the advice is always given.
pub fn email_check_note() -> crate::app::Check {
    crate::app::Check {
        service: "moodle user creation".into(),
        outcome: Ok("each created or updated user's e-mail is compared with every account \
                     (LOWER(email) = LOWER(:email), a scan of mdl_user on PostgreSQL), so large loads \
                     slow down as the site grows; unless the site sets allowaccountssameemail=1, \
                     add the index CREATE INDEX mdl_user_lower_email ON mdl_user (lower(email)) \
                     (README: \"Loading a large directory\")"
            .into()),
    }
}

/// Reachability checks of the sync for `handler check-config`: its source (LDAP bind, export
/// file) and what the Moodle token may do. Checked whenever the sync is in use, scheduled or not:
/// `handler sync` runs without SYNC_ENABLED.
pub async fn reachability(state: &AppState) -> Vec<crate::app::Check> {
    let s = &state.settings.sync;
    let mut checks = Vec::new();
    if let (true, Some(_), Some(m)) = (state.settings.entra.photo, &state.graph, &state.moodle) {
        // ENTRA_SYNC_PHOTO: the picture function, and uploads allowed on the service.
        checks.push(crate::app::Check {
            service: "moodle access (entra photos)".into(),
            outcome: crate::moodle::access::check(m, crate::moodle::access::PHOTO_FUNCTIONS).await,
        });
    }
    if !s.in_use() {
        return checks;
    }
    if let Some(m) = &state.moodle {
        let mut needed = crate::moodle::access::SYNC_FUNCTIONS.to_vec();
        if s.removal == settings::RemovalMode::Delete {
            needed.push("core_user_delete_users");
        }
        checks.push(crate::app::Check {
            service: "moodle access (sync)".into(),
            outcome: crate::moodle::access::check(m, &needed).await,
        });
        checks.push(email_check_note());
    }
    let outcome = match &s.source {
        settings::SourceKind::Ldap => match source::ldap::connect(&s.ldap).await {
            Ok(mut ldap) => {
                let _ = ldap.unbind().await;
                Ok(format!(
                    "{} (bound{})",
                    s.ldap.url,
                    s.ldap
                        .bind_dn
                        .as_deref()
                        .map(|d| format!(" as {d}"))
                        .unwrap_or_default()
                ))
            }
            Err(e) => Err(e.to_string()),
        },
        settings::SourceKind::Ldif(p) | settings::SourceKind::Csv(p) => {
            match std::fs::metadata(p) {
                Ok(m) => Ok(format!("{} ({} bytes)", p.display(), m.len())),
                Err(e) => Err(format!("{}: {e}", p.display())),
            }
        }
    };
    checks.push(crate::app::Check {
        service: "sync source".into(),
        outcome,
    });
    checks
}
