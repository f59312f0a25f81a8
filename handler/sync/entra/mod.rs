//! Entra ID → Moodle users, one pass of a sync run (`handler sync --entra`, and the `entra`
//! shard SyncTimer queues when `ENTRA_SYNC=true`): one `/users/delta` round (incremental from
//! the stored delta link, full when the fixtures' "start over" rules say so), a page at a time:
//! link rows → Moodle lookups for the users without one (by the `ENTRA_MATCH` rules, in order)
//! → plan (`plan`, pure) → the engine's writers (`sync::apply`: batches sized by form fields,
//! bisection of a refused batch, `SYNC_WRITE_CONCURRENCY` calls at once) → link rows
//! (`mappings`: `entra-user/<object id>` → Moodle id, and the reverse `moodle-user/<id>` the bot
//! and notifications read) → the engine's retry set (`sync::retry`, population `entra`: a user
//! that failed, or waits for an ENT account, is re-read by id every run until it goes through —
//! the delta round would not list it again). Counts, issues and the trace go to the run's
//! [`RunReport`] under the entity `entra-users`, the round's own figures to
//! [`EntraSummary`].
//!
//! Suspensions and deletions wait for the end of the round: they are applied only after a
//! complete read, and refused above `SYNC_REMOVAL_MAX_SHARE` of the linked accounts
//! (`removal::over_share`, the directory's guard) unless forced. A complete full round also
//! removes linked users it did not list. The delta link is stored only after all of that, so a
//! failed run repeats the same round (its changes apply idempotently). A run with no change is
//! one Graph call and no Moodle call.
//!
//! What stays Entra's own: the delta round and its checkpoint, `@removed` entries, matching by
//! a chosen attribute, "on create / on update / always" fields and re-enabling — the
//! directory's planner (`sync::plan`) knows none of them.

pub mod photo;
pub mod plan;
pub mod settings;

pub use settings::EntraSettings;

use crate::bot::mapping::{
    ENTRA_OBJECT_ID_PROP, ENTRA_USER_PARTITION, MOODLE_USER_ID_PROP, MOODLE_USER_PARTITION,
};
use crate::graph::{BatchRequest, DeltaCheckpoint, DeltaItem, GraphClient, GraphError};
use crate::ids::MoodleUserId;
use crate::moodle::users::{self, MoodleUser, UserField};
use crate::moodle::{MoodleClient, MoodleError};
use crate::store::{key_escape, tables, BatchOp, Entity, SharedStore, StoreError};
use crate::sync::apply::{self, UserForm};
use crate::sync::removal;
use crate::sync::report::{EntityKind, EntraSummary, RunReport, SyncOptions};
use crate::sync::retry;
use crate::sync::settings::SyncSettings;
use plan::{EntraUser, Found, LinkRow};
use settings::{CreateFilter, MatchField};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// The checkpoint row of the Entra users' delta link (checkpoints are keyed by source).
pub const CHECKPOINT_PARTITION: &str = "entra";
const CHECKPOINT_ROW: &str = "users-delta";
/// The pass's entity in run reports.
pub const ENTITY: EntityKind = EntityKind::EntraUsers;
/// The pass's shard on `sync-work`, and its population in the retry set.
pub const SHARD: &str = "entra";
/// Waiting users re-read per `$batch` round (5 envelopes of 20).
const RETRY_READ: usize = 100;

/// What the Entra pass needs beyond the sync's own parts; present when Graph is configured.
#[derive(Clone)]
pub struct EntraEnv {
    pub graph: Arc<GraphClient>,
    pub settings: Arc<EntraSettings>,
}

impl EntraEnv {
    pub fn from_app(state: &crate::app::AppState) -> Option<EntraEnv> {
        Some(EntraEnv {
            graph: state.graph.clone()?,
            settings: Arc::new(state.settings.entra.clone()),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EntraError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Moodle(#[from] MoodleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One Entra pass of a run.
pub struct EntraPass<'a> {
    pub env: &'a EntraEnv,
    pub moodle: &'a MoodleClient,
    pub store: &'a SharedStore,
    /// `SYNC_REMOVAL_MAX_SHARE`, `SYNC_WRITE_CONCURRENCY`.
    pub sync: &'a SyncSettings,
    /// `force`: a full round, and removals above the share; `simulate`, `verbose`,
    /// `update_only`; `user`: one Entra user (object id or UPN), no round.
    pub opts: &'a SyncOptions,
}

/// A suspension or deletion waiting for the end of the round.
struct Removal {
    key: String,
    moodle_id: MoodleUserId,
    delete: bool,
    why: String,
}

/// Per-pass state.
#[derive(Default)]
struct RunState {
    seen: HashSet<String>,
    removals: Vec<Removal>,
    group: Option<HashSet<String>>,
    protected: Option<crate::sync::protect::Protected>,
    /// This pass's part of the retry set (loaded on first need, kept in step with the store).
    waiting: Option<HashMap<String, retry::Waiting>>,
    /// Users whose photo this pass looked at (or would have, simulating).
    photo_done: HashSet<String>,
    /// A photo failed: the next run re-checks (`photo::photo_recheck`).
    photo_failed: bool,
}

impl EntraPass<'_> {
    fn graph(&self) -> &GraphClient {
        &self.env.graph
    }

    fn settings(&self) -> &EntraSettings {
        &self.env.settings
    }

    fn initial(&self) -> String {
        format!(
            "/users/delta?$select={}",
            self.settings().select().join(",")
        )
    }

    /// Graph requests made since `before`, under `kind` in the report.
    fn count_graph(&self, report: &mut RunReport, kind: &str, before: u64) {
        let n = self.graph().stats().requests.saturating_sub(before);
        if n > 0 {
            *report.graph_calls.entry(kind.to_string()).or_default() += n;
        }
    }

    /// The pass. `Err` only for what stops everything (credentials, a missing permission,
    /// Moodle refusing the run, the store); a failed read leaves the report incomplete.
    pub async fn run(&self, report: &mut RunReport) -> Result<(), EntraError> {
        let mut sum = EntraSummary::default();
        report.counts(ENTITY);
        let result = match &self.opts.user {
            Some(who) => self.one(who, report, &mut sum).await,
            None => self.round(report, &mut sum).await,
        };
        report.entra = Some(sum);
        match result {
            Err(EntraError::Graph(e)) if !e.is_fatal() => {
                report.complete = false;
                report.errors.push(format!("entra: {e}"));
                Ok(())
            }
            other => other,
        }
    }

    async fn round(
        &self,
        report: &mut RunReport,
        sum: &mut EntraSummary,
    ) -> Result<(), EntraError> {
        let config = self.settings().config_hash();
        let stored = self.load_checkpoint().await?;
        let checkpoint = stored
            .filter(|(_, c)| *c == config && !self.opts.force)
            .map(|(cp, _)| cp);
        let mut round = self
            .graph()
            .delta::<EntraUser>(&self.initial(), checkpoint.as_ref());
        let mut st = RunState::default();
        loop {
            let before = self.graph().stats().requests;
            let page = round.next_page().await;
            self.count_graph(report, "GET /users/delta", before);
            report.source_requests += self.graph().stats().requests.saturating_sub(before);
            let page = match page {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) if e.is_fatal() => return Err(e.into()),
                Err(e) => {
                    report.complete = false;
                    report
                        .errors
                        .push(format!("entra: reading Entra users: {e}"));
                    sum.removals_refused = (!st.removals.is_empty()).then(|| {
                        format!(
                            "{} suspensions/deletions held back: the read did not complete",
                            st.removals.len()
                        )
                    });
                    return Ok(());
                }
            };
            if let Some(why) = &page.restarted {
                // A full round from the start: what earlier pages listed is not the whole picture.
                report.trace(|| format!("{ENTITY}: round restarted as a full round: {why}"));
                st.seen.clear();
                st.removals.clear();
            }
            let mut present = Vec::new();
            for item in page.items {
                match item {
                    DeltaItem::Present(u) => present.push(u),
                    DeltaItem::Removed { id, reason } => {
                        sum.removed_read += 1;
                        self.removed(&mut st, report, &id.to_ascii_lowercase(), &reason)
                            .await?;
                    }
                }
            }
            // Re-read waiting users are counted apart (`retry_examined`), as the directory's.
            report.entries_read += present.len() as u64;
            for chunk in present.chunks(self.settings().batch_size) {
                self.batch(&mut st, report, sum, chunk).await?;
            }
        }
        sum.full_round = round.is_full();
        sum.why_full = round.why_full().map(|w| w.to_string());
        if round.is_full() {
            self.not_listed(&mut st, report).await?;
        }
        self.retry_waiting(&mut st, report, sum).await?;
        self.photo_recheck(&mut st, report, sum).await?;
        if !self.removals(&mut st, report, sum).await? {
            return Ok(());
        }
        if let Some(cp) = round.checkpoint() {
            if !self.opts.simulate {
                self.save_checkpoint(cp, &config).await?;
                sum.delta_advanced = true;
            }
        }
        Ok(())
    }

    /// `--user`: one Entra user by object id or UPN, now; the round and its link stay as they are.
    async fn one(
        &self,
        who: &str,
        report: &mut RunReport,
        sum: &mut EntraSummary,
    ) -> Result<(), EntraError> {
        let mut st = RunState::default();
        let users = self
            .read_by_id(&mut st, report, &[who.to_string()], false)
            .await?;
        if users.is_empty() {
            report.errors.push(format!(
                "entra: no Entra user {who:?} (object id or userPrincipalName)"
            ));
            return Ok(());
        }
        report.entries_read += users.len() as u64;
        self.batch(&mut st, report, sum, &users).await?;
        self.removals(&mut st, report, sum).await?;
        Ok(())
    }

    /// Users by object id (or UPN) through `$batch`; a 404 is a user gone from Entra (its
    /// waiting entry, if any, is dropped: the delta round reports the removal itself).
    async fn read_by_id(
        &self,
        st: &mut RunState,
        report: &mut RunReport,
        keys: &[String],
        waiting: bool,
    ) -> Result<Vec<EntraUser>, EntraError> {
        let select = self.settings().select().join(",");
        let requests: Vec<BatchRequest> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                BatchRequest::get(
                    i.to_string(),
                    format!(
                        "/users/{}?$select={select}",
                        crate::bot::connector::encode_segment(k)
                    ),
                )
            })
            .collect();
        let before = self.graph().stats().requests;
        let answers = self.graph().batch(requests).await;
        self.count_graph(report, "POST /$batch (GET /users/{id})", before);
        let mut out = Vec::new();
        for ((_, answer), key) in answers?.into_iter().zip(keys) {
            match answer {
                Ok(a) => match serde_json::from_value::<EntraUser>(a.body) {
                    Ok(u) if !plan::id(&u).is_empty() => out.push(u),
                    _ => report
                        .errors
                        .push(format!("entra: {key}: Graph answered no user object")),
                },
                Err(GraphError::NotFound { .. }) => {
                    report.trace(|| format!("{ENTITY} {key}: not in Entra any more"));
                    if waiting && !self.opts.simulate {
                        retry::clear(self.store, key).await?;
                        if let Some(w) = st.waiting.as_mut() {
                            w.remove(key);
                        }
                    }
                }
                Err(e) if e.is_fatal() => return Err(e.into()),
                Err(e) => report.errors.push(format!("entra: reading {key}: {e}")),
            }
        }
        Ok(out)
    }

    async fn waiting_set<'s>(
        &self,
        st: &'s mut RunState,
    ) -> Result<&'s mut HashMap<String, retry::Waiting>, StoreError> {
        if st.waiting.is_none() {
            let all = retry::load(self.store).await?;
            st.waiting = Some(
                all.into_iter()
                    .filter(|w| w.population == SHARD)
                    .map(|w| (w.key.clone(), w))
                    .collect(),
            );
        }
        Ok(st.waiting.as_mut().expect("just set"))
    }

    /// Re-read the waiting users this round did not list, and apply them like the others.
    async fn retry_waiting(
        &self,
        st: &mut RunState,
        report: &mut RunReport,
        sum: &mut EntraSummary,
    ) -> Result<(), EntraError> {
        let seen = std::mem::take(&mut st.seen);
        let mut keys: Vec<String> = self
            .waiting_set(st)
            .await?
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        st.seen = seen;
        keys.sort();
        for chunk in keys.chunks(RETRY_READ) {
            report.trace(|| format!("{ENTITY}: re-examining {} waiting users", chunk.len()));
            let before = self.graph().stats().requests;
            let users = self.read_by_id(st, report, chunk, true).await?;
            report.retry_requests += self.graph().stats().requests.saturating_sub(before);
            report.retry_examined += users.len() as u64;
            if !users.is_empty() {
                self.batch(st, report, sum, &users).await?;
            }
        }
        let waiting = self.waiting_set(st).await?;
        for w in waiting.values() {
            *report.waiting.entry(w.why.clone()).or_default() += 1;
        }
        Ok(())
    }

    /// Entries of `keys` marked by this batch wait in the retry set; the others no longer do.
    async fn remember_waiting(
        &self,
        st: &mut RunState,
        keys: &[String],
        marks: &BTreeMap<String, retry::Mark>,
    ) -> Result<(), StoreError> {
        let set = self.waiting_set(st).await?;
        retry::remember(self.store, set, SHARD, keys, marks).await
    }

    async fn load_checkpoint(&self) -> Result<Option<(DeltaCheckpoint, String)>, StoreError> {
        let Some(e) = self
            .store
            .get(tables::CHECKPOINTS, CHECKPOINT_PARTITION, CHECKPOINT_ROW)
            .await?
        else {
            return Ok(None);
        };
        let (Some(link), Some(at)) = (e.str("delta_link"), e.int("saved_at")) else {
            return Ok(None);
        };
        Ok(Some((
            DeltaCheckpoint {
                link: link.to_string(),
                saved_at: at.max(0) as u64,
            },
            e.str("config_hash").unwrap_or_default().to_string(),
        )))
    }

    async fn save_checkpoint(&self, cp: &DeltaCheckpoint, config: &str) -> Result<(), StoreError> {
        let e = Entity::new(CHECKPOINT_PARTITION, CHECKPOINT_ROW)
            .with("delta_link", cp.link.as_str())
            .with("saved_at", cp.saved_at as i64)
            .with("config_hash", config)
            .with("updated_at", chrono::Utc::now().to_rfc3339());
        self.store.upsert(tables::CHECKPOINTS, &e).await.map(|_| ())
    }

    async fn row(&self, key: &str) -> Result<Option<LinkRow>, StoreError> {
        let Some(e) = self
            .store
            .get(tables::MAPPINGS, ENTRA_USER_PARTITION, &key_escape(key))
            .await?
        else {
            return Ok(None);
        };
        Ok(link_row(&e))
    }

    /// An `@removed` entry: `deleted` = gone for good, `changed` = in the deleted items (restorable).
    async fn removed(
        &self,
        st: &mut RunState,
        report: &mut RunReport,
        key: &str,
        reason: &str,
    ) -> Result<(), EntraError> {
        let Some(row) = self.row(key).await? else {
            return Ok(());
        };
        let permanent = reason.eq_ignore_ascii_case("deleted");
        let s = self.settings();
        let delete = permanent && s.delete;
        if delete || (s.suspend && !row.suspended) {
            st.removals.push(Removal {
                key: key.to_string(),
                moodle_id: row.moodle_id,
                delete,
                why: format!("removed in Entra ({reason})"),
            });
        }
        report.trace(|| format!("{ENTITY} {key}: removed in Entra ({reason})"));
        Ok(())
    }

    /// A complete full round lists every user: linked users it did not list are gone.
    async fn not_listed(
        &self,
        st: &mut RunState,
        report: &mut RunReport,
    ) -> Result<(), StoreError> {
        let mut next: Option<String> = None;
        loop {
            let page = self
                .store
                .query(
                    tables::MAPPINGS,
                    ENTRA_USER_PARTITION,
                    next.as_deref(),
                    1000,
                )
                .await?;
            for e in &page.entities {
                let key = e.row_key.to_ascii_lowercase();
                if st.seen.contains(&key) || st.removals.iter().any(|r| r.key == key) {
                    continue;
                }
                if let Some(row) = link_row(e).filter(|r| !r.suspended) {
                    if self.settings().suspend {
                        report.trace(|| format!("{ENTITY} {key}: not in the full round: suspend"));
                        st.removals.push(Removal {
                            key,
                            moodle_id: row.moodle_id,
                            delete: false,
                            why: "not listed by a complete full round".into(),
                        });
                    }
                }
            }
            next = page.next;
            if next.is_none() {
                return Ok(());
            }
        }
    }

    async fn linked_count(&self) -> Result<usize, StoreError> {
        let mut next: Option<String> = None;
        let mut n = 0;
        loop {
            let page = self
                .store
                .query(
                    tables::MAPPINGS,
                    ENTRA_USER_PARTITION,
                    next.as_deref(),
                    1000,
                )
                .await?;
            n += page.entities.len();
            next = page.next;
            if next.is_none() {
                return Ok(n);
            }
        }
    }

    /// Applies the waiting suspensions and deletions, unless they pass the share; `false` when
    /// refused (the delta link then stays where it was).
    async fn removals(
        &self,
        st: &mut RunState,
        report: &mut RunReport,
        sum: &mut EntraSummary,
    ) -> Result<bool, EntraError> {
        if st.removals.is_empty() {
            return Ok(true);
        }
        let linked = self.linked_count().await?;
        let allowed = self.opts.force || self.opts.allow_mass_removal;
        if let Some(over) = removal::over_share(
            st.removals.len(),
            linked,
            self.sync.removal_max_share,
            allowed,
        ) {
            let msg = format!(
                "{over} linked Entra accounts would be suspended or deleted; rerun with --force if that is right"
            );
            report
                .errors
                .push(format!("entra: removals refused: {msg}"));
            sum.removals_refused = Some(msg);
            return Ok(false);
        }
        let removals = std::mem::take(&mut st.removals);
        for r in &removals {
            report.trace(|| {
                format!(
                    "{ENTITY} {}: {} ({})",
                    r.key,
                    if r.delete { "delete" } else { "suspend" },
                    r.why
                )
            });
        }
        let (deletes, suspends): (Vec<&Removal>, Vec<&Removal>) =
            removals.iter().partition(|r| r.delete);
        if self.opts.simulate {
            sum.deleted += deletes.len() as u64;
            sum.suspended += suspends.len() as u64;
            report.counts(ENTITY).removed += removals.len() as u64;
            return Ok(true);
        }
        let budget = self.moodle.field_budget();
        let ids: Vec<MoodleUserId> = suspends.iter().map(|r| r.moodle_id).collect();
        let results =
            apply::suspend_users(self.moodle, &ids, budget, self.settings().batch_size).await?;
        for (r, result) in suspends.iter().zip(results) {
            match result {
                Some(why) => report.failed(
                    ENTITY,
                    &r.key,
                    format!("suspend (id {}): {why}", r.moodle_id),
                ),
                None => {
                    self.mark_suspended(&r.key, true).await?;
                    report.counts(ENTITY).removed += 1;
                    sum.suspended += 1;
                }
            }
        }
        let per_call = (budget / 2).clamp(1, self.settings().batch_size);
        for part in deletes.chunks(per_call) {
            let items: Vec<(usize, MoodleUserId)> = part
                .iter()
                .enumerate()
                .map(|(i, r)| (i, r.moodle_id))
                .collect();
            let client = self.moodle;
            let out = apply::bisect(items, |g| async move {
                users::delete(client, &g).await.map(|()| vec![(); g.len()])
            })
            .await?;
            for (i, ()) in out.ok {
                self.forget(&part[i].key, part[i].moodle_id).await?;
                report.counts(ENTITY).removed += 1;
                sum.deleted += 1;
            }
            for (i, why) in out.failed {
                report.failed(
                    ENTITY,
                    &part[i].key,
                    format!("delete (id {}): {why}", part[i].moodle_id),
                );
            }
        }
        let keys: Vec<String> = removals.iter().map(|r| r.key.clone()).collect();
        let marks = std::mem::take(&mut report.retry_marks);
        // A refused suspension waits like any failure; one that went through clears the entry.
        self.remember_waiting(st, &keys, &marks).await?;
        Ok(true)
    }

    async fn mark_suspended(&self, key: &str, suspended: bool) -> Result<(), StoreError> {
        let rk = key_escape(key);
        if let Some(mut e) = self
            .store
            .get(tables::MAPPINGS, ENTRA_USER_PARTITION, &rk)
            .await?
        {
            e.set("suspended", suspended);
            self.store.upsert(tables::MAPPINGS, &e).await?;
        }
        Ok(())
    }

    async fn forget(&self, key: &str, moodle_id: MoodleUserId) -> Result<(), StoreError> {
        self.store
            .delete(
                tables::MAPPINGS,
                ENTRA_USER_PARTITION,
                &key_escape(key),
                None,
            )
            .await
            .or_else(not_found_ok)?;
        self.store
            .delete(
                tables::MAPPINGS,
                MOODLE_USER_PARTITION,
                &moodle_id.to_string(),
                None,
            )
            .await
            .or_else(not_found_ok)
    }

    /// Whether the creation filter's group holds `key` (members read once per run, on first need).
    async fn in_group(
        &self,
        st: &mut RunState,
        report: &mut RunReport,
        key: &str,
    ) -> Result<bool, GraphError> {
        let CreateFilter::Group(group) = &self.settings().create_filter else {
            return Ok(true);
        };
        if st.group.is_none() {
            #[derive(serde::Deserialize)]
            struct Member {
                id: String,
            }
            let path = format!(
                "/groups/{}/members?$select=id",
                crate::bot::connector::encode_segment(group)
            );
            let before = self.graph().stats().requests;
            let members = self.graph().all::<Member>(&path).await;
            self.count_graph(report, "GET /groups/{id}/members", before);
            st.group = Some(
                members?
                    .into_iter()
                    .map(|m| m.id.to_ascii_lowercase())
                    .collect(),
            );
        }
        Ok(st.group.as_ref().is_some_and(|g| g.contains(key)))
    }

    /// Moodle accounts for the users without a link row, by the match rules in order.
    async fn lookup(
        &self,
        st: &mut RunState,
        users: &[&EntraUser],
    ) -> Result<HashMap<String, Found>, EntraError> {
        let mut found: HashMap<String, Found> = HashMap::new();
        if users.is_empty() {
            return Ok(found);
        }
        if st.protected.is_none() {
            // Who the service account is: remembered per token, as the directory pass does.
            let info = crate::sync::token_check::site_info(
                self.store,
                self.moodle,
                self.sync.token_recheck_secs,
                chrono::Utc::now(),
            )
            .await?;
            st.protected = Some(crate::sync::protect::Protected::with_extra(
                &info,
                &self.sync.protected_users,
            ));
        }
        let s = self.settings();
        let rules: Vec<(MatchField, Vec<String>)> = match &s.ent_link {
            Some(link) => vec![link.clone()],
            None => s.matching.clone(),
        };
        for (field, attrs) in rules {
            let wanted: Vec<(String, String)> = users
                .iter()
                .map(|u| (plan::id(u), u))
                .filter(|(k, _)| {
                    !matches!(
                        found.get(k),
                        Some(Found::One(_) | Found::Several { .. } | Found::Protected(_))
                    )
                })
                .filter_map(|(k, u)| Some((k, plan::attr(u, &attrs)?)))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let mut values: Vec<String> = wanted.iter().map(|(_, v)| v.clone()).collect();
            if field == MatchField::Username {
                values.iter_mut().for_each(|v| *v = v.to_lowercase());
            }
            values.sort();
            values.dedup();
            let moodle_field = match field {
                MatchField::Username => UserField::Username,
                MatchField::Email => UserField::Email,
                MatchField::Idnumber => UserField::Idnumber,
            };
            let mut accounts = Vec::new();
            for part in values.chunks(self.moodle.field_budget().saturating_sub(1).max(1)) {
                accounts.extend(users::get_by_field(self.moodle, moodle_field, part).await?);
            }
            let mut index: HashMap<String, Vec<MoodleUser>> = HashMap::new();
            for mu in accounts {
                let v = match field {
                    MatchField::Username => mu.username.to_lowercase(),
                    MatchField::Email => mu.email.to_lowercase(),
                    MatchField::Idnumber => mu.idnumber.to_lowercase(),
                };
                index.entry(v).or_default().push(mu);
            }
            let protected = st.protected.as_ref().expect("loaded above");
            for (key, value) in wanted {
                let Some(list) = index.get(&value.to_lowercase()) else {
                    found.entry(key).or_insert(Found::Nothing);
                    continue;
                };
                let f = if let Some(label) = list
                    .iter()
                    .find_map(|mu| protected.matches(Some(mu.id), &mu.username))
                {
                    Found::Protected(label.to_string())
                } else if list.len() > 1 {
                    Found::Several {
                        field,
                        value,
                        count: list.len(),
                    }
                } else {
                    Found::One(list[0].clone())
                };
                found.insert(key, f);
            }
        }
        Ok(found)
    }

    /// One batch of present users: plan and apply everything but removals.
    async fn batch(
        &self,
        st: &mut RunState,
        report: &mut RunReport,
        sum: &mut EntraSummary,
        chunk: &[EntraUser],
    ) -> Result<(), EntraError> {
        sum.users_read += chunk.len() as u64;
        let mut rows: HashMap<String, LinkRow> = HashMap::new();
        for u in chunk {
            let key = plan::id(u);
            st.seen.insert(key.clone());
            if let Some(r) = self.row(&key).await? {
                rows.insert(key, r);
            }
        }
        let unlinked: Vec<&EntraUser> = chunk
            .iter()
            .filter(|u| !rows.contains_key(&plan::id(u)))
            .collect();
        let found = self.lookup(st, &unlinked).await?;
        let s = self.settings();
        let mut decisions: Vec<(String, plan::Decision)> = Vec::new();
        for u in chunk {
            let key = plan::id(u);
            let f = found.get(&key).cloned().unwrap_or(Found::Nothing);
            let row = rows.get(&key);
            let needs_filter =
                row.is_none() && matches!(f, Found::Nothing) && s.create && plan::enabled(u);
            let may_create = if needs_filter && s.ent_link.is_none() {
                let group_ok = self.in_group(st, report, &key).await?;
                plan::admitted(s, u, |_| group_ok)
            } else {
                true
            };
            let mut d = plan::present(s, u, row, &f, may_create);
            if self.opts.update_only && d.create.is_some() {
                d.create = None;
                d.remember = false;
                d.skip = Some("update only: no Moodle account to update".into());
                d.waiting = Some("update only");
            }
            if row.is_none() && matches!(f, Found::One(_)) && d.skip.is_none() {
                sum.linked += 1;
            }
            if let Some(t) = d.trace.take() {
                report.trace(|| t);
            }
            decisions.push((key, d));
        }
        self.apply(st, report, sum, decisions).await
    }

    async fn apply(
        &self,
        st: &mut RunState,
        report: &mut RunReport,
        sum: &mut EntraSummary,
        decisions: Vec<(String, plan::Decision)>,
    ) -> Result<(), EntraError> {
        let mut creates: Vec<(String, UserForm)> = Vec::new();
        let mut updates: Vec<(String, MoodleUserId, UserForm)> = Vec::new();
        let mut reenables: Vec<(String, MoodleUserId)> = Vec::new();
        let mut remember: Vec<(String, MoodleUserId, &plan::Decision)> = Vec::new();
        for (key, d) in &decisions {
            if let Some(why) = &d.skip {
                match d.waiting {
                    Some(class) => report.waiting(ENTITY, key, class, why.clone()),
                    None => report.skipped(ENTITY, key, why.clone()),
                }
                continue;
            }
            if let Some(items) = &d.create {
                report.trace(|| format!("{ENTITY} {key}: create"));
                creates.push((key.clone(), items.clone()));
                continue;
            }
            let Some(id) = d.moodle_id else { continue };
            if !d.update.is_empty() {
                report.trace(|| {
                    format!(
                        "{ENTITY} {key}: update {}",
                        d.update
                            .iter()
                            .map(|(k, _)| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
                updates.push((key.clone(), id, update_item(id, &d.update)));
            }
            if d.reenable {
                reenables.push((key.clone(), id));
            }
            if d.suspend {
                st.removals.push(Removal {
                    key: key.clone(),
                    moodle_id: id,
                    delete: false,
                    why: "disabled in Entra (accountEnabled=false)".into(),
                });
            }
            if d.update.is_empty() && !d.reenable && !d.suspend {
                report.counts(ENTITY).unchanged += 1;
            }
            if d.remember {
                remember.push((key.clone(), id, d));
            }
        }
        if self.opts.simulate {
            let c = report.counts(ENTITY);
            c.created += creates.len() as u64;
            c.updated += updates.len() as u64;
            sum.reenabled += reenables.len() as u64;
            report.retry_marks.clear();
            let photos: Vec<String> = creates
                .iter()
                .map(|(k, _)| k.clone())
                .chain(
                    remember
                        .iter()
                        .filter(|(_, _, d)| d.new_link && !d.suspend)
                        .map(|(k, ..)| k.clone()),
                )
                .collect();
            self.simulated_photos(st, report, sum, photos);
            return Ok(());
        }
        let budget = self.moodle.field_budget();
        let (batch_size, concurrency) = (self.settings().batch_size, self.sync.write_concurrency);
        let forms: Vec<UserForm> = creates.iter().map(|(_, f)| f.clone()).collect();
        let out = apply::create_users(self.moodle, &forms, budget, batch_size, concurrency).await?;
        let mut created: Vec<(String, MoodleUserId)> = Vec::new();
        for (j, id) in out.ok {
            created.push((creates[j].0.clone(), id));
        }
        report.counts(ENTITY).created += created.len() as u64;
        for (j, why) in out.failed {
            report.failed(ENTITY, &creates[j].0, format!("create: {why}"));
        }
        let items: Vec<(MoodleUserId, UserForm)> =
            updates.iter().map(|(_, id, f)| (*id, f.clone())).collect();
        let results =
            apply::update_users(self.moodle, &items, budget, batch_size, concurrency).await?;
        for ((key, id, _), result) in updates.iter().zip(results) {
            match result {
                Some(why) => {
                    report.failed(ENTITY, key, format!("update (id {id}): {why}"));
                    remember.retain(|(k, ..)| k != key);
                }
                None => report.counts(ENTITY).updated += 1,
            }
        }
        let items: Vec<(MoodleUserId, UserForm)> = reenables
            .iter()
            .map(|(_, id)| {
                (
                    *id,
                    vec![
                        ("id".to_string(), id.to_string()),
                        ("suspended".to_string(), "0".to_string()),
                    ],
                )
            })
            .collect();
        let results =
            apply::update_users(self.moodle, &items, budget, batch_size, concurrency).await?;
        for ((key, id), result) in reenables.iter().zip(results) {
            match result {
                Some(why) => report.failed(ENTITY, key, format!("re-enable (id {id}): {why}")),
                None => {
                    sum.reenabled += 1;
                    self.mark_suspended(key, false).await?;
                }
            }
        }
        let by_key: HashMap<&str, &plan::Decision> =
            decisions.iter().map(|(k, d)| (k.as_str(), d)).collect();
        let mut rows = remember;
        for (key, id) in &created {
            if let Some(d) = by_key.get(key.as_str()) {
                rows.push((key.clone(), *id, d));
            }
        }
        self.remember(&rows).await?;
        let marks = std::mem::take(&mut report.retry_marks);
        let keys: Vec<String> = decisions.iter().map(|(k, _)| k.clone()).collect();
        self.remember_waiting(st, &keys, &marks).await?;
        // After the link rows exist: the photo step records what it saw on them.
        self.new_photos(st, report, sum, &rows).await?;
        Ok(())
    }

    /// Link rows, forward (with what was written) and reverse, a batch per partition.
    async fn remember(
        &self,
        rows: &[(String, MoodleUserId, &plan::Decision)],
    ) -> Result<(), StoreError> {
        let config = self.settings().config_hash();
        for chunk in rows.chunks(crate::store::MAX_BATCH) {
            let mut forward = Vec::new();
            let mut reverse = Vec::new();
            for (key, id, d) in chunk {
                let fields = serde_json::to_string(&d.fields).unwrap_or_default();
                let existing = self
                    .store
                    .get(tables::MAPPINGS, ENTRA_USER_PARTITION, &key_escape(key))
                    .await?;
                let suspended = existing
                    .as_ref()
                    .and_then(|e| e.bool("suspended"))
                    .unwrap_or(false);
                let mut row = Entity::new(ENTRA_USER_PARTITION, key_escape(key))
                    .with(MOODLE_USER_ID_PROP, id.get())
                    .with("fields", fields.as_str())
                    .with("suspended", suspended)
                    .with("config_hash", config.as_str())
                    .with("source", "entra-sync");
                // What the photo step saw stays, unless the row now points at another account.
                if let Some(e) = existing
                    .as_ref()
                    .filter(|e| e.int(MOODLE_USER_ID_PROP) == Some(id.get()))
                {
                    if let Some(t) = e.str(photo::ETAG_PROP) {
                        row.set(photo::ETAG_PROP, t);
                    }
                    if let Some(at) = e.int(photo::CHECKED_PROP) {
                        row.set(photo::CHECKED_PROP, at);
                    }
                }
                forward.push(BatchOp::Upsert(row));
                reverse.push(BatchOp::Upsert(
                    Entity::new(MOODLE_USER_PARTITION, id.to_string())
                        .with(ENTRA_OBJECT_ID_PROP, key.as_str()),
                ));
            }
            self.store
                .batch(tables::MAPPINGS, ENTRA_USER_PARTITION, forward)
                .await?;
            self.store
                .batch(tables::MAPPINGS, MOODLE_USER_PARTITION, reverse)
                .await?;
        }
        Ok(())
    }
}

fn not_found_ok(e: StoreError) -> Result<(), StoreError> {
    if matches!(e, StoreError::NotFound) {
        Ok(())
    } else {
        Err(e)
    }
}

fn update_item(id: MoodleUserId, fields: &[(String, String)]) -> UserForm {
    let mut item = vec![("id".to_string(), id.to_string())];
    let mut custom = 0;
    for (k, v) in fields {
        match k.strip_prefix("profile_field_") {
            Some(short) => {
                item.push((format!("customfields][{custom}][type"), short.to_string()));
                item.push((format!("customfields][{custom}][value"), v.clone()));
                custom += 1;
            }
            None => item.push((k.clone(), v.clone())),
        }
    }
    item
}

fn link_row(e: &Entity) -> Option<LinkRow> {
    // A row whose id is not a Moodle id links nothing: the user is looked up again.
    let moodle_id = MoodleUserId::new(e.int(MOODLE_USER_ID_PROP)?).ok()?;
    Some(LinkRow {
        moodle_id,
        fields: e
            .str("fields")
            .and_then(|f| serde_json::from_str(f).ok())
            .unwrap_or_default(),
        suspended: e.bool("suspended").unwrap_or(false),
        config: e.str("config_hash").unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn profile_fields_become_custom_field_items() {
        let item = super::update_item(
            crate::ids::MoodleUserId::new(7).unwrap(),
            &[
                ("department".into(), "Maths".into()),
                ("profile_field_classe".into(), "6A".into()),
            ],
        );
        assert_eq!(item[0], ("id".to_string(), "7".to_string()));
        assert!(item.contains(&("customfields][0][type".to_string(), "classe".to_string())));
        assert!(item.contains(&("customfields][0][value".to_string(), "6A".to_string())));
        assert!(item.contains(&("department".to_string(), "Maths".to_string())));
    }
}
