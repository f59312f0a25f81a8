//! The Graph layer's one error type. Bad credentials and missing permissions are *fatal*: the run
//! stops at once and says what to fix (the permission to grant), rather than failing every item.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    /// Entra refused the app's credentials or the settings cannot make a token (400/401 from
    /// login.microsoftonline.com, AADSTS7000215 …). Never retried.
    #[error("Graph credentials refused: {0} (check GRAPH_CLIENT_ID, GRAPH_TENANT_ID and the secret or certificate)")]
    Credentials(String),
    /// Graph still answered 401 with a freshly fetched token.
    #[error("Graph rejected the app's token for {method} {path} ({code})")]
    Unauthorized {
        method: String,
        path: String,
        code: String,
    },
    /// 403: the app lacks an application permission or admin consent.
    #[error("Graph refused {method} {path} (403 {code}): grant the application permission {permission} with admin consent")]
    Forbidden {
        method: String,
        path: String,
        code: String,
        permission: &'static str,
    },
    /// The delta state is gone (410, `syncStateNotFound`, `resyncRequired`, expired page token):
    /// a full round is needed. `location` is the `Location` Graph gave with a 410.
    #[error("Graph delta state is gone ({status} {code}): a full round is needed")]
    ResyncRequired {
        status: u16,
        code: String,
        location: Option<String>,
    },
    #[error("Graph: {method} {path} not found (404 {code})")]
    NotFound {
        method: String,
        path: String,
        code: String,
    },
    /// Still throttled or unavailable once the retry budget was spent.
    #[error(
        "Graph {method} {path} still answered {status} after retries (retry after {retry_after:?})"
    )]
    Busy {
        method: String,
        path: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Any other answer: the status and Graph's `error.code` (messages are service text; branch on status/code).
    #[error("Graph {method} {path} answered {status} ({code}): {message}")]
    Status {
        method: String,
        path: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach Graph for {method} {path}: {detail}")]
    Transport {
        method: String,
        path: String,
        detail: String,
    },
    /// A binary answer above the caller's cap (`size` when Graph declared it).
    #[error("Graph {path}: answer larger than the {limit}-byte cap{}", size.map(|s| format!(" ({s} bytes)")).unwrap_or_default())]
    TooLarge {
        path: String,
        limit: u64,
        size: Option<u64>,
    },
    /// A body that is not what the fixture shapes say.
    #[error("Graph {path}: unexpected answer: {detail}")]
    Decode { path: String, detail: String },
    /// A `@odata.nextLink`/`deltaLink` that leaves the configured Graph root: the token is not sent there.
    #[error("Graph link {0} is outside the configured Graph root; not sending the token there")]
    UntrustedLink(String),
}

impl GraphError {
    /// Stop the whole run: nothing else can succeed until an admin acts.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            GraphError::Credentials(_)
                | GraphError::Unauthorized { .. }
                | GraphError::Forbidden { .. }
        )
    }

    /// The delta state must be dropped and a full round run.
    pub fn is_resync(&self) -> bool {
        matches!(self, GraphError::ResyncRequired { .. })
    }

    /// The HTTP status Graph answered, when the error is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Unauthorized { .. } => Some(401),
            GraphError::Forbidden { .. } => Some(403),
            GraphError::NotFound { .. } => Some(404),
            GraphError::ResyncRequired { status, .. }
            | GraphError::Busy { status, .. }
            | GraphError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Graph's `error.code`, when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::Unauthorized { code, .. }
            | GraphError::Forbidden { code, .. }
            | GraphError::ResyncRequired { code, .. }
            | GraphError::NotFound { code, .. }
            | GraphError::Status { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Codes that mean "delta state gone, start over" (fixtures README, compared case-insensitively:
/// Graph has sent `SyncStateNotFound` in PascalCase).
pub fn is_resync_code(code: &str) -> bool {
    [
        "syncStateNotFound",
        "resyncRequired",
        "Directory_ExpiredPageToken",
    ]
    .iter()
    .any(|c| c.eq_ignore_ascii_case(code))
}
