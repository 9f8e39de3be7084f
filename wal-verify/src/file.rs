//! One archived file, verified: opened (never through a link, never a fifo),
//! decompressed to its end, and checked for the shape of WAL its name promises, with its
//! exact size; with `deep`, every page header of a segment too. What the timeline
//! analysis needs of it is returned: the long header of a segment, the switch points of
//! a history file.

use std::io::Read;
use std::path::Path;

use wal_core::codec::{Plaintext, open_plaintext};
use wal_core::names::{WalKind, WalName, parse_lsn};
use wal_core::shape::{self, LongHeader};
use wal_core::{WalError, WalRecord, durable};

use crate::records::RecordWalk;

/// `XLP_LONG_HEADER`: only the first page of a segment carries it.
const XLP_LONG_HEADER: u16 = 0x0002;
/// Every `xlp_info` bit a supported release defines.
const XLP_ALL_FLAGS: u16 = 0x000F;
/// `SizeOfXLogShortPHD`: the bytes of a page header that identify the page.
const SHORT_HEADER: usize = 20;

/// What a verified file tells the timeline analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The file's WAL name.
    pub name: WalName,
    /// A segment's (or non-blank partial's) long page header.
    pub header: Option<LongHeader>,
    /// A history file's switch points: `(parent timeline, switch LSN)`, oldest first.
    pub switches: Vec<(u32, u64)>,
}

fn corrupt(path: &Path, message: impl Into<String>) -> WalError {
    WalError::Corrupt {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Verifies the file `record` names.
pub fn verify(record: &WalRecord, deep: bool) -> Result<Verified, WalError> {
    let name = WalName::parse_file_name(&record.name)?;
    let path = record.require_path()?;
    let file = durable::open_wal(path)?;
    let mut reader = match open_plaintext(file) {
        Ok(Plaintext::Readable { reader, .. }) => reader,
        Ok(Plaintext::Encrypted) => {
            return Err(WalError::Usage(format!(
                "{}: encrypted: decrypt it in the pipeline (wal-encrypt --decrypt) to verify it",
                path.display()
            )));
        }
        Err(e)
            if e.kind() == std::io::ErrorKind::InvalidData
                || e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            return Err(corrupt(path, format!("cannot decompress: {e}")));
        }
        Err(e) => return Err(WalError::io("cannot read", path, e)),
    };
    let undecodable = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
            corrupt(path, format!("cannot decompress: {e}"))
        }
        _ => WalError::io("cannot read", path, e),
    };
    let head = shape::read_head(&name, &mut reader).map_err(undecodable)?;
    let shaped = |result: Result<Option<LongHeader>, shape::ShapeError>| {
        result.map_err(|why| corrupt(path, why.to_string()))
    };
    match name.kind() {
        WalKind::History | WalKind::Backup => {
            // read_head took the whole file, or one byte more than its kind may hold:
            // its size is known, and a larger file fails the check.
            shaped(shape::check(&name, &head, head.len() as u64))?;
            let switches = if name.kind() == WalKind::History {
                switch_points(&head)
            } else {
                Vec::new()
            };
            Ok(Verified {
                name,
                header: None,
                switches,
            })
        }
        WalKind::Segment | WalKind::Partial => {
            let Some(header) = shaped(shape::check_head(&name, &head))? else {
                // A blank partial: nothing streamed into it yet; blank to its end.
                let rest = drain_blank(&mut reader).map_err(undecodable)?;
                if let Some(offset) = rest {
                    return Err(corrupt(
                        path,
                        format!("first page header is all zeros but byte {offset} is not"),
                    ));
                }
                return Ok(Verified {
                    name,
                    header: None,
                    switches: Vec::new(),
                });
            };
            let size = head.len() as u64
                + pages(&mut reader, &header, &name, &head, deep).map_err(|e| match e {
                    PageError::Read(e) => undecodable(e),
                    PageError::Bad(why) => corrupt(path, why),
                })?;
            shaped(shape::check(&name, &head, size))?;
            Ok(Verified {
                name,
                header: Some(header),
                switches: Vec::new(),
            })
        }
    }
}

/// Reads a blank partial to its end (at most the largest segment); the offset of its
/// first non-zero byte, if any.
fn drain_blank(reader: &mut dyn Read) -> std::io::Result<Option<u64>> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut offset = shape::HEADER_LENGTH as u64;
    let mut limited = reader.take(wal_core::names::SegmentSize::MAX.bytes());
    loop {
        let read = limited.read(&mut buffer)?;
        if read == 0 {
            return Ok(None);
        }
        if let Some(at) = buffer[..read].iter().position(|&b| b != 0) {
            return Ok(Some(offset + at as u64));
        }
        offset += read as u64;
    }
}

enum PageError {
    Read(std::io::Error),
    Bad(String),
}

/// Reads the rest of a segment page by page (at most one byte beyond the size its header
/// claims); with `deep`, checks each page's header, and each record's CRC ([`RecordWalk`]): the segment's magic, known flags and
/// no long header, a timeline not older than the page before nor newer than the name's,
/// and the page address the page's place in the segment gives.
///
/// A segment is written from its start: valid pages, then, after a WAL switch or in a
/// `.partial`, unused space (zeros, or what a recycled file held before), which recovery
/// never reads. So a blank page or one of another place begins that tail, and is an error
/// only when a valid page follows it: damage inside the WAL. A page of its own place with
/// a wrong magic, flags or timeline is damage at once. (Damage to the address of the last
/// written page cannot be told from the tail without reading records.) Returns the bytes
/// read.
fn pages(
    reader: &mut dyn Read,
    header: &LongHeader,
    name: &WalName,
    head: &[u8],
    deep: bool,
) -> Result<u64, PageError> {
    let already = head.len();
    let block = u64::from(header.block_size);
    let mut limited = reader.take(header.segment_size.bytes() + 1 - already as u64);
    let mut page = vec![0u8; usize::try_from(block).unwrap_or(8192)];
    let mut records = RecordWalk::new(name.kind() == WalKind::Partial);
    // The rest of the first page (its long header was read and checked already).
    let mut total = read_full(&mut limited, &mut page[already..]).map_err(PageError::Read)?;
    if deep {
        page[..already].copy_from_slice(head);
        records
            .page(&page[..already + total], header.page_address)
            .map_err(PageError::Bad)?;
    }
    let mut timeline = header.timeline;
    let mut tail: Option<String> = None;
    for index in 1u64.. {
        let read = read_full(&mut limited, &mut page).map_err(PageError::Read)?;
        total += read;
        if read == 0 {
            break;
        }
        if !deep || read < SHORT_HEADER {
            continue;
        }
        match check_page(&page[..read], index, header, name, timeline) {
            Page::Valid(valid) => {
                if let Some(first_bad) = &tail {
                    return Err(PageError::Bad(format!(
                        "{first_bad}, yet page {index} after it is valid WAL"
                    )));
                }
                timeline = valid;
                records
                    .page(&page[..read], header.page_address + index * block)
                    .map_err(PageError::Bad)?;
            }
            // Blank, or a page of another place (a recycled file's): unused space.
            Page::Elsewhere(why) => {
                if tail.is_none() {
                    records
                        .stop(header.page_address + index * block)
                        .map_err(|e| PageError::Bad(format!("{why}: {e}")))?;
                }
                tail.get_or_insert(why);
            }
            // This page's own address, and yet not right: damage, or WAL not of this name.
            Page::Damaged(why) => return Err(PageError::Bad(why)),
        }
    }
    Ok(total as u64)
}

/// What a page header says of its page.
enum Page {
    /// A page of this place; its timeline.
    Valid(u32),
    /// Blank, or the address of another place: not WAL of this segment (unused space).
    Elsewhere(String),
    /// This place's address with a wrong magic, flags or timeline.
    Damaged(String),
}

/// One page header against what its place requires.
fn check_page(page: &[u8], index: u64, header: &LongHeader, name: &WalName, previous: u32) -> Page {
    let u16_at = |at: usize| u16::from_le_bytes([page[at], page[at + 1]]);
    let magic = u16_at(0);
    let info = u16_at(2);
    let timeline = u32::from_le_bytes([page[4], page[5], page[6], page[7]]);
    let mut address = [0u8; 8];
    address.copy_from_slice(&page[8..16]);
    let address = u64::from_le_bytes(address);
    let expected = header.page_address + index * u64::from(header.block_size);
    let at = format!(
        "page {index} (offset {})",
        index * u64::from(header.block_size)
    );
    if page.iter().all(|&b| b == 0) {
        return Page::Elsewhere(format!("{at} is blank"));
    }
    if address != expected {
        return Page::Elsewhere(format!(
            "{at}: page address {}, expected {}",
            wal_core::names::format_lsn(address),
            wal_core::names::format_lsn(expected)
        ));
    }
    if magic != header.magic {
        return Page::Damaged(format!(
            "{at}: magic {magic:#06X}, the segment's is {:#06X}",
            header.magic
        ));
    }
    if info & !XLP_ALL_FLAGS != 0 || info & XLP_LONG_HEADER != 0 {
        return Page::Damaged(format!("{at}: invalid info bits {info:#06X}"));
    }
    if timeline < previous || timeline > name.timeline() {
        return Page::Damaged(format!(
            "{at}: timeline {timeline} after {previous}, in a segment of timeline {}",
            name.timeline()
        ));
    }
    Page::Valid(timeline)
}

fn read_full(reader: &mut dyn Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A history file's switch points (already checked by [`shape::check`]): `parent\tLSN`
/// lines, comments and blank lines skipped.
fn switch_points(text: &[u8]) -> Vec<(u32, u64)> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let mut fields = line.split_whitespace();
            let parent = fields.next()?.parse().ok()?;
            let lsn = parse_lsn(fields.next()?)?;
            Some((parent, lsn))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_points_as_postgres_reads_them() {
        let text = b"# comment\n1\t0/3000158\tno recovery target specified\n\n  2\t0/50000A0\tbefore 2026\n";
        assert_eq!(switch_points(text), [(1, 0x300_0158), (2, 0x500_00A0)]);
    }
}
