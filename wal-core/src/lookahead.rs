//! Look-ahead marks: which WAL files `archive-command --direct --look-ahead` stored
//! before PostgreSQL called for them, so that the call, when it comes, returns at once.
//!
//! A mark is written by `wal-store put --marks DIR` for a look-ahead record only once its
//! stored copy, its directory and its catalogue line are durable: `DIR/<name>`, a small
//! JSON object, replaced whole (temp file and rename: a killed write leaves a hidden
//! temp, never half a mark). It says what was stored: the pg_wal file's identity (size,
//! modification and change times to the nanosecond, device and inode, taken by the scan
//! before anything read the file, and found unchanged after it was stored) and where the
//! copy went. A mark never vouches on
//! its own: `wal-store settled` takes the call as done only when the file PostgreSQL
//! hands over is still that file and the stored copy and its catalogue line are there.
//! Losing a mark costs only the work it saved (the call archives again and finds a
//! duplicate); marks live outside pg_wal, in a private directory of the archive's.
//! PostgreSQL archives in name order, so a call for a WAL file means the ones before it
//! are done: their marks go.

use std::fs;
use std::io::{Read, Write as _};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::{IoContext, Result, WalError};
use crate::names::{WalKind, WalName};

/// The largest mark read (one is about 300 bytes).
const MARK_MAX: u64 = 64 << 10;

/// The most segments one call may look ahead.
pub const MAX_COUNT: usize = 64;

/// The longest `--look-ahead-time`, seconds.
pub const MAX_TIME: f64 = 3600.0;

/// `--look-ahead N|auto`: `auto` is twice the cores less one (the called segment and
/// those ahead make two rounds of work for every core: a call takes about twice as long
/// as a plain one, and the calls it saves return at once).
///
/// # Errors
/// Not 1 to [`MAX_COUNT`], nor `auto`: usage.
pub fn parse_count(text: &str) -> Result<usize> {
    match text {
        "auto" => Ok(std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .saturating_mul(2)
            .saturating_sub(1)
            .clamp(1, MAX_COUNT)),
        n => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_COUNT).contains(n))
            .ok_or_else(|| {
                let shown: String = n.chars().take(20).collect();
                WalError::Usage(format!(
                    "--look-ahead {shown:?}: give 1 to {MAX_COUNT}, or auto"
                ))
            }),
    }
}

/// `--look-ahead-time SECS`, checked.
///
/// # Errors
/// Not above 0 and at most [`MAX_TIME`]: usage.
pub fn check_time(seconds: f64) -> Result<f64> {
    if seconds > 0.0 && seconds <= MAX_TIME {
        Ok(seconds)
    } else {
        Err(WalError::Usage(format!(
            "--look-ahead-time: give more than 0 and at most {MAX_TIME} seconds"
        )))
    }
}

/// What identifies a file PostgreSQL hands over: a file rewritten in place changes its
/// change time (which no one can set back), one replaced has another inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
    /// Device.
    pub dev: u64,
    /// Inode.
    pub inode: u64,
}

/// A look-ahead record's terms (`WalRecord::ahead`): until when the stages may work on
/// it, and its pg_wal file as it was when scanned, before anything read it (a mark is
/// written only if the file is still that one once stored).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ahead {
    /// Seconds since the epoch.
    pub until: f64,
    /// The file scanned.
    pub source: FileIdentity,
}

impl FileIdentity {
    /// The identity of the regular file at `path` (a link is not followed: none).
    ///
    /// # Errors
    /// The file cannot be looked at.
    pub fn of(path: &Path) -> Result<Option<FileIdentity>> {
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(WalError::io("cannot stat", path, e)),
        };
        Ok(meta.file_type().is_file().then(|| FileIdentity {
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            dev: meta.dev(),
            inode: meta.ino(),
        }))
    }
}

/// One look-ahead mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The WAL file's name.
    pub name: String,
    /// The pg_wal file that was stored.
    pub source: FileIdentity,
    /// Where the stored copy is (a path, or an object's URL).
    pub stored_at: PathBuf,
}

/// The marks directory of one archive.
#[derive(Debug, Clone)]
pub struct Marks {
    dir: PathBuf,
}

impl Marks {
    /// The marks in `dir` (made by the caller: a private directory).
    #[must_use]
    pub fn at(dir: PathBuf) -> Marks {
        Marks { dir }
    }

    /// Where `name`'s mark is, if `name` is a segment's (nothing else is ever marked).
    fn path_of(&self, name: &str) -> Option<PathBuf> {
        WalName::parse_file_name(name)
            .ok()
            .filter(|wal| wal.kind() == WalKind::Segment)
            .map(|_| self.dir.join(name))
    }

    /// Whether `name` has a mark (unchecked: to skip it when looking ahead).
    #[must_use]
    pub fn has(&self, name: &str) -> bool {
        self.path_of(name).is_some_and(|path| path.is_file())
    }

    /// Writes `mark`, replacing any earlier one, durably (written beside, fsynced,
    /// renamed: a killed write leaves a hidden temp, never half a mark).
    ///
    /// # Errors
    /// The mark cannot be written.
    pub fn write(&self, mark: &Mark) -> Result<()> {
        let path = self
            .path_of(&mark.name)
            .ok_or_else(|| WalError::Usage(format!("{}: not a WAL name", mark.name)))?;
        let text = serde_json::to_vec(mark).map_err(|e| WalError::Internal(e.to_string()))?;
        durable::replace_durably(&path, |file| file.write_all(&text))
    }

    /// `name`'s mark, if there is a readable one (anything else there is no mark).
    #[must_use]
    pub fn read(&self, name: &str) -> Option<Mark> {
        let path = self.path_of(name)?;
        let mut text = Vec::new();
        durable::open_regular(&path)
            .ok()?
            .take(MARK_MAX)
            .read_to_end(&mut text)
            .ok()?;
        serde_json::from_slice::<Mark>(&text)
            .ok()
            .filter(|mark| mark.name == name)
    }

    /// Removes `name`'s mark and those of the WAL files before it, with any temp a
    /// killed write left: PostgreSQL has moved past them.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn forget_up_to(&self, name: &str) -> Result<()> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(WalError::io("cannot read", &self.dir, e)),
        };
        for entry in entries {
            let entry = entry.context("cannot read", &self.dir)?;
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            let marked = file
                .strip_prefix('.')
                .and_then(|rest| rest.split('.').next())
                .unwrap_or(file);
            // The mark itself, or a temp a killed write left (`.<name>.<pid>.<n>.tmp`).
            let temp = Path::new(file).extension().is_some_and(|e| e == "tmp");
            let ours = self.path_of(marked).is_some() && (file == marked || temp);
            if ours && marked <= name {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(name: &str) -> Mark {
        Mark {
            name: name.into(),
            source: FileIdentity {
                size: 16 << 20,
                mtime_ns: 1,
                ctime_ns: 1,
                dev: 2,
                inode: 3,
            },
            stored_at: PathBuf::from("/archive/x"),
        }
    }

    #[test]
    fn marks_are_written_read_and_forgotten_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let marks = Marks::at(dir.path().to_path_buf());
        for name in [
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003",
        ] {
            marks.write(&mark(name)).unwrap();
        }
        assert_eq!(
            marks.read("000000010000000000000002"),
            Some(mark("000000010000000000000002"))
        );
        fs::write(dir.path().join(".000000010000000000000001.77.0.tmp"), b"{").unwrap();
        fs::write(dir.path().join("not-ours"), b"x").unwrap();
        marks.forget_up_to("000000010000000000000002").unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["000000010000000000000003", "not-ours"]);
        // Not a mark: garbage, another name inside, a link.
        fs::write(dir.path().join("000000010000000000000004"), b"garbage").unwrap();
        assert_eq!(marks.read("000000010000000000000004"), None);
        fs::write(
            dir.path().join("000000010000000000000005"),
            serde_json::to_vec(&mark("000000010000000000000003")).unwrap(),
        )
        .unwrap();
        assert_eq!(marks.read("000000010000000000000005"), None);
        assert_eq!(marks.read("../etc/passwd"), None);
        assert!(marks.write(&mark("../x")).is_err());
    }
}
