//! Microsoft Graph over plain REST, on the outbound layer (shared HTTP client, cached app-only
//! token, retry policy, keyed limiter). Every request and answer shape follows
//! `shared/fixtures/graph/`.
//!
//! The public surface, for the endpoint files that sit beside this one (users, teams, apps):
//! - [`GraphClient::get_json`], [`post_json`](GraphClient::post_json) (repeated only after 429),
//!   [`post_json_idempotent`](GraphClient::post_json_idempotent), `put_json`, `patch_json`,
//!   `delete`, or [`send`](GraphClient::send) for headers and the raw [`GraphResponse`];
//! - [`GraphClient::pages`] / [`all`](GraphClient::all): `@odata.nextLink` paging;
//! - [`GraphClient::delta`]: a delta round with its [`DeltaCheckpoint`] and the "start over" rules;
//! - [`GraphClient::batch`]: `$batch` in groups of 20, items failing on their own;
//! - [`GraphError`], with `is_fatal()` (credentials, permission — stop the run, the permission is named)
//!   and `is_resync()`.
//!
//! Pacing: each call books a slot in every limit of Graph's throttling table it counts against
//! ([`budget`]) before it goes; a 429 is still honoured (`Retry-After`, fractional too).

pub mod batch;
pub mod budget;
pub mod check;
pub mod client;
pub mod error;
pub mod paging;
pub mod permissions;
pub mod settings;

pub use batch::{BatchAnswer, BatchRequest, BatchResults, MAX_BATCH};
pub use client::{GraphBytes, GraphClient, GraphResponse, GraphStats, Repeat, GRAPH_SCOPE};
pub use error::GraphError;
pub use paging::{
    DeltaCheckpoint, DeltaItem, DeltaPage, DeltaRound, Page, Pages, StartOver, DELTA_MAX_AGE,
};
pub use settings::{GraphAuth, GraphSettings};
