//! Test support of the bridge, shared by the integration tests (`tests/*.rs`) and the `bench`
//! binary, and kept out of the library so the release `handler` carries none of it: each module
//! starts a real part (Azurite, slapd, the Moodle lab, the app) or a double, or generates data.

pub mod app;
pub mod azurite;
pub mod bot_app;
pub mod browser;
pub mod demo;
pub mod ent_data;
pub mod entra_double;
pub mod fake_moodle;
pub mod graph_double;
pub mod key_vault_double;
pub mod moodle_lab;
pub mod notify_app;
pub mod notify_doubles;
pub mod slapd;
pub mod sync_env;
pub mod teams_app_double;

/// The repository's root (this crate lives in `tests/testkit`).
pub fn repo_root() -> &'static std::path::Path {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `../shared/fixtures` beside the clone (CI lays it there), or FIXTURES_DIR.
pub fn fixtures_dir() -> std::path::PathBuf {
    if let Ok(d) = std::env::var("FIXTURES_DIR") {
        return d.into();
    }
    repo_root().join("../shared/fixtures")
}

pub fn fixture(rel: &str) -> String {
    let p = fixtures_dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

pub fn fixture_json(rel: &str) -> serde_json::Value {
    serde_json::from_str(&fixture(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// A free TCP port on loopback (bind to 0, read it, release it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The admin page's password hash (`ADMIN_PASSWORD_HASH`) for `password`, in the real format with
/// cheap argon2id parameters and a fixed salt, so a debug-build test signs in fast.
pub fn cheap_admin_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(64, 1, 1, None).unwrap(),
    )
    .hash_password(password.as_bytes(), &salt)
    .unwrap()
    .to_string()
}
