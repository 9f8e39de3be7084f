//! Restore: `scripts/restore-wal` as PostgreSQL's restore_command.
//!
//! With a real PostgreSQL 15, point-in-time recovery to a named restore point must give
//! back exactly the state recorded there (pgbench's balances, row counts and a digest of
//! its history table):
//! * from a walpipe archive (archive-command into incoming, then archive-wal, zstd), with
//!   and without `--prefetch 4`;
//! * from an archive written by Barman 3.19 itself (`barman archive-wal`, zstd), Barman
//!   installed from PyPI into a virtualenv cached under `<cache>/barman-venv`.
//!
//! Without a server, on real and synthetic segments: missing files answer 66 without a
//! word on stderr; a corrupt archived file fails with one clear line and leaves nothing at
//! %p; restore-wal killed (SIGKILL to its process group, prefetch workers included) at
//! random moments never leaves a partial file at %p or in the spool; the spool stays
//! bounded and is cleaned; `--partial`, files still in a queue and uncompressed archives.
//!
//! Needs `cargo build --workspace --bins` first, PostgreSQL 15, the `zstd` CLI, and for the
//! Barman test python3 with venv and access to PyPI (scripts/install-test-deps).

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use walpipe_tests::pitr::{LOAD_ROUNDS, Primary, reference_copy};
use walpipe_tests::spool::{wait_for_workers, workers_idle_within};
use walpipe_tests::wrappers::{
    archived_path, assert_success, bin_dir, dir_names, queue_archive_command, wrapper,
    wrapper_as_postgres,
};
use walpipe_tests::{
    Gpg, WorkDir, clean_command, running_as_root, script, wal_fixture_files, wal_segment,
};

const SERVER: &str = "pg";

/// How long prefetch workers may take to let go of the spool.
const WORKERS_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Helpers without a server

/// A walpipe home `<dir>/home` (server `pg`) and a pg_wal-like directory `<dir>/pg_wal`.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("wpt-restore.")
            .tempdir_in("/tmp")
            .unwrap();
        for sub in ["home/pg/incoming", "pg_wal", "spool"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Home { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn wals(&self) -> PathBuf {
        self.home().join("pg/wals")
    }

    fn incoming(&self) -> PathBuf {
        self.home().join("pg/incoming")
    }

    fn pg_wal(&self) -> PathBuf {
        self.dir.path().join("pg_wal")
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// Queues `files` (name, content) and archives them with archive-wal.
    fn archive(&self, files: &[(String, Vec<u8>)], compression: &str) {
        for (name, bytes) in files {
            fs::write(self.incoming().join(name), bytes).unwrap();
        }
        let out = wrapper("archive-wal")
            .arg("--home")
            .arg(self.home())
            .args(["--server", SERVER, "--compression", compression])
            .output()
            .unwrap();
        assert_success(&out, "archive-wal");
    }

    /// `restore-wal --home H --server pg EXTRA... NAME DEST`.
    fn restore(&self, extra: &[&str], name: &str, dest: &Path) -> Output {
        self.restore_command(extra, name, dest).output().unwrap()
    }

    fn restore_command(&self, extra: &[&str], name: &str, dest: &Path) -> Command {
        let mut cmd = wrapper("restore-wal");
        cmd.arg("--home")
            .arg(self.home())
            .args(["--server", SERVER])
            .args(extra)
            .arg(name)
            .arg(dest);
        cmd
    }
}

impl Drop for Home {
    /// Prefetch workers outlive the calls that started them: let them finish before the
    /// directory goes (a worker starts a moment after its call returns, hence the pause).
    fn drop(&mut self) {
        thread::sleep(Duration::from_millis(100));
        // Never panic here: a test that failed is unwinding through this.
        let _ = workers_idle_within(&self.spool(), WORKERS_TIMEOUT);
    }
}

fn segment_name(timeline: u32, segment: u32) -> String {
    format!("{timeline:08X}{:08X}{segment:08X}", 0)
}

/// `count` synthetic 1 MiB segments of timeline 1 from segment 1 on, with their content
/// (WAL-shaped: wal-store checks what it stores and what it writes out).
fn synthetic_files(count: u32) -> Vec<(String, Vec<u8>)> {
    (1..=count)
        .map(|n| {
            let name = segment_name(1, n);
            let bytes = wal_segment(&name, u64::from(n));
            (name, bytes)
        })
        .collect()
}

/// Waits (5 s at most) until the spool holds exactly `expected` (complete files) and no
/// worker is busy: a worker may start a little after the call that spawned it returned.
fn settles_to(spool: &Path, expected: &[&String]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        wait_for_workers(spool, WORKERS_TIMEOUT);
        let now = spooled(spool);
        if now.iter().eq(expected.iter().copied()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the spool holds {now:?}, not {expected:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The plain WAL names in a spool (complete prefetched files).
fn spooled(spool: &Path) -> Vec<String> {
    dir_names(spool)
        .into_iter()
        .filter(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Without a server

#[test]
fn restores_what_was_archived_and_misses_quietly() {
    let home = Home::new();
    let files = synthetic_files(3);
    let history = (
        "00000002.history".to_owned(),
        b"1\t0/3000028\tno recovery target specified\n".to_vec(),
    );
    let mut all = files.clone();
    all.push(history.clone());
    home.archive(&all, "zstd");

    for (name, bytes) in [&files[1], &history] {
        let dest = home.pg_wal().join("RECOVERYXLOG");
        let out = home.restore(&[], name, &dest);
        assert_success(&out, name);
        assert!(out.stderr.is_empty() && out.stdout.is_empty());
        assert!(
            fs::read(&dest).unwrap() == *bytes,
            "{name} restored exactly"
        );
        fs::remove_file(&dest).unwrap();
    }
    assert_eq!(
        dir_names(&home.pg_wal()),
        Vec::<String>::new(),
        "no temp left"
    );

    // PostgreSQL's routine probes: the segment after the last one, history files of
    // timelines that do not exist. Exit 66, nothing on stderr, nothing at %p.
    for extra in [&[][..], &["--prefetch", "4", "--spool-dir"][..]] {
        let mut extra = extra.to_vec();
        let spool = home.spool();
        if !extra.is_empty() {
            extra.push(spool.to_str().unwrap());
        }
        for name in [segment_name(1, 4).as_str(), "00000003.history"] {
            let dest = home.pg_wal().join("RECOVERYXLOG");
            let out = home.restore(&extra, name, &dest);
            assert_eq!(out.status.code(), Some(66), "{name} {extra:?}");
            assert!(
                out.stderr.is_empty(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!dest.exists());
        }
    }
}

/// Temps a killed call left in %p's directory (decompressed copies, cloud downloads,
/// named temps where there is no O_TMPFILE) are removed by the next call; other hidden
/// files stay.
#[test]
fn a_restore_sweeps_the_temps_of_killed_calls_from_pg_wal() {
    let home = Home::new();
    let files = synthetic_files(2);
    home.archive(&files, "zstd");
    let seg = &files[1].0;
    let stale = [
        format!(".{seg}.decompressed"),
        format!(".{seg}.4242-1a2b3c4d.download"),
        ".RECOVERYXLOG.4242.0.tmp".to_owned(),
    ];
    let kept = [".RECOVERYXLOG.keep".to_owned(), ".other.tmp".to_owned()];
    for name in stale.iter().chain(&kept) {
        fs::write(home.pg_wal().join(name), b"left by a killed call").unwrap();
    }
    let dest = home.pg_wal().join("RECOVERYXLOG");
    let out = home.restore(&[], seg, &dest);
    assert_success(&out, seg);
    assert!(
        fs::read(&dest).unwrap() == files[1].1,
        "{seg} restored exactly"
    );
    let mut expected: Vec<String> = kept.to_vec();
    expected.push("RECOVERYXLOG".to_owned());
    expected.sort();
    assert_eq!(dir_names(&home.pg_wal()), expected);
}

#[test]
fn bad_usage_exits_64_with_one_line() {
    let home = Home::new();
    for args in [
        vec!["000000010000000000000001"],
        vec!["not-a-wal-name", "/tmp/x"],
        vec!["--prefetch", "many", "000000010000000000000001", "/tmp/x"],
        vec!["--bogus", "000000010000000000000001", "/tmp/x"],
    ] {
        let out = wrapper("restore-wal")
            .arg("--home")
            .arg(home.home())
            .args(["--server", SERVER])
            .args(&args)
            .output()
            .unwrap();
        // PostgreSQL takes 1..125 for "not in the archive": a misused restore_command
        // must stop recovery instead (above 125).
        assert_eq!(out.status.code(), Some(200), "{args:?}");
        // One line, from restore-wal or from the stage that refused the value.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        let bad = args[0].trim_start_matches('-');
        let named = if args.len() == 1 { "%p" } else { bad };
        assert!(
            stderr.contains(named) || stderr.contains("WAL_PATH"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_corrupt_archived_file_fails_clearly_and_leaves_nothing() {
    let home = Home::new();
    let files = wal_fixture_files(2);
    home.archive(&files, "zstd");
    let name = &files[1].0;
    let stored = archived_path(&home.wals(), name);
    let len = fs::metadata(&stored).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&stored)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    for extra in [&[][..], &["--prefetch", "2"][..]] {
        let mut extra = extra.to_vec();
        let spool = home.spool();
        if !extra.is_empty() {
            extra.extend(["--spool-dir", spool.to_str().unwrap()]);
        }
        let dest = home.pg_wal().join("RECOVERYXLOG");
        let out = home.restore(&extra, name, &dest);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(200), "{extra:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(name), "names the file: {stderr}");
        assert!(!dest.exists(), "nothing at %p");
        assert_eq!(
            dir_names(&home.pg_wal()),
            Vec::<String>::new(),
            "no temp left in %p's directory"
        );
        // The intact segment before it still restores.
        let out = home.restore(&extra, &files[0].0, &dest);
        assert_success(&out, "the intact segment");
        assert!(fs::read(&dest).unwrap() == files[0].1);
        fs::remove_file(&dest).unwrap();
    }
    wait_for_workers(&home.spool(), WORKERS_TIMEOUT);
    assert!(
        !spooled(&home.spool()).contains(name),
        "the corrupt segment never reaches the spool"
    );
}

#[test]
fn uncompressed_archives_queued_files_and_partial_segments_restore() {
    let home = Home::new();
    let files = synthetic_files(2);
    home.archive(&files[..1], "none");
    // Still in the incoming queue: archive-wal has not run since (Barman's get-wal looks
    // there too).
    fs::write(home.incoming().join(&files[1].0), &files[1].1).unwrap();
    // The end of a streamed timeline: only a .partial, in the streaming queue.
    let last = segment_name(1, 3);
    let partial = wal_segment(&last, 99);
    let streaming = home.home().join("pg/streaming");
    fs::create_dir_all(&streaming).unwrap();
    fs::write(streaming.join(format!("{last}.partial")), &partial).unwrap();

    let dest = home.pg_wal().join("RECOVERYXLOG");
    for (name, bytes) in &files {
        let out = home.restore(&[], name, &dest);
        assert_success(&out, name);
        assert!(fs::read(&dest).unwrap() == *bytes, "{name}");
        fs::remove_file(&dest).unwrap();
    }
    assert!(
        archived_path(&home.wals(), &files[0].0).exists(),
        "the archive keeps its plain file: restored by a copy"
    );
    let out = home.restore(&[], &last, &dest);
    assert_eq!(out.status.code(), Some(66), "no --partial: not found");
    assert!(out.stderr.is_empty());
    let out = home.restore(&["--partial"], &last, &dest);
    assert_success(&out, "--partial");
    assert!(fs::read(&dest).unwrap() == partial);
}

#[test]
fn prefetch_fills_a_bounded_spool_and_cleans_it() {
    let home = Home::new();
    let files = synthetic_files(8);
    home.archive(&files, "zstd");
    let spool = home.spool();
    let args = ["--prefetch", "3", "--spool-dir", spool.to_str().unwrap()];
    let dest = home.pg_wal().join("RECOVERYXLOG");

    let restore = |index: usize| {
        let (name, bytes) = &files[index];
        let out = home.restore(&args, name, &dest);
        assert_success(&out, name);
        assert!(fs::read(&dest).unwrap() == *bytes, "{name}");
        fs::remove_file(&dest).unwrap();
        wait_for_workers(&spool, WORKERS_TIMEOUT);
        spooled(&spool)
    };

    // Asking for segment 1 prefetches 2, 3 and 4.
    restore(0);
    settles_to(&spool, &[&files[1].0, &files[2].0, &files[3].0]);
    for name in spooled(&spool) {
        let original = &files.iter().find(|(n, _)| *n == name).unwrap().1;
        assert!(fs::read(spool.join(&name)).unwrap() == *original, "{name}");
    }
    // 2 comes from the spool; 3 and 4 are still there (half the window is filled: no
    // new worker yet), never more than 3.
    let after = restore(1);
    assert!(!after.contains(&files[1].0), "2 was taken: {after:?}");
    assert!(after.len() <= 3, "{after:?}");
    // Jumping ahead (a restart of recovery elsewhere) drops what is now behind.
    restore(5);
    settles_to(&spool, &[&files[6].0, &files[7].0]);
    // Another timeline's files and stale temps are removed by the next worker; files of
    // other names are left alone.
    for stray in [
        segment_name(2, 7),
        format!(".{}.decompressed", segment_name(1, 2)),
        "notes.txt".to_owned(),
    ] {
        fs::write(spool.join(stray), b"x").unwrap();
    }
    restore(6);
    settles_to(&spool, &[&files[7].0]);
    let names = dir_names(&spool);
    assert!(!names.contains(&segment_name(2, 7)), "{names:?}");
    assert!(
        !names.iter().any(|n| n.ends_with(".decompressed")),
        "{names:?}"
    );
    assert!(names.contains(&"notes.txt".to_owned()), "{names:?}");

    // A spool file older than the archived file it stands for is left over from another
    // archive once at the same path: never delivered.
    let (name, bytes) = &files[7];
    let bogus = spool.join(name);
    fs::write(&bogus, b"from another archive").unwrap();
    fs::File::options()
        .write(true)
        .open(&bogus)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(946_684_800))
        .unwrap();
    let out = home.restore(&args, name, &dest);
    assert_success(&out, "past a stale spool file");
    assert!(fs::read(&dest).unwrap() == *bytes, "the archived {name}");
}

/// xorshift64*, seeded from the clock (printed), for kill delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self, bound: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1)
    }
}

#[test]
fn a_killed_restore_never_leaves_a_partial_file() {
    let home = Home::new();
    let files = wal_fixture_files(6);
    home.archive(&files, "zstd");
    let spool = home.spool();
    let dest = home.pg_wal().join("RECOVERYXLOG");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    // Kill anywhere from the start to a bit after the end of an undisturbed call.
    let t = Instant::now();
    assert_success(&home.restore(&[], &files[0].0, &dest), "calibration");
    fs::remove_file(&dest).unwrap();
    let span = (t.elapsed().as_micros() as u64 * 5 / 4).max(1_000);
    eprintln!("kill delays up to {span} µs, from seed {seed}");
    let (mut absent, mut complete) = (0, 0);
    let started = Instant::now();
    for round in 0..40 {
        let prefetch = round % 2 == 1;
        let index = (round / 2) % 3;
        let (name, bytes) = &files[index];
        let mut extra = Vec::new();
        if prefetch {
            extra.extend(["--prefetch", "3", "--spool-dir", spool.to_str().unwrap()]);
        }
        let mut child = home
            .restore_command(&extra, name, &dest)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let delay = Duration::from_micros(rng.next(span));
        thread::sleep(delay);
        let group = Pid::from_raw(i32::try_from(child.id()).unwrap());
        let _ = killpg(group, Signal::SIGKILL);
        let status = child.wait().unwrap();
        // Prefetch workers live in the same group; let the kill reach them all.
        thread::sleep(Duration::from_millis(5));
        let _ = killpg(group, Signal::SIGKILL);
        match fs::read(&dest) {
            Ok(content) => {
                assert!(
                    content == *bytes,
                    "round {round} ({delay:?}, {status}): %p holds {} bytes, not {name}",
                    content.len()
                );
                complete += 1;
                fs::remove_file(&dest).unwrap();
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => absent += 1,
            Err(e) => panic!("{e}"),
        }
        for spooled in spooled(&spool) {
            let original = &files.iter().find(|(n, _)| *n == spooled).unwrap().1;
            assert!(
                fs::read(spool.join(&spooled)).unwrap() == *original,
                "round {round}: spool file {spooled} is not complete"
            );
        }
    }
    eprintln!(
        "40 kills in {:.1?}: %p absent {absent} times, complete {complete} times",
        started.elapsed()
    );
    assert!(absent > 0, "no kill landed before the rename");
    assert!(
        complete > 0,
        "no call finished before its kill: the delays are too short"
    );

    // After all that, a clean call works and leaves nothing but %p in its directory.
    for extra in [
        vec![],
        vec!["--prefetch", "3", "--spool-dir", spool.to_str().unwrap()],
    ] {
        let (name, bytes) = &files[3];
        let out = home.restore(&extra, name, &dest);
        assert_success(&out, "after the kills");
        assert!(fs::read(&dest).unwrap() == *bytes);
        fs::remove_file(&dest).unwrap();
    }
    assert_eq!(
        dir_names(&home.pg_wal()),
        Vec::<String>::new(),
        "the temps of killed calls are swept by the next call"
    );
}

// ---------------------------------------------------------------------------------------
// With a real PostgreSQL

/// A [`Primary`] whose `archive_command` copies every file into a reference directory
/// and, when asked, hands it to walpipe too; stopped with everything archived.
struct Archived {
    primary: Primary,
    /// walpipe's home (also the archive of the walpipe scenario).
    home: PathBuf,
    /// Every file PostgreSQL archived, copied by `cp`.
    reference: PathBuf,
    /// The segments PostgreSQL archived.
    segments: Vec<String>,
}

impl Archived {
    /// `through_walpipe`: archive_command also runs `archive-command` into the incoming
    /// queue, and archive-wal (zstd) runs at the end. Otherwise only the reference copy.
    fn run(through_walpipe: bool) -> Self {
        Self::run_with(through_walpipe, &WorkDir::new(), &[])
    }

    /// As [`Archived::run`], in `work`, with `archive_wal_extra` flags for archive-wal
    /// (e.g. `--recipient CERT`).
    fn run_with(through_walpipe: bool, work: &WorkDir, archive_wal_extra: &[&Path]) -> Self {
        let home = work.mkdir_owned("home");
        let reference = work.mkdir_owned("ref");
        let copy = reference_copy(&reference);
        let command = if through_walpipe {
            format!("{copy} && {}", queue_archive_command(&home, SERVER))
        } else {
            copy
        };
        let primary = Primary::run(work, &command);
        if through_walpipe {
            let out = wrapper_as_postgres("archive-wal")
                .arg("--home")
                .arg(&home)
                .args(["--server", SERVER])
                .args(archive_wal_extra)
                .output()
                .unwrap();
            assert_success(&out, "archive-wal");
        }
        let segments: Vec<String> = dir_names(&reference)
            .into_iter()
            .filter(|n| n.len() == 24)
            .collect();
        assert!(
            segments.len() > LOAD_ROUNDS,
            "a few segments to restore: {segments:?}"
        );
        eprintln!("primary: {} segments archived", segments.len());
        Archived {
            primary,
            home,
            reference,
            segments,
        }
    }
}

/// The restore_command running restore-wal on the archive of `home` (as PostgreSQL's
/// user, with the binaries under test), `extra` flags appended.
fn restore_wal_command(home: &Path, extra: &str) -> String {
    format!(
        "WALPIPE_BIN_DIR={bin} {script} --home {home} --server {SERVER}{extra} %f %p",
        bin = bin_dir().display(),
        script = script("restore-wal").display(),
        home = home.display(),
    )
}

#[test]
fn pitr_from_a_walpipe_archive_with_and_without_prefetch() {
    let t = Instant::now();
    let archived = Archived::run(true);
    let primary = &archived.primary;
    let wals = archived.home.join(SERVER).join("wals");
    for segment in &archived.segments {
        assert!(archived_path(&wals, segment).exists(), "{segment} archived");
    }

    let command = restore_wal_command(&archived.home, "");
    let mut plain = primary.recover("restore-plain", &command);
    primary.assert_recovered(&plain, "restore-wal");
    plain.stop().unwrap();

    let spool = primary.work.mkdir_owned("spool");
    let extra = format!(" --prefetch 4 --spool-dir {}", spool.display());
    let command = restore_wal_command(&archived.home, &extra);
    let mut prefetched = primary.recover("restore-prefetch", &command);
    primary.assert_recovered(&prefetched, "restore-wal --prefetch 4");
    prefetched.stop().unwrap();
    wait_for_workers(&spool, WORKERS_TIMEOUT);
    let left = spooled(&spool);
    assert!(left.len() <= 4, "the spool holds at most 4 files: {left:?}");
    eprintln!("total: {:.1?}", t.elapsed());
}

#[test]
fn pitr_from_an_encrypted_walpipe_archive() {
    let work = WorkDir::new();
    // In the work directory: PostgreSQL's restore_command, run as postgres, reads the key.
    let gpg = Gpg::in_dir(work.path());
    // walpipe needs no gpg-agent: stop it before the servers run.
    gpg.stop_agent();
    let (cert, key) = (gpg.cert(), gpg.key());
    let archived = Archived::run_with(true, &work, &[Path::new("--recipient"), &cert]);
    let primary = &archived.primary;
    let wals = archived.home.join(SERVER).join("wals");
    let xlogdb = fs::read_to_string(wals.join(format!("{SERVER}-xlog.db"))).unwrap();
    for segment in &archived.segments {
        assert!(
            xlogdb
                .lines()
                .any(|l| l.starts_with(segment.as_str()) && l.ends_with("\tzstd\tgpg")),
            "{segment} archived compressed and encrypted: {xlogdb}"
        );
    }
    let spool = primary.work.mkdir_owned("spool");
    let extra = format!(
        " --key {} --prefetch 4 --spool-dir {}",
        key.display(),
        spool.display()
    );
    let command = restore_wal_command(&archived.home, &extra);
    let mut restored = primary.recover("restore-encrypted", &command);
    primary.assert_recovered(&restored, "restore-wal --key --prefetch 4");
    restored.stop().unwrap();
    wait_for_workers(&spool, WORKERS_TIMEOUT);
}

#[test]
fn pitr_from_an_archive_written_by_barman() {
    let t = Instant::now();
    let venv = walpipe_tests::venv::barman_venv();
    let archived = Archived::run(false);
    let primary = &archived.primary;

    // Barman's server, fed the very files PostgreSQL archived, as barman-wal-archive or
    // rsync would: copied into its incoming queue. archive-wal needs no connection.
    let barman_home = primary.work.join("barman");
    let incoming = barman_home.join(SERVER).join("incoming");
    fs::create_dir_all(&incoming).unwrap();
    for name in dir_names(&archived.reference) {
        fs::copy(archived.reference.join(&name), incoming.join(&name)).unwrap();
    }
    let conf = primary.work.join("barman.conf");
    walpipe_tests::venv::barman_conf(
        &conf,
        &barman_home,
        &primary.work.join("barman.log"),
        SERVER,
        "conninfo = host=/nonexistent port=5499 user=postgres dbname=postgres\n\
         backup_method = postgres\n\
         archiver = on\n\
         compression = zstd",
    );
    let mut cmd = Command::new(venv.join("bin/barman"));
    clean_command(&mut cmd);
    let out = cmd
        .arg("-c")
        .arg(&conf)
        .args(["archive-wal", SERVER])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_success(&out, "barman archive-wal");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for segment in &archived.segments {
        assert!(stdout.contains(segment.as_str()), "{segment}: {stdout}");
    }

    // What Barman wrote: zstd under the plain names, catalogued in pg-xlog.db.
    let wals = barman_home.join(SERVER).join("wals");
    let xlogdb = fs::read_to_string(wals.join(format!("{SERVER}-xlog.db"))).unwrap();
    for segment in &archived.segments {
        let stored = fs::read(archived_path(&wals, segment)).unwrap();
        assert_eq!(&stored[..4], &[0x28, 0xb5, 0x2f, 0xfd], "{segment}: zstd");
        assert!(
            xlogdb.contains(&format!("{segment}\t{}\t", stored.len())),
            "{segment} in xlog.db:\n{xlogdb}"
        );
    }
    assert!(xlogdb.contains("\tzstd\tNone\n"), "{xlogdb}");
    if running_as_root() {
        let out = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(&barman_home)
            .output()
            .unwrap();
        assert_success(&out, "chown of Barman's home for the postgres user");
    }

    let spool = primary.work.mkdir_owned("spool");
    let extra = format!(" --prefetch 2 --spool-dir {}", spool.display());
    let command = restore_wal_command(&barman_home, &extra);
    let mut restored = primary.recover("restore-barman", &command);
    primary.assert_recovered(&restored, "from Barman's archive");
    restored.stop().unwrap();
    eprintln!("total: {:.1?}", t.elapsed());
}

/// A worker's claims name the worker while it fetches: a call for a segment in flight
/// waits for it rather than fetch it a second time beside the worker (two fetches of one
/// segment into one spool share its temp names and spoil each other). The worker's
/// wal-compress is slowed down by three seconds, so the claim is seen while the fetch runs.
#[test]
fn a_segment_in_flight_is_waited_for_never_fetched_twice() {
    let home = Home::new();
    let files = synthetic_files(4);
    home.archive(&files, "zstd");
    let spool = home.spool();
    let bins = home.dir.path().join("bin");
    fs::create_dir(&bins).unwrap();
    let log = home.dir.path().join("decompressions");
    for tool in ["wal-store", "wal-spool", "wal-encrypt", "wal-scan"] {
        std::os::unix::fs::symlink(
            walpipe_tests::wrappers::bin_dir().join(tool),
            bins.join(tool),
        )
        .unwrap();
    }
    // Only the worker's (its temps go to the spool) is slow: the call that starts it
    // returns first, however loaded the machine, and the claim is seen while the worker
    // still fetches.
    let real = walpipe_tests::wrappers::bin_dir().join("wal-compress");
    fs::write(
        bins.join("wal-compress"),
        format!(
            "#!/bin/sh\necho \"$*\" >>'{}'\ncase \"$*\" in *'{}'*) sleep 3 ;; esac\n\
             exec '{}' \"$@\"\n",
            log.display(),
            spool.display(),
            real.display()
        ),
    )
    .unwrap();
    fs::set_permissions(
        bins.join("wal-compress"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let args = ["--prefetch", "3", "--spool-dir", spool.to_str().unwrap()];
    let dest = home.pg_wal().join("RECOVERYXLOG");
    let call = |index: usize| {
        let (name, bytes) = &files[index];
        let out = home
            .restore_command(&args, name, &dest)
            .env("WALPIPE_BIN_DIR", &bins)
            .output()
            .unwrap();
        assert_success(&out, name);
        assert!(fs::read(&dest).unwrap() == *bytes, "{name}");
        fs::remove_file(&dest).unwrap();
    };
    call(0);
    // The worker is in its slow wal-compress now: its claims name it, alive.
    let claim = spool.join(format!(".{}.claim", files[1].0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !claim.exists() {
        assert!(Instant::now() < deadline, "no claim for {}", files[1].0);
        thread::sleep(Duration::from_millis(10));
    }
    let text = fs::read_to_string(&claim).unwrap();
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().unwrap());
    let (pid, start) = (fields.next().unwrap(), fields.next().unwrap());
    assert!(
        wal_core::process::is_running(i32::try_from(pid).unwrap(), start),
        "the claim names a live worker: {text}"
    );
    call(1);
    wait_for_workers(&spool, WORKERS_TIMEOUT);
    // Call 1 and the worker decompressed; call 2 took the worker's copy.
    let runs = fs::read_to_string(&log).unwrap();
    assert_eq!(runs.lines().count(), 2, "{runs}");
    assert_eq!(
        runs.lines()
            .filter(|line| line.contains(spool.to_str().unwrap()))
            .count(),
        1,
        "{runs}"
    );
}

/// The spool is a cache: a spool that cannot be used for a reason other than its
/// configuration (here a file where the directory should be; in life another user's
/// directory at the default path, or a full /var/tmp) costs the prefetch, said in one
/// line, never the restore.
#[test]
fn an_unusable_spool_costs_the_prefetch_not_the_restore() {
    let home = Home::new();
    let files = synthetic_files(2);
    home.archive(&files, "zstd");
    let not_a_dir = home.dir.path().join("spool-file");
    fs::write(&not_a_dir, b"x").unwrap();
    let dest = home.pg_wal().join("RECOVERYXLOG");
    let out = home.restore(
        &[
            "--prefetch",
            "2",
            "--spool-dir",
            not_a_dir.to_str().unwrap(),
        ],
        &files[0].0,
        &dest,
    );
    assert_success(&out, &files[0].0);
    assert!(fs::read(&dest).unwrap() == files[0].1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("spool-file"), "{stderr}");
    assert_eq!(fs::read(&not_a_dir).unwrap(), b"x");
}
