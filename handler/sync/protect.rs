//! Moodle's own accounts are never managed: the guest account, the site administrators the
//! bridge can identify (the install admin, id 2 / `admin` on a standard site; the service account
//! when site info says it is one) and the bridge's own web-service account. A directory entry
//! that lands on one of them is skipped with a reason, never written, never given cohorts or
//! roles, never recorded in `mappings`, and never suspended or deleted — even through a stale
//! mapping row. Who the service account is comes from `core_webservice_get_site_info`, read at
//! most once per pass, only when the pass has something to look at, and remembered per token
//! (`token_check::site_info`), so a run with nothing to do makes no Moodle call.

use super::engine::{Ctx, PassState};
use crate::ids::MoodleUserId;
use crate::moodle::{site, MoodleError};
use std::collections::BTreeMap;

/// Moodle's guest account on a standard install.
pub const GUEST_ID: i64 = 1;
/// The administrator created by the installer on a standard install.
pub const INSTALL_ADMIN_ID: i64 = 2;

#[derive(Debug, Clone, Default)]
pub struct Protected {
    /// Moodle user id → label for the report.
    ids: BTreeMap<i64, String>,
    /// Moodle username → label.
    names: BTreeMap<String, String>,
}

impl Protected {
    pub fn new(info: &site::SiteInfo) -> Self {
        Self::with_extra(info, &[])
    }

    /// Also protect `extra` usernames (`SYNC_PROTECTED_USERS`: other site administrators).
    pub fn with_extra(info: &site::SiteInfo, extra: &[String]) -> Self {
        let mut p = Protected::default();
        for name in extra {
            p.names.insert(
                name.to_lowercase(),
                format!("{name}, listed in SYNC_PROTECTED_USERS"),
            );
        }
        p.ids.insert(GUEST_ID, "guest".into());
        p.ids.insert(INSTALL_ADMIN_ID, "admin".into());
        p.names.insert("guest".into(), "guest".into());
        p.names.insert("admin".into(), "admin".into());
        let name = info.username.trim().to_lowercase();
        let label = match (name.is_empty(), info.userissiteadmin) {
            (true, _) => format!("id {}, the bridge's web-service account", info.userid.get()),
            (false, false) => format!("{name}, the bridge's web-service account"),
            (false, true) => {
                format!("{name}, the bridge's web-service account, a site administrator")
            }
        };
        p.ids.insert(info.userid.get(), label.clone());
        if !name.is_empty() {
            p.names.insert(name, label);
        }
        p
    }

    /// The label of the protected account matched by a Moodle id or a username, if any.
    pub fn matches(&self, id: Option<MoodleUserId>, username: &str) -> Option<&str> {
        id.and_then(|id| self.ids.get(&id.get()))
            .or_else(|| self.names.get(&username.to_lowercase()))
            .map(String::as_str)
    }

    pub fn is_protected_id(&self, id: MoodleUserId) -> bool {
        self.ids.contains_key(&id.get())
    }
}

pub fn reason(label: &str) -> String {
    format!("matches a protected Moodle account ({label}): not managed")
}

/// The protected accounts, from site info on first use in this pass (remembered per token for
/// `SYNC_TOKEN_RECHECK_SECS`, so a pass of unchanged entries makes no call).
pub async fn load<'a>(ctx: &Ctx, st: &'a mut PassState) -> Result<&'a Protected, MoodleError> {
    if st.protected.is_none() {
        let info = super::token_check::site_info(
            &ctx.store,
            &ctx.moodle,
            ctx.settings.token_recheck_secs,
            chrono::Utc::now(),
        )
        .await?;
        st.protected = Some(Protected::with_extra(&info, &ctx.settings.protected_users));
    }
    Ok(st.protected.as_ref().expect("just set"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MoodleUserId;

    #[test]
    fn extra_protected_usernames_from_settings() {
        let info = site::SiteInfo {
            userid: MoodleUserId::new(7).unwrap(),
            username: "bridge_ws".into(),
            userissiteadmin: false,
            siteid: None,
        };
        let p = Protected::with_extra(&info, &["principal".to_string()]);
        assert!(p
            .matches(Some(MoodleUserId::new(42).unwrap()), "Principal")
            .unwrap()
            .contains("SYNC_PROTECTED_USERS"));
        assert!(p
            .matches(Some(MoodleUserId::new(43).unwrap()), "teacher.durand")
            .is_none());
    }

    #[test]
    fn guest_admin_and_service_account() {
        let p = Protected::new(&site::SiteInfo {
            userid: MoodleUserId::new(3).unwrap(),
            username: "bridge_ws".into(),
            userissiteadmin: false,
            siteid: Some(1),
        });
        assert_eq!(p.matches(None, "Admin"), Some("admin"));
        assert_eq!(p.matches(None, "guest"), Some("guest"));
        assert_eq!(
            p.matches(Some(MoodleUserId::new(2).unwrap()), "someone"),
            Some("admin")
        );
        assert!(p
            .matches(Some(MoodleUserId::new(3).unwrap()), "x")
            .unwrap()
            .contains("bridge_ws"));
        assert!(p.matches(None, "bridge_ws").is_some());
        assert_eq!(
            p.matches(Some(MoodleUserId::new(150).unwrap()), "lea.martin"),
            None
        );
        assert_eq!(
            reason("admin"),
            "matches a protected Moodle account (admin): not managed"
        );
    }
}
