//! The S3 client's settings, in a module of its own so that a wal-store built without
//! the `aws` cargo feature leaves object_store's S3 client out (`connect` then refuses
//! `s3://` archives as a configuration error).
//!
//! What it reads is what the AWS tools read: the `AWS_*` variables, a profile in
//! `~/.aws/credentials` and `~/.aws/config` (`--profile` or `AWS_PROFILE`; object_store
//! reads no profile files, so they are read here) and `--endpoint-url` for S3-compatible
//! servers.

use std::collections::HashMap;
use std::path::PathBuf;

use object_store::ClientOptions;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use wal_core::WalError;

use super::connect::CloudOptions;
use super::location::Endpoint;

/// `~/.aws/credentials` and `~/.aws/config` (or `AWS_SHARED_CREDENTIALS_FILE`,
/// `AWS_CONFIG_FILE`), as text; missing files read as empty.
pub(super) fn aws_files() -> (String, String) {
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
pub(super) fn s3_builder(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::connect::testing::{endpoint, env, options};

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
        let mut opts = options();
        opts.profile = Some("nope".into());
        assert_eq!(
            s3(&opts, &[]).unwrap_err().kind(),
            wal_core::ErrorKind::Config
        );
    }
}
