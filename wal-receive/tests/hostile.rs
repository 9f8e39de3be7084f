//! wal-receive given what a tired DBA or a hostile user gives it: places that are the
//! archive or PostgreSQL's pg_wal, numbers out of range, and a server that accepts
//! connections and never answers. Each is one line naming the cause, the documented exit
//! code, and nothing created or changed.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use walpipe_tests::wrappers::output_text;
use walpipe_tests::{Snapshot, WorkDir, clean_command};

/// `wal-receive SUBCOMMAND --home HOME --server pg ARGS…`, stdin closed.
fn receive(home: &Path, subcommand: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wal-receive"));
    clean_command(&mut cmd);
    cmd.arg(subcommand)
        .arg("--home")
        .arg(home)
        .args(["--server", "pg"])
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// Refused before anything is created or any server asked: the queue as the archive (or
/// inside it), PostgreSQL's own pg_wal (directly or through a link) as the queue, the
/// lock and status files inside the queue, numbers out of range, a slot name that is
/// not one. No server listens on the port given: none is reached.
#[test]
fn wrong_places_and_numbers_are_refused_before_anything() {
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    fs::create_dir_all(home.join("pg/wals/0000000100000000")).unwrap();
    let pg_wal = work.join("data/pg_wal");
    fs::create_dir_all(pg_wal.join("archive_status")).unwrap();
    std::os::unix::fs::symlink(&pg_wal, work.join("wal-link")).unwrap();
    let before = Snapshot::of(&home);
    let data_before = Snapshot::of(&work.join("data"));
    let dbname = "host=127.0.0.1 port=1 connect_timeout=2";
    let wals = home.join("pg/wals");
    let inside = home.join("pg/wals/0000000100000000");
    let streaming = home.join("pg/streaming");
    let link = work.join("wal-link");
    let cases: Vec<(Vec<String>, i32, String)> = vec![
        (
            vec![format!("--streaming={}", wals.display())],
            78,
            "must not overlap".into(),
        ),
        (
            vec![format!("--streaming={}", inside.display())],
            78,
            "contains --streaming".into(),
        ),
        (
            vec![format!("--streaming={}", pg_wal.display())],
            78,
            format!("--streaming {}: is PostgreSQL's pg_wal", pg_wal.display()),
        ),
        (
            vec![format!("--streaming={}", link.display())],
            78,
            format!("--streaming {}: is PostgreSQL's pg_wal", link.display()),
        ),
        (
            vec![format!("--lock-dir={}", streaming.display())],
            78,
            "the catalogue and the locks must not be in a queue".into(),
        ),
        (vec!["--max-pause=0".into()], 64, "--max-pause 0".into()),
        (
            vec!["--max-pause=3601".into()],
            64,
            "--max-pause 3601".into(),
        ),
        (vec!["--max-pause=-5".into()], 64, "--max-pause".into()),
        (
            vec!["--max-pause=99999999999999999999999".into()],
            64,
            "--max-pause".into(),
        ),
        (vec!["--sql-timeout=0".into()], 64, "--sql-timeout 0".into()),
        (
            vec!["--sql-timeout=4000".into()],
            64,
            "--sql-timeout 4000".into(),
        ),
        (vec!["--slot=../x".into()], 64, "--slot \"../x\"".into()),
        (vec!["--slot=".into()], 64, "--slot \"\"".into()),
    ];
    for (args, code, said) in cases {
        let mut all: Vec<&str> = vec!["--dbname", dbname];
        all.extend(args.iter().map(String::as_str));
        let out = receive(&home, "stream", &all).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            output_text(&out)
        );
        assert!(stderr.contains(&said), "{args:?}: want {said:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("connect"),
            "{args:?}: {stderr}"
        );
        before.assert_unchanged(&format!("{args:?}"));
        data_before.assert_unchanged(&format!("{args:?} (pg_wal)"));
    }
    // The same rules hold for the other subcommands.
    let out = receive(
        &home,
        "reset",
        &[
            "--dbname",
            dbname,
            &format!("--streaming={}", pg_wal.display()),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", output_text(&out));
    data_before.assert_unchanged("reset with pg_wal as the queue");
}

/// A server that never answers is a temporary failure after --sql-timeout: the one-shot
/// subcommands end with 75 and one line saying so; the supervisor keeps waiting and
/// retrying (its status says why), and still stops at once on SIGINT.
#[test]
fn a_server_that_never_answers_is_a_temporary_failure() {
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    let port = walpipe_tests::receiver::silent_postgres();
    let dbname = format!("host=127.0.0.1 port={port} user=nobody dbname=x");
    for (subcommand, extra) in [
        ("create-slot", vec!["--slot=walpipe"]),
        ("drop-slot", vec!["--slot=walpipe"]),
        ("reset", vec![]),
        ("stream", vec!["--once"]),
    ] {
        let started = Instant::now();
        let mut args = vec!["--dbname", dbname.as_str(), "--sql-timeout=2"];
        args.extend(extra);
        let out = receive(&home, subcommand, &args).output().unwrap();
        let took = started.elapsed();
        assert_eq!(
            out.status.code(),
            Some(75),
            "{subcommand}: {}",
            output_text(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ours: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("wal-receive:"))
            .collect();
        assert_eq!(ours.len(), 1, "{subcommand}: {stderr}");
        assert!(
            ours[0].contains("PostgreSQL did not answer within 2 s"),
            "{subcommand}: {stderr}"
        );
        // Bounded by the deadline, not by the server (generous for a loaded machine).
        assert!(took < Duration::from_secs(20), "{subcommand} took {took:?}");
    }

    let log = work.join("stream.log");
    let mut child = receive(
        &home,
        "stream",
        &["--dbname", &dbname, "--sql-timeout=1", "--max-pause=1"],
    )
    .stderr(fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let status_path = home.join(".pg-receive-wal.json");
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status: serde_json::Value = fs::read(&status_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if status["restarts"].as_u64().unwrap_or(0) >= 2 {
            break status;
        }
        assert!(
            Instant::now() < until,
            "no retries: {status}\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("did not answer within 1 s")),
        "{status}"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the supervisor gave up"
    );
    let stopped = Instant::now();
    kill(
        Pid::from_raw(i32::try_from(child.id()).unwrap()),
        Signal::SIGINT,
    )
    .unwrap();
    let exit = child.wait().unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(5), "{exit:?}");
    assert!(!exit.success(), "{exit:?}");
}

/// Started in the background of a script (SIGINT ignored, as a non-interactive shell
/// starts `cmd &`), the receiver says at once that SIGINT will not stop it.
#[test]
fn an_ignored_sigint_is_said_at_start() {
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    // `cmd &` in a script: SIGINT ignored; `$2` is a log flag or nothing.
    let in_background = |flags: &str| {
        Command::new("bash")
            .arg("-c")
            .arg(r#""$0" stream $2 --home "$1" --server pg --dbname 'host=127.0.0.1 port=1' --max-pause=0 & wait $!"#)
            .arg(env!("CARGO_BIN_EXE_wal-receive"))
            .arg(&home)
            .arg(flags)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = in_background("");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: started with SIGINT ignored")
            && !stderr.contains("SIGTERM ignored"),
        "{stderr}"
    );
    // A warning: -qq (errors only) silences it, once the flags are read.
    let silent = in_background("-qq");
    let said = String::from_utf8_lossy(&silent.stderr);
    assert!(!said.contains("ignored"), "{said}");
    assert_eq!(silent.status.code(), out.status.code(), "{said}");
    // The same receiver started plainly says nothing of it.
    let plain = receive(
        &home,
        "stream",
        &["--dbname", "host=127.0.0.1 port=1", "--max-pause=0"],
    )
    .output()
    .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stderr).contains("ignored"));
}
