//! The azure 0.21 clients do not build themselves from a connection string, so map one to
//! an account, a key and endpoints here (including `UseDevelopmentStorage=true` → Azurite).

use super::{AzureStorageSettings, Secret};

const EMULATOR_ACCOUNT: &str = "devstoreaccount1";

pub fn parse(conn: &str) -> Result<AzureStorageSettings, String> {
    let mut account = None;
    let mut key = None;
    let mut table = None;
    let mut blob = None;
    let mut protocol = "https".to_string();
    let mut suffix = "core.windows.net".to_string();
    let mut dev = false;
    let mut dev_proxy = None;
    for part in conn.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err("not a connection string (expected Key=Value;… pairs)".into());
        };
        match k {
            "AccountName" => account = Some(v.to_string()),
            "AccountKey" => key = Some(v.to_string()),
            "TableEndpoint" => table = Some(v.trim_end_matches('/').to_string()),
            "BlobEndpoint" => blob = Some(v.trim_end_matches('/').to_string()),
            "DefaultEndpointsProtocol" => protocol = v.to_string(),
            "EndpointSuffix" => suffix = v.to_string(),
            "UseDevelopmentStorage" => dev = v.eq_ignore_ascii_case("true"),
            "DevelopmentStorageProxyUri" => dev_proxy = Some(v.trim_end_matches('/').to_string()),
            _ => {}
        }
    }
    if dev {
        let host = dev_proxy.unwrap_or_else(|| "http://127.0.0.1".into());
        return Ok(AzureStorageSettings {
            account: EMULATOR_ACCOUNT.into(),
            key: Some(Secret::new(azure_storage::EMULATOR_ACCOUNT_KEY)),
            table_endpoint: Some(format!("{host}:10002/{EMULATOR_ACCOUNT}")),
            blob_endpoint: Some(format!("{host}:10000/{EMULATOR_ACCOUNT}")),
            managed_identity_client_id: None,
            identity: Default::default(),
            table_prefix: String::new(),
        });
    }
    let account = account.ok_or("AccountName missing")?;
    let key = key
        .ok_or("AccountKey missing (use AzureWebJobsStorage__accountName for managed identity)")?;
    // The whole string is registered by the settings loader; the key alone must be too.
    crate::redact::register(&key);
    Ok(AzureStorageSettings {
        table_endpoint: Some(
            table.unwrap_or_else(|| format!("{protocol}://{account}.table.{suffix}")),
        ),
        blob_endpoint: Some(
            blob.unwrap_or_else(|| format!("{protocol}://{account}.blob.{suffix}")),
        ),
        account,
        key: Some(Secret::new(key)),
        managed_identity_client_id: None,
        identity: Default::default(),
        table_prefix: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_endpoints_win_and_key_stays_secret() {
        let s = parse("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=abc==;TableEndpoint=http://127.0.0.1:5555/devstoreaccount1/;BlobEndpoint=http://127.0.0.1:5554/devstoreaccount1").unwrap();
        assert_eq!(
            s.table_endpoint.as_deref(),
            Some("http://127.0.0.1:5555/devstoreaccount1")
        );
        assert_eq!(
            s.blob_endpoint.as_deref(),
            Some("http://127.0.0.1:5554/devstoreaccount1")
        );
        assert!(!format!("{s:?}").contains("abc=="));
    }

    #[test]
    fn cloud_defaults_and_errors() {
        let s = parse("AccountName=school;AccountKey=k;EndpointSuffix=core.windows.net").unwrap();
        assert_eq!(
            s.table_endpoint.as_deref(),
            Some("https://school.table.core.windows.net")
        );
        assert!(parse("AccountName=school")
            .unwrap_err()
            .contains("AccountKey"));
        assert!(parse("garbage").is_err());
    }
}
