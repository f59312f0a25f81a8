//! The pass over one population: the source's person records → what the bridge and Moodle
//! hold for them (reads) → plan (`plan`: create / update / unchanged / skip, with a reason;
//! pure) → batched writes (`apply`) → mapping rows, retry set and checkpoint. A simulation
//! tallies the plan instead of applying it, and remembers nothing.

use super::apply::{self, MemberWrite, RoleWrite};
use super::checkpoint::{self, Checkpoint};
use super::entity::EntityKind;
use super::plan::{self, Account, Cohort, UserOp};
use super::protect::{self, Protected};
use super::record::{CohortRef, PersonRecord, StoredRole};
use super::report::{RunReport, SyncOptions};
use super::retry;
use super::settings::{CohortSourceKind, LeaverMemberships, Population, SyncSettings};
use super::source::{self, Item, Only, PersonSource, Selection};
use super::state::{self, MappingRow};
use crate::ids::{MoodleCohortId, MoodleUserId};
use crate::moodle::roles::{Assignment, ContextLevel};
use crate::moodle::users::{MoodleUser, UserField};
use crate::moodle::{categories, cohorts, courses, users, MoodleClient, MoodleError};
use crate::store::{key_escape, tables, SharedStore, StoreError};
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
    /// Where the people come from (`source::for_settings`).
    pub source: Arc<dyn PersonSource>,
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
    owners: Option<HashMap<MoodleUserId, String>>,
    /// The retry set, loaded on first need and kept in step with the store.
    retry: Option<HashMap<String, retry::Waiting>>,
    /// Population being read, and the keys its batches processed (the retry pass skips them).
    population: String,
    examined: HashSet<String>,
    /// Cohort idnumber → cohort: what Moodle holds, plus what a simulated pass would create.
    cohort_index: Option<HashMap<String, Cohort>>,
    contexts: HashMap<(ContextLevel, String), Result<i64, String>>,
    /// Moodle's own accounts (read once per pass, on first need).
    pub(crate) protected: Option<Protected>,
    create_rate: super::create_rate::CreateRate,
    school_names: Option<HashMap<String, String>>,
}

impl PassState {
    /// A child looked up and not found may be created later in this pass: only the children
    /// found stay in the context cache.
    fn forget_missing_children(&mut self) {
        self.contexts
            .retain(|(level, _), r| *level != ContextLevel::User || r.is_ok());
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

fn selected(opts: &SyncOptions) -> Vec<EntityKind> {
    EntityKind::ENT
        .into_iter()
        .filter(|e| opts.selects(*e))
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
    let examined = std::mem::take(&mut st.examined);
    let waiting: Vec<retry::Waiting> = retry_set(ctx, st)
        .await?
        .values()
        .filter(|w| w.population == pop.name && !examined.contains(&w.key))
        .cloned()
        .collect();
    st.examined = examined;
    let mut keys = Vec::new();
    let mut still = 0u64;
    for w in waiting {
        if ctx.opts.force || !still_waiting(ctx, st, &w).await? {
            keys.push(w.key);
        } else {
            still += 1;
        }
    }
    st.forget_missing_children();
    if still > 0 {
        report.trace(|| {
            format!(
                "{}: {still} waiting entries left unread: the Moodle contexts they wait for still do not exist",
                pop.name
            )
        });
    }
    keys.sort();
    for chunk in keys.chunks(ctx.source.keys_per_read(keys.len())) {
        report.trace(|| format!("{}: re-examining {} waiting entries", pop.name, chunk.len()));
        let sel = Selection {
            population: pop.clone(),
            since: None,
            only: Only::Keys(chunk.to_vec()),
        };
        let (mut rx, handle) = ctx.source.read(&sel);
        let mut batch = Vec::new();
        while let Some(item) = rx.recv().await {
            batch.push(item);
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
        let found: HashSet<&str> = batch.iter().map(Item::key).collect();
        if !ctx.opts.simulate {
            let gone: Vec<String> = chunk
                .iter()
                .filter(|k| !found.contains(k.as_str()))
                .cloned()
                .collect();
            retry::forget(&ctx.store, retry_set(ctx, st).await?, &gone).await?;
        }
        report.retry_examined += batch.len() as u64;
        if !batch.is_empty() {
            process_batch(ctx, st, report, batch).await?;
        }
    }
    Ok(())
}

/// An entry that waits only for Moodle contexts, none of which exists yet, would come out of a
/// re-read exactly as it went in (its source entry did not change, or the incremental read would
/// have brought it): leave it unread. The lookups are the ones its plan would make, cached for
/// the pass, so a run with 4,900 teachers waiting for a dozen courses makes a dozen calls.
async fn still_waiting(
    ctx: &Ctx,
    st: &mut PassState,
    w: &retry::Waiting,
) -> Result<bool, PassError> {
    if w.needs.is_empty() {
        return Ok(false);
    }
    for need in &w.needs {
        let Some((level, idnumber)) = retry::parse_need(need) else {
            return Ok(false);
        };
        if resolve_context(ctx, st, level, idnumber).await?.is_ok() {
            return Ok(false);
        }
    }
    Ok(true)
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
    let partition = ctx.source.checkpoint_partition();
    let mut cps = Vec::new();
    for e in &entities {
        cps.push(checkpoint::load(&ctx.store, partition, *e, &pop.name).await?);
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
    let file_hash = ctx.source.content_hash()?;
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
    let sel = Selection {
        population: pop.clone(),
        only: match &ctx.opts.user {
            Some(u) => Only::Person(u.clone()),
            None => Only::All,
        },
        since,
    };
    report.trace(|| {
        format!(
            "{}: {} since {}",
            pop.name,
            ctx.source.describe(&sel),
            sel.since.as_deref().unwrap_or("the beginning")
        )
    });
    let (mut rx, handle) = ctx.source.read(&sel);
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
                    report.source_requests += ctx.source.requests_for(applied as u64 + n);
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
                    checkpoint::save(&ctx.store, partition, *e, &pop.name, &cp).await?;
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
            report.source_requests += ctx.source.requests_for(applied as u64);
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
            checkpoint::save(&ctx.store, partition, *e, &pop.name, &cp).await?;
        }
    }
    Ok(())
}

/// Apply one batch; returns the keys it saw (for removals).
async fn process_batch(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
    items: Vec<Item>,
) -> Result<Vec<String>, PassError> {
    let s = &ctx.settings;
    let opts = &ctx.opts;
    let batch_len = items.len() as u64;
    let (recs, keys) = admit(st, report, items);
    let recs = drop_conflicts(st, report, recs);
    let mut rows: Vec<Option<MappingRow>> = Vec::with_capacity(recs.len());
    for r in &recs {
        rows.push(state::load(&ctx.store, &r.key).await?);
    }
    // Moodle's own accounts (guest, admin, the service account) are never managed.
    let protected = if recs.is_empty() {
        Protected::default()
    } else {
        protect::load(ctx, st).await?.clone()
    };
    let (mut recs, rows, stale) = drop_protected(&protected, report, recs, rows);
    let budget = ctx.moodle.field_budget();
    let today = chrono::Utc::now().date_naive();
    let leaving: Vec<bool> = recs
        .iter()
        .map(|r| s.leavers.suspend_on_date && r.has_left(today))
        .collect();

    // ---- users: what Moodle holds for those the rows do not answer for, then the plan
    let view = moodle_view(ctx, st, &recs, &rows, &leaving, budget).await?;
    let mut accounts: Vec<Option<Account>> = vec![None; recs.len()];
    let mut user_ok: Vec<bool> = vec![true; recs.len()];
    let mut suspended_now: Vec<bool> = vec![false; recs.len()];
    let mut writes = UserWrites::default();
    for (i, (r, row)) in recs.iter().zip(&rows).enumerate() {
        let d = plan::user(r, row.as_ref(), leaving[i], &view, &protected, opts);
        for note in d.notes {
            note.record(report, EntityKind::Users, &r.key);
        }
        match d.op {
            UserOp::Keep(id) => {
                accounts[i] = Some(Account::Id(id));
                if opts.users {
                    report.counts(EntityKind::Users).unchanged += 1;
                }
            }
            UserOp::Update(id, diff) => {
                accounts[i] = Some(Account::Id(id));
                writes
                    .updates
                    .push((i, id, r.fields.update_item(id, &diff)));
            }
            UserOp::Suspend(id) => {
                accounts[i] = Some(Account::Id(id));
                writes.suspends.push((i, id));
            }
            UserOp::Create => writes
                .creates
                .push((i, r.fields.create_item(s.password_mail))),
            UserOp::Skip => user_ok[i] = false,
        }
    }
    if let Some(p) = &ctx.progress {
        p(Step::Planned(batch_len));
    }
    if opts.simulate {
        let counts = report.counts(EntityKind::Users);
        counts.created += writes.creates.len() as u64;
        counts.updated += writes.updates.len() as u64;
        counts.removed += writes.suspends.len() as u64;
        for (i, _) in &writes.creates {
            accounts[*i] = Some(Account::Planned);
        }
    } else {
        let outcome = write_users(ctx, st, report, &recs, writes, budget).await?;
        for (i, id) in outcome.created {
            accounts[i] = Some(Account::Id(id));
        }
        for i in outcome.failed {
            user_ok[i] = false;
        }
        for i in outcome.suspended {
            suspended_now[i] = true;
        }
    }

    // A leaver keeps, or loses, what the bridge gave (SYNC_LEAVER_MEMBERSHIPS); nobody else's
    // cohorts or roles are touched either way.
    let mut group_accounts = accounts.clone();
    for (i, r) in recs.iter_mut().enumerate() {
        if !leaving[i] {
            continue;
        }
        match s.leavers.memberships {
            LeaverMemberships::Keep => group_accounts[i] = None,
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
            apply_cohort_memberships(ctx, st, report, &recs, &rows, &group_accounts, budget)
                .await?;
    }
    // ---- role assignments
    let mut role_sets: Vec<Option<BTreeSet<StoredRole>>> = vec![None; recs.len()];
    if opts.roles && s.writes_roles() {
        role_sets = apply_roles(ctx, st, report, &recs, &rows, &group_accounts, budget).await?;
    }

    // ---- remember what was applied, and what waits for a retry
    let marks = std::mem::take(&mut report.retry_marks);
    if !opts.simulate {
        for key in &stale {
            // A stale row (older version, hand edit) must not keep pointing at the account.
            report.trace(|| format!("users {key}: stale mapping to a protected account forgotten"));
            forget(&ctx.store, key).await?;
        }
        let mut out = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            let Some(Account::Id(id)) = accounts[i] else {
                continue;
            };
            let old = rows[i].clone().unwrap_or_default();
            let users_written = opts.users && user_ok[i] && !leaving[i];
            let row = MappingRow {
                key: r.key.clone(),
                moodle_id: Some(id),
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
        remember_waiting(ctx, st, &keys, &marks).await?;
    }
    st.examined.extend(keys.iter().cloned());
    Ok(keys)
}

/// The retry set: entries marked by this batch wait, the others no longer do.
async fn remember_waiting(
    ctx: &Ctx,
    st: &mut PassState,
    keys: &[String],
    marks: &BTreeMap<String, retry::Mark>,
) -> Result<(), StoreError> {
    let population = st.population.clone();
    let set = retry_set(ctx, st).await?;
    retry::remember(&ctx.store, set, &population, keys, marks).await
}

/// The source's items → the records to plan (and every key seen, for removals): unmapped
/// entries and a second entry with a login already used in this pass are skipped.
fn admit(
    st: &mut PassState,
    report: &mut RunReport,
    items: Vec<Item>,
) -> (Vec<PersonRecord>, Vec<String>) {
    let mut recs = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for item in items {
        let r = match item {
            Item::Person(r) => *r,
            Item::Unmapped { key, reason } => {
                report.skipped(EntityKind::Users, &key, reason);
                keys.push(key);
                continue;
            }
        };
        keys.push(r.key.clone());
        match st.usernames.get(&r.fields.username) {
            Some(other) if other != &r.key => {
                let reason = format!(
                    "duplicate login {:?}: already used by {other} in this directory",
                    r.fields.username
                );
                report.skipped(EntityKind::Users, &r.key, reason);
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
            report.issue(EntityKind::Users, &r.key, "shortened", n.clone());
        }
        for c in &r.conflicts {
            report.issue(EntityKind::Roles, &r.key, "inconsistent", c.clone());
        }
        recs.push(r);
    }
    (recs, keys)
}

/// Records landing on a protected account are skipped; returns the others with their rows,
/// and the keys whose row points at a protected account (to forget).
fn drop_protected(
    protected: &Protected,
    report: &mut RunReport,
    recs: Vec<PersonRecord>,
    rows: Vec<Option<MappingRow>>,
) -> (Vec<PersonRecord>, Vec<Option<MappingRow>>, Vec<String>) {
    let mut kept_recs = Vec::with_capacity(recs.len());
    let mut kept_rows = Vec::with_capacity(rows.len());
    let mut stale = Vec::new();
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
        report.skipped(EntityKind::Users, &r.key, protect::reason(&label));
        if row.is_some() {
            stale.push(r.key);
        }
    }
    (kept_recs, kept_rows, stale)
}

/// What Moodle holds for the records the mapping rows do not answer for: accounts by username,
/// then by idnumber for those not found, and who owns an account found by idnumber alone.
async fn moodle_view(
    ctx: &Ctx,
    st: &mut PassState,
    recs: &[PersonRecord],
    rows: &[Option<MappingRow>],
    leaving: &[bool],
    budget: usize,
) -> Result<plan::MoodleView, PassError> {
    let mut view = plan::MoodleView::default();
    let unknown: Vec<&PersonRecord> = recs
        .iter()
        .zip(rows)
        .zip(leaving)
        .filter(|((_, row), leaving)| plan::needs_lookup(row.as_ref(), **leaving, &ctx.opts))
        .map(|((r, _), _)| r)
        .collect();
    if unknown.is_empty() {
        return Ok(view);
    }
    let names: Vec<String> = unknown.iter().map(|r| r.fields.username.clone()).collect();
    view.by_username = lookup(&ctx.moodle, UserField::Username, &names, budget)
        .await?
        .into_iter()
        .map(|u| (u.username.clone(), u))
        .collect();
    let missing: Vec<String> = unknown
        .iter()
        .filter(|r| {
            !view.by_username.contains_key(&r.fields.username) && !r.fields.idnumber.is_empty()
        })
        .map(|r| r.fields.idnumber.clone())
        .collect();
    for u in lookup(&ctx.moodle, UserField::Idnumber, &missing, budget).await? {
        view.by_idnumber
            .entry(u.idnumber.clone())
            .or_default()
            .push(u);
    }
    for r in unknown {
        if let Some(id) = plan::owner_needed(r, &view) {
            if let Some(owner) = owner_of(ctx, st, id).await? {
                view.owners.insert(id, owner);
            }
        }
    }
    Ok(view)
}

/// The user writes of one batch: (index in the batch, …).
#[derive(Default)]
struct UserWrites {
    creates: Vec<(usize, apply::UserForm)>,
    updates: Vec<(usize, MoodleUserId, apply::UserForm)>,
    suspends: Vec<(usize, MoodleUserId)>,
}

/// What the user writes did, by index in the batch.
struct UsersWritten {
    created: Vec<(usize, MoodleUserId)>,
    failed: Vec<usize>,
    suspended: Vec<usize>,
}

async fn write_users(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
    recs: &[PersonRecord],
    writes: UserWrites,
    budget: usize,
) -> Result<UsersWritten, PassError> {
    let s = &ctx.settings;
    let mut done = UsersWritten {
        created: Vec::new(),
        failed: Vec::new(),
        suspended: Vec::new(),
    };
    // Calls of one batch are independent (different people): up to SYNC_WRITE_CONCURRENCY
    // run at once, so Moodle's PHP workers and database share the load.
    let started = std::time::Instant::now();
    let forms: Vec<apply::UserForm> = writes.creates.iter().map(|(_, f)| f.clone()).collect();
    let out = apply::create_users(
        &ctx.moodle,
        &forms,
        budget,
        s.batch_size,
        s.write_concurrency,
    )
    .await?;
    for (j, id) in &out.ok {
        done.created.push((writes.creates[*j].0, *id));
    }
    report.counts(EntityKind::Users).created += out.ok.len() as u64;
    for (j, why) in out.failed {
        let i = writes.creates[j].0;
        done.failed.push(i);
        report.failed(
            EntityKind::Users,
            &recs[i].key,
            format!("create {:?}: {why}", recs[i].fields.username),
        );
    }
    if let Some(w) = st
        .create_rate
        .observe(out.ok.len() as u64, started.elapsed())
    {
        tracing::warn!(run = %ctx.run_id, "{w}");
        report.warnings.push(w);
    }
    let items: Vec<(MoodleUserId, apply::UserForm)> = writes
        .updates
        .iter()
        .map(|(_, id, f)| (*id, f.clone()))
        .collect();
    let results = apply::update_users(
        &ctx.moodle,
        &items,
        budget,
        s.batch_size,
        s.write_concurrency,
    )
    .await?;
    for ((i, id, _), result) in writes.updates.iter().zip(results) {
        match result {
            Some(why) => {
                done.failed.push(*i);
                report.failed(
                    EntityKind::Users,
                    &recs[*i].key,
                    format!("update (id {id}): {why}"),
                );
            }
            None => report.counts(EntityKind::Users).updated += 1,
        }
    }
    let ids: Vec<MoodleUserId> = writes.suspends.iter().map(|(_, id)| *id).collect();
    let results = apply::suspend_users(&ctx.moodle, &ids, budget, s.batch_size).await?;
    for ((i, id), result) in writes.suspends.iter().zip(results) {
        match result {
            Some(why) => {
                done.failed.push(*i);
                report.failed(
                    EntityKind::Users,
                    &recs[*i].key,
                    format!("suspend (id {id}): {why}"),
                );
            }
            None => {
                done.suspended.push(*i);
                report.counts(EntityKind::Users).removed += 1;
            }
        }
    }
    Ok(done)
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
                EntityKind::Users,
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
            Some(why) => report.conflict(EntityKind::Users, &r.key, why),
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
    Ok(st.owners.as_ref().and_then(|o| o.get(&id).cloned()))
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
) -> Result<&'a mut HashMap<String, Cohort>, MoodleError> {
    if st.cohort_index.is_none() {
        let all = cohorts::get_all(&ctx.moodle).await?;
        st.cohort_index = Some(
            all.into_iter()
                .filter(|c| !c.idnumber.is_empty())
                .map(|c| (c.idnumber, Cohort::Id(c.id)))
                .collect(),
        );
    }
    Ok(st.cohort_index.as_mut().expect("just set"))
}

/// Find (or create) the Moodle cohorts for `wanted`; returns key → cohort, and reports skips
/// (see `plan::cohorts` for which cohort is used). A simulation remembers the cohorts it would
/// create for the rest of the pass, so each is counted once.
pub(crate) async fn ensure_cohorts(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
    wanted: &BTreeMap<String, CohortRef>,
) -> Result<HashMap<String, Cohort>, PassError> {
    let index = cohort_index(ctx, st).await?;
    let plan = plan::cohorts(
        wanted,
        index,
        &ctx.settings.cohorts.prefix,
        ctx.opts.no_cohort_lock,
    );
    for (key, note) in plan.notes {
        note.record(report, EntityKind::Cohorts, &key);
    }
    let mut found = plan.found;
    let mut to_create = plan.create;
    if to_create.is_empty() {
        return Ok(found);
    }
    if ctx.opts.update_only {
        for (key, _) in &to_create {
            report.skipped(
                EntityKind::Cohorts,
                key,
                "update only: cohort does not exist in Moodle",
            );
        }
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
    if ctx.opts.simulate {
        for (key, c) in to_create {
            report.counts(EntityKind::Cohorts).created += 1;
            report.trace(|| format!("cohorts {key}: create {:?}", c.idnumber));
            found.insert(key, Cohort::Planned);
            cohort_index(ctx, st)
                .await?
                .insert(c.idnumber, Cohort::Planned);
        }
        return Ok(found);
    }
    let new: Vec<cohorts::NewCohort> = to_create.iter().map(|(_, c)| c.clone()).collect();
    let out = apply::create_cohorts(
        &ctx.moodle,
        &new,
        ctx.moodle.field_budget(),
        ctx.settings.batch_size,
    )
    .await?;
    let index = cohort_index(ctx, st).await?;
    for (i, c) in out.ok {
        report.counts(EntityKind::Cohorts).created += 1;
        report.trace(|| {
            format!(
                "cohorts {}: created {:?} (id {})",
                to_create[i].0, c.idnumber, c.id
            )
        });
        found.insert(to_create[i].0.clone(), Cohort::Id(c.id));
        index.insert(c.idnumber.clone(), Cohort::Id(c.id));
    }
    for (i, why) in out.failed {
        report.failed(
            EntityKind::Cohorts,
            &to_create[i].0,
            format!("create {:?}: {why}", to_create[i].1.idnumber),
        );
    }
    Ok(found)
}

/// A planned membership as a write: only between a cohort and an account that exist (always
/// so once the users and cohorts of a real run are written).
fn member_write(op: &plan::MemberOp) -> Option<MemberWrite> {
    match (op.cohort, op.user) {
        (Cohort::Id(cohort), Account::Id(user)) => Some(MemberWrite {
            key: op.key.clone(),
            cohort_key: op.cohort_key.clone(),
            cohort,
            user,
        }),
        _ => None,
    }
}

/// Membership from the person's class values, differential against what the bridge gave before.
pub(crate) async fn apply_cohort_memberships(
    ctx: &Ctx,
    st: &mut PassState,
    report: &mut RunReport,
    recs: &[PersonRecord],
    rows: &[Option<MappingRow>],
    accounts: &[Option<Account>],
    budget: usize,
) -> Result<Vec<Option<BTreeSet<String>>>, PassError> {
    let force = ctx.opts.force;
    let (changes, wanted) = plan::member_changes(recs, rows, accounts, force);
    let cohort_ids = if wanted.is_empty() {
        HashMap::new()
    } else {
        ensure_cohorts(ctx, st, report, &wanted).await?
    };
    // A forced pass re-examines memberships against what Moodle holds, so only the missing
    // ones are written (and counted).
    let mut current: HashSet<(MoodleCohortId, MoodleUserId)> = HashSet::new();
    if force {
        let existing: Vec<MoodleCohortId> = cohort_ids
            .values()
            .filter_map(|c| match c {
                Cohort::Id(id) => Some(*id),
                Cohort::Planned => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for part in existing.chunks(budget.saturating_sub(1).max(1)) {
            for m in cohorts::get_members(&ctx.moodle, part).await? {
                current.extend(m.userids.iter().map(|u| (m.cohortid, *u)));
            }
        }
    }
    let mut plan = plan::memberships(recs, &changes, accounts, &cohort_ids, &current);
    for (key, note) in std::mem::take(&mut plan.notes) {
        note.record(report, EntityKind::Memberships, &key);
    }
    report.counts(EntityKind::Memberships).unchanged += plan.unchanged;
    if ctx.opts.simulate {
        report.counts(EntityKind::Memberships).created += plan.adds.len() as u64;
        report.counts(EntityKind::Memberships).removed += plan.removes.len() as u64;
        return Ok(plan.applied);
    }
    let (adds, add_ops): (Vec<MemberWrite>, Vec<&plan::MemberOp>) = plan
        .adds
        .iter()
        .filter_map(|op| member_write(op).map(|w| (w, op)))
        .unzip();
    let (removes, remove_ops): (Vec<MemberWrite>, Vec<&plan::MemberOp>) = plan
        .removes
        .iter()
        .filter_map(|op| member_write(op).map(|w| (w, op)))
        .unzip();
    let failed = apply::cohort_members(&ctx.moodle, report, &adds, &removes, budget).await?;
    let mut applied = plan.applied.clone();
    // Moodle still holds the previous state for a write that failed.
    for j in failed.adds {
        let op = add_ops[j];
        if let Some(set) = applied[op.person].as_mut() {
            set.remove(&op.cohort_key);
        }
    }
    for j in failed.removes {
        let op = remove_ops[j];
        if let Some(set) = applied[op.person].as_mut() {
            set.insert(op.cohort_key.clone());
        }
    }
    Ok(applied)
}

/// Resolve a context idnumber to its Moodle instance id (course or category), cached per pass.
/// A user context is named by the child's source key and resolved through the child's mapping
/// row: only an account the bridge created or adopted is one of its children (a miss is dropped
/// from the cache once planned, since the child may be created later in the pass).
async fn resolve_context(
    ctx: &Ctx,
    st: &mut PassState,
    level: ContextLevel,
    idnumber: &str,
) -> Result<Result<i64, String>, PassError> {
    if let Some(r) = st.contexts.get(&(level, idnumber.to_string())) {
        return Ok(r.clone());
    }
    let r = match level {
        ContextLevel::User => {
            let found = state::load(&ctx.store, idnumber)
                .await?
                .and_then(|row| row.moodle_id.map(MoodleUserId::get));
            found.ok_or_else(|| format!("child {idnumber} is not in Moodle yet"))
        }
        ContextLevel::Course => {
            match courses::by_field(&ctx.moodle, courses::CourseField::Idnumber, idnumber)
                .await?
                .as_slice()
            {
                [c] => Ok(c.id.get()),
                [] => Err(format!("no course with idnumber {idnumber:?} in Moodle")),
                many => Err(format!(
                    "{} courses share idnumber {idnumber:?}",
                    many.len()
                )),
            }
        }
        ContextLevel::Coursecat => match categories::by_idnumber(&ctx.moodle, idnumber).await {
            Ok(list) => match list.as_slice() {
                [c] => Ok(c.id.get()),
                [] => Err(format!("no category with idnumber {idnumber:?} in Moodle")),
                many => Err(format!(
                    "{} categories share idnumber {idnumber:?}",
                    many.len()
                )),
            },
            Err(MoodleError::MissingCapability(m)) => Err(m),
            Err(e) => return Err(e.into()),
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
    accounts: &[Option<Account>],
    budget: usize,
) -> Result<Vec<Option<BTreeSet<StoredRole>>>, PassError> {
    let s = &ctx.settings;
    let role_id = |shortname: &str| s.role_id(shortname);
    for (level, idnumber) in plan::role_contexts(recs, rows, accounts, &role_id) {
        // The answer lands in `st.contexts`, which the plan reads.
        let _ = resolve_context(ctx, st, level, &idnumber).await?;
    }
    let mut plan = plan::roles(recs, rows, accounts, &role_id, &st.contexts);
    st.forget_missing_children();
    for (key, note) in std::mem::take(&mut plan.notes) {
        note.record(report, EntityKind::Roles, &key);
    }
    report.counts(EntityKind::Roles).unchanged += plan.unchanged;
    if ctx.opts.simulate {
        report.counts(EntityKind::Roles).created += plan.assigns.len() as u64;
        report.counts(EntityKind::Roles).removed += plan.unassigns.len() as u64;
        return Ok(plan.applied);
    }
    let mut applied = plan.applied.clone();
    write_roles(
        ctx,
        report,
        recs,
        &mut applied,
        &plan.assigns,
        budget,
        RoleWrite::Assign,
    )
    .await?;
    write_roles(
        ctx,
        report,
        recs,
        &mut applied,
        &plan.unassigns,
        budget,
        RoleWrite::Unassign,
    )
    .await?;
    Ok(applied)
}

/// Write planned role operations; `applied` keeps each person's role set true to what Moodle
/// now holds.
async fn write_roles(
    ctx: &Ctx,
    report: &mut RunReport,
    recs: &[PersonRecord],
    applied: &mut [Option<BTreeSet<StoredRole>>],
    ops: &[plan::RoleOp],
    budget: usize,
    op: RoleWrite,
) -> Result<(), PassError> {
    let (items, ops): (Vec<Assignment>, Vec<&plan::RoleOp>) = ops
        .iter()
        .filter_map(|o| match o.user {
            Account::Id(userid) => Some((
                Assignment {
                    roleid: o.roleid,
                    userid,
                    level: o.level,
                    instanceid: o.instance,
                },
                o,
            )),
            Account::Planned => None,
        })
        .unzip();
    let out =
        apply::write_roles(&ctx.moodle, &items, budget, ctx.settings.batch_size * 4, op).await?;
    let counts = report.counts(EntityKind::Roles);
    match op {
        RoleWrite::Assign => counts.created += out.ok.len() as u64,
        RoleWrite::Unassign => counts.removed += out.ok.len() as u64,
    }
    for (j, why) in out.failed {
        let o = ops[j];
        let verb = if op == RoleWrite::Assign {
            "assign"
        } else {
            "unassign"
        };
        report.failed(
            EntityKind::Roles,
            &recs[o.person].key,
            format!("{verb} {}: {why}", o.label),
        );
        if let Some(set) = applied[o.person].as_mut() {
            // The write failed, so Moodle still holds the previous state for this role.
            if op == RoleWrite::Assign {
                set.remove(o.label.as_str());
            } else {
                set.insert(StoredRole::read(&o.label));
            }
        }
    }
    Ok(())
}
