//! Properties of wal-core's parsers of untrusted text and bytes, checked on any input.
//!
//! Queue entries are named by whoever wrote into the queue, records arrive on stdin from
//! another process, xlog.db is a file Barman and walpipe both write, and the first bytes
//! of a file decide whether it is encrypted and whether it is the WAL its name says. None
//! of them may make a parser panic, and what a parser accepts must survive being written
//! back: each function here takes raw fuzzer bytes, and panics (the fuzzer's finding) when
//! a property fails.
//!
//! The fuzz targets under `fuzz_targets/` call these functions, and wal-core's
//! `tests/fuzz_regressions.rs` feeds them every saved crash input, so both run the same
//! checks.

use wal_core::WalRecord;
use wal_core::names::{self, SegmentSize, WalKind, WalName};
use wal_core::openpgp::{self, BodyLength, MessageStart};
use wal_core::shape;
use wal_core::xlogdb::{self, XlogLine};

/// A fuzz target's name (a directory name of `fuzz/regressions/`) and its check.
pub type Target = (&'static str, fn(&[u8]));

/// Every check of this module.
pub const TARGETS: &[Target] = &[
    ("wal_name", wal_name),
    ("record", record),
    ("xlogdb_line", xlogdb_line),
    ("openpgp", openpgp),
    ("shape", wal_shape),
];

/// WAL names and the segment arithmetic on them.
///
/// The first byte picks a segment size (1 MiB to 1 GiB), the rest is the name or path.
/// Checks that [`WalName::parse`] and [`names::classify`] agree, that every accessor is
/// consistent with the name, and that the arithmetic inverts itself on names that are
/// possible for the segment size: `previous(next(n)) == n`, LSN to name and back.
pub fn wal_name(data: &[u8]) {
    let Some((&size_byte, rest)) = data.split_first() else {
        return;
    };
    let size = SegmentSize::new(1 << (20 + u32::from(size_byte % 11)))
        .expect("powers of two from 1 MiB to 1 GiB are segment sizes");
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    hash_dir_and_lsn_text(text);
    let parsed = WalName::parse(text);
    assert_eq!(
        parsed.as_ref().ok().map(WalName::kind),
        names::classify(text),
        "parse and classify disagree on {text:?}"
    );
    let segment_ops = (
        names::next_segment_name(text, size),
        names::previous_segment_name(text, size),
    );
    let Ok(name) = parsed else {
        assert!(segment_ops.0.is_err() && segment_ops.1.is_err(), "{text:?}");
        assert!(names::segment_names(text, None, Some(size)).is_err());
        assert!(names::segment_to_lsn(text, 0, size).is_err());
        return;
    };
    let basename = text.rsplit('/').next().unwrap_or(text);
    assert_eq!(name.as_str(), basename);
    assert_eq!(name.to_string(), basename);
    assert_eq!(basename.parse::<WalName>().ok().as_ref(), Some(&name));
    assert_eq!(
        name.backup_offset().is_some(),
        name.kind() == WalKind::Backup
    );
    if name.kind() == WalKind::History {
        assert_eq!(basename.len(), 16, "{basename:?}");
        assert!(name.log().is_none() && name.segment().is_none());
        assert!(name.hash_dir().is_none() && name.segment_name().is_none());
        assert_eq!(name.relpath(), std::path::Path::new(basename));
        assert!(segment_ops.0.is_err() && segment_ops.1.is_err());
        assert!(names::segment_names(text, None, Some(size)).is_err());
        assert!(names::segment_to_lsn(text, 0, size).is_err());
        assert_eq!(
            names::encode_history_name(name.timeline()),
            basename.to_ascii_uppercase().replace("HISTORY", "history")
        );
        return;
    }
    segment_bearing(text, &name, size, segment_ops);
}

/// The checks of [`wal_name`] for names that denote a segment (plain, `.backup`,
/// `.partial`).
fn segment_bearing(
    text: &str,
    name: &WalName,
    size: SegmentSize,
    (next, previous): (
        Result<String, wal_core::WalError>,
        Result<String, wal_core::WalError>,
    ),
) {
    let (timeline, log, segment) = (
        name.timeline(),
        name.log().expect("segment-bearing names have a log"),
        name.segment()
            .expect("segment-bearing names have a segment"),
    );
    let canonical = names::encode_segment_name(timeline, log, segment);
    assert!(canonical.eq_ignore_ascii_case(&name.as_str()[..24]));
    assert_eq!(name.segment_name().as_deref(), Some(canonical.as_str()));
    let hash_dir = name
        .hash_dir()
        .expect("segment-bearing names have a hash dir");
    assert_eq!(names::decode_hash_dir(&hash_dir), Some((timeline, log)));
    assert_eq!(
        name.relpath(),
        std::path::Path::new(&hash_dir).join(name.as_str())
    );
    // Only plain segment names step to their neighbours.
    if name.kind() != WalKind::Segment {
        assert!(next.is_err() && previous.is_err(), "{text:?}");
    }
    // Segment numbers above segments_per_log do not exist at this size: the arithmetic
    // wraps them as Barman does, and nothing inverts.
    let possible = segment <= size.segments_per_log();
    if name.kind() == WalKind::Segment && possible {
        match &next {
            Ok(next) => assert_eq!(
                names::previous_segment_name(next, size).ok().as_deref(),
                Some(canonical.as_str()),
                "previous(next({text:?}))"
            ),
            Err(_) => assert_eq!((log, segment), (u32::MAX, size.segments_per_log())),
        }
        match &previous {
            Ok(previous) => assert_eq!(
                names::next_segment_name(previous, size).ok().as_deref(),
                Some(canonical.as_str()),
                "next(previous({text:?}))"
            ),
            Err(_) => assert_eq!((log, segment), (0, 0)),
        }
    }
    // An enumeration from a name to itself is that one segment; an endless one starts
    // with it and goes on with the next, when there is a next.
    let one: Vec<String> = names::segment_names(text, Some(text), Some(size))
        .expect("a segment-bearing name enumerates")
        .take(3)
        .collect();
    assert_eq!(one, std::slice::from_ref(&canonical));
    let endless: Vec<String> = names::segment_names(text, None, Some(size))
        .expect("a segment-bearing name enumerates")
        .take(2)
        .collect();
    assert_eq!(endless.first(), Some(&canonical));
    if let Ok(next) = &next {
        assert_eq!(endless.get(1), Some(next));
    }
    let _ = names::segment_names(text, None, None).map(|names| names.take(2).count());
    for offset in [0, size.bytes() - 1] {
        let lsn = names::segment_to_lsn(text, offset, size);
        if possible {
            let lsn = lsn.expect("a segment-bearing name has an LSN");
            assert_eq!(
                names::lsn_to_segment(lsn, timeline, size),
                (canonical.clone(), offset),
                "lsn_to_segment(segment_to_lsn({text:?}, {offset}))"
            );
            assert_eq!(names::parse_lsn(&names::format_lsn(lsn)), Some(lsn));
        }
    }
}

/// `TTTTTTTTLLLLLLLL` directories and `X/Y` LSNs read back what they print.
fn hash_dir_and_lsn_text(text: &str) {
    if let Some((timeline, log)) = names::decode_hash_dir(text) {
        assert!(format!("{timeline:08X}{log:08X}").eq_ignore_ascii_case(text));
    }
    if let Some(lsn) = names::parse_lsn(text) {
        let printed = names::format_lsn(lsn);
        assert_eq!(
            names::parse_lsn(&printed),
            Some(lsn),
            "{text:?} -> {printed}"
        );
    }
}

/// NDJSON records: whatever [`WalRecord::from_line`] accepts, [`WalRecord::write_line`]
/// writes as one line that parses back to an equal record and is written identically.
pub fn record(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(record) = WalRecord::from_line(line, 1) else {
        return;
    };
    let first = written(&record);
    let again = WalRecord::from_line(&first[..first.len() - 1], 2)
        .unwrap_or_else(|e| panic!("{line:?} was written as {first:?}, which is refused: {e}"));
    assert_eq!(again, record, "{line:?} was written as {first:?}");
    assert_eq!(written(&again), first, "{line:?}");
}

/// One record as the stream carries it: a single `\n`-terminated UTF-8 line.
fn written(record: &WalRecord) -> String {
    let mut out = Vec::new();
    record
        .write_line(&mut out)
        .expect("writing to memory cannot fail");
    let text = String::from_utf8(out).expect("records are written as UTF-8");
    assert!(
        text.ends_with('\n') && text.matches('\n').count() == 1,
        "{text:?} is not one line"
    );
    text
}

/// xlog.db lines: what [`XlogLine::parse`] accepts is written back by
/// [`XlogLine::to_line`] as one line of five tab-separated fields that parses back to
/// the same entry; and [`xlogdb::python_float_repr`] of any float (the first 8 bytes)
/// reads back as the same float.
pub fn xlogdb_line(data: &[u8]) {
    if let Some(bits) = data.first_chunk::<8>() {
        let value = f64::from_le_bytes(*bits);
        let repr = xlogdb::python_float_repr(value);
        let back: f64 = repr
            .parse()
            .unwrap_or_else(|e| panic!("repr of {value:e} is {repr:?}: {e}"));
        assert!(same_float(back, value), "{value:e} -> {repr:?} -> {back:e}");
    }
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Some(parsed) = XlogLine::parse(line) else {
        return;
    };
    let _ = parsed.known_compression();
    let text = parsed.to_line();
    assert!(text.ends_with('\n'), "{text:?}");
    assert_eq!(
        text.split('\t').count(),
        5,
        "{line:?} was written as {text:?}"
    );
    let again = XlogLine::parse(&text)
        .unwrap_or_else(|| panic!("{line:?} was written as {text:?}, which is refused"));
    assert!(
        again.name == parsed.name
            && again.size == parsed.size
            && same_float(again.time, parsed.time)
            && again.compression == parsed.compression
            && again.encryption == parsed.encryption,
        "{line:?} -> {text:?} -> {again:?}"
    );
    assert_eq!(again.to_line(), text);
}

/// Equal floats, NaN equal to NaN (xlog.db can say `nan`).
fn same_float(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// The OpenPGP packet detector: lengths never point past the input, a header parses the
/// same from its own bytes alone, and [`openpgp::identify`] needs no more than
/// [`openpgp::HEAD_LENGTH`] bytes (what `identify_file` reads).
pub fn openpgp(data: &[u8]) {
    let start = openpgp::identify(data);
    assert_eq!(
        openpgp::identify(&data[..data.len().min(openpgp::HEAD_LENGTH)]),
        start,
        "identify depends on bytes past HEAD_LENGTH"
    );
    if let Some((length, octets)) = openpgp::parse_new_length(data) {
        assert!(
            matches!(octets, 1 | 2 | 5) && octets <= data.len(),
            "{octets}"
        );
        assert_eq!(
            openpgp::parse_new_length(&data[..octets]),
            Some((length, octets))
        );
        match (length, octets) {
            (BodyLength::Full(len), 1) => assert!(len < 192),
            (BodyLength::Full(len), 2) => assert!((192..=8383).contains(&len)),
            (BodyLength::Partial(len), 1) => assert!(len.is_power_of_two() && len <= 1 << 30),
            (BodyLength::Full(_), 5) => {}
            other => panic!("impossible new-format length {other:?}"),
        }
    }
    let header = openpgp::parse_header(data);
    if let Some(header) = header {
        assert!(
            (1..=6).contains(&header.header_len) && header.header_len <= data.len(),
            "{header:?} from {} bytes",
            data.len()
        );
        assert!(header.tag < 64, "{header:?}");
        assert_eq!(
            openpgp::parse_header(&data[..header.header_len]),
            Some(header)
        );
    }
    match start {
        None | Some(MessageStart::Armored) => {}
        Some(_) => assert!(header.is_some(), "identified without a packet header"),
    }
}

/// The WAL shape check, [`shape::check`]: the input is the file's size (8 bytes,
/// little-endian), a WAL name, `\n`, then the file's first bytes.
///
/// Errors are one line; bytes given past the file's size change nothing (they are not the
/// file's), nor do bytes past the long header of a segment; and an accepted header agrees
/// with the name: page address, timeline, segment number within a log of the header's
/// segment size, and the file's size.
pub fn wal_shape(data: &[u8]) {
    let Some((size, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let file_size = u64::from_le_bytes(*size);
    let Some(newline) = rest.iter().position(|&byte| byte == b'\n') else {
        return;
    };
    let Ok(Ok(name)) = std::str::from_utf8(&rest[..newline]).map(WalName::parse) else {
        return;
    };
    let head = &rest[newline + 1..];
    let result = shape::check(&name, head, file_size);
    let within = usize::try_from(file_size).map_or(head.len(), |size| size.min(head.len()));
    assert_eq!(
        shape::check(&name, &head[..within], file_size),
        result,
        "bytes past the file's size changed the answer"
    );
    if name.kind() == WalKind::Segment && within > shape::HEADER_LENGTH {
        assert_eq!(
            shape::check(&name, &head[..shape::HEADER_LENGTH], file_size),
            result,
            "bytes past a segment's long header changed the answer"
        );
    }
    match result {
        Err(e) => {
            let message = e.to_string();
            assert!(
                !message.is_empty() && !message.contains('\n'),
                "{message:?}"
            );
        }
        Ok(None) => assert_ne!(name.kind(), WalKind::Segment),
        Ok(Some(header)) => accepted_header(&name, &header, file_size),
    }
}

/// What an accepted long header must say about the file `name` of `file_size` bytes.
fn accepted_header(name: &WalName, header: &shape::LongHeader, file_size: u64) {
    let size = header.segment_size;
    let (Some(log), Some(segment)) = (name.log(), name.segment()) else {
        panic!("a header accepted for {name}, which denotes no segment");
    };
    assert_eq!(
        shape::pg_version_of_magic(header.magic),
        Some(header.pg_version)
    );
    assert!(header.info & 0x0002 != 0, "{header:?}");
    assert!(
        header.timeline != 0 && header.timeline <= name.timeline(),
        "{header:?}"
    );
    assert!(
        header.block_size.is_power_of_two() && ((1 << 10)..=(1 << 16)).contains(&header.block_size),
        "{header:?}"
    );
    assert!(segment <= size.segments_per_log(), "{name} with {header:?}");
    assert_eq!(
        names::lsn_to_segment(header.page_address, name.timeline(), size),
        (names::encode_segment_name(name.timeline(), log, segment), 0),
        "{name} with {header:?}"
    );
    match name.kind() {
        WalKind::Segment => assert_eq!(file_size, size.bytes()),
        WalKind::Partial => assert!(
            (shape::HEADER_LENGTH as u64..=size.bytes()).contains(&file_size),
            "{file_size}"
        ),
        kind => panic!("a header accepted for a {kind} file"),
    }
}
