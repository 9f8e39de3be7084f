//! wal-check agrees with Barman 3.19's own `barman check` on the WAL side.
//!
//! A real PostgreSQL 15 archives into walpipe (archive-command --direct); Barman (from
//! PyPI, in the cached virtualenv `<cache>/barman-venv`) is configured with the very same
//! `barman_home`, so both tools look at the same server and the same files
//! (`<home>/pg/wals/pg-xlog.db`, the queues, errors/, identity.json). In each state,
//! `barman -f json check pg` and `wal-check check --json` run one after the other, and
//! for every item of [`COMPARED`] the verdicts must be the same: both OK, both FAILED, or
//! both silent (Barman prints `WAL archive` only when it fails: its silence there is OK).
//! The states:
//!
//! 1. healthy: WAL archived, archive_command working;
//! 2. errors/ holding `.duplicate` and `.unknown` files (with the same hint, compared as a
//!    set of `kind: N`: Barman's order is errors/'s listing order);
//! 3. identity.json naming another cluster;
//! 4. the queues: incoming over `max_incoming_wals_queue`, incoming not empty with the
//!    archiver off, streaming not empty with the streaming archiver off;
//! 5. the streaming archiver on with its slot missing, not initialised, not active; and
//!    off with the slot holding WAL (a warning: OK in both);
//! 6. archive_command failing after having succeeded (`continuous archiving` FAILED);
//! 7. archive_mode off (a restart): `archive_mode` and `archive_command` (`(disabled)`)
//!    FAILED, `continuous archiving` silent;
//! 8. PostgreSQL down: `PostgreSQL` FAILED, the server's items silent;
//! 9. on another server, nothing ever archived (archive_command failing from the start):
//!    `WAL archive` FAILED in both, after both switched WAL and waited.
//!
//! Each state also asserts the verdicts it was made for: two tools agreeing on a state
//! that was never reached would prove nothing. Where walpipe differs from Barman on
//! purpose (README, "wal-check"), the state asserts each tool's own verdict instead,
//! saying why. Barman's backup items (directories, retention, backups, pg_basebackup, …)
//! and those whose meaning differs (`wal maximum age`, `wal size`: Barman's are about the
//! last backup) are not compared.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use walpipe_tests::paths::script;
use walpipe_tests::wrappers::bin_dir;
use walpipe_tests::{PgCluster, WorkDir, clean_command};

const SERVER: &str = "pg";

/// The items both tools print, as JSON keys (Barman's `_mangle_key` of the item name).
const COMPARED: [&str; 16] = [
    "wal_archive",
    "empty_incoming_directory",
    "empty_streaming_directory",
    "incoming_wals_directory",
    "streaming_wals_directory",
    "postgresql",
    "wal_level",
    "replication_slot",
    "systemid_coherence",
    "archive_mode",
    "archive_command",
    "continuous_archiving",
    "pg_receivexlog",
    "pg_receivexlog_compatible",
    "receive_wal_running",
    "archiver_errors",
];

/// Barman's archivers as wal-check's defaults: `--archiver on --streaming-archiver off`.
const ARCHIVER_ONLY: &str = "archiver = on\nstreaming_archiver = off";

/// An item as printed: `OK`/`FAILED`, and the hint.
type Report = BTreeMap<String, (String, String)>;

/// A difference the README documents: the item, and each tool's verdict (`None`: silent).
struct Documented {
    key: &'static str,
    barman: Option<&'static str>,
    wal_check: Option<&'static str>,
}

struct Fixture {
    work: WorkDir,
    pg: PgCluster,
    home: PathBuf,
    venv: PathBuf,
}

impl Fixture {
    /// A server archiving into walpipe with `archive_command` (`None`: archive-command
    /// --direct into the fixture's home).
    fn new(archive_command: Option<&str>) -> Fixture {
        let venv = walpipe_tests::venv::barman_venv();
        let work = WorkDir::new();
        let home = work.mkdir_owned("home");
        let command = archive_command.map_or_else(|| walpipe_command(&home), str::to_owned);
        let conf = format!("archive_mode = on\narchive_command = '{command}'\n");
        let mut pg = PgCluster::init(&work, &conf).unwrap();
        pg.start().unwrap();
        Fixture {
            work,
            pg,
            home,
            venv,
        }
    }

    /// Writes WAL and switches it; returns the segment closed.
    fn switch(&self, table: &str) -> String {
        self.pg
            .psql(&format!(
                "CREATE TABLE {table} AS SELECT generate_series(1, 1000)"
            ))
            .unwrap();
        self.pg.switch_wal().unwrap()
    }

    fn server_dir(&self) -> PathBuf {
        self.home.join(SERVER)
    }

    fn catalogued(&self) -> usize {
        fs::read_to_string(self.server_dir().join("wals/pg-xlog.db"))
            .map_or(0, |text| text.lines().count())
    }

    /// Barman's configuration for this server, with `extra` lines in its section (the
    /// archivers: Barman's `archiver` and `streaming_archiver`; `check_timeout`, 30 s as
    /// wal-check's `--check-timeout`, unless given).
    fn barman_conf(&self, name: &str, extra: &str) -> PathBuf {
        let conf = self.work.join(name);
        walpipe_tests::venv::barman_conf(
            &conf,
            &self.home,
            &self.work.join("barman.log"),
            SERVER,
            &format!(
                "conninfo = {conninfo}\n\
                 streaming_conninfo = {conninfo}\n\
                 backup_method = postgres\n\
                 path_prefix = {bindir}\n\
                 {extra}",
                conninfo = self.pg.conninfo(),
                bindir = walpipe_tests::pg_bindir().display(),
            ),
        );
        conf
    }

    /// `barman -f json -c CONF check pg`: the server's items, and the output.
    fn barman(&self, conf: &Path) -> (Report, String) {
        let mut cmd = Command::new(self.venv.join("bin/barman"));
        clean_command(&mut cmd);
        cmd.args(["-f", "json", "-c"])
            .arg(conf)
            .args(["check", SERVER])
            .stdin(Stdio::null());
        let out = cmd.output().unwrap();
        (report(&out), text("barman check", &out))
    }

    /// `wal-check check --json ARGS…` on the same home and server.
    fn wal_check(&self, args: &[&str]) -> (Report, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wal-check"));
        clean_command(&mut cmd);
        cmd.arg("check")
            .arg("--home")
            .arg(&self.home)
            .args(["--server", SERVER, "--dbname", &self.pg.conninfo()])
            .arg("--pg-receivewal")
            .arg(walpipe_tests::pg_bin("pg_receivewal"))
            .arg("--json")
            .args(args)
            .stdin(Stdio::null());
        let out = cmd.output().unwrap();
        (report(&out), text("wal-check check", &out))
    }

    /// Runs both tools on the state `state` and asserts their verdicts agree; returns
    /// wal-check's report, for the state's own assertions.
    fn agree(&self, state: &str, conf: &Path, args: &[&str]) -> Report {
        self.compare(state, conf, args, None)
    }

    /// [`Fixture::agree`], but for `documented`, where each tool must give its own verdict.
    fn compare(
        &self,
        state: &str,
        conf: &Path,
        args: &[&str],
        documented: Option<&Documented>,
    ) -> Report {
        let (barman, barman_text) = self.barman(conf);
        let (ours, ours_text) = self.wal_check(args);
        let both = format!("state {state}:\n{barman_text}\n{ours_text}");
        let mut differences = Vec::new();
        for key in COMPARED {
            let theirs = status(&barman, key);
            // Barman prints `WAL archive` only when it fails.
            let theirs = if key == "wal_archive" {
                Some(theirs.unwrap_or("OK"))
            } else {
                theirs
            };
            let mine = status(&ours, key);
            let expected = match documented {
                Some(d) if d.key == key => (d.barman, d.wal_check),
                _ => (theirs, theirs),
            };
            if (theirs, mine) != expected {
                differences.push(format!(
                    "{key}: Barman {theirs:?}, wal-check {mine:?} (expected {expected:?})"
                ));
            }
        }
        assert!(
            differences.is_empty(),
            "the verdicts differ:\n{}\n{both}",
            differences.join("\n")
        );
        if let (Some((_, theirs)), Some((_, mine))) =
            (barman.get("archiver_errors"), ours.get("archiver_errors"))
        {
            assert_eq!(kinds(theirs), kinds(mine), "archiver errors' hint\n{both}");
        }
        ours
    }
}

/// archive-command --direct into `home`'s archive, with the binaries under test.
fn walpipe_command(home: &Path) -> String {
    format!(
        "WALPIPE_BIN_DIR={} {} --direct --home {} --server {SERVER} %p",
        bin_dir().display(),
        script("archive-command").display(),
        home.display()
    )
}

fn text(what: &str, out: &Output) -> String {
    format!(
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `{"pg": {"item": {"status": "OK", "hint": ""}, …}}` as item → (status, hint).
fn report(out: &Output) -> Report {
    let value: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text("the report", out)));
    let items = value[SERVER]
        .as_object()
        .unwrap_or_else(|| panic!("no server {SERVER}: {}", text("the report", out)));
    items
        .iter()
        .map(|(key, item)| {
            let field = |name: &str| {
                item[name]
                    .as_str()
                    .unwrap_or_else(|| panic!("{key}: {item}"))
                    .to_owned()
            };
            (key.clone(), (field("status"), field("hint")))
        })
        .collect()
}

/// `duplicates: 2, unknown: 1` as a set.
fn kinds(hint: &str) -> BTreeSet<String> {
    hint.split(", ").map(str::to_owned).collect()
}

fn status<'a>(report: &'a Report, key: &str) -> Option<&'a str> {
    report.get(key).map(|(status, _)| status.as_str())
}

/// Creates `names` (dummy contents) in `dir`.
fn put(dir: &Path, names: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    for name in names {
        fs::write(dir.join(name), b"x").unwrap();
    }
}

/// Empties `dir`.
fn clear(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// States 1 to 8 on one server: the archive's files first, then the server's settings
/// broken one after the other.
#[test]
fn wal_check_gives_barmans_verdicts() {
    let t = Instant::now();
    let mut fx = Fixture::new(None);
    // WAL archived first: with an empty catalogue Barman's check would switch WAL and
    // archive it itself.
    let segment = fx.switch("t");
    fx.pg
        .wait_archived(&segment, Duration::from_secs(60))
        .unwrap();
    assert!(fx.catalogued() > 0, "walpipe's catalogue has a line");
    assert!(fx.server_dir().join("identity.json").is_file());
    let conf = fx.barman_conf("barman.conf", ARCHIVER_ONLY);
    healthy(&fx, &conf);
    errors_and_identity(&fx, &conf);
    queues(&fx, &conf);
    replication_slot(&fx);
    archive_command_failing(&fx, &conf);
    archive_mode_off(&mut fx, &conf);
    postgres_down(&mut fx, &conf);
    eprintln!("states 1 to 8 agreed in {:.1?}", t.elapsed());
}

fn healthy(fx: &Fixture, conf: &Path) {
    let ours = fx.agree("healthy", conf, &[]);
    for key in [
        "wal_archive",
        "postgresql",
        "wal_level",
        "systemid_coherence",
        "archive_mode",
        "archive_command",
        "continuous_archiving",
        "archiver_errors",
    ] {
        assert_eq!(status(&ours, key), Some("OK"), "{key}: {ours:#?}");
    }
    assert_eq!(status(&ours, "replication_slot"), None);
}

fn errors_and_identity(fx: &Fixture, conf: &Path) {
    // The names archive-wal gives (`NAME.STAMP.KIND`), and a hidden temp a crash during a
    // cross-device move leaves: both tools count every entry ("unknown failure").
    let errors = fx.server_dir().join("errors");
    put(
        &errors,
        &[
            "000000010000000000000001.20260101T000000Z.duplicate",
            "000000010000000000000002.20260101T000000Z.duplicate",
            "junk.20260101T000000Z.unknown",
            ".000000010000000000000003.4242.1.tmp",
        ],
    );
    let ours = fx.agree("errors/ not empty", conf, &[]);
    assert_eq!(ours["archiver_errors"].0, "FAILED");
    assert_eq!(
        kinds(&ours["archiver_errors"].1),
        kinds("duplicates: 2, unknown: 1, unknown failure: 1")
    );
    clear(&errors);

    let identity = fx.server_dir().join("identity.json");
    let kept = fs::read(&identity).unwrap();
    fs::write(
        &identity,
        b"{\"systemid\": \"7000000000000000001\", \"version\": \"15\"}",
    )
    .unwrap();
    let ours = fx.agree("another cluster's identity", conf, &[]);
    assert_eq!(status(&ours, "systemid_coherence"), Some("FAILED"));
    fs::write(&identity, kept).unwrap();
}

/// The queues counted as Barman counts them, but for one difference the README names:
/// Barman takes one off the streaming queue's count for the `.partial` it expects there,
/// whether it is there or not; wal-check leaves out the `.partial`s that are there. Where
/// the two rules give the same count the verdicts must agree; where they do not, each
/// tool must give its own rule's verdict.
fn queues(fx: &Fixture, conf: &Path) {
    let incoming = fx.server_dir().join("incoming");
    let limited = fx.barman_conf(
        "barman-limited.conf",
        &format!("{ARCHIVER_ONLY}\nmax_incoming_wals_queue = 2"),
    );
    let limit = ["--max-incoming-wals-queue", "2"];
    put(
        &incoming,
        &[
            "000000010000000000000091",
            "000000010000000000000092",
            "000000010000000000000093",
        ],
    );
    let ours = fx.agree("3 WAL in incoming, at most 2", &limited, &limit);
    assert_eq!(status(&ours, "incoming_wals_directory"), Some("FAILED"));
    fs::remove_file(incoming.join("000000010000000000000093")).unwrap();
    let ours = fx.agree("2 WAL in incoming, at most 2", &limited, &limit);
    assert_eq!(status(&ours, "incoming_wals_directory"), None);
    put(&incoming, &["000000010000000000000093.partial"]);
    let ours = fx.agree(
        "2 WAL and a .partial in incoming, at most 2",
        &limited,
        &limit,
    );
    assert_eq!(status(&ours, "incoming_wals_directory"), Some("FAILED"));
    // Barman turns the archiver back on when no archiver is: streaming only, then.
    let streaming_only = fx.barman_conf(
        "barman-streaming-only.conf",
        "archiver = off\nstreaming_archiver = on\nslot_name = walpipe",
    );
    let only = ["--archiver", "off", "--streaming-archiver", "on"];
    let ours = fx.agree(
        "the archiver off, incoming not empty",
        &streaming_only,
        &[&only[..], &["--slot", "walpipe"]].concat(),
    );
    assert_eq!(status(&ours, "empty_incoming_directory"), Some("FAILED"));
    assert_eq!(status(&ours, "archive_mode"), None);
    clear(&incoming);

    let streaming = fx.server_dir().join("streaming");
    put(
        &streaming,
        &[
            "000000010000000000000095",
            "000000010000000000000096.partial",
        ],
    );
    let ours = fx.agree("the streaming archiver off, a WAL streamed", conf, &[]);
    assert_eq!(status(&ours, "empty_streaming_directory"), Some("FAILED"));
    fs::remove_file(streaming.join("000000010000000000000096.partial")).unwrap();
    fx.compare(
        "the streaming archiver off, a WAL streamed and no .partial",
        conf,
        &[],
        Some(&Documented {
            key: "empty_streaming_directory",
            barman: None,
            wal_check: Some("FAILED"),
        }),
    );
    clear(&streaming);
}

/// The slot `walpipe` with the streaming archiver on: missing, not initialised, not
/// active; then with it off, a slot holding WAL (a warning: OK). The hints differ on
/// purpose (README): walpipe names `wal-receive` where Barman names `barman receive-wal`.
fn replication_slot(fx: &Fixture) {
    let streaming = fx.barman_conf(
        "barman-streaming.conf",
        "archiver = on\nstreaming_archiver = on\nslot_name = walpipe",
    );
    let args = ["--streaming-archiver", "on", "--slot", "walpipe"];
    let ours = fx.agree("slot missing", &streaming, &args);
    assert_eq!(status(&ours, "replication_slot"), Some("FAILED"));
    assert_eq!(status(&ours, "pg_receivexlog"), Some("OK"));
    assert_eq!(status(&ours, "pg_receivexlog_compatible"), Some("OK"));
    assert_eq!(status(&ours, "receive_wal_running"), Some("FAILED"));

    fx.pg
        .psql("SELECT pg_create_physical_replication_slot('walpipe')")
        .unwrap();
    let ours = fx.agree("slot not initialised", &streaming, &args);
    assert_eq!(status(&ours, "replication_slot"), Some("FAILED"));

    fx.pg
        .psql(
            "SELECT pg_drop_replication_slot('walpipe'); \
             SELECT pg_create_physical_replication_slot('walpipe', true)",
        )
        .unwrap();
    let ours = fx.agree("slot not active", &streaming, &args);
    assert_eq!(status(&ours, "replication_slot"), Some("FAILED"));

    let off = fx.barman_conf(
        "barman-slot-off.conf",
        &format!("{ARCHIVER_ONLY}\nslot_name = walpipe"),
    );
    let ours = fx.agree("slot not required", &off, &["--slot", "walpipe"]);
    assert_eq!(status(&ours, "replication_slot"), Some("OK"));
    fx.pg
        .psql("SELECT pg_drop_replication_slot('walpipe')")
        .unwrap();
}

fn archive_command_failing(fx: &Fixture, conf: &Path) {
    fx.pg
        .psql("ALTER SYSTEM SET archive_command = 'false'; SELECT pg_reload_conf()")
        .unwrap();
    wait_until("archive_command reloaded", || {
        fx.pg.psql("SHOW archive_command").unwrap() == "false"
    });
    fx.switch("u");
    wait_until("an archiving failure", || {
        fx.pg
            .psql("SELECT failed_count FROM pg_stat_archiver")
            .unwrap()
            != "0"
    });
    let ours = fx.agree("archive_command failing", conf, &[]);
    assert_eq!(status(&ours, "archive_command"), Some("OK"));
    assert_eq!(status(&ours, "continuous_archiving"), Some("FAILED"));
}

fn archive_mode_off(fx: &mut Fixture, conf: &Path) {
    fx.pg
        .psql(&format!(
            "ALTER SYSTEM SET archive_mode = off; ALTER SYSTEM SET archive_command = '{}'",
            walpipe_command(&fx.home)
        ))
        .unwrap();
    fx.pg.restart().unwrap();
    assert_eq!(fx.pg.psql("SHOW archive_command").unwrap(), "(disabled)");
    let ours = fx.agree("archive_mode off", conf, &[]);
    assert_eq!(status(&ours, "archive_mode"), Some("FAILED"));
    assert_eq!(status(&ours, "archive_command"), Some("FAILED"));
    assert_eq!(status(&ours, "continuous_archiving"), None);
}

fn postgres_down(fx: &mut Fixture, conf: &Path) {
    fx.pg.stop().unwrap();
    let ours = fx.agree("PostgreSQL down", conf, &[]);
    assert_eq!(status(&ours, "postgresql"), Some("FAILED"));
    assert_eq!(status(&ours, "wal_level"), None);
    assert_eq!(status(&ours, "archive_mode"), None);
    assert_eq!(status(&ours, "wal_archive"), Some("OK"));
}

/// State 9: archive_command has failed from the start. Both find the catalogue empty,
/// switch WAL, wait a third of the check timeout (6 s here) for it, and fail `WAL
/// archive`. `continuous archiving` differs on purpose (README): Barman is silent (its
/// `is_archiving` is NULL: failed and never archived), wal-check fails it.
#[test]
fn nothing_ever_archived() {
    let fx = Fixture::new(Some("false"));
    fx.switch("t");
    wait_until("an archiving failure", || {
        fx.pg
            .psql("SELECT failed_count FROM pg_stat_archiver")
            .unwrap()
            != "0"
    });
    let conf = fx.barman_conf(
        "barman.conf",
        &format!("{ARCHIVER_ONLY}\ncheck_timeout = 6"),
    );
    let ours = fx.compare(
        "nothing ever archived",
        &conf,
        &["--check-timeout", "6"],
        Some(&Documented {
            key: "continuous_archiving",
            barman: None,
            wal_check: Some("FAILED"),
        }),
    );
    assert_eq!(status(&ours, "wal_archive"), Some("FAILED"));
    assert_eq!(status(&ours, "archive_command"), Some("OK"));
    assert_eq!(fx.catalogued(), 0);
}
