//! Cohorts from directory groups (`SYNC_COHORT_SOURCE=groups`): each group entry is a cohort,
//! its member DNs the members. Membership is differential against Moodle's own list, and only
//! in cohorts the bridge owns (prefix) unless the cohort lock is disabled.

use super::checkpoint::{self, Checkpoint};
use super::engine::{ensure_cohorts, Ctx, PassError, PassState};
use super::record::CohortRef;
use super::report::RunReport;
use super::settings::CohortSourceKind;
use super::source::{self, Entry, Query};
use super::state;
use crate::ids::{MoodleCohortId, MoodleUserId};
use crate::moodle::cohorts;
use std::collections::{BTreeMap, BTreeSet};

pub const POPULATION: &str = "groups";

pub async fn run_groups(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
) -> Result<(), PassError> {
    let CohortSourceKind::Groups {
        base,
        filter,
        name_attr,
        member_attr,
    } = &ctx.settings.cohorts.kind
    else {
        return Ok(());
    };
    let config_hash = ctx.settings.config_hash();
    let pass_start = checkpoint::generalized(chrono::Utc::now());
    let cp = checkpoint::load(&ctx.store, "cohorts", POPULATION).await?;
    let since = match &cp {
        Some(c) if !ctx.opts.force && c.config_hash == config_hash => c
            .marker
            .as_deref()
            .and_then(|m| checkpoint::since_with_overlap(m, ctx.settings.overlap_secs)),
        _ => None,
    };
    let query = Query {
        base: base.clone(),
        filter: filter.clone(),
        since,
        attrs: vec![
            name_attr.clone(),
            member_attr.clone(),
            "modifyTimestamp".into(),
        ],
    };
    let (mut rx, handle) = source::spawn_read(&ctx.settings, query);
    let mut groups: Vec<Entry> = Vec::new();
    // Groups are few (hundreds); their member lists are resolved one group at a time.
    while let Some(e) = rx.recv().await {
        report.entries_read += 1;
        groups.push(e);
    }
    match handle.await {
        Ok(Ok(sum)) => report.source_requests += sum.requests,
        Ok(Err(e)) => {
            report.complete = false;
            report.errors.push(format!("groups: read failed: {e}"));
        }
        Err(e) => {
            report.complete = false;
            report.errors.push(format!("groups: reader crashed: {e}"));
        }
    }
    for g in &groups {
        let Some(key) = g.first(name_attr).map(str::to_string) else {
            report.skipped("cohorts", &g.dn, format!("group without {name_attr}"));
            continue;
        };
        let mut want_ids: BTreeSet<MoodleUserId> = BTreeSet::new();
        for dn in g.all(member_attr) {
            let Some(member_key) = Entry::rdn_value(dn) else {
                continue;
            };
            match state::load(&ctx.store, member_key)
                .await?
                .and_then(|r| r.moodle_id)
            {
                Some(id) => {
                    want_ids.insert(MoodleUserId(id));
                }
                None => report.skipped(
                    "memberships",
                    member_key,
                    format!("member of {key} is not synced to Moodle"),
                ),
            }
        }
        let wanted: BTreeMap<String, CohortRef> = [(
            key.clone(),
            CohortRef {
                key: key.clone(),
                name: key.clone(),
            },
        )]
        .into();
        let ids = ensure_cohorts(ctx, st, report, &wanted).await?;
        let Some(cid) = ids.get(&key).copied() else {
            continue;
        };
        let current: BTreeSet<MoodleUserId> = if cid.0 < 0 {
            BTreeSet::new()
        } else {
            cohorts::get_members(&ctx.moodle, &[cid])
                .await?
                .into_iter()
                .flat_map(|m| m.userids)
                .collect()
        };
        let add: Vec<(MoodleCohortId, MoodleUserId)> =
            want_ids.difference(&current).map(|u| (cid, *u)).collect();
        let remove: Vec<(MoodleCohortId, MoodleUserId)> =
            current.difference(&want_ids).map(|u| (cid, *u)).collect();
        report.trace(|| {
            format!(
                "cohorts {key}: {} in LDAP, {} in Moodle: add {}, remove {}",
                want_ids.len(),
                current.len(),
                add.len(),
                remove.len()
            )
        });
        report.counts("memberships").unchanged += want_ids.intersection(&current).count() as u64;
        if ctx.opts.simulate {
            report.counts("memberships").created += add.len() as u64;
            report.counts("memberships").removed += remove.len() as u64;
            continue;
        }
        let per_call = (ctx.moodle.field_budget() / cohorts::MEMBER_FIELDS).max(1);
        for part in add.chunks(per_call) {
            let warnings = cohorts::add_members(&ctx.moodle, part).await?;
            let bad = warnings.iter().filter(|w| w.warningcode != "3").count() as u64;
            for w in warnings.iter().filter(|w| w.warningcode != "3") {
                report.failed(
                    "memberships",
                    &key,
                    format!("{} {}", w.warningcode, w.message),
                );
            }
            report.counts("memberships").created += part.len() as u64 - bad;
        }
        for part in remove.chunks(per_call) {
            cohorts::delete_members(&ctx.moodle, part).await?;
            report.counts("memberships").removed += part.len() as u64;
        }
    }
    if !ctx.opts.simulate && report.complete {
        let cp = Checkpoint {
            marker: Some(pass_start),
            config_hash,
            file_hash: None,
            run_id: ctx.run_id.clone(),
            progress: groups.len() as i64,
        };
        checkpoint::save(&ctx.store, "cohorts", POPULATION, &cp).await?;
    }
    Ok(())
}
