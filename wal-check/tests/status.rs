//! `wal-check status` on a real PostgreSQL 15 archiving into walpipe and streaming to
//! wal-receive: Barman's status lines, walpipe's (the receiver, its lag, its slot, the
//! archive per timeline), the JSON form, and the Prometheus file as Prometheus' own
//! Python parser reads it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use walpipe_tests::paths::script;
use walpipe_tests::receiver::{receiver_status, wait_until, wal_receive};
use walpipe_tests::wrappers::bin_dir;
use walpipe_tests::{PgCluster, WorkDir, clean_command};

const SERVER: &str = "pg";

fn status(home: &Path, pg: &PgCluster, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wal-check"));
    clean_command(&mut cmd);
    cmd.arg("status")
        .arg("--home")
        .arg(home)
        .args(["--server", SERVER, "--dbname", &pg.conninfo()])
        .args(["--streaming-archiver", "on", "--slot", "walpipe"])
        .args(args)
        .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `Server pg:` then `\tdescription: message` lines, as a map.
fn lines(out: &Output) -> Vec<(String, String)> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("Server pg:"), "{stdout}");
    lines
        .map(|line| {
            let (description, message) = line
                .strip_prefix('\t')
                .and_then(|l| l.split_once(": "))
                .unwrap_or_else(|| panic!("{line:?}"));
            (description.to_owned(), message.to_owned())
        })
        .collect()
}

fn message<'a>(lines: &'a [(String, String)], description: &str) -> &'a str {
    let found = lines.iter().find(|(d, _)| d == description);
    found.map_or_else(
        || panic!("no {description:?} in {lines:#?}"),
        |(_, m)| m.as_str(),
    )
}

fn start_receiver(home: &Path, pg: &PgCluster, log: &Path) -> Child {
    wal_receive(pg, "stream", home, SERVER)
        .args(["--slot", "walpipe", "--create-slot"])
        .stderr(Stdio::from(fs::File::create(log).unwrap()))
        .spawn()
        .unwrap()
}

/// The Prometheus file through `prometheus_client.parser`: family → [(labels, value)].
fn parse_prometheus(path: &Path) -> Value {
    let venv: PathBuf = walpipe_tests::venv::venv("prometheus-venv", "prometheus_client\n");
    let program = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = {}\n\
        for f in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
        \x20   assert f.type == 'gauge', f.type\n\
        \x20   assert f.documentation, f.name\n\
        \x20   out[f.name] = [[s.labels, s.value] for s in f.samples]\n\
        print(json.dumps(out))\n";
    let mut cmd = Command::new(venv.join("bin/python3"));
    clean_command(&mut cmd);
    let out = cmd.arg("-c").arg(program).arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused {}:\n{}\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr),
        fs::read_to_string(path).unwrap_or_default()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn gauge(families: &Value, name: &str) -> f64 {
    let samples = families[name]
        .as_array()
        .unwrap_or_else(|| panic!("no {name} in {families}"));
    assert_eq!(samples.len(), 1, "{name}: {samples:?}");
    assert_eq!(samples[0][0]["server"], SERVER);
    samples[0][1].as_f64().unwrap()
}

/// Exact figures (0 and 1) are exact in floating point.
#[allow(clippy::float_cmp)]
fn assert_gauge(families: &Value, name: &str, expected: f64) {
    assert_eq!(gauge(families, name), expected, "{name}");
}

#[test]
fn status_says_how_archiving_and_streaming_go() {
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    // The archive is PostgreSQL's user's (archive-command runs as it); the receiver
    // runs as the test's user and makes the streaming queue its own.
    work.mkdir_owned("home/pg/wals");
    let command = format!(
        "WALPIPE_BIN_DIR={} {} --direct --home {} --server {SERVER} %p",
        bin_dir().display(),
        script("archive-command").display(),
        home.display()
    );
    let mut pg = PgCluster::init(
        &work,
        &format!("archive_mode = on\narchive_command = '{command}'\n"),
    )
    .unwrap();
    pg.start().unwrap();
    let log = work.join("receive.log");
    let mut receiver = start_receiver(&home, &pg, &log);
    let said = || {
        format!(
            "xlog.db:\n{}\nstatus:\n{}\nreceiver:\n{}\nserver:\n{}",
            fs::read_to_string(home.join("pg/wals/pg-xlog.db")).unwrap_or_default(),
            receiver_status(&home, SERVER),
            fs::read_to_string(&log).unwrap_or_default(),
            pg.log_tail(20)
        )
    };
    let minute = Duration::from_secs(60);
    wait_until(
        "the receiver streaming",
        minute,
        || receiver_status(&home, SERVER)["state"] == "streaming",
        said,
    );
    for _ in 0..2 {
        pg.psql("CREATE TABLE IF NOT EXISTS t AS SELECT 1 AS i; INSERT INTO t SELECT 1")
            .unwrap();
        pg.switch_wal().unwrap();
    }
    wait_until(
        "two WAL archived and one streamed",
        minute,
        || {
            fs::read_to_string(home.join("pg/wals/pg-xlog.db"))
                .is_ok_and(|t| t.lines().count() >= 2)
                && receiver_status(&home, SERVER)["last_segment"].is_string()
        },
        said,
    );
    let prom = work.join("walpipe.prom");
    let out = status(&home, &pg, &["--prometheus", prom.to_str().unwrap()]);
    let seen = lines(&out);
    assert!(
        message(&seen, "PostgreSQL version").starts_with("15."),
        "{seen:#?}"
    );
    assert_eq!(message(&seen, "Cluster state"), "in production");
    assert_eq!(message(&seen, "Current WAL segment").len(), 24);
    assert_eq!(
        message(&seen, "PostgreSQL 'archive_command' setting"),
        command
    );
    let last = message(&seen, "Last archived WAL");
    let (wal, at) = last.split_once(", at ").unwrap_or_else(|| panic!("{last}"));
    assert_eq!(wal.len(), 24);
    // ctime's form: `Sun Dec  6 14:00:00 2026`.
    assert_eq!(at.len(), 24, "{at:?}");
    assert_eq!(message(&seen, "Failures of WAL archiver"), "0");
    assert!(message(&seen, "Server WAL archiving rate").ends_with("/hour"));
    let receiving = message(&seen, "WAL streaming receiver");
    assert!(
        receiving.starts_with(&format!("streaming (pid {}, slot walpipe", receiver.id())),
        "{receiving}"
    );
    assert!(message(&seen, "Last received WAL").contains(" (to "));
    assert!(message(&seen, "Replication lag").contains(" behind, "));
    assert!(message(&seen, "WAL kept by the slot").ends_with("(slot 'walpipe')"));
    let archived = message(&seen, "Archived WAL");
    assert!(archived.starts_with("timeline 1: 00000001"), "{archived}");
    assert!(message(&seen, "Archive size").contains(" in "));

    json_and_prometheus(&home, &pg, &seen, last, &prom);

    // The receiver stopped and the server down: said, the file still parses.
    let _ = kill(
        Pid::from_raw(i32::try_from(receiver.id()).unwrap()),
        Signal::SIGINT,
    );
    let _ = receiver.wait();
    pg.stop().unwrap();
    down_and_stopped(&home, &pg, &work, &prom);
}

/// The JSON form has the console's lines; the Prometheus file parses, with the figures.
fn json_and_prometheus(
    home: &Path,
    pg: &PgCluster,
    seen: &[(String, String)],
    last: &str,
    prom: &Path,
) {
    let json = status(home, pg, &["--json"]);
    let value: Value = serde_json::from_slice(&json.stdout).unwrap();
    let entries = value[SERVER].as_object().unwrap();
    assert_eq!(entries.len(), seen.len());
    assert_eq!(
        entries["failed_count"]["description"],
        "Failures of WAL archiver"
    );
    assert_eq!(entries["failed_count"]["message"], "0");
    assert_eq!(entries["last_archived_wal"]["message"], last);

    let families = parse_prometheus(prom);
    assert_gauge(&families, "walpipe_postgres_up", 1.0);
    assert_gauge(&families, "walpipe_receiver_running", 1.0);
    assert_gauge(&families, "walpipe_postgres_failed_count", 0.0);
    assert!(gauge(&families, "walpipe_archive_wal_files") >= 2.0);
    assert!(gauge(&families, "walpipe_archive_size_bytes") > 0.0);
    let newest = gauge(&families, "walpipe_archive_newest_wal_timestamp_seconds");
    let taken = gauge(&families, "walpipe_status_timestamp_seconds");
    assert!(
        newest <= taken && taken - newest < 600.0,
        "{newest} {taken}"
    );
    assert!(gauge(&families, "walpipe_slot_retained_bytes") >= 0.0);
    let queues = families["walpipe_queue_wal_files"].as_array().unwrap();
    assert_eq!(queues.len(), 2, "{queues:?}");
}

/// With the server down and the receiver stopped: said; the files still parse; the
/// check's verdicts go to its file.
fn down_and_stopped(home: &Path, pg: &PgCluster, work: &WorkDir, prom: &Path) {
    let out = status(home, pg, &["--prometheus", prom.to_str().unwrap()]);
    let seen = lines(&out);
    assert!(
        message(&seen, "PostgreSQL version")
            .starts_with("FAILED trying to get PostgreSQL version (cannot connect")
    );
    assert!(message(&seen, "WAL streaming receiver").starts_with("not running (pid"));
    let families = parse_prometheus(prom);
    assert_gauge(&families, "walpipe_postgres_up", 0.0);
    assert_gauge(&families, "walpipe_receiver_running", 0.0);
    assert!(families.get("walpipe_postgres_failed_count").is_none());
    // The check writes its verdicts too.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wal-check"));
    clean_command(&mut cmd);
    let check_prom = work.join("check.prom");
    let out = cmd
        .arg("check")
        .arg("--home")
        .arg(home)
        .args([
            "--server",
            SERVER,
            "--dbname",
            &pg.conninfo(),
            "--prometheus",
        ])
        .arg(&check_prom)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let families = parse_prometheus(&check_prom);
    assert_gauge(&families, "walpipe_check_success", 0.0);
    let items = families["walpipe_check_ok"].as_array().unwrap();
    let postgres = items
        .iter()
        .find(|s| s[0]["item"] == "PostgreSQL")
        .unwrap_or_else(|| panic!("{items:?}"));
    assert_eq!(postgres[1].as_f64(), Some(0.0));
    assert!(
        items
            .iter()
            .any(|s| s[0]["item"] == "WAL archive" && s[1] == 1.0)
    );
}
