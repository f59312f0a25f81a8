//! A run's report: the plan plus outcomes, per entity, with reasons; stored in `runs`.

pub use super::entity::EntityKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Memberships/assignments taken away, users suspended or deleted.
    pub removed: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.created += o.created;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.skipped += o.skipped;
        self.failed += o.failed;
        self.removed += o.removed;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub entity: EntityKind,
    pub key: String,
    pub outcome: String,
    pub reason: String,
}

/// Options of the ENT manual-sync page, as the CLI, the admin page and the timer give them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncOptions {
    pub users: bool,
    pub cohorts: bool,
    pub roles: bool,
    /// One person by login or uid, to push a changed entry now.
    pub user: Option<String>,
    pub force: bool,
    /// Read every entry (and allow removals) but, unlike `force`, trust what the store says was
    /// written: the scheduled full pass (SYNC_FULL_SCHEDULE).
    #[serde(default)]
    pub full: bool,
    pub update_only: bool,
    pub simulate: bool,
    pub verbose: bool,
    pub no_cohort_lock: bool,
    /// Allow removals above SYNC_REMOVAL_MAX_SHARE.
    pub allow_mass_removal: bool,
    /// Moodle courses → Teams (when TEAMS_COURSES selects courses and Graph is configured).
    #[serde(default)]
    pub teams: bool,
    /// Only this Moodle course's team (implies `teams`).
    #[serde(default)]
    pub course: Option<i64>,
    /// What started the run (`schedule`, `page`, `cli`), shown in the admin page's history.
    #[serde(default)]
    pub trigger: Option<String>,
    /// Entra ID → Moodle users through Graph (`sync::entra`): asked for with `--entra`, and
    /// part of every run that syncs users when `ENTRA_SYNC=true`.
    #[serde(default)]
    pub entra: bool,
}

impl SyncOptions {
    /// Whether the run asked for this entity (memberships come with cohorts, team members with
    /// teams).
    pub fn selects(&self, entity: EntityKind) -> bool {
        match entity {
            EntityKind::Users => self.users,
            EntityKind::Cohorts | EntityKind::Memberships => self.cohorts,
            EntityKind::Roles => self.roles,
            EntityKind::Teams | EntityKind::TeamMembers => self.teams,
            EntityKind::EntraUsers | EntityKind::EntraPhotos => self.entra,
        }
    }

    /// Every entity, incremental: what the timer runs.
    pub fn scheduled() -> Self {
        SyncOptions {
            users: true,
            cohorts: true,
            roles: true,
            teams: true,
            trigger: Some("schedule".into()),
            ..Default::default()
        }
    }
}

const MAX_ISSUES: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub shard: Option<String>,
    pub started_at: String,
    pub duration_ms: u64,
    pub options: SyncOptions,
    pub counts: BTreeMap<EntityKind, Counts>,
    pub issues: Vec<Issue>,
    #[serde(default)]
    pub issues_dropped: u64,
    /// Search pages / file reads.
    pub source_requests: u64,
    pub entries_read: u64,
    pub moodle_calls: BTreeMap<String, u64>,
    /// Graph calls per kind (`POST /teams`, `GET /teams/{id}/members` …).
    #[serde(default)]
    pub graph_calls: BTreeMap<String, u64>,
    /// Whether every source read finished (removals and checkpoints depend on it).
    pub complete: bool,
    pub errors: Vec<String>,
    /// Not errors: things the admin should know (e.g. Moodle slowing down as it fills).
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub trace: Vec<String>,
    #[serde(default)]
    pub trace_dropped: u64,
    #[serde(skip)]
    pub trace_limit: usize,
    /// Entries of the retry set re-read by key this run (not counted in `entries_read`), and the
    /// source requests that took.
    #[serde(default)]
    pub retry_examined: u64,
    #[serde(default)]
    pub retry_requests: u64,
    /// Entries waiting in the retry set after this run, per reason (see `sync::retry`).
    #[serde(default)]
    pub waiting: BTreeMap<String, u64>,
    /// Keys marked for a retry by the batch in progress (see `sync::retry::Mark`).
    #[serde(skip)]
    pub retry_marks: BTreeMap<String, crate::sync::retry::Mark>,
    /// What the Entra pass did beyond the counts (entity `entra-users`), when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entra: Option<EntraSummary>,
}

/// The Entra pass's delta round and the operations the counts do not tell apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntraSummary {
    /// A full round (no checkpoint, expired delta state, `--force`), and why.
    pub full_round: bool,
    pub why_full: Option<String>,
    /// Every page was read and every decision applied: the delta link moved on (a simulation
    /// or a `--user` run never moves it).
    pub delta_advanced: bool,
    /// Users listed by the round (and re-read from the retry set), and `@removed` entries.
    pub users_read: u64,
    pub removed_read: u64,
    /// Entra users linked to an account that already existed (counted in `unchanged` or
    /// `updated` too).
    pub linked: u64,
    pub reenabled: u64,
    pub suspended: u64,
    pub deleted: u64,
    /// Suspensions and deletions not applied (share above the limit, or an incomplete read).
    pub removals_refused: Option<String>,
    /// Profile photos (`ENTRA_SYNC_PHOTO`), when on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photos: Option<PhotoSummary>,
}

/// What the photo step did (entity `entra-photos`; its counts say the same in the common columns).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhotoSummary {
    /// Users whose photo was looked at (metadata read), or would be (simulation).
    pub checked: u64,
    /// Uploaded to Moodle (simulation: would be checked and uploaded if changed).
    pub updated: u64,
    /// Same photo as last time (same etag, or same SHA-256 without one): nothing downloaded or uploaded.
    pub unchanged: u64,
    /// No photo in Entra (404).
    pub none: u64,
    /// Too large or not an image Moodle takes: not uploaded until the photo changes.
    pub refused: u64,
    /// Failed (Graph or Moodle): retried next run.
    pub failed: u64,
    /// Linked users re-checked because their last check was older than ENTRA_PHOTO_RECHECK_HOURS.
    pub rechecked: u64,
}

/// Functions that change something in Moodle.
pub fn is_write(function: &str) -> bool {
    !(function.contains("_get_")
        || function.contains("_search_")
        || function.ends_with("_get_site_info"))
}

impl RunReport {
    pub fn new(run_id: &str, options: &SyncOptions, trace_limit: usize) -> Self {
        RunReport {
            run_id: run_id.to_string(),
            started_at: chrono::Utc::now().to_rfc3339(),
            options: options.clone(),
            complete: true,
            trace_limit,
            ..Default::default()
        }
    }

    pub fn counts(&mut self, entity: EntityKind) -> &mut Counts {
        self.counts.entry(entity).or_default()
    }

    pub fn issue(
        &mut self,
        entity: EntityKind,
        key: &str,
        outcome: &str,
        reason: impl Into<String>,
    ) {
        let reason = reason.into();
        self.trace(|| format!("{entity} {key}: {outcome}: {reason}"));
        if self.issues.len() >= MAX_ISSUES {
            self.issues_dropped += 1;
            return;
        }
        self.issues.push(Issue {
            entity,
            key: key.into(),
            outcome: outcome.into(),
            reason,
        });
    }

    pub fn skipped(&mut self, entity: EntityKind, key: &str, reason: impl Into<String>) {
        self.counts(entity).skipped += 1;
        self.issue(entity, key, "skipped", reason);
    }

    /// Skipped because another directory entry claims the same Moodle account.
    pub fn conflict(&mut self, entity: EntityKind, key: &str, reason: impl Into<String>) {
        self.counts(entity).skipped += 1;
        self.issue(entity, key, "conflict", reason);
    }

    pub fn failed(&mut self, entity: EntityKind, key: &str, reason: impl Into<String>) {
        let reason = reason.into();
        self.counts(entity).failed += 1;
        self.mark_retry(key, &format!("{entity} failed"), &reason);
        self.issue(entity, key, "failed", reason);
    }

    /// Skipped for a reason that can change while the entry does not (update-only, a course or
    /// cohort not there yet): the entry joins the retry set.
    pub fn waiting(&mut self, entity: EntityKind, key: &str, why: &str, reason: impl Into<String>) {
        self.waiting_for(entity, key, why, reason, None);
    }

    /// [`Self::waiting`] for an entry that waits only for `need` (a Moodle context, see
    /// `sync::retry::Mark::needs`): the next runs re-read it only once that exists.
    pub fn waiting_for(
        &mut self,
        entity: EntityKind,
        key: &str,
        why: &str,
        reason: impl Into<String>,
        need: Option<String>,
    ) {
        let reason = reason.into();
        self.mark_retry_for(key, why, &reason, need);
        self.skipped(entity, key, reason);
    }

    fn mark_retry(&mut self, key: &str, why: &str, reason: &str) {
        self.mark_retry_for(key, why, reason, None);
    }

    fn mark_retry_for(&mut self, key: &str, why: &str, reason: &str, need: Option<String>) {
        self.retry_marks
            .entry(key.to_string())
            .or_insert_with(|| crate::sync::retry::Mark::new(why, reason))
            .add_need(need);
    }

    /// Per-entry trace line, built only for verbose runs.
    pub fn trace(&mut self, line: impl FnOnce() -> String) {
        if !self.options.verbose {
            return;
        }
        if self.trace.len() >= self.trace_limit.max(1) {
            self.trace_dropped += 1;
            return;
        }
        let l = line();
        tracing::debug!(run = %self.run_id, "{l}");
        self.trace.push(l);
    }

    pub fn moodle_writes(&self) -> u64 {
        self.moodle_calls
            .iter()
            .filter(|(f, _)| is_write(f))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn total(&self) -> Counts {
        let mut t = Counts::default();
        for c in self.counts.values() {
            t.add(c);
        }
        t
    }

    /// Fold a shard's report into the run's.
    pub fn merge(&mut self, o: &RunReport) {
        for (k, c) in &o.counts {
            self.counts(*k).add(c);
        }
        for i in &o.issues {
            if self.issues.len() < MAX_ISSUES {
                self.issues.push(i.clone());
            } else {
                self.issues_dropped += 1;
            }
        }
        self.issues_dropped += o.issues_dropped;
        self.source_requests += o.source_requests;
        self.entries_read += o.entries_read;
        for (f, n) in &o.moodle_calls {
            *self.moodle_calls.entry(f.clone()).or_default() += n;
        }
        for (f, n) in &o.graph_calls {
            *self.graph_calls.entry(f.clone()).or_default() += n;
        }
        self.complete &= o.complete;
        self.retry_examined += o.retry_examined;
        self.retry_requests += o.retry_requests;
        for (k, n) in &o.waiting {
            *self.waiting.entry(k.clone()).or_default() += n;
        }
        self.errors.extend(o.errors.iter().cloned());
        self.warnings.extend(o.warnings.iter().cloned());
        self.trace.extend(o.trace.iter().cloned());
        self.trace_dropped += o.trace_dropped;
        if o.entra.is_some() {
            // One shard runs the Entra pass.
            self.entra = o.entra.clone();
        }
    }

    /// Human-readable summary (CLI, logs).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mode = match (
            self.options.simulate,
            self.options.full && !self.options.force,
        ) {
            (true, _) => " (simulation: nothing written)",
            (false, true) => " (scheduled full pass)",
            (false, false) => "",
        };
        out.push_str(&format!(
            "sync run {}{mode}: {} in {:.1}s\n",
            self.run_id,
            if self.complete {
                "complete"
            } else {
                "INCOMPLETE"
            },
            self.duration_ms as f64 / 1000.0
        ));
        out.push_str(&format!(
            "{:<12} {:>8} {:>8} {:>9} {:>8} {:>7} {:>8}\n",
            "entity", "created", "updated", "unchanged", "skipped", "failed", "removed"
        ));
        for (k, c) in &self.counts {
            out.push_str(&format!(
                "{k:<12} {:>8} {:>8} {:>9} {:>8} {:>7} {:>8}\n",
                c.created, c.updated, c.unchanged, c.skipped, c.failed, c.removed
            ));
        }
        out.push_str(&format!(
            "source: {} entries in {} request(s); moodle: {} call(s), {} write(s)\n",
            self.entries_read,
            self.source_requests,
            self.moodle_calls.values().sum::<u64>(),
            self.moodle_writes()
        ));
        if !self.graph_calls.is_empty() {
            let writes: u64 = self
                .graph_calls
                .iter()
                .filter(|(k, _)| !k.starts_with("GET "))
                .map(|(_, n)| n)
                .sum();
            out.push_str(&format!(
                "graph: {} call(s), {writes} write(s)\n",
                self.graph_calls.values().sum::<u64>()
            ));
        }
        if let Some(e) = &self.entra {
            out.push_str(&format!(
                "entra: {} round{}, {} users read ({} removals); linked {}, re-enabled {}, suspended {}, deleted {}; delta link {}\n",
                if e.full_round { "full" } else { "incremental" },
                e.why_full.as_ref().map(|w| format!(" ({w})")).unwrap_or_default(),
                e.users_read,
                e.removed_read,
                e.linked,
                e.reenabled,
                e.suspended,
                e.deleted,
                if e.delta_advanced { "advanced" } else { "NOT advanced (the next run repeats this round)" },
            ));
            if let Some(r) = &e.removals_refused {
                out.push_str(&format!("entra: removals not applied: {r}\n"));
            }
            if let Some(p) = &e.photos {
                out.push_str(&format!(
                    "entra photos: {} checked ({} re-checked); {} {}, {} unchanged, {} none, {} refused, {} failed\n",
                    p.checked,
                    p.rechecked,
                    p.updated,
                    if self.options.simulate { "would be checked for an update" } else { "updated" },
                    p.unchanged,
                    p.none,
                    p.refused,
                    p.failed,
                ));
            }
        }
        let waiting: u64 = self.waiting.values().sum();
        if self.retry_examined > 0 {
            out.push_str(&format!(
                "retry set: {} waiting entr{} re-examined in {} request(s)\n",
                self.retry_examined,
                if self.retry_examined == 1 { "y" } else { "ies" },
                self.retry_requests
            ));
        }
        if waiting > 0 {
            let why: Vec<String> = self
                .waiting
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            out.push_str(&format!(
                "retry set: {waiting} entr{} waiting, re-examined while what they wait for can change ({})\n",
                if waiting == 1 { "y" } else { "ies" },
                why.join(", ")
            ));
        }
        for e in &self.errors {
            out.push_str(&format!("error: {e}\n"));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        for i in self.issues.iter().take(50) {
            out.push_str(&format!(
                "{} {} {}: {}\n",
                i.outcome, i.entity, i.key, i.reason
            ));
        }
        let more = self.issues.len().saturating_sub(50) as u64 + self.issues_dropped;
        if more > 0 {
            out.push_str(&format!("… {more} more issue(s) in the stored report\n"));
        }
        out
    }
}
