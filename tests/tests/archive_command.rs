//! `scripts/archive-command` (PostgreSQL's archive_command) and `scripts/archive-wal`
//! (Barman's `archive-wal`) without PostgreSQL: the scripts run directly, as the current
//! user, on real WAL segments in temporary directories.
//!
//! Needs `cargo build --workspace --bins` first (the scripts run the built binaries, found
//! through `WALPIPE_BIN_DIR`), the `zstd` and `flock` CLIs, and the cached real-WAL set.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tempfile::TempDir;
use walpipe_tests::wrappers::{
    self, Run, XlogdbEntry, archived_path, dir_names, read_xlogdb, wrapper, zstd_decompress,
};
use walpipe_tests::{wal_fixture_segments, wal_segment_of};

const SERVER: &str = "pg";
const SEG1: &str = "000000010000000000000001";
const SEG2: &str = "000000010000000000000002";
const SEG3: &str = "000000010000000000000003";
const HASH: &str = "0000000100000000";
const HEADER: &str = "Processing xlog segments from file archival for pg";
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

fn run_script<I, S>(script: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_cmd(wrapper(script).args(args))
}

fn run_cmd(cmd: &mut Command) -> Run {
    wrappers::run(cmd, None)
}

/// A Barman home in a temporary directory, and a separate directory for sources (our
/// stand-in for pg_wal).
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir(dir.path().join("src")).unwrap();
        Fixture { dir }
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn server_dir(&self) -> PathBuf {
        self.home().join(SERVER)
    }
    fn incoming(&self) -> PathBuf {
        self.server_dir().join("incoming")
    }
    fn wals(&self) -> PathBuf {
        self.server_dir().join("wals")
    }
    fn errors(&self) -> PathBuf {
        self.server_dir().join("errors")
    }
    fn xlogdb(&self) -> Vec<XlogdbEntry> {
        read_xlogdb(&self.wals().join("pg-xlog.db"))
    }
    fn src_dir(&self) -> PathBuf {
        self.dir.path().join("src")
    }
    /// `<tmp>/<sub>/<name>` holding real WAL fixture number `fixture`, with a fixed mtime
    /// (so a copy that got "now" instead of the source's mtime shows).
    fn source_in(&self, sub: &str, name: &str, fixture: usize) -> PathBuf {
        let dir = self.dir.path().join(sub);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        fs::copy(&wal_fixture_segments()[fixture], &path).unwrap();
        set_mtime(&path, mtime_for(fixture));
        path
    }
    fn source(&self, name: &str, fixture: usize) -> PathBuf {
        self.source_in("src", name, fixture)
    }
    /// `<tmp>/<sub>/<name>` holding [`other_wal`]`(name, seed)`, with the mtime of
    /// fixture `seed`: another WAL under a name already delivered.
    fn other_source_in(&self, sub: &str, name: &str, seed: u64) -> PathBuf {
        let dir = self.dir.path().join(sub);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        fs::write(&path, other_wal(name, seed)).unwrap();
        set_mtime(&path, mtime_for(seed as usize));
        path
    }
    /// `archive-command --home H --server pg ARGS...`
    fn archive_command<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_cmd(
            wrapper("archive-command")
                .arg("--home")
                .arg(self.home())
                .args(["--server", SERVER])
                .args(args),
        )
    }
    /// `archive-wal --home H --server pg ARGS...`
    fn archive_wal<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_cmd(
            wrapper("archive-wal")
                .arg("--home")
                .arg(self.home())
                .args(["--server", SERVER])
                .args(args),
        )
    }
}

/// Another WAL under `name`: a segment of the fixtures' cluster (their system identifier
/// and segment size, so the archive takes it for this server's WAL) whose content differs
/// from the fixture of that name, as a timeline mix-up or a cluster restored from an old
/// backup would hand over. Each `seed` gives other content.
fn other_wal(name: &str, seed: u64) -> Vec<u8> {
    let fixture = fs::read(&wal_fixture_segments()[0]).unwrap();
    let system_id = u64::from_le_bytes(fixture[24..32].try_into().unwrap());
    wal_segment_of(name, seed, fixture.len(), system_id)
}

fn mtime_for(fixture: usize) -> SystemTime {
    UNIX_EPOCH + Duration::new(1_700_000_000 + 60 * fixture as u64, 123_456_789)
}

fn set_mtime(path: &Path, when: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .modified()
        .unwrap()
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Bytes and mtime: what "untouched" means for a file.
fn snapshot(path: &Path) -> (Vec<u8>, SystemTime) {
    (
        fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        mtime(path),
    )
}

fn assert_same_file(path: &Path, expected: &(Vec<u8>, SystemTime), what: &str) {
    let (bytes, time) = snapshot(path);
    assert!(
        bytes == expected.0,
        "{what}: {} has other bytes ({} vs {})",
        path.display(),
        bytes.len(),
        expected.0.len()
    );
    assert_eq!(time, expected.1, "{what}: mtime of {}", path.display());
}

fn assert_exit_0(run: &Run, what: &str) {
    assert_eq!(run.code, 0, "{what}: {run:?}");
}

/// A failure PostgreSQL retries: non-zero, below 126 (above is fatal to its archiver).
fn assert_retryable_failure(run: &Run, what: &str) {
    assert!(run.code > 0 && run.code < 126, "{what}: {run:?}");
}

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one stderr line, got {stderr:?}");
    lines[0]
}

fn assert_close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-3, "{what}: {a} vs {b}");
}

// ---------------------------------------------------------------------------------------
// archive-command, default mode: a durable copy into the incoming queue
// ---------------------------------------------------------------------------------------

#[test]
fn queue_copy_is_identical_with_the_source_mtime_and_leaves_the_source() {
    let fx = Fixture::new();
    let source = fx.source(SEG1, 0);
    let before = snapshot(&source);

    let run = fx.archive_command([&source]);
    assert_exit_0(&run, "first delivery");
    assert_eq!(
        run.stdout, "",
        "archive_command output goes to PostgreSQL's log"
    );

    let queued = fx.incoming().join(SEG1);
    assert_same_file(&queued, &before, "queued copy");
    assert_same_file(&source, &before, "source");
    assert_eq!(dir_names(&fx.incoming()), [SEG1], "only the WAL, no temp");
    assert_eq!(
        dir_names(&fx.src_dir()),
        [SEG1],
        "nothing next to the source"
    );
    assert!(
        !fx.wals().exists(),
        "the queue mode does not touch the archive"
    );
}

#[test]
fn queue_redelivery_of_the_same_file_succeeds() {
    let fx = Fixture::new();
    let source = fx.source(SEG1, 0);
    let before = snapshot(&source);
    assert_exit_0(&fx.archive_command([&source]), "first delivery");
    let run = fx.archive_command([&source]);
    assert_exit_0(&run, "re-delivery");
    assert_same_file(&fx.incoming().join(SEG1), &before, "queued copy");
    assert_same_file(&source, &before, "source");
    assert_eq!(dir_names(&fx.incoming()), [SEG1]);
}

#[test]
fn queue_refuses_a_different_file_under_the_same_name() {
    let fx = Fixture::new();
    let first = fx.source(SEG1, 0);
    let queued_before = snapshot(&first);
    assert_exit_0(&fx.archive_command([&first]), "first delivery");

    // Another WAL under the same name (a timeline mix-up, a cluster restored from an
    // old backup archiving to the same place).
    let other = fx.other_source_in("other", SEG1, 1);
    let other_before = snapshot(&other);
    let run = fx.archive_command([&other]);
    assert_retryable_failure(&run, "different content");
    let line = one_line(&run.stderr);
    assert!(line.contains(SEG1), "the line names the file: {line:?}");
    assert!(line.contains("different content"), "a conflict: {line:?}");

    assert_same_file(&fx.incoming().join(SEG1), &queued_before, "queued copy");
    assert_same_file(&other, &other_before, "refused source");
    assert_eq!(dir_names(&fx.incoming()), [SEG1], "no temp left behind");
    assert_eq!(
        dir_names(&fx.errors()),
        Vec::<String>::new(),
        "pg_wal's file is not moved"
    );
}

#[test]
fn queue_is_not_blocked_by_a_half_written_temp_of_a_killed_copy() {
    let fx = Fixture::new();
    let source = fx.source(SEG1, 0);
    let before = snapshot(&source);
    // What a copy killed half-way leaves: a hidden temp, half the size.
    fs::create_dir_all(fx.incoming()).unwrap();
    let stale = fx.incoming().join(format!(".{SEG1}.1234.0.tmp"));
    fs::write(&stale, &before.0[..before.0.len() / 2]).unwrap();

    let run = fx.archive_command([&source]);
    assert_exit_0(&run, "delivery over a stale temp");
    assert_same_file(&fx.incoming().join(SEG1), &before, "queued copy");

    // archive-wal archives the WAL and neither archives nor quarantines the temp.
    let run = fx.archive_wal(Vec::<&str>::new());
    assert_exit_0(&run, "archive-wal");
    assert_eq!(run.stdout_lines(), [HEADER, &format!("\t{SEG1}")]);
    assert_eq!(zstd_decompress(&archived_path(&fx.wals(), SEG1)), before.0);
    let names: Vec<String> = fx.xlogdb().into_iter().map(|e| e.name).collect();
    assert_eq!(names, [SEG1]);
    assert_eq!(dir_names(&fx.errors()), Vec::<String>::new());
    assert_eq!(dir_names(&fx.wals().join(HASH)), [SEG1]);
}

#[test]
fn missing_wal_path_exits_66() {
    let fx = Fixture::new();
    let missing = fx.src_dir().join(SEG1);
    for direct in [false, true] {
        let mut args = vec![missing.as_os_str()];
        if direct {
            args.insert(0, OsStr::new("--direct"));
        }
        let run = fx.archive_command(args);
        assert_eq!(run.code, 66, "direct={direct}: {run:?}");
        assert!(one_line(&run.stderr).contains(SEG1), "{run:?}");
    }
    assert!(!fx.home().exists(), "nothing created for a missing file");
}

/// Issue 11: a `%p` that is not a WAL file (another name, a directory, a FIFO, a symbolic
/// link) used to exit 0 with nothing stored, and PostgreSQL then dropped the file as
/// archived. It fails with 65, in one line naming the file and the cause; nothing is
/// stored, queued, moved or left behind.
#[test]
fn a_wal_path_that_is_not_a_wal_file_fails_with_65_and_stores_nothing() {
    let fx = Fixture::new();
    let src = fx.src_dir();
    let named_badly = fx.source("RECOVERYHISTORY", 0);
    let directory = src.join(SEG2);
    fs::create_dir(&directory).unwrap();
    let fifo = src.join(SEG3);
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let target = fx.source_in("elsewhere", SEG1, 0);
    let link = src.join(SEG1);
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let cases = [
        (&named_badly, "not a WAL file name"),
        (&directory, "a directory, not a WAL file"),
        (&fifo, "a fifo, not a WAL file"),
        (&link, "a symbolic link, not a WAL file"),
    ];
    for direct in [false, true] {
        for (path, cause) in cases {
            let mut args = vec![path.as_os_str()];
            if direct {
                args.insert(0, OsStr::new("--direct"));
            }
            let run = fx.archive_command(args);
            let what = format!("direct={direct} {}", path.display());
            assert_eq!(run.code, 65, "{what}: {run:?}");
            let line = one_line(&run.stderr);
            assert!(
                line.contains(&path.display().to_string()) && line.ends_with(cause),
                "{what}: {line:?}"
            );
            assert_eq!(run.stdout, "", "{what}");
        }
    }
    assert_eq!(
        dir_names(&fx.incoming()),
        Vec::<String>::new(),
        "nothing queued"
    );
    let stored: Vec<String> = dir_names(&fx.wals())
        .into_iter()
        .filter(|name| !name.starts_with('.'))
        .collect();
    assert!(
        stored.iter().all(|name| !name.starts_with('0')),
        "nothing archived: {stored:?}"
    );
    assert_eq!(
        dir_names(&fx.errors()),
        Vec::<String>::new(),
        "nothing moved"
    );
    assert!(named_badly.is_file() && directory.is_dir() && link.is_symlink() && fifo.exists());
    assert_eq!(
        dir_names(&src),
        ["000000010000000000000001", SEG2, SEG3, "RECOVERYHISTORY"],
        "nothing left beside the sources"
    );
}

/// Issue 11: a `%p` under a WAL name that does not have the shape of WAL for that name
/// (truncated, another segment's bytes) fails with 65 in one line naming the file and
/// the cause: nothing is queued or stored, the source is left as it was, and PostgreSQL
/// keeps the WAL.
#[test]
fn a_wal_path_without_the_shape_of_wal_fails_with_65() {
    let fx = Fixture::new();
    let truncated = fx.source(SEG1, 0);
    let bytes = fs::read(&truncated).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    set_mtime(&truncated, mtime_for(0));
    // Fixture 2 is segment 3: its bytes under the name of segment 2.
    let renamed = fx.source(SEG2, 2);
    let cases = [
        (&truncated, "is not the segment size 16777216 of its header"),
        (&renamed, "does not match the name (expected 0/2000000)"),
    ];
    for direct in [false, true] {
        for (path, cause) in cases {
            let before = snapshot(path);
            let mut args = vec![path.as_os_str()];
            if direct {
                args.insert(0, OsStr::new("--direct"));
            }
            let run = fx.archive_command(args);
            let what = format!("direct={direct} {}", path.display());
            assert_eq!(run.code, 65, "{what}: {run:?}");
            let line = one_line(&run.stderr);
            assert!(
                line.contains(&path.display().to_string()) && line.ends_with(cause),
                "{what}: {line:?}"
            );
            assert_same_file(path, &before, &what);
        }
    }
    assert_eq!(dir_names(&fx.incoming()), Vec::<String>::new());
    assert!(!fx.wals().join(HASH).exists(), "nothing archived");
    assert_eq!(dir_names(&fx.errors()), Vec::<String>::new());
    assert_eq!(dir_names(&fx.src_dir()), [SEG1, SEG2]);
}

/// `--no-header-check` (the wrapper exports `WALPIPE_NO_HEADER_CHECK=1` to its stages)
/// takes a `%p` by its name alone, as before issue 11: a truncated segment is queued as
/// it is.
#[test]
fn no_header_check_queues_a_wal_path_by_its_name_alone() {
    let fx = Fixture::new();
    let truncated = fx.source(SEG1, 0);
    let bytes = fs::read(&truncated).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    set_mtime(&truncated, mtime_for(0));
    let before = snapshot(&truncated);
    assert_eq!(fx.archive_command([&truncated]).code, 65, "checked");
    let run = fx.archive_command([OsStr::new("--no-header-check"), truncated.as_os_str()]);
    assert_exit_0(&run, "--no-header-check");
    assert_same_file(&fx.incoming().join(SEG1), &before, "queued copy");
    assert_same_file(&truncated, &before, "source");
}

/// Issue 11: a malformed `--endpoint-url` (or archive URL) panicked inside the object-store
/// client, or was dropped and the segment sent, signed, to the provider's own endpoint.
/// With `--direct` it is now a configuration error (78), one line naming the setting and
/// the value without its credentials, found before any work or request.
#[test]
fn direct_to_a_cloud_archive_refuses_a_malformed_endpoint_or_url_with_78() {
    let fx = Fixture::new();
    let source = fx.source(SEG1, 0);
    let temp = fx.dir.path().join("temp");
    let secret = "s3cr3t-never-printed";
    let cases: [(&str, &str, String); 5] = [
        (
            "s3://wals/p",
            "localhost:9000",
            "--endpoint-url \"localhost:9000\": ".into(),
        ),
        (
            "gs://wals/p",
            "http://bad host",
            "--endpoint-url \"http://bad host\": ".into(),
        ),
        (
            "az://wals/p",
            "127.0.0.1:10000",
            "--endpoint-url \"127.0.0.1:10000\": ".into(),
        ),
        (
            "s3://wals/p",
            "http://key:s3cr3t-never-printed@127.0.0.1:9",
            "--endpoint-url \"http://…@127.0.0.1:9\": ".into(),
        ),
        (
            "s3://",
            "http://127.0.0.1:9",
            "--archive \"s3://\": ".into(),
        ),
    ];
    for (archive, endpoint, says) in cases {
        let mut cmd = wrapper("archive-command");
        // clean_cloud_command drops the WALPIPE_BIN_DIR the wrapper was given: give it
        // back, or the script would pick whatever build lies next to it.
        walpipe_tests::clean_cloud_command(&mut cmd);
        cmd.env("WALPIPE_BIN_DIR", walpipe_tests::wrappers::bin_dir())
            .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_REGION", "us-east-1")
            .args(["--direct", "--server", SERVER, "--archive", archive])
            .args(["--endpoint-url", endpoint, "--timeout", "2"])
            .arg("--temp-dir")
            .arg(&temp)
            .arg(&source);
        let run = run_cmd(&mut cmd);
        assert_eq!(run.code, 78, "{archive} {endpoint}: {run:?}");
        let line = one_line(&run.stderr);
        assert!(line.contains(&says), "{archive} {endpoint}: {line:?}");
        assert!(!line.contains(secret), "{line:?}");
        assert!(!line.contains("panicked"), "{line:?}");
        assert_eq!(
            dir_names(&temp),
            Vec::<String>::new(),
            "no work done: {archive}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// archive-command --direct: straight into the archive
// ---------------------------------------------------------------------------------------

#[test]
fn direct_zstd_stores_the_compressed_wal_and_catalogues_it() {
    let fx = Fixture::new();
    let source = fx.source(SEG1, 0);
    let before = snapshot(&source);

    let run = fx.archive_command([
        OsStr::new("--direct"),
        OsStr::new("--compression"),
        OsStr::new("zstd"),
        source.as_os_str(),
    ]);
    assert_exit_0(&run, "direct delivery");
    assert_eq!(run.stdout, "");

    let stored = fx.wals().join(HASH).join(SEG1);
    let stored_bytes = fs::read(&stored).unwrap();
    assert_eq!(stored_bytes[..4], ZSTD_MAGIC, "stored compressed");
    assert!(stored_bytes.len() < before.0.len(), "and smaller");
    assert!(
        zstd_decompress(&stored) == before.0,
        "decompresses to the source"
    );

    let entries = fx.xlogdb();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.name, SEG1);
    assert_eq!(entry.size, stored_bytes.len() as u64, "the stored size");
    assert_eq!(entry.compression.as_deref(), Some("zstd"));
    assert_eq!(entry.encryption, None);
    assert_close(entry.time, seconds(before.1), "time = source mtime");

    assert_same_file(&source, &before, "source");
    assert_eq!(
        dir_names(&fx.wals()),
        [HASH, "pg-xlog.db"],
        "no temp in the archive root"
    );
    assert_eq!(dir_names(&fx.wals().join(HASH)), [SEG1]);
    assert_eq!(
        dir_names(&fx.src_dir()),
        [SEG1],
        "no temp next to the source"
    );
    assert_eq!(dir_names(&fx.incoming()), Vec::<String>::new());
}

#[test]
fn direct_redelivery_is_accepted_and_catalogued_once() {
    let fx = Fixture::new();
    let source = fx.source(SEG1, 0);
    let before = snapshot(&source);
    assert_exit_0(
        &fx.archive_command([OsStr::new("--direct"), source.as_os_str()]),
        "first",
    );
    let stored = fx.wals().join(HASH).join(SEG1);
    let stored_before = snapshot(&stored);
    let xlogdb_before = fx.xlogdb();

    let run = fx.archive_command([OsStr::new("--direct"), source.as_os_str()]);
    assert_exit_0(&run, "re-delivery");
    assert_eq!(fx.xlogdb(), xlogdb_before, "still one line");
    assert_eq!(xlogdb_before.len(), 1);
    assert_same_file(&stored, &stored_before, "stored file");
    assert_same_file(&source, &before, "source");
    assert_eq!(dir_names(&fx.wals()), [HASH, "pg-xlog.db"]);
}

/// A primary and its standby with `archive_mode = always` can hand one WAL to one archive
/// at the same moment: `--direct` calls with no lock in common, writing their copies into
/// the archive's root. Each call's copies have names no other call makes, and a copy is
/// swept only once the call that made it is over, so no call stores another's
/// half-written copy or loses its own: every call succeeds, every WAL is stored once,
/// restores to the source, is catalogued once with its stored size, and nothing is left
/// in the root.
fn concurrent_direct_calls_for_one_wal(encryption: &[&OsStr]) {
    let fx = Fixture::new();
    let call = |source: &Path| {
        let mut cmd = wrapper("archive-command");
        cmd.arg("--home")
            .arg(fx.home())
            .args(["--server", SERVER, "--direct"])
            .args(encryption)
            .arg(source);
        cmd
    };
    // Copies of calls on other hosts, one named after a pid that is nobody's here
    // (pid_max is at most 2^22): young, so possibly on their way to being stored: kept.
    fs::create_dir_all(fx.wals()).unwrap();
    let elsewhere = [
        fx.wals().join(format!(".{SEG3}.4999999-0badf00d.gpg")),
        fx.wals().join(format!(".{SEG3}.1-0badf00d.compressed")),
    ];
    for copy in &elsewhere {
        fs::write(copy, b"half a copy").unwrap();
    }
    // The fixtures' own names: a copy must pass the header check for its name.
    let names: Vec<String> = wal_fixture_segments()[..5]
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for (fixture, name) in names.iter().enumerate() {
        let sources: Vec<PathBuf> = ["primary", "standby", "by-hand"]
            .iter()
            .map(|caller| fx.source_in(caller, name, fixture))
            .collect();
        let runs: Vec<Run> = std::thread::scope(|scope| {
            let calls: Vec<_> = sources
                .iter()
                .map(|source| scope.spawn(|| run_cmd(&mut call(source))))
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        for run in &runs {
            assert_exit_0(run, &format!("{name}: one of three concurrent calls"));
        }
    }
    let entries = fx.xlogdb();
    assert_eq!(
        entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        names,
        "each WAL catalogued once"
    );
    let restored = fx.dir.path().join("restored");
    for (fixture, entry) in entries.iter().enumerate() {
        let stored = fx.wals().join(HASH).join(&entry.name);
        assert_eq!(
            entry.size,
            fs::metadata(&stored).unwrap().len(),
            "{entry:?}"
        );
        let run = run_cmd(
            wrapper("restore-wal")
                .arg("--home")
                .arg(fx.home())
                .args(["--server", SERVER])
                .args(encryption)
                .arg(&entry.name)
                .arg(&restored),
        );
        assert_exit_0(&run, "restore");
        assert!(
            fs::read(&restored).unwrap() == fs::read(&wal_fixture_segments()[fixture]).unwrap(),
            "{}: stored whole",
            entry.name
        );
        fs::remove_file(&restored).unwrap();
    }
    for copy in &elsewhere {
        assert_eq!(
            fs::read(copy).unwrap(),
            b"half a copy",
            "another host's copy is kept"
        );
        fs::remove_file(copy).unwrap();
    }
    assert_eq!(
        dir_names(&fx.wals()),
        [HASH, "pg-xlog.db"],
        "no copy left in the archive root"
    );
    assert_eq!(dir_names(&fx.wals().join(HASH)), names);
}

#[test]
fn concurrent_direct_calls_for_one_wal_store_it_once_and_leave_nothing() {
    concurrent_direct_calls_for_one_wal(&[]);
}

#[test]
fn concurrent_encrypted_direct_calls_for_one_wal_store_it_once_and_leave_nothing() {
    let passphrase = tempfile::NamedTempFile::new().unwrap();
    fs::write(passphrase.path(), "the archive's passphrase\n").unwrap();
    concurrent_direct_calls_for_one_wal(&[
        OsStr::new("--passphrase-file"),
        passphrase.path().as_os_str(),
    ]);
}

#[test]
fn direct_refuses_a_different_file_and_moves_nothing() {
    let fx = Fixture::new();
    let first = fx.source(SEG1, 0);
    assert_exit_0(
        &fx.archive_command([OsStr::new("--direct"), first.as_os_str()]),
        "first",
    );
    let stored = fx.wals().join(HASH).join(SEG1);
    let stored_before = snapshot(&stored);
    let xlogdb_before = fx.xlogdb();

    let other = fx.other_source_in("other", SEG1, 1);
    let other_before = snapshot(&other);
    let run = fx.archive_command([OsStr::new("--direct"), other.as_os_str()]);
    assert_retryable_failure(&run, "different content");
    assert!(one_line(&run.stderr).contains(SEG1), "{run:?}");
    assert!(
        run.stderr.contains("different content"),
        "a conflict: {run:?}"
    );

    assert_same_file(&stored, &stored_before, "stored file");
    assert_eq!(fx.xlogdb(), xlogdb_before);
    assert_same_file(&other, &other_before, "refused source stays in pg_wal");
    assert_eq!(dir_names(other.parent().unwrap()), [SEG1]);
    assert_eq!(
        dir_names(&fx.errors()),
        Vec::<String>::new(),
        "nothing moved"
    );
    assert_eq!(
        dir_names(&fx.wals()),
        [HASH, "pg-xlog.db"],
        "no temp left in the archive root"
    );
    assert_eq!(dir_names(&fx.wals().join(HASH)), [SEG1]);
}

#[test]
fn direct_places_history_and_backup_files_where_barman_does() {
    let fx = Fixture::new();
    let history = fx.src_dir().join("00000002.history");
    fs::write(&history, "1\t0/3000000\tno recovery target specified\n").unwrap();
    let backup = fx.src_dir().join(format!("{SEG2}.00000028.backup"));
    fs::write(
        &backup,
        "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
         STOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\n\
         CHECKPOINT LOCATION: 0/2000060\n\
         BACKUP METHOD: streamed\n\
         BACKUP FROM: primary\n\
         START TIME: 2023-11-14 22:13:20 UTC\n\
         LABEL: pg_basebackup base backup\n\
         START TIMELINE: 1\n",
    )
    .unwrap();
    for path in [&history, &backup] {
        let run = fx.archive_command([OsStr::new("--direct"), path.as_os_str()]);
        assert_exit_0(&run, &path.display().to_string());
    }
    assert!(zstd_decompress(&fx.wals().join("00000002.history")) == fs::read(&history).unwrap());
    let stored_backup = fx.wals().join(HASH).join(format!("{SEG2}.00000028.backup"));
    assert!(zstd_decompress(&stored_backup) == fs::read(&backup).unwrap());
    let names: Vec<String> = fx.xlogdb().into_iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        ["00000002.history", &format!("{SEG2}.00000028.backup")]
    );
    assert_eq!(
        dir_names(&fx.wals()),
        [HASH, "00000002.history", "pg-xlog.db"]
    );
}

#[test]
fn direct_without_compression_stores_the_raw_wal() {
    let fx = Fixture::new();
    let source = fx.source(SEG1, 0);
    let before = snapshot(&source);
    let run = fx.archive_command([
        OsStr::new("--direct"),
        OsStr::new("--compression"),
        OsStr::new("none"),
        source.as_os_str(),
    ]);
    assert_exit_0(&run, "direct, none");
    assert_same_file(&fx.wals().join(HASH).join(SEG1), &before, "raw copy");
    let entries = fx.xlogdb();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].compression, None);
    assert_eq!(entries[0].size, before.0.len() as u64);
    assert_same_file(&source, &before, "source");
}

// ---------------------------------------------------------------------------------------
// archive-command: configuration and usage
// ---------------------------------------------------------------------------------------

/// An unusable config file is a configuration error (78), said in one line that names
/// the line and never shows its value; nothing is made.
fn an_unusable_config_file_is_refused(fx: &Fixture, s1: &Path) {
    let home_c = fx.dir.path().join("c");
    for (text, why) in [
        (
            format!("WALPIPE_HOME=\"{}\nWALPIPE_SERVER=pg\n", home_c.display()),
            "a stray quote (systemd would read the rest of the file into it)",
        ),
        (
            format!("WALPIPE_HOME={}\nWALPIPE_BIN_DIR=/tmp\n", home_c.display()),
            "which binaries run is not a setting",
        ),
        (
            format!("HOME={}\nWALPIPE_SERVER=pg\n", home_c.display()),
            "not a WALPIPE_ setting",
        ),
        (
            format!(
                "WALPIPE_HOME=\"{}\"\nWALPIPE_SERVER=p\\g\n",
                home_c.display()
            ),
            "a backslash, which systemd reads as an escape",
        ),
    ] {
        let bad = fx.dir.path().join("bad.conf");
        fs::write(&bad, text).unwrap();
        let run = run_script(
            "archive-command",
            [OsStr::new("--config"), bad.as_os_str(), s1.as_os_str()],
        );
        assert_eq!(run.code, 78, "{why}: {run:?}");
        assert!(
            one_line(&run.stderr).contains("bad.conf line "),
            "{why}: {run:?}"
        );
        // The line is named by its number, never shown: a value may be a secret.
        let shown = &run.stderr;
        assert!(
            !shown.contains(&home_c.display().to_string()),
            "{why}: {run:?}"
        );
        assert!(!home_c.exists(), "{why}");
    }
    let missing = fx.dir.path().join("missing.conf");
    let run = run_script(
        "archive-command",
        [OsStr::new("--config"), missing.as_os_str(), s1.as_os_str()],
    );
    assert_eq!(run.code, 78, "{run:?}");
}

#[test]
fn config_file_sets_home_and_server_and_flags_override_it() {
    let fx = Fixture::new();
    let home_a = fx.dir.path().join("a");
    let home_b = fx.dir.path().join("b");
    let config = fx.dir.path().join("walpipe.conf");
    fs::write(
        &config,
        format!(
            // Read as systemd's EnvironmentFile reads it: blanks around the name and
            // the value are no part of them.
            "# walpipe settings\n\n  WALPIPE_HOME = {}  \nWALPIPE_SERVER=\"main\"\n; too\n",
            home_a.display()
        ),
    )
    .unwrap();
    let s1 = fx.source(SEG1, 0);
    let s2 = fx.source(SEG2, 1);
    let s3 = fx.source(SEG3, 2);

    let run = run_script(
        "archive-command",
        [OsStr::new("--config"), config.as_os_str(), s1.as_os_str()],
    );
    assert_exit_0(&run, "config only");
    assert_eq!(dir_names(&home_a.join("main/incoming")), [SEG1]);

    // A flag after --config wins over the file.
    let run = run_cmd(
        wrapper("archive-command")
            .arg("--config")
            .arg(&config)
            .arg("--home")
            .arg(&home_b)
            .arg(&s2),
    );
    assert_exit_0(&run, "--home overrides");
    assert_eq!(dir_names(&home_b.join("main/incoming")), [SEG2]);
    assert_eq!(dir_names(&home_a.join("main/incoming")), [SEG1]);

    // So does one before it (--config=FILE form).
    let run = run_cmd(
        wrapper("archive-command")
            .args(["--server", "other"])
            .arg(format!("--config={}", config.display()))
            .arg(&s3),
    );
    assert_exit_0(&run, "--server overrides");
    assert_eq!(dir_names(&home_a.join("other/incoming")), [SEG3]);
    assert_eq!(dir_names(&home_a.join("main/incoming")), [SEG1]);

    // The file can switch to direct mode.
    let direct = fx.dir.path().join("direct.conf");
    fs::write(
        &direct,
        format!(
            "WALPIPE_HOME='{}'\nWALPIPE_SERVER=pg\nWALPIPE_DIRECT=1\n",
            fx.home().display()
        ),
    )
    .unwrap();
    let run = run_script(
        "archive-command",
        [OsStr::new("--config"), direct.as_os_str(), s1.as_os_str()],
    );
    assert_exit_0(&run, "direct from the config");
    let stored = fx.wals().join(HASH).join(SEG1);
    assert!(zstd_decompress(&stored) == fs::read(&s1).unwrap());

    an_unusable_config_file_is_refused(&fx, &s1);
}

#[test]
fn without_a_home_the_queues_sit_beside_the_archive() {
    let fx = Fixture::new();
    let base = fx.dir.path().join("b");
    let wals = base.join("wals");
    let source = fx.source(SEG1, 0);
    let before = snapshot(&source);

    let run = run_cmd(
        wrapper("archive-command")
            .arg("--archive")
            .arg(&wals)
            .args(["--server", SERVER])
            .arg(&source),
    );
    assert_exit_0(&run, "archive-command --archive");
    assert_same_file(&base.join("incoming").join(SEG1), &before, "queued copy");

    let run = run_cmd(
        wrapper("archive-wal")
            .arg("--archive")
            .arg(&wals)
            .args(["--server", SERVER]),
    );
    assert_exit_0(&run, "archive-wal --archive");
    assert_eq!(run.stdout_lines(), [HEADER, &format!("\t{SEG1}")]);
    assert!(zstd_decompress(&wals.join(HASH).join(SEG1)) == before.0);
    let names: Vec<String> = read_xlogdb(&wals.join("pg-xlog.db"))
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, [SEG1]);
    assert_eq!(dir_names(&base.join("incoming")), Vec::<String>::new());
}

#[test]
fn bad_usage_exits_64_and_touches_nothing() {
    let fx = Fixture::new();
    let source = fx.source(SEG1, 0);
    let home = fx.home();
    let (h, s) = (home.to_str().unwrap(), source.to_str().unwrap());
    let cases: Vec<Vec<&str>> = vec![
        vec!["--bogus", "--home", h, "--server", "pg", s],
        vec!["--home", h, "--server", "pg"],
        vec!["--home", h, "--server", "pg", s, s],
        vec!["--server", "pg", s],
        vec!["--home", h, s],
        vec!["--home", h, "--server", "pg", "--compression"],
        vec!["--home", h, "--server", "pg", s, "--home"],
        vec!["--home", h, "--server", "pg", s, "--config"],
        vec![
            "--home",
            h,
            "--server",
            "pg",
            "--direct",
            "--compression",
            "bogus",
            s,
        ],
    ];
    for args in cases {
        let run = run_script("archive-command", &args);
        assert_eq!(run.code, 64, "{args:?}: {run:?}");
        assert!(!run.stderr.trim().is_empty(), "{args:?}: says why");
        assert!(!home.exists(), "{args:?} created {}", home.display());
    }
    let run = run_script("archive-wal", ["--home", h, "--server", "pg", "--bogus"]);
    assert_eq!(run.code, 64, "{run:?}");
    let run = run_script("archive-wal", ["--home", h, "--server", "pg", "--config"]);
    assert_eq!(run.code, 64, "{run:?}");
    let run = run_script(
        "archive-wal",
        ["--home", h, "--server", "pg", "--compression", "bogus"],
    );
    assert_eq!(run.code, 64, "{run:?}");
    assert_eq!(run.stdout, "", "refused before doing anything");
    assert!(!home.exists());
}

// ---------------------------------------------------------------------------------------
// archive-wal without PostgreSQL
// ---------------------------------------------------------------------------------------

const HISTORY: &str = "00000002.history";
const HISTORY_TEXT: &str = "1\t0/3000000\tno recovery target specified\n";

/// incoming/: three real segments, a history file, an unknown file and a `.tmp`.
fn fill_queue(fx: &Fixture) -> BTreeMap<String, Vec<u8>> {
    let mut originals = BTreeMap::new();
    for (i, name) in [SEG1, SEG2, SEG3].into_iter().enumerate() {
        let path = fx.source_in("home/pg/incoming", name, i);
        originals.insert(name.to_owned(), fs::read(path).unwrap());
    }
    fs::write(fx.incoming().join(HISTORY), HISTORY_TEXT).unwrap();
    originals.insert(HISTORY.to_owned(), HISTORY_TEXT.as_bytes().to_vec());
    fs::write(fx.incoming().join("junkfile"), "not WAL\n").unwrap();
    fs::write(
        fx.incoming().join("000000010000000000000009.tmp"),
        "half a copy",
    )
    .unwrap();
    originals
}

#[test]
fn archive_wal_archives_the_queue_with_barman_lines() {
    let fx = Fixture::new();
    let originals = fill_queue(&fx);

    let run = fx.archive_wal(Vec::<&str>::new());
    assert_exit_0(&run, "archive-wal");
    assert_eq!(
        run.stdout_lines(),
        [
            HEADER,
            &format!("\t{SEG1}"),
            &format!("\t{SEG2}"),
            &format!("\t{SEG3}"),
            &format!("\t{HISTORY}"),
            "Some unknown objects have been found while processing xlog segments for pg. \
             Objects moved to errors directory:",
            "\tjunkfile",
        ]
    );

    // Barman's places, zstd, byte-identical once decompressed, catalogued once each.
    let entries = fx.xlogdb();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, [SEG1, SEG2, SEG3, HISTORY]);
    for entry in &entries {
        let stored = archived_path(&fx.wals(), &entry.name);
        assert!(
            zstd_decompress(&stored) == originals[&entry.name],
            "{}",
            entry.name
        );
        assert_eq!(entry.size, fs::metadata(&stored).unwrap().len());
        assert_eq!(entry.compression.as_deref(), Some("zstd"));
        assert_eq!(entry.encryption, None);
    }
    assert_close(entries[0].time, seconds(mtime_for(0)), "time = queue mtime");
    assert_close(entries[2].time, seconds(mtime_for(2)), "time = queue mtime");
    assert_eq!(dir_names(&fx.wals()), [HASH, HISTORY, "pg-xlog.db"]);
    assert_eq!(dir_names(&fx.wals().join(HASH)), [SEG1, SEG2, SEG3]);

    // The unknown file is quarantined with its content; the .tmp is left alone.
    let errors = dir_names(&fx.errors());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("junkfile.") && errors[0].ends_with(".unknown"),
        "{errors:?}"
    );
    assert_eq!(
        fs::read_to_string(fx.errors().join(&errors[0])).unwrap(),
        "not WAL\n"
    );
    assert_eq!(dir_names(&fx.incoming()), ["000000010000000000000009.tmp"]);
}

#[test]
fn archive_wal_moves_a_conflicting_wal_to_errors_with_barman_lines() {
    let fx = Fixture::new();
    let first = fx.source_in("home/pg/incoming", SEG1, 0);
    let first_bytes = fs::read(&first).unwrap();
    assert_exit_0(&fx.archive_wal(Vec::<&str>::new()), "first run");
    let stored = archived_path(&fx.wals(), SEG1);
    let stored_before = snapshot(&stored);

    // The same name with other content, then a new segment: the batch goes on.
    let other = fx.other_source_in("home/pg/incoming", SEG1, 1);
    let other_bytes = fs::read(&other).unwrap();
    fx.source_in("home/pg/incoming", SEG2, 1);
    let run = fx.archive_wal(Vec::<&str>::new());
    assert_eq!(run.code, 1, "a failed record is reported: {run:?}");
    assert_eq!(
        run.stdout_lines(),
        [
            HEADER,
            &format!("\t{SEG1}"),
            &format!(
                "\tError: {SEG1} is already present in server pg. File moved to errors directory."
            ),
            &format!("\t{SEG2}"),
        ],
        "Barman's lines only; diagnostics stay on stderr"
    );
    assert!(run.stderr.contains(SEG1), "{run:?}");

    assert_same_file(&stored, &stored_before, "archived copy");
    assert!(zstd_decompress(&stored) == first_bytes);
    let errors = dir_names(&fx.errors());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!("{SEG1}.")) && errors[0].ends_with(".duplicate"),
        "{errors:?}"
    );
    assert!(fs::read(fx.errors().join(&errors[0])).unwrap() == other_bytes);
    let names: Vec<String> = fx.xlogdb().into_iter().map(|e| e.name).collect();
    assert_eq!(names, [SEG1, SEG2]);
    assert_eq!(dir_names(&fx.incoming()), Vec::<String>::new());
}

#[test]
fn archive_wal_with_empty_queues_says_no_file_found() {
    let fx = Fixture::new();
    fs::create_dir_all(fx.incoming()).unwrap();
    let run = fx.archive_wal(Vec::<&str>::new());
    assert_exit_0(&run, "empty incoming");
    assert_eq!(run.stdout, format!("{HEADER}\n\tno file found\n"));

    // With a streaming queue too, streaming comes first (Barman's order).
    fs::create_dir_all(fx.server_dir().join("streaming")).unwrap();
    let run = fx.archive_wal(Vec::<&str>::new());
    assert_exit_0(&run, "empty queues");
    assert_eq!(
        run.stdout,
        format!(
            "Processing xlog segments from streaming for pg\n\tno file found\n\
             {HEADER}\n\tno file found\n"
        )
    );
    assert!(fx.xlogdb().is_empty());
}

/// Holds `path` locked with flock(1) until dropped (stdin closed: its shell exits).
struct HeldLock {
    child: std::process::Child,
}

impl HeldLock {
    fn hold(path: &Path) -> Self {
        // -o: the lock stays with flock itself, not with the shell it runs.
        let mut child = Command::new("flock")
            .arg("-o")
            .arg(path)
            .args(["-c", "echo held; read -r _"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the flock CLI (util-linux)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "held\n", "flock took {}", path.display());
        HeldLock { child }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = self.child.wait();
    }
}

#[test]
fn a_second_archive_wal_skips_while_the_lock_is_held() {
    let fx = Fixture::new();
    let source = fx.source_in("home/pg/incoming", SEG1, 0);
    let lock = HeldLock::hold(&fx.home().join(".pg-archive-wal.lock"));

    let run = fx.archive_wal(Vec::<&str>::new());
    assert_exit_0(&run, "busy");
    assert_eq!(
        run.stdout,
        "Another archive-wal process is already running on server pg. \
         Skipping to the next server\n"
    );
    assert!(source.exists(), "the queue is left alone");
    assert!(!fx.wals().exists(), "nothing archived");

    drop(lock);
    let run = fx.archive_wal(Vec::<&str>::new());
    assert_exit_0(&run, "free again");
    assert_eq!(run.stdout_lines(), [HEADER, &format!("\t{SEG1}")]);
    assert!(!source.exists());
}

#[test]
fn records_file_receives_the_final_records() {
    let fx = Fixture::new();
    let originals = fill_queue(&fx);
    let records_path = fx.dir.path().join("records.ndjson");
    let run = fx.archive_wal([OsStr::new("--records"), records_path.as_os_str()]);
    assert_exit_0(&run, "archive-wal --records");

    let text = fs::read_to_string(&records_path).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let by_name: BTreeMap<&str, &Value> = records
        .iter()
        .map(|r| (r["name"].as_str().expect("a name"), r))
        .collect();
    for name in originals.keys() {
        let record = by_name
            .get(name.as_str())
            .unwrap_or_else(|| panic!("no record for {name}: {text}"));
        assert_eq!(record["outcome"], "stored", "{record}");
        assert_eq!(record["compression"], "zstd", "{record}");
        assert_eq!(
            Path::new(record["stored_at"].as_str().unwrap()),
            archived_path(&fx.wals(), name),
            "{record}"
        );
        assert_eq!(
            record["source"].as_str().unwrap(),
            fx.incoming().join(name).to_str().unwrap()
        );
    }
    let junk = records
        .iter()
        .find(|r| {
            r["source"]
                .as_str()
                .is_some_and(|s| s.ends_with("junkfile"))
        })
        .unwrap_or_else(|| panic!("no record for the unknown file: {text}"));
    assert_eq!(junk["outcome"], "unknown", "{junk}");
    assert_eq!(records.len(), originals.len() + 1, "{text}");
}

#[test]
fn compression_none_stores_raw_files() {
    let fx = Fixture::new();
    let originals = fill_queue(&fx);
    let run = fx.archive_wal(["--compression", "none"]);
    assert_exit_0(&run, "archive-wal --compression none");
    let entries = fx.xlogdb();
    assert_eq!(entries.len(), originals.len());
    for entry in entries {
        let stored = archived_path(&fx.wals(), &entry.name);
        let bytes = fs::read(&stored).unwrap();
        assert!(bytes == originals[&entry.name], "{} raw", entry.name);
        assert_eq!(entry.compression, None, "{entry:?}");
        assert_eq!(entry.size, bytes.len() as u64);
    }
}

/// `wal-store layout --shell` with `ARGS…`, as the wrappers run it.
fn layout_of(args: &[&OsStr]) -> String {
    let out = Command::new(walpipe_tests::paths::target_bin("wal-store"))
        .arg("layout")
        .arg("--shell")
        .args(args)
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// One resolver places everything: an archive given as `<home>/<server>/wals` is the
/// layout `--home` gives, and the wrapper, run either way, takes its locks, reads its
/// queue and keeps its catalogue where wal-store alone does (a lock in another place
/// would not exclude the other tool).
#[test]
fn the_wrappers_and_the_stages_place_everything_alike() {
    let fx = Fixture::new();
    let home = fx.home();
    let wals = fx.wals();
    let by_home = layout_of(&["--home".as_ref(), home.as_os_str(), "--server=pg".as_ref()]);
    let by_archive = layout_of(&[
        "--archive".as_ref(),
        wals.as_os_str(),
        "--server=pg".as_ref(),
    ]);
    assert_eq!(by_home, by_archive);
    assert!(
        by_home.contains(&format!("LOCK_DIR='{}'\n", home.display())),
        "{by_home}"
    );

    let source = fx.source_in("home/pg/incoming", SEG1, 0);
    let run = run_cmd(
        wrapper("archive-wal")
            .arg("--archive")
            .arg(&wals)
            .args(["--server", SERVER]),
    );
    assert_exit_0(&run, "archive-wal --archive <home>/pg/wals");
    assert!(!source.exists(), "the queue beside the archive was read");
    assert!(archived_path(&wals, SEG1).is_file());
    assert_eq!(fx.xlogdb().len(), 1);
    for lock in [".pg-archive-wal.lock", ".pg-xlogdb.lock"] {
        assert!(home.join(lock).is_file(), "{lock} not in the home");
        assert!(!wals.join(lock).exists(), "{lock} in the archive");
    }
}

/// A setting that is set but empty (a config file's `WALPIPE_ERRORS_DIR=`, an exported
/// empty variable) is no setting: the default holds, for the wrapper and its stages.
#[test]
fn an_empty_layout_setting_is_no_setting() {
    let fx = Fixture::new();
    let source = fx.source_in("home/pg/incoming", SEG1, 0);
    let run = run_cmd(
        wrapper("archive-wal")
            .arg("--home")
            .arg(fx.home())
            .args(["--server", SERVER])
            .env("WALPIPE_ERRORS_DIR", "")
            .env("WALPIPE_STREAMING", "")
            .env("WALPIPE_XLOGDB", ""),
    );
    assert_exit_0(&run, "empty settings");
    assert!(!source.exists());
    assert_eq!(fx.xlogdb().len(), 1);
}
