//! Barman's hook scripts around real archiving and deletion: `scripts/archive-wal` with
//! `--pre-archive-script` & co. over real WAL (the cached fixture segments, made by
//! PostgreSQL), and `scripts/delete-wal` with the `*_wal_delete_*` hooks. The hooks are
//! real shell scripts that write down what they saw and what the archive looked like at
//! that moment: a pre hook must find its WAL still queued and not archived, a post hook
//! must find it stored and catalogued.
//!
//! Needs `cargo build --workspace --bins` first (the scripts run the built binaries, found
//! through `WALPIPE_BIN_DIR`), the `zstd` and `flock` CLIs, and the cached real-WAL set.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tempfile::TempDir;
use walpipe_tests::wrappers::{
    self, Run, archived_path, dir_names, read_xlogdb, wrapper, zstd_decompress,
};
use walpipe_tests::{clean_command, target_bin, wal_fixture_segments};

const SERVER: &str = "pg";
const SEG1: &str = "000000010000000000000001";
const SEG2: &str = "000000010000000000000002";
const SEG3: &str = "000000010000000000000003";
const HISTORY: &str = "00000002.history";
const HISTORY_TEXT: &str = "1\t0/3000000\tno recovery target specified\n";
const BACKUP: &str = "000000010000000000000002.00000028.backup";
const BACKUP_TEXT: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
STOP WAL LOCATION: 0/2000138 (file 000000010000000000000002)\n";
const HEADER: &str = "Processing xlog segments from file archival for pg";

fn run_cmd(cmd: &mut Command, stdin: Option<&str>) -> Run {
    wrappers::run(cmd, stdin)
}

/// One run of a hook, as the logging hook wrote it down.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    label: String,
    phase: String,
    hook: String,
    retry: String,
    segment: String,
    file: String,
    size: String,
    timestamp: String,
    compression: String,
    error: String,
    configuration: String,
    server: String,
    /// The queue file existed.
    queued: bool,
    /// Files of that name in the archive.
    archived: usize,
    /// xlog.db lines for that name.
    catalogued: usize,
    /// The record (WALPIPE_RECORD).
    record: Value,
}

/// A Barman home in a temporary directory, and hook scripts that log what they see.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Self {
        let fx = Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        fs::create_dir_all(fx.incoming()).unwrap();
        fx.write_hook_script();
        fx
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn incoming(&self) -> PathBuf {
        self.home().join(SERVER).join("incoming")
    }
    fn wals(&self) -> PathBuf {
        self.home().join(SERVER).join("wals")
    }
    fn xlogdb(&self) -> PathBuf {
        self.wals().join("pg-xlog.db")
    }
    fn log(&self) -> PathBuf {
        self.dir.path().join("hooks.log")
    }
    fn counters(&self) -> PathBuf {
        self.dir.path().join("counters")
    }

    /// `hook LABEL [FAILURES [EXIT_ON SEGMENT CODE]]`: logs one line per run (every Barman
    /// variable, the record, and the state of the queue, the archive and xlog.db), prints
    /// junk on stdout and stderr, fails (exit 1) its first FAILURES runs per segment, and
    /// exits CODE for SEGMENT.
    fn write_hook_script(&self) {
        let script = format!(
            r#"#!/bin/sh
label=$1; failures=${{2:-0}}; stop_on=${{3:-}}; stop_code=${{4:-0}}
queued=n; [ -e '{incoming}'/"$BARMAN_SEGMENT" ] && queued=y
archived=$(find '{wals}' -name "$BARMAN_SEGMENT" 2>/dev/null | wc -l)
catalogued=$(grep -c "^$BARMAN_SEGMENT	" '{xlogdb}' 2>/dev/null)
printf '%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\n' "$label" "$BARMAN_PHASE" \
  "$BARMAN_HOOK" "$BARMAN_RETRY" "$BARMAN_SEGMENT" "$BARMAN_FILE" "$BARMAN_SIZE" \
  "$BARMAN_TIMESTAMP" "$BARMAN_COMPRESSION" "$BARMAN_ERROR" "$BARMAN_CONFIGURATION" \
  "$BARMAN_SERVER" "$queued" "$archived" "${{catalogued:-0}}" "$WALPIPE_RECORD" >> '{log}'
echo "hook $label says hello on stdout"
echo "hook $label says hello on stderr" >&2
[ "$BARMAN_SEGMENT" = "$stop_on" ] && exit "$stop_code"
mkdir -p '{counters}'
count='{counters}'/"$label.$BARMAN_SEGMENT"
n=$(( $(cat "$count" 2>/dev/null || echo 0) + 1 ))
echo $n > "$count"
[ $n -gt "$failures" ] || exit 1
"#,
            incoming = self.incoming().display(),
            wals = self.wals().display(),
            xlogdb = self.xlogdb().display(),
            log = self.log().display(),
            counters = self.counters().display(),
        );
        let path = self.dir.path().join("hook");
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The command line of the logging hook.
    fn hook(&self, args: &str) -> String {
        format!("{} {args}", self.dir.path().join("hook").display())
    }

    /// Every hook run so far, in order.
    fn seen(&self) -> Vec<Seen> {
        let text = fs::read_to_string(self.log()).unwrap_or_default();
        text.lines()
            .map(|line| {
                let f: Vec<&str> = line.splitn(16, '|').collect();
                assert_eq!(f.len(), 16, "{line}");
                Seen {
                    label: f[0].into(),
                    phase: f[1].into(),
                    hook: f[2].into(),
                    retry: f[3].into(),
                    segment: f[4].into(),
                    file: f[5].into(),
                    size: f[6].into(),
                    timestamp: f[7].into(),
                    compression: f[8].into(),
                    error: f[9].into(),
                    configuration: f[10].into(),
                    server: f[11].into(),
                    queued: f[12] == "y",
                    archived: f[13].trim().parse().unwrap(),
                    catalogued: f[14].trim().parse().unwrap(),
                    record: serde_json::from_str(f[15]).unwrap(),
                }
            })
            .collect()
    }

    /// The runs for one segment, in order.
    fn seen_for(&self, segment: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.segment == segment)
            .collect()
    }

    /// Real WAL fixture `fixture` as `incoming/<name>`, with a fixed mtime.
    fn queue_segment(&self, name: &str, fixture: usize) -> Vec<u8> {
        let path = self.incoming().join(name);
        fs::copy(&wal_fixture_segments()[fixture], &path).unwrap();
        set_mtime(&path, mtime_for(fixture));
        fs::read(&path).unwrap()
    }

    fn queue_file(&self, name: &str, text: &str, fixture: usize) -> Vec<u8> {
        self.queue_bytes(name, text.as_bytes(), fixture)
    }

    /// `bytes` as `incoming/<name>`, with the mtime of fixture number `fixture`.
    fn queue_bytes(&self, name: &str, bytes: &[u8], fixture: usize) -> Vec<u8> {
        let path = self.incoming().join(name);
        fs::write(&path, bytes).unwrap();
        set_mtime(&path, mtime_for(fixture));
        bytes.to_vec()
    }

    fn archive_wal<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.archive_wal_with(&mut wrapper("archive-wal"), args)
    }

    fn archive_wal_with<I, S>(&self, cmd: &mut Command, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_cmd(
            cmd.arg("--home")
                .arg(self.home())
                .args(["--server", SERVER])
                .args(args)
                // Barman's retry pauses (3 s, 60 s) in milliseconds.
                .env("WALPIPE_HOOK_RETRY_SLEEP_SCALE", "0.001"),
            None,
        )
    }

    /// `wal-scan archive` of the archive, as NDJSON lines, keeping the names in `names`.
    fn archive_listing(&self, names: &[&str]) -> String {
        let mut cmd = Command::new(target_bin("wal-scan"));
        clean_command(&mut cmd);
        let out = cmd
            .arg("archive")
            .arg(self.wals())
            .args(["--server", SERVER])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|line| {
                let record: Value = serde_json::from_str(line).unwrap();
                names.contains(&record["name"].as_str().unwrap())
            })
            .fold(String::new(), |text, line| text + line + "\n")
    }

    fn delete_wal<I, S>(&self, args: I, records: &str) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_cmd(
            wrapper("delete-wal")
                .arg("--home")
                .arg(self.home())
                .args(["--server", SERVER])
                .args(args)
                .env("WALPIPE_HOOK_RETRY_SLEEP_SCALE", "0.001"),
            Some(records),
        )
    }
}

fn mtime_for(fixture: usize) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_250 + 60_000 * fixture as u64)
}

fn set_mtime(path: &Path, when: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// The labels of runs, in order.
fn labels(seen: &[Seen]) -> Vec<&str> {
    seen.iter().map(|s| s.label.as_str()).collect()
}

#[test]
fn archive_wal_runs_every_hook_in_barmans_order_around_storing() {
    let fx = Fixture::new();
    // name -> (bytes, fixture number, which gave the mtime)
    let mut originals = BTreeMap::new();
    for (i, name) in [SEG1, SEG2, SEG3].into_iter().enumerate() {
        originals.insert(name, (fx.queue_segment(name, i), i));
    }
    originals.insert(HISTORY, (fx.queue_file(HISTORY, HISTORY_TEXT, 3), 3));
    originals.insert(BACKUP, (fx.queue_file(BACKUP, BACKUP_TEXT, 4), 4));
    let config = fx.dir.path().join("walpipe.conf");
    fs::write(&config, "WALPIPE_COMPRESSION=zstd\n").unwrap();
    let records = fx.dir.path().join("records.ndjson");

    let started = Instant::now();
    let run = fx.archive_wal([
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--records"),
        records.as_os_str(),
        // Given out of Barman's order on purpose: the wrapper puts them in it.
        OsStr::new("--post-archive-script"),
        OsStr::new(&fx.hook("post-plain")),
        OsStr::new("--pre-archive-retry-script"),
        OsStr::new(&fx.hook("pre-retry 2")),
        OsStr::new("--post-archive-retry-script"),
        OsStr::new(&fx.hook("post-retry 1")),
        OsStr::new("--pre-archive-script"),
        OsStr::new(&fx.hook("pre-plain-1")),
        OsStr::new("--pre-archive-script"),
        OsStr::new(&fx.hook("pre-plain-2 1")),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
    // Barman's lines only: the hooks' chatter never reaches stdout.
    let mut expected_stdout = vec![HEADER.to_owned()];
    expected_stdout.extend(
        [SEG1, SEG2, BACKUP, SEG3, HISTORY]
            .iter()
            .map(|n| format!("\t{n}")),
    );
    assert_eq!(lines(&run.stdout), expected_stdout);
    // Hook output shows on stderr only in the report of a failed run.
    for line in run.stderr.lines().filter(|l| l.contains("says hello")) {
        assert!(
            line.starts_with("  stderr: hook ") || line.starts_with("  stdout: hook "),
            "{line}"
        );
    }
    // pre-plain-2 fails its first run per WAL: reported, and archiving goes on.
    assert!(
        run.stderr.contains(&format!(
            "wal-hooks: {SEG1}: pre_archive_script ({}) returned 1\n  \
             stderr: hook pre-plain-2 says hello on stderr\n  \
             stdout: hook pre-plain-2 says hello on stdout",
            fx.hook("pre-plain-2 1")
        )),
        "{}",
        run.stderr
    );

    for (name, (original, fixture)) in &originals {
        check_archive_hooks(&fx, &config, name, original, *fixture);
    }
    assert_eq!(dir_names(&fx.incoming()), Vec::<String>::new());
    let records = fs::read_to_string(&records).unwrap();
    assert_eq!(records.lines().count(), 5, "{records}");
    assert!(
        records
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).unwrap()["outcome"] == "stored"),
        "{records}"
    );
}

/// What the hooks of `archive_wal_runs_every_hook_in_barmans_order_around_storing` saw for
/// one WAL (queued from fixture number `fixture`, with content `original`).
fn check_archive_hooks(fx: &Fixture, config: &Path, name: &str, original: &[u8], fixture: usize) {
    let seen = fx.seen_for(name);
    // Barman's order; the retry scripts ran until they succeeded (pre: 2 failures).
    assert_eq!(
        labels(&seen),
        [
            "pre-plain-1",
            "pre-plain-2",
            "pre-retry",
            "pre-retry",
            "pre-retry",
            "post-retry",
            "post-retry",
            "post-plain"
        ],
        "{name}: {seen:#?}"
    );
    let queued = fx.incoming().join(name);
    let stored = archived_path(&fx.wals(), name);
    let entries = read_xlogdb(&fx.xlogdb());
    let entry = entries.iter().find(|e| e.name == name).unwrap();
    // Python's str(float) of the queue file's mtime.
    let time = format!("{}.25", 1_700_000_000 + 60 * fixture);
    for s in &seen {
        assert_eq!(s.server, "pg");
        assert_eq!(s.configuration, config.to_str().unwrap());
        assert_eq!(s.error, "", "{s:?}");
        assert_eq!(s.record["name"], name);
        assert_eq!(s.timestamp, time, "{s:?}");
        let retry = if s.label.contains("retry") { "1" } else { "0" };
        let hook = if retry == "1" {
            "archive_retry_script"
        } else {
            "archive_script"
        };
        assert_eq!((s.hook.as_str(), s.retry.as_str()), (hook, retry), "{s:?}");
        if s.label.starts_with("pre") {
            // Before storing: the queue file, not yet archived or catalogued.
            assert_eq!(s.phase, "pre");
            assert_eq!(Path::new(&s.file), queued, "{s:?}");
            assert_eq!((s.queued, s.archived, s.catalogued), (true, 0, 0), "{s:?}");
            assert_eq!(s.size, original.len().to_string());
            assert_eq!(s.compression, "");
        } else {
            // After: the archived file, catalogued, the source gone.
            assert_eq!(s.phase, "post");
            assert_eq!(Path::new(&s.file), stored, "{s:?}");
            assert_eq!((s.queued, s.archived, s.catalogued), (false, 1, 1), "{s:?}");
            assert_eq!(s.size, fs::metadata(&stored).unwrap().len().to_string());
            assert_eq!(s.size, entry.size.to_string());
            assert_eq!(s.compression, "zstd");
            assert_eq!(s.record["outcome"], "stored");
        }
    }
    assert!(zstd_decompress(&stored) == original, "{name}");
}

#[test]
fn a_pre_retry_exit_63_stops_archiving_and_leaves_the_queue() {
    let fx = Fixture::new();
    let mut originals = BTreeMap::new();
    for (i, name) in [SEG1, SEG2, SEG3].into_iter().enumerate() {
        originals.insert(name, fx.queue_segment(name, i));
    }
    let run = fx.archive_wal([
        "--pre-archive-retry-script",
        &fx.hook(&format!("stopper 0 {SEG2} 63")),
        "--post-archive-script",
        &fx.hook("post"),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let abort = format!(
        "{SEG2}: Abort 'pre_archive_retry_script' retry hook script ({}, exit code: 63)",
        fx.hook(&format!("stopper 0 {SEG2} 63"))
    );
    assert_eq!(
        lines(&run.stdout),
        [
            HEADER.to_owned(),
            format!("\t{SEG1}"),
            format!("\t{SEG2}"),
            format!("\tError: {abort}"),
            format!("\t{SEG3}"),
            format!(
                "\tError: {SEG3}: not archived: stopped after pre_archive_retry_script \
                 exited 63 on {SEG2}"
            ),
        ]
    );
    assert!(
        run.stderr
            .contains("was aborted (got exit status 63, walpipe requested to stop)"),
        "{}",
        run.stderr
    );
    // SEG1 archived; SEG2 and SEG3 untouched in the queue, not catalogued.
    let names: Vec<String> = read_xlogdb(&fx.xlogdb())
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, [SEG1]);
    assert_eq!(dir_names(&fx.incoming()), [SEG2, SEG3]);
    for name in [SEG2, SEG3] {
        let path = fx.incoming().join(name);
        assert!(fs::read(&path).unwrap() == originals[name], "{name}");
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), {
            let i = if name == SEG2 { 1 } else { 2 };
            mtime_for(i)
        });
    }
    assert!(!archived_path(&fx.wals(), SEG2).exists());
    // The pre hook never ran for SEG3; the post hook ran for SEG1 and, with the error,
    // for SEG2 (Barman's `finally`), not for SEG3 (Barman never got to it).
    // The stages run concurrently: only the order within one hook is fixed.
    let seen = fx.seen();
    let runs_of = |label: &str| -> Vec<(&str, &str)> {
        seen.iter()
            .filter(|s| s.label == label)
            .map(|s| (s.segment.as_str(), s.error.as_str()))
            .collect()
    };
    assert_eq!(runs_of("stopper"), [(SEG1, ""), (SEG2, "")]);
    assert_eq!(runs_of("post"), [(SEG1, ""), (SEG2, abort.as_str())]);
    let post_seg2 = seen
        .iter()
        .find(|s| s.label == "post" && s.segment == SEG2)
        .unwrap();
    assert_eq!(
        Path::new(&post_seg2.file),
        archived_path(&fx.wals(), SEG2),
        "Barman's destination"
    );

    // Once the hook lets them through, the next run archives the rest.
    let run = fx.archive_wal(["--pre-archive-retry-script", &fx.hook("stopper")]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(dir_names(&fx.incoming()), Vec::<String>::new());
    assert_eq!(read_xlogdb(&fx.xlogdb()).len(), 3);
}

#[test]
fn post_hooks_see_barman_error_after_a_conflict() {
    let fx = Fixture::new();
    fx.queue_segment(SEG1, 0);
    assert_eq!(fx.archive_wal(Vec::<&str>::new()).code, 0);
    // The same name with other content (the same segment, one byte changed past its page
    // header, so it still has the shape of SEG1): wal-store moves it to errors/ and fails
    // it.
    let mut other = fs::read(&wal_fixture_segments()[0]).unwrap();
    other[1 << 20] ^= 0xFF;
    fx.queue_bytes(SEG1, &other, 1);
    let run = fx.archive_wal([
        "--post-archive-retry-script",
        &fx.hook("post-retry"),
        "--post-archive-script",
        &fx.hook("post-plain"),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let seen = fx.seen_for(SEG1);
    assert_eq!(labels(&seen), ["post-retry", "post-plain"]);
    for s in &seen {
        assert!(
            s.error
                .starts_with(&format!("{SEG1} is already present in server pg")),
            "both post scripts see the error (Barman 3.20: only the retry one): {s:?}"
        );
        assert_eq!(Path::new(&s.file), archived_path(&fx.wals(), SEG1));
        assert_eq!(s.record["outcome"], "conflict");
    }
}

#[test]
fn hooks_come_from_the_environment_and_time_out() {
    let fx = Fixture::new();
    fx.queue_segment(SEG1, 0);
    let started = Instant::now();
    let mut cmd = wrapper("archive-wal");
    cmd.env("WALPIPE_PRE_ARCHIVE_SCRIPT", fx.hook("from-env"))
        .env("WALPIPE_POST_ARCHIVE_SCRIPT", "sleep 100")
        .env("WALPIPE_HOOK_TIMEOUT", "0.5");
    let run = fx.archive_wal_with(&mut cmd, Vec::<&str>::new());
    assert_eq!(
        run.code, 0,
        "a timed-out plain hook is only reported: {run:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        run.stderr.contains(&format!(
            "wal-hooks: {SEG1}: post_archive_script (sleep 100) timed out after 0.5 s"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(labels(&fx.seen()), ["from-env"]);
    assert_eq!(read_xlogdb(&fx.xlogdb()).len(), 1);

    // A flag replaces the variable.
    fx.queue_segment(SEG2, 1);
    let mut cmd = wrapper("archive-wal");
    cmd.env("WALPIPE_PRE_ARCHIVE_SCRIPT", fx.hook("from-env"));
    let run = fx.archive_wal_with(&mut cmd, ["--pre-archive-script", &fx.hook("from-flag")]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(labels(&fx.seen_for(SEG2)), ["from-flag"]);

    // A bad timeout is refused before anything is touched.
    fx.queue_segment(SEG3, 2);
    let run = fx.archive_wal([
        "--hook-timeout",
        "soon",
        "--pre-archive-script",
        &fx.hook("never"),
    ]);
    assert_eq!(run.code, 64, "{run:?}");
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("soon"), "{}", run.stderr);
    assert_eq!(dir_names(&fx.incoming()), [SEG3]);
}

#[test]
fn delete_wal_runs_the_delete_hooks_around_deleting() {
    let fx = Fixture::new();
    for (i, name) in [SEG1, SEG2, SEG3].into_iter().enumerate() {
        fx.queue_segment(name, i);
    }
    fx.queue_file(HISTORY, HISTORY_TEXT, 3);
    assert_eq!(fx.archive_wal(Vec::<&str>::new()).code, 0);
    let stored: BTreeMap<&str, u64> = [SEG1, SEG2]
        .into_iter()
        .map(|n| {
            let size = fs::metadata(archived_path(&fx.wals(), n)).unwrap().len();
            (n, size)
        })
        .collect();

    let run = fx.delete_wal(
        [
            "--post-wal-delete-script",
            &fx.hook("post-plain"),
            "--post-wal-delete-retry-script",
            &fx.hook("post-retry 1"),
            "--pre-wal-delete-retry-script",
            &fx.hook("pre-retry"),
            "--pre-wal-delete-script",
            &fx.hook("pre-plain"),
        ],
        &fx.archive_listing(&[SEG1, SEG2]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let out: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), 2, "records only on stdout: {}", run.stdout);
    for record in &out {
        assert_eq!(record["outcome"], "deleted", "{record}");
    }
    for name in [SEG1, SEG2] {
        let seen = fx.seen_for(name);
        assert_eq!(
            labels(&seen),
            [
                "pre-plain",
                "pre-retry",
                "post-retry",
                "post-retry",
                "post-plain"
            ],
            "{name}"
        );
        for s in &seen {
            let retry = if s.label.contains("retry") { "1" } else { "0" };
            let hook = if retry == "1" {
                "wal_delete_retry_script"
            } else {
                "wal_delete_script"
            };
            assert_eq!((s.hook.as_str(), s.retry.as_str()), (hook, retry), "{s:?}");
            assert_eq!(Path::new(&s.file), archived_path(&fx.wals(), name));
            assert_eq!(s.size, stored[name].to_string());
            assert_eq!(s.compression, "zstd");
            assert_eq!(s.error, "");
            let expected = if s.label.starts_with("pre") {
                ("pre", 1, 1) // still there, still catalogued
            } else {
                ("post", 0, 0) // gone from the archive and from xlog.db
            };
            assert_eq!(
                (s.phase.as_str(), s.archived, s.catalogued),
                expected,
                "{s:?}"
            );
        }
    }
    let names: Vec<String> = read_xlogdb(&fx.xlogdb())
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, [SEG3, HISTORY]);
    assert!(archived_path(&fx.wals(), SEG3).exists());
}

#[test]
fn delete_wal_stops_at_a_pre_retry_exit_63() {
    let fx = Fixture::new();
    for (i, name) in [SEG1, SEG2, SEG3].into_iter().enumerate() {
        fx.queue_segment(name, i);
    }
    assert_eq!(fx.archive_wal(Vec::<&str>::new()).code, 0);
    let run = fx.delete_wal(
        [
            "--pre-wal-delete-retry-script",
            &fx.hook(&format!("stopper 0 {SEG2} 63")),
            "--post-wal-delete-script",
            &fx.hook("post"),
        ],
        &fx.archive_listing(&[SEG1, SEG2, SEG3]),
    );
    assert_eq!(run.code, 1, "{run:?}");
    let out: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out[0]["outcome"], "deleted");
    assert_eq!(out[1]["error"]["kind"], "aborted");
    assert_eq!(out[2]["error"]["kind"], "aborted");
    assert!(!archived_path(&fx.wals(), SEG1).exists());
    assert!(archived_path(&fx.wals(), SEG2).exists());
    assert!(archived_path(&fx.wals(), SEG3).exists());
    let names: Vec<String> = read_xlogdb(&fx.xlogdb())
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, [SEG2, SEG3]);
    // Post-delete hooks: only for what was deleted (Barman's stop skips them). The stages
    // run concurrently: only the order within one hook is fixed.
    let segments_of = |label: &str| -> Vec<String> {
        fx.seen()
            .into_iter()
            .filter(|s| s.label == label)
            .map(|s| s.segment)
            .collect()
    };
    assert_eq!(segments_of("stopper"), [SEG1, SEG2]);
    assert_eq!(segments_of("post"), [SEG1]);
}

#[test]
fn delete_wal_refuses_bad_usage() {
    let fx = Fixture::new();
    let run = fx.delete_wal(["--no-such-flag"], "");
    assert_eq!(run.code, 64, "{run:?}");
    let run = run_cmd(wrapper("delete-wal").args(["--server", SERVER]), Some(""));
    assert_eq!(run.code, 64, "{run:?}");
    assert!(run.stderr.contains("--home"), "{}", run.stderr);
}
