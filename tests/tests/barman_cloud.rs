//! Interoperability with the real barman-cloud 3.19, both ways, on real WAL.
//!
//! A DBA must be able to switch between walpipe and barman-cloud on the same bucket at
//! any time: `barman-cloud-wal-restore` (PostgreSQL's `restore_command`) restores every
//! segment walpipe uploaded, and walpipe restores every segment
//! `barman-cloud-wal-archive` (`archive_command`) uploaded, byte for byte, whatever
//! compression either side chose. S3 runs against a Garage node, Azure Blob against
//! Azurite (barman-cloud's emulator URL form `http://HOST:PORT/ACCOUNT/CONTAINER/PREFIX`,
//! credentials from `AZURE_STORAGE_CONNECTION_STRING`), Google Cloud Storage against
//! fake-gcs-server (barman-cloud's Google client reaches it through
//! `STORAGE_EMULATOR_HOST`, anonymously). On GCS only one way: walpipe restores what
//! barman-cloud uploads; its own uploads go through GCS's XML API, which the emulator
//! does not serve (tests/tests/cloud_servers.rs).
//!
//! A barman-cloud bucket verifies clean with scripts/verify-wal; in Garage, what it must
//! find there is found (the same WAL under two extensions, an object replaced), and a
//! re-run with `--state` downloads only what changed.
//!
//! barman-cloud comes from the venv at `<cache>/barman-cloud-venv` (`~/.cache/walpipe`,
//! made by scripts/install-test-deps); walpipe's stages are the built binaries (`cargo
//! build --workspace --bins`), run as one pipe, as scripts/archive-wal runs them.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use wal_core::WalName;
use wal_core::shape;
use walpipe_tests::clean_cloud_command;
use walpipe_tests::watchdog::run_within;
use walpipe_tests::{
    Azurite, FakeGcs, Garage, SEGMENT_SIZE, WorkDir, ndjson, parse_records, target_bin,
    wal_cache_dir, wal_fixture_segments, wal_segment_of,
};

const SERVER: &str = "pg";
/// A command still running after this is hung: killed, and the test fails.
const WATCHDOG: Duration = Duration::from_secs(300);

/// A barman-cloud tool of the venv.
fn barman_cloud(tool: &str) -> PathBuf {
    let bin = wal_cache_dir().join("barman-cloud-venv/bin").join(tool);
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/install-test-deps (barman[cloud] 3.19 in a venv)",
        bin.display()
    );
    bin
}

/// What a command gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `cmd` with `stdin`; kills it after [`WATCHDOG`].
fn run(cmd: &mut Command, stdin: &str) -> Run {
    let done = run_within(cmd, stdin, WATCHDOG);
    Run {
        code: done.code,
        stdout: done.stdout,
        stderr: done.stderr,
    }
}

/// Runs `stages` as one pipe (built binaries, hermetic, with `env`); returns the exit
/// codes, the last stage's records and every stage's stderr.
fn pipeline(
    stages: &[(&str, Vec<OsString>)],
    env: &[(String, String)],
    scratch: &Path,
) -> (Vec<i32>, Vec<Value>, String) {
    let mut children = Vec::new();
    let mut logs = Vec::new();
    let mut previous: Option<std::process::ChildStdout> = None;
    for (index, (name, args)) in stages.iter().enumerate() {
        let log = scratch.join(format!("pipeline-{index}.stderr"));
        let mut cmd = Command::new(target_bin(name));
        clean_cloud_command(&mut cmd);
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .stdin(previous.take().map_or_else(Stdio::null, Stdio::from))
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {name}: {e} (cargo build --workspace --bins)"));
        previous = child.stdout.take();
        children.push(child);
        logs.push(log);
    }
    let mut last = previous.unwrap();
    let reader = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = last.read_to_end(&mut text);
        text
    });
    let start = Instant::now();
    let mut codes = Vec::new();
    for child in &mut children {
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < WATCHDOG, "pipeline hung: {stages:?}");
            thread::sleep(Duration::from_millis(20));
        };
        codes.push(status.code().expect("exits, not killed"));
    }
    let stdout = reader.join().unwrap();
    let stderr = logs
        .iter()
        .map(|log| fs::read_to_string(log).unwrap())
        .collect();
    (codes, parse_records(&stdout), stderr)
}

/// An object store both tools can reach.
enum Store {
    S3(Garage),
    Azure(Azurite),
    Gcs(FakeGcs),
}

impl Store {
    /// walpipe's name for `prefix` in the bucket.
    fn walpipe_url(&self, prefix: &str) -> String {
        match self {
            Store::S3(garage) => format!("s3://{}/{prefix}", garage.bucket()),
            Store::Azure(azurite) => format!("az://{}/{prefix}", azurite.container()),
            Store::Gcs(gcs) => format!("gs://{}/{prefix}", gcs.bucket()),
        }
    }

    /// barman-cloud's name for it, and the flags that go with it.
    fn barman_args(&self, prefix: &str) -> Vec<String> {
        match self {
            Store::S3(garage) => vec![
                "--endpoint-url".into(),
                garage.endpoint(),
                format!("s3://{}/{prefix}", garage.bucket()),
            ],
            Store::Azure(azurite) => vec![
                "--cloud-provider".into(),
                "azure-blob-storage".into(),
                format!(
                    "{}/{}/{prefix}",
                    azurite.blob_endpoint(),
                    azurite.container()
                ),
            ],
            Store::Gcs(gcs) => vec![
                "--cloud-provider".into(),
                "google-cloud-storage".into(),
                format!("gs://{}/{prefix}", gcs.bucket()),
            ],
        }
    }

    /// What both tools need: walpipe's settings, and for GCS `STORAGE_EMULATOR_HOST`,
    /// which Google's client (barman-cloud's) reads and walpipe does not.
    fn env(&self) -> Vec<(String, String)> {
        match self {
            Store::S3(garage) => garage.env(),
            Store::Azure(azurite) => azurite.env(),
            Store::Gcs(gcs) => {
                let mut env = gcs.env();
                env.push(("STORAGE_EMULATOR_HOST".to_owned(), gcs.endpoint()));
                env
            }
        }
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        let listed = match self {
            Store::S3(garage) => garage.list_keys(garage.bucket(), prefix),
            Store::Azure(azurite) => azurite.list_blobs(azurite.container(), prefix),
            Store::Gcs(gcs) => gcs.list_objects(gcs.bucket(), prefix),
        };
        listed.into_iter().map(|(key, _)| key).collect()
    }
}

/// The settings walpipe is given.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Settings {
    /// walpipe's own: the store's `walpipe_url` and all its variables.
    Walpipe,
    /// barman-cloud's Azure settings as they are: its archive URL and its connection
    /// string.
    BarmanCloud,
    /// `az://` with the account in `AZURE_STORAGE_ACCOUNT` (the Azure CLI's), its key in
    /// `AZURE_STORAGE_KEY` (barman-cloud's) and the blob endpoint in
    /// `WALPIPE_ENDPOINT_URL`: no connection string.
    AccountAndKey,
}

/// A test's world: a work directory and a store.
struct World {
    work: WorkDir,
    store: Store,
    settings: Settings,
}

impl World {
    fn s3() -> World {
        let work = WorkDir::new();
        let store = Store::S3(Garage::start(work.path()));
        World::of(work, store)
    }

    fn azure() -> World {
        let work = WorkDir::new();
        let store = Store::Azure(Azurite::start(work.path()));
        World::of(work, store)
    }

    fn gcs() -> World {
        let work = WorkDir::new();
        let store = Store::Gcs(FakeGcs::start(work.path()));
        World::of(work, store)
    }

    fn of(work: WorkDir, store: Store) -> World {
        World {
            work,
            store,
            settings: Settings::Walpipe,
        }
    }

    /// walpipe's archive URL for `prefix`.
    fn walpipe_url(&self, prefix: &str) -> String {
        match self.settings {
            Settings::BarmanCloud => self.store.barman_args(prefix).pop().unwrap(),
            _ => self.store.walpipe_url(prefix),
        }
    }

    /// The variables walpipe is given.
    fn walpipe_env(&self) -> Vec<(String, String)> {
        let azurite = || match &self.store {
            Store::Azure(azurite) => azurite,
            _ => panic!("{:?} is for Azure", self.settings),
        };
        let pairs = |pairs: &[(&str, String)]| {
            pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect()
        };
        match self.settings {
            Settings::Walpipe => self.store.env(),
            Settings::BarmanCloud => pairs(&[(
                "AZURE_STORAGE_CONNECTION_STRING",
                azurite().connection_string(),
            )]),
            Settings::AccountAndKey => pairs(&[
                (
                    "AZURE_STORAGE_ACCOUNT",
                    walpipe_tests::cloud::AZURITE_ACCOUNT.to_owned(),
                ),
                (
                    "AZURE_STORAGE_KEY",
                    walpipe_tests::cloud::AZURITE_KEY.to_owned(),
                ),
                ("WALPIPE_ENDPOINT_URL", azurite().blob_endpoint()),
            ]),
        }
    }

    /// A barman-cloud tool with the store's credentials.
    fn barman(&self, tool: &str) -> Command {
        let mut cmd = Command::new(barman_cloud(tool));
        clean_cloud_command(&mut cmd);
        cmd.envs(self.store.env());
        cmd
    }

    /// walpipe archives `files` into `prefix`, through
    /// `wal-scan incoming | wal-compress --algorithm ALG | wal-store put`: each stored.
    fn walpipe_archive(&self, prefix: &str, algorithm: &str, files: &[(String, Vec<u8>)]) {
        let queue = format!("incoming-{prefix}");
        let records = self.walpipe_put(&queue, prefix, algorithm, files);
        assert_eq!(records.len(), files.len());
        assert!(
            records.iter().all(|r| r["outcome"] == "stored"),
            "{records:?}"
        );
        assert!(
            fs::read_dir(self.work.join(&queue))
                .unwrap()
                .next()
                .is_none(),
            "queue not emptied"
        );
    }

    /// Queues `files` in the directory `queue` and runs the archive pipeline over it into
    /// `prefix` (every stage must succeed); returns wal-store's records.
    fn walpipe_put(
        &self,
        queue: &str,
        prefix: &str,
        algorithm: &str,
        files: &[(String, Vec<u8>)],
    ) -> Vec<Value> {
        let queue = self.work.join(queue);
        fs::create_dir_all(&queue).unwrap();
        for (name, bytes) in files {
            fs::write(queue.join(name), bytes).unwrap();
        }
        let (codes, records, stderr) = pipeline(
            &[
                (
                    "wal-scan",
                    os(&["incoming", queue.to_str().unwrap(), "--server", SERVER]),
                ),
                ("wal-compress", os(&["--algorithm", algorithm])),
                (
                    "wal-store",
                    os(&[
                        "put",
                        "--server",
                        SERVER,
                        "--archive",
                        &self.walpipe_url(prefix),
                        // The queue whose entries it may remove once stored.
                        "--incoming",
                        queue.to_str().unwrap(),
                    ]),
                ),
            ],
            &self.walpipe_env(),
            self.work.path(),
        );
        assert_eq!(codes, [0, 0, 0], "{stderr}");
        records
    }

    /// barman-cloud-wal-archive of `path` into `prefix` with `flags` (e.g. `--zstd`).
    fn barman_archive(&self, prefix: &str, flags: &[&str], path: &Path) {
        let mut cmd = self.barman("barman-cloud-wal-archive");
        cmd.args(flags)
            .args(self.store.barman_args(prefix))
            .arg(SERVER)
            .arg(path);
        let out = run(&mut cmd, "");
        assert_eq!(
            out.code,
            0,
            "barman-cloud-wal-archive {}: {}",
            path.display(),
            out.stderr
        );
    }

    /// barman-cloud-wal-restore of `name` from `prefix`: the bytes it wrote.
    fn barman_restore(&self, prefix: &str, name: &str) -> Vec<u8> {
        let dest = self.work.join(format!("barman-restored-{name}"));
        let spool = self.work.join("barman-spool");
        let mut cmd = self.barman("barman-cloud-wal-restore");
        cmd.arg("--spool-dir")
            .arg(&spool)
            .args(self.store.barman_args(prefix))
            .args([SERVER, name])
            .arg(&dest);
        let out = run(&mut cmd, "");
        assert_eq!(
            out.code, 0,
            "barman-cloud-wal-restore {name}: {}",
            out.stderr
        );
        let bytes = fs::read(&dest).unwrap();
        fs::remove_file(&dest).unwrap();
        bytes
    }

    /// `wal-store` with the store's credentials.
    fn wal_store(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(target_bin("wal-store"));
        clean_cloud_command(&mut cmd);
        cmd.envs(self.walpipe_env()).args(args);
        cmd
    }

    /// walpipe's restore of `name` from `prefix`:
    /// `wal-store get NAME | wal-compress --decompress | wal-store get --to DEST`.
    fn walpipe_restore(&self, prefix: &str, name: &str) -> Vec<u8> {
        let url = self.walpipe_url(prefix);
        let temps = self.work.join("walpipe-temps");
        fs::create_dir_all(&temps).unwrap();
        let dest = self.work.join(format!("walpipe-restored-{name}"));
        let found = run(
            self.wal_store(&["get", "--server", SERVER, "--archive", &url, name])
                .arg("--temp-dir")
                .arg(&temps),
            "",
        );
        assert_eq!(found.code, 0, "wal-store get {name}: {}", found.stderr);
        let records = parse_records(&found.stdout);
        let mut decompress = Command::new(target_bin("wal-compress"));
        clean_cloud_command(&mut decompress);
        decompress.arg("--decompress").arg("--temp-dir").arg(&temps);
        let plain = run(&mut decompress, &ndjson(&records));
        assert_eq!(
            plain.code, 0,
            "wal-compress --decompress {name}: {}",
            plain.stderr
        );
        let written = run(
            self.wal_store(&["get", "--server", SERVER, "--archive", &url, "--to"])
                .arg(&dest)
                // Where the temps it may move into place or remove are.
                .arg("--temp-dir")
                .arg(&temps),
            &String::from_utf8(plain.stdout).unwrap(),
        );
        assert_eq!(
            written.code, 0,
            "wal-store get --to {name}: {}",
            written.stderr
        );
        assert!(fs::read_dir(&temps).unwrap().next().is_none(), "temps left");
        let bytes = fs::read(&dest).unwrap();
        fs::remove_file(&dest).unwrap();
        bytes
    }

    /// scripts/verify-wal over `prefix` with `args`, temps in the work directory's
    /// `verify-tmp` (which must end empty).
    fn verify(&self, prefix: &str, args: &[&str]) -> Run {
        let tmp = self.work.join("verify-tmp");
        fs::create_dir_all(&tmp).unwrap();
        let mut cmd = walpipe_tests::wrappers::wrapper("verify-wal");
        cmd.envs(self.walpipe_env())
            .env("TMPDIR", &tmp)
            .args(["--server", SERVER, "--archive", &self.walpipe_url(prefix)])
            .args(args);
        let out = run(&mut cmd, "");
        let left: Vec<_> = walkdir_files(&tmp);
        assert!(left.is_empty(), "temps left: {left:?}");
        out
    }

    /// `wal-store list` of `prefix`: (name, compression) per record.
    fn walpipe_list(&self, prefix: &str) -> Vec<(String, String)> {
        let url = self.walpipe_url(prefix);
        let out = run(
            &mut self.wal_store(&["list", "--server", SERVER, "--archive", &url]),
            "",
        );
        assert_eq!(out.code, 0, "wal-store list: {}", out.stderr);
        parse_records(&out.stdout)
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_owned(),
                    r["compression"].as_str().unwrap_or("none").to_owned(),
                )
            })
            .collect()
    }
}

/// Every file under `dir`, at any depth.
fn walkdir_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walkdir_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// The real WAL set: (name, bytes).
fn wal_set() -> Vec<(String, Vec<u8>)> {
    let set: Vec<(String, Vec<u8>)> = wal_fixture_segments()
        .iter()
        .map(|path| {
            (
                path.file_name().unwrap().to_str().unwrap().to_owned(),
                fs::read(path).unwrap(),
            )
        })
        .collect();
    assert!(
        set.len() >= 10,
        "the WAL fixture set has {} segments",
        set.len()
    );
    set
}

/// The system identifier of the cluster that wrote the real segment `(name, bytes)`,
/// from its long page header.
fn system_identifier((name, bytes): &(String, Vec<u8>)) -> u64 {
    let parsed = WalName::parse(name).expect("a segment name");
    shape::check_segment(&parsed, bytes, bytes.len() as u64)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .system_identifier
}

/// A timeline history file as PostgreSQL writes it.
fn history() -> (String, Vec<u8>) {
    (
        "00000002.history".to_owned(),
        b"1\t0/15000000\tno recovery target specified\n".to_vec(),
    )
}

/// walpipe uploads the whole set (and a history file) with `algorithm`;
/// barman-cloud-wal-restore brings every file back as it was.
fn barman_restores_walpipe(world: &World, algorithm: &str) {
    let prefix = format!("walpipe-{algorithm}");
    let mut files = wal_set();
    files.push(history());
    world.walpipe_archive(&prefix, algorithm, &files);
    let ext = match algorithm {
        "zstd" => ".zst",
        "gzip" => ".gz",
        other => panic!("no extension for {other}"),
    };
    let keys = world.store.keys(&prefix);
    assert_eq!(keys.len(), files.len());
    assert!(keys.iter().all(|k| k.ends_with(ext)), "{keys:?}");
    for (name, bytes) in &files {
        let restored = world.barman_restore(&prefix, name);
        assert!(
            restored == *bytes,
            "{name}: barman-cloud-wal-restore gives other bytes"
        );
    }
    // The end of a streamed timeline: barman-cloud-wal-restore takes `<seg>.partial` for
    // `<seg>` when that is all there is. pg_receivewal's partial is segment-sized and
    // opens with the long page header of its segment, here of the real set's cluster.
    let partial = "000000010000000000000040.partial";
    let data = wal_segment_of(
        &partial[..24],
        40,
        SEGMENT_SIZE,
        system_identifier(&files[0]),
    );
    world.walpipe_archive(
        &format!("{prefix}-partial"),
        algorithm,
        &[(partial.to_owned(), data.clone())],
    );
    let restored = world.barman_restore(&format!("{prefix}-partial"), "000000010000000000000040");
    assert!(restored == data, "the partial does not restore");
}

#[test]
fn barman_cloud_wal_restore_restores_what_walpipe_uploads_with_zstd() {
    barman_restores_walpipe(&World::s3(), "zstd");
}

#[test]
fn barman_cloud_wal_restore_restores_what_walpipe_uploads_with_gzip() {
    barman_restores_walpipe(&World::s3(), "gzip");
}

#[test]
fn azure_barman_cloud_wal_restore_restores_what_walpipe_uploads() {
    barman_restores_walpipe(&World::azure(), "zstd");
}

/// A DBA's barman-cloud settings serve walpipe unchanged: barman-cloud's archive URL
/// (Azurite's form here, `http://HOST:PORT/ACCOUNT/CONTAINER/PREFIX`, which barman-cloud
/// takes only with a connection string; on Azure
/// `https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX`) and its connection string.
/// Each tool restores what the other uploaded. Then the key alone
/// (`AZURE_STORAGE_KEY`, its account in `AZURE_STORAGE_ACCOUNT`) serves as well.
#[test]
fn azure_walpipe_takes_barman_clouds_url_and_credentials_as_they_are() {
    let mut world = World::azure();
    world.settings = Settings::BarmanCloud;
    assert!(world.walpipe_url("p").starts_with("http://127.0.0.1:"));
    barman_restores_walpipe(&world, "zstd");
    walpipe_restores_barman(&world);

    world.settings = Settings::AccountAndKey;
    let files: Vec<(String, Vec<u8>)> = wal_set().into_iter().take(2).collect();
    world.walpipe_archive("walpipe-key", "gzip", &files);
    for (name, bytes) in &files {
        assert!(
            world.barman_restore("walpipe-key", name) == *bytes,
            "{name}"
        );
        assert!(
            world.walpipe_restore("walpipe-zstd", name) == *bytes,
            "{name}"
        );
    }
}

/// barman-cloud-wal-archive uploads the whole set (and a history file) with `--zstd`;
/// walpipe lists, restores, and recognises every one as already archived.
fn walpipe_restores_barman(world: &World) {
    let prefix = "barman-zstd";
    let mut files = wal_set();
    files.push(history());
    let staging = world.work.join("pg_wal");
    fs::create_dir_all(&staging).unwrap();
    for (name, bytes) in &files {
        let path = staging.join(name);
        fs::write(&path, bytes).unwrap();
        world.barman_archive(prefix, &["--zstd"], &path);
    }
    let mut expected: Vec<(String, String)> = files
        .iter()
        .map(|(name, _)| (name.clone(), "zstd".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(world.walpipe_list(prefix), expected);
    for (name, bytes) in &files {
        let restored = world.walpipe_restore(prefix, name);
        assert!(restored == *bytes, "{name}: walpipe restores other bytes");
    }
    // Archiving the same WAL with walpipe now: duplicates, not second objects, even
    // with another compression.
    let keys = world.store.keys(prefix);
    let records = world.walpipe_put("incoming-again", prefix, "gzip", &files[..3]);
    assert!(
        records.iter().all(|r| r["outcome"] == "duplicate"),
        "{records:?}"
    );
    assert_eq!(world.store.keys(prefix), keys);
}

#[test]
fn walpipe_restores_what_barman_cloud_wal_archive_uploads_with_zstd() {
    walpipe_restores_barman(&World::s3());
}

#[test]
fn azure_walpipe_restores_what_barman_cloud_wal_archive_uploads() {
    walpipe_restores_barman(&World::azure());
}

#[test]
fn gcs_walpipe_restores_what_barman_cloud_wal_archive_uploads() {
    walpipe_restores_barman(&World::gcs());
}

/// One segment per compression barman-cloud-wal-archive offers, and one uncompressed
/// (its default: the key is the bare name); walpipe lists and restores each.
fn every_compression(world: &World) {
    let prefix = "barman-mixed";
    let files = wal_set();
    let staging = world.work.join("pg_wal");
    fs::create_dir_all(&staging).unwrap();
    let flags = [
        ("--gzip", "gzip"),
        ("--bzip2", "bzip2"),
        ("--xz", "xz"),
        ("--snappy", "snappy"),
        ("--lz4", "lz4"),
        ("--zstd", "zstd"),
    ];
    let mut expected = Vec::new();
    for ((flag, compression), (name, bytes)) in flags.iter().zip(&files) {
        let path = staging.join(name);
        fs::write(&path, bytes).unwrap();
        world.barman_archive(prefix, &[flag], &path);
        expected.push((name.clone(), (*compression).to_owned()));
    }
    // Uncompressed too (barman-cloud's default).
    let (name, bytes) = &files[flags.len()];
    let path = staging.join(name);
    fs::write(&path, bytes).unwrap();
    world.barman_archive(prefix, &[], &path);
    expected.push((name.clone(), "none".to_owned()));
    assert_eq!(world.walpipe_list(prefix), expected);
    for ((name, _), (_, bytes)) in expected.iter().zip(&files) {
        assert!(
            world.walpipe_restore(prefix, name) == *bytes,
            "{name} does not restore"
        );
    }
    // And the bucket verifies clean, every object downloaded, decompressed and checked
    // to its last record.
    let out = world.verify(prefix, &["--deep", "--json"]);
    let text = &out.stderr;
    assert_eq!(out.code, 0, "{text}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["status"], "OK", "{text}");
    assert_eq!(summary["verified"], expected.len(), "{text}");
}

#[test]
fn walpipe_restores_every_compression_barman_cloud_writes() {
    every_compression(&World::s3());
}

#[test]
fn azure_walpipe_restores_every_compression_barman_cloud_writes() {
    every_compression(&World::azure());
}

#[test]
fn gcs_walpipe_restores_every_compression_barman_cloud_writes() {
    every_compression(&World::gcs());
}

/// scripts/verify-wal on a Garage bucket: clean; incremental with --state (a re-run
/// downloads nothing, a replaced object is read again and its damage found); the same
/// WAL under a second extension is found; a record naming an object elsewhere fails
/// alone in wal-store fetch.
#[test]
fn verify_wal_checks_a_bucket_incrementally_and_finds_doubles() {
    let world = World::s3();
    let prefix = "verified";
    let files = wal_set();
    world.walpipe_archive(prefix, "zstd", &files);
    let state = world.work.join("verify.state");
    let state_arg = state.to_str().unwrap();
    let said = |out: &Run| out.stderr.clone();

    let out = world.verify(prefix, &["--deep", "--state", state_arg]);
    assert_eq!(out.code, 0, "{}", said(&out));
    assert!(said(&out).contains(&format!("0 of {} files still as verified", files.len())));
    let out = world.verify(prefix, &["--deep", "--state", state_arg]);
    assert_eq!(out.code, 0, "{}", said(&out));
    let all = files.len();
    assert!(
        said(&out).contains(&format!("{all} of {all} files still as verified"))
            && said(&out).contains(&format!("{all} files taken as verified")),
        "{}",
        said(&out)
    );

    // An object replaced by a damaged one (a record's byte flipped): a new ETag, read
    // again, the damage found by --deep.
    let (name, bytes) = &files[3];
    let wal = WalName::parse(name).unwrap();
    let key = format!(
        "{prefix}/{SERVER}/wals/{}/{name}.zst",
        wal.hash_dir().unwrap()
    );
    let mut damaged = bytes.clone();
    damaged[(4 << 20) + 4000] ^= 0x10;
    let compressed = zstd_bytes(&damaged);
    let Store::S3(garage) = &world.store else {
        unreachable!()
    };
    garage.put_object(garage.bucket(), &key, &compressed);
    let out = world.verify(prefix, &["--deep", "--state", state_arg]);
    assert_eq!(out.code, 65, "{}", said(&out));
    assert!(
        said(&out).contains(&format!("{} of {all} files still as verified", all - 1))
            && said(&out).contains(": CRC "),
        "{}",
        said(&out)
    );
    garage.put_object(garage.bucket(), &key, &zstd_bytes(bytes));
    assert_eq!(world.verify(prefix, &["--state", state_arg]).code, 0);

    // The same WAL under a second extension.
    let (name, bytes) = &files[5];
    let wal = WalName::parse(name).unwrap();
    let gz = format!(
        "{prefix}/{SERVER}/wals/{}/{name}.gz",
        wal.hash_dir().unwrap()
    );
    garage.put_object(garage.bucket(), &gz, &gzip_bytes(bytes));
    let out = world.verify(prefix, &["--json"]);
    assert_eq!(out.code, 65, "{}", said(&out));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = summary["problems"].to_string();
    assert!(
        problems.contains("1 WAL file(s) stored more than once") && problems.contains(name),
        "{problems}"
    );

    // A record naming an object of another name, or outside the archive: fails alone,
    // nothing downloaded for it.
    let url = world.walpipe_url(prefix);
    let listed = run(
        &mut world.wal_store(&["list", "--server", SERVER, "--archive", &url]),
        "",
    );
    let mut records = parse_records(&listed.stdout);
    let other = records[1]["stored_at"].clone();
    records[0]["stored_at"] = other;
    records[2]["stored_at"] =
        Value::from(format!("s3://{}/elsewhere/{}", garage.bucket(), files[2].0));
    let temps = world.work.join("fetch-temps");
    fs::create_dir_all(&temps).unwrap();
    let fetched = run(
        world
            .wal_store(&["fetch", "--server", SERVER, "--archive", &url, "--temp-dir"])
            .arg(&temps),
        &ndjson(&records),
    );
    assert_eq!(fetched.code, 1, "{}", fetched.stderr);
    let out = parse_records(&fetched.stdout);
    assert_eq!(out.len(), records.len());
    for bad in [0, 2] {
        assert_eq!(out[bad]["error"]["kind"], "usage", "{}", out[bad]);
        assert!(out[bad]["path"].is_null());
    }
    assert!(out[1]["path"].is_string() && out[1]["error"].is_null());
    for record in &out {
        for temp in record["temps"].as_array().into_iter().flatten() {
            fs::remove_file(temp.as_str().unwrap()).unwrap();
        }
    }
    assert!(walkdir_files(&temps).is_empty());
}

fn zstd_bytes(data: &[u8]) -> Vec<u8> {
    compress_with(&["zstd", "-q", "-c"], data)
}

fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    compress_with(&["gzip", "-c"], data)
}

fn compress_with(argv: &[&str], data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = thread::spawn(move || std::io::Write::write_all(&mut stdin, &data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    out.stdout
}
