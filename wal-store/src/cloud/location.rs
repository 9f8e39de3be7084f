//! Where a cloud archive is, and Barman's object keys inside it.
//!
//! barman-cloud and Barman's cloud WAL storage name an object
//! `<prefix>/<server>/wals/<hash_dir>/<name><ext>`: history files without the hash
//! directory, `<ext>` the compression's extension (`.gz .bz2 .xz .zst .lz4 .snappy`, none
//! when uncompressed). Keeping that layout exactly is what lets barman-cloud-wal-restore
//! read what walpipe writes and walpipe read what barman-cloud-wal-archive writes.
//!
//! Encrypted objects are walpipe's own (Barman does not encrypt client-side): their key
//! gets `.gpg` after the compression extension (`<name>.zst.gpg`). barman-cloud tools
//! then see a name that is not WAL and skip it, rather than hand ciphertext to PostgreSQL.
//!
//! An archive URL or an endpoint that walpipe cannot use is refused here, before any
//! request, as a configuration error (exit 78) naming the setting: the object-store client
//! would otherwise panic on it, or quietly send the requests, signed with the user's
//! credentials, somewhere the user did not say.

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

/// A parsed `s3://BUCKET/PREFIX`, `az://CONTAINER/PREFIX` or `gs://BUCKET/PREFIX`, or
/// one of barman-cloud's Azure URLs (see [`AzureAccount`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudLocation {
    /// The service.
    pub provider: Provider,
    /// The bucket (or Azure container).
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// The storage account and blob endpoint an Azure URL in barman-cloud's form names
    /// (`az://` leaves both to the credentials and `--endpoint-url`).
    pub account: Option<AzureAccount>,
}

/// The storage account of barman-cloud's Azure archive URLs, which name it where
/// `az://` does not: `https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX`, or, on
/// any other host (an emulator such as Azurite),
/// `http://HOST:PORT/ACCOUNT/CONTAINER/PREFIX`. A DBA's `barman-cloud-wal-archive`
/// URL thus works as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureAccount {
    /// The account name (which signs requests made with a shared key).
    pub name: String,
    /// Where its blobs are: `https://ACCOUNT.blob.core.windows.net`, or
    /// `http://HOST:PORT/ACCOUNT`.
    pub endpoint: Endpoint,
    /// The URL names an emulator, not Azure: barman-cloud takes it only with a
    /// connection string (which names the account's key), and so does walpipe.
    pub emulated: bool,
}

/// The host suffix of Azure's blob service, as barman-cloud tells its URLs apart by it.
const AZURE_BLOB_HOST: &str = ".blob.core.windows.net";

impl CloudLocation {
    /// Parses an archive URL; `Ok(None)` when `text` is not a cloud URL (a local path).
    ///
    /// The bucket must be a bucket or container name (letters, digits, `.`, `-`, `_`: what
    /// S3, Azure and GCS allow between them) and the prefix plain path segments of
    /// characters an object key holds as they are: the client would percent-encode the
    /// others, giving keys Barman would not find.
    pub fn parse(text: &str) -> Result<Option<CloudLocation>, WalError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(None);
        };
        let refuse = |why: String| WalError::Config(format!("--archive {:?}: {why}", shown(text)));
        let (provider, account, rest) = match scheme {
            "s3" => (Provider::S3, None, rest),
            "az" | "azure" => (Provider::Azure, None, rest),
            "gs" | "gcs" => (Provider::Gcs, None, rest),
            _ if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => {
                let (account, rest) = azure_account(text, scheme, rest)?;
                (Provider::Azure, Some(account), rest)
            }
            _ => {
                return Err(refuse(format!(
                    "unknown scheme {scheme:?} (s3://, az://, gs://, barman-cloud's \
                     https://ACCOUNT.blob.core.windows.net/CONTAINER, or a directory)"
                )));
            }
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(refuse("no bucket or container name".into()));
        }
        if let Some(bad) = bucket
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(refuse(format!(
                "{bad:?} cannot be in a bucket or container name"
            )));
        }
        // One trailing `/` means nothing to barman-cloud either; any other empty segment
        // it keeps (or, on Azure, turns into a leading `/`), giving keys that walpipe's
        // could not match.
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        if prefix.split('/').any(|part| part == "." || part == "..")
            || prefix.contains("//")
            || prefix.starts_with('/')
            || prefix.ends_with('/')
        {
            return Err(refuse("the prefix must be plain path segments".into()));
        }
        if let Some(bad) = prefix.chars().find(|&c| !key_char(c)) {
            return Err(refuse(format!(
                "{bad:?} cannot be in the prefix (object keys would not hold it as it is)"
            )));
        }
        Ok(Some(CloudLocation {
            provider,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            account,
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

    /// How a key is shown to people: `s3://bucket/key`, or the blob's URL when the
    /// archive was given as one.
    #[must_use]
    pub fn url_of(&self, key: &str) -> String {
        format!("{}/{key}", self.bucket_url())
    }

    /// `s3://bucket`, or `https://ACCOUNT.blob.core.windows.net/CONTAINER`.
    fn bucket_url(&self) -> String {
        match &self.account {
            Some(account) => format!("{}/{}", account.endpoint.as_str(), self.bucket),
            None => format!("{}://{}", self.provider.scheme(), self.bucket),
        }
    }
}

impl fmt::Display for CloudLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bucket_url(), self.prefix)
    }
}

/// The account of an Azure blob host, `ACCOUNT.blob.core.windows.net` (also
/// `ACCOUNT.privatelink.blob.core.windows.net`): its first label. `None` for another
/// host.
#[must_use]
pub fn azure_host_account(host: &str) -> Option<&str> {
    let cut = host
        .len()
        .checked_sub(AZURE_BLOB_HOST.len())
        .filter(|&cut| cut > 0)?;
    let suffix = host.get(cut..)?;
    suffix
        .eq_ignore_ascii_case(AZURE_BLOB_HOST)
        .then(|| host[..cut].split('.').next().unwrap_or_default())
}

/// The account and blob endpoint of barman-cloud's Azure URL `text` (`scheme://rest`),
/// and the `CONTAINER/PREFIX` that follows them.
fn azure_account<'a>(
    text: &str,
    scheme: &str,
    rest: &'a str,
) -> Result<(AzureAccount, &'a str), WalError> {
    let refuse = |why: &str| WalError::Config(format!("--archive {:?}: {why}", shown(text)));
    if rest.contains(['?', '#']) {
        return Err(refuse(
            "an archive URL has no query or fragment (a SAS token goes in \
             AZURE_STORAGE_SAS_TOKEN)",
        ));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    let azure_account_name = azure_host_account(host);
    let in_azure = azure_account_name.is_some();
    let (name, endpoint, path) = if let Some(name) = azure_account_name {
        // barman-cloud hands Azure's SDK the host alone, which speaks https: so does
        // walpipe, whatever the URL's scheme (an `http://` would send the credentials in
        // the clear).
        (name, format!("https://{authority}"), path)
    } else {
        let (name, path) = path.split_once('/').unwrap_or((path, ""));
        (name, format!("{scheme}://{authority}/{name}"), path)
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(refuse(if in_azure {
            "expected https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX (an account \
             name is letters and digits)"
        } else {
            "expected barman-cloud's Azure URL: https://ACCOUNT.blob.core.windows.net/\
             CONTAINER/PREFIX, or an emulator's http://HOST:PORT/ACCOUNT/CONTAINER/PREFIX"
        }));
    }
    let endpoint = Endpoint::parse(&format!("--archive {:?}: endpoint", shown(text)), &endpoint)?;
    let account = AzureAccount {
        name: name.to_string(),
        endpoint,
        emulated: !in_azure,
    };
    Ok((account, path))
}

/// Whether object_store keeps `c` as it is in a key: it percent-encodes control
/// characters and those S3 and GCS advise against.
fn key_char(c: char) -> bool {
    !c.is_control()
        && !matches!(
            c,
            '\\' | '{'
                | '^'
                | '}'
                | '%'
                | '`'
                | ']'
                | '"'
                | '>'
                | '['
                | '~'
                | '<'
                | '#'
                | '|'
                | '*'
                | '?'
        )
}

/// A URL as messages show it: `…` in place of the `user:password@` of its authority and
/// of its query (an Azure SAS is one) or fragment, so that no error line carries a secret.
#[must_use]
pub fn shown(text: &str) -> String {
    let (text, tail) = match text.find(['?', '#']) {
        Some(at) => (&text[..at], format!("{}…", &text[at..=at])),
        None => (text, String::new()),
    };
    let Some(scheme_end) = text.find("://") else {
        return format!("{text}{tail}");
    };
    let (scheme, rest) = text.split_at(scheme_end + 3);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}…@{}{tail}", &rest[at + 1..]),
        None => format!("{text}{tail}"),
    }
}

/// A server to send the requests to instead of the provider's own: an S3-compatible
/// server, an Azure blob endpoint (`http://127.0.0.1:10000/devstoreaccount1` for Azurite),
/// a GCS emulator.
///
/// `http://` or `https://` (any case), a host (a name, an IPv4 address or a bracketed IPv6
/// one), an optional port from 1 to 65535, an optional path; no `user:password@`
/// (credentials come from each cloud's own settings), no query, no fragment, nothing a URL
/// cannot hold as it is. A trailing `/` is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: String,
    http: bool,
}

impl Endpoint {
    /// Parses `text`, given by `setting` (`--endpoint-url`, `AWS_ENDPOINT_URL`, …), which
    /// names it in the error: a configuration error (exit 78).
    pub fn parse(setting: &str, text: &str) -> Result<Endpoint, WalError> {
        let refuse = |why: &str| WalError::Config(format!("{setting} {:?}: {why}", shown(text)));
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(refuse("not a URL (http://HOST[:PORT][/PATH] or https://…)"));
        };
        let http = if scheme.eq_ignore_ascii_case("http") {
            true
        } else if scheme.eq_ignore_ascii_case("https") {
            false
        } else {
            return Err(refuse("the scheme must be http:// or https://"));
        };
        if rest.contains(['?', '#']) {
            return Err(refuse("an endpoint has no query or fragment"));
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(refuse(
                "credentials do not belong in the endpoint URL (give them as the cloud's \
                 own settings)",
            ));
        }
        let port = if let Some(v6) = authority.strip_prefix('[') {
            let Some((address, after)) = v6.split_once(']') else {
                return Err(refuse("an IPv6 address must end with ']'"));
            };
            if address.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(refuse("not an IPv6 address between '[' and ']'"));
            }
            match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => return Err(refuse("only :PORT may follow the host")),
                },
            }
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            if host.is_empty() {
                return Err(refuse("no host"));
            }
            if !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                return Err(refuse(
                    "the host must be a name or an address (letters, digits, '.', '-')",
                ));
            }
            port
        };
        if let Some(port) = port
            && !(port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|p| p > 0))
        {
            return Err(refuse("the port must be a number from 1 to 65535"));
        }
        if !path_is_plain(path) {
            return Err(refuse(
                "the path holds a character a URL cannot carry as it is",
            ));
        }
        let scheme = if http { "http" } else { "https" };
        Ok(Endpoint {
            url: format!("{scheme}://{authority}{}", path.trim_end_matches('/')),
            http,
        })
    }

    /// The URL, scheme in lower case, without a trailing `/`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// Whether requests go in plain http (which the client then has to be allowed).
    #[must_use]
    pub fn is_http(&self) -> bool {
        self.http
    }
}

/// Whether `path` is made of RFC 3986 path characters (`%` only before two hex digits).
fn path_is_plain(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
            continue;
        }
        let plain = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if !plain {
            return false;
        }
        i += 1;
    }
    true
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
        for bad in [
            "ftp://x/y",
            "s3://",
            "az://",
            "gs:///p",
            "s3:///prefix",
            "s3://b/a/../c",
            "s3://b/./c",
            "s3://b/a//c",
            "s3://b//a",
            "s3://b/a//",
            "gs://b/a///",
            "s3://my bucket/p",
            "s3://b?versionId=1",
            "s3://b/pre%20fix",
            "s3://b/a*b",
            "s3://b/a\nb",
        ] {
            let err = CloudLocation::parse(bad).unwrap_err();
            assert_eq!(err.kind(), wal_core::ErrorKind::Config, "{bad}");
            let text = err.to_string();
            assert!(text.starts_with("--archive \""), "{text}");
            assert!(!text.contains('\n'), "one line: {text}");
        }
        // Legacy S3 bucket names and Garage's are accepted as they are.
        assert!(CloudLocation::parse("s3://Old_Bucket.1/a-b/c_d.e").is_ok());
    }

    #[test]
    fn takes_barman_clouds_azure_urls_as_they_are() {
        let azure = CloudLocation::parse("https://acct.blob.core.windows.net/wals/pg/prod/")
            .unwrap()
            .unwrap();
        let account = azure.account.as_ref().unwrap();
        assert_eq!(
            (
                azure.provider,
                azure.bucket.as_str(),
                azure.prefix.as_str(),
                account.name.as_str(),
                account.endpoint.as_str()
            ),
            (
                Provider::Azure,
                "wals",
                "pg/prod",
                "acct",
                "https://acct.blob.core.windows.net"
            )
        );
        assert_eq!(
            azure.to_string(),
            "https://acct.blob.core.windows.net/wals/pg/prod"
        );
        assert_eq!(
            azure.url_of("pg/prod/pg/wals/x"),
            "https://acct.blob.core.windows.net/wals/pg/prod/pg/wals/x"
        );
        // An emulator: the account is the path's first segment.
        let azurite = CloudLocation::parse("http://127.0.0.1:10000/devstoreaccount1/wals/p")
            .unwrap()
            .unwrap();
        let account = azurite.account.as_ref().unwrap();
        assert_eq!(
            (
                azurite.bucket.as_str(),
                azurite.prefix.as_str(),
                account.name.as_str(),
                account.endpoint.as_str(),
                account.endpoint.is_http()
            ),
            (
                "wals",
                "p",
                "devstoreaccount1",
                "http://127.0.0.1:10000/devstoreaccount1",
                true
            )
        );
        // Azure itself is spoken to in https, as barman-cloud does, whatever the scheme.
        let plain = CloudLocation::parse("http://acct.blob.core.windows.net/c/p")
            .unwrap()
            .unwrap();
        let endpoint = &plain.account.as_ref().unwrap().endpoint;
        assert_eq!(
            (endpoint.as_str(), endpoint.is_http()),
            ("https://acct.blob.core.windows.net", false)
        );
        // A private endpoint: the account is the first label.
        let private = CloudLocation::parse("https://acct.privatelink.blob.core.windows.net/c")
            .unwrap()
            .unwrap();
        assert_eq!(private.account.unwrap().name, "acct");
        let bare = CloudLocation::parse("HTTPS://Acct.BLOB.core.windows.net:443/c")
            .unwrap()
            .unwrap();
        assert_eq!((bare.bucket.as_str(), bare.prefix.as_str()), ("c", ""));
        for bad in [
            "https://acct.blob.core.windows.net",
            "https://acct.blob.core.windows.net/",
            "https://.blob.core.windows.net/c",
            "https://a-b.blob.core.windows.net/c",
            "https://acct.blob.core.windows.net/c/p?sv=2024&sig=SECRET",
            "https://acct.blob.core.windows.net/c#x",
            "http://127.0.0.1:10000",
            "http://127.0.0.1:10000/devstoreaccount1",
            "http://127.0.0.1:99999/devstoreaccount1/c",
            "http://user:pw@127.0.0.1:10000/devstoreaccount1/c",
            "https://example.com/a.b/c",
            // Keys barman-cloud would write elsewhere (`t//pg/…`, `/r/pg/…`).
            "http://127.0.0.1:10000/devstoreaccount1/wals/t//",
            "http://127.0.0.1:10000/devstoreaccount1/wals//r",
            "https://acct.blob.core.windows.net/c//p",
        ] {
            let err = CloudLocation::parse(bad).unwrap_err();
            assert_eq!(err.kind(), wal_core::ErrorKind::Config, "{bad}");
            let text = err.to_string();
            assert!(text.starts_with("--archive \""), "{text}");
            assert!(!text.contains("SECRET") && !text.contains("pw"), "{text}");
        }
    }

    #[test]
    fn a_refused_archive_url_never_shows_its_credentials() {
        let err = CloudLocation::parse("s3://AKIA:SECRET@bucket/p?sig=SAS").unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("SECRET") && !text.contains("SAS"), "{text}");
        assert!(!text.contains("AKIA"), "{text}");
        assert_eq!(
            shown("https://user:pw@host:1/p?sv=1&sig=x"),
            "https://…@host:1/p?…"
        );
        assert_eq!(shown("http://host/p#frag"), "http://host/p#…");
        assert_eq!(shown("localhost:9000"), "localhost:9000");
    }

    #[test]
    fn endpoints_are_http_urls_with_a_host() {
        let ok = |text: &str| Endpoint::parse("--endpoint-url", text).unwrap();
        let garage = ok("http://127.0.0.1:3900/");
        assert_eq!(
            (garage.as_str(), garage.is_http()),
            ("http://127.0.0.1:3900", true)
        );
        let upper = ok("HTTP://Example.COM");
        assert_eq!(
            (upper.as_str(), upper.is_http()),
            ("http://Example.COM", true)
        );
        let azurite = ok("https://[::1]:10000/devstoreaccount1");
        assert_eq!(
            (azurite.as_str(), azurite.is_http()),
            ("https://[::1]:10000/devstoreaccount1", false)
        );
        ok("https://s3.eu-west-1.amazonaws.com");
        ok("http://minio_1:9000/a%2Fb");
        for bad in [
            "",
            "localhost:9000",
            "127.0.0.1",
            "http//127.0.0.1:1",
            "http:/127.0.0.1:1",
            "https:127.0.0.1",
            "ftp://x",
            "s3://bucket",
            "http://",
            "http://:9000",
            "http://bad host",
            " http://127.0.0.1:1",
            "http://127.0.0.1:1 ",
            "http://127.0.0.1:",
            "http://127.0.0.1:0",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:+80",
            "http://[::1",
            "http://[zz]:1",
            "http://[::1]x",
            "http://bücher.example",
            "http://127.0.0.1:1/a b",
            "http://127.0.0.1:1/%zz",
            "http://127.0.0.1:1/?x=1",
            "http://127.0.0.1:1#f",
            "http://127.0.0.1:1/\n",
        ] {
            let err = Endpoint::parse("--endpoint-url", bad).unwrap_err();
            assert_eq!(err.kind(), wal_core::ErrorKind::Config, "{bad:?}");
            let text = err.to_string();
            assert!(text.starts_with("--endpoint-url \""), "{text}");
            assert!(!text.contains('\n'), "one line: {text}");
        }
        let err = Endpoint::parse("AWS_ENDPOINT_URL", "http://key:secret@127.0.0.1:1").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("AWS_ENDPOINT_URL \"http://…@127.0.0.1:1\": credentials"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
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
