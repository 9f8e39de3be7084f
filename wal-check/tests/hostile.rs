//! wal-check given what a tired DBA or a hostile user gives it: numbers and ages that
//! are none, places that overlap, a catalogue that is garbage, a link or a fifo, a
//! receiver status that is garbage, a server that never answers. One line or one item
//! naming the cause, the documented exit status, and nothing created or changed: a check
//! only reads.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use walpipe_tests::wrappers::output_text;
use walpipe_tests::{Snapshot, WorkDir, clean_command};

fn check(home: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wal-check"));
    clean_command(&mut cmd);
    cmd.arg("check")
        .arg("--home")
        .arg(home)
        .args(["--server", "pg"])
        .args(args)
        .stdin(Stdio::null());
    cmd.output().unwrap()
}

/// Refused before looking: one line on stderr, exit 64 (usage) or 78 (places), and with
/// --nagios Nagios' UNKNOWN (3) on stdout; nothing created.
#[test]
fn settings_that_are_none_are_refused() {
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    fs::create_dir_all(home.join("pg/wals")).unwrap();
    let pg_wal = work.join("data/pg_wal");
    fs::create_dir_all(pg_wal.join("archive_status")).unwrap();
    let before = Snapshot::of(&home);
    let wals = home.join("pg/wals").display().to_string();
    let pg_wal = pg_wal.display().to_string();
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec!["--check-timeout=0".into()], 64, "--check-timeout 0"),
        (
            vec!["--check-timeout=99999".into()],
            64,
            "--check-timeout 99999",
        ),
        (vec!["--last-wal-maximum-age=soon".into()], 64, "not an age"),
        (
            vec!["--last-wal-maximum-age=-1 hours".into()],
            64,
            "not an age",
        ),
        (
            vec!["--last-wal-maximum-age=99999999999999 weeks".into()],
            64,
            "not an age",
        ),
        (
            vec!["--max-incoming-wals-queue=-1".into()],
            64,
            "--max-incoming-wals-queue",
        ),
        (vec!["--sql-timeout=0".into()], 64, "--sql-timeout 0"),
        (vec!["--archiver=maybe".into()], 64, "--archiver"),
        (vec!["--slot=../x".into()], 64, "--slot"),
        (vec!["--dbname=host".into()], 64, "--dbname"),
        (vec![format!("--incoming={wals}")], 78, "must not overlap"),
        (
            vec![format!("--streaming={pg_wal}")],
            78,
            "is PostgreSQL's pg_wal",
        ),
    ];
    for (args, code, said) in cases {
        let mut all: Vec<&str> = vec!["--dbname", "host=127.0.0.1 port=1"];
        all.extend(args.iter().map(String::as_str));
        let out = check(&home, &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            output_text(&out)
        );
        assert!(
            stderr.contains(said),
            "{args:?}: want {said:?}: {}",
            output_text(&out)
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {}", output_text(&out));
        assert!(out.stdout.is_empty(), "{args:?}: {}", output_text(&out));
        if code == 78 {
            all.push("--nagios");
            let nagios = check(&home, &all);
            assert_eq!(
                nagios.status.code(),
                Some(3),
                "{args:?}: {}",
                output_text(&nagios)
            );
            assert!(
                String::from_utf8_lossy(&nagios.stdout).starts_with("BARMAN UNKNOWN - "),
                "{}",
                output_text(&nagios)
            );
        }
        before.assert_unchanged(&format!("{args:?}"));
    }
}

/// A catalogue that is garbage, a link or a fifo fails "WAL archive" naming it (never a
/// hang); a status file that is garbage is a receiver that is not running; errors/ that
/// is a file has no errors listed; a server that never answers fails "PostgreSQL" after
/// --sql-timeout. Nothing is created or changed.
#[test]
fn files_that_are_not_what_they_claim_are_items_not_crashes() {
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    let wals = home.join("pg/wals");
    fs::create_dir_all(&wals).unwrap();
    let xlogdb = wals.join("pg-xlog.db");
    fs::write(home.join(".pg-receive-wal.json"), b"{\"pid\": \"x\"").unwrap();
    fs::write(home.join("pg/errors"), b"not a directory").unwrap();
    let port = walpipe_tests::receiver::silent_postgres();
    let dbname = format!("host=127.0.0.1 port={port} user=x dbname=x");
    let base = [
        "--dbname",
        dbname.as_str(),
        "--sql-timeout=2",
        "--streaming-archiver=on",
        "--pg-receivewal=/nonexistent",
    ];
    let outside = work.join("outside.db");
    let outside_text = "000000010000000000000001\t16777216\t1.0\tNone\n";
    fs::write(&outside, outside_text).unwrap();
    let garbage = "000000010000000000000001\t16777216\t1.0\tNone\n\u{0}\u{1}garbage\n";
    for (what, make, said) in [
        (
            "garbage",
            Box::new(|p: &Path| fs::write(p, garbage).unwrap()) as Box<dyn Fn(&Path)>,
            "line 2".to_owned(),
        ),
        (
            "a symlink",
            Box::new(|p: &Path| std::os::unix::fs::symlink(&outside, p).unwrap()),
            "a symbolic link, not a regular file".to_owned(),
        ),
        (
            "a fifo",
            Box::new(|p: &Path| {
                nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            }),
            "not a regular file".to_owned(),
        ),
    ] {
        let _ = fs::remove_file(&xlogdb);
        make(&xlogdb);
        let before = Snapshot::of(&home);
        let started = Instant::now();
        let out = check(&home, &base);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: {:?}",
            started.elapsed()
        );
        assert_eq!(out.status.code(), Some(1), "{what}: {}", output_text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("\tWAL archive: FAILED"))
            .unwrap_or_else(|| panic!("{what}: {}", output_text(&out)));
        assert!(
            line.contains(&xlogdb.display().to_string()) && line.contains(&said),
            "{what}: {line}"
        );
        assert!(
            stdout.contains("\tPostgreSQL: FAILED (cannot connect to PostgreSQL: PostgreSQL did not answer within 2 s)"),
            "{what}: {}",
            output_text(&out)
        );
        assert!(
            stdout.contains("\treceive-wal running: FAILED (")
                && stdout.contains("not a receiver status"),
            "{what}: {}",
            output_text(&out)
        );
        assert!(stdout.contains("\tarchiver errors: OK\n"));
        assert!(out.stderr.is_empty(), "{what}: {}", output_text(&out));
        before.assert_unchanged(what);
        assert_eq!(fs::read_to_string(&outside).unwrap(), outside_text);
    }
}

const NOWHERE: &str = "host=127.0.0.1 port=1 connect_timeout=2";

/// `check` with no server reachable, bounded in time.
fn run(home: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--dbname", NOWHERE, "--check-timeout=3"];
    all.extend(args);
    let started = Instant::now();
    let out = check(home, &all);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    out
}

/// The console line of item `name`.
fn item(out: &Output, name: &str) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(&format!("\t{name}: ")))
        .unwrap_or_else(|| panic!("no {name}: {}", output_text(out)))
        .to_owned()
}

/// What an attack found in the archive's files, each now an item that fails rather
/// than a false OK or a flood: a queue of non-WAL entries, an unreadable catalogue with
/// WAL in a queue, a catalogue line of a megabyte, a newest WAL whose time is no time.
#[test]
fn catalogues_and_queues_found_by_attack() {
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    let pg = home.join("pg");
    fs::create_dir_all(pg.join("wals")).unwrap();
    fs::create_dir_all(pg.join("incoming/subdir")).unwrap();
    fs::write(pg.join("incoming/README.txt"), b"x").unwrap();
    let xlogdb = pg.join("wals/pg-xlog.db");
    // Non-WAL entries in a queue are not WAL that arrived.
    let out = run(&home, &[]);
    assert!(
        item(&out, "WAL archive").starts_with("\tWAL archive: FAILED"),
        "{}",
        output_text(&out)
    );
    // A catalogue that cannot be read fails, whatever waits in the queue.
    fs::write(pg.join("incoming/000000010000000000000003"), b"x").unwrap();
    fs::write(&xlogdb, "000000010000000000000001\t-5\t1.0\tNone\tNone\n").unwrap();
    let out = run(&home, &["--nagios"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("pg_wals="),
        "{}",
        output_text(&out)
    );
    let out = run(&home, &[]);
    assert!(
        item(&out, "WAL archive").contains("line 1"),
        "{}",
        output_text(&out)
    );
    assert_eq!(item(&out, "wal size"), "\twal size: OK (unknown)");
    // A megabyte line is not read whole nor echoed.
    let mut long = "0".repeat(1 << 20);
    long.push('\n');
    fs::write(&xlogdb, long).unwrap();
    let out = run(&home, &[]);
    assert!(out.stdout.len() < 4096, "{} bytes", out.stdout.len());
    assert!(
        item(&out, "WAL archive").contains("over 4096 bytes"),
        "{}",
        output_text(&out)
    );
    // The newest segment's time is no time: no age, and not OK.
    fs::write(
        &xlogdb,
        "000000010000000000000001\t10\t1.0\tNone\tNone\n000000010000000000000002\t10\tinf\tNone\tNone\n",
    )
    .unwrap();
    let out = run(&home, &["--last-wal-maximum-age", "1 hours"]);
    assert!(
        item(&out, "wal maximum age").contains("FAILED (No WAL files archived)"),
        "{}",
        output_text(&out)
    );
}

/// What an attack found around the receiver and the outputs: a status naming pid 1 is
/// no running receiver; a status file that is a fifo or /dev/zero is said, without a hang
/// or a flood; a metrics path that is a link is left alone while the report is printed;
/// a mistyped home is said and no WAL switched for it; bad arguments under --nagios are
/// UNKNOWN.
#[test]
fn receivers_and_outputs_found_by_attack() {
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    fs::create_dir_all(home.join("pg/wals")).unwrap();
    let status = home.join(".pg-receive-wal.json");
    let stat_of_1 = fs::read_to_string("/proc/1/stat").unwrap();
    let start_of_1 = stat_of_1
        .rsplit_once(") ")
        .unwrap()
        .1
        .split_whitespace()
        .nth(19)
        .unwrap();
    for start in ["null", start_of_1] {
        fs::write(
            &status,
            format!(
                "{{\"pid\": 1, \"start_time\": {start}, \"server\": \"pg\", \"state\": \"streaming\", \
                 \"application_name\": \"x\", \"synchronous\": false, \"child\": null, \"slot\": null, \
                 \"last_segment\": null, \"last_lsn\": null, \"timeline\": null, \"restarts\": 0, \
                 \"last_error\": null, \"updated\": 0}}"
            ),
        )
        .unwrap();
        let out = run(&home, &["--streaming-archiver=on"]);
        assert!(
            item(&out, "receive-wal running")
                .contains("FAILED (wal-receive (pid 1) is not running"),
            "{}",
            output_text(&out)
        );
    }
    fs::remove_file(&status).unwrap();
    nix::unistd::mkfifo(&status, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = run(&home, &["--streaming-archiver=on"]);
    assert!(
        item(&out, "receive-wal running").contains("not a regular file"),
        "{}",
        output_text(&out)
    );
    fs::remove_file(&status).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &status).unwrap();
    let out = run(&home, &["--streaming-archiver=on"]);
    assert!(
        item(&out, "receive-wal running").contains("symbolic link"),
        "{}",
        output_text(&out)
    );
    // A metrics path that is a link: the report is printed, the link and its target stay.
    let target = work.join("target.prom");
    fs::write(&target, b"keep").unwrap();
    let link = work.join("walpipe.prom");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = run(&home, &["--prometheus", link.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("Server pg:"),
        "{}",
        output_text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a regular file"),
        "{}",
        output_text(&out)
    );
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&target).unwrap(), b"keep");
    // A mistyped home: said, and nothing made there.
    let out = check(&work.join("hmoe"), &["--dbname", NOWHERE]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hmoe does not exist: is --home right?"),
        "{}",
        output_text(&out)
    );
    assert!(!work.join("hmoe").exists());
    // Bad arguments under --nagios are Nagios' UNKNOWN.
    let out = check(&home, &["--nagios", "--max-incoming-wals-queue=-1"]);
    assert_eq!(out.status.code(), Some(3), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("BARMAN UNKNOWN - "));
}
