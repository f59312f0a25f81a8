//! The notification body of `/api/webhook`, checked against `notification.schema.json` (this
//! folder; the one documented schema, compiled here and read by the tests), then turned into
//! one [`Notification`] whatever the shape it came in.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::OnceLock;

/// The schema file, as shipped in the repository.
pub const SCHEMA: &str = include_str!("notification.schema.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    AssignmentDue,
    GradeReleased,
    ForumPost,
    Announcement,
    Custom,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::AssignmentDue,
        Kind::GradeReleased,
        Kind::ForumPost,
        Kind::Announcement,
        Kind::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AssignmentDue => "assignment_due",
            Kind::GradeReleased => "grade_released",
            Kind::ForumPost => "forum_post",
            Kind::Announcement => "announcement",
            Kind::Custom => "custom",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Who gets the personal bot message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipients {
    /// Moodle user ids.
    Users(Vec<i64>),
    /// Every active enrolment of the notification's course.
    CourseMembers,
    /// Entra object ids (legacy shape only).
    Entra(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListItem {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub url: Option<String>,
}

/// One notification, as queued on `notify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The idempotency key: deliveries are keyed by (id, target).
    pub id: String,
    pub kind: Kind,
    pub course: Option<i64>,
    pub recipients: Recipients,
    pub title: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub due: Option<i64>,
    #[serde(default)]
    pub items: Vec<ListItem>,
}

/// A body the schema refuses: the field (a JSON pointer, `/` for the whole body) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SchemaError {
    pub field: String,
    pub reason: String,
}

fn validators() -> &'static (jsonschema::Validator, jsonschema::Validator) {
    static V: OnceLock<(jsonschema::Validator, jsonschema::Validator)> = OnceLock::new();
    V.get_or_init(|| {
        let schema: Value = serde_json::from_str(SCHEMA).expect("notification.schema.json is JSON");
        // One validator per shape, so an error names the field of the shape the sender meant
        // rather than "matches none of oneOf".
        let shape = |name: &str| {
            let mut s = serde_json::json!({ "$ref": format!("#/$defs/{name}") });
            s["$defs"] = schema["$defs"].clone();
            s["$schema"] = schema["$schema"].clone();
            jsonschema::validator_for(&s).expect("notification.schema.json compiles")
        };
        (shape("notification"), shape("legacy"))
    })
}

fn first_error(v: &jsonschema::Validator, body: &Value) -> Option<SchemaError> {
    let e = v.iter_errors(body).next()?;
    use jsonschema::error::ValidationErrorKind as K;
    let base = e.instance_path.as_str().to_string();
    let join = |name: &str| format!("{base}/{name}");
    let (field, reason) = match &e.kind {
        K::Required { property } => (
            join(property.as_str().unwrap_or("?")),
            "required".to_string(),
        ),
        K::AdditionalProperties { unexpected } => (
            join(unexpected.first().map(String::as_str).unwrap_or("?")),
            "not a field of this schema".to_string(),
        ),
        // The masked form never echoes the sender's value (it may hold personal data).
        _ => (base.clone(), e.masked().to_string()),
    };
    Some(SchemaError {
        field: if field.is_empty() { "/".into() } else { field },
        reason,
    })
}

/// The legacy shape is recognised by its `message` field (and no `kind`).
fn is_legacy(body: &Value) -> bool {
    body.get("message").is_some() && body.get("kind").is_none()
}

/// Check `body` against the schema and normalise it. `legacy_key` is the idempotency key of a
/// legacy body (which has none of its own): a digest of the raw bytes, so a resent body is
/// recognised.
pub fn parse(body: &Value, legacy_key: &str) -> Result<Notification, SchemaError> {
    let (own, legacy) = validators();
    if !body.is_object() {
        return Err(SchemaError {
            field: "/".into(),
            reason: "a JSON object is expected".into(),
        });
    }
    if is_legacy(body) {
        if let Some(e) = first_error(legacy, body) {
            return Err(e);
        }
        return Ok(from_legacy(body, legacy_key));
    }
    if let Some(e) = first_error(own, body) {
        return Err(e);
    }
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let recipients = match &body["recipients"] {
        Value::String(_) => Recipients::CourseMembers,
        Value::Array(a) => Recipients::Users(a.iter().filter_map(Value::as_i64).collect()),
        _ => unreachable!("checked by the schema"),
    };
    Ok(Notification {
        id: s("idempotency_key").unwrap_or_default(),
        kind: s("kind")
            .and_then(|k| Kind::parse(&k))
            .expect("checked by the schema"),
        course: body.get("course").and_then(Value::as_i64),
        recipients,
        title: s("title").unwrap_or_default(),
        text: s("text").unwrap_or_default(),
        link: s("link"),
        due: body.get("due").and_then(Value::as_i64),
        items: Vec::new(),
    })
}

/// One `listItems` entry. local_o365 (`observers::handle_notification_sent`) sends
/// `{title, subtitle, icon, action, actionType: "openUrl"}`; `{title, content, url}` is taken too.
fn legacy_item(v: &Value) -> ListItem {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let opens = matches!(
        v.get("actionType").and_then(Value::as_str),
        None | Some("openUrl")
    );
    ListItem {
        title: s("title").unwrap_or_default(),
        content: s("content").or_else(|| s("subtitle")).unwrap_or_default(),
        url: s("url").or_else(|| s("action").filter(|_| opens)),
    }
}

/// local_o365 names the course by its team: the Entra group id of the course's team
/// (`local_o365_objects`, type group, subtype course). The intake finds the course through the
/// course ↔ team mapping of `teams_sync`.
pub fn legacy_team_group(body: &Value) -> Option<String> {
    if !is_legacy(body) {
        return None;
    }
    let t = body.get("team")?.as_str()?.trim();
    let guid = t.len() == 36
        && t.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    guid.then(|| t.to_ascii_lowercase())
}

fn from_legacy(body: &Value, key: &str) -> Notification {
    let recipients = match &body["user"] {
        Value::Number(n) => Recipients::Users(n.as_i64().into_iter().collect()),
        Value::String(s) => match s.parse::<i64>() {
            Ok(id) => Recipients::Users(vec![id]),
            Err(_) => Recipients::Entra(vec![s.to_ascii_lowercase()]),
        },
        _ => Recipients::Users(Vec::new()),
    };
    let course = match &body["team"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse::<i64>().ok(),
        _ => None,
    };
    let items: Vec<ListItem> = body
        .get("listItems")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(legacy_item).collect())
        .unwrap_or_default();
    let message = body["message"].as_str().unwrap_or_default();
    // The old bot showed the message as the card's heading; keep the first line as the title.
    let title: String = message
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(250)
        .collect();
    Notification {
        id: key.to_string(),
        kind: Kind::Custom,
        course: course.filter(|c| *c > 0),
        recipients,
        title,
        text: message.to_string(),
        link: items.iter().find_map(|i| i.url.clone()),
        due: None,
        items,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok() -> Value {
        json!({"kind": "assignment_due", "course": 2, "recipients": [3, 4], "title": "Essai",
               "text": "À rendre", "link": "https://moodle.example/mod/assign/view.php?id=1",
               "due": 1_800_000_000, "idempotency_key": "assign-1-due"})
    }

    #[test]
    fn the_schema_kinds_are_the_code_kinds() {
        let schema: Value = serde_json::from_str(SCHEMA).unwrap();
        let kinds: Vec<&str> = schema["$defs"]["notification"]["properties"]["kind"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(kinds, Kind::ALL.map(Kind::as_str).to_vec());
    }

    #[test]
    fn a_valid_body_and_each_broken_field_is_named() {
        let n = parse(&ok(), "x").unwrap();
        assert_eq!(n.recipients, Recipients::Users(vec![3, 4]));
        assert_eq!(n.id, "assign-1-due");
        let cases: Vec<(Value, &str)> = vec![
            (json!({"kind": "nope"}), "/kind"),
            (json!({"course": "2"}), "/course"),
            (json!({"recipients": "everyone"}), "/recipients"),
            (json!({"recipients": [1, 1]}), "/recipients"),
            (json!({"title": ""}), "/title"),
            (json!({"title": "x".repeat(251)}), "/title"),
            (json!({"link": "javascript:alert(1)"}), "/link"),
            (json!({"idempotency_key": "a/b"}), "/idempotency_key"),
            (json!({"extra": 1}), "/extra"),
        ];
        for (patch, field) in cases {
            let mut body = ok();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            let e = parse(&body, "x").unwrap_err();
            assert_eq!(e.field, field, "{patch}: {e}");
        }
        let mut missing = ok();
        missing.as_object_mut().unwrap().remove("idempotency_key");
        assert_eq!(parse(&missing, "x").unwrap_err().field, "/idempotency_key");
        let mut members = ok();
        members["recipients"] = json!("course_members");
        assert_eq!(
            parse(&members, "x").unwrap().recipients,
            Recipients::CourseMembers
        );
        members.as_object_mut().unwrap().remove("course");
        assert_eq!(parse(&members, "x").unwrap_err().field, "/course");
        assert_eq!(parse(&json!([1]), "x").unwrap_err().field, "/");
    }

    #[test]
    fn the_legacy_shape() {
        let body = json!({"user": "2AD00000-0000-4000-8000-00000000A007", "message": "Nouveau devoir\nÀ rendre vendredi",
                          "listItems": [{"title": "Devoir", "content": "Essai", "url": "https://moodle.example/x"}],
                          "team": "5"});
        let n = parse(&body, "legacy-abc").unwrap();
        assert_eq!(n.id, "legacy-abc");
        assert_eq!(n.kind, Kind::Custom);
        assert_eq!(n.course, Some(5));
        assert_eq!(n.title, "Nouveau devoir");
        assert_eq!(
            n.recipients,
            Recipients::Entra(vec!["2ad00000-0000-4000-8000-00000000a007".into()])
        );
        assert_eq!(n.link.as_deref(), Some("https://moodle.example/x"));
        assert_eq!(legacy_team_group(&body), None, "a course id, not a team");
        // Exactly what local_o365 posts: team = the course team's group id, items with action.
        let o365 = json!({"team": "0F3A0000-0000-4000-8000-0000000000C2", "user": "2ad00000-0000-4000-8000-00000000a007",
                          "message": "Devoir noté",
                          "listItems": [{"title": "Essai", "subtitle": "", "icon": "https://moodle.example/local/o365/pix/moodle.png",
                                         "action": "https://moodle.example/mod/assign/view.php?id=4", "actionType": "openUrl"}]});
        let n = parse(&o365, "legacy-def").unwrap();
        assert_eq!(
            n.course, None,
            "resolved by the intake through the team mapping"
        );
        assert_eq!(
            legacy_team_group(&o365).as_deref(),
            Some("0f3a0000-0000-4000-8000-0000000000c2")
        );
        assert_eq!(
            n.link.as_deref(),
            Some("https://moodle.example/mod/assign/view.php?id=4")
        );
        assert_eq!(n.items[0].title, "Essai");
        let mut not_a_link = o365.clone();
        not_a_link["listItems"][0]["actionType"] = json!("messageBack");
        assert_eq!(parse(&not_a_link, "k").unwrap().link, None);
        let mut bad_action = o365.clone();
        bad_action["listItems"][0]["action"] = json!("javascript:alert(1)");
        assert_eq!(
            parse(&bad_action, "k").unwrap_err().field,
            "/listItems/0/action"
        );
        assert_eq!(
            parse(&json!({"user": 7, "message": "x"}), "k")
                .unwrap()
                .recipients,
            Recipients::Users(vec![7])
        );
        assert_eq!(
            parse(&json!({"user": "bob", "message": "x"}), "k")
                .unwrap_err()
                .field,
            "/user"
        );
        assert_eq!(
            parse(&json!({"user": 7, "message": ""}), "k")
                .unwrap_err()
                .field,
            "/message"
        );
    }
}
