//! The refresh token of the admin's publish sign-in, kept only encrypted ([`RefreshTokenStore`]):
//! in Azure a Key Vault secret ([`super::key_vault`]); under `serve` or on an admin's machine
//! ChaCha20-Poly1305 under `TEAMS_APP_TOKEN_KEY` in an owner-only file ([`TokenStore`]). It is
//! never logged or printed; a file that does not decrypt is refused, not overwritten silently.

use super::TeamsAppError;
use crate::config::Secret;
use base64::Engine;
use ring::aead::{self, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use std::path::{Path, PathBuf};

const AAD: &[u8] = b"moodle-teams-bridge/teams-app/refresh-token/v1";

/// Where the refresh token is kept between publishes.
#[async_trait::async_trait]
pub trait RefreshTokenStore: Send + Sync + std::fmt::Debug {
    /// Where, for messages (never the value).
    fn describe(&self) -> String;
    /// The kept refresh token; `None` when nothing was kept yet.
    async fn load(&self) -> Result<Option<Secret>, TeamsAppError>;
    async fn save(&self, token: &Secret) -> Result<(), TeamsAppError>;
}

#[async_trait::async_trait]
impl RefreshTokenStore for TokenStore {
    fn describe(&self) -> String {
        format!("encrypted file {}", self.path.display())
    }
    async fn load(&self) -> Result<Option<Secret>, TeamsAppError> {
        TokenStore::load(self)
    }
    async fn save(&self, token: &Secret) -> Result<(), TeamsAppError> {
        TokenStore::save(self, token)
    }
}

pub fn decode_key(k: &Secret) -> Result<[u8; 32], TeamsAppError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(k.expose().trim())
        .map_err(|_| TeamsAppError::TokenStore("TEAMS_APP_TOKEN_KEY is not base64".into()))?;
    raw.try_into()
        .map_err(|_| TeamsAppError::TokenStore("TEAMS_APP_TOKEN_KEY is not 32 bytes".into()))
}

pub struct TokenStore {
    key: LessSafeKey,
    path: PathBuf,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    pub fn new(key: &Secret, path: &Path) -> Result<Self, TeamsAppError> {
        let bytes = decode_key(key)?;
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| TeamsAppError::TokenStore("bad key".into()))?;
        Ok(TokenStore {
            key: LessSafeKey::new(key),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored refresh token, `None` when nothing was stored yet.
    pub fn load(&self) -> Result<Option<Secret>, TeamsAppError> {
        let data = match std::fs::read(&self.path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(TeamsAppError::TokenStore(format!(
                    "{}: {e}",
                    self.path.display()
                )))
            }
        };
        if data.len() < NONCE_LEN {
            return Err(self.undecryptable());
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| self.undecryptable())?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, aead::Aad::from(AAD), &mut buf)
            .map_err(|_| self.undecryptable())?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| self.undecryptable())?;
        crate::redact::register(&text);
        Ok(Some(Secret::new(text)))
    }

    fn undecryptable(&self) -> TeamsAppError {
        TeamsAppError::TokenStore(format!(
            "{} does not decrypt with TEAMS_APP_TOKEN_KEY (another key?); delete it to sign in again",
            self.path.display()
        ))
    }

    /// Encrypt and write (owner-only, write then rename).
    pub fn save(&self, token: &Secret) -> Result<(), TeamsAppError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        let mut buf = token.expose().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(AAD),
                &mut buf,
            )
            .map_err(|_| TeamsAppError::TokenStore("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        let io =
            |e: std::io::Error| TeamsAppError::TokenStore(format!("{}: {e}", self.path.display()));
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::store::private_fs::private_dir(dir).map_err(io)?;
        }
        let tmp = self
            .path
            .with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
        {
            use std::io::Write;
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, crate::store::private_fs::FILE_MODE);
            o.open(&tmp)
                .and_then(|mut f| f.write_all(&out))
                .map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Secret {
        Secret::new(base64::engine::general_purpose::STANDARD.encode([b; 32]))
    }

    #[test]
    fn the_token_round_trips_encrypted_and_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/token.enc");
        let store = TokenStore::new(&key(7), &path).unwrap();
        assert!(store.load().unwrap().is_none());
        store.save(&Secret::new("rt-very-secret-value")).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("rt-very-secret-value"));
        assert_eq!(
            store.load().unwrap().unwrap().expose(),
            "rt-very-secret-value"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let other = TokenStore::new(&key(8), &path).unwrap();
        let err = other.load().unwrap_err().to_string();
        assert!(err.contains("does not decrypt"), "{err}");
    }
}
