//! Typed Moodle web-service client (REST, `moodlewsrestformat=json`, PHP-style form arrays).
//! Function families live in their own files; `client` holds the transport and error mapping.

pub mod access;
pub mod categories;
pub mod client;
pub mod cohorts;
pub mod courses;
pub mod enrol;
pub mod error;
pub mod form;
pub mod pictures;
pub mod roles;
pub mod users;

pub use client::MoodleClient;
pub use error::MoodleError;
pub use form::Form;

// Read families used by the Teams bot.
pub mod assign;
pub mod calendar;
pub mod enrolled;
pub mod forum;
pub mod grades;
pub mod reports;
pub mod site;
