//! Where a cloud archive is, and Barman's object keys inside it.
//!
//! barman-cloud and Barman's cloud WAL storage (spec §5.2) name an object
//! `<prefix>/<server>/wals/<hash_dir>/<name><ext>`: history files without the hash
//! directory, `<ext>` the compression's extension (`.gz .bz2 .xz .zst .lz4 .snappy`, none
//! when uncompressed). Keeping that layout exactly is what lets barman-cloud-wal-restore
//! read what walpipe writes and walpipe read what barman-cloud-wal-archive writes.
//!
//! Encrypted objects are walpipe's own (Barman does not encrypt client-side): their key
//! gets `.gpg` after the compression extension (`<name>.zst.gpg`). barman-cloud tools
//! then see a name that is not WAL and skip it, rather than hand ciphertext to PostgreSQL.

use std::fmt;

use wal_core::compression::Compression;
use wal_core::record::Encryption;
use wal_core::{WalError, WalName};

/// The extension an encrypted object's key ends with.
pub const ENCRYPTED_EXTENSION: &str = ".gpg";

/// Which service holds the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Amazon S3 or an S3-compatible server (`s3://`).
    S3,
    /// Azure Blob Storage (`az://`).
    Azure,
    /// Google Cloud Storage (`gs://`).
    Gcs,
}

impl Provider {
    /// The URL scheme.
    #[must_use]
    pub fn scheme(self) -> &'static str {
        match self {
            Provider::S3 => "s3",
            Provider::Azure => "az",
            Provider::Gcs => "gs",
        }
    }
}

/// A parsed `s3://BUCKET/PREFIX`, `az://CONTAINER/PREFIX` or `gs://BUCKET/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudLocation {
    /// The service.
    pub provider: Provider,
    /// The bucket (or Azure container).
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl CloudLocation {
    /// Parses an archive URL; `Ok(None)` when `text` is not a cloud URL (a local path).
    pub fn parse(text: &str) -> Result<Option<CloudLocation>, WalError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(None);
        };
        let provider = match scheme {
            "s3" => Provider::S3,
            "az" | "azure" => Provider::Azure,
            "gs" | "gcs" => Provider::Gcs,
            _ => {
                return Err(WalError::Usage(format!(
                    "--archive {text}: unknown scheme {scheme:?} (s3://, az:// or gs://, or a directory)"
                )));
            }
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(WalError::Usage(format!(
                "--archive {text}: no bucket or container name"
            )));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part == "." || part == "..") || prefix.contains("//") {
            return Err(WalError::Usage(format!(
                "--archive {text}: the prefix must be plain path segments"
            )));
        }
        Ok(Some(CloudLocation {
            provider,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        }))
    }

    /// `<prefix>/<server>/wals` (Barman's `wals` directory in the bucket), no trailing `/`.
    #[must_use]
    pub fn wals_dir(&self, server: &str) -> String {
        if self.prefix.is_empty() {
            format!("{server}/wals")
        } else {
            format!("{}/{server}/wals", self.prefix)
        }
    }

    /// The key Barman gives `name` stored with `compression` (and walpipe, encrypted).
    #[must_use]
    pub fn key(
        &self,
        server: &str,
        name: &WalName,
        compression: Option<Compression>,
        encryption: Option<Encryption>,
    ) -> String {
        let mut key = format!("{}/{}", self.wals_dir(server), stem(name));
        if let Some(compression) = compression {
            key.push_str(compression.extension());
        }
        if encryption.is_some() {
            key.push_str(ENCRYPTED_EXTENSION);
        }
        key
    }

    /// The raw prefix every key of `name` starts with (`…/wals/<hash>/<name>`); also
    /// matches longer names (a `.partial` or `.backup` of the segment), which
    /// [`parse_key`] tells apart.
    #[must_use]
    pub fn name_prefix(&self, server: &str, name: &WalName) -> String {
        format!("{}/{}", self.wals_dir(server), stem(name))
    }

    /// How a key is shown to people: `s3://bucket/key`.
    #[must_use]
    pub fn url_of(&self, key: &str) -> String {
        format!("{}://{}/{key}", self.provider.scheme(), self.bucket)
    }
}

impl fmt::Display for CloudLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}/{}",
            self.provider.scheme(),
            self.bucket,
            self.prefix
        )
    }
}

/// `<hash_dir>/<name>`, or `<name>` for history files.
fn stem(name: &WalName) -> String {
    match name.hash_dir() {
        Some(dir) => format!("{dir}/{name}"),
        None => name.to_string(),
    }
}

/// What an object key under `…/wals/` says about the file it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The WAL name.
    pub name: WalName,
    /// The compression its extension names.
    pub compression: Option<Compression>,
    /// Whether it ends in `.gpg`.
    pub encryption: Option<Encryption>,
}

/// Parses the last part of a key (`000000010000000A00000042.zst.gpg`): `None` when it
/// names no WAL file (Barman's `is_any_xlog_file` after stripping the extensions).
#[must_use]
pub fn parse_key(key: &str) -> Option<KeyInfo> {
    let base = key.rsplit('/').next().unwrap_or(key);
    let (base, encryption) = match base.strip_suffix(ENCRYPTED_EXTENSION) {
        Some(stem) => (stem, Some(Encryption::Gpg)),
        None => (base, None),
    };
    let (stem, compression) = Compression::strip_extension(base);
    let name = WalName::parse(stem).ok()?;
    // A key is only a WAL's when it sits where Barman puts that WAL: its hash directory
    // (history files: directly under wals/).
    let parent = key.rsplit('/').nth(1);
    let expected = name.hash_dir();
    let in_place = match (&expected, parent) {
        (Some(dir), Some(parent)) => dir == parent,
        (None, Some(parent)) => parent == "wals",
        (_, None) => false,
    };
    in_place.then_some(KeyInfo {
        name,
        compression,
        encryption,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal(name: &str) -> WalName {
        WalName::parse(name).unwrap()
    }

    #[test]
    fn parses_the_three_schemes_and_rejects_others() {
        let s3 = CloudLocation::parse("s3://wals/pg/prod/").unwrap().unwrap();
        assert_eq!(
            (s3.provider, s3.bucket.as_str(), s3.prefix.as_str()),
            (Provider::S3, "wals", "pg/prod")
        );
        let az = CloudLocation::parse("az://container").unwrap().unwrap();
        assert_eq!((az.provider, az.prefix.as_str()), (Provider::Azure, ""));
        let gs = CloudLocation::parse("gs://b/p").unwrap().unwrap();
        assert_eq!(gs.provider, Provider::Gcs);
        assert_eq!(
            CloudLocation::parse("/var/lib/barman/pg/wals").unwrap(),
            None
        );
        assert!(CloudLocation::parse("ftp://x/y").is_err());
        assert!(CloudLocation::parse("s3:///prefix").is_err());
        assert!(CloudLocation::parse("s3://b/a/../c").is_err());
    }

    #[test]
    fn keys_are_barmans() {
        let location = CloudLocation::parse("s3://bucket/backups")
            .unwrap()
            .unwrap();
        let segment = wal("000000010000000A00000042");
        assert_eq!(
            location.key("pg", &segment, Some(Compression::Zstd), None),
            "backups/pg/wals/000000010000000A/000000010000000A00000042.zst"
        );
        assert_eq!(
            location.key("pg", &segment, None, None),
            "backups/pg/wals/000000010000000A/000000010000000A00000042"
        );
        assert_eq!(
            location.key(
                "pg",
                &segment,
                Some(Compression::Gzip),
                Some(Encryption::Gpg)
            ),
            "backups/pg/wals/000000010000000A/000000010000000A00000042.gz.gpg"
        );
        // History files have no hash directory; an empty prefix starts at the server.
        let bare = CloudLocation::parse("s3://bucket").unwrap().unwrap();
        assert_eq!(
            bare.key("pg", &wal("00000002.history"), Some(Compression::Lz4), None),
            "pg/wals/00000002.history.lz4"
        );
        assert_eq!(
            bare.key(
                "pg",
                &wal("000000020000000500000007.00000028.backup"),
                None,
                None
            ),
            "pg/wals/0000000200000005/000000020000000500000007.00000028.backup"
        );
        assert_eq!(
            location.url_of("backups/pg/wals/x"),
            "s3://bucket/backups/pg/wals/x"
        );
    }

    #[test]
    fn keys_parse_back() {
        let info = parse_key("p/pg/wals/000000010000000A/000000010000000A00000042.snappy").unwrap();
        assert_eq!(info.name.as_str(), "000000010000000A00000042");
        assert_eq!(info.compression, Some(Compression::Snappy));
        assert_eq!(info.encryption, None);
        let info = parse_key("pg/wals/000000010000000A/000000010000000A00000042.zst.gpg").unwrap();
        assert_eq!(
            (info.compression, info.encryption),
            (Some(Compression::Zstd), Some(Encryption::Gpg))
        );
        let partial =
            parse_key("pg/wals/0000000100000000/000000010000000000000003.partial").unwrap();
        assert_eq!(partial.name.as_str(), "000000010000000000000003.partial");
        assert!(parse_key("pg/wals/00000002.history").is_some());
        // Not WAL, or not where Barman would put it.
        assert_eq!(parse_key("pg/wals/0000000100000000/notes.txt"), None);
        assert_eq!(parse_key("pg/wals/000000010000000A00000042.gz"), None);
        assert_eq!(
            parse_key("pg/wals/0000000100000009/000000010000000A00000042"),
            None
        );
    }
}
