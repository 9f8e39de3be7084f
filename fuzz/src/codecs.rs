//! Properties of wal-core's decoders on hostile input.
//!
//! walpipe decompresses files it did not write: a queue entry a client compressed, a WAL
//! Barman stored, an object downloaded from a bucket. Whatever their bytes, a decoder must
//! not panic, must fail the way the codec module promises (`InvalidData` or
//! `UnexpectedEof`, naming the algorithm: the input here is memory, so no error can be
//! the input's own), and must not take more memory than its limits allow. The memory
//! part is checked by the fuzzer itself (`-rss_limit_mb`, `-malloc_limit_mb`, set by
//! `scripts/fuzz`): a decoder that sizes an allocation from a header fails the run.
//!
//! The fuzz targets under `fuzz_targets/` call these functions, and wal-core's
//! `tests/fuzz_regressions.rs` feeds them every saved crash input.

use std::io::{ErrorKind, Read};

use wal_core::Compression;
use wal_core::codec;

/// A fuzz target's name (a directory name of `fuzz/regressions/`) and its check.
pub type Target = (&'static str, fn(&[u8]));

/// Every check of this module.
pub const TARGETS: &[Target] = &[
    ("decode_bzip2", decode_bzip2),
    ("decode_gzip", decode_gzip),
    ("decode_lz4", decode_lz4),
    ("decode_snappy", decode_snappy),
    ("decode_xz", decode_xz),
    ("decode_zstd", decode_zstd),
];

/// How much decoded output one input of zstd or xz may produce before the check stops
/// reading: more than the largest decoder window allowed (128 MiB), so a window a stream
/// declares is filled and counted against the memory budget, and small enough that a
/// decompression bomb costs a fuzzer run a fraction of a second, not the 1 GiB the codec
/// module itself allows.
pub const OUTPUT_CAP: u64 = 160 << 20;

/// The same for the formats whose decoders keep little state (gzip's 32 KiB window,
/// bzip2's 900 kB blocks, lz4's blocks of at most 4 MiB, snappy's 64 KiB): a bomb's first
/// 16 MiB take every path its next 144 would, and reading them all made each such input
/// cost a tenth of a second (bzip2 ran at 600 inputs a second). The output cap itself is
/// the codec module's, tested there.
pub const SMALL_STATE_OUTPUT_CAP: u64 = 16 << 20;

/// The cap for `algorithm`.
fn output_cap(algorithm: Compression) -> u64 {
    match algorithm {
        Compression::Zstd | Compression::Xz => OUTPUT_CAP,
        _ => SMALL_STATE_OUTPUT_CAP,
    }
}

/// Decodes `data` as bzip2.
pub fn decode_bzip2(data: &[u8]) {
    decode(Compression::Bzip2, data);
}

/// Decodes `data` as gzip.
pub fn decode_gzip(data: &[u8]) {
    decode(Compression::Gzip, data);
}

/// Decodes `data` as lz4 frames.
pub fn decode_lz4(data: &[u8]) {
    decode(Compression::Lz4, data);
}

/// Decodes `data` as the snappy framing format.
pub fn decode_snappy(data: &[u8]) {
    decode(Compression::Snappy, data);
}

/// Decodes `data` as xz.
pub fn decode_xz(data: &[u8]) {
    decode(Compression::Xz, data);
}

/// Decodes `data` as zstd frames.
pub fn decode_zstd(data: &[u8]) {
    decode(Compression::Zstd, data);
}

/// Reads `data` through [`codec::decoder`] until the end, an error or its cap
/// ([`OUTPUT_CAP`], [`SMALL_STATE_OUTPUT_CAP`]).
///
/// Panics when the decoder fails any other way than `InvalidData`/`UnexpectedEof` with
/// the algorithm in the message.
pub fn decode(algorithm: Compression, data: &[u8]) {
    let mut reader = match codec::decoder(algorithm, data) {
        Ok(reader) => reader,
        Err(e) => return assert_refusal(algorithm, &e),
    };
    let mut buffer = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    let cap = output_cap(algorithm);
    while total < cap {
        match reader.read(&mut buffer) {
            Ok(0) => return,
            Ok(len) => total += len as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return assert_refusal(algorithm, &e),
        }
    }
}

/// The codec module's promise for bad input: `InvalidData` or `UnexpectedEof`, and a
/// message that names the algorithm.
fn assert_refusal(algorithm: Compression, error: &std::io::Error) {
    assert!(
        matches!(
            error.kind(),
            ErrorKind::InvalidData | ErrorKind::UnexpectedEof
        ),
        "{algorithm}: error of kind {:?}: {error}",
        error.kind()
    );
    assert!(
        error.to_string().contains(algorithm.name()),
        "{algorithm}: the error does not name the algorithm: {error}"
    );
}
