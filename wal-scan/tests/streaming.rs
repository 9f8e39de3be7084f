//! `wal-scan streaming`: Barman's StreamingWalArchiver batch, one file always
//! left behind for pg_receivewal.

use serde_json::Value;

use crate::support::{Run, Server, compressed_by, put, put_wal, scan, wal_content};

fn streaming(server: &Server, names: &[&str], extra: &[&str]) -> Run {
    for name in names {
        put_wal(&server.streaming, name);
    }
    let mut args = vec!["streaming", server.streaming.to_str().unwrap()];
    args.extend_from_slice(extra);
    scan(&args)
}

#[test]
fn a_single_complete_wal_is_held_back() {
    let server = Server::new();
    let run = streaming(&server, &["000000010000000000000001"], &[]);
    assert_eq!(run.code, 0);
    assert!(run.records.is_empty(), "{:?}", run.records);
    assert_eq!(
        run.stderr_lines(),
        ["wal-scan: No xlog segments found from streaming for pg."]
    );
}

#[test]
fn of_two_wals_the_first_is_archived() {
    let server = Server::new();
    let run = streaming(
        &server,
        &["000000010000000000000001", "000000010000000000000002"],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.names(), ["000000010000000000000001"]);
    assert_eq!(run.records[0]["compression"], Value::Null);
    assert_eq!(run.records[0]["encryption"], Value::Null);
    assert_eq!(run.records[0]["kind"], "segment");
    assert!(
        run.records[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("/streaming/000000010000000000000001")
    );
    assert_eq!(
        run.stderr_lines(),
        [
            "wal-scan: Found 2 xlog segments from streaming for pg. Archive a batch of 1 segments in this run."
        ]
    );
}

/// Streamed files are never probed for compression (pg_receivewal writes plain WAL;
/// Barman 3.14.1). Before issue 11 this test saw gzip bytes under a streamed WAL name
/// pass as a plain segment; now a plain file must have the shape of WAL, so the same
/// file, still unprobed (it is not taken for gzip, as the incoming queue would), fails
/// its record as `corrupt` and stays in the queue.
#[test]
fn compressed_bytes_in_the_streaming_queue_are_not_probed_but_refused() {
    let server = Server::new();
    let gzipped = put(
        &server.streaming,
        "000000010000000000000001",
        &compressed_by("gzip", &wal_content("000000010000000000000001", 0)),
    );
    let run = streaming(&server, &["000000010000000000000002"], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.names(), ["000000010000000000000001"]);
    let record = &run.records[0];
    assert!(record.get("kind").is_none(), "{record}");
    assert_eq!(record["error"]["kind"], "corrupt", "{record}");
    assert_eq!(
        record["error"]["message"],
        format!("{}: not WAL: unknown page magic 0x8B1F", gzipped.display())
    );
    assert!(gzipped.is_file());
}

#[test]
fn a_partial_is_held_back_and_lets_complete_wals_go() {
    let server = Server::new();
    let run = streaming(
        &server,
        &[
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003.partial",
        ],
        &[],
    );
    assert_eq!(
        run.names(),
        ["000000010000000000000001", "000000010000000000000002"]
    );
}

#[test]
fn of_two_partials_the_first_is_archived_at_the_end() {
    let server = Server::new();
    let run = streaming(
        &server,
        &[
            "000000010000000000000001.partial",
            "000000010000000000000002",
            "000000010000000000000003.partial",
        ],
        &[],
    );
    assert_eq!(run.code, 0);
    // Not in name order: surplus partials go after the other WALs, as in Barman.
    assert_eq!(
        run.names(),
        [
            "000000010000000000000002",
            "000000010000000000000001.partial"
        ]
    );
    assert_eq!(run.records[1]["kind"], "partial");
    assert_eq!(
        run.stderr_lines(),
        [
            "wal-scan: Archiving partial files for server pg: 000000010000000000000001.partial",
            "wal-scan: Found 3 xlog segments from streaming for pg. Archive a batch of 2 segments in this run.",
        ]
    );
}

#[test]
fn a_history_file_goes_when_a_partial_stays() {
    let server = Server::new();
    let run = streaming(
        &server,
        &["00000002.history", "000000020000000000000001.partial"],
        &[],
    );
    assert_eq!(run.names(), ["00000002.history"]);
    assert_eq!(run.records[0]["kind"], "history");
}

#[test]
fn bad_names_are_error_records() {
    let server = Server::new();
    let run = streaming(
        &server,
        &[
            "000000010000000000000001",
            "000000010000000000000001.gz",
            "000000010000000000000002.partial",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.names(),
        ["000000010000000000000001", "000000010000000000000001.gz"]
    );
    assert_eq!(run.records[1]["error"]["kind"], "unknown");
    assert_eq!(run.records[1]["error"]["stage"], "wal-scan");
    assert!(
        run.records[1]["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with(": not a WAL file")
    );
}

#[test]
fn error_records_keep_their_place_behind_a_held_back_wal() {
    let server = Server::new();
    let run = streaming(
        &server,
        &[
            "000000010000000000000001",
            "000000010000000000000002",
            "zz-junk",
        ],
        &[],
    );
    // 02 is held back (no partial): the junk after it still comes out.
    assert_eq!(run.names(), ["000000010000000000000001", "zz-junk"]);
}

#[test]
fn a_partial_beyond_the_batch_means_nothing_is_held_back() {
    // Our fix of a Barman quirk: Barman holds back the batch's last WAL even when the
    // batch size cut the listing before pg_receivewal's .partial.
    let server = Server::new();
    let run = streaming(
        &server,
        &[
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000004.partial",
        ],
        &["--batch-size", "2"],
    );
    assert_eq!(
        run.names(),
        ["000000010000000000000001", "000000010000000000000002"]
    );
    assert_eq!(
        run.stderr_lines(),
        [
            "wal-scan: Found 4 xlog segments from streaming for pg. Archive a batch of 2 segments in this run."
        ]
    );
}

#[test]
fn without_any_partial_the_batch_keeps_its_last_wal() {
    let server = Server::new();
    let run = streaming(
        &server,
        &[
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003",
        ],
        &["--batch-size", "2"],
    );
    assert_eq!(run.names(), ["000000010000000000000001"]);
}

#[test]
fn a_missing_queue_is_no_input() {
    let server = Server::new();
    let run = scan(&[
        "streaming".as_ref(),
        server.streaming.join("gone").as_os_str(),
    ]);
    assert_eq!(run.code, 66);
    assert_eq!(run.stderr_lines().len(), 1, "{}", run.stderr);
}
