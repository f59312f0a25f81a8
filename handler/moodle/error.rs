//! Moodle answers HTTP 200 for errors too: an error is a JSON object with an `exception` key.
//! Match on `errorcode` (the class name has two spellings; `errorcode` can be missing for PHP
//! `TypeError`s). With debugging off, many causes collapse to `invalidparameter`.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct MoodleException {
    pub exception: String,
    #[serde(default)]
    pub errorcode: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub debuginfo: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MoodleError {
    #[error("Moodle rejected the web-service token (invalidtoken): check MOODLE_TOKEN")]
    InvalidToken,
    #[error("the Moodle service account lacks a capability: {0}")]
    MissingCapability(String),
    #[error("web-service function {0} is not enabled in the bridge's external service (accessexception)")]
    FunctionNotEnabled(String),
    #[error("web-service function {0} does not exist on this Moodle (invalidrecord)")]
    UnknownFunction(String),
    #[error("Moodle refused the parameters ({code}): {message}")]
    InvalidParameter { code: String, message: String, debuginfo: Option<String> },
    #[error("record already exists: {0}")]
    Duplicate(String),
    #[error("record not found in Moodle ({code}): {message}")]
    NotFound { code: String, message: String },
    #[error("Moodle error {code}: {message}")]
    Other { code: String, exception: String, message: String },
    #[error("Moodle answered something that is not the expected JSON: {0}")]
    Protocol(String),
    #[error("cannot reach Moodle: {0}")]
    Transport(String),
    #[error("Moodle answered HTTP {0}")]
    HttpStatus(u16),
}

impl MoodleError {
    /// Only failures where the same call may succeed later are retried.
    pub fn is_transient(&self) -> bool {
        match self {
            MoodleError::Transport(_) => true,
            MoodleError::HttpStatus(s) => matches!(s, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// Failures that make every further call pointless (stop the run, tell the admin).
    pub fn is_fatal(&self) -> bool {
        matches!(self, MoodleError::InvalidToken | MoodleError::FunctionNotEnabled(_) | MoodleError::UnknownFunction(_))
    }

    pub fn from_exception(function: &str, ex: MoodleException) -> Self {
        let code = ex.errorcode.clone().unwrap_or_default();
        let message = ex.message.clone().unwrap_or_default();
        let debug = ex.debuginfo.clone().unwrap_or_default();
        match code.as_str() {
            "invalidtoken" => MoodleError::InvalidToken,
            "nopermissions" | "nopermission" | "requireloginerror" | "errorcoursecontextnotvalid" | "wsusercannotassign" => {
                MoodleError::MissingCapability(message)
            }
            "accessexception" => MoodleError::FunctionNotEnabled(function.to_string()),
            "invalidrecord" if message.contains("external_functions") => MoodleError::UnknownFunction(function.to_string()),
            "invalidrecord" | "invaliduser" => MoodleError::NotFound { code, message },
            "invalidparameter" if debug.contains("already exists") => MoodleError::Duplicate(debug),
            "invalidparameter" | "codingerror" | "criteriaerror" => {
                MoodleError::InvalidParameter { code, message, debuginfo: ex.debuginfo }
            }
            _ if debug.starts_with("record already exists") => MoodleError::Duplicate(debug),
            "" => MoodleError::Other { code: "(none)".into(), exception: ex.exception, message: first_line(&message) },
            _ => MoodleError::Other { code, exception: ex.exception, message },
        }
    }

    /// Errors that may come from one bad item of a batch: worth splitting the batch to isolate it.
    pub fn may_be_item_specific(&self) -> bool {
        matches!(
            self,
            MoodleError::InvalidParameter { .. }
                | MoodleError::Duplicate(_)
                | MoodleError::NotFound { .. }
                | MoodleError::Other { .. }
        )
    }
}

/// PHP TypeError messages carry the server's install path; keep only the first line.
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().chars().take(300).collect()
}
