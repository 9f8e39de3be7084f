//! The WAL a crash test queues, and the invariants that every kill of the archiving
//! pipeline must leave standing, whatever the archive (a local directory in
//! `tests/tests/crash.rs`, a bucket in `tests/tests/cloud_crash.rs`; the kills are
//! [`crate::crash`]'s):
//!
//! * a WAL is still queued, or stored complete and correct — never neither ([`wal_state`]);
//! * a queue file leaves only once its WAL is stored and catalogued;
//! * xlog.db names each WAL at most once, and after the clean runs exactly once, with the
//!   stored size, compression, encryption and the source's mtime ([`Catalogue`],
//!   [`column_problems`]);
//! * nothing goes to errors/ (every WAL is queued once, with one content: anything there is
//!   a false duplicate or conflict), and nothing but WAL and hidden temps is in the queue
//!   ([`leftover_problems`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use wal_core::Compression;
use wal_core::codec;
use wal_core::xlogdb::XlogLine;

use crate::fixtures::wal_fixture_segments;

/// Fewer real segments than this make a test too weak to mean anything.
pub const MIN_SEGMENTS: usize = 10;
/// mtime given to the i-th queued file, so xlog.db's time column can be checked exactly.
pub const BASE_MTIME: u64 = 1_700_000_000;
/// The timeline history file every test queues beside its segments.
pub const HISTORY_NAME: &str = "00000002.history";
/// Its content.
pub const HISTORY: &[u8] = b"1\t0/5000028\tno recovery target specified\n";

/// A WAL a test queued, and what it must be found as.
#[derive(Debug, Clone)]
pub struct Original {
    /// Its name.
    pub name: String,
    /// The bytes to compare with (the read-only fixture, or a file of the test's own).
    pub bytes_at: PathBuf,
    /// The mtime it is queued with.
    pub mtime: u64,
    /// A segment (else a history file).
    pub segment: bool,
}

impl Original {
    /// Copies the original into `dir` under its name, with its mtime.
    pub fn queue_into(&self, dir: &Path) {
        copy_with_mtime(&self.bytes_at, &dir.join(&self.name), self.mtime);
    }
}

/// Copies `src` to `dest` and gives it the mtime `mtime`.
///
/// # Panics
/// When either fails.
pub fn copy_with_mtime(src: &Path, dest: &Path, mtime: u64) {
    fs::copy(src, dest)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dest.display()));
    File::options()
        .write(true)
        .open(dest)
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime)))
        .unwrap_or_else(|e| panic!("set the mtime of {}: {e}", dest.display()));
}

/// Up to `count` real segments (never fewer than [`MIN_SEGMENTS`]) plus a history file
/// (written into `keep`), the i-th with mtime [`BASE_MTIME`]` + i`.
///
/// # Panics
/// When the fixture set is too small or the history file cannot be written.
#[must_use]
pub fn originals(count: usize, keep: &Path) -> Vec<Original> {
    let segments = wal_fixture_segments();
    // The set holds "about 20": take what there is, up to `count`, but never under 10.
    let count = count.min(segments.len());
    assert!(
        count >= MIN_SEGMENTS,
        "the fixture set has {} segments, the test wants at least {MIN_SEGMENTS}",
        segments.len()
    );
    let history = keep.join(HISTORY_NAME);
    fs::write(&history, HISTORY).expect("write the history file");
    let mut originals: Vec<Original> = segments[..count]
        .iter()
        .map(|path| Original {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            bytes_at: path.clone(),
            mtime: 0,
            segment: true,
        })
        .collect();
    originals.push(Original {
        name: HISTORY_NAME.into(),
        bytes_at: history,
        mtime: 0,
        segment: false,
    });
    for (i, original) in originals.iter_mut().enumerate() {
        original.mtime = BASE_MTIME + i as u64;
    }
    originals
}

/// [`originals`], copied into `dir` with their mtimes.
#[must_use]
pub fn originals_into(dir: &Path, count: usize, keep: &Path) -> Vec<Original> {
    let originals = originals(count, keep);
    for original in &originals {
        original.queue_into(dir);
    }
    originals
}

/// Whether the files `a` and `b` hold the same bytes.
pub fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    let mut left = File::open(a)?;
    let mut right = File::open(b)?;
    codec::same_content(&mut left, &mut right)
}

// ---------------------------------------------------------------------------------------
// What a run left behind

/// The names in `dir` (none when it does not exist).
///
/// # Panics
/// When `dir` exists but cannot be listed.
#[must_use]
pub fn names_in(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                e.expect("readable entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    }
}

/// The hidden (temporary) names in `dir`.
#[must_use]
pub fn hidden_names(dir: &Path) -> BTreeSet<String> {
    names_in(dir)
        .into_iter()
        .filter(|name| name.starts_with('.'))
        .collect()
}

/// The size of the file at `path`, 0 when there is none.
#[must_use]
pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// What a queue directory holds.
#[derive(Debug, Default)]
pub struct Queue {
    /// WAL names still in the queue.
    pub queued: BTreeSet<String>,
    /// Non-hidden, non-original names in the queue.
    pub strays: Vec<String>,
    /// Hidden files left in the queue (temps of killed runs).
    pub hidden: usize,
}

impl Queue {
    /// Reads the queue `dir` of `originals`.
    #[must_use]
    pub fn read(dir: &Path, originals: &[Original]) -> Self {
        let mut queue = Queue::default();
        let known: BTreeSet<&str> = originals.iter().map(|o| o.name.as_str()).collect();
        for name in names_in(dir) {
            if name.starts_with('.') {
                queue.hidden += 1;
            } else if known.contains(name.as_str()) {
                queue.queued.insert(name);
            } else {
                queue.strays.push(name);
            }
        }
        queue
    }
}

/// An xlog.db file, read line by line.
#[derive(Debug, Default)]
pub struct Catalogue {
    /// Its lines, in order.
    pub lines: Vec<XlogLine>,
    /// Its lines that do not parse.
    pub torn: Vec<String>,
}

impl Catalogue {
    /// Reads the xlog.db at `path` (none is an empty catalogue).
    #[must_use]
    pub fn read(path: &Path) -> Self {
        let mut catalogue = Catalogue::default();
        if let Ok(text) = fs::read_to_string(path) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match XlogLine::parse(line) {
                    Some(parsed) => catalogue.lines.push(parsed),
                    None => catalogue.torn.push(line.to_string()),
                }
            }
        }
        catalogue
    }

    /// How many lines each name has.
    #[must_use]
    pub fn counts(&self) -> BTreeMap<&str, usize> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for line in &self.lines {
            *counts.entry(line.name.as_str()).or_default() += 1;
        }
        counts
    }

    /// What is wrong with it at any moment: a name twice, a torn line, a name never queued.
    #[must_use]
    pub fn problems(&self, originals: &[Original]) -> Vec<String> {
        let mut problems = Vec::new();
        let counts = self.counts();
        for (name, count) in &counts {
            if *count > 1 {
                problems.push(format!("{name} is catalogued {count} times in xlog.db"));
            }
        }
        for line in &self.torn {
            problems.push(format!("xlog.db has an unparsable line {line:?}"));
        }
        for name in counts.keys() {
            if !originals.iter().any(|o| o.name == *name) {
                problems.push(format!("xlog.db catalogues {name}, which was never queued"));
            }
        }
        problems
    }

    /// The lines of `name`, and the problem when there is not exactly one.
    #[must_use]
    pub fn lines_of(&self, name: &str) -> (Vec<&XlogLine>, Option<String>) {
        let lines: Vec<&XlogLine> = self.lines.iter().filter(|l| l.name == name).collect();
        let problem =
            (lines.len() != 1).then(|| format!("{name}: {} xlog.db lines, want 1", lines.len()));
        (lines, problem)
    }
}

/// What is wrong with `line`, the xlog.db line of `original`, once everything is stored:
/// columns that disagree with the stored copy (`stored_size` bytes, `compression`,
/// `encryption`) or with the source's mtime.
#[must_use]
pub fn column_problems(
    line: &XlogLine,
    original: &Original,
    stored_size: u64,
    compression: Option<&str>,
    encryption: Option<&str>,
) -> Vec<String> {
    let name = original.name.as_str();
    let mut problems = Vec::new();
    if line.size != stored_size {
        problems.push(format!(
            "{name}: xlog.db size {} but the stored file has {stored_size} bytes",
            line.size
        ));
    }
    if line.compression.as_deref() != compression {
        problems.push(format!(
            "{name}: xlog.db compression {:?}, the stored file is {compression:?}",
            line.compression
        ));
    }
    if line.encryption.as_deref() != encryption {
        problems.push(format!(
            "{name}: xlog.db encryption {:?}, want {encryption:?}",
            line.encryption
        ));
    }
    if (line.time - original.mtime as f64).abs() > 1e-3 {
        problems.push(format!(
            "{name}: xlog.db time {}, want the source's mtime {}",
            line.time, original.mtime
        ));
    }
    problems
}

/// Opens the stored copy at `path` (its compression found by magic, as Barman does) and
/// compares what it decompresses to with `original`: `Ok((compression found, the
/// problem if it is corrupt))`, or `Err` when it cannot be opened at all.
pub fn compare_stored(
    path: &Path,
    original: &Original,
) -> Result<(Option<Compression>, Option<String>), String> {
    let name = original.name.as_str();
    let (found, mut stored) = codec::open_decompressed(path)
        .map_err(|e| format!("{name}: cannot open {}: {e}", path.display()))?;
    let mut original_bytes = File::open(&original.bytes_at).expect("open the original");
    let corrupt = match codec::same_content(&mut stored, &mut original_bytes) {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "{name}: CORRUPT: {} does not decompress to the original",
            path.display()
        )),
        Err(e) => Some(format!(
            "{name}: CORRUPT: {} does not decompress: {e}",
            path.display()
        )),
    };
    Ok((found, corrupt))
}

/// What must never be left beside the archive: anything in errors/ (a false duplicate or
/// conflict, since every WAL is queued once with one content), or a non-hidden file in
/// the queue that is no original.
#[must_use]
pub fn leftover_problems(queue: &Queue, errors: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if !errors.is_empty() {
        problems.push(format!("errors/ holds {errors:?} (false duplicates?)"));
    }
    if !queue.strays.is_empty() {
        problems.push(format!(
            "unexpected non-hidden files in the queue: {:?}",
            queue.strays
        ));
    }
    problems
}

/// Where a WAL stands between runs: the crash windows a kill can leave it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalState {
    /// Only in the queue.
    Queued,
    /// Stored, not in xlog.db, source still queued (killed between storing and appending).
    StoredNotCatalogued,
    /// Catalogued, source still queued (killed between appending and removing the source).
    CataloguedStillQueued,
    /// Catalogued and its source removed.
    Done,
}

/// Where WAL `name` stands, from whether it is still `queued`, `stored` (complete and
/// correct) and `catalogued`; `Err` for the states no run may leave: lost, catalogued but
/// not stored, or gone from the queue uncatalogued (no later run would catalogue it).
pub fn wal_state(
    name: &str,
    queued: bool,
    stored: bool,
    catalogued: bool,
) -> Result<WalState, String> {
    match (queued, stored, catalogued) {
        (_, false, true) => Err(format!("{name} is catalogued but not in the archive")),
        (false, false, false) => Err(format!("{name} is LOST: gone from the queue, not archived")),
        (false, true, false) => Err(format!(
            "{name} left the queue while not catalogued: no later run will catalogue it"
        )),
        (true, true, false) => Ok(WalState::StoredNotCatalogued),
        (true, true, true) => Ok(WalState::CataloguedStillQueued),
        (false, true, true) => Ok(WalState::Done),
        (true, false, false) => Ok(WalState::Queued),
    }
}

/// Counts the WAL that a run newly left in a crash window (not those an earlier run left
/// there): `(stored but not catalogued, catalogued with the source still queued)`.
#[must_use]
pub fn new_windows(
    previous: &BTreeMap<String, WalState>,
    now: &BTreeMap<String, WalState>,
) -> (usize, usize) {
    let mut windows = (0, 0);
    for (name, state) in now {
        if previous.get(name) != Some(state) {
            match state {
                WalState::StoredNotCatalogued => windows.0 += 1,
                WalState::CataloguedStillQueued => windows.1 += 1,
                WalState::Queued | WalState::Done => {}
            }
        }
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_states() {
        assert_eq!(wal_state("a", true, false, false), Ok(WalState::Queued));
        assert_eq!(wal_state("a", false, true, true), Ok(WalState::Done));
        assert!(
            wal_state("a", false, false, false)
                .unwrap_err()
                .contains("LOST")
        );
        assert!(wal_state("a", true, false, true).is_err());
        assert!(wal_state("a", false, true, false).is_err());
    }
}
