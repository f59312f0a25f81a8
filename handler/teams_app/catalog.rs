//! Publishing the package to the organisation's app catalog. Graph only takes these calls with a
//! delegated admin token (fixtures README, key finding 1): the admin signs in with the device
//! code flow of the outbound layer; the refresh token is kept encrypted ([`super::token_store`])
//! so the next publish does not ask again.
//!
//! Look the app up by `externalId` (the manifest id); not there → `POST /appCatalogs/teamsApps`
//! with the zip; there → `POST /appCatalogs/teamsApps/{id}/appDefinitions`; a 409 on the first
//! (someone published meanwhile) switches to the second. An answer whose definition is
//! `submitted` means an admin must still approve it (`requiresReview`).

use super::key_vault::KeyVaultStore;
use super::token_store::{RefreshTokenStore, TokenStore};
use super::TeamsAppError;
use crate::graph::GraphError;
use crate::outbound::token::{DeviceCode, DeviceCodePrompt, Fetch};
use crate::outbound::{retry, AccessToken, Failure, RetryPolicy};
use crate::settings::Settings;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Delegated scope of the publish sign-in (`offline_access` is added by the flow).
pub const PUBLISH_SCOPE: &str = "https://graph.microsoft.com/AppCatalog.ReadWrite.All";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// First time in the catalog.
    Created { catalog_id: String },
    /// A new definition of an app already there.
    Updated { catalog_id: String },
    /// This version is already the catalog's: nothing sent.
    AlreadyCurrent { catalog_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    pub outcome: Published,
    pub version: String,
    /// The definition waits for an admin's approval in the Teams admin center.
    pub requires_review: bool,
    /// A 409 on the first publish was turned into an update.
    pub conflict_resolved: bool,
}

impl PublishReport {
    pub fn catalog_id(&self) -> &str {
        match &self.outcome {
            Published::Created { catalog_id }
            | Published::Updated { catalog_id }
            | Published::AlreadyCurrent { catalog_id } => catalog_id,
        }
    }
}

/// The catalog entry of the app, as `GET /appCatalogs/teamsApps?$filter=externalId eq …` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogApp {
    pub id: String,
    /// `(version, publishingState)` of each definition.
    pub definitions: Vec<(String, String)>,
}

impl CatalogApp {
    pub fn published_version(&self) -> Option<&str> {
        self.definitions
            .iter()
            .filter(|(_, state)| state.eq_ignore_ascii_case("published"))
            .map(|(v, _)| v.as_str())
            .max_by(|a, b| semver_key(a).cmp(&semver_key(b)))
    }
}

pub fn semver_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

pub fn lookup_path(external_id: &str) -> String {
    format!(
        "/appCatalogs/teamsApps?$filter={}&$expand=appDefinitions",
        url_quote(&format!("externalId eq '{external_id}'"))
    )
}

pub fn url_quote(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The first catalog entry of a lookup answer.
pub fn parse_lookup(body: &Value) -> Option<CatalogApp> {
    let app = body["value"].as_array()?.first()?;
    Some(CatalogApp {
        id: app["id"].as_str()?.to_string(),
        definitions: app["appDefinitions"]
            .as_array()
            .map(|defs| {
                defs.iter()
                    .filter_map(|d| {
                        Some((
                            d["version"].as_str()?.to_string(),
                            d["publishingState"].as_str().unwrap_or("").to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Graph calls made with the admin's delegated token.
pub struct Catalog {
    http: reqwest::Client,
    /// `https://graph.microsoft.com/v1.0`
    base: url::Url,
    token: AccessToken,
    pub retry: RetryPolicy,
}

impl Catalog {
    pub fn new(http: reqwest::Client, base: url::Url, token: AccessToken) -> Self {
        Catalog {
            http,
            base,
            token,
            retry: RetryPolicy::MICROSOFT,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// One call; repeated after 429 (Graph did not run it) and, for the GET only, after 5xx.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        zip: Option<&[u8]>,
    ) -> Result<(u16, Value), GraphError> {
        let what = format!("graph {method} {}", path.split('?').next().unwrap_or(""));
        let idempotent = method == reqwest::Method::GET;
        self.retry
            .run(&what, |_| {
                let method = method.clone();
                async move {
                    let mut req = self
                        .http
                        .request(method.clone(), self.url(path))
                        .bearer_auth(self.token.secret.expose())
                        .header(reqwest::header::ACCEPT, "application/json")
                        .timeout(REQUEST_TIMEOUT);
                    if let Some(z) = zip {
                        req = req
                            .header(reqwest::header::CONTENT_TYPE, "application/zip")
                            .body(z.to_vec());
                    }
                    let transport = |e: reqwest::Error| GraphError::Transport {
                        method: method.to_string(),
                        path: path.split('?').next().unwrap_or("").to_string(),
                        detail: crate::redact::error_chain(&e),
                    };
                    let resp = match req.send().await {
                        Ok(r) => r,
                        Err(e) if idempotent => return Err(Failure::retryable(transport(e), None)),
                        Err(e) => return Err(Failure::permanent(transport(e))),
                    };
                    let status = resp.status().as_u16();
                    let retry_after = retry::retry_after(resp.headers());
                    let location = resp
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let text = resp.text().await.unwrap_or_default();
                    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if (200..300).contains(&status) || status == 409 {
                        return Ok((status, body));
                    }
                    let err = crate::graph::client::error_for(
                        method.as_str(),
                        path,
                        status,
                        location,
                        retry_after,
                        &body,
                    );
                    Err(match status {
                        429 => Failure::retryable(err, retry_after),
                        s if idempotent && retry::is_retryable_status(s) => {
                            Failure::retryable(err, retry_after)
                        }
                        _ => Failure::permanent(err),
                    })
                }
            })
            .await
    }

    pub async fn lookup(&self, external_id: &str) -> Result<Option<CatalogApp>, GraphError> {
        let (_, body) = self
            .call(reqwest::Method::GET, &lookup_path(external_id), None)
            .await?;
        Ok(parse_lookup(&body))
    }

    /// Publish or update `zip` (manifest id `external_id`, version `version`).
    pub async fn publish(
        &self,
        zip: &[u8],
        external_id: &str,
        version: &str,
        submit_for_review: bool,
    ) -> Result<PublishReport, GraphError> {
        let review = if submit_for_review {
            "?requiresReview=true"
        } else {
            ""
        };
        let report = |outcome, requires_review, conflict_resolved| PublishReport {
            outcome,
            version: version.to_string(),
            requires_review,
            conflict_resolved,
        };
        let mut conflict = false;
        let existing = match self.lookup(external_id).await? {
            Some(app) => app,
            None => {
                let (status, body) = self
                    .call(
                        reqwest::Method::POST,
                        &format!("/appCatalogs/teamsApps{review}"),
                        Some(zip),
                    )
                    .await?;
                if status != 409 {
                    let id = body["id"].as_str().unwrap_or_default().to_string();
                    let id = if id.is_empty() {
                        // An answer without the entry: read it back.
                        self.lookup(external_id)
                            .await?
                            .map(|a| a.id)
                            .unwrap_or_default()
                    } else {
                        id
                    };
                    return Ok(report(
                        Published::Created { catalog_id: id },
                        submitted(&body, submit_for_review),
                        false,
                    ));
                }
                // Published meanwhile (or a lookup that lagged): update it instead.
                conflict = true;
                self.lookup(external_id)
                    .await?
                    .ok_or_else(|| GraphError::Status {
                        method: "POST".into(),
                        path: "/appCatalogs/teamsApps".into(),
                        status: 409,
                        code: "Conflict".into(),
                        message: "the app exists but the lookup by externalId does not find it"
                            .into(),
                    })?
            }
        };
        if existing
            .definitions
            .iter()
            .any(|(v, state)| v == version && state.eq_ignore_ascii_case("published"))
        {
            return Ok(report(
                Published::AlreadyCurrent {
                    catalog_id: existing.id,
                },
                false,
                conflict,
            ));
        }
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!(
                    "/appCatalogs/teamsApps/{}/appDefinitions{review}",
                    existing.id
                ),
                Some(zip),
            )
            .await?;
        if status == 409 {
            return Err(GraphError::Status {
                method: "POST".into(),
                path: format!("/appCatalogs/teamsApps/{}/appDefinitions", existing.id),
                status,
                code: body["error"]["code"].as_str().unwrap_or("Conflict").to_string(),
                message: format!("version {version} is already in the catalog (waiting for review?); build a new version"),
            });
        }
        Ok(report(
            Published::Updated {
                catalog_id: existing.id,
            },
            submitted(&body, submit_for_review),
            conflict,
        ))
    }
}

/// `requiresReview` in effect: asked for, or the answer's definition is still `submitted`.
fn submitted(body: &Value, asked: bool) -> bool {
    asked
        || body["publishingState"]
            .as_str()
            .or_else(|| body["appDefinitions"][0]["publishingState"].as_str())
            .is_some_and(|s| s.eq_ignore_ascii_case("submitted"))
}

/// Who signs in for the publish: tenant, public-client app, where the refresh token lives.
pub struct SignIn {
    pub authority: url::Url,
    pub client_id: String,
    pub store: Option<Box<dyn RefreshTokenStore>>,
}

impl SignIn {
    /// Every missing setting named; none of this is needed for build or install.
    pub fn from_settings(s: &Settings, http: reqwest::Client) -> Result<SignIn, TeamsAppError> {
        let t = &s.teams_app;
        let mut problems = Vec::new();
        let tenant = t.tenant_id.clone().or_else(|| {
            s.bot.as_ref().and_then(|b| match &b.identity {
                crate::bot::settings::BotIdentity::SingleTenant { tenant_id, .. } => {
                    Some(tenant_id.clone())
                }
                _ => None,
            })
        });
        if tenant.is_none() {
            problems.push(
                "TEAMS_APP_TENANT_ID: required for the publish sign-in (or BOT_TENANT_ID)"
                    .to_string(),
            );
        }
        if t.publish_client_id.is_none() {
            problems.push("TEAMS_APP_PUBLISH_CLIENT_ID: required for the publish sign-in (a public-client app registration with delegated AppCatalog.ReadWrite.All)".to_string());
        }
        if !problems.is_empty() {
            return Err(TeamsAppError::Settings(problems));
        }
        let mut authority = t.authority.clone();
        if !authority.path().ends_with('/') {
            authority.set_path(&format!("{}/", authority.path()));
        }
        let authority = authority
            .join(&format!("{}/", tenant.expect("checked")))
            .map_err(|e| TeamsAppError::Settings(vec![format!("TEAMS_APP_AUTHORITY: {e}")]))?;
        let store: Option<Box<dyn RefreshTokenStore>> = match (&t.token_vault, &t.token_key) {
            // Azure: the app's managed identity keeps it in Key Vault.
            (Some(vault), _) => {
                let msi = crate::outbound::token::ManagedIdentity::new(
                    http.clone(),
                    crate::outbound::token::MsiEndpoint::from_settings(&s.identity),
                    t.token_vault_client_id.clone(),
                )
                .cached();
                Some(Box::new(KeyVaultStore::new(
                    http,
                    vault.clone(),
                    t.token_secret.clone(),
                    Arc::new(msi),
                )?))
            }
            (None, Some(k)) => Some(Box::new(TokenStore::new(k, &t.token_file)?)),
            (None, None) => None,
        };
        Ok(SignIn {
            authority,
            client_id: t.publish_client_id.clone().expect("checked"),
            store,
        })
    }

    /// A delegated Graph token: from the kept refresh token when Entra still takes it, else by
    /// a device-code sign-in (`prompt` shows the code and URL). The new refresh token is kept
    /// encrypted when a key is configured, and dropped otherwise.
    pub async fn token(
        &self,
        http: reqwest::Client,
        prompt: impl Fn(&DeviceCodePrompt) + Send + Sync + 'static,
        second: Option<Duration>,
    ) -> Result<AccessToken, TeamsAppError> {
        let mut flow = DeviceCode::new(http, &self.authority, &self.client_id, prompt)?;
        if let Some(s) = second {
            flow = flow.with_second(s);
        }
        if let Some(store) = &self.store {
            if let Some(rt) = store.load().await? {
                flow = flow.with_refresh_token(rt);
            }
        }
        let flow = Arc::new(flow);
        let token = Arc::clone(&flow).fetch(PUBLISH_SCOPE.to_string()).await?;
        if let (Some(store), Some(rt)) = (&self.store, flow.refresh_token()) {
            store.save(&rt).await?;
        }
        Ok(token)
    }
}

/// Graph's version root for the delegated calls: the configured Graph root, or the public one.
pub fn graph_base(s: &Settings) -> url::Url {
    s.graph
        .as_ref()
        .map(|g| g.base_url.clone())
        .unwrap_or_else(|| {
            url::Url::parse("https://graph.microsoft.com/v1.0").expect("constant URL")
        })
}

/// Where to upload the package by hand when no delegated sign-in is possible.
pub fn manual_upload_hint(zip_path: &std::path::Path) -> String {
    format!(
        "upload {} by hand: Teams admin center → Teams apps → Manage apps → Upload new app \
         (or, to update, open the app and choose Upload file)",
        zip_path.display()
    )
}
