//! The managed-identity endpoint App Service / Functions hand to the app. Read here, like every
//! other setting, so `handler settings` lists them and tests set them without touching the
//! process environment.

use super::{Secret, Source};

#[derive(Debug, Clone, Default)]
pub struct IdentitySettings {
    /// `IDENTITY_ENDPOINT`; without it (or the header) tokens come from IMDS.
    pub endpoint: Option<String>,
    /// `IDENTITY_HEADER`: proves to the endpoint that the caller is this app.
    pub header: Option<Secret>,
}

impl IdentitySettings {
    pub fn load(src: &mut Source) -> Self {
        let endpoint = src.opt(
            "IDENTITY_ENDPOINT",
            "managed-identity token endpoint (set by App Service / Functions; IMDS is used without it)",
        );
        let header = src.secret(
            "IDENTITY_HEADER",
            "secret header for IDENTITY_ENDPOINT (set by App Service / Functions)",
        );
        IdentitySettings { endpoint, header }
    }
}
