//! The client-credentials grant against a tenant's Entra token endpoint, for any scope
//! (`https://graph.microsoft.com/.default`, `https://api.botframework.com/.default`, …), proven
//! by a client secret or by a certificate: a JWT client assertion signed with the
//! certificate's key (RS256, `x5t` / `x5t#S256` thumbprints in the header), which Entra
//! recommends over secrets because the private key never leaves the app.

use super::response::request_token;
use super::{endpoint_label, AccessToken, Fetch, TokenError};
use crate::config::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long a signed assertion is valid (Entra accepts up to 10 minutes ahead).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(10 * 60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Entra always states `expires_in`; this is only for an answer that does not.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`; the tenant is one encoded
/// path segment, so a stray `/` or `?` in a setting cannot point the request elsewhere.
pub fn tenant_token_endpoint(tenant_id: &str) -> url::Url {
    let mut u = url::Url::parse(ENTRA_AUTHORITY).expect("constant URL");
    u.path_segments_mut()
        .expect("an https URL has a path")
        .clear()
        .extend([tenant_id, "oauth2", "v2.0", "token"]);
    u
}

#[cfg(test)]
mod tests {
    #[test]
    fn tenant_endpoint_keeps_the_tenant_in_its_segment() {
        assert_eq!(
            super::tenant_token_endpoint("00000000-aaaa-4aaa-8aaa-000000000001").as_str(),
            "https://login.microsoftonline.com/00000000-aaaa-4aaa-8aaa-000000000001/oauth2/v2.0/token"
        );
        assert_eq!(
            super::tenant_token_endpoint("evil/../x?y").as_str(),
            "https://login.microsoftonline.com/evil%2F..%2Fx%3Fy/oauth2/v2.0/token"
        );
    }
}

/// A certificate and its private key, ready to sign client assertions.
pub struct ClientCertificate {
    key: jsonwebtoken::EncodingKey,
    /// base64url(SHA-1 of the DER certificate)
    x5t: String,
    /// base64url(SHA-256 of the DER certificate)
    x5t_s256: String,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t#S256", &self.x5t_s256)
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// The first `CERTIFICATE` block of `cert_pem` and an RSA private key (PKCS#1 or PKCS#8 PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &Secret) -> Result<Self, TokenError> {
        let bad = |what: &str| TokenError::Config(format!("client certificate: {what}"));
        let der = pem::parse_many(cert_pem)
            .map_err(|_| bad("not PEM"))?
            .into_iter()
            .find(|p| p.tag() == "CERTIFICATE")
            .ok_or_else(|| bad("no CERTIFICATE block"))?
            .into_contents();
        // Never quote the key parser's error: it may describe the key's bytes.
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.expose().as_bytes())
            .map_err(|_| bad("the private key is not an RSA key in PEM form"))?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        let sha256 = ring::digest::digest(&ring::digest::SHA256, &der);
        Ok(ClientCertificate {
            key,
            x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256.as_ref()),
        })
    }

    pub fn thumbprint_sha256(&self) -> &str {
        &self.x5t_s256
    }

    /// A fresh assertion for `client_id` at `audience` (the token endpoint).
    pub fn assertion(&self, client_id: &str, audience: &str) -> Result<Secret, TokenError> {
        #[derive(Serialize)]
        struct Claims<'a> {
            aud: &'a str,
            iss: &'a str,
            sub: &'a str,
            jti: String,
            nbf: u64,
            iat: u64,
            exp: u64,
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.x5t = Some(self.x5t.clone());
        header.x5t_s256 = Some(self.x5t_s256.clone());
        let claims = Claims {
            aud: audience,
            iss: client_id,
            sub: client_id,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: now,
            iat: now,
            exp: now + ASSERTION_LIFETIME.as_secs(),
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(Secret::new)
            .map_err(|_| TokenError::Config("client certificate: cannot sign the assertion".into()))
    }
}

/// How the app proves who it is.
#[derive(Debug)]
pub enum ClientProof {
    Secret(Secret),
    Certificate(ClientCertificate),
}

#[derive(Debug)]
pub struct ClientCredentials {
    http: reqwest::Client,
    endpoint: url::Url,
    client_id: String,
    proof: ClientProof,
}

impl ClientCredentials {
    /// `endpoint` is the tenant's token endpoint ([`tenant_token_endpoint`]) or a test double.
    pub fn new(
        http: reqwest::Client,
        endpoint: url::Url,
        client_id: impl Into<String>,
        proof: ClientProof,
    ) -> Self {
        ClientCredentials {
            http,
            endpoint,
            client_id: client_id.into(),
            proof,
        }
    }

    pub fn cached(self) -> super::Cached<Self> {
        super::Cached::new(self)
    }

    pub fn endpoint(&self) -> &url::Url {
        &self.endpoint
    }
}

#[async_trait::async_trait]
impl Fetch for ClientCredentials {
    async fn fetch(self: Arc<Self>, scope: String) -> Result<AccessToken, TokenError> {
        let label = endpoint_label(&self.endpoint);
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", self.client_id.clone()),
        ];
        // Kept in a Secret until the form is serialised, so no Debug of `form` can show it.
        let proof = match &self.proof {
            ClientProof::Secret(s) => ("client_secret", s.clone()),
            ClientProof::Certificate(c) => {
                form.push(("client_assertion_type", ASSERTION_TYPE.into()));
                (
                    "client_assertion",
                    c.assertion(&self.client_id, self.endpoint.as_str())?,
                )
            }
        };
        form.push(("scope", scope));
        let mut fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        fields.push((proof.0, proof.1.expose()));
        let request = self.http.post(self.endpoint.clone()).form(&fields);
        let (token, _) =
            request_token(&label, request, REQUEST_TIMEOUT, Some(DEFAULT_LIFETIME)).await?;
        Ok(token)
    }
}
