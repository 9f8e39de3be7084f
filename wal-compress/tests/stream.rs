//! The stage contract: failed records go on down the stream, bad lines are reported,
//! earlier failures pass untouched, and output keeps the input order.

use std::fs;

use predicates::prelude::*;
use serde_json::{Value, json};
use tempfile::tempdir;
use wal_core::Compression;

use crate::util::{
    cli_decompress, dot_files, ndjson, parse, path_of, record, run_ok, sample, segment_name,
    segment_records, wal_compress, write_file,
};

#[test]
fn a_missing_file_fails_its_record_and_the_stream_goes_on() {
    let dir = tempdir().unwrap();
    let first = record(
        &segment_name(1),
        &write_file(dir.path(), &segment_name(1), b"one"),
    );
    let missing_path = dir.path().join(segment_name(2));
    let missing = record(&segment_name(2), &missing_path);
    let third = record(
        &segment_name(3),
        &write_file(dir.path(), &segment_name(3), b"three"),
    );
    let output = wal_compress()
        .args(["--algorithm", "gzip"])
        .write_stdin(ndjson([&first, &missing, &third]))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let out = parse(&output.stdout);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["compression"], "gzip");
    assert_eq!(out[2]["compression"], "gzip");
    let error = &out[1]["error"];
    assert_eq!(error["kind"], "not_found");
    assert_eq!(error["stage"], "wal-compress");
    let missing_text = missing_path.to_str().unwrap();
    assert!(
        error["message"].as_str().unwrap().contains(missing_text),
        "{error}"
    );
    assert_eq!(
        out[1]["path"], missing["path"],
        "a failed record is not rewritten"
    );
    assert_eq!(out[1]["compression"], Value::Null);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line per failure: {stderr}");
    assert!(stderr.starts_with("wal-compress: ") && stderr.contains(missing_text));
    assert_eq!(
        dot_files(dir.path()),
        [
            format!(".{}.compressed", segment_name(1)),
            format!(".{}.compressed", segment_name(3))
        ]
    );
}

#[test]
fn a_malformed_line_is_a_bad_record_and_exits_65() {
    let dir = tempdir().unwrap();
    let good = record(
        &segment_name(1),
        &write_file(dir.path(), &segment_name(1), b"wal"),
    );
    let input = format!("{{\"name\": \n{}", ndjson([&good]));
    let output = wal_compress().write_stdin(input).output().unwrap();
    assert_eq!(output.status.code(), Some(65));
    let out = parse(&output.stdout);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["error"]["kind"], "bad_record");
    assert_eq!(out[0]["error"]["stage"], "wal-compress");
    assert_eq!(
        out[0]["line"], "{\"name\":",
        "the raw line is kept for replay"
    );
    assert_eq!(out[1]["compression"], "zstd", "the stream goes on");
}

#[test]
fn a_record_without_a_path_fails() {
    let output = wal_compress()
        .write_stdin("{\"name\":\"000000010000000000000001\",\"size\":3,\"time\":1.0}\n")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let out = parse(&output.stdout);
    assert_eq!(out[0]["error"]["kind"], "bad_record");
    assert!(
        out[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`path`")
    );
}

#[test]
fn records_failed_upstream_pass_untouched() {
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let mut failed = record(&name, &write_file(dir.path(), &name, b"wal"));
    failed["error"] = json!({"stage": "wal-hooks", "kind": "aborted", "message": "stop"});
    let out = run_ok(&[], &ndjson([&failed]), 0);
    assert_eq!(out, [failed]);
    assert!(dot_files(dir.path()).is_empty());
}

#[test]
fn an_empty_input_is_an_empty_output() {
    wal_compress()
        .write_stdin("")
        .assert()
        .code(0)
        .stdout("")
        .stderr("");
    wal_compress()
        .arg("--decompress")
        .write_stdin("\n\n")
        .assert()
        .code(0)
        .stdout("");
}

#[test]
fn jobs_keep_the_input_order() {
    let dir = tempdir().unwrap();
    // Sizes vary a lot so that workers finish out of order.
    let inputs: Vec<Vec<u8>> = (0..20u32)
        .map(|n| {
            sample(
                u64::from(n),
                if n % 3 == 0 {
                    400_000
                } else {
                    100 + n as usize
                },
            )
        })
        .collect();
    let records = segment_records(dir.path(), &inputs);
    let out = run_ok(
        &["--jobs", "4", "--algorithm", "zstd"],
        &ndjson(&records),
        0,
    );
    let names: Vec<&Value> = out.iter().map(|r| &r["name"]).collect();
    let expected: Vec<&Value> = records.iter().map(|r| &r["name"]).collect();
    assert_eq!(names, expected);
    for (record, data) in out.iter().zip(&inputs) {
        assert_eq!(cli_decompress(Compression::Zstd, &path_of(record)), *data);
    }
    let back = run_ok(&["--decompress", "--jobs", "4"], &ndjson(&out), 0);
    for (record, data) in back.iter().zip(&inputs) {
        assert_eq!(fs::read(path_of(record)).unwrap(), *data);
    }
}

#[test]
fn stdout_carries_records_only() {
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let rec = record(&name, &write_file(dir.path(), &name, &sample(30, 1000)));
    wal_compress()
        .args(["--level", "99"])
        .write_stdin(ndjson([&rec]))
        .assert()
        .code(0)
        .stdout(predicate::function(|out: &[u8]| {
            out.split(|b| *b == b'\n')
                .filter(|line| !line.is_empty())
                .all(|line| serde_json::from_slice::<Value>(line).is_ok())
        }))
        .stderr(predicate::str::contains("out of range"));
}

#[test]
fn an_unwritable_stdout_stops_the_stream_with_74() {
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let rec = record(&name, &write_file(dir.path(), &name, b"wal"));
    let input = write_file(dir.path(), "input.ndjson", ndjson([&rec]).as_bytes());
    // assert_cmd captures stdout, so this one runs on std's Command.
    let output = walpipe_tests::stage::stage_command(env!("CARGO_BIN_EXE_wal-compress"))
        .stdin(fs::File::open(&input).unwrap())
        .stdout(
            fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(74));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot write records to stdout"),
        "{stderr}"
    );
}
