//! One archive, one cluster, with real PostgreSQL 15 servers: a segment written by a
//! second cluster (its own `initdb`, so its own system identifier) and handed to the
//! archive of the first is refused, naming both identifiers; the first cluster goes on
//! archiving, and a point-in-time recovery from the archive still works.
//!
//! Needs `cargo build --workspace --bins` first and PostgreSQL 15.

use std::fs;
use std::path::Path;
use std::time::Duration;

use walpipe_tests::pitr::{LOAD_ROUNDS, Primary, RESTORE_POINT, STATE_SQL};
use walpipe_tests::wrappers::{
    archived_path, assert_success, bin_dir, dir_names, queue_archive_command, wrapper_as_postgres,
};
use walpipe_tests::{PgCluster, WorkDir, as_postgres, script};

const SERVER: &str = "pg";
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(90);

fn system_identifier(pg: &PgCluster) -> String {
    pg.psql("SELECT system_identifier FROM pg_control_system()")
        .expect("system identifier")
}

fn archive_wal(home: &Path) -> std::process::Output {
    wrapper_as_postgres("archive-wal")
        .arg("--home")
        .arg(home)
        .args(["--server", SERVER])
        .output()
        .expect("archive-wal runs")
}

/// A segment written by a second cluster (its own `initdb`): the file (kept alive by the
/// returned work directory), its name and its cluster's system identifier.
fn stranger_segment() -> (WorkDir, std::path::PathBuf, String, String) {
    let stranger_work = WorkDir::new();
    let stranger_wal = stranger_work.mkdir_owned("archived");
    let mut stranger = PgCluster::init(
        &stranger_work,
        &format!(
            "archive_mode = on\narchive_command = 'cp %p {}/%f'\n",
            stranger_wal.display()
        ),
    )
    .expect("initdb of the second cluster");
    stranger.start().expect("start");
    stranger
        .psql("CREATE TABLE t AS SELECT generate_series(1, 10000) AS n")
        .unwrap();
    let segment = stranger.switch_wal().unwrap();
    stranger.wait_archived(&segment, ARCHIVE_TIMEOUT).unwrap();
    let id = system_identifier(&stranger);
    stranger.stop().unwrap();
    (stranger_work, stranger_wal.join(&segment), segment, id)
}

/// Puts `segment` (named `name`) into the streaming queue of `home`, as a pg_receivewal
/// pointed at the wrong server would, with the blank `.partial` of the segment after it
/// (pg_receivewal's open file: the queue holds back nothing before it). Returns its path.
fn into_streaming_queue(home: &Path, segment: &Path, name: &str) -> std::path::PathBuf {
    let streaming = home.join(SERVER).join("streaming");
    let status = as_postgres("mkdir")
        .arg("-p")
        .arg(&streaming)
        .status()
        .unwrap();
    assert!(status.success());
    let stray = streaming.join(name);
    let status = as_postgres("cp").arg(segment).arg(&stray).status().unwrap();
    assert!(status.success());
    let open_segment = format!(
        "{}{:08X}.partial",
        &name[..16],
        u32::from_str_radix(&name[16..], 16).unwrap() + 1
    );
    let status = as_postgres("touch")
        .arg(streaming.join(&open_segment))
        .status()
        .unwrap();
    assert!(status.success());
    stray
}

#[test]
fn a_segment_of_another_cluster_is_refused_and_the_first_keeps_archiving_and_recovering() {
    let (_stranger_work, stranger_file, stranger_segment, stranger_id) = stranger_segment();

    // The first cluster archives through walpipe's incoming queue.
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    let conf = format!(
        "archive_mode = on\narchive_command = '{}'\n",
        queue_archive_command(&home, SERVER)
    );
    let mut pg = PgCluster::init(&work, &conf).expect("initdb");
    pg.start().expect("start");
    let own_id = system_identifier(&pg);
    assert_ne!(own_id, stranger_id, "two initdb, two systems");
    pg.pgbench(["-i", "-q", "-s", "1"]).unwrap();
    let backup = pg.base_backup("backup", ["-X", "none"]).unwrap();
    let first = pg.switch_wal().unwrap();
    pg.wait_archived(&first, ARCHIVE_TIMEOUT).unwrap();
    assert_success(&archive_wal(&home), "archive-wal of the first cluster");
    let identity = fs::read_to_string(home.join(SERVER).join("identity.json")).unwrap();
    assert!(
        identity.contains(&own_id),
        "Barman's identity file: {identity}"
    );

    // The stranger's segment turns up in the streaming queue while the first cluster
    // goes on writing.
    let stray = into_streaming_queue(&home, &stranger_file, &stranger_segment);
    let archived_before = fs::read(archived_path(
        &home.join(SERVER).join("wals"),
        &stranger_segment,
    ));

    for _ in 0..LOAD_ROUNDS {
        pg.pgbench(["-n", "-c", "2", "-t", "150"]).unwrap();
        pg.switch_wal().unwrap();
    }
    pg.psql(&format!(
        "SELECT pg_create_restore_point('{RESTORE_POINT}')"
    ))
    .unwrap();
    let state = pg.psql(STATE_SQL).unwrap();
    pg.pgbench(["-n", "-c", "2", "-t", "150"]).unwrap();
    let last = pg.switch_wal().unwrap();
    pg.wait_archived(&last, ARCHIVE_TIMEOUT).unwrap();

    let out = archive_wal(&home);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the stranger fails the run: {stderr}"
    );
    assert!(
        stderr.contains(&own_id) && stderr.contains(&stranger_id),
        "one line naming both system identifiers: {stderr}"
    );
    assert!(stray.exists(), "the refused segment stays where it was");
    assert_eq!(
        fs::read(archived_path(
            &home.join(SERVER).join("wals"),
            &stranger_segment
        ))
        .ok(),
        archived_before.ok(),
        "the archive's own segment of that name is untouched"
    );
    // Everything the first cluster queued was archived in the same run.
    assert!(
        dir_names(&home.join(SERVER).join("incoming")).is_empty(),
        "the first cluster's WAL were archived despite the stranger"
    );
    assert!(archived_path(&home.join(SERVER).join("wals"), &last).exists());

    // A DBA moves the stranger away; archiving is clean again.
    fs::remove_file(&stray).unwrap();
    assert_success(&archive_wal(&home), "archive-wal once the stranger is gone");
    pg.stop().unwrap();

    // And the archive recovers the first cluster to its restore point.
    let primary = Primary {
        work,
        backup,
        state,
        last,
    };
    let restore_command = format!(
        "WALPIPE_BIN_DIR={bin} {script} --home {home} --server {SERVER} %f %p",
        bin = bin_dir().display(),
        script = script("restore-wal").display(),
        home = home.display(),
    );
    let mut restored = primary.recover("restore", &restore_command);
    primary.assert_recovered(&restored, "restore-wal after a refused stranger");
    restored.stop().unwrap();
}
