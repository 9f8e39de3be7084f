//! The streaming half end to end on PostgreSQL 15: wal-receive fills the streaming queue
//! synchronously (the server waits for it at each commit), archive-wal archives the queue,
//! and a recovery from a base backup and that archive alone, its last `.partial`
//! restored by `restore-wal --partial`, brings back the last transaction committed
//! before the server was killed: a recovery point objective of zero.

use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use walpipe_tests::paths::target_bin;
use walpipe_tests::wrappers::{assert_success, bin_dir, wrapper_as_postgres};
use walpipe_tests::{PgCluster, WorkDir, as_postgres, script};

const SERVER: &str = "pg";

/// `wal-receive stream` as PostgreSQL's user (the queue's files are pg_receivewal's, mode
/// 0600, and archive-wal runs as that user too).
fn start_receiver(home: &Path, pg: &PgCluster, log: &Path) -> Child {
    as_postgres(target_bin("wal-receive"))
        .arg("stream")
        .arg("--home")
        .arg(home)
        .args(["--server", SERVER, "--slot", "walpipe", "--create-slot"])
        .args(["--dbname", &pg.conninfo()])
        .arg("--pg-receivewal")
        .arg(walpipe_tests::pg_bin("pg_receivewal"))
        .stdin(Stdio::null())
        .stderr(Stdio::from(fs::File::create(log).unwrap()))
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn status(home: &Path) -> serde_json::Value {
    fs::read(home.join(".pg-receive-wal.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
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
