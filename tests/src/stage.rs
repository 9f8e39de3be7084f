//! What the tests of a stage that rewrites files (wal-compress, wal-encrypt) share: the
//! records fed to it for files a test wrote, the stage run on them to an expected exit
//! status, and the files its records then point at.
//!
//! The stage binary itself is named by its test (`env!("CARGO_BIN_EXE_<name>")`), which
//! only the stage's own crate knows.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use wal_core::WalKind;

use crate::fixtures::{segment_name, write_file};
use crate::hermetic::clean_command;
use crate::ndjson::parse_records;
use crate::pg::run_with_stdin;

/// The `time` of every [`record`]: a fixed mtime, as wal-scan reports one.
pub const RECORD_TIME: f64 = 1_700_000_000.25;

/// A record as wal-scan writes it for the file at `path`, named `name`: its `kind` from
/// the name (none for a name that is not a WAL name), its current size, [`RECORD_TIME`],
/// neither compressed nor encrypted.
#[must_use]
pub fn record(name: &str, path: &Path) -> Value {
    let size = fs::metadata(path).map_or(0, |m| m.len());
    json!({
        "name": name,
        "kind": wal_core::names::classify(name).map(WalKind::as_str),
        "path": path,
        "source": path,
        "size": size,
        "time": RECORD_TIME,
        "compression": null,
        "encryption": null,
    })
}

/// One [`record`] for each of `contents`, written to `dir` under [`segment_name`]`(n)`,
/// `n` counting from 0.
#[must_use]
pub fn segment_records(dir: &Path, contents: &[Vec<u8>]) -> Vec<Value> {
    contents
        .iter()
        .zip(0..)
        .map(|(data, n)| {
            let name = segment_name(n);
            record(&name, &write_file(dir, &name, data))
        })
        .collect()
}

/// A command for `program` (the stage binary under test) that inherits no `WALPIPE_*` or
/// `PG*` variable ([`clean_command`]).
#[must_use]
pub fn stage_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    clean_command(&mut cmd);
    cmd
}

/// Runs `program args...` as a [`stage_command`] with `input` on stdin; asserts it exits
/// with `code` (showing its stderr otherwise) and returns the records of stdout.
///
/// # Panics
/// When it cannot run, exits otherwise, or writes anything but records to stdout.
#[must_use]
pub fn run_stage<S: AsRef<OsStr>>(
    program: impl AsRef<OsStr>,
    args: &[S],
    input: &str,
    code: i32,
) -> Vec<Value> {
    let program = Path::new(program.as_ref());
    let mut cmd = stage_command(program);
    cmd.args(args);
    let output = run_with_stdin(&mut cmd, input.as_bytes())
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let shown: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
    assert_eq!(
        output.status.code(),
        Some(code),
        "{} {shown:?}: stderr: {}",
        program.file_name().unwrap_or_default().display(),
        String::from_utf8_lossy(&output.stderr)
    );
    parse_records(&output.stdout)
}

/// The `path` field of a record.
///
/// # Panics
/// When the record has no `path` string.
#[must_use]
pub fn path_of(record: &Value) -> PathBuf {
    PathBuf::from(record["path"].as_str().expect("record has a path"))
}

/// The content of the file a record points at.
///
/// # Panics
/// When it cannot be read.
#[must_use]
pub fn content_of(record: &Value) -> Vec<u8> {
    let path = path_of(record);
    fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The names in `dir` that start with a dot (a stage's temporary files), sorted.
///
/// # Panics
/// When `dir` cannot be read.
#[must_use]
pub fn dot_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// What `program args...` writes to stdout when `input` is fed to its stdin: a stock CLI
/// as a filter, such as `gzip -c` making the compressed file Barman would have stored, or
/// (`input` empty) as a reference reader, such as `gzip -dc FILE`.
///
/// # Panics
/// When the program is missing (`scripts/install-test-deps` installs the ones tests use)
/// or fails.
#[must_use]
pub fn piped_through(program: impl AsRef<OsStr>, args: &[&str], input: &[u8]) -> Vec<u8> {
    let program = program.as_ref();
    let shown = Path::new(program).display();
    let mut cmd = Command::new(program);
    cmd.args(args);
    let output = run_with_stdin(&mut cmd, input)
        .unwrap_or_else(|e| panic!("{shown}: {e} (scripts/install-test-deps installs it)"));
    assert!(
        output.status.success(),
        "{shown} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_their_kind_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let records = segment_records(dir.path(), &[b"abc".to_vec(), Vec::new()]);
        assert_eq!(records[0]["name"], segment_name(0));
        assert_eq!(records[0]["kind"], "segment");
        assert_eq!(records[0]["size"], 3);
        assert_eq!(content_of(&records[0]), b"abc");
        assert_eq!(path_of(&records[1]), dir.path().join(segment_name(1)));
        let plain = write_file(dir.path(), ".plain", b"x");
        assert_eq!(record("plain", &plain)["kind"], Value::Null);
        assert_eq!(dot_files(dir.path()), [".plain"]);
    }
}
