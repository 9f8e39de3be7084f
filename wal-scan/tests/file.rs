//! `wal-scan file PATH...`: archive_command's `%p` as a record.

use serde_json::{Value, json};

use crate::support::{
    FAKE_WAL_SIZE, MTIME, Server, compressed_by, fake_wal, put, put_wal, scan, text,
};

#[test]
fn named_files_become_records_in_the_order_given() {
    let server = Server::new();
    let second = put_wal(&server.incoming, "000000010000000000000002");
    let first = put(
        &server.incoming,
        "000000010000000000000001",
        &compressed_by("zstd", &fake_wal()),
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
    assert_eq!(record["size"], FAKE_WAL_SIZE);
    assert_eq!(record["time"].as_f64(), Some(MTIME));
    assert_eq!(record["compression"], Value::Null);
    assert_eq!(run.records[1]["compression"], "zstd");
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn a_missing_file_fails() {
    let server = Server::new();
    let present = put_wal(&server.incoming, "000000010000000000000001");
    let missing = server.incoming.join("000000010000000000000002");
    let run = scan(&["file".as_ref(), missing.as_os_str(), present.as_os_str()]);
    assert_eq!(run.code, 1);
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

#[test]
fn a_bad_name_is_an_unknown_entry() {
    let server = Server::new();
    let path = put_wal(&server.incoming, "RECOVERYHISTORY");
    let run = scan(&["file".as_ref(), path.as_os_str()]);
    assert_eq!(run.code, 0);
    assert_eq!(run.records.len(), 1);
    assert_eq!(run.records[0]["name"], "RECOVERYHISTORY");
    assert_eq!(run.records[0]["error"]["kind"], "unknown");
}

#[test]
fn at_least_one_path_is_required() {
    let run = scan(&["file"]);
    assert_eq!(run.code, 64);
    assert!(run.records.is_empty());
}
