//! `wal-store get`: look-up (archive, queues, `--partial`, Barman-written files), copies out
//! as stored, and the write-out of records at the end of restore-wal's pipeline.

use std::ffi::OsStr;
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
fn a_missing_file_exits_66_and_writes_only_its_failed_record() {
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
    // The verdict travels down the pipe: one failed record, its message the line's.
    let records = parse(&out.stdout);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["name"], SEG2);
    assert_eq!(records[0]["error"]["stage"], "wal-store");
    assert_eq!(records[0]["error"]["kind"], "not_found");
    assert_eq!(
        format!(
            "wal-store: {}\n",
            records[0]["error"]["message"].as_str().unwrap()
        ),
        text
    );
    assert!(records[0].get("path").is_none(), "{}", records[0]);
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
    // Barman stores compressed WAL under the plain name (docs/barman-formats.md#archive-layout)
    // and catalogues it in
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
    // Every name asked for has its record, in the order asked; the missing ones failed.
    let records = parse(&out.stdout);
    let names: Vec<Value> = records.iter().map(|r| r["name"].clone()).collect();
    assert_eq!(
        names,
        [json!(SEG1), json!(SEG2), json!(SEG3), json!(missing)]
    );
    let kinds: Vec<Value> = records.iter().map(|r| r["error"]["kind"].clone()).collect();
    assert_eq!(
        kinds,
        [
            Value::Null,
            json!("not_found"),
            Value::Null,
            json!("not_found")
        ]
    );
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
    // Its own failure: the code of its kind (io), no longer 1.
    assert_eq!(out.status.code(), Some(74), "{}", stderr(&out));
    assert_eq!(parse(&out.stdout)[0]["error"]["kind"], "io");
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

    // Nothing came down the pipe: a stage before failed, exit 70 (never 66, which only
    // the look-up's record may tell), one line naming the destination.
    let out = get(&home, &["--to", dest.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "wal-store: nothing written to {}: the pipeline ended without a record \
             (a stage before this one failed)\n",
            dest.display()
        )
    );
    assert!(out.stdout.is_empty());
    assert!(!dest.exists());

    // A record failed upstream: passed on as it is (its temps removed), nothing written,
    // no second stderr line (the stage that failed it said why), and the exit status of
    // its kind: corrupt, 65.
    let mut failed = temp_record(&dir, SEG1, 1);
    failed["error"] = json!({"stage": "wal-compress", "kind": "corrupt", "message": "truncated"});
    let temp = path_of(&failed);
    let out = get(&home, &["--to", dest.to_str().unwrap()], &ndjson(&[failed]));
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
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
    // The second record's own failure: usage, 64 (was 1).
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert_eq!(fs::read(&dest).unwrap(), wal_segment(SEG1, 1));
    assert_eq!(parse(&out.stdout)[1]["error"]["kind"], "usage");
}

// ---------------------------------------------------------------------------------------
// The restore's verdict: the look-up tells "not in the archive" in a record, the middle
// stages pass it on, the write-out's exit status is the restore's, and a stage whose
// next stage is gone says nothing more.

/// `wal-store VERB --server pg --archive <wals> ARGS...` as a plain process (assert_cmd
/// cannot pipe one into another).
fn store_command(verb: &str, home: &Home, args: &[&OsStr]) -> StdCommand {
    let mut cmd = StdCommand::new(env!("CARGO_BIN_EXE_wal-store"));
    walpipe_tests::clean_command(&mut cmd);
    cmd.args([verb, "--server", "pg", "--archive"])
        .arg(home.wals())
        .args(args);
    cmd
}

/// What one process of a pipeline did.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `stages` as a shell pipeline does (each stdout into the next stdin, the first
/// stdin empty), all at once; what each did (stdout only for the last).
fn pipeline(stages: Vec<StdCommand>) -> Vec<Ran> {
    let mut children = Vec::new();
    let mut previous: Option<std::process::ChildStdout> = None;
    for mut cmd in stages {
        cmd.stdin(previous.take().map_or_else(Stdio::null, Stdio::from))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        previous = child.stdout.take();
        children.push(child);
    }
    let last_stdout = previous.map(|mut out| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut bytes).unwrap();
        bytes
    });
    let count = children.len();
    children
        .into_iter()
        .enumerate()
        .map(|(n, child)| {
            let out = child.wait_with_output().unwrap();
            Ran {
                code: out.status.code(),
                stdout: if n + 1 == count {
                    last_stdout.clone().unwrap_or_default()
                } else {
                    Vec::new()
                },
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .collect()
}

/// A built binary of the workspace other than wal-store (`cargo build --workspace`).
fn other_stage(name: &str, args: &[&OsStr]) -> StdCommand {
    let mut cmd = StdCommand::new(walpipe_tests::target_bin(name));
    walpipe_tests::clean_command(&mut cmd);
    cmd.args(args);
    cmd
}

#[test]
fn quiet_missing_keeps_the_record_and_66_but_not_the_line() {
    let home = Home::new();
    plant(&home.archived(SEG1), &wal_segment(SEG1, 1));
    // A directory under a WAL's name is a broken archive, never "not found": still said.
    fs::create_dir_all(home.archived(SEG3)).unwrap();
    let out = get(&home, &["--quiet-missing", SEG1, SEG2, SEG3], "");
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(SEG3) && !text.contains(SEG2), "{text}");
    let records = parse(&out.stdout);
    assert_eq!(records.len(), 3);
    assert!(records[0].get("error").is_none(), "{}", records[0]);
    assert_eq!(records[1]["name"], SEG2);
    assert_eq!(records[1]["kind"], "segment");
    assert_eq!(records[1]["error"]["kind"], "not_found");
    assert!(
        records[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not in the archive"),
        "{}",
        records[1]
    );
    assert_eq!(records[2]["error"]["kind"], "corrupt");

    // Alone, a missing name is silent and still 66.
    let out = get(&home, &["--quiet-missing", SEG2], "");
    assert_eq!(out.status.code(), Some(66));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    assert_eq!(parse(&out.stdout)[0]["error"]["kind"], "not_found");
}

#[test]
fn not_found_travels_through_the_middle_stages_to_the_write_out() {
    let home = Home::new();
    let pg_wal = home.dir.path().join("pg_wal");
    fs::create_dir(&pg_wal).unwrap();
    let dest = pg_wal.join("RECOVERYXLOG");
    let passphrase = home.dir.path().join("passphrase");
    fs::write(&passphrase, "secret\n").unwrap();
    // The look-up alone: the record the others must pass on unchanged.
    let alone = get(&home, &[SEG2], "");
    assert_eq!(alone.status.code(), Some(66));
    let looked_up = parse(&alone.stdout);

    for decrypting in [false, true] {
        let mut stages = vec![store_command("get", &home, &[OsStr::new(SEG2)])];
        if decrypting {
            stages.push(other_stage(
                "wal-encrypt",
                &[
                    OsStr::new("--decrypt"),
                    OsStr::new("--passphrase-file"),
                    passphrase.as_os_str(),
                    OsStr::new("--temp-dir"),
                    pg_wal.as_os_str(),
                ],
            ));
        }
        stages.push(other_stage(
            "wal-compress",
            &["--decompress", "--temp-dir"].map(OsStr::new),
        ));
        stages.last_mut().unwrap().arg(&pg_wal);
        stages.push(store_command(
            "get",
            &home,
            &[OsStr::new("--to"), dest.as_os_str()],
        ));
        let ran = pipeline(stages);
        let codes: Vec<Option<i32>> = ran.iter().map(|r| r.code).collect();
        let middle = &ran[1..ran.len() - 1];
        for stage in middle {
            assert_eq!(stage.code, Some(0), "{decrypting}: {codes:?} {stage:?}");
            assert!(stage.stderr.is_empty(), "{decrypting}: {stage:?}");
        }
        let (first, last) = (&ran[0], &ran[ran.len() - 1]);
        assert_eq!(first.code, Some(66), "{codes:?}");
        assert_eq!(first.stderr.lines().count(), 1, "{}", first.stderr);
        // The write-out decides: 66, and says nothing more (the look-up said it).
        assert_eq!(last.code, Some(66), "{decrypting}: {codes:?} {last:?}");
        assert!(last.stderr.is_empty(), "{}", last.stderr);
        assert_eq!(parse(&last.stdout), looked_up, "passed on unchanged");
        assert!(!dest.exists());
        assert_eq!(fs::read_dir(&pg_wal).unwrap().count(), 0);
    }
}

#[test]
fn a_found_file_restores_through_the_pipeline_with_0() {
    let home = Home::new();
    let src = home.queue_file(SEG1, 1);
    put(&home, &[], &[compressed_record(&src)]);
    let pg_wal = home.dir.path().join("pg_wal");
    fs::create_dir(&pg_wal).unwrap();
    let dest = pg_wal.join("RECOVERYXLOG");
    let mut decompress = other_stage(
        "wal-compress",
        &["--decompress", "--temp-dir"].map(OsStr::new),
    );
    decompress.arg(&pg_wal);
    let ran = pipeline(vec![
        store_command("get", &home, &[OsStr::new(SEG1)]),
        decompress,
        store_command("place", &home, &[OsStr::new("--to"), dest.as_os_str()]),
    ]);
    for stage in &ran {
        assert_eq!(stage.code, Some(0), "{ran:?}");
        assert!(stage.stderr.is_empty(), "{ran:?}");
    }
    assert_eq!(fs::read(&dest).unwrap(), wal_content(SEG1, 1));
    assert_eq!(parse(&ran[2].stdout)[0]["outcome"], "fetched");
}

/// A record for `name` that a stage before failed with `kind`, its temp in `dir`: the
/// look-up for `not_found` (only it says a WAL is not archived), wal-compress otherwise.
fn failed_record(dir: &Path, name: &str, kind: &str) -> Value {
    let stage = if kind == "not_found" {
        "wal-store"
    } else {
        "wal-compress"
    };
    failed_record_by(dir, name, kind, stage)
}

fn failed_record_by(dir: &Path, name: &str, kind: &str, stage: &str) -> Value {
    let mut record = temp_record(dir, name, 1);
    record["error"] = json!({"stage": stage, "kind": kind, "message": "upstream"});
    record
}

#[test]
fn a_record_that_arrived_failed_exits_with_its_kind_and_says_nothing() {
    let home = Home::new();
    let dir = home.dir.path().join("pg_wal");
    fs::create_dir(&dir).unwrap();
    let dest = dir.join("RECOVERYXLOG");
    for (kind, code) in [
        ("not_found", 66),
        ("temporary", 75),
        ("corrupt", 65),
        ("io", 74),
        ("usage", 64),
        ("config", 78),
        ("internal", 70),
        ("conflict", 1),
    ] {
        let record = failed_record(&dir, SEG1, kind);
        let temp = path_of(&record);
        let out = get(
            &home,
            &["--to", dest.to_str().unwrap()],
            &ndjson(std::slice::from_ref(&record)),
        );
        assert_eq!(out.status.code(), Some(code), "{kind}: {}", stderr(&out));
        assert!(out.stderr.is_empty(), "{kind}: {}", stderr(&out));
        assert_eq!(parse(&out.stdout), [record], "{kind}: passed on as it came");
        assert!(!temp.exists(), "{kind}: its temps are removed");
        assert!(!dest.exists());
    }
    // Another stage's "not found" (a key file, a temp directory) is no WAL missing from
    // the archive: an I/O failure, never 66 (PostgreSQL's end of the archive).
    let record = failed_record_by(&dir, SEG1, "not_found", "wal-encrypt");
    let out = get(
        &home,
        &["--to", dest.to_str().unwrap()],
        &ndjson(std::slice::from_ref(&record)),
    );
    assert_eq!(out.status.code(), Some(74), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

#[test]
fn several_records_the_worst_failure_decides_and_not_found_is_the_least() {
    let home = Home::new();
    let spool = home.dir.path().join("spool");
    fs::create_dir(&spool).unwrap();
    let run = |records: Vec<Value>| {
        for name in [SEG1, SEG2, SEG3] {
            let _ = fs::remove_file(spool.join(name));
        }
        get(
            &home,
            &["--to-dir", spool.to_str().unwrap()],
            &ndjson(&records),
        )
    };
    let out = run(vec![
        failed_record(&spool, SEG1, "not_found"),
        temp_record(&spool, SEG2, 2),
    ]);
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    assert!(spool.join(SEG2).exists(), "the healthy one is written");

    let out = run(vec![
        failed_record(&spool, SEG1, "not_found"),
        failed_record(&spool, SEG2, "corrupt"),
        failed_record(&spool, SEG3, "temporary"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(65),
        "corrupt, the first but not_found"
    );

    let out = run(vec![
        failed_record(&spool, SEG1, "temporary"),
        failed_record(&spool, SEG2, "not_found"),
        failed_record(&spool, SEG3, "corrupt"),
    ]);
    assert_eq!(out.status.code(), Some(75), "the first seen");

    let out = run(vec![
        failed_record(&spool, SEG1, "not_found"),
        failed_record(&spool, SEG2, "not_found"),
    ]);
    assert_eq!(out.status.code(), Some(66));

    // Its own failure outranks a not_found too, and is said: one line.
    plant(&spool.join(SEG2), b"already there");
    let mut records = vec![failed_record(&spool, SEG1, "not_found")];
    records.push(temp_record(&spool, SEG2, 2));
    let out = get(
        &home,
        &["--to-dir", spool.to_str().unwrap()],
        &ndjson(&records),
    );
    assert_eq!(out.status.code(), Some(74), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains(SEG2), "{}", stderr(&out));
}

#[test]
fn no_record_at_all_is_70_for_to_dir_too() {
    let home = Home::new();
    let spool = home.dir.path().join("spool");
    fs::create_dir(&spool).unwrap();
    let out = get(&home, &["--to-dir", spool.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    let text = stderr(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(&format!("nothing written to {}:", spool.display())),
        "{text}"
    );
}

#[test]
fn place_is_the_write_out() {
    let home = Home::new();
    let dir = home.dir.path().join("pg_wal");
    fs::create_dir(&dir).unwrap();
    let dest = dir.join("RECOVERYXLOG");
    let place = |args: &[&str], stdin: &str| {
        wal_store()
            .args(["place", "--server", "pg", "--archive"])
            .arg(home.wals())
            .args(args)
            .write_stdin(stdin)
            .output()
            .unwrap()
    };
    let record = temp_record(&dir, SEG1, 1);
    let out = place(&["--to", dest.to_str().unwrap()], &ndjson(&[record]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fs::read(&dest).unwrap(), wal_segment(SEG1, 1));
    assert_eq!(parse(&out.stdout)[0]["outcome"], "fetched");
    fs::remove_file(&dest).unwrap();

    let out = place(&["--to", dest.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(70), "{}", stderr(&out));
    let out = place(
        &["--to", dest.to_str().unwrap()],
        &ndjson(&[failed_record(&dir, SEG1, "temporary")]),
    );
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));

    // It needs one destination, and takes no names.
    assert_eq!(place(&[], "").status.code(), Some(64));
    assert_eq!(
        place(&["--to", "/tmp/x", "--to-dir", "/tmp"], "")
            .status
            .code(),
        Some(64)
    );
    assert_eq!(place(&[SEG1, "--to", "/tmp/x"], "").status.code(), Some(64));
}

/// Runs `cmd` with its stdout a pipe nobody reads any more (EPIPE on the first write).
fn into_a_closed_pipe(mut cmd: StdCommand) -> Ran {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = cmd
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    Ran {
        code: out.status.code(),
        stdout: Vec::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_downstream_that_is_gone_gets_no_second_line() {
    let home = Home::new();
    plant(&home.archived(SEG1), &wal_segment(SEG1, 1));
    // Found: nothing to say but that it could not pass the record on, which the stage
    // after it (gone) makes moot: quiet, with the usual code of that failure (74).
    let ran = into_a_closed_pipe(store_command("get", &home, &[OsStr::new(SEG1)]));
    assert_eq!(ran.code, Some(74), "{ran:?}");
    assert!(ran.stderr.is_empty(), "{ran:?}");
    // Missing: its own line (the look-up's finding), not a second one.
    let ran = into_a_closed_pipe(store_command("get", &home, &[OsStr::new(SEG2)]));
    assert_eq!(ran.code, Some(74), "{ran:?}");
    assert_eq!(ran.stderr.lines().count(), 1, "{ran:?}");
    assert!(ran.stderr.contains("not in the archive"), "{ran:?}");
    // The middle stages too (the shared stage driver).
    let mut decompress = other_stage("wal-compress", &[OsStr::new("--decompress")]);
    decompress.stdin(Stdio::piped());
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = decompress
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let failed =
        ndjson(&[json!({"name": SEG1, "error": {"stage": "x", "kind": "io", "message": "m"}})]);
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), failed.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(74));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_stage_that_fails_at_start_leaves_one_line_per_failure() {
    // wal-encrypt --decrypt with a key file that is not there cannot start: it says why
    // once and passes the record on failed with kind `config`; the write-out exits with
    // that kind's code (78, never 66: the file is archived) and says nothing more.
    let home = Home::new();
    plant(&home.archived(SEG1), &wal_segment(SEG1, 1));
    let dest = home.dir.path().join("RECOVERYXLOG");
    let ran = pipeline(vec![
        store_command("get", &home, &[OsStr::new(SEG1)]),
        other_stage(
            "wal-encrypt",
            &["--decrypt", "--key", "/nonexistent/key"].map(OsStr::new),
        ),
        store_command("get", &home, &[OsStr::new("--to"), dest.as_os_str()]),
    ]);
    assert!(
        !ran[0].stderr.contains("cannot write records"),
        "{:?}",
        ran[0]
    );
    assert!(ran[0].stderr.is_empty(), "{:?}", ran[0]);
    assert_eq!(ran[0].code, Some(0), "{:?}", ran[0]);
    assert_ne!(ran[1].code, Some(0), "{:?}", ran[1]);
    assert_eq!(ran[1].stderr.lines().count(), 1, "{:?}", ran[1]);
    assert_eq!(ran[2].code, Some(78), "{:?}", ran[2]);
    assert!(ran[2].stderr.is_empty(), "{:?}", ran[2]);
    assert!(!dest.exists());
    // A stage killed before it passed anything on: the write-out, getting nothing, says
    // so once and exits 70 (not 66: the file may well be archived).
    let mut killed = StdCommand::new("sh");
    killed.args(["-c", "cat >/dev/null; kill -KILL $$"]);
    let ran = pipeline(vec![
        store_command("get", &home, &[OsStr::new(SEG1)]),
        killed,
        store_command("get", &home, &[OsStr::new("--to"), dest.as_os_str()]),
    ]);
    assert_eq!(ran[1].code, None, "killed: {:?}", ran[1]);
    assert_eq!(ran[2].code, Some(70), "{:?}", ran[2]);
    assert_eq!(ran[2].stderr.lines().count(), 1, "{:?}", ran[2]);
    assert!(!dest.exists());
}

/// Settings every stage of a restore refuses alike (a server name that is no plain name, a
/// missing archive) are said once: the look-up hands its name down failed as `config` and
/// says why; the write-out, refusing the same settings, takes the verdict from that record
/// and says nothing. Without such a record, the write-out says why itself.
#[test]
fn refused_settings_are_said_once_by_the_first_stage() {
    let home = Home::new();
    plant(&home.archived(SEG1), &wal_segment(SEG1, 1));
    let dest = home.dir.path().join("RECOVERYXLOG");
    let with = |verb: &str, server: &str, archive: &Path, args: &[&OsStr]| {
        let mut cmd = StdCommand::new(env!("CARGO_BIN_EXE_wal-store"));
        walpipe_tests::clean_command(&mut cmd);
        cmd.arg(verb)
            .arg(format!("--server={server}"))
            .arg("--archive")
            .arg(archive)
            .args(args);
        cmd
    };
    let wals = home.wals();
    let with_server = |verb: &str, server: &str, args: &[&OsStr]| with(verb, server, &wals, args);
    for server in ["../pg", "-x", ""] {
        let ran = pipeline(vec![
            with_server("get", server, &[OsStr::new(SEG1)]),
            with_server("place", server, &[OsStr::new("--to"), dest.as_os_str()]),
        ]);
        let lines = ran[0].stderr.lines().count() + ran[1].stderr.lines().count();
        assert_eq!(lines, 1, "{server:?}: {ran:?}");
        assert_eq!(ran[0].code, Some(78), "{server:?}: {ran:?}");
        assert_eq!(
            ran[1].code,
            Some(78),
            "{server:?}: the look-up's verdict: {ran:?}"
        );
        assert!(!dest.exists());
    }
    // A missing archive: refused by the look-up as it starts, never "not archived".
    let elsewhere = home.dir.path().join("no-such-archive");
    let ran = pipeline(vec![
        with("get", "pg", &elsewhere, &[OsStr::new(SEG1)]),
        store_command("place", &home, &[OsStr::new("--to"), dest.as_os_str()]),
    ]);
    assert_eq!(ran[0].stderr.lines().count(), 1, "{ran:?}");
    assert!(ran[0].stderr.contains("does not exist"), "{ran:?}");
    assert_eq!(ran[1].code, Some(78), "{ran:?}");
    assert!(ran[1].stderr.is_empty(), "{ran:?}");
    // The write-out alone with settings it refuses and nothing failed before it: its line.
    let mut alone = with_server("place", "../pg", &[OsStr::new("--to"), dest.as_os_str()]);
    alone.stdin(Stdio::null());
    let out = alone.output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}
