//! The Bot Connector's signing side, made on this machine: an RSA key generated at start (never
//! written anywhere), its OpenID metadata and JWKS served on loopback in the Bot Framework's
//! shape (`kid`, `n`, `e`, `endorsements: ["msteams"]`), and tokens minted with it as the Bot
//! Connector mints them (issuer `https://api.botframework.com`, audience the bot's app id,
//! `serviceurl`). The bot checks them exactly as it checks Teams' own.

use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

pub const KID: &str = "demo-local-key";

pub struct LocalKeys {
    encoding: jsonwebtoken::EncodingKey,
    pub jwks: Value,
    /// `http://127.0.0.1:port`: metadata at `/v1/.well-known/openidconfiguration`.
    pub base: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl LocalKeys {
    /// Generate the key and serve its metadata and key set.
    pub async fn start() -> anyhow::Result<LocalKeys> {
        let key = tokio::task::spawn_blocking(|| {
            rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        })
        .await??;
        let der = key.to_pkcs1_der()?;
        let encoding = jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes());
        let jwks = json!({"keys": [{
            "kty": "RSA", "use": "sig", "kid": KID,
            "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
            "endorsements": ["msteams"],
        }]});
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let meta = json!({
            "issuer": bridge::bot::auth::validate::BOT_CONNECTOR_ISSUER,
            "jwks_uri": format!("{base}/keys"),
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        });
        let served = jwks.clone();
        let router = Router::new()
            .route(
                "/v1/.well-known/openidconfiguration",
                get(move || {
                    let m = meta.clone();
                    async move { Json(m) }
                }),
            )
            .route(
                "/keys",
                get(move || {
                    let k = served.clone();
                    async move { Json(k) }
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(LocalKeys {
            encoding,
            jwks,
            base,
        })
    }

    pub fn metadata_url(&self) -> String {
        format!("{}/v1/.well-known/openidconfiguration", self.base)
    }

    /// A Bot Connector token for `app_id`, valid for an hour, naming `service_url`.
    pub fn connector_token(&self, app_id: &str, service_url: &str) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(KID.into());
        let claims = json!({
            "serviceurl": service_url, "nbf": now - 60, "exp": now + 3600,
            "iss": bridge::bot::auth::validate::BOT_CONNECTOR_ISSUER, "aud": app_id,
        });
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }

    /// Any claims, signed with this key (the OpenID Connect double's ID tokens).
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(KID.into());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }
}
