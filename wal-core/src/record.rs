//! The WAL record: one JSON object per line, the only thing walpipe's stages say on stdout.
//!
//! It is Barman's `WalFileInfo` (name, size, time, compression, encryption) plus what a
//! pipeline of separate processes needs: where the bytes are now, which queue file they
//! came from, which temporary files to clean up, what happened to the record, and why it
//! failed. This rustdoc is the wire specification.
//!
//! # Wire format
//!
//! UTF-8 JSON, one object per line, `\n`-terminated. Fields, in the order they are written:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `name` | string | WAL file name: `000000010000000A00000042`, `00000002.history`, `<seg>.<offset>.backup`, `<seg>.partial` |
//! | `kind` | string, optional | `segment`, `history`, `backup` or `partial` (absent when the name is not a WAL name) |
//! | `path` | string, optional | where the bytes this record describes are now: the source, or a stage's temp file |
//! | `source` | string, optional | the original queue file; removed only by `wal-store`, only after the stored copy is durable |
//! | `size` | integer | bytes at `path` (after compression/encryption: what gets stored) |
//! | `time` | number | mtime of the source, seconds since the epoch (Barman's `time`) |
//! | `compression` | string or null | `gzip`, `bzip2`, `xz`, `zstd`, `lz4`, `snappy` (Barman's names) |
//! | `encryption` | string or null | `gpg` |
//! | `temps` | array of strings, optional | files stages created, removed by `wal-store` once the record is stored |
//! | `outcome` | string, optional | set by `wal-store`: see [`Outcome`] |
//! | `stored_at` | string, optional | where `wal-store` put the file (the archive copy, or the `errors/` file) |
//! | `etag` | string, optional | a cloud object's entity tag, from its listing |
//! | `ahead` | object, optional | archived ahead of PostgreSQL's call for it (`wal-scan file --look-ahead`): `until` (seconds since the epoch) the stages work on it, `source` its pg_wal file as scanned; its failure fails no call ([`crate::lookahead::Ahead`]) |
//! | `error` | object, optional | `{stage, kind, message}` when a stage failed the record ([`RecordError`]) |
//!
//! Any other field is kept and forwarded untouched by every stage, after the known ones, so
//! a newer stage can add fields without breaking an older one. Records with `error` set
//! pass through later stages untouched (except where a stage's job is to act on them, as
//! `wal-store` moving unknown queue entries to `errors/`).

use std::io::{self, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::compression::Compression;
use crate::error::{ErrorKind, WalError};
use crate::names::WalKind;

/// Encryption of a stored file (Barman knows only `gpg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// An OpenPGP message, as `gpg --encrypt` writes it.
    Gpg,
}

impl Encryption {
    /// Barman's name, as written in xlog.db.
    #[must_use]
    pub fn name(self) -> &'static str {
        "gpg"
    }
}

/// What `wal-store` did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Stored durably and catalogued; the source was removed (unless kept).
    Stored,
    /// An identical copy was already stored; the source was dropped.
    Duplicate,
    /// A different file was already stored under this name; the source was moved to
    /// `errors/<name>.<stamp>.duplicate` (Barman's `DuplicateWalFile`).
    Conflict,
    /// The queue entry is not a WAL file; it was moved to `errors/<name>.<stamp>.unknown`.
    Unknown,
    /// Deleted from the archive (or already gone).
    Deleted,
    /// Copied out of the archive.
    Fetched,
    /// Opened whole and found to be the WAL its name promises (wal-verify).
    Verified,
}

impl Outcome {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Stored => "stored",
            Outcome::Duplicate => "duplicate",
            Outcome::Conflict => "conflict",
            Outcome::Unknown => "unknown",
            Outcome::Deleted => "deleted",
            Outcome::Fetched => "fetched",
            Outcome::Verified => "verified",
        }
    }
}

/// Why a stage failed a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordError {
    /// The binary that failed it (`wal-compress`).
    pub stage: String,
    /// The class of failure.
    pub kind: ErrorKind,
    /// One line for a human, naming the file and the cause.
    pub message: String,
}

/// One WAL file travelling through the pipeline. See the module docs for the wire format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalRecord {
    /// WAL file name (basename).
    #[serde(default)]
    pub name: String,
    /// What the name denotes; absent for names that are not WAL names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<WalKind>,
    /// Where the bytes are now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The original queue file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// Bytes at `path`.
    #[serde(default)]
    pub size: u64,
    /// Source mtime, seconds since the epoch.
    #[serde(default)]
    pub time: f64,
    /// Compression of the bytes at `path`.
    #[serde(default)]
    pub compression: Option<Compression>,
    /// Encryption of the bytes at `path`.
    #[serde(default)]
    pub encryption: Option<Encryption>,
    /// Temporary files to remove once stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub temps: Vec<PathBuf>,
    /// What `wal-store` did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Where `wal-store` put the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at: Option<PathBuf>,
    /// A cloud object's entity tag, as its listing gave it: it changes whenever the
    /// object's bytes do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Archived ahead of PostgreSQL's call for it (`archive-command --look-ahead`): the
    /// stages work on it only until this time, seconds since the epoch; after it, it
    /// fails `temporary` untouched (PostgreSQL's own call will archive it). Its failure
    /// fails no call: stages neither count nor report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ahead: Option<crate::lookahead::Ahead>,
    /// Why a stage failed this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordError>,
    /// Fields this version does not know, forwarded untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Whether `name` is a plain file name: not empty, not `.` or `..`, no `/` or NUL. A
/// record's name is joined to directories, so it must never reach outside them.
#[must_use]
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

impl WalRecord {
    /// A record for `name` with nothing else known yet.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        WalRecord {
            name: name.into(),
            kind: None,
            path: None,
            source: None,
            size: 0,
            time: 0.0,
            compression: None,
            encryption: None,
            temps: Vec::new(),
            outcome: None,
            stored_at: None,
            etag: None,
            ahead: None,
            error: None,
            extra: Map::new(),
        }
    }

    /// Parses one line of the stream (without its `\n`).
    pub fn from_line(line: &str, line_number: u64) -> Result<Self, WalError> {
        serde_json::from_str(line).map_err(|e| WalError::BadRecord {
            line: line_number,
            reason: e.to_string(),
        })
    }

    /// Refuses a name that is not a plain file name (`a/b`, `..`, a NUL): stages join
    /// names to directories, so a name must never reach outside them. An empty name is
    /// only for records that already failed (a malformed line passed on).
    pub fn check_name(&self, line_number: u64) -> Result<(), WalError> {
        if is_plain_name(&self.name) || (self.name.is_empty() && self.failed()) {
            return Ok(());
        }
        Err(WalError::BadRecord {
            line: line_number,
            reason: format!("name {:?} is not a plain file name", self.name),
        })
    }

    /// Writes the record as one line, `\n` included.
    pub fn write_line(&self, out: &mut impl Write) -> io::Result<()> {
        // Whole or nothing: a record that cannot be serialised must not leave half a
        // line for the next stage to read.
        let mut line = serde_json::to_vec(self).map_err(io::Error::from)?;
        line.push(b'\n');
        out.write_all(&line)
    }

    /// True when an earlier stage failed this record.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// Marks the record failed by `stage` with `err`.
    pub fn fail(&mut self, stage: &str, err: &WalError) {
        self.error = Some(RecordError {
            stage: stage.to_string(),
            kind: err.kind(),
            message: err.to_string(),
        });
    }

    /// Whether this is a look-ahead record whose time is up (`now`: seconds since the
    /// epoch).
    #[must_use]
    pub fn ahead_expired(&self, now: f64) -> bool {
        self.ahead.is_some_and(|ahead| now >= ahead.until)
    }

    /// `path`, or a [`WalError::MissingField`] naming the record.
    pub fn require_path(&self) -> Result<&PathBuf, WalError> {
        self.path.as_ref().ok_or_else(|| WalError::MissingField {
            name: self.name.clone(),
            field: "path",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_record_round_trips() {
        let line = r#"{"name":"000000010000000A00000042","kind":"segment","path":"/q/.000000010000000A00000042.compressed","source":"/q/000000010000000A00000042","size":1479083,"time":1795313864.6726859,"compression":"zstd","encryption":null,"temps":["/q/.000000010000000A00000042.compressed"]}"#;
        let rec = WalRecord::from_line(line, 1).unwrap();
        assert_eq!(rec.kind, Some(WalKind::Segment));
        assert_eq!(rec.compression, Some(Compression::Zstd));
        assert!((rec.time - 1_795_313_864.672_685_9).abs() < 1e-6);
        let mut out = Vec::new();
        rec.write_line(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!("{line}\n"));
    }

    #[test]
    fn unknown_fields_are_forwarded_after_known_ones() {
        let rec = WalRecord::from_line(
            r#"{"ticket":42,"name":"00000002.history","size":41,"time":1.5,"note":{"a":[1,2]}}"#,
            7,
        )
        .unwrap();
        assert_eq!(rec.extra.len(), 2);
        let mut out = Vec::new();
        rec.write_line(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(r#"{"name":"00000002.history","size":41,"time":1.5,"compression":null,"encryption":null,"#), "{text}");
        assert!(
            text.contains(r#""ticket":42"#) && text.contains(r#""note":{"a":[1,2]}"#),
            "{text}"
        );
    }

    #[test]
    fn malformed_lines_say_where() {
        let err = WalRecord::from_line("{not json", 3).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadRecord);
        assert!(
            err.to_string().starts_with("line 3: not a record:"),
            "{err}"
        );
        assert!(WalRecord::from_line(r#"{"name":5}"#, 4).is_err());
    }

    #[test]
    fn names_must_be_plain_file_names() {
        for bad in ["../00000002.history", "a/b", ".", "..", "", "x\0y", "/"] {
            let rec = WalRecord::new(bad);
            assert_eq!(
                rec.check_name(9).unwrap_err().kind(),
                ErrorKind::BadRecord,
                "{bad:?}"
            );
        }
        assert!(
            WalRecord::new("000000010000000000000001")
                .check_name(1)
                .is_ok()
        );
        assert!(WalRecord::new("junk").check_name(1).is_ok());
        let mut failed = WalRecord::new("");
        failed.fail("wal-scan", &WalError::Usage("x".into()));
        assert!(failed.check_name(1).is_ok());
    }

    #[test]
    fn failing_a_record_keeps_the_cause() {
        let mut rec = WalRecord::new("000000010000000000000001");
        rec.fail("wal-compress", &WalError::Temporary("store busy".into()));
        let err = rec.error.as_ref().unwrap();
        assert_eq!(
            (err.stage.as_str(), err.kind),
            ("wal-compress", ErrorKind::Temporary)
        );
        assert!(rec.failed());
    }
}
