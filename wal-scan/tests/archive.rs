//! `wal-scan archive DIR`: what a local archive holds, compression from xlog.db or magic.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{MTIME, Server, compressed_by, put, put_wal, scan, text, wal_content};

const SEG1: &str = "000000010000000000000001";
const SEG2: &str = "000000010000000000000002";
const LABEL: &str = "000000010000000000000002.00000028.backup";
const HISTORY: &str = "00000002.history";

/// An archive holding a gzip'ed and a zstd'ed segment, a backup label, a history file,
/// and two things that do not belong.
fn archive(server: &Server) -> PathBuf {
    let wals = &server.wals;
    let hash = wals.join("0000000100000000");
    fs::create_dir(&hash).unwrap();
    put(&hash, SEG1, &compressed_by("gzip", &wal_content(SEG1, 0)));
    put(&hash, SEG2, &compressed_by("zstd", &wal_content(SEG2, 0)));
    put_wal(&hash, LABEL);
    put(&hash, ".000000010000000000000003.tmp", b"half-stored");
    put_wal(wals, HISTORY);
    put(wals, "stray", b"?");
    wals.clone()
}

fn compression(record: &Value) -> Option<&str> {
    record["compression"].as_str()
}

#[test]
fn without_xlog_db_compression_comes_from_the_magic() {
    let server = Server::new();
    let wals = archive(&server);
    let run = scan(&["archive", wals.to_str().unwrap(), "--server", "pg"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.names(), [SEG1, SEG2, LABEL, HISTORY]);
    let seg1 = run.record(SEG1);
    assert_eq!(
        seg1["path"],
        text(&wals.join("0000000100000000").join(SEG1))
    );
    assert!(seg1.get("source").is_none(), "nothing to remove: {seg1}");
    assert_eq!(seg1["time"].as_f64(), Some(MTIME));
    assert_eq!(seg1["kind"], "segment");
    assert_eq!(compression(seg1), Some("gzip"));
    assert_eq!(compression(run.record(SEG2)), Some("zstd"));
    assert_eq!(compression(run.record(LABEL)), None);
    assert_eq!(run.record(LABEL)["kind"], "backup");
    assert_eq!(run.record(HISTORY)["path"], text(&wals.join(HISTORY)));
    assert_eq!(run.record(HISTORY)["kind"], "history");
    // The stray is a warning, not a record; the dot-file is our own temp: silence.
    assert_eq!(run.stderr_lines().len(), 1, "{}", run.stderr);
    assert!(run.stderr.contains(&format!(
        "{}: not an archived WAL file",
        wals.join("stray").display()
    )));
}

fn write_xlogdb(path: &Path) {
    // What xlog.db says wins over the magic: seg1 is catalogued as bzip2 + gpg, seg2 as
    // plain; the backup label is not catalogued (a crash between store and catalogue).
    fs::write(
        path,
        format!(
            "{SEG1}\t100\t1700000000.25\tbzip2\tgpg\n{SEG2}\t200\t1700000000.25\tNone\tNone\n\
             {HISTORY}\t41\t1700000000.25\tNone\tNone\n"
        ),
    )
    .unwrap();
}

fn assert_catalogued(run: &crate::support::Run) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(compression(run.record(SEG1)), Some("bzip2"));
    assert_eq!(run.record(SEG1)["encryption"], "gpg");
    assert_eq!(compression(run.record(SEG2)), None);
    assert_eq!(run.record(SEG2)["encryption"], Value::Null);
    assert_eq!(compression(run.record(LABEL)), None);
    assert_eq!(run.names(), [SEG1, SEG2, LABEL, HISTORY]);
}

#[test]
fn with_xlog_db_compression_and_encryption_come_from_the_catalogue() {
    let server = Server::new();
    let wals = archive(&server);
    write_xlogdb(&wals.join("pg-xlog.db"));
    let run = scan(&["archive", wals.to_str().unwrap(), "--server", "pg"]);
    assert_catalogued(&run);
    // The catalogue itself is not an archived file, nor worth a warning.
    assert_eq!(run.stderr_lines().len(), 1, "{}", run.stderr);
}

#[test]
fn the_catalogue_can_be_named_and_the_server_taken_from_the_environment() {
    let server = Server::new();
    let wals = archive(&server);
    let elsewhere = server.incoming.join("catalogue");
    write_xlogdb(&elsewhere);
    let run = scan(&[
        "archive",
        wals.to_str().unwrap(),
        "--xlogdb",
        elsewhere.to_str().unwrap(),
    ]);
    assert_catalogued(&run);

    write_xlogdb(&wals.join("main-xlog.db"));
    let mut cmd = crate::support::wal_scan();
    cmd.env("WALPIPE_SERVER", "main");
    let run = crate::support::run(cmd, &["archive".as_ref(), wals.as_os_str()]);
    assert_catalogued(&run);
}

#[test]
fn a_named_catalogue_must_exist() {
    let server = Server::new();
    let wals = archive(&server);
    let missing = wals.join("pg-xlog.db");
    let run = scan(&[
        "archive",
        wals.to_str().unwrap(),
        "--xlogdb",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 66, "{}", run.stderr);
    assert!(run.records.is_empty());
}

#[test]
fn a_corrupt_catalogue_stops_the_listing() {
    let server = Server::new();
    let wals = archive(&server);
    fs::write(wals.join("pg-xlog.db"), "this is not a catalogue line\n").unwrap();
    let run = scan(&["archive", wals.to_str().unwrap(), "--server", "pg"]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr.contains("line 1: cannot parse line"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_server_or_a_catalogue_is_required() {
    let server = Server::new();
    let run = scan(&["archive".as_ref(), server.wals.as_os_str()]);
    assert_eq!(run.code, 64);
    assert!(run.stderr.contains("--server"), "{}", run.stderr);
}

#[test]
fn a_missing_archive_is_no_input() {
    let server = Server::new();
    let missing = server.wals.join("nope");
    let run = scan(&["archive", missing.to_str().unwrap(), "--server", "pg"]);
    assert_eq!(run.code, 66);
    assert_eq!(
        run.stderr_lines(),
        [format!(
            "wal-scan: cannot list {}: No such file or directory (os error 2)",
            missing.display()
        )]
    );
}
