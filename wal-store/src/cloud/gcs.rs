//! The GCS client's settings, in a module of its own so that a wal-store built without
//! the `gcp` cargo feature leaves object_store's GCS client out (`connect` then refuses
//! `gs://` archives as a configuration error).

use std::collections::HashMap;

use object_store::ClientOptions;
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use wal_core::WalError;

use super::connect::CloudOptions;
use super::location::Endpoint;

/// The GCS builder: the `GOOGLE_*` variables (`GOOGLE_APPLICATION_CREDENTIALS`,
/// `GOOGLE_SERVICE_ACCOUNT`, …), as object_store's `from_env` reads them; `--endpoint-url`
/// (else `GOOGLE_BASE_URL`) for a GCS emulator.
pub(super) fn gcs_builder(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::connect::testing::{endpoint, env, options};

    #[test]
    fn an_unusable_endpoint_from_anywhere_is_a_configuration_error_naming_it() {
        let err = gcs_builder(
            &options(),
            ClientOptions::new(),
            &env(&[("GOOGLE_BASE_URL", "gcs:4443")]),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("GOOGLE_BASE_URL"), "{err}");
    }

    #[test]
    fn the_endpoint_flag_wins_over_google_base_url() {
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
