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
/// `GOOGLE_SERVICE_ACCOUNT`, …), as object_store's `from_env` reads them; `--endpoint-url`,
/// else `GOOGLE_BASE_URL`, else the service account's `gcs_base_url` for a GCS emulator.
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
        None => match env.get("GOOGLE_BASE_URL").filter(|v| !v.is_empty()) {
            Some(value) => Some(Endpoint::parse("GOOGLE_BASE_URL", value)?),
            None => service_account_base_url(env)?,
        },
    };
    // Plain http only when the endpoint says so (an emulator on loopback).
    let http = endpoint.as_ref().is_some_and(Endpoint::is_http);
    if let Some(endpoint) = endpoint {
        builder = builder.with_base_url(endpoint.as_str());
    }
    Ok(builder.with_client_options(client.with_allow_http(http)))
}

/// The `gcs_base_url` of the service account object_store is given
/// (`GOOGLE_SERVICE_ACCOUNT` or `GOOGLE_SERVICE_ACCOUNT_PATH`, a file, or
/// `GOOGLE_SERVICE_ACCOUNT_KEY`, the JSON itself), checked like any endpoint.
///
/// object_store sends the requests there when no base URL is set: its documented way to
/// reach an emulator (a file with `gcs_base_url` and `disable_oauth`). Left to
/// object_store, an `http://` one would fail every request ("URL scheme is not
/// allowed", exit 75 as if the store were down) and an unusable one would not be named.
/// A file that cannot be read or parsed is left to object_store, which refuses it as a
/// configuration error.
fn service_account_base_url(env: &HashMap<String, String>) -> Result<Option<Endpoint>, WalError> {
    let from_file = ["GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_PATH"]
        .into_iter()
        .find_map(|var| Some((var, env.get(var).filter(|v| !v.is_empty())?)))
        .and_then(|(var, path)| Some((var, std::fs::read_to_string(path).ok()?)));
    let inline = env
        .get("GOOGLE_SERVICE_ACCOUNT_KEY")
        .filter(|v| !v.is_empty())
        .map(|key| ("GOOGLE_SERVICE_ACCOUNT_KEY", key.clone()));
    let Some((var, json)) = from_file.or(inline) else {
        return Ok(None);
    };
    let Ok(account) = serde_json::from_str::<serde_json::Value>(&json) else {
        return Ok(None);
    };
    match account
        .get("gcs_base_url")
        .and_then(serde_json::Value::as_str)
    {
        Some(url) if !url.is_empty() => {
            Endpoint::parse(&format!("the gcs_base_url of {var}"), url).map(Some)
        }
        _ => Ok(None),
    }
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

    /// object_store's way to an emulator, a service account with `gcs_base_url`: the
    /// endpoint, plain http allowed when it says so, below `GOOGLE_BASE_URL` and the flag.
    #[test]
    fn the_service_accounts_gcs_base_url_is_the_endpoint_when_nothing_else_names_one() {
        let dir = tempfile::tempdir().unwrap();
        let account = |url: &str| {
            serde_json::json!({
                "private_key": "k", "private_key_id": "1", "client_email": "e",
                "disable_oauth": true, "gcs_base_url": url,
            })
            .to_string()
        };
        let file = dir.path().join("sa.json");
        std::fs::write(&file, account("http://127.0.0.1:4443")).unwrap();
        let path = file.to_string_lossy().into_owned();
        let base_url = |opts: &CloudOptions, pairs: &[(&str, &str)]| {
            gcs_builder(opts, ClientOptions::new(), &env(pairs))
                .unwrap()
                .get_config_value(&GoogleConfigKey::BaseUrl)
        };
        for var in ["GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_PATH"] {
            assert_eq!(
                base_url(&options(), &[(var, &path)]).as_deref(),
                Some("http://127.0.0.1:4443"),
                "{var}"
            );
        }
        let inline = account("http://127.0.0.1:4444/");
        assert_eq!(
            base_url(&options(), &[("GOOGLE_SERVICE_ACCOUNT_KEY", &inline)]).as_deref(),
            Some("http://127.0.0.1:4444")
        );
        // GOOGLE_BASE_URL and the flag come first.
        let pairs = [
            ("GOOGLE_SERVICE_ACCOUNT", path.as_str()),
            ("GOOGLE_BASE_URL", "http://127.0.0.1:1"),
        ];
        assert_eq!(
            base_url(&options(), &pairs).as_deref(),
            Some("http://127.0.0.1:1")
        );
        let mut opts = options();
        opts.endpoint = Some(endpoint("http://127.0.0.1:2"));
        assert_eq!(
            base_url(&opts, &pairs).as_deref(),
            Some("http://127.0.0.1:2")
        );
        // With plain http allowed, the client builds (object_store would refuse each
        // request otherwise); an unusable URL is a configuration error naming its place.
        let built = gcs_builder(
            &options(),
            ClientOptions::new(),
            &env(&[("GOOGLE_SERVICE_ACCOUNT", &path)]),
        )
        .unwrap()
        .with_bucket_name("bucket")
        .build();
        assert!(built.is_ok(), "{built:?}");
        std::fs::write(&file, account("gcs:4443")).unwrap();
        let err = gcs_builder(
            &options(),
            ClientOptions::new(),
            &env(&[("GOOGLE_SERVICE_ACCOUNT", &path)]),
        )
        .unwrap_err();
        assert_eq!(err.kind(), wal_core::ErrorKind::Config);
        assert!(
            err.to_string()
                .starts_with("the gcs_base_url of GOOGLE_SERVICE_ACCOUNT"),
            "{err}"
        );
        // No gcs_base_url, or no such file: object_store's own default and checks.
        std::fs::write(&file, "{}").unwrap();
        assert_eq!(
            base_url(&options(), &[("GOOGLE_SERVICE_ACCOUNT", &path)]),
            None
        );
        assert_eq!(
            base_url(
                &options(),
                &[("GOOGLE_SERVICE_ACCOUNT", "/nonexistent.json")]
            ),
            None
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
