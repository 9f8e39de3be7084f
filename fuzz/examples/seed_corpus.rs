//! Writes the seed corpus of every fuzz target: a few small, real inputs each, so the
//! fuzzer starts from valid structure instead of guessing magic numbers.
//!
//! `scripts/fuzz` runs it before fuzzing: `cargo run --example seed_corpus -- DIR` writes
//! `DIR/<target>/seed-<what>` (overwriting earlier seeds; the fuzzer's own finds, named
//! by their hash, are left alone). Decoder seeds are made by wal-core's encoders and, when
//! the program is installed, by the reference CLIs with a few of their options (lz4 linked
//! blocks, xz blocks with sizes, gzip with a file name), as real archives hold them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wal_core::Compression;
use wal_core::codec::{self, Level};

fn main() {
    let dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .expect("usage: seed_corpus OUTPUT_DIR"),
    );
    let mut seeds = Seeds { dir, written: 0 };
    wal_names(&mut seeds);
    records(&mut seeds);
    xlogdb_lines(&mut seeds);
    openpgp(&mut seeds);
    shape(&mut seeds);
    decoders(&mut seeds);
    eprintln!(
        "seed_corpus: {} seeds in {}",
        seeds.written,
        seeds.dir.display()
    );
}

/// Where the seeds go, and how many were written.
struct Seeds {
    dir: PathBuf,
    written: usize,
}

impl Seeds {
    fn add(&mut self, target: &str, what: &str, bytes: &[u8]) {
        let dir = self.dir.join(target);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(format!("seed-{what}"));
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.written += 1;
    }
}

/// `wal_name`: a segment-size byte (4: 16 MiB, 0: 1 MiB, 10: 1 GiB), then a name.
fn wal_names(seeds: &mut Seeds) {
    let names: &[(&str, u8, &str)] = &[
        ("segment", 4, "000000010000000A00000042"),
        ("segment-lower", 4, "00000001000000ab000000cd"),
        ("segment-1mib", 0, "0000000200000003000003FF"),
        ("segment-1gib", 10, "000000010000000100000003"),
        ("first", 4, "000000010000000000000000"),
        ("last-of-log", 4, "0000000100000007000000FF"),
        (
            "path",
            4,
            "/var/lib/barman/pg/wals/000000010000000A/000000010000000A00000042",
        ),
        ("history", 4, "0000000A.history"),
        ("backup", 4, "000000010000000A00000042.00000028.backup"),
        ("partial", 4, "000000010000000A00000042.partial"),
        ("tmp", 4, "000000010000000A00000042.tmp"),
        ("short", 4, "000000010000000A0000004"),
        ("lsn", 4, "16/B374D848"),
        ("hash-dir", 4, "000000010000000A"),
    ];
    for &(what, size, name) in names {
        let mut bytes = vec![size];
        bytes.extend_from_slice(name.as_bytes());
        seeds.add("wal_name", what, &bytes);
    }
}

/// `record`: lines as the stages write them, and one as a newer stage might.
fn records(seeds: &mut Seeds) {
    let lines: &[(&str, &str)] = &[
        (
            "compressed",
            r#"{"name":"000000010000000A00000042","kind":"segment","path":"/q/.000000010000000A00000042.compressed","source":"/q/000000010000000A00000042","size":1479083,"time":1795313864.6726859,"compression":"zstd","encryption":null,"temps":["/q/.000000010000000A00000042.compressed"]}"#,
        ),
        (
            "stored",
            r#"{"name":"00000002.history","kind":"history","path":"/q/00000002.history","size":41,"time":1.5,"compression":null,"encryption":"gpg","outcome":"stored","stored_at":"/a/wals/00000002.history"}"#,
        ),
        (
            "failed",
            r#"{"name":"","size":0,"time":0.0,"compression":null,"encryption":null,"error":{"stage":"wal-scan","kind":"bad_record","message":"line 3: not a record"},"line":"{not json"}"#,
        ),
        (
            "extra-fields",
            r#"{"ticket":42,"name":"junk","size":7,"time":-0.0,"note":{"a":[1,2.5,null,true,"\u00e9"]}}"#,
        ),
        ("minimal", r#"{"name":"000000010000000000000001"}"#),
    ];
    for &(what, line) in lines {
        seeds.add("record", what, line.as_bytes());
    }
}

/// `xlogdb_line`: Barman's lines (`docs/barman-formats.md#xlogdb`), with and without the
/// optional fields.
fn xlogdb_lines(seeds: &mut Seeds) {
    let lines: &[(&str, &str)] = &[
        (
            "plain",
            "000000010000000000000002\t16777216\t1467190213.0\tNone\tNone\n",
        ),
        (
            "gzip-gpg",
            "000000010000000A00000042\t4194304\t1795313864.6726859\tgzip\tgpg\n",
        ),
        ("three-fields", "00000002.history 41 1e-05"),
        (
            "exponent",
            "000000010000000000000003.00000028.backup\t250\t1e+16\tcustom\tNone\n",
        ),
    ];
    for &(what, line) in lines {
        seeds.add("xlogdb_line", what, line.as_bytes());
    }
}

/// `openpgp`: the first bytes of encrypted messages as gpg writes them, and of things
/// that are not.
fn openpgp(seeds: &mut Seeds) {
    let heads: &[(&str, &[u8])] = &[
        // Old format, tag 1 (PKESK), two-octet length, version 3.
        ("pkesk-old", &[0x85, 0x01, 0x0c, 0x03, 0x1d, 0x2b, 0x3a]),
        // New format PKESK, version 6.
        ("pkesk-new", &[0xc1, 0xc0, 0x10, 0x06, 0x21]),
        // New format SKESK, version 4.
        ("skesk", &[0xc3, 0x0d, 0x04, 0x09, 0x03, 0x08]),
        // SEIPD v1, five-octet length.
        ("seipd", &[0xd2, 0xff, 0x00, 0x01, 0x00, 0x00, 0x01, 0xaa]),
        // SEIPD with a partial body length.
        ("seipd-partial", &[0xd2, 0xea, 0x01, 0x55]),
        // Old-format SED, indeterminate length.
        ("sed", &[0xa7, 0x9e, 0x44]),
        ("armor", b"-----BEGIN PGP MESSAGE-----\n\nhQEMA"),
        // A literal data packet: OpenPGP, not encrypted.
        ("literal", &[0xcb, 0x0c, b'b', 0x00, 0, 0, 0, 0, b'h', b'i']),
        // A WAL page (PostgreSQL 15 magic).
        (
            "wal-page",
            &[0x10, 0xd1, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00],
        ),
    ];
    for &(what, head) in heads {
        seeds.add("openpgp", what, head);
    }
}

/// `shape`: the file's size (8 bytes, little-endian), a name, `\n`, the file's head (see
/// `walpipe_fuzz::parsers::wal_shape`). Segments open with the 40-byte long page header.
fn shape(seeds: &mut Seeds) {
    const MIB: u64 = 1 << 20;
    let input = |size: u64, name: &str, head: &[u8]| {
        let mut bytes = size.to_le_bytes().to_vec();
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(head);
        bytes
    };
    let pg15 = long_header(0xD110, 1, (0xA << 32) + 0x42 * 16 * MIB, 16 * MIB);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "segment",
            input(16 * MIB, "000000010000000A00000042", &pg15),
        ),
        (
            "partial",
            input(5 * MIB, "000000010000000A00000042.partial", &pg15),
        ),
        (
            "partial-blank",
            input(16 * MIB, "000000010000000A00000042.partial", &[0; 64]),
        ),
        (
            // 9.6, 64 MiB segments, first segment of timeline 2 (its pages are still 1's).
            "segment-96-64mib",
            input(
                64 * MIB,
                "000000020000000100000003",
                &long_header(0xD093, 1, (1 << 32) + 3 * 64 * MIB, 64 * MIB),
            ),
        ),
        (
            "history",
            input(
                41,
                "00000002.history",
                b"1\t0/3000158\tno recovery target specified\n",
            ),
        ),
        (
            "backup",
            input(
                123,
                "000000010000000000000002.00000028.backup",
                b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
                  STOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\n",
            ),
        ),
    ];
    for (what, bytes) in cases {
        // Each is a valid file for its name: the fuzzer starts from accepted structure.
        let (size, rest) = bytes.split_at(8);
        let newline = rest.iter().position(|&byte| byte == b'\n').expect("a name");
        let name = std::str::from_utf8(&rest[..newline]).expect("a UTF-8 name");
        let name = wal_core::WalName::parse(name).expect("a WAL name");
        let size = u64::from_le_bytes(size.try_into().expect("8 bytes"));
        if let Err(e) = wal_core::shape::check(&name, &rest[newline + 1..], size) {
            panic!("shape seed {what} is refused: {e}");
        }
        seeds.add("shape", what, &bytes);
    }
}

/// `XLogLongPageHeaderData` as a little-endian 64-bit server writes it: magic, info
/// (`XLP_LONG_HEADER`), timeline, page address, remaining length, padding, system
/// identifier, segment size, page size (8 KiB).
fn long_header(magic: u16, timeline: u32, page_address: u64, segment_size: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(40);
    header.extend_from_slice(&magic.to_le_bytes());
    header.extend_from_slice(&0x0002_u16.to_le_bytes());
    header.extend_from_slice(&timeline.to_le_bytes());
    header.extend_from_slice(&page_address.to_le_bytes());
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&7_234_567_890_123_456_789_u64.to_le_bytes());
    header.extend_from_slice(
        &u32::try_from(segment_size)
            .expect("a segment size")
            .to_le_bytes(),
    );
    header.extend_from_slice(&8192_u32.to_le_bytes());
    assert_eq!(header.len(), 40);
    header
}

/// 8 KiB shaped like a WAL page: a header, records of mixed words and zero runs, then
/// zeros to the end of the page (a tiny xorshift: the same bytes on every run).
fn wal_page() -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut data = vec![0x10, 0xd1, 0x06, 0x00, 0x01, 0, 0, 0];
    data.extend_from_slice(&0x0A00_0000_u64.to_le_bytes());
    while data.len() < 5000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        match state % 4 {
            0 | 1 => data.extend_from_slice(&state.to_le_bytes()),
            2 => data.extend_from_slice(&(state & 0x0303_0707_0000_1f1f).to_le_bytes()),
            _ => data.resize(data.len() + (state >> 59) as usize, 0),
        }
    }
    data.resize(8192, 0);
    data
}

/// `decode_*`: the page compressed by each algorithm (wal-core's encoders at two levels,
/// an empty stream, two concatenated streams), and by the CLIs that are installed.
fn decoders(seeds: &mut Seeds) {
    let page = wal_page();
    for algorithm in Compression::ALL {
        let target = format!("decode_{}", algorithm.name());
        seeds.add(&target, "low", &encode(algorithm, Level::Low, &page));
        seeds.add(&target, "high", &encode(algorithm, Level::High, &page));
        seeds.add(&target, "empty", &encode(algorithm, Level::Low, b""));
        let mut two = encode(algorithm, Level::Low, &page[..100]);
        two.extend_from_slice(&encode(algorithm, Level::Low, &page[100..300]));
        seeds.add(&target, "two-streams", &two);
    }
    let scratch = std::env::temp_dir().join(format!("walpipe-seed-{}", std::process::id()));
    fs::create_dir_all(&scratch).expect("a scratch directory");
    let plain = scratch.join("000000010000000A00000042");
    fs::write(&plain, &page).expect("the scratch page");
    let cli: &[(&str, &str, &[&str])] = &[
        ("decode_gzip", "gzip", &["-6", "-c"]),
        ("decode_bzip2", "bzip2", &["-1", "-c"]),
        ("decode_xz", "xz", &["-0", "-T1", "-c"]),
        ("decode_xz", "xz", &["-T2", "--block-size=2KiB", "-c"]),
        ("decode_zstd", "zstd", &["-q", "-3", "-c"]),
        ("decode_zstd", "zstd", &["-q", "--no-check", "-19", "-c"]),
        ("decode_lz4", "lz4", &["-q", "-c"]),
        (
            "decode_lz4",
            "lz4",
            &["-q", "-BD", "-B4", "--content-size", "-c"],
        ),
        ("decode_lz4", "lz4", &["-q", "-l", "-c"]),
    ];
    for &(target, program, flags) in cli {
        if let Some(out) = run(program, flags, &plain) {
            let what = format!("{program}{}", flags.concat().replace(['-', '='], ""));
            seeds.add(target, &what, &out);
        }
    }
    let _ = fs::remove_dir_all(&scratch);
}

fn encode(algorithm: Compression, level: Level, data: &[u8]) -> Vec<u8> {
    codec::compress(algorithm, level, &mut &data[..], Vec::new())
        .unwrap_or_else(|e| panic!("{algorithm}: {e}"))
        .1
}

/// `program FLAGS... FILE`'s stdout, or `None` (said on stderr) when it is not installed
/// or fails.
fn run(program: &str, flags: &[&str], file: &Path) -> Option<Vec<u8>> {
    let output = Command::new(program)
        .args(flags)
        .arg(file)
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(output) if output.status.success() => Some(output.stdout),
        Ok(output) => {
            eprintln!(
                "seed_corpus: {program} {flags:?}: {}, skipped",
                output.status
            );
            None
        }
        Err(e) => {
            eprintln!("seed_corpus: {program}: {e}, skipped");
            None
        }
    }
}
