//! Who is an admin: App Service authentication (Easy Auth) signs the user in and passes the
//! claims in `x-ms-client-principal` (base64 JSON: `auth_typ`, `claims[{typ, val}]`, `name_typ`,
//! `role_typ`); the user must be in a configured admin group, in the configured tenant.
//!
//! The header is only trusted when the platform says its authentication is on
//! (`WEBSITE_AUTH_ENABLED`): App Service then drops any copy a client sends. Everything else —
//! no group configured, no platform authentication (e.g. under `handler serve`), a header that
//! does not decode, another identity provider or tenant, a group overage — is refused.
//! [`super::session::AdminUser`] is the one extractor (admin page, ManifestPublish); in Azure it
//! calls [`check`].

use super::AdminSettings;
use crate::error::AppError;
use base64::Engine;
use serde::Deserialize;

pub const PRINCIPAL_HEADER: &str = "x-ms-client-principal";
pub const PRINCIPAL_ID_HEADER: &str = "x-ms-client-principal-id";
const OID_CLAIMS: &[&str] = &[
    "http://schemas.microsoft.com/identity/claims/objectidentifier",
    "oid",
];
const TID_CLAIMS: &[&str] = &[
    "http://schemas.microsoft.com/identity/claims/tenantid",
    "tid",
];
const NAME_CLAIMS: &[&str] = &["preferred_username", "name"];
/// Entra's sign that the token left the groups out (too many): membership cannot be decided.
const OVERAGE_CLAIMS: &[&str] = &["_claim_names", "hasgroups", "groups.link"];

#[derive(Debug, Deserialize)]
struct ClientPrincipal {
    auth_typ: String,
    #[serde(default)]
    claims: Vec<Claim>,
}

#[derive(Debug, Deserialize)]
struct Claim {
    typ: String,
    val: String,
}

/// A signed-in member of an admin group.
#[derive(Debug, Clone)]
pub struct Admin {
    pub object_id: String,
    pub name: Option<String>,
}

/// Why a request is not an admin's: `Unauthorized` = nobody (properly) signed in,
/// `Forbidden` = signed in but not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no admin group is configured (ADMIN_GROUP_IDS): admin calls are refused")]
    NoGroupConfigured,
    #[error("App Service authentication is not on (WEBSITE_AUTH_ENABLED): the caller cannot be identified")]
    NoPlatformAuth,
    #[error("not signed in")]
    Anonymous,
    #[error("the client principal is not readable")]
    Malformed,
    #[error("signed in with {0:?}, not Microsoft Entra ID")]
    WrongProvider(String),
    #[error("signed in from another tenant")]
    WrongTenant,
    #[error("the sign-in token left out the groups (too many); put the admin group first or use fewer groups")]
    GroupOverage,
    #[error("not a member of an admin group")]
    NotInGroup,
}

impl From<Refusal> for AppError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Anonymous | Refusal::Malformed => AppError::Unauthorized,
            other => AppError::Forbidden(other.to_string()),
        }
    }
}

fn claim<'a>(p: &'a ClientPrincipal, types: &[&str]) -> Option<&'a str> {
    p.claims
        .iter()
        .find(|c| types.iter().any(|t| c.typ.eq_ignore_ascii_case(t)))
        .map(|c| c.val.as_str())
}

/// Decide from the headers alone (pure: tests call it directly).
pub fn check(settings: &AdminSettings, headers: &axum::http::HeaderMap) -> Result<Admin, Refusal> {
    if settings.group_ids.is_empty() {
        return Err(Refusal::NoGroupConfigured);
    }
    if !settings.platform_auth {
        return Err(Refusal::NoPlatformAuth);
    }
    let raw = headers
        .get(PRINCIPAL_HEADER)
        .ok_or(Refusal::Anonymous)?
        .to_str()
        .map_err(|_| Refusal::Malformed)?
        .trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|_| Refusal::Malformed)?;
    let p: ClientPrincipal = serde_json::from_slice(&bytes).map_err(|_| Refusal::Malformed)?;
    if !p.auth_typ.eq_ignore_ascii_case("aad") {
        return Err(Refusal::WrongProvider(p.auth_typ));
    }
    let oid = claim(&p, OID_CLAIMS)
        .ok_or(Refusal::Malformed)?
        .to_ascii_lowercase();
    // The platform sets both headers from one sign-in: a mismatch means one was not its own.
    if let Some(id) = headers.get(PRINCIPAL_ID_HEADER) {
        let id = id.to_str().map_err(|_| Refusal::Malformed)?;
        if !id.trim().eq_ignore_ascii_case(&oid) {
            return Err(Refusal::Malformed);
        }
    }
    if let Some(tenant) = &settings.tenant_id {
        match claim(&p, TID_CLAIMS) {
            Some(t) if t.eq_ignore_ascii_case(tenant) => {}
            _ => return Err(Refusal::WrongTenant),
        }
    }
    let member = p.claims.iter().any(|c| {
        c.typ.eq_ignore_ascii_case("groups")
            && settings
                .group_ids
                .iter()
                .any(|g| g.eq_ignore_ascii_case(c.val.trim()))
    });
    if !member {
        let overage = p
            .claims
            .iter()
            .any(|c| OVERAGE_CLAIMS.iter().any(|o| c.typ.eq_ignore_ascii_case(o)));
        return Err(if overage {
            Refusal::GroupOverage
        } else {
            Refusal::NotInGroup
        });
    }
    Ok(Admin {
        object_id: oid,
        name: claim(&p, NAME_CLAIMS).map(str::to_string),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    pub(crate) const GROUP: &str = "0a0a0a0a-0000-4000-8000-000000000001";
    pub(crate) const TENANT: &str = "00000000-aaaa-4000-8000-000000000001";
    const OID: &str = "11111111-0000-4000-8000-000000000001";

    pub(crate) fn principal(auth_typ: &str, claims: &[(&str, &str)]) -> String {
        let claims: Vec<_> = claims
            .iter()
            .map(|(t, v)| serde_json::json!({"typ": t, "val": v}))
            .collect();
        let json = serde_json::json!({
            "auth_typ": auth_typ,
            "claims": claims,
            "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
            "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
        });
        base64::engine::general_purpose::STANDARD.encode(json.to_string())
    }

    pub(crate) fn admin_claims(group: &'static str) -> Vec<(&'static str, &'static str)> {
        vec![
            (OID_CLAIMS[0], OID),
            (TID_CLAIMS[0], TENANT),
            ("preferred_username", "admin@school.example"),
            ("groups", "ffffffff-0000-4000-8000-000000000009"),
            ("groups", group),
        ]
    }

    fn settings() -> AdminSettings {
        AdminSettings {
            group_ids: vec![GROUP.into()],
            tenant_id: Some(TENANT.into()),
            platform_auth: true,
            ..Default::default()
        }
    }

    fn headers(p: Option<String>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(p) = p {
            h.insert(PRINCIPAL_HEADER, HeaderValue::from_str(&p).unwrap());
        }
        h
    }

    #[test]
    fn a_member_of_the_admin_group_is_an_admin() {
        let a = check(
            &settings(),
            &headers(Some(principal("aad", &admin_claims(GROUP)))),
        )
        .unwrap();
        assert_eq!(a.object_id, OID);
        assert_eq!(a.name.as_deref(), Some("admin@school.example"));
    }

    #[test]
    fn anonymous_wrong_group_and_every_doubtful_case_are_refused() {
        let s = settings();
        assert_eq!(check(&s, &headers(None)).unwrap_err(), Refusal::Anonymous);
        assert_eq!(
            check(&s, &headers(Some("not base64 !".into()))).unwrap_err(),
            Refusal::Malformed
        );
        let other_group = principal("aad", &admin_claims("0a0a0a0a-0000-4000-8000-000000000002"));
        assert_eq!(
            check(&s, &headers(Some(other_group))).unwrap_err(),
            Refusal::NotInGroup
        );
        let google = principal("google", &admin_claims(GROUP));
        assert!(matches!(
            check(&s, &headers(Some(google))).unwrap_err(),
            Refusal::WrongProvider(_)
        ));
        let mut foreign = admin_claims(GROUP);
        foreign[1].1 = "99999999-aaaa-4000-8000-000000000001";
        assert_eq!(
            check(&s, &headers(Some(principal("aad", &foreign)))).unwrap_err(),
            Refusal::WrongTenant
        );
        let overage = principal(
            "aad",
            &[
                (OID_CLAIMS[0], OID),
                (TID_CLAIMS[0], TENANT),
                ("_claim_names", "{\"groups\":\"src1\"}"),
            ],
        );
        assert_eq!(
            check(&s, &headers(Some(overage))).unwrap_err(),
            Refusal::GroupOverage
        );
        // A principal-id header that disagrees with the principal is not the platform's.
        let mut h = headers(Some(principal("aad", &admin_claims(GROUP))));
        h.insert(
            PRINCIPAL_ID_HEADER,
            HeaderValue::from_static("22222222-0000-4000-8000-000000000001"),
        );
        assert_eq!(check(&s, &h).unwrap_err(), Refusal::Malformed);
    }

    #[test]
    fn fails_closed_without_a_group_or_without_platform_authentication() {
        let good = || headers(Some(principal("aad", &admin_claims(GROUP))));
        let mut s = settings();
        s.group_ids.clear();
        assert_eq!(check(&s, &good()).unwrap_err(), Refusal::NoGroupConfigured);
        let mut s = settings();
        s.platform_auth = false;
        assert_eq!(check(&s, &good()).unwrap_err(), Refusal::NoPlatformAuth);
        assert!(matches!(
            AppError::from(Refusal::NoGroupConfigured),
            AppError::Forbidden(_)
        ));
        assert!(matches!(
            AppError::from(Refusal::Anonymous),
            AppError::Unauthorized
        ));
    }
}
