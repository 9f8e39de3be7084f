//! Helpers shared by the test modules: the hermetic command, records in and out, files,
//! and the reference CLIs.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use wal_core::{Compression, WalKind};

/// The binary under test, with no `WALPIPE_*`/`PG*` variables inherited.
pub fn wal_compress() -> assert_cmd::Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wal-compress"));
    walpipe_tests::clean_command(&mut cmd);
    assert_cmd::Command::from_std(cmd)
}

/// Deterministic WAL-like bytes (zero runs, patterns, text, noise).
pub fn sample(seed: u64, size: usize) -> Vec<u8> {
    walpipe_tests::synthetic_segment(seed, size)
}

pub use walpipe_tests::{segment_name, write_file};

/// A record as wal-scan writes it for the file at `path` (named `name`).
pub fn record(name: &str, path: &Path) -> Value {
    let size = fs::metadata(path).map_or(0, |m| m.len());
    json!({
        "name": name,
        "kind": wal_core::names::classify(name).map(WalKind::as_str),
        "path": path,
        "source": path,
        "size": size,
        "time": 1_700_000_000.25,
        "compression": null,
        "encryption": null,
    })
}

pub use walpipe_tests::{ndjson, parse_records as parse};

/// Runs `wal-compress args...` on `input`, expects exit `code`, returns the records.
pub fn run_ok(args: &[&str], input: &str, code: i32) -> Vec<Value> {
    let output = wal_compress()
        .args(args)
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(code),
        "wal-compress {args:?}: stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&output.stdout)
}

/// The `path` field of a record.
pub fn path_of(record: &Value) -> PathBuf {
    PathBuf::from(record["path"].as_str().expect("record has a path"))
}

/// Reads the file a record points at.
pub fn content_of(record: &Value) -> Vec<u8> {
    let path = path_of(record);
    fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The names in `dir` that start with a dot (temporary files), sorted.
pub fn dot_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    names.sort();
    names
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
    let output = Command::new(require_cli(cli)).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{cli} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
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
