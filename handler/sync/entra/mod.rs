//! Entra ID → Moodle users (`handler sync --entra`): one `/users/delta` round (incremental from the
//! stored delta link, full when the fixtures' "start over" rules say so), a page at a time:
//! link rows → Moodle lookups for the users without one (by the `ENTRA_MATCH` rules, in order)
//! → plan (`plan`) → creates, updates and re-enables in batches → link rows (`mappings`:
//! `entra-user/<object id>` → Moodle id, and the reverse `moodle-user/<id>` the bot and
//! notifications read). Suspensions and deletions wait for the end of the round: they are applied
//! only after a complete read, and refused above `SYNC_REMOVAL_MAX_SHARE` of the linked accounts
//! unless forced. A complete full round also removes linked users it did not list. The delta
//! link is stored only after all of that, so a failed run repeats the same round (its changes
//! apply idempotently). A run with no change is one Graph call and no Moodle call.
//!
//! The source-neutral engine (`sync::engine`) reads directory populations with GeneralizedTime
//! markers and removes from full passes only; a delta round's checkpoint, `@removed` entries and
//! re-enabling have no place there yet, so this pass keeps its own loop over the same Moodle
//! client, store, mapping contract and removal share.

pub mod cli;
pub mod plan;
pub mod settings;

pub use settings::EntraSettings;

use crate::bot::mapping::{
    ENTRA_OBJECT_ID_PROP, ENTRA_USER_PARTITION, MOODLE_USER_ID_PROP, MOODLE_USER_PARTITION,
};
use crate::graph::{DeltaCheckpoint, DeltaItem, GraphClient, GraphError};
use crate::ids::MoodleUserId;
use crate::moodle::users::{self, MoodleUser, UserField};
use crate::moodle::{MoodleClient, MoodleError};
use crate::store::{key_escape, tables, BatchOp, Entity, SharedStore, StoreError};
use plan::{EntraUser, Found, LinkRow};
use serde::Serialize;
use settings::{CreateFilter, MatchField};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The checkpoint row of the Entra users' delta link (checkpoints are keyed by source).
pub const CHECKPOINT_PARTITION: &str = "entra";
const CHECKPOINT_ROW: &str = "users-delta";

#[derive(Debug, Clone, Default)]
pub struct EntraOptions {
    pub simulate: bool,
    pub verbose: bool,
    /// Full round, and removals above the share allowed.
    pub force: bool,
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

/// What a run did, for the CLI and the run history.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EntraReport {
    pub simulate: bool,
    pub full_round: bool,
    /// Why the round was full (no checkpoint, expired delta state…).
    pub why_full: Option<String>,
    /// Every page was read and every decision applied; the delta link was stored.
    pub complete: bool,
    pub users_read: u64,
    pub removed_read: u64,
    pub created: u64,
    pub linked: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub suspended: u64,
    pub reenabled: u64,
    pub deleted: u64,
    pub skipped: BTreeMap<String, String>,
    pub failed: BTreeMap<String, String>,
    /// Removals refused (share above the limit) or not applied (incomplete read).
    pub removals_refused: Option<String>,
    pub graph_calls: u64,
    pub moodle_calls: u64,
    pub moodle_writes: u64,
    pub errors: Vec<String>,
    pub trace: Vec<String>,
}

impl EntraReport {
    pub fn render(&self) -> String {
        let mut out = format!(
            "Entra → Moodle{}: {} round{}, {} users read ({} removals)\n  created {}, linked {}, updated {}, unchanged {}, suspended {}, re-enabled {}, deleted {}, skipped {}, failed {}\n  Graph calls {}, Moodle calls {} ({} writes)\n",
            if self.simulate { " (simulation: nothing written)" } else { "" },
            if self.full_round { "full" } else { "incremental" },
            self.why_full.as_ref().map(|w| format!(" ({w})")).unwrap_or_default(),
            self.users_read,
            self.removed_read,
            self.created,
            self.linked,
            self.updated,
            self.unchanged,
            self.suspended,
            self.reenabled,
            self.deleted,
            self.skipped.len(),
            self.failed.len(),
            self.graph_calls,
            self.moodle_calls,
            self.moodle_writes,
        );
        for (k, why) in &self.skipped {
            out.push_str(&format!("  skipped {k}: {why}\n"));
        }
        for (k, why) in &self.failed {
            out.push_str(&format!("  failed {k}: {why}\n"));
        }
        if let Some(r) = &self.removals_refused {
            out.push_str(&format!("  removals not applied: {r}\n"));
        }
        for e in &self.errors {
            out.push_str(&format!("  error: {e}\n"));
        }
        if !self.complete {
            out.push_str(
                "  incomplete: the delta link was not advanced; the next run repeats this round\n",
            );
        }
        out
    }

    fn trace(&mut self, on: bool, line: impl FnOnce() -> String) {
        if on {
            self.trace.push(line());
        }
    }
}

pub struct EntraSync<'a> {
    pub graph: &'a GraphClient,
    pub moodle: &'a MoodleClient,
    pub store: &'a SharedStore,
    pub settings: &'a EntraSettings,
    /// `SYNC_REMOVAL_MAX_SHARE`.
    pub removal_max_share: f64,
    pub opts: EntraOptions,
}

/// Moodle field → value pairs of one write.
type Fields = Vec<(String, String)>;

/// A suspension or deletion waiting for the end of the round.
struct Removal {
    key: String,
    moodle_id: i64,
    delete: bool,
    why: String,
}

/// Per-run state.
#[derive(Default)]
struct RunState {
    seen: HashSet<String>,
    removals: Vec<Removal>,
    group: Option<HashSet<String>>,
    protected: Option<crate::sync::protect::Protected>,
}

impl EntraSync<'_> {
    fn initial(&self) -> String {
        format!("/users/delta?$select={}", self.settings.select().join(","))
    }

    /// One run. `Err` only for what stops everything (credentials, permission, the store).
    pub async fn run(&self) -> Result<EntraReport, EntraError> {
        let mut report = EntraReport {
            simulate: self.opts.simulate,
            ..EntraReport::default()
        };
        let graph_before = self.graph.stats().requests;
        let moodle_before = self.moodle.total_calls();
        let result = self.round(&mut report).await;
        report.graph_calls = self.graph.stats().requests - graph_before;
        report.moodle_calls = self.moodle.total_calls() - moodle_before;
        match result {
            Ok(()) => Ok(report),
            Err(EntraError::Graph(e)) if !e.is_fatal() => {
                report.complete = false;
                report.errors.push(e.to_string());
                Ok(report)
            }
            Err(e) => Err(e),
        }
    }

    async fn round(&self, report: &mut EntraReport) -> Result<(), EntraError> {
        let config = self.settings.config_hash();
        let stored = self.load_checkpoint().await?;
        let checkpoint = stored
            .filter(|(_, c)| *c == config && !self.opts.force)
            .map(|(cp, _)| cp);
        let mut round = self
            .graph
            .delta::<EntraUser>(&self.initial(), checkpoint.as_ref());
        let mut st = RunState::default();
        loop {
            let page = match round.next_page().await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) if e.is_fatal() => return Err(e.into()),
                Err(e) => {
                    report.errors.push(format!("reading Entra users: {e}"));
                    report.removals_refused = (!st.removals.is_empty()).then(|| {
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
                report.trace(self.opts.verbose, || {
                    format!("round restarted as a full round: {why}")
                });
                st.seen.clear();
                st.removals.clear();
            }
            let mut present = Vec::new();
            for item in page.items {
                match item {
                    DeltaItem::Present(u) => present.push(u),
                    DeltaItem::Removed { id, reason } => {
                        report.removed_read += 1;
                        self.removed(&mut st, report, &id.to_ascii_lowercase(), &reason)
                            .await?;
                    }
                }
            }
            for chunk in present.chunks(self.settings.batch_size) {
                self.batch(&mut st, report, chunk).await?;
            }
        }
        report.full_round = round.is_full();
        report.why_full = round.why_full().map(|w| w.to_string());
        if round.is_full() {
            self.not_listed(&mut st, report).await?;
        }
        if !self.removals(&mut st, report).await? {
            return Ok(());
        }
        if let Some(cp) = round.checkpoint() {
            if !self.opts.simulate {
                self.save_checkpoint(cp, &config).await?;
            }
            report.complete = true;
        }
        Ok(())
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
        report: &mut EntraReport,
        key: &str,
        reason: &str,
    ) -> Result<(), EntraError> {
        let Some(row) = self.row(key).await? else {
            return Ok(());
        };
        let permanent = reason.eq_ignore_ascii_case("deleted");
        let delete = permanent && self.settings.delete;
        if delete || (self.settings.suspend && !row.suspended) {
            st.removals.push(Removal {
                key: key.to_string(),
                moodle_id: row.moodle_id,
                delete,
                why: format!("removed in Entra ({reason})"),
            });
        }
        report.trace(self.opts.verbose, || {
            format!("{key}: removed in Entra ({reason})")
        });
        Ok(())
    }

    /// A complete full round lists every user: linked users it did not list are gone.
    async fn not_listed(
        &self,
        st: &mut RunState,
        report: &mut EntraReport,
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
                    if self.settings.suspend {
                        report.trace(self.opts.verbose, || {
                            format!("{key}: not in the full round: suspend")
                        });
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
        report: &mut EntraReport,
    ) -> Result<bool, EntraError> {
        if st.removals.is_empty() {
            return Ok(true);
        }
        let linked = self.linked_count().await?.max(1);
        let share = st.removals.len() as f64 / linked as f64;
        if share > self.removal_max_share && !self.opts.force {
            let msg = format!(
                "{} of {linked} linked accounts ({:.1}%) would be suspended or deleted, above SYNC_REMOVAL_MAX_SHARE ({:.1}%); rerun with --force if that is right",
                st.removals.len(),
                share * 100.0,
                self.removal_max_share * 100.0
            );
            report.errors.push(msg.clone());
            report.removals_refused = Some(msg);
            return Ok(false);
        }
        let removals = std::mem::take(&mut st.removals);
        for r in &removals {
            report.trace(self.opts.verbose, || {
                format!(
                    "{}: {} ({})",
                    r.key,
                    if r.delete { "delete" } else { "suspend" },
                    r.why
                )
            });
        }
        let (deletes, suspends): (Vec<&Removal>, Vec<&Removal>) =
            removals.iter().partition(|r| r.delete);
        if self.opts.simulate {
            report.deleted += deletes.len() as u64;
            report.suspended += suspends.len() as u64;
            return Ok(true);
        }
        for chunk in suspends.chunks(self.settings.batch_size) {
            let ids: Vec<MoodleUserId> = chunk.iter().map(|r| MoodleUserId(r.moodle_id)).collect();
            report.moodle_writes += 1;
            let warnings = users::suspend(self.moodle, &ids).await?;
            let bad: HashSet<i64> = warnings.iter().filter_map(|w| w.itemid).collect();
            for r in chunk {
                if bad.contains(&r.moodle_id) {
                    report
                        .failed
                        .insert(r.key.clone(), "Moodle refused the suspension".into());
                    continue;
                }
                self.mark_suspended(&r.key, true).await?;
                report.suspended += 1;
            }
        }
        for chunk in deletes.chunks(self.settings.batch_size) {
            let ids: Vec<MoodleUserId> = chunk.iter().map(|r| MoodleUserId(r.moodle_id)).collect();
            report.moodle_writes += 1;
            users::delete(self.moodle, &ids).await?;
            for r in chunk {
                self.forget(&r.key, r.moodle_id).await?;
                report.deleted += 1;
            }
        }
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

    async fn forget(&self, key: &str, moodle_id: i64) -> Result<(), StoreError> {
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
    async fn in_group(&self, st: &mut RunState, key: &str) -> Result<bool, GraphError> {
        let CreateFilter::Group(group) = &self.settings.create_filter else {
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
            let members: Vec<Member> = self.graph.all(&path).await?;
            st.group = Some(
                members
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
            let info = crate::moodle::site::site_info(self.moodle).await?;
            st.protected = Some(crate::sync::protect::Protected::new(&info));
        }
        let rules: Vec<(MatchField, Vec<String>)> = match &self.settings.ent_link {
            Some(link) => vec![link.clone()],
            None => self.settings.matching.clone(),
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
                    .find_map(|mu| protected.matches(Some(mu.id.0), &mu.username))
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
        report: &mut EntraReport,
        chunk: &[EntraUser],
    ) -> Result<(), EntraError> {
        report.users_read += chunk.len() as u64;
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
        let mut decisions: Vec<(String, plan::Decision)> = Vec::new();
        for u in chunk {
            let key = plan::id(u);
            let f = found.get(&key).cloned().unwrap_or(Found::Nothing);
            let row = rows.get(&key);
            let needs_filter = row.is_none()
                && matches!(f, Found::Nothing)
                && self.settings.create
                && plan::enabled(u);
            let may_create = if needs_filter && self.settings.ent_link.is_none() {
                let group_ok = self.in_group(st, &key).await?;
                plan::admitted(self.settings, u, |_| group_ok)
            } else {
                true
            };
            let d = plan::present(self.settings, u, row, &f, may_create);
            if row.is_none() && matches!(f, Found::One(_)) && d.skip.is_none() {
                report.linked += 1;
            }
            if let Some(t) = &d.trace {
                report.trace(self.opts.verbose, || t.clone());
            }
            decisions.push((key, d));
        }
        self.apply(st, report, decisions).await
    }

    async fn apply(
        &self,
        st: &mut RunState,
        report: &mut EntraReport,
        decisions: Vec<(String, plan::Decision)>,
    ) -> Result<(), EntraError> {
        let verbose = self.opts.verbose;
        let mut creates: Vec<(String, Fields)> = Vec::new();
        let mut updates: Vec<(String, i64, Fields)> = Vec::new();
        let mut reenables: Vec<(String, i64)> = Vec::new();
        let mut remember: Vec<(String, i64, &plan::Decision, bool)> = Vec::new();
        for (key, d) in &decisions {
            if let Some(why) = &d.skip {
                report.skipped.insert(key.clone(), why.clone());
                report.trace(verbose, || format!("{key}: skipped: {why}"));
                continue;
            }
            if let Some(items) = &d.create {
                report.trace(verbose, || format!("{key}: create"));
                creates.push((key.clone(), items.clone()));
                continue;
            }
            let Some(id) = d.moodle_id else { continue };
            if !d.update.is_empty() {
                report.trace(verbose, || {
                    format!(
                        "{key}: update {}",
                        d.update
                            .iter()
                            .map(|(k, _)| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
                updates.push((key.clone(), id, d.update.clone()));
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
            if d.update.is_empty() && !d.reenable && !d.suspend && !d.remember {
                report.unchanged += 1;
            }
            if d.remember {
                remember.push((key.clone(), id, d, false));
            }
        }
        if self.opts.simulate {
            report.created += creates.len() as u64;
            report.updated += updates.len() as u64;
            report.reenabled += reenables.len() as u64;
            return Ok(());
        }
        let mut created: Vec<(String, i64)> = Vec::new();
        for group in by_budget(&creates, |(_, i)| i.len(), self.moodle.field_budget()) {
            created.extend(self.create_accounts(report, group).await?);
        }
        report.created += created.len() as u64;
        let items: Vec<(String, i64, Fields)> = updates
            .iter()
            .map(|(k, id, fields)| (k.clone(), *id, update_item(*id, fields)))
            .collect();
        let mut bad: HashSet<i64> = HashSet::new();
        for group in by_budget(&items, |(_, _, i)| i.len(), self.moodle.field_budget()) {
            let form: Vec<Fields> = group.iter().map(|(_, _, i)| i.clone()).collect();
            report.moodle_writes += 1;
            let warnings = users::update(self.moodle, &form).await?;
            bad.extend(warnings.iter().filter_map(|w| w.itemid));
        }
        for (key, id, _) in &updates {
            if bad.contains(id) {
                report
                    .failed
                    .insert(key.clone(), "Moodle refused the update".into());
                remember.retain(|(k, ..)| k != key);
            } else {
                report.updated += 1;
            }
        }
        if !reenables.is_empty() {
            let items: Vec<Vec<(String, String)>> = reenables
                .iter()
                .map(|(_, id)| {
                    vec![
                        ("id".to_string(), id.to_string()),
                        ("suspended".to_string(), "0".to_string()),
                    ]
                })
                .collect();
            report.moodle_writes += 1;
            let warnings = users::update(self.moodle, &items).await?;
            let bad: HashSet<i64> = warnings.iter().filter_map(|w| w.itemid).collect();
            for (key, id) in &reenables {
                if bad.contains(id) {
                    report.failed.insert(
                        key.clone(),
                        "Moodle refused to re-enable the account".into(),
                    );
                } else {
                    report.reenabled += 1;
                    self.mark_suspended(key, false).await?;
                }
            }
        }
        let by_key: HashMap<&str, &plan::Decision> =
            decisions.iter().map(|(k, d)| (k.as_str(), d)).collect();
        let mut rows: Vec<(String, i64, &plan::Decision)> = remember
            .iter()
            .map(|(k, id, d, _)| (k.clone(), *id, *d))
            .collect();
        for (key, id) in &created {
            if let Some(d) = by_key.get(key.as_str()) {
                rows.push((key.clone(), *id, d));
            }
        }
        self.remember(&rows).await?;
        Ok(())
    }

    /// `core_user_create_users` is all or nothing: a refused call is retried one by one, so one
    /// bad user does not hold the others back.
    async fn create_accounts(
        &self,
        report: &mut EntraReport,
        creates: &[(String, Fields)],
    ) -> Result<Vec<(String, i64)>, EntraError> {
        let items: Vec<Fields> = creates.iter().map(|(_, i)| i.clone()).collect();
        report.moodle_writes += 1;
        match users::create(self.moodle, &items).await {
            Ok(made) => Ok(creates
                .iter()
                .zip(made)
                .map(|((key, _), m)| (key.clone(), m.id.0))
                .collect()),
            Err(e) if creates.len() > 1 && item_error(&e) => {
                let mut out = Vec::new();
                for one in creates.chunks(1) {
                    out.extend(Box::pin(self.create_accounts(report, one)).await?);
                }
                Ok(out)
            }
            Err(e) if item_error(&e) => {
                report.failed.insert(
                    creates[0].0.clone(),
                    format!("Moodle refused the account: {e}"),
                );
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Link rows, forward (with what was written) and reverse, a batch per partition.
    async fn remember(&self, rows: &[(String, i64, &plan::Decision)]) -> Result<(), StoreError> {
        let config = self.settings.config_hash();
        for chunk in rows.chunks(100) {
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
                forward.push(BatchOp::Upsert(
                    Entity::new(ENTRA_USER_PARTITION, key_escape(key))
                        .with(MOODLE_USER_ID_PROP, *id)
                        .with("fields", fields.as_str())
                        .with("suspended", suspended)
                        .with("config_hash", config.as_str())
                        .with("source", "entra-sync"),
                ));
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

/// A refusal of the data of one item (duplicate, bad value), not of the whole call.
fn item_error(e: &MoodleError) -> bool {
    matches!(
        e,
        MoodleError::InvalidParameter { .. }
            | MoodleError::Duplicate(_)
            | MoodleError::Other { .. }
    )
}

/// Consecutive groups of `items` whose form fields stay within `budget` (one item at least).
fn by_budget<T>(items: &[T], size: impl Fn(&T) -> usize, budget: usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        if i > start && used + n > budget {
            out.push(&items[start..i]);
            start = i;
            used = 0;
        }
        used += n;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

fn update_item(id: i64, fields: &[(String, String)]) -> Vec<(String, String)> {
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
    let moodle_id = e.int(MOODLE_USER_ID_PROP)?;
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
    fn batches_stay_within_the_form_field_budget() {
        let items = vec![4usize, 4, 4, 20, 1];
        let groups = super::by_budget(&items, |n| *n, 10);
        assert_eq!(groups, vec![&[4, 4][..], &[4][..], &[20][..], &[1][..]]);
        assert!(super::by_budget(&Vec::<usize>::new(), |n| *n, 10).is_empty());
    }
}
