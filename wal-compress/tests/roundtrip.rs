//! decompress ∘ compress = identity, for every algorithm, over generated inputs from empty
//! to a full 16 MiB segment, driven in-process through [`wal_compress::run`].

use std::fs;
use std::io::Cursor;

use tempfile::tempdir;
use wal_compress::{Config, run};
use wal_core::codec::Level;
use wal_core::stage::Summary;
use wal_core::{Compression, WalRecord};

use crate::util::{sample, write_file};

/// Sizes around the edges: nothing, one byte, one page, a bit over a buffer multiple, and
/// a default-sized segment.
const SIZES: [usize; 5] = [0, 1, 4096, (1 << 20) + 7, 16 << 20];

fn records_of(output: &[u8]) -> Vec<WalRecord> {
    String::from_utf8(output.to_vec())
        .unwrap()
        .lines()
        .enumerate()
        .map(|(n, line)| WalRecord::from_line(line, n as u64 + 1).unwrap())
        .collect()
}

fn round_trip(algorithm: Compression, level: Level) {
    let dir = tempdir().unwrap();
    let mut input = Vec::new();
    let mut originals = Vec::new();
    for (n, size) in SIZES.into_iter().enumerate() {
        let data = sample(1000 + n as u64, size);
        // Not WAL names: a snappy "segment" must have a segment's size (decompress.rs), and
        // these bytes are about the codecs, not about WAL.
        let name = format!("roundtrip-{n}");
        let mut record = WalRecord::new(&name);
        let path = write_file(dir.path(), &name, &data);
        record.size = data.len() as u64;
        record.source = Some(path.clone());
        record.path = Some(path);
        record.write_line(&mut input).unwrap();
        originals.push(data);
    }
    let expected = Summary {
        records: SIZES.len() as u64,
        failed: 0,
        temporary: 0,
        malformed: 0,
        arrived_failed: 0,
        arrived_corrupt: 0,
    };

    let config = Config::compress(algorithm, level).with_jobs(2);
    let mut compressed = Vec::new();
    let summary = run(&config, Cursor::new(input), &mut compressed).unwrap();
    assert_eq!(summary, expected, "{algorithm}: compress");
    let records = records_of(&compressed);
    for (record, data) in records.iter().zip(&originals) {
        assert_eq!(record.compression, Some(algorithm));
        let path = record.path.as_ref().unwrap();
        assert_eq!(record.size, fs::metadata(path).unwrap().len());
        assert_ne!(Some(path), record.source.as_ref());
        assert_eq!(record.temps, std::slice::from_ref(path));
        assert!(
            data.len() < 4096 || record.size < data.len() as u64,
            "{algorithm}: {} bytes compress",
            data.len()
        );
    }

    let mut decompressed = Vec::new();
    let config = Config::decompress().with_jobs(2);
    let summary = run(&config, Cursor::new(compressed), &mut decompressed).unwrap();
    assert_eq!(summary, expected, "{algorithm}: decompress");
    for (record, data) in records_of(&decompressed).iter().zip(&originals) {
        assert_eq!(record.compression, None);
        assert_eq!(record.size, data.len() as u64);
        let back = fs::read(record.path.as_ref().unwrap()).unwrap();
        assert!(
            back == *data,
            "{algorithm}: {} bytes do not round-trip",
            data.len()
        );
        assert_eq!(record.temps.len(), 2, "both copies are listed for removal");
    }
}

#[test]
fn gzip_round_trips() {
    round_trip(Compression::Gzip, Level::Medium);
}

#[test]
fn bzip2_round_trips() {
    round_trip(Compression::Bzip2, Level::Medium);
}

#[test]
fn xz_round_trips() {
    round_trip(Compression::Xz, Level::Medium);
}

#[test]
fn zstd_round_trips() {
    round_trip(Compression::Zstd, Level::Medium);
}

#[test]
fn lz4_round_trips() {
    round_trip(Compression::Lz4, Level::Medium);
}

#[test]
fn snappy_round_trips() {
    round_trip(Compression::Snappy, Level::Medium);
}

#[test]
fn extreme_levels_round_trip() {
    round_trip(Compression::Zstd, Level::Exact(-22));
    round_trip(Compression::Gzip, Level::Low);
}
