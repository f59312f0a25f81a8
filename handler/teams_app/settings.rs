//! Teams app settings (Azure app-setting names). Everything is optional at start-up: the package
//! is only built on demand, and [`crate::teams_app::manifest::Inputs`] names what is missing then.

use crate::config::{Secret, Source};
use std::path::PathBuf;

/// Moodle's orange: the default accent colour and the colour of the drawn icon.
pub const DEFAULT_ACCENT: &str = "#F98012";
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com/";

#[derive(Debug, Clone)]
pub struct TeamsAppSettings {
    /// The manifest `id`; when unset, a GUID derived from the bot's app id (stable across builds).
    pub app_id: Option<String>,
    /// Pinned package version; when unset the patch number is bumped whenever the content changes.
    pub version: Option<String>,
    pub name_short: String,
    pub name_full: String,
    pub developer_name: String,
    pub accent_color: String,
    pub color_icon: Option<PathBuf>,
    pub outline_icon: Option<PathBuf>,
    /// `webApplicationInfo.resource`; default `api://<PUBLIC_URL host>/<bot app id>`.
    pub sso_resource: Option<String>,
    pub privacy_url: Option<url::Url>,
    pub terms_url: Option<url::Url>,
    /// Entra authority of the device-code sign-in (tests point it at a double).
    pub authority: url::Url,
    /// Tenant of the admin who publishes (default: BOT_TENANT_ID).
    pub tenant_id: Option<String>,
    /// Public client app registration used for the admin's device-code sign-in.
    pub publish_client_id: Option<String>,
    /// Key that encrypts the stored refresh token (32 bytes, base64); a Key Vault reference in Azure.
    pub token_key: Option<Secret>,
    /// Where the encrypted refresh token is kept (owner-only file).
    pub token_file: PathBuf,
    /// Azure: the Key Vault holding the refresh token as a secret (takes the file's place).
    pub token_vault: Option<url::Url>,
    /// Name of that secret.
    pub token_secret: String,
    /// Client id of the user-assigned identity that reads and writes it (none: system-assigned).
    pub token_vault_client_id: Option<String>,
    /// Bot Connector service URL stored with the personal chats found at install time.
    pub service_url: url::Url,
    /// NCRONTAB of the TeamsAppInstall timer.
    pub install_schedule: String,
}

impl TeamsAppSettings {
    pub fn load(src: &mut Source) -> Self {
        let app_id = src.opt(
            "TEAMS_APP_ID",
            "manifest id (GUID) of the Teams app; default: derived from BOT_APP_ID, so it never changes",
        );
        if let Some(id) = &app_id {
            if uuid::Uuid::parse_str(id).is_err() || id.starts_with('{') {
                src.problem(format!("TEAMS_APP_ID: {id:?} is not a GUID"));
            }
        }
        let version = src.opt(
            "TEAMS_APP_VERSION",
            "pinned Teams app version (MAJOR.MINOR.PATCH); default: patch bumped when the package content changes",
        );
        if let Some(v) = &version {
            if !crate::teams_app::validate::is_semver(v) {
                src.problem(format!("TEAMS_APP_VERSION: {v:?} is not MAJOR.MINOR.PATCH"));
            }
        }
        let name_short = src.string(
            "TEAMS_APP_NAME",
            "Moodle",
            "short name of the Teams app (at most 30 characters)",
        );
        let name_full = src.string(
            "TEAMS_APP_FULL_NAME",
            "Moodle for Microsoft Teams",
            "full name of the Teams app (at most 100 characters)",
        );
        let developer_name = src.string(
            "TEAMS_APP_DEVELOPER",
            "Moodle Teams Bridge",
            "developer (publisher) name shown in the Teams app details",
        );
        let accent_color = src.string(
            "TEAMS_APP_ACCENT_COLOR",
            DEFAULT_ACCENT,
            "accent colour (#RRGGBB) of the Teams app and of the drawn icon",
        );
        if !is_hex_colour(&accent_color) {
            src.problem(format!(
                "TEAMS_APP_ACCENT_COLOR: {accent_color:?} is not #RRGGBB"
            ));
        }
        let color_icon = src
            .opt(
                "TEAMS_APP_COLOR_ICON",
                "192×192 PNG colour icon (default: drawn from the accent colour)",
            )
            .map(PathBuf::from);
        let outline_icon = src
            .opt(
                "TEAMS_APP_OUTLINE_ICON",
                "32×32 PNG outline icon, white on transparent (default: drawn)",
            )
            .map(PathBuf::from);
        let sso_resource = src.opt(
            "TEAMS_APP_SSO_RESOURCE",
            "Application ID URI for tab SSO (webApplicationInfo.resource); default api://<PUBLIC_URL host>/<BOT_APP_ID>",
        );
        let privacy_url = src.url(
            "TEAMS_APP_PRIVACY_URL",
            &["https"],
            "privacy statement URL of the Teams app (default: Moodle's data privacy summary page)",
        );
        let terms_url = src.url(
            "TEAMS_APP_TERMS_URL",
            &["https"],
            "terms of use URL of the Teams app (default: Moodle's site policies page)",
        );
        let authority = url_with_default(
            src,
            "TEAMS_APP_AUTHORITY",
            DEFAULT_AUTHORITY,
            "Entra authority for the admin's device-code sign-in (publish), without the tenant",
        );
        if authority.scheme() == "http"
            && !authority
                .host()
                .as_ref()
                .is_some_and(crate::config::is_loopback_host)
        {
            src.problem("TEAMS_APP_AUTHORITY: must be https (http only for loopback test doubles)");
        }
        let tenant_id = src.opt(
            "TEAMS_APP_TENANT_ID",
            "Entra tenant of the admin who publishes the app (default: BOT_TENANT_ID)",
        );
        let publish_client_id = src.opt(
            "TEAMS_APP_PUBLISH_CLIENT_ID",
            "client id of the public-client app registration used for the publish sign-in (delegated AppCatalog.ReadWrite.All)",
        );
        let token_key = src.secret(
            "TEAMS_APP_TOKEN_KEY",
            "32-byte key (base64) encrypting the admin's stored refresh token; a Key Vault reference in Azure",
        );
        if let Some(k) = &token_key {
            if crate::teams_app::token_store::decode_key(k).is_err() {
                src.problem("TEAMS_APP_TOKEN_KEY: not 32 bytes of base64");
            }
        }
        let token_file = src.path(
            "TEAMS_APP_TOKEN_FILE",
            "data/teams-app-token.enc",
            "owner-only file holding the encrypted refresh token of the publish sign-in",
        );
        let token_vault = src.url(
            "TEAMS_APP_TOKEN_VAULT_URL",
            &["https", "http"],
            "Key Vault (https://<name>.vault.azure.net/) keeping the publish sign-in's refresh token as a secret, with the app's managed identity; set in Azure, takes the place of TEAMS_APP_TOKEN_FILE",
        );
        if let Some(v) = &token_vault {
            if v.scheme() == "http"
                && !v
                    .host()
                    .as_ref()
                    .is_some_and(crate::config::is_loopback_host)
            {
                src.problem(
                    "TEAMS_APP_TOKEN_VAULT_URL: must be https (http only for loopback test doubles)",
                );
            }
        }
        let token_secret = src.string(
            "TEAMS_APP_TOKEN_SECRET",
            "teams-app-publish-refresh-token",
            "name of the Key Vault secret holding the publish sign-in's refresh token",
        );
        if !crate::teams_app::key_vault::is_secret_name(&token_secret) {
            src.problem(format!(
                "TEAMS_APP_TOKEN_SECRET: {token_secret:?} is not a Key Vault secret name (1-127 letters, digits, hyphens)"
            ));
        }
        let token_vault_client_id = src.opt(
            "TEAMS_APP_TOKEN_VAULT_CLIENT_ID",
            "client id of the user-assigned managed identity that reads and writes TEAMS_APP_TOKEN_SECRET (default: the system-assigned identity)",
        );
        let service_url = url_with_default(
            src,
            "TEAMS_APP_SERVICE_URL",
            DEFAULT_SERVICE_URL,
            "Bot Connector service URL stored with personal chats found at install time",
        );
        let install_schedule = src.string(
            "TEAMS_APP_INSTALL_SCHEDULE",
            "0 30 * * * *",
            "six-field NCRONTAB schedule of TeamsAppInstall (keeps installs in step with synced teams)",
        );
        if let Err(e) = crate::schedule::Schedule::parse(&install_schedule) {
            src.problem(format!("TEAMS_APP_INSTALL_SCHEDULE: {e}"));
        }
        TeamsAppSettings {
            app_id,
            version,
            name_short,
            name_full,
            developer_name,
            accent_color,
            color_icon,
            outline_icon,
            sso_resource,
            privacy_url,
            terms_url,
            authority,
            tenant_id,
            publish_client_id,
            token_key,
            token_file,
            token_vault,
            token_secret,
            token_vault_client_id,
            service_url,
            install_schedule,
        }
    }
}

/// The public Bot Connector endpoint; Teams answers a proactive send at any regional one.
pub const DEFAULT_SERVICE_URL: &str = "https://smba.trafficmanager.net/teams/";

fn url_with_default(src: &mut Source, name: &str, default: &str, description: &str) -> url::Url {
    let raw = src.string(name, default, description);
    match url::Url::parse(&raw) {
        Ok(u) if matches!(u.scheme(), "https" | "http") => u,
        _ => {
            src.problem(format!("{name}: {raw:?} is not an https URL"));
            url::Url::parse(default).expect("constant URL")
        }
    }
}

pub fn is_hex_colour(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].chars().all(|c| c.is_ascii_hexdigit())
}
