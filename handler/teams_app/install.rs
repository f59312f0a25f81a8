//! Installing the published app, app-only: in every synced team (`teams/{id}/installedApps`)
//! and for users (`users/{id}/teamwork/installedApps`), upgraded (`…/{installation}/upgrade`)
//! where an older version is there; a user's personal chat with the bot is then read and stored
//! as their conversation, so notifications can reach them before they ever wrote to the bot.
//! Users are named by Entra object id, UPN or Moodle username ([`UserRef`]). A target already at
//! the catalog's version is skipped; 409 means already installed. Each target gets its own line
//! in the report; one failing target does not stop the others, a missing permission stops all
//! (every other target would fail the same way).

use super::catalog::{lookup_path, parse_lookup, semver_key, url_quote, CatalogApp};
use crate::bot::conversations::{self, ConversationKind, ConversationRef};
use crate::graph::{GraphClient, GraphError, Repeat};
use crate::store::{tables, SharedStore};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Team,
    User,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Installed,
    Upgraded {
        from: String,
    },
    /// Already at the catalog's version: nothing sent.
    Current,
    /// 409: installed meanwhile.
    AlreadyInstalled,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetReport {
    pub kind: TargetKind,
    /// As given (a team id, or the user's object id, UPN or Moodle username).
    pub id: String,
    /// A user named otherwise than by object id: the Entra object id it resolved to.
    pub object_id: Option<String>,
    pub outcome: Outcome,
    /// Users: the personal chat stored as their conversation.
    pub chat_id: Option<String>,
}

impl std::fmt::Display for TargetReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            TargetKind::Team => "team",
            TargetKind::User => "user",
        };
        let what = match &self.outcome {
            Outcome::Installed => "installed".to_string(),
            Outcome::Upgraded { from } => format!("upgraded from {from}"),
            Outcome::Current => "already at the current version".to_string(),
            Outcome::AlreadyInstalled => "already installed (409)".to_string(),
            Outcome::Failed(e) => format!("FAILED: {e}"),
        };
        write!(f, "{kind} {}", self.id)?;
        if let Some(oid) = self.object_id.as_ref().filter(|o| **o != self.id) {
            write!(f, " ({oid})")?;
        }
        write!(f, ": {what}")?;
        if let Some(c) = &self.chat_id {
            write!(f, " (chat {c} stored)")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default)]
pub struct InstallReport {
    pub version: String,
    pub catalog_id: String,
    pub targets: Vec<TargetReport>,
    /// Set when a missing permission (or credentials) stopped the run.
    pub stopped: Option<String>,
}

impl InstallReport {
    pub fn failed(&self) -> usize {
        self.targets
            .iter()
            .filter(|t| matches!(t.outcome, Outcome::Failed(_)))
            .count()
    }
}

/// Teams the course sync made and keeps (`mappings`, one row per course with its team's stage).
pub async fn synced_teams(store: &SharedStore) -> Result<Vec<String>, crate::store::StoreError> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = store
            .query(tables::MAPPINGS, COURSE_TEAMS, next.as_deref(), 500)
            .await?;
        for e in &page.entities {
            if e.str("stage") == Some("active") {
                if let Some(t) = e.str("team_id") {
                    if !out.iter().any(|o: &String| o.eq_ignore_ascii_case(t)) {
                        out.push(t.to_string());
                    }
                }
            }
        }
        match page.next {
            Some(c) => next = Some(c),
            None => break,
        }
    }
    Ok(out)
}

/// The course → team rows of the Teams sync.
pub const COURSE_TEAMS: &str = crate::teams_sync::link::COURSE_PK;

pub struct Installer<'a> {
    pub graph: &'a GraphClient,
    pub store: &'a SharedStore,
    /// Resolves `--users` given as Moodle usernames (none: only object ids and UPNs).
    pub moodle: Option<&'a crate::moodle::MoodleClient>,
    pub app: CatalogApp,
    /// The catalog's published version (what targets are brought to).
    pub version: String,
    /// Bot Framework id of the bot (`28:<app id>`), stored with the conversations.
    pub bot_id: Option<String>,
    pub tenant_id: Option<String>,
    pub service_url: String,
}

/// The app as the catalog has it, read app-only (`AppCatalog.Read.All`).
pub async fn catalog_app(
    graph: &GraphClient,
    external_id: &str,
) -> Result<Option<CatalogApp>, GraphError> {
    let body: Value = graph.get_json(&lookup_path(external_id)).await?;
    Ok(parse_lookup(&body))
}

fn stop_all(e: &GraphError) -> bool {
    e.is_fatal()
}

/// How `--users` names someone: parsed at the boundary, resolved to an object id by
/// [`Installer::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// An Entra object id (GUID), lower case.
    ObjectId(String),
    /// A UPN (`name@domain`), tried in Entra first, then as a Moodle username.
    Upn(String),
    /// A Moodle username (Moodle's rule: `a-z 0-9 _ - . @`), lower case.
    MoodleUsername(String),
}

impl UserRef {
    pub fn parse(raw: &str) -> Result<UserRef, String> {
        let t = raw.trim();
        if t.is_empty() {
            return Err("--users: an empty name".into());
        }
        if let Ok(id) = uuid::Uuid::parse_str(t) {
            if !t.starts_with('{') && !t.starts_with("urn:") {
                return Ok(UserRef::ObjectId(id.hyphenated().to_string()));
            }
        }
        let lower = t.to_lowercase();
        let moodle_ok = lower
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.@".contains(c));
        if lower.contains('@') && !lower.starts_with('@') && !lower.ends_with('@') {
            // UPNs may hold characters Moodle refuses in usernames (`'`, `+`…).
            if lower
                .chars()
                .any(|c| c.is_whitespace() || "/?#%".contains(c))
            {
                return Err(format!("--users: {t:?} is not a UPN"));
            }
            return Ok(UserRef::Upn(lower));
        }
        if moodle_ok && !lower.starts_with('@') && !lower.ends_with('@') {
            return Ok(UserRef::MoodleUsername(lower));
        }
        Err(format!(
            "--users: {t:?} is neither an Entra object id, a UPN nor a Moodle username"
        ))
    }

    pub fn as_given(&self) -> &str {
        match self {
            UserRef::ObjectId(s) | UserRef::Upn(s) | UserRef::MoodleUsername(s) => s,
        }
    }
}

/// `upn` as one path segment: unreserved characters and `@` as they are, the rest percent-encoded.
fn path_segment(upn: &str) -> String {
    upn.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A lookup behind a user's name failed: Graph (may stop the run) or Moodle / the store (that
/// target's line only).
#[derive(Debug)]
pub enum ResolveError {
    Graph(GraphError),
    Lookup(String),
}

impl From<GraphError> for ResolveError {
    fn from(e: GraphError) -> Self {
        ResolveError::Graph(e)
    }
}

/// Why a named user has no object id (a line of the report, not a stop).
fn unresolved(r: &UserRef, moodle: bool) -> String {
    match r {
        UserRef::ObjectId(_) => unreachable!("object ids need no resolution"),
        UserRef::Upn(u) if moodle => {
            format!("no Entra user has the UPN {u}, and no Moodle user with that username is linked to one")
        }
        UserRef::Upn(u) => format!("no Entra user has the UPN {u}"),
        UserRef::MoodleUsername(u) if moodle => format!(
            "no Moodle user {u} linked to an Entra user (neither the sync's link nor their e-mail as a UPN)"
        ),
        UserRef::MoodleUsername(u) => {
            format!("{u} is a Moodle username, and Moodle is not configured (MOODLE_URL)")
        }
    }
}

impl Installer<'_> {
    fn bind(&self) -> Value {
        json!({
            "teamsApp@odata.bind": format!(
                "{}/appCatalogs/teamsApps/{}",
                self.graph.base().as_str().trim_end_matches('/'),
                self.app.id
            )
        })
    }

    fn report(kind: TargetKind, id: &str, outcome: Outcome) -> TargetReport {
        TargetReport {
            kind,
            id: id.to_string(),
            object_id: None,
            outcome,
            chat_id: None,
        }
    }

    pub async fn team(&self, team: &str) -> Result<TargetReport, GraphError> {
        let filter = url_quote(&format!("teamsApp/id eq '{}'", self.app.id));
        let list: Value = self
            .graph
            .get_json(&format!(
                "/teams/{team}/installedApps?$expand=teamsApp,teamsAppDefinition&$filter={filter}"
            ))
            .await?;
        if let Some(inst) = list["value"].as_array().and_then(|v| v.first()) {
            let have = inst["teamsAppDefinition"]["version"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if semver_key(&have) >= semver_key(&self.version) {
                return Ok(Self::report(TargetKind::Team, team, Outcome::Current));
            }
            let inst_id = inst["id"].as_str().unwrap_or_default();
            self.graph
                .post_json_idempotent(
                    &format!("/teams/{team}/installedApps/{inst_id}/upgrade"),
                    &json!({}),
                )
                .await?;
            return Ok(Self::report(
                TargetKind::Team,
                team,
                Outcome::Upgraded { from: have },
            ));
        }
        let outcome = match self
            .graph
            .post_json(&format!("/teams/{team}/installedApps"), &self.bind())
            .await
        {
            Ok(_) => Outcome::Installed,
            Err(e) if e.status() == Some(409) => Outcome::AlreadyInstalled,
            Err(e) => return Err(e),
        };
        Ok(Self::report(TargetKind::Team, team, outcome))
    }

    async fn user_installation(&self, user: &str) -> Result<Option<(String, String)>, GraphError> {
        let filter = url_quote(&format!(
            "teamsAppDefinition/teamsAppId eq '{}'",
            self.app.id
        ));
        let list: Value = self
            .graph
            .get_json(&format!(
                "/users/{user}/teamwork/installedApps?$expand=teamsAppDefinition&$filter={filter}"
            ))
            .await?;
        Ok(list["value"].as_array().and_then(|v| v.first()).map(|i| {
            (
                i["id"].as_str().unwrap_or_default().to_string(),
                i["teamsAppDefinition"]["version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        }))
    }

    /// The Entra user behind a UPN: `GET /users/{upn}` (`User.Read.All`); `None` when Graph has none.
    async fn object_id_of_upn(&self, upn: &str) -> Result<Option<String>, GraphError> {
        match self
            .graph
            .get_json::<Value>(&format!("/users/{}?$select=id", path_segment(upn)))
            .await
        {
            Ok(v) => Ok(v["id"].as_str().map(str::to_ascii_lowercase)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A Moodle username → its Entra object id: the link the sync or the bot stored (`mappings`,
    /// Moodle user → Entra user), else the Moodle account's e-mail taken as a UPN.
    async fn object_id_of_moodle_user(
        &self,
        username: &str,
    ) -> Result<Option<String>, ResolveError> {
        let Some(moodle) = self.moodle else {
            return Ok(None);
        };
        let found = crate::moodle::site::find_users(
            moodle,
            crate::moodle::site::UserLookupField::Username,
            &[username],
        )
        .await
        .map_err(|e| ResolveError::Lookup(format!("Moodle user lookup: {e}")))?;
        let Some(user) = found.into_iter().next() else {
            return Ok(None);
        };
        let link = self
            .store
            .get(
                tables::MAPPINGS,
                crate::bot::mapping::MOODLE_USER_PARTITION,
                &user.id.to_string(),
            )
            .await
            .map_err(|e| ResolveError::Lookup(format!("cannot read the user link: {e}")))?;
        if let Some(oid) = link
            .as_ref()
            .and_then(|e| e.str(crate::bot::mapping::ENTRA_OBJECT_ID_PROP))
        {
            return Ok(Some(oid.to_ascii_lowercase()));
        }
        match user.email.as_deref().filter(|m| m.contains('@')) {
            Some(mail) => Ok(self.object_id_of_upn(&mail.to_lowercase()).await?),
            None => Ok(None),
        }
    }

    /// The object id `r` names; `Ok(None)` when nobody matches (reported, not fatal).
    pub async fn resolve(&self, r: &UserRef) -> Result<Option<String>, ResolveError> {
        match r {
            UserRef::ObjectId(id) => Ok(Some(id.clone())),
            UserRef::Upn(upn) => match self.object_id_of_upn(upn).await? {
                Some(id) => Ok(Some(id)),
                // Moodle usernames may be e-mail-like without being a UPN.
                None => self.object_id_of_moodle_user(upn).await,
            },
            UserRef::MoodleUsername(u) => self.object_id_of_moodle_user(u).await,
        }
    }

    pub async fn user(&self, user: &str) -> Result<TargetReport, GraphError> {
        let user = user.to_ascii_lowercase();
        let (outcome, installation) = match self.user_installation(&user).await? {
            Some((id, have)) if semver_key(&have) >= semver_key(&self.version) => {
                (Outcome::Current, Some(id))
            }
            Some((id, have)) => {
                // After a catalog update (v1.0 `userteamwork-teamsappinstallation-upgrade`, 204).
                self.graph
                    .post_json_idempotent(
                        &format!("/users/{user}/teamwork/installedApps/{id}/upgrade"),
                        &json!({}),
                    )
                    .await?;
                (Outcome::Upgraded { from: have }, Some(id))
            }
            None => {
                let outcome = match self
                    .graph
                    .post_json(
                        &format!("/users/{user}/teamwork/installedApps"),
                        &self.bind(),
                    )
                    .await
                {
                    Ok(_) => Outcome::Installed,
                    Err(e) if e.status() == Some(409) => Outcome::AlreadyInstalled,
                    Err(e) => return Err(e),
                };
                (outcome, None)
            }
        };
        let installation = match installation {
            Some(i) => Some(i),
            None => self.user_installation(&user).await?.map(|(id, _)| id),
        };
        let mut report = Self::report(TargetKind::User, &user, outcome);
        if let Some(inst) = installation {
            let chat: Value = self
                .graph
                .send(
                    reqwest::Method::GET,
                    &format!("/users/{user}/teamwork/installedApps/{inst}/chat"),
                    None,
                    &[],
                    Repeat::Idempotent,
                )
                .await?
                .body;
            if let Some(chat_id) = chat["id"].as_str() {
                self.remember_chat(&user, chat_id).await?;
                report.chat_id = Some(chat_id.to_string());
            }
        }
        Ok(report)
    }

    /// A reference learned from the bot's own traffic names the real service URL and the
    /// user's Teams id: keep it; otherwise store the chat with the configured service URL.
    async fn remember_chat(&self, user: &str, chat_id: &str) -> Result<(), GraphError> {
        let store_err = |e: crate::store::StoreError| GraphError::Decode {
            path: "conversations".into(),
            detail: format!("cannot store the chat: {e}"),
        };
        let existing = conversations::load(self.store, ConversationKind::User, user)
            .await
            .map_err(store_err)?;
        if existing.is_some() {
            return Ok(());
        }
        let r = ConversationRef {
            kind: ConversationKind::User,
            key: user.to_string(),
            conversation_id: chat_id.to_string(),
            service_url: self.service_url.clone(),
            tenant_id: self.tenant_id.clone(),
            user_id: None,
            team_id: None,
            team_name: None,
            bot_id: self.bot_id.clone(),
            locale: None,
        };
        conversations::save(self.store, &r).await.map_err(store_err)
    }

    /// Every team, then every user; per-target failures are reported, a fatal one stops.
    pub async fn run(&self, teams: &[String], users: &[UserRef]) -> InstallReport {
        let mut report = InstallReport {
            version: self.version.clone(),
            catalog_id: self.app.id.clone(),
            ..Default::default()
        };
        for team in teams {
            let r = self.team(team).await;
            if !self.record(&mut report, TargetKind::Team, team, None, r) {
                return report;
            }
        }
        for u in users {
            let given = u.as_given();
            let oid = match self.resolve(u).await {
                Ok(Some(oid)) => oid,
                Ok(None) => {
                    let why = unresolved(u, self.moodle.is_some());
                    report.targets.push(Self::report(
                        TargetKind::User,
                        given,
                        Outcome::Failed(why),
                    ));
                    continue;
                }
                Err(ResolveError::Lookup(why)) => {
                    report.targets.push(Self::report(
                        TargetKind::User,
                        given,
                        Outcome::Failed(why),
                    ));
                    continue;
                }
                Err(ResolveError::Graph(e)) => {
                    if !self.record(&mut report, TargetKind::User, given, None, Err(e)) {
                        return report;
                    }
                    continue;
                }
            };
            let r = self.user(&oid).await;
            if !self.record(&mut report, TargetKind::User, given, Some(oid), r) {
                return report;
            }
        }
        report
    }

    /// One target's line; `false` when a fatal error stops the run.
    fn record(
        &self,
        report: &mut InstallReport,
        kind: TargetKind,
        given: &str,
        object_id: Option<String>,
        r: Result<TargetReport, GraphError>,
    ) -> bool {
        match r {
            Ok(mut t) => {
                t.id = given.to_string();
                t.object_id = object_id;
                report.targets.push(t);
                true
            }
            Err(e) => {
                let text = e.to_string();
                let mut t = Self::report(kind, given, Outcome::Failed(text.clone()));
                t.object_id = object_id;
                report.targets.push(t);
                if stop_all(&e) {
                    report.stopped = Some(text);
                    return false;
                }
                true
            }
        }
    }
}

/// Install (or upgrade) the catalog's version in every synced team when `teams`, and for
/// `users` (Entra object ids, UPNs or Moodle usernames), with the app-only Graph client of the
/// settings.
pub async fn install_from_settings(
    state: &crate::app::AppState,
    teams: bool,
    users: &[String],
) -> Result<InstallReport, super::TeamsAppError> {
    let teams = if teams {
        Teams::Synced
    } else {
        Teams::These(Vec::new())
    };
    install_targets(state, teams, users).await
}

/// Which teams an install covers.
#[derive(Debug, Clone)]
pub enum Teams {
    /// Every team the course sync keeps ([`synced_teams`]): the timer and the CLI.
    Synced,
    /// These only: the teams a course sync pass just made ready.
    These(Vec<String>),
}

/// [`install_from_settings`] with the teams named.
pub async fn install_targets(
    state: &crate::app::AppState,
    teams: Teams,
    users: &[String],
) -> Result<InstallReport, super::TeamsAppError> {
    use super::TeamsAppError;
    let settings = &state.settings;
    let graph_settings = settings.graph.as_ref().ok_or_else(|| {
        TeamsAppError::Settings(vec![
            "GRAPH_CLIENT_ID: required to install the app (app-only Graph)".to_string(),
        ])
    })?;
    let inputs = super::manifest::Inputs::from_settings(settings)?;
    let problems: Vec<String> = users
        .iter()
        .filter_map(|u| UserRef::parse(u).err())
        .collect();
    if !problems.is_empty() {
        return Err(TeamsAppError::Settings(problems));
    }
    let users: Vec<UserRef> = users
        .iter()
        .filter_map(|u| UserRef::parse(u).ok())
        .collect();
    let graph = GraphClient::from_settings(state.http.clone(), graph_settings)?;
    let app = catalog_app(&graph, &inputs.app_id).await?.ok_or_else(|| {
        TeamsAppError::Settings(vec![format!(
            "the app (manifest id {}) is not in the organisation's catalog yet: run `handler teams-app publish` or upload the package",
            inputs.app_id
        )])
    })?;
    let version = app
        .published_version()
        .ok_or_else(|| {
            TeamsAppError::Settings(vec![
                "the app's catalog entry has no published version (waiting for review?)"
                    .to_string(),
            ])
        })?
        .to_string();
    let team_ids = match teams {
        Teams::Synced => synced_teams(&state.store).await?,
        Teams::These(ids) => ids,
    };
    let installer = Installer {
        graph: &graph,
        store: &state.store,
        moodle: state.moodle.as_ref(),
        app,
        version,
        bot_id: Some(format!("28:{}", inputs.bot_id)),
        tenant_id: Some(graph_settings.tenant_id.clone()),
        service_url: settings.teams_app.service_url.to_string(),
    };
    Ok(installer.run(&team_ids, &users).await)
}

/// Installs in the teams a course sync pass just made ready, without waiting for the
/// `TeamsAppInstall` timer (which stays, as the catch-up for anything this misses: a team Graph
/// does not know yet, an app published later). Answers the lines for the run's report; nothing
/// here fails the sync, whose own work is done.
pub struct AfterTeamsSync {
    state: crate::app::AppState,
}

impl AfterTeamsSync {
    /// None when this app cannot install anything (no Graph client settings).
    pub fn from_app(state: &crate::app::AppState) -> Option<Self> {
        state.settings.graph.as_ref()?;
        Some(AfterTeamsSync {
            state: state.clone(),
        })
    }
}

/// What a course sync pass reports back after making teams ready.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AfterSyncLines {
    /// For the trace: one line per team, or why nothing was installed.
    pub trace: Vec<String>,
    /// For the run's warnings: installs that failed (the timer tries again).
    pub warnings: Vec<String>,
}

impl crate::teams_sync::TeamsReady for AfterTeamsSync {
    fn teams_ready(&self, teams: Vec<String>) -> futures::future::BoxFuture<'_, AfterSyncLines> {
        Box::pin(async move {
            let n = teams.len();
            let mut out = AfterSyncLines::default();
            match install_targets(&self.state, Teams::These(teams), &[]).await {
                Ok(report) => {
                    for t in &report.targets {
                        let line = format!("Teams app {}: {t}", report.version);
                        if matches!(t.outcome, Outcome::Failed(_)) {
                            out.warnings.push(format!(
                                "{line}; TeamsAppInstall tries again on its schedule"
                            ));
                        } else {
                            out.trace.push(line);
                        }
                    }
                    if let Some(why) = report.stopped {
                        out.warnings
                            .push(format!("Teams app install in new teams stopped: {why}"));
                    }
                }
                // Nothing to install yet (no published app, incomplete app settings): normal
                // before the first publish, so a trace line and not a warning.
                Err(super::TeamsAppError::Settings(p)) => out.trace.push(format!(
                    "Teams app not installed in {n} new team(s): {}",
                    p.join("; ")
                )),
                Err(e) => out.warnings.push(format!(
                    "Teams app not installed in {n} new team(s): {e}; TeamsAppInstall tries again on its schedule"
                )),
            }
            out
        })
    }
}
