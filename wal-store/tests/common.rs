//! Fixtures shared by wal-store's tests: a Barman-shaped server home and records.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{Value, json};
use tempfile::TempDir;

pub const SEG1: &str = "000000010000000000000001";
pub const SEG2: &str = "000000010000000000000002";
pub const SEG3: &str = "000000010000000000000003";

/// `<tmp>/pg/{incoming,wals,errors}` with locks in `<tmp>`.
pub struct Home {
    pub dir: TempDir,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["pg/incoming", "pg/wals"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Home { dir }
    }
    pub fn incoming(&self) -> PathBuf {
        self.dir.path().join("pg/incoming")
    }
    pub fn wals(&self) -> PathBuf {
        self.dir.path().join("pg/wals")
    }
    pub fn errors(&self) -> PathBuf {
        self.dir.path().join("pg/errors")
    }
    pub fn xlogdb(&self) -> PathBuf {
        self.wals().join("pg-xlog.db")
    }
    pub fn xlogdb_text(&self) -> String {
        fs::read_to_string(self.xlogdb()).unwrap_or_default()
    }
    pub fn archived(&self, name: &str) -> PathBuf {
        if name.ends_with(".history") {
            self.wals().join(name)
        } else {
            self.wals().join(&name[..16]).join(name)
        }
    }
    /// A queue file with WAL-shaped content for `name` ([`wal_content`]) and a fixed
    /// mtime.
    pub fn queue_file(&self, name: &str, seed: u8) -> PathBuf {
        let path = self.incoming().join(name);
        write_with_mtime(&path, &wal_content(name, seed), 1_700_000_000);
        path
    }
    pub fn errors_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.errors())
            .map(|it| {
                it.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

pub fn write_with_mtime(path: &Path, bytes: &[u8], mtime: u64) {
    fs::write(path, bytes).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// Content with the shape of WAL for the file name `name`, which `put` stores and `get`
/// writes out: a 1 MiB segment ([`wal_segment`], also for a `.partial`), a history file
/// (a `# seed` comment line makes seeds differ) or a backup label starting where the
/// name says. Another `seed` gives other content under the same name.
pub fn wal_content(name: &str, seed: u8) -> Vec<u8> {
    if let Some(timeline) = name.strip_suffix(".history") {
        let mut text = format!("# seed {seed}\n").into_bytes();
        text.extend(history_file(u32::from_str_radix(timeline, 16).unwrap()));
        return text;
    }
    if let Some(rest) = name.strip_suffix(".backup") {
        return backup_label(&rest[..24], &rest[25..], seed);
    }
    wal_segment(&name[..24], u64::from(seed))
}

/// A backup label for a backup that started at `offset` (hex) into `segment`, with
/// 1 MiB segments.
fn backup_label(segment: &str, offset: &str, seed: u8) -> Vec<u8> {
    let field = |range: std::ops::Range<usize>| u64::from_str_radix(&segment[range], 16).unwrap();
    let start =
        (field(8..16) << 32) + (field(16..24) << 20) + u64::from_str_radix(offset, 16).unwrap();
    let stop = start + 0x100;
    let lsn = |at: u64| format!("{:X}/{:X}", at >> 32, at & 0xFFFF_FFFF);
    format!(
        "START WAL LOCATION: {} (file {segment})\nSTOP WAL LOCATION: {} (file {segment})\n\
         CHECKPOINT LOCATION: {}\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
         START TIME: 2023-11-14 22:13:20 UTC\nLABEL: seed {seed}\nSTART TIMELINE: 1\n\
         STOP TIME: 2023-11-14 22:13:21 UTC\nSTOP TIMELINE: 1\n",
        lsn(start),
        lsn(stop),
        lsn(start + 0x60),
    )
    .into_bytes()
}

/// The record wal-scan would emit for a queue file.
pub fn record_for(path: &Path) -> Value {
    let meta = fs::metadata(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let kind = if name.ends_with(".history") {
        "history"
    } else {
        "segment"
    };
    json!({
        "name": name, "kind": kind, "path": path, "source": path,
        "size": meta.len(), "time": 1_700_000_000.0, "compression": null, "encryption": null,
    })
}

/// A record whose `path` is a zstd-compressed temp of `source` (as wal-compress leaves it).
pub fn compressed_record(source: &Path) -> Value {
    let name = source.file_name().unwrap().to_string_lossy().into_owned();
    let temp = source.with_file_name(format!(".{name}.compressed"));
    let out = std::process::Command::new("zstd")
        .args(["-q", "-3", "-f", "-o"])
        .arg(&temp)
        .arg(source)
        .status()
        .expect("the zstd CLI is needed: run scripts/install-test-deps");
    assert!(out.success());
    let mut record = record_for(source);
    record["path"] = json!(temp);
    record["temps"] = json!([temp]);
    record["compression"] = json!("zstd");
    record["size"] = json!(fs::metadata(&temp).unwrap().len());
    record
}

pub use walpipe_tests::{history_file, ndjson, parse_records as parse, wal_segment};

/// `wal-store` with a clean environment.
pub fn wal_store() -> Command {
    let mut cmd = Command::cargo_bin("wal-store").unwrap();
    for (key, _) in std::env::vars() {
        if key.starts_with("WALPIPE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs `wal-store put` for `home` with `records`; returns (exit code, records, stderr).
pub fn put(home: &Home, extra: &[&str], records: &[Value]) -> (i32, Vec<Value>, String) {
    let out = wal_store()
        .args(["put", "--server", "pg", "--archive"])
        .arg(home.wals())
        .args(extra)
        .write_stdin(ndjson(records))
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        parse(&out.stdout),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
