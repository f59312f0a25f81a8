//! People who left the directory: optional (off by default), only after a complete full read
//! of every population (--force or the scheduled full pass), and refused above a configured share unless explicitly allowed.

use super::apply::bisect;
use super::engine::{apply_cohort_memberships, apply_roles};
use super::engine::{forget, Ctx, PassError, PassState};
use super::entity::EntityKind;
use super::plan::Account;
use super::protect;
use super::record::PersonRecord;
use super::report::RunReport;
use super::settings::{CohortSourceKind, LeaverMemberships, RemovalMode};
use super::state::{self, MappingRow};
use crate::ids::MoodleUserId;
use crate::moodle::users;
use crate::store::{key_escape, tables};

/// The removal guard every source shares (local_o365 suspended thousands after one failed
/// read): `gone` of `active` accounts may go unless their share passes `max_share` and nobody
/// allowed it. Returns "N of M (x%) … above SYNC_REMOVAL_MAX_SHARE (y%)" when refused.
pub fn over_share(gone: usize, active: usize, max_share: f64, allowed: bool) -> Option<String> {
    let share = gone as f64 / active.max(1) as f64;
    (share > max_share && !allowed).then(|| {
        format!(
            "{gone} of {active} ({:.1}%, above SYNC_REMOVAL_MAX_SHARE {:.1}%)",
            share * 100.0,
            max_share * 100.0
        )
    })
}

pub async fn run_removals(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
) -> Result<(), PassError> {
    let mode = ctx.settings.removal;
    if mode == RemovalMode::Off || !ctx.opts.users {
        return Ok(());
    }
    if !(ctx.opts.force || ctx.opts.full) || ctx.opts.user.is_some() {
        report.trace(|| "removals: only on a full pass of every user (--force or SYNC_FULL_SCHEDULE; an incremental read cannot see who left)".into());
        return Ok(());
    }
    if !report.complete || !report.errors.is_empty() {
        report
            .errors
            .push("removals not done: the directory read was incomplete or failed".into());
        return Ok(());
    }
    let rows = state::all(&ctx.store).await?;
    let mut active: Vec<&MappingRow> = rows
        .iter()
        .filter(|r| !r.suspended && r.moodle_id.is_some())
        .collect();
    if !active.iter().any(|r| !st.seen.contains(&r.key)) {
        return Ok(());
    }
    // Never suspend or delete Moodle's own accounts, even if a stale row points at one.
    let protected = protect::load(ctx, st).await?.clone();
    let mut stale = Vec::new();
    active.retain(|r| match protected.matches(r.moodle_id, &r.username) {
        Some(label) => {
            report.skipped(
                EntityKind::Users,
                &r.key,
                format!(
                    "{}: stale mapping row ignored, never suspended or deleted",
                    protect::reason(label)
                ),
            );
            stale.push(r.key.clone());
            false
        }
        None => true,
    });
    if !ctx.opts.simulate {
        for key in &stale {
            forget(&ctx.store, key).await?;
        }
    }
    let gone: Vec<&MappingRow> = active
        .iter()
        .copied()
        .filter(|r| !st.seen.contains(&r.key))
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    if let Some(over) = over_share(
        gone.len(),
        active.len(),
        ctx.settings.removal_max_share,
        ctx.opts.allow_mass_removal,
    ) {
        report.errors.push(format!(
            "removals refused: {over} synced users are no longer in the directory; rerun with --allow-mass-removal if that is right"
        ));
        return Ok(());
    }
    for r in &gone {
        report.trace(|| {
            format!(
                "users {}: left the directory: {}",
                r.key,
                if mode == RemovalMode::Delete {
                    "delete"
                } else {
                    "suspend"
                }
            )
        });
    }
    if ctx.opts.simulate {
        report.counts(EntityKind::Users).removed += gone.len() as u64;
        return Ok(());
    }
    let per_call = (ctx.moodle.field_budget() / 2).clamp(1, ctx.settings.batch_size);
    for part in gone.chunks(per_call) {
        let ids: Vec<MoodleUserId> = part.iter().filter_map(|r| r.moodle_id).collect();
        debug_assert!(
            ids.iter().all(|id| !protected.is_protected_id(*id)),
            "protected accounts were filtered out above"
        );
        match mode {
            RemovalMode::Suspend => {
                let warnings = users::suspend(&ctx.moodle, &ids).await?;
                let mut updated = Vec::new();
                for r in part {
                    match warnings
                        .iter()
                        .find(|w| w.itemid == r.moodle_id.map(MoodleUserId::get))
                    {
                        Some(w) => report.failed(
                            EntityKind::Users,
                            &r.key,
                            format!("suspend: {} {}", w.warningcode, w.message),
                        ),
                        None => {
                            report.counts(EntityKind::Users).removed += 1;
                            let mut r = (*r).clone();
                            r.suspended = true;
                            updated.push(r);
                        }
                    }
                }
                if ctx.settings.leavers.memberships == LeaverMemberships::Remove {
                    strip(ctx, st, report, &mut updated).await?;
                }
                state::save_all(&ctx.store, &updated).await?;
            }
            RemovalMode::Delete => {
                let items: Vec<(usize, MoodleUserId)> = ids.iter().copied().enumerate().collect();
                let client = &ctx.moodle;
                let out = bisect(items, |g| async move {
                    users::delete(client, &g).await.map(|()| vec![(); g.len()])
                })
                .await?;
                for (i, ()) in out.ok {
                    report.counts(EntityKind::Users).removed += 1;
                    let _ = ctx
                        .store
                        .delete(
                            tables::MAPPINGS,
                            state::USER_PK,
                            &key_escape(&part[i].key),
                            None,
                        )
                        .await;
                }
                for (i, why) in out.failed {
                    report.failed(EntityKind::Users, &part[i].key, format!("delete: {why}"));
                }
            }
            RemovalMode::Off => {}
        }
    }
    Ok(())
}

/// SYNC_LEAVER_MEMBERSHIPS=remove: take away the cohort memberships and role assignments the
/// bridge gave these suspended people (the rows say which), nothing else.
async fn strip(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
    rows: &mut [MappingRow],
) -> Result<(), PassError> {
    let recs: Vec<PersonRecord> = rows
        .iter()
        .map(|r| PersonRecord {
            key: r.key.clone(),
            dn: String::new(),
            fields: r.fields.clone().unwrap_or_default(),
            cohorts: Default::default(),
            roles: Default::default(),
            held_roles: Default::default(),
            leaves_on: None,
            notes: Vec::new(),
            shortened: Vec::new(),
            conflicts: Vec::new(),
        })
        .collect();
    let before: Vec<Option<MappingRow>> = rows.iter().cloned().map(Some).collect();
    let ids: Vec<Option<Account>> = rows.iter().map(|r| r.moodle_id.map(Account::Id)).collect();
    let budget = ctx.moodle.field_budget();
    if ctx.opts.cohorts && matches!(ctx.settings.cohorts.kind, CohortSourceKind::Attribute(_)) {
        let sets = apply_cohort_memberships(ctx, st, report, &recs, &before, &ids, budget).await?;
        for (row, set) in rows.iter_mut().zip(sets) {
            if let Some(set) = set {
                row.cohorts = set;
            }
        }
    }
    if ctx.opts.roles && ctx.settings.writes_roles() {
        let sets = apply_roles(ctx, st, report, &recs, &before, &ids, budget).await?;
        for (row, set) in rows.iter_mut().zip(sets) {
            if let Some(set) = set {
                row.roles = set;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_guard_refuses_above_the_share_unless_allowed() {
        assert_eq!(
            super::over_share(1, 20, 0.05, false),
            None,
            "5% is the limit itself"
        );
        let why = super::over_share(2, 20, 0.05, false).expect("10% > 5%");
        assert!(
            why.contains("2 of 20 (10.0%") && why.contains("SYNC_REMOVAL_MAX_SHARE"),
            "{why}"
        );
        assert_eq!(super::over_share(2, 20, 0.05, true), None);
        assert!(
            super::over_share(1, 0, 0.5, false).is_some(),
            "nothing linked: all of it"
        );
    }
}
