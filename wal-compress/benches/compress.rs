//! Throughput of the default codec on one WAL segment, so a change that slows archiving
//! shows up as a number: zstd level 3 compress and decompress of a 16 MiB pseudo-WAL buffer
//! in memory, and the whole stage (file in, temporary copy out) on the same bytes.
//!
//! `cargo bench -p wal-compress`. For reference, zstd-3 on real WAL was measured at about
//! 316 MB/s compress and 1158 MB/s decompress on a quiet machine.

use std::hint::black_box;
use std::io::Cursor;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wal_compress::{Config, run};
use wal_core::codec::{self, Level};
use wal_core::{Compression, WalRecord};

const SEGMENT: usize = 16 << 20;

fn zstd_segment(c: &mut Criterion) {
    let data = walpipe_tests::synthetic_segment(42, SEGMENT);
    let (_, compressed) = codec::compress(
        Compression::Zstd,
        Level::Exact(3),
        &mut &data[..],
        Vec::with_capacity(SEGMENT),
    )
    .unwrap();

    let mut group = c.benchmark_group("zstd-3 16 MiB");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(SEGMENT as u64));
    group.bench_function("compress", |b| {
        let mut output = Vec::with_capacity(SEGMENT);
        b.iter(|| {
            output.clear();
            let (read, _) = codec::compress(
                Compression::Zstd,
                Level::Exact(3),
                &mut black_box(&data[..]),
                &mut output,
            )
            .unwrap();
            assert_eq!(read, SEGMENT as u64);
        });
    });
    group.bench_function("decompress", |b| {
        let mut output = Vec::with_capacity(SEGMENT);
        b.iter(|| {
            output.clear();
            let written =
                codec::decompress(Compression::Zstd, black_box(&compressed[..]), &mut output)
                    .unwrap();
            assert_eq!(written, SEGMENT as u64);
        });
    });

    // The stage as wal-archive runs it: read the file, write the hidden copy (page cache,
    // no fsync), one record in and out.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("000000010000000000000001");
    std::fs::write(&path, &data).unwrap();
    let mut record = WalRecord::new("000000010000000000000001");
    record.path = Some(path);
    let mut line = Vec::new();
    record.write_line(&mut line).unwrap();
    let config = Config::compress(Compression::Zstd, Level::Exact(3)).with_jobs(1);
    group.bench_function("wal-compress stage", |b| {
        let mut output = Vec::new();
        b.iter(|| {
            output.clear();
            let summary = run(&config, Cursor::new(&line), &mut output).unwrap();
            assert_eq!(summary.failed, 0);
        });
    });
    group.finish();
}

criterion_group!(benches, zstd_segment);
criterion_main!(benches);
