//! wal-check against a real PostgreSQL 15 archiving into walpipe (archive-command
//! --direct): every item made to pass, then made to fail the way a DBA meets it, in the
//! three output forms; and what it refuses.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use walpipe_tests::paths::script;
use walpipe_tests::receiver::wal_receive;
use walpipe_tests::wrappers::bin_dir;
use walpipe_tests::wrappers::output_text;
use walpipe_tests::{PgCluster, WorkDir, clean_command};

const SERVER: &str = "pg";

struct Fixture {
    work: WorkDir,
    pg: PgCluster,
    home: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let work = WorkDir::new();
        let home = work.mkdir_owned("home");
        let conf = format!(
            "archive_mode = on\narchive_command = '{}'\n",
            archive_command(&home)
        );
        let mut pg = PgCluster::init(&work, &conf).unwrap();
        pg.start().unwrap();
        Fixture { work, pg, home }
    }

    fn server_dir(&self) -> PathBuf {
        self.home.join(SERVER)
    }

    /// `wal-check check --home H --server pg --dbname … ARGS…`
    fn check(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wal-check"));
        clean_command(&mut cmd);
        cmd.arg("check")
            .arg("--home")
            .arg(&self.home)
            .args(["--server", SERVER, "--dbname", &self.pg.conninfo()])
            .arg("--pg-receivewal")
            .arg(walpipe_tests::pg_bin("pg_receivewal"))
            .args(["--check-timeout", "30"])
            .args(args)
            .stdin(Stdio::null());
        cmd.output().unwrap()
    }

    /// The console report as item name → (OK?, hint).
    fn items(&self, args: &[&str]) -> (i32, BTreeMap<String, (bool, String)>) {
        let out = self.check(args);
        (out.status.code().unwrap_or(-1), parse_console(&out))
    }

    fn archived(&self) -> usize {
        fs::read_to_string(self.server_dir().join("wals/pg-xlog.db"))
            .map_or(0, |text| text.lines().count())
    }

    /// The stored bytes the catalogue adds up to.
    fn archived_bytes(&self) -> u64 {
        fs::read_to_string(self.server_dir().join("wals/pg-xlog.db"))
            .unwrap()
            .lines()
            .map(|line| line.split('\t').nth(1).unwrap().parse::<u64>().unwrap())
            .sum()
    }
}

/// archive-command --direct into `home`'s archive, with the binaries under test.
fn archive_command(home: &Path) -> String {
    format!(
        "WALPIPE_BIN_DIR={} {} --direct --home {} --server {SERVER} %p",
        bin_dir().display(),
        script("archive-command").display(),
        home.display()
    )
}

/// `Server pg:` then `\tname: OK|FAILED[ (hint)]` lines, nothing else.
fn parse_console(out: &Output) -> BTreeMap<String, (bool, String)> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("Server pg:"), "{}", output_text(out));
    let mut items = BTreeMap::new();
    for line in lines {
        let body = line
            .strip_prefix('\t')
            .unwrap_or_else(|| panic!("{line:?}: {}", output_text(out)));
        let (name, rest) = body.split_once(": ").unwrap();
        let (verdict, hint) = match rest.split_once(" (") {
            Some((verdict, hint)) => (verdict, hint.strip_suffix(')').unwrap().to_owned()),
            None => (rest, String::new()),
        };
        assert!(verdict == "OK" || verdict == "FAILED", "{line:?}");
        let fresh = items.insert(name.to_owned(), (verdict == "OK", hint));
        assert!(fresh.is_none(), "{name} twice: {}", output_text(out));
    }
    items
}

/// Asserts `name` failed with a hint containing `said`.
fn failed(items: &BTreeMap<String, (bool, String)>, name: &str, said: &str) {
    let (ok, hint) = items
        .get(name)
        .unwrap_or_else(|| panic!("no {name:?} in {items:#?}"));
    assert!(!ok, "{name} passed: {items:#?}");
    assert!(hint.contains(said), "{name}: {hint:?} lacks {said:?}");
}

fn passed(items: &BTreeMap<String, (bool, String)>, name: &str) {
    let (ok, hint) = items
        .get(name)
        .unwrap_or_else(|| panic!("no {name:?} in {items:#?}"));
    assert!(ok, "{name} failed: {hint}");
}

/// A Nagios plugin's output: `TEXT[|PERFDATA]` on the first line, each perfdata item
/// `label=value[UOM][;warn;crit;min;max]` (label quoted when it has spaces), more text
/// lines after; the exit status 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN matching the
/// first word after the service name.
fn assert_nagios_plugin_output(out: &Output) -> Vec<(String, u64)> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().expect("a status line");
    let (status_text, perf) = first.split_once('|').unwrap_or((first, ""));
    let (state, _) = status_text
        .strip_prefix("BARMAN ")
        .and_then(|rest| rest.split_once(" - "))
        .unwrap_or_else(|| panic!("{first:?}"));
    let expected = match state {
        "OK" => 0,
        "WARNING" => 1,
        "CRITICAL" => 2,
        "UNKNOWN" => 3,
        other => panic!("state {other:?}"),
    };
    assert_eq!(out.status.code(), Some(expected), "{}", output_text(out));
    let mut figures = Vec::new();
    for item in perf.split_whitespace() {
        let (label, value) = item.split_once('=').unwrap_or_else(|| panic!("{item:?}"));
        assert!(!label.is_empty() && !label.contains('\''), "{item:?}");
        let value = value.split(';').next().unwrap();
        let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
        let unit = &value[digits.len()..];
        assert!(
            !digits.is_empty() && ["", "s", "%", "B", "KB", "MB", "TB", "c"].contains(&unit),
            "{item:?}"
        );
        figures.push((label.to_owned(), digits.parse().unwrap()));
    }
    figures
}

/// The keys walpipe documents for `--json`, each `{"status": "OK"|"FAILED", "hint": …}`.
fn assert_json(out: &Output, expected_keys: &[&str]) -> Value {
    let value: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", output_text(out)));
    let server = value[SERVER]
        .as_object()
        .unwrap_or_else(|| panic!("{value}"));
    assert_eq!(value.as_object().unwrap().len(), 1);
    for (key, item) in server {
        assert!(
            expected_keys.contains(&key.as_str()),
            "undocumented key {key}"
        );
        assert!(
            matches!(item["status"].as_str(), Some("OK" | "FAILED")),
            "{key}: {item}"
        );
        assert!(item["hint"].is_string(), "{key}: {item}");
        assert_eq!(item.as_object().unwrap().len(), 2, "{key}: {item}");
    }
    value
}

const JSON_KEYS: [&str; 18] = [
    "wal_archive",
    "empty_incoming_directory",
    "empty_streaming_directory",
    "incoming_wals_directory",
    "streaming_wals_directory",
    "postgresql",
    "wal_level",
    "replication_slot",
    "wal_maximum_age",
    "wal_size",
    "systemid_coherence",
    "archive_mode",
    "archive_command",
    "continuous_archiving",
    "pg_receivexlog",
    "pg_receivexlog_compatible",
    "receive_wal_running",
    "archiver_errors",
];

/// From nothing archived to every item passing, then each failure a DBA meets, one at
/// a time, with the verdict and the hint that says what to do.
#[test]
fn every_item_passes_then_fails_as_a_dba_meets_it() {
    let mut fx = Fixture::new();
    the_first_check_passes(&fx);
    the_archives_files_fail(&fx);
    the_servers_settings_fail(&mut fx);
}

/// Nothing archived yet: the check switches WAL, waits for it, and every item passes,
/// in the three forms.
fn the_first_check_passes(fx: &Fixture) {
    // Nothing archived yet: the check switches WAL and waits for it to arrive.
    assert_eq!(fx.archived(), 0);
    let (code, items) = fx.items(&[]);
    assert_eq!(code, 0, "{items:#?}");
    assert!(fx.archived() > 0, "the switched segment was archived");
    for name in [
        "WAL archive",
        "PostgreSQL",
        "wal_level",
        "wal maximum age",
        "wal size",
        "systemid coherence",
        "archive_mode",
        "archive_command",
        "continuous archiving",
        "archiver errors",
    ] {
        passed(&items, name);
    }
    let bytes = fx.archived_bytes();
    assert!(bytes > 0);
    assert_eq!(items["wal size"].1, wal_check::units::pretty_size(bytes));
    assert!(
        !items.contains_key("pg_receivexlog"),
        "streaming items without it"
    );
    let ok = fx.check(&["--nagios"]);
    let figures = assert_nagios_plugin_output(&ok);
    assert_eq!(figures, [("pg_wals".to_owned(), bytes)]);
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).lines().next().unwrap(),
        format!("BARMAN OK - Ready to serve the Espresso backup for pg|pg_wals={bytes}B")
    );
    let json = fx.check(&["--json"]);
    assert_eq!(json.status.code(), Some(0));
    assert_eq!(
        assert_json(&json, &JSON_KEYS)[SERVER]["wal_archive"]["status"],
        "OK"
    );
}

/// The newest WAL too old, errors/ not empty, queues over the limit or not empty when
/// they must be, another cluster's identity.
fn the_archives_files_fail(fx: &Fixture) {
    // The newest WAL's age.
    let (code, items) = fx.items(&["--last-wal-maximum-age", "1 hours"]);
    assert_eq!(code, 0);
    assert!(
        items["wal maximum age"]
            .1
            .starts_with("interval provided: 1 hour, latest wal age: ")
    );
    thread::sleep(Duration::from_secs(2));
    let (code, items) = fx.items(&["--last-wal-maximum-age", "1 second"]);
    assert_eq!(code, 1);
    failed(
        &items,
        "wal maximum age",
        "interval provided: 1 second, latest wal age: ",
    );

    // errors/ holding what archive-wal set aside.
    let errors = fx.server_dir().join("errors");
    fs::create_dir_all(&errors).unwrap();
    for name in [
        "000000010000000000000001.20260101T000000Z.duplicate",
        "000000010000000000000002.20260101T000000Z.duplicate",
        "junk.20260101T000000Z.unknown",
    ] {
        fs::write(errors.join(name), b"x").unwrap();
    }
    let (code, items) = fx.items(&[]);
    assert_eq!(code, 1);
    failed(&items, "archiver errors", "duplicates: 2, unknown: 1");
    fs::remove_dir_all(&errors).unwrap();

    // A queue over the limit, and a queue that must be empty.
    let incoming = fx.server_dir().join("incoming");
    fs::create_dir_all(&incoming).unwrap();
    for n in 1..=3 {
        fs::write(incoming.join(format!("00000001000000000000000{n}")), b"x").unwrap();
    }
    // A .partial handed to archive_command waits like any WAL; a hidden temp, a
    // directory and a name that is no WAL's do not.
    fs::write(incoming.join("00000001000000000000000A.partial"), b"x").unwrap();
    fs::write(incoming.join(".00000001000000000000000B.tmp"), b"x").unwrap();
    fs::write(incoming.join("README"), b"x").unwrap();
    fs::create_dir(incoming.join("000000010000000000000009")).unwrap();
    let (code, items) = fx.items(&["--max-incoming-wals-queue", "4"]);
    assert_eq!(code, 0, "{items:#?}");
    assert!(!items.contains_key("incoming WALs directory"));
    let (code, items) = fx.items(&["--max-incoming-wals-queue", "3"]);
    assert_eq!(code, 1);
    failed(
        &items,
        "incoming WALs directory",
        "there are too many WALs in queue: 4, max 3",
    );
    let (code, items) = fx.items(&["--archiver", "off"]);
    assert_eq!(code, 1);
    failed(
        &items,
        "empty incoming directory",
        &format!("'{}' must be empty when archiver=off", incoming.display()),
    );
    assert!(
        !items.contains_key("archive_mode"),
        "archiver items with the archiver off"
    );
    fs::remove_dir_all(&incoming).unwrap();

    // Another cluster's archive.
    let identity = fx.server_dir().join("identity.json");
    let ours = fs::read(&identity).unwrap();
    fs::write(
        &identity,
        b"{\"systemid\": \"7000000000000000001\", \"version\": \"15\"}",
    )
    .unwrap();
    let (code, items) = fx.items(&[]);
    assert_eq!(code, 1);
    failed(
        &items,
        "systemid coherence",
        "the system Id of the connected PostgreSQL server changed",
    );
    fs::write(&identity, ours).unwrap();
}

/// archive_command failing, then empty, archive_mode off, the server down.
fn the_servers_settings_fail(fx: &mut Fixture) {
    // archive_command failing: continuous archiving fails, with the failure named.
    fx.pg
        .psql("ALTER SYSTEM SET archive_command = 'false'; SELECT pg_reload_conf()")
        .unwrap();
    fx.pg
        .psql("CREATE TABLE t AS SELECT generate_series(1, 1000)")
        .unwrap();
    fx.pg.switch_wal().unwrap();
    wait_until("an archiving failure", || {
        fx.pg
            .psql("SELECT failed_count FROM pg_stat_archiver")
            .unwrap()
            != "0"
    });
    let (code, items) = fx.items(&[]);
    assert_eq!(code, 1);
    passed(&items, "archive_command");
    failed(
        &items,
        "continuous archiving",
        "failure(s) since the statistics were reset, the last on 0000",
    );
    let nagios = fx.check(&["--nagios"]);
    assert_nagios_plugin_output(&nagios);
    assert!(
        String::from_utf8_lossy(&nagios.stdout).starts_with(
            "BARMAN CRITICAL - server pg has issues * pg FAILED: continuous archiving|"
        )
    );

    // archive_command empty.
    fx.pg
        .psql("ALTER SYSTEM SET archive_command = ''; SELECT pg_reload_conf()")
        .unwrap();
    wait_until("archive_command reloaded", || {
        fx.pg.psql("SHOW archive_command").unwrap().is_empty()
    });
    let (code, items) = fx.items(&[]);
    assert_eq!(code, 1);
    failed(
        &items,
        "archive_command",
        "please set it accordingly to documentation",
    );
    assert!(!items.contains_key("continuous archiving"));

    // archive_mode off.
    fx.pg
        .psql(&format!(
            "ALTER SYSTEM SET archive_mode = off; ALTER SYSTEM SET archive_command = '{}'",
            archive_command(&fx.home)
        ))
        .unwrap();
    fx.pg.restart().unwrap();
    let (code, items) = fx.items(&[]);
    assert_eq!(code, 1);
    failed(&items, "archive_mode", "please set it to 'on' or 'always'");
    failed(
        &items,
        "archive_command",
        "please set it accordingly to documentation",
    );
    let json = fx.check(&["--json"]);
    assert_eq!(json.status.code(), Some(1));
    let value = assert_json(&json, &JSON_KEYS);
    assert_eq!(
        value[SERVER]["archive_mode"]["hint"],
        "please set it to 'on' or 'always'"
    );

    // The server down: said, the other server items not judged.
    fx.pg.stop().unwrap();
    let (code, items) = fx.items(&[]);
    assert_eq!(code, 1);
    failed(&items, "PostgreSQL", "cannot connect to PostgreSQL");
    assert!(!items.contains_key("archive_mode"));
    passed(&items, "WAL archive");
}

/// The streaming items: a slot missing, not initialised, not active; pg_receivewal found
/// and compatible; the receiver running, then stopped with its last error said.
#[test]
fn the_streaming_items_follow_the_slot_and_the_receiver() {
    let fx = Fixture::new();
    let streaming = ["--streaming-archiver", "on", "--slot", "walpipe"];
    let (code, items) = fx.items(&streaming);
    assert_eq!(code, 1);
    failed(
        &items,
        "replication slot",
        "replication slot 'walpipe' doesn't exist. Please execute 'wal-receive create-slot --server pg --slot walpipe'",
    );
    passed(&items, "pg_receivexlog");
    passed(&items, "pg_receivexlog compatible");
    failed(
        &items,
        "receive-wal running",
        "no wal-receive has streamed for server pg",
    );

    fx.pg
        .psql("SELECT pg_create_physical_replication_slot('walpipe')")
        .unwrap();
    let (_, items) = fx.items(&streaming);
    failed(
        &items,
        "replication slot",
        "slot 'walpipe' not initialised: is 'wal-receive stream' running?",
    );
    fx.pg
        .psql("SELECT pg_drop_replication_slot('walpipe'); SELECT pg_create_physical_replication_slot('walpipe', true)")
        .unwrap();
    let (_, items) = fx.items(&streaming);
    failed(
        &items,
        "replication slot",
        "slot 'walpipe' not active: is 'wal-receive stream' running?",
    );
    // With the streaming archiver off, a slot holding WAL is a warning, not a failure.
    let (_, items) = fx.items(&["--slot", "walpipe"]);
    let (ok, hint) = &items["replication slot"];
    assert!(ok);
    assert_eq!(
        hint,
        "WARNING: slot 'walpipe' is initialised but not required by the current config"
    );

    let mut receiver = start_receiver(&fx);
    wait_until("the receiver streaming", || {
        let (_, items) = fx.items(&streaming);
        items.get("replication slot").is_some_and(|(ok, _)| *ok)
            && items.get("receive-wal running").is_some_and(|(ok, _)| *ok)
    });
    let (code, items) = fx.items(&streaming);
    assert_eq!(code, 0, "{items:#?}");
    let _ = kill(
        Pid::from_raw(i32::try_from(receiver.id()).unwrap()),
        Signal::SIGINT,
    );
    let _ = receiver.wait();
    let (code, items) = fx.items(&streaming);
    assert_eq!(code, 1);
    failed(&items, "receive-wal running", "is not running");
    failed(&items, "replication slot", "not active");
    // A pg_receivewal that is not there.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wal-check"));
    clean_command(&mut cmd);
    let out = cmd
        .arg("check")
        .arg("--home")
        .arg(&fx.home)
        .args([
            "--server",
            SERVER,
            "--dbname",
            &fx.pg.conninfo(),
            "--streaming-archiver",
            "on",
        ])
        .args(["--pg-receivewal", "/nonexistent/pg_receivewal"])
        .output()
        .unwrap();
    let items = parse_console(&out);
    failed(&items, "pg_receivexlog", "");
    failed(
        &items,
        "pg_receivexlog compatible",
        "PostgreSQL version: 15.",
    );
}

fn start_receiver(fx: &Fixture) -> Child {
    wal_receive(&fx.pg, "stream", &fx.home, SERVER)
        .args(["--slot", "walpipe"])
        .stderr(Stdio::from(
            fs::File::create(fx.work.join("receive.log")).unwrap(),
        ))
        .spawn()
        .unwrap()
}

fn wait_until(what: &str, done: impl FnMut() -> bool) {
    walpipe_tests::receiver::wait_until(what, Duration::from_secs(60), done, String::new);
}

/// An archive_command that never worked: nothing in the catalogue, nothing in the
/// queues, so the check switches WAL, waits a third of --check-timeout, and fails
/// `WAL archive` with Barman's hint; continuous archiving fails once PostgreSQL has
/// tried.
#[test]
fn wal_that_never_arrives_fails_the_archive() {
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    let mut pg = PgCluster::init(&work, "archive_mode = on\narchive_command = 'false'\n").unwrap();
    pg.start().unwrap();
    let check = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wal-check"));
        clean_command(&mut cmd);
        cmd.arg("check")
            .arg("--home")
            .arg(&home)
            .args(["--server", SERVER, "--dbname", &pg.conninfo()])
            .args(["--check-timeout", "3"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = check(&["--last-wal-maximum-age", "1 hours"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let items = parse_console(&out);
    failed(
        &items,
        "WAL archive",
        "please make sure WAL shipping is setup",
    );
    failed(&items, "wal maximum age", "No WAL files archived");
    passed(&items, "archive_command");
    wait_until("an archiving failure", || {
        pg.psql("SELECT failed_count FROM pg_stat_archiver")
            .unwrap()
            != "0"
    });
    let out = check(&[]);
    let items = parse_console(&out);
    failed(&items, "continuous archiving", "and nothing archived");
    // Nothing was made by looking.
    assert_eq!(
        walpipe_tests::wrappers::dir_names(&home),
        Vec::<String>::new()
    );
}
