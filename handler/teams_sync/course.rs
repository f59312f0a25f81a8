//! One course's team, one step at a time: create it (group, then team, then the operation polled
//! across runs), then keep owners and members in step with the course's roles. Every step that
//! creates something in Graph is recorded in the course's link row before and after, so a
//! worker killed anywhere resumes without a second team.

use super::api::{self, Method, OpStatus, TeamsError};
use super::link::{self, CourseTeam, Stage};
use super::naming;
use super::pending;
use super::plan::{self, Role};
use super::settings::TeamTemplate;
use super::TeamsCtx;
use crate::moodle::courses::Course;
use crate::moodle::enrolled::{enrolled_users, EnrolledUser};
use crate::moodle::MoodleError;
use crate::store::StoreError;
use crate::sync::EntityKind;
use std::collections::BTreeMap;

/// Graph answers 404 for a group younger than this (team-put-teams.md: "less than 15 minutes").
pub const FRESH_GROUP_SECS: i64 = 15 * 60;
/// `members/add` takes at most this many members (conversationmembers-add.md).
pub const MAX_ADD: usize = 200;

pub const ENTITY: EntityKind = EntityKind::Teams;
pub const MEMBERS: EntityKind = EntityKind::TeamMembers;

#[derive(Debug, thiserror::Error)]
pub enum CourseError {
    #[error(transparent)]
    Graph(#[from] TeamsError),
    #[error("Moodle: {0}")]
    Moodle(#[from] MoodleError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What the course asks of its team, from its enrolments and the Entra links.
#[derive(Debug, Default)]
pub struct Wanted {
    pub roles: BTreeMap<String, Role>,
    /// Holders of an owner role, linked to Entra or not.
    pub owner_role_holders: usize,
    /// Enrolled users with a configured role but no Entra link (not in the team).
    pub unlinked: usize,
}

impl Wanted {
    pub fn owners(&self) -> impl Iterator<Item = &str> {
        self.roles
            .iter()
            .filter(|(_, r)| **r == Role::Owner)
            .map(|(u, _)| u.as_str())
    }
}

pub fn wanted(ctx: &TeamsCtx, users: &[EnrolledUser]) -> Wanted {
    let s = &ctx.settings;
    let owners: Vec<&str> = s.owner_roles.iter().map(String::as_str).collect();
    let members: Vec<&str> = s.member_roles.iter().map(String::as_str).collect();
    let mut w = Wanted::default();
    for u in users {
        let role = if u.has_role(&owners) {
            w.owner_role_holders += 1;
            Role::Owner
        } else if u.has_role(&members) {
            Role::Member
        } else {
            continue;
        };
        match ctx.links.entra_id(u.id.get()) {
            Some(id) => {
                w.roles.insert(id.to_string(), role);
            }
            None => w.unlinked += 1,
        }
    }
    w
}

fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::CreatingGroup => "creating the group",
        Stage::GroupCreated => "group created",
        Stage::CreatingTeam => "creating the team",
        Stage::Provisioning => "team being provisioned",
        Stage::Active => "active",
        Stage::Archived => "archived",
    }
}

/// One course, start to finish for this run. Errors of this course only are reported by the
/// caller as this course's failure; `TeamsError::Fatal` stops the run.
pub async fn sync_course(ctx: &mut TeamsCtx, course: &Course) -> Result<(), CourseError> {
    let key = course.id.get().to_string();
    let users = {
        let _slot = ctx.moodle_slot().await;
        enrolled_users(&ctx.moodle, course.id).await?
    };
    let want = wanted(ctx, &users);
    let display = naming::display_name(&ctx.settings, course);
    let nick = naming::mail_nickname(&ctx.settings, course);
    let archive = (ctx.settings.archive_ended && ctx.now >= 0 && course.ended(ctx.now))
        || (ctx.settings.archive_hidden && course.hidden());
    let mut link = link::load(&ctx.store, course.id.get()).await?;
    ctx.report.trace(|| {
        format!(
            "teams {key}: {} owner(s), {} member(s) linked to Entra, {} unlinked; team {}",
            want.owners().count(),
            want.roles.len() - want.owners().count(),
            want.unlinked,
            link.as_ref().map(|l| stage_name(l.stage)).unwrap_or("none")
        )
    });
    let Some(l) = link.as_mut() else {
        if archive {
            ctx.report.counts(ENTITY).skipped += 1;
            ctx.report.issue(
                ENTITY,
                &key,
                "skipped",
                "course ended or hidden: no team created (TEAMS_ARCHIVE_*)",
            );
            return Ok(());
        }
        let Some(owner) = want.owners().next().map(str::to_string) else {
            // Not an error: the course waits for its first teacher with an Entra account.
            ctx.report.counts(ENTITY).skipped += 1;
            let why = if want.owner_role_holders == 0 {
                pending::no_owner_role(&ctx.settings.owner_roles)
            } else {
                pending::owners_unlinked(want.owner_role_holders)
            };
            let since = pending::mark(
                &ctx.store,
                &ctx.pending,
                course.id.get(),
                &course.fullname,
                &why,
                ctx.now,
                ctx.opts.simulate,
            )
            .await?;
            ctx.report.issue(
                ENTITY,
                &key,
                "pending",
                format!("{why} (pending since {since})"),
            );
            return Ok(());
        };
        if ctx.opts.simulate {
            ctx.report.counts(ENTITY).created += 1;
            ctx.report.issue(
                ENTITY,
                &key,
                "would create",
                format!(
                    "team {display:?} ({nick}) with owner {owner} and {} other member(s)",
                    want.roles.len() - 1
                ),
            );
            return Ok(());
        }
        pending::clear(&ctx.store, &ctx.pending, course.id.get()).await?;
        let first = match ctx.settings.template {
            TeamTemplate::Standard => Stage::CreatingGroup,
            TeamTemplate::EducationClass => Stage::CreatingTeam,
        };
        let mut fresh = CourseTeam::new(course.id.get(), nick.clone(), display.clone(), first);
        link::save(&ctx.store, &fresh).await?;
        create(ctx, course, &mut fresh, &owner).await?;
        return after_create(ctx, fresh, &want, &display, archive).await;
    };
    if matches!(l.stage, Stage::Active | Stage::Archived) {
        let l = l.clone();
        return keep_in_step(ctx, l, &want, &display, archive).await;
    }
    if ctx.opts.simulate {
        ctx.report.counts(ENTITY).skipped += 1;
        ctx.report.issue(
            ENTITY,
            &key,
            "waiting",
            format!(
                "team {}: not continued in a simulation",
                stage_name(l.stage)
            ),
        );
        return Ok(());
    }
    let mut l = l.clone();
    match want.owners().next().map(str::to_string) {
        Some(owner) => {
            pending::clear(&ctx.store, &ctx.pending, course.id.get()).await?;
            create(ctx, course, &mut l, &owner).await?
        }
        None if matches!(l.stage, Stage::Provisioning | Stage::GroupCreated) => {
            create(ctx, course, &mut l, "").await?
        }
        None => {
            ctx.report.counts(ENTITY).skipped += 1;
            let why = pending::OWNER_UNLINKED_SINCE;
            let since = pending::mark(
                &ctx.store,
                &ctx.pending,
                course.id.get(),
                &course.fullname,
                why,
                ctx.now,
                ctx.opts.simulate,
            )
            .await?;
            ctx.report.issue(
                ENTITY,
                &key,
                "pending",
                format!("{why} (pending since {since})"),
            );
            return Ok(());
        }
    }
    after_create(ctx, l, &want, &display, archive).await
}

async fn after_create(
    ctx: &mut TeamsCtx,
    l: CourseTeam,
    want: &Wanted,
    display: &str,
    archive: bool,
) -> Result<(), CourseError> {
    if l.stage == Stage::Active {
        // Usable now: the other members go in at once rather than one run later.
        return keep_in_step(ctx, l, want, display, archive).await;
    }
    Ok(())
}

/// Advance creation by as many steps as this run may take; leaves `l` saved at its new stage.
async fn create(
    ctx: &mut TeamsCtx,
    course: &Course,
    l: &mut CourseTeam,
    owner: &str,
) -> Result<(), CourseError> {
    let key = course.id.get().to_string();
    let template = ctx.settings.template.graph_name();
    loop {
        match l.stage {
            Stage::CreatingGroup => {
                // A group with our nickname is ours: created by a run that died before saying so.
                if let Some(id) = find_group(ctx, &l.mail_nickname, None).await? {
                    l.team_id = Some(id);
                    l.stage = Stage::GroupCreated;
                    l.group_created_at = ctx.now;
                    link::save(&ctx.store, l).await?;
                    ctx.report.trace(|| {
                        format!(
                            "teams {key}: group {} found by mailNickname, reused",
                            l.mail_nickname
                        )
                    });
                    continue;
                }
                let body = api::group_body(
                    &l.display_name,
                    &naming::description(course),
                    &l.mail_nickname,
                    &ctx.settings.visibility,
                    owner,
                );
                let r = ctx.send(Method::Post, "/groups".into(), Some(body)).await?;
                if r.status != 201 && r.status != 200 {
                    return Err(TeamsError::Failed(format!(
                        "creating the group: {}",
                        api::error_text(&r)
                    ))
                    .into());
                }
                let id = r
                    .body
                    .as_ref()
                    .and_then(|b| b["id"].as_str())
                    .ok_or_else(|| {
                        TeamsError::Failed("group created without an id in the answer".into())
                    })?;
                l.team_id = Some(id.to_string());
                l.stage = Stage::GroupCreated;
                l.group_created_at = ctx.now;
                link::save(&ctx.store, l).await?;
            }
            Stage::GroupCreated => {
                let group = l.team_id.clone().unwrap_or_default();
                let body = api::team_from_group_body(template, &group);
                let r = fresh_retry(ctx, l, Method::Post, "/teams".into(), Some(body)).await?;
                match r {
                    None => {
                        report_waiting(ctx, &key, l, "the group is minutes old and Graph answers 404 (replication); the team is requested again next run");
                        return Ok(());
                    }
                    Some(r) if r.status == 202 => {
                        let (_, op) = api::accepted(&r)?;
                        l.operation = Some(op);
                        l.polled_at = ctx.now;
                        l.stage = Stage::Provisioning;
                        link::save(&ctx.store, l).await?;
                        created(ctx, &key, l);
                        return Ok(());
                    }
                    Some(r) if r.status == 409 => {
                        // The group already has a team (our earlier request went through).
                        l.operation = None;
                        l.polled_at = 0;
                        l.stage = Stage::Provisioning;
                        link::save(&ctx.store, l).await?;
                    }
                    Some(r) => {
                        return Err(TeamsError::Failed(format!(
                            "creating the team from its group: {}",
                            api::error_text(&r)
                        ))
                        .into());
                    }
                }
            }
            Stage::CreatingTeam => {
                if let Some(id) = find_group(ctx, &l.display_name, Some(course.id.get())).await? {
                    l.team_id = Some(id);
                    l.operation = None;
                    l.polled_at = 0;
                    // Its age is unknown: counted from now, so a replicating team is waited for.
                    l.group_created_at = ctx.now;
                    l.stage = Stage::Provisioning;
                    link::save(&ctx.store, l).await?;
                    continue;
                }
                if owner.is_empty() {
                    return Ok(());
                }
                let body = api::team_from_template_body(
                    template,
                    &l.display_name,
                    &naming::description(course),
                    &ctx.settings.visibility,
                    owner,
                );
                let r = ctx.send(Method::Post, "/teams".into(), Some(body)).await?;
                if r.status != 202 {
                    return Err(TeamsError::Failed(format!(
                        "creating the team: {}",
                        api::error_text(&r)
                    ))
                    .into());
                }
                let (team, op) = api::accepted(&r)?;
                l.team_id = Some(team);
                l.operation = Some(op);
                l.polled_at = ctx.now;
                l.group_created_at = ctx.now;
                l.stage = Stage::Provisioning;
                link::save(&ctx.store, l).await?;
                created(ctx, &key, l);
                return Ok(());
            }
            Stage::Provisioning => {
                let due = l.polled_at + ctx.settings.poll_secs as i64;
                if ctx.now < due {
                    let why = format!("team creation in progress; next poll in {} s (Graph asks for 30 s or more between polls)", due - ctx.now);
                    report_waiting(ctx, &key, l, &why);
                    return Ok(());
                }
                l.polled_at = ctx.now;
                let team = l.team_id.clone().unwrap_or_default();
                let status = match &l.operation {
                    Some(op) => {
                        let r = ctx.send(Method::Get, op.clone(), None).await?;
                        if r.status != 200 {
                            return Err(TeamsError::Failed(format!(
                                "polling {op}: {}",
                                api::error_text(&r)
                            ))
                            .into());
                        }
                        api::operation_status(r.body.as_ref().unwrap_or(&serde_json::Value::Null))
                    }
                    // Found again after a crash, or a 409: the team itself says whether it is there.
                    None => match ctx.send(Method::Get, format!("/teams/{team}"), None).await {
                        Ok(r) if r.status == 200 => OpStatus::Succeeded,
                        // Past the replication delay, no team means the creation did not take:
                        // asked for again (a 409 brings the course back here if it did).
                        Ok(_) | Err(TeamsError::NotFound(_))
                            if ctx.now - l.group_created_at >= FRESH_GROUP_SECS =>
                        {
                            OpStatus::Failed(format!(
                                "no team for group {team} {} minutes after it was made",
                                FRESH_GROUP_SECS / 60
                            ))
                        }
                        Ok(_) | Err(TeamsError::NotFound(_)) => OpStatus::Running,
                        Err(e) => return Err(e.into()),
                    },
                };
                match status {
                    OpStatus::Running => {
                        link::save(&ctx.store, l).await?;
                        report_waiting(
                            ctx,
                            &key,
                            l,
                            "team creation still in progress at Graph; polled again next run",
                        );
                        return Ok(());
                    }
                    OpStatus::Succeeded => {
                        l.stage = Stage::Active;
                        l.operation = None;
                        l.failures = 0;
                        link::save(&ctx.store, l).await?;
                        ctx.made_ready(&team);
                        ctx.report
                            .trace(|| format!("teams {key}: team {team} ready"));
                        return Ok(());
                    }
                    OpStatus::Failed(why) => {
                        // The group (if ours) stays: the team is requested from it again.
                        l.failures += 1;
                        l.operation = None;
                        l.stage = match ctx.settings.template {
                            TeamTemplate::Standard => Stage::GroupCreated,
                            TeamTemplate::EducationClass => Stage::CreatingTeam,
                        };
                        link::save(&ctx.store, l).await?;
                        ctx.report.counts(ENTITY).failed += 1;
                        ctx.report.issue(
                            ENTITY,
                            &key,
                            "failed",
                            format!("team creation failed at Graph ({why}); requested again next run (failure {})", l.failures),
                        );
                        return Ok(());
                    }
                }
            }
            Stage::Active | Stage::Archived => return Ok(()),
        }
    }
}

fn created(ctx: &mut TeamsCtx, key: &str, l: &CourseTeam) {
    ctx.report.counts(ENTITY).created += 1;
    ctx.report.issue(
        ENTITY,
        key,
        "created",
        format!(
            "team {:?} ({}) requested; Graph creates it asynchronously, polled from the next run",
            l.display_name, l.mail_nickname
        ),
    );
}

fn report_waiting(ctx: &mut TeamsCtx, key: &str, l: &CourseTeam, why: &str) {
    ctx.report.counts(ENTITY).skipped += 1;
    ctx.report.issue(
        ENTITY,
        key,
        "waiting",
        format!("{}: {why}", stage_name(l.stage)),
    );
}

/// `GET /groups?$filter=…`: by mailNickname, or by display name with our course marker in the
/// description (class teams, whose nickname Graph chooses). Shape from group-list.md; the
/// fixtures have no group listing.
async fn find_group(
    ctx: &mut TeamsCtx,
    value: &str,
    course_marker: Option<i64>,
) -> Result<Option<String>, CourseError> {
    let filter = match course_marker {
        None => format!("mailNickname eq {}", api::odata_quote(value)),
        Some(_) => format!("displayName eq {}", api::odata_quote(value)),
    };
    let path = format!(
        "/groups?$filter={}&$select=id,displayName,mailNickname,description",
        urlencode(&filter)
    );
    let r = ctx.send(Method::Get, path, None).await?;
    if r.status != 200 {
        return Err(
            TeamsError::Failed(format!("looking the group up: {}", api::error_text(&r))).into(),
        );
    }
    let marker = course_marker.map(naming::course_marker);
    let found = r
        .body
        .as_ref()
        .and_then(|b| b["value"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .find(|g| match &marker {
            None => true,
            Some(m) => g["description"]
                .as_str()
                .is_some_and(|d| d.contains(m.as_str())),
        })
        .and_then(|g| g["id"].as_str().map(str::to_string));
    Ok(found)
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A call on a team whose group is minutes old: 404 is tried again `TEAMS_FRESH_GROUP_TRIES`
/// times, `TEAMS_FRESH_GROUP_WAIT_SECS` apart (the README's pattern), then `None`: re-queued to
/// the next run instead of holding the worker.
async fn fresh_retry(
    ctx: &mut TeamsCtx,
    l: &CourseTeam,
    method: Method,
    path: String,
    body: Option<serde_json::Value>,
) -> Result<Option<api::GraphReply>, CourseError> {
    let tries = ctx.settings.fresh_group_tries.max(1);
    for attempt in 1..=tries {
        match ctx.send(method, path.clone(), body.clone()).await {
            Ok(r) if r.status != 404 => return Ok(Some(r)),
            Ok(_) | Err(TeamsError::NotFound(_)) => {
                let fresh = ctx.now - l.group_created_at < FRESH_GROUP_SECS;
                if !fresh {
                    return Err(TeamsError::Failed(format!(
                        "{} {path}: 404 for a group created more than 15 minutes ago",
                        method.as_str()
                    ))
                    .into());
                }
                if attempt < tries {
                    tokio::time::sleep(std::time::Duration::from_secs(
                        ctx.settings.fresh_group_wait_secs,
                    ))
                    .await;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Members of the team, every page.
async fn members(
    ctx: &mut TeamsCtx,
    l: &CourseTeam,
) -> Result<Option<Vec<plan::Current>>, CourseError> {
    let team = l.team_id.clone().unwrap_or_default();
    let mut out = Vec::new();
    let Some(first) =
        fresh_retry(ctx, l, Method::Get, format!("/teams/{team}/members"), None).await?
    else {
        return Ok(None);
    };
    let mut r = first;
    loop {
        if r.status != 200 {
            return Err(TeamsError::Failed(format!(
                "listing the members: {}",
                api::error_text(&r)
            ))
            .into());
        }
        let body = r.body.clone().unwrap_or_default();
        out.extend(api::current_members(&body));
        match api::next_link(&body) {
            Some(next) => r = ctx.send(Method::Get, next, None).await?,
            None => return Ok(Some(out)),
        }
    }
}

/// An existing team: rename, archive, and owners/members as the course has them. A course whose
/// fingerprint matches the last applied one costs no Graph call.
async fn keep_in_step(
    ctx: &mut TeamsCtx,
    mut l: CourseTeam,
    want: &Wanted,
    display: &str,
    archive: bool,
) -> Result<(), CourseError> {
    let key = l.course_id.to_string();
    let team = l.team_id.clone().unwrap_or_default();
    if l.stage == Stage::Archived && archive {
        ctx.report.counts(ENTITY).unchanged += 1;
        ctx.report
            .trace(|| format!("teams {key}: archived team, left as it is"));
        return Ok(());
    }
    let mut unarchived = false;
    if l.stage == Stage::Archived {
        // The course came back (end date moved, visible again, or archiving turned off).
        if ctx.opts.simulate {
            ctx.report.counts(ENTITY).updated += 1;
            ctx.report.issue(
                ENTITY,
                &key,
                "would unarchive",
                "course running and visible again",
            );
            return Ok(());
        }
        let r = ctx
            .send(Method::Post, format!("/teams/{team}/unarchive"), None)
            .await?;
        if r.status / 100 != 2 {
            return Err(TeamsError::Failed(format!("unarchiving: {}", api::error_text(&r))).into());
        }
        l.stage = Stage::Active;
        // Memberships were frozen while archived: compared with the course again below.
        l.applied = None;
        link::save(&ctx.store, &l).await?;
        unarchived = true;
    }
    let fp = plan::fingerprint(display, archive, &want.roles);
    if !ctx.opts.force && l.applied.as_deref() == Some(fp.as_str()) && l.refused.is_empty() {
        ctx.report.counts(ENTITY).unchanged += 1;
        ctx.report
            .trace(|| format!("teams {key}: unchanged since the last run"));
        return Ok(());
    }
    let mut changes = Vec::new();
    if unarchived {
        changes.push("unarchived (course running and visible again)".to_string());
    }
    let mut failures = Vec::new();
    if l.display_name != display {
        if ctx.opts.simulate {
            changes.push(format!("would rename {:?} → {display:?}", l.display_name));
        } else {
            let body = serde_json::json!({"displayName": display});
            let r = ctx
                .send(Method::Patch, format!("/teams/{team}"), Some(body))
                .await?;
            if r.status / 100 == 2 {
                changes.push(format!("renamed {:?} → {display:?}", l.display_name));
                l.display_name = display.to_string();
            } else {
                failures.push(format!("rename: {}", api::error_text(&r)));
            }
        }
    }
    if archive {
        if ctx.opts.simulate {
            ctx.report.counts(ENTITY).updated += 1;
            ctx.report.issue(
                ENTITY,
                &key,
                "would archive",
                "course ended or hidden (TEAMS_ARCHIVE_*)",
            );
            return Ok(());
        }
        let body = serde_json::json!({"shouldSetSpoSiteReadOnlyForMembers": true});
        let r = ctx
            .send(Method::Post, format!("/teams/{team}/archive"), Some(body))
            .await?;
        if r.status / 100 != 2 {
            return Err(TeamsError::Failed(format!("archiving: {}", api::error_text(&r))).into());
        }
        l.stage = Stage::Archived;
        l.applied = Some(fp);
        link::save(&ctx.store, &l).await?;
        ctx.report.counts(ENTITY).updated += 1;
        ctx.report.issue(
            ENTITY,
            &key,
            "archived",
            "course ended or hidden (TEAMS_ARCHIVE_*): team archived, memberships frozen",
        );
        return Ok(());
    }
    let Some(current) = members(ctx, &l).await? else {
        report_waiting(
            ctx,
            &key,
            &l,
            "the team's group is minutes old and Graph answers 404; members are added next run",
        );
        return Ok(());
    };
    let p = plan::plan(&want.roles, &current);
    let simulate = ctx.opts.simulate;
    let verb = |s: &str| {
        if simulate {
            format!("would {s}")
        } else {
            s.to_string()
        }
    };
    if let Some(kept) = &p.kept_last_owner {
        ctx.report.issue(
            MEMBERS,
            &key,
            "kept",
            format!("{kept} stays owner although the course no longer makes them one: a team needs an owner"),
        );
    }
    let mut refused = Vec::new();
    if !p.add.is_empty() {
        changes.push(format!("{} {} member(s)", verb("add"), p.add.len()));
    }
    if !ctx.opts.simulate {
        for chunk in p.add.chunks(MAX_ADD) {
            let body = api::members_add_body(chunk);
            let r = ctx
                .send(
                    Method::Post,
                    format!("/teams/{team}/members/add"),
                    Some(body),
                )
                .await?;
            match r.status {
                200 | 207 => {
                    let failed =
                        api::add_failures(r.body.as_ref().unwrap_or(&serde_json::Value::Null));
                    ctx.report.counts(MEMBERS).created += (chunk.len() - failed.len()) as u64;
                    refused.extend(failed);
                }
                _ => failures.push(format!(
                    "adding {} member(s): {}",
                    chunk.len(),
                    api::error_text(&r)
                )),
            }
        }
    }
    for (c, owner) in p
        .promote
        .iter()
        .map(|c| (c, true))
        .chain(p.demote.iter().map(|c| (c, false)))
    {
        changes.push(format!(
            "{} {}",
            verb(if owner { "promote" } else { "demote" }),
            c.user_id
        ));
        if ctx.opts.simulate {
            continue;
        }
        let path = format!("/teams/{team}/members/{}", c.membership_id);
        let r = ctx
            .send(Method::Patch, path, Some(api::role_body(owner)))
            .await?;
        if r.status / 100 == 2 {
            ctx.report.counts(MEMBERS).updated += 1;
        } else {
            failures.push(format!("role of {}: {}", c.user_id, api::error_text(&r)));
        }
    }
    if !p.remove.is_empty() {
        changes.push(format!("{} {} member(s)", verb("remove"), p.remove.len()));
    }
    if !ctx.opts.simulate {
        for c in &p.remove {
            let path = format!("/teams/{team}/members/{}", c.membership_id);
            match ctx.send(Method::Delete, path, None).await {
                Ok(r) if r.status / 100 == 2 => ctx.report.counts(MEMBERS).removed += 1,
                // Gone already: what we wanted.
                Err(TeamsError::NotFound(_)) => {}
                Ok(r) => failures.push(format!("removing {}: {}", c.user_id, api::error_text(&r))),
                Err(e) => return Err(e.into()),
            }
        }
    }
    for (u, code) in &refused {
        ctx.report.counts(MEMBERS).failed += 1;
        ctx.report.issue(
            MEMBERS,
            &format!("{key}/{u}"),
            "failed",
            format!("members/add refused {u} ({code}); only this user is tried again next run"),
        );
    }
    for f in &failures {
        ctx.report.counts(MEMBERS).failed += 1;
        ctx.report.issue(MEMBERS, &key, "failed", f.clone());
    }
    if ctx.opts.simulate {
        if changes.is_empty() {
            ctx.report.counts(ENTITY).unchanged += 1;
        } else {
            ctx.report.counts(ENTITY).updated += 1;
            ctx.report
                .issue(ENTITY, &key, "would update", changes.join("; "));
        }
        return Ok(());
    }
    l.applied = (failures.is_empty() && refused.is_empty()).then_some(fp);
    l.refused = refused;
    link::save(&ctx.store, &l).await?;
    if changes.is_empty() {
        ctx.report.counts(ENTITY).unchanged += 1;
        ctx.report
            .trace(|| format!("teams {key}: members already as the course has them"));
    } else {
        ctx.report.counts(ENTITY).updated += 1;
        ctx.report
            .issue(ENTITY, &key, "updated", changes.join("; "));
    }
    Ok(())
}
