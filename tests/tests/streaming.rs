//! The streaming half end to end on PostgreSQL 15: wal-receive fills the streaming queue
//! synchronously (the server waits for it at each commit), archive-wal archives the queue,
//! and a recovery from a base backup and that archive alone, its last `.partial`
//! restored by `restore-wal --partial`, brings back the last transaction committed
//! before the server was killed: a recovery point objective of zero.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use walpipe_tests::crash::{Pipeline, Rng, SeedReport, kill_group};
use walpipe_tests::paths::target_bin;
use walpipe_tests::receiver::{receive_args, receiver_status, wait_until, wal_receive};
use walpipe_tests::wrappers::{
    archived_path, assert_success, bin_dir, wrapper_as_postgres, zstd_decompress,
};
use walpipe_tests::{PgCluster, WorkDir, as_postgres, clean_command, script};

const SERVER: &str = "pg";

/// `wal-receive stream` as PostgreSQL's user (the queue's files are pg_receivewal's, mode
/// 0600, and archive-wal runs as that user too).
fn start_receiver(home: &Path, pg: &PgCluster, log: &Path) -> Child {
    receive_args(
        &mut as_postgres(target_bin("wal-receive")),
        pg,
        "stream",
        home,
        SERVER,
    )
    .args(["--slot", "walpipe", "--create-slot"])
    .stderr(Stdio::from(fs::File::create(log).unwrap()))
    .spawn()
    .unwrap()
}

fn wait_for(what: &str, log: &Path, done: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(60), done, || {
        fs::read_to_string(log).unwrap_or_default()
    });
}

fn status(home: &Path) -> serde_json::Value {
    receiver_status(home, SERVER)
}

#[test]
fn a_synchronous_stream_alone_recovers_the_last_commit() {
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    let log = work.join("receive.log");
    // No archive_command: every WAL reaches the archive through the stream.
    let conf = "archive_mode = off\nsynchronous_standby_names = 'barman_receive_wal'\n\
                wal_keep_size = 0\nmax_wal_size = 64MB\nmin_wal_size = 32MB\n";
    let mut pg = PgCluster::init(&work, conf).unwrap();
    pg.start().unwrap();
    let mut receiver = start_receiver(&home, &pg, &log);
    wait_for("synchronous streaming", &log, || {
        let status = status(&home);
        status["state"] == "streaming" && status["synchronous"] == true
    });

    pg.pgbench(["-i", "-q", "-s", "1"]).unwrap();
    let backup = pg.base_backup("backup", ["-X", "none"]).unwrap();
    for _ in 0..3 {
        pg.pgbench(["-n", "-c", "2", "-t", "100"]).unwrap();
        pg.switch_wal().unwrap();
    }
    pg.pgbench(["-n", "-c", "2", "-t", "100"]).unwrap();
    // A synchronous commit returns once the receiver has it on disk: then the server dies.
    pg.psql("CREATE TABLE mark(what text); INSERT INTO mark VALUES ('the last commit')")
        .unwrap();
    let expected = pg.psql("SELECT count(*) FROM pgbench_history").unwrap();
    let postmaster: i32 = fs::read_to_string(pg.data_dir().join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    kill(Pid::from_raw(postmaster), Signal::SIGKILL).unwrap();
    // The receiver loses the server; stopped with SIGINT, pg_receivewal keeps its .partial.
    thread::sleep(Duration::from_millis(500));
    // To the receiver itself: runuser, its parent, passes no signal on.
    let pid = status(&home)["pid"].as_i64().unwrap();
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGINT).unwrap();
    let _ = receiver.wait();
    let streaming = home.join("pg/streaming");
    let partials: Vec<String> = fs::read_dir(&streaming)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert_eq!(partials.len(), 1, "{partials:?}");

    // archive-wal takes every complete segment, and leaves the .partial.
    let archived = wrapper_as_postgres("archive-wal")
        .arg("--home")
        .arg(&home)
        .args(["--server", SERVER, "--compression", "zstd"])
        .output()
        .unwrap();
    assert_success(&archived, "archive-wal");
    assert!(streaming.join(&partials[0]).is_file());

    drop(pg);
    let restored = recover_to_the_end(&work, &backup, &home);
    assert_eq!(
        restored.psql("SELECT what FROM mark").unwrap(),
        "the last commit",
        "{}",
        restored.log_tail(40)
    );
    assert_eq!(
        restored
            .psql("SELECT count(*) FROM pgbench_history")
            .unwrap(),
        expected
    );
    let server_log = fs::read_to_string(restored.log_path()).unwrap();
    assert!(
        server_log.contains(".partial") || server_log.contains("restored log file"),
        "{server_log}"
    );
}

/// A copy of `backup` recovered with restore-wal from `home`'s archive to the end of the
/// WAL there (the last `.partial` included), and promoted.
fn recover_to_the_end(work: &WorkDir, backup: &Path, home: &Path) -> PgCluster {
    let data = work.join("restored");
    assert_success(
        &as_postgres("cp")
            .arg("-a")
            .arg(backup)
            .arg(&data)
            .output()
            .unwrap(),
        "cp -a",
    );
    let restore = format!(
        "WALPIPE_BIN_DIR={} {} --home {} --server {SERVER} --partial %f %p",
        bin_dir().display(),
        script("restore-wal").display(),
        home.display()
    );
    let conf = format!(
        "archive_mode = off\nrestore_command = '{restore}'\nsynchronous_standby_names = ''\n"
    );
    let mut restored = PgCluster::adopt(work, &data, &conf).unwrap();
    assert_success(
        &as_postgres("touch")
            .arg(data.join("recovery.signal"))
            .output()
            .unwrap(),
        "touch recovery.signal",
    );
    restored.start().unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while restored.psql("SELECT pg_is_in_recovery()").ok().as_deref() != Some("f") {
        assert!(
            Instant::now() < until,
            "not promoted:\n{}",
            restored.log_tail(40)
        );
        thread::sleep(Duration::from_millis(50));
    }
    restored
}

/// `wal-receive stream` as this user, in a process group of its own, output to `log`.
fn spawn_receiver(home: &Path, pg: &PgCluster, log: &Path) -> Child {
    let mut cmd = wal_receive(pg, "stream", home, SERVER);
    cmd.args(["--slot", "walpipe", "--create-slot", "--max-pause", "1"]);
    Pipeline::spawn(&mut cmd, log)
}

/// Stops the last receiver with SIGINT once it streams (the pg_receivewal a killed one
/// left may have streamed the last segment before it was stopped).
fn stop_receiver(mut receiver: Child, home: &Path, log: &Path) {
    let pid = i32::try_from(receiver.id()).unwrap();
    wait_for("the last receiver streaming", log, || {
        let status = status(home);
        status["pid"].as_i64() == Some(i64::from(pid)) && status["state"] == "streaming"
    });
    kill(Pid::from_raw(pid), Signal::SIGINT).unwrap();
    let _ = receiver.wait();
}

/// The receiver and archive-wal SIGKILLed at random moments, again and again, while the
/// server writes: a final clean archive-wal leaves every segment written since streaming
/// started in the archive, each the very bytes the server archived itself (with `cp`),
/// and nothing in errors/.
#[test]
fn killed_receivers_and_archivers_lose_nothing() {
    const ARCHIVE_WAL: Pipeline = Pipeline {
        stages: &["wal-scan", "wal-compress", "wal-store"],
        hang_timeout: Duration::from_secs(120),
    };
    let report = SeedReport::start("streaming", "killed_receivers_and_archivers_lose_nothing");
    let mut rng = Rng::new(report.seed, 1);
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    let reference = work.mkdir_owned("cp-archive");
    let log = work.join("run.log");
    let conf = format!(
        "archive_mode = on\narchive_command = 'test ! -f {0}/%f && cp %p {0}/%f'\n\
         wal_keep_size = 0\nmax_wal_size = 64MB\nmin_wal_size = 32MB\n",
        reference.display()
    );
    let mut pg = PgCluster::init(&work, &conf).unwrap();
    pg.start().unwrap();
    let mut receiver = spawn_receiver(&home, &pg, &log);
    wait_for("streaming", &log, || status(&home)["state"] == "streaming");
    let first = pg
        .psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        .unwrap();
    pg.pgbench(["-i", "-q", "-s", "1"]).unwrap();
    for round in 0..8 {
        pg.pgbench(["-n", "-c", "2", "-t", "150"]).unwrap();
        pg.switch_wal().unwrap();
        let mut cmd = Command::new(script("archive-wal"));
        clean_command(&mut cmd);
        cmd.env("WALPIPE_BIN_DIR", bin_dir())
            .arg("--home")
            .arg(&home)
            .args(["--server", SERVER, "--compression", "zstd"]);
        let mut archiver = Pipeline::spawn(&mut cmd, &log);
        thread::sleep(Duration::from_millis(rng.below(400)));
        let group = i32::try_from(archiver.id()).unwrap();
        kill_group(group);
        ARCHIVE_WAL.reap(&mut archiver, group, "archive-wal");
        if rng.below(2) == 0 {
            // Its pg_receivewal, in a group of its own, goes on: the next receiver stops it.
            let group = i32::try_from(receiver.id()).unwrap();
            kill_group(group);
            let _ = receiver.wait();
            receiver = spawn_receiver(&home, &pg, &log);
            eprintln!("round {round}: receiver killed and started again");
        }
    }
    let last = pg.switch_wal().unwrap();
    pg.wait_archived(&last, Duration::from_secs(60)).unwrap();
    let streaming = home.join("pg/streaming");
    wait_for("the last segment streamed", &log, || {
        streaming.join(&last).is_file()
    });
    stop_receiver(receiver, &home, &log);
    let mut cmd = Command::new(script("archive-wal"));
    clean_command(&mut cmd);
    let clean = cmd
        .env("WALPIPE_BIN_DIR", bin_dir())
        .arg("--home")
        .arg(&home)
        .args(["--server", SERVER, "--compression", "zstd"])
        .output()
        .unwrap();
    assert_success(&clean, "the clean archive-wal");

    let wals = home.join("pg/wals");
    let mut names: Vec<String> = fs::read_dir(&reference)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 24 && n.as_str() >= first.as_str() && n.as_str() <= last.as_str())
        .collect();
    names.sort();
    assert!(names.len() >= 6, "{names:?}");
    // The queue keeps its newest file for pg_receivewal to resume from (Barman's rule):
    // when the receiver stopped at a segment boundary, without a .partial, that is the
    // last segment, still queued.
    let mut queued: Vec<String> = fs::read_dir(&streaming)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    queued.sort();
    assert!(queued.len() <= 1, "left in the queue: {queued:?}");
    for name in &names {
        let stored = archived_path(&wals, name);
        let content = if stored.is_file() {
            zstd_decompress(&stored)
        } else {
            assert_eq!(
                queued.as_slice(),
                std::slice::from_ref(name),
                "{name} lost (seed {})",
                report.seed
            );
            fs::read(streaming.join(name)).unwrap()
        };
        assert!(
            content == fs::read(reference.join(name)).unwrap(),
            "{name} differs from the server's (seed {})",
            report.seed
        );
    }
    let misplaced = fs::read_dir(home.join("pg/errors")).map_or(0, Iterator::count);
    assert_eq!(misplaced, 0, "files in errors/ (seed {})", report.seed);
}
