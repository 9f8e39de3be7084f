//! `wal-store put` into a local archive and into a queue.

use std::fs;
use std::os::unix::fs::MetadataExt;

use serde_json::json;

use crate::common::*;

#[test]
fn stores_raw_wal_catalogues_it_and_removes_the_source() {
    let home = Home::new();
    let src = home.queue_file(SEG1, 1);
    let (code, out, stderr) = put(&home, &[], &[record_for(&src)]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out[0]["outcome"], "stored");
    assert_eq!(out[0]["stored_at"], json!(home.archived(SEG1)));
    assert_eq!(fs::read(home.archived(SEG1)).unwrap(), wal_segment(SEG1, 1));
    assert!(!src.exists(), "source removed after storing");
    assert_eq!(
        home.xlogdb_text(),
        format!("{SEG1}\t1048576\t1700000000.0\tNone\tNone\n")
    );
    assert_eq!(
        fs::metadata(home.archived(SEG1)).unwrap().mtime(),
        1_700_000_000
    );
}

#[test]
fn stores_a_compressed_temp_with_the_sources_mtime_and_removes_both() {
    let home = Home::new();
    let src = home.queue_file(SEG1, 1);
    let record = compressed_record(&src);
    let temp = std::path::PathBuf::from(record["path"].as_str().unwrap());
    let (code, out, stderr) = put(&home, &[], std::slice::from_ref(&record));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out[0]["outcome"], "stored");
    let stored = fs::read(home.archived(SEG1)).unwrap();
    assert_eq!(
        &stored[..4],
        &[0x28, 0xb5, 0x2f, 0xfd],
        "stored compressed, plain name"
    );
    assert!(!src.exists() && !temp.exists());
    let line = home.xlogdb_text();
    assert_eq!(
        line,
        format!("{SEG1}\t{}\t1700000000.0\tzstd\tNone\n", stored.len())
    );
    assert_eq!(
        fs::metadata(home.archived(SEG1)).unwrap().mtime(),
        1_700_000_000
    );
}

#[test]
fn history_files_go_to_the_archive_root() {
    let home = Home::new();
    let src = home.queue_file("00000002.history", 3);
    let (code, out, _) = put(&home, &[], &[record_for(&src)]);
    assert_eq!(code, 0);
    assert_eq!(out[0]["kind"], "history");
    assert!(home.wals().join("00000002.history").is_file());
}

#[test]
fn an_identical_redelivery_is_a_duplicate_and_is_dropped() {
    let home = Home::new();
    let first = home.queue_file(SEG1, 1);
    put(&home, &[], &[record_for(&first)]);
    let again = home.queue_file(SEG1, 1);
    let (code, out, stderr) = put(&home, &[], &[record_for(&again)]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out[0]["outcome"], "duplicate");
    assert!(!again.exists());
    assert_eq!(home.xlogdb_text().lines().count(), 1, "catalogued once");
    assert!(home.errors_entries().is_empty());
}

#[test]
fn the_same_wal_stored_compressed_is_recognised_by_content() {
    let home = Home::new();
    let first = home.queue_file(SEG1, 1);
    put(&home, &[], &[compressed_record(&first)]);
    let raw_again = home.queue_file(SEG1, 1);
    let (code, out, _) = put(&home, &[], &[record_for(&raw_again)]);
    assert_eq!(code, 0);
    assert_eq!(out[0]["outcome"], "duplicate");
}

#[test]
fn a_store_interrupted_before_cataloguing_is_completed_not_duplicated() {
    let home = Home::new();
    let src = home.queue_file(SEG1, 1);
    // As if killed after the link, before xlog.db: archived copy present, source present.
    fs::create_dir_all(home.archived(SEG1).parent().unwrap()).unwrap();
    fs::hard_link(&src, home.archived(SEG1)).unwrap();
    let (code, out, stderr) = put(&home, &[], &[record_for(&src)]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out[0]["outcome"], "stored");
    assert!(!src.exists());
    assert_eq!(home.xlogdb_text().lines().count(), 1);
    assert!(home.errors_entries().is_empty(), "no false duplicate");
}

#[test]
fn a_different_file_under_an_archived_name_goes_to_errors() {
    let home = Home::new();
    let first = home.queue_file(SEG1, 1);
    put(&home, &[], &[record_for(&first)]);
    let other = home.queue_file(SEG1, 2);
    let (code, out, stderr) = put(&home, &["--report=file archival"], &[record_for(&other)]);
    assert_eq!(code, 1, "a conflict needs a human: exit 1");
    assert_eq!(out[0]["outcome"], "conflict");
    assert_eq!(out[0]["error"]["kind"], "conflict");
    let errors = home.errors_entries();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(&format!("{SEG1}.")) && errors[0].ends_with("Z.duplicate"),
        "{errors:?}"
    );
    assert_eq!(
        fs::read(home.errors().join(&errors[0])).unwrap(),
        wal_segment(SEG1, 2)
    );
    assert_eq!(
        fs::read(home.archived(SEG1)).unwrap(),
        wal_segment(SEG1, 1),
        "archive untouched"
    );
    assert!(!other.exists());
    assert!(
        stderr.contains(&format!(
            "\tError: {SEG1} is already present in server pg. File moved to errors directory."
        )),
        "{stderr}"
    );
}

/// `--report-marked`: Barman's lines, and only they, begin with the mark (0x1E), so a
/// wrapper tells them from the diagnostics without knowing their text.
#[test]
fn marked_report_lines_are_barmans_and_only_they() {
    let home = Home::new();
    let first = home.queue_file(SEG1, 1);
    put(&home, &[], &[record_for(&first)]);
    let other = home.queue_file(SEG1, 2);
    let fresh = home.queue_file(SEG2, 3);
    let (code, out, stderr) = put(
        &home,
        &["--report=streaming", "--report-marked"],
        &[record_for(&other), record_for(&fresh)],
    );
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(out[1]["outcome"], "stored");
    let (marked, unmarked): (Vec<&str>, Vec<&str>) =
        stderr.lines().partition(|line| line.starts_with('\u{1e}'));
    let barman: Vec<&str> = marked.iter().map(|l| &l[1..]).collect();
    assert_eq!(
        barman,
        [
            "Processing xlog segments from streaming for pg".to_owned(),
            format!("\t{SEG1}"),
            format!(
                "\tError: {SEG1} is already present in server pg. File moved to errors directory."
            ),
            format!("\t{SEG2}"),
        ],
        "{stderr}"
    );
    assert!(
        !unmarked.is_empty() && unmarked.iter().all(|l| l.starts_with("wal-store: ")),
        "the diagnostics, unmarked: {stderr}"
    );
    // Unmarked without the flag; the flag alone is a usage error.
    let third = home.queue_file(SEG3, 4);
    let (_, _, plain) = put(&home, &["--report"], &[record_for(&third)]);
    assert!(!plain.contains('\u{1e}'), "{plain:?}");
    let (code, _, said) = put(&home, &["--report-marked"], &[]);
    assert_eq!(code, 64, "{said}");
}

#[test]
fn unknown_queue_entries_are_moved_to_errors() {
    let home = Home::new();
    let junk = home.incoming().join("not-a-wal");
    fs::write(&junk, b"junk").unwrap();
    let record = json!({"name": "not-a-wal", "path": junk, "source": junk, "size": 4, "time": 1.0,
        "error": {"stage": "wal-scan", "kind": "unknown", "message": "not a WAL file"}});
    let (code, out, stderr) = put(&home, &["--report=file archival"], &[record]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out[0]["outcome"], "unknown");
    assert!(!junk.exists());
    let errors = home.errors_entries();
    assert!(
        errors[0].starts_with("not-a-wal.") && errors[0].ends_with(".unknown"),
        "{errors:?}"
    );
    assert!(
        stderr.starts_with("Processing xlog segments from file archival for "),
        "{stderr}"
    );
    assert!(stderr.contains("\tno file found"), "{stderr}");
    assert!(
        stderr.contains("Objects moved to errors directory:\n\tnot-a-wal"),
        "{stderr}"
    );
}

#[test]
fn keep_source_leaves_the_source() {
    let home = Home::new();
    let src = home.queue_file(SEG1, 1);
    let (code, _, _) = put(&home, &["--keep-source"], &[record_for(&src)]);
    assert_eq!(code, 0);
    assert!(src.exists() && home.archived(SEG1).exists());
}

#[test]
fn keep_source_conflicts_fail_without_moving_anything() {
    let home = Home::new();
    let first = home.queue_file(SEG1, 1);
    put(&home, &[], &[record_for(&first)]);
    let other = home.queue_file(SEG1, 2);
    let (code, out, stderr) = put(&home, &["--keep-source"], &[record_for(&other)]);
    assert_eq!(code, 1);
    assert_eq!(out[0]["error"]["kind"], "conflict");
    assert!(stderr.contains(SEG1), "{stderr}");
    assert!(other.exists() && home.errors_entries().is_empty());
}

#[test]
fn the_queue_mode_is_flat_and_has_no_catalogue() {
    let home = Home::new();
    let pg_wal = home.dir.path().join("pg_wal");
    fs::create_dir(&pg_wal).unwrap();
    let seg = pg_wal.join(SEG1);
    write_with_mtime(&seg, &wal_segment(SEG1, 1), 1_700_000_000);
    let queue = |records: &[serde_json::Value]| {
        let out = wal_store()
            .args([
                "put",
                "--queue",
                "--keep-source",
                "--server",
                "pg",
                "--archive",
            ])
            .arg(home.incoming())
            .write_stdin(ndjson(records))
            .output()
            .unwrap();
        (out.status.code().unwrap(), parse(&out.stdout))
    };
    let (code, out) = queue(&[record_for(&seg)]);
    assert_eq!((code, out[0]["outcome"].as_str()), (0, Some("stored")));
    assert_eq!(
        fs::read(home.incoming().join(SEG1)).unwrap(),
        wal_segment(SEG1, 1)
    );
    assert!(seg.exists());
    assert!(!home.incoming().join("pg-xlog.db").exists());
    let (code, out) = queue(&[record_for(&seg)]);
    assert_eq!(
        (code, out[0]["outcome"].as_str()),
        (0, Some("duplicate")),
        "re-delivery succeeds"
    );
    write_with_mtime(&seg, &wal_segment(SEG1, 9), 1_700_000_000);
    let (code, out) = queue(&[record_for(&seg)]);
    assert_eq!(code, 1, "a different file with the same name fails");
    assert_eq!(out[0]["error"]["kind"], "conflict");
    assert_eq!(
        fs::read(home.incoming().join(SEG1)).unwrap(),
        wal_segment(SEG1, 1)
    );
}

#[test]
fn bad_records_fail_alone_and_the_stream_goes_on() {
    let home = Home::new();
    let a = home.queue_file(SEG1, 1);
    let c = home.queue_file(SEG3, 3);
    let mut missing = record_for(&a);
    missing["name"] = json!(SEG2);
    missing["path"] = json!(home.incoming().join(SEG2));
    missing["source"] = missing["path"].clone();
    let mut extra = record_for(&c);
    extra["ticket"] = json!({"id": 7});
    let (code, out, stderr) = put(&home, &[], &[record_for(&a), missing, extra]);
    assert_eq!(code, 1);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["outcome"], "stored");
    assert_eq!(out[1]["error"]["kind"], "not_found");
    assert!(stderr.contains(SEG2), "the error names the file: {stderr}");
    assert_eq!(out[2]["outcome"], "stored");
    assert_eq!(out[2]["ticket"]["id"], 7, "unknown fields forwarded");
    assert_eq!(home.xlogdb_text().lines().count(), 2);
}

#[test]
fn malformed_input_lines_exit_65_and_the_stream_goes_on() {
    let home = Home::new();
    let a = home.queue_file(SEG1, 1);
    let input = format!("{{oops\n{}\n", record_for(&a));
    let out = wal_store()
        .args(["put", "--server", "pg", "--archive"])
        .arg(home.wals())
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let records = parse(&out.stdout);
    assert_eq!(records[0]["error"]["kind"], "bad_record");
    assert_eq!(records[1]["outcome"], "stored");
}

#[test]
fn barman_lines_already_in_xlog_db_are_kept() {
    let home = Home::new();
    let barman = "000000010000000000000000\t1479083\t1795313864.6726859\tzstd\tNone\n";
    fs::write(home.xlogdb(), barman).unwrap();
    let src = home.queue_file(SEG1, 1);
    put(&home, &[], &[record_for(&src)]);
    assert!(home.xlogdb_text().starts_with(barman));
    assert_eq!(home.xlogdb_text().lines().count(), 2);
    assert!(
        home.dir.path().join(".pg-xlogdb.lock").exists(),
        "Barman's lock file in its home"
    );
}

#[test]
fn bad_flags_exit_64() {
    let out = wal_store().args(["put", "--nonsense"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn a_compressed_copy_gets_the_sources_mode() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    let src = home.queue_file(SEG1, 1);
    fs::set_permissions(&src, fs::Permissions::from_mode(0o640)).unwrap();
    let (code, _, _) = put(&home, &[], &[compressed_record(&src)]);
    assert_eq!(code, 0);
    let mode = fs::metadata(home.archived(SEG1)).unwrap().mode() & 0o777;
    assert_eq!(
        mode, 0o640,
        "Barman's copystat: the archived file has the source's mode"
    );
}

#[test]
fn a_refused_conflict_leaves_no_temp_behind() {
    let home = Home::new();
    let first = home.queue_file(SEG1, 1);
    put(&home, &[], &[record_for(&first)]);
    let other = home.queue_file(SEG1, 2);
    let record = compressed_record(&other);
    let temp = std::path::PathBuf::from(record["path"].as_str().unwrap());
    let (code, out, _) = put(&home, &["--keep-source"], &[record]);
    assert_eq!(code, 1);
    assert_eq!(out[0]["error"]["kind"], "conflict");
    assert!(
        !temp.exists(),
        "the compressed temp of a refused record is removed"
    );
    assert!(other.exists(), "the source is kept");
}

#[test]
fn a_resumed_store_catalogues_what_is_stored_not_what_this_run_would_store() {
    // Regression (crash test finding): killed after storing a gzip copy, re-run with zstd.
    let home = Home::new();
    let src = home.queue_file(SEG1, 1);
    fs::create_dir_all(home.archived(SEG1).parent().unwrap()).unwrap();
    let gz = std::process::Command::new("gzip")
        .arg("-c")
        .arg(&src)
        .output()
        .expect("the gzip CLI is needed: run scripts/install-test-deps");
    fs::write(home.archived(SEG1), &gz.stdout).unwrap();
    let (code, out, stderr) = put(&home, &[], &[compressed_record(&src)]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out[0]["outcome"], "stored");
    assert_eq!(out[0]["compression"], "gzip");
    let line = home.xlogdb_text();
    assert_eq!(
        line,
        format!("{SEG1}\t{}\t1700000000.0\tgzip\tNone\n", gz.stdout.len())
    );
}
