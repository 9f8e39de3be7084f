//! `wal-scan incoming`: Barman's FileWalArchiver batch.

use std::fs;
use std::os::unix::fs::symlink;

use serde_json::Value;

use crate::support::{
    MTIME, Server, WAL_SIZE, compressed_by, put, put_wal, scan, text, wal_content, wal_scan,
};

#[test]
fn lists_every_kind_in_byte_order() {
    let server = Server::new();
    // Created out of order: the listing, not the creation, decides.
    for name in [
        "000000020000000000000003",
        "00000001000000000000000a",
        "00000002.history",
        "000000010000000000000002",
        "000000010000000000000001.partial",
        "00000001000000000000000B",
        "000000010000000000000001.00000028.backup",
        "000000010000000000000001",
    ] {
        put_wal(&server.incoming, name);
    }
    let run = scan(&["incoming".as_ref(), server.incoming.as_os_str()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.names(),
        [
            "000000010000000000000001",
            // `.backup` and `.partial` right after their segment ('.' < '0')
            "000000010000000000000001.00000028.backup",
            "000000010000000000000001.partial",
            "000000010000000000000002",
            // byte order: upper case before lower case, whatever the hex value
            "00000001000000000000000B",
            "00000001000000000000000a",
            // a timeline's history between the two timelines
            "00000002.history",
            "000000020000000000000003",
        ]
    );
    let kinds: Vec<&str> = run
        .records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "segment", "backup", "partial", "segment", "segment", "segment", "history", "segment"
        ]
    );
    assert_eq!(
        run.stderr_lines(),
        [
            "wal-scan: Found 8 xlog segments from file archival for pg. Archive all segments in one run."
        ]
    );
}

#[test]
fn records_carry_barmans_wal_file_info() {
    let server = Server::new();
    let path = put_wal(&server.incoming, "000000010000000A00000042");
    let run = scan(&["incoming".as_ref(), server.incoming.as_os_str()]);
    assert_eq!(run.code, 0);
    let record = run.record("000000010000000A00000042");
    assert_eq!(record["kind"], "segment");
    assert_eq!(record["path"], text(&path));
    assert_eq!(record["source"], text(&path));
    assert_eq!(record["size"], WAL_SIZE);
    assert_eq!(record["time"].as_f64(), Some(MTIME));
    // Both present and null: a later stage may set them.
    assert_eq!(record.get("compression"), Some(&Value::Null));
    assert_eq!(record.get("encryption"), Some(&Value::Null));
    assert!(record.get("error").is_none());
}

#[test]
fn dot_files_are_invisible_and_tmp_files_ignored() {
    let server = Server::new();
    put_wal(&server.incoming, ".000000010000000000000001");
    put_wal(&server.incoming, ".12345-000000010000000000000001");
    put_wal(&server.incoming, "000000010000000000000002.tmp");
    put_wal(&server.incoming, "000000010000000000000003");
    let run = scan(&["incoming".as_ref(), server.incoming.as_os_str()]);
    assert_eq!(run.code, 0);
    assert_eq!(run.names(), ["000000010000000000000003"]);
    // Barman's count: the .tmp is an entry (a shell glob sees it), the dot-files are not.
    assert_eq!(
        run.stderr_lines(),
        [
            "wal-scan: Found 2 xlog segments from file archival for pg. Archive a batch of 1 segments in this run."
        ]
    );
}

#[test]
fn the_batch_is_cut_before_filtering() {
    let server = Server::new();
    for name in [
        "000000010000000000000001.tmp",
        "000000010000000000000002",
        "000000010000000000000002.junk",
        "000000010000000000000003",
        "000000010000000000000004",
    ] {
        put_wal(&server.incoming, name);
    }
    let run = scan(&[
        "incoming",
        server.incoming.to_str().unwrap(),
        "--batch-size",
        "3",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The .tmp and the bad entry used up two of the three slots.
    assert_eq!(
        run.names(),
        ["000000010000000000000002", "000000010000000000000002.junk"]
    );
    assert_eq!(run.records[1]["error"]["kind"], "unknown");
    assert!(run.stderr.ends_with(
        "wal-scan: Found 5 xlog segments from file archival for pg. Archive a batch of 1 segments in this run.\n"
    ));
}

/// Issue 11 changed one premise here: a symbolic link to a WAL file used to be taken for
/// a WAL file (Barman's `os.path.isfile` follows it). It is never followed now: what it
/// points at is not ours, may change or vanish, and archiving it would leave the archive
/// pointing outside itself. It is an unknown entry like the others, and its target is left
/// alone.
#[test]
fn unknown_entries_are_error_records_not_failures() {
    let server = Server::new();
    let q = &server.incoming;
    let bad_name = put_wal(q, "backup_label");
    let directory = q.join("000000010000000000000005");
    fs::create_dir(&directory).unwrap();
    let link_to_dir = q.join("000000010000000000000006");
    symlink(&directory, &link_to_dir).unwrap();
    let target = put_wal(&server.streaming, "000000010000000000000007");
    let link_to_file = q.join("000000010000000000000007");
    symlink(&target, &link_to_file).unwrap();

    let run = scan(&["incoming".as_ref(), q.as_os_str()]);
    assert_eq!(
        run.code, 0,
        "unknown entries are classification: {}",
        run.stderr
    );
    for (path, reason) in [
        (&bad_name, "not a WAL file"),
        (&directory, "a directory, not a regular file"),
        (&link_to_dir, "a symbolic link, not a regular file"),
        (&link_to_file, "a symbolic link, not a regular file"),
    ] {
        let record = run.record(path.file_name().unwrap().to_str().unwrap());
        assert_eq!(record["path"], text(path));
        assert_eq!(record["source"], text(path));
        assert!(record.get("kind").is_none(), "{record}");
        let message = format!("{}: {reason}", path.display());
        assert_eq!(
            record["error"],
            serde_json::json!({"stage": "wal-scan", "kind": "unknown", "message": message})
        );
        assert!(
            run.stderr.contains(&format!("wal-scan: {message}\n")),
            "{}",
            run.stderr
        );
    }
    assert_eq!(run.records.len(), 4);
    // wal-scan changes nothing: the link is still a link, its target still a file.
    assert!(link_to_file.is_symlink());
    assert_eq!(
        fs::read(&target).unwrap(),
        wal_content("000000010000000000000007", 0)
    );
}

/// Compressed files are recognised by their magic and left to wal-store's shape check
/// (it sees inside them); only plain files are checked here. Issue 11 changed one premise:
/// an empty file under a segment name used to be a plain segment record; it has no WAL
/// header, so it now fails its record as `corrupt` and stays in the queue.
#[test]
fn pre_compressed_files_are_recognised_by_their_magic() {
    let server = Server::new();
    let wal = |name: &str| wal_content(name, 0);
    put(
        &server.incoming,
        "000000010000000000000001",
        &compressed_by("gzip", &wal("000000010000000000000001")),
    );
    put(
        &server.incoming,
        "000000010000000000000002",
        &compressed_by("zstd", &wal("000000010000000000000002")),
    );
    put(&server.incoming, "000000010000000000000003", b"BZh91AY&SY");
    put(
        &server.incoming,
        "000000010000000000000004",
        &[0xfd, b'7', b'z', b'X', b'Z', 0, 0],
    );
    put(
        &server.incoming,
        "000000010000000000000005",
        &[0x04, 0x22, 0x4d, 0x18, 0x64],
    );
    put(
        &server.incoming,
        "000000010000000000000006",
        b"\xff\x06\x00\x00sNaPpY\x00",
    );
    put(
        &server.incoming,
        "000000010000000000000007",
        &wal("000000010000000000000007"),
    );
    let empty = put(&server.incoming, "000000010000000000000008", b"");
    let run = scan(&["incoming".as_ref(), server.incoming.as_os_str()]);
    assert_eq!(run.code, 1, "the empty segment failed: {}", run.stderr);
    let compressions: Vec<&Value> = run.records.iter().map(|r| &r["compression"]).collect();
    assert_eq!(
        compressions,
        [
            "gzip", "zstd", "bzip2", "xz", "lz4", "snappy", "null", "null"
        ]
        .map(|c| if c == "null" {
            Value::Null
        } else {
            Value::from(c)
        })
        .iter()
        .collect::<Vec<_>>()
    );
    for record in &run.records[..7] {
        assert!(record.get("error").is_none(), "{record}");
    }
    let message = format!(
        "{}: size 0 is too small for WAL: a segment opens with a 40-byte header",
        empty.display()
    );
    let failed = run.record("000000010000000000000008");
    assert_eq!(failed["error"]["kind"], "corrupt", "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with(&message),
        "{failed}"
    );
    assert!(empty.is_file(), "the failed file stays in the queue");
}

/// Issue 11: a plain file under a WAL name must have the shape of WAL for that name, or
/// its record fails as `corrupt` (the file stays in the queue for a human: wal-store
/// neither stores nor moves it) with one line naming it and the cause. The rest of the
/// batch goes on.
#[test]
fn a_plain_file_without_the_shape_of_wal_fails_as_corrupt() {
    let server = Server::new();
    let q = &server.incoming;
    let good = put_wal(q, "000000010000000000000001");
    let mut truncated = wal_content("000000010000000000000002", 0);
    truncated.truncate(WAL_SIZE / 2);
    let cases = [
        (
            put(q, "000000010000000000000002", &truncated),
            "size 524288 is not the segment size 1048576 of its header",
        ),
        (
            // Another segment's bytes under this name.
            put(
                q,
                "000000010000000000000003",
                &wal_content("000000010000000000000004", 0),
            ),
            "page address 0/400000 does not match the name (expected 0/300000)",
        ),
        (
            put(q, "000000010000000000000005", &vec![0x5A; WAL_SIZE]),
            "not WAL: unknown page magic 0x5A5A",
        ),
        (
            put(q, "00000003.history", b"garbage\n"),
            "history file line 1: expected a numeric parent timeline ID",
        ),
        (
            put(
                q,
                "000000010000000000000006.00000028.backup",
                &wal_content("000000010000000000000007.00000028.backup", 0),
            ),
            "backup label START WAL LOCATION 0/700028 (file 000000010000000000000007) \
             does not match the name",
        ),
    ];
    let run = scan(&["incoming".as_ref(), q.as_os_str()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.records.len(), 1 + cases.len(), "{run:?}");
    assert!(
        run.record("000000010000000000000001")
            .get("error")
            .is_none()
    );
    assert_eq!(run.record("000000010000000000000001")["path"], text(&good));
    for (path, why) in &cases {
        let record = run.record(path.file_name().unwrap().to_str().unwrap());
        let error = &record["error"];
        assert_eq!(
            (&error["stage"], &error["kind"]),
            (&Value::from("wal-scan"), &Value::from("corrupt")),
            "{record}"
        );
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(&path.display().to_string()) && message.ends_with(why),
            "{why}: {record}"
        );
        assert!(
            run.stderr.contains(&format!("wal-scan: {message}\n")),
            "{}",
            run.stderr
        );
        assert_eq!(record["source"], text(path), "{record}");
        assert!(path.is_file(), "{}: left where it is", path.display());
    }
}

/// `--no-header-check` takes a plain file for WAL by its name alone, as before issue 11 (pgBackRest's `archive-header-check=n`).
#[test]
fn no_header_check_takes_plain_files_by_their_name_alone() {
    let server = Server::new();
    let q = &server.incoming;
    put(q, "000000010000000000000001", b"not WAL at all");
    put(q, "00000002.history", b"");
    let checked = scan(&["incoming".as_ref(), q.as_os_str()]);
    assert_eq!(checked.code, 1, "{checked:?}");
    assert!(
        checked
            .records
            .iter()
            .all(|r| r["error"]["kind"] == "corrupt"),
        "{checked:?}"
    );

    let run = scan(&[
        "incoming".as_ref(),
        q.as_os_str(),
        "--no-header-check".as_ref(),
    ]);
    assert_unchecked(&run);
}

/// The variable takes the value the README and the wrappers (`--no-header-check` exports
/// `WALPIPE_NO_HEADER_CHECK=1`) give it, and clap's own spelling; `0` leaves the check on.
#[test]
fn walpipe_no_header_check_1_turns_the_check_off() {
    let server = Server::new();
    let q = &server.incoming;
    put(q, "000000010000000000000001", b"not WAL at all");
    put(q, "00000002.history", b"");
    for value in ["1", "true"] {
        let mut cmd = wal_scan();
        cmd.env("WALPIPE_NO_HEADER_CHECK", value);
        let run = crate::support::run(cmd, &["incoming".as_ref(), q.as_os_str()]);
        assert_unchecked(&run);
    }
    let mut cmd = wal_scan();
    cmd.env("WALPIPE_NO_HEADER_CHECK", "0");
    let run = crate::support::run(cmd, &["incoming".as_ref(), q.as_os_str()]);
    assert_eq!(run.code, 1, "{run:?}");
}

/// The two plain files of the `--no-header-check` tests, taken for WAL by their names.
fn assert_unchecked(run: &crate::support::Run) {
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.names(),
        ["000000010000000000000001", "00000002.history"]
    );
    assert!(
        run.records.iter().all(|r| r.get("error").is_none()),
        "{run:?}"
    );
    assert_eq!(run.record("000000010000000000000001")["kind"], "segment");
    assert_eq!(run.record("000000010000000000000001")["size"], 14);
    assert_eq!(run.record("00000002.history")["kind"], "history");
}

#[test]
fn the_server_comes_from_the_layout_a_flag_or_the_environment() {
    let server = Server::new();
    put_wal(&server.incoming, "000000010000000000000001");
    put_wal(&server.incoming, "000000010000000000000002");

    let run = scan(&[
        "incoming",
        server.incoming.to_str().unwrap(),
        "--server",
        "main",
    ]);
    assert!(run.stderr.contains(" for main. "), "{}", run.stderr);

    let mut cmd = crate::support::wal_scan();
    cmd.env("WALPIPE_SERVER", "from-env")
        .env("WALPIPE_BATCH_SIZE", "1");
    let run = crate::support::run(cmd, &["incoming".as_ref(), server.incoming.as_os_str()]);
    assert_eq!(run.names(), ["000000010000000000000001"]);
    assert_eq!(
        run.stderr_lines(),
        [
            "wal-scan: Found 2 xlog segments from file archival for from-env. Archive a batch of 1 segments in this run."
        ]
    );
}

#[test]
fn an_empty_queue_says_so() {
    let server = Server::new();
    let run = scan(&["incoming".as_ref(), server.incoming.as_os_str()]);
    assert_eq!((run.code, run.records.len()), (0, 0));
    assert_eq!(
        run.stderr_lines(),
        ["wal-scan: No xlog segments found from file archival for pg."]
    );
}

#[test]
fn a_missing_queue_is_no_input() {
    let server = Server::new();
    let missing = server.incoming.join("nope");
    let run = scan(&["incoming".as_ref(), missing.as_os_str()]);
    assert_eq!(run.code, 66);
    assert!(run.records.is_empty());
    assert_eq!(
        run.stderr_lines(),
        [format!(
            "wal-scan: cannot list {}: No such file or directory (os error 2)",
            missing.display()
        )]
    );
}

#[test]
fn a_name_no_record_can_carry_fails_the_run() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let server = Server::new();
    fs::write(server.incoming.join(OsStr::from_bytes(b"\xff\xfe")), b"?").unwrap();
    put_wal(&server.incoming, "000000010000000000000001");
    let run = scan(&["incoming".as_ref(), server.incoming.as_os_str()]);
    // Records carry paths as JSON strings: nobody downstream could move this entry, so
    // it takes a human, and the exit code says so.
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.records.len(), 2);
    assert_eq!(run.records[0]["kind"], "segment");
    assert_eq!(run.records[1]["error"]["kind"], "unknown");
    assert!(run.records[1].get("path").is_none());
    assert!(
        run.stderr.contains("file name is not UTF-8"),
        "{}",
        run.stderr
    );
}
