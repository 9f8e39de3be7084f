//! `--deep`: the CRC of every WAL record that starts and ends in a segment.
//!
//! A page header says where its page is; only a record's CRC says that the bytes between
//! the headers are the ones PostgreSQL wrote. Recovery stops at the first record whose
//! CRC fails, taking it for the end of WAL: a flipped byte in the middle of an archived
//! segment ends a point-in-time recovery there, silently. This walk finds it first.
//!
//! The segment is read as PostgreSQL's reader reads it: records start 8-byte aligned in
//! the page data that follows each page header, a record's header (`XLogRecord`, 24
//! bytes) and body may cross pages, and a page that a record continues onto says so
//! (`XLP_FIRST_IS_CONTRECORD`, with the record's remaining length in `xlp_rem_len`). A
//! record's CRC-32C covers its body, then its header up to the CRC; its `xl_prev` must be
//! the start of the record before it. The walk streams (a page at a time, whatever a
//! record's length), so memory does not grow with records.
//!
//! What it covers, and what not:
//! - The record a segment begins inside of (begun in the previous segment) and the one
//!   it ends inside of (continuing into the next) are not checked: their other part is
//!   in another file. Their lengths are still checked against the page headers.
//! - A complete segment's WAL goes on to its end, or ends with a WAL switch, after which
//!   the rest is unused (zeros, or a recycled file's old pages): records that end at a
//!   zero length, or unused space (the blank or other-address page the page check
//!   finds), anywhere else are damage (a wiped tail, a wiped switch record), as recovery
//!   would stop there. After the end the page data must stay zero (data after it is
//!   damage: a record's length wiped, say).
//! - A `.partial` ends where streaming stopped, maybe inside a record: there a record
//!   that does not hold is taken for that end, unless data follows it; unused space may
//!   begin anywhere.
//! - A page whose header says a crash abandoned the record it should continue
//!   (`XLP_FIRST_IS_OVERWRITE_CONTRECORD`) starts a new record, as in recovery.

use crc_fast::{CrcAlgorithm, Digest};
use wal_core::names::format_lsn;

/// `SizeOfXLogRecord`.
const RECORD_HEADER: usize = 24;
/// `offsetof(XLogRecord, xl_crc)`.
const CRC_AT: usize = 20;
/// `SizeOfXLogShortPHD`, aligned: where a page's data starts.
const SHORT_PAGE_HEADER: usize = 24;
/// `SizeOfXLogLongPHD`, aligned: where a segment's first page's data starts.
const LONG_PAGE_HEADER: usize = 40;
/// `XLP_FIRST_IS_CONTRECORD`.
const CONTRECORD: u16 = 0x0001;
/// `XLP_LONG_HEADER`.
const LONG_HEADER: u16 = 0x0002;
/// `XLP_FIRST_IS_OVERWRITE_CONTRECORD`.
const OVERWRITE_CONTRECORD: u16 = 0x0008;
/// `XLogRecordMaxSize` (PostgreSQL 15).
const RECORD_MAX: u64 = 1020 * 1024 * 1024;
/// `RM_XLOG_ID`, and its `XLOG_SWITCH` in `xl_info`'s high bits: the record after which
/// the rest of a segment is unused.
const RM_XLOG_ID: u8 = 0;
const XLOG_SWITCH: u8 = 0x40;

/// What the last record read was, for where the records may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    /// None yet.
    Nothing,
    /// The rest of a record begun in the previous segment (maybe a WAL switch).
    Skipped,
    /// A WAL switch.
    Switch,
    /// Any other record.
    Other,
}

/// Where the walk is (one per walk: the size of its largest variant costs nothing).
#[allow(clippy::large_enum_variant, reason = "one value per segment walked")]
enum Step {
    /// Within the rest of a record begun in the previous segment: bytes still to pass.
    Skip(u64),
    /// Gathering a record's header, begun at `lsn`.
    Header {
        bytes: [u8; RECORD_HEADER],
        have: usize,
        lsn: u64,
    },
    /// Reading a record's body into its CRC.
    Body {
        header: [u8; RECORD_HEADER],
        remaining: u64,
        digest: Digest,
        lsn: u64,
    },
    /// Past the last record (at `lsn`): page data must stay zero.
    End { lsn: u64 },
}

impl Step {
    fn header() -> Step {
        Step::Header {
            bytes: [0; RECORD_HEADER],
            have: 0,
            lsn: 0,
        }
    }
}

/// The record walk through one segment, fed its valid pages in order.
pub struct RecordWalk {
    step: Step,
    /// Whether the file is a `.partial` (its end may cut a record).
    partial: bool,
    /// Where the record before began, when known.
    previous: Option<u64>,
    /// In a `.partial`: why a record did not hold, taken for the streamed end unless
    /// data follows it.
    pending: Option<String>,
    /// A page of unused space was reached: nothing more is read.
    stopped: bool,
    last: Last,
    first: bool,
    /// Records whose CRC held.
    checked: u64,
}

impl std::fmt::Debug for RecordWalk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWalk")
            .field("partial", &self.partial)
            .field("checked", &self.checked)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

fn u16_at(page: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([page[at], page[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The next 8-byte boundary (`MAXALIGN`): page data starts on one, so an offset within
/// the page aligns as PostgreSQL aligns the LSN.
fn align(offset: usize) -> usize {
    (offset + 7) & !7
}

impl RecordWalk {
    /// A walk through a segment (`partial`: a `.partial` file).
    #[must_use]
    pub fn new(partial: bool) -> RecordWalk {
        RecordWalk {
            step: Step::header(),
            partial,
            previous: None,
            pending: None,
            stopped: false,
            last: Last::Nothing,
            first: true,
            checked: 0,
        }
    }

    /// Records whose CRC was checked and held.
    #[must_use]
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// A page of unused space (blank, or a recycled file's) at the walk's place: it
    /// ends the walk. Only a `.partial` may end anywhere; a complete segment's WAL goes
    /// on to its end, or ends with a WAL switch (after which nothing is written).
    ///
    /// # Errors
    /// Why unused space cannot begin here.
    pub fn stop(&mut self, address: u64) -> Result<(), String> {
        let between_records = matches!(self.step, Step::End { .. })
            || matches!(self.step, Step::Header { have: 0, .. });
        if self.partial || self.stopped || (between_records && self.switched()) {
            self.stopped = true;
            return Ok(());
        }
        Err(format!(
            "page at {} holds no WAL of its place, yet the WAL before it {} (recovery \
             stops there)",
            format_lsn(address),
            if between_records {
                "did not end with a WAL switch"
            } else {
                "goes on into it"
            }
        ))
    }

    /// Whether the records read so far may end here: after a WAL switch (or the rest of
    /// a record begun before, which may be one).
    fn switched(&self) -> bool {
        matches!(self.last, Last::Switch | Last::Skipped)
    }

    /// The bytes a page must say remain of the record it continues, if it continues one.
    /// (A header split across pages has at least 8 of its bytes, its length among them:
    /// records start 8-byte aligned, and page data ends on a multiple of 8.)
    fn continuing(&self) -> Option<u64> {
        match &self.step {
            Step::Skip(remaining) | Step::Body { remaining, .. } => Some(*remaining),
            Step::Header { bytes, have, .. } if *have > 0 => {
                Some(u64::from(u32_at(bytes, 0)).saturating_sub(*have as u64))
            }
            Step::Header { .. } | Step::End { .. } => None,
        }
    }

    /// One valid page (its header checked by the page walk), `address` its LSN.
    ///
    /// # Errors
    /// Why the WAL in it is damaged.
    pub fn page(&mut self, page: &[u8], address: u64) -> Result<(), String> {
        if self.stopped || page.len() < LONG_PAGE_HEADER {
            return Ok(());
        }
        let info = u16_at(page, 2);
        let rem_len = u64::from(u32_at(page, 16));
        let start = if info & LONG_HEADER == 0 {
            SHORT_PAGE_HEADER
        } else {
            LONG_PAGE_HEADER
        };
        if std::mem::take(&mut self.first) {
            if info & CONTRECORD != 0 && rem_len > 0 {
                self.step = Step::Skip(rem_len);
            }
        } else if let Some(expected) = self.continuing() {
            if info & OVERWRITE_CONTRECORD != 0 {
                // Recovery abandoned the record after a crash, and wrote on from here.
                self.step = Step::header();
                self.previous = None;
            } else if info & CONTRECORD == 0 {
                return Err(format!(
                    "page at {}: a record continues onto it, yet its header does not say so",
                    format_lsn(address)
                ));
            } else if expected != rem_len {
                return Err(format!(
                    "page at {}: its header says {rem_len} bytes of a record remain, the \
                     record says {expected}",
                    format_lsn(address)
                ));
            }
        }
        let mut at = start;
        while at < page.len() {
            at = self.advance(page, at, address)?;
        }
        Ok(())
    }

    /// Reads on from `at` in `page`; returns where the next step starts.
    fn advance(&mut self, page: &[u8], at: usize, address: u64) -> Result<usize, String> {
        let room = page.len() - at;
        match &mut self.step {
            Step::Skip(remaining) => {
                let n = room.min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                *remaining -= n as u64;
                if *remaining == 0 {
                    self.step = Step::header();
                    self.last = Last::Skipped;
                    return Ok(align(at + n));
                }
                Ok(at + n)
            }
            Step::Header { bytes, have, lsn } => {
                if *have == 0 {
                    *lsn = address + at as u64;
                }
                let n = room.min(RECORD_HEADER - *have);
                bytes[*have..*have + n].copy_from_slice(&page[at..at + n]);
                *have += n;
                let (bytes, have, lsn) = (*bytes, *have, *lsn);
                if have >= 4 && u32_at(&bytes, 0) == 0 {
                    self.end(lsn, &bytes[..have])?;
                    return Ok(at + n);
                }
                if have == RECORD_HEADER {
                    self.begin(bytes, lsn)?;
                }
                if let Step::Body { remaining: 0, .. } = self.step {
                    return self.complete().map(|()| align(at + n));
                }
                Ok(at + n)
            }
            Step::Body {
                remaining, digest, ..
            } => {
                let n = room.min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                digest.update(&page[at..at + n]);
                *remaining -= n as u64;
                if *remaining == 0 {
                    self.complete()?;
                    return Ok(align(at + n));
                }
                Ok(at + n)
            }
            Step::End { lsn } => {
                if let Some(offset) = page[at..].iter().position(|&b| b != 0) {
                    let end = *lsn;
                    let here = format_lsn(address + (at + offset) as u64);
                    return Err(match self.pending.take() {
                        Some(why) => format!("{why}, and data follows it at {here}"),
                        None => format!(
                            "the records end at {} (a zero length), yet data follows at {here}",
                            format_lsn(end)
                        ),
                    });
                }
                Ok(page.len())
            }
        }
    }

    /// The record chain ends at `lsn`: what was read of the header must be zero too,
    /// and in a complete segment the record before must have been a WAL switch.
    fn end(&mut self, lsn: u64, header: &[u8]) -> Result<(), String> {
        if header.iter().any(|&b| b != 0) {
            return Err(format!(
                "record at {}: a zero length with a header that is not blank",
                format_lsn(lsn)
            ));
        }
        if !self.partial && !self.switched() {
            return Err(format!(
                "the records end at {} (a zero length) without a WAL switch: a complete \
                 segment's WAL goes on to its end (recovery stops there)",
                format_lsn(lsn)
            ));
        }
        self.step = Step::End { lsn };
        Ok(())
    }

    /// A whole header read: the record's body follows.
    fn begin(&mut self, header: [u8; RECORD_HEADER], lsn: u64) -> Result<(), String> {
        let total = u64::from(u32_at(&header, 0));
        if total < RECORD_HEADER as u64 || total > RECORD_MAX {
            return self.fail(format!(
                "record at {}: length {total}, impossible",
                format_lsn(lsn)
            ));
        }
        let prev = u64_at(&header, 8);
        if let Some(previous) = self.previous
            && prev != previous
        {
            return self.fail(format!(
                "record at {}: its xl_prev is {}, the record before is at {}",
                format_lsn(lsn),
                format_lsn(prev),
                format_lsn(previous)
            ));
        }
        self.step = Step::Body {
            header,
            remaining: total - RECORD_HEADER as u64,
            digest: Digest::new(CrcAlgorithm::Crc32Iscsi),
            lsn,
        };
        Ok(())
    }

    /// A record read whole: its CRC must hold.
    fn complete(&mut self) -> Result<(), String> {
        let step = std::mem::replace(&mut self.step, Step::header());
        let Step::Body {
            header,
            mut digest,
            lsn,
            ..
        } = step
        else {
            return Ok(());
        };
        digest.update(&header[..CRC_AT]);
        let computed = u32::try_from(digest.finalize()).unwrap_or(u32::MAX);
        let stored = u32_at(&header, CRC_AT);
        if computed != stored {
            return self.fail(format!(
                "record at {} ({} bytes): CRC {computed:08X}, stored {stored:08X}",
                format_lsn(lsn),
                u32_at(&header, 0)
            ));
        }
        self.checked += 1;
        self.previous = Some(lsn);
        self.last = if header[17] == RM_XLOG_ID && header[16] & 0xF0 == XLOG_SWITCH {
            Last::Switch
        } else {
            Last::Other
        };
        Ok(())
    }

    /// A record that does not hold: damage, or, in a `.partial`, maybe where streaming
    /// stopped (then data after it is the damage).
    fn fail(&mut self, why: String) -> Result<(), String> {
        if self.partial {
            self.pending = Some(why);
            self.step = Step::End { lsn: 0 };
            Ok(())
        } else {
            Err(why)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: usize = 8192;

    /// A record of `length` bytes at its place, its CRC and `xl_prev` right.
    fn record(length: usize, prev: u64, fill: u8, switch: bool) -> Vec<u8> {
        let mut bytes = vec![fill; length];
        bytes[..RECORD_HEADER].fill(0);
        bytes[..4].copy_from_slice(&u32::try_from(length).unwrap().to_le_bytes());
        bytes[8..16].copy_from_slice(&prev.to_le_bytes());
        bytes[16] = if switch { XLOG_SWITCH } else { 0x10 };
        bytes[17] = if switch { RM_XLOG_ID } else { 9 };
        let mut digest = Digest::new(CrcAlgorithm::Crc32Iscsi);
        digest.update(&bytes[RECORD_HEADER..]);
        digest.update(&bytes[..CRC_AT]);
        let crc = u32::try_from(digest.finalize()).unwrap();
        bytes[CRC_AT..RECORD_HEADER].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Lays `records` out in pages from `base` as PostgreSQL does: aligned, crossing
    /// pages with continuation headers; then zeroed pages up to `pages`.
    fn segment(records: &[Vec<u8>], pages: usize) -> Vec<Vec<u8>> {
        let mut out = vec![vec![0u8; BLOCK]; pages];
        out[0][2..4].copy_from_slice(&LONG_HEADER.to_le_bytes());
        let (mut page, mut at) = (0, LONG_PAGE_HEADER);
        for rec in records {
            let mut done = 0;
            while done < rec.len() {
                if at == BLOCK {
                    page += 1;
                    at = SHORT_PAGE_HEADER;
                    let header = &mut out[page];
                    header[2..4].copy_from_slice(&CONTRECORD.to_le_bytes());
                    let rem = u32::try_from(rec.len() - done).unwrap();
                    header[16..20].copy_from_slice(&rem.to_le_bytes());
                }
                let n = (BLOCK - at).min(rec.len() - done);
                out[page][at..at + n].copy_from_slice(&rec[done..done + n]);
                done += n;
                at += n;
            }
            at = align(at);
        }
        out
    }

    fn walk(pages: &[Vec<u8>], partial: bool) -> Result<u64, String> {
        let mut walk = RecordWalk::new(partial);
        for (index, page) in pages.iter().enumerate() {
            walk.page(page, 0x100_0000 + (index * BLOCK) as u64)?;
        }
        Ok(walk.checked())
    }

    fn chain(lengths: &[usize]) -> Vec<Vec<u8>> {
        let mut lsn = 0x100_0000 + LONG_PAGE_HEADER as u64;
        let mut prev = 0;
        let mut out = Vec::new();
        for (index, &length) in lengths.iter().enumerate() {
            // The last one a WAL switch: the rest of the segment is unused.
            out.push(record(length, prev, 0x5A, index + 1 == lengths.len()));
            prev = lsn;
            // The next start: this one's length, page headers crossed, aligned.
            let mut at = usize::try_from(lsn % BLOCK as u64).unwrap();
            let mut left = length;
            let mut page_start = lsn - at as u64;
            while left > 0 {
                let n = (BLOCK - at).min(left);
                left -= n;
                at += n;
                if left > 0 {
                    page_start += BLOCK as u64;
                    at = SHORT_PAGE_HEADER;
                }
            }
            lsn = page_start + align(at) as u64;
        }
        out
    }

    /// Garbage of every shape (random flags, lengths, continuation counts, short pages)
    /// gives a verdict, never a panic.
    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..300 {
            let mut walk = RecordWalk::new(round % 2 == 0);
            for index in 0..4 {
                let length = match next() % 4 {
                    0 => usize::try_from(next() % 64).unwrap(),
                    _ => BLOCK,
                };
                let mut page: Vec<u8> = (0..length)
                    .map(|_| match next() % 3 {
                        0 => 0,
                        _ => u8::try_from(next() & 0xFF).unwrap(),
                    })
                    .collect();
                if page.len() >= 24 && next() % 2 == 0 {
                    // A small record length at the first record's place.
                    let at = if index == 0 { 40 } else { 24 };
                    if page.len() >= at + 4 {
                        let small = u32::try_from(next() % 200).unwrap();
                        page[at..at + 4].copy_from_slice(&small.to_le_bytes());
                    }
                }
                if walk.page(&page, (index * BLOCK) as u64).is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn records_across_pages_hold() {
        let records = chain(&[100, 9000, 30, 20_000, 57]);
        assert_eq!(walk(&segment(&records, 6), false), Ok(5));
    }

    #[test]
    fn a_flipped_byte_in_a_body_is_found() {
        let records = chain(&[100, 9000, 30]);
        let mut pages = segment(&records, 3);
        pages[1][500] ^= 0x01;
        let err = walk(&pages, false).unwrap_err();
        assert!(err.contains("CRC"), "{err}");
    }

    #[test]
    fn a_wiped_length_ends_the_chain_and_the_data_after_it_is_damage() {
        let records = chain(&[100, 200, 300]);
        let mut pages = segment(&records, 2);
        let second = align(LONG_PAGE_HEADER + 100);
        pages[0][second..second + 4].fill(0);
        pages[0][second + 4..second + RECORD_HEADER].fill(0);
        let err = walk(&pages, false).unwrap_err();
        assert!(err.contains("without a WAL switch"), "{err}");
        // In a .partial the end may be anywhere, but not with data after it.
        let err = walk(&pages, true).unwrap_err();
        assert!(err.contains("data follows"), "{err}");
    }

    #[test]
    fn a_complete_segment_ends_with_a_switch_or_not_at_all() {
        let records = chain(&[100, 200, 24]);
        let mut pages = segment(&records, 3);
        assert_eq!(walk(&pages, false), Ok(3));
        // The switch record wiped: the records end without one.
        let third = align(align(LONG_PAGE_HEADER + 100) + 200);
        pages[0][third..third + RECORD_HEADER].fill(0);
        let err = walk(&pages, false).unwrap_err();
        assert!(err.contains("without a WAL switch"), "{err}");
        // Unused space where the WAL should go on: only after a switch.
        let mut walk = RecordWalk::new(false);
        let pages = segment(&chain(&[100, 9000, 24]), 3);
        walk.page(&pages[0], 0x100_0000).unwrap();
        assert!(
            walk.stop(0x100_2000)
                .unwrap_err()
                .contains("goes on into it")
        );
        let mut walk = RecordWalk::new(false);
        for (index, page) in pages.iter().enumerate() {
            walk.page(page, 0x100_0000 + (index * BLOCK) as u64)
                .unwrap();
        }
        walk.stop(0x100_6000).unwrap();
    }

    #[test]
    fn a_continuation_length_that_disagrees_is_damage() {
        let records = chain(&[100, 9000]);
        let mut pages = segment(&records, 3);
        pages[1][16] ^= 0x04;
        let err = walk(&pages, false).unwrap_err();
        assert!(err.contains("bytes of a record remain"), "{err}");
    }

    #[test]
    fn a_partial_may_end_inside_a_record_but_not_before_data() {
        let records = chain(&[100, 9000]);
        let mut pages = segment(&records, 3);
        // Streaming stopped half-way through the second record.
        pages[1][500..].fill(0);
        assert_eq!(walk(&pages, true), Ok(1));
        assert!(walk(&pages, false).unwrap_err().contains("CRC"));
        pages[2][100] = 1;
        assert!(walk(&pages, true).unwrap_err().contains("data follows"));
    }

    #[test]
    fn a_record_begun_in_the_previous_segment_is_passed_over() {
        let mut pages = segment(&chain(&[100]), 1);
        // The record in place of the first is a switch; begun after 48 bytes it is not
        // the first record any more, so its xl_prev is not checked.
        // Shift the record: 48 bytes of a record begun before come first.
        let rec = pages[0][LONG_PAGE_HEADER..LONG_PAGE_HEADER + 100].to_vec();
        pages[0][LONG_PAGE_HEADER..].fill(0);
        pages[0][LONG_PAGE_HEADER..LONG_PAGE_HEADER + 48].fill(7);
        pages[0][LONG_PAGE_HEADER + 48..LONG_PAGE_HEADER + 148].copy_from_slice(&rec);
        pages[0][2..4].copy_from_slice(&(LONG_HEADER | CONTRECORD).to_le_bytes());
        pages[0][16..20].copy_from_slice(&48u32.to_le_bytes());
        assert_eq!(walk(&pages, false), Ok(1));
    }
}
