//! restore-wal never lets PostgreSQL take WAL that exists for the end of the archive.
//!
//! PostgreSQL takes every `restore_command` status from 1 to 125 for "file not available":
//! recovery ends there, and a point-in-time recovery promotes without the WAL that comes
//! after, committed data silently missing. Only a signal or a status above 125 aborts
//! recovery (`RestoreArchivedFile` in PostgreSQL's `xlogarchive.c`). So restore-wal exits
//! 66 only where no entry of the name exists, and [`ABORT`] wherever the WAL is there but
//! cannot be restored, or restore-wal cannot look:
//! * with a real PostgreSQL 15, one archived segment truncated: recovery stops (FATAL,
//!   the server down, walpipe's line naming the segment in its log) instead of promoting;
//!   with the segment put back, starting the server resumes recovery to the restore point,
//!   the state exact;
//! * without a server: an unknown or invalid `--server`, a missing home, a mistyped
//!   `--archive`, a missing key or config file, a spool that is a queue, the archive or
//!   pg_wal: each aborts with one line, never 66, and leaves the home and pg_wal as they
//!   were;
//! * a cloud store that does not answer is 75 (PostgreSQL retries) only in standby mode,
//!   a `standby.signal` in the current directory, and aborts recovery otherwise;
//! * a restore removes only walpipe's own temps from `%p`'s directory, never the hidden
//!   files of others.
//!
//! Needs `cargo build --workspace --bins` first, PostgreSQL 15, gpg and the `zstd` CLI.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use walpipe_tests::pitr::{Primary, RESTORE_POINT};
use walpipe_tests::wrappers::{
    Run, archived_path, assert_success, bin_dir, dir_names, queue_archive_command, run, wrapper,
    wrapper_as_postgres,
};
use walpipe_tests::{Gpg, PgCluster, Snapshot, WorkDir, as_postgres, script, wal_segment};

const SERVER: &str = "pg";

/// restore-wal's status when recovery must not go on: above 125, PostgreSQL aborts
/// recovery (see scripts/restore-wal).
const ABORT: i32 = 200;

/// How long a recovery may take to stop, or to promote once mended.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Lines of server log quoted in panic messages.
const LOG_TAIL_LINES: usize = 40;

// ---------------------------------------------------------------------------------------
// With a real PostgreSQL

/// The WAL segment the base backup starts in, from its `backup_label`
/// (`START WAL LOCATION: 0/2000028 (file 000000010000000000000002)`).
fn backup_start_segment(backup: &Path) -> String {
    let label = fs::read_to_string(backup.join("backup_label")).expect("backup_label");
    let line = label
        .lines()
        .find(|l| l.starts_with("START WAL LOCATION:"))
        .unwrap_or_else(|| panic!("no start location in backup_label:\n{label}"));
    let name = line
        .split_once("(file ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no file in {line:?}"));
    assert_eq!(name.len(), 24, "{line:?}");
    name.to_owned()
}

/// The segment `n` after `name` on its timeline (16 MiB segments, within one log file).
fn segment_after(name: &str, n: u32) -> String {
    let segment = u32::from_str_radix(&name[16..], 16).unwrap() + n;
    assert!(segment < 0x100, "{name} + {n}: past the log file");
    format!("{}{segment:08X}", &name[..16])
}

/// The restore_command running restore-wal on the archive of `home`.
fn restore_command(home: &Path) -> String {
    format!(
        "WALPIPE_BIN_DIR={bin} {script} --home {home} --server {SERVER} %f %p",
        bin = bin_dir().display(),
        script = script("restore-wal").display(),
        home = home.display(),
    )
}

/// What a recovery that went on past missing WAL leaves in the log: a promotion.
const PROMOTED: [&str; 3] = [
    "selected new timeline ID",
    "archive recovery complete",
    "database system is ready to accept connections",
];

/// Starts a recovery of a copy of `primary`'s base backup into `<work>/<name>` with
/// `restore_command`, to the end of the archive (no target: the case where PostgreSQL
/// promotes as soon as restore_command says a file is not available), and waits until
/// the server has stopped on its own; panics, quoting the log, if it promotes instead or
/// still runs after [`RECOVERY_TIMEOUT`].
fn recovery_until_it_stops(primary: &Primary, name: &str, restore_command: &str) -> PgCluster {
    let data = primary.work.join(name);
    assert_success(
        &as_postgres("cp")
            .arg("-a")
            .arg(&primary.backup)
            .arg(&data)
            .output()
            .expect("cp runs"),
        "cp -a of the base backup",
    );
    let conf = format!("archive_mode = off\nrestore_command = '{restore_command}'\n");
    let mut pg = PgCluster::adopt(&primary.work, &data, &conf).expect("adopt");
    assert_success(
        &as_postgres("touch")
            .arg(data.join("recovery.signal"))
            .output()
            .expect("touch runs"),
        "touch recovery.signal",
    );
    // pg_ctl fails when the postmaster exits before it accepts connections, and succeeds
    // when hot standby opens before recovery reaches the broken segment: either way, the
    // server must then go down by itself.
    let started = pg.start();
    eprintln!("{name}: pg_ctl start: {started:?}");
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    while data.join("postmaster.pid").exists() {
        let log = fs::read_to_string(pg.log_path()).unwrap_or_default();
        assert!(
            !PROMOTED.iter().any(|line| log.contains(line)),
            "{name}: recovery went on past the broken segment:\n{log}"
        );
        assert!(
            Instant::now() < deadline,
            "{name}: still running after {RECOVERY_TIMEOUT:?}:\n{}",
            pg.log_tail(LOG_TAIL_LINES)
        );
        thread::sleep(Duration::from_millis(50));
    }
    pg
}

/// The regression a review proved: a truncated archived segment gave exit 65, which
/// PostgreSQL took for the end of the archive: recovery promoted with a third of the rows.
/// (With a recovery target not reached, PostgreSQL 13+ stops instead, FATAL "recovery
/// ended before configured recovery target was reached": so the first run has none.)
#[test]
fn a_truncated_segment_stops_recovery_and_once_mended_recovery_reaches_the_restore_point() {
    let t = Instant::now();
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    let primary = Primary::run(&work, &queue_archive_command(&home, SERVER));
    assert_success(
        &wrapper_as_postgres("archive-wal")
            .arg("--home")
            .arg(&home)
            .args(["--server", SERVER])
            .output()
            .expect("archive-wal runs"),
        "archive-wal",
    );

    // Two segments after the one the backup starts in: each load round before the
    // restore point ends with a WAL switch, so recovery needs it.
    let broken = segment_after(&backup_start_segment(&primary.backup), 2);
    let stored = archived_path(&home.join(SERVER).join("wals"), &broken);
    let intact = fs::read(&stored).unwrap_or_else(|e| panic!("{broken} is archived: {e}"));
    fs::File::options()
        .write(true)
        .open(&stored)
        .unwrap()
        .set_len(u64::try_from(intact.len()).unwrap() / 2)
        .unwrap();

    let command = restore_command(&home);
    let mut pg = recovery_until_it_stops(&primary, "restore", &command);
    let log = fs::read_to_string(pg.log_path()).unwrap();
    let fatal = format!(
        "FATAL:  could not restore file \"{broken}\" from archive: \
         child process exited with exit code {ABORT}"
    );
    let fatal_at = log
        .find(&fatal)
        .unwrap_or_else(|| panic!("the startup process stops on {broken}:\n{log}"));
    let walpipe_line = log[..fatal_at]
        .lines()
        .rev()
        .find(|line| line.starts_with("wal-") || line.starts_with("restore-wal:"))
        .unwrap_or_else(|| panic!("walpipe says why before the FATAL line:\n{log}"));
    assert!(
        walpipe_line.contains(&broken),
        "walpipe's line names {broken}: {walpipe_line}"
    );
    for promoted in PROMOTED {
        assert!(
            !log.contains(promoted),
            "never promoted: {promoted}:\n{log}"
        );
    }
    assert!(
        !pg.data_dir().join("pg_wal/00000002.history").exists(),
        "no new timeline"
    );

    // The segment put back, starting the server resumes recovery, which now reaches the
    // restore point, given as the target for this run. The log of the stopped run is set
    // aside (copied, then emptied: the server is down): assert_recovered wants a log free
    // of walpipe's lines.
    fs::write(&stored, &intact).unwrap();
    fs::copy(pg.log_path(), work.join("restore-stopped.log")).unwrap();
    fs::File::create(pg.log_path()).unwrap();
    // Appending keeps the file's owner (postgres).
    let mut conf = fs::OpenOptions::new()
        .append(true)
        .open(pg.data_dir().join("postgresql.conf"))
        .unwrap();
    writeln!(
        conf,
        "recovery_target_name = '{RESTORE_POINT}'\nrecovery_target_action = 'promote'"
    )
    .unwrap();
    drop(conf);
    pg.start().expect("the mended recovery starts");
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    while pg.psql("SELECT pg_is_in_recovery()").ok().as_deref() != Some("f") {
        assert!(
            Instant::now() < deadline,
            "not promoted after {RECOVERY_TIMEOUT:?}:\n{}",
            pg.log_tail(LOG_TAIL_LINES)
        );
        thread::sleep(Duration::from_millis(50));
    }
    primary.assert_recovered(&pg, "recovery resumed once the segment was mended");
    pg.stop().unwrap();
    eprintln!("total: {:.1?}", t.elapsed());
}

// ---------------------------------------------------------------------------------------
// Without a server

/// A walpipe home (`<work>/home`, server `pg`) with segments 1 to 3 archived by
/// archive-wal with `archive_flags`, and an empty `<work>/pg_wal`.
struct Archive {
    work: WorkDir,
    home: PathBuf,
    pg_wal: PathBuf,
}

impl Archive {
    fn new(archive_flags: &[&str]) -> Archive {
        let work = WorkDir::new();
        let home = work.join("home");
        let pg_wal = work.join("pg_wal");
        fs::create_dir_all(home.join(SERVER).join("incoming")).unwrap();
        fs::create_dir_all(&pg_wal).unwrap();
        for n in 1..=3 {
            let name = segment(n);
            fs::write(
                home.join(SERVER).join("incoming").join(&name),
                wal_segment(&name, n.into()),
            )
            .unwrap();
        }
        let out = wrapper("archive-wal")
            .arg("--home")
            .arg(&home)
            .args(["--server", SERVER])
            .args(archive_flags)
            .output()
            .unwrap();
        assert_success(&out, "archive-wal");
        Archive { work, home, pg_wal }
    }

    fn path(&self, rel: &str) -> String {
        self.work.join(rel).to_str().unwrap().to_owned()
    }

    /// `restore-wal ARGS... NAME <pg_wal>/RECOVERYXLOG`.
    fn restore(&self, args: &[String], name: &str) -> Run {
        run(
            wrapper("restore-wal")
                .args(args)
                .arg(name)
                .arg(self.pg_wal.join("RECOVERYXLOG")),
            None,
        )
    }
}

fn segment(n: u32) -> String {
    format!("0000000100000000{n:08X}")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

/// One way to get restore-wal's configuration wrong.
struct Misconfiguration {
    what: &'static str,
    args: Vec<String>,
    /// What its one line must name.
    subject: String,
    /// Whether a name that is not archived aborts too (else it is 66, rightly).
    aborts_when_not_archived: bool,
}

/// The misconfigurations of a restore from `archive` (encrypted, `key` its secret key).
fn misconfigurations(archive: &Archive, key: &str) -> Vec<Misconfiguration> {
    let home = archive.path("home");
    let right = strings(&["--home", &home, "--server", SERVER, "--key", key]);
    let with = |extra: &[&str]| {
        let mut args = right.clone();
        args.extend(strings(extra));
        args
    };
    let case = |what, args, subject: &str| Misconfiguration {
        what,
        args,
        subject: subject.to_owned(),
        aborts_when_not_archived: true,
    };
    let server = |name: &str| strings(&["--home", &home, "--server", name, "--key", key]);
    let wals = format!("{home}/{SERVER}/wals");
    let incoming = format!("{home}/{SERVER}/incoming");
    let spool = |dir: &str| with(&["--prefetch", "2", "--spool-dir", dir]);
    let pg_wal = archive.pg_wal.to_str().unwrap();
    let nohome = archive.path("nohome");
    let typo = format!("{wals}x");
    let missing_key = "/nonexistent/walpipe.key";
    vec![
        case("an unknown server", server("pgg"), "pgg"),
        case(
            "a server name that is no plain name",
            server("../pg"),
            "../pg",
        ),
        case("a server name like a flag", server("-x"), "-x"),
        case(
            "a home that does not exist",
            strings(&["--home", &nohome, "--server", SERVER]),
            &nohome,
        ),
        case("a mistyped archive", with(&["--archive", &typo]), &typo),
        case(
            "a config file that does not exist",
            with(&["--config", "/nonexistent/walpipe.conf"]),
            "/nonexistent/walpipe.conf",
        ),
        Misconfiguration {
            // Not archived is still not archived: the key is never needed.
            aborts_when_not_archived: false,
            ..case(
                "a key file that does not exist",
                strings(&["--home", &home, "--server", SERVER, "--key", missing_key]),
                missing_key,
            )
        },
        case(
            "the incoming queue as the spool",
            spool(&incoming),
            &incoming,
        ),
        case("the archive as the spool", spool(&wals), &wals),
        case(
            "a spool inside the archive",
            spool(&format!("{wals}/spool")),
            &format!("{wals}/spool"),
        ),
        case("a spool around the archive", spool(&home), &home),
        case("pg_wal as the spool", spool(pg_wal), pg_wal),
    ]
}

#[test]
fn a_misconfigured_restore_aborts_with_one_line_touches_nothing_and_never_says_not_archived() {
    let gpg = Gpg::new();
    let cert = gpg.cert();
    let archive = Archive::new(&["--recipient", cert.to_str().unwrap()]);
    let key = gpg.key().to_str().unwrap().to_owned();
    let archived = segment(2);
    let missing = segment(9);

    // The setup works: the right configuration restores, and says 66, silently, for what
    // is not archived.
    let home = archive.path("home");
    let right = strings(&["--home", &home, "--server", SERVER, "--key", &key]);
    let out = archive.restore(&right, &archived);
    assert_eq!(out.code, 0, "{out:?}");
    fs::remove_file(archive.pg_wal.join("RECOVERYXLOG")).unwrap();
    let out = archive.restore(&right, &missing);
    assert_eq!((out.code, out.stderr.as_str()), (66, ""), "{out:?}");

    for case in misconfigurations(&archive, &key) {
        let what = case.what;
        let names: &[&String] = if case.aborts_when_not_archived {
            &[&archived, &missing]
        } else {
            &[&archived]
        };
        for name in names {
            let home_before = Snapshot::of(&archive.home);
            let pg_wal_before = Snapshot::of(&archive.pg_wal);
            let out = archive.restore(&case.args, name);
            assert_ne!(
                out.code, 66,
                "{what} ({name}): never \"not archived\": {out:?}"
            );
            assert_eq!(out.code, ABORT, "{what} ({name}): {out:?}");
            assert_eq!(out.stderr.lines().count(), 1, "{what}: one line: {out:?}");
            assert!(
                out.stderr.contains(case.subject.as_str()),
                "{what}: the line names {}: {}",
                case.subject,
                out.stderr
            );
            home_before.assert_unchanged(&format!("{what} ({name})"));
            pg_wal_before.assert_unchanged(&format!("{what} ({name})"));
        }
    }
}

/// A cloud store that does not answer: no WAL can be said missing. PostgreSQL in standby
/// mode retries restore_command (and streams meanwhile), so 75 is right there; in a
/// point-in-time recovery it would end recovery, so restore-wal aborts it.
#[test]
fn a_store_that_does_not_answer_aborts_recovery_but_only_delays_a_standby() {
    let work = WorkDir::new();
    fs::create_dir(work.join("pg_wal")).unwrap();
    // A port nobody listens on: connections are refused at once.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let name = segment(1);
    let restore = || {
        run(
            wrapper("restore-wal")
                .current_dir(work.path())
                .env("AWS_ACCESS_KEY_ID", "walpipe")
                .env("AWS_SECRET_ACCESS_KEY", "walpipe-secret")
                .env("AWS_REGION", "garage")
                .args(["--archive", "s3://walpipe/p", "--server", SERVER])
                .args(["--endpoint-url", &format!("http://127.0.0.1:{port}")])
                .args(["--timeout", "2"])
                .arg(&name)
                .arg("pg_wal/RECOVERYXLOG"),
            None,
        )
    };
    for (mode, expected) in [("recovery", ABORT), ("standby", 75)] {
        if mode == "standby" {
            // PostgreSQL runs restore_command in the data directory.
            fs::write(work.join("standby.signal"), b"").unwrap();
        }
        let out = restore();
        assert_eq!(out.code, expected, "{mode}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{mode}: one line: {out:?}");
        assert!(
            out.stderr.contains(&name),
            "{mode}: names the file: {out:?}"
        );
        assert_eq!(dir_names(&work.join("pg_wal")), Vec::<String>::new());
    }
}

/// The temps a killed call leaves in %p's directory are walpipe's own names, for any WAL
/// name: those go; pg_wal's other hidden files, whatever their suffix, stay.
#[test]
fn a_restore_sweeps_only_walpipe_temps_from_pg_wal() {
    let archive = Archive::new(&[]);
    let seg = segment(2);
    let other = segment(7);
    let stale = [
        format!(".{seg}.decompressed"),
        format!(".{seg}.2.decompressed"),
        format!(".{seg}.decrypted"),
        format!(".{other}.12345-0badcafe.download"),
        format!(".{other}.partial.decompressed"),
        ".00000002.history.decompressed".to_owned(),
        ".000000010000000000000002.00000028.backup.1.decrypted".to_owned(),
        ".RECOVERYXLOG.4242.0.tmp".to_owned(),
    ];
    let kept = [
        ".RECOVERYXLOG.keep".to_owned(),
        ".RECOVERYXLOG.tmp".to_owned(),
        ".RECOVERYXLOG.x.0.tmp".to_owned(),
        ".other.tmp".to_owned(),
        ".notes.decompressed".to_owned(),
        ".cache.download".to_owned(),
        format!(".{seg}.decompressed.bak"),
        format!(".{seg}.x-0badcafe.download"),
        format!(".{seg}.compressed"),
        ".bashrc".to_owned(),
    ];
    for name in stale.iter().chain(&kept) {
        fs::write(archive.pg_wal.join(name), b"left there").unwrap();
    }
    let home = archive.path("home");
    let out = archive.restore(&strings(&["--home", &home, "--server", SERVER]), &seg);
    assert_eq!(out.code, 0, "{out:?}");
    let mut expected: Vec<String> = kept.to_vec();
    expected.push("RECOVERYXLOG".to_owned());
    expected.sort();
    assert_eq!(dir_names(&archive.pg_wal), expected);
}
