//! Cohorts from directory groups (`SYNC_COHORT_SOURCE=groups`): each group entry is a cohort,
//! its member DNs the members. Membership is differential against Moodle's own list, and only
//! in cohorts the bridge owns (prefix) unless the cohort lock is disabled.
//!
//! In the sharded path the groups shard may run before the user shards: members that are not
//! synced yet cannot be added. Such a group is recorded as pending (with the missing member
//! keys) and re-read on a later incremental run once one of those members has been synced,
//! even though the group itself did not change. Moodle's own accounts are never added to or
//! removed from a cohort.

use super::apply::{self, MemberWrite};
use super::checkpoint::{self, Checkpoint};
use super::engine::{ensure_cohorts, Ctx, PassError, PassState};
use super::entity::EntityKind;
use super::plan::Cohort;
use super::protect;
use super::record::CohortRef;
use super::report::RunReport;
use super::settings::CohortSourceKind;
use super::source::{self, Entry, Query};
use super::state;
use crate::ids::MoodleUserId;
use crate::moodle::cohorts;
use crate::store::{key_escape, tables, Entity, SharedStore, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashSet};

pub const POPULATION: &str = "groups";

/// Partition of `checkpoints` holding the pending groups (row key: the escaped group name).
pub const PENDING_PK: &str = "groups-pending";
/// Missing member keys remembered per pending group: bounds the row size and the store reads
/// an incremental run spends checking whether a pending group is due.
const PENDING_SAMPLE: usize = 100;

/// Pending groups: name → member keys that were not synced yet.
pub async fn load_pending(
    store: &SharedStore,
) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
    let mut out = BTreeMap::new();
    let mut next: Option<String> = None;
    loop {
        let page = store
            .query(tables::CHECKPOINTS, PENDING_PK, next.as_deref(), 1000)
            .await?;
        for e in &page.entities {
            let Some(name) = e.str("name") else { continue };
            out.insert(
                name.to_string(),
                e.json::<Vec<String>>("missing")?.unwrap_or_default(),
            );
        }
        match page.next {
            Some(n) => next = Some(n),
            None => return Ok(out),
        }
    }
}

async fn save_pending(
    store: &SharedStore,
    name: &str,
    missing: &[String],
    run_id: &str,
) -> Result<(), StoreError> {
    let sample = &missing[..missing.len().min(PENDING_SAMPLE)];
    let e = Entity::new(PENDING_PK, key_escape(name))
        .with("name", name)
        .with("missing_total", missing.len() as i64)
        .with("run_id", run_id)
        .with_json("missing", &sample)?;
    store.upsert(tables::CHECKPOINTS, &e).await.map(|_| ())
}

async fn clear_pending(store: &SharedStore, name: &str) -> Result<(), StoreError> {
    match store
        .delete(tables::CHECKPOINTS, PENDING_PK, &key_escape(name), None)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

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
    let partition = ctx.source.checkpoint_partition();
    let cp = checkpoint::load(&ctx.store, partition, EntityKind::Cohorts, POPULATION).await?;
    let since = match &cp {
        Some(c) if !ctx.opts.force && c.config_hash == config_hash => c
            .marker
            .as_deref()
            .and_then(|m| checkpoint::since_with_overlap(m, ctx.settings.overlap_secs)),
        _ => None,
    };
    let attrs = vec![
        name_attr.clone(),
        member_attr.clone(),
        "modifyTimestamp".into(),
    ];
    let incremental = since.is_some();
    let query = Query {
        base: base.clone(),
        filter: filter.clone(),
        since,
        attrs: attrs.clone(),
    };
    let mut groups = read_groups(ctx, report, query).await;
    let pending = load_pending(&ctx.store).await?;
    // Unchanged groups that still wait for members: re-read those whose members are synced now.
    if incremental && !pending.is_empty() {
        let read: HashSet<&str> = groups.iter().filter_map(|g| g.first(name_attr)).collect();
        let mut due: Vec<&String> = Vec::new();
        for (name, missing) in &pending {
            if read.contains(name.as_str()) {
                continue;
            }
            let mut synced = false;
            for k in missing {
                if state::load(&ctx.store, k)
                    .await?
                    .is_some_and(|r| r.moodle_id.is_some())
                {
                    synced = true;
                    break;
                }
            }
            if synced {
                due.push(name);
            } else {
                report.trace(|| {
                    format!(
                        "cohorts {name}: still pending, none of its missing members is synced yet"
                    )
                });
            }
        }
        if !due.is_empty() {
            report.trace(|| {
                format!(
                    "groups: re-reading {} pending group(s) whose members were synced since",
                    due.len()
                )
            });
            let names: String = due
                .iter()
                .map(|n| super::filter::equals(name_attr, n))
                .collect();
            let query = Query {
                base: base.clone(),
                filter: format!("(&{filter}(|{names}))"),
                since: None,
                attrs,
            };
            let again = read_groups(ctx, report, query).await;
            if report.complete && !ctx.opts.simulate {
                // Pending groups gone from the directory: nothing left to wait for.
                let found: HashSet<&str> =
                    again.iter().filter_map(|g| g.first(name_attr)).collect();
                for n in due.iter().filter(|n| !found.contains(n.as_str())) {
                    clear_pending(&ctx.store, n).await?;
                }
            }
            groups.extend(again);
        }
    }
    let budget = ctx.moodle.field_budget();
    let protected = if groups.is_empty() {
        protect::Protected::default()
    } else {
        protect::load(ctx, st).await?.clone()
    };
    for g in &groups {
        let Some(key) = g.first(name_attr).map(str::to_string) else {
            report.skipped(
                EntityKind::Cohorts,
                &g.dn,
                format!("group without {name_attr}"),
            );
            continue;
        };
        let mut want_ids: BTreeSet<MoodleUserId> = BTreeSet::new();
        let mut missing: Vec<String> = Vec::new();
        for dn in g.all(member_attr) {
            let Some(member_key) = Entry::rdn_value(dn) else {
                continue;
            };
            match state::load(&ctx.store, member_key)
                .await?
                .and_then(|r| r.moodle_id)
            {
                Some(id) => match protected.matches(Some(id), "") {
                    Some(label) => report.skipped(
                        EntityKind::Memberships,
                        member_key,
                        format!("member of {key}: {}", protect::reason(label)),
                    ),
                    None => {
                        want_ids.insert(id);
                    }
                },
                None => {
                    report.skipped(
                        EntityKind::Memberships,
                        member_key,
                        format!("member of {key} is not synced to Moodle (yet)"),
                    );
                    missing.push(member_key.to_string());
                }
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
        let Some(cohort) = ids.get(&key).copied() else {
            continue;
        };
        // Moodle's own accounts in a bridge cohort (added by hand) are left where they are.
        let current: BTreeSet<MoodleUserId> = match cohort {
            // A cohort a simulation would create has no members yet.
            Cohort::Planned => BTreeSet::new(),
            Cohort::Id(cid) => cohorts::get_members(&ctx.moodle, &[cid])
                .await?
                .into_iter()
                .flat_map(|m| m.userids)
                .filter(|u| !protected.is_protected_id(*u))
                .collect(),
        };
        let add: Vec<MoodleUserId> = want_ids.difference(&current).copied().collect();
        let remove: Vec<MoodleUserId> = current.difference(&want_ids).copied().collect();
        report.trace(|| {
            format!(
                "cohorts {key}: {} in LDAP, {} in Moodle: add {}, remove {}",
                want_ids.len(),
                current.len(),
                add.len(),
                remove.len()
            )
        });
        report.counts(EntityKind::Memberships).unchanged +=
            want_ids.intersection(&current).count() as u64;
        if !missing.is_empty() {
            report.issue(
                EntityKind::Cohorts,
                &key,
                "pending",
                format!(
                    "{} member(s) not synced to Moodle yet: the group will be re-examined on a later run once they are",
                    missing.len()
                ),
            );
        }
        if ctx.opts.simulate {
            report.counts(EntityKind::Memberships).created += add.len() as u64;
            report.counts(EntityKind::Memberships).removed += remove.len() as u64;
            continue;
        }
        let Cohort::Id(cid) = cohort else {
            continue;
        };
        let write = |user: &MoodleUserId| MemberWrite {
            key: key.clone(),
            cohort_key: key.clone(),
            cohort: cid,
            user: *user,
        };
        let adds: Vec<MemberWrite> = add.iter().map(write).collect();
        let removes: Vec<MemberWrite> = remove.iter().map(write).collect();
        apply::cohort_members(&ctx.moodle, report, &adds, &removes, budget).await?;
        if missing.is_empty() {
            if pending.contains_key(&key) {
                clear_pending(&ctx.store, &key).await?;
            }
        } else {
            save_pending(&ctx.store, &key, &missing, &ctx.run_id).await?;
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
        checkpoint::save(&ctx.store, partition, EntityKind::Cohorts, POPULATION, &cp).await?;
    }
    Ok(())
}

/// One group search; a failed read marks the report incomplete (no checkpoint advance).
async fn read_groups(ctx: &Ctx, report: &mut RunReport, query: Query) -> Vec<Entry> {
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
    groups
}
