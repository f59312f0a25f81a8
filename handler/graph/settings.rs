//! Graph settings (Azure app-setting names). Read unconditionally so `handler settings` lists them
//! all; Graph is on when `GRAPH_CLIENT_ID` is set (or `GRAPH_AUTH=managed-identity`).

use crate::config::{Secret, Source};
use url::Url;

pub const DEFAULT_BASE_URL: &str = "https://graph.microsoft.com/v1.0";
/// The identity resource-unit budget of the smallest tenant row (< 50 users): safe anywhere.
pub const DEFAULT_IDENTITY_RU_PER_10S: usize = 3_500;

/// How the app proves who it is to Entra for its app-only Graph token.
#[derive(Debug, Clone)]
pub enum GraphAuth {
    /// Client-credentials grant with a client secret.
    Secret(Secret),
    /// Client-credentials grant with a certificate (signed client assertion); Entra's recommendation.
    Certificate { cert_pem: String, key_pem: Secret },
    /// The app's managed identity (user-assigned when a client id is given); the Graph app roles
    /// are then granted to the identity's service principal.
    ManagedIdentity { client_id: Option<String> },
}

#[derive(Debug, Clone)]
pub struct GraphSettings {
    pub tenant_id: String,
    /// Application (client) id of the app registration holding the Graph application permissions.
    pub client_id: String,
    pub auth: GraphAuth,
    /// `https://graph.microsoft.com/v1.0`, or a double's address in tests (loopback http only).
    pub base_url: Url,
    /// Overrides the tenant's token endpoint (or the managed-identity endpoint).
    pub token_endpoint: Option<Url>,
    /// Identity (users, groups) resource units per 10 s for this app and tenant.
    pub identity_ru_per_10s: usize,
    /// The platform's managed-identity endpoint.
    pub platform_identity: crate::config::IdentitySettings,
}

/// `http` only for loopback hosts (doubles); everything else https, so the token never goes out in clear.
fn secure_or_loopback(u: &Url) -> bool {
    u.scheme() == "https"
        || (u.scheme() == "http"
            && u.host()
                .is_some_and(|h| crate::config::is_loopback_host(&h)))
}

impl GraphSettings {
    pub fn load(src: &mut Source, identity: &crate::config::IdentitySettings) -> Option<Self> {
        let client_id = src.opt(
            "GRAPH_CLIENT_ID",
            "application (client) id of the Entra app registration with the Graph application permissions (turns Graph on)",
        );
        let tenant_id = src.opt(
            "GRAPH_TENANT_ID",
            "Entra tenant id (or domain) of the school",
        );
        let auth = src.string(
            "GRAPH_AUTH",
            "secret",
            "how the app gets its app-only Graph token: secret, certificate or managed-identity",
        );
        let secret = src.secret(
            "GRAPH_CLIENT_SECRET",
            "client secret of the Graph app registration (GRAPH_AUTH=secret)",
        );
        let cert = src.opt(
            "GRAPH_CERTIFICATE",
            "PEM certificate registered on the Graph app (GRAPH_AUTH=certificate)",
        );
        let key = src.secret(
            "GRAPH_CERTIFICATE_KEY",
            "PEM RSA private key of GRAPH_CERTIFICATE (GRAPH_AUTH=certificate)",
        );
        let msi_client_id = src.opt(
            "GRAPH_MSI_CLIENT_ID",
            "client id of the user-assigned managed identity holding the Graph app roles (GRAPH_AUTH=managed-identity; empty = system-assigned)",
        );
        let base = src.url(
            "GRAPH_BASE_URL",
            &["https", "http"],
            "Graph root including the version (default https://graph.microsoft.com/v1.0)",
        );
        let token_endpoint = src.url(
            "GRAPH_TOKEN_ENDPOINT",
            &["https", "http"],
            "override of the Graph token endpoint (tenant or managed-identity endpoint); tests only",
        );
        let identity_ru_per_10s = src.parse(
            "GRAPH_IDENTITY_RU_PER_10S",
            DEFAULT_IDENTITY_RU_PER_10S,
            "identity resource units per 10 s the client paces itself to (Graph: 3500 below 50 users, 5000 up to 500, 8000 above)",
        );
        if identity_ru_per_10s == 0 {
            src.problem("GRAPH_IDENTITY_RU_PER_10S: at least 1");
        }
        let msi = auth == "managed-identity";
        if client_id.is_none() && !msi {
            return None;
        }
        let base_url = match base {
            Some(u) => u,
            None => Url::parse(DEFAULT_BASE_URL).expect("constant URL"),
        };
        for (name, u) in [
            ("GRAPH_BASE_URL", Some(&base_url)),
            ("GRAPH_TOKEN_ENDPOINT", token_endpoint.as_ref()),
        ] {
            if let Some(u) = u.filter(|u| !secure_or_loopback(u)) {
                src.problem(format!(
                    "{name}: {u} must be https (http only for a loopback double)"
                ));
            }
        }
        let auth = match auth.as_str() {
            "secret" => match secret {
                Some(s) => GraphAuth::Secret(s),
                None => {
                    src.problem("GRAPH_CLIENT_SECRET: required with GRAPH_AUTH=secret");
                    return None;
                }
            },
            "certificate" => match (cert, key) {
                (Some(cert_pem), Some(key_pem)) => GraphAuth::Certificate { cert_pem, key_pem },
                _ => {
                    src.problem("GRAPH_CERTIFICATE and GRAPH_CERTIFICATE_KEY: both required with GRAPH_AUTH=certificate");
                    return None;
                }
            },
            "managed-identity" => GraphAuth::ManagedIdentity {
                client_id: msi_client_id.filter(|s| !s.trim().is_empty()),
            },
            other => {
                src.problem(format!(
                    "GRAPH_AUTH: {other:?} is not secret, certificate or managed-identity"
                ));
                return None;
            }
        };
        let tenant_id = match tenant_id {
            Some(t) => t,
            None if msi => String::new(),
            None => {
                src.problem("GRAPH_TENANT_ID: required with GRAPH_CLIENT_ID");
                return None;
            }
        };
        Some(GraphSettings {
            tenant_id,
            client_id: client_id.unwrap_or_default(),
            auth,
            base_url,
            token_endpoint,
            identity_ru_per_10s,
            platform_identity: identity.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn load(pairs: &[(&str, &str)]) -> (Option<GraphSettings>, Vec<String>) {
        let env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut src = Source::from_map(env);
        let s = GraphSettings::load(&mut src, &Default::default());
        (s, src.take_problems())
    }

    #[test]
    fn off_without_a_client_id_and_each_proof_needs_its_settings() {
        assert!(load(&[]).0.is_none());
        let (s, p) = load(&[
            ("GRAPH_CLIENT_ID", "app"),
            ("GRAPH_TENANT_ID", "t"),
            ("GRAPH_CLIENT_SECRET", "x"),
        ]);
        assert!(p.is_empty(), "{p:?}");
        let s = s.unwrap();
        assert!(matches!(s.auth, GraphAuth::Secret(_)));
        assert_eq!(s.base_url.as_str(), DEFAULT_BASE_URL);
        let (_, p) = load(&[("GRAPH_CLIENT_ID", "app"), ("GRAPH_TENANT_ID", "t")]);
        assert!(
            p.iter().any(|m| m.starts_with("GRAPH_CLIENT_SECRET")),
            "{p:?}"
        );
        let (_, p) = load(&[
            ("GRAPH_CLIENT_ID", "app"),
            ("GRAPH_TENANT_ID", "t"),
            ("GRAPH_AUTH", "certificate"),
        ]);
        assert!(
            p.iter().any(|m| m.contains("GRAPH_CERTIFICATE_KEY")),
            "{p:?}"
        );
        let (s, p) = load(&[
            ("GRAPH_AUTH", "managed-identity"),
            ("GRAPH_MSI_CLIENT_ID", "mi"),
        ]);
        assert!(p.is_empty(), "{p:?}");
        assert!(
            matches!(s.unwrap().auth, GraphAuth::ManagedIdentity { client_id: Some(ref c) } if c == "mi")
        );
    }

    #[test]
    fn the_token_never_goes_to_plain_http_off_loopback() {
        let base = [
            ("GRAPH_CLIENT_ID", "app"),
            ("GRAPH_TENANT_ID", "t"),
            ("GRAPH_CLIENT_SECRET", "x"),
        ];
        let mut pairs = base.to_vec();
        pairs.push(("GRAPH_BASE_URL", "http://graph.example/v1.0"));
        let (_, p) = load(&pairs);
        assert!(p.iter().any(|m| m.starts_with("GRAPH_BASE_URL")), "{p:?}");
        let mut pairs = base.to_vec();
        pairs.push(("GRAPH_BASE_URL", "http://127.0.0.1:8080/v1.0"));
        assert!(load(&pairs).1.is_empty());
    }
}
