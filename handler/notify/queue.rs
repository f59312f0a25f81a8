//! What travels on the `notify` queue: a notification to fan out, or one (notification, target)
//! delivery. Fan-out splits a notification into one message per target, so a slow or throttled
//! target (one conversation, one webhook) holds only its own message.

use super::schema::Notification;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A Moodle user: their personal chat with the bot.
    User { moodle: i64 },
    /// An Entra user (legacy shape): their personal chat with the bot.
    Entra { object_id: String },
    /// A channel configuration (`webhooks` table) of a course.
    Channel { course: i64, config: String },
}

impl Target {
    /// Stable name of the target in delivery keys and reports.
    pub fn key(&self) -> String {
        match self {
            Target::User { moodle } => format!("user:{moodle}"),
            Target::Entra { object_id } => format!("entra:{object_id}"),
            Target::Channel { course, config } => format!("channel:{course}:{config}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum NotifyMessage {
    Fanout {
        notification: Notification,
    },
    Deliver {
        notification: Notification,
        target: Target,
    },
}

impl NotifyMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }
}

/// A message that failed for good, as written to `notify-poison`: the original and the reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Poisoned {
    pub message: serde_json::Value,
    pub reason: String,
    pub attempts: u32,
}
