//! The Moodle double lives in the library (`bridge::sync::testing`) so the benchmark uses the same one.
#[allow(unused_imports)]
pub use bridge::sync::testing::fake_moodle::*;
