//! Doubles shared by the integration tests and the benchmark (not used by the app itself).

pub mod ent_data;
pub mod fake_moodle;
