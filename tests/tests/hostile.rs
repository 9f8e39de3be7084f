//! Hostile and misconfigured input: walpipe never loses a WAL and never touches what is not
//! its own, whatever the flags, the queues and the record streams say.
//!
//! One test per class of input we did not expect. Each asserts the invariant, not only
//! the example: after the run every WAL that was archived is still restorable
//! byte-identical (through `scripts/restore-wal`), every file outside the configured
//! directories is unchanged (content, mode, mtime: [`Snapshot`]), and nothing under a
//! final name in the archive is partial or foreign (each archived file is a regular file
//! with one link and the bytes of the WAL it is named after).
//!
//! Needs `cargo build --workspace --bins` first and the `zstd` CLI.

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use walpipe_tests::watchdog::run_within;
use walpipe_tests::wrappers::{Run, archived_path, read_xlogdb, run, tool, wrapper};
use walpipe_tests::{
    Snapshot, TEST_SYSTEM_ID, WorkDir, history_file, ndjson, parse_records, wal_segment,
    wal_segment_of, write_file,
};

const SERVER: &str = "pg";

/// A walpipe home with a few WAL archived through `archive-wal`, and a directory of
/// someone else's files beside it.
struct World {
    work: WorkDir,
    /// `<work>/home`: `home/pg/{incoming,streaming,wals,errors}`.
    home: PathBuf,
    /// `<work>/victim`: files walpipe must never touch.
    victim: PathBuf,
    /// The archived WAL: name and content.
    archived: Vec<(String, Vec<u8>)>,
}

impl World {
    fn new() -> World {
        let work = WorkDir::new();
        let home = work.join("home");
        let victim = work.join("victim");
        fs::create_dir_all(home.join("pg/incoming")).unwrap();
        fs::create_dir_all(&victim).unwrap();
        write_file(&victim, "notes.txt", b"someone else's file\n");
        write_file(
            &victim,
            "000000010000000000000009",
            &wal_segment("000000010000000000000009", 9),
        );
        write_file(&victim, ".bashrc", b"export PATH\n");
        let mut world = World {
            work,
            home,
            victim,
            archived: Vec::new(),
        };
        for n in 1..=3 {
            let name = format!("00000001000000000000000{n}");
            world.queue(&name, &wal_segment(&name, n));
        }
        world.queue("00000002.history", &history_file(2));
        let out = world.archive_wal(&[]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        world
    }

    fn incoming(&self) -> PathBuf {
        self.home.join("pg/incoming")
    }

    fn wals(&self) -> PathBuf {
        self.home.join("pg/wals")
    }

    /// Puts a WAL in the incoming queue, and remembers it as one that must end archived.
    fn queue(&mut self, name: &str, bytes: &[u8]) -> PathBuf {
        self.archived.push((name.to_string(), bytes.to_vec()));
        write_file(&self.incoming(), name, bytes)
    }

    fn archive_wal(&self, extra: &[&str]) -> Run {
        run(
            wrapper("archive-wal")
                .args(["--home"])
                .arg(&self.home)
                .args(["--server", SERVER])
                .args(extra),
            None,
        )
    }

    /// `wal-store SUBCOMMAND --archive <wals> --server pg EXTRA` on `records`.
    fn wal_store(&self, subcommand: &str, extra: &[&str], records: &[Value]) -> (Run, Vec<Value>) {
        let mut cmd = tool("wal-store");
        cmd.arg(subcommand)
            .args(["--server", SERVER, "--archive"])
            .arg(self.wals())
            .args(extra);
        let out = run(&mut cmd, Some(&ndjson(records)));
        let records = parse_records(out.stdout.as_bytes());
        (out, records)
    }

    /// The invariant: every WAL archived so far restores byte-identical, and the archive
    /// holds only regular, singly linked files with the bytes their names stand for.
    fn assert_archive_intact(&self) {
        let restored = self.work.join("restored");
        fs::create_dir_all(&restored).unwrap();
        for (name, bytes) in &self.archived {
            let stored = archived_path(&self.wals(), name);
            let meta = fs::symlink_metadata(&stored)
                .unwrap_or_else(|e| panic!("{name} is no longer archived: {e}"));
            assert!(
                meta.file_type().is_file(),
                "{name}: archived as a {:?}",
                meta.file_type()
            );
            assert_eq!(
                meta.nlink(),
                1,
                "{name}: the archived copy shares its inode"
            );
            let dest = restored.join(name);
            let _ = fs::remove_file(&dest);
            let out = run(
                wrapper("restore-wal")
                    .args(["--home"])
                    .arg(&self.home)
                    .args(["--server", SERVER, name])
                    .arg(&dest),
                None,
            );
            assert_eq!(out.code, 0, "{name} no longer restores: {}", out.stderr);
            assert!(
                fs::read(&dest).unwrap() == *bytes,
                "{name} restores different bytes"
            );
        }
        let lines = read_xlogdb(&self.wals().join("pg-xlog.db"));
        for (name, _) in &self.archived {
            assert_eq!(
                lines.iter().filter(|line| line.name == *name).count(),
                1,
                "{name}: catalogued once"
            );
        }
    }
}

/// A segment record as wal-scan (and the stages after it) would write it.
fn record(name: &str, path: &Path, source: Option<&Path>, temps: &[&Path]) -> Value {
    let mut r = json!({
        "name": name, "kind": "segment", "path": path, "size": 1 << 20,
        "time": 1_700_000_000.0, "compression": null, "encryption": null,
    });
    if let Some(source) = source {
        r["source"] = json!(source);
    }
    if !temps.is_empty() {
        r["temps"] = json!(temps);
    }
    r
}

/// Every line of `stderr` but the Barman-style report is one line naming its subject.
fn one_line_naming(stderr: &str, subject: &str) {
    assert!(
        stderr.lines().any(|line| line.contains(subject)),
        "no line names {subject}: {stderr}"
    );
}

#[test]
fn a_queue_or_errors_directory_overlapping_the_archive_is_refused_before_any_work() {
    let world = World::new();
    let wals = world.wals();
    let link = world.work.join("link-to-wals");
    symlink(&wals, &link).unwrap();
    let home = Snapshot::of(&world.home);
    for (flag, bad) in [
        ("--incoming", wals.join("0000000100000000")),
        ("--incoming", wals.clone()),
        ("--incoming", link.clone()),
        ("--incoming", world.home.join("pg/incoming/../wals")),
        ("--streaming", wals.join("0000000100000000")),
        ("--incoming", world.home.join("pg")),
        ("--errors-dir", wals.clone()),
        ("--incoming", world.home.join("pg/errors")),
        ("--archive", world.home.join("pg/incoming")),
    ] {
        let out = world.archive_wal(&[flag, bad.to_str().unwrap()]);
        assert_eq!(out.code, 78, "{flag} {}: {}", bad.display(), out.stderr);
        assert!(out.stderr.contains("must not overlap"), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
        home.assert_unchanged(&format!("archive-wal {flag} {}", bad.display()));
    }
    world.assert_archive_intact();
}

/// A relative place would be another directory for archive_command (run in the data
/// directory) and for the units (run in `/`): every wrapper refuses one, wherever it is
/// given, with one line and its configuration code, and creates nothing in the data
/// directory it was run from.
#[test]
fn relative_places_are_refused_by_every_wrapper_and_create_nothing() {
    let world = World::new();
    let pgdata = world.work.join("pgdata");
    fs::create_dir_all(pgdata.join("pg_wal")).unwrap();
    let segment = pgdata.join("pg_wal/000000010000000000000009");
    fs::write(&segment, wal_segment("000000010000000000000009", 9)).unwrap();
    let before = Snapshot::of(&pgdata);
    let home = world.home.to_str().unwrap();
    let settings = world.work.join("relative.conf");
    fs::write(&settings, "WALPIPE_HOME=barman\nWALPIPE_SERVER=pg\n").unwrap();
    let segment = segment.to_str().unwrap();
    let dest = pgdata.join("pg_wal/RECOVERYXLOG");
    let dest = dest.to_str().unwrap();
    let name = "000000010000000000000001";
    let config = format!("--config={}", settings.display());
    for (wrapper_name, args, code) in [
        (
            "archive-wal",
            vec!["--home", "barman", "--server", "pg"],
            78,
        ),
        ("archive-wal", vec![config.as_str()], 78),
        (
            "archive-wal",
            vec!["--home", home, "--server", "pg", "--incoming", "q"],
            78,
        ),
        ("archive-command", vec![config.as_str(), segment], 78),
        (
            "archive-command",
            vec![
                "--home",
                home,
                "--server",
                "pg",
                "--direct",
                "--archive",
                "wals",
                segment,
            ],
            78,
        ),
        (
            "archive-command",
            vec![
                "--server",
                "pg",
                "--direct",
                "--archive",
                "s3://b/p",
                "--temp-dir",
                "tmp",
                segment,
            ],
            78,
        ),
        (
            "restore-wal",
            vec!["--home", "barman", "--server", "pg", name, dest],
            200,
        ),
        (
            "restore-wal",
            vec![
                "--home",
                home,
                "--server",
                "pg",
                "--prefetch",
                "2",
                "--spool-dir",
                ".",
                name,
                dest,
            ],
            200,
        ),
        ("verify-wal", vec!["--home", "barman", "--server", "pg"], 78),
        ("delete-wal", vec!["--home", "barman", "--server", "pg"], 78),
    ] {
        let out = run(
            wrapper(wrapper_name).current_dir(&pgdata).args(&args),
            Some(""),
        );
        assert_eq!(out.code, code, "{wrapper_name} {args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("not an absolute path"),
            "{wrapper_name} {args:?}: {}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
        before.assert_unchanged(&format!("{wrapper_name} {args:?}"));
    }
    world.assert_archive_intact();
}

#[test]
fn a_server_name_that_is_not_a_plain_name_is_refused_and_creates_nothing() {
    let world = World::new();
    let work = Snapshot::of(world.work.path());
    for server in ["..", ".", "a/b", "../pg", "-x", ".hidden", ""] {
        for wrapper_name in ["archive-wal", "archive-command"] {
            let mut cmd = wrapper(wrapper_name);
            cmd.args(["--home"])
                .arg(&world.home)
                .args(["--server", server]);
            if wrapper_name == "archive-command" {
                cmd.arg("--direct")
                    .arg(world.victim.join("000000010000000000000009"));
            }
            let out = run(&mut cmd, None);
            assert!(
                [64, 78].contains(&out.code),
                "{wrapper_name} --server {server:?}: {}",
                out.stderr
            );
            work.assert_unchanged(&format!("{wrapper_name} --server {server:?}"));
        }
    }
    world.assert_archive_intact();
}

#[test]
fn records_naming_files_elsewhere_change_nothing_there_and_the_stream_goes_on() {
    let world = World::new();
    let victim = Snapshot::of(&world.victim);
    let outside_wal = world.victim.join("000000010000000000000009");
    let stored = archived_path(&world.wals(), "000000010000000000000001");
    let good = world.incoming().join("000000010000000000000004");
    fs::write(&good, wal_segment("000000010000000000000004", 4)).unwrap();
    let hostile = vec![
        // A source outside every queue: it would be removed once stored.
        record(
            "000000010000000000000009",
            &outside_wal,
            Some(&outside_wal),
            &[],
        ),
        // Temps that are someone else's files.
        record(
            "000000010000000000000009",
            &outside_wal,
            None,
            &[
                &world.victim.join(".bashrc"),
                &world.victim.join("notes.txt"),
            ],
        ),
        // The stored copy itself as the source: "archiving" it would delete it.
        record("000000010000000000000001", &stored, Some(&stored), &[]),
        // Not WAL, outside the queues: an unknown record's source is moved to errors/.
        json!({"name": "notes.txt", "path": world.victim.join("notes.txt"),
               "source": world.victim.join("notes.txt"),
               "error": {"stage": "wal-scan", "kind": "unknown", "message": "not a WAL file"}}),
        // A name with a path in it.
        record(
            "../00000002.history",
            &world.victim.join("notes.txt"),
            None,
            &[],
        ),
        // And a good one, last: the stream goes on.
        record("000000010000000000000004", &good, Some(&good), &[]),
    ];
    let (out, records) = world.wal_store("put", &[], &hostile);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.code < 126);
    assert_eq!(records.len(), hostile.len(), "{}", out.stdout);
    for (i, rec) in records[..5].iter().enumerate() {
        assert!(
            rec["error"].is_object(),
            "record {i} was not refused: {rec}"
        );
        assert!(rec.get("outcome").is_none() || i == 3, "record {i}: {rec}");
    }
    assert_eq!(records[5]["outcome"], "stored", "{}", out.stderr);
    one_line_naming(
        &out.stderr,
        &world.victim.join(".bashrc").display().to_string(),
    );
    one_line_naming(&out.stderr, &outside_wal.display().to_string());
    victim.assert_unchanged("wal-store put");
    assert!(
        !read_xlogdb(&world.wals().join("pg-xlog.db"))
            .iter()
            .any(|line| line.name.contains('/') || line.name.ends_with("09")),
        "nothing foreign catalogued"
    );

    let mut world = world;
    world.archived.push((
        "000000010000000000000004".into(),
        wal_segment("000000010000000000000004", 4),
    ));
    world.assert_archive_intact();
}

#[test]
fn keep_source_and_write_out_never_change_a_file_a_record_names() {
    let mut world = World::new();
    let victim = Snapshot::of(&world.victim);
    // --keep-source (archive_command's pg_wal files) copies a file a record names and
    // never changes it: not its mode, not its mtime, not its links.
    let elsewhere = world.victim.join("000000010000000000000009");
    let (out, records) = world.wal_store(
        "put",
        &["--keep-source"],
        &[record(
            "000000010000000000000009",
            &elsewhere,
            Some(&elsewhere),
            &[],
        )],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(records[0]["outcome"], "stored");
    victim.assert_unchanged("wal-store put --keep-source");

    // get --to-dir removes the temps of failed records only when they are its own.
    let spool = world.work.join("spool");
    fs::create_dir_all(&spool).unwrap();
    let mut failed = record(
        "000000010000000000000001",
        &world.victim.join("notes.txt"),
        None,
        &[&world.victim.join(".bashrc")],
    );
    failed["error"] = json!({"stage": "wal-compress", "kind": "corrupt", "message": "x"});
    let (out, _) = world.wal_store("get", &["--to-dir", spool.to_str().unwrap()], &[failed]);
    assert!(out.code < 126, "{}", out.stderr);
    victim.assert_unchanged("wal-store get --to-dir");

    world.archived.push((
        "000000010000000000000009".into(),
        wal_segment("000000010000000000000009", 9),
    ));
    world.assert_archive_intact();
}

#[test]
fn only_regular_files_with_one_name_are_archived_and_nothing_hangs() {
    let mut world = World::new();
    let victim = Snapshot::of(&world.victim);
    // A symbolic link in the queue, to a WAL elsewhere: never archived as a link.
    symlink(
        world.victim.join("000000010000000000000009"),
        world.incoming().join("000000010000000000000009"),
    )
    .unwrap();
    // A relative link that dangles at once.
    symlink(
        "../nowhere",
        world.incoming().join("00000001000000000000000A"),
    )
    .unwrap();
    // A WAL with a second name elsewhere (a hard link): copied, never linked.
    let linked_name = "000000010000000000000005";
    let linked = world.queue(linked_name, &wal_segment(linked_name, 5));
    let other_name = world.work.join("other-name");
    fs::hard_link(&linked, &other_name).unwrap();
    // A fifo under a WAL name.
    nix::unistd::mkfifo(
        &world.incoming().join("00000001000000000000000B"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    let mut cmd = wrapper("archive-wal");
    cmd.args(["--home"])
        .arg(&world.home)
        .args(["--server", SERVER, "--compression", "none"]);
    let finished = run_within(&mut cmd, "", Duration::from_secs(60));
    assert!(finished.code < 126, "{finished:?}");
    // What happens to the other name never reaches the archive.
    fs::write(&other_name, b"recycled in place").unwrap();
    for odd in [
        "000000010000000000000009",
        "00000001000000000000000A",
        "00000001000000000000000B",
    ] {
        let stored = archived_path(&world.wals(), odd);
        assert!(fs::symlink_metadata(&stored).is_err(), "{odd} was archived");
    }
    victim.assert_unchanged("archive-wal with links and fifos in the queue");
    world.assert_archive_intact();

    // A record whose path is a fifo fails at once, it does not hang wal-store.
    let fifo = world.incoming().join("00000001000000000000000C");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let line = ndjson(&[
        json!({"name": "00000001000000000000000C", "path": fifo, "source": fifo,
                              "size": 0, "time": 1.0, "compression": null, "encryption": null}),
    ]);
    let mut put = tool("wal-store");
    put.args(["put", "--server", SERVER, "--archive"])
        .arg(world.wals());
    let finished = run_within(&mut put, &line, Duration::from_secs(20));
    assert_eq!(finished.code, 1, "{finished:?}");
    assert!(finished.stderr.contains("fifo"), "{finished:?}");
}

#[test]
fn restore_never_hands_postgres_garbage_nor_calls_a_broken_archive_the_end() {
    /// restore-wal's status for a WAL it cannot restore (see scripts/restore-wal).
    const RESTORE_ABORT: i32 = 200;
    let world = World::new();
    let wals = world.wals();
    let hash = wals.join("0000000100000000");
    let segment = |n: u32| format!("0000000100000000000000{n:02X}");
    let good = wal_segment(&segment(0x10), 16);
    let cases: Vec<(String, &str)> = vec![
        (segment(0x10), "empty"),
        (segment(0x11), "truncated"),
        (segment(0x12), "random"),
        (segment(0x13), "renamed"),
        (segment(0x14), "directory"),
        (segment(0x15), "fifo"),
        (segment(0x16), "dangling link"),
        (segment(0x17), "another system"),
        ("00000003.history".to_string(), "binary history"),
    ];
    for (name, what) in &cases {
        let path = archived_path(&wals, name);
        match *what {
            "empty" => drop(fs::write(&path, b"")),
            "truncated" => drop(fs::write(&path, &wal_segment(name, 1)[..300_000])),
            "random" => drop(fs::write(
                &path,
                walpipe_tests::synthetic_segment(5, 1 << 20),
            )),
            "renamed" => drop(fs::write(&path, &good)),
            "directory" => fs::create_dir(&path).unwrap(),
            "fifo" => nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap(),
            "dangling link" => symlink(hash.join("gone"), &path).unwrap(),
            "another system" => drop(fs::write(
                &path,
                wal_segment_of(name, 1, 1 << 20, TEST_SYSTEM_ID + 1),
            )),
            "binary history" => drop(fs::write(&path, [0xffu8, 0, 3, 7, 0x80])),
            _ => unreachable!(),
        }
    }
    let pg_wal = world.work.join("pg_wal");
    fs::create_dir_all(&pg_wal).unwrap();
    for (name, what) in &cases {
        let dest = pg_wal.join("RECOVERYXLOG");
        let finished = run_within(
            wrapper("restore-wal")
                .args(["--home"])
                .arg(&world.home)
                .args(["--server", SERVER, name])
                .arg(&dest),
            "",
            Duration::from_secs(30),
        );
        let code = finished.code;
        let stderr = &finished.stderr;
        if *what == "another system" {
            // The header has WAL's shape; which system it belongs to is checked when it
            // is stored (a_segment_of_another_system_is_refused...), not on restore.
            assert_eq!(code, 0, "{what}: {stderr}");
            fs::remove_file(&dest).unwrap();
            continue;
        }
        // Above 125: PostgreSQL aborts recovery. Any status from 1 to 125 (65 for a corrupt
        // file, as the stages exit) would be "not available", the end of the archive,
        // and a point-in-time recovery would promote without this WAL and what follows.
        assert_eq!(code, RESTORE_ABORT, "{what} ({name}): {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
        assert!(
            stderr.contains(name.as_str()),
            "{what}: names the file: {stderr}"
        );
        assert!(
            fs::read_dir(&pg_wal).unwrap().next().is_none(),
            "{what}: something was left in pg_wal"
        );
    }
    world.assert_archive_intact();
}

#[test]
fn unusable_records_file_fails_before_anything_is_archived() {
    let mut world = World::new();
    let name = "000000010000000000000006";
    world.queue(name, &wal_segment(name, 6));
    let queue = Snapshot::of(&world.home);
    let out = world.archive_wal(&["--records", "/nonexistent-dir/records.ndjson"]);
    assert_eq!(out.code, 73, "{}", out.stderr);
    one_line_naming(&out.stderr, "/nonexistent-dir/records.ndjson");
    queue.assert_unchanged("archive-wal --records into a missing directory");
    let out = world.archive_wal(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    world.assert_archive_intact();
}

#[test]
fn the_same_wal_twice_in_one_batch_is_catalogued_once() {
    let mut world = World::new();
    let name = "000000010000000000000007";
    let bytes = wal_segment(name, 7);
    let streaming = world.home.join("pg/streaming");
    fs::create_dir_all(&streaming).unwrap();
    let a = world.queue(name, &bytes);
    let b = write_file(&streaming, name, &bytes);
    let record = |path: &Path| {
        json!({"name": name, "kind": "segment", "path": path, "source": path,
               "size": bytes.len(), "time": 1_700_000_000.0, "compression": null, "encryption": null})
    };
    let (out, records) = world.wal_store("put", &[], &[record(&a), record(&b)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(records[0]["outcome"], "stored");
    assert_eq!(records[1]["outcome"], "duplicate");
    assert!(!a.exists() && !b.exists());
    world.assert_archive_intact();
}

#[test]
fn a_segment_of_another_system_is_refused_naming_both_identifiers() {
    let mut world = World::new();
    let name = "000000010000000000000008";
    let stranger = world.incoming().join(name);
    fs::write(
        &stranger,
        wal_segment_of(name, 8, 1 << 20, TEST_SYSTEM_ID + 42),
    )
    .unwrap();
    let out = world.archive_wal(&[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&TEST_SYSTEM_ID.to_string()),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&(TEST_SYSTEM_ID + 42).to_string()),
        "{}",
        out.stderr
    );
    assert!(stranger.exists(), "the refused WAL stays where it is");
    assert!(fs::symlink_metadata(archived_path(&world.wals(), name)).is_err());
    // archive_command's hand-off into the queue refuses it too: its PostgreSQL keeps it.
    let pg_wal = world.work.join("pg_wal");
    fs::create_dir_all(&pg_wal).unwrap();
    let handed = write_file(
        &pg_wal,
        "00000001000000000000000A",
        &wal_segment_of("00000001000000000000000A", 10, 1 << 20, TEST_SYSTEM_ID + 42),
    );
    let queue = Snapshot::of(&world.incoming());
    let out = run(
        wrapper("archive-command")
            .arg("--home")
            .arg(&world.home)
            .args(["--server", SERVER])
            .arg(&handed),
        None,
    );
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(&TEST_SYSTEM_ID.to_string()),
        "{}",
        out.stderr
    );
    queue.assert_unchanged("archive-command of another system's WAL");
    // The archive's own WAL go on being archived.
    let next = "000000010000000000000009";
    world.queue(next, &wal_segment(next, 99));
    fs::remove_file(&stranger).unwrap();
    let out = world.archive_wal(&[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    world.assert_archive_intact();
}

#[test]
fn a_source_is_dropped_only_for_what_was_made_from_it() {
    let world = World::new();
    let name = "000000010000000000000004";
    let queued = world.incoming().join(name);
    fs::write(&queued, wal_segment(name, 4)).unwrap();
    // Another file (WAL-shaped, other bytes) as `path`, the queued WAL as `source`.
    let other = write_file(&world.victim, "other", &wal_segment(name, 44));
    let (out, records) = world.wal_store("put", &[], &[record(name, &other, Some(&queued), &[])]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(records[0]["outcome"], "stored");
    assert!(
        queued.exists(),
        "the queued WAL was not what was stored: it stays"
    );

    // A temp that is a hard link to someone else's file is not ours to chmod or re-time.
    let victim = Snapshot::of(&world.victim);
    let temp = world.incoming().join(format!(".{name}.compressed"));
    fs::hard_link(&other, &temp).unwrap();
    let mut rec = record(name, &temp, Some(&queued), &[&temp]);
    rec["time"] = json!(1e300);
    let (out, records) = world.wal_store("put", &[], &[rec]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        records[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("other names"),
        "{}",
        records[0]
    );
    victim.assert_unchanged("a hard-linked temp");
    assert!(queued.exists());
}

#[test]
fn a_precompressed_queue_file_is_checked_whole_and_catalogue_paths_must_be_files() {
    let world = World::new();
    let name = "000000010000000000000004";
    let queued = world.incoming().join(name);
    // Compressed by a client before it was queued: cut short, then padded beyond its size.
    for bytes in [
        wal_segment(name, 4)[..300_000].to_vec(),
        [wal_segment(name, 4), vec![0u8; 5 << 20]].concat(),
    ] {
        let out = std::process::Command::new("zstd")
            .args(["-q", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                let mut stdin = child.stdin.take().unwrap();
                let feeder = std::thread::spawn(move || stdin.write_all(&bytes));
                let out = child.wait_with_output();
                feeder.join().unwrap().unwrap();
                out
            })
            .expect("the zstd CLI");
        fs::write(&queued, &out.stdout).unwrap();
        let out = world.archive_wal(&["--compression", "none"]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(out.stderr.contains(name), "{}", out.stderr);
        assert!(queued.exists(), "refused, kept queued");
        assert!(fs::symlink_metadata(archived_path(&world.wals(), name)).is_err());
    }
    fs::remove_file(&queued).unwrap();

    // xlog.db that is a fifo, a link or a WAL name: refused (78), nothing hangs or is
    // written through.
    let fifo = world.work.join("xlog.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let link = world.work.join("xlog.link");
    symlink(world.victim.join("notes.txt"), &link).unwrap();
    let victim = Snapshot::of(&world.victim);
    let good = world.incoming().join(name);
    fs::write(&good, wal_segment(name, 4)).unwrap();
    for xlogdb in [
        fifo,
        link,
        archived_path(&world.wals(), "000000010000000000000001"),
    ] {
        let line = ndjson(&[record(name, &good, Some(&good), &[])]);
        let finished = run_within(
            tool("wal-store")
                .args(["put", "--server", SERVER, "--archive"])
                .arg(world.wals())
                .arg("--xlogdb")
                .arg(&xlogdb),
            &line,
            Duration::from_secs(20),
        );
        assert!(
            [1, 78].contains(&finished.code),
            "{}: {finished:?}",
            xlogdb.display()
        );
        victim.assert_unchanged(&format!("--xlogdb {}", xlogdb.display()));
    }
    let mut world = world;
    world.archived.retain(|(n, _)| n != name);
    world.assert_archive_intact();
}

#[test]
fn settings_files_cannot_switch_a_stage_into_another_role_nor_a_wrapper_into_a_guess() {
    let mut world = World::new();
    // A settings file naming a stage's internal switches: archive-wal still archives
    // into the archive and empties the queue (they are flags only, set by the wrappers).
    let config = world.work.join("walpipe.conf");
    fs::write(
        &config,
        "WALPIPE_KEEP_SOURCE=1\nWALPIPE_QUEUE=1\nWALPIPE_REPORT=0\n",
    )
    .unwrap();
    let name = "000000010000000000000004";
    world.queue(name, &wal_segment(name, 4));
    let out = world.archive_wal(&["--config", config.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(name),
        "Barman's report names it: {}",
        out.stdout
    );
    assert!(
        fs::read_dir(world.incoming()).unwrap().next().is_none(),
        "the queue is emptied"
    );
    world.assert_archive_intact();

    // A fifo as the settings file (it would hang PostgreSQL's archiver), a directory, a
    // name set twice (systemd takes the last, a wrapper would take the first): 78.
    let fifo = world.work.join("fifo.conf");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let twice = world.work.join("twice.conf");
    fs::write(
        &twice,
        "WALPIPE_COMPRESSION=zstd\nWALPIPE_COMPRESSION=gzip\n",
    )
    .unwrap();
    for bad in [&fifo, &world.work.join("victim"), &twice] {
        let mut cmd = wrapper("archive-wal");
        cmd.arg("--config")
            .arg(bad)
            .arg("--home")
            .arg(&world.home)
            .args(["--server", SERVER]);
        let out = run_within(&mut cmd, "", Duration::from_secs(30));
        assert_eq!(out.code, 78, "{}: {}", bad.display(), out.stderr);
        one_line_naming(&out.stderr, bad.to_str().unwrap());
    }

    // WALPIPE_DIRECT takes 1 or 0: "yes" is refused, not read as "the queue".
    let wal = world.work.join(name);
    fs::write(&wal, wal_segment(name, 4)).unwrap();
    let out = run(
        wrapper("archive-command")
            .args(["--home"])
            .arg(&world.home)
            .args(["--server", SERVER])
            .arg(&wal)
            .env("WALPIPE_DIRECT", "yes"),
        None,
    );
    assert_eq!(out.code, 64, "{}", out.stderr);
    one_line_naming(&out.stderr, "WALPIPE_DIRECT=yes");
    assert!(
        fs::read_dir(world.incoming()).unwrap().next().is_none(),
        "nothing queued"
    );

    // verify-wal: wal-verify's refusal of its flags is the status, not the pipe it broke.
    for bad in [
        &["--full"][..],
        &[
            "--from",
            "000000010000000000000003",
            "--to",
            "000000010000000000000001",
        ],
    ] {
        let out = run(
            wrapper("verify-wal")
                .args(["--home"])
                .arg(&world.home)
                .args(["--server", SERVER])
                .args(bad),
            None,
        );
        assert_eq!(out.code, 64, "{bad:?}: {}", out.stderr);
    }
}
