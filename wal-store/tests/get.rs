//! `wal-store get`: look-up (archive, queues, `--partial`, Barman-written files), copies out
//! as stored, and the write-out of records at the end of restore-wal's pipeline.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output, Stdio};

use serde_json::{Value, json};

use crate::common::*;

/// `wal-store get --server pg --archive <wals> ARGS...` with `stdin`.
fn get(home: &Home, args: &[&str], stdin: &str) -> Output {
    wal_store()
        .args(["get", "--server", "pg", "--archive"])
        .arg(home.wals())
        .args(args)
        .write_stdin(stdin)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Puts `bytes` at `path`, creating its directory.
fn plant(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// `bytes` compressed by the CLI `tool` (`gzip`, `zstd`, ...), as Barman would store them.
fn compressed_by(tool: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = StdCommand::new(tool)
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("the {tool} CLI is needed (scripts/install-test-deps): {e}"));
    // Fed from another thread: a segment is larger than the pipes, and the tool writes
    // its output while it reads.
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn path_of(record: &Value) -> PathBuf {
    PathBuf::from(record["path"].as_str().unwrap())
}

// ---------------------------------------------------------------------------------------
// Look-up

#[test]
fn copies_out_as_stored_with_its_compression() {
    let home = Home::new();
    let src = home.queue_file(SEG1, 1);
    put(&home, &[], &[compressed_record(&src)]);
    let to = home.dir.path().join("restored");
    let out = wal_store()
        .args(["get", "--server", "pg", "--archive"])
        .arg(home.wals())
        .args([SEG1, "--to"])
        .arg(&to)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let record = &parse(&out.stdout)[0];
    assert_eq!(record["compression"], "zstd");
    assert_eq!(record["outcome"], "fetched");
    assert_eq!(
        fs::read(&to).unwrap(),
        fs::read(home.archived(SEG1)).unwrap()
    );
}

#[test]
fn a_missing_file_exits_66_and_writes_nothing() {
    let home = Home::new();
    let to = home.dir.path().join("restored");
    let out = wal_store()
        .args(["get", "--server", "pg", "--archive"])
        .arg(home.wals())
        .args([SEG2, "--to"])
        .arg(&to)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(66));
    let text = stderr(&out);
    assert!(
        text.contains(SEG2) && text.contains("not in the archive"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    assert!(out.stdout.is_empty());
    assert!(!to.exists());
}

#[test]
fn without_a_destination_the_record_points_at_the_archived_file() {
    let home = Home::new();
    let src = home.queue_file(SEG1, 1);
    put(&home, &[], &[compressed_record(&src)]);
    let out = get(&home, &[SEG1], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let records = parse(&out.stdout);
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record["name"], SEG1);
    assert_eq!(record["kind"], "segment");
    assert_eq!(record["compression"], "zstd");
    assert_eq!(record["path"], json!(home.archived(SEG1)));
    assert_eq!(record["stored_at"], json!(home.archived(SEG1)));
    assert_eq!(
        record["size"],
        json!(fs::metadata(home.archived(SEG1)).unwrap().len())
    );
    assert!(record.get("outcome").is_none(), "nothing was copied");
    assert!(
        (record["time"].as_f64().unwrap() - 1_700_000_000.0).abs() < 1e-6,
        "the archived file's mtime: {record}"
    );
}

#[test]
fn a_barman_written_archive_is_read_by_magic() {
    // Barman stores compressed WAL under the plain name (spec §1.3) and catalogues it in
    // <server>-xlog.db; the magic alone says how to decompress it.
    let home = Home::new();
    let gz = compressed_by("gzip", &wal_segment(SEG1, 4));
    plant(&home.archived(SEG1), &gz);
    let history = compressed_by("bzip2", b"1\t0/3000028\tno recovery target specified\n");
    plant(&home.archived("00000002.history"), &history);
    fs::write(
        home.xlogdb(),
        format!(
            "{SEG1}\t{}\t1700000000.5\tgzip\tNone\n00000002.history\t{}\t1700000001.0\tbzip2\tNone\n",
            gz.len(),
            history.len()
        ),
    )
    .unwrap();
    let out = get(&home, &[SEG1, "00000002.history"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let records = parse(&out.stdout);
    assert_eq!(records[0]["compression"], "gzip");
    assert_eq!(records[1]["compression"], "bzip2");
    assert_eq!(records[1]["kind"], "history");
    assert_eq!(
        records[1]["path"],
        json!(home.wals().join("00000002.history"))
    );
}

#[test]
fn files_still_in_a_queue_are_found() {
    let home = Home::new();
    let queued = home.queue_file(SEG2, 2);
    let streaming = home.dir.path().join("pg/streaming").join(SEG3);
    plant(&streaming, &wal_segment(SEG3, 3));
    let out = get(&home, &[SEG2, SEG3], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let records = parse(&out.stdout);
    assert_eq!(records[0]["path"], json!(queued));
    assert_eq!(records[0]["compression"], Value::Null);
    assert_eq!(records[1]["path"], json!(streaming));
}

#[test]
fn the_archive_is_searched_before_the_queues() {
    let home = Home::new();
    plant(&home.archived(SEG1), &wal_segment(SEG1, 1));
    home.queue_file(SEG1, 9);
    let out = get(&home, &[SEG1], "");
    assert_eq!(parse(&out.stdout)[0]["path"], json!(home.archived(SEG1)));
}

#[test]
fn partial_finds_the_partial_segment_only_when_asked() {
    let home = Home::new();
    let partial = format!("{SEG2}.partial");
    plant(&home.archived(&partial), &wal_segment(SEG2, 5));
    let out = get(&home, &[SEG2], "");
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));

    let out = get(&home, &["--partial", SEG2], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let record = &parse(&out.stdout)[0];
    assert_eq!(record["name"], partial.as_str());
    assert_eq!(record["kind"], "partial");
    assert_eq!(record["path"], json!(home.archived(&partial)));

    // pg_receivewal's partial in the streaming queue comes first (Barman's order).
    let streaming = home.dir.path().join("pg/streaming").join(&partial);
    plant(&streaming, &wal_segment(SEG2, 6));
    let out = get(&home, &["--partial", SEG2], "");
    assert_eq!(parse(&out.stdout)[0]["path"], json!(streaming));

    // The complete segment wins over any partial.
    plant(&home.archived(SEG2), &wal_segment(SEG2, 7));
    let out = get(&home, &["--partial", SEG2], "");
    assert_eq!(parse(&out.stdout)[0]["name"], SEG2);
}

#[test]
fn several_names_print_the_found_and_name_each_missing_one() {
    let home = Home::new();
    plant(&home.archived(SEG1), &wal_segment(SEG1, 1));
    plant(&home.archived(SEG3), &wal_segment(SEG3, 3));
    let missing = "000000010000000000000009";
    let out = get(&home, &[SEG1, SEG2, SEG3, missing], "");
    assert_eq!(out.status.code(), Some(66));
    let names: Vec<Value> = parse(&out.stdout)
        .into_iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, [json!(SEG1), json!(SEG3)]);
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains(SEG2) && text.contains(missing), "{text}");
}

#[test]
fn to_dir_copies_each_under_its_name() {
    let home = Home::new();
    plant(&home.archived(SEG1), &wal_segment(SEG1, 1));
    plant(&home.archived(SEG2), &wal_segment(SEG2, 2));
    let dir = home.dir.path().join("spool");
    fs::create_dir(&dir).unwrap();
    let out = get(&home, &[SEG1, SEG2, "--to-dir", dir.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fs::read(dir.join(SEG2)).unwrap(), wal_segment(SEG2, 2));
    assert_eq!(parse(&out.stdout)[1]["path"], json!(dir.join(SEG2)));
}

#[test]
fn bad_flag_combinations_are_usage_errors() {
    let home = Home::new();
    let out = get(&home, &[], "");
    assert_eq!(out.status.code(), Some(64), "no names, no destination");
    let out = get(&home, &[SEG1, SEG2, "--to", "/tmp/x"], "");
    assert_eq!(out.status.code(), Some(64), "--to with two names");
    let out = get(&home, &[SEG1, "--to", "/tmp/x", "--to-dir", "/tmp"], "");
    assert_eq!(out.status.code(), Some(64), "--to and --to-dir");
}

// ---------------------------------------------------------------------------------------
// Write-out

/// A decompressed temp as wal-compress leaves it: `.<name>.decompressed`, listed in temps.
fn temp_record(dir: &Path, name: &str, seed: u8) -> Value {
    let temp = dir.join(format!(".{name}.decompressed"));
    let bytes = wal_segment(name, u64::from(seed));
    fs::write(&temp, &bytes).unwrap();
    json!({
        "name": name, "kind": "segment", "path": temp, "size": bytes.len(), "time": 1.0,
        "compression": null, "encryption": null, "temps": [temp],
    })
}

#[test]
fn write_out_moves_a_temp_into_place() {
    let home = Home::new();
    let pg_wal = home.dir.path().join("pg_wal");
    fs::create_dir(&pg_wal).unwrap();
    let mut record = temp_record(&pg_wal, SEG1, 1);
    // The compressed download wal-store get left for wal-compress: a temp of ours too.
    let other = pg_wal.join(format!(".{SEG1}.download"));
    fs::write(&other, b"compressed bytes").unwrap();
    record["temps"].as_array_mut().unwrap().push(json!(other));
    let temp = path_of(&record);
    let dest = pg_wal.join("RECOVERYXLOG");
    let out = get(&home, &["--to", dest.to_str().unwrap()], &ndjson(&[record]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fs::read(&dest).unwrap(), wal_segment(SEG1, 1));
    assert!(!temp.exists(), "moved, not copied");
    assert!(!other.exists(), "the other temps are removed");
    let back = &parse(&out.stdout)[0];
    assert_eq!(back["path"], json!(dest));
    assert_eq!(back["outcome"], "fetched");
    assert_eq!(back["size"], 1 << 20);
    assert!(back.get("temps").is_none(), "{back}");
    assert_eq!(
        fs::read_dir(&pg_wal).unwrap().count(),
        1,
        "nothing but the restored file"
    );
}

#[test]
fn write_out_copies_a_file_that_is_not_a_temp() {
    let home = Home::new();
    plant(&home.archived(SEG1), &wal_segment(SEG1, 1));
    let records = String::from_utf8(get(&home, &[SEG1], "").stdout).unwrap();
    let dest = home.dir.path().join("RECOVERYXLOG");
    let out = get(&home, &["--to", dest.to_str().unwrap()], &records);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fs::read(&dest).unwrap(), wal_segment(SEG1, 1));
    assert!(home.archived(SEG1).exists(), "the archive keeps its file");
}

#[test]
fn write_out_to_dir_and_wal_names_only() {
    let home = Home::new();
    let spool = home.dir.path().join("spool");
    fs::create_dir(&spool).unwrap();
    let good = temp_record(&spool, SEG1, 1);
    let mut evil = temp_record(&spool, SEG2, 2);
    evil["name"] = json!("../evil");
    let evil_temp = path_of(&evil);
    // A record that fails here: its WAL name is taken in the spool.
    plant(&spool.join(SEG3), b"already there");
    let taken = temp_record(&spool, SEG3, 3);
    let taken_temp = path_of(&taken);
    let out = get(
        &home,
        &["--to-dir", spool.to_str().unwrap()],
        &ndjson(&[good, evil, taken]),
    );
    // A name that is no plain file name makes the line no record at all (issue 11): it
    // fails as bad input (65), and nothing it names is acted on.
    assert_eq!(
        out.status.code(),
        Some(65),
        "the evil line is refused: {}",
        stderr(&out)
    );
    let text = stderr(&out);
    assert!(text.contains("../evil"), "{text}");
    assert_eq!(fs::read(spool.join(SEG1)).unwrap(), wal_segment(SEG1, 1));
    assert!(!home.dir.path().join("evil").exists());
    assert!(
        evil_temp.exists(),
        "a refused line's files are not ours to remove: left untouched"
    );
    assert!(!taken_temp.exists(), "a failed record's temps are removed");
    assert_eq!(fs::read(spool.join(SEG3)).unwrap(), b"already there");
    let back = parse(&out.stdout);
    assert_eq!(back[0]["outcome"], "fetched");
    assert_eq!(back[1]["error"]["kind"], "bad_record");
    assert!(back[2]["error"]["kind"].is_string(), "{}", back[2]);
}

#[test]
fn write_out_never_replaces_the_destination() {
    let home = Home::new();
    let dir = home.dir.path().join("pg_wal");
    fs::create_dir(&dir).unwrap();
    let dest = dir.join("RECOVERYXLOG");
    fs::write(&dest, b"already there").unwrap();
    let record = temp_record(&dir, SEG1, 1);
    let temp = path_of(&record);
    let out = get(&home, &["--to", dest.to_str().unwrap()], &ndjson(&[record]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(fs::read(&dest).unwrap(), b"already there");
    assert!(!temp.exists());
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("RECOVERYXLOG"), "{text}");
}

#[test]
fn write_out_passes_failed_records_and_wants_one_for_to() {
    let home = Home::new();
    let dir = home.dir.path().join("pg_wal");
    fs::create_dir(&dir).unwrap();
    let dest = dir.join("RECOVERYXLOG");

    // Nothing came down the pipe: nothing to write, exit 66.
    let out = get(&home, &["--to", dest.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    assert!(!dest.exists());

    // A record failed upstream: passed on as it is (its temps removed), nothing written,
    // and no second stderr line (the stage that failed it said why).
    let mut failed = temp_record(&dir, SEG1, 1);
    failed["error"] = json!({"stage": "wal-compress", "kind": "corrupt", "message": "truncated"});
    let temp = path_of(&failed);
    let out = get(&home, &["--to", dest.to_str().unwrap()], &ndjson(&[failed]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    assert_eq!(parse(&out.stdout)[0]["error"]["kind"], "corrupt");
    assert!(!dest.exists() && !temp.exists());

    // Two records for one --to: the second fails.
    let first = temp_record(&dir, SEG1, 1);
    let second = temp_record(&dir, SEG2, 2);
    let out = get(
        &home,
        &["--to", dest.to_str().unwrap()],
        &ndjson(&[first, second]),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(fs::read(&dest).unwrap(), wal_segment(SEG1, 1));
    assert_eq!(parse(&out.stdout)[1]["error"]["kind"], "usage");
}
