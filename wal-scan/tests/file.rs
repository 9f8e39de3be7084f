//! `wal-scan file PATH...`: archive_command's `%p` as a record.

use std::fs;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{
    MTIME, Server, WAL_SIZE, compressed_by, put, put_wal, scan, text, wal_content,
};

#[test]
fn named_files_become_records_in_the_order_given() {
    let server = Server::new();
    let second = put_wal(&server.incoming, "000000010000000000000002");
    let first = put(
        &server.incoming,
        "000000010000000000000001",
        &compressed_by("zstd", &wal_content("000000010000000000000001", 0)),
    );
    let run = scan(&["file".as_ref(), second.as_os_str(), first.as_os_str()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.names(),
        ["000000010000000000000002", "000000010000000000000001"]
    );
    let record = &run.records[0];
    assert_eq!(record["kind"], "segment");
    assert_eq!(
        (&record["path"], &record["source"]),
        (&json!(text(&second)), &json!(text(&second)))
    );
    assert_eq!(record["size"], WAL_SIZE);
    assert_eq!(record["time"].as_f64(), Some(MTIME));
    assert_eq!(record["compression"], Value::Null);
    assert_eq!(run.records[1]["compression"], "zstd");
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn a_missing_file_fails_with_66() {
    let server = Server::new();
    let present = put_wal(&server.incoming, "000000010000000000000001");
    let missing = server.incoming.join("000000010000000000000002");
    let run = scan(&["file".as_ref(), missing.as_os_str(), present.as_os_str()]);
    assert_eq!(run.code, 66);
    let message = format!(
        "cannot open {}: No such file or directory (os error 2)",
        missing.display()
    );
    let record = run.record("000000010000000000000002");
    assert_eq!(record["path"], text(&missing));
    assert!(
        record.get("source").is_none(),
        "nothing to remove: {record}"
    );
    assert_eq!(
        record["error"],
        json!({"stage": "wal-scan", "kind": "not_found", "message": message})
    );
    assert_eq!(run.stderr_lines(), [format!("wal-scan: {message}")]);
    // The stream goes on.
    assert_eq!(run.record("000000010000000000000001")["kind"], "segment");
}

/// Issue 11: archive_command's `%p` that is not a WAL file used to be an `unknown` queue
/// entry, exit 0, and archive-command reported success with nothing stored. A named file
/// is meant to be WAL: anything else fails its record (no `source`: nothing may move it),
/// exit 65, one stderr line naming the file and the cause.
#[test]
fn a_named_file_that_is_not_wal_fails_with_65() {
    let server = Server::new();
    let named_badly = put_wal(&server.incoming, "RECOVERYHISTORY");
    let directory = server.incoming.join("000000010000000000000002");
    fs::create_dir(&directory).unwrap();
    let target = put_wal(&server.streaming, "000000010000000000000003");
    let link = server.incoming.join("000000010000000000000003");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let dangling = server.incoming.join("000000010000000000000005");
    std::os::unix::fs::symlink(server.incoming.join("gone"), &dangling).unwrap();
    let fifo = server.incoming.join("000000010000000000000004");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for (path, cause) in [
        (&named_badly, "not a WAL file name"),
        (&directory, "a directory, not a WAL file"),
        (&link, "a symbolic link, not a WAL file"),
        (&dangling, "a symbolic link, not a WAL file"),
        (&fifo, "a fifo, not a WAL file"),
    ] {
        let run = scan(&["file".as_ref(), path.as_os_str()]);
        assert_eq!(run.code, 65, "{}: {run:?}", path.display());
        let message = format!("{}: {cause}", path.display());
        assert_eq!(run.stderr_lines(), [format!("wal-scan: {message}")]);
        assert_eq!(run.records.len(), 1);
        let record = &run.records[0];
        assert_eq!(
            record["error"],
            json!({"stage": "wal-scan", "kind": "unknown", "message": message})
        );
        assert_eq!(record["path"], text(path));
        assert!(record.get("source").is_none(), "nothing to move: {record}");
    }
    // Nothing was touched.
    assert!(directory.is_dir() && fifo.exists() && link.is_symlink() && named_badly.is_file());
}

#[test]
fn the_first_failed_file_chooses_the_exit_status() {
    let server = Server::new();
    let good = put_wal(&server.incoming, "000000010000000000000001");
    let stranger = put_wal(&server.incoming, "notes.txt");
    let missing = server.incoming.join("000000010000000000000009");
    let run = scan(&[
        "file".as_ref(),
        good.as_os_str(),
        stranger.as_os_str(),
        missing.as_os_str(),
    ]);
    assert_eq!(run.code, 65, "{run:?}");
    assert_eq!(run.records.len(), 3, "the stream goes on");
    let run = scan(&["file".as_ref(), missing.as_os_str(), stranger.as_os_str()]);
    assert_eq!(run.code, 66, "{run:?}");
}

/// Issue 11: a named plain file must have the shape of WAL for its name, like a queue
/// entry; one that has not fails its record as `corrupt`, exit 65, so archive_command
/// fails and PostgreSQL keeps the WAL.
/// `--no-header-check` takes it by its name alone.
#[test]
fn a_named_file_without_the_shape_of_wal_fails_with_65_unless_unchecked() {
    let server = Server::new();
    let renamed = put(
        &server.incoming,
        "000000010000000000000002",
        &wal_content("000000010000000000000001", 0),
    );
    let run = scan(&["file".as_ref(), renamed.as_os_str()]);
    assert_eq!(run.code, 65, "{run:?}");
    let message = format!(
        "{}: page address 0/100000 does not match the name (expected 0/200000)",
        renamed.display()
    );
    assert_eq!(run.stderr_lines(), [format!("wal-scan: {message}")]);
    assert_eq!(
        run.records[0]["error"],
        json!({"stage": "wal-scan", "kind": "corrupt", "message": message})
    );
    assert_eq!(run.records[0]["path"], text(&renamed));

    let run = scan(&[
        "file".as_ref(),
        renamed.as_os_str(),
        "--no-header-check".as_ref(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let record = run.record("000000010000000000000002");
    assert_eq!(record["kind"], "segment");
    assert_eq!(record["source"], text(&renamed));
    assert!(record.get("error").is_none(), "{record}");
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn at_least_one_path_is_required() {
    let run = scan(&["file"]);
    assert_eq!(run.code, 64);
    assert!(run.records.is_empty());
}
