//! Offline checks of infra/: the Bicep files parse (two parsers from PyPI, through
//! scripts/check_bicep.py), the template sets every app setting the code reads and only settings
//! something reads, and ShellCheck passes on the deploy scripts.
//!
//! Needs python3 with `pycep-parser==0.7.1 tree-sitter==0.26.1 tree-sitter-bicep==1.1.0` and the
//! `shellcheck` Debian package (scripts/install-test-deps.sh installs both).

use bridge::host::functions::{FunctionKind, FUNCTIONS};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};

const INSTALL_HINT: &str =
    "run scripts/install-test-deps.sh (pip: pycep-parser==0.7.1 tree-sitter==0.26.1 tree-sitter-bicep==1.1.0)";

/// Settings the code reads that the Azure template deliberately leaves unset.
const STANDALONE_ONLY: &[(&str, &str)] = &[
    ("ADMIN_PASSWORD_HASH", "password sign-in is for `handler serve`; in Azure the admin page trusts only App Service authentication and ADMIN_GROUP_IDS"),
    ("ADMIN_OIDC_CLIENT_ID", "OpenID Connect sign-in is for `handler serve`; in Azure App Service authentication signs admins in"),
    ("ADMIN_OIDC_CLIENT_SECRET", "OpenID Connect sign-in is for `handler serve`; in Azure App Service authentication signs admins in"),
    ("ADMIN_OIDC_TENANT_ID", "OpenID Connect sign-in is for `handler serve`; in Azure App Service authentication signs admins in"),
    ("ADMIN_OIDC_AUTHORITY", "OpenID Connect sign-in is for `handler serve` (tests point it at an Entra double)"),
    ("ADMIN_OIDC_REDIRECT_URL", "OpenID Connect sign-in is for `handler serve`; in Azure App Service authentication signs admins in"),
    ("ADMIN_SESSION_KEY", "optional: without it the key signing the admin page's CSRF tokens is generated once and kept in the storage account's tables"),
    ("SERVE_ADDR", "only `handler serve` listens on it; under the host the port comes from FUNCTIONS_CUSTOMHANDLER_PORT"),
    ("SERVE_QUEUE_VISIBILITY_SECS", "`serve`'s own queue; under the host, host.json sets the queue behaviour"),
    ("SQLITE_PATH", "embedded store; on Azure STORE_BACKEND=azure uses Table storage"),
    ("BLOB_DIR", "embedded blob folder; on Azure blobs go to the storage account"),
    ("LDAP_TLS_NO_VERIFY", "tests only: production LDAP over TLS must verify the directory's certificate"),
    ("CONNECTOR_HOST_ORIGINS", "test stub hosts only: inside Teams the Teams library knows its hosts"),
    ("NOTIFY_WEBHOOK_DOUBLE_URL", "test doubles only: in Azure channel posts go to the Workflows hosts of the allow-list"),
    ("BOT_TRUSTED_SERVICE_URLS", "test doubles only: in Azure the bot token goes to the Bot Connector's own hosts"),
    ("TEAMS_APP_TOKEN_KEY", "encrypts the refresh-token file of `serve` or an admin's machine; in Azure the token is a Key Vault secret (TEAMS_APP_TOKEN_VAULT_URL), encrypted by the vault"),
    ("TEAMS_APP_TOKEN_FILE", "owner-only file under `serve` or on an admin's machine; the Functions app has no writable persistent disk, so Azure keeps the token in the state vault"),
    ("WEBSITE_AUTH_ENABLED", "set by App Service itself when its authentication is on; an app setting claiming it would let forged principal headers through"),
    ("IDENTITY_ENDPOINT", "set by App Service / Functions at run time for the managed identity; an app setting must not override it"),
    ("IDENTITY_HEADER", "set by App Service / Functions at run time with IDENTITY_ENDPOINT; never an app setting"),
    (
        "AzureWebJobsStorage",
        "connection-string form; the storage account has shared keys disabled and the template sets the identity-based AzureWebJobsStorage__* settings instead (setting both would make the host use the key)",
    ),
];

/// Settings the template sets that the Functions platform reads, not the code.
const PLATFORM: &[&str] = &[
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__queueServiceUri",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID",
];

/// Settings the template sets ahead of the code that will read them (issue #10 asks for their Key
/// Vault plumbing now; the bot and LDAP work lands separately). Once the code reads one, it is
/// checked like any other; if the code picks a different name, the first check below fails and
/// names it.
const AHEAD_OF_CODE: &[&str] = &[];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn checker(args: &[&str]) -> Output {
    let output = Command::new(python())
        .arg(repo().join("scripts/check_bicep.py"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", python()));
    assert_ne!(
        output.status.code(),
        Some(3),
        "{}\n{INSTALL_HINT}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn bicep_files() -> Vec<String> {
    let mut files = vec!["infra/main.bicep".to_string()];
    let mut modules: Vec<String> = std::fs::read_dir(repo().join("infra/modules"))
        .expect("infra/modules")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bicep"))
        .map(|p| format!("infra/modules/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    modules.sort();
    files.extend(modules);
    files
}

#[test]
fn bicep_files_parse() {
    let files = bicep_files();
    let args: Vec<&str> = std::iter::once("syntax")
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = checker(&args);
    assert!(
        out.status.success(),
        "Bicep syntax:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("ok "))
            .count(),
        files.len()
    );
}

#[test]
fn broken_bicep_is_rejected() {
    // The parsers must really fail on bad input, or the test above proves nothing.
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("unclosed.bicep", "param x string = 'a'\nresource r 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: x\n"),
        ("double-equals.bicep", "param x string = = 'a'\n"),
        ("no-type.bicep", "resource r = {\n  name: 'a'\n}\n"),
        ("bad-object.bicep", "var o = {\n  a: 'x',, b: 'y'\n}\n"),
    ];
    for (name, text) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = checker(&["syntax", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{name} was accepted:\n{text}");
    }
}

#[test]
fn template_structure_is_consistent() {
    // Modules exist, take the params they are given, get every required one; the parameters file
    // names only declared parameters.
    let out = checker(&["structure", "infra/main.bicep"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every setting name the code reads, from the built binary.
fn code_settings() -> BTreeMap<String, bool> {
    let out = Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(["settings", "--format", "json"])
        .env("BRIDGE_SETTINGS_FILE", "/nonexistent/local.settings.json")
        .output()
        .expect("run handler settings");
    assert!(
        out.status.success(),
        "handler settings failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("settings JSON");
    docs.iter()
        .map(|d| {
            (
                d["name"].as_str().expect("name").to_string(),
                d["secret"].as_bool().expect("secret flag"),
            )
        })
        .collect()
}

/// app setting name → the Bicep variable it is defined in.
fn template_settings() -> BTreeMap<String, String> {
    let out = checker(&["app-settings", "infra/main.bicep"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("checker JSON");
    json["settings"]
        .as_object()
        .expect("settings object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn template_sets_every_setting_the_code_reads() {
    let code = code_settings();
    let template = template_settings();
    let standalone: BTreeSet<&str> = STANDALONE_ONLY.iter().map(|(n, _)| *n).collect();
    let missing: Vec<&String> = code
        .keys()
        .filter(|n| !template.contains_key(*n) && !standalone.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "settings the code reads but infra/main.bicep does not set: {missing:?}\n\
         add each to `appSettings` in infra/main.bicep (a parameter with the code's default, or a Key Vault \
         reference for a secret), or to STANDALONE_ONLY in tests/infra_bicep.rs with the reason"
    );
}

#[test]
fn template_sets_only_settings_something_reads() {
    let code = code_settings();
    let template = template_settings();
    let unknown: Vec<&String> = template
        .keys()
        .filter(|n| {
            !code.contains_key(*n)
                && !PLATFORM.contains(&n.as_str())
                && !AHEAD_OF_CODE.contains(&n.as_str())
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "infra/main.bicep sets settings nothing reads (typo?): {unknown:?}"
    );
    // Platform settings belong with the platform, not with the app's own settings.
    for name in PLATFORM {
        if let Some(var) = template.get(*name) {
            assert_ne!(
                var, "appSettings",
                "{name} is a platform setting: keep it out of `appSettings`"
            );
        }
    }
    // The standalone-only settings stay unset on Azure.
    for (name, why) in STANDALONE_ONLY {
        assert!(
            !template.contains_key(*name),
            "{name} must not be set on Azure: {why}"
        );
    }
}

#[test]
fn secrets_come_from_key_vault() {
    // A setting the code marks secret is either left out (STANDALONE_ONLY) or is a Key Vault
    // reference in the template (possibly behind a feature condition), never a plain parameter.
    let code = code_settings();
    let bicep = std::fs::read_to_string(repo().join("infra/main.bicep")).unwrap();
    let template = template_settings();
    let mut secret_names: BTreeSet<String> = code
        .iter()
        .filter(|(_, secret)| **secret)
        .map(|(n, _)| n.clone())
        .collect();
    secret_names.extend(["LDAP_BIND_PASSWORD", "WEBHOOK_SECRET"].map(String::from));
    for name in secret_names.iter().filter(|n| template.contains_key(*n)) {
        let line = bicep
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name} not found as `{name}: ...` in main.bicep"));
        assert!(
            line.contains("secretRef."),
            "{name} must be a Key Vault reference (secretRef.*), got: {line}"
        );
    }
    assert!(
        bicep.contains("@Microsoft.KeyVault(SecretUri=${kv}secrets/"),
        "secretRef must build Key Vault references"
    );
    assert!(
        bicep.contains("keyVaultReferenceIdentity")
            || module_text("functionapp.bicep").contains("keyVaultReferenceIdentity")
    );
}

#[test]
fn settings_the_host_expands_are_set() {
    // `%NAME%` in a binding (the timer schedule) must be an app setting, or the host cannot index the function.
    let template = template_settings();
    for f in FUNCTIONS {
        if let FunctionKind::Timer {
            schedule_setting, ..
        } = f.kind
        {
            assert!(
                template.contains_key(schedule_setting),
                "{}: {schedule_setting} must be set",
                f.name
            );
        }
    }
    let functions_dir = repo().join("functions");
    if let Ok(entries) = std::fs::read_dir(&functions_dir) {
        for entry in entries {
            let path = entry.unwrap().path().join("function.json");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for name in text.split('%').skip(1).step_by(2) {
                assert!(
                    template.contains_key(name),
                    "{}: %{name}% is not set by the template",
                    path.display()
                );
            }
        }
    }
}

fn module_text(name: &str) -> String {
    std::fs::read_to_string(repo().join("infra/modules").join(name)).unwrap()
}

#[test]
fn identity_gets_exactly_the_data_plane_roles() {
    // Built-in role definition ids (Azure RBAC built-in roles reference).
    let storage = module_text("storage.bicep");
    for (role, id) in [
        (
            "Storage Blob Data Owner",
            "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        ),
        (
            "Storage Queue Data Contributor",
            "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        ),
        (
            "Storage Table Data Contributor",
            "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
        ),
    ] {
        assert!(
            storage.contains(id),
            "{role} ({id}) missing from storage.bicep"
        );
    }
    assert!(storage.contains("allowSharedKeyAccess: false"));
    for queue in [
        "'sync-work'",
        "'sync-work-poison'",
        "'notify'",
        "'notify-poison'",
    ] {
        assert!(
            std::fs::read_to_string(repo().join("infra/main.bicep"))
                .unwrap()
                .contains(queue),
            "queue {queue}"
        );
    }
    assert!(
        module_text("keyvault.bicep").contains("4633458b-17de-408a-b874-0445c86b69e6"),
        "Key Vault Secrets User"
    );
    // The app writes only its own state (the publish sign-in's refresh token): Secrets Officer
    // on the state vault, which the configured secrets never share; on the main vault the app
    // identity stays a reader (only the deployer may be Officer there).
    let state = module_text("statevault.bicep");
    assert!(
        state.contains("b86a8fe4-44ce-4948-aee5-eccb2c155cd7")
            && state.contains("principalId: identityPrincipalId")
            && state.contains("enableRbacAuthorization: true"),
        "Key Vault Secrets Officer for the app identity on the state vault"
    );
    let main_kv = module_text("keyvault.bicep");
    let officer_block = main_kv
        .split("resource ")
        .find(|b| b.contains("secretsOfficer)"))
        .expect("the deployer's Officer assignment");
    assert!(
        officer_block.contains("principalId: deployerPrincipalId")
            && !officer_block.contains("identityPrincipalId"),
        "the app identity must not write the main vault's secrets: {officer_block}"
    );
    let main = std::fs::read_to_string(repo().join("infra/main.bicep")).unwrap();
    for needle in [
        "TEAMS_APP_TOKEN_VAULT_URL: stateVault.outputs.uri",
        "TEAMS_APP_TOKEN_VAULT_CLIENT_ID: identity.properties.clientId",
    ] {
        assert!(main.contains(needle), "main.bicep lacks {needle:?}");
    }
    // Nothing broader anywhere: Owner, Contributor, User Access Administrator, Storage Account Contributor.
    for file in bicep_files() {
        let text = std::fs::read_to_string(repo().join(&file)).unwrap();
        for (role, id) in [
            ("Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"),
            ("Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c"),
            (
                "User Access Administrator",
                "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
            ),
            (
                "Storage Account Contributor",
                "17d1049b-9a84-46fb-8f53-869881c3d3ab",
            ),
        ] {
            assert!(!text.contains(id), "{file} assigns {role}");
        }
    }
}

/// The `resource <name> '<type>' = … {` block of main.bicep, up to the next top-level item.
fn resource_block<'a>(bicep: &'a str, symbol: &str) -> &'a str {
    let start = bicep
        .find(&format!("resource {symbol} "))
        .unwrap_or_else(|| panic!("resource {symbol} not in main.bicep"));
    let rest = &bicep[start..];
    let end = rest.find("\n}\n").map(|e| e + 2).unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn app_service_authentication_guards_admin_routes_and_lets_self_authenticating_ones_through() {
    let main = std::fs::read_to_string(repo().join("infra/main.bicep")).unwrap();
    let auth = resource_block(&main, "siteAuth");
    for needle in [
        "'Microsoft.Web/sites/config@",
        "= if (!empty(authClientId))",
        "parent: site",
        "name: 'authsettingsV2'",
        "requireAuthentication: true",
        "unauthenticatedClientAction: 'RedirectToLoginPage'",
        "redirectToProvider: 'azureactivedirectory'",
        "requireHttps: true",
        "clientId: authClientId",
        "openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'",
    ] {
        assert!(
            auth.contains(needle),
            "authsettingsV2 lacks {needle:?}:\n{auth}"
        );
    }
    // azureActiveDirectory is the enabled provider (the app checks auth_typ "aad").
    let aad = &auth[auth
        .find("azureActiveDirectory: {")
        .expect("Entra provider")..];
    assert!(aad
        .trim_start_matches("azureActiveDirectory: {")
        .trim_start()
        .starts_with("enabled: true"));
    assert!(
        !auth.contains("clientSecretSettingName"),
        "no client secret is configured (ID-token sign-in), so none can be missing"
    );
    // The excluded paths, exactly.
    let list = &auth[auth.find("excludedPaths: [").expect("excludedPaths")..];
    let list = &list[..list.find(']').unwrap()];
    let excluded: Vec<&str> = list
        .lines()
        .skip(1)
        .map(|l| l.trim().trim_matches('\''))
        .filter(|l| !l.is_empty())
        .collect();
    let covered = |route: &str| {
        let path = format!(
            "/{}",
            route.split('{').next().unwrap().trim_end_matches('/')
        );
        excluded.iter().any(|e| match e.strip_suffix("/*") {
            Some(prefix) => path == prefix || path.starts_with(&format!("{prefix}/")),
            None => *e == path,
        })
    };
    // Admin functions trust only the platform's principal; the others check every request
    // themselves (Bot Framework JWT, webhook HMAC, Teams SSO token) and are called without a session.
    const ADMIN: &[&str] = &["AdminSync", "ManifestPublish"];
    const SELF_AUTHENTICATING: &[&str] = &["BotMessages", "MoodleWebhook", "ConnectorConfig"];
    let mut seen = 0;
    for f in FUNCTIONS {
        let FunctionKind::Http { route, .. } = f.kind else {
            continue;
        };
        seen += 1;
        if ADMIN.contains(&f.name) {
            assert!(
                !covered(route),
                "{} ({route}) must require App Service authentication",
                f.name
            );
        } else {
            assert!(
                SELF_AUTHENTICATING.contains(&f.name),
                "new HTTP function {}: decide whether it is admin-only or authenticates itself",
                f.name
            );
            assert!(
                covered(route),
                "{} ({route}) must be reachable without a session: {excluded:?}",
                f.name
            );
        }
    }
    assert_eq!(seen, ADMIN.len() + SELF_AUTHENTICATING.len());
    assert_eq!(
        excluded.len(),
        SELF_AUTHENTICATING.len(),
        "nothing else excluded: {excluded:?}"
    );
    // The app trusts the principal header only when the platform says authentication is on.
    assert!(STANDALONE_ONLY
        .iter()
        .any(|(n, _)| *n == "WEBSITE_AUTH_ENABLED"));
}

#[test]
fn flex_app_runs_the_custom_handler() {
    let app = module_text("functionapp.bicep");
    for needle in [
        "name: 'FC1'",
        "tier: 'FlexConsumption'",
        "name: 'custom'",
        "type: 'UserAssignedIdentity'",
        "instanceMemoryMB: instanceMemoryMB",
        "maximumInstanceCount: maximumInstanceCount",
    ] {
        assert!(app.contains(needle), "functionapp.bicep lacks {needle:?}");
    }
    let bot = module_text("bot.bicep");
    assert!(bot.contains("'MsTeamsChannel'") && bot.contains("isEnabled: true"));
    assert!(
        !bot.contains("'MultiTenant'"),
        "multi-tenant bots can no longer be created"
    );
    let main = std::fs::read_to_string(repo().join("infra/main.bicep")).unwrap();
    assert!(main.contains("messagingEndpoint: '${appUrl}/api/messages'"));
    for output in ["functionAppUrl", "botEndpoint", "moodleWebhookUrl", "appId"] {
        assert!(
            main.contains(&format!("output {output} ")),
            "output {output} missing"
        );
    }
}

#[test]
fn scripts_pass_shellcheck() {
    let mut scripts: Vec<PathBuf> = [
        "infra/deploy.sh",
        "infra/package.sh",
        "infra/moodle/package.sh",
        "infra/testing/az",
        ".ci/run",
    ]
    .iter()
    .map(|p| repo().join(p))
    .collect();
    // Every shell script of the project, not only the infra ones.
    for entry in std::fs::read_dir(repo().join("scripts")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "sh") {
            scripts.push(p);
        }
    }
    assert!(scripts.iter().all(|p| p.exists()), "{scripts:?}");
    let out = Command::new("shellcheck")
        .args(["--severity=style", "--shell=bash"])
        .args(&scripts)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run shellcheck: {e}; {INSTALL_HINT} (Debian package shellcheck)")
        });
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn deploy_script_is_safe() {
    let text = std::fs::read_to_string(repo().join("infra/deploy.sh")).unwrap();
    assert!(text.contains("set -euo pipefail"));
    assert!(!text.contains("set -x"), "tracing would print secrets");
    assert!(text.contains("--what-if") && text.contains("az deployment group what-if"));
    assert!(text.contains("adminconsent?client_id="));
    assert!(text.contains("handler teams-app publish"));
    // Secret values go through files, never through `--value` on a command line.
    assert!(
        !text.contains("--value"),
        "pass secret values with --file, not --value"
    );
    let package = std::fs::read_to_string(repo().join("infra/package.sh")).unwrap();
    assert!(package.contains("set -euo pipefail"));
}
