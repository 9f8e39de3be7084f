//! WAL segments to test with: a cached set of real ones, and synthetic ones made on the spot.
//!
//! Codecs, scanners and the archive need realistic input: real segments mix record headers,
//! full-page images, tuple data and zero-filled tails, and compress nothing like random or
//! all-zero bytes. Making them takes a PostgreSQL run of about 15 s, so
//! `scripts/make-wal-fixtures` does it once per machine into a cache outside the repository
//! (a few hundred MiB do not belong in git). Unit-level tests that only need
//! bytes with a WAL-like mix use [`synthetic_segment`], which is instant and deterministic.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::hermetic::clean_command;
use crate::paths::script;

/// The size of a WAL segment with PostgreSQL's default `--wal-segsize` (16 MiB).
pub const SEGMENT_SIZE: usize = 16 * 1024 * 1024;

/// The cache directory `scripts/make-wal-fixtures` writes to:
/// `$WALPIPE_CACHE`, else `$HOME/.cache/walpipe`.
#[must_use]
pub fn wal_cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os("WALPIPE_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = env::var_os("HOME").expect("HOME is not set (or set WALPIPE_CACHE)");
    PathBuf::from(home).join(".cache/walpipe")
}

/// The directory of real WAL segments (`<cache>/wal-set`), generated on first use by
/// `scripts/make-wal-fixtures`.
///
/// It holds about 20 complete 16 MiB segments of timeline 1 with consecutive names
/// (`000000010000000000000001`, ...), from a bulk load, index builds and an OLTP run, plus
/// `SHA256SUMS`. Treat it as read-only: it is shared by every test and every checkout.
/// The bytes differ from machine to machine (timestamps, transaction ids), so never
/// hard-code hashes or exact counts; compare against the files themselves.
/// Concurrent first uses are safe (the script takes a lock and renames the finished set
/// into place).
///
/// # Panics
/// When the script fails (its output is on stderr).
#[must_use]
pub fn wal_fixtures() -> PathBuf {
    static GENERATE: Mutex<()> = Mutex::new(());
    let dir = wal_cache_dir().join("wal-set");
    if dir.join(".complete").exists() {
        return dir;
    }
    let _guard = GENERATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if dir.join(".complete").exists() {
        return dir;
    }
    let script = script("make-wal-fixtures");
    eprintln!(
        "walpipe-tests: generating WAL fixtures with {}",
        script.display()
    );
    let mut cmd = Command::new("bash");
    clean_command(&mut cmd);
    // The two settings the script reads are passed on; the rest of PG* stays out.
    for key in ["PG_BINDIR", "WALPIPE_CACHE"] {
        if let Some(value) = env::var_os(key) {
            cmd.env(key, value);
        }
    }
    let status = cmd
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(io::stderr())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(status.success(), "{} failed: {status}", script.display());
    assert!(
        dir.join(".complete").exists(),
        "{} succeeded but {} is not complete",
        script.display(),
        dir.display()
    );
    dir
}

/// The segment files of [`wal_fixtures`] (24-hex-digit names), sorted by name.
///
/// # Panics
/// When the set cannot be made or read.
#[must_use]
pub fn wal_fixture_segments() -> Vec<PathBuf> {
    let dir = wal_fixtures();
    let mut segments: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .collect();
    segments.sort();
    segments
}

/// The first `count` real segments of the cached set, with their content.
#[must_use]
pub fn wal_fixture_files(count: usize) -> Vec<(String, Vec<u8>)> {
    let segments = wal_fixture_segments();
    assert!(segments.len() >= count, "the WAL set is too small");
    segments[..count]
        .iter()
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(path).unwrap(),
            )
        })
        .collect()
}

/// `size` deterministic pseudo-WAL bytes for `seed`: a sequence of blocks (64 B to 8 KiB)
/// that are, by turns, zero runs, short repeated patterns, low-entropy text and
/// pseudo-random bytes, so codecs see both compressible and incompressible data.
///
/// Not parseable WAL (no valid page headers); use [`wal_fixtures`] for that. The same
/// `(seed, size)` always gives the same bytes, on every platform.
#[must_use]
pub fn synthetic_segment(seed: u64, size: usize) -> Vec<u8> {
    const TEXT: &[u8] = b"abcdefghijklmnopqrstuvwxyz 0123456789,;|";
    let mut rng = SplitMix64(seed);
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        let len = (64 + rng.below(8192 - 64)).min(size - out.len());
        match rng.below(10) {
            // Zero runs: page padding and the tail of a switched segment.
            0..=2 => out.resize(out.len() + len, 0),
            // A short pattern repeated: fixed-size headers and repeated tuples.
            3 | 4 => {
                let period = 1 + rng.below(16);
                let pattern: Vec<u8> = (0..period).map(|_| rng.next_u64() as u8).collect();
                out.extend(pattern.iter().cycle().take(len));
            }
            // Low-entropy text: tuple payloads.
            5 | 6 => out.extend((0..len).map(|_| TEXT[rng.below(TEXT.len())])),
            // Incompressible bytes: checksums, hashes, compressed full-page images.
            _ => {
                let start = out.len();
                out.resize(start + len, 0);
                for chunk in out[start..].chunks_mut(8) {
                    let bytes = rng.next_u64().to_le_bytes();
                    chunk.copy_from_slice(&bytes[..chunk.len()]);
                }
            }
        }
    }
    out
}

/// The system identifier of every [`wal_segment`]: one made-up PostgreSQL cluster.
pub const TEST_SYSTEM_ID: u64 = 7_400_000_000_000_000_001;

/// PostgreSQL 15's WAL page magic (`XLOG_PAGE_MAGIC`).
pub const PG15_PAGE_MAGIC: u16 = 0xD110;

/// A WAL segment of `size` bytes (a valid segment size: a power of two, 1 MiB to 1 GiB)
/// for the segment name `name`: a long page header as PostgreSQL 15 writes it (magic,
/// the name's timeline, the page address the name stands for, [`TEST_SYSTEM_ID`], the
/// segment and block sizes), then [`synthetic_segment`] bytes. Not replayable, but it
/// has the shape walpipe checks before storing and before restoring.
#[must_use]
pub fn wal_segment_sized(name: &str, seed: u64, size: usize) -> Vec<u8> {
    wal_segment_of(name, seed, size, TEST_SYSTEM_ID)
}

/// [`wal_segment_sized`] of 1 MiB (`initdb --wal-segsize=1`): small and quick.
#[must_use]
pub fn wal_segment(name: &str, seed: u64) -> Vec<u8> {
    wal_segment_sized(name, seed, 1 << 20)
}

/// [`wal_segment_sized`] for another cluster, `system_id`.
#[must_use]
pub fn wal_segment_of(name: &str, seed: u64, size: usize, system_id: u64) -> Vec<u8> {
    assert!(
        name.len() >= 24 && size.is_power_of_two() && (1 << 20..=1 << 30).contains(&size),
        "{name}: a segment name and a segment size"
    );
    let field = |range: std::ops::Range<usize>| u64::from_str_radix(&name[range], 16).unwrap();
    let (timeline, log, segment) = (field(0..8), field(8..16), field(16..24));
    let per_log = 0x1_0000_0000 / size as u64;
    assert!(
        segment < per_log,
        "{name}: no such segment with {size}-byte segments"
    );
    let page_address = (log * per_log + segment) * size as u64;
    let mut bytes = synthetic_segment(seed, size);
    bytes[0..2].copy_from_slice(&PG15_PAGE_MAGIC.to_le_bytes());
    bytes[2..4].copy_from_slice(&2u16.to_le_bytes()); // XLP_LONG_HEADER
    bytes[4..8].copy_from_slice(&(timeline as u32).to_le_bytes());
    bytes[8..16].copy_from_slice(&page_address.to_le_bytes());
    bytes[16..24].fill(0); // xlp_rem_len, padding
    bytes[24..32].copy_from_slice(&system_id.to_le_bytes());
    bytes[32..36].copy_from_slice(&(size as u32).to_le_bytes());
    bytes[36..40].copy_from_slice(&8192u32.to_le_bytes());
    bytes
}

/// A timeline history file's content for `timeline` (> 1): one line per parent timeline,
/// as PostgreSQL writes it.
#[must_use]
pub fn history_file(timeline: u32) -> Vec<u8> {
    let mut text = String::new();
    for parent in 1..timeline {
        let _ = writeln!(
            text,
            "{parent}\t0/{:X}\tno recovery target specified",
            parent << 24
        );
    }
    text.into_bytes()
}

/// `SplitMix64`: tiny, fast and fully specified, so fixtures never change with a crate
/// upgrade (<https://prng.di.unimi.it/splitmix64.c>).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (modulo bias is irrelevant here).
    fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}

/// Writes `bytes` to `dir/name` and returns the path.
// Tests often write a file only for its side effect and ignore the path.
#[allow(clippy::must_use_candidate)]
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// A timeline-1 segment name for record `n` of a test.
#[must_use]
pub fn segment_name(n: u32) -> String {
    format!("00000001000000000000{n:04X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_values() {
        // First outputs of the reference C implementation for seed 1234567.
        let mut rng = SplitMix64(1_234_567);
        let got: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
    }

    #[test]
    fn synthetic_segment_has_the_requested_size() {
        for size in [0, 1, 63, 8192, 100_000] {
            assert_eq!(synthetic_segment(7, size).len(), size);
        }
    }
}
