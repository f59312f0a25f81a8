//! Admin-only HTTP surface: who counts as an admin ([`auth`]) and its settings. The admin page
//! (issue 21) and `ManifestPublish` share it.

pub mod auth;

use crate::config::Source;

#[derive(Debug, Clone, Default)]
pub struct AdminSettings {
    /// Entra group object ids whose members are admins; empty = nobody is (fail closed).
    pub group_ids: Vec<String>,
    /// Tenant the signed-in admin must belong to (default: BOT_TENANT_ID).
    pub tenant_id: Option<String>,
    /// Set by App Service when its authentication is on (`WEBSITE_AUTH_ENABLED=True`): only then
    /// has the platform removed any client-sent `x-ms-client-principal` header.
    pub platform_auth: bool,
}

impl AdminSettings {
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
        AdminSettings {
            group_ids,
            tenant_id,
            platform_auth,
        }
    }
}
