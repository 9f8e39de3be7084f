//! Helpers shared by the test modules: the hermetic command, records in and out, files,
//! and the reference CLIs.

use std::env;
use std::path::{Path, PathBuf};

use serde_json::Value;
use wal_core::Compression;

/// The binary under test, with no `WALPIPE_*`/`PG*` variables inherited.
pub fn wal_compress() -> assert_cmd::Command {
    assert_cmd::Command::from_std(stage_command(env!("CARGO_BIN_EXE_wal-compress")))
}

/// Deterministic WAL-like bytes (zero runs, patterns, text, noise).
pub use walpipe_tests::synthetic_segment as sample;

pub use walpipe_tests::stage::{content_of, dot_files, path_of, record, segment_records};
use walpipe_tests::stage::{piped_through, run_stage, stage_command};
pub use walpipe_tests::{ndjson, parse_records as parse, segment_name, write_file};

/// Runs `wal-compress args...` on `input`, expects exit `code`, returns the records.
pub fn run_ok(args: &[&str], input: &str, code: i32) -> Vec<Value> {
    run_stage(env!("CARGO_BIN_EXE_wal-compress"), args, input, code)
}

/// The full path of a reference CLI. A missing one fails the test: skipping would let a
/// format incompatibility pass unnoticed.
pub fn require_cli(name: &str) -> PathBuf {
    env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` not found in PATH: run scripts/install-test-deps to install it")
        })
}

/// The reference CLI for `algorithm` (snappy has none).
pub fn cli_of(algorithm: Compression) -> Option<&'static str> {
    match algorithm {
        Compression::Gzip => Some("gzip"),
        Compression::Bzip2 => Some("bzip2"),
        Compression::Xz => Some("xz"),
        Compression::Zstd => Some("zstd"),
        Compression::Lz4 => Some("lz4"),
        Compression::Snappy => None,
    }
}

/// Runs `cli args...` and returns its stdout; panics when it fails.
pub fn run_cli(cli: &str, args: &[&str]) -> Vec<u8> {
    piped_through(require_cli(cli), args, &[])
}

/// What the reference CLI decodes `path` to (`gzip -dc`, `zstd -qdc`, ...).
pub fn cli_decompress(algorithm: Compression, path: &Path) -> Vec<u8> {
    let cli = cli_of(algorithm).expect("snappy has no reference CLI");
    let flags = if algorithm == Compression::Zstd {
        "-qdc"
    } else {
        "-dc"
    };
    run_cli(cli, &[flags, path.to_str().unwrap()])
}
