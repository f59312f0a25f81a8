//! Admin-only HTTP surface: who counts as an admin ([`auth`]: App Service sign-in in Azure,
//! [`session`]: a password and a signed cookie under `serve`), its settings, and the manual-sync
//! page ([`page`], [`http`], live runs in [`live`]). `ManifestPublish` uses the same extractor ([`session::AdminUser`]).

pub mod auth;
pub mod http;
pub mod link;
pub mod live;
pub mod oidc;
pub mod page;
pub mod session;

use crate::config::{Secret, Source};

#[derive(Debug, Clone, Default)]
pub struct AdminSettings {
    /// Entra group object ids whose members are admins; empty = nobody is (fail closed).
    pub group_ids: Vec<String>,
    /// Tenant the signed-in admin must belong to (default: BOT_TENANT_ID).
    pub tenant_id: Option<String>,
    /// Set by App Service when its authentication is on (`WEBSITE_AUTH_ENABLED=True`): only then
    /// has the platform removed any client-sent `x-ms-client-principal` header.
    pub platform_auth: bool,
    /// Argon2 PHC string of the admin password (`handler admin hash-password`), for `serve`.
    pub password_hash: Option<Secret>,
    /// Key signing the admin session cookies and CSRF tokens; absent = generated once and kept in
    /// the store.
    pub session_key: Option<Secret>,
    /// OpenID Connect sign-in against Entra under `serve` (ADMIN_OIDC_CLIENT_ID set).
    pub oidc: Option<oidc::OidcSettings>,
}

impl AdminSettings {
    /// Whether `serve` has a way to sign admins in (password or OpenID Connect); sessions and
    /// sign-in links are refused otherwise.
    pub fn serve_sign_in(&self) -> bool {
        self.password_hash.is_some() || self.oidc.is_some()
    }

    pub fn load(src: &mut Source) -> Self {
        let groups = src.opt(
            "ADMIN_GROUP_IDS",
            "object ids (comma-separated) of the Entra groups whose members may use the admin functions; none set = every admin call is refused",
        );
        let group_ids: Vec<String> = groups
            .map(|g| {
                g.split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for g in &group_ids {
            if uuid::Uuid::parse_str(g).is_err() {
                src.problem(format!(
                    "ADMIN_GROUP_IDS: {g:?} is not a group object id (GUID)"
                ));
            }
        }
        let tenant_id = src
            .opt(
                "ADMIN_TENANT_ID",
                "Entra tenant of the admins (default: BOT_TENANT_ID); other tenants' users are refused",
            )
            .or_else(|| src.opt("BOT_TENANT_ID", "Entra tenant of a single-tenant bot"));
        let platform_auth = src
            .opt(
                "WEBSITE_AUTH_ENABLED",
                "set by App Service when its authentication is on; admin calls are refused without it",
            )
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let password_hash = src.secret(
            "ADMIN_PASSWORD_HASH",
            "argon2 hash (PHC string, from `handler admin hash-password`) of the admin password that signs in to /manage/sync under `handler serve`; none set = no password sign-in",
        );
        if let Some(h) = &password_hash {
            if let Err(e) = session::check_hash(h.expose()) {
                src.problem(format!("ADMIN_PASSWORD_HASH: {e}"));
            }
        }
        let session_key = src.secret(
            "ADMIN_SESSION_KEY",
            "key (32 characters or more) signing admin session cookies and CSRF tokens; none set = a random key generated once and kept in the store",
        );
        if session_key.as_ref().is_some_and(|k| k.expose().len() < 32) {
            src.problem("ADMIN_SESSION_KEY: shorter than 32 characters".to_string());
        }
        let oidc = oidc::OidcSettings::load(src, tenant_id.as_deref());
        if oidc.is_some() && group_ids.is_empty() {
            src.problem(
                "ADMIN_OIDC_CLIENT_ID is set but ADMIN_GROUP_IDS is empty: nobody could sign in"
                    .to_string(),
            );
        }
        AdminSettings {
            oidc,
            group_ids,
            tenant_id,
            platform_auth,
            password_hash,
            session_key,
        }
    }
}
