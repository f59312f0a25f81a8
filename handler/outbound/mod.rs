//! Everything that calls out to a rate-limited HTTPS service with OAuth tokens, in one place:
//! - `http`: the one HTTP client (rustls), built once and shared through the app state;
//! - `token`: token sources (client secret, client certificate, managed identity, device code),
//!   each cached per scope with single-flight refresh;
//! - `retry`: the retry policy (retryable / permanent, `Retry-After`, full-jitter backoff,
//!   bounded attempts and total wait);
//! - `public_dns`: DNS that resolves only to public addresses, for user-supplied URLs;
//! - `limiter`: keyed rate limits with several windows per key, which can answer "would wait
//!   longer than X" instead of waiting.
//!
//! The Moodle client, the Bot Connector client and the storage credential use it.

pub mod http;
pub mod limiter;
pub mod public_dns;
pub mod retry;
pub mod token;

pub use retry::{Failure, RetryPolicy, Verdict};
pub use token::{AccessToken, TokenError, TokenSource};
