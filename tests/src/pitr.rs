//! Point-in-time recovery of a real PostgreSQL 15: the one scenario every restore test
//! runs, whatever the archive behind it (a local walpipe or Barman archive, a bucket).
//!
//! A restore test is only as good as the recovery it drives: PostgreSQL must fetch every
//! segment through `restore_command`, stop exactly at a named restore point, and the data
//! must then be what it was there, not a moment later. So [`Primary::run`] takes a base
//! backup with `-X none` (it carries no WAL: everything comes from the archive), writes
//! [`LOAD_ROUNDS`] rounds of pgbench each closed by a WAL switch (several segments to
//! fetch and prefetch), creates restore point [`RESTORE_POINT`], records [`STATE_SQL`],
//! and keeps writing (that must not come back). [`Primary::recover`] restores a copy of
//! the base backup with a given `restore_command` and `recovery_target_name`
//! ([PostgreSQL: recovery target](https://www.postgresql.org/docs/15/runtime-config-wal.html#RUNTIME-CONFIG-WAL-RECOVERY-TARGET)),
//! and [`Primary::assert_recovered`] checks the outcome.
//!
//! What the archive holds is for each test to check: this module knows only PostgreSQL's
//! side of archiving (`archive_command`, `pg_stat_archiver`).

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::pg::{PgCluster, as_postgres};
use crate::workdir::WorkDir;
use crate::wrappers::assert_success;

/// What PITR must bring back: balances, row counts and a digest of the history table.
pub const STATE_SQL: &str = "SELECT (SELECT sum(abalance) FROM pgbench_accounts),
        (SELECT sum(bbalance) FROM pgbench_branches),
        (SELECT sum(tbalance) FROM pgbench_tellers),
        (SELECT count(*) FROM pgbench_accounts),
        (SELECT count(*) FROM pgbench_history),
        (SELECT md5(string_agg(h::text, ',' ORDER BY h::text)) FROM pgbench_history h)";

/// The restore point the recoveries stop at.
pub const RESTORE_POINT: &str = "rp";

/// pgbench rounds before the restore point, each ending with a WAL switch, so that
/// recovery has several segments to fetch (and prefetch).
pub const LOAD_ROUNDS: usize = 4;

/// How long the last segment may take to be archived (a cloud upload included).
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a recovery may take to reach the restore point and promote.
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(120);

/// Lines of server log quoted in panic messages.
const LOG_TAIL_LINES: usize = 40;

/// The pgbench transactions of one round (two clients).
const ROUND: [&str; 5] = ["-n", "-c", "2", "-t", "150"];

/// A primary that archived through an `archive_command`, ran pgbench, took a base backup
/// (`-X none`), made restore point [`RESTORE_POINT`], kept writing, and was stopped with
/// everything archived.
#[derive(Debug)]
pub struct Primary {
    /// The work directory the primary ran in; recoveries go there too.
    pub work: WorkDir,
    /// The base backup, `<work>/backup`.
    pub backup: PathBuf,
    /// [`STATE_SQL`] at the restore point.
    pub state: String,
    /// The last segment, closed by the final WAL switch and archived.
    pub last: String,
}

impl Primary {
    /// Runs the primary in `work` with `archive_command` (run by the shell as PostgreSQL's
    /// user; single quotes are not allowed in it) and stops it once the last segment is
    /// archived.
    ///
    /// # Panics
    /// When a step fails, when the load did not change the state, or when
    /// `archive_command` ever failed (`pg_stat_archiver.failed_count`): PostgreSQL
    /// retries a failing command, so a flaky one would otherwise go unnoticed.
    #[must_use]
    pub fn run(work: &WorkDir, archive_command: &str) -> Self {
        assert!(
            !archive_command.contains('\''),
            "archive_command is quoted with single quotes: {archive_command}"
        );
        let t = Instant::now();
        let conf = format!("archive_mode = on\narchive_command = '{archive_command}'\n");
        let mut pg = PgCluster::init(work, &conf).expect("initdb");
        pg.start().expect("start");
        pg.pgbench(["-i", "-q", "-s", "1"]).expect("pgbench -i");
        let backup = pg
            .base_backup("backup", ["-X", "none"])
            .expect("pg_basebackup");
        for _ in 0..LOAD_ROUNDS {
            pg.pgbench(ROUND).expect("pgbench");
            pg.switch_wal().expect("pg_switch_wal");
        }
        pg.psql(&format!(
            "SELECT pg_create_restore_point('{RESTORE_POINT}')"
        ))
        .expect("restore point");
        let state = pg.psql(STATE_SQL).expect("state");
        // Written after the restore point: must not come back.
        pg.pgbench(ROUND).expect("pgbench");
        assert_ne!(
            pg.psql(STATE_SQL).unwrap(),
            state,
            "the load changed the state"
        );
        let last = pg.switch_wal().expect("pg_switch_wal");
        pg.wait_archived(&last, ARCHIVE_TIMEOUT).expect("archived");
        let failed = pg
            .psql("SELECT failed_count FROM pg_stat_archiver")
            .unwrap();
        assert_eq!(
            failed,
            "0",
            "archive_command never failed:\n{}",
            pg.log_tail(LOG_TAIL_LINES)
        );
        pg.stop().expect("stop");
        eprintln!(
            "primary: state at {RESTORE_POINT}: {state}, last segment {last} ({:.1?})",
            t.elapsed()
        );
        Self {
            work: work.clone(),
            backup,
            state,
            last,
        }
    }

    /// Recovers a copy of the base backup into `<work>/<name>` with `restore_command` (run
    /// by the shell as PostgreSQL's user; no single quotes), to the restore point, and
    /// promotes it; returns the promoted, running cluster.
    ///
    /// # Panics
    /// When a step fails or the server is not promoted within two minutes (quoting its
    /// log).
    #[must_use]
    pub fn recover(&self, name: &str, restore_command: &str) -> PgCluster {
        self.recover_with(name, restore_command, "archive_mode = off\n")
    }

    /// [`Primary::recover`], the recovered server archiving with `archive_command` (its
    /// new timeline's history file, the old timeline's last segment as `.partial`, and
    /// what it writes next go to the same archive).
    #[must_use]
    pub fn recover_archiving(
        &self,
        name: &str,
        restore_command: &str,
        archive_command: &str,
    ) -> PgCluster {
        assert!(
            !archive_command.contains('\''),
            "archive_command is quoted with single quotes: {archive_command}"
        );
        self.recover_with(
            name,
            restore_command,
            &format!("archive_mode = on\narchive_command = '{archive_command}'\n"),
        )
    }

    fn recover_with(&self, name: &str, restore_command: &str, archiving: &str) -> PgCluster {
        assert!(
            !restore_command.contains('\''),
            "restore_command is quoted with single quotes: {restore_command}"
        );
        let t = Instant::now();
        let data = self.work.join(name);
        assert_success(
            &as_postgres("cp")
                .arg("-a")
                .arg(&self.backup)
                .arg(&data)
                .output()
                .expect("cp runs"),
            "cp -a of the base backup",
        );
        let conf = format!(
            "{archiving}\
             restore_command = '{restore_command}'\n\
             recovery_target_name = '{RESTORE_POINT}'\n\
             recovery_target_action = 'promote'\n"
        );
        let mut pg = PgCluster::adopt(&self.work, &data, &conf).expect("adopt");
        assert_success(
            &as_postgres("touch")
                .arg(data.join("recovery.signal"))
                .output()
                .expect("touch runs"),
            "touch recovery.signal",
        );
        pg.start().expect("start the restored cluster");
        let deadline = Instant::now() + PROMOTE_TIMEOUT;
        while pg.psql("SELECT pg_is_in_recovery()").ok().as_deref() != Some("f") {
            assert!(
                Instant::now() < deadline,
                "{name}: not promoted after {PROMOTE_TIMEOUT:?}:\n{}",
                pg.log_tail(LOG_TAIL_LINES)
            );
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{name}: recovered and promoted in {:.1?}", t.elapsed());
        pg
    }

    /// The state came back exactly, recovery stopped at the restore point and promoted to
    /// timeline 2, the server log shows at least [`LOAD_ROUNDS`] files restored from the
    /// archive, and no word from walpipe (PostgreSQL's probes for files that are not
    /// archived must be quiet). `name` tags the messages.
    ///
    /// # Panics
    /// When any of that does not hold, quoting the server log.
    pub fn assert_recovered(&self, pg: &PgCluster, name: &str) {
        assert_eq!(
            pg.psql(STATE_SQL).unwrap(),
            self.state,
            "{name}: the state at the restore point"
        );
        assert_eq!(
            pg.psql("SELECT timeline_id FROM pg_control_checkpoint()")
                .unwrap(),
            "2",
            "{name}: promoted to a new timeline"
        );
        let log = fs::read_to_string(pg.log_path()).unwrap();
        assert!(
            log.contains(&format!(
                "recovery stopping at restore point \"{RESTORE_POINT}\""
            )),
            "{name}:\n{log}"
        );
        let restored = log.matches("restored log file").count();
        assert!(
            restored >= LOAD_ROUNDS,
            "{name}: {restored} files restored from the archive:\n{log}"
        );
        for noise in ["restore-wal:", "wal-store:", "wal-compress:"] {
            assert!(!log.contains(noise), "{name}: {noise} in the log:\n{log}");
        }
    }
}

/// An `archive_command` fragment keeping a reference copy of every file PostgreSQL
/// archives in `dir` (`cp`, once per name): what the archive must give back, byte for
/// byte. Chain walpipe after it with `&&`.
#[must_use]
pub fn reference_copy(dir: &Path) -> String {
    format!("(test -f {dir}/%f || cp %p {dir}/%f)", dir = dir.display())
}
