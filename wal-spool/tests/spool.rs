//! The spool's rules through the `wal-spool` binary: what `take` hands over and when it
//! waits, what `plan` sweeps and claims, killed workers, two calls at once, and the
//! spools refused.

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use walpipe_tests::fixtures::wal_segment;

const SERVER: &str = "pg";

/// Segment `n` of timeline 1, log 0.
fn seg(n: u32) -> String {
    format!("00000001000000000000{n:04X}")
}

/// A Barman home with an archive, its queues, a pg_wal and a spool beside them.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let setup = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        for dir in [
            "home/pg/wals",
            "home/pg/incoming",
            "home/pg/streaming",
            "pg_wal",
        ] {
            fs::create_dir_all(setup.path(dir)).unwrap();
        }
        setup
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn spool(&self) -> PathBuf {
        self.path("spool")
    }

    fn dest(&self) -> PathBuf {
        self.path("pg_wal/RECOVERYXLOG")
    }

    /// Archives segment `n` (plain, as Barman stores an uncompressed WAL).
    fn archive(&self, n: u32) -> PathBuf {
        let name = seg(n);
        let dir = self.path(&format!("home/pg/wals/{}", &name[..16]));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(&name);
        fs::write(&path, wal_segment(&name, u64::from(n))).unwrap();
        path
    }

    /// Spools segment `n` as a prefetch leaves it: the file, and the claim of its
    /// (finished) worker naming the archived file it fetched, if there is one.
    fn spool_segment(&self, n: u32) -> PathBuf {
        fs::create_dir_all(self.spool()).unwrap();
        let path = self.spool().join(seg(n));
        fs::write(&path, wal_segment(&seg(n), u64::from(n))).unwrap();
        if let Some(line) = self.claim_of_archived(n, GONE, now()) {
            fs::write(self.spool().join(format!(".{}.claim", seg(n))), line).unwrap();
        }
        path
    }

    /// The claim line of worker `pid` for segment `n` (as archived now), `None` when the
    /// archive does not hold it.
    fn claim_of_archived(&self, n: u32, pid: u32, epoch: u64) -> Option<String> {
        let name = seg(n);
        let archived = self.path(&format!("home/pg/wals/{}/{name}", &name[..16]));
        let incoming = self.path(&format!("home/pg/incoming/{name}"));
        let meta = fs::metadata(archived)
            .or_else(|_| fs::metadata(incoming))
            .ok()?;
        let start = start_of(pid).unwrap_or_else(|| "1".to_owned());
        let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        Some(format!(
            "{pid} {start} {epoch} {} {} {} {mtime_ns}\n",
            meta.dev(),
            meta.ino(),
            meta.size()
        ))
    }

    fn run(&self, args: &[&str], extra: &[String]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wal-spool"));
        command
            .args(args)
            .arg(format!("--archive={}", self.path("home/pg/wals").display()))
            .arg(format!("--server={SERVER}"))
            .arg(format!("--spool-dir={}", self.spool().display()))
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap());
        command.output().unwrap()
    }

    fn take(&self, n: u32) -> Output {
        self.run(
            &["take", &seg(n), "--to", self.dest().to_str().unwrap()],
            &[],
        )
    }

    fn plan(&self, n: u32, prefetch: u16, worker: u32) -> Output {
        self.run(
            &["plan", &seg(n)],
            &[
                format!("--prefetch={prefetch}"),
                format!("--worker={worker}"),
                format!("--restored={}", self.dest().display()),
            ],
        )
    }

    fn spool_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.spool())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn set_mtime(path: &Path, time: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

/// A process that lives until killed: a prefetch worker for the claims.
fn worker() -> Child {
    Command::new("sleep").arg("60").spawn().unwrap()
}

/// A pid no process has (above the kernel's pid_max).
const GONE: u32 = 99_999_999;

/// The start time of `pid`, if it runs.
fn start_of(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(") ")?
            .1
            .split_whitespace()
            .nth(19)?
            .to_owned(),
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn take_moves_a_current_segment_into_place_once() {
    let s = Setup::new();
    s.archive(2);
    s.spool_segment(2);
    let out = s.take(2);
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    assert_eq!(fs::read(s.dest()).unwrap(), wal_segment(&seg(2), 2));
    assert!(
        !s.spool().join(seg(2)).exists(),
        "taken: gone from the spool"
    );
    // Nothing left to take: 66, silently; %p untouched.
    fs::remove_file(s.dest()).unwrap();
    let out = s.take(2);
    assert_eq!(
        (code(&out), out.stderr.as_slice()),
        (66, &b""[..]),
        "{out:?}"
    );
    assert!(!s.dest().exists());
}

/// A spooled copy stands for the archived file its worker fetched, and for no other:
/// an archive replaced since (restored from a backup with old timestamps, another cluster's
/// at the same path), a missing archived file, or a spool file without its claim is never
/// handed over. A rename inside the archive's filesystem (archive-wal taking a queued file)
/// keeps it current.
#[test]
fn a_spooled_file_stands_only_for_the_archived_file_its_worker_fetched() {
    let s = Setup::new();
    let archived = s.archive(2);
    s.spool_segment(2);
    // The archived file replaced by another with the old timestamps (`cp -a`, rsync).
    let replacement = s.path("replacement");
    fs::write(&replacement, wal_segment(&seg(2), 99)).unwrap();
    let old_time = fs::metadata(&archived).unwrap().modified().unwrap();
    fs::remove_file(&archived).unwrap();
    wal_core::durable::move_durably(&replacement, &archived).unwrap();
    set_mtime(&archived, old_time - Duration::from_secs(3600));
    let out = s.take(2);
    assert_eq!(code(&out), 66, "{out:?}");
    assert!(!s.dest().exists());
    // Nor when the archive no longer has it at all.
    let spooled = s.spool_segment(3);
    let out = s.take(3);
    assert_eq!(code(&out), 66, "{out:?}");
    assert!(spooled.exists() && !s.dest().exists());
    // Nor without the claim that says what it was fetched from.
    s.archive(4);
    s.spool_segment(4);
    fs::remove_file(s.spool().join(format!(".{}.claim", seg(4)))).unwrap();
    assert_eq!(code(&s.take(4)), 66);
    // The same file moved (a rename keeps it the same file): still current.
    let archived = s.archive(5);
    s.spool_segment(5);
    wal_core::durable::move_durably(&archived, &s.path("home/pg/incoming").join(seg(5))).unwrap();
    assert_eq!(code(&s.take(5)), 0);
    assert_eq!(fs::read(s.dest()).unwrap(), wal_segment(&seg(5), 5));
}

#[test]
fn garbage_under_a_segment_name_is_removed_not_handed_over() {
    let s = Setup::new();
    s.archive(2);
    for content in [&b""[..], b"garbage", &wal_segment(&seg(3), 3)] {
        // Claimed as fetched from the archived file, yet not a whole segment of its name.
        s.spool_segment(2);
        fs::write(s.spool().join(seg(2)), content).unwrap();
        let out = s.take(2);
        assert_eq!(code(&out), 66, "{out:?}");
        assert!(!s.dest().exists(), "nothing handed to PostgreSQL");
        assert!(!s.spool().join(seg(2)).exists(), "the stray is removed");
    }
    // A directory or a link under the name is not taken either.
    fs::create_dir(s.spool().join(seg(2))).unwrap();
    assert_eq!(code(&s.take(2)), 66);
    fs::remove_dir(s.spool().join(seg(2))).unwrap();
    symlink(s.archive(2), s.spool().join(seg(2))).unwrap();
    assert_eq!(code(&s.take(2)), 66);
    assert!(!s.dest().exists());
}

#[test]
fn take_waits_for_a_segment_in_flight_and_not_for_a_dead_worker() {
    let s = Setup::new();
    s.archive(2);
    fs::create_dir_all(s.spool()).unwrap();
    let mut fetching = worker();
    fs::write(
        s.spool().join(format!(".{}.claim", seg(2))),
        s.claim_of_archived(2, fetching.id(), now()).unwrap(),
    )
    .unwrap();
    let spool = s.spool();
    let landing = thread::spawn(move || {
        thread::sleep(Duration::from_millis(500));
        let temp = spool.join(format!(".{}.tmp", seg(2)));
        fs::write(&temp, wal_segment(&seg(2), 2)).unwrap();
        wal_core::durable::move_durably(&temp, &spool.join(seg(2))).unwrap();
    });
    let started = Instant::now();
    let out = s.take(2);
    landing.join().unwrap();
    assert_eq!(code(&out), 0, "waited for the fetch: {out:?}");
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert_eq!(fs::read(s.dest()).unwrap(), wal_segment(&seg(2), 2));
    // A worker killed before its file landed: no wait for the full minute.
    fs::remove_file(s.dest()).unwrap();
    s.archive(3);
    fs::write(
        s.spool().join(format!(".{}.claim", seg(3))),
        s.claim_of_archived(3, fetching.id(), now()).unwrap(),
    )
    .unwrap();
    let killer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        fetching.kill().unwrap();
        fetching.wait().unwrap();
    });
    let started = Instant::now();
    let out = s.take(3);
    killer.join().unwrap();
    assert_eq!(code(&out), 66, "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn plan_sweeps_outside_the_window_and_claims_what_is_missing() {
    let s = Setup::new();
    for n in 1..=8 {
        s.archive(n);
    }
    fs::copy(s.archive(2), s.dest()).unwrap();
    fs::create_dir_all(s.spool()).unwrap();
    // Outside the window of 2 with 3: an older segment, another timeline, a later one,
    // a killed worker's temp and claim; inside: a spooled 4; not WAL-named: kept.
    s.spool_segment(1);
    let other_timeline = "000000020000000000000003";
    fs::write(s.spool().join(other_timeline), b"x").unwrap();
    s.spool_segment(7);
    fs::write(s.spool().join(format!(".{}.decompressed", seg(1))), b"x").unwrap();
    fs::write(s.spool().join(format!(".{}.claim", seg(6))), "1 1 1\n").unwrap();
    fs::write(s.spool().join("notes.txt"), b"keep").unwrap();
    s.spool_segment(4);
    let mut me = worker();
    let out = s.plan(2, 3, me.id());
    assert_eq!(code(&out), 0, "{out:?}");
    // 3 and 5 are missing: 2 of 3, at least half.
    assert_eq!(
        stdout_lines(&out),
        [s.spool().display().to_string(), seg(3), seg(5)]
    );
    let claim3 = fs::read_to_string(s.spool().join(format!(".{}.claim", seg(3)))).unwrap();
    assert_eq!(
        claim3.split_whitespace().next(),
        Some(me.id().to_string().as_str())
    );
    assert_eq!(
        s.spool_names(),
        [
            format!(".{}.claim", seg(3)),
            format!(".{}.claim", seg(4)),
            format!(".{}.claim", seg(5)),
            ".lock".to_string(),
            ".segment-size".to_string(),
            seg(4),
            "notes.txt".to_string(),
        ]
    );
    // The segment size came from the restored file's header (1 MiB).
    assert_eq!(
        fs::read_to_string(s.spool().join(".segment-size"))
            .unwrap()
            .trim(),
        "1048576"
    );
    // Claimed by a live worker: nobody claims them again.
    let other = worker();
    let out = s.plan(2, 3, other.id());
    assert_eq!(stdout_lines(&out), Vec::<String>::new());
    // The worker was killed: its claims are stale and the segments are claimed anew.
    me.kill().unwrap();
    me.wait().unwrap();
    let out = s.plan(2, 3, other.id());
    assert_eq!(
        stdout_lines(&out),
        [s.spool().display().to_string(), seg(3), seg(5)]
    );
    // A full enough window: less than half missing, nothing claimed.
    s.spool_segment(3);
    s.spool_segment(5);
    s.spool_segment(6);
    let out = s.plan(3, 4, other.id());
    assert_eq!(stdout_lines(&out), Vec::<String>::new(), "{out:?}");
    drop(kill(other));
}

fn kill(mut child: Child) -> std::io::Result<()> {
    child.kill()?;
    child.wait().map(drop)
}

#[test]
fn two_plans_at_once_never_claim_a_segment_twice() {
    let s = Setup::new();
    for n in 1..=40 {
        s.archive(n);
    }
    fs::copy(s.archive(1), s.dest()).unwrap();
    fs::create_dir_all(s.spool()).unwrap();
    for _ in 0..5 {
        let workers = [worker(), worker()];
        let runs: Vec<_> = workers
            .iter()
            .map(|w| {
                let mut command = Command::new(env!("CARGO_BIN_EXE_wal-spool"));
                command
                    .args(["plan", &seg(1), "--prefetch=30"])
                    .arg(format!("--worker={}", w.id()))
                    .arg(format!("--restored={}", s.dest().display()))
                    .arg(format!("--archive={}", s.path("home/pg/wals").display()))
                    .arg(format!("--server={SERVER}"))
                    .arg(format!("--spool-dir={}", s.spool().display()));
                command
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut claimed: Vec<String> = runs
            .into_iter()
            .flat_map(|run| {
                let out = run.wait_with_output().unwrap();
                assert_eq!(code(&out), 0);
                stdout_lines(&out).into_iter().skip(1)
            })
            .collect();
        claimed.sort();
        let want: Vec<String> = (2..=31).map(seg).collect();
        assert_eq!(
            claimed, want,
            "each segment claimed once, by one of the two"
        );
        for w in workers {
            kill(w).unwrap();
        }
    }
}

#[test]
fn a_cloud_spool_file_stands_for_its_object_only_while_its_claim_is_recent() {
    let s = Setup::new();
    let run_take = |n: u32| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wal-spool"));
        command
            .args(["take", &seg(n), "--to", s.dest().to_str().unwrap()])
            .args(["--archive=s3://bucket/prefix", "--server=pg"])
            .arg(format!("--spool-dir={}", s.spool().display()));
        command.output().unwrap()
    };
    s.spool_segment(2);
    let gone = 999_999;
    fs::write(
        s.spool().join(format!(".{}.claim", seg(2))),
        format!("{gone} 1 {}\n", now() - 30),
    )
    .unwrap();
    assert_eq!(code(&run_take(2)), 0);
    fs::remove_file(s.dest()).unwrap();
    // Ten minutes old: an earlier restore's, whatever the bucket holds now.
    s.spool_segment(3);
    fs::write(
        s.spool().join(format!(".{}.claim", seg(3))),
        format!("{gone} 1 {}\n", now() - 700),
    )
    .unwrap();
    assert_eq!(code(&run_take(3)), 66);
    // No claim at all: never used.
    s.spool_segment(4);
    assert_eq!(code(&run_take(4)), 66);
    assert!(!s.dest().exists());
}

#[test]
fn other_names_are_never_spooled_and_bad_names_are_errors() {
    let s = Setup::new();
    for name in ["00000002.history", "000000010000000000000002.partial"] {
        let out = s.run(&["take", name, "--to", s.dest().to_str().unwrap()], &[]);
        assert_eq!((code(&out), out.stderr.is_empty()), (66, true), "{name}");
        let out = s.run(&["plan", name, "--prefetch=4", "--worker=1"], &[]);
        assert_eq!((code(&out), out.stdout.is_empty()), (0, true), "{name}");
    }
    for name in [
        "../000000010000000000000002",
        "x",
        "000000010000000000000002/",
    ] {
        let out = s.run(&["take", name, "--to", s.dest().to_str().unwrap()], &[]);
        assert!(![0, 66].contains(&code(&out)), "{name}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).lines().count(),
            1,
            "{out:?}"
        );
    }
    let out = s.run(&["plan", &seg(2), "--prefetch=1000", "--worker=1"], &[]);
    assert_eq!(code(&out), 64, "{out:?}");
}

#[test]
fn spools_that_share_files_with_wal_are_refused_before_anything_is_made() {
    let s = Setup::new();
    s.archive(2);
    let dest = s.dest();
    let home = s.path("home");
    let cases: Vec<(String, PathBuf)> = vec![
        ("the archive".into(), s.path("home/pg/wals")),
        ("inside the archive".into(), s.path("home/pg/wals/spool")),
        ("around the archive".into(), home.clone()),
        ("the incoming queue".into(), s.path("home/pg/incoming")),
        ("errors/".into(), s.path("home/pg/errors")),
        ("pg_wal".into(), s.path("pg_wal")),
        ("archive_status".into(), s.path("pg_wal/archive_status")),
        ("a line break".into(), s.path("spool\nx")),
    ];
    fs::create_dir_all(s.path("pg_wal/archive_status")).unwrap();
    for (what, spool) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_wal-spool"))
            .args(["take", &seg(2), "--to", dest.to_str().unwrap()])
            .arg(format!("--archive={}", s.path("home/pg/wals").display()))
            .arg("--server=pg")
            .arg("--spool-dir")
            .arg(&spool)
            .output()
            .unwrap();
        assert_eq!(code(&out), 78, "{what}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).lines().count(),
            1,
            "{what}: {out:?}"
        );
        assert!(!s.path("home/pg/wals/spool").exists() && !s.path("home/pg/errors").exists());
    }
    // A link to a directory, or another user's directory: not ours.
    fs::create_dir(s.path("elsewhere")).unwrap();
    symlink(s.path("elsewhere"), s.spool()).unwrap();
    let out = s.take(2);
    assert!(![0, 66].contains(&code(&out)), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a writable directory of ours"));
    assert!(!dest.exists());
}
