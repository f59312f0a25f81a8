//! Installing the published app, app-only: in every synced team (`teams/{id}/installedApps`,
//! upgraded when an older version is there) and for users (`users/{id}/teamwork/installedApps`),
//! whose personal chat with the bot is then read and stored as their conversation, so
//! notifications can reach them before they ever wrote to the bot. A target already at the
//! catalog's version is skipped; 409 means already installed. Each target gets its own line in
//! the report; one failing target does not stop the others, a missing permission stops all
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
    /// Installed for the user at an older version (Graph v1.0 has no user-scope upgrade).
    Outdated {
        version: String,
    },
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetReport {
    pub kind: TargetKind,
    pub id: String,
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
            Outcome::Outdated { version } => {
                format!("installed at {version}; Teams updates personal apps itself")
            }
            Outcome::Failed(e) => format!("FAILED: {e}"),
        };
        write!(f, "{kind} {}: {what}", self.id)?;
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

    pub async fn user(&self, user: &str) -> Result<TargetReport, GraphError> {
        let user = user.to_ascii_lowercase();
        let (outcome, installation) = match self.user_installation(&user).await? {
            Some((id, have)) if semver_key(&have) >= semver_key(&self.version) => {
                (Outcome::Current, Some(id))
            }
            Some((id, have)) => (Outcome::Outdated { version: have }, Some(id)),
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
    pub async fn run(&self, teams: &[String], users: &[String]) -> InstallReport {
        let mut report = InstallReport {
            version: self.version.clone(),
            catalog_id: self.app.id.clone(),
            ..Default::default()
        };
        let targets = teams
            .iter()
            .map(|t| (TargetKind::Team, t))
            .chain(users.iter().map(|u| (TargetKind::User, u)));
        for (kind, id) in targets {
            let r = match kind {
                TargetKind::Team => self.team(id).await,
                TargetKind::User => self.user(id).await,
            };
            match r {
                Ok(t) => report.targets.push(t),
                Err(e) => {
                    let text = e.to_string();
                    report
                        .targets
                        .push(Self::report(kind, id, Outcome::Failed(text.clone())));
                    if stop_all(&e) {
                        report.stopped = Some(text);
                        break;
                    }
                }
            }
        }
        report
    }
}

/// Install (or upgrade) the catalog's version in every synced team when `teams`, and for
/// `users` (Entra object ids), with the app-only Graph client of the settings.
pub async fn install_from_settings(
    state: &crate::app::AppState,
    teams: bool,
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
    for u in users {
        if uuid::Uuid::parse_str(u).is_err() {
            return Err(TeamsAppError::Settings(vec![format!(
                "--users: {u:?} is not an Entra object id (GUID)"
            )]));
        }
    }
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
    let team_ids = if teams {
        synced_teams(&state.store).await?
    } else {
        Vec::new()
    };
    let installer = Installer {
        graph: &graph,
        store: &state.store,
        app,
        version,
        bot_id: Some(format!("28:{}", inputs.bot_id)),
        tenant_id: Some(graph_settings.tenant_id.clone()),
        service_url: settings.teams_app.service_url.to_string(),
    };
    Ok(installer.run(&team_ids, users).await)
}
