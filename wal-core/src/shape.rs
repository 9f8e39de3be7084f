//! Does a file have the shape of PostgreSQL WAL for the name it is stored under?
//!
//! A wrong file in the archive is found late and expensively: at recovery, when PostgreSQL
//! stops on "invalid magic number" or "unexpected pageaddr" and no other copy exists. So
//! walpipe looks at every file twice, cheaply: on the plaintext before storing it (while
//! the source still exists), and on the restored file before handing it to PostgreSQL. A
//! truncated copy, a segment under another segment's name, a zero-filled file, garbage or
//! ciphertext is refused there, with one line saying what is wrong.
//!
//! Only what identifies a file is read, never WAL records: for segments the long page
//! header that opens them (the first [`HEADER_LENGTH`] bytes) and the file's size; history
//! files and backup labels are small text files and are read whole. Everything here is
//! pure and never panics on any input (a fuzz target drives it with arbitrary bytes).
//!
//! Segments are read as PostgreSQL lays them out on little-endian machines that align
//! 64-bit integers to 8 bytes (x86-64, arm64, 32-bit ARM). WAL of big-endian servers and
//! of 32-bit x86, where the long header has no padding, is refused: walpipe does not read
//! it.

use crate::names::{SegmentSize, WalKind, WalName, format_lsn, parse_lsn};

/// Bytes of the long page header that opens every segment (`SizeOfXLogLongPHD`): what
/// [`check_segment`] and [`check_partial`] need of a file's head.
pub const HEADER_LENGTH: usize = 40;

/// The largest history file accepted. A history file gains one line of about 100 bytes per
/// timeline switch, so 4 MiB is tens of thousands of switches; the bound lets callers read
/// the whole file into memory without trusting its size.
pub const MAX_HISTORY_SIZE: u64 = 4 << 20;

/// The largest backup label accepted: PostgreSQL writes ten short lines and a label of at
/// most 1 KiB.
pub const MAX_BACKUP_LABEL_SIZE: u64 = 64 << 10;

/// The page magic of each PostgreSQL major release, with the release.
///
/// The server changes its `XLOG_PAGE_MAGIC` whenever the WAL format changes while a
/// release is developed, and never within a release, so the magic tells which release wrote
/// a segment. Values as each release defines them, 9.4 to 18 (15's checked against
/// segments written by a real 15 server). A release that is not listed is refused: add its
/// magic once it is released, not from a beta, whose magic may still change (19's did,
/// between its betas).
const PAGE_MAGICS: [(u16, &str); 12] = [
    (0xD07E, "9.4"),
    (0xD087, "9.5"),
    (0xD093, "9.6"),
    (0xD097, "10"),
    (0xD098, "11"),
    (0xD101, "12"),
    (0xD106, "13"),
    (0xD10D, "14"),
    (0xD110, "15"),
    (0xD113, "16"),
    (0xD116, "17"),
    (0xD118, "18"),
];

/// `XLP_LONG_HEADER`: the flag of the first page of every segment, whose header carries
/// the system identifier and the sizes.
const XLP_LONG_HEADER: u16 = 0x0002;

/// Every `xlp_info` flag bit some supported release defines. Releases differ (9.4 to 13
/// define 0x7; 0x8 was added later and back-patched), and any other bit makes PostgreSQL
/// refuse the page as "invalid info bits".
const XLP_ALL_FLAGS: u16 = 0x000F;

/// `XLOG_BLCKSZ` can be built from 1 KiB to 64 KiB, in powers of two (8 KiB by default).
const MIN_BLOCK_SIZE: u32 = 1 << 10;
/// See [`MIN_BLOCK_SIZE`].
const MAX_BLOCK_SIZE: u32 = 1 << 16;

/// The lines a backup label must have: they say which WAL the backup needs.
const START_WAL_LOCATION: &str = "START WAL LOCATION";
/// See [`START_WAL_LOCATION`].
const STOP_WAL_LOCATION: &str = "STOP WAL LOCATION";

/// The long page header of a segment (`XLogLongPageHeaderData`), once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongHeader {
    /// `xlp_magic`: the WAL format, hence the release that wrote it.
    pub magic: u16,
    /// `xlp_info`: page flags, `XLP_LONG_HEADER` always among them.
    pub info: u16,
    /// `xlp_tli`: the timeline of the page's first record; older than the name's on the
    /// first segment of a new timeline.
    pub timeline: u32,
    /// `xlp_pageaddr`: the LSN of the segment's first byte.
    pub page_address: u64,
    /// `xlp_sysid`: the system identifier of the cluster that wrote the segment.
    pub system_identifier: u64,
    /// `xlp_seg_size`: the cluster's WAL segment size.
    pub segment_size: SegmentSize,
    /// `xlp_xlog_blcksz`: the size of a WAL page.
    pub block_size: u32,
    /// The major release the magic belongs to, written as PostgreSQL writes its major
    /// version: `9.6`, `15`.
    pub pg_version: &'static str,
}

/// Why a file does not have the shape of WAL for its name. Each renders as one line that
/// leaves the file's name to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    /// A segment check was asked of a name that denotes no segment.
    #[error("a {kind} file name does not denote a WAL segment")]
    NotSegmentName {
        /// What the name denotes.
        kind: WalKind,
    },
    /// The file cannot hold a segment's first page header.
    #[error("size {size} is too small for WAL: a segment opens with a {HEADER_LENGTH}-byte header")]
    TooSmall {
        /// The file's size.
        size: u64,
    },
    /// The caller gave fewer bytes of the file than the check needs.
    #[error("only {given} bytes of the file were given; the check needs its first {needed}")]
    ShortHead {
        /// Bytes given.
        given: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// The segment's header is all zeros: a pre-allocated file nothing was written to.
    #[error("first page header is all zeros: nothing was ever written to this segment")]
    Zeroed,
    /// A partial segment starts blank but has data further on, which pg_receivewal (it
    /// writes from the start) never leaves.
    #[error("first page header is all zeros but byte {offset} is not")]
    NotBlank {
        /// The first non-zero byte.
        offset: usize,
    },
    /// A blank partial segment larger than any segment.
    #[error("size {size} exceeds the largest WAL segment size {max}", max = SegmentSize::MAX.bytes())]
    BlankTooLarge {
        /// The file's size.
        size: u64,
    },
    /// The page magic of no known release.
    #[error("not WAL: unknown page magic {magic:#06X}")]
    UnknownMagic {
        /// `xlp_magic` as read.
        magic: u16,
    },
    /// A known magic with its bytes swapped: WAL of a big-endian server.
    #[error(
        "page magic {magic:#06X} is PostgreSQL {pg_version}'s byte-swapped: WAL of a \
         big-endian server, which walpipe does not read"
    )]
    ByteSwapped {
        /// `xlp_magic` as read.
        magic: u16,
        /// The release whose magic it is, once swapped.
        pg_version: &'static str,
    },
    /// The first page lacks `XLP_LONG_HEADER`: this is not the start of a segment.
    #[error("first page has no long header (xlp_info {info:#06X})")]
    NoLongHeader {
        /// `xlp_info` as read.
        info: u16,
    },
    /// Flag bits no release defines.
    #[error("unknown flag bits in xlp_info {info:#06X}")]
    UnknownFlags {
        /// `xlp_info` as read.
        info: u16,
    },
    /// `xlp_seg_size` is not a size `initdb` accepts.
    #[error("header segment size {size} is not a power of two from 1 MiB to 1 GiB")]
    BadSegmentSize {
        /// `xlp_seg_size` as read.
        size: u32,
    },
    /// `xlp_xlog_blcksz` is not a page size PostgreSQL can be built with.
    #[error("header block size {size} is not a power of two from 1 KiB to 64 KiB")]
    BadBlockSize {
        /// `xlp_xlog_blcksz` as read.
        size: u32,
    },
    /// The name's segment number does not exist with the header's segment size.
    #[error(
        "segment {segment:X} of the name does not exist with the header's segment size \
         {segment_size} (the last of a log is {last:X})"
    )]
    SegmentBeyondLog {
        /// The name's `SSSSSSSS`.
        segment: u32,
        /// The highest segment number of a log with that size.
        last: u32,
        /// The header's segment size.
        segment_size: u64,
    },
    /// The segment starts at another LSN than its name says: another segment's bytes.
    #[error(
        "page address {} does not match the name (expected {})",
        format_lsn(*.found),
        format_lsn(*.expected)
    )]
    PageAddress {
        /// `xlp_pageaddr` as read.
        found: u64,
        /// The LSN the name denotes.
        expected: u64,
    },
    /// Timeline 0 does not exist.
    #[error("header timeline 0 is not a timeline")]
    TimelineZero,
    /// The header's timeline is newer than the name's: no server writes that.
    #[error("header timeline {header} is newer than the name's timeline {name}")]
    TimelineNewer {
        /// `xlp_tli` as read.
        header: u32,
        /// The name's timeline.
        name: u32,
    },
    /// A segment whose size is not its header's segment size: truncated or padded.
    #[error("size {size} is not the segment size {segment_size} of its header")]
    SizeMismatch {
        /// The file's size.
        size: u64,
        /// The header's segment size.
        segment_size: u64,
    },
    /// A partial segment larger than a segment.
    #[error("size {size} exceeds the segment size {segment_size} of its header")]
    PartialTooLarge {
        /// The file's size.
        size: u64,
        /// The header's segment size.
        segment_size: u64,
    },
    /// A history file or backup label beyond its bound.
    #[error("size {size} is too large for a {kind} file (at most {limit} bytes)")]
    TooLarge {
        /// What the name denotes.
        kind: WalKind,
        /// The file's size.
        size: u64,
        /// The bound.
        limit: u64,
    },
    /// Part of a file that is checked whole.
    #[error("only {given} of the file's {size} bytes were given; a {kind} file is checked whole")]
    Incomplete {
        /// What the name denotes.
        kind: WalKind,
        /// Bytes given.
        given: usize,
        /// The file's size.
        size: u64,
    },
    /// A control byte no text file has: binary data.
    #[error("not text: byte {byte:#04X} at offset {offset}")]
    NotText {
        /// The byte.
        byte: u8,
        /// Its offset in the file.
        offset: usize,
    },
    /// A history file without a single timeline switch.
    #[error("history file has no timeline switch line")]
    HistoryEmpty,
    /// A history line PostgreSQL would refuse.
    #[error("history file line {line}: {expected}")]
    HistorySyntax {
        /// 1-based line number.
        line: usize,
        /// What was expected there.
        expected: &'static str,
    },
    /// Parent timelines that do not increase.
    #[error(
        "history file line {line}: parent timeline {parent} does not follow the previous \
         line's {previous}"
    )]
    HistoryOrder {
        /// 1-based line number.
        line: usize,
        /// The line's parent timeline.
        parent: u32,
        /// The previous line's.
        previous: u32,
    },
    /// A parent timeline that is not older than the timeline the file belongs to.
    #[error(
        "history file line {line}: parent timeline {parent} is not older than the file's \
         timeline {timeline}"
    )]
    HistoryParent {
        /// 1-based line number.
        line: usize,
        /// The line's parent timeline.
        parent: u32,
        /// The timeline of the file's name.
        timeline: u32,
    },
    /// A backup label without one of the lines that say which WAL the backup needs.
    #[error("backup label has no {key} line")]
    BackupMissing {
        /// The missing line's key.
        key: &'static str,
    },
    /// A location line that is not `KEY: X/X (file NAME)`.
    #[error("backup label line {line}: {key} is not `X/X (file NAME)`")]
    BackupSyntax {
        /// 1-based line number.
        line: usize,
        /// The line's key.
        key: &'static str,
    },
    /// The label's start location is not the one its name encodes.
    #[error(
        "backup label START WAL LOCATION {} (file {file}) does not match the name",
        format_lsn(*.lsn)
    )]
    BackupName {
        /// The start LSN.
        lsn: u64,
        /// The segment the label names.
        file: String,
    },
    /// A backup that stops before it starts.
    #[error(
        "backup label STOP WAL LOCATION {} is before START WAL LOCATION {}",
        format_lsn(*.stop),
        format_lsn(*.start)
    )]
    BackupStopBeforeStart {
        /// The start LSN.
        start: u64,
        /// The stop LSN.
        stop: u64,
    },
}

/// The release whose page magic `magic` is (`"9.4"` … `"18"`), if any.
#[must_use]
pub fn pg_version_of_magic(magic: u16) -> Option<&'static str> {
    PAGE_MAGICS
        .iter()
        .find(|&&(known, _)| known == magic)
        .map(|&(_, version)| version)
}

/// Checks any WAL file by what its name denotes; the header of segments and non-blank
/// partial segments is returned.
///
/// `head` is the file's first bytes: for segments and partial segments at least
/// [`HEADER_LENGTH`] (or the whole file if shorter; more is fine), for history files and
/// backup labels the whole file. `file_size` is the file's size.
pub fn check(
    name: &WalName,
    head: &[u8],
    file_size: u64,
) -> Result<Option<LongHeader>, ShapeError> {
    match name.kind() {
        WalKind::Segment => check_segment(name, head, file_size).map(Some),
        WalKind::Partial => check_partial(name, head, file_size),
        WalKind::History => {
            let text = whole(WalKind::History, head, file_size, MAX_HISTORY_SIZE)?;
            check_history(name, text).map(|()| None)
        }
        WalKind::Backup => {
            let text = whole(WalKind::Backup, head, file_size, MAX_BACKUP_LABEL_SIZE)?;
            check_backup_label(name, text).map(|()| None)
        }
    }
}

/// How many bytes of a file's plaintext its check reads: a segment's long page header, or
/// a whole history file or backup label (one byte beyond the largest allowed, so that a
/// larger one is seen to be too large).
#[must_use]
pub fn head_length(name: &WalName) -> u64 {
    match name.kind() {
        WalKind::History => MAX_HISTORY_SIZE + 1,
        WalKind::Backup => MAX_BACKUP_LABEL_SIZE + 1,
        WalKind::Segment | WalKind::Partial => HEADER_LENGTH as u64,
    }
}

/// Reads from `plaintext` what the check of `name` needs ([`head_length`] bytes at most).
pub fn read_head(name: &WalName, plaintext: impl std::io::Read) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut head = Vec::new();
    plaintext.take(head_length(name)).read_to_end(&mut head)?;
    Ok(head)
}

/// [`check`] for a file whose plaintext size is not known without reading it all (a
/// compressed file): everything but the size. For a segment the size its own header
/// claims is taken; a partial segment must be blank or open with a valid header; a
/// history file or backup label must be given whole (`head` holds it all, unless it is
/// larger than its limit, which is then refused).
pub fn check_head(name: &WalName, head: &[u8]) -> Result<Option<LongHeader>, ShapeError> {
    let claimed = match name.kind() {
        // Shorter than a header: the plaintext ended there. A zero claim is no claim:
        // the header check then says what is wrong with the header.
        WalKind::Segment | WalKind::Partial => match head.get(32..36) {
            Some(b) if head.len() >= HEADER_LENGTH => {
                match u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])) {
                    0 => u64::MAX,
                    claimed => claimed,
                }
            }
            _ => head.len() as u64,
        },
        WalKind::History | WalKind::Backup => head.len() as u64,
    };
    match name.kind() {
        // A partial's real size is not known: only its first page can be judged.
        WalKind::Partial => check_partial(name, head, head.len() as u64),
        _ => check(name, head, claimed),
    }
}

/// Checks a complete segment: a valid long header for the segment `name` denotes, and
/// exactly the header's segment size.
pub fn check_segment(
    name: &WalName,
    head: &[u8],
    file_size: u64,
) -> Result<LongHeader, ShapeError> {
    let position = segment_position(name)?;
    if file_size < HEADER_LENGTH as u64 {
        return Err(ShapeError::TooSmall { size: file_size });
    }
    let header = read_header(name, position, within(head, file_size))?;
    if file_size != header.segment_size.bytes() {
        return Err(ShapeError::SizeMismatch {
            size: file_size,
            segment_size: header.segment_size.bytes(),
        });
    }
    Ok(header)
}

/// Checks a partial segment: `None` when nothing was streamed into it yet, else its
/// header, valid as a segment's, with a size of at most the header's segment size.
///
/// Nothing streamed yet takes two forms: an empty file (Barman creates them) and a file
/// whose head is all zeros (pg_receivewal fills a new segment with zeros before writing).
/// pg_receivewal always streams from a segment's start, so once anything arrived the file
/// opens with the segment's long header.
pub fn check_partial(
    name: &WalName,
    head: &[u8],
    file_size: u64,
) -> Result<Option<LongHeader>, ShapeError> {
    let position = segment_position(name)?;
    if file_size == 0 {
        return Ok(None);
    }
    let head = within(head, file_size);
    let needed = usize::try_from(file_size).map_or(HEADER_LENGTH, |size| size.min(HEADER_LENGTH));
    let Some(first) = head.get(..needed) else {
        return Err(ShapeError::ShortHead {
            given: head.len(),
            needed,
        });
    };
    if is_zero(first) {
        if let Some(offset) = head.iter().position(|&byte| byte != 0) {
            return Err(ShapeError::NotBlank { offset });
        }
        if file_size > SegmentSize::MAX.bytes() {
            return Err(ShapeError::BlankTooLarge { size: file_size });
        }
        return Ok(None);
    }
    if file_size < HEADER_LENGTH as u64 {
        return Err(ShapeError::TooSmall { size: file_size });
    }
    let header = read_header(name, position, head)?;
    if file_size > header.segment_size.bytes() {
        return Err(ShapeError::PartialTooLarge {
            size: file_size,
            segment_size: header.segment_size.bytes(),
        });
    }
    Ok(Some(header))
}

/// Checks a timeline history file, whole, as PostgreSQL reads one when recovery follows
/// the timeline of `name`.
///
/// Lines are `<parent timeline>\t<switch point X/X>\t<reason>`; leading whitespace, blank
/// lines and `#` comments are skipped, fields may be separated by any whitespace and the
/// reason may be missing, as in the server's reader. Parent timelines must increase and be
/// older than the file's own. A file without a single switch line is refused, although the
/// server would read it as "no parents": it never writes one, so it can only be a truncated
/// copy, which would send recovery down the wrong history.
pub fn check_history(name: &WalName, text: &[u8]) -> Result<(), ShapeError> {
    check_text(WalKind::History, text, MAX_HISTORY_SIZE)?;
    let timeline = name.timeline();
    let mut previous: Option<u32> = None;
    for (index, line) in text.split(|&byte| byte == b'\n').enumerate() {
        let number = index + 1;
        let Some(parent) = history_parent(line).map_err(|expected| ShapeError::HistorySyntax {
            line: number,
            expected,
        })?
        else {
            continue;
        };
        if let Some(previous) = previous
            && parent <= previous
        {
            return Err(ShapeError::HistoryOrder {
                line: number,
                parent,
                previous,
            });
        }
        if parent >= timeline {
            return Err(ShapeError::HistoryParent {
                line: number,
                parent,
                timeline,
            });
        }
        previous = Some(parent);
    }
    match previous {
        Some(_) => Ok(()),
        None => Err(ShapeError::HistoryEmpty),
    }
}

/// Checks a backup label (backup history file), whole: text with a `START WAL LOCATION`
/// and a `STOP WAL LOCATION` line, the start being the location `name` encodes.
///
/// Other lines (`CHECKPOINT LOCATION`, `BACKUP METHOD`, `LABEL`, … which vary between
/// releases) are not checked: the label text is the user's and may hold anything. Bytes
/// above 0x7F are allowed because labels are in the server's encoding, not always UTF-8.
pub fn check_backup_label(name: &WalName, text: &[u8]) -> Result<(), ShapeError> {
    check_text(WalKind::Backup, text, MAX_BACKUP_LABEL_SIZE)?;
    let mut start = None;
    let mut stop = None;
    for (index, line) in text.split(|&byte| byte == b'\n').enumerate() {
        for (key, found) in [
            (START_WAL_LOCATION, &mut start),
            (STOP_WAL_LOCATION, &mut stop),
        ] {
            let Some(value) = line
                .strip_prefix(key.as_bytes())
                .and_then(|rest| rest.strip_prefix(b":"))
            else {
                continue;
            };
            if found.is_none() {
                *found = Some(location(value).ok_or(ShapeError::BackupSyntax {
                    line: index + 1,
                    key,
                })?);
            }
        }
    }
    let (start, file) = start.ok_or(ShapeError::BackupMissing {
        key: START_WAL_LOCATION,
    })?;
    let (stop, _) = stop.ok_or(ShapeError::BackupMissing {
        key: STOP_WAL_LOCATION,
    })?;
    if stop < start {
        return Err(ShapeError::BackupStopBeforeStart { start, stop });
    }
    if !start_matches_name(start, &file, name) {
        return Err(ShapeError::BackupName {
            lsn: start,
            file: file.as_str().to_owned(),
        });
    }
    Ok(())
}

/// `(log, segment)` of a segment-bearing name.
fn segment_position(name: &WalName) -> Result<(u32, u32), ShapeError> {
    match (name.log(), name.segment()) {
        (Some(log), Some(segment)) => Ok((log, segment)),
        _ => Err(ShapeError::NotSegmentName { kind: name.kind() }),
    }
}

/// The part of `head` that lies within the file: a caller may read past a file that
/// shrank, and those bytes are not the file's.
fn within(head: &[u8], file_size: u64) -> &[u8] {
    let size = usize::try_from(file_size).map_or(head.len(), |size| size.min(head.len()));
    head.get(..size).unwrap_or(head)
}

/// `head` of a text file checked whole, refused when it is not the whole file or the file
/// is beyond `limit`.
fn whole(kind: WalKind, head: &[u8], file_size: u64, limit: u64) -> Result<&[u8], ShapeError> {
    if file_size > limit {
        return Err(ShapeError::TooLarge {
            kind,
            size: file_size,
            limit,
        });
    }
    usize::try_from(file_size)
        .ok()
        .and_then(|size| head.get(..size))
        .ok_or(ShapeError::Incomplete {
            kind,
            given: head.len(),
            size: file_size,
        })
}

/// Reads and checks the long header at the start of `head` for the segment at
/// `(log, segment)` of `name`; the file's size is the caller's to check.
fn read_header(
    name: &WalName,
    (log, segment): (u32, u32),
    head: &[u8],
) -> Result<LongHeader, ShapeError> {
    let Some(bytes) = head.first_chunk::<HEADER_LENGTH>() else {
        return Err(ShapeError::ShortHead {
            given: head.len(),
            needed: HEADER_LENGTH,
        });
    };
    if is_zero(bytes) {
        return Err(ShapeError::Zeroed);
    }
    // XLogLongPageHeaderData: the 20-byte page header (magic, info, timeline, page address,
    // remaining length of a record continued from the previous page), 4 bytes of padding
    // to align the 64-bit system identifier, then the segment and page sizes.
    let magic = u16::from_le_bytes([bytes[0], bytes[1]]);
    let info = u16::from_le_bytes([bytes[2], bytes[3]]);
    let timeline = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let page_address = u64::from_le_bytes([
        bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
    ]);
    let system_identifier = u64::from_le_bytes([
        bytes[24], bytes[25], bytes[26], bytes[27], bytes[28], bytes[29], bytes[30], bytes[31],
    ]);
    let segment_size = u32::from_le_bytes([bytes[32], bytes[33], bytes[34], bytes[35]]);
    let block_size = u32::from_le_bytes([bytes[36], bytes[37], bytes[38], bytes[39]]);

    let Some(pg_version) = pg_version_of_magic(magic) else {
        return Err(match pg_version_of_magic(magic.swap_bytes()) {
            Some(pg_version) => ShapeError::ByteSwapped { magic, pg_version },
            None => ShapeError::UnknownMagic { magic },
        });
    };
    if info & XLP_LONG_HEADER == 0 {
        return Err(ShapeError::NoLongHeader { info });
    }
    if info & !XLP_ALL_FLAGS != 0 {
        return Err(ShapeError::UnknownFlags { info });
    }
    let Ok(segment_size_checked) = SegmentSize::new(u64::from(segment_size)) else {
        return Err(ShapeError::BadSegmentSize { size: segment_size });
    };
    if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(ShapeError::BadBlockSize { size: block_size });
    }
    // The name's segment number counts segments of the header's size within the log, so
    // it is meaningful only up to the last segment of a log of that size.
    let last = segment_size_checked.segments_per_log();
    if segment > last {
        return Err(ShapeError::SegmentBeyondLog {
            segment,
            last,
            segment_size: segment_size_checked.bytes(),
        });
    }
    // segment <= last keeps segment * size below 2^32: no overflow.
    let expected = (u64::from(log) << 32) + u64::from(segment) * segment_size_checked.bytes();
    if page_address != expected {
        return Err(ShapeError::PageAddress {
            found: page_address,
            expected,
        });
    }
    if timeline == 0 {
        return Err(ShapeError::TimelineZero);
    }
    // Older is legitimate: the first segment of a new timeline starts with the old
    // timeline's pages up to the switch point.
    if timeline > name.timeline() {
        return Err(ShapeError::TimelineNewer {
            header: timeline,
            name: name.timeline(),
        });
    }
    Ok(LongHeader {
        magic,
        info,
        timeline,
        page_address,
        system_identifier,
        segment_size: segment_size_checked,
        block_size,
        pg_version,
    })
}

/// All bytes zero.
fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&byte| byte == 0)
}

/// Refuses files beyond `limit` and bytes no text has: NUL and the control characters
/// other than whitespace. Bytes above 0x7F pass: the server writes restore point names and
/// labels in its own encoding.
fn check_text(kind: WalKind, text: &[u8], limit: u64) -> Result<(), ShapeError> {
    let size = text.len() as u64;
    if size > limit {
        return Err(ShapeError::TooLarge { kind, size, limit });
    }
    match text
        .iter()
        .enumerate()
        .find(|&(_, &byte)| (byte < 0x20 && !is_space(byte)) || byte == 0x7F)
    {
        Some((offset, &byte)) => Err(ShapeError::NotText { byte, offset }),
        None => Ok(()),
    }
}

/// C's `isspace` in the C locale, which the server's history reader skips.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// `bytes` without its leading whitespace.
fn skip_space(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&byte| !is_space(byte))
        .unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// The parent timeline of a history line, `None` for blank and comment lines.
///
/// The server scans a line with `sscanf("%u\t%X/%X")`: a decimal number, any whitespace,
/// a hex number, a slash right after it, whitespace, a hex number; the rest of the line is
/// ignored. Anything short of all three fields stops recovery.
fn history_parent(line: &[u8]) -> Result<Option<u32>, &'static str> {
    const SWITCH_POINT: &str = "expected a switch point X/X after the parent timeline";
    let rest = skip_space(line);
    if matches!(rest.first(), None | Some(b'#')) {
        return Ok(None);
    }
    let (parent, rest) = number(rest, 10).ok_or("expected a numeric parent timeline ID")?;
    let (_, rest) = number(skip_space(rest), 16).ok_or(SWITCH_POINT)?;
    let rest = rest.strip_prefix(b"/").ok_or(SWITCH_POINT)?;
    number(skip_space(rest), 16).ok_or(SWITCH_POINT)?;
    Ok(Some(parent))
}

/// A leading unsigned number in `radix` (10 or 16) that fits in 32 bits, and what follows.
fn number(bytes: &[u8], radix: u32) -> Option<(u32, &[u8])> {
    let digits = bytes
        .iter()
        .position(|&byte| !char::from(byte).is_digit(radix))
        .unwrap_or(bytes.len());
    if digits == 0 {
        return None;
    }
    let (digits, rest) = bytes.split_at_checked(digits)?;
    let value = digits.iter().try_fold(0u32, |value, &byte| {
        let digit = char::from(byte).to_digit(radix)?;
        value.checked_mul(radix)?.checked_add(digit)
    })?;
    Some((value, rest))
}

/// The LSN and segment of a location line's value, ` X/X (file NAME)`.
fn location(value: &[u8]) -> Option<(u64, WalName)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (lsn, rest) = value.split_once(' ')?;
    let lsn = parse_lsn(lsn)?;
    let file = rest
        .trim_start()
        .strip_prefix("(file ")?
        .strip_suffix(')')?;
    // WalName::parse takes the basename of a path; a label names a bare file.
    if file.contains('/') {
        return None;
    }
    let file = WalName::parse(file).ok()?;
    (file.kind() == WalKind::Segment).then_some((lsn, file))
}

/// Whether a label's start location is the one its name encodes: the same log and
/// segment (the timelines may differ: the server names the label after the timeline the
/// backup stopped on), and an LSN that falls at the name's offset in that segment for some
/// segment size, which the label does not state.
fn start_matches_name(lsn: u64, file: &WalName, name: &WalName) -> bool {
    let (Some(log), Some(segment)) = (name.log(), name.segment()) else {
        return false;
    };
    if file.log() != Some(log) || file.segment() != Some(segment) || lsn >> 32 != u64::from(log) {
        return false;
    }
    let low = lsn & u64::from(u32::MAX);
    let min = SegmentSize::MIN.bytes().trailing_zeros();
    let max = SegmentSize::MAX.bytes().trailing_zeros();
    (min..=max).any(|shift| {
        low >> shift == u64::from(segment)
            && name
                .backup_offset()
                .is_none_or(|offset| low & ((1 << shift) - 1) == u64::from(offset))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const SEGMENT_16_MIB: u64 = 16 * MIB;
    const SYSTEM_IDENTIFIER: u64 = 7_358_302_716_123_456_789;

    /// The first 40 bytes of `000000010000000000000001` written by a PostgreSQL 15 server.
    const REAL_PG15_HEAD: [u8; 40] = [
        0x10, 0xd1, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc2, 0x28, 0xaa, 0x0f, 0xf2, 0xe0,
        0x0d, 0x6a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x20, 0x00, 0x00,
    ];

    fn name(text: &str) -> WalName {
        WalName::parse(text).unwrap()
    }

    /// A long header to synthesize, field by field.
    #[derive(Clone, Copy)]
    struct Header {
        magic: u16,
        info: u16,
        timeline: u32,
        page_address: u64,
        segment_size: u32,
        block_size: u32,
    }

    impl Header {
        /// A PostgreSQL 15 header with 16 MiB segments for the segment at `page_address`.
        fn at(page_address: u64) -> Header {
            Header {
                magic: 0xD110,
                info: XLP_LONG_HEADER,
                timeline: 1,
                page_address,
                segment_size: 16 << 20,
                block_size: 8192,
            }
        }

        fn bytes(self) -> Vec<u8> {
            let mut bytes = Vec::with_capacity(HEADER_LENGTH);
            bytes.extend_from_slice(&self.magic.to_le_bytes());
            bytes.extend_from_slice(&self.info.to_le_bytes());
            bytes.extend_from_slice(&self.timeline.to_le_bytes());
            bytes.extend_from_slice(&self.page_address.to_le_bytes());
            bytes.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(&[0; 4]);
            bytes.extend_from_slice(&SYSTEM_IDENTIFIER.to_le_bytes());
            bytes.extend_from_slice(&self.segment_size.to_le_bytes());
            bytes.extend_from_slice(&self.block_size.to_le_bytes());
            bytes
        }
    }

    /// `000000010000000000000005`, 16 MiB: page address 0/5000000.
    fn segment_5() -> (WalName, Header) {
        (name("000000010000000000000005"), Header::at(0x500_0000))
    }

    fn segment_error(name: &WalName, header: Header, size: u64) -> String {
        check_segment(name, &header.bytes(), size)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn real_postgresql_15_header_is_accepted() {
        let header = check_segment(
            &name("000000010000000000000001"),
            &REAL_PG15_HEAD,
            SEGMENT_16_MIB,
        )
        .unwrap();
        assert_eq!(header.pg_version, "15");
        assert_eq!(header.page_address, 0x100_0000);
        assert_eq!(header.segment_size, SegmentSize::DEFAULT);
        assert_eq!(header.block_size, 8192);
        assert_eq!(header.system_identifier, 0x6a0d_e0f2_0faa_28c2);
        assert_eq!(REAL_PG15_HEAD.len(), HEADER_LENGTH);
    }

    #[test]
    fn valid_segment_yields_its_header() {
        let (name, header) = segment_5();
        let mut head = header.bytes();
        head.resize(8192, 0xAB);
        let found = check_segment(&name, &head, SEGMENT_16_MIB).unwrap();
        assert_eq!(
            found,
            LongHeader {
                magic: 0xD110,
                info: XLP_LONG_HEADER,
                timeline: 1,
                page_address: 0x500_0000,
                system_identifier: SYSTEM_IDENTIFIER,
                segment_size: SegmentSize::DEFAULT,
                block_size: 8192,
                pg_version: "15",
            }
        );
        assert_eq!(check(&name, &head, SEGMENT_16_MIB), Ok(Some(found)));
        // Lower-case names denote the same segment.
        assert!(
            check_segment(
                &self::name("00000001000000000000000a"),
                &Header::at(0xA00_0000).bytes(),
                SEGMENT_16_MIB
            )
            .is_ok()
        );
    }

    #[test]
    fn every_known_magic_names_its_release() {
        let (name, header) = segment_5();
        let versions = [
            "9.4", "9.5", "9.6", "10", "11", "12", "13", "14", "15", "16", "17", "18",
        ];
        assert_eq!(PAGE_MAGICS.len(), versions.len());
        for (&(magic, version), expected) in PAGE_MAGICS.iter().zip(versions) {
            assert_eq!(version, expected);
            assert_eq!(pg_version_of_magic(magic), Some(expected));
            let found = check_segment(&name, &Header { magic, ..header }.bytes(), SEGMENT_16_MIB);
            assert_eq!(found.unwrap().pg_version, expected, "{magic:#06X}");
        }
        // Each release has its own magic, growing with the release.
        assert!(PAGE_MAGICS.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }

    #[test]
    fn unknown_magic_is_refused() {
        let (name, header) = segment_5();
        for magic in [0x1234, 0xD075, 0xD121, 0xFFFF] {
            let message = segment_error(&name, Header { magic, ..header }, SEGMENT_16_MIB);
            assert_eq!(message, format!("not WAL: unknown page magic {magic:#06X}"));
        }
        assert_eq!(
            segment_error(
                &name,
                Header {
                    magic: 0x1234,
                    ..header
                },
                SEGMENT_16_MIB
            ),
            "not WAL: unknown page magic 0x1234"
        );
        // A gzip stream, an OpenPGP message: not WAL.
        let mut gzip = vec![0x1f, 0x8b, 0x08, 0x00];
        gzip.resize(HEADER_LENGTH, 0x55);
        assert_eq!(
            check_segment(&name, &gzip, SEGMENT_16_MIB),
            Err(ShapeError::UnknownMagic { magic: 0x8b1f })
        );
    }

    #[test]
    fn byte_swapped_magic_is_named() {
        let (name, header) = segment_5();
        let message = segment_error(
            &name,
            Header {
                magic: 0x10D1,
                ..header
            },
            SEGMENT_16_MIB,
        );
        assert!(
            message.contains("PostgreSQL 15's byte-swapped"),
            "{message}"
        );
    }

    #[test]
    fn zeroed_segment_is_refused() {
        let zeros = vec![0; 8192];
        let result = check_segment(&name("000000010000000000000005"), &zeros, SEGMENT_16_MIB);
        assert_eq!(result, Err(ShapeError::Zeroed));
    }

    #[test]
    fn long_header_flag_is_required() {
        let (name, header) = segment_5();
        for info in [0x0000, 0x0001, 0x0004] {
            assert_eq!(
                check_segment(&name, &Header { info, ..header }.bytes(), SEGMENT_16_MIB),
                Err(ShapeError::NoLongHeader { info })
            );
        }
        // Every defined flag alongside it is fine.
        for info in [0x0003, 0x0006, 0x000A, 0x000F] {
            assert!(
                check_segment(&name, &Header { info, ..header }.bytes(), SEGMENT_16_MIB).is_ok()
            );
        }
    }

    #[test]
    fn unknown_flag_bits_are_refused() {
        let (name, header) = segment_5();
        for info in [0x0012, 0x8002, 0xFFFF] {
            assert_eq!(
                check_segment(&name, &Header { info, ..header }.bytes(), SEGMENT_16_MIB),
                Err(ShapeError::UnknownFlags { info })
            );
        }
    }

    #[test]
    fn page_address_must_match_the_name() {
        let (name, header) = segment_5();
        assert_eq!(
            segment_error(
                &name,
                Header {
                    page_address: 0x300_0000,
                    ..header
                },
                SEGMENT_16_MIB
            ),
            "page address 0/3000000 does not match the name (expected 0/5000000)"
        );
        // Another log, same segment number.
        assert_eq!(
            segment_error(
                &name,
                Header {
                    page_address: 0x1_0500_0000,
                    ..header
                },
                SEGMENT_16_MIB
            ),
            "page address 1/5000000 does not match the name (expected 0/5000000)"
        );
        // High logs: 0000000100000A2B000000FF starts at A2B/FF000000.
        let high = self::name("0000000100000A2B000000FF");
        assert!(check_segment(&high, &Header::at(0xA2B_FF00_0000).bytes(), SEGMENT_16_MIB).is_ok());
    }

    #[test]
    fn header_timeline_may_be_older_but_never_newer() {
        let name = name("000000020000000000000005");
        let header = Header::at(0x500_0000);
        let older = check_segment(
            &name,
            &Header {
                timeline: 1,
                ..header
            }
            .bytes(),
            SEGMENT_16_MIB,
        );
        assert_eq!(older.unwrap().timeline, 1);
        assert!(
            check_segment(
                &name,
                &Header {
                    timeline: 2,
                    ..header
                }
                .bytes(),
                SEGMENT_16_MIB
            )
            .is_ok()
        );
        assert_eq!(
            segment_error(
                &name,
                Header {
                    timeline: 3,
                    ..header
                },
                SEGMENT_16_MIB
            ),
            "header timeline 3 is newer than the name's timeline 2"
        );
        assert_eq!(
            check_segment(
                &name,
                &Header {
                    timeline: 0,
                    ..header
                }
                .bytes(),
                SEGMENT_16_MIB
            ),
            Err(ShapeError::TimelineZero)
        );
    }

    #[test]
    fn header_segment_size_must_be_valid() {
        let (name, header) = segment_5();
        for segment_size in [0, 512 << 10, 3 << 20, (16 << 20) | 1, 1 << 31, u32::MAX] {
            assert_eq!(
                check_segment(
                    &name,
                    &Header {
                        segment_size,
                        ..header
                    }
                    .bytes(),
                    SEGMENT_16_MIB
                ),
                Err(ShapeError::BadSegmentSize { size: segment_size })
            );
        }
    }

    #[test]
    fn size_must_be_the_header_segment_size() {
        let (name, header) = segment_5();
        assert_eq!(
            segment_error(&name, header, 1234),
            "size 1234 is not the segment size 16777216 of its header"
        );
        for size in [SEGMENT_16_MIB - 1, SEGMENT_16_MIB + 1, 32 * MIB] {
            assert!(matches!(
                check_segment(&name, &header.bytes(), size),
                Err(ShapeError::SizeMismatch { .. })
            ));
        }
        assert_eq!(
            check_segment(&name, &header.bytes(), 39),
            Err(ShapeError::TooSmall { size: 39 })
        );
    }

    #[test]
    fn block_size_must_be_a_power_of_two_from_1_to_64_kib() {
        let (name, header) = segment_5();
        for block_size in [1024, 4096, 8192, 32768, 65536] {
            let found = check_segment(
                &name,
                &Header {
                    block_size,
                    ..header
                }
                .bytes(),
                SEGMENT_16_MIB,
            );
            assert_eq!(found.unwrap().block_size, block_size);
        }
        for block_size in [0, 512, 1000, 8193, 1 << 17, u32::MAX] {
            assert_eq!(
                check_segment(
                    &name,
                    &Header {
                        block_size,
                        ..header
                    }
                    .bytes(),
                    SEGMENT_16_MIB
                ),
                Err(ShapeError::BadBlockSize { size: block_size })
            );
        }
    }

    #[test]
    fn segment_of_64_mib() {
        // 64 MiB: 64 segments a log, 00..3F; 1/C000000 is segment 3 of log 1.
        let name = name("000000010000000100000003");
        let header = Header {
            segment_size: 64 << 20,
            ..Header::at(0x1_0C00_0000)
        };
        let found = check_segment(&name, &header.bytes(), 64 * MIB).unwrap();
        assert_eq!(found.segment_size.bytes(), 64 * MIB);
        // The same bytes read as 16 MiB would be segment 0C: the name decides.
        assert_eq!(
            segment_error(&name, header, 16 * MIB),
            "size 16777216 is not the segment size 67108864 of its header"
        );
        let last = self::name("00000001000000010000003F");
        let header = Header {
            page_address: 0x1_FC00_0000,
            ..header
        };
        assert!(check_segment(&last, &header.bytes(), 64 * MIB).is_ok());
    }

    #[test]
    fn segment_number_beyond_the_log_is_refused() {
        let name = name("000000010000000100000040");
        let header = Header {
            segment_size: 64 << 20,
            ..Header::at(0x2_0000_0000)
        };
        assert_eq!(
            segment_error(&name, header, 64 * MIB),
            "segment 40 of the name does not exist with the header's segment size 67108864 \
             (the last of a log is 3F)"
        );
        let name = self::name("000000010000000000000100");
        assert!(matches!(
            check_segment(&name, &Header::at(0x1_0000_0000).bytes(), SEGMENT_16_MIB),
            Err(ShapeError::SegmentBeyondLog {
                segment: 0x100,
                last: 0xFF,
                ..
            })
        ));
    }

    #[test]
    fn non_segment_names_are_refused_by_the_segment_checks() {
        let history = name("00000002.history");
        let head = Header::at(0).bytes();
        assert_eq!(
            check_segment(&history, &head, SEGMENT_16_MIB),
            Err(ShapeError::NotSegmentName {
                kind: WalKind::History
            })
        );
        assert_eq!(
            check_partial(&history, &head, SEGMENT_16_MIB),
            Err(ShapeError::NotSegmentName {
                kind: WalKind::History
            })
        );
    }

    #[test]
    fn a_head_alone_is_checked_but_for_the_size() {
        let (name, header) = segment_5();
        let mut head = header.bytes();
        assert!(check_head(&name, &head).unwrap().is_some());
        head[0] ^= 0xff;
        assert!(check_head(&name, &head).is_err());
        assert!(matches!(
            check_head(&name, &[0u8; 40]),
            Err(ShapeError::Zeroed)
        ));
        assert!(matches!(
            check_head(&name, &[1u8; 10]),
            Err(ShapeError::TooSmall { size: 10 })
        ));
        let partial = WalName::parse("000000010000000000000005.partial").unwrap();
        assert_eq!(check_head(&partial, &[]).unwrap(), None);
    }

    #[test]
    fn truncated_heads_never_panic() {
        let (segment, header) = segment_5();
        let partial = name("000000010000000000000005.partial");
        let full = header.bytes();
        for length in 0..=HEADER_LENGTH {
            let head = &full[..length];
            for size in [0, length as u64, 39, 40, SEGMENT_16_MIB, u64::MAX] {
                let segment_result = check_segment(&segment, head, size);
                let partial_result = check_partial(&partial, head, size);
                if length < HEADER_LENGTH {
                    assert!(segment_result.is_err(), "{length} {size}");
                }
                if length < HEADER_LENGTH && size >= HEADER_LENGTH as u64 {
                    assert!(
                        matches!(
                            partial_result,
                            Err(ShapeError::ShortHead { .. } | ShapeError::BlankTooLarge { .. })
                        ) || (length == 0 && size == 0),
                        "{length} {size}: {partial_result:?}"
                    );
                }
            }
            // A file that really is that short.
            let size = length as u64;
            assert!(check_segment(&segment, head, size).is_err());
            match check_partial(&partial, head, size) {
                Ok(None) => assert!(is_zero(head), "{length}"),
                Ok(Some(_)) => assert_eq!(length, HEADER_LENGTH),
                Err(error) => assert!(length > 0, "{length}: {error}"),
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic generator: the fuzz target does the real exploring.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let names = [
            name("000000010000000000000005"),
            name("000000010000000000000005.partial"),
            name("00000002.history"),
            name("000000010000000000000002.00000028.backup"),
        ];
        let valid = Header::at(0x500_0000).bytes();
        for round in 0..4000 {
            let length = (next() % 96) as usize;
            let mut bytes: Vec<u8> = (0..length).map(|_| next() as u8).collect();
            if round % 2 == 0 {
                // Mostly valid headers with a byte or two changed reach deeper checks.
                bytes = valid.clone();
                for _ in 0..=(next() % 2) {
                    let at = (next() % HEADER_LENGTH as u64) as usize;
                    bytes[at] = next() as u8;
                }
            }
            let size = match next() % 4 {
                0 => bytes.len() as u64,
                1 => SEGMENT_16_MIB,
                2 => next() % (2 * SEGMENT_16_MIB),
                _ => next(),
            };
            for name in &names {
                let _ = check(name, &bytes, size);
                let _ = check_history(name, &bytes);
                let _ = check_backup_label(name, &bytes);
            }
        }
    }

    #[test]
    fn partial_of_zero_bytes_is_blank() {
        let partial = name("000000010000000000000005.partial");
        assert_eq!(check_partial(&partial, &[], 0), Ok(None));
        assert_eq!(check(&partial, &[], 0), Ok(None));
    }

    #[test]
    fn partial_all_zeros_is_blank() {
        let partial = name("000000010000000000000005.partial");
        let page = vec![0; 8192];
        assert_eq!(check_partial(&partial, &page, SEGMENT_16_MIB), Ok(None));
        assert_eq!(
            check_partial(&partial, &page[..HEADER_LENGTH], SEGMENT_16_MIB),
            Ok(None)
        );
        assert_eq!(check_partial(&partial, &page[..10], 10), Ok(None));
        assert_eq!(
            check_partial(&partial, &page, 2 << 30),
            Err(ShapeError::BlankTooLarge { size: 2 << 30 })
        );
    }

    #[test]
    fn partial_zero_header_followed_by_data_is_refused() {
        let partial = name("000000010000000000000005.partial");
        let mut page = vec![0; 8192];
        page[100] = 1;
        assert_eq!(
            check_partial(&partial, &page, SEGMENT_16_MIB),
            Err(ShapeError::NotBlank { offset: 100 })
        );
    }

    #[test]
    fn partial_with_valid_header_yields_it() {
        let partial = name("000000010000000000000005.partial");
        let head = Header::at(0x500_0000).bytes();
        for size in [40, 8192, SEGMENT_16_MIB - 1, SEGMENT_16_MIB] {
            let found = check_partial(&partial, &head, size).unwrap();
            assert_eq!(found.unwrap().page_address, 0x500_0000, "{size}");
        }
        // Its header must be valid for its name.
        let other = Header::at(0x600_0000).bytes();
        assert!(matches!(
            check_partial(&partial, &other, SEGMENT_16_MIB),
            Err(ShapeError::PageAddress { .. })
        ));
        // A partial of a new timeline may start with the old one's pages.
        let partial_2 = name("000000020000000000000005.partial");
        assert!(
            check_partial(&partial_2, &head, SEGMENT_16_MIB)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn partial_larger_than_its_segment_is_refused() {
        let partial = name("000000010000000000000005.partial");
        let head = Header::at(0x500_0000).bytes();
        assert_eq!(
            check_partial(&partial, &head, SEGMENT_16_MIB + 1)
                .unwrap_err()
                .to_string(),
            "size 16777217 exceeds the segment size 16777216 of its header"
        );
    }

    #[test]
    fn partial_shorter_than_a_header_is_refused_unless_zero() {
        let partial = name("000000010000000000000005.partial");
        let head = Header::at(0x500_0000).bytes();
        assert_eq!(
            check_partial(&partial, &head[..20], 20),
            Err(ShapeError::TooSmall { size: 20 })
        );
        assert_eq!(
            check_partial(&partial, b"hello", 5),
            Err(ShapeError::TooSmall { size: 5 })
        );
    }

    #[test]
    fn check_dispatches_on_the_kind() {
        let head = Header::at(0x500_0000).bytes();
        assert!(
            check(&name("000000010000000000000005"), &head, SEGMENT_16_MIB)
                .unwrap()
                .is_some()
        );
        assert!(check(&name("000000010000000000000005"), &head, 8192).is_err());
        assert!(
            check(&name("000000010000000000000005.partial"), &head, 8192)
                .unwrap()
                .is_some()
        );
        let history = b"1\t0/5000060\tno recovery target specified\n";
        assert_eq!(
            check(&name("00000002.history"), history, history.len() as u64),
            Ok(None)
        );
        assert!(check(&name("00000002.history"), &head, 40).is_err());
        let label = label_15();
        let backup = name("000000010000000000000002.00000028.backup");
        assert_eq!(
            check(&backup, label.as_bytes(), label.len() as u64),
            Ok(None)
        );
        assert!(check(&backup, &head, 40).is_err());
    }

    fn history(timeline: u32, text: &str) -> Result<(), ShapeError> {
        check_history(&name(&format!("{timeline:08X}.history")), text.as_bytes())
    }

    #[test]
    fn history_valid_samples_are_accepted() {
        // As the server writes them: a parent's lines are copied, then a newline, then one
        // line for the switch.
        history(2, "1\t0/3000158\tno recovery target specified\n").unwrap();
        history(
            3,
            "1\t0/3000158\tno recovery target specified\n\n\
             2\t0/5000060\tat restore point \"before upgrade\"\n",
        )
        .unwrap();
        history(
            0x10,
            "1\t0/3000158\treason\n\n3\tA2B/FF000028\tbefore 2024-05-01 12:00:00+00\n",
        )
        .unwrap();
        // As the server reads them: whitespace anywhere, comments, no reason, CRLF, no final
        // newline, a restore point name in another encoding.
        history(
            4,
            "# promoted twice\r\n  1 0/3000158 no recovery target specified\r\n\r\n\
             \t# a comment\n2\t\t0/5000060\n3   0/ 6000000\tat restore point \"\u{e9}t\u{e9}\"",
        )
        .unwrap();
        check_history(
            &name("00000002.history"),
            b"1\t0/1\tat restore point \"\xE9\"",
        )
        .unwrap();
    }

    #[test]
    fn history_without_switch_line_is_refused() {
        for text in ["", "\n", "\n\n  \n", "# nothing yet\n", "  # a\n#b"] {
            assert_eq!(history(2, text), Err(ShapeError::HistoryEmpty), "{text:?}");
        }
    }

    #[test]
    fn history_syntax_errors_are_refused() {
        let cases = [
            (
                "one\t0/3000158\treason\n",
                1,
                "expected a numeric parent timeline ID",
            ),
            (
                "1\t0/3000158\n-1\t0/5000000\n",
                2,
                "expected a numeric parent timeline ID",
            ),
            (
                "1\n",
                1,
                "expected a switch point X/X after the parent timeline",
            ),
            (
                "1\t03000158\treason\n",
                1,
                "expected a switch point X/X after the parent timeline",
            ),
            (
                "1\t0 /3000158\n",
                1,
                "expected a switch point X/X after the parent timeline",
            ),
            (
                "1\t0/\n",
                1,
                "expected a switch point X/X after the parent timeline",
            ),
            (
                "1\tG/3000158\n",
                1,
                "expected a switch point X/X after the parent timeline",
            ),
            (
                "1\t100000000/0\n",
                1,
                "expected a switch point X/X after the parent timeline",
            ),
            (
                "4294967296\t0/0\n",
                1,
                "expected a numeric parent timeline ID",
            ),
        ];
        for (text, line, expected) in cases {
            assert_eq!(
                history(5, text),
                Err(ShapeError::HistorySyntax { line, expected }),
                "{text:?}"
            );
        }
        assert_eq!(
            history(5, "one\n").unwrap_err().to_string(),
            "history file line 1: expected a numeric parent timeline ID"
        );
    }

    #[test]
    fn history_timelines_must_increase_and_precede_the_file() {
        assert_eq!(
            history(5, "1\t0/3000000\n\n3\t0/5000000\n2\t0/6000000\n"),
            Err(ShapeError::HistoryOrder {
                line: 4,
                parent: 2,
                previous: 3
            })
        );
        assert_eq!(
            history(5, "1\t0/3000000\n1\t0/5000000\n"),
            Err(ShapeError::HistoryOrder {
                line: 2,
                parent: 1,
                previous: 1
            })
        );
        assert_eq!(
            history(3, "1\t0/3000000\n3\t0/5000000\n")
                .unwrap_err()
                .to_string(),
            "history file line 2: parent timeline 3 is not older than the file's timeline 3"
        );
    }

    #[test]
    fn history_binary_garbage_is_refused() {
        let mut garbage = Header::at(0x500_0000).bytes();
        garbage.extend_from_slice(b"1\t0/3000000\n");
        assert_eq!(
            check_history(&name("00000002.history"), &garbage),
            Err(ShapeError::NotText {
                byte: 0x10,
                offset: 0
            })
        );
        assert_eq!(
            check_history(&name("00000002.history"), b"1\t0/3000000\0\n"),
            Err(ShapeError::NotText {
                byte: 0,
                offset: 11
            })
        );
        // zstd frame magic.
        assert!(matches!(
            check_history(
                &name("00000002.history"),
                &[0x28, 0xB5, 0x2F, 0xFD, 0x04, 0x00]
            ),
            Err(ShapeError::NotText { .. })
        ));
    }

    #[test]
    fn history_huge_file_is_refused() {
        let line = b"1\t0/3000000\tno recovery target specified\n";
        let limit = usize::try_from(MAX_HISTORY_SIZE).unwrap();
        let huge: Vec<u8> = line.iter().copied().cycle().take(limit + 1).collect();
        let name = name("00000002.history");
        assert!(matches!(
            check_history(&name, &huge),
            Err(ShapeError::TooLarge {
                kind: WalKind::History,
                ..
            })
        ));
        // Through check, the size alone refuses it: the caller need not read it.
        assert_eq!(
            check(&name, &[], 1 << 40).unwrap_err().to_string(),
            "size 1099511627776 is too large for a history file (at most 4194304 bytes)"
        );
    }

    fn label_15() -> String {
        "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
         STOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\n\
         CHECKPOINT LOCATION: 0/2000060\n\
         BACKUP METHOD: streamed\n\
         BACKUP FROM: primary\n\
         START TIME: 2024-05-01 12:00:00 UTC\n\
         LABEL: pg_basebackup base backup\n\
         START TIMELINE: 1\n\
         STOP TIME: 2024-05-01 12:00:01 UTC\n\
         STOP TIMELINE: 1\n"
            .to_owned()
    }

    fn label(name_text: &str, text: &[u8]) -> Result<(), ShapeError> {
        check_backup_label(&name(name_text), text)
    }

    #[test]
    fn backup_label_valid_samples_are_accepted() {
        label(
            "000000010000000000000002.00000028.backup",
            label_15().as_bytes(),
        )
        .unwrap();
        // As 9.4 wrote them: no timelines, "master", a label in LATIN1, CRLF.
        label(
            "00000001000000A2000000FF.00A01F28.backup",
            b"START WAL LOCATION: A2/FFA01F28 (file 00000001000000A2000000FF)\r\n\
              STOP WAL LOCATION: A3/1000050 (file 00000001000000A300000001)\r\n\
              CHECKPOINT LOCATION: A2/FFA01F60\r\n\
              BACKUP METHOD: pg_start_backup\r\n\
              BACKUP FROM: master\r\n\
              START TIME: 2015-01-01 00:00:00 CET\r\n\
              LABEL: sauvegarde d'\xE9t\xE9\r\n\
              STOP TIME: 2015-01-01 00:10:00 CET\r\n",
        )
        .unwrap();
        // 64 MiB segments: 0/5000028 is offset 1000028 of segment 1.
        label(
            "000000010000000000000001.01000028.backup",
            b"START WAL LOCATION: 0/5000028 (file 000000010000000000000001)\n\
              STOP WAL LOCATION: 0/5000100 (file 000000010000000000000001)\n",
        )
        .unwrap();
        // Named after the timeline the backup stopped on.
        label(
            "000000020000000000000002.00000028.backup",
            label_15().as_bytes(),
        )
        .unwrap();
    }

    #[test]
    fn backup_label_without_start_or_stop_is_refused() {
        let name = "000000010000000000000002.00000028.backup";
        let text = label_15();
        let without_stop: String = text
            .lines()
            .filter(|line| !line.starts_with("STOP WAL"))
            .flat_map(|line| [line, "\n"])
            .collect();
        assert_eq!(
            label(name, without_stop.as_bytes())
                .unwrap_err()
                .to_string(),
            "backup label has no STOP WAL LOCATION line"
        );
        let without_start: String = text.lines().skip(1).flat_map(|line| [line, "\n"]).collect();
        assert_eq!(
            label(name, without_start.as_bytes()),
            Err(ShapeError::BackupMissing {
                key: START_WAL_LOCATION
            })
        );
        assert_eq!(
            label(name, b""),
            Err(ShapeError::BackupMissing {
                key: START_WAL_LOCATION
            })
        );
        for bad in [
            "START WAL LOCATION: 0/2000028\n",
            "START WAL LOCATION: 0/2000028 (file 00000001000000000000002)\n",
            "START WAL LOCATION: 0/2000028 (file 00000001.history)\n",
            "START WAL LOCATION: 0/2000028 (file x/000000010000000000000002)\n",
            "START WAL LOCATION: 2000028 (file 000000010000000000000002)\n",
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002\n",
        ] {
            assert_eq!(
                label(name, bad.as_bytes()),
                Err(ShapeError::BackupSyntax {
                    line: 1,
                    key: START_WAL_LOCATION
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn backup_label_must_match_its_name() {
        let text = label_15();
        for name in [
            "000000010000000000000003.00000028.backup",
            "000000010000000100000002.00000028.backup",
            "000000010000000000000002.00000030.backup",
        ] {
            assert_eq!(
                label(name, text.as_bytes()).unwrap_err().to_string(),
                "backup label START WAL LOCATION 0/2000028 (file 000000010000000000000002) \
                 does not match the name",
                "{name}"
            );
        }
        let reversed = text.replace(
            "STOP WAL LOCATION: 0/2000100",
            "STOP WAL LOCATION: 0/1000100",
        );
        assert_eq!(
            label(
                "000000010000000000000002.00000028.backup",
                reversed.as_bytes()
            ),
            Err(ShapeError::BackupStopBeforeStart {
                start: 0x200_0028,
                stop: 0x100_0100
            })
        );
    }

    #[test]
    fn backup_label_binary_garbage_and_huge_files_are_refused() {
        let name = "000000010000000000000002.00000028.backup";
        let mut garbage = label_15().into_bytes();
        garbage[70] = 0x01;
        assert_eq!(
            label(name, &garbage),
            Err(ShapeError::NotText {
                byte: 1,
                offset: 70
            })
        );
        assert!(matches!(
            label(name, &REAL_PG15_HEAD),
            Err(ShapeError::NotText { .. })
        ));
        let mut huge = label_15().into_bytes();
        huge.resize(usize::try_from(MAX_BACKUP_LABEL_SIZE).unwrap() + 1, b'x');
        assert!(matches!(
            label(name, &huge),
            Err(ShapeError::TooLarge {
                kind: WalKind::Backup,
                ..
            })
        ));
    }

    #[test]
    fn text_files_must_be_given_whole() {
        let text = label_15();
        let backup = name("000000010000000000000002.00000028.backup");
        assert_eq!(
            check(&backup, &text.as_bytes()[..10], text.len() as u64)
                .unwrap_err()
                .to_string(),
            format!(
                "only 10 of the file's {} bytes were given; a backup file is checked whole",
                text.len()
            )
        );
        // Bytes beyond the file's size are not the file's.
        let mut longer = text.clone().into_bytes();
        longer.extend_from_slice(b"\0\0\0");
        assert_eq!(check(&backup, &longer, text.len() as u64), Ok(None));
    }

    #[test]
    fn every_error_renders_one_line() {
        let errors = [
            ShapeError::NotSegmentName {
                kind: WalKind::Backup,
            },
            ShapeError::TooSmall { size: 1 },
            ShapeError::ShortHead {
                given: 1,
                needed: 40,
            },
            ShapeError::Zeroed,
            ShapeError::NotBlank { offset: 1 },
            ShapeError::BlankTooLarge { size: 1 << 31 },
            ShapeError::UnknownMagic { magic: 1 },
            ShapeError::ByteSwapped {
                magic: 0x10D1,
                pg_version: "15",
            },
            ShapeError::NoLongHeader { info: 0 },
            ShapeError::UnknownFlags { info: 0x10 },
            ShapeError::BadSegmentSize { size: 3 },
            ShapeError::BadBlockSize { size: 3 },
            ShapeError::SegmentBeyondLog {
                segment: 0x100,
                last: 0xFF,
                segment_size: 1 << 24,
            },
            ShapeError::PageAddress {
                found: 1,
                expected: 2,
            },
            ShapeError::TimelineZero,
            ShapeError::TimelineNewer { header: 3, name: 2 },
            ShapeError::SizeMismatch {
                size: 1,
                segment_size: 2,
            },
            ShapeError::PartialTooLarge {
                size: 3,
                segment_size: 2,
            },
            ShapeError::TooLarge {
                kind: WalKind::History,
                size: 3,
                limit: 2,
            },
            ShapeError::Incomplete {
                kind: WalKind::History,
                given: 1,
                size: 2,
            },
            ShapeError::NotText { byte: 0, offset: 0 },
            ShapeError::HistoryEmpty,
            ShapeError::HistorySyntax {
                line: 1,
                expected: "x",
            },
            ShapeError::HistoryOrder {
                line: 2,
                parent: 1,
                previous: 1,
            },
            ShapeError::HistoryParent {
                line: 1,
                parent: 2,
                timeline: 2,
            },
            ShapeError::BackupMissing {
                key: STOP_WAL_LOCATION,
            },
            ShapeError::BackupSyntax {
                line: 1,
                key: START_WAL_LOCATION,
            },
            ShapeError::BackupName {
                lsn: 1,
                file: "000000010000000000000001".to_owned(),
            },
            ShapeError::BackupStopBeforeStart { start: 2, stop: 1 },
        ];
        for error in errors {
            let message = error.to_string();
            assert!(
                !message.is_empty() && !message.contains('\n'),
                "{message:?}"
            );
            assert!(!message.contains("  "), "{message:?}");
        }
        assert_eq!(
            ShapeError::UnknownFlags { info: 0x10 }.to_string(),
            "unknown flag bits in xlp_info 0x0010"
        );
    }
}
