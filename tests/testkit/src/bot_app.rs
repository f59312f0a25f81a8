//! The bot under test: the app in-process on a random port, with its doubles — a key server
//! (OpenID metadata + JWKS from the fixtures), a Bot Connector double (token endpoint, replies,
//! roster) and the Moodle double — plus a token minter using the TEST-ONLY fixture keys.

use crate::fake_moodle::FakeMoodle;
use crate::{fixture, fixture_json};
use base64::Engine;
use bridge::app::AppState;
use bridge::store::SharedStore;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const APP_ID: &str = "b0700000-0000-4000-8000-000000000001";
pub const OTHER_APP_ID: &str = "0a0e0000-0000-4000-8000-000000000002";
pub const TENANT_ID: &str = "7e570000-0000-4000-8000-000000000001";
pub const ISSUER: &str = "https://api.botframework.com";
pub const ACCESS_TOKEN: &str = "test-outbound-access-token";
pub const USER_AAD: &str = "aad00000-0000-4000-8000-00000000a007";
pub const TEACHER_AAD: &str = "aad00000-0000-4000-8000-00000000a005";

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// TEST-ONLY keys of `fixtures/botframework/keys`.
#[derive(Clone, Copy, Debug)]
pub enum TestKey {
    EndorsedMsteams,
    NotEndorsed,
    OtherIssuer,
}

impl TestKey {
    pub fn kid(self) -> &'static str {
        match self {
            TestKey::EndorsedMsteams => "test-kid-endorsed-msteams",
            TestKey::NotEndorsed => "test-kid-not-endorsed",
            TestKey::OtherIssuer => "test-kid-other-issuer",
        }
    }
    fn file(self) -> &'static str {
        match self {
            TestKey::EndorsedMsteams => "endorsed-msteams",
            TestKey::NotEndorsed => "not-endorsed",
            TestKey::OtherIssuer => "other-issuer",
        }
    }
    pub fn encoding_key(self) -> jsonwebtoken::EncodingKey {
        let pem = fixture(&format!("botframework/keys/{}.pem", self.file()));
        jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("test key")
    }
    pub fn public_pem(self) -> String {
        fixture(&format!("botframework/keys/{}.pub.pem", self.file()))
    }
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Sign `header.claims` exactly as given (RS256/384/512 with a test key).
pub fn mint_raw(header: &Value, claims: &Value, key: TestKey) -> String {
    let alg = match header["alg"].as_str().unwrap_or("RS256") {
        "RS384" => jsonwebtoken::Algorithm::RS384,
        "RS512" => jsonwebtoken::Algorithm::RS512,
        _ => jsonwebtoken::Algorithm::RS256,
    };
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key.encoding_key(), alg).expect("sign");
    format!("{message}.{sig}")
}

pub fn header_for(key: TestKey) -> Value {
    json!({"typ": "JWT", "alg": "RS256", "kid": key.kid()})
}

/// The valid Bot Connector claims of the matrix, for `service_url`.
pub fn base_claims(service_url: &str) -> Value {
    let now = now();
    json!({"serviceurl": service_url, "nbf": now - 300, "exp": now + 3600, "iss": ISSUER, "aud": APP_ID})
}

pub fn valid_token(service_url: &str) -> String {
    mint_raw(
        &header_for(TestKey::EndorsedMsteams),
        &base_claims(service_url),
        TestKey::EndorsedMsteams,
    )
}

/// A fixture activity with its placeholders filled and `serviceUrl` pointing at `service_url`.
pub fn activity(name: &str, service_url: &str) -> Value {
    let text = fixture(&format!("botframework/{name}"))
        .replace("{{BOT_APP_ID}}", APP_ID)
        .replace("{{TENANT_ID}}", TENANT_ID)
        .replace("{{USER_ID}}", "1user-teams-id")
        .replace("{{USER_AAD_OBJECT_ID}}", USER_AAD)
        .replace("{{PERSONAL_CONVERSATION_ID}}", "1personal-conversation")
        .replace("{{TEAM_ID}}", "team-1")
        .replace("{{CHANNEL_ID}}", "channel-1")
        .replace("{{TEAM_AAD_GROUP_ID}}", "group-1")
        .replace("{{ACTIVITY_ID}}", "1700000000001")
        .replace("{{CARD_ACTIVITY_ID}}", "1700000000002")
        .replace("{{EVENT_ID}}", "event-1")
        .replace("{{INVOKE_ID}}", "invoke-1")
        .replace("{{MOODLE_COURSE_ID}}", "2");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["serviceUrl"] = json!(service_url);
    v
}

/// A personal message from `aad` with `text` in `locale`.
pub fn personal_message(service_url: &str, text: &str, locale: &str, aad: &str) -> Value {
    let mut a = activity("message-personal.json", service_url);
    a["text"] = json!(text);
    a["locale"] = json!(locale);
    a["entities"][0]["locale"] = json!(locale);
    a["from"]["aadObjectId"] = json!(aad);
    a["conversation"]["id"] = json!(format!("a:conv-{aad}"));
    a
}

pub struct BotAppOptions {
    pub sqlite_path: Option<PathBuf>,
    pub with_moodle: bool,
    /// Mount the key server's routes (false = key endpoint down).
    pub keys_up: bool,
    pub extra: Vec<(String, String)>,
}

impl Default for BotAppOptions {
    fn default() -> Self {
        BotAppOptions {
            sqlite_path: None,
            with_moodle: true,
            keys_up: true,
            extra: Vec::new(),
        }
    }
}

pub struct BotTestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub store: SharedStore,
    pub keys: MockServer,
    pub connector: MockServer,
    pub moodle: Option<FakeMoodle>,
    pub client: reqwest::Client,
    pub dir: Arc<tempfile::TempDir>,
    pub sqlite_path: PathBuf,
}

pub async fn mount_keys(keys: &MockServer, jwks: Value) {
    let meta = fixture("botframework/openid-configuration.json")
        .replace("http://127.0.0.1:{PORT}", &keys.uri());
    Mock::given(method("GET"))
        .and(path("/v1/.well-known/openidconfiguration"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(meta, "application/json"))
        .mount(keys)
        .await;
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks))
        .mount(keys)
        .await;
}

/// The Entra token endpoint the bot gets its outbound token from (`/oauth2/v2.0/token`).
pub async fn mount_token(server: &MockServer) {
    let token = fixture("botframework/outbound-token.response.json")
        .replace("{{ACCESS_TOKEN}}", ACCESS_TOKEN);
    Mock::given(method("POST"))
        .and(path("/oauth2/v2.0/token"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(token, "application/json"))
        .mount(server)
        .await;
}

/// Connector double: token endpoint, replies/sends (200 with an id), roster lookups.
pub async fn mount_connector(connector: &MockServer) {
    mount_token(connector).await;
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/emea/v3/conversations/[^/]+/activities(/[^/]+)?$",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "sent-1"})))
        .mount(connector)
        .await;
}

/// The bot's settings on the embedded store, pointed at a key server (`keys`, OpenID metadata of
/// [`mount_keys`]), a token endpoint (`token`, [`mount_token`]) and a trusted Connector.
pub fn bot_env(
    sqlite: &Path,
    blobs: &Path,
    keys: &str,
    token: &str,
    connector: &str,
) -> BTreeMap<String, String> {
    [
        ("STORE_BACKEND", "sqlite".to_string()),
        ("SQLITE_PATH", sqlite.display().to_string()),
        ("BLOB_DIR", blobs.display().to_string()),
        ("BOT_APP_ID", APP_ID.into()),
        ("BOT_APP_TYPE", "SingleTenant".into()),
        ("BOT_TENANT_ID", TENANT_ID.into()),
        ("BOT_APP_PASSWORD", "test-client-secret".into()),
        (
            "BOT_OPENID_METADATA_URL",
            format!("{keys}/v1/.well-known/openidconfiguration"),
        ),
        ("BOT_TOKEN_ENDPOINT", format!("{token}/oauth2/v2.0/token")),
        ("BOT_TRUSTED_SERVICE_URLS", connector.to_string()),
        ("BOT_ANSWER_CACHE_SECS", "0".into()),
        ("LOG_LEVEL", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Map an Entra user to a Moodle user the way the sync does (`mappings` table).
pub async fn map_user(store: &SharedStore, aad: &str, moodle_id: i64) -> anyhow::Result<()> {
    let e = bridge::store::Entity::new(
        bridge::bot::mapping::ENTRA_USER_PARTITION,
        aad.to_ascii_lowercase(),
    )
    .with(bridge::bot::mapping::MOODLE_USER_ID_PROP, moodle_id);
    store.upsert(bridge::store::tables::MAPPINGS, &e).await?;
    Ok(())
}

pub async fn spawn_bot_app(opts: BotAppOptions) -> BotTestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    spawn_bot_app_in(opts, dir).await
}

pub async fn spawn_bot_app_in(opts: BotAppOptions, dir: Arc<tempfile::TempDir>) -> BotTestApp {
    let keys = MockServer::start().await;
    if opts.keys_up {
        mount_keys(&keys, fixture_json("botframework/jwks.json")).await;
    }
    let connector = MockServer::start().await;
    mount_connector(&connector).await;
    let moodle = if opts.with_moodle {
        Some(FakeMoodle::replaying().await)
    } else {
        None
    };
    let sqlite_path = opts
        .sqlite_path
        .clone()
        .unwrap_or_else(|| dir.path().join("bridge.sqlite"));
    let mut env = bot_env(
        &sqlite_path,
        &dir.path().join("blobs"),
        &keys.uri(),
        &connector.uri(),
        &connector.uri(),
    );
    if let Some(m) = &moodle {
        env.insert("MOODLE_URL".into(), m.base_url());
        env.insert("MOODLE_TOKEN".into(), "TOKEN".into());
    }
    for (k, v) in &opts.extra {
        env.insert(k.clone(), v.clone());
    }
    let settings = bridge::settings::Settings::load(&mut bridge::config::Source::from_map(env))
        .expect("settings");
    let store: SharedStore =
        Arc::new(bridge::store::sqlite::SqliteStore::open(&sqlite_path).unwrap());
    store.ensure_tables().await.unwrap();
    let blobs = Arc::new(bridge::store::blob::FsBlobStore::new(
        dir.path().join("blobs"),
    ));
    // With the local durable queue, as under `serve`: replies that cannot go within the request
    // are queued there (see `drain_replies`).
    let state = AppState::from_parts(settings, store.clone(), blobs, true).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The custom handler's router: the public routes plus `POST /<Function>` invocations, so
    // both ways a request reaches the bot (serve / host invocation) are on this port.
    let router = bridge::app::custom_handler_router(state.clone());
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    BotTestApp {
        addr,
        state,
        store,
        keys,
        connector,
        moodle,
        client: reqwest::Client::new(),
        dir,
        sqlite_path,
    }
}

impl BotTestApp {
    /// The service URL activities carry: the Connector double.
    pub fn service_url(&self) -> String {
        format!("{}/emea/", self.connector.uri())
    }

    pub fn moodle(&self) -> &FakeMoodle {
        self.moodle
            .as_ref()
            .expect("app started with a Moodle double")
    }

    pub async fn post_raw(&self, auth: Option<&str>, body: Vec<u8>) -> reqwest::Response {
        let mut req = self
            .client
            .post(format!("http://{}/api/messages", self.addr))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().await.unwrap()
    }

    /// POST an activity with a valid token for this app's service URL.
    pub async fn post(&self, activity: &Value) -> reqwest::Response {
        let token = valid_token(&self.service_url());
        self.post_raw(
            Some(&format!("Bearer {token}")),
            activity.to_string().into_bytes(),
        )
        .await
    }

    /// Requests the Connector double received on conversation activity routes.
    pub async fn sent_activities(&self) -> Vec<(String, Value, String)> {
        self.connector
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().contains("/activities"))
            .map(|r| {
                let auth = r
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                (
                    r.url.path().to_string(),
                    serde_json::from_slice(&r.body).unwrap_or(Value::Null),
                    auth,
                )
            })
            .collect()
    }

    pub async fn key_fetches(&self) -> usize {
        self.keys
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == "/keys")
            .count()
    }

    /// Map an Entra user to a Moodle user the way the sync does (`mappings` table).
    pub async fn map_user(&self, aad: &str, moodle_id: i64) {
        map_user(&self.store, aad, moodle_id).await.unwrap();
    }

    pub async fn conversation_rows(&self, partition: &str) -> Vec<bridge::store::Entity> {
        self.store
            .query(bridge::store::tables::CONVERSATIONS, partition, None, 100)
            .await
            .unwrap()
            .entities
    }
}

/// Records when each Connector activity request arrived (path and instant), answering 200.
#[derive(Clone, Default)]
pub struct SendLog(pub Arc<std::sync::Mutex<Vec<(std::time::Instant, String)>>>);

impl wiremock::Respond for SendLog {
    fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
        self.0
            .lock()
            .unwrap()
            .push((std::time::Instant::now(), req.url.path().to_string()));
        ResponseTemplate::new(200).set_body_json(json!({"id": "sent-1"}))
    }
}

impl SendLog {
    pub fn paths(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    }
    pub fn times(&self) -> Vec<std::time::Instant> {
        let mut t: Vec<_> = self.0.lock().unwrap().iter().map(|(t, _)| *t).collect();
        t.sort();
        t
    }
}

impl BotTestApp {
    /// Put a [`SendLog`] in front of the Connector double's activity routes.
    pub async fn log_sends(&self) -> SendLog {
        let log = SendLog::default();
        Mock::given(method("POST"))
            .and(path_regex(r"/activities(/[^/]+)?$"))
            .respond_with(log.clone())
            .with_priority(1)
            .mount(&self.connector)
            .await;
        log
    }

    /// Run `BotReplies` on every message of the local `bot-replies` queue until it is empty, as
    /// `serve`'s worker does; returns the bodies it processed.
    pub async fn drain_replies(&self) -> Vec<String> {
        let q = self.state.local_queue.as_ref().expect("local queue");
        let mut bodies = Vec::new();
        while let Some(c) = q.receive("bot-replies").await.unwrap() {
            let msg = bridge::host::QueueMessage {
                text: c.body.clone(),
                dequeue_count: c.dequeue_count,
                id: Some(c.row_key.clone()),
            };
            let ctx = bridge::host::functions::InvocationContext {
                invocation_id: bridge::ids::InvocationId::new("test").unwrap(),
                function: "BotReplies",
            };
            bridge::bot::replies::on_queued_reply(&self.state, &ctx, msg)
                .await
                .expect("queued reply handled");
            q.complete(&c).await.unwrap();
            bodies.push(c.body);
        }
        bodies
    }

    /// POST `activity` the way the Functions host invokes a non-forwarded HTTP function:
    /// `POST /BotMessages` with the request inside `Data.req`; returns the invocation answer.
    pub async fn invoke_messages(&self, auth: Option<&str>, body: &[u8]) -> Value {
        let mut headers = json!({"Content-Type": ["application/json"]});
        if let Some(a) = auth {
            headers["Authorization"] = json!([a]);
        }
        let invocation = json!({
            "Data": {"req": {
                "Url": format!("http://{}/api/messages", self.addr),
                "Method": "POST",
                "Headers": headers,
                "Body": String::from_utf8_lossy(body),
            }},
            "Metadata": {}
        });
        let resp = self
            .client
            .post(format!("http://{}/BotMessages", self.addr))
            .json(&invocation)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "the invocation itself succeeds");
        resp.json().await.unwrap()
    }
}
