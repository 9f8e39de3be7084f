//! `wal-scan file PATH...`: records for files named on the command line.
//!
//! PostgreSQL's archive_command hands over one segment (`%p`) at a time; this turns it into
//! the same record an incoming-queue scan would have produced, so the rest of the pipeline
//! does not care where a WAL came from.
//!
//! A named file is not a queue entry: whoever named it meant a WAL file, so anything else
//! is a failure, never Barman's `unknown` classification (which would let archive_command
//! report success with nothing stored). A missing file fails its record as `not_found`;
//! a file that is not WAL (a name that is not a WAL name, a directory, a FIFO, a symbolic
//! link) fails it as `unknown`, without `source`, so that no later stage moves or removes
//! it. The first failed file decides the exit status: 66 when missing, 65 when not WAL,
//! 74 when unreadable. PostgreSQL keeps the WAL and retries, and the one stderr line names
//! the file and the cause.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use wal_core::lookahead::{Ahead, FileIdentity, Marks};
use wal_core::names::{WalKind, classify};
use wal_core::record::RecordError;
use wal_core::{ErrorKind, WalError, WalRecord};

use crate::config::{LookAhead, ShapeCheck};
use crate::entry::{Entry, STAGE, Sniff, examine, not_found};
use crate::output::Records;

/// Writes one record per path, in the order given; returns the kind of the first failed
/// one, which chooses the exit status.
pub fn scan<W: Write>(
    paths: &[PathBuf],
    shape: ShapeCheck,
    out: &mut Records<W>,
) -> Result<Option<ErrorKind>, WalError> {
    let mut first_failure = None;
    for path in paths {
        let entry = named(path, shape);
        if let Entry::Failed(record) = &entry {
            first_failure = first_failure.or_else(|| record.error.as_ref().map(|error| error.kind));
        }
        out.emit(entry)?;
    }
    Ok(first_failure)
}

/// `--look-ahead`: after the named file `path` (a segment in pg_wal), up to
/// `ahead.count` segments after it that PostgreSQL has marked ready
/// (`archive_status/<name>.ready` beside it), in name order, those marked stored already
/// left out, each a record with `ahead` set. PostgreSQL's archiver takes ready files in
/// name order, so these are the ones its next calls will hand over. A ready file that is
/// not a WAL file we may read is left out, silently: its own call will say why. Without
/// an `archive_status` beside `path` (not a pg_wal), nothing is added.
pub fn look_ahead<W: Write>(
    path: &Path,
    ahead: &LookAhead,
    shape: ShapeCheck,
    out: &mut Records<W>,
) -> Result<(), WalError> {
    let Some(primary) = path.file_name().and_then(OsStr::to_str) else {
        return Ok(());
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Ok(status) = fs::read_dir(dir.join("archive_status")) else {
        return Ok(());
    };
    let marks = ahead.marks.clone().map(Marks::at);
    let mut ready: Vec<String> = status
        .filter_map(|entry| {
            let file = entry.ok()?.file_name().into_string().ok()?;
            let name = file.strip_suffix(".ready")?;
            (classify(name) == Some(WalKind::Segment) && name > primary).then(|| name.to_owned())
        })
        .filter(|name| !marks.as_ref().is_some_and(|marks| marks.has(name)))
        .collect();
    ready.sort_unstable();
    for name in ready.iter().take(ahead.count) {
        let path = dir.join(name);
        // Before anything reads it: a mark is written only if it is still this file once
        // stored.
        let Ok(Some(source)) = FileIdentity::of(&path) else {
            continue;
        };
        if let Entry::Wal(mut record) = named(&path, shape) {
            record.ahead = Some(Ahead {
                until: ahead.until,
                source,
            });
            out.emit(Entry::Wal(record))?;
        }
    }
    Ok(())
}

/// The entry for one named file: a WAL record, or a failed record saying why not.
fn named(path: &Path, shape: ShapeCheck) -> Entry {
    // `..` or `/` have no basename: never a WAL name.
    let name = path.file_name().unwrap_or(path.as_os_str());
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut record = not_found(&name.to_string_lossy(), path, e);
            keep_utf8_path(&mut record);
            return Entry::Failed(record);
        }
        Err(e) => return Entry::Failed(failed(name, path, &WalError::io("cannot stat", path, e))),
    };
    if path.to_str().is_none() {
        // A record carries its path as a JSON string: this one cannot be named in one.
        return Entry::Failed(not_wal(
            name,
            path,
            "the path is not UTF-8, and records carry paths as JSON strings",
        ));
    }
    let file_type = meta.file_type();
    if !file_type.is_file() {
        // A symbolic link too: PostgreSQL hands over regular files of pg_wal, and what a
        // link points at may change under us.
        let what = format!(
            "{}, not a WAL file",
            wal_core::durable::describe_type(file_type)
        );
        return Entry::Failed(not_wal(name, path, &what));
    }
    if name.to_str().and_then(classify).is_none() {
        return Entry::Failed(not_wal(name, path, "not a WAL file name"));
    }
    match examine(path, name, Sniff::Content, shape) {
        Entry::Vanished(cause) => Entry::Failed(not_found(&name.to_string_lossy(), path, cause)),
        // Replaced by something else since the look above.
        Entry::Unknown(record) => Entry::Failed(without_source(record)),
        entry => entry,
    }
}

/// Drops a `path` no JSON string can hold (it is in the message, shown lossily).
fn keep_utf8_path(record: &mut WalRecord) {
    if record.path.as_deref().is_some_and(|p| p.to_str().is_none()) {
        record.path = None;
    }
}

/// A failed record of kind `unknown` for a named file that is not WAL.
fn not_wal(name: &OsStr, path: &Path, why: &str) -> WalRecord {
    let mut record = WalRecord::new(name.to_string_lossy());
    record.path = path.to_str().map(PathBuf::from);
    record.error = Some(RecordError {
        stage: STAGE.to_string(),
        kind: ErrorKind::Unknown,
        message: format!("{}: {why}", path.display()),
    });
    record
}

/// A failed record for a named file that could not be looked at.
fn failed(name: &OsStr, path: &Path, err: &WalError) -> WalRecord {
    let mut record = WalRecord::new(name.to_string_lossy());
    record.path = path.to_str().map(PathBuf::from);
    record.error = Some(RecordError {
        stage: STAGE.to_string(),
        kind: err.kind(),
        message: err.to_string(),
    });
    record
}

/// `record` without `source`: a named file is nobody's queue entry to move.
fn without_source(mut record: WalRecord) -> WalRecord {
    record.source = None;
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(paths: &[PathBuf]) -> (Option<ErrorKind>, String) {
        let mut output = Vec::new();
        let mut out = Records::new(&mut output);
        let first = scan(paths, ShapeCheck::Off, &mut out).unwrap();
        out.finish().unwrap();
        (first, String::from_utf8(output).unwrap())
    }

    #[test]
    fn a_missing_file_fails_its_record() {
        let (first, text) = scanned(&[PathBuf::from("/nonexistent/000000010000000000000001")]);
        assert_eq!(first, Some(ErrorKind::NotFound));
        assert!(text.contains(r#""kind":"not_found""#), "{text}");
    }

    #[test]
    fn anything_but_a_regular_wal_file_fails_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("000000010000000000000001");
        fs::write(&wal, b"wal").unwrap();
        let named_badly = dir.path().join("RECOVERYHISTORY");
        fs::write(&named_badly, b"wal").unwrap();
        let sub = dir.path().join("000000010000000000000002");
        fs::create_dir(&sub).unwrap();
        let link = dir.path().join("000000010000000000000003");
        std::os::unix::fs::symlink(&wal, &link).unwrap();
        let fifo = dir.path().join("000000010000000000000004");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        for (path, why) in [
            (&named_badly, "not a WAL file name"),
            (&sub, "a directory, not a WAL file"),
            (&link, "a symbolic link, not a WAL file"),
            (&fifo, "a fifo, not a WAL file"),
        ] {
            let (first, text) = scanned(std::slice::from_ref(path));
            assert_eq!(first, Some(ErrorKind::Unknown), "{text}");
            let record: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
            assert_eq!(
                record["error"]["message"],
                format!("{}: {why}", path.display())
            );
            assert!(record.get("source").is_none(), "{record}");
        }
        let (first, text) = scanned(&[wal]);
        assert_eq!(first, None, "{text}");
    }
}
