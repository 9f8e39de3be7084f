//! Tests of the test kit itself: if these fail, every integration test built on it would
//! fail for the wrong reason, so they check the kit against a real PostgreSQL first.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use wal_core::WalName;
use wal_core::shape;
use walpipe_tests::{
    PG15_PAGE_MAGIC, PgCluster, SEGMENT_SIZE, TEST_SYSTEM_ID, WorkDir, as_postgres, clean_command,
    history_file, postgres_owner, script, synthetic_segment, target_bin, wal_fixture_segments,
    wal_segment, wal_segment_of, wal_segment_sized, workspace_root,
};

const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(30);

fn is_segment_name(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
}

/// A started cluster archiving with `cp %p <work>/archive/%f`, and the archive's path.
fn archiving_cluster(work: &WorkDir) -> (PgCluster, std::path::PathBuf) {
    let archive = work.mkdir_owned("archive");
    let conf = format!(
        "archive_mode = on\narchive_command = 'cp %p {}/%f'\n",
        archive.display()
    );
    let mut pg = PgCluster::init(work, &conf).expect("initdb");
    pg.start().expect("start");
    (pg, archive)
}

#[test]
fn cluster_archives_a_switched_segment() {
    let work = WorkDir::new();
    let (mut pg, archive) = archiving_cluster(&work);
    assert!(pg.is_running());
    assert!(
        pg.socket_dir()
            .join(format!(".s.PGSQL.{}", pg.port()))
            .exists(),
        "socket file in {}",
        pg.socket_dir().display()
    );
    assert_eq!(pg.psql("SHOW archive_mode").unwrap(), "on");

    let rows = pg
        .psql(
            "CREATE TABLE t (id int PRIMARY KEY, note text);
             INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g;
             SELECT count(*), max(note) FROM t WHERE id > 990;",
        )
        .unwrap();
    assert_eq!(rows, "10|row 999");

    let segment = pg.switch_wal().unwrap();
    assert!(is_segment_name(&segment), "segment name {segment:?}");
    pg.wait_archived(&segment, ARCHIVE_TIMEOUT).unwrap();

    let archived = archive.join(&segment);
    let meta = fs::metadata(&archived).unwrap();
    assert_eq!(meta.len(), SEGMENT_SIZE as u64, "{}", archived.display());
    if let Some((uid, _)) = postgres_owner() {
        // archive_command ran as the server's user, not as us.
        assert_eq!(meta.uid(), uid.as_raw());
    }
    let stats = pg
        .psql("SELECT archived_count > 0, last_archived_wal, failed_count FROM pg_stat_archiver")
        .unwrap();
    assert_eq!(stats, format!("t|{segment}|0"));

    let log = pg.log_path().to_path_buf();
    pg.stop().unwrap();
    assert!(!pg.is_running());
    assert!(!pg.data_dir().join("postmaster.pid").exists());
    assert!(
        fs::read_to_string(log)
            .unwrap()
            .contains("database system is shut down")
    );
}

#[test]
fn psql_errors_carry_stderr_and_restart_works() {
    let work = WorkDir::new();
    let mut pg = PgCluster::init(&work, "").unwrap();
    pg.start().unwrap();

    let err = pg.psql("SELECT no_such_column FROM pg_class").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("no_such_column"), "{msg}");
    assert!(msg.contains("ERROR"), "{msg}");

    let pid_before = pg.psql("SELECT pg_backend_pid()").unwrap();
    pg.psql("ALTER SYSTEM SET work_mem = '7MB'").unwrap();
    pg.restart().unwrap();
    assert_eq!(pg.psql("SHOW work_mem").unwrap(), "7MB");
    assert_ne!(pg.psql("SELECT pg_backend_pid()").unwrap(), pid_before);

    let out = pg.pgbench(["-i", "-s", "1", "-q"]).unwrap();
    assert!(out.is_empty() || !out.contains("error"), "{out}");
    assert_eq!(
        pg.psql("SELECT count(*) FROM pgbench_accounts").unwrap(),
        "100000"
    );
    // Dropped while running: Drop stops it (immediate) before the work dir goes.
}

#[test]
fn failed_start_quotes_the_server_log() {
    let work = WorkDir::new();
    let mut pg = PgCluster::init(&work, "shared_buffers = 'plenty'").unwrap();
    let msg = pg.start().unwrap_err().to_string();
    assert!(msg.contains("pg_ctl start failed"), "{msg}");
    assert!(msg.contains("shared_buffers"), "log tail missing: {msg}");
    assert!(!pg.is_running());
}

#[test]
fn point_in_time_restore_from_the_archive() {
    let work = WorkDir::new();
    let (mut primary, archive) = archiving_cluster(&work);
    primary
        .psql("CREATE TABLE t (id int); INSERT INTO t VALUES (0);")
        .unwrap();
    // -X none: the backup holds no WAL, so recovery must fetch it from the archive.
    let backup = primary.base_backup("backup", ["-X", "none"]).unwrap();
    primary
        .psql(
            "INSERT INTO t VALUES (1);
             SELECT pg_create_restore_point('before_2');
             INSERT INTO t VALUES (2);",
        )
        .unwrap();
    let segment = primary.switch_wal().unwrap();
    primary.wait_archived(&segment, ARCHIVE_TIMEOUT).unwrap();
    primary.stop().unwrap();

    let conf = format!(
        "archive_mode = off\n\
         restore_command = 'cp {}/%f %p'\n\
         recovery_target_name = 'before_2'\n\
         recovery_target_action = 'promote'\n",
        archive.display()
    );
    let mut restored = PgCluster::adopt(&work, &backup, &conf).unwrap();
    assert_ne!(restored.socket_dir(), primary.socket_dir());
    let status = as_postgres("touch")
        .arg(backup.join("recovery.signal"))
        .status()
        .unwrap();
    assert!(status.success());
    restored.start().unwrap();

    let mut promoted = false;
    for _ in 0..600 {
        if restored.psql("SELECT pg_is_in_recovery()").unwrap() == "f" {
            promoted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(promoted, "not promoted:\n{}", restored.log_tail(20));
    assert_eq!(
        restored
            .psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM t")
            .unwrap(),
        "0,1"
    );
    assert_eq!(
        restored
            .psql("SELECT timeline_id FROM pg_control_checkpoint()")
            .unwrap(),
        "2"
    );
    restored.stop().unwrap();
}

#[test]
fn work_dir_is_short_shared_with_postgres_and_removed() {
    let work = WorkDir::new();
    let path = work.path().to_path_buf();
    assert!(path.starts_with("/tmp"));
    assert!(path.as_os_str().len() < 40, "{}", path.display());
    let nested = work.mkdir_owned("a/b");
    assert!(nested.is_dir());
    for dir in [&path, &nested, &work.join("a")] {
        let meta = fs::metadata(dir).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o755, "{}", dir.display());
        if let Some((uid, gid)) = postgres_owner() {
            assert_eq!((meta.uid(), meta.gid()), (uid.as_raw(), gid.as_raw()));
        }
    }
    // The postgres user can create files in it.
    let status = as_postgres("touch").arg(nested.join("f")).status().unwrap();
    assert!(status.success());

    let clone = work.clone();
    drop(work);
    assert!(path.exists(), "a clone keeps the directory");
    drop(clone);
    assert!(!path.exists(), "the last drop removes it");
}

#[test]
fn synthetic_segment_is_deterministic_and_mixed() {
    let a = synthetic_segment(42, SEGMENT_SIZE);
    let b = synthetic_segment(42, SEGMENT_SIZE);
    assert_eq!(a.len(), SEGMENT_SIZE);
    assert!(a == b, "same seed, same bytes");
    assert_ne!(synthetic_segment(43, 65_536), a[..65_536]);
    // A shorter request is not required to be a prefix, but must be deterministic too.
    assert_eq!(synthetic_segment(7, 1000), synthetic_segment(7, 1000));

    // A mix: long zero runs and every byte value.
    let mut histogram = [0_usize; 256];
    for &byte in &a {
        histogram[usize::from(byte)] += 1;
    }
    let zeros = histogram[0];
    assert!(zeros > SEGMENT_SIZE / 10, "zeros: {zeros}");
    assert!(zeros < SEGMENT_SIZE / 2, "zeros: {zeros}");
    assert!(histogram.iter().all(|&n| n > 0), "every byte value occurs");
}

/// What wal-store checks before storing and before restoring ([`wal_core::shape`]) must
/// take the kit's WAL for what it says it is: every test that stores a `wal_segment` relies
/// on it.
#[test]
fn wal_segments_and_history_files_have_the_shape_walpipe_checks() {
    let checked = |name: &str, bytes: &[u8]| {
        let parsed = WalName::parse(name).unwrap();
        shape::check(&parsed, bytes, bytes.len() as u64).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    for name in ["000000010000000000000001", "00000003000000020000000F"] {
        let a = wal_segment(name, 1);
        assert_eq!(a.len(), 1 << 20);
        let header = checked(name, &a).expect("a segment has a long header");
        assert_eq!(header.system_identifier, TEST_SYSTEM_ID);
        assert_eq!(header.magic, PG15_PAGE_MAGIC);
        assert_eq!(header.pg_version, "15");
        assert_eq!(header.segment_size.bytes(), 1 << 20);
        let b = wal_segment(name, 2);
        assert!(a != b, "another seed, other content under the same name");
        assert_eq!(a[..40], b[..40], "the same header");
        // The same bytes under another segment's name are not that segment.
        let parsed = WalName::parse("000000010000000000000005").unwrap();
        assert!(shape::check(&parsed, &a, a.len() as u64).is_err(), "{name}");
        // A partial segment of it too.
        checked(&format!("{name}.partial"), &a);
    }
    let name = "000000010000000000000003";
    let big = wal_segment_sized(name, 7, SEGMENT_SIZE);
    assert_eq!(
        checked(name, &big).unwrap().segment_size.bytes(),
        SEGMENT_SIZE as u64
    );
    let other = wal_segment_of(name, 7, SEGMENT_SIZE, 42);
    assert_eq!(checked(name, &other).unwrap().system_identifier, 42);
    for timeline in [2, 3, 16] {
        checked(&format!("{timeline:08X}.history"), &history_file(timeline));
    }
    // The real segments, and of one cluster.
    let systems: std::collections::BTreeSet<u64> = wal_fixture_segments()
        .iter()
        .map(|path| {
            let bytes = fs::read(path).unwrap();
            checked(path.file_name().unwrap().to_str().unwrap(), &bytes)
                .unwrap()
                .system_identifier
        })
        .collect();
    assert_eq!(systems.len(), 1, "{systems:?}");
}

#[test]
fn clean_command_removes_walpipe_and_pg_variables() {
    let mut cmd = Command::new("env");
    cmd.env("WALPIPE_HOME", "/nowhere")
        .env("PGHOST", "/nowhere")
        .env("KEEP_ME", "yes");
    clean_command(&mut cmd);
    // Variables inherited from this process are removed as well.
    let inherited: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("WALPIPE_") || k.starts_with("PG"))
        .collect();
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    let env = String::from_utf8(out.stdout).unwrap();
    assert!(env.lines().any(|l| l == "KEEP_ME=yes"), "{env}");
    for line in env.lines() {
        assert!(
            !line.starts_with("WALPIPE_") && !line.starts_with("PG"),
            "{line} leaked (inherited: {inherited:?})"
        );
    }
}

#[test]
fn paths_point_into_the_workspace() {
    let root = workspace_root();
    assert!(root.join("Cargo.toml").is_file());
    assert!(root.join("tests/Cargo.toml").is_file());
    assert!(script("make-wal-fixtures").is_file());
    assert!(script("install-test-deps").is_file());
}

#[test]
fn target_bin_names_a_missing_binary() {
    if let Some(dir) = std::env::var_os("WALPIPE_BIN_DIR") {
        let path = target_bin("no-such-binary");
        assert_eq!(path, std::path::Path::new(&dir).join("no-such-binary"));
        return;
    }
    let panic = std::panic::catch_unwind(|| target_bin("no-such-binary")).unwrap_err();
    let msg = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(msg.contains("\"no-such-binary\" not found"), "{msg}");
    assert!(msg.contains("cargo build"), "{msg}");
}

#[test]
fn wal_fixtures_are_complete_real_segments() {
    let segments = wal_fixture_segments();
    assert!(
        (16..=32).contains(&segments.len()),
        "{} segments",
        segments.len()
    );
    for segment in &segments {
        assert_eq!(
            fs::metadata(segment).unwrap().len(),
            SEGMENT_SIZE as u64,
            "{}",
            segment.display()
        );
    }
    // Consecutive names on timeline 1: a complete, gap-free run.
    let names: Vec<String> = segments
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| is_segment_name(n) && n.starts_with("00000001"))
    );
    for pair in names.windows(2) {
        let a = u64::from_str_radix(&pair[0][8..], 16).unwrap();
        let b = u64::from_str_radix(&pair[1][8..], 16).unwrap();
        assert_eq!(b, a + 1, "{} then {}", pair[0], pair[1]);
    }
    // Real WAL: every page starts with XLOG_PAGE_MAGIC 0xD110 (PostgreSQL 15), little-endian.
    let first = fs::read(&segments[0]).unwrap();
    assert_eq!(&first[..2], &[0x10, 0xD1]);
    let dir = segments[0].parent().unwrap();
    let sums = fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), segments.len());
    let status = Command::new("sha256sum")
        .args(["--quiet", "--check", "SHA256SUMS"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "SHA256SUMS mismatch in {}", dir.display());
}
