//! The app with its notification doubles: the limit-enforcing Bot Connector and Workflows
//! doubles ([`crate::notify_doubles`]) and the Moodle double, plus helpers to map users, store
//! their conversations and channel configurations, and run `NotifyFanout` the way a queue does.

use crate::bot_app::{spawn_bot_app, BotAppOptions, BotTestApp};
use crate::notify_doubles::{workflows_url, LimitedConnector, LimitedWebhook};
use bridge::bot::conversations::{ConversationKind, ConversationRef};
use bridge::error::FunctionOutputs;
use bridge::host::QueueMessage;
use bridge::notify::channels::{self, ChannelConfig};
use bridge::notify::queue::NotifyMessage;
use bridge::notify::schema::{Kind, Notification, Recipients};
use std::sync::Arc;

pub const SECRET: &str = "test-webhook-secret-0123456789";

pub struct NotifyTestApp {
    pub app: BotTestApp,
    pub connector: LimitedConnector,
    pub webhooks: LimitedWebhook,
}

/// What a run of the queue left behind.
#[derive(Debug, Default)]
pub struct Drained {
    /// Bodies written to `notify-poison`.
    pub poisoned: Vec<serde_json::Value>,
    /// Invocations that failed (and were retried).
    pub retries: usize,
    pub log: Vec<String>,
}

pub async fn spawn_notify_app(extra: Vec<(String, String)>) -> NotifyTestApp {
    let connector = LimitedConnector::start().await;
    let webhooks = LimitedWebhook::start().await;
    let mut env = vec![
        ("WEBHOOK_SECRET".to_string(), SECRET.to_string()),
        (
            "BOT_TOKEN_ENDPOINT".into(),
            format!("{}/oauth2/v2.0/token", connector.uri()),
        ),
        ("BOT_TRUSTED_SERVICE_URLS".into(), connector.uri()),
        ("NOTIFY_WEBHOOK_DOUBLE_URL".into(), webhooks.uri()),
    ];
    env.extend(extra);
    let app = spawn_bot_app(BotAppOptions {
        extra: env,
        ..Default::default()
    })
    .await;
    NotifyTestApp {
        app,
        connector,
        webhooks,
    }
}

pub fn aad_of(moodle: i64) -> String {
    format!("aad00000-0000-4000-8000-{moodle:012}")
}

pub fn conversation_of(moodle: i64) -> String {
    format!("a:conv-{moodle}")
}

pub fn notification(
    id: &str,
    kind: Kind,
    course: Option<i64>,
    recipients: Recipients,
) -> Notification {
    Notification {
        id: id.into(),
        kind,
        course,
        recipients,
        title: "Essai 2".into(),
        text: "À rendre vendredi".into(),
        link: Some("https://moodle.example/mod/assign/view.php?id=5".into()),
        due: Some(1_800_000_000),
        items: Vec::new(),
    }
}

impl NotifyTestApp {
    pub fn state(&self) -> &bridge::app::AppState {
        &self.app.state
    }

    /// A Moodle user known to Teams (mappings both ways) with a stored personal conversation.
    pub async fn add_user(&self, moodle: i64, locale: Option<&str>) {
        self.map_only(moodle).await;
        let r = ConversationRef {
            kind: ConversationKind::User,
            key: aad_of(moodle),
            conversation_id: conversation_of(moodle),
            service_url: self.connector.service_url(),
            tenant_id: Some(crate::bot_app::TENANT_ID.into()),
            user_id: Some(format!("29:user-{moodle}")),
            team_id: None,
            team_name: None,
            bot_id: Some(format!("28:{}", crate::bot_app::APP_ID)),
            locale: locale.map(str::to_string),
        };
        bridge::bot::conversations::save(&self.app.store, &r)
            .await
            .unwrap();
    }

    /// Mapped to a Teams user who never talked to the bot (no conversation).
    pub async fn map_only(&self, moodle: i64) {
        bridge::bot::mapping::remember_pair(
            &self.app.store,
            &aad_of(moodle),
            bridge::ids::MoodleUserId::new(moodle).unwrap(),
        )
        .await
        .unwrap();
    }

    pub async fn add_channel(&self, course: i64, id: &str, kinds: &[Kind], lang: &str) {
        self.add_channel_url(course, id, kinds, lang, &workflows_url(id))
            .await;
    }

    pub async fn add_channel_url(
        &self,
        course: i64,
        id: &str,
        kinds: &[Kind],
        lang: &str,
        url: &str,
    ) {
        channels::save(
            &self.app.store,
            &ChannelConfig {
                id: id.into(),
                course,
                url: url.into(),
                kinds: kinds.to_vec(),
                owner: crate::bot_app::TEACHER_AAD.into(),
                lang: lang.into(),
                channel_name: "Général".into(),
                disabled: None,
            },
        )
        .await
        .unwrap();
    }

    /// Run one queue message through `NotifyFanout`.
    pub async fn run(&self, text: &str, dequeue_count: u32) -> Result<FunctionOutputs, String> {
        run_on(self.state(), text, dequeue_count).await
    }

    /// Process `messages` and everything they queue, like queue workers (`concurrency` at a
    /// time), retrying failures up to the dequeue limit.
    pub async fn drain(&self, messages: Vec<NotifyMessage>, concurrency: usize) -> Drained {
        drain_on(self.state(), messages, concurrency).await
    }
}

pub async fn run_on(
    state: &bridge::app::AppState,
    text: &str,
    dequeue_count: u32,
) -> Result<FunctionOutputs, String> {
    let ctx = bridge::host::functions::InvocationContext {
        invocation_id: bridge::ids::InvocationId::new("test").unwrap(),
        function: "NotifyFanout",
    };
    let msg = QueueMessage {
        text: text.to_string(),
        dequeue_count,
        id: None,
    };
    bridge::notify::fanout::on_message(state, &ctx, msg)
        .await
        .map_err(|e| e.to_string())
}

pub async fn drain_on(
    state: &bridge::app::AppState,
    messages: Vec<NotifyMessage>,
    concurrency: usize,
) -> Drained {
    use futures::StreamExt;
    let mut pending: Vec<(String, u32)> = messages.iter().map(|m| (m.to_json(), 1)).collect();
    let out = Arc::new(std::sync::Mutex::new(Drained::default()));
    while !pending.is_empty() {
        let batch = std::mem::take(&mut pending);
        let results: Vec<_> = futures::stream::iter(batch)
            .map(|(text, count)| async move {
                let r = run_on(state, &text, count).await;
                (text, count, r)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut d = out.lock().unwrap();
        for (text, count, r) in results {
            match r {
                Ok(o) => {
                    d.log.extend(o.logs);
                    for (q, body) in o.queue {
                        match q.as_str() {
                            "notify" => pending.push((body, 1)),
                            "notify-poison" => {
                                d.poisoned.push(serde_json::from_str(&body).unwrap())
                            }
                            other => panic!("unexpected output queue {other}"),
                        }
                    }
                }
                Err(e) => {
                    d.retries += 1;
                    d.log.push(e);
                    pending.push((text, count + 1));
                }
            }
        }
    }
    Arc::try_unwrap(out).unwrap().into_inner().unwrap()
}
