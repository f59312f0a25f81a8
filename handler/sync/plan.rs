//! The plan of one batch, without any I/O: from the source records, what the bridge remembers
//! of each person (mapping rows) and what Moodle holds (lookups, read by the engine before),
//! each person gets operations with their reasons. A real run applies the plan (`apply`); a
//! simulation tallies it and stops there, so nothing in the writing code knows about it.
//!
//! Planning is staged like the writes: users first, then (given who has an account once the
//! users are written, or would have in a simulation) cohort memberships and role assignments.

use super::entity::EntityKind;
use super::protect::{self, Protected};
use super::record::{CohortRef, PersonRecord, RoleRef, StoredRole};
use super::report::{RunReport, SyncOptions};
use super::state::MappingRow;
use crate::ids::{MoodleCohortId, MoodleRoleId, MoodleUserId};
use crate::moodle::cohorts::NewCohort;
use crate::moodle::roles::ContextLevel;
use crate::moodle::users::MoodleUser;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A line of the report a decision carries, recorded under its entity and source key.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// A verbose trace line (whole text).
    Trace(String),
    Skipped(String),
    /// Skipped: another entry claims the same Moodle account.
    Conflict(String),
    /// Skipped for a reason that may change while the entry does not: joins the retry set.
    /// `needs`: the one thing it waits for, when that is a Moodle context (`level:idnumber`).
    Waiting {
        why: &'static str,
        reason: String,
        needs: Option<String>,
    },
}

impl Note {
    pub fn record(self, report: &mut RunReport, entity: EntityKind, key: &str) {
        match self {
            Note::Trace(line) => report.trace(|| line),
            Note::Skipped(reason) => report.skipped(entity, key, reason),
            Note::Conflict(reason) => report.conflict(entity, key, reason),
            Note::Waiting { why, reason, needs } => {
                report.waiting_for(entity, key, why, reason, needs)
            }
        }
    }
}

/// A person's Moodle account: one Moodle holds, or the one the user plan creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Account {
    Id(MoodleUserId),
    Planned,
}

/// A cohort: one Moodle holds, or one the cohort plan creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cohort {
    Id(MoodleCohortId),
    Planned,
}

// ---------------------------------------------------------------- users

#[derive(Debug, Clone, PartialEq)]
pub enum UserOp {
    /// Nothing to write.
    Keep(MoodleUserId),
    /// Write these fields (never empty).
    Update(MoodleUserId, Vec<&'static str>),
    /// The planned deletion date has come: suspend the account.
    Suspend(MoodleUserId),
    Create,
    /// Not applied (the notes say why).
    Skip,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserDecision {
    pub op: UserOp,
    pub notes: Vec<Note>,
}

/// What Moodle holds for the people of a batch the mapping rows do not answer for.
#[derive(Debug, Clone, Default)]
pub struct MoodleView {
    pub by_username: HashMap<String, MoodleUser>,
    pub by_idnumber: HashMap<String, Vec<MoodleUser>>,
    /// Moodle user id → source key of the mapping row holding it (for the ids asked about).
    pub owners: HashMap<MoodleUserId, String>,
}

/// The account the mapping row vouches for: the bridge wrote it and nothing asks to look again.
fn known<'a>(
    row: Option<&'a MappingRow>,
    opts: &SyncOptions,
) -> Option<(&'a MappingRow, MoodleUserId)> {
    row.filter(|row| !opts.force && !row.suspended && row.fields.is_some())
        .and_then(|row| row.moodle_id.map(|id| (row, id)))
}

/// Whether planning this person needs Moodle's answer (by username, then idnumber).
pub fn needs_lookup(row: Option<&MappingRow>, leaving: bool, opts: &SyncOptions) -> bool {
    !leaving && known(row, opts).is_none()
}

/// The account found by idnumber alone whose owner (another mapping row?) must be known.
pub fn owner_needed(r: &PersonRecord, view: &MoodleView) -> Option<MoodleUserId> {
    if view.by_username.contains_key(&r.fields.username) || r.fields.idnumber.is_empty() {
        return None;
    }
    match view.by_idnumber.get(&r.fields.idnumber)?.as_slice() {
        [mu] if mu.username != r.fields.username => Some(mu.id),
        _ => None,
    }
}

/// One person's user operation. `leaving`: the planned deletion date has come and leavers are
/// suspended on that date.
pub fn user(
    r: &PersonRecord,
    row: Option<&MappingRow>,
    leaving: bool,
    view: &MoodleView,
    protected: &Protected,
    opts: &SyncOptions,
) -> UserDecision {
    let mut notes = Vec::new();
    let op = if leaving {
        leaver(r, row, opts, &mut notes)
    } else if let Some((row, id)) = known(row, opts) {
        if row.fingerprint == r.fingerprint() || !opts.users {
            UserOp::Keep(id)
        } else {
            let diff = r
                .fields
                .diff_fields(row.fields.as_ref().expect("known rows have fields"));
            update_or_keep(id, diff)
        }
    } else {
        from_moodle(r, view, protected, opts, &mut notes)
    };
    let key = &r.key;
    match &op {
        UserOp::Keep(_) if opts.users => notes.push(Note::Trace(format!("users {key}: unchanged"))),
        UserOp::Update(_, diff) => notes.push(Note::Trace(format!(
            "users {key}: update {}",
            diff.join(", ")
        ))),
        UserOp::Create => notes.push(Note::Trace(format!(
            "users {key}: create {:?}",
            r.fields.username
        ))),
        UserOp::Suspend(_) => notes.push(Note::Trace(format!(
            "users {key}: planned deletion date {} has come: suspend",
            r.leaves_on.map(|d| d.to_string()).unwrap_or_default()
        ))),
        UserOp::Keep(_) | UserOp::Skip => {}
    }
    UserDecision { op, notes }
}

fn update_or_keep(id: MoodleUserId, diff: Vec<&'static str>) -> UserOp {
    if diff.is_empty() {
        UserOp::Keep(id)
    } else {
        UserOp::Update(id, diff)
    }
}

/// Suspend the account the bridge manages (once), never create one.
fn leaver(
    r: &PersonRecord,
    row: Option<&MappingRow>,
    opts: &SyncOptions,
    notes: &mut Vec<Note>,
) -> UserOp {
    let date = r.leaves_on.map(|d| d.format("%d/%m/%Y").to_string());
    match row.and_then(|row| row.moodle_id.map(|id| (row.suspended, id))) {
        Some((false, id)) if opts.users => UserOp::Suspend(id),
        Some((_, id)) => {
            notes.push(Note::Trace(format!(
                "users {}: left on {date:?}, already suspended",
                r.key
            )));
            UserOp::Keep(id)
        }
        None => {
            notes.push(Note::Skipped(format!(
                "planned deletion date {} has passed: no account created",
                date.unwrap_or_default()
            )));
            UserOp::Skip
        }
    }
}

fn diff_with(r: &PersonRecord, mu: &MoodleUser, opts: &SyncOptions) -> UserOp {
    if !opts.users {
        return UserOp::Keep(mu.id);
    }
    update_or_keep(mu.id, r.fields.diff(mu))
}

/// A person the bridge has no usable row for: what Moodle holds decides.
fn from_moodle(
    r: &PersonRecord,
    view: &MoodleView,
    protected: &Protected,
    opts: &SyncOptions,
    notes: &mut Vec<Note>,
) -> UserOp {
    let f = &r.fields;
    if let Some(mu) = view.by_username.get(&f.username) {
        if let Some(label) = protected.matches(Some(mu.id), &mu.username) {
            notes.push(Note::Skipped(protect::reason(label)));
            return UserOp::Skip;
        }
        if !mu.idnumber.is_empty() && !f.idnumber.is_empty() && mu.idnumber != f.idnumber {
            notes.push(Note::Skipped(format!(
                "username {:?} belongs to another Moodle account (idnumber {:?}, not {:?})",
                mu.username, mu.idnumber, f.idnumber
            )));
            return UserOp::Skip;
        }
        notes.push(Note::Trace(format!(
            "users {}: found in Moodle by username (id {})",
            r.key, mu.id
        )));
        return diff_with(r, mu, opts);
    }
    if let Some(list) = view
        .by_idnumber
        .get(&f.idnumber)
        .filter(|_| !f.idnumber.is_empty())
    {
        let owner = owner_needed(r, view).and_then(|id| view.owners.get(&id));
        if let Some(label) = list
            .iter()
            .find_map(|mu| protected.matches(Some(mu.id), &mu.username))
        {
            notes.push(Note::Skipped(format!(
                "{} (found by idnumber {:?})",
                protect::reason(label),
                f.idnumber
            )));
            return UserOp::Skip;
        }
        if let Some(owner) = owner.filter(|o| **o != r.key) {
            notes.push(Note::Conflict(format!(
                "conflict: Moodle account {:?} (idnumber {:?}) already belongs to {owner}: not applied",
                list[0].username, f.idnumber
            )));
            return UserOp::Skip;
        }
        if list.len() > 1 {
            notes.push(Note::Skipped(format!(
                "{} Moodle accounts share idnumber {:?}",
                list.len(),
                f.idnumber
            )));
            return UserOp::Skip;
        }
        notes.push(Note::Trace(format!(
            "users {}: found in Moodle by idnumber (id {}, username {:?})",
            r.key, list[0].id, list[0].username
        )));
        return diff_with(r, &list[0], opts);
    }
    if !opts.users {
        notes.push(Note::Waiting {
            why: "not in Moodle yet",
            reason: "not in Moodle yet (users were not selected)".into(),
            needs: None,
        });
        return UserOp::Skip;
    }
    if opts.update_only {
        notes.push(Note::Waiting {
            why: "update only",
            reason: "update only: no Moodle account to update".into(),
            needs: None,
        });
        return UserOp::Skip;
    }
    UserOp::Create
}

// ---------------------------------------------------------------- cohorts

/// Which of `wanted` (cohort key → cohort) exist, and which to create. With the cohort lock
/// (default) only cohorts whose idnumber carries the bridge's prefix are used; without it, an
/// existing cohort whose idnumber is the bare key is adopted. `index`: idnumber → cohort, what
/// Moodle holds plus what this pass planned to create.
pub struct CohortPlan {
    pub found: HashMap<String, Cohort>,
    pub create: Vec<(String, NewCohort)>,
    pub notes: Vec<(String, Note)>,
}

pub fn cohorts(
    wanted: &BTreeMap<String, CohortRef>,
    index: &HashMap<String, Cohort>,
    prefix: &str,
    no_cohort_lock: bool,
) -> CohortPlan {
    let mut plan = CohortPlan {
        found: HashMap::new(),
        create: Vec::new(),
        notes: Vec::new(),
    };
    for (key, c) in wanted {
        let ours = format!("{prefix}{key}");
        // Without the lock, a cohort someone else made for the same key takes precedence.
        if let Some(id) = index.get(key).filter(|_| no_cohort_lock) {
            plan.notes.push((
                key.clone(),
                Note::Trace(format!(
                    "cohorts {key}: adopting the existing cohort {key:?} (cohort lock disabled)"
                )),
            ));
            plan.found.insert(key.clone(), *id);
        } else if let Some(id) = index.get(&ours) {
            plan.found.insert(key.clone(), *id);
        } else {
            if index.contains_key(key) {
                plan.notes.push((key.clone(), Note::Trace(format!("cohorts {key}: a cohort with idnumber {key:?} exists but was not created by the bridge (locked); using {ours:?}"))));
            }
            plan.create.push((
                key.clone(),
                NewCohort {
                    name: c.name.clone(),
                    idnumber: ours,
                    description: "Synchronised from the ENT directory".into(),
                },
            ));
        }
    }
    plan
}

// ---------------------------------------------------------------- cohort memberships

/// One person's membership change against what the bridge gave before.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberChange {
    pub desired: BTreeSet<String>,
    pub add: BTreeSet<String>,
    pub remove: BTreeSet<String>,
}

/// Memberships from the person's class values, differential against the mapping row (all of
/// them when `force` or when there is no row). Returns the changes per person (None: no
/// account) and the cohorts they involve.
pub fn member_changes(
    recs: &[PersonRecord],
    rows: &[Option<MappingRow>],
    accounts: &[Option<Account>],
    force: bool,
) -> (Vec<Option<MemberChange>>, BTreeMap<String, CohortRef>) {
    let mut wanted: BTreeMap<String, CohortRef> = BTreeMap::new();
    let mut changes = Vec::with_capacity(recs.len());
    for (i, r) in recs.iter().enumerate() {
        if accounts[i].is_none() {
            changes.push(None);
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
        changes.push(Some(MemberChange {
            desired,
            add,
            remove,
        }));
    }
    (changes, wanted)
}

/// One membership to add or remove; `key` is the source key the report files it under.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberOp {
    pub person: usize,
    pub key: String,
    pub cohort_key: String,
    pub cohort: Cohort,
    pub user: Account,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MembershipPlan {
    pub adds: Vec<MemberOp>,
    pub removes: Vec<MemberOp>,
    /// Per person, the cohort keys the bridge has given once the plan is applied.
    pub applied: Vec<Option<BTreeSet<String>>>,
    pub notes: Vec<(String, Note)>,
    pub unchanged: u64,
}

/// The membership operations; `current`: the memberships Moodle holds, read on a forced pass
/// (so only the missing ones are written, and counted).
pub fn memberships(
    recs: &[PersonRecord],
    changes: &[Option<MemberChange>],
    accounts: &[Option<Account>],
    cohorts: &HashMap<String, Cohort>,
    current: &HashSet<(MoodleCohortId, MoodleUserId)>,
) -> MembershipPlan {
    let mut plan = MembershipPlan {
        applied: vec![None; recs.len()],
        ..Default::default()
    };
    for (i, change) in changes.iter().enumerate() {
        let (Some(change), Some(user)) = (change, accounts[i]) else {
            continue;
        };
        let key = &recs[i].key;
        let mut applied = change.desired.clone();
        let mut planned = false;
        for k in &change.add {
            match cohorts.get(k) {
                Some(Cohort::Id(cid)) if matches!(user, Account::Id(uid) if current.contains(&(*cid, uid))) =>
                    {}
                Some(cohort) => {
                    plan.notes.push((
                        key.clone(),
                        Note::Trace(format!("memberships {key}: add to {k}")),
                    ));
                    plan.adds.push(MemberOp {
                        person: i,
                        key: key.clone(),
                        cohort_key: k.clone(),
                        cohort: *cohort,
                        user,
                    });
                    planned = true;
                }
                None => {
                    planned = true;
                    applied.remove(k);
                    plan.notes.push((
                        key.clone(),
                        Note::Waiting {
                            why: "cohort missing",
                            reason: format!("cohort {k} is not available"),
                            needs: None,
                        },
                    ));
                }
            }
        }
        for k in &change.remove {
            if let Some(cohort) = cohorts.get(k) {
                plan.notes.push((
                    key.clone(),
                    Note::Trace(format!("memberships {key}: remove from {k}")),
                ));
                plan.removes.push(MemberOp {
                    person: i,
                    key: key.clone(),
                    cohort_key: k.clone(),
                    cohort: *cohort,
                    user,
                });
                planned = true;
            }
        }
        if !planned && change.remove.is_empty() {
            plan.unchanged += 1;
        }
        plan.applied[i] = Some(applied);
    }
    plan
}

// ---------------------------------------------------------------- role assignments

/// A role assignment a person had from the bridge, as remembered; `Err`: the stored label
/// cannot be read (it is kept, never unassigned blindly).
fn previous_roles(row: Option<&MappingRow>) -> impl Iterator<Item = &StoredRole> {
    row.into_iter().flat_map(|row| row.roles.iter())
}

/// The contexts (level, idnumber) the role plan needs resolved to Moodle instance ids, in the
/// order first needed.
pub fn role_contexts(
    recs: &[PersonRecord],
    rows: &[Option<MappingRow>],
    accounts: &[Option<Account>],
    role_id: &dyn Fn(&str) -> Option<MoodleRoleId>,
) -> Vec<(ContextLevel, String)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut need = |level: ContextLevel, context: &str| {
        if seen.insert((level, context.to_string())) {
            out.push((level, context.to_string()));
        }
    };
    for (i, r) in recs.iter().enumerate() {
        if accounts[i].is_none() {
            continue;
        }
        let prev = rows[i].as_ref().map(|row| &row.roles);
        let desired: BTreeSet<String> = r
            .roles
            .iter()
            .chain(&r.held_roles)
            .map(RoleRef::label)
            .collect();
        for rr in &r.roles {
            let given = prev.is_some_and(|p| p.contains(rr.label().as_str()));
            if !given && role_id(&rr.role).is_some() {
                need(rr.level, &rr.context);
            }
        }
        for stored in previous_roles(rows[i].as_ref()) {
            if let (false, Ok(rr)) = (desired.contains(stored.label()), stored.parsed()) {
                if role_id(&rr.role).is_some() {
                    need(rr.level, &rr.context);
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoleOp {
    pub person: usize,
    pub label: String,
    pub roleid: MoodleRoleId,
    pub user: Account,
    pub level: ContextLevel,
    pub instance: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolePlan {
    pub assigns: Vec<RoleOp>,
    pub unassigns: Vec<RoleOp>,
    /// Per person, the role assignments the bridge has given once the plan is applied.
    pub applied: Vec<Option<BTreeSet<StoredRole>>>,
    pub notes: Vec<(String, Note)>,
    pub unchanged: u64,
}

/// Role assignments from the role rules, differential against the mapping row. Moodle has no
/// web service listing role assignments of users who are not enrolled, so even a forced pass
/// trusts what the bridge assigned before (assigning is idempotent: re-sending would only count
/// a change that is not one). `contexts`: (level, idnumber) → instance id or why not.
pub fn roles(
    recs: &[PersonRecord],
    rows: &[Option<MappingRow>],
    accounts: &[Option<Account>],
    role_id: &dyn Fn(&str) -> Option<MoodleRoleId>,
    contexts: &HashMap<(ContextLevel, String), Result<i64, String>>,
) -> RolePlan {
    let mut plan = RolePlan {
        applied: vec![None; recs.len()],
        ..Default::default()
    };
    let context = |level: ContextLevel, idnumber: &str| {
        contexts
            .get(&(level, idnumber.to_string()))
            .cloned()
            .unwrap_or_else(|| Err(format!("context {idnumber:?} was not resolved")))
    };
    for (i, r) in recs.iter().enumerate() {
        let Some(user) = accounts[i] else { continue };
        let key = &r.key;
        let given = |label: &str| {
            rows[i]
                .as_ref()
                .is_some_and(|row| row.roles.contains(label))
        };
        let desired: BTreeMap<String, &RoleRef> =
            r.roles.iter().map(|rr| (rr.label(), rr)).collect();
        let mut applied: BTreeSet<StoredRole> = BTreeSet::new();
        let mut changed = false;
        for (label, rr) in &desired {
            if given(label) {
                applied.insert(StoredRole::from(*rr));
                continue;
            }
            let Some(roleid) = role_id(&rr.role) else {
                plan.notes.push((
                    key.clone(),
                    Note::Skipped(format!(
                        "{label}: role {:?} has no id in SYNC_ROLE_IDS",
                        rr.role
                    )),
                ));
                continue;
            };
            match context(rr.level, &rr.context) {
                Ok(instance) => {
                    changed = true;
                    plan.notes.push((
                        key.clone(),
                        Note::Trace(format!("roles {key}: assign {label}")),
                    ));
                    plan.assigns.push(RoleOp {
                        person: i,
                        label: label.clone(),
                        roleid,
                        user,
                        level: rr.level,
                        instance,
                    });
                    applied.insert(StoredRole::from(*rr));
                }
                Err(why) => plan.notes.push((
                    key.clone(),
                    Note::Waiting {
                        why: "role context missing",
                        reason: format!("{label}: {why}"),
                        needs: Some(format!("{}:{}", rr.level.as_str(), rr.context)),
                    },
                )),
            }
        }
        let held: BTreeSet<String> = r.held_roles.iter().map(RoleRef::label).collect();
        for stored in previous_roles(rows[i].as_ref()) {
            let label = stored.label();
            if desired.contains_key(label) {
                continue;
            }
            if held.contains(label) {
                // The source contradicts itself about this one: Moodle keeps what it holds.
                applied.insert(stored.clone());
                continue;
            }
            let rr = match stored.parsed() {
                Ok(rr) => rr,
                Err(why) => {
                    // Never unassign what cannot be read: keep it, and say so.
                    applied.insert(stored.clone());
                    plan.notes.push((
                        key.clone(),
                        Note::Skipped(format!(
                            "remembered role assignment {label:?} cannot be read ({why}): kept"
                        )),
                    ));
                    continue;
                }
            };
            let (Some(roleid), Ok(instance)) = (role_id(&rr.role), context(rr.level, &rr.context))
            else {
                plan.notes.push((
                    key.clone(),
                    Note::Trace(format!(
                        "roles {key}: {label} no longer resolvable, forgotten"
                    )),
                ));
                continue;
            };
            changed = true;
            plan.notes.push((
                key.clone(),
                Note::Trace(format!("roles {key}: unassign {label}")),
            ));
            plan.unassigns.push(RoleOp {
                person: i,
                label: label.to_string(),
                roleid,
                user,
                level: rr.level,
                instance,
            });
        }
        if !changed && !desired.is_empty() {
            plan.unchanged += 1;
        }
        plan.applied[i] = Some(applied);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moodle::site::SiteInfo;
    use crate::moodle::users::UserFields;

    fn person(key: &str, mail: &str) -> PersonRecord {
        PersonRecord {
            key: key.into(),
            dn: format!("uid={key},ou=people"),
            fields: UserFields {
                username: format!("{key}.login"),
                firstname: "Léa".into(),
                lastname: "Martin".into(),
                email: mail.into(),
                idnumber: format!("IDN-{key}"),
                auth: "cas".into(),
                ..Default::default()
            },
            cohorts: BTreeSet::new(),
            roles: BTreeSet::new(),
            held_roles: BTreeSet::new(),
            leaves_on: None,
            notes: Vec::new(),
            shortened: Vec::new(),
            conflicts: Vec::new(),
        }
    }

    /// The row the bridge wrote after applying `r` to Moodle account `id`.
    fn row_of(r: &PersonRecord, id: i64) -> MappingRow {
        MappingRow {
            key: r.key.clone(),
            moodle_id: Some(MoodleUserId::new(id).unwrap()),
            username: r.fields.username.clone(),
            fields: Some(r.fields.clone()),
            fingerprint: r.fingerprint(),
            cohorts: r.cohorts.iter().map(|c| c.key.clone()).collect(),
            roles: r.roles.iter().map(StoredRole::from).collect(),
            suspended: false,
        }
    }

    fn protected() -> Protected {
        Protected::new(&SiteInfo {
            userid: MoodleUserId::new(3).unwrap(),
            username: "bridge_ws".into(),
            userissiteadmin: false,
            siteid: Some(1),
        })
    }

    fn opts() -> SyncOptions {
        SyncOptions::scheduled()
    }

    fn moodle_user(id: i64, r: &PersonRecord) -> MoodleUser {
        MoodleUser {
            id: MoodleUserId::new(id).unwrap(),
            username: r.fields.username.clone(),
            firstname: r.fields.firstname.clone(),
            lastname: r.fields.lastname.clone(),
            email: r.fields.email.clone(),
            idnumber: r.fields.idnumber.clone(),
            institution: String::new(),
            department: String::new(),
            auth: r.fields.auth.clone(),
            suspended: false,
            customfields: Vec::new(),
        }
    }

    fn plan_one(r: &PersonRecord, row: Option<&MappingRow>, view: &MoodleView) -> UserDecision {
        user(r, row, false, view, &protected(), &opts())
    }

    #[test]
    fn no_change_means_no_operation_and_no_lookup() {
        let r = person("F1", "lea@example.org");
        let row = row_of(&r, 50);
        assert!(!needs_lookup(Some(&row), false, &opts()));
        let d = plan_one(&r, Some(&row), &MoodleView::default());
        assert_eq!(d.op, UserOp::Keep(MoodleUserId::new(50).unwrap()));
        assert_eq!(d.notes, vec![Note::Trace("users F1: unchanged".into())]);
    }

    #[test]
    fn a_changed_mail_is_an_update_of_that_field_with_its_reason() {
        let before = person("F1", "lea@example.org");
        let row = row_of(&before, 50);
        let after = person("F1", "lea.martin@example.org");
        let d = plan_one(&after, Some(&row), &MoodleView::default());
        assert_eq!(
            d.op,
            UserOp::Update(MoodleUserId::new(50).unwrap(), vec!["email"])
        );
        assert_eq!(d.notes, vec![Note::Trace("users F1: update email".into())]);
    }

    #[test]
    fn unknown_people_are_looked_up_then_created_or_matched() {
        let r = person("F2", "hugo@example.org");
        assert!(needs_lookup(None, false, &opts()));
        let d = plan_one(&r, None, &MoodleView::default());
        assert_eq!(d.op, UserOp::Create);
        assert!(matches!(&d.notes[..], [Note::Trace(t)] if t.contains("create")));

        // Found by username with the same fields: adopted, nothing to write.
        let mut view = MoodleView::default();
        view.by_username
            .insert(r.fields.username.clone(), moodle_user(70, &r));
        assert_eq!(
            plan_one(&r, None, &view).op,
            UserOp::Keep(MoodleUserId::new(70).unwrap())
        );

        // Update-only never creates: the entry waits.
        let d = user(
            &r,
            None,
            false,
            &MoodleView::default(),
            &protected(),
            &SyncOptions {
                update_only: true,
                ..opts()
            },
        );
        assert_eq!(d.op, UserOp::Skip);
        assert!(matches!(
            &d.notes[..],
            [Note::Waiting {
                why: "update only",
                ..
            }]
        ));
    }

    #[test]
    fn a_login_of_another_account_or_a_protected_one_is_skipped_with_why() {
        let r = person("F3", "x@example.org");
        let mut other = moodle_user(71, &r);
        other.idnumber = "SOMEONE-ELSE".into();
        let mut view = MoodleView::default();
        view.by_username.insert(r.fields.username.clone(), other);
        let d = plan_one(&r, None, &view);
        assert_eq!(d.op, UserOp::Skip);
        assert!(matches!(&d.notes[..], [Note::Skipped(s)] if s.contains("belongs to another")));

        let mut admin = moodle_user(2, &r);
        admin.username = r.fields.username.clone();
        let mut view = MoodleView::default();
        view.by_username.insert(r.fields.username.clone(), admin);
        let d = plan_one(&r, None, &view);
        assert_eq!(d.op, UserOp::Skip);
        assert!(matches!(&d.notes[..], [Note::Skipped(s)] if s.contains("protected")));
    }

    #[test]
    fn an_account_found_by_idnumber_that_another_row_holds_is_a_conflict() {
        let r = person("F4", "x@example.org");
        let mut mu = moodle_user(72, &r);
        mu.username = "renamed.login".into();
        let mut view = MoodleView::default();
        view.by_idnumber
            .insert(r.fields.idnumber.clone(), vec![mu.clone()]);
        assert_eq!(
            owner_needed(&r, &view),
            Some(MoodleUserId::new(72).unwrap())
        );
        view.owners
            .insert(MoodleUserId::new(72).unwrap(), "F9".into());
        let d = plan_one(&r, None, &view);
        assert_eq!(d.op, UserOp::Skip);
        assert!(matches!(&d.notes[..], [Note::Conflict(s)] if s.contains("already belongs to F9")));
        // Held by this very person's key: matched, and the login is updated.
        view.owners
            .insert(MoodleUserId::new(72).unwrap(), "F4".into());
        assert_eq!(
            plan_one(&r, None, &view).op,
            UserOp::Update(MoodleUserId::new(72).unwrap(), vec!["username"])
        );
    }

    #[test]
    fn a_leaver_is_suspended_once_and_never_created() {
        let mut r = person("F5", "x@example.org");
        r.leaves_on = chrono::NaiveDate::from_ymd_opt(2026, 7, 1);
        let row = row_of(&r, 80);
        let d = user(
            &r,
            Some(&row),
            true,
            &MoodleView::default(),
            &protected(),
            &opts(),
        );
        assert_eq!(d.op, UserOp::Suspend(MoodleUserId::new(80).unwrap()));
        let suspended = MappingRow {
            suspended: true,
            ..row
        };
        let d = user(
            &r,
            Some(&suspended),
            true,
            &MoodleView::default(),
            &protected(),
            &opts(),
        );
        assert_eq!(d.op, UserOp::Keep(MoodleUserId::new(80).unwrap()));
        let d = user(
            &r,
            None,
            true,
            &MoodleView::default(),
            &protected(),
            &opts(),
        );
        assert_eq!(d.op, UserOp::Skip);
        assert!(matches!(&d.notes[..], [Note::Skipped(s)] if s.contains("01/07/2026")));
    }

    fn cohort(key: &str) -> CohortRef {
        CohortRef {
            key: key.into(),
            name: key.into(),
        }
    }

    #[test]
    fn memberships_follow_the_class_and_a_planned_account_joins_too() {
        let mut moved = person("F6", "x@example.org");
        moved.cohorts = [cohort("S$6A")].into();
        let mut row = row_of(&moved, 90);
        row.cohorts = ["S$5B".to_string()].into();
        let mut new = person("F7", "y@example.org");
        new.cohorts = [cohort("S$6A")].into();
        let recs = vec![moved, new];
        let rows = vec![Some(row), None];
        let accounts = vec![
            Some(Account::Id(MoodleUserId::new(90).unwrap())),
            Some(Account::Planned),
        ];
        let (changes, wanted) = member_changes(&recs, &rows, &accounts, false);
        assert_eq!(
            wanted.keys().cloned().collect::<Vec<_>>(),
            vec!["S$5B", "S$6A"]
        );
        let ids: HashMap<String, Cohort> = [
            (
                "S$5B".to_string(),
                Cohort::Id(MoodleCohortId::new(1).unwrap()),
            ),
            ("S$6A".to_string(), Cohort::Planned),
        ]
        .into();
        let plan = memberships(&recs, &changes, &accounts, &ids, &HashSet::new());
        let adds: Vec<(&str, &str)> = plan
            .adds
            .iter()
            .map(|m| (m.key.as_str(), m.cohort_key.as_str()))
            .collect();
        assert_eq!(adds, vec![("F6", "S$6A"), ("F7", "S$6A")]);
        assert_eq!(plan.removes.len(), 1);
        assert_eq!(
            plan.removes[0].cohort,
            Cohort::Id(MoodleCohortId::new(1).unwrap())
        );
        assert_eq!(plan.applied[0], Some(["S$6A".to_string()].into()));

        // Nothing changed since: no operation at all.
        let rows = vec![Some(row_of(&recs[0], 90)), Some(row_of(&recs[1], 91))];
        let accounts = vec![
            Some(Account::Id(MoodleUserId::new(90).unwrap())),
            Some(Account::Id(MoodleUserId::new(91).unwrap())),
        ];
        let (changes, wanted) = member_changes(&recs, &rows, &accounts, false);
        assert!(wanted.is_empty());
        let plan = memberships(&recs, &changes, &accounts, &HashMap::new(), &HashSet::new());
        assert!(plan.adds.is_empty() && plan.removes.is_empty());
        assert_eq!(plan.unchanged, 2);
    }

    #[test]
    fn a_cohort_without_the_prefix_is_only_adopted_without_the_lock() {
        let wanted: BTreeMap<String, CohortRef> = [("S$6A".to_string(), cohort("S$6A"))].into();
        let index: HashMap<String, Cohort> = [(
            "S$6A".to_string(),
            Cohort::Id(MoodleCohortId::new(5).unwrap()),
        )]
        .into();
        let locked = cohorts(&wanted, &index, "ent_", false);
        assert!(locked.found.is_empty());
        assert_eq!(locked.create[0].1.idnumber, "ent_S$6A");
        let open = cohorts(&wanted, &index, "ent_", true);
        assert_eq!(
            open.found["S$6A"],
            Cohort::Id(MoodleCohortId::new(5).unwrap())
        );
        assert!(open.create.is_empty());
    }

    #[test]
    fn roles_are_assigned_once_unassigned_when_gone_and_unreadable_labels_kept() {
        let teacher = RoleRef {
            role: "editingteacher".into(),
            level: ContextLevel::Course,
            context: "S$6A".into(),
        };
        let mut r = person("F8", "x@example.org");
        r.roles = [teacher.clone()].into();
        let mut row = row_of(&r, 95);
        row.roles = [
            StoredRole::read("editingteacher@course:S$5B"),
            StoredRole::read("editingteacher@planet:S$4C"),
        ]
        .into();
        let recs = vec![r];
        let rows = vec![Some(row)];
        let accounts = vec![Some(Account::Id(MoodleUserId::new(95).unwrap()))];
        let role_id = |s: &str| (s == "editingteacher").then(|| MoodleRoleId::new(3).unwrap());
        let needed = role_contexts(&recs, &rows, &accounts, &role_id);
        assert_eq!(
            needed,
            vec![
                (ContextLevel::Course, "S$6A".to_string()),
                (ContextLevel::Course, "S$5B".to_string())
            ]
        );
        let contexts: HashMap<(ContextLevel, String), Result<i64, String>> = [
            ((ContextLevel::Course, "S$6A".to_string()), Ok(600)),
            ((ContextLevel::Course, "S$5B".to_string()), Ok(500)),
        ]
        .into();
        let plan = roles(&recs, &rows, &accounts, &role_id, &contexts);
        assert_eq!(plan.assigns.len(), 1);
        assert_eq!(plan.assigns[0].instance, 600);
        assert_eq!(plan.unassigns.len(), 1);
        assert_eq!(plan.unassigns[0].label, "editingteacher@course:S$5B");
        let applied = plan.applied[0].clone().unwrap();
        assert!(applied.contains(teacher.label().as_str()));
        assert!(applied.contains("editingteacher@planet:S$4C"), "kept");
        assert!(plan
            .notes
            .iter()
            .any(|(_, n)| matches!(n, Note::Skipped(s) if s.contains("cannot be read"))));
    }
}
