//! `wal-scan archive DIR`: what a local archive holds, as records.
//!
//! Retention, verification and restore all start from "which WAL files are stored, and how
//! is each stored". Locally a file's name never says how it is compressed or encrypted
//! (Barman stores every file under its plain name): xlog.db does, and a file's first bytes tell its compression (or that it
//! is an encrypted OpenPGP message) when xlog.db does not list it (a crash between store
//! and catalogue, or a hand-copied file). The
//! listing is wal-core's `list_archive`, the walk Barman's rebuild-xlogdb does.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use wal_core::compression::Compression;
use wal_core::error::IoContext;
use wal_core::layout::{ArchivedFile, list_archive};
use wal_core::record::Encryption;
use wal_core::xlogdb::XlogLine;
use wal_core::{WalError, WalRecord};

use crate::config::{ArchiveConfig, Catalogue};
use crate::entry::{Entry, STAGE, identify_content};
use crate::output::Records;

/// Writes one record per archived file, in name order; warns about entries that do not
/// belong in an archive.
pub fn scan<W: Write>(config: &ArchiveConfig, out: &mut Records<W>) -> Result<(), WalError> {
    // `list_archive` reads a missing directory as an empty archive; a mistyped path given
    // to delete or verify must not look like one.
    let meta = fs::metadata(&config.dir).context("cannot list", &config.dir)?;
    if !meta.is_dir() {
        let not_dir = io::Error::from(io::ErrorKind::NotADirectory);
        return Err(WalError::io("cannot list", &config.dir, not_dir));
    }
    let catalogue = read_catalogue(config)?;
    let listing = list_archive(&config.dir)?;
    for path in &listing.unexpected {
        if let Some(record) = unrestorable(path) {
            out.emit(Entry::Failed(record))?;
        } else {
            wal_core::log::warn!(
                "{STAGE}: warning: {}: not an archived WAL file, ignored",
                wal_core::log::one_line(&path.to_string_lossy())
            );
        }
    }
    for file in listing.files {
        out.emit(describe(file, &catalogue))?;
    }
    Ok(())
}

/// An entry under a WAL file's name that is not a regular file (a fifo, a directory, a
/// link): restore-wal refuses it, so it is no WAL the archive holds, and it must not pass
/// as a mere stray file either (the verify of an archive whose last segment is a fifo
/// would hold): a record failed as `corrupt`, naming what it is.
fn unrestorable(path: &Path) -> Option<WalRecord> {
    let file_name = path.file_name()?.to_str()?;
    let name = wal_core::WalName::parse(file_name).ok()?;
    let file_type = fs::symlink_metadata(path).ok()?.file_type();
    if file_type.is_file() {
        return None;
    }
    let mut record = WalRecord::new(name.to_string());
    record.path = Some(path.to_path_buf());
    record.error = Some(wal_core::RecordError {
        stage: STAGE.to_string(),
        kind: wal_core::ErrorKind::Corrupt,
        message: format!(
            "{}: {}, not a regular file: no WAL can be restored from it",
            path.display(),
            wal_core::durable::describe_type(file_type)
        ),
    });
    Some(record)
}

/// The catalogue by name; a later line for the same name wins (a WAL archived again).
fn read_catalogue(config: &ArchiveConfig) -> Result<HashMap<String, XlogLine>, WalError> {
    let path = match &config.catalogue {
        Catalogue::Locked(db) => db.path(),
        Catalogue::Unlocked(path) => path.as_path(),
    };
    if config.xlogdb_required {
        // Asked for by name: a missing file is a mistake, not an empty catalogue.
        fs::metadata(path).context("cannot open", path)?;
    }
    let lines = match &config.catalogue {
        // Under Barman's lock: Barman rewrites xlog.db in place (truncate, write) when it
        // removes WALs, so an unlocked read could see a truncated catalogue.
        Catalogue::Locked(db) => db.read()?,
        Catalogue::Unlocked(path) => read_unlocked(path)?,
    };
    Ok(lines
        .into_iter()
        .map(|line| (line.name.clone(), line))
        .collect())
}

/// Reads an xlog.db nobody can be locking (see [`Catalogue::Unlocked`]).
fn read_unlocked(path: &Path) -> Result<Vec<XlogLine>, WalError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(WalError::io("cannot read", path, e)),
    };
    let mut lines = Vec::new();
    for (index, text) in text.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        lines.push(XlogLine::parse(text).ok_or_else(|| WalError::BadXlogLine {
            path: path.to_path_buf(),
            line: index as u64 + 1,
            text: text.to_string(),
        })?);
    }
    Ok(lines)
}

/// The record for one archived file: compression and encryption from xlog.db when it
/// lists the file, else from its first bytes (magic bytes, or an OpenPGP message: then
/// encrypted, compression unknown).
fn describe(file: ArchivedFile, catalogue: &HashMap<String, XlogLine>) -> Entry {
    let mut record = WalRecord::new(file.name.as_str());
    record.kind = Some(file.name.kind());
    record.size = file.size;
    record.time = file.time;
    let line = catalogue.get(file.name.as_str());
    let catalogued = line.and_then(|line| catalogued_encryption(line, &file.path));
    (record.compression, record.encryption) = match compression_source(line, &file.path) {
        CompressionSource::Catalogue(compression) => (compression, catalogued),
        CompressionSource::Magic => match identify_content(&file.path) {
            Ok((compression, sniffed)) => (
                compression,
                if line.is_some() { catalogued } else { sniffed },
            ),
            // Removed since the listing (retention running): no longer in the archive.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Entry::Vanished(e),
            Err(e) => {
                record.path = Some(file.path.clone());
                record.fail(STAGE, &WalError::io("cannot read", &file.path, e));
                return Entry::Failed(record);
            }
        },
    };
    // Where it is stored, apart from `path` (which later stages point at their copies).
    record.stored_at = Some(file.path.clone());
    record.path = Some(file.path);
    Entry::Wal(record)
}

/// Where a file's compression is known from.
enum CompressionSource {
    /// xlog.db lists the file, with this compression.
    Catalogue(Option<Compression>),
    /// Its first bytes: xlog.db does not list it, or names a compression walpipe does not
    /// know (Barman's `custom`), which is said on stderr.
    Magic,
}

fn compression_source(line: Option<&XlogLine>, path: &Path) -> CompressionSource {
    let Some(line) = line else {
        return CompressionSource::Magic;
    };
    let Some(name) = line.compression.as_deref() else {
        return CompressionSource::Catalogue(None);
    };
    if let Ok(compression) = name.parse() {
        CompressionSource::Catalogue(Some(compression))
    } else {
        wal_core::log::warn!(
            "{STAGE}: warning: {}: xlog.db says compression {name:?}, which walpipe does not \
             know; going by its magic bytes",
            path.display()
        );
        CompressionSource::Magic
    }
}

fn catalogued_encryption(line: &XlogLine, path: &Path) -> Option<Encryption> {
    match line.encryption.as_deref() {
        None => None,
        Some("gpg") => Some(Encryption::Gpg),
        Some(other) => {
            wal_core::log::warn!(
                "{STAGE}: warning: {}: xlog.db says encryption {other:?}, which walpipe does \
                 not know; recorded as none",
                path.display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wal_core::WalName;

    fn archived(dir: &Path, name: &str, bytes: &[u8]) -> ArchivedFile {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        ArchivedFile {
            name: WalName::parse(name).unwrap(),
            path,
            size: bytes.len() as u64,
            time: 1.5,
        }
    }

    fn described(file: ArchivedFile, catalogue: &HashMap<String, XlogLine>) -> WalRecord {
        match describe(file, catalogue) {
            Entry::Wal(record) => record,
            other => panic!("not a WAL record: {other:?}"),
        }
    }

    #[test]
    fn uncatalogued_encrypted_files_are_recognised_by_their_first_packet() {
        let dir = tempfile::tempdir().unwrap();
        // `gpg --encrypt` output starts with an old-format PKESK packet.
        let pkesk = [0x85, 0x01, 0x8c, 0x03, 0x06, 0x15, 0x11, 0x79];
        let record = described(
            archived(dir.path(), "000000010000000000000001", &pkesk),
            &HashMap::new(),
        );
        assert_eq!(
            (record.compression, record.encryption),
            (None, Some(Encryption::Gpg))
        );
        let record = described(
            archived(
                dir.path(),
                "000000010000000000000002",
                &[0x28, 0xb5, 0x2f, 0xfd, 0],
            ),
            &HashMap::new(),
        );
        assert_eq!(
            (record.compression, record.encryption),
            (Some(Compression::Zstd), None)
        );
        // The catalogue still wins when it lists the file.
        let line = XlogLine::parse("000000010000000000000003\t8\t1.5\tNone\tNone").unwrap();
        let catalogue = HashMap::from([(line.name.clone(), line)]);
        let record = described(
            archived(dir.path(), "000000010000000000000003", &pkesk),
            &catalogue,
        );
        assert_eq!((record.compression, record.encryption), (None, None));
    }
}
