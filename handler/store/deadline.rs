//! A deadline for store calls made while a client waits (the bot's `/api/messages`): a store that
//! hangs — Azure storage unreachable, a SQLite file locked by another process — must not hold
//! the answer. Past the deadline the call counts as failed; the caller decides what that means
//! (log and retry later, or answer 503).

use super::{StoreError, StoreResult};
use std::future::Future;
use std::time::Duration;

/// Longest a store call may take on a request path (a healthy store answers in milliseconds).
pub const REQUEST_PATH: Duration = Duration::from_secs(2);

/// `call`, or a backend error once `limit` has passed.
pub async fn within<T>(
    limit: Duration,
    call: impl Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Backend(format!(
            "no answer from the store within {limit:?}"
        ))),
    }
}
