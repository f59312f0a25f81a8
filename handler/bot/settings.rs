//! Bot settings (Azure app-setting names), owned by the bot and gathered by `crate::settings`. Read
//! unconditionally so `handler settings` lists them all; the bot is on when `BOT_APP_ID` is set.

use crate::bot::i18n::Lang;
use crate::config::{Secret, Source};
use url::Url;

pub const DEFAULT_OPENID_METADATA_URL: &str =
    "https://login.botframework.com/v1/.well-known/openidconfiguration";

/// How the bot gets its outbound Bot Connector token.
#[derive(Debug, Clone)]
pub enum BotIdentity {
    /// Client credentials against the tenant's token endpoint (single-tenant app registration).
    SingleTenant { tenant_id: String, password: Secret },
    /// User-assigned managed identity (App Service / Functions identity endpoint).
    UserAssignedMsi { client_id: String },
}

#[derive(Debug, Clone)]
pub struct BotSettings {
    /// Microsoft App ID of the bot: the only accepted `aud` of inbound tokens.
    pub app_id: String,
    pub identity: BotIdentity,
    pub openid_metadata_url: Url,
    /// Overrides the token endpoint (tenant endpoint, or the identity endpoint for a managed identity).
    pub token_endpoint: Option<Url>,
    pub default_lang: Lang,
    /// Extra service URL prefixes that may receive the bot token (besides the Teams hosts).
    pub trusted_service_urls: Vec<String>,
    /// How far ahead "due soon" looks, in days.
    pub due_soon_days: i64,
    /// How long Moodle answers for one user are reused, in seconds (0 = never).
    pub answer_cache_secs: u64,
    /// Bot API requests per second for the whole app on this instance (Teams: 50 per app and tenant).
    pub app_rate_per_sec: usize,
    /// The platform's managed-identity endpoint, for a `UserAssignedMSI` bot.
    pub platform_identity: crate::config::IdentitySettings,
    /// Parents: the report-builder custom report the parent links are read from (`bot::children`);
    /// None = parents get no answers about children.
    pub parent_links_report: Option<crate::moodle::reports::ReportId>,
    /// Short name of the parent role the links are made of (the sync's `SYNC_PARENT_ROLE`).
    pub parent_role: String,
}

/// `http` is only accepted for loopback hosts (tests and local doubles); everything else is https.
fn secure_or_loopback(u: &Url) -> bool {
    u.scheme() == "https"
        || (u.scheme() == "http"
            && matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")))
}

impl BotSettings {
    pub fn load(src: &mut Source) -> Option<Self> {
        let app_id = src.opt(
            "BOT_APP_ID",
            "Microsoft App ID of the Teams bot (turns the bot on)",
        );
        let app_type = src.string(
            "BOT_APP_TYPE",
            "SingleTenant",
            "SingleTenant or UserAssignedMSI",
        );
        let tenant_id = src.opt("BOT_TENANT_ID", "Entra tenant of a single-tenant bot");
        let password = src.secret("BOT_APP_PASSWORD", "client secret of a single-tenant bot");
        let msi_client_id = src.opt(
            "BOT_MSI_CLIENT_ID",
            "client id of the bot's user-assigned managed identity",
        );
        let metadata = src.url(
            "BOT_OPENID_METADATA_URL",
            &["https", "http"],
            "Bot Connector OpenID metadata (signing keys of inbound tokens)",
        );
        let token_endpoint = src.url(
            "BOT_TOKEN_ENDPOINT",
            &["https", "http"],
            "override of the outbound token endpoint (tenant or managed-identity endpoint)",
        );
        let locale = src.string(
            "BOT_DEFAULT_LOCALE",
            "fr",
            "language of answers when the user's locale is neither French nor English (fr or en)",
        );
        let trusted = src.opt(
            "BOT_TRUSTED_SERVICE_URLS",
            "extra Bot Connector service URL prefixes allowed to receive the bot token (comma-separated)",
        );
        let due_soon_days = src.parse(
            "BOT_DUE_SOON_DAYS",
            7i64,
            "days ahead that 'due soon' covers",
        );
        let answer_cache_secs = src.parse(
            "BOT_ANSWER_CACHE_SECS",
            30u64,
            "seconds a user's Moodle answers are reused (0 disables)",
        );

        let app_rate_per_sec = src.parse(
            "BOT_APP_RATE_PER_SEC",
            50usize,
            "Bot Connector requests per second for the whole app (Teams allows 50 per app and tenant)",
        );

        let parent_report = src.opt(
            "BOT_PARENT_LINKS_REPORT",
            "id of the Moodle custom report (Roles source) the bot reads parent links from; unset = no answers for parents",
        );
        let parent_role = src.string(
            "BOT_PARENT_ROLE",
            "parent",
            "short name of the Moodle role that links a parent to a child (in the child's user context)",
        );
        let parent_links_report = parent_report.and_then(|v| {
            let id = v.trim().parse::<i64>().ok().and_then(crate::moodle::reports::ReportId::new);
            if id.is_none() {
                src.problem(format!(
                    "BOT_PARENT_LINKS_REPORT: {v:?} is not a report id (the number in reportbuilder/view.php?id=)"
                ));
            }
            id
        });
        if parent_role.trim().is_empty() {
            src.problem("BOT_PARENT_ROLE: a role short name");
        }
        let default_lang = Lang::from_locale(&locale).unwrap_or_else(|| {
            src.problem(format!("BOT_DEFAULT_LOCALE: {locale:?} is not fr or en"));
            Lang::Fr
        });
        let openid_metadata_url = metadata
            .unwrap_or_else(|| Url::parse(DEFAULT_OPENID_METADATA_URL).expect("constant URL"));
        for (name, u) in [
            ("BOT_OPENID_METADATA_URL", Some(&openid_metadata_url)),
            ("BOT_TOKEN_ENDPOINT", token_endpoint.as_ref()),
        ] {
            if let Some(u) = u {
                if !secure_or_loopback(u) {
                    src.problem(format!(
                        "{name}: must be https (http only for loopback test doubles)"
                    ));
                }
            }
        }
        let trusted_service_urls: Vec<String> = trusted
            .map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for p in &trusted_service_urls {
            match Url::parse(p) {
                Ok(u) if secure_or_loopback(&u) => {}
                _ => src.problem(format!(
                    "BOT_TRUSTED_SERVICE_URLS: {p:?} is not an https URL (http only for loopback)"
                )),
            }
        }
        if app_rate_per_sec == 0 {
            src.problem("BOT_APP_RATE_PER_SEC: at least 1");
        }
        if !(1..=60).contains(&due_soon_days) {
            src.problem("BOT_DUE_SOON_DAYS: between 1 and 60");
        }

        let platform_identity = crate::config::IdentitySettings::load(src);
        let Some(app_id) = app_id else {
            if password.is_some() || msi_client_id.is_some() {
                src.problem(
                    "BOT_APP_ID: required when BOT_APP_PASSWORD or BOT_MSI_CLIENT_ID is set",
                );
            }
            return None;
        };
        #[derive(Clone, Copy)]
        enum AppType {
            SingleTenant,
            UserAssignedMsi,
        }
        // Checked only when the bot is on (a bot-off deployment may carry any leftover value).
        let app_type = crate::config::pick(
            &app_type,
            &[
                ("SingleTenant", AppType::SingleTenant),
                ("UserAssignedMSI", AppType::UserAssignedMsi),
            ],
        );
        let identity = match app_type {
            Ok(AppType::SingleTenant) => match (tenant_id, password) {
                (Some(tenant_id), Some(password)) => BotIdentity::SingleTenant {
                    tenant_id,
                    password,
                },
                (t, p) => {
                    if t.is_none() {
                        src.problem("BOT_TENANT_ID: required for a SingleTenant bot");
                    }
                    if p.is_none() {
                        src.problem("BOT_APP_PASSWORD: required for a SingleTenant bot");
                    }
                    return None;
                }
            },
            Ok(AppType::UserAssignedMsi) => match msi_client_id {
                Some(client_id) => BotIdentity::UserAssignedMsi { client_id },
                None => {
                    src.problem("BOT_MSI_CLIENT_ID: required for a UserAssignedMSI bot");
                    return None;
                }
            },
            Err(e) => {
                src.problem(format!(
                    "BOT_APP_TYPE: {e} (multi-tenant bots can no longer be created)"
                ));
                return None;
            }
        };
        Some(BotSettings {
            app_id,
            identity,
            openid_metadata_url,
            token_endpoint,
            default_lang,
            trusted_service_urls,
            due_soon_days,
            answer_cache_secs,
            app_rate_per_sec,
            platform_identity,
            parent_links_report,
            parent_role: parent_role.trim().to_string(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    pub(crate) fn load(pairs: &[(&str, &str)]) -> (Option<BotSettings>, Vec<String>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut src = Source::from_map(map);
        let s = BotSettings::load(&mut src);
        (s, src.take_problems())
    }

    pub(crate) fn minimal() -> BotSettings {
        load(&[
            ("BOT_APP_ID", "app"),
            ("BOT_TENANT_ID", "tenant"),
            ("BOT_APP_PASSWORD", "pw"),
        ])
        .0
        .expect("settings")
    }

    #[test]
    fn off_without_app_id_and_every_problem_named() {
        let (s, problems) = load(&[]);
        assert!(s.is_none() && problems.is_empty());
        let s = minimal();
        assert_eq!(s.openid_metadata_url.as_str(), DEFAULT_OPENID_METADATA_URL);
        assert_eq!(s.default_lang, Lang::Fr);
        let (s, problems) = load(&[
            ("BOT_APP_ID", "app"),
            ("BOT_DEFAULT_LOCALE", "de"),
            ("BOT_OPENID_METADATA_URL", "http://login.example.org/meta"),
        ]);
        assert!(s.is_none());
        let text = problems.join("\n");
        for name in [
            "BOT_DEFAULT_LOCALE",
            "BOT_OPENID_METADATA_URL",
            "BOT_TENANT_ID",
            "BOT_APP_PASSWORD",
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
        let (s, _) = load(&[
            ("BOT_APP_ID", "app"),
            ("BOT_APP_TYPE", "UserAssignedMSI"),
            ("BOT_MSI_CLIENT_ID", "mi"),
        ]);
        assert!(matches!(
            s.unwrap().identity,
            BotIdentity::UserAssignedMsi { .. }
        ));
        let (_, problems) = load(&[("BOT_APP_PASSWORD", "pw")]);
        assert!(problems.iter().any(|p| p.contains("BOT_APP_ID")));
    }
}
