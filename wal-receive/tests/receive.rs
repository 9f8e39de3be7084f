//! wal-receive against a real PostgreSQL 15: streaming over a slot through kills and
//! restarts, byte for byte what the server archives; one receiver per server; the slot's
//! lifecycle; a lost position reported once and realigned by `reset`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use walpipe_tests::receiver::{receiver_status, wal_receive};
use walpipe_tests::wrappers::output_text;
use walpipe_tests::{PgCluster, WorkDir};

const SLOT: &str = "walpipe";

/// A cluster archiving with `cp` (the reference copy of every segment) and a walpipe
/// home whose streaming queue the receiver fills.
struct Fixture {
    work: WorkDir,
    pg: PgCluster,
    archive: PathBuf,
    home: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let work = WorkDir::new();
        let archive = work.mkdir_owned("cp-archive");
        let home = work.mkdir_owned("home");
        let conf = format!(
            "archive_mode = on\narchive_command = 'test ! -f {0}/%f && cp %p {0}/%f'\n\
             wal_keep_size = 0\nmax_wal_size = 64MB\nmin_wal_size = 32MB\n",
            archive.display()
        );
        let mut pg = PgCluster::init(&work, &conf).unwrap();
        pg.start().unwrap();
        Fixture {
            work,
            pg,
            archive,
            home,
        }
    }

    fn streaming(&self) -> PathBuf {
        self.home.join("pg/streaming")
    }

    fn status(&self) -> Value {
        receiver_status(&self.home, "pg")
    }

    /// `wal-receive SUBCOMMAND --home H --server pg --dbname … EXTRA…`
    fn command(&self, subcommand: &str, extra: &[&str]) -> Command {
        let mut cmd = wal_receive(&self.pg, subcommand, &self.home, "pg");
        cmd.args(extra);
        cmd
    }

    fn run(&self, subcommand: &str, extra: &[&str]) -> Output {
        self.command(subcommand, extra).output().unwrap()
    }

    fn spawn(&self, extra: &[&str]) -> Receiver {
        let child = self
            .command("stream", extra)
            .stderr(Stdio::from(
                fs::File::create(self.work.join("receive.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        Receiver { child }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.work.join("receive.log")).unwrap_or_default()
    }

    /// Waits until `done` holds, or fails naming `what` with the receiver's log.
    fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut(&Fixture) -> bool) {
        let until = Instant::now() + timeout;
        while !done(self) {
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}\nstatus: {}\nlog:\n{}\nserver:\n{}",
                self.status(),
                self.log(),
                self.pg.log_tail(20)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes some WAL and switches; returns the segment closed.
    fn some_wal(&self) -> String {
        self.pg
            .psql("CREATE TABLE IF NOT EXISTS t(i int); INSERT INTO t SELECT generate_series(1, 20000)")
            .unwrap();
        self.pg.switch_wal().unwrap()
    }
}

/// A running `wal-receive stream`, stopped with SIGINT when dropped.
struct Receiver {
    child: Child,
}

impl Receiver {
    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// The pg_receivewal it runs now, if any.
    fn pg_receivewal(&self) -> Option<i32> {
        let children =
            fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid())).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGINT);
        self.child.wait().unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Its pg_receivewal is in a group of its own: a SIGKILL of the receiver leaves it.
        let child = self.pg_receivewal();
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGKILL);
        let _ = self.child.wait();
        if let Some(child) = child {
            let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
        }
    }
}

fn segments_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The receiver keeps streaming through a killed pg_receivewal and a server restart;
/// every segment it completed is the very segment the server archived, with no gap.
#[test]
fn streams_through_kills_and_restarts_byte_for_byte() {
    let mut fx = Fixture::new();
    let created = fx.run("create-slot", &["--slot", SLOT]);
    assert!(created.status.success(), "{}", output_text(&created));
    let receiver = fx.spawn(&["--slot", SLOT, "--max-pause", "2"]);
    fx.wait_for("streaming", Duration::from_secs(30), |fx| {
        fx.status()["state"] == "streaming"
    });
    let first = fx.some_wal();
    fx.wait_for("the first segment", Duration::from_secs(30), |fx| {
        segments_in(&fx.streaming()).contains(&first)
    });

    // pg_receivewal killed outright: restarted, and it resumes from its .partial.
    let victim = receiver.pg_receivewal().expect("pg_receivewal runs");
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    let second = fx.some_wal();
    fx.wait_for("the restart", Duration::from_secs(30), |fx| {
        fx.status()["restarts"].as_u64() >= Some(1)
            && segments_in(&fx.streaming()).contains(&second)
    });
    assert!(receiver.pg_receivewal().is_some_and(|pid| pid != victim));

    // The server restarted: the receiver reconnects by itself.
    fx.pg.restart().unwrap();
    let mut last = String::new();
    for _ in 0..3 {
        last = fx.some_wal();
    }
    fx.wait_for("the last segment", Duration::from_secs(60), |fx| {
        segments_in(&fx.streaming()).contains(&last)
    });
    fx.pg.wait_archived(&last, Duration::from_secs(30)).unwrap();

    let streamed = segments_in(&fx.streaming());
    let archived = segments_in(&fx.archive);
    let from = &streamed[0];
    let expected: Vec<&String> = archived
        .iter()
        .filter(|n| *n >= from && **n <= last)
        .collect();
    let got: Vec<&String> = streamed.iter().filter(|n| **n <= last).collect();
    assert_eq!(got, expected, "a gap in the streamed segments");
    for name in got {
        assert!(
            fs::read(fx.streaming().join(name)).unwrap()
                == fs::read(fx.archive.join(name)).unwrap(),
            "{name} differs from the server's"
        );
    }
    let status = fx.status();
    assert_eq!(status["slot"], SLOT);
    assert!(
        status["last_segment"]
            .as_str()
            .is_some_and(|s| s >= last.as_str()),
        "{status}"
    );
    assert!(status["restarts"].as_u64() >= Some(2), "{status}");

    one_receiver_at_a_time(&fx, receiver);
}

/// A second receiver refuses; a killed receiver's pg_receivewal is stopped by the next;
/// the slot is dropped only once nothing streams from it.
fn one_receiver_at_a_time(fx: &Fixture, receiver: Receiver) {
    let mut receiver = receiver;
    // A second receiver for the server refuses with Barman's words, and leaves the first.
    let second = fx.run("stream", &["--slot", SLOT]);
    assert_eq!(second.status.code(), Some(75), "{}", output_text(&second));
    assert_eq!(
        String::from_utf8_lossy(&second.stderr).trim(),
        "wal-receive: Another receive-wal process is already running for server pg."
    );
    assert!(receiver.pg_receivewal().is_some());

    // The receiver killed outright leaves its pg_receivewal (a group of its own): the
    // next receiver stops that one before it starts its own, never two on one queue.
    let orphan = receiver.pg_receivewal().unwrap();
    kill(Pid::from_raw(receiver.pid()), Signal::SIGKILL).unwrap();
    receiver.child.wait().unwrap();
    assert!(Path::new(&format!("/proc/{orphan}")).exists());
    let mut receiver = fx.spawn(&["--slot", SLOT, "--max-pause", "2"]);
    fx.wait_for("the new receiver", Duration::from_secs(30), |fx| {
        let status = fx.status();
        status["state"] == "streaming"
            && status["pid"].as_i64() == Some(i64::from(receiver.pid()))
            && status["child"][0]
                .as_i64()
                .is_some_and(|pid| pid != i64::from(orphan))
    });
    assert!(
        !Path::new(&format!("/proc/{orphan}/cmdline")).exists()
            || fs::read(format!("/proc/{orphan}/cmdline"))
                .unwrap()
                .is_empty(),
        "the orphan still runs"
    );
    assert!(
        fx.log()
            .contains("left running by a receiver that was killed"),
        "{}",
        fx.log()
    );

    // The slot cannot be dropped while streamed from; SIGINT stops the receiver and its
    // pg_receivewal, and then it can. "Streaming" in the status means pg_receivewal was
    // started: wait for the server to see it streaming from the slot.
    fx.wait_for("the slot in use", Duration::from_secs(30), |fx| {
        fx.pg
            .psql(&format!(
                "SELECT active FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
            ))
            .is_ok_and(|active| active == "t")
    });
    let busy = fx.run("drop-slot", &["--slot", SLOT]);
    assert_eq!(busy.status.code(), Some(78), "{}", output_text(&busy));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("is in use"));
    let child = receiver.pg_receivewal().unwrap();
    let blocked = fs::read_to_string(format!("/proc/{child}/status")).unwrap();
    assert!(blocked.contains("SigBlk:\t0000000000000000"), "{blocked}");
    let asked = Instant::now();
    receiver.stop();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "SIGINT took {:?}",
        asked.elapsed()
    );
    let state = fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains("zombie"),
        "pg_receivewal outlived the receiver:\n{state}\n{}",
        fx.log()
    );
    assert!(
        fx.log().contains("SIGINT received. Terminate gracefully."),
        "{}",
        fx.log()
    );
    let mut dropped = fx.run("drop-slot", &["--slot", SLOT]);
    for _ in 0..50 {
        if dropped.status.success() {
            break;
        }
        // The walsender may take a moment to let go of the slot.
        thread::sleep(Duration::from_millis(100));
        dropped = fx.run("drop-slot", &["--slot", SLOT]);
    }
    assert!(dropped.status.success(), "{}", output_text(&dropped));
}

#[test]
fn the_slot_is_created_reserving_wal_once_and_dropped_once() {
    let fx = Fixture::new();
    let created = fx.run("create-slot", &["--slot", SLOT]);
    assert!(created.status.success(), "{}", output_text(&created));
    // Reserving WAL from creation: initialised before anything streams.
    let restart = fx
        .pg
        .psql(
            "SELECT restart_lsn IS NOT NULL FROM pg_replication_slots WHERE slot_name = 'walpipe'",
        )
        .unwrap();
    assert_eq!(restart, "t");
    let again = fx.run("create-slot", &["--slot", SLOT]);
    assert_eq!(again.status.code(), Some(78), "{}", output_text(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let tolerated = fx.run("create-slot", &["--slot", SLOT, "--if-not-exists"]);
    assert!(tolerated.status.success(), "{}", output_text(&tolerated));
    assert!(fx.run("drop-slot", &["--slot", SLOT]).status.success());
    let gone = fx.run("drop-slot", &["--slot", SLOT]);
    assert_eq!(gone.status.code(), Some(78), "{}", output_text(&gone));
    // A missing slot stops the receiver at once, naming the command that makes it.
    let missing = fx.run("stream", &["--slot", SLOT]);
    assert_eq!(missing.status.code(), Some(78), "{}", output_text(&missing));
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        said.contains("replication slot 'walpipe' doesn't exist") && said.contains("create-slot"),
        "{said}"
    );
    for bad in ["Walpipe", "a-b", "", "x'y"] {
        let out = fx.run("create-slot", &["--slot", bad]);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{bad:?}: {}",
            output_text(&out)
        );
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    }
}

/// Without a slot the server recycles what the queue waits for: the receiver stops at
/// once with one line that says so and names `reset`; `reset` realigns the queue and
/// streaming starts again.
#[test]
fn a_lost_position_is_said_once_and_reset_realigns() {
    let fx = Fixture::new();
    fs::create_dir_all(fx.streaming()).unwrap();
    let stale = fx.streaming().join("000000010000000000000001.partial");
    fs::write(&stale, b"").unwrap();
    for _ in 0..4 {
        fx.some_wal();
        fx.pg.psql("CHECKPOINT").unwrap();
    }
    let lost = fx.run("stream", &["--max-pause", "1"]);
    assert_eq!(lost.status.code(), Some(78), "{}", output_text(&lost));
    let said = String::from_utf8_lossy(&lost.stderr);
    let ours: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("wal-receive:"))
        .collect();
    assert_eq!(ours.len(), 1, "{said}");
    assert!(
        ours[0].contains("has already been removed") && ours[0].contains("wal-receive reset"),
        "{said}"
    );

    // -q keeps pg_receivewal's own error lines (a warning or error of it is one of ours)
    // and drops its progress chatter.
    let quiet = fx.run("stream", &["--max-pause", "1", "-q"]);
    assert_eq!(quiet.status.code(), Some(78), "{}", output_text(&quiet));
    let said = String::from_utf8_lossy(&quiet.stderr);
    assert!(
        said.lines()
            .any(|l| l.starts_with("pg: pg_receivewal: error: ")
                && l.contains("has already been removed")),
        "{said}"
    );
    assert!(!said.contains("starting log streaming"), "{said}");
    assert!(
        String::from_utf8_lossy(&lost.stderr).contains("pg: pg_receivewal: starting log streaming"),
        "{}",
        output_text(&lost)
    );

    let reset = fx.run("reset", &[]);
    assert!(reset.status.success(), "{}", output_text(&reset));
    let current = fx
        .pg
        .psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        .unwrap();
    assert!(!stale.exists());
    assert!(fx.streaming().join(format!("{current}.partial")).is_file());
    let again = fx.run("reset", &[]);
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("Nothing to do. Position of receive-wal is aligned.")
    );
    // A slot named but missing: the reset goes on, and says the slot is missing.
    let no_slot = fx.run("reset", &["--slot", "nowhere"]);
    assert!(no_slot.status.success(), "{}", output_text(&no_slot));
    assert!(
        String::from_utf8_lossy(&no_slot.stderr)
            .contains("replication slot 'nowhere' does not exist on server 'pg'"),
        "{}",
        output_text(&no_slot)
    );

    let mut receiver = fx.spawn(&[]);
    let closed = fx.some_wal();
    fx.wait_for("streaming after the reset", Duration::from_secs(30), |fx| {
        segments_in(&fx.streaming()).contains(&closed)
    });
    receiver.stop();

    // A queue ahead of the server (another server's WAL) is refused, untouched.
    let ahead = fx.streaming().join("0000000100000009000000FF.partial");
    fs::write(&ahead, b"").unwrap();
    let refused = fx.run("reset", &[]);
    assert_eq!(refused.status.code(), Some(78), "{}", output_text(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is ahead of PostgreSQL"));
    assert!(ahead.exists());
}

/// What an attack found: a `pg_receivewal --version` that never answers is given 10 s,
/// then killed with what it started, and the receiver stops with 78 naming it; a status
/// file naming some other live process as the orphaned pg_receivewal does not get that
/// process signalled.
#[test]
fn a_hanging_pg_receivewal_and_a_status_naming_another_process() {
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new();
    let mut sleeper = Command::new("sleep").arg("1000").spawn().unwrap();
    let pid = i32::try_from(sleeper.id()).unwrap();
    let start = wal_core::process::start_time(pid).unwrap();
    fs::write(
        fx.home.join(".pg-receive-wal.json"),
        format!(
            "{{\"pid\": 999999, \"start_time\": 1, \"server\": \"pg\", \"state\": \"streaming\", \
             \"application_name\": \"x\", \"synchronous\": false, \"child\": [{pid}, {start}], \
             \"slot\": null, \"last_segment\": null, \"last_lsn\": null, \"timeline\": null, \
             \"restarts\": 0, \"last_error\": null, \"updated\": 0}}"
        ),
    )
    .unwrap();
    let hang = fx.work.join("hang");
    fs::write(&hang, "#!/bin/sh\nsleep 100077\n").unwrap();
    fs::set_permissions(&hang, fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new(walpipe_tests::paths::target_bin("wal-receive"));
    walpipe_tests::clean_command(&mut cmd);
    let started = Instant::now();
    let out = cmd
        .arg("stream")
        .arg("--home")
        .arg(&fx.home)
        .args(["--server", "pg", "--dbname", &fx.pg.conninfo(), "--once"])
        .arg("--pg-receivewal")
        .arg(&hang)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(78), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--version did not answer within 10 s"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("Not stopping pid {pid}")),
        "{stderr}"
    );
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "the sleep was signalled"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    // Nothing the hanging --version started is left.
    let left = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| fs::read(e.ok()?.path().join("cmdline")).ok())
        .any(|cmdline| cmdline.windows(6).any(|w| w == b"100077"));
    assert!(!left, "the hanging --version's sleep is still running");
}
