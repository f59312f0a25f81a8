//! Parsing of the host's invocation JSON. Real hosts JSON-encode string values twice and send
//! numbers as strings (`"DequeueCount": "1"`); the docs show the plain forms. Accept both.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
pub struct InvocationRequest {
    #[serde(rename = "Data", default)]
    pub data: Map<String, Value>,
    #[serde(rename = "Metadata", default)]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PayloadError {
    #[error("invocation body is not valid JSON: {0}")]
    Json(String),
    #[error("invocation has no input binding named {0:?} in Data")]
    MissingBinding(String),
    #[error("binding {binding:?}: {problem}")]
    Shape { binding: String, problem: String },
}

impl InvocationRequest {
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))
    }

    fn binding(&self, name: &str) -> Result<&Value, PayloadError> {
        self.data.get(name).ok_or_else(|| PayloadError::MissingBinding(name.to_string()))
    }

    /// `sys.MethodName`, or the name given in the URL.
    pub fn method_name(&self) -> Option<&str> {
        self.metadata.get("sys")?.get("MethodName")?.as_str()
    }

    pub fn timer(&self, binding: &str) -> Result<TimerInfo, PayloadError> {
        TimerInfo::from_value(self.binding(binding)?).map_err(|problem| PayloadError::Shape { binding: binding.into(), problem })
    }

    pub fn queue(&self, binding: &str) -> Result<QueueMessage, PayloadError> {
        let text = decode_string_value(self.binding(binding)?)
            .ok_or_else(|| PayloadError::Shape { binding: binding.into(), problem: "queue message is not a string".into() })?;
        Ok(QueueMessage {
            text,
            dequeue_count: self.metadata.get("DequeueCount").and_then(lenient_u32).unwrap_or(1),
            id: self.metadata.get("Id").and_then(decode_string_value),
        })
    }

    pub fn http(&self, binding: &str) -> Result<HttpRequestData, PayloadError> {
        serde_json::from_value(self.binding(binding)?.clone())
            .map_err(|e| PayloadError::Shape { binding: binding.into(), problem: e.to_string() })
    }
}

/// A string value as the host sends it: `"\"hello\""` (JSON text of the string, the real host)
/// or `"hello"` (the documented sample). Returns the message text.
pub fn decode_string_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s1) => match serde_json::from_str::<Value>(s1) {
            Ok(Value::String(s2)) => Some(s2),
            _ => Some(s1.clone()),
        },
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `1`, `"1"` or `"\"1\""`.
pub fn lenient_u32(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        other => decode_string_value(other)?.trim().parse().ok(),
    }
}

/// Lenient time parsing: offset or `Z`, optional fraction, or no zone at all (taken as UTC).
/// `0001-01-01T00:00:00` means "never ran".
pub fn lenient_time(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?.trim().trim_matches('"');
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc()))?;
    (t.timestamp() > 0).then_some(t)
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimerInfo {
    pub is_past_due: bool,
    pub last: Option<DateTime<Utc>>,
    pub next: Option<DateTime<Utc>>,
}

impl TimerInfo {
    fn from_value(v: &Value) -> Result<Self, String> {
        let obj = v.as_object().ok_or("timer info is not an object")?;
        let is_past_due = match obj.get("IsPastDue") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.trim_matches('"').eq_ignore_ascii_case("true"),
            Some(other) => return Err(format!("IsPastDue is {other}")),
        };
        let status = obj.get("ScheduleStatus").and_then(Value::as_object);
        Ok(TimerInfo {
            is_past_due,
            last: status.and_then(|s| s.get("Last")).and_then(lenient_time),
            next: status.and_then(|s| s.get("Next")).and_then(lenient_time),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueMessage {
    pub text: String,
    pub dequeue_count: u32,
    pub id: Option<String>,
}

/// `Data.req` of a non-forwarded HTTP invocation.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpRequestData {
    #[serde(rename = "Url")]
    pub url: String,
    #[serde(rename = "Method")]
    pub method: String,
    #[serde(rename = "Headers", default)]
    pub headers: BTreeMap<String, HeaderValues>,
    #[serde(rename = "Body", default)]
    pub body: Option<Value>,
}

/// Headers arrive as arrays of strings; accept a single string too.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HeaderValues {
    Many(Vec<String>),
    One(String),
}

impl HeaderValues {
    pub fn values(&self) -> Vec<&str> {
        match self {
            HeaderValues::Many(v) => v.iter().map(String::as_str).collect(),
            HeaderValues::One(s) => vec![s.as_str()],
        }
    }
}

impl HttpRequestData {
    /// Body bytes: a JSON string is the raw body text; anything else is re-serialised.
    pub fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.clone().into_bytes(),
            Some(other) => other.to_string().into_bytes(),
        }
    }

    /// Path and query of the original URL, e.g. `/api/webhook?x=1`.
    pub fn path_and_query(&self) -> Result<String, String> {
        let url = url::Url::parse(&self.url).map_err(|e| format!("Url {:?}: {e}", self.url))?;
        Ok(match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        })
    }
}
