//! WAL file names: which names are archivable, what they denote, where they are stored.
//!
//! Every walpipe stage meets WAL names: the scanner classifies queue entries (anything that
//! is not a WAL name goes to `errors/` as `.unknown`), the store computes the hash directory,
//! retention enumerates segment ranges. This module is the one place that knows Barman's
//! grammar and its encodings (`docs/barman-formats.md#wal-file-names`, Barman's
//! `barman/xlog.py`), the archive layout (`docs/barman-formats.md#archive-layout`) and the
//! segment-size arithmetic (`docs/barman-formats.md#segment-arithmetic`), so that walpipe
//! and Barman agree on every name.
//!
//! Parsing is a handful of byte comparisons, not a regex: it runs on every queue entry, and
//! a backlog can hold 100 000 files.

use std::cmp::Ordering;
use std::fmt;
use std::iter::FusedIterator;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::WalError;

/// Length of a segment name: timeline, log and segment, 8 hex digits each.
const SEGMENT_NAME_LEN: usize = 24;
/// Length of one hex field of a name.
const FIELD_LEN: usize = 8;
/// Barman's `PARTIAL_EXTENSION`: segments still being written by `pg_receivewal`.
const PARTIAL_SUFFIX: &[u8] = b".partial";
/// Suffix of backup labels, after the `.OOOOOOOO` offset.
const BACKUP_SUFFIX: &[u8] = b".backup";
/// Suffix of timeline history files, after the 8-hex timeline.
const HISTORY_SUFFIX: &[u8] = b".history";
/// `<24 hex>.<8 hex>.backup`.
const BACKUP_NAME_LEN: usize = SEGMENT_NAME_LEN + 1 + FIELD_LEN + BACKUP_SUFFIX.len();
/// `<8 hex>.history`.
const HISTORY_NAME_LEN: usize = FIELD_LEN + HISTORY_SUFFIX.len();

/// Barman's `segments_per_file` when the segment size is unknown
/// (`docs/barman-formats.md#segment-arithmetic`): large enough
/// to enumerate every name that any legal segment size could produce.
const UNKNOWN_SIZE_SEGMENTS_PER_LOG: u32 = 0x7FFFF;

/// What a WAL file name denotes (serialized lowercase: "segment", "history", "backup", "partial").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalKind {
    /// A plain WAL segment, `TTTTTTTTLLLLLLLLSSSSSSSS` (Barman's `is_wal_file`).
    Segment,
    /// A timeline history file, `TTTTTTTT.history` (Barman's `is_history_file`).
    History,
    /// A backup label, `TTTTTTTTLLLLLLLLSSSSSSSS.OOOOOOOO.backup` (Barman's `is_backup_file`).
    Backup,
    /// A partial segment from `pg_receivewal`, `TTTTTTTTLLLLLLLLSSSSSSSS.partial`
    /// (Barman's `is_partial_file`).
    Partial,
}

impl WalKind {
    /// The wire name: `segment`, `history`, `backup` or `partial`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            WalKind::Segment => "segment",
            WalKind::History => "history",
            WalKind::Backup => "backup",
            WalKind::Partial => "partial",
        }
    }
}

impl fmt::Display for WalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed WAL file name. Ordering/equality follow the name's bytes (Barman's byte order:
/// `docs/barman-formats.md#name-order`).
///
/// Barman sorts its queues as plain strings, so `TTTTTTTT.history` lands between timelines
/// and `.backup`/`.partial` files right after their segment; comparing the names as given
/// (case preserved) reproduces that order exactly.
#[derive(Debug, Clone)]
pub struct WalName {
    /// The basename as given, case preserved.
    name: String,
    /// What the name denotes.
    kind: WalKind,
    /// The `TTTTTTTT` field.
    timeline: u32,
    /// The `LLLLLLLL` field (meaningless for history files).
    log: u32,
    /// The `SSSSSSSS` field (meaningless for history files).
    segment: u32,
    /// The `OOOOOOOO` field (meaningless except for backup labels).
    backup_offset: u32,
}

// Equality, hashing and ordering look at the name only: every other field is derived from it,
// and the order must be Barman's byte order (docs/barman-formats.md#name-order).
impl PartialEq for WalName {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for WalName {}

impl std::hash::Hash for WalName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl PartialOrd for WalName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WalName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.name.as_bytes().cmp(other.name.as_bytes())
    }
}

/// The fields of a name that passed the grammar, before the name is copied.
struct Parsed {
    kind: WalKind,
    timeline: u32,
    log: u32,
    segment: u32,
    backup_offset: u32,
}

impl WalName {
    /// Parses a bare name or a path: only the basename counts, as Barman matches its regex on
    /// the basename. Hex digits may be upper or lower case.
    ///
    /// Accepts exactly the four forms of `docs/barman-formats.md#wal-file-names` and nothing
    /// else: no prefix, no trailing
    /// characters (not even the newline Python's `$` would tolerate), no `.tmp` suffix.
    pub fn parse(name_or_path: &str) -> Result<WalName, WalError> {
        let name = basename(name_or_path);
        match parse_basename(name.as_bytes()) {
            Some(parsed) => Ok(WalName {
                name: name.to_owned(),
                kind: parsed.kind,
                timeline: parsed.timeline,
                log: parsed.log,
                segment: parsed.segment,
                backup_offset: parsed.backup_offset,
            }),
            None => Err(WalError::BadWalName {
                name: name_or_path.to_owned(),
            }),
        }
    }

    /// Parses a bare file name, refusing any path (`../00000002.history`, `a/b`): where a
    /// name comes from input (a record, a command line) and is joined to a directory, a
    /// path in it could reach outside that directory.
    pub fn parse_file_name(name: &str) -> Result<WalName, WalError> {
        if name.contains('/') {
            return Err(WalError::BadWalName {
                name: name.to_owned(),
            });
        }
        WalName::parse(name)
    }

    /// The basename as given (case preserved).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// What the name denotes.
    #[must_use]
    pub fn kind(&self) -> WalKind {
        self.kind
    }

    /// The timeline (`TTTTTTTT`); every form has one.
    #[must_use]
    pub fn timeline(&self) -> u32 {
        self.timeline
    }

    /// The log number (`LLLLLLLL`, the high 32 bits of the LSN); `None` for history files.
    #[must_use]
    pub fn log(&self) -> Option<u32> {
        (self.kind != WalKind::History).then_some(self.log)
    }

    /// The segment number within the log (`SSSSSSSS`); `None` for history files.
    #[must_use]
    pub fn segment(&self) -> Option<u32> {
        (self.kind != WalKind::History).then_some(self.segment)
    }

    /// The byte offset of a backup label (`OOOOOOOO`); `Some` only for `.backup` files.
    #[must_use]
    pub fn backup_offset(&self) -> Option<u32> {
        (self.kind == WalKind::Backup).then_some(self.backup_offset)
    }

    /// Upper-case "TTTTTTTTLLLLLLLL"; None for history files (they live in the archive root).
    ///
    /// Re-encoded rather than sliced, as Barman's `hash_dir` does
    /// (`docs/barman-formats.md#archive-layout`): a lower-case
    /// name lands in the same upper-case directory as its upper-case twin.
    #[must_use]
    pub fn hash_dir(&self) -> Option<String> {
        self.log()
            .map(|log| format!("{:08X}{log:08X}", self.timeline))
    }

    /// `<hash_dir>/<name>` or `<name>` for history files (Barman's `WalFileInfo.relpath()`).
    #[must_use]
    pub fn relpath(&self) -> PathBuf {
        match self.hash_dir() {
            Some(dir) => PathBuf::from(dir).join(&self.name),
            None => PathBuf::from(&self.name),
        }
    }

    /// The canonical upper-case 24-hex name of the segment this file belongs to (a `.backup`
    /// or `.partial` file: its segment); `None` for history files.
    #[must_use]
    pub fn segment_name(&self) -> Option<String> {
        self.log()
            .map(|log| encode_segment_name(self.timeline, log, self.segment))
    }

    /// `(log, segment)` of the segment this name belongs to, or the error the segment
    /// helpers report for history files.
    fn log_and_segment(&self) -> Result<(u32, u32), WalError> {
        match self.log() {
            Some(log) => Ok((log, self.segment)),
            None => Err(WalError::Usage(format!(
                "{}: a history file does not denote a WAL segment",
                self.name
            ))),
        }
    }
}

impl fmt::Display for WalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl FromStr for WalName {
    type Err = WalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WalName::parse(s)
    }
}

impl AsRef<str> for WalName {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

/// On the wire a `WalName` is its name string; deserializing validates it.
impl Serialize for WalName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for WalName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        WalName::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Classifies a bare name or a path without allocating: `None` when it is not a WAL name.
///
/// The cheap form of [`WalName::parse`] for filtering large directory listings; it covers
/// Barman's `is_any_xlog_file` (`is_some()`) and the four `is_*_file` predicates.
#[must_use]
pub fn classify(name_or_path: &str) -> Option<WalKind> {
    parse_basename(basename(name_or_path).as_bytes()).map(|parsed| parsed.kind)
}

/// `"%08X%08X%08X"`: the canonical (upper-case) segment name (Barman's `encode_segment_name`).
#[must_use]
pub fn encode_segment_name(timeline: u32, log: u32, segment: u32) -> String {
    format!("{timeline:08X}{log:08X}{segment:08X}")
}

/// `"%08X.history"`: the history file of a timeline (Barman's `encode_history_file_name`).
#[must_use]
pub fn encode_history_name(timeline: u32) -> String {
    format!("{timeline:08X}.history")
}

/// `"TTTTTTTTLLLLLLLL"` (16 hex digits, either case) to `(timeline, log)`; `None` otherwise.
///
/// Barman's `decode_hash_dir`, used when walking an archive's directories.
#[must_use]
pub fn decode_hash_dir(dir: &str) -> Option<(u32, u32)> {
    let bytes = dir.as_bytes();
    if bytes.len() != 2 * FIELD_LEN {
        return None;
    }
    Some((
        hex_field(&bytes[..FIELD_LEN])?,
        hex_field(&bytes[FIELD_LEN..])?,
    ))
}

/// A valid `wal_segment_size`: a power of two from 1 MiB to 1 GiB.
///
/// These are the sizes `initdb --wal-segsize` accepts; every other value would
/// make the name arithmetic below silently wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSize(u64);

impl SegmentSize {
    /// 16 MiB, the server's default and Barman's `DEFAULT_XLOG_SEG_SIZE`.
    pub const DEFAULT: SegmentSize = SegmentSize(1 << 24);
    /// The smallest size the server allows (1 MiB).
    pub const MIN: SegmentSize = SegmentSize(1 << 20);
    /// The largest size the server allows (1 GiB).
    pub const MAX: SegmentSize = SegmentSize(1 << 30);

    /// Checks that `bytes` is a power of two from 1 MiB to 1 GiB.
    pub fn new(bytes: u64) -> Result<SegmentSize, WalError> {
        if bytes.is_power_of_two() && (Self::MIN.0..=Self::MAX.0).contains(&bytes) {
            Ok(SegmentSize(bytes))
        } else {
            Err(WalError::Usage(format!(
                "invalid WAL segment size {bytes} bytes: must be a power of two \
                 from 1 MiB (1048576) to 1 GiB (1073741824)"
            )))
        }
    }

    /// The size in bytes.
    #[must_use]
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// `0xFFFF_FFFF / size`: the highest segment number of a log
    /// (`docs/barman-formats.md#segment-arithmetic`; 16 MiB -> 255,
    /// so segment numbers run `00`..=`FF`).
    #[must_use]
    pub fn segments_per_log(self) -> u32 {
        // size is 2^k, so `0xFFFF_FFFF / size` is a shift: exact, and no cast to check.
        u32::MAX >> self.0.trailing_zeros()
    }

    /// `size * segments_per_log`: Barman's `xlog_segment_mask`, the bits of an LSN's low
    /// word that select the segment.
    #[must_use]
    pub fn mask(self) -> u64 {
        self.0 * u64::from(self.segments_per_log())
    }
}

impl Default for SegmentSize {
    fn default() -> Self {
        SegmentSize::DEFAULT
    }
}

impl TryFrom<u64> for SegmentSize {
    type Error = WalError;

    fn try_from(bytes: u64) -> Result<Self, Self::Error> {
        SegmentSize::new(bytes)
    }
}

/// The segment after `name` on the same timeline: after segment `segments_per_log` comes
/// segment 0 of the next log (`docs/barman-formats.md#segment-arithmetic`). Error for
/// non-segment names (only plain segment
/// names are accepted) and for the very last segment of the address space. The result is
/// canonical upper case.
pub fn next_segment_name(name: &str, size: SegmentSize) -> Result<String, WalError> {
    let (timeline, log, segment) = plain_segment(name)?;
    let next = if segment >= size.segments_per_log() {
        log.checked_add(1).map(|log| (log, 0))
    } else {
        Some((log, segment + 1))
    };
    match next {
        Some((log, segment)) => Ok(encode_segment_name(timeline, log, segment)),
        None => Err(WalError::Usage(format!(
            "{name}: no next segment: end of the WAL address space"
        ))),
    }
}

/// The segment before `name` on the same timeline: segment 0 of a log is preceded by
/// segment `segments_per_log` of the previous log
/// (`docs/barman-formats.md#segment-arithmetic`). Error for non-segment names
/// and for the very first segment of the address space.
pub fn previous_segment_name(name: &str, size: SegmentSize) -> Result<String, WalError> {
    let (timeline, log, segment) = plain_segment(name)?;
    let previous = match segment.checked_sub(1) {
        Some(segment) => Some((log, segment)),
        None => log.checked_sub(1).map(|log| (log, size.segments_per_log())),
    };
    match previous {
        Some((log, segment)) => Ok(encode_segment_name(timeline, log, segment)),
        None => Err(WalError::Usage(format!(
            "{name}: no previous segment: start of the WAL address space"
        ))),
    }
}

/// Segment names from `begin` to `end` inclusive (same timeline, else an error), or forever
/// when `end` is `None`. `size: None` means unknown: `segments_per_log` is then taken as
/// `0x7FFFF` (`docs/barman-formats.md#segment-arithmetic`). Rules of 9.3 and later only
/// (no skipping of `FF`).
///
/// Like Barman's `generate_segment_names`, `begin` and `end` may be any name that decodes
/// to a segment (plain, `.backup`, `.partial`); names are yielded in canonical upper case.
/// An `end` before `begin` yields nothing. "Forever" stops after the last name of the
/// address space (log `FFFFFFFF`), where Barman would go on to 9-digit nonsense.
pub fn segment_names(
    begin: &str,
    end: Option<&str>,
    size: Option<SegmentSize>,
) -> Result<SegmentNames, WalError> {
    let begin_name = WalName::parse(begin)?;
    let (begin_log, begin_segment) = begin_name.log_and_segment()?;
    let end = match end {
        None => None,
        Some(end) => {
            let end_name = WalName::parse(end)?;
            let end_position = end_name.log_and_segment()?;
            // Barman asserts this: the enumeration cannot cross a timeline switch.
            if end_name.timeline() != begin_name.timeline() {
                return Err(WalError::Usage(format!(
                    "begin segment ({begin}) and end segment ({end}) must have the same \
                     timeline part"
                )));
            }
            Some(end_position)
        }
    };
    Ok(SegmentNames {
        timeline: begin_name.timeline(),
        next: Some((begin_log, begin_segment)),
        end,
        segments_per_log: size.map_or(UNKNOWN_SIZE_SEGMENTS_PER_LOG, SegmentSize::segments_per_log),
    })
}

/// The iterator returned by [`segment_names`].
#[derive(Debug, Clone)]
pub struct SegmentNames {
    /// The timeline of every name yielded.
    timeline: u32,
    /// `(log, segment)` of the next name to yield; `None` once exhausted.
    next: Option<(u32, u32)>,
    /// `(log, segment)` of the last name to yield, inclusive; `None` for no end.
    end: Option<(u32, u32)>,
    /// The highest segment number before wrapping to the next log.
    segments_per_log: u32,
}

impl Iterator for SegmentNames {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let (log, segment) = self.next?;
        if self.end.is_some_and(|end| (log, segment) > end) {
            self.next = None;
            return None;
        }
        // Barman wraps when seg + 1 > segments_per_file; a begin already past that (a name
        // from a smaller segment size) is yielded, then wraps, as in Barman.
        self.next = if segment >= self.segments_per_log {
            log.checked_add(1).map(|log| (log, 0))
        } else {
            Some((log, segment + 1))
        };
        Some(encode_segment_name(self.timeline, log, segment))
    }
}

impl FusedIterator for SegmentNames {}

/// Parses an LSN written `X/Y` (1 to 8 hex digits each side, either case), as the server's
/// `pg_lsn` input does: `(X << 32) + Y`. `None` for anything else.
#[must_use]
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    let high = hex_u32(high.as_bytes())?;
    let low = hex_u32(low.as_bytes())?;
    Some((u64::from(high) << 32) | u64::from(low))
}

/// Formats an LSN as `"%X/%X"` (upper case, no padding), the server's and Barman's form.
#[must_use]
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & u64::from(u32::MAX))
}

/// (segment file name, byte offset in it) for an LSN on a timeline
/// (`docs/barman-formats.md#segment-arithmetic`, Barman's
/// `location_to_xlogfile_name_offset`).
///
/// As `pg_walfile_name_offset` computes it: log = high word, segment = `(lsn & mask) / size`,
/// offset = `lsn & (size - 1)`.
#[must_use]
pub fn lsn_to_segment(lsn: u64, timeline: u32, size: SegmentSize) -> (String, u64) {
    let log = (lsn >> 32) as u32;
    // The mask is below 2^32 and size >= 2^20, so the quotient fits in u32.
    let segment = ((lsn & size.mask()) / size.bytes()) as u32;
    let offset = lsn & (size.bytes() - 1);
    (encode_segment_name(timeline, log, segment), offset)
}

/// The LSN at `offset` bytes into the segment of `name` (any segment-bearing name): the
/// inverse of [`lsn_to_segment`], Barman's `location_from_xlogfile_name_offset`.
pub fn segment_to_lsn(name: &str, offset: u64, size: SegmentSize) -> Result<u64, WalError> {
    let (log, segment) = WalName::parse(name)?.log_and_segment()?;
    // A segment number beyond the log's segments, or an offset beyond the segment, would
    // overflow the 64-bit address space: a name and offset no server can reach.
    u64::from(segment)
        .checked_mul(size.bytes())
        .and_then(|start| start.checked_add(u64::from(log) << 32))
        .and_then(|start| start.checked_add(offset))
        .ok_or_else(|| {
            WalError::Usage(format!(
                "{name} at offset {offset}: beyond the WAL address space"
            ))
        })
}

/// The last `/`-separated component, as Python's `os.path.basename` on POSIX (a trailing
/// slash leaves an empty basename, which no grammar form matches).
fn basename(name_or_path: &str) -> &str {
    name_or_path.rsplit('/').next().unwrap_or(name_or_path)
}

/// Matches the grammar of `docs/barman-formats.md#wal-file-names` against a basename.
/// Byte checks only, fixed lengths
/// first, so non-WAL names are rejected after a comparison or two.
fn parse_basename(name: &[u8]) -> Option<Parsed> {
    if name.len() == HISTORY_NAME_LEN && name.ends_with(HISTORY_SUFFIX) {
        return Some(Parsed {
            kind: WalKind::History,
            timeline: hex_field(&name[..FIELD_LEN])?,
            log: 0,
            segment: 0,
            backup_offset: 0,
        });
    }
    if name.len() < SEGMENT_NAME_LEN {
        return None;
    }
    let (segment_part, rest) = name.split_at(SEGMENT_NAME_LEN);
    let (kind, backup_offset) = if rest.is_empty() {
        (WalKind::Segment, 0)
    } else if rest == PARTIAL_SUFFIX {
        (WalKind::Partial, 0)
    } else if rest.len() == BACKUP_NAME_LEN - SEGMENT_NAME_LEN
        && rest[0] == b'.'
        && rest.ends_with(BACKUP_SUFFIX)
    {
        (WalKind::Backup, hex_field(&rest[1..=FIELD_LEN])?)
    } else {
        return None;
    };
    Some(Parsed {
        kind,
        timeline: hex_field(&segment_part[..FIELD_LEN])?,
        log: hex_field(&segment_part[FIELD_LEN..2 * FIELD_LEN])?,
        segment: hex_field(&segment_part[2 * FIELD_LEN..])?,
        backup_offset,
    })
}

/// Exactly 8 hex digits (either case) as a `u32`.
fn hex_field(digits: &[u8]) -> Option<u32> {
    if digits.len() == FIELD_LEN {
        hex_u32(digits)
    } else {
        None
    }
}

/// 1 to 8 hex digits (either case) as a `u32`. Written by hand because
/// `u32::from_str_radix` also accepts a leading `+`, which no WAL name or LSN has.
fn hex_u32(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > FIELD_LEN {
        return None;
    }
    digits.iter().try_fold(0u32, |value, &byte| {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            b'A'..=b'F' => byte - b'A' + 10,
            _ => return None,
        };
        Some((value << 4) | u32::from(digit))
    })
}

/// Checks that `name` is a plain segment name and decodes it.
fn plain_segment(name: &str) -> Result<(u32, u32, u32), WalError> {
    let parsed = WalName::parse(name)?;
    if parsed.kind() != WalKind::Segment {
        return Err(WalError::Usage(format!(
            "{name}: not a WAL segment name (it is a {} file)",
            parsed.kind()
        )));
    }
    Ok((parsed.timeline, parsed.log, parsed.segment))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn size(bytes: u64) -> SegmentSize {
        SegmentSize::new(bytes).unwrap()
    }

    fn kind_of(name: &str) -> Option<WalKind> {
        WalName::parse(name).ok().map(|wal| wal.kind())
    }

    // Barman's is_any/is_wal/is_backup/is_partial/is_history tables (its tests/test_xlog.py;
    // docs/barman-formats.md#wal-file-names).
    #[test]
    fn positive_names_classify_by_form() {
        let cases = [
            ("000000000000000000000000", WalKind::Segment),
            ("000000010000000000000001", WalKind::Segment),
            ("00000001000000AB000000CD", WalKind::Segment),
            ("00000001000000ab000000cd", WalKind::Segment),
            ("FFFFFFFFFFFFFFFFFFFFFFFF", WalKind::Segment),
            ("test/000000010000000000000001", WalKind::Segment),
            ("/a/b/000000010000000000000001", WalKind::Segment),
            ("00000001.history", WalKind::History),
            ("0000000a.history", WalKind::History),
            ("/wals/0000000A.history", WalKind::History),
            ("000000010000000000000002.00000020.backup", WalKind::Backup),
            ("000000010000000000000002.0000002f.backup", WalKind::Backup),
            (
                "test/000000010000000000000002.00000020.backup",
                WalKind::Backup,
            ),
            ("000000010000000000000002.partial", WalKind::Partial),
            ("test/00000001000000000000000a.partial", WalKind::Partial),
        ];
        for (name, kind) in cases {
            assert_eq!(kind_of(name), Some(kind), "{name}");
            assert_eq!(classify(name), Some(kind), "{name}");
        }
    }

    #[test]
    fn negative_names_are_rejected() {
        let cases = [
            "",
            "/",
            "test/",
            "00000001000000000000001",                   // 23 hex
            "0000000100000000000000011",                 // 25 hex
            "00000001000000000000000G",                  // non-hex
            "0000000100000000000000 1",                  // space
            "+0000001000000000000000001",                // sign
            "00000001000000000000000١",                  // non-ASCII digit
            "000000010000000000000002.backup",           // backup without offset
            "000000010000000000000002.0000002.backup",   // 7-hex offset
            "000000010000000000000002.0000002G.backup",  // non-hex offset
            "000000010000000000000002.history",          // 24 hex history
            "000000010000000000000002.00000020.partial", // offset on partial
            "00000001.partial",                          // 8 hex partial
            "0000001.history",                           // 7 hex history
            "000000001.history",                         // 9 hex history
            "0000000G.history",                          // non-hex history
            "test.000000010000000000000001",             // prefix
            "test.00000001.history",                     // prefix
            "test000000010000000000000001",              // prefix
            "000000010000000000000001\n",                // Python's `$` lets this through
            "000000010000000000000001 ",                 // trailing junk
            "000000010000000000000001.tmp",              // temp suffix
            "000000010000000000000001.partial.tmp",      // temp suffix
            "000000010000000000000001.gz",               // cloud extension
            "00000001.history.tmp",                      // temp suffix
            ".000000010000000000000001",                 // dot-file
            "000000010000000000000001/",                 // directory
        ];
        for name in cases {
            assert!(WalName::parse(name).is_err(), "{name:?} parsed");
            assert_eq!(classify(name), None, "{name:?}");
        }
    }

    #[test]
    fn bad_names_report_the_input() {
        let err = WalName::parse("/q/000000010000000000000001.tmp").unwrap_err();
        let WalError::BadWalName { name } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(name, "/q/000000010000000000000001.tmp");
        assert_eq!(err.kind(), crate::error::ErrorKind::Unknown);
    }

    #[test]
    fn fields_decode_and_case_is_preserved() {
        let seg = WalName::parse("test/00000002000000ab000000cd").unwrap();
        assert_eq!(seg.as_str(), "00000002000000ab000000cd");
        assert_eq!(seg.to_string(), "00000002000000ab000000cd");
        assert_eq!(
            (
                seg.timeline(),
                seg.log(),
                seg.segment(),
                seg.backup_offset()
            ),
            (2, Some(0xAB), Some(0xCD), None)
        );

        let history = WalName::parse("0000000A.history").unwrap();
        assert_eq!(
            (history.timeline(), history.log(), history.segment()),
            (10, None, None)
        );

        let backup: WalName = "00000002000000050000000A.00000020.backup".parse().unwrap();
        assert_eq!(
            (
                backup.timeline(),
                backup.log(),
                backup.segment(),
                backup.backup_offset()
            ),
            (2, Some(5), Some(10), Some(0x20))
        );

        let partial = WalName::parse("0000000100000000000000FE.partial").unwrap();
        assert_eq!(
            (partial.log(), partial.segment(), partial.backup_offset()),
            (Some(0), Some(0xFE), None)
        );
    }

    #[test]
    fn hash_dir_is_upper_case_and_absent_for_history() {
        let cases = [
            ("000000010000000000000001", Some("0000000100000000")),
            ("00000001000000ab000000cd", Some("00000001000000AB")),
            ("test/00000001000000ab000000cd", Some("00000001000000AB")),
            (
                "00000002000000050000000A.00000020.backup",
                Some("0000000200000005"),
            ),
            ("0000000100000000000000FE.partial", Some("0000000100000000")),
            ("00000001.history", None),
        ];
        for (name, dir) in cases {
            let wal = WalName::parse(name).unwrap();
            assert_eq!(wal.hash_dir().as_deref(), dir, "{name}");
        }
    }

    #[test]
    fn relpath_is_hash_dir_then_name() {
        let rel = |name: &str| WalName::parse(name).unwrap().relpath();
        assert_eq!(
            rel("/q/000000010000000A00000042"),
            PathBuf::from("000000010000000A/000000010000000A00000042")
        );
        assert_eq!(
            rel("00000001000000ab000000cd"),
            PathBuf::from("00000001000000AB/00000001000000ab000000cd")
        );
        assert_eq!(
            rel("00000002000000050000000A.00000020.backup"),
            PathBuf::from("0000000200000005/00000002000000050000000A.00000020.backup")
        );
        assert_eq!(rel("00000002.history"), PathBuf::from("00000002.history"));
    }

    #[test]
    fn segment_name_is_canonical() {
        let seg = |name: &str| WalName::parse(name).unwrap().segment_name();
        assert_eq!(
            seg("00000001000000ab000000cd").as_deref(),
            Some("00000001000000AB000000CD")
        );
        assert_eq!(
            seg("00000002000000050000000A.00000020.backup").as_deref(),
            Some("00000002000000050000000A")
        );
        assert_eq!(
            seg("0000000100000000000000fe.partial").as_deref(),
            Some("0000000100000000000000FE")
        );
        assert_eq!(seg("00000001.history"), None);
    }

    #[test]
    fn encodings_are_upper_case() {
        assert_eq!(
            encode_segment_name(1, 0xAB, 0xCD),
            "00000001000000AB000000CD"
        );
        assert_eq!(
            encode_segment_name(u32::MAX, u32::MAX, u32::MAX),
            "FFFFFFFFFFFFFFFFFFFFFFFF"
        );
        assert_eq!(encode_history_name(1), "00000001.history");
        assert_eq!(encode_history_name(10), "0000000A.history");
        assert_eq!(encode_history_name(33), "00000021.history");
        assert_eq!(encode_history_name(328), "00000148.history");
        for tli in [1, 10, 33, 328] {
            let name = WalName::parse(&encode_history_name(tli)).unwrap();
            assert_eq!(name.timeline(), tli);
        }
    }

    #[test]
    fn hash_dirs_decode() {
        assert_eq!(decode_hash_dir("000000010000000A"), Some((1, 10)));
        assert_eq!(decode_hash_dir("00000002000000ab"), Some((2, 0xAB)));
        assert_eq!(
            decode_hash_dir("FFFFFFFFFFFFFFFF"),
            Some((u32::MAX, u32::MAX))
        );
        for bad in [
            "",
            "000000010000000",
            "00000001000000000",
            "000000010000000G",
            "000000010000000000000001",
            "00000001.history",
            "+00000010000000A",
        ] {
            assert_eq!(decode_hash_dir(bad), None, "{bad}");
        }
    }

    #[test]
    fn segment_sizes_per_log_and_mask() {
        for (bytes, per_log) in [(MIB, 4095), (16 * MIB, 255), (64 * MIB, 63), (GIB, 3)] {
            let size = size(bytes);
            assert_eq!(size.bytes(), bytes);
            assert_eq!(size.segments_per_log(), per_log, "{bytes}");
            assert_eq!(size.mask(), bytes * u64::from(per_log), "{bytes}");
        }
        assert_eq!(SegmentSize::DEFAULT.mask(), 0xFF00_0000);
        assert_eq!(SegmentSize::default(), size(16 * MIB));
        assert_eq!(SegmentSize::try_from(2 * MIB).unwrap().bytes(), 2 * MIB);
    }

    #[test]
    fn invalid_segment_sizes_are_rejected() {
        for bytes in [0, 1, 512 * 1024, 3 * MIB, 2 * GIB, 16 * MIB + 1, u64::MAX] {
            let err = SegmentSize::new(bytes).unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::Usage, "{bytes}");
            assert!(err.to_string().contains("power of two"), "{err}");
        }
    }

    #[test]
    fn segment_names_cross_log_boundaries() {
        let names: Vec<String> = segment_names(
            "0000000100000001000000FD",
            Some("000000010000000200000002"),
            Some(SegmentSize::DEFAULT),
        )
        .unwrap()
        .collect();
        assert_eq!(
            names,
            [
                "0000000100000001000000FD",
                "0000000100000001000000FE",
                "0000000100000001000000FF",
                "000000010000000200000000",
                "000000010000000200000001",
                "000000010000000200000002",
            ]
        );

        let names: Vec<String> = segment_names(
            "000000010000000500000067",
            Some("000000010000000700000067"),
            Some(SegmentSize::DEFAULT),
        )
        .unwrap()
        .collect();
        assert_eq!(names.len(), 513);
        assert_eq!(names.first().unwrap(), "000000010000000500000067");
        assert_eq!(names.last().unwrap(), "000000010000000700000067");
        assert!(names.windows(2).all(|pair| pair[0] < pair[1]));

        // 1 GiB: four segments per log.
        let names: Vec<String> = segment_names(
            "000000010000000000000002",
            Some("000000010000000100000001"),
            Some(size(GIB)),
        )
        .unwrap()
        .collect();
        assert_eq!(
            names,
            [
                "000000010000000000000002",
                "000000010000000000000003",
                "000000010000000100000000",
                "000000010000000100000001",
            ]
        );
    }

    #[test]
    fn segment_names_with_unknown_size_go_to_0x7ffff() {
        let names: Vec<String> = segment_names(
            "0000000100000001000000FE",
            Some("000000010000000100000101"),
            None,
        )
        .unwrap()
        .collect();
        assert_eq!(names.len(), 4);
        assert_eq!(names[2], "000000010000000100000100");

        let names: Vec<String> = segment_names(
            "00000001000000010007FFFE",
            Some("000000010000000200000001"),
            None,
        )
        .unwrap()
        .collect();
        assert_eq!(
            names,
            [
                "00000001000000010007FFFE",
                "00000001000000010007FFFF",
                "000000010000000200000000",
                "000000010000000200000001",
            ]
        );
    }

    #[test]
    fn segment_names_edges() {
        // Forever: keeps going across logs.
        let mut forever =
            segment_names("0000000100000001000000FF", None, Some(SegmentSize::DEFAULT)).unwrap();
        assert_eq!(forever.next().unwrap(), "0000000100000001000000FF");
        assert_eq!(forever.nth(256).unwrap(), "000000010000000300000000");

        // ...until the end of the address space.
        let tail: Vec<String> =
            segment_names("00000001FFFFFFFF000000FE", None, Some(SegmentSize::DEFAULT))
                .unwrap()
                .collect();
        assert_eq!(
            tail,
            ["00000001FFFFFFFF000000FE", "00000001FFFFFFFF000000FF"]
        );

        // End before begin: nothing. Begin == end: one name.
        assert_eq!(
            segment_names(
                "000000010000000200000000",
                Some("000000010000000100000000"),
                None
            )
            .unwrap()
            .count(),
            0
        );
        let one: Vec<String> = segment_names(
            "00000001000000010000000a",
            Some("00000001000000010000000A"),
            None,
        )
        .unwrap()
        .collect();
        assert_eq!(one, ["00000001000000010000000A"]);

        // .backup/.partial decode to their segment, as in Barman.
        let names: Vec<String> = segment_names(
            "000000010000000100000001.00000028.backup",
            Some("000000010000000100000002.partial"),
            Some(SegmentSize::DEFAULT),
        )
        .unwrap()
        .collect();
        assert_eq!(
            names,
            ["000000010000000100000001", "000000010000000100000002"]
        );
    }

    #[test]
    fn segment_names_reject_bad_input() {
        let err = segment_names(
            "000000010000000100000001",
            Some("000000020000000100000002"),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("same timeline"), "{err}");
        assert!(segment_names("00000001.history", None, None).is_err());
        assert!(segment_names("bogus", None, None).is_err());
        assert!(segment_names("000000010000000100000001", Some("bogus"), None).is_err());
        assert!(segment_names("000000010000000100000001", Some("00000001.history"), None).is_err());
    }

    #[test]
    fn next_and_previous_wrap_at_segments_per_log() {
        let default = SegmentSize::DEFAULT;
        assert_eq!(
            next_segment_name("000000010000000100000001", default).unwrap(),
            "000000010000000100000002"
        );
        assert_eq!(
            next_segment_name("0000000100000001000000FF", default).unwrap(),
            "000000010000000200000000"
        );
        assert_eq!(
            next_segment_name("0000000100000001000000fe", default).unwrap(),
            "0000000100000001000000FF"
        );
        assert_eq!(
            next_segment_name("000000010000000100000003", size(GIB)).unwrap(),
            "000000010000000200000000"
        );
        assert_eq!(
            next_segment_name("000000010000000100000FFF", size(MIB)).unwrap(),
            "000000010000000200000000"
        );
        assert_eq!(
            previous_segment_name("000000010000000200000000", default).unwrap(),
            "0000000100000001000000FF"
        );
        assert_eq!(
            previous_segment_name("000000010000000200000000", size(64 * MIB)).unwrap(),
            "00000001000000010000003F"
        );
        assert_eq!(
            previous_segment_name("000000010000000200000000", size(MIB)).unwrap(),
            "000000010000000100000FFF"
        );
        assert_eq!(
            previous_segment_name("00000001000000020000000a", default).unwrap(),
            "000000010000000200000009"
        );
        for name in ["000000010000000A00000042", "0000000100000000000000FF"] {
            let next = next_segment_name(name, default).unwrap();
            assert_eq!(previous_segment_name(&next, default).unwrap(), name);
        }
    }

    #[test]
    fn next_and_previous_reject_bad_names_and_the_ends() {
        let default = SegmentSize::DEFAULT;
        for bad in [
            "",
            "bogus",
            "00000001000000000000001",
            "00000001.history",
            "000000010000000100000001.partial",
            "000000010000000100000001.00000028.backup",
        ] {
            assert!(next_segment_name(bad, default).is_err(), "{bad}");
            assert!(previous_segment_name(bad, default).is_err(), "{bad}");
        }
        assert!(previous_segment_name("000000010000000000000000", default).is_err());
        assert!(next_segment_name("00000001FFFFFFFF000000FF", default).is_err());
    }

    #[test]
    fn lsns_parse_and_format() {
        let cases = [
            ("0/0", 0),
            ("2/82000168", 0x2_8200_0168),
            ("16/B374D848", 0x16_B374_D848),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
            ("0/1000000", 0x100_0000),
        ];
        for (text, lsn) in cases {
            assert_eq!(parse_lsn(text), Some(lsn), "{text}");
            assert_eq!(format_lsn(lsn), text);
            assert_eq!(parse_lsn(&format_lsn(lsn)), Some(lsn));
        }
        assert_eq!(parse_lsn("16/b374d848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("00000002/00000001"), Some(0x2_0000_0001));
        for bad in [
            "",
            "/",
            "1/",
            "/1",
            "1",
            "1/2/3",
            "G/0",
            "0/+1",
            " 1/2",
            "1/2 ",
            "100000000/0",
            "0/100000000",
        ] {
            assert_eq!(parse_lsn(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lsns_map_to_segment_and_offset() {
        let cases = [
            // (lsn, size, file, offset)
            (0x2_8200_0168, 16 * MIB, "000000010000000200000082", 0x168),
            (0x0_0000_0000, 16 * MIB, "000000010000000000000000", 0),
            (
                0x1_FFFF_FFFF,
                16 * MIB,
                "0000000100000001000000FF",
                0xFF_FFFF,
            ),
            (0x2_8210_0168, MIB, "000000010000000200000821", 0x168),
            (
                0x2_8200_0168,
                64 * MIB,
                "000000010000000200000020",
                0x200_0168,
            ),
            (0x2_8200_0168, GIB, "000000010000000200000002", 0x200_0168),
            (0x1_C000_0010, GIB, "000000010000000100000003", 0x10),
        ];
        for (lsn, bytes, file, offset) in cases {
            let size = size(bytes);
            assert_eq!(
                lsn_to_segment(lsn, 1, size),
                (file.to_owned(), offset),
                "{} @ {bytes}",
                format_lsn(lsn)
            );
            assert_eq!(segment_to_lsn(file, offset, size).unwrap(), lsn);
        }
        assert_eq!(
            lsn_to_segment(0x2_8200_0168, 0x148, SegmentSize::DEFAULT).0,
            "000001480000000200000082"
        );
        assert!(segment_to_lsn("00000001.history", 0, SegmentSize::DEFAULT).is_err());
    }

    #[test]
    fn names_sort_in_byte_order() {
        let mut names: Vec<WalName> = [
            "000000020000000000000001",
            "000000010000000000000002",
            "00000002.history",
            "000000010000000000000001.partial",
            "0000000100000000000000ff",
            "000000010000000000000001.00000028.backup",
            "0000000100000000000000FF",
            "000000010000000000000001",
            "000000020000000000000000",
        ]
        .iter()
        .map(|name| WalName::parse(name).unwrap())
        .collect();
        names.sort();
        let sorted: Vec<&str> = names.iter().map(WalName::as_str).collect();
        assert_eq!(
            sorted,
            [
                "000000010000000000000001",
                "000000010000000000000001.00000028.backup",
                "000000010000000000000001.partial",
                "000000010000000000000002",
                "0000000100000000000000FF",
                // Lower case sorts after upper case (docs/barman-formats.md#name-order).
                "0000000100000000000000ff",
                // History of timeline 2: after every timeline-1 segment, before timeline 2's.
                "00000002.history",
                "000000020000000000000000",
                "000000020000000000000001",
            ]
        );
        // The order is the plain string order Barman uses.
        let mut strings: Vec<&str> = sorted.clone();
        strings.sort_unstable();
        assert_eq!(strings, sorted);
    }

    #[test]
    fn equality_is_by_name() {
        let upper = WalName::parse("00000001000000AB000000CD").unwrap();
        let lower = WalName::parse("00000001000000ab000000cd").unwrap();
        assert_ne!(upper, lower);
        assert_eq!(upper.hash_dir(), lower.hash_dir());
        assert_eq!(
            upper,
            WalName::parse("/q/00000001000000AB000000CD").unwrap()
        );
    }

    #[test]
    fn kinds_and_names_serialize_as_strings() {
        assert_eq!(
            serde_json::to_string(&WalKind::Segment).unwrap(),
            "\"segment\""
        );
        assert_eq!(
            serde_json::to_string(&WalKind::History).unwrap(),
            "\"history\""
        );
        assert_eq!(
            serde_json::from_str::<WalKind>("\"partial\"").unwrap(),
            WalKind::Partial
        );
        assert_eq!(WalKind::Backup.to_string(), "backup");
        assert_eq!(WalKind::Backup.as_str(), "backup");

        let name = WalName::parse("000000010000000A00000042").unwrap();
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, "\"000000010000000A00000042\"");
        assert_eq!(serde_json::from_str::<WalName>(&json).unwrap(), name);
        assert!(serde_json::from_str::<WalName>("\"nope\"").is_err());
    }
}
