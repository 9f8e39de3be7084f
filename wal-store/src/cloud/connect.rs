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
//!
//! Each provider's builder lives in its own module (`s3`, `azure`, `gcs`), compiled only
//! with its cargo feature (`aws`, `azure`, `gcp`: all on by default); a provider left out
//! of the build is refused here as a configuration error (exit 78).

#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::list::PaginatedListStore;
#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use wal_core::WalError;

#[cfg(feature = "azure")]
use super::azure::azure_builder;
#[cfg(feature = "gcp")]
use super::gcs::gcs_builder;
use super::location::{CloudLocation, Endpoint, Provider};
#[cfg(feature = "aws")]
use super::s3::{aws_files, s3_builder};

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
#[cfg_attr(
    not(any(feature = "aws", feature = "azure", feature = "gcp")),
    expect(unused_variables, reason = "no provider to give the options to")
)]
pub fn connect(location: &CloudLocation, options: &CloudOptions) -> Result<Connection, WalError> {
    #[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
    let client = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5).min(options.request_timeout))
        .with_timeout(options.request_timeout);
    #[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: options.deadline,
    };
    match location.provider {
        #[cfg(feature = "aws")]
        Provider::S3 => {
            let s3 = s3_builder(options, client, &environment(), aws_files())?
                .with_bucket_name(&location.bucket)
                .with_retry(retry)
                .build()
                .map_err(|e| config_error(location, &e))?;
            let s3 = Arc::new(s3);
            Ok(Connection {
                store: s3.clone(),
                lister: s3,
            })
        }
        #[cfg(not(feature = "aws"))]
        Provider::S3 => Err(not_built(location, "S3", "aws")),
        #[cfg(feature = "azure")]
        Provider::Azure => {
            let azure = azure_builder(location, options, client, &environment())?
                .with_container_name(&location.bucket)
                .with_retry(retry)
                .build()
                .map_err(|e| config_error(location, &e))?;
            let azure = Arc::new(azure);
            Ok(Connection {
                store: azure.clone(),
                lister: azure,
            })
        }
        #[cfg(not(feature = "azure"))]
        Provider::Azure => Err(not_built(location, "Azure", "azure")),
        #[cfg(feature = "gcp")]
        Provider::Gcs => {
            let gcs = gcs_builder(options, client, &environment())?
                .with_bucket_name(&location.bucket)
                .with_retry(retry)
                .build()
                .map_err(|e| config_error(location, &e))?;
            let gcs = Arc::new(gcs);
            Ok(Connection {
                store: gcs.clone(),
                lister: gcs,
            })
        }
        #[cfg(not(feature = "gcp"))]
        Provider::Gcs => Err(not_built(location, "GCS", "gcp")),
    }
}

/// `location`'s provider was left out of this build: a configuration error (exit 78)
/// naming the cargo feature that brings it.
#[cfg(not(all(feature = "aws", feature = "azure", feature = "gcp")))]
fn not_built(location: &CloudLocation, provider: &str, feature: &str) -> WalError {
    WalError::Config(format!(
        "{location}: this wal-store was built without {provider} support (cargo feature {feature})"
    ))
}

/// The client refused its settings: a configuration error (exit 78). Any URL in its
/// words is shown without credentials or query, as everywhere else.
#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
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

#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
fn environment() -> HashMap<String, String> {
    std::env::vars().collect()
}

#[cfg(test)]
pub(super) mod testing {
    //! What the tests of every provider's builder share, here so that each provider's
    //! module, compiled only with its feature, can use them.

    use std::time::Duration;

    use super::CloudOptions;
    #[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
    use super::Endpoint;
    #[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
    use std::collections::HashMap;

    pub fn options() -> CloudOptions {
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

    #[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
    pub fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
    pub fn endpoint(text: &str) -> Endpoint {
        Endpoint::parse("--endpoint-url", text).unwrap()
    }
}

#[cfg(test)]
mod tests {
    /// A provider left out of the build is refused before anything is read or sent, in
    /// one line that names the cargo feature to build it with.
    #[cfg(not(all(feature = "aws", feature = "azure", feature = "gcp")))]
    #[test]
    fn a_provider_left_out_of_the_build_is_a_configuration_error() {
        use super::testing::options;
        use super::{CloudLocation, connect};

        let left_out = [
            (cfg!(feature = "aws"), "s3://bucket/prefix", "S3", "aws"),
            (
                cfg!(feature = "azure"),
                "az://container/prefix",
                "Azure",
                "azure",
            ),
            (cfg!(feature = "gcp"), "gs://bucket/prefix", "GCS", "gcp"),
        ];
        for (_, url, provider, feature) in left_out.iter().filter(|(built, ..)| !built) {
            let location = CloudLocation::parse(url).unwrap().unwrap();
            let err = connect(&location, &options()).unwrap_err();
            assert_eq!(err.kind(), wal_core::ErrorKind::Config);
            assert_eq!(
                err.to_string(),
                format!(
                    "{url}: this wal-store was built without {provider} support \
                     (cargo feature {feature})"
                )
            );
        }
    }
}
