//! The pass over one population: entries → typed records → plan (create / update / unchanged /
//! skip, with a reason) → batched writes → mapping rows and checkpoint. Simulation is the same
//! plan with the writes left out.

use super::apply::{bisect, chunks};
use super::checkpoint::{self, Checkpoint};
use super::mapping::map_person;
use super::protect::{self, Protected};
use super::record::{CohortRef, PersonRecord, RoleRef};
use super::report::{RunReport, SyncOptions};
use super::retry;
use super::settings::{CohortSourceKind, LeaverMemberships, Population, SourceKind, SyncSettings};
use super::source::{self, Entry, Query};
use super::state::{self, MappingRow};
use crate::ids::{MoodleCohortId, MoodleRoleId, MoodleUserId};
use crate::moodle::roles::{Assignment, ContextLevel};
use crate::moodle::users::{MoodleUser, UserField};
use crate::moodle::{categories, cohorts, courses, roles, users, MoodleClient, MoodleError};
use crate::store::{key_escape, tables, SharedStore, StoreError};
use futures::stream::{self, StreamExt};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// What a pass reports as it goes (entries of one batch at a time), for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Entries taken from the source.
    Read(u64),
    /// Entries compared and planned (what to create, update, leave).
    Planned(u64),
    /// Entries whose writes are done and remembered.
    Written(u64),
}

pub type Progress = Arc<dyn Fn(Step) + Send + Sync>;

/// Everything a pass needs; the clients come in as parameters so tests pass doubles.
#[derive(Clone)]
pub struct Ctx {
    pub settings: Arc<SyncSettings>,
    pub store: SharedStore,
    pub moodle: MoodleClient,
    pub opts: SyncOptions,
    pub run_id: String,
    pub progress: Option<Progress>,
}

/// State carried across batches (and populations, in an in-process run).
#[derive(Default)]
pub struct PassState {
    /// Source keys seen by complete reads (removals compare against it).
    pub seen: HashSet<String>,
    usernames: HashMap<String, String>,
    /// Join keys (Moodle idnumbers) claimed so far in this pass → source key.
    idnumbers: HashMap<String, String>,
    /// Moodle user id → source key of the mapping that owns it (loaded on first need).
    owners: Option<HashMap<i64, String>>,
    /// The retry set, loaded on first need and kept in step with the store.
    retry: Option<HashMap<String, retry::Waiting>>,
    /// Population being read, and the keys its batches processed (the retry pass skips them).
    population: String,
    examined: HashSet<String>,
    cohort_index: Option<HashMap<String, MoodleCohortId>>,
    contexts: HashMap<(ContextLevel, String), Result<i64, String>>,
    fake_id: i64,
    /// Moodle's own accounts (read once per pass, on first need).
    pub(crate) protected: Option<Protected>,
    create_rate: super::create_rate::CreateRate,
    school_names: Option<HashMap<String, String>>,
}

impl PassState {
    fn fake_id(&mut self) -> i64 {
        self.fake_id -= 1;
        self.fake_id
    }
}

/// Stop the shard (the queue retries it; a CLI run reports it).
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Moodle(#[from] MoodleError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Source(#[from] source::SourceError),
}

pub const ENTITIES: [&str; 3] = ["users", "cohorts", "roles"];

fn selected(opts: &SyncOptions) -> Vec<&'static str> {
    ENTITIES
        .iter()
        .copied()
        .filter(|e| match *e {
            "users" => opts.users,
            "cohorts" => opts.cohorts,
            _ => opts.roles,
        })
        .collect()
}

/// One population: read (incrementally unless forced) and apply every selected entity.
pub async fn run_population(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
    pop: &Population,
) -> Result<(), PassError> {
    st.population = pop.name.clone();
    st.examined.clear();
    read_population(ctx, st, report, pop).await?;
    if ctx.opts.user.is_none() {
        retry_waiting(ctx, st, report, pop).await?;
        let waiting = retry_set(ctx, st).await?;
        for w in waiting.values().filter(|w| w.population == pop.name) {
            *report.waiting.entry(w.why.clone()).or_default() += 1;
        }
    }
    Ok(())
}

async fn retry_set<'a>(
    ctx: &Ctx,
    st: &'a mut PassState,
) -> Result<&'a mut HashMap<String, retry::Waiting>, StoreError> {
    if st.retry.is_none() {
        let all = retry::load(&ctx.store).await?;
        st.retry = Some(all.into_iter().map(|w| (w.key.clone(), w)).collect());
    }
    Ok(st.retry.as_mut().expect("just set"))
}

/// Re-read by key the entries of the retry set this pass did not see (their directory entry did
/// not change, or the export file did not), and apply them like any other entry.
async fn retry_waiting(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
    pop: &Population,
) -> Result<(), PassError> {
    let s = &ctx.settings;
    let examined = std::mem::take(&mut st.examined);
    let mut keys: Vec<String> = retry_set(ctx, st)
        .await?
        .values()
        .filter(|w| w.population == pop.name && !examined.contains(&w.key))
        .map(|w| w.key.clone())
        .collect();
    st.examined = examined;
    keys.sort();
    // A directory answers a filter of 100 keys from its index; an export file has no index, so
    // every query is a full scan: read it once for all waiting keys instead of once per 100.
    let per_query = match s.source {
        super::settings::SourceKind::Ldap => 100,
        _ => keys.len().max(1),
    };
    for chunk in keys.chunks(per_query) {
        let any: String = chunk
            .iter()
            .map(|k| super::filter::equals(&s.mapping.key, k))
            .collect();
        report.trace(|| format!("{}: re-examining {} waiting entries", pop.name, chunk.len()));
        let query = Query {
            base: pop.base.clone(),
            filter: format!("(&{}(|{any}))", pop.filter),
            since: None,
            attrs: s.person_attributes(),
        };
        let (mut rx, handle) = source::spawn_read(s, query);
        let mut batch = Vec::new();
        while let Some(e) = rx.recv().await {
            batch.push(e);
        }
        match handle.await {
            Ok(Ok(sum)) => report.retry_requests += sum.requests,
            Ok(Err(e)) => {
                report
                    .errors
                    .push(format!("{}: re-reading waiting entries: {e}", pop.name));
                return Ok(());
            }
            Err(e) => {
                report
                    .errors
                    .push(format!("{}: reader crashed: {e}", pop.name));
                return Ok(());
            }
        }
        // Gone from the directory (or out of the population): nothing left to wait for.
        let found: HashSet<String> = batch
            .iter()
            .filter_map(|e| e.first(&s.mapping.key).map(str::to_string))
            .collect();
        if !ctx.opts.simulate {
            for k in chunk.iter().filter(|k| !found.contains(*k)) {
                retry::clear(&ctx.store, k).await?;
                retry_set(ctx, st).await?.remove(k);
            }
        }
        report.retry_examined += batch.len() as u64;
        if !batch.is_empty() {
            process_batch(ctx, st, report, batch).await?;
        }
    }
    Ok(())
}

/// One population's read: incremental unless forced, every selected entity.
async fn read_population(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
    pop: &Population,
) -> Result<(), PassError> {
    let s = &ctx.settings;
    let entities = selected(&ctx.opts);
    let config_hash = s.config_hash();
    let pass_start = checkpoint::generalized(chrono::Utc::now());
    let mut cps = Vec::new();
    for e in &entities {
        cps.push(checkpoint::load(&ctx.store, e, &pop.name).await?);
    }
    let full = ctx.opts.force
        || ctx.opts.full
        || ctx.opts.user.is_some()
        || cps.iter().any(|c| {
            c.as_ref()
                .is_none_or(|c| c.config_hash != config_hash || c.marker.is_none())
        });
    let since = if full {
        None
    } else {
        cps.iter()
            .flatten()
            .filter_map(|c| c.marker.as_deref())
            .min()
            .and_then(|m| checkpoint::since_with_overlap(m, s.overlap_secs))
    };
    let file_hash = match &s.source {
        SourceKind::Ldif(p) | SourceKind::Csv(p) => Some(source::file_hash(p)?),
        SourceKind::Ldap => None,
    };
    if !full
        && file_hash.is_some()
        && cps
            .iter()
            .all(|c| c.as_ref().and_then(|c| c.file_hash.as_ref()) == file_hash.as_ref())
    {
        report.source_requests += 1;
        report.trace(|| {
            format!(
                "{}: export file unchanged since the last pass: nothing to read",
                pop.name
            )
        });
        return Ok(());
    }
    let filter = match &ctx.opts.user {
        Some(u) => format!(
            "(&{}(|{}{}))",
            pop.filter,
            super::filter::equals(&s.mapping.key, u),
            super::filter::equals(&s.mapping.username.attr, u)
        ),
        None => pop.filter.clone(),
    };
    report.trace(|| {
        format!(
            "{}: search {filter} under {} since {}",
            pop.name,
            pop.base,
            since.as_deref().unwrap_or("the beginning")
        )
    });
    let query = Query {
        base: pop.base.clone(),
        filter,
        since,
        attrs: s.person_attributes(),
    };
    let (mut rx, handle) = source::spawn_read(s, query);
    let mut batch = Vec::with_capacity(s.batch_size);
    let mut applied: i64 = 0;
    let mut seen_here = Vec::new();
    loop {
        let next = rx.recv().await;
        let done = next.is_none();
        if let Some(e) = next {
            batch.push(e);
        }
        if batch.len() >= s.batch_size || (done && !batch.is_empty()) {
            let n = batch.len() as u64;
            report.entries_read += n;
            if let Some(p) = &ctx.progress {
                p(Step::Read(n));
            }
            let keys = process_batch(ctx, st, report, std::mem::take(&mut batch)).await;
            let keys = match keys {
                Ok(k) => k,
                Err(e) => {
                    drop(rx);
                    let _ = handle.await;
                    // The report of an interrupted run still says what was read, and how.
                    report.source_requests += source::requests_for(s, applied as u64 + n);
                    return Err(e);
                }
            };
            seen_here.extend(keys);
            applied += n as i64;
            if let Some(p) = &ctx.progress {
                p(Step::Written(n));
            }
            if !ctx.opts.simulate && ctx.opts.user.is_none() {
                for (e, cp) in entities.iter().zip(&cps) {
                    let mut cp = cp.clone().unwrap_or_default();
                    cp.run_id = ctx.run_id.clone();
                    cp.progress = applied;
                    checkpoint::save(&ctx.store, e, &pop.name, &cp).await?;
                }
            }
        }
        if done {
            break;
        }
    }
    let summary = match handle.await {
        Ok(Ok(sum)) => sum,
        Ok(Err(e)) => {
            report.source_requests += source::requests_for(s, applied as u64);
            report.complete = false;
            report.errors.push(format!(
                "{}: read failed after {applied} entries: {e}",
                pop.name
            ));
            return Ok(());
        }
        Err(e) => {
            report.complete = false;
            report
                .errors
                .push(format!("{}: reader crashed: {e}", pop.name));
            return Ok(());
        }
    };
    report.source_requests += summary.requests;
    st.seen.extend(seen_here);
    if !ctx.opts.simulate && ctx.opts.user.is_none() {
        for e in &entities {
            let cp = Checkpoint {
                marker: Some(pass_start.clone()),
                config_hash: config_hash.clone(),
                file_hash: file_hash.clone(),
                run_id: ctx.run_id.clone(),
                progress: applied,
            };
            checkpoint::save(&ctx.store, e, &pop.name, &cp).await?;
        }
    }
    Ok(())
}

enum UserPlan {
    Unchanged(MoodleUserId),
    Update(MoodleUserId, Vec<&'static str>),
    /// The planned deletion date has come: suspend the account.
    Suspend(MoodleUserId),
    Create,
    Lookup,
    Skip,
}

/// Apply one batch; returns the keys it saw (for removals).
async fn process_batch(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
    entries: Vec<Entry>,
) -> Result<Vec<String>, PassError> {
    let s = &ctx.settings;
    let opts = &ctx.opts;
    let batch_len = entries.len() as u64;
    let mut recs: Vec<PersonRecord> = Vec::with_capacity(entries.len());
    let mut keys = Vec::with_capacity(entries.len());
    for e in entries {
        match map_person(s, &e) {
            Ok(r) => {
                keys.push(r.key.clone());
                match st.usernames.get(&r.fields.username) {
                    Some(other) if other != &r.key => {
                        let reason = format!(
                            "duplicate login {:?}: already used by {other} in this directory",
                            r.fields.username
                        );
                        report.skipped("users", &r.key, reason);
                        continue;
                    }
                    _ => {
                        st.usernames
                            .insert(r.fields.username.clone(), r.key.clone());
                    }
                }
                for n in &r.notes {
                    report.trace(|| format!("users {}: {n}", r.key));
                }
                for n in &r.shortened {
                    report.issue("users", &r.key, "shortened", n.clone());
                }
                recs.push(r);
            }
            Err(reason) => {
                let key = Entry::rdn_value(&e.dn).unwrap_or(&e.dn).to_string();
                keys.push(key.clone());
                report.skipped("users", &key, reason);
            }
        }
    }
    let recs = drop_conflicts(st, report, recs);
    let mut rows: Vec<Option<MappingRow>> = Vec::with_capacity(recs.len());
    for r in &recs {
        rows.push(state::load(&ctx.store, &r.key).await?);
    }
    // ---- Moodle's own accounts (guest, admin, the service account) are never managed.
    let protected = if recs.is_empty() {
        Protected::default()
    } else {
        protect::load(ctx, st).await?.clone()
    };
    let mut kept_recs = Vec::with_capacity(recs.len());
    let mut kept_rows = Vec::with_capacity(rows.len());
    for (r, row) in recs.into_iter().zip(rows) {
        let label = protected
            .matches(None, &r.fields.username)
            .or_else(|| {
                row.as_ref()
                    .and_then(|row| protected.matches(row.moodle_id, &row.username))
            })
            .map(str::to_string);
        let Some(label) = label else {
            kept_recs.push(r);
            kept_rows.push(row);
            continue;
        };
        report.skipped("users", &r.key, protect::reason(&label));
        if row.is_some() && !opts.simulate {
            // A stale row (older version, hand edit) must not keep pointing at the account.
            report.trace(|| {
                format!(
                    "users {}: stale mapping to a protected account forgotten",
                    r.key
                )
            });
            forget(&ctx.store, &r.key).await?;
        }
    }
    let mut recs = kept_recs;
    let rows = kept_rows;
    let budget = ctx.moodle.field_budget();
    let today = chrono::Utc::now().date_naive();
    let leaving: Vec<bool> = recs
        .iter()
        .map(|r| s.leavers.suspend_on_date && r.has_left(today))
        .collect();

    // ---- users
    let mut plans: Vec<UserPlan> = Vec::with_capacity(recs.len());
    for (i, (r, row)) in recs.iter().zip(&rows).enumerate() {
        if leaving[i] {
            plans.push(leaver_plan(report, r, row.as_ref(), opts));
            continue;
        }
        let known = row
            .as_ref()
            .filter(|row| !opts.force && !row.suspended && row.fields.is_some())
            .and_then(|row| row.moodle_id.map(|id| (row, id)));
        plans.push(match known {
            Some((row, id)) if row.fingerprint == r.fingerprint() => {
                UserPlan::Unchanged(MoodleUserId(id))
            }
            Some((row, id)) if opts.users => {
                let diff = r.fields.diff_fields(row.fields.as_ref().expect("filtered"));
                UserPlan::Update(MoodleUserId(id), diff)
            }
            Some((_, id)) => UserPlan::Unchanged(MoodleUserId(id)),
            None => UserPlan::Lookup,
        });
    }
    let lookup_idx: Vec<usize> = plans
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p, UserPlan::Lookup))
        .map(|(i, _)| i)
        .collect();
    if !lookup_idx.is_empty() {
        let names: Vec<String> = lookup_idx
            .iter()
            .map(|i| recs[*i].fields.username.clone())
            .collect();
        let by_name = lookup(&ctx.moodle, UserField::Username, &names, budget).await?;
        let mut by_name: HashMap<String, MoodleUser> = by_name
            .into_iter()
            .map(|u| (u.username.clone(), u))
            .collect();
        let missing: Vec<String> = lookup_idx
            .iter()
            .filter(|i| {
                !by_name.contains_key(&recs[**i].fields.username)
                    && !recs[**i].fields.idnumber.is_empty()
            })
            .map(|i| recs[*i].fields.idnumber.clone())
            .collect();
        let found_idn = lookup(&ctx.moodle, UserField::Idnumber, &missing, budget).await?;
        let mut by_idn: HashMap<String, Vec<MoodleUser>> = HashMap::new();
        for u in found_idn {
            by_idn.entry(u.idnumber.clone()).or_default().push(u);
        }
        for i in lookup_idx {
            let r = &recs[i];
            let plan = if let Some(mu) = by_name.remove(&r.fields.username) {
                if let Some(label) = protected.matches(Some(mu.id.0), &mu.username) {
                    report.skipped("users", &r.key, protect::reason(label));
                    UserPlan::Skip
                } else if !mu.idnumber.is_empty()
                    && !r.fields.idnumber.is_empty()
                    && mu.idnumber != r.fields.idnumber
                {
                    report.skipped("users", &r.key, format!("username {:?} belongs to another Moodle account (idnumber {:?}, not {:?})", mu.username, mu.idnumber, r.fields.idnumber));
                    UserPlan::Skip
                } else {
                    report.trace(|| {
                        format!(
                            "users {}: found in Moodle by username (id {})",
                            r.key, mu.id
                        )
                    });
                    diff_plan(r, &mu, opts)
                }
            } else if let Some(list) = by_idn
                .get(&r.fields.idnumber)
                .filter(|_| !r.fields.idnumber.is_empty())
            {
                let owner = match list.as_slice() {
                    [mu] if mu.username != r.fields.username => owner_of(ctx, st, mu.id).await?,
                    _ => None,
                };
                if let Some(label) = list
                    .iter()
                    .find_map(|mu| protected.matches(Some(mu.id.0), &mu.username))
                {
                    report.skipped(
                        "users",
                        &r.key,
                        format!(
                            "{} (found by idnumber {:?})",
                            protect::reason(label),
                            r.fields.idnumber
                        ),
                    );
                    UserPlan::Skip
                } else if let Some(owner) = owner.filter(|o| o != &r.key) {
                    report.conflict(
                        "users",
                        &r.key,
                        format!(
                            "conflict: Moodle account {:?} (idnumber {:?}) already belongs to {owner}: not applied",
                            list[0].username, r.fields.idnumber
                        ),
                    );
                    UserPlan::Skip
                } else if list.len() > 1 {
                    report.skipped(
                        "users",
                        &r.key,
                        format!(
                            "{} Moodle accounts share idnumber {:?}",
                            list.len(),
                            r.fields.idnumber
                        ),
                    );
                    UserPlan::Skip
                } else {
                    report.trace(|| {
                        format!(
                            "users {}: found in Moodle by idnumber (id {}, username {:?})",
                            r.key, list[0].id, list[0].username
                        )
                    });
                    diff_plan(r, &list[0], opts)
                }
            } else if !opts.users {
                report.waiting(
                    "users",
                    &r.key,
                    "not in Moodle yet",
                    "not in Moodle yet (users were not selected)",
                );
                UserPlan::Skip
            } else if opts.update_only {
                report.waiting(
                    "users",
                    &r.key,
                    "update only",
                    "update only: no Moodle account to update",
                );
                UserPlan::Skip
            } else {
                UserPlan::Create
            };
            plans[i] = plan;
        }
    }
    if let Some(p) = &ctx.progress {
        p(Step::Planned(batch_len));
    }
    let mut ids: Vec<Option<MoodleUserId>> = vec![None; recs.len()];
    let mut user_ok: Vec<bool> = vec![true; recs.len()];
    let mut suspended_now: Vec<bool> = vec![false; recs.len()];
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    let mut suspends = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        match p {
            UserPlan::Suspend(id) => {
                ids[i] = Some(*id);
                report.trace(|| {
                    format!(
                        "users {}: planned deletion date {} has come: suspend",
                        recs[i].key,
                        recs[i].leaves_on.map(|d| d.to_string()).unwrap_or_default()
                    )
                });
                suspends.push((i, *id));
            }
            UserPlan::Unchanged(id) => {
                ids[i] = Some(*id);
                if opts.users {
                    report.counts("users").unchanged += 1;
                    report.trace(|| format!("users {}: unchanged", recs[i].key));
                }
            }
            UserPlan::Update(id, diff) if diff.is_empty() => {
                ids[i] = Some(*id);
                report.counts("users").unchanged += 1;
                report.trace(|| format!("users {}: unchanged", recs[i].key));
            }
            UserPlan::Update(id, diff) => {
                ids[i] = Some(*id);
                report.trace(|| format!("users {}: update {}", recs[i].key, diff.join(", ")));
                updates.push((i, recs[i].fields.update_item(*id, diff)));
            }
            UserPlan::Create => {
                report.trace(|| {
                    format!(
                        "users {}: create {:?}",
                        recs[i].key, recs[i].fields.username
                    )
                });
                creates.push((i, recs[i].fields.create_item(s.password_mail)));
            }
            UserPlan::Skip | UserPlan::Lookup => user_ok[i] = false,
        }
    }
    if opts.simulate {
        report.counts("users").created += creates.len() as u64;
        report.counts("users").updated += updates.len() as u64;
        report.counts("users").removed += suspends.len() as u64;
        for (i, _) in &creates {
            ids[*i] = Some(MoodleUserId(st.fake_id()));
        }
    } else {
        // Calls of one batch are independent (different people): up to SYNC_WRITE_CONCURRENCY
        // run at once, so Moodle's PHP workers and database share the load.
        let conc = s.write_concurrency.max(1);
        let sizes: Vec<usize> = creates.iter().map(|(_, f)| f.len()).collect();
        let client = &ctx.moodle;
        let started = std::time::Instant::now();
        let outs: Vec<_> = stream::iter(chunks(&sizes, budget, s.batch_size).into_iter().map(
            |range| {
                let part: Vec<(usize, Vec<(String, String)>)> = creates[range].to_vec();
                bisect(
                    part,
                    |items| async move { users::create(client, &items).await },
                )
            },
        ))
        .buffered(conc)
        .collect()
        .await;
        let mut created_now = 0u64;
        for out in outs {
            let out = out?;
            for (i, created) in out.ok {
                ids[i] = Some(created.id);
                created_now += 1;
                report.counts("users").created += 1;
            }
            for (i, why) in out.failed {
                user_ok[i] = false;
                report.failed(
                    "users",
                    &recs[i].key,
                    format!("create {:?}: {why}", recs[i].fields.username),
                );
            }
        }
        if let Some(w) = st.create_rate.observe(created_now, started.elapsed()) {
            tracing::warn!(run = %ctx.run_id, "{w}");
            report.warnings.push(w);
        }
        let sizes: Vec<usize> = updates.iter().map(|(_, f)| f.len()).collect();
        let outs: Vec<_> = stream::iter(chunks(&sizes, budget, s.batch_size).into_iter().map(
            |range| {
                let part = &updates[range];
                async move {
                    let items: Vec<Vec<(String, String)>> =
                        part.iter().map(|(_, f)| f.clone()).collect();
                    users::update(client, &items).await.map(|w| (part, w))
                }
            },
        ))
        .buffered(conc)
        .collect()
        .await;
        for out in outs {
            let (part, warnings) = out?;
            let mut bad: HashMap<i64, String> = HashMap::new();
            for w in warnings {
                if let Some(id) = w.itemid {
                    bad.insert(id, format!("{}: {}", w.warningcode, w.message));
                }
            }
            for (i, _) in part {
                let id = ids[*i].map(|m| m.0).unwrap_or_default();
                match bad.get(&id) {
                    Some(why) => {
                        user_ok[*i] = false;
                        report.failed("users", &recs[*i].key, format!("update (id {id}): {why}"));
                    }
                    None => report.counts("users").updated += 1,
                }
            }
        }
    }

    if !opts.simulate {
        let per_call = (budget / 2).clamp(1, s.batch_size);
        for part in suspends.chunks(per_call) {
            let list: Vec<MoodleUserId> = part.iter().map(|(_, id)| *id).collect();
            let warnings = users::suspend(&ctx.moodle, &list).await?;
            for (i, id) in part {
                match warnings.iter().find(|w| w.itemid == Some(id.0)) {
                    Some(w) => {
                        user_ok[*i] = false;
                        report.failed(
                            "users",
                            &recs[*i].key,
                            format!("suspend (id {id}): {} {}", w.warningcode, w.message),
                        );
                    }
                    None => {
                        suspended_now[*i] = true;
                        report.counts("users").removed += 1;
                    }
                }
            }
        }
    }

    // A leaver keeps, or loses, what the bridge gave (SYNC_LEAVER_MEMBERSHIPS); nobody else's
    // cohorts or roles are touched either way.
    let mut group_ids = ids.clone();
    for (i, r) in recs.iter_mut().enumerate() {
        if !leaving[i] {
            continue;
        }
        match s.leavers.memberships {
            LeaverMemberships::Keep => group_ids[i] = None,
            LeaverMemberships::Remove => {
                r.cohorts.clear();
                r.roles.clear();
            }
        }
    }
    // ---- cohorts (class values on the person)
    let mut cohort_sets: Vec<Option<BTreeSet<String>>> = vec![None; recs.len()];
    if opts.cohorts && matches!(s.cohorts.kind, CohortSourceKind::Attribute(_)) {
        cohort_sets =
            apply_cohort_memberships(ctx, st, report, &recs, &rows, &group_ids, budget).await?;
    }
    // ---- role assignments
    let mut role_sets: Vec<Option<BTreeSet<String>>> = vec![None; recs.len()];
    if opts.roles && !s.role_rules.is_empty() {
        role_sets = apply_roles(ctx, st, report, &recs, &rows, &group_ids, budget).await?;
    }

    // ---- remember what was applied
    if !opts.simulate {
        let mut out = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            let Some(id) = ids[i] else { continue };
            let old = rows[i].clone().unwrap_or_default();
            let users_written = opts.users && user_ok[i] && !leaving[i];
            let row = MappingRow {
                key: r.key.clone(),
                moodle_id: Some(id.0),
                username: r.fields.username.clone(),
                fields: if users_written {
                    Some(r.fields.clone())
                } else {
                    old.fields.clone().filter(|_| user_ok[i] || leaving[i])
                },
                fingerprint: if users_written {
                    r.fingerprint()
                } else if user_ok[i] || leaving[i] {
                    old.fingerprint.clone()
                } else {
                    String::new()
                },
                cohorts: cohort_sets[i].clone().unwrap_or(old.cohorts.clone()),
                roles: role_sets[i].clone().unwrap_or(old.roles.clone()),
                suspended: suspended_now[i] || (old.suspended && !users_written),
            };
            if rows[i].as_ref() != Some(&row) {
                out.push(row);
            }
        }
        state::save_all(&ctx.store, &out).await?;
    }
    // ---- the retry set: entries marked by this batch wait, the others no longer do
    let marks = std::mem::take(&mut report.retry_marks);
    if !opts.simulate {
        let population = st.population.clone();
        let since = chrono::Utc::now().to_rfc3339();
        for k in &keys {
            let known = retry_set(ctx, st).await?.get(k).cloned();
            match (marks.get(k), known) {
                (Some((why, reason)), known) => {
                    let w = retry::Waiting {
                        key: k.clone(),
                        population: population.clone(),
                        why: why.clone(),
                        reason: reason.clone(),
                        since: known.map(|w| w.since).unwrap_or_else(|| since.clone()),
                    };
                    if retry_set(ctx, st).await?.get(k) != Some(&w) {
                        retry::save(&ctx.store, &w).await?;
                        retry_set(ctx, st).await?.insert(k.clone(), w);
                    }
                }
                (None, Some(_)) => {
                    retry::clear(&ctx.store, k).await?;
                    retry_set(ctx, st).await?.remove(k);
                }
                (None, None) => {}
            }
        }
    }
    st.examined.extend(keys.iter().cloned());
    Ok(keys)
}

/// Two directory entries with one join key would both match (and take turns renaming) one
/// Moodle account: every claimant is reported and none is applied. A claimant already applied
/// earlier in this pass cannot be undone; it is named in the report.
fn drop_conflicts(
    st: &mut PassState,
    report: &mut RunReport,
    recs: Vec<PersonRecord>,
) -> Vec<PersonRecord> {
    let mut claims: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in recs.iter().filter(|r| !r.fields.idnumber.is_empty()) {
        claims
            .entry(r.fields.idnumber.clone())
            .or_default()
            .insert(r.key.clone());
    }
    let mut conflicted: HashMap<String, String> = HashMap::new();
    for (idn, keys) in claims {
        let mut all = keys.clone();
        let earlier = st
            .idnumbers
            .get(&idn)
            .filter(|k| !keys.contains(*k))
            .cloned();
        all.extend(earlier.clone());
        if all.len() < 2 {
            continue;
        }
        for k in &keys {
            let others: Vec<&str> = all.iter().filter(|o| *o != k).map(String::as_str).collect();
            conflicted.insert(
                k.clone(),
                format!(
                    "conflict: {} also claim(s) the Moodle account with idnumber {idn:?}: not applied",
                    others.join(", ")
                ),
            );
        }
        if let Some(e) = earlier {
            report.issue(
                "users",
                &e,
                "conflict",
                format!(
                    "idnumber {idn:?} is also claimed by {} (applied earlier in this run)",
                    keys.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    let mut kept = Vec::with_capacity(recs.len());
    for r in recs {
        match conflicted.remove(&r.key) {
            Some(why) => report.conflict("users", &r.key, why),
            None => {
                if !r.fields.idnumber.is_empty() {
                    st.idnumbers
                        .insert(r.fields.idnumber.clone(), r.key.clone());
                }
                kept.push(r);
            }
        }
    }
    kept
}

/// Which source key's mapping holds Moodle user `id` (read from the store once per pass, only
/// when an entry matched an account by idnumber alone).
async fn owner_of(
    ctx: &Ctx,
    st: &mut PassState,
    id: MoodleUserId,
) -> Result<Option<String>, StoreError> {
    if st.owners.is_none() {
        let rows = state::all(&ctx.store).await?;
        st.owners = Some(
            rows.into_iter()
                .filter_map(|r| r.moodle_id.map(|m| (m, r.key)))
                .collect(),
        );
    }
    Ok(st.owners.as_ref().and_then(|o| o.get(&id.0).cloned()))
}

/// Drop a person's mapping row (it pointed at an account the bridge must not manage).
pub(crate) async fn forget(store: &SharedStore, key: &str) -> Result<(), StoreError> {
    match store
        .delete(tables::MAPPINGS, state::USER_PK, &key_escape(key), None)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A person whose planned deletion date has come: suspend the account the bridge manages (once),
/// never create one.
fn leaver_plan(
    report: &mut RunReport,
    r: &PersonRecord,
    row: Option<&MappingRow>,
    opts: &SyncOptions,
) -> UserPlan {
    let date = r.leaves_on.map(|d| d.format("%d/%m/%Y").to_string());
    match row.and_then(|row| row.moodle_id.map(|id| (row.suspended, MoodleUserId(id)))) {
        Some((false, id)) if opts.users => UserPlan::Suspend(id),
        Some((_, id)) => {
            report.trace(|| format!("users {}: left on {date:?}, already suspended", r.key));
            UserPlan::Unchanged(id)
        }
        None => {
            report.skipped(
                "users",
                &r.key,
                format!(
                    "planned deletion date {} has passed: no account created",
                    date.unwrap_or_default()
                ),
            );
            UserPlan::Skip
        }
    }
}

fn diff_plan(r: &PersonRecord, mu: &MoodleUser, opts: &SyncOptions) -> UserPlan {
    if !opts.users {
        return UserPlan::Unchanged(mu.id);
    }
    UserPlan::Update(mu.id, r.fields.diff(mu))
}

/// `core_user_get_users_by_field` in chunks that fit the form budget.
async fn lookup(
    client: &MoodleClient,
    field: UserField,
    values: &[String],
    budget: usize,
) -> Result<Vec<MoodleUser>, MoodleError> {
    let mut out = Vec::new();
    for chunk in values.chunks(budget.saturating_sub(1).max(1)) {
        out.extend(users::get_by_field(client, field, chunk).await?);
    }
    Ok(out)
}

async fn cohort_index<'a>(
    ctx: &Ctx,
    st: &'a mut PassState,
) -> Result<&'a mut HashMap<String, MoodleCohortId>, MoodleError> {
    if st.cohort_index.is_none() {
        let all = cohorts::get_all(&ctx.moodle).await?;
        st.cohort_index = Some(
            all.into_iter()
                .filter(|c| !c.idnumber.is_empty())
                .map(|c| (c.idnumber, c.id))
                .collect(),
        );
    }
    Ok(st.cohort_index.as_mut().expect("just set"))
}

/// Find (or create) the Moodle cohorts for `wanted`; returns key → id, and reports skips.
/// With the cohort lock (default) only cohorts whose idnumber carries the bridge's prefix are
/// used; without it, an existing cohort whose idnumber is the bare key is adopted.
pub(crate) async fn ensure_cohorts(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
    wanted: &BTreeMap<String, CohortRef>,
) -> Result<HashMap<String, MoodleCohortId>, PassError> {
    let prefix = ctx.settings.cohorts.prefix.clone();
    let mut found = HashMap::new();
    let mut to_create = Vec::new();
    {
        let index = cohort_index(ctx, st).await?;
        for (key, c) in wanted {
            let ours = format!("{prefix}{key}");
            // Without the lock, a cohort someone else made for the same key takes precedence.
            if let Some(id) = index.get(key).filter(|_| ctx.opts.no_cohort_lock) {
                report.trace(|| format!("cohorts {key}: adopting the existing cohort {key:?} (cohort lock disabled)"));
                found.insert(key.clone(), *id);
            } else if let Some(id) = index.get(&ours) {
                found.insert(key.clone(), *id);
            } else {
                if index.contains_key(key) {
                    report.trace(|| format!("cohorts {key}: a cohort with idnumber {key:?} exists but was not created by the bridge (locked); using {ours:?}"));
                }
                to_create.push((
                    key.clone(),
                    cohorts::NewCohort {
                        name: c.name.clone(),
                        idnumber: ours,
                        description: "Synchronised from the ENT directory".into(),
                    },
                ));
            }
        }
    }
    if to_create.is_empty() {
        return Ok(found);
    }
    if matches!(ctx.settings.cohorts.kind, CohortSourceKind::Attribute(_)) {
        if st.school_names.is_none() {
            let names = match super::schools::load(&ctx.settings).await {
                Ok(n) => n,
                Err(e) => {
                    report.warnings.push(format!(
                        "school names not read ({e}): new cohorts carry the structure id"
                    ));
                    HashMap::new()
                }
            };
            st.school_names = Some(names);
        }
        let names = st.school_names.as_ref().expect("just set");
        for (key, c) in &mut to_create {
            c.name = super::schools::cohort_name(key, &c.name, names);
        }
    }
    if ctx.opts.update_only {
        for (key, _) in &to_create {
            report.skipped(
                "cohorts",
                key,
                "update only: cohort does not exist in Moodle",
            );
        }
        return Ok(found);
    }
    if ctx.opts.simulate {
        for (key, c) in to_create {
            report.counts("cohorts").created += 1;
            report.trace(|| format!("cohorts {key}: create {:?}", c.idnumber));
            let id = MoodleCohortId(st.fake_id());
            found.insert(key.clone(), id);
            cohort_index(ctx, st).await?.insert(c.idnumber, id);
        }
        return Ok(found);
    }
    let sizes = vec![cohorts::CREATE_FIELDS; to_create.len()];
    for range in chunks(&sizes, ctx.moodle.field_budget(), ctx.settings.batch_size) {
        let part: Vec<(usize, cohorts::NewCohort)> =
            range.clone().map(|i| (i, to_create[i].1.clone())).collect();
        let client = &ctx.moodle;
        let out = bisect(part, |items| async move {
            cohorts::create(client, &items).await
        })
        .await?;
        for (i, c) in out.ok {
            report.counts("cohorts").created += 1;
            report.trace(|| {
                format!(
                    "cohorts {}: created {:?} (id {})",
                    to_create[i].0, c.idnumber, c.id
                )
            });
            found.insert(to_create[i].0.clone(), c.id);
            cohort_index(ctx, st)
                .await?
                .insert(c.idnumber.clone(), c.id);
        }
        for (i, why) in out.failed {
            report.failed(
                "cohorts",
                &to_create[i].0,
                format!("create {:?}: {why}", to_create[i].1.idnumber),
            );
        }
    }
    Ok(found)
}

/// (desired, to add, to remove) cohort keys of one person.
type MembershipPlan = (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>);

/// Membership from the person's class values, differential against what the bridge gave before.
pub(crate) async fn apply_cohort_memberships(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
    recs: &[PersonRecord],
    rows: &[Option<MappingRow>],
    ids: &[Option<MoodleUserId>],
    budget: usize,
) -> Result<Vec<Option<BTreeSet<String>>>, PassError> {
    let force = ctx.opts.force;
    let mut wanted: BTreeMap<String, CohortRef> = BTreeMap::new();
    let mut plans: Vec<Option<MembershipPlan>> = Vec::with_capacity(recs.len());
    for (i, r) in recs.iter().enumerate() {
        if ids[i].is_none() {
            plans.push(None);
            continue;
        }
        let desired: BTreeSet<String> = r.cohorts.iter().map(|c| c.key.clone()).collect();
        let prev = rows[i]
            .as_ref()
            .map(|row| row.cohorts.clone())
            .unwrap_or_default();
        let add: BTreeSet<String> = if force || rows[i].is_none() {
            desired.clone()
        } else {
            desired.difference(&prev).cloned().collect()
        };
        let remove: BTreeSet<String> = prev.difference(&desired).cloned().collect();
        for c in &r.cohorts {
            if add.contains(&c.key) || remove.contains(&c.key) {
                wanted.insert(c.key.clone(), c.clone());
            }
        }
        for k in &remove {
            wanted.entry(k.clone()).or_insert_with(|| CohortRef {
                key: k.clone(),
                name: k.clone(),
            });
        }
        plans.push(Some((desired, add, remove)));
    }
    let cohort_ids = if wanted.is_empty() {
        HashMap::new()
    } else {
        ensure_cohorts(ctx, st, report, &wanted).await?
    };
    // A forced pass re-examines memberships against what Moodle holds, so only the missing
    // ones are written (and counted).
    let current: HashSet<(MoodleCohortId, MoodleUserId)> = if force {
        let existing: Vec<MoodleCohortId> = cohort_ids
            .values()
            .filter(|c| c.0 > 0)
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut set = HashSet::new();
        for part in existing.chunks(budget.saturating_sub(1).max(1)) {
            for m in cohorts::get_members(&ctx.moodle, part).await? {
                set.extend(m.userids.iter().map(|u| (m.cohortid, *u)));
            }
        }
        set
    } else {
        HashSet::new()
    };
    let mut adds: Vec<(usize, String, (MoodleCohortId, MoodleUserId))> = Vec::new();
    let mut removes: Vec<(usize, String, (MoodleCohortId, MoodleUserId))> = Vec::new();
    let mut result: Vec<Option<BTreeSet<String>>> = vec![None; recs.len()];
    for (i, plan) in plans.iter().enumerate() {
        let (Some((desired, add, remove)), Some(uid)) = (plan, ids[i]) else {
            continue;
        };
        let mut applied = desired.clone();
        let mut planned = false;
        for k in add {
            match cohort_ids.get(k) {
                Some(cid) if current.contains(&(*cid, uid)) => {}
                Some(cid) => {
                    report.trace(|| format!("memberships {}: add to {k}", recs[i].key));
                    adds.push((i, k.clone(), (*cid, uid)));
                    planned = true;
                }
                None => {
                    planned = true;
                    applied.remove(k);
                    report.waiting(
                        "memberships",
                        &recs[i].key,
                        "cohort missing",
                        format!("cohort {k} is not available"),
                    );
                }
            }
        }
        for k in remove {
            if let Some(cid) = cohort_ids.get(k) {
                report.trace(|| format!("memberships {}: remove from {k}", recs[i].key));
                removes.push((i, k.clone(), (*cid, uid)));
                planned = true;
            }
        }
        if !planned && remove.is_empty() {
            report.counts("memberships").unchanged += 1;
        }
        result[i] = Some(applied);
    }
    if ctx.opts.simulate {
        report.counts("memberships").created += adds.len() as u64;
        report.counts("memberships").removed += removes.len() as u64;
        return Ok(result);
    }
    let per_call = (budget / cohorts::MEMBER_FIELDS).clamp(1, 1000);
    for part in adds.chunks(per_call) {
        let pairs: Vec<(MoodleCohortId, MoodleUserId)> = part.iter().map(|(_, _, p)| *p).collect();
        let warnings = cohorts::add_members(&ctx.moodle, &pairs).await?;
        let mut failed_users: HashSet<String> = HashSet::new();
        let mut already = 0u64;
        for w in &warnings {
            if w.warningcode == "3" {
                already += 1;
                continue;
            }
            // Warnings carry no item index: "user id=N not exists" / "cohort … not exists".
            let culprit = part.iter().find(|(_, _, (c, u))| {
                w.message.contains(&format!("id={u} ")) || w.message.contains(&format!("id={c} "))
            });
            match culprit {
                Some((i, k, _)) => {
                    failed_users.insert(format!("{i}|{k}"));
                    report.failed(
                        "memberships",
                        &recs[*i].key,
                        format!("add to {k}: {} {}", w.warningcode, w.message),
                    );
                    if let Some(set) = result[*i].as_mut() {
                        set.remove(k);
                    }
                }
                None => report.errors.push(format!(
                    "add_cohort_members warning {}: {}",
                    w.warningcode, w.message
                )),
            }
        }
        let ok = part.len() as u64 - failed_users.len() as u64;
        report.counts("memberships").created += ok.saturating_sub(already);
        report.counts("memberships").unchanged += already;
    }
    for part in removes.chunks(per_call) {
        let pairs: Vec<(MoodleCohortId, MoodleUserId)> = part.iter().map(|(_, _, p)| *p).collect();
        match cohorts::delete_members(&ctx.moodle, &pairs).await {
            Ok(()) => report.counts("memberships").removed += part.len() as u64,
            Err(e) if e.may_be_item_specific() => {
                for (i, k, _) in part {
                    report.failed(
                        "memberships",
                        &recs[*i].key,
                        format!("remove from {k}: {e}"),
                    );
                    if let Some(set) = result[*i].as_mut() {
                        set.insert(k.clone());
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(result)
}

/// Resolve a context idnumber to its Moodle instance id (course or category), cached per pass.
async fn resolve_context(
    ctx: &Ctx,
    st: &mut PassState,
    level: ContextLevel,
    idnumber: &str,
) -> Result<Result<i64, String>, MoodleError> {
    if let Some(r) = st.contexts.get(&(level, idnumber.to_string())) {
        return Ok(r.clone());
    }
    let r = match level {
        ContextLevel::Course => {
            match courses::by_field(&ctx.moodle, courses::CourseField::Idnumber, idnumber)
                .await?
                .as_slice()
            {
                [c] => Ok(c.id.0),
                [] => Err(format!("no course with idnumber {idnumber:?} in Moodle")),
                many => Err(format!(
                    "{} courses share idnumber {idnumber:?}",
                    many.len()
                )),
            }
        }
        ContextLevel::Coursecat => match categories::by_idnumber(&ctx.moodle, idnumber).await {
            Ok(list) => match list.as_slice() {
                [c] => Ok(c.id.0),
                [] => Err(format!("no category with idnumber {idnumber:?} in Moodle")),
                many => Err(format!(
                    "{} categories share idnumber {idnumber:?}",
                    many.len()
                )),
            },
            Err(MoodleError::MissingCapability(m)) => Err(m),
            Err(e) => return Err(e),
        },
    };
    st.contexts.insert((level, idnumber.to_string()), r.clone());
    Ok(r)
}

pub(crate) async fn apply_roles(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
    recs: &[PersonRecord],
    rows: &[Option<MappingRow>],
    ids: &[Option<MoodleUserId>],
    budget: usize,
) -> Result<Vec<Option<BTreeSet<String>>>, PassError> {
    let s = &ctx.settings;
    let mut result: Vec<Option<BTreeSet<String>>> = vec![None; recs.len()];
    let mut assigns: Vec<(usize, String, Assignment)> = Vec::new();
    let mut unassigns: Vec<(usize, String, Assignment)> = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        let Some(uid) = ids[i] else { continue };
        let prev = rows[i]
            .as_ref()
            .map(|row| row.roles.clone())
            .unwrap_or_default();
        let desired: BTreeMap<String, &RoleRef> =
            r.roles.iter().map(|rr| (rr.label(), rr)).collect();
        let mut applied: BTreeSet<String> = BTreeSet::new();
        let mut changed = false;
        for (label, rr) in &desired {
            // Moodle has no web service listing role assignments of users who are not
            // enrolled, so even a forced pass trusts what the bridge assigned before: the
            // assignment is idempotent, re-sending it would only count a change that is not one.
            if prev.contains(label) {
                applied.insert(label.clone());
                continue;
            }
            let Some(roleid) = s.role_id(&rr.role) else {
                report.skipped(
                    "roles",
                    &r.key,
                    format!("{label}: role {:?} has no id in SYNC_ROLE_IDS", rr.role),
                );
                continue;
            };
            match resolve_context(ctx, st, rr.level, &rr.context).await? {
                Ok(instance) => {
                    changed = true;
                    report.trace(|| format!("roles {}: assign {label}", r.key));
                    assigns.push((
                        i,
                        label.clone(),
                        Assignment {
                            roleid: MoodleRoleId(roleid),
                            userid: uid,
                            level: rr.level,
                            instanceid: instance,
                        },
                    ));
                    applied.insert(label.clone());
                }
                Err(why) => report.waiting(
                    "roles",
                    &r.key,
                    "role context missing",
                    format!("{label}: {why}"),
                ),
            }
        }
        for label in prev.iter().filter(|l| !desired.contains_key(*l)) {
            let mut parts = label.splitn(2, '@');
            let (Some(role), Some(rest)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Some((level, context)) = rest.split_once(':') else {
                continue;
            };
            let level = if level == "coursecat" {
                ContextLevel::Coursecat
            } else {
                ContextLevel::Course
            };
            let (Some(roleid), Ok(instance)) = (
                s.role_id(role),
                resolve_context(ctx, st, level, context).await?,
            ) else {
                report
                    .trace(|| format!("roles {}: {label} no longer resolvable, forgotten", r.key));
                continue;
            };
            changed = true;
            report.trace(|| format!("roles {}: unassign {label}", r.key));
            unassigns.push((
                i,
                label.clone(),
                Assignment {
                    roleid: MoodleRoleId(roleid),
                    userid: uid,
                    level,
                    instanceid: instance,
                },
            ));
        }
        if !changed && !desired.is_empty() {
            report.counts("roles").unchanged += 1;
        }
        result[i] = Some(applied);
    }
    if ctx.opts.simulate {
        report.counts("roles").created += assigns.len() as u64;
        report.counts("roles").removed += unassigns.len() as u64;
        return Ok(result);
    }
    write_roles(
        ctx,
        report,
        recs,
        &mut result,
        &assigns,
        budget,
        RoleWrite::Assign,
    )
    .await?;
    write_roles(
        ctx,
        report,
        recs,
        &mut result,
        &unassigns,
        budget,
        RoleWrite::Unassign,
    )
    .await?;
    Ok(result)
}

#[derive(Clone, Copy, PartialEq)]
enum RoleWrite {
    Assign,
    Unassign,
}

/// Assign or unassign in batches sized by form fields; a batch Moodle rejects is bisected so the
/// bad items are reported and the rest land. `result` keeps each person's applied role set true
/// to what Moodle now holds.
async fn write_roles(
    ctx: &Ctx,
    report: &mut RunReport,
    recs: &[PersonRecord],
    result: &mut [Option<BTreeSet<String>>],
    items: &[(usize, String, Assignment)],
    budget: usize,
    op: RoleWrite,
) -> Result<(), PassError> {
    let sizes = vec![roles::ASSIGN_FIELDS; items.len()];
    for range in chunks(&sizes, budget, ctx.settings.batch_size * 4) {
        let part: Vec<(usize, Assignment)> =
            range.clone().map(|j| (j, items[j].2.clone())).collect();
        let client = &ctx.moodle;
        let out = bisect(part, |batch| async move {
            match op {
                RoleWrite::Assign => roles::assign(client, &batch).await,
                RoleWrite::Unassign => roles::unassign(client, &batch).await,
            }
            .map(|()| vec![(); batch.len()])
        })
        .await?;
        let counts = report.counts("roles");
        match op {
            RoleWrite::Assign => counts.created += out.ok.len() as u64,
            RoleWrite::Unassign => counts.removed += out.ok.len() as u64,
        }
        for (j, why) in out.failed {
            let (i, label, _) = &items[j];
            let verb = if op == RoleWrite::Assign {
                "assign"
            } else {
                "unassign"
            };
            report.failed("roles", &recs[*i].key, format!("{verb} {label}: {why}"));
            if let Some(set) = result[*i].as_mut() {
                // The write failed, so Moodle still holds the previous state for this role.
                if op == RoleWrite::Assign {
                    set.remove(label);
                } else {
                    set.insert(label.clone());
                }
            }
        }
    }
    Ok(())
}
