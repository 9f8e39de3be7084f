//! What one queue entry (or one file named on the command line) amounts to.
//!
//! The queue scans and `wal-scan file` classify files the same way (Barman's
//! `is_any_xlog_file` and `os.path.isfile`, spec §4.1-4.2): a WAL name on a regular file is
//! a record; anything else is an error record of kind `unknown` that wal-store moves to
//! errors/; an entry gone since the listing is nobody's business. This module is the one
//! place that looks at such a file, and it does so once, only for entries of the batch.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use wal_core::compression::{Compression, MAGIC_MAX_LENGTH};
use wal_core::layout::mtime_seconds;
use wal_core::names::classify;
use wal_core::openpgp;
use wal_core::record::{Encryption, RecordError};
use wal_core::{ErrorKind, WalError, WalRecord};

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
    File::open(path)?
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

/// Looks at `path`, whose basename is `name`.
#[must_use]
pub fn examine(path: &Path, name: &OsStr, sniff: Sniff) -> Entry {
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
    let Some(kind) = classify(name) else {
        return match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Entry::Vanished(e),
            _ => unknown(name, path, "not a WAL file"),
        };
    };
    // `metadata` follows symlinks, as Barman's `os.path.isfile` does: a link to a WAL
    // file is archived, a link to a directory is not.
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return match fs::symlink_metadata(path) {
                Ok(_) => unknown(name, path, "not a regular file"), // a dangling symlink
                Err(_) => Entry::Vanished(e),
            };
        }
        Err(e) => return failed(name, path, &WalError::io("cannot stat", path, e)),
    };
    if !meta.is_file() {
        return unknown(name, path, "not a regular file");
    }
    let (compression, encryption) = match sniff {
        Sniff::Nothing => (None, None),
        Sniff::Content => match identify_content(path) {
            Ok(content) => content,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Entry::Vanished(e),
            Err(e) => return failed(name, path, &WalError::io("cannot read", path, e)),
        },
    };
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

    #[test]
    fn examines_wal_files_and_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("000000010000000000000001");
        fs::write(&wal, [0x28, 0xb5, 0x2f, 0xfd, 0]).unwrap();
        let Entry::Wal(record) = examine(&wal, wal.file_name().unwrap(), Sniff::Content) else {
            panic!("not a WAL");
        };
        assert_eq!(record.compression, Some(Compression::Zstd));
        assert_eq!(record.size, 5);
        let Entry::Wal(record) = examine(&wal, wal.file_name().unwrap(), Sniff::Nothing) else {
            panic!("not a WAL");
        };
        assert_eq!(record.compression, None);

        // A client's `gpg --encrypt` output (an old-format PKESK packet first).
        fs::write(&wal, [0x85, 0x01, 0x8c, 0x03, 0x06, 0x15, 0x11]).unwrap();
        let Entry::Wal(record) = examine(&wal, wal.file_name().unwrap(), Sniff::Content) else {
            panic!("not a WAL");
        };
        assert_eq!(
            (record.compression, record.encryption),
            (None, Some(Encryption::Gpg))
        );

        let sub = dir.path().join("000000010000000000000002");
        fs::create_dir(&sub).unwrap();
        assert!(matches!(
            examine(&sub, sub.file_name().unwrap(), Sniff::Nothing),
            Entry::Unknown(_)
        ));
        let gone = dir.path().join("000000010000000000000003");
        assert!(matches!(
            examine(&gone, gone.file_name().unwrap(), Sniff::Nothing),
            Entry::Vanished(_)
        ));
        let link = dir.path().join("000000010000000000000004");
        std::os::unix::fs::symlink(&gone, &link).unwrap();
        let Entry::Unknown(record) = examine(&link, link.file_name().unwrap(), Sniff::Nothing)
        else {
            panic!("a dangling link is not a WAL file");
        };
        assert!(
            record
                .error
                .unwrap()
                .message
                .ends_with("not a regular file")
        );
    }
}
