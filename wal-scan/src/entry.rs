//! What one queue entry (or one file named on the command line) amounts to.
//!
//! The queue scans classify files as Barman's file archiver does (`is_any_xlog_file` and
//! `os.path.isfile`): a WAL name on a regular file is a record; anything else is an error
//! record of kind `unknown` that wal-store moves to errors/; an entry gone since the
//! listing is nobody's business. `wal-scan file` builds its records here too, after its
//! own stricter checks (a named file that is not WAL is a failure there). This module is
//! the one place that reads such a file, and it does so once, only for entries of the
//! batch.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use wal_core::compression::{Compression, MAGIC_MAX_LENGTH};
use wal_core::layout::mtime_seconds;
use wal_core::names::classify;
use wal_core::openpgp;
use wal_core::record::{Encryption, RecordError};
use wal_core::{ErrorKind, WalError, WalName, WalRecord, durable, shape};

use crate::config::ShapeCheck;

/// The stage name on records and stderr lines.
pub const STAGE: &str = "wal-scan";

/// Whether to read a file's first bytes to tell how it is compressed or encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// Read the first bytes: a client may have compressed the file (magic bytes) or
    /// encrypted it (an OpenPGP message) before dropping it.
    Content,
    /// Touch nothing but the inode (streamed files are never compressed: Barman 3.14.1).
    Nothing,
}

/// How a file's first bytes say it is stored: compressed (by magic bytes), encrypted (an
/// OpenPGP message: then its compression cannot be seen, as in Barman's `from_file`), or
/// neither.
pub fn identify_content(path: &Path) -> io::Result<(Option<Compression>, Option<Encryption>)> {
    let mut head = Vec::with_capacity(MAGIC_MAX_LENGTH.max(openpgp::HEAD_LENGTH));
    durable::open_regular(path)?
        .take(MAGIC_MAX_LENGTH.max(openpgp::HEAD_LENGTH) as u64)
        .read_to_end(&mut head)?;
    if openpgp::identify(&head).is_some() {
        return Ok((None, Some(Encryption::Gpg)));
    }
    Ok((Compression::identify(&head), None))
}

/// The verdict on one entry.
#[derive(Debug)]
pub enum Entry {
    /// A WAL file: a record with `name`, `kind`, `path`, `source`, `size`, `time`,
    /// `compression` and `encryption`.
    Wal(WalRecord),
    /// Not a WAL file: an error record of kind `unknown`. Classification, not failure.
    Unknown(WalRecord),
    /// Something went wrong looking at it: an error record this stage failed.
    Failed(WalRecord),
    /// Gone since the directory was listed (archived or moved by a concurrent run); the
    /// error says so, for callers to whom a missing file matters.
    Vanished(io::Error),
}

/// Looks at `path`, whose basename is `name`; with `shape` on, a plain WAL file must
/// have the shape of WAL for its name ([`wal_core::shape`]): else it fails its record as
/// `corrupt` and stays where it is. (Compressed or encrypted queue files are checked by
/// wal-store, which can see inside them.)
#[must_use]
pub fn examine(path: &Path, name: &OsStr, sniff: Sniff, shape: ShapeCheck) -> Entry {
    let Some(name) = name.to_str() else {
        // A record carries paths as JSON strings: this entry cannot be named in one, so
        // no later stage can move it. Fail loudly, every run, until a human moves it.
        let text = format!(
            "{}: file name is not UTF-8: move it out of the way by hand",
            path.display()
        );
        return Entry::Failed(error_record(
            &name.to_string_lossy(),
            None,
            ErrorKind::Unknown,
            text,
        ));
    };
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Entry::Vanished(e),
        Err(e) => return failed(name, path, &WalError::io("cannot stat", path, e)),
    };
    let Some(kind) = classify(name) else {
        return unknown(name, path, "not a WAL file");
    };
    // Only a regular file is WAL. A symbolic link is never followed (Barman's
    // `os.path.isfile` would): what it points at is not ours, may change or vanish, and
    // archiving the link itself would leave the archive pointing outside itself.
    if !meta.is_file() {
        let what = durable::describe_type(meta.file_type());
        return unknown(name, path, &format!("{what}, not a regular file"));
    }
    let (compression, encryption) = match sniff {
        Sniff::Nothing => (None, None),
        Sniff::Content => match identify_content(path) {
            Ok(content) => content,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Entry::Vanished(e),
            Err(e) => return failed(name, path, &WalError::io("cannot read", path, e)),
        },
    };
    if shape == ShapeCheck::On
        && compression.is_none()
        && encryption.is_none()
        && let Err(err) = check_shape(name, path, meta.len())
    {
        return match err.kind() {
            ErrorKind::NotFound => Entry::Vanished(io::Error::from(io::ErrorKind::NotFound)),
            _ => failed(name, path, &err),
        };
    }
    let mut record = WalRecord::new(name);
    record.kind = Some(kind);
    record.path = Some(path.to_path_buf());
    record.source = Some(path.to_path_buf());
    record.size = meta.len();
    record.time = mtime_seconds(&meta);
    record.compression = compression;
    record.encryption = encryption;
    Entry::Wal(record)
}

/// The shape check of a plain file of `size` bytes.
fn check_shape(name: &str, path: &Path, size: u64) -> Result<(), WalError> {
    let wal = WalName::parse_file_name(name)?;
    let file = durable::open_wal(path)?;
    let head = shape::read_head(&wal, file).map_err(|e| WalError::io("cannot read", path, e))?;
    shape::check(&wal, &head, size)
        .map(|_| ())
        .map_err(|why| WalError::Corrupt {
            path: path.to_path_buf(),
            message: why.to_string(),
        })
}

/// The record for a file that `wal-scan file` was asked about and that does not exist.
#[must_use]
pub fn not_found(name: &str, path: &Path, cause: io::Error) -> WalRecord {
    let err = WalError::io("cannot open", path, cause);
    let mut record = error_record(name, None, err.kind(), err.to_string());
    // `path` says what was asked for; no `source`: there is nothing to remove or move.
    record.path = Some(path.to_path_buf());
    record
}

fn unknown(name: &str, path: &Path, reason: &str) -> Entry {
    let message = format!("{}: {reason}", path.display());
    Entry::Unknown(error_record(name, Some(path), ErrorKind::Unknown, message))
}

fn failed(name: &str, path: &Path, err: &WalError) -> Entry {
    Entry::Failed(error_record(name, Some(path), err.kind(), err.to_string()))
}

/// An error record; `path` and `source` point at the entry so wal-store can move it.
fn error_record(name: &str, path: Option<&Path>, kind: ErrorKind, message: String) -> WalRecord {
    let mut record = WalRecord::new(name);
    record.path = path.map(Path::to_path_buf);
    record.source = path.map(Path::to_path_buf);
    record.error = Some(RecordError {
        stage: STAGE.to_string(),
        kind,
        message,
    });
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use ShapeCheck::{Off, On};

    fn look(path: &Path, sniff: Sniff, shape: ShapeCheck) -> Entry {
        examine(path, path.file_name().unwrap(), sniff, shape)
    }

    /// A 1 MiB segment of `000000010000000000000001` as PostgreSQL 15 opens it.
    fn segment() -> Vec<u8> {
        let mut bytes = vec![0u8; 1 << 20];
        bytes[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        bytes[2..4].copy_from_slice(&2u16.to_le_bytes());
        bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
        bytes[8..16].copy_from_slice(&(1u64 << 20).to_le_bytes());
        bytes[24..32].copy_from_slice(&42u64.to_le_bytes());
        bytes[32..36].copy_from_slice(&(1u32 << 20).to_le_bytes());
        bytes[36..40].copy_from_slice(&8192u32.to_le_bytes());
        bytes
    }

    #[test]
    fn examines_wal_files_and_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("000000010000000000000001");
        fs::write(&wal, [0x28, 0xb5, 0x2f, 0xfd, 0]).unwrap();
        let Entry::Wal(record) = look(&wal, Sniff::Content, On) else {
            panic!("not a WAL");
        };
        assert_eq!(
            record.compression,
            Some(Compression::Zstd),
            "left to wal-store"
        );
        assert_eq!(record.size, 5);
        let Entry::Wal(record) = look(&wal, Sniff::Nothing, Off) else {
            panic!("not a WAL");
        };
        assert_eq!(record.compression, None);

        // A client's `gpg --encrypt` output (an old-format PKESK packet first).
        fs::write(&wal, [0x85, 0x01, 0x8c, 0x03, 0x06, 0x15, 0x11]).unwrap();
        let Entry::Wal(record) = look(&wal, Sniff::Content, On) else {
            panic!("not a WAL");
        };
        assert_eq!(
            (record.compression, record.encryption),
            (None, Some(Encryption::Gpg))
        );

        let sub = dir.path().join("000000010000000000000002");
        fs::create_dir(&sub).unwrap();
        assert!(matches!(look(&sub, Sniff::Nothing, On), Entry::Unknown(_)));
        let gone = dir.path().join("000000010000000000000003");
        assert!(matches!(
            look(&gone, Sniff::Nothing, On),
            Entry::Vanished(_)
        ));
        let link = dir.path().join("000000010000000000000004");
        std::os::unix::fs::symlink(&gone, &link).unwrap();
        let Entry::Unknown(record) = look(&link, Sniff::Nothing, On) else {
            panic!("a dangling link is not a WAL file");
        };
        assert!(
            record
                .error
                .unwrap()
                .message
                .ends_with("a symbolic link, not a regular file")
        );
    }

    #[test]
    fn a_link_to_a_wal_is_never_followed_and_plain_files_must_be_wal() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, segment()).unwrap();
        let link = dir.path().join("000000010000000000000001");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        assert!(matches!(look(&link, Sniff::Content, On), Entry::Unknown(_)));
        fs::remove_file(&link).unwrap();

        let wal = dir.path().join("000000010000000000000001");
        fs::write(&wal, segment()).unwrap();
        assert!(matches!(look(&wal, Sniff::Nothing, On), Entry::Wal(_)));
        // Truncated, renamed, empty: each fails its record, the file stays (a source).
        for (name, bytes) in [
            ("000000010000000000000001", segment()[..4096].to_vec()),
            ("000000010000000000000002", segment()),
            ("000000010000000000000003", Vec::new()),
        ] {
            let path = dir.path().join(name);
            fs::write(&path, bytes).unwrap();
            let Entry::Failed(record) = look(&path, Sniff::Content, On) else {
                panic!("{name} passed");
            };
            let error = record.error.unwrap();
            assert_eq!(error.kind, ErrorKind::Corrupt, "{}", error.message);
            assert_eq!(record.source.as_deref(), Some(path.as_path()));
            assert!(matches!(look(&path, Sniff::Content, Off), Entry::Wal(_)));
        }
    }
}
