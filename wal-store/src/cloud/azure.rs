//! The Azure Blob Storage client's settings, in a module of its own so that a wal-store
//! built without the `azure` cargo feature leaves object_store's Azure client out
//! (`connect` then refuses `az://` archives as a configuration error).
//!
//! What it reads is what the Azure SDK and barman-cloud read:
//! `AZURE_STORAGE_CONNECTION_STRING` (parsed here) or the `AZURE_STORAGE_*` variables.

use std::collections::HashMap;

use object_store::ClientOptions;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use wal_core::WalError;

use super::connect::CloudOptions;
use super::location::Endpoint;

/// The Azure builder: `AZURE_STORAGE_CONNECTION_STRING` when set (what the Azure SDK
/// and barman-cloud read), else the `AZURE_*` variables; `--endpoint-url` names the
/// blob endpoint (`http://127.0.0.1:10000/devstoreaccount1` for Azurite).
pub(super) fn azure_builder(
    options: &CloudOptions,
    client: ClientOptions,
    env: &HashMap<String, String>,
) -> Result<MicrosoftAzureBuilder, WalError> {
    let mut builder = MicrosoftAzureBuilder::new().with_client_options(client);
    for (key, value) in env {
        if key.starts_with("AZURE_")
            && key != "AZURE_STORAGE_CONNECTION_STRING"
            && let Ok(config_key) = key.to_ascii_lowercase().parse::<AzureConfigKey>()
            // The endpoint is chosen below, once, from every place that may name one.
            && config_key != AzureConfigKey::Endpoint
        {
            builder = builder.with_config(config_key, value);
        }
    }
    let mut endpoint = options.endpoint.clone();
    if let Some(text) = env.get("AZURE_STORAGE_CONNECTION_STRING") {
        let parsed = parse_connection_string(text)?;
        if let Some(account) = parsed.account {
            builder = builder.with_account(account);
        }
        if let Some(key) = parsed.key {
            builder = builder.with_access_key(key);
        }
        if let Some(sas) = parsed.sas {
            let pairs = sas
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>();
            builder = builder.with_sas_authorization(pairs);
        }
        if parsed.development {
            // object_store's emulator mode takes its address from AZURITE_BLOB_STORAGE_URL
            // and would drop an endpoint given here without a word.
            if let Some(endpoint) = &endpoint {
                return Err(WalError::Config(format!(
                    "--endpoint-url {:?}: not used with UseDevelopmentStorage=true in \
                     AZURE_STORAGE_CONNECTION_STRING (the emulator's address is \
                     AZURITE_BLOB_STORAGE_URL); give the emulator's BlobEndpoint instead",
                    endpoint.as_str()
                )));
            }
            builder = builder.with_use_emulator(true);
        }
        if endpoint.is_none()
            && let Some(blob_endpoint) = parsed.blob_endpoint
        {
            endpoint = Some(Endpoint::parse(
                "the BlobEndpoint of AZURE_STORAGE_CONNECTION_STRING",
                &blob_endpoint,
            )?);
        }
    }
    if endpoint.is_none() {
        for var in ["AZURE_STORAGE_ENDPOINT", "AZURE_ENDPOINT"] {
            if let Some(value) = env.get(var).filter(|v| !v.is_empty()) {
                endpoint = Some(Endpoint::parse(var, value)?);
                break;
            }
        }
    }
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_allow_http(endpoint.is_http())
            .with_endpoint(endpoint.as_str().to_string());
    }
    Ok(builder)
}

/// What an Azure storage connection string says.
#[derive(Debug, Default, PartialEq, Eq)]
struct ConnectionString {
    account: Option<String>,
    key: Option<String>,
    sas: Option<String>,
    blob_endpoint: Option<String>,
    development: bool,
}

/// Parses `Key=Value;…` (values may contain `=`, as base64 keys do).
fn parse_connection_string(text: &str) -> Result<ConnectionString, WalError> {
    let mut fields = HashMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(WalError::Config(
                "AZURE_STORAGE_CONNECTION_STRING: expected Key=Value pairs separated by ';'".into(),
            ));
        };
        fields.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let account = fields.remove("accountname");
    let protocol = fields
        .remove("defaultendpointsprotocol")
        .unwrap_or_else(|| "https".into());
    let suffix = fields.remove("endpointsuffix");
    let blob_endpoint = fields.remove("blobendpoint").or_else(|| {
        Some(format!(
            "{protocol}://{}.blob.{}",
            account.as_deref()?,
            suffix.as_deref()?
        ))
    });
    Ok(ConnectionString {
        account,
        key: fields.remove("accountkey"),
        sas: fields.remove("sharedaccesssignature"),
        blob_endpoint,
        development: fields
            .remove("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::connect::testing::{endpoint, env, options};

    #[test]
    fn an_unusable_endpoint_from_anywhere_is_a_configuration_error_naming_it() {
        let err = azure_builder(
            &options(),
            ClientOptions::new(),
            &env(&[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "AccountName=a;AccountKey=k;BlobEndpoint=127.0.0.1:10000/a",
            )]),
        )
        .unwrap_err();
        assert_eq!(err.kind(), wal_core::ErrorKind::Config);
        assert!(err.to_string().contains("BlobEndpoint"), "{err}");
    }

    #[test]
    fn the_endpoint_flag_wins_and_the_emulator_mode_refuses_it() {
        let mut opts = options();
        opts.endpoint = Some(endpoint("HTTP://127.0.0.1:10000/devstoreaccount1/"));
        let builder = azure_builder(
            &opts,
            ClientOptions::new(),
            &env(&[
                ("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1"),
                ("AZURE_STORAGE_ENDPOINT", "http://elsewhere:1"),
            ]),
        )
        .unwrap();
        assert_eq!(
            builder
                .get_config_value(&AzureConfigKey::Endpoint)
                .as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        // The emulator mode would take its address elsewhere: refused, not dropped.
        let err = azure_builder(
            &opts,
            ClientOptions::new(),
            &env(&[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "UseDevelopmentStorage=true",
            )]),
        )
        .unwrap_err();
        assert_eq!(err.kind(), wal_core::ErrorKind::Config);
    }

    #[test]
    fn connection_strings_parse_like_the_azure_sdk() {
        let parsed = parse_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=abc==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
        )
        .unwrap();
        assert_eq!(parsed.account.as_deref(), Some("devstoreaccount1"));
        assert_eq!(parsed.key.as_deref(), Some("abc=="));
        assert_eq!(
            parsed.blob_endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        let cloud = parse_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=k;EndpointSuffix=core.windows.net",
        )
        .unwrap();
        assert_eq!(
            cloud.blob_endpoint.as_deref(),
            Some("https://acct.blob.core.windows.net")
        );
        assert!(
            parse_connection_string("UseDevelopmentStorage=true")
                .unwrap()
                .development
        );
        assert!(parse_connection_string("garbage").is_err());
    }
}
