//! Connecting to a cloud archive with the credentials its users already have set.
//!
//! A DBA moving from barman-cloud configures the same things the same way: for S3 the
//! `AWS_*` variables, a profile in `~/.aws/credentials` and `~/.aws/config` (`--profile`
//! or `AWS_PROFILE`; object_store reads no profile files, so they are read here) and
//! `--endpoint-url` for S3-compatible servers; for Azure `AZURE_STORAGE_CONNECTION_STRING`
//! (parsed here) or the `AZURE_STORAGE_*` variables; for GCS
//! `GOOGLE_APPLICATION_CREDENTIALS`. Nothing read here is ever printed.
//!
//! Every request is bounded: a connect timeout, a per-request timeout, and a few retries
//! with exponential backoff for transient failures, all inside the per-record deadline
//! that [`super::Bucket`] enforces.
//!
//! Where the requests go is decided here, once, for every provider: `--endpoint-url`,
//! else the variable or file the provider's own tools read. Whichever wins is checked
//! ([`Endpoint::parse`]) and given to the client as the one endpoint, so no other
//! setting (`AWS_ENDPOINT_URL_S3`, the emulator's address) can send the requests, signed
//! with the user's credentials, somewhere else without a word.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::list::PaginatedListStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use wal_core::WalError;

use super::location::{CloudLocation, Endpoint, Provider};

/// How to reach the store, from flags (credentials come from the environment).
#[derive(Debug, Clone, PartialEq)]
pub struct CloudOptions {
    /// `--endpoint-url`: an S3-compatible server, an Azure blob endpoint, a GCS emulator.
    pub endpoint: Option<Endpoint>,
    /// `--profile`: the AWS profile to read from `~/.aws`.
    pub profile: Option<String>,
    /// `--region`.
    pub region: Option<String>,
    /// One request's limit.
    pub request_timeout: Duration,
    /// A record's overall limit, retries included.
    pub deadline: Duration,
    /// Records in flight at once.
    pub jobs: usize,
    /// Objects larger than this go up in parts of this size.
    pub part_size: usize,
}

/// An object store and its raw-prefix lister (the same client).
pub struct Connection {
    /// Gets, puts, deletes.
    pub store: Arc<dyn ObjectStore>,
    /// Listing by raw key prefix (`…/<hash>/<name>` matches `<name>.zst`).
    pub lister: Arc<dyn PaginatedListStore>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection({})", self.store)
    }
}

/// Builds the client for `location`.
pub fn connect(location: &CloudLocation, options: &CloudOptions) -> Result<Connection, WalError> {
    let client = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5).min(options.request_timeout))
        .with_timeout(options.request_timeout);
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: options.deadline,
    };
    let built = match location.provider {
        Provider::S3 => {
            let s3 = s3_builder(options, client, &environment(), aws_files())?
                .with_bucket_name(&location.bucket)
                .with_retry(retry)
                .build()
                .map_err(|e| config_error(location, &e))?;
            let s3 = Arc::new(s3);
            Connection {
                store: s3.clone(),
                lister: s3,
            }
        }
        Provider::Azure => {
            let azure = azure_builder(options, client, &environment())?
                .with_container_name(&location.bucket)
                .with_retry(retry)
                .build()
                .map_err(|e| config_error(location, &e))?;
            let azure = Arc::new(azure);
            Connection {
                store: azure.clone(),
                lister: azure,
            }
        }
        Provider::Gcs => {
            let gcs = gcs_builder(options, client, &environment())?
                .with_bucket_name(&location.bucket)
                .with_retry(retry)
                .build()
                .map_err(|e| config_error(location, &e))?;
            let gcs = Arc::new(gcs);
            Connection {
                store: gcs.clone(),
                lister: gcs,
            }
        }
    };
    Ok(built)
}

/// The client refused its settings: a configuration error (exit 78). Any URL in its
/// words is shown without credentials or query, as everywhere else.
fn config_error(location: &CloudLocation, err: &object_store::Error) -> WalError {
    let cause: Vec<String> = super::one_line(err)
        .split(' ')
        .map(|word| {
            if word.contains("://") {
                super::location::shown(word)
            } else {
                word.to_string()
            }
        })
        .collect();
    WalError::Config(format!(
        "{location}: cannot configure the client: {}",
        cause.join(" ")
    ))
}

fn environment() -> HashMap<String, String> {
    std::env::vars().collect()
}

/// `~/.aws/credentials` and `~/.aws/config` (or `AWS_SHARED_CREDENTIALS_FILE`,
/// `AWS_CONFIG_FILE`), as text; missing files read as empty.
fn aws_files() -> (String, String) {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let read = |var: &str, default: &str| {
        let path = std::env::var_os(var).map_or_else(|| home.join(default), PathBuf::from);
        std::fs::read_to_string(path).unwrap_or_default()
    };
    (
        read("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
        read("AWS_CONFIG_FILE", ".aws/config"),
    )
}

/// The S3 builder: `AWS_*` variables, then a profile's files for what they leave unset,
/// then flags, which win. `client` comes first: allowing plain http is one of its
/// settings, which setting it later would undo.
fn s3_builder(
    options: &CloudOptions,
    client: ClientOptions,
    env: &HashMap<String, String>,
    (credentials, config): (String, String),
) -> Result<AmazonS3Builder, WalError> {
    let mut builder = AmazonS3Builder::new().with_client_options(client);
    for (key, value) in env {
        if key.starts_with("AWS_")
            && let Ok(config_key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
            // The endpoint is chosen below, once, from every place that may name one.
            && !matches!(
                config_key,
                AmazonS3ConfigKey::Endpoint | AmazonS3ConfigKey::S3Endpoint
            )
        {
            builder = builder.with_config(config_key, value);
        }
    }
    let profile = options
        .profile
        .clone()
        .or_else(|| env.get("AWS_PROFILE").cloned())
        .unwrap_or_else(|| "default".to_string());
    let from_profile = profile_settings(&credentials, &config, &profile);
    if options.profile.is_some() && from_profile.is_empty() {
        return Err(WalError::Config(format!(
            "--profile {profile:?}: no such profile in ~/.aws/credentials or ~/.aws/config"
        )));
    }
    let has_keys = env.contains_key("AWS_ACCESS_KEY_ID");
    for (setting, value) in &from_profile {
        let apply = match setting.as_str() {
            "aws_access_key_id" | "aws_secret_access_key" | "aws_session_token" => !has_keys,
            "region" => !env.contains_key("AWS_REGION") && !env.contains_key("AWS_DEFAULT_REGION"),
            _ => false,
        };
        if apply && let Ok(config_key) = setting.parse() {
            builder = builder.with_config(config_key, value);
        }
    }
    if let Some(region) = &options.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = s3_endpoint(options, env, &profile, &from_profile)? {
        // S3-compatible servers are addressed path-style (barman-cloud's `auto` does the
        // same for an endpoint URL); plain http only when the endpoint says so. The
        // S3-specific key too: object_store would prefer it to the general one.
        builder = builder
            .with_endpoint(endpoint.as_str())
            .with_config(AmazonS3ConfigKey::S3Endpoint, endpoint.as_str())
            .with_virtual_hosted_style_request(false)
            .with_allow_http(endpoint.is_http());
    }
    Ok(builder)
}

/// The S3 endpoint, checked: `--endpoint-url`, else the variables the AWS tools read
/// (the S3-specific one first; object_store's `AWS_ENDPOINT` too), else the profile's
/// `endpoint_url`. An empty variable counts as unset, as an `export VAR=` meant.
fn s3_endpoint(
    options: &CloudOptions,
    env: &HashMap<String, String>,
    profile: &str,
    from_profile: &HashMap<String, String>,
) -> Result<Option<Endpoint>, WalError> {
    if let Some(endpoint) = &options.endpoint {
        return Ok(Some(endpoint.clone()));
    }
    for var in ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"] {
        if let Some(value) = env.get(var).filter(|v| !v.is_empty()) {
            return Endpoint::parse(var, value).map(Some);
        }
    }
    match from_profile.get("endpoint_url").filter(|v| !v.is_empty()) {
        Some(value) => {
            Endpoint::parse(&format!("endpoint_url of AWS profile {profile}"), value).map(Some)
        }
        None => Ok(None),
    }
}

/// The settings of `profile` from the shared credentials file (`[name]`) and the config
/// file (`[profile name]`, `[default]`); keys lower-cased.
fn profile_settings(credentials: &str, config: &str, profile: &str) -> HashMap<String, String> {
    let mut settings = ini_section(config, &format!("profile {profile}"));
    if profile == "default" {
        settings.extend(ini_section(config, "default"));
    }
    settings.extend(ini_section(credentials, profile));
    settings
}

/// The `key = value` lines of `[section]` in an INI text.
fn ini_section(text: &str, section: &str) -> HashMap<String, String> {
    let mut inside = false;
    let mut found = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if inside && let Some((key, value)) = line.split_once('=') {
            found.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    found
}

/// The GCS builder: the `GOOGLE_*` variables (`GOOGLE_APPLICATION_CREDENTIALS`,
/// `GOOGLE_SERVICE_ACCOUNT`, …), as object_store's `from_env` reads them; `--endpoint-url`
/// (else `GOOGLE_BASE_URL`) for a GCS emulator.
fn gcs_builder(
    options: &CloudOptions,
    client: ClientOptions,
    env: &HashMap<String, String>,
) -> Result<GoogleCloudStorageBuilder, WalError> {
    let mut builder = GoogleCloudStorageBuilder::new();
    for (key, value) in env {
        if key.starts_with("GOOGLE_")
            && let Ok(config_key) = key.to_ascii_lowercase().parse::<GoogleConfigKey>()
            && config_key != GoogleConfigKey::BaseUrl
        {
            builder = builder.with_config(config_key, value);
        }
    }
    let endpoint = match &options.endpoint {
        Some(endpoint) => Some(endpoint.clone()),
        None => env
            .get("GOOGLE_BASE_URL")
            .filter(|v| !v.is_empty())
            .map(|value| Endpoint::parse("GOOGLE_BASE_URL", value))
            .transpose()?,
    };
    // Plain http only when the endpoint says so (an emulator on loopback).
    let http = endpoint.as_ref().is_some_and(Endpoint::is_http);
    if let Some(endpoint) = endpoint {
        builder = builder.with_base_url(endpoint.as_str());
    }
    Ok(builder.with_client_options(client.with_allow_http(http)))
}

/// The Azure builder: `AZURE_STORAGE_CONNECTION_STRING` when set (what the Azure SDK
/// and barman-cloud read), else the `AZURE_*` variables; `--endpoint-url` names the
/// blob endpoint (`http://127.0.0.1:10000/devstoreaccount1` for Azurite).
fn azure_builder(
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

    fn options() -> CloudOptions {
        CloudOptions {
            endpoint: None,
            profile: None,
            region: None,
            request_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(60),
            jobs: 4,
            part_size: 16 << 20,
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    const CREDENTIALS: &str = "[default]\naws_access_key_id = DEF\naws_secret_access_key = defsecret\n\n[backup]\naws_access_key_id=BAK\naws_secret_access_key=baksecret\n";
    const CONFIG: &str = "[default]\nregion = eu-west-1\n[profile backup]\nregion = garage\nendpoint_url = http://127.0.0.1:3900\n";

    #[test]
    fn profiles_fill_what_the_environment_leaves_unset() {
        let mut opts = options();
        opts.profile = Some("backup".into());
        let builder = s3_builder(
            &opts,
            ClientOptions::new(),
            &env(&[]),
            (CREDENTIALS.into(), CONFIG.into()),
        )
        .unwrap();
        let get = |key| builder.get_config_value(&key);
        assert_eq!(get(AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("BAK"));
        assert_eq!(get(AmazonS3ConfigKey::Region).as_deref(), Some("garage"));
        assert_eq!(
            get(AmazonS3ConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:3900")
        );
        // The environment wins over the default profile; flags win over both.
        let mut opts = options();
        opts.region = Some("us-east-2".into());
        let builder = s3_builder(
            &opts,
            ClientOptions::new(),
            &env(&[("AWS_ACCESS_KEY_ID", "ENV"), ("AWS_SECRET_ACCESS_KEY", "s")]),
            (CREDENTIALS.into(), CONFIG.into()),
        )
        .unwrap();
        let get = |key| builder.get_config_value(&key);
        assert_eq!(get(AmazonS3ConfigKey::AccessKeyId).as_deref(), Some("ENV"));
        assert_eq!(get(AmazonS3ConfigKey::Region).as_deref(), Some("us-east-2"));
        // A profile asked for by name must exist.
        let mut opts = options();
        opts.profile = Some("nope".into());
        assert!(
            s3_builder(
                &opts,
                ClientOptions::new(),
                &env(&[]),
                (CREDENTIALS.into(), CONFIG.into())
            )
            .is_err()
        );
    }

    fn endpoint(text: &str) -> Endpoint {
        Endpoint::parse("--endpoint-url", text).unwrap()
    }

    fn s3(opts: &CloudOptions, vars: &[(&str, &str)]) -> Result<AmazonS3Builder, WalError> {
        s3_builder(
            opts,
            ClientOptions::new(),
            &env(vars),
            (CREDENTIALS.into(), CONFIG.into()),
        )
    }

    #[test]
    fn the_endpoint_flag_wins_over_every_variable_and_the_profile() {
        let mut opts = options();
        opts.profile = Some("backup".into());
        opts.endpoint = Some(endpoint("https://minio.example:9000"));
        let vars = [
            ("AWS_ENDPOINT_URL_S3", "http://elsewhere:1"),
            ("AWS_ENDPOINT_URL", "http://elsewhere:2"),
        ];
        let builder = s3(&opts, &vars).unwrap();
        for key in [AmazonS3ConfigKey::Endpoint, AmazonS3ConfigKey::S3Endpoint] {
            assert_eq!(
                builder.get_config_value(&key).as_deref(),
                Some("https://minio.example:9000")
            );
        }
        // Without the flag the S3-specific variable wins, and is the only endpoint.
        let builder = s3(&options(), &vars).unwrap();
        for key in [AmazonS3ConfigKey::Endpoint, AmazonS3ConfigKey::S3Endpoint] {
            assert_eq!(
                builder.get_config_value(&key).as_deref(),
                Some("http://elsewhere:1")
            );
        }
        // An empty variable is unset: the default profile names none, so none at all.
        let builder = s3(&options(), &[("AWS_ENDPOINT_URL", "")]).unwrap();
        assert_eq!(builder.get_config_value(&AmazonS3ConfigKey::Endpoint), None);
    }

    #[test]
    fn an_unusable_endpoint_from_anywhere_is_a_configuration_error_naming_it() {
        let err = s3(&options(), &[("AWS_ENDPOINT_URL", "localhost:9000")]).unwrap_err();
        assert_eq!(err.kind(), wal_core::ErrorKind::Config);
        assert!(
            err.to_string()
                .starts_with("AWS_ENDPOINT_URL \"localhost:9000\""),
            "{err}"
        );
        let mut opts = options();
        opts.profile = Some("bad".into());
        let err = s3_builder(
            &opts,
            ClientOptions::new(),
            &env(&[]),
            (
                String::new(),
                "[profile bad]\nendpoint_url = minio:9000\n".into(),
            ),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("endpoint_url of AWS profile bad \"minio:9000\""),
            "{err}"
        );
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
        let err = gcs_builder(
            &options(),
            ClientOptions::new(),
            &env(&[("GOOGLE_BASE_URL", "gcs:4443")]),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("GOOGLE_BASE_URL"), "{err}");
        let mut opts = options();
        opts.profile = Some("nope".into());
        assert_eq!(
            s3(&opts, &[]).unwrap_err().kind(),
            wal_core::ErrorKind::Config
        );
    }

    #[test]
    fn azure_and_gcs_take_the_endpoint_flag_too() {
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
        let mut opts = options();
        opts.endpoint = Some(endpoint("http://127.0.0.1:4443"));
        let builder = gcs_builder(
            &opts,
            ClientOptions::new(),
            &env(&[("GOOGLE_BASE_URL", "http://elsewhere:1")]),
        )
        .unwrap();
        assert_eq!(
            builder
                .get_config_value(&GoogleConfigKey::BaseUrl)
                .as_deref(),
            Some("http://127.0.0.1:4443")
        );
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

    #[test]
    fn gcs_reads_google_application_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let pem = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .unwrap();
        assert!(pem.status.success());
        let account = serde_json::json!({
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "1",
            "private_key": String::from_utf8(pem.stdout).unwrap(),
            "client_email": "walpipe@p.iam.gserviceaccount.com",
        });
        let key = dir.path().join("sa.json");
        std::fs::write(&key, account.to_string()).unwrap();
        let path = key.to_string_lossy().into_owned();
        let built = gcs_builder(
            &options(),
            ClientOptions::new(),
            &env(&[("GOOGLE_APPLICATION_CREDENTIALS", &path)]),
        )
        .unwrap()
        .with_bucket_name("bucket")
        .build();
        assert!(built.is_ok(), "{built:?}");
        // A credentials file that is not there is a configuration error.
        let missing = gcs_builder(
            &options(),
            ClientOptions::new(),
            &env(&[("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent.json")]),
        )
        .unwrap()
        .with_bucket_name("bucket")
        .build();
        assert!(missing.is_err());
    }
}
