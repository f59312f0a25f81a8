//! The one HTTP client for every outbound call (Moodle, Bot Connector, Entra, managed identity,
//! and Graph and webhooks to come): rustls, one connection pool, built once per process. Each
//! caller sets its own per-request timeout; the client's is the fallback.

use std::sync::OnceLock;
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The sync keeps many Moodle requests in flight; idle connections beyond this are closed.
const MAX_IDLE_PER_HOST: usize = 64;

static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();

/// The process's client (cheap to clone: clones share the pool).
pub fn shared() -> Result<reqwest::Client, reqwest::Error> {
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    let built = reqwest::Client::builder()
        .timeout(DEFAULT_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
        .user_agent(concat!("moodle-teams-bridge/", env!("CARGO_PKG_VERSION")))
        .build()?;
    // Two first callers racing both build; one client wins and both use it.
    Ok(CLIENT.get_or_init(|| built).clone())
}

/// Connect and total budget of a request to a URL a user pasted in (a channel webhook).
const UNTRUSTED_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const UNTRUSTED_TIMEOUT: Duration = Duration::from_secs(10);

/// The client for URLs users supply (channel webhooks): same TLS and user agent as [`shared`],
/// but it never follows a redirect (an allowed host could point anywhere) and resolves names
/// only to public addresses ([`super::public_dns`]). Its own pool, as the resolver differs.
pub fn untrusted(
    resolver: super::public_dns::PublicResolver,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(UNTRUSTED_TIMEOUT)
        .connect_timeout(UNTRUSTED_CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(std::sync::Arc::new(resolver))
        .user_agent(concat!("moodle-teams-bridge/", env!("CARGO_PKG_VERSION")))
        .build()
}
