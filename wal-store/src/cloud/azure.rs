//! The Azure Blob Storage client's settings, in a module of its own so that a wal-store
//! built without the `azure` cargo feature leaves object_store's Azure client out
//! (`connect` then refuses `az://` archives as a configuration error).
//!
//! What it reads is what the Azure SDK and barman-cloud read:
//! `AZURE_STORAGE_CONNECTION_STRING` (parsed here), else barman-cloud's
//! `AZURE_STORAGE_SAS_TOKEN` or `AZURE_STORAGE_KEY` (in that order, as barman-cloud
//! takes them), the account from the archive URL or `AZURE_STORAGE_ACCOUNT`; and the
//! other `AZURE_STORAGE_*` variables object_store reads.

use std::collections::HashMap;

use object_store::ClientOptions;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use wal_core::WalError;

use super::connect::CloudOptions;
use super::location::{CloudLocation, Endpoint, azure_host_account};

/// The Azure builder for `location`: `AZURE_STORAGE_CONNECTION_STRING` when set (what
/// the Azure SDK and barman-cloud read), else the `AZURE_*` variables; the blob endpoint
/// from `--endpoint-url` (`http://127.0.0.1:10000/devstoreaccount1` for Azurite) or the
/// archive URL, never both.
pub(super) fn azure_builder(
    location: &CloudLocation,
    options: &CloudOptions,
    client: ClientOptions,
    env: &HashMap<String, String>,
) -> Result<MicrosoftAzureBuilder, WalError> {
    let mut builder = MicrosoftAzureBuilder::new().with_client_options(client);
    for (key, value) in env {
        // An empty variable is no setting (it would hide the ones read after it).
        if key.starts_with("AZURE_")
            && key != "AZURE_STORAGE_CONNECTION_STRING"
            && !value.is_empty()
            && let Ok(config_key) = key.to_ascii_lowercase().parse::<AzureConfigKey>()
            // The endpoint is chosen below, once, from every place that may name one.
            && config_key != AzureConfigKey::Endpoint
        {
            builder = builder.with_config(config_key, value);
        }
    }
    let connection_string = env.get("AZURE_STORAGE_CONNECTION_STRING");
    let mut endpoint = url_endpoint(location, options, connection_string.is_some())?;
    if let Some(account) = &location.account {
        builder = builder.with_account(&account.name);
    }
    if emulator_mode(&builder)
        && let Some(endpoint) = &endpoint
    {
        // object_store's emulator mode takes its address from AZURITE_BLOB_STORAGE_URL
        // (else 127.0.0.1:10000) and would drop this one without a word.
        return Err(WalError::Config(format!(
            "AZURE_STORAGE_USE_EMULATOR: the emulator's address is not {:?} (given by \
             --endpoint-url or the archive URL); unset it",
            endpoint.as_str()
        )));
    }
    builder = match connection_string {
        Some(text) => with_connection_string(builder, text, location, &mut endpoint)?,
        None => barman_cloud_credentials(builder, location.account.is_some(), env),
    };
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
    if !emulator_mode(&builder)
        && builder
            .get_config_value(&AzureConfigKey::AccountName)
            .is_none()
    {
        return Err(WalError::Config(format!(
            "--archive {location}: no storage account: name it in the URL \
             (https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX), \
             AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT or \
             AZURE_STORAGE_ACCOUNT_NAME"
        )));
    }
    Ok(builder)
}

/// Whether object_store's emulator mode is on.
fn emulator_mode(builder: &MicrosoftAzureBuilder) -> bool {
    builder
        .get_config_value(&AzureConfigKey::UseEmulator)
        .is_some_and(|on| on == "true")
}

/// The blob endpoint `--endpoint-url` or the archive URL names (one of them, or both
/// naming the same). An emulator's archive URL is taken only with a connection string:
/// any host that is not Azure's would otherwise get the credentials (barman-cloud
/// refuses it so too).
fn url_endpoint(
    location: &CloudLocation,
    options: &CloudOptions,
    connection_string: bool,
) -> Result<Option<Endpoint>, WalError> {
    let Some(account) = &location.account else {
        return Ok(options.endpoint.clone());
    };
    if let Some(flag) = &options.endpoint
        && flag != &account.endpoint
    {
        return Err(WalError::Config(format!(
            "--endpoint-url {:?} and --archive {location} name two blob endpoints: give \
             one (the archive URL's is {})",
            flag.as_str(),
            account.endpoint.as_str()
        )));
    }
    if account.emulated && !connection_string {
        return Err(WalError::Config(format!(
            "--archive {location}: an emulator's URL (not under blob.core.windows.net) needs \
             AZURE_STORAGE_CONNECTION_STRING, as in barman-cloud"
        )));
    }
    Ok(Some(account.endpoint.clone()))
}

/// The credentials, account and blob endpoint of the connection string `text`; those the
/// archive URL names must agree with it (barman-cloud would go by the string).
fn with_connection_string(
    mut builder: MicrosoftAzureBuilder,
    text: &str,
    location: &CloudLocation,
    endpoint: &mut Option<Endpoint>,
) -> Result<MicrosoftAzureBuilder, WalError> {
    if text.trim().is_empty() {
        return Err(WalError::Config(
            "AZURE_STORAGE_CONNECTION_STRING is set but empty".into(),
        ));
    }
    let url_account = location.account.as_ref();
    let mut parsed = parse_connection_string(text)?;
    // The Azure portal's SAS connection strings name the account only in their
    // BlobEndpoint (`https://ACCOUNT.blob.core.windows.net/`).
    if parsed.account.is_none() {
        parsed.account = parsed
            .blob_endpoint
            .as_deref()
            .and_then(|url| url.split_once("://"))
            .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or_default())
            .and_then(azure_host_account)
            .map(str::to_owned);
    }
    if let Some(account) = parsed.account {
        if let Some(url) = url_account
            && url.name != account
        {
            return Err(WalError::Config(format!(
                "AZURE_STORAGE_CONNECTION_STRING is for the account {account:?}, \
                 --archive {location} names the account {:?}",
                url.name
            )));
        }
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
        if let Some(endpoint) = endpoint {
            let given = if url_account.is_some() {
                "the archive URL's blob endpoint"
            } else {
                "--endpoint-url"
            };
            return Err(WalError::Config(format!(
                "{given} {:?}: not used with UseDevelopmentStorage=true in \
                 AZURE_STORAGE_CONNECTION_STRING (the emulator's address is \
                 AZURITE_BLOB_STORAGE_URL); give the emulator's BlobEndpoint instead",
                endpoint.as_str()
            )));
        }
        builder = builder.with_use_emulator(true);
    }
    if let Some(blob_endpoint) = parsed.blob_endpoint {
        let named = Endpoint::parse(
            "the BlobEndpoint of AZURE_STORAGE_CONNECTION_STRING",
            &blob_endpoint,
        )?;
        match (&*endpoint, url_account) {
            (None, _) => *endpoint = Some(named),
            (Some(ours), Some(_)) if !ours.as_str().eq_ignore_ascii_case(named.as_str()) => {
                return Err(WalError::Config(format!(
                    "--archive {location} and AZURE_STORAGE_CONNECTION_STRING name two blob \
                     endpoints ({} and {}): give one",
                    ours.as_str(),
                    named.as_str()
                )));
            }
            // --endpoint-url wins over the connection string.
            (Some(_), _) => {}
        }
    }
    Ok(builder)
}

/// barman-cloud's variables, read when no connection string is set: a SAS token
/// (`AZURE_STORAGE_SAS_TOKEN`, which object_store reads as well) before a shared key
/// (`AZURE_STORAGE_KEY`), as barman-cloud takes them; the account of a key from the
/// archive URL, else `AZURE_STORAGE_ACCOUNT` (the Azure CLI's). object_store's own
/// names (`AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_ACCOUNT_NAME`) come first.
fn barman_cloud_credentials(
    mut builder: MicrosoftAzureBuilder,
    account_in_url: bool,
    env: &HashMap<String, String>,
) -> MicrosoftAzureBuilder {
    let unset = |builder: &MicrosoftAzureBuilder, key| builder.get_config_value(&key).is_none();
    if unset(&builder, AzureConfigKey::SasKey)
        && unset(&builder, AzureConfigKey::AccessKey)
        && let Some(key) = env.get("AZURE_STORAGE_KEY")
    {
        builder = builder.with_access_key(key);
    }
    if !account_in_url
        && unset(&builder, AzureConfigKey::AccountName)
        && let Some(account) = env.get("AZURE_STORAGE_ACCOUNT")
    {
        builder = builder.with_account(account);
    }
    builder
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

    fn az() -> CloudLocation {
        location("az://wals/p")
    }

    fn location(url: &str) -> CloudLocation {
        CloudLocation::parse(url).unwrap().unwrap()
    }

    fn config(builder: &MicrosoftAzureBuilder, key: AzureConfigKey) -> Option<String> {
        builder.get_config_value(&key)
    }

    #[test]
    fn barman_clouds_url_names_the_account_and_endpoint_and_its_key_variable_is_read() {
        let url = location("https://acct.blob.core.windows.net/wals/p");
        let builder = azure_builder(
            &url,
            &options(),
            ClientOptions::new(),
            &env(&[
                ("AZURE_STORAGE_KEY", "a2V5"),
                ("AZURE_STORAGE_ACCOUNT", "other"),
                ("AZURE_STORAGE_ENDPOINT", "http://elsewhere:1"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (
                config(&builder, AzureConfigKey::AccountName).as_deref(),
                config(&builder, AzureConfigKey::AccessKey).as_deref(),
                config(&builder, AzureConfigKey::Endpoint).as_deref(),
            ),
            (
                Some("acct"),
                Some("a2V5"),
                Some("https://acct.blob.core.windows.net")
            )
        );
        // az:// takes the account from AZURE_STORAGE_ACCOUNT; a SAS token comes before
        // the key, as in barman-cloud.
        let builder = azure_builder(
            &az(),
            &options(),
            ClientOptions::new(),
            &env(&[
                ("AZURE_STORAGE_KEY", "a2V5"),
                ("AZURE_STORAGE_SAS_TOKEN", "sv=2024&sig=abc"),
                ("AZURE_STORAGE_ACCOUNT", "cli"),
            ]),
        )
        .unwrap();
        assert_eq!(
            config(&builder, AzureConfigKey::AccountName).as_deref(),
            Some("cli")
        );
        assert_eq!(config(&builder, AzureConfigKey::AccessKey), None);
        assert!(config(&builder, AzureConfigKey::SasKey).is_some());
        // An empty variable is no setting: the key behind it is read.
        let builder = azure_builder(
            &url,
            &options(),
            ClientOptions::new(),
            &env(&[
                ("AZURE_STORAGE_KEY", "a2V5"),
                ("AZURE_STORAGE_SAS_TOKEN", ""),
            ]),
        )
        .unwrap();
        assert_eq!(
            config(&builder, AzureConfigKey::AccessKey).as_deref(),
            Some("a2V5")
        );
        // object_store's own names come first.
        let builder = azure_builder(
            &az(),
            &options(),
            ClientOptions::new(),
            &env(&[
                ("AZURE_STORAGE_KEY", "a2V5"),
                ("AZURE_STORAGE_ACCOUNT_KEY", "b3du"),
                ("AZURE_STORAGE_ACCOUNT", "cli"),
                ("AZURE_STORAGE_ACCOUNT_NAME", "own"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (
                config(&builder, AzureConfigKey::AccountName).as_deref(),
                config(&builder, AzureConfigKey::AccessKey).as_deref()
            ),
            (Some("own"), Some("b3du"))
        );
    }

    /// The Azure portal's SAS connection string names the account in its BlobEndpoint.
    #[test]
    fn a_sas_connection_string_names_its_account_by_its_endpoint() {
        let builder = azure_builder(
            &az(),
            &options(),
            ClientOptions::new(),
            &env(&[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=1&sig=x",
            )]),
        )
        .unwrap();
        assert_eq!(
            (
                config(&builder, AzureConfigKey::AccountName).as_deref(),
                config(&builder, AzureConfigKey::Endpoint).as_deref()
            ),
            (Some("acct"), Some("https://acct.blob.core.windows.net"))
        );
    }

    #[test]
    fn an_archive_url_at_odds_with_the_other_settings_is_refused() {
        let url = location("http://127.0.0.1:10000/devstoreaccount1/wals/p");
        let mut opts = options();
        opts.endpoint = Some(endpoint("http://127.0.0.1:10001/devstoreaccount1"));
        let err = azure_builder(&url, &opts, ClientOptions::new(), &env(&[])).unwrap_err();
        assert_eq!(err.kind(), wal_core::ErrorKind::Config);
        assert!(err.to_string().contains("two blob endpoints"), "{err}");
        // The same endpoint twice is no conflict.
        let emulator_key = (
            "AZURE_STORAGE_CONNECTION_STRING",
            "AccountName=devstoreaccount1;AccountKey=k",
        );
        opts.endpoint = Some(endpoint("http://127.0.0.1:10000/devstoreaccount1/"));
        assert!(azure_builder(&url, &opts, ClientOptions::new(), &env(&[emulator_key])).is_ok());
        let refused = |env_vars: &[(&str, &str)], says: &str| {
            let err =
                azure_builder(&url, &options(), ClientOptions::new(), &env(env_vars)).unwrap_err();
            assert_eq!(err.kind(), wal_core::ErrorKind::Config, "{err}");
            assert!(err.to_string().contains(says), "{err}");
        };
        // An emulator's URL without a connection string (any host would get the key),
        // as barman-cloud refuses it; an empty one is none.
        refused(
            &[("AZURE_STORAGE_KEY", "a2V5")],
            "needs AZURE_STORAGE_CONNECTION_STRING",
        );
        refused(&[("AZURE_STORAGE_CONNECTION_STRING", " ")], "set but empty");
        // object_store's emulator mode would go elsewhere without a word.
        refused(
            &[emulator_key, ("AZURE_STORAGE_USE_EMULATOR", "true")],
            "AZURE_STORAGE_USE_EMULATOR",
        );
        // The connection string's BlobEndpoint is where barman-cloud would go.
        refused(
            &[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "AccountName=devstoreaccount1;AccountKey=k;\
                 BlobEndpoint=http://127.0.0.1:10001/devstoreaccount1",
            )],
            "two blob endpoints",
        );
        let err = azure_builder(
            &url,
            &options(),
            ClientOptions::new(),
            &env(&[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "AccountName=someone;AccountKey=k",
            )]),
        )
        .unwrap_err();
        assert_eq!(err.kind(), wal_core::ErrorKind::Config);
        assert!(err.to_string().contains("\"someone\""), "{err}");
        // barman-cloud's emulator form with the emulator's connection string: the URL's
        // endpoint serves, the string's credentials sign.
        let builder = azure_builder(
            &url,
            &options(),
            ClientOptions::new(),
            &env(&[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "AccountName=devstoreaccount1;AccountKey=k;\
                 BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1",
            )]),
        )
        .unwrap();
        assert_eq!(
            config(&builder, AzureConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
    }

    #[test]
    fn an_unusable_endpoint_from_anywhere_is_a_configuration_error_naming_it() {
        let err = azure_builder(
            &az(),
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
            &az(),
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
            &az(),
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
