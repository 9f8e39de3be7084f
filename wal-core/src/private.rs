//! Private working directories: a user's own, named after the archive they serve.
//!
//! Temp files and restore's spool use predictable names (a killed run's leftover is
//! replaced by the retry, a spooled segment is found by its name), so they must not sit
//! where another user could plant a file under such a name, nor be shared by two clusters
//! that use the same WAL names with two archives. Each such directory is
//! `<base>/<prefix>-<uid>/<server>-<hash of the archive>`, both levels mode 0700, owned by
//! us and not a link; the hash is of the archive's absolute path, or of a cloud archive's
//! endpoint and URL (the same bucket on two servers is two archives).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, WalError};

/// The settings that, beside the URL, say which store a cloud archive is in: the same
/// bucket or container name on two endpoints, profiles or storage accounts is two
/// archives.
const CLOUD_STORE_VARIABLES: [&str; 11] = [
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_CONNECTION_STRING",
    "GOOGLE_BASE_URL",
    "GOOGLE_APPLICATION_CREDENTIALS",
    // A service account's gcs_base_url names the endpoint too (an emulator).
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_SERVICE_ACCOUNT_PATH",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
];

/// What names an archive for [`dir_for`]: a local archive's absolute path, or a cloud
/// archive's URL with its endpoint (`--endpoint-url`) and the environment that picks the
/// store ([`CLOUD_STORE_VARIABLES`]; only hashed, never shown).
pub fn archive_key(archive: &str, endpoint: Option<&str>) -> Result<String> {
    archive_key_with(archive, endpoint, |variable| std::env::var(variable).ok())
}

/// [`archive_key`] with the environment read through `env`.
fn archive_key_with(
    archive: &str,
    endpoint: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String> {
    if archive.contains("://") {
        let mut key = format!("{} {archive}", endpoint.unwrap_or_default());
        for variable in CLOUD_STORE_VARIABLES {
            if let Some(value) = env(variable) {
                key.push('\n');
                key.push_str(variable);
                key.push('=');
                key.push_str(&value);
            }
        }
        return Ok(key);
    }
    Ok(std::path::absolute(archive)
        .context("cannot resolve", Path::new(archive))?
        .to_string_lossy()
        .into_owned())
}

/// `<base>/<prefix>-<uid>/<server>-<hash of archive_key>`, created (0700) if missing and
/// checked to be ours.
pub fn dir_for(base: &Path, prefix: &str, server: &str, archive_key: &str) -> Result<PathBuf> {
    let parent = base.join(format!("{prefix}-{}", nix::unistd::geteuid()));
    let dir = parent.join(format!("{server}-{:08x}", fnv1a(archive_key.as_bytes())));
    create_private(&parent)?;
    create_private(&dir)?;
    Ok(dir)
}

/// 32-bit FNV-1a: short, and stable across releases and machines (a directory name must
/// not change when walpipe is upgraded mid-recovery).
#[must_use]
pub fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// Creates `dir` with mode 0700 unless it exists (a concurrent creation is fine); either
/// way it must then be ours ([`check_ours`]).
pub fn create_private(dir: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => check_ours(dir),
        Err(e) => Err(WalError::io("cannot create the directory", dir, e)),
    }
}

/// A directory of ours: not a link, owned by us, writable. Another user's directory could
/// hold files planted under the names we use.
pub fn check_ours(dir: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(dir).context("cannot use the directory", dir)?;
    let ours = meta.is_dir() && meta.uid() == nix::unistd::geteuid().as_raw();
    let writable = nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok();
    if ours && writable {
        return Ok(());
    }
    Err(WalError::io(
        "cannot use the directory",
        dir,
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            "not a writable directory of ours (a link, another user's, or read-only)",
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a() {
        // Reference values of 32-bit FNV-1a.
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(b"foobar"), 0xbf9c_f968);
    }

    /// The same bucket through two endpoints, profiles or storage accounts is two
    /// archives: two keys. A local archive is named by its absolute path.
    #[test]
    fn every_setting_that_picks_the_store_names_the_archive() {
        let key = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            archive_key_with("s3://bucket/p", None, |name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
            .unwrap()
        };
        let keys = [
            key(&[]),
            key(&[("AWS_ENDPOINT_URL_S3", "http://a.example")]),
            key(&[("AWS_ENDPOINT_URL_S3", "http://b.example")]),
            key(&[("AWS_PROFILE", "a")]),
            key(&[("AWS_PROFILE", "b")]),
            key(&[("AZURE_STORAGE_ACCOUNT_NAME", "one")]),
            key(&[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "AccountName=two;AccountKey=k",
            )]),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(fnv1a(a.as_bytes()), fnv1a(b.as_bytes()), "{a:?} / {b:?}");
            }
        }
        let with_endpoint = archive_key_with("s3://bucket/p", Some("http://x"), |_| None).unwrap();
        assert_ne!(with_endpoint, keys[0]);
        let local = archive_key_with("wals", None, |_| None).unwrap();
        assert!(Path::new(&local).is_absolute(), "{local}");
    }

    #[test]
    fn private_dirs_are_ours_and_links_are_refused() {
        let base = tempfile::tempdir().unwrap();
        let dir = dir_for(base.path(), "walpipe", "pg", "s3://b/p").unwrap();
        assert_eq!(
            dir,
            dir_for(base.path(), "walpipe", "pg", "s3://b/p").unwrap()
        );
        assert_ne!(
            dir,
            dir_for(base.path(), "walpipe", "pg", "s3://b/q").unwrap()
        );
        let mode = fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let elsewhere = base.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let e = create_private(&link).unwrap_err();
        assert!(
            e.to_string().contains("not a writable directory of ours"),
            "{e}"
        );
    }
}
