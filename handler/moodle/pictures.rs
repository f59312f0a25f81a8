//! User pictures: the file goes to the service account's draft area through
//! `webservice/upload.php`, then `core_user_update_picture` (`draftitemid`, `delete=0`, `userid`)
//! makes it the user's picture. Both run as the token's user, so the draft item is theirs.
//!
//! What Moodle's code says (moodle/moodle `webservice/upload.php`, `user/externallib.php`
//! `update_picture`; no recording of these answers exists in the fixtures):
//! - upload.php needs "Can upload files" (`uploadfiles`) on the external service, else it throws
//!   `webservice_access_exception` (errorcode `accessexception`); as an AJAX script its errors
//!   are `{"error", "errorcode", "stacktrace", "debuginfo", "reproductionlink"}` objects, its
//!   success an array of file records with `itemid`; a file it refuses (over `maxbytes`, name taken)
//!   comes back as `{"filename", "errortype", "error"}` in that array.
//! - update_picture for another user requires `moodle/user:editprofile` in that user's context
//!   (`nopermissions` otherwise), an active (not suspended) user, an auth plugin that lets the
//!   profile be edited, `disableuserimages` off; only admins may change an admin's picture.
//!   It answers `{"success": bool, "profileimageurl"?, "warnings": []}`; `success=false` means
//!   Moodle could not make a picture of the file (not an image it can process).

use super::client::UPLOAD_CALL;
use super::{Form, MoodleClient, MoodleError};
use crate::ids::MoodleUserId;
use serde_json::Value;

/// The picture function (spelled out at its call too: `tests/functions_layout.rs` reads the
/// calls to check the README's list of functions).
pub const UPDATE_PICTURE: &str = "core_user_update_picture";

/// Puts `bytes` in a new draft item of the service account; its `itemid`.
pub async fn upload_draft(
    client: &MoodleClient,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> Result<i64, MoodleError> {
    let answer = client.upload_draft(filename, content_type, bytes).await?;
    draft_item(&answer)
}

/// Reads upload.php's answer (see the module comment for the shapes).
fn draft_item(answer: &Value) -> Result<i64, MoodleError> {
    if let Some(o) = answer.as_object() {
        let code = o
            .get("errorcode")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let message = crate::redact::redact(o.get("error").and_then(Value::as_str).unwrap_or(""));
        return Err(match code.as_str() {
            "invalidtoken" => MoodleError::InvalidToken,
            // "Web service file upload must be enabled in external service settings".
            "accessexception" => MoodleError::MissingCapability(format!(
                "{UPLOAD_CALL} refused the upload ({message}): tick \"Can upload files\" (uploadfiles) on the bridge's external service"
            )),
            _ => MoodleError::Other {
                code: if code.is_empty() { "(none)".into() } else { code },
                exception: UPLOAD_CALL.into(),
                message,
            },
        });
    }
    let first = answer
        .as_array()
        .and_then(|a| a.first())
        .ok_or_else(|| MoodleError::Protocol(format!("{UPLOAD_CALL}: no file record")))?;
    if let Some(kind) = first.get("errortype").and_then(Value::as_str) {
        let why = first.get("error").and_then(Value::as_str).unwrap_or("");
        return Err(MoodleError::Other {
            code: kind.to_string(),
            exception: UPLOAD_CALL.into(),
            message: crate::redact::redact(why),
        });
    }
    // `itemid` is an int in the record PHP encodes; accept its text form too.
    first
        .get("itemid")
        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
        .filter(|id| *id > 0)
        .ok_or_else(|| MoodleError::Protocol(format!("{UPLOAD_CALL}: file record without itemid")))
}

/// Makes the draft item the user's picture. A missing capability names what to grant.
pub async fn set_picture(
    client: &MoodleClient,
    user: MoodleUserId,
    draft_item: i64,
) -> Result<(), MoodleError> {
    let form = Form::new()
        .field("draftitemid", draft_item)
        .field("delete", 0)
        .field("userid", user.get());
    let answer = match client.call_value("core_user_update_picture", &form).await {
        Err(MoodleError::MissingCapability(m)) => {
            return Err(MoodleError::MissingCapability(format!(
                "{m}: grant moodle/user:editprofile to the service account's role ({UPDATE_PICTURE} checks it in the user's context)"
            )))
        }
        other => other?,
    };
    match answer.get("success").and_then(Value::as_bool) {
        Some(true) => Ok(()),
        Some(false) => Err(MoodleError::Other {
            code: "nopicture".into(),
            exception: UPDATE_PICTURE.into(),
            message: "Moodle could not make a picture of the file (not an image it can process)"
                .into(),
        }),
        None => Err(MoodleError::Protocol(format!(
            "{UPDATE_PICTURE}: answer without success"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::draft_item;
    use serde_json::json;

    #[test]
    fn upload_answers_are_read_defensively() {
        let ok = json!([{"component": "user", "contextid": 30, "userid": "3", "filearea": "draft",
            "filename": "entra-photo.jpg", "filepath": "/", "itemid": 123456789, "license": "allrightsreserved",
            "author": "Bridge Service", "source": "O:8:\"stdClass\":1:{}"}]);
        assert_eq!(draft_item(&ok).unwrap(), 123456789);
        assert_eq!(draft_item(&json!([{"itemid": "42"}])).unwrap(), 42);
        let refused =
            json!([{"filename": "x.jpg", "errortype": "fileoversized", "error": "too big"}]);
        assert!(draft_item(&refused)
            .unwrap_err()
            .to_string()
            .contains("fileoversized"));
        let disabled = json!({"error": "Web service file upload must be enabled in external service settings",
            "errorcode": "accessexception", "stacktrace": null, "debuginfo": null, "reproductionlink": null});
        assert!(draft_item(&disabled)
            .unwrap_err()
            .to_string()
            .contains("uploadfiles"));
        assert!(matches!(
            draft_item(&json!({"error": "Invalid token", "errorcode": "invalidtoken"})),
            Err(crate::moodle::MoodleError::InvalidToken)
        ));
        assert!(draft_item(&json!([])).is_err());
    }
}
