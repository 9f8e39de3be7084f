//! End to end with a real PostgreSQL 15: PostgreSQL's archiver runs `scripts/archive-command`
//! (into the incoming queue, or `--direct` into the archive), `scripts/archive-wal` runs as
//! the `postgres` user, and the archive must then hold exactly what PostgreSQL archived.
//!
//! The archive_command also copies every file into a reference directory first
//! (`(test -f REF/%f || cp %p REF/%f) && archive-command ...`), so "what PostgreSQL
//! archived" is known independently of walpipe, and cross-checked with `pg_stat_archiver`.
//!
//! Needs `cargo build --workspace --bins` first, PostgreSQL 15 and the `zstd` CLI.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use walpipe_tests::wrappers::{
    archived_path, assert_success, bin_dir, dir_names, read_xlogdb, wrapper_as_postgres,
    zstd_decompress,
};
use walpipe_tests::{PgCluster, WorkDir, script};

const SERVER: &str = "pg";
const HEADER: &str = "Processing xlog segments from file archival for pg";
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(90);

/// A running cluster whose archive_command feeds walpipe and a reference copy.
struct Archiving {
    pg: PgCluster,
    /// walpipe's home (`<home>/pg/{incoming,wals,errors}`), owned by postgres.
    home: PathBuf,
    /// Every file PostgreSQL handed to archive_command, copied by `cp`.
    reference: PathBuf,
    /// When the test began: every WAL's mtime is later.
    started: SystemTime,
}

impl Archiving {
    fn start(direct: bool) -> Self {
        let started = SystemTime::now();
        let work = WorkDir::new();
        let home = work.mkdir_owned("home");
        let reference = work.mkdir_owned("ref");
        let command = format!(
            "(test -f {reference}/%f || cp %p {reference}/%f) && \
             WALPIPE_BIN_DIR={bin} {script} --home {home} --server {SERVER}{direct} %p",
            reference = reference.display(),
            bin = bin_dir().display(),
            script = script("archive-command").display(),
            home = home.display(),
            direct = if direct { " --direct" } else { "" },
        );
        let conf = format!("archive_mode = on\narchive_command = '{command}'\n");
        let mut pg = PgCluster::init(&work, &conf).expect("initdb");
        pg.start().expect("start");
        Archiving {
            pg,
            home,
            reference,
            started,
        }
    }

    fn wals(&self) -> PathBuf {
        self.home.join(SERVER).join("wals")
    }

    fn xlogdb_path(&self) -> PathBuf {
        self.wals().join("pg-xlog.db")
    }

    /// WAL traffic, then a base backup (whose `.backup` history file is archived too).
    fn load(&self, scale: u32, transactions: u32) {
        let t = Instant::now();
        self.pg
            .pgbench(["-i", "-q", "-s", &scale.to_string()])
            .expect("pgbench -i");
        if transactions > 0 {
            self.pg
                .pgbench(["-n", "-c", "2", "-t", &transactions.to_string()])
                .expect("pgbench");
        }
        eprintln!("pgbench: {:.2?}", t.elapsed());
        let t = Instant::now();
        self.pg
            .base_backup("backup", ["-X", "none"])
            .expect("pg_basebackup");
        eprintln!("pg_basebackup: {:.2?}", t.elapsed());
    }

    /// Switches WAL and waits until PostgreSQL has archived everything it has: the switched
    /// segment is in the reference directory, no `.ready` file is left, and
    /// `pg_stat_archiver` counts exactly the files of the reference directory, with no
    /// failure. Returns the reference directory's names, sorted.
    fn wait_all_archived(&self) -> Vec<String> {
        let t = Instant::now();
        let segment = self.pg.switch_wal().expect("pg_switch_wal");
        let status_dir = self.pg.data_dir().join("pg_wal/archive_status");
        let deadline = Instant::now() + ARCHIVE_TIMEOUT;
        loop {
            let stats = self
                .pg
                .psql("SELECT archived_count, failed_count FROM pg_stat_archiver")
                .expect("pg_stat_archiver");
            let (archived, failed) = stats.split_once('|').expect("two columns");
            let failed: u64 = failed.parse().unwrap();
            assert_eq!(
                failed,
                0,
                "archive_command failed:\n{}",
                self.pg.log_tail(30)
            );
            let archived: usize = archived.parse().unwrap();
            let reference = dir_names(&self.reference);
            let ready: Vec<String> = dir_names(&status_dir)
                .into_iter()
                .filter(|n| n.rsplit_once('.').is_some_and(|(_, ext)| ext == "ready"))
                .collect();
            if ready.is_empty() && reference.contains(&segment) && archived == reference.len() {
                eprintln!(
                    "all {archived} files archived through {segment}: {:.2?}",
                    t.elapsed()
                );
                return reference;
            }
            assert!(
                Instant::now() < deadline,
                "not all archived after {ARCHIVE_TIMEOUT:?}: archived_count {archived}, \
                 reference {reference:?}, ready {ready:?}\n{}",
                self.pg.log_tail(30)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `archive-wal --home H --server pg` as postgres.
    fn archive_wal(&self) -> Output {
        let t = Instant::now();
        let out = wrapper_as_postgres("archive-wal")
            .arg("--home")
            .arg(&self.home)
            .args(["--server", SERVER])
            .output()
            .expect("archive-wal runs");
        eprintln!(
            "archive-wal ({:.2?}): {}\nstdout:\n{}\nstderr:\n{}",
            t.elapsed(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Every name in the archive, checking on the way that it holds nothing but hash
    /// directories of WAL files, history files and xlog.db: no temp, no stray.
    fn archived_names(&self) -> BTreeSet<String> {
        let mut stored = BTreeSet::new();
        for entry in dir_names(&self.wals()) {
            let path = self.wals().join(&entry);
            if entry == "pg-xlog.db" {
                continue;
            }
            if path.is_dir() {
                assert!(
                    entry.len() == 16 && entry.bytes().all(|b| b.is_ascii_hexdigit()),
                    "not a hash dir: {}",
                    path.display()
                );
                for name in dir_names(&path) {
                    assert!(
                        name.starts_with(&entry),
                        "{name} in the wrong hash dir {entry}"
                    );
                    stored.insert(name);
                }
            } else {
                assert!(entry.ends_with(".history"), "stray file {}", path.display());
                stored.insert(entry);
            }
        }
        stored
    }

    /// The archive holds exactly the reference files, each at Barman's place, zstd,
    /// byte-identical once decompressed, catalogued exactly once with its stored size;
    /// queues and errors/ are empty.
    fn assert_archive_matches_reference(&self, reference: &[String]) {
        let server_dir = self.home.join(SERVER);
        assert_eq!(
            dir_names(&server_dir.join("incoming")),
            Vec::<String>::new(),
            "incoming is empty"
        );
        assert_eq!(
            dir_names(&server_dir.join("errors")),
            Vec::<String>::new(),
            "nothing in errors/"
        );
        assert!(
            reference.iter().any(|n| n.ends_with(".backup")),
            "pg_basebackup's .backup file was archived: {reference:?}"
        );
        assert!(
            reference.iter().filter(|n| n.len() == 24).count() >= 3,
            "a few segments at least: {reference:?}"
        );

        let expected: BTreeSet<String> = reference.iter().cloned().collect();
        assert_eq!(
            self.archived_names(),
            expected,
            "the archive holds what PostgreSQL archived"
        );

        let entries = read_xlogdb(&self.xlogdb_path());
        let mut by_name = BTreeMap::new();
        for entry in entries {
            let name = entry.name.clone();
            assert!(
                by_name.insert(name.clone(), entry).is_none(),
                "{name} catalogued twice"
            );
        }
        let catalogued: BTreeSet<String> = by_name.keys().cloned().collect();
        assert_eq!(catalogued, expected, "xlog.db lists each file once");

        let now = SystemTime::now();
        let earliest = secs(self.started) - 5.0;
        for name in reference {
            let path = archived_path(&self.wals(), name);
            if name.ends_with(".backup") {
                assert_eq!(
                    path.parent()
                        .unwrap()
                        .file_name()
                        .unwrap()
                        .to_str()
                        .unwrap(),
                    &name[..16],
                    "a .backup file lives in its segment's hash dir"
                );
            }
            let original = fs::read(self.reference.join(name)).unwrap();
            let decompressed = zstd_decompress(&path);
            assert!(
                decompressed == original,
                "{} does not decompress to PostgreSQL's {name} ({} vs {} bytes)",
                path.display(),
                decompressed.len(),
                original.len()
            );
            let meta = fs::metadata(&path).unwrap();
            let entry = &by_name[name];
            assert_eq!(entry.size, meta.len(), "{name}: the stored size");
            assert_eq!(entry.compression.as_deref(), Some("zstd"), "{name}");
            assert_eq!(entry.encryption, None, "{name}");
            assert!(
                entry.time >= earliest && entry.time <= secs(now) + 1.0,
                "{name}: time {} is not the WAL's mtime",
                entry.time
            );
            assert!(
                (secs(meta.modified().unwrap()) - entry.time).abs() < 1e-3,
                "{name}: the stored file keeps the WAL's mtime ({:?} vs {})",
                meta.modified(),
                entry.time
            );
        }
    }
}

fn secs(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8(out.stdout.clone())
        .expect("UTF-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Barman's lines for a run that archived `names` from the incoming queue, in order.
fn barman_lines(names: &[String]) -> Vec<String> {
    std::iter::once(HEADER.to_owned())
        .chain(names.iter().map(|n| format!("\t{n}")))
        .collect()
}

#[test]
fn queued_by_archive_command_then_archived_by_archive_wal() {
    let t = Instant::now();
    let archiving = Archiving::start(false);
    archiving.load(5, 500);
    let reference = archiving.wait_all_archived();

    let out = archiving.archive_wal();
    assert_success(&out, "archive-wal");
    assert_eq!(stdout_lines(&out), barman_lines(&reference));
    archiving.assert_archive_matches_reference(&reference);
    eprintln!("total: {:.2?}", t.elapsed());
}

#[test]
fn direct_archive_command_archives_everything() {
    let t = Instant::now();
    let archiving = Archiving::start(true);
    archiving.load(5, 500);
    let reference = archiving.wait_all_archived();
    archiving.assert_archive_matches_reference(&reference);
    eprintln!("total: {:.2?}", t.elapsed());
}

#[test]
fn archive_wal_again_finds_nothing_and_catalogues_nothing_twice() {
    let t = Instant::now();
    let archiving = Archiving::start(false);
    archiving.load(2, 200);
    let reference = archiving.wait_all_archived();
    let out = archiving.archive_wal();
    assert_success(&out, "first archive-wal");
    assert_eq!(stdout_lines(&out), barman_lines(&reference));
    archiving.assert_archive_matches_reference(&reference);
    let xlogdb = fs::read(archiving.xlogdb_path()).unwrap();

    // PostgreSQL delivers nothing new (no segment is closed meanwhile).
    let archived_before = archiving
        .pg
        .psql("SELECT archived_count FROM pg_stat_archiver")
        .unwrap();
    for run in 1..=2 {
        let out = archiving.archive_wal();
        assert_success(&out, "archive-wal again");
        assert_eq!(
            stdout_lines(&out),
            [HEADER, "\tno file found"],
            "run {run} found nothing"
        );
        assert!(
            fs::read(archiving.xlogdb_path()).unwrap() == xlogdb,
            "run {run} left xlog.db unchanged"
        );
    }
    assert_eq!(
        dir_names(&archiving.reference),
        reference,
        "PostgreSQL re-delivered nothing"
    );
    assert_eq!(
        archiving
            .pg
            .psql("SELECT archived_count FROM pg_stat_archiver")
            .unwrap(),
        archived_before
    );
    archiving.assert_archive_matches_reference(&reference);

    // PostgreSQL does re-deliver an archived segment after a crash that lost its `.done`:
    // archive-command queues it again, archive-wal finds the identical archived copy, drops
    // the queued one and catalogues nothing twice.
    let again = reference.iter().find(|n| n.len() == 24).expect("a segment");
    let out = wrapper_as_postgres("archive-command")
        .arg("--home")
        .arg(&archiving.home)
        .args(["--server", SERVER])
        .arg(archiving.reference.join(again))
        .output()
        .unwrap();
    assert_success(&out, "re-delivery");
    let out = archiving.archive_wal();
    assert_success(&out, "archive-wal after re-delivery");
    assert_eq!(
        stdout_lines(&out),
        barman_lines(std::slice::from_ref(again))
    );
    assert!(
        fs::read(archiving.xlogdb_path()).unwrap() == xlogdb,
        "the re-delivered segment is not catalogued twice"
    );
    archiving.assert_archive_matches_reference(&reference);
    eprintln!("total: {:.2?}", t.elapsed());
}
