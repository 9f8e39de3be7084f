//! Archiving into a 3-node Garage cluster (replication 3) while a node fails.
//!
//! Object stores are clusters, and nodes go away: the archiver talks to one node, which
//! needs a quorum of the others. With one node of three killed in the middle of a run,
//! every WAL must still end up archived (a record that could not be stored fails as
//! `temporary`, its source stays queued, and the next run stores it), and every WAL must
//! restore byte for byte through each node still up.
//!
//! The stages are the built binaries in one pipe, as scripts/archive-wal runs them:
//! `wal-scan incoming | wal-compress --algorithm zstd | wal-store put --archive s3://…`.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use walpipe_tests::clean_cloud_command;
use walpipe_tests::watchdog::run_within;
use walpipe_tests::{
    GarageCluster, WorkDir, ndjson, parse_records, target_bin, wal_fixture_segments,
};

const SERVER: &str = "pg";
const ARCHIVE: &str = "s3://wals/p";
/// A run still going after this is hung: killed, and the test fails.
const WATCHDOG: Duration = Duration::from_secs(300);

/// A built binary, hermetic, with the credentials of node `node`.
fn stage(name: &str, cluster: &GarageCluster, node: usize) -> Command {
    let mut cmd = Command::new(target_bin(name));
    clean_cloud_command(&mut cmd);
    cmd.envs(cluster.env(node));
    cmd
}

/// The archive pipeline over `queue` through node `node`, started; stdout of wal-store
/// is piped, each stage's stderr goes to a file in `scratch`.
struct Archiving {
    children: Vec<Child>,
    logs: Vec<PathBuf>,
    records: BufReader<std::process::ChildStdout>,
    started: Instant,
}

impl Archiving {
    fn start(
        cluster: &GarageCluster,
        node: usize,
        queue: &Path,
        scratch: &Path,
        run: &str,
    ) -> Archiving {
        let stages: [(&str, Vec<OsString>); 3] = [
            (
                "wal-scan",
                vec![
                    "incoming".into(),
                    queue.into(),
                    "--server".into(),
                    SERVER.into(),
                ],
            ),
            ("wal-compress", vec!["--algorithm".into(), "zstd".into()]),
            (
                "wal-store",
                vec![
                    "put".into(),
                    "--server".into(),
                    SERVER.into(),
                    "--archive".into(),
                    ARCHIVE.into(),
                    "--endpoint-url".into(),
                    cluster.endpoint(node).into(),
                    "--jobs".into(),
                    "2".into(),
                    // The queue whose entries it may remove once stored.
                    "--incoming".into(),
                    queue.into(),
                ],
            ),
        ];
        let mut children = Vec::new();
        let mut logs = Vec::new();
        let mut previous: Option<std::process::ChildStdout> = None;
        for (name, args) in stages {
            let log = scratch.join(format!("{run}-{name}.stderr"));
            let mut cmd = stage(name, cluster, node);
            cmd.args(args)
                .stdin(previous.take().map_or_else(Stdio::null, Stdio::from))
                .stdout(Stdio::piped())
                .stderr(File::create(&log).unwrap());
            let mut child = cmd.spawn().unwrap_or_else(|e| {
                panic!("cannot run {name}: {e} (cargo build --workspace --bins)")
            });
            previous = child.stdout.take();
            children.push(child);
            logs.push(log);
        }
        Archiving {
            children,
            logs,
            records: BufReader::new(previous.unwrap()),
            started: Instant::now(),
        }
    }

    /// The next record wal-store prints, `None` at the end.
    fn next_record(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.records.read_line(&mut line).unwrap() {
            0 => None,
            _ => Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))),
        }
    }

    /// The rest of the records, every stage's exit code, and their stderr.
    fn finish(mut self) -> (Vec<Value>, Vec<i32>, String) {
        let mut rest = String::new();
        self.records.read_to_string(&mut rest).unwrap();
        let mut codes = Vec::new();
        for child in &mut self.children {
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                assert!(
                    self.started.elapsed() < WATCHDOG,
                    "the archive pipeline hung"
                );
                thread::sleep(Duration::from_millis(20));
            };
            codes.push(status.code().expect("exits, not killed"));
        }
        let stderr = self
            .logs
            .iter()
            .map(|log| fs::read_to_string(log).unwrap())
            .collect();
        (parse_records(rest.as_bytes()), codes, stderr)
    }
}

impl Drop for Archiving {
    fn drop(&mut self) {
        for child in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// walpipe's restore of `name` through node `node`:
/// `wal-store get NAME | wal-compress --decompress | wal-store get --to DEST`.
fn restore(cluster: &GarageCluster, node: usize, name: &str, scratch: &Path) -> Vec<u8> {
    let temps = scratch.join(format!("temps-{node}"));
    fs::create_dir_all(&temps).unwrap();
    let dest = scratch.join(format!("restored-{node}-{name}"));
    let mut get = stage("wal-store", cluster, node);
    get.args([
        "get",
        "--server",
        SERVER,
        "--archive",
        ARCHIVE,
        "--endpoint-url",
    ])
    .arg(cluster.endpoint(node))
    .arg(name)
    .arg("--temp-dir")
    .arg(&temps);
    let found = run(&mut get, "");
    assert_eq!(found.0, 0, "get {name} through node {node}: {}", found.2);
    let mut decompress = stage("wal-compress", cluster, node);
    decompress.arg("--decompress").arg("--temp-dir").arg(&temps);
    let plain = run(&mut decompress, &ndjson(&parse_records(&found.1)));
    assert_eq!(plain.0, 0, "decompress {name}: {}", plain.2);
    let mut write = stage("wal-store", cluster, node);
    write
        .args([
            "get",
            "--server",
            SERVER,
            "--archive",
            ARCHIVE,
            "--endpoint-url",
        ])
        .arg(cluster.endpoint(node))
        .arg("--to")
        .arg(&dest)
        // Where the temps it may move into place or remove are.
        .arg("--temp-dir")
        .arg(&temps);
    let written = run(&mut write, &String::from_utf8(plain.1).unwrap());
    assert_eq!(written.0, 0, "get --to {name}: {}", written.2);
    let bytes = fs::read(&dest).unwrap();
    fs::remove_file(&dest).unwrap();
    bytes
}

/// Runs `cmd` with `stdin`, killed after [`WATCHDOG`]: (exit code, stdout, stderr).
fn run(cmd: &mut Command, stdin: &str) -> (i32, Vec<u8>, String) {
    let done = run_within(cmd, stdin, WATCHDOG);
    (done.code, done.stdout, done.stderr)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_wal_is_archived_and_restorable_when_a_node_dies_mid_run() {
    let work = WorkDir::new();
    let scratch = work.path();
    let mut cluster = GarageCluster::start(scratch);
    let segments = wal_fixture_segments();
    assert!(
        segments.len() >= 10,
        "the WAL fixture set has {} segments",
        segments.len()
    );
    let names: Vec<String> = segments
        .iter()
        .map(|s| s.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    let queue = work.join("incoming");
    fs::create_dir_all(&queue).unwrap();
    let half = segments.len() / 2;

    // First half with every node up.
    for segment in &segments[..half] {
        fs::copy(segment, queue.join(segment.file_name().unwrap())).unwrap();
    }
    let (records, codes, stderr) = Archiving::start(&cluster, 0, &queue, scratch, "run1").finish();
    assert_eq!(codes, [0, 0, 0], "{stderr}");
    assert_eq!(records.len(), half);
    assert!(
        records.iter().all(|r| r["outcome"] == "stored"),
        "{records:?}"
    );

    // Second half: node 2 is killed as soon as the first record of the run is stored.
    for segment in &segments[half..] {
        fs::copy(segment, queue.join(segment.file_name().unwrap())).unwrap();
    }
    let mut archiving = Archiving::start(&cluster, 0, &queue, scratch, "run2");
    let first = archiving.next_record().expect("a first record");
    cluster.stop_node(2);
    let killed_at = archiving.started.elapsed();
    let (mut records, codes, stderr) = archiving.finish();
    records.insert(0, first);
    eprintln!("node 2 killed {killed_at:.2?} into the run\n{stderr}");
    assert_eq!(records.len(), segments.len() - half);
    let stored = records.iter().filter(|r| r["outcome"] == "stored").count();
    let temporary = records
        .iter()
        .filter(|r| r["error"]["kind"] == "temporary")
        .count();
    assert_eq!(
        stored + temporary,
        records.len(),
        "stored or temporary only: {records:?}"
    );
    if temporary > 0 {
        // A record the cluster could not take in time: 75, and the next run stores it.
        assert_eq!(codes, [0, 0, 75], "{stderr}");
        let (records, codes, stderr) =
            Archiving::start(&cluster, 0, &queue, scratch, "run3").finish();
        assert_eq!(codes, [0, 0, 0], "{stderr}");
        assert!(
            records
                .iter()
                .all(|r| r["outcome"] == "stored" || r["outcome"] == "duplicate"),
            "{records:?}"
        );
    } else {
        assert_eq!(codes, [0, 0, 0], "{stderr}");
    }
    assert_eq!(
        names_in(&queue),
        Vec::<String>::new(),
        "sources and temps all gone"
    );

    // Every WAL is there once, and restores through each node still up.
    let expected: Vec<String> = names
        .iter()
        .map(|n| format!("p/{SERVER}/wals/{}/{n}.zst", &n[..16]))
        .collect();
    for node in [0, 1] {
        let keys: Vec<String> = cluster
            .list_keys(node, cluster.bucket(), "p/")
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(keys, expected, "listing through node {node}");
        for (name, segment) in names.iter().zip(&segments) {
            assert!(
                restore(&cluster, node, name, scratch) == fs::read(segment).unwrap(),
                "{name} does not restore through node {node}"
            );
        }
    }

    // The node comes back and serves the archive too.
    cluster.start_node(2);
    let keys = cluster.list_keys(2, cluster.bucket(), "p/");
    assert_eq!(keys.len(), names.len());
    let last = names.last().unwrap();
    assert!(restore(&cluster, 2, last, scratch) == fs::read(segments.last().unwrap()).unwrap());
}
