//! The publish sign-in's refresh token kept in Key Vault (issue 18: "Key Vault secret in
//! Azure"), with the app's managed identity, against a double that enforces Key Vault's REST
//! contract (bearer token of the identity for `https://vault.azure.net`, api-version 7.4, 404
//! `SecretNotFound`, versions, 403 without the role).

use bridge::config::{Secret, Source};
use bridge::outbound::token::{ManagedIdentity, MsiEndpoint};
use bridge::settings::Settings;
use bridge::teams_app::catalog::SignIn;
use bridge::teams_app::key_vault::KeyVaultStore;
use bridge::teams_app::token_store::RefreshTokenStore;
use std::sync::Arc;
use std::time::Duration;
use testkit::key_vault_double::{KeyVaultDouble, IDENTITY_HEADER, RESOURCE};
use testkit::teams_app_double::{EntraDouble, Poll, REFRESH_TOKEN, USER_CODE};

const SECRET: &str = "teams-app-publish-refresh-token";
const MSI_CLIENT: &str = "00000000-dddd-4ddd-8ddd-000000000005";

fn settings(kv: &KeyVaultDouble, entra: &EntraDouble, dir: &std::path::Path) -> Settings {
    let mut map = std::collections::BTreeMap::new();
    for (k, v) in [
        (
            "BOT_APP_ID",
            "00000000-bbbb-4bbb-8bbb-000000000003".to_string(),
        ),
        (
            "BOT_TENANT_ID",
            "00000000-aaaa-4aaa-8aaa-000000000001".to_string(),
        ),
        ("BOT_APP_PASSWORD", "pw-123456".to_string()),
        ("PUBLIC_URL", "https://bridge.example.org".to_string()),
        ("MOODLE_URL", "https://moodle.example.org".to_string()),
        ("MOODLE_TOKEN", "tok-123456".to_string()),
        (
            "TEAMS_APP_PUBLISH_CLIENT_ID",
            "00000000-cccc-4ccc-8ccc-000000000004".to_string(),
        ),
        ("TEAMS_APP_AUTHORITY", entra.authority()),
        ("TEAMS_APP_TOKEN_VAULT_URL", kv.vault_url()),
        ("TEAMS_APP_TOKEN_VAULT_CLIENT_ID", MSI_CLIENT.to_string()),
        ("IDENTITY_ENDPOINT", kv.identity_endpoint()),
        ("IDENTITY_HEADER", IDENTITY_HEADER.to_string()),
        (
            "TEAMS_APP_TOKEN_FILE",
            dir.join("token.enc").display().to_string(),
        ),
        ("SQLITE_PATH", dir.join("b.sqlite").display().to_string()),
        ("BLOB_DIR", dir.join("blobs").display().to_string()),
    ] {
        map.insert(k.to_string(), v);
    }
    Settings::load(&mut Source::from_map(map)).expect("settings")
}

async fn sign_in(s: &Settings) -> (Result<String, String>, usize) {
    let prompts = Arc::new(std::sync::Mutex::new(0usize));
    let p = prompts.clone();
    let http = bridge::outbound::http::shared().unwrap();
    let r = SignIn::from_settings(s, http.clone())
        .unwrap()
        .token(
            http,
            move |d| {
                assert_eq!(d.user_code, USER_CODE);
                *p.lock().unwrap() += 1;
            },
            Some(Duration::from_millis(5)),
        )
        .await
        .map(|t| t.secret.expose().to_string())
        .map_err(|e| e.to_string());
    let n = *prompts.lock().unwrap();
    (r, n)
}

#[tokio::test]
async fn the_refresh_token_is_a_key_vault_secret_written_with_the_managed_identity() {
    bridge::install_crypto_provider();
    let kv = KeyVaultDouble::start().await;
    let entra = EntraDouble::start(vec![Poll::Pending, Poll::Success]).await;
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&kv, &entra, dir.path());
    let sign_in_store = SignIn::from_settings(&s, bridge::outbound::http::shared().unwrap())
        .unwrap()
        .store
        .expect("a store");
    assert!(
        sign_in_store
            .describe()
            .contains("Key Vault secret teams-app-publish-refresh-token"),
        "{}",
        sign_in_store.describe()
    );

    // Nothing kept yet (404 SecretNotFound): the admin signs in with a device code.
    let (token, prompts) = sign_in(&s).await;
    assert!(token.is_ok(), "{token:?}");
    assert_eq!(prompts, 1);
    let v = kv.versions(SECRET);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].value, REFRESH_TOKEN);
    assert!(v[0].enabled);
    assert_eq!(
        v[0].content_type.as_deref(),
        Some("application/vnd.moodle-teams-bridge.refresh-token")
    );
    assert!(
        !dir.path().join("token.enc").exists(),
        "Key Vault takes the file's place"
    );
    {
        let st = kv.lock();
        // Every vault call carried a token the identity endpoint issued for the vault.
        assert!(st.log.iter().all(|(_, _, ok)| *ok), "{:?}", st.log);
        assert_eq!(
            st.log
                .iter()
                .map(|(m, p, _)| format!("{m} {p}"))
                .collect::<Vec<_>>(),
            [
                format!("GET /secrets/{SECRET}"),
                format!("PUT /secrets/{SECRET}")
            ]
        );
        assert_eq!(
            st.token_requests,
            [(RESOURCE.to_string(), Some(MSI_CLIENT.to_string()))],
            "one managed-identity token for both calls, of the configured identity"
        );
    }

    // Next publish: the kept refresh token, no device code; the new one is a new version and
    // the replaced version is disabled (cannot be read back).
    let (token, prompts) = sign_in(&s).await;
    assert!(token.is_ok(), "{token:?}");
    assert_eq!(prompts, 0);
    assert_eq!(entra.state.lock().unwrap().device_requests, 1);
    let v = kv.versions(SECRET);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(!v[0].enabled && v[1].enabled, "{v:?}");
    assert!(kv
        .lock()
        .log
        .iter()
        .any(|(m, p, _)| m == "PATCH" && *p == format!("/secrets/{SECRET}/{}", v[0].id)));
}

fn store(kv: &KeyVaultDouble) -> KeyVaultStore {
    let http = bridge::outbound::http::shared().unwrap();
    let msi = ManagedIdentity::new(
        http.clone(),
        MsiEndpoint::AppService {
            endpoint: kv.identity_endpoint(),
            header: Secret::new(IDENTITY_HEADER),
        },
        None,
    )
    .cached();
    let mut s =
        KeyVaultStore::new(http, kv.vault_url().parse().unwrap(), SECRET, Arc::new(msi)).unwrap();
    s.retry.max_attempts = 2;
    s
}

#[tokio::test]
async fn absent_secret_missing_role_and_a_rotated_token() {
    bridge::install_crypto_provider();
    let kv = KeyVaultDouble::start().await;
    let st = store(&kv);
    assert!(
        st.load().await.unwrap().is_none(),
        "404 SecretNotFound = nothing kept"
    );
    st.save(&Secret::new("rt-secret-value-1")).await.unwrap();
    assert_eq!(
        st.load().await.unwrap().unwrap().expose(),
        "rt-secret-value-1"
    );

    // The vault stops taking the cached token: one new token, then it works.
    kv.revoke_tokens();
    assert_eq!(
        st.load().await.unwrap().unwrap().expose(),
        "rt-secret-value-1"
    );
    assert_eq!(kv.lock().token_requests.len(), 2);

    // Without its role the identity gets 403: named, and no value in the message.
    kv.deny(true);
    let err = st
        .save(&Secret::new("rt-secret-value-2"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("403") && err.contains("Key Vault Secrets Officer") && err.contains(SECRET),
        "{err}"
    );
    assert!(!err.contains("rt-secret-value"), "{err}");
    let err = st.load().await.unwrap_err().to_string();
    assert!(
        err.contains("ForbiddenByRbac") || err.contains("Forbidden"),
        "{err}"
    );
    kv.deny(false);
    assert_eq!(
        kv.versions(SECRET).len(),
        1,
        "the refused write left nothing"
    );

    // An identity token the vault refuses (wrong audience or issuer) fails closed after one retry.
    kv.lock().refuse_all = true;
    let before = kv.lock().token_requests.len();
    let err = st.load().await.unwrap_err().to_string();
    assert!(err.contains("401") && err.contains("Unauthorized"), "{err}");
    assert_eq!(
        kv.lock().token_requests.len(),
        before + 1,
        "one fresh token tried, then stop"
    );
}

#[test]
fn vault_settings_are_checked_at_start() {
    let load = |pairs: &[(&str, &str)]| {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load(&mut Source::from_map(map))
    };
    let err = load(&[
        ("TEAMS_APP_TOKEN_VAULT_URL", "http://kv.example.org/"),
        ("TEAMS_APP_TOKEN_SECRET", "bad_name!"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("TEAMS_APP_TOKEN_VAULT_URL: must be https"),
        "{err}"
    );
    assert!(err.contains("TEAMS_APP_TOKEN_SECRET"), "{err}");
    assert!(load(&[("TEAMS_APP_TOKEN_VAULT_URL", "https://kv-x.vault.azure.net/")]).is_ok());
}
