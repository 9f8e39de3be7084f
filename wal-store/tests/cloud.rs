//! wal-store against real object stores on loopback: a Garage node (S3), Azurite
//! (Azure Blob) and fake-gcs-server (Google Cloud Storage), each test with its own server
//! in its own directory (walpipe_tests::cloud).
//!
//! What matters to a DBA is checked with clients independent of walpipe (the `aws` CLI,
//! the kit's Azure client, curl against the GCS JSON API): the keys are exactly Barman's, the objects are
//! byte for byte what wal-compress wrote, a name already taken under any extension is
//! never uploaded again, and what comes back restores the original segment. Failures of
//! the store (wrong credentials, no bucket, a server down or hung) must end as `temporary`
//! (exit 75) within bounded time, say which URL failed without printing a secret, and
//! leave every source where it was.
//!
//! Needs `cargo build --workspace --bins` (wal-compress, wal-encrypt), garage, Azurite,
//! fake-gcs-server, the `aws` CLI, curl, gzip and gpg (scripts/install-test-deps).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};
use walpipe_tests::clean_cloud_command;
use walpipe_tests::watchdog::run_within;
use walpipe_tests::wrappers::{XlogdbEntry, read_xlogdb};
use walpipe_tests::{
    Azurite, FakeGcs, Garage, WorkDir, ndjson, parse_records, target_bin, wal_fixture_segments,
    wal_segment, wal_segment_sized,
};

const SERVER: &str = "pg";
const PREFIX: &str = "backups/prod";
/// The mtime given to every queue file, and so the `time` of every record.
const MTIME: u64 = 1_700_000_000;
/// A command that runs longer than this is hung: killed, and the test fails.
const WATCHDOG: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------
// The servers
// ---------------------------------------------------------------------------------------

/// A real object store: S3 (Garage), Azure Blob (Azurite) or GCS (fake-gcs-server).
enum Server {
    S3(Garage),
    Azure(Azurite),
    Gcs(FakeGcs),
}

impl Server {
    fn s3(work: &WorkDir) -> Server {
        Server::S3(Garage::start(work.path()))
    }

    fn azure(work: &WorkDir) -> Server {
        Server::Azure(Azurite::start(work.path()))
    }

    fn gcs(work: &WorkDir) -> Server {
        Server::Gcs(FakeGcs::start(work.path()))
    }

    /// The archive URL for `prefix` in the server's bucket or container.
    fn url(&self, prefix: &str) -> String {
        match self {
            Server::S3(garage) => format!("s3://{}/{prefix}", garage.bucket()),
            Server::Azure(azurite) => format!("az://{}/{prefix}", azurite.container()),
            Server::Gcs(gcs) => format!("gs://{}/{prefix}", gcs.bucket()),
        }
    }

    /// The URL wal-store shows for `key`.
    fn object_url(&self, key: &str) -> String {
        self.url(key)
    }

    fn env(&self) -> Vec<(String, String)> {
        match self {
            Server::S3(garage) => garage.env(),
            Server::Azure(azurite) => azurite.env(),
            Server::Gcs(gcs) => gcs.env(),
        }
    }

    /// The keys under `prefix`, with their sizes, sorted.
    fn objects(&self, prefix: &str) -> Vec<(String, u64)> {
        match self {
            Server::S3(garage) => garage.list_keys(garage.bucket(), prefix),
            Server::Azure(azurite) => azurite.list_blobs(azurite.container(), prefix),
            Server::Gcs(gcs) => gcs.list_objects(gcs.bucket(), prefix),
        }
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        self.objects(prefix)
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    fn get(&self, key: &str) -> Vec<u8> {
        match self {
            Server::S3(garage) => garage.get_object(garage.bucket(), key),
            Server::Azure(azurite) => azurite.get_blob(azurite.container(), key),
            Server::Gcs(gcs) => gcs.get_object(gcs.bucket(), key),
        }
    }

    fn put(&self, key: &str, data: &[u8]) {
        match self {
            Server::S3(garage) => garage.put_object(garage.bucket(), key, data),
            Server::Azure(azurite) => azurite.put_blob(azurite.container(), key, data),
            Server::Gcs(gcs) => gcs.put_object(gcs.bucket(), key, data),
        }
    }
}

/// Barman's key for `name` stored with extension `ext` under [`PREFIX`].
fn barman_key(name: &str, ext: &str) -> String {
    if name.ends_with(".history") {
        format!("{PREFIX}/{SERVER}/wals/{name}{ext}")
    } else {
        format!("{PREFIX}/{SERVER}/wals/{}/{name}{ext}", &name[..16])
    }
}

// ---------------------------------------------------------------------------------------
// Running the stages
// ---------------------------------------------------------------------------------------

/// What a stage run gave.
#[derive(Debug)]
struct Out {
    code: i32,
    records: Vec<Value>,
    stderr: String,
    elapsed: Duration,
}

impl Out {
    fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// `wal-compress --algorithm ALG` of `records` (exit 0 required).
fn compress(algorithm: &str, records: &[Value]) -> Vec<Value> {
    let mut cmd = stage("wal-compress");
    cmd.args(["--algorithm", algorithm]);
    let out = run(cmd, &ndjson(records));
    assert_eq!(out.code, 0, "wal-compress: {}", out.stderr);
    out.records
}

/// A built binary of the workspace (`WALPIPE_BIN_DIR`, else this build's), hermetic.
fn stage(name: &str) -> Command {
    let mut cmd = Command::new(target_bin(name));
    clean_cloud_command(&mut cmd);
    cmd
}

/// Runs `cmd` with `stdin`, killing it (and failing the test) after [`WATCHDOG`].
fn run(mut cmd: Command, stdin: &str) -> Out {
    let done = run_within(&mut cmd, stdin, WATCHDOG);
    let out = Out {
        code: done.code,
        records: parse_records(&done.stdout),
        stderr: done.stderr,
        elapsed: done.elapsed,
    };
    eprintln!(
        "{:?} -> {} in {:.2?}\n{}",
        cmd.get_args().collect::<Vec<_>>(),
        out.code,
        out.elapsed,
        out.stderr
    );
    out
}

/// A test's world: a work directory, a server, a queue.
struct World {
    work: WorkDir,
    server: Server,
    queue: PathBuf,
}

impl World {
    fn s3() -> World {
        let work = WorkDir::new();
        let server = Server::s3(&work);
        World::around(work, server)
    }

    fn azure() -> World {
        let work = WorkDir::new();
        let server = Server::azure(&work);
        World::around(work, server)
    }

    fn gcs() -> World {
        let work = WorkDir::new();
        let server = Server::gcs(&work);
        World::around(work, server)
    }

    fn around(work: WorkDir, server: Server) -> World {
        let queue = work.join("incoming");
        fs::create_dir_all(&queue).unwrap();
        World {
            work,
            server,
            queue,
        }
    }

    /// The archive under [`PREFIX`].
    fn archive(&self) -> String {
        self.server.url(PREFIX)
    }

    /// `wal-store SUBCOMMAND --server pg --archive <archive> ARGS` with the server's
    /// credentials.
    fn wal_store<S: AsRef<OsStr>>(&self, subcommand: &str, args: &[S]) -> Command {
        self.wal_store_at(&self.archive(), subcommand, args)
    }

    fn wal_store_at<S: AsRef<OsStr>>(
        &self,
        archive: &str,
        subcommand: &str,
        args: &[S],
    ) -> Command {
        self.wal_store_for(&self.queue, archive, subcommand, args)
    }

    /// [`World::wal_store_at`] for the archiver whose incoming queue is `queue`.
    fn wal_store_for<S: AsRef<OsStr>>(
        &self,
        queue: &Path,
        archive: &str,
        subcommand: &str,
        args: &[S],
    ) -> Command {
        let mut cmd = stage("wal-store");
        // The queue is named: put removes or moves only entries of the server's queues
        // (a cloud archive has no queues beside it).
        cmd.envs(self.server.env())
            .args([subcommand, "--server", SERVER, "--archive", archive])
            .arg("--incoming")
            .arg(queue)
            .args(args);
        cmd
    }

    /// Archives `records` (wal-compress's output) as a first archiver would, so a test can
    /// go on from there: on S3 and Azure with `wal-store put` (every record stored,
    /// catalogued in `xlogdb` if given). fake-gcs-server has no XML API upload (see
    /// tests/tests/cloud_servers.rs), the one object_store's GCS client uses: there
    /// each object goes up through the emulator's JSON API, as Google's own clients (and
    /// so barman-cloud) upload, under Barman's key, the source and temp removed as put
    /// removes them; the catalogue is then `rebuild-xlogdb`'s.
    fn store(&self, records: &[Value], xlogdb: Option<&Path>) {
        let args: Vec<&OsStr> = xlogdb
            .map(|x| vec![OsStr::new("--xlogdb"), x.as_os_str()])
            .unwrap_or_default();
        if !matches!(self.server, Server::Gcs(_)) {
            let out = self.put(&args, records);
            assert_eq!(out.code, 0, "{}", out.stderr);
            for record in &out.records {
                assert_eq!(record["outcome"], "stored", "{record}");
            }
            return;
        }
        for record in records {
            let ext = match record["compression"].as_str() {
                None => "",
                Some("zstd") => ".zst",
                Some("gzip") => ".gz",
                Some(other) => panic!("no Barman extension for {other} here"),
            };
            let path = path_of(record);
            let key = barman_key(&name_of(record), ext);
            self.server.put(&key, &fs::read(&path).unwrap());
            let source = PathBuf::from(record["source"].as_str().unwrap());
            fs::remove_file(&path).unwrap();
            if source != path {
                fs::remove_file(&source).unwrap();
            }
        }
        if !args.is_empty() {
            let out = run(self.wal_store("rebuild-xlogdb", &args), "");
            assert_eq!(out.code, 0, "{}", out.stderr);
        }
    }

    /// `wal-store put` of `records`.
    fn put<S: AsRef<OsStr>>(&self, args: &[S], records: &[Value]) -> Out {
        run(self.wal_store("put", args), &ndjson(records))
    }

    /// Writes `bytes` as queue file `name` (mtime [`MTIME`]); its raw record.
    fn deliver(&self, name: &str, bytes: &[u8]) -> Value {
        let path = self.queue.join(name);
        fs::write(&path, bytes).unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(MTIME))
            .unwrap();
        raw_record(&path)
    }

    /// Copies a fixture segment into the queue; its raw record.
    fn deliver_segment(&self, segment: &Path) -> Value {
        let name = segment.file_name().unwrap().to_str().unwrap();
        self.deliver(name, &fs::read(segment).unwrap())
    }

    /// `get NAME... [ARGS]`.
    fn get<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        run(self.wal_store("get", args), "")
    }

    /// `get NAME --temp-dir T | wal-compress --decompress | get --to DEST --temp-dir T`:
    /// the restored bytes. The write-out is told where the earlier stages put their temps:
    /// it removes a record's temps only from there or from beside DEST.
    fn restore(&self, name: &str) -> Vec<u8> {
        let temps = self.work.join("restore-temps");
        fs::create_dir_all(&temps).unwrap();
        let found = self.get(&[
            OsStr::new(name),
            OsStr::new("--temp-dir"),
            temps.as_os_str(),
        ]);
        assert_eq!(found.code, 0, "get {name}: {}", found.stderr);
        let mut decompress = stage("wal-compress");
        decompress.args([
            OsStr::new("--decompress"),
            OsStr::new("--temp-dir"),
            temps.as_os_str(),
        ]);
        let plain = run(decompress, &ndjson(&found.records));
        assert_eq!(plain.code, 0, "wal-compress --decompress: {}", plain.stderr);
        let dest = self.work.join(format!("restored-{name}"));
        let _ = fs::remove_file(&dest);
        let written = run(
            self.wal_store(
                "get",
                &[
                    OsStr::new("--to"),
                    dest.as_os_str(),
                    OsStr::new("--temp-dir"),
                    temps.as_os_str(),
                ],
            ),
            &ndjson(&plain.records),
        );
        assert_eq!(written.code, 0, "get --to: {}", written.stderr);
        assert_eq!(written.records[0]["outcome"], "fetched");
        assert_eq!(dir_names(&temps), Vec::<String>::new(), "temps left behind");
        let bytes = fs::read(&dest).unwrap();
        fs::remove_file(&dest).unwrap();
        bytes
    }
}

/// The record wal-scan emits for a queue file.
fn raw_record(path: &Path) -> Value {
    let name = path.file_name().unwrap().to_str().unwrap();
    let kind = if name.ends_with(".history") {
        "history"
    } else if name.ends_with(".backup") {
        "backup"
    } else if name.ends_with(".partial") {
        "partial"
    } else {
        "segment"
    };
    json!({
        "name": name, "kind": kind, "path": path, "source": path,
        "size": fs::metadata(path).unwrap().len(), "time": MTIME as f64,
        "compression": null, "encryption": null,
    })
}

fn path_of(record: &Value) -> PathBuf {
    PathBuf::from(record["path"].as_str().expect("a path"))
}

fn name_of(record: &Value) -> String {
    record["name"].as_str().unwrap().to_owned()
}

fn dir_names(dir: &Path) -> Vec<String> {
    walpipe_tests::wrappers::dir_names(dir)
}

/// The first `n` real WAL segments of the fixture set.
fn segments(n: usize) -> Vec<PathBuf> {
    let all = wal_fixture_segments();
    assert!(
        all.len() >= n,
        "the WAL fixture set has {} segments",
        all.len()
    );
    all.into_iter().take(n).collect()
}

/// `bytes` gzipped by the real CLI, as Barman stores a `.gz`.
fn gzipped(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the gzip CLI");
    let mut stdin = child.stdin.take().unwrap();
    let data = bytes.to_vec();
    let writer = thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// The failed records' error kinds.
fn error_kinds(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["error"]["kind"].as_str().unwrap_or("none"))
        .collect()
}

/// Without the time: what a listing can know of an xlog.db line.
fn without_time(lines: &[XlogdbEntry]) -> Vec<(String, u64, Option<String>, Option<String>)> {
    lines
        .iter()
        .map(|l| {
            (
                l.name.clone(),
                l.size,
                l.compression.clone(),
                l.encryption.clone(),
            )
        })
        .collect()
}

/// A listing carries no mtime: each rebuilt line has its object's last-modified time (the
/// README says so), the same time `list` reported (`records`), and a recent one.
fn assert_upload_times(rebuilt: &[XlogdbEntry], records: &[Value]) {
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (line, record) in rebuilt.iter().zip(records) {
        assert_eq!(Some(line.time), record["time"].as_f64(), "{}", line.name);
        assert!(
            (now - 3600.0..=now + 60.0).contains(&line.time),
            "{}: rebuilt time {} is not an upload time",
            line.name,
            line.time
        );
    }
}

// ---------------------------------------------------------------------------------------
// Storing
// ---------------------------------------------------------------------------------------

/// Real WAL, compressed by wal-compress, uploaded: Barman's keys, the compressed bytes,
/// catalogued in --xlogdb; `list` and `rebuild-xlogdb` read the same back.
fn put_list_rebuild(world: &World) {
    let segs = segments(3);
    let raw: Vec<Value> = segs.iter().map(|s| world.deliver_segment(s)).collect();
    let compressed = compress("zstd", &raw);
    let bytes: Vec<Vec<u8>> = compressed
        .iter()
        .map(|r| fs::read(path_of(r)).unwrap())
        .collect();
    let xlogdb = world.work.join("meta/pg-xlog.db");
    // The catalogue's directory missing: said before anything goes up.
    let out = world.put(&[OsStr::new("--xlogdb"), xlogdb.as_os_str()], &compressed);
    assert_eq!(out.code, 78, "{}", out.stderr);
    assert!(out.stderr.contains("is not there"), "{}", out.stderr);
    assert_eq!(
        world.server.keys(PREFIX),
        Vec::<String>::new(),
        "nothing uploaded"
    );
    fs::create_dir_all(xlogdb.parent().unwrap()).unwrap();
    let out = world.put(&[OsStr::new("--xlogdb"), xlogdb.as_os_str()], &compressed);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr, "", "nothing to say on success");
    let names: Vec<String> = raw.iter().map(name_of).collect();
    let expected: Vec<String> = names.iter().map(|n| barman_key(n, ".zst")).collect();
    assert_eq!(world.server.keys(PREFIX), expected);
    for ((record, key), data) in out.records.iter().zip(&expected).zip(&bytes) {
        assert_eq!(record["outcome"], "stored", "{record}");
        assert_eq!(record["stored_at"], world.server.object_url(key));
        assert!(
            world.server.get(key) == *data,
            "{key} differs from what wal-compress wrote"
        );
    }
    // Sources and temps are gone once stored.
    assert_eq!(dir_names(&world.queue), Vec::<String>::new());
    let catalogue = read_xlogdb(&xlogdb);
    let expected_lines: Vec<XlogdbEntry> = names
        .iter()
        .zip(&bytes)
        .map(|(name, data)| XlogdbEntry {
            name: name.clone(),
            size: data.len() as u64,
            time: MTIME as f64,
            compression: Some("zstd".into()),
            encryption: None,
        })
        .collect();
    assert_eq!(catalogue, expected_lines);

    // `list`: one record per object, name order, from the keys alone.
    let listed = run(world.wal_store("list", &[] as &[&str]), "");
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let summary: Vec<(String, u64, String)> = listed
        .records
        .iter()
        .map(|r| {
            (
                name_of(r),
                r["size"].as_u64().unwrap(),
                r["compression"].as_str().unwrap_or("none").to_owned(),
            )
        })
        .collect();
    let expected_summary: Vec<(String, u64, String)> = names
        .iter()
        .zip(&bytes)
        .map(|(n, d)| (n.clone(), d.len() as u64, "zstd".to_owned()))
        .collect();
    assert_eq!(summary, expected_summary);
    for (record, key) in listed.records.iter().zip(&expected) {
        assert_eq!(record["stored_at"], world.server.object_url(key));
        assert_eq!(record["kind"], "segment");
    }

    // rebuild-xlogdb: the catalogue put wrote, from the bucket.
    let rebuilt = world.work.join("meta/rebuilt-xlog.db");
    let out = run(
        world.wal_store(
            "rebuild-xlogdb",
            &[OsStr::new("--xlogdb"), rebuilt.as_os_str()],
        ),
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rebuilt = read_xlogdb(&rebuilt);
    assert_eq!(without_time(&rebuilt), without_time(&catalogue));
    assert_upload_times(&rebuilt, &listed.records);
}

#[test]
fn s3_put_uses_barmans_keys_and_list_and_rebuild_read_them_back() {
    put_list_rebuild(&World::s3());
}

#[test]
fn azure_put_uses_barmans_keys_and_list_and_rebuild_read_them_back() {
    put_list_rebuild(&World::azure());
}

/// On GCS, what a Google client uploaded under Barman's keys (zstd segments, a plain
/// history file) is what `list` and `rebuild-xlogdb` read back from the XML API listing.
#[test]
fn gcs_list_and_rebuild_xlogdb_read_back_what_a_google_client_uploaded() {
    let world = World::gcs();
    let segs = segments(3);
    let raw: Vec<Value> = segs.iter().map(|s| world.deliver_segment(s)).collect();
    let compressed = compress("zstd", &raw);
    let bytes: Vec<Vec<u8>> = compressed
        .iter()
        .map(|r| fs::read(path_of(r)).unwrap())
        .collect();
    let history = "00000002.history";
    let history_bytes = b"1\t0/3000000\tno recovery target specified\n".to_vec();
    let mut records = compressed.clone();
    records.push(world.deliver(history, &history_bytes));
    world.store(&records, None);
    let mut names: Vec<String> = raw.iter().map(name_of).collect();
    names.push(history.to_owned());
    let mut keys: Vec<String> = names[..3].iter().map(|n| barman_key(n, ".zst")).collect();
    keys.push(barman_key(history, ""));
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(world.server.keys(PREFIX), sorted);
    let mut sizes: Vec<u64> = bytes.iter().map(|b| b.len() as u64).collect();
    sizes.push(history_bytes.len() as u64);
    let compressions = [Some("zstd"), Some("zstd"), Some("zstd"), None];

    // `list`: one record per object, in name order (segments, then the history file).
    let listed = run(world.wal_store("list", &[] as &[&str]), "");
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let summary: Vec<(String, u64, String, String)> = listed
        .records
        .iter()
        .map(|r| {
            (
                name_of(r),
                r["size"].as_u64().unwrap(),
                r["compression"].as_str().unwrap_or("none").to_owned(),
                r["stored_at"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, u64, String, String)> = names
        .iter()
        .zip(&sizes)
        .zip(&keys)
        .zip(compressions)
        .map(|(((name, size), key), compression)| {
            (
                name.clone(),
                *size,
                compression.unwrap_or("none").to_owned(),
                world.server.object_url(key),
            )
        })
        .collect();
    assert_eq!(summary, expected);
    let kinds: Vec<&str> = listed
        .records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["segment", "segment", "segment", "history"]);

    // rebuild-xlogdb: Barman's lines, the objects' upload times.
    let xlogdb = world.work.join("pg-xlog.db");
    let out = run(
        world.wal_store(
            "rebuild-xlogdb",
            &[OsStr::new("--xlogdb"), xlogdb.as_os_str()],
        ),
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rebuilt = read_xlogdb(&xlogdb);
    let expected_lines: Vec<(String, u64, Option<String>, Option<String>)> = names
        .iter()
        .zip(&sizes)
        .zip(compressions)
        .map(|((name, size), compression)| {
            (name.clone(), *size, compression.map(str::to_owned), None)
        })
        .collect();
    assert_eq!(without_time(&rebuilt), expected_lines);
    assert_upload_times(&rebuilt, &listed.records);
}

/// Each way a GCS user names an emulator reaches it: the service account's
/// `gcs_base_url` alone (object_store's documented way; plain http refused on every
/// request before), `GOOGLE_BASE_URL`, `--endpoint-url`.
#[test]
fn gcs_every_way_to_name_the_emulator_reaches_it() {
    let world = World::gcs();
    let Server::Gcs(gcs) = &world.server else {
        unreachable!()
    };
    let records = compress("zstd", &[world.deliver_segment(&segments(1)[0])]);
    world.store(&records, None);
    let name = name_of(&records[0]);
    // The same account without gcs_base_url.
    let mut account: Value =
        serde_json::from_slice(&fs::read(gcs.service_account()).unwrap()).unwrap();
    account.as_object_mut().unwrap().remove("gcs_base_url");
    let plain = world.work.join("account-without-base-url.json");
    fs::write(&plain, account.to_string()).unwrap();
    let endpoint = gcs.endpoint();
    let with_base_url = gcs.service_account();
    let lists_it = |env: &[(&str, &OsStr)], args: &[&str]| {
        let mut cmd = stage("wal-store");
        cmd.envs(env.iter().copied())
            .args(["list", "--server", SERVER, "--archive", &world.archive()])
            .args(args);
        let out = run(cmd, "");
        assert_eq!(out.code, 0, "{env:?} {args:?}: {}", out.stderr);
        let names: Vec<String> = out.records.iter().map(name_of).collect();
        assert_eq!(names, std::slice::from_ref(&name), "{env:?} {args:?}");
    };
    lists_it(
        &[("GOOGLE_SERVICE_ACCOUNT", with_base_url.as_os_str())],
        &[],
    );
    lists_it(
        &[
            ("GOOGLE_SERVICE_ACCOUNT", plain.as_os_str()),
            ("GOOGLE_BASE_URL", OsStr::new(&endpoint)),
        ],
        &[],
    );
    lists_it(
        &[("GOOGLE_SERVICE_ACCOUNT", plain.as_os_str())],
        &["--endpoint-url", &endpoint],
    );
}

/// Re-delivery of the same WAL: a duplicate; of different content: a conflict.
fn duplicates_and_conflicts(world: &World) {
    let seg = &segments(1)[0];
    let name = seg.file_name().unwrap().to_str().unwrap().to_owned();
    let key = barman_key(&name, ".zst");
    let first = compress("zstd", &[world.deliver_segment(seg)]);
    let stored = fs::read(path_of(&first[0])).unwrap();
    world.store(&first, None);

    // The same WAL again (even uncompressed): a duplicate, the source dropped.
    let again = world.deliver_segment(seg);
    let out = world.put(&[] as &[&str], &[again]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.records[0]["outcome"], "duplicate", "{}", out.records[0]);
    assert_eq!(out.records[0]["stored_at"], world.server.object_url(&key));
    assert_eq!(dir_names(&world.queue), Vec::<String>::new());
    assert_eq!(world.server.keys(PREFIX), std::slice::from_ref(&key));

    // Different content, no --errors-dir: the record fails, the source stays.
    let other = wal_segment_sized(&name, 7, 1 << 24);
    let records = compress("zstd", &[world.deliver(&name, &other)]);
    let out = world.put(&[] as &[&str], &records);
    assert_eq!(out.code, 1, "a conflict needs a human: {}", out.stderr);
    assert_eq!(error_kinds(&out.records), ["conflict"]);
    assert_eq!(
        fs::read(world.queue.join(&name)).unwrap(),
        other,
        "source kept"
    );
    assert_eq!(world.server.keys(PREFIX), std::slice::from_ref(&key));
    assert!(
        world.server.get(&key) == stored,
        "the archived WAL is untouched"
    );
    assert_eq!(out.stderr_lines().len(), 1, "{}", out.stderr);
    assert!(out.stderr.contains(&name), "{}", out.stderr);

    // With --errors-dir: the source goes there.
    let errors = world.work.join("errors");
    let records = compress("zstd", &[raw_record(&world.queue.join(&name))]);
    let out = world.put(&[OsStr::new("--errors-dir"), errors.as_os_str()], &records);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.records[0]["outcome"], "conflict", "{}", out.records[0]);
    assert_eq!(error_kinds(&out.records), ["conflict"]);
    let moved = dir_names(&errors);
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(
        moved[0].starts_with(&format!("{name}.")) && moved[0].ends_with("Z.duplicate"),
        "{moved:?}"
    );
    assert_eq!(fs::read(errors.join(&moved[0])).unwrap(), other);
    assert_eq!(out.records[0]["stored_at"], json!(errors.join(&moved[0])));
    assert_eq!(
        dir_names(&world.queue),
        Vec::<String>::new(),
        "source and temp gone"
    );
    assert!(world.server.get(&key) == stored);
}

#[test]
fn s3_redelivery_is_a_duplicate_and_different_content_a_conflict() {
    duplicates_and_conflicts(&World::s3());
}

#[test]
fn azure_redelivery_is_a_duplicate_and_different_content_a_conflict() {
    duplicates_and_conflicts(&World::azure());
}

#[test]
fn gcs_redelivery_is_a_duplicate_and_different_content_a_conflict() {
    duplicates_and_conflicts(&World::gcs());
}

/// A WAL Barman stored as `.gz` is found by the listing before the upload: not stored
/// again as `.zst` beside it, and a different `.gz` is a conflict.
fn stored_as_gz(world: &World) {
    let segs = segments(2);
    let name = segs[0].file_name().unwrap().to_str().unwrap().to_owned();
    let gz_key = barman_key(&name, ".gz");
    world
        .server
        .put(&gz_key, &gzipped(&fs::read(&segs[0]).unwrap()));
    let records = compress(
        "zstd",
        &[
            world.deliver_segment(&segs[0]),
            world.deliver_segment(&segs[1]),
        ],
    );
    let out = world.put(&[] as &[&str], &records);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.records[0]["outcome"], "duplicate", "{}", out.records[0]);
    assert_eq!(
        out.records[0]["stored_at"],
        world.server.object_url(&gz_key)
    );
    assert_eq!(out.records[1]["outcome"], "stored");
    let name2 = name_of(&out.records[1]);
    assert_eq!(
        world.server.keys(PREFIX),
        [gz_key.clone(), barman_key(&name2, ".zst")]
    );
    assert_eq!(dir_names(&world.queue), Vec::<String>::new());
    // A .gz of different content is a conflict: compared decompressed, not by name.
    let other = wal_segment_sized(&name, 3, 1 << 24);
    let records = compress("zstd", &[world.deliver(&name, &other)]);
    let out = world.put(&[] as &[&str], &records);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(error_kinds(&out.records), ["conflict"]);
    assert!(world.queue.join(&name).exists());
    // And `get` finds the .gz and restores it.
    assert!(world.restore(&name) == fs::read(&segs[0]).unwrap());
}

#[test]
fn s3_a_wal_barman_stored_as_gz_is_not_stored_again_as_zst() {
    stored_as_gz(&World::s3());
}

/// History files in `wals/` itself, backup labels and partial segments in their hash
/// directory, compressed or not; each comes back by name.
fn history_backup_partial(world: &World) {
    let history = "00000002.history";
    let backup = "000000010000000000000002.00000028.backup";
    let partial = "000000010000000000000003.partial";
    let history_bytes = b"1\t0/3000000\tno recovery target specified\n".to_vec();
    let backup_bytes = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
        STOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\n\
        CHECKPOINT LOCATION: 0/2000060\n\
        BACKUP METHOD: streamed\n\
        BACKUP FROM: primary\n"
        .to_vec();
    // pg_receivewal's partial segment: the segment's own header, full size.
    let partial_bytes = wal_segment_sized(&partial[..24], 1, 1 << 24);
    let raw = vec![
        world.deliver(history, &history_bytes),
        world.deliver(backup, &backup_bytes),
        world.deliver(partial, &partial_bytes),
    ];
    // Uncompressed: no extension at all.
    let out = world.put(&[] as &[&str], &raw);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut expected = vec![
        barman_key(backup, ""),
        barman_key(partial, ""),
        barman_key(history, ""),
    ];
    expected.sort();
    assert_eq!(world.server.keys(PREFIX), expected);
    assert_eq!(expected[2], format!("{PREFIX}/{SERVER}/wals/{history}"));
    assert!(world.server.get(&barman_key(history, "")) == history_bytes);
    assert!(world.server.get(&barman_key(backup, "")) == backup_bytes);
    assert!(world.server.get(&barman_key(partial, "")) == partial_bytes);
    let kinds: Vec<&str> = out
        .records
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["history", "backup", "partial"]);

    // A history file compressed: `.history.zst` in wals/ itself.
    let history3 = "00000003.history";
    let compressed = compress("zstd", &[world.deliver(history3, &history_bytes)]);
    assert_eq!(world.put(&[] as &[&str], &compressed).code, 0);
    assert!(
        world
            .server
            .keys(PREFIX)
            .contains(&format!("{PREFIX}/{SERVER}/wals/{history3}.zst"))
    );

    // Each comes back by name.
    let dir = world.work.join("out");
    fs::create_dir_all(&dir).unwrap();
    let out = world.get(&[
        OsStr::new(history),
        OsStr::new(backup),
        OsStr::new(history3),
        OsStr::new("--to-dir"),
        dir.as_os_str(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(fs::read(dir.join(history)).unwrap(), history_bytes);
    assert_eq!(fs::read(dir.join(backup)).unwrap(), backup_bytes);
    assert_eq!(out.records[2]["compression"], "zstd");
    assert_eq!(world.restore(history3), history_bytes);
}

#[test]
fn s3_history_backup_and_partial_files_get_barmans_keys() {
    history_backup_partial(&World::s3());
}

// ---------------------------------------------------------------------------------------
// Getting
// ---------------------------------------------------------------------------------------

/// `get` downloads to temps that the restore pipeline consumes, copies out as stored,
/// and says 66 for a name not archived.
fn gets(world: &World) {
    let segs = segments(2);
    let raw: Vec<Value> = segs.iter().map(|s| world.deliver_segment(s)).collect();
    let compressed = compress("zstd", &raw);
    let bytes: Vec<Vec<u8>> = compressed
        .iter()
        .map(|r| fs::read(path_of(r)).unwrap())
        .collect();
    world.store(&compressed, None);
    let names: Vec<String> = raw.iter().map(name_of).collect();

    // NAME: a record pointing at a downloaded temp, its compression by magic.
    let temps = world.work.join("temps");
    fs::create_dir_all(&temps).unwrap();
    let out = world.get(&[
        OsStr::new(&names[0]),
        OsStr::new("--temp-dir"),
        temps.as_os_str(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let record = &out.records[0];
    assert_eq!(record["name"], names[0].as_str());
    assert_eq!(record["kind"], "segment");
    assert_eq!(record["compression"], "zstd");
    assert_eq!(record["size"], bytes[0].len());
    assert_eq!(
        record["stored_at"],
        world.server.object_url(&barman_key(&names[0], ".zst"))
    );
    let temp = path_of(record);
    assert_eq!(temp.parent(), Some(temps.as_path()));
    assert_eq!(record["temps"], json!([temp]));
    assert!(fs::read(&temp).unwrap() == bytes[0]);
    fs::remove_file(&temp).unwrap();

    // The restore pipeline gives the original back, leaving no temp.
    for (name, seg) in names.iter().zip(&segs) {
        assert!(
            world.restore(name) == fs::read(seg).unwrap(),
            "{name} does not restore"
        );
    }

    // --to-dir: copies as stored, several names in the order asked.
    let dir = world.work.join("out");
    fs::create_dir_all(&dir).unwrap();
    let out = world.get(&[
        OsStr::new(&names[1]),
        OsStr::new(&names[0]),
        OsStr::new("--to-dir"),
        dir.as_os_str(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.records.iter().map(name_of).collect::<Vec<_>>(),
        [names[1].clone(), names[0].clone()]
    );
    for (record, (name, data)) in out
        .records
        .iter()
        .zip([(&names[1], &bytes[1]), (&names[0], &bytes[0])])
    {
        assert_eq!(record["outcome"], "fetched");
        assert_eq!(path_of(record), dir.join(name));
        assert!(fs::read(dir.join(name)).unwrap() == *data);
    }

    // A name not archived: 66, its failed record (kind not_found), one line naming it.
    let missing = "0000000100000000000000F0";
    let out = world.get(&[missing]);
    assert_eq!(out.code, 66, "{}", out.stderr);
    assert_eq!(out.records.len(), 1, "{:?}", out.records);
    assert_eq!(out.records[0]["name"], missing);
    assert_eq!(out.records[0]["error"]["kind"], "not_found");
    assert_eq!(out.stderr_lines().len(), 1, "{}", out.stderr);
    assert!(out.stderr.contains(missing), "{}", out.stderr);
    // With one that is: its record, the missing one's, and still 66.
    let out = world.get(&[
        OsStr::new(&names[0]),
        OsStr::new(missing),
        OsStr::new("--temp-dir"),
        temps.as_os_str(),
    ]);
    assert_eq!(out.code, 66, "{}", out.stderr);
    assert_eq!(out.records.len(), 2);
    assert_eq!(out.records[0]["name"], names[0].as_str());
    assert_eq!(out.records[1]["error"]["kind"], "not_found");
    fs::remove_file(path_of(&out.records[0])).unwrap();
}

#[test]
fn s3_get_restores_byte_identical_and_says_66_for_a_missing_name() {
    gets(&World::s3());
}

#[test]
fn azure_get_restores_byte_identical_and_says_66_for_a_missing_name() {
    gets(&World::azure());
}

#[test]
fn gcs_get_restores_byte_identical_and_says_66_for_a_missing_name() {
    gets(&World::gcs());
}

/// Downloads go to temps of their own (issue: `.NAME.download` had no unique part, so
/// two processes fetching the same WAL into one directory — restore_command and a
/// prefetch worker — shared one file, and each unlinked the other's). The name still
/// starts with `.NAME.` and ends in `.download`, as scripts/restore-wal sweeps them.
fn downloads_into_one_directory(world: &World) {
    let seg = &segments(1)[0];
    let name = seg.file_name().unwrap().to_str().unwrap().to_owned();
    let records = compress("zstd", &[world.deliver_segment(seg)]);
    let stored = fs::read(path_of(&records[0])).unwrap();
    world.store(&records, None);
    let temps = world.work.join("temps");
    fs::create_dir_all(&temps).unwrap();
    // Another process's download in progress, under the name every download once had.
    let theirs = format!(".{name}.download");
    fs::write(temps.join(&theirs), "in progress").unwrap();

    let outs: Vec<Out> = thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    world.get(&[
                        OsStr::new(&name),
                        OsStr::new("--temp-dir"),
                        temps.as_os_str(),
                    ])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut paths = Vec::new();
    for out in &outs {
        assert_eq!(out.code, 0, "{}", out.stderr);
        let temp = path_of(&out.records[0]);
        assert_eq!(out.records[0]["temps"], json!([temp]));
        assert_eq!(temp.parent(), Some(temps.as_path()));
        let file = temp.file_name().unwrap().to_str().unwrap().to_owned();
        // restore-wal's sweep ("$DEST_DIR"/.*.download) and its spool's (the WAL name
        // after the dot) both still match.
        assert!(
            file.starts_with(&format!(".{name}.")) && file.ends_with(".download"),
            "{file}"
        );
        assert!(
            fs::read(&temp).unwrap() == stored,
            "{file} is not the object"
        );
        paths.push(temp);
    }
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), outs.len(), "shared temps: {paths:?}");
    assert_eq!(fs::read(temps.join(&theirs)).unwrap(), b"in progress");
    for path in &paths {
        fs::remove_file(path).unwrap();
    }
    assert_eq!(dir_names(&temps), std::slice::from_ref(&theirs));

    // put compares a re-delivery with a download beside it, likewise its own.
    let again = compress("zstd", &[world.deliver_segment(seg)]);
    fs::write(world.queue.join(&theirs), "in progress").unwrap();
    let out = world.put(&[] as &[&str], &again);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.records[0]["outcome"], "duplicate", "{}", out.records[0]);
    assert_eq!(
        dir_names(&world.queue),
        std::slice::from_ref(&theirs),
        "temps left behind"
    );
    assert_eq!(fs::read(world.queue.join(&theirs)).unwrap(), b"in progress");
}

#[test]
fn s3_downloads_into_one_directory_never_share_a_temp() {
    downloads_into_one_directory(&World::s3());
}

#[test]
fn azure_downloads_into_one_directory_never_share_a_temp() {
    downloads_into_one_directory(&World::azure());
}

#[test]
fn gcs_downloads_into_one_directory_never_share_a_temp() {
    downloads_into_one_directory(&World::gcs());
}

#[test]
fn s3_get_partial_finds_the_partial_segment() {
    let world = World::s3();
    let segment = "000000010000000000000007";
    let partial = format!("{segment}.partial");
    let data = wal_segment_sized(segment, 7, 1 << 24);
    let records = compress("zstd", &[world.deliver(&partial, &data)]);
    assert_eq!(world.put(&[] as &[&str], &records).code, 0);
    assert_eq!(world.server.keys(PREFIX), [barman_key(&partial, ".zst")]);

    // Without --partial the segment is not there.
    assert_eq!(world.get(&[segment]).code, 66);
    // With it, the partial stands in, under its own name.
    let dir = world.work.join("out");
    fs::create_dir_all(&dir).unwrap();
    let out = world.get(&[
        OsStr::new(segment),
        OsStr::new("--partial"),
        OsStr::new("--to-dir"),
        dir.as_os_str(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.records[0]["name"], partial.as_str());
    assert_eq!(out.records[0]["kind"], "partial");
    assert_eq!(out.records[0]["compression"], "zstd");
    assert!(
        fs::read(dir.join(&partial)).unwrap() == world.server.get(&barman_key(&partial, ".zst"))
    );

    // Once the complete segment is archived too, it wins.
    let full = compress("zstd", &[world.deliver(segment, &data)]);
    assert_eq!(world.put(&[] as &[&str], &full).code, 0);
    let temps = world.work.join("temps");
    fs::create_dir_all(&temps).unwrap();
    let out = world.get(&[
        OsStr::new(segment),
        OsStr::new("--partial"),
        OsStr::new("--temp-dir"),
        temps.as_os_str(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.records[0]["name"], segment);
    fs::remove_file(path_of(&out.records[0])).unwrap();
}

// ---------------------------------------------------------------------------------------
// Deleting
// ---------------------------------------------------------------------------------------

fn deletes(world: &World) {
    let segs = segments(2);
    let raw: Vec<Value> = segs.iter().map(|s| world.deliver_segment(s)).collect();
    let names: Vec<String> = raw.iter().map(name_of).collect();
    let xlogdb = world.work.join("pg-xlog.db");
    let compressed = compress("zstd", &raw);
    world.store(&compressed, Some(&xlogdb));
    // The first WAL under a second extension too (as if Barman had stored it once more).
    let gz = barman_key(&names[0], ".gz");
    world
        .server
        .put(&gz, &gzipped(&fs::read(&segs[0]).unwrap()));
    assert_eq!(world.server.keys(PREFIX).len(), 3);

    let request = [json!({"name": names[0]})];
    let delete = || {
        run(
            world.wal_store("delete", &[OsStr::new("--xlogdb"), xlogdb.as_os_str()]),
            &ndjson(&request),
        )
    };
    let out = delete();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.records[0]["outcome"], "deleted", "{}", out.records[0]);
    assert_eq!(world.server.keys(PREFIX), [barman_key(&names[1], ".zst")]);
    let left: Vec<String> = read_xlogdb(&xlogdb).into_iter().map(|l| l.name).collect();
    assert_eq!(left, [names[1].clone()]);
    // Deleting what is already gone succeeds (Azure answers 404 there, S3 204).
    let out = delete();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.records[0]["outcome"], "deleted", "{}", out.records[0]);
    assert_eq!(world.server.keys(PREFIX), [barman_key(&names[1], ".zst")]);
    assert_eq!(world.get(&[&names[0]]).code, 66);
}

#[test]
fn s3_delete_removes_every_object_of_a_name_and_its_xlogdb_line() {
    deletes(&World::s3());
}

#[test]
fn azure_delete_removes_every_object_of_a_name_and_a_second_delete_succeeds() {
    deletes(&World::azure());
}

#[test]
fn gcs_delete_removes_every_object_of_a_name_and_a_second_delete_succeeds() {
    deletes(&World::gcs());
}

// ---------------------------------------------------------------------------------------
// Large objects, many records, encryption
// ---------------------------------------------------------------------------------------

/// A raw 16 MiB segment with `--part-size 5` goes up in parts and comes back identical;
/// a second put of it is a duplicate (the listing is the guard for multipart uploads).
fn multipart(world: &World) {
    let seg = &segments(1)[0];
    let name = seg.file_name().unwrap().to_str().unwrap().to_owned();
    let data = fs::read(seg).unwrap();
    assert_eq!(data.len(), 16 << 20);
    let args = ["--part-size", "5"];
    let out = world.put(&args, &[world.deliver_segment(seg)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.records[0]["outcome"], "stored");
    let key = barman_key(&name, "");
    assert_eq!(world.server.objects(PREFIX), [(key.clone(), 16 << 20)]);
    assert!(world.server.get(&key) == data, "multipart object differs");
    let out = world.put(&args, &[world.deliver_segment(seg)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.records[0]["outcome"], "duplicate");
    assert_eq!(world.server.objects(PREFIX).len(), 1);
    assert!(world.restore(&name) == data);
}

#[test]
fn s3_part_size_5_uploads_a_16_mib_segment_in_parts_byte_identical() {
    multipart(&World::s3());
}

#[test]
fn azure_part_size_5_uploads_a_16_mib_segment_in_blocks_byte_identical() {
    multipart(&World::azure());
}

/// Uncompressed objects (barman-cloud's default) have keys without an extension: the key
/// is the name itself, which a listing by the name's prefix must still find.
fn uncompressed(world: &World) {
    let segs = segments(2);
    let names: Vec<String> = segs
        .iter()
        .map(|s| s.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    let history = "00000002.history";
    let history_bytes = b"1\t0/3000000\tno recovery target specified\n".to_vec();
    let mut raw: Vec<Value> = segs.iter().map(|s| world.deliver_segment(s)).collect();
    raw.push(world.deliver(history, &history_bytes));
    world.store(&raw, None);
    let mut expected: Vec<String> = names.iter().map(|n| barman_key(n, "")).collect();
    expected.push(barman_key(history, ""));
    assert_eq!(world.server.keys(PREFIX), expected);

    // Found again: duplicates.
    let mut again: Vec<Value> = segs.iter().map(|s| world.deliver_segment(s)).collect();
    again.push(world.deliver(history, &history_bytes));
    let out = world.put(&[] as &[&str], &again);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let outcomes: Vec<&str> = out
        .records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(outcomes, ["duplicate"; 3], "{:?}", out.records);

    // Found by get, restored.
    for (name, seg) in names.iter().zip(&segs) {
        assert!(world.restore(name) == fs::read(seg).unwrap(), "{name}");
    }
    assert!(world.restore(history) == history_bytes);

    // Found by delete: really gone.
    let out = run(
        world.wal_store("delete", &[] as &[&str]),
        &ndjson(&[json!({"name": names[0]}), json!({"name": history})]),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(world.server.keys(PREFIX), [barman_key(&names[1], "")]);
}

#[test]
fn s3_uncompressed_objects_are_found_by_put_get_and_delete() {
    uncompressed(&World::s3());
}

#[test]
fn azure_uncompressed_objects_are_found_by_put_get_and_delete() {
    uncompressed(&World::azure());
}

#[test]
fn gcs_uncompressed_objects_are_found_by_put_get_and_delete() {
    uncompressed(&World::gcs());
}

#[test]
fn s3_credentials_region_and_endpoint_come_from_a_profile() {
    let world = World::s3();
    let Server::S3(garage) = &world.server else {
        unreachable!()
    };
    let credentials = world.work.join("aws-credentials");
    let config = world.work.join("aws-config");
    fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = GKdefault\naws_secret_access_key = nope\n\n\
             [backup]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            garage.access_key_id(),
            garage.secret_access_key()
        ),
    )
    .unwrap();
    fs::write(
        &config,
        format!(
            "[profile backup]\nregion = garage\nendpoint_url = {}\n",
            garage.endpoint()
        ),
    )
    .unwrap();
    let with_profile = |subcommand: &str, args: &[&str]| {
        let mut cmd = stage("wal-store");
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", &config)
            .args([
                subcommand,
                "--server",
                SERVER,
                "--archive",
                &world.archive(),
            ])
            .arg("--incoming")
            .arg(&world.queue)
            .args(args);
        cmd
    };
    let seg = &segments(1)[0];
    let records = compress("zstd", &[world.deliver_segment(seg)]);
    let out = run(
        with_profile("put", &["--profile", "backup"]),
        &ndjson(&records),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.records[0]["outcome"], "stored");
    let name = name_of(&records[0]);
    assert_eq!(world.server.keys(PREFIX), [barman_key(&name, ".zst")]);
    // AWS_PROFILE does the same.
    let mut cmd = with_profile("list", &[]);
    cmd.env("AWS_PROFILE", "backup");
    let out = run(cmd, "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.records.len(), 1);
    // A profile that does not exist is a mistake to fix, not a store to retry.
    let out = run(with_profile("list", &["--profile", "nope"]), "");
    assert!(![0, 75].contains(&out.code), "{}: {}", out.code, out.stderr);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    assert!(!out.stderr.contains(garage.secret_access_key()));
}

/// Two archivers racing on the same WALs (a re-delivery while the first run still
/// uploads): every WAL is stored once, by one of them; the other finds it, a duplicate.
/// On Azure and GCS the upload is create-only, so even a true race cannot replace an
/// object.
fn two_writers_racing(world: &World) {
    let names: Vec<String> = (1..=12u32)
        .map(|i| format!("0000000100000000000000{i:02X}"))
        .collect();
    let queues = [world.work.join("queue-a"), world.work.join("queue-b")];
    let mut inputs = Vec::new();
    for queue in &queues {
        fs::create_dir_all(queue).unwrap();
        let records: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let path = queue.join(name);
                fs::write(&path, wal_segment(name, i as u64)).unwrap();
                raw_record(&path)
            })
            .collect();
        inputs.push(ndjson(&records));
    }
    let archive = world.archive();
    let runs: Vec<Out> = thread::scope(|scope| {
        let handles: Vec<_> = inputs
            .iter()
            .zip(&queues)
            .map(|(input, queue)| {
                // Each archiver owns its queue.
                let put = world.wal_store_for(queue, &archive, "put", &["--jobs", "4"]);
                scope.spawn(|| run(put, input))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    for (i, name) in names.iter().enumerate() {
        let mut outcomes = [
            runs[0].records[i]["outcome"].as_str().unwrap_or("none"),
            runs[1].records[i]["outcome"].as_str().unwrap_or("none"),
        ];
        outcomes.sort_unstable();
        assert_eq!(outcomes, ["duplicate", "stored"], "{name}");
    }
    let expected: Vec<String> = names.iter().map(|n| barman_key(n, "")).collect();
    assert_eq!(world.server.keys(PREFIX), expected);
    for queue in &queues {
        assert_eq!(dir_names(queue), Vec::<String>::new());
    }
}

#[test]
fn azure_two_writers_racing_on_the_same_wals_store_each_once() {
    two_writers_racing(&World::azure());
}

#[test]
fn s3_jobs_4_keeps_the_order_of_20_records() {
    let world = World::s3();
    // Largest first: with 4 uploads in flight the later, smaller ones finish first. (WAL
    // segments come in powers of two: 8, 4, 2, then 1 MiB.)
    let raw: Vec<Value> = (1..=20u32)
        .map(|i| {
            let name = format!("0000000100000000000000{i:02X}");
            let size = match i {
                1..=2 => 8 << 20,
                3..=5 => 4 << 20,
                6..=9 => 2 << 20,
                _ => 1 << 20,
            };
            world.deliver(&name, &wal_segment_sized(&name, u64::from(i), size))
        })
        .collect();
    let out = world.put(&["--jobs", "4"], &raw);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let names: Vec<String> = raw.iter().map(name_of).collect();
    assert_eq!(out.records.iter().map(name_of).collect::<Vec<_>>(), names);
    assert!(out.records.iter().all(|r| r["outcome"] == "stored"));
    let expected: Vec<String> = names.iter().map(|n| barman_key(n, "")).collect();
    assert_eq!(world.server.keys(PREFIX), expected);
    // The same through get: 20 names, 4 at a time, in the order asked.
    let dir = world.work.join("out");
    fs::create_dir_all(&dir).unwrap();
    let mut args: Vec<OsString> = names.iter().rev().map(OsString::from).collect();
    args.extend([
        "--jobs".into(),
        "4".into(),
        "--to-dir".into(),
        dir.clone().into(),
    ]);
    let out = world.get(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut reversed = names.clone();
    reversed.reverse();
    assert_eq!(
        out.records.iter().map(name_of).collect::<Vec<_>>(),
        reversed
    );
}

/// A GnuPG home with a fresh key pair, exported for walpipe; the agent is killed on drop.
struct Gpg {
    dir: PathBuf,
}

impl Gpg {
    fn new(work: &WorkDir) -> Gpg {
        let dir = work.join("gpg");
        let home = dir.join("gnupg");
        fs::create_dir_all(&home).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
        let gpg = Gpg { dir };
        gpg.run(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            "Test <t@test.invalid>",
            "default",
            "default",
            "never",
        ]);
        fs::write(
            gpg.cert(),
            gpg.run(&["--export", "--armor", "t@test.invalid"]),
        )
        .unwrap();
        let secret = gpg.run(&[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--export-secret-keys",
            "t@test.invalid",
        ]);
        fs::write(gpg.key(), secret).unwrap();
        gpg
    }

    fn home(&self) -> PathBuf {
        self.dir.join("gnupg")
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.asc")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("secret.gpg")
    }

    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home())
            .args(["--batch", "--no-tty", "--quiet", "--trust-model", "always"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("gpg runs (scripts/install-test-deps)");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

#[test]
fn s3_encrypted_records_get_zst_gpg_keys_and_restore_with_the_key() {
    let world = World::s3();
    let gpg = Gpg::new(&world.work);
    let seg = &segments(1)[0];
    let name = seg.file_name().unwrap().to_str().unwrap().to_owned();
    let encrypt = |records: &[Value]| {
        let mut cmd = stage("wal-encrypt");
        cmd.arg("--recipient").arg(gpg.cert());
        let out = run(cmd, &ndjson(records));
        assert_eq!(out.code, 0, "wal-encrypt: {}", out.stderr);
        out.records
    };
    let records = encrypt(&compress("zstd", &[world.deliver_segment(seg)]));
    assert_eq!(records[0]["encryption"], "gpg");
    let sealed = fs::read(path_of(&records[0])).unwrap();
    let out = world.put(&[] as &[&str], &records);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let key = barman_key(&name, ".zst.gpg");
    assert_eq!(world.server.keys(PREFIX), std::slice::from_ref(&key));
    assert!(world.server.get(&key) == sealed);

    // Listed as zstd + gpg, from the key alone.
    let listed = run(world.wal_store("list", &[] as &[&str]), "");
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.records[0]["compression"], "zstd");
    assert_eq!(listed.records[0]["encryption"], "gpg");

    // A re-delivery is a duplicate when wal-store has the key to compare it.
    let again = encrypt(&compress("zstd", &[world.deliver_segment(seg)]));
    let out = world.put(&[OsStr::new("--key"), gpg.key().as_os_str()], &again);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.records[0]["outcome"], "duplicate", "{}", out.records[0]);
    assert_eq!(world.server.keys(PREFIX), [key]);

    // Restore: get | wal-encrypt --decrypt --key | wal-compress --decompress | get --to.
    let temps = world.work.join("temps");
    fs::create_dir_all(&temps).unwrap();
    let found = world.get(&[
        OsStr::new(&name),
        OsStr::new("--temp-dir"),
        temps.as_os_str(),
    ]);
    assert_eq!(found.code, 0, "{}", found.stderr);
    assert_eq!(found.records[0]["encryption"], "gpg");
    let mut decrypt = stage("wal-encrypt");
    decrypt
        .arg("--decrypt")
        .arg("--key")
        .arg(gpg.key())
        .arg("--temp-dir")
        .arg(&temps);
    let plain = run(decrypt, &ndjson(&found.records));
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    let mut decompress = stage("wal-compress");
    decompress.arg("--decompress").arg("--temp-dir").arg(&temps);
    let plain = run(decompress, &ndjson(&plain.records));
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    let dest = world.work.join("restored");
    let out = run(
        world.wal_store(
            "get",
            &[
                OsStr::new("--to"),
                dest.as_os_str(),
                OsStr::new("--temp-dir"),
                temps.as_os_str(),
            ],
        ),
        &ndjson(&plain.records),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(fs::read(&dest).unwrap() == fs::read(seg).unwrap());
    assert_eq!(dir_names(&temps), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// Failures of the store: temporary (75), bounded, sources kept, no secret printed
// ---------------------------------------------------------------------------------------

/// Three compressed records ready to put (sources and temps in the queue).
fn three_records(world: &World) -> Vec<Value> {
    let raw: Vec<Value> = segments(3)
        .iter()
        .map(|s| world.deliver_segment(s))
        .collect();
    compress("zstd", &raw)
}

/// Every source of `records` is still there, and their temps (compressed copies, made
/// again by the retry) are gone: a failed put leaves nothing else behind.
fn assert_kept(records: &[Value]) {
    for record in records {
        let source = PathBuf::from(record["source"].as_str().unwrap());
        assert!(source.is_file(), "{} was removed", source.display());
        let path = path_of(record);
        assert!(
            path == source || !path.exists(),
            "{} was left behind",
            path.display()
        );
    }
}

/// A put that failed as it must when the store does not do its part: 75 within
/// `limit`, every record `temporary`, one stderr line per record naming its WAL and
/// where it was going (`<archive>/pg/wals/`), the sources kept, the temps removed.
fn assert_temporary(out: &Out, records: &[Value], archive: &str, limit: Duration) {
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(
        out.elapsed < limit,
        "took {:.1?} (limit {limit:?})",
        out.elapsed
    );
    assert_eq!(error_kinds(&out.records), vec!["temporary"; records.len()]);
    let lines = out.stderr_lines();
    assert_eq!(
        lines.len(),
        records.len(),
        "one line per record:\n{}",
        out.stderr
    );
    let wals = format!("{archive}/{SERVER}/wals/");
    for (line, record) in lines.iter().zip(records) {
        let name = name_of(record);
        assert!(line.starts_with("wal-store: "), "{line}");
        assert!(
            line.contains(&wals) && line.contains(&name),
            "{line}\ndoes not name {name} and {wals}"
        );
    }
    assert_kept(records);
}

/// Every stderr line of `out` is one concise line (issue: store errors carried the
/// server's whole XML body): at most [`MAX_LINE`] characters, the HTTP status and the
/// service's error code (each of `cause`), no markup, no request URL or query, no secret.
fn assert_concise(out: &Out, cause: &[&str], secrets: &[&str]) {
    assert!(!out.stderr.is_empty(), "nothing said");
    for line in out.stderr_lines() {
        assert!(
            line.chars().count() <= MAX_LINE,
            "{} characters: {line}",
            line.chars().count()
        );
        for piece in cause {
            assert!(line.contains(piece), "{line}\ndoes not say {piece}");
        }
        for noise in ["<", ">", "?", "xml", "RequestId", "http://", "Generic"] {
            assert!(!line.contains(noise), "{line}\nhas {noise}");
        }
        for secret in secrets {
            assert!(!line.contains(secret), "secret printed: {line}");
        }
    }
}

/// The longest line a store failure may give: the WAL's URL (here some 80 characters),
/// wal-store's words and a cause of at most 200.
const MAX_LINE: usize = 400;

#[test]
fn s3_a_wrong_secret_key_fails_temporarily_fast_and_is_never_printed() {
    let world = World::s3();
    let records = three_records(&world);
    let Server::S3(garage) = &world.server else {
        unreachable!()
    };
    let real = garage.secret_access_key().to_owned();
    let wrong = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let mut cmd = world.wal_store("put", &[] as &[&str]);
    cmd.env("AWS_SECRET_ACCESS_KEY", wrong);
    let out = run(cmd, &ndjson(&records));
    assert_temporary(&out, &records, &world.archive(), Duration::from_secs(10));
    assert_concise(&out, &["HTTP 403", "AccessDenied"], &[wrong, &real]);
    for secret in [wrong, real.as_str()] {
        assert!(
            !out.stderr.contains(secret),
            "secret printed:\n{}",
            out.stderr
        );
        assert!(
            !serde_json::to_string(&out.records)
                .unwrap()
                .contains(secret),
            "secret in records"
        );
    }
    assert!(world.server.keys(PREFIX).is_empty());
    // get, list and delete fail the same way, not as "not found".
    let mut cmd = world.wal_store("get", &[name_of(&records[0])]);
    cmd.env("AWS_SECRET_ACCESS_KEY", wrong);
    let out = run(cmd, "");
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert_concise(&out, &["HTTP 403", "AccessDenied"], &[wrong, &real]);
}

#[test]
fn azure_a_wrong_account_key_fails_temporarily_and_is_never_printed() {
    let world = World::azure();
    let records = three_records(&world);
    let Server::Azure(azurite) = &world.server else {
        unreachable!()
    };
    // A well-formed key that is not the account's.
    let wrong =
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==";
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={wrong};BlobEndpoint={};",
        azurite.blob_endpoint()
    );
    let mut cmd = world.wal_store("put", &[] as &[&str]);
    cmd.env("AZURE_STORAGE_CONNECTION_STRING", connection)
        .env("AZURE_STORAGE_ACCOUNT_KEY", wrong);
    let out = run(cmd, &ndjson(&records));
    assert_temporary(&out, &records, &world.archive(), Duration::from_secs(10));
    // Azurite's code; Azure's own is AuthenticationFailed.
    assert_concise(
        &out,
        &["HTTP 403", "AuthorizationFailure"],
        &[wrong, walpipe_tests::cloud::AZURITE_KEY],
    );
    assert!(world.server.keys(PREFIX).is_empty());
}

/// A missing bucket is a failure of the store, never an empty archive; every
/// subcommand says so in one short line with the HTTP status and the service's code
/// (each of `cause`).
fn missing_bucket(world: &World, archive: &str, cause: &[&str]) {
    let records = three_records(world);
    let out = run(
        world.wal_store_at(archive, "put", &[] as &[&str]),
        &ndjson(&records),
    );
    assert_temporary(&out, &records, archive, Duration::from_secs(10));
    assert_concise(&out, cause, &[]);

    let name = name_of(&records[0]);
    let out = run(world.wal_store_at(archive, "get", &[&name]), "");
    assert_eq!(
        out.code, 75,
        "a missing bucket is not a missing WAL: {}",
        out.stderr
    );
    assert!(!out.stderr.contains("not in the archive"), "{}", out.stderr);
    assert_eq!(error_kinds(&out.records), ["temporary"]);
    assert_concise(&out, cause, &[]);
    assert!(out.stderr.contains(&name), "{}", out.stderr);

    let out = run(world.wal_store_at(archive, "list", &[] as &[&str]), "");
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(out.records.is_empty());
    assert_concise(&out, cause, &[]);

    let out = run(
        world.wal_store_at(archive, "delete", &[] as &[&str]),
        &ndjson(&[json!({"name": name})]),
    );
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert_eq!(error_kinds(&out.records), ["temporary"]);
    assert_concise(&out, cause, &[]);
    assert!(out.stderr.contains(&name), "{}", out.stderr);

    // rebuild-xlogdb must not replace a catalogue with the empty listing of no bucket.
    let xlogdb = world.work.join("pg-xlog.db");
    let line = format!("{name}\t123\t{MTIME}.0\tzstd\tNone\n");
    fs::write(&xlogdb, &line).unwrap();
    let out = run(
        world.wal_store_at(
            archive,
            "rebuild-xlogdb",
            &[OsStr::new("--xlogdb"), xlogdb.as_os_str()],
        ),
        "",
    );
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert_eq!(
        fs::read_to_string(&xlogdb).unwrap(),
        line,
        "catalogue wiped"
    );
}

#[test]
fn s3_a_missing_bucket_is_temporary_and_never_an_empty_archive() {
    let world = World::s3();
    missing_bucket(
        &world,
        &format!("s3://nosuchbucket/{PREFIX}"),
        &["HTTP 404", "NoSuchBucket"],
    );
}

/// fake-gcs-server takes no XML API upload (tests/tests/cloud_servers.rs), the one
/// object_store's GCS client makes: a put of new WALs is a store refusing them, and no
/// WAL may be lost or taken for stored. Each record fails in one line with the
/// emulator's answer, the sources stay, nothing is in the bucket.
#[test]
fn gcs_a_refused_upload_fails_its_records_and_keeps_every_source() {
    let world = World::gcs();
    let records = three_records(&world);
    let out = world.put(&[] as &[&str], &records);
    assert_temporary(&out, &records, &world.archive(), Duration::from_secs(10));
    assert_concise(&out, &["HTTP 400", "invalid uploadType"], &[]);
    assert!(world.server.keys("").is_empty());
}

/// fake-gcs-server answers a missing bucket's listing with 500 and the error of its
/// filesystem backend (GCS itself: 404): still a store failure, never an empty archive.
#[test]
fn gcs_a_missing_bucket_is_temporary_and_never_an_empty_archive() {
    let world = World::gcs();
    missing_bucket(
        &world,
        &format!("gs://nosuchbucket/{PREFIX}"),
        &["HTTP 500", "no such file or directory"],
    );
}

#[test]
fn azure_a_missing_container_is_temporary_and_never_an_empty_archive() {
    let world = World::azure();
    missing_bucket(
        &world,
        &format!("az://nosuchcontainer/{PREFIX}"),
        &["HTTP 404", "ContainerNotFound"],
    );
}

#[test]
fn s3_a_stopped_server_is_temporary_within_seconds() {
    let mut world = World::s3();
    let records = three_records(&world);
    let Server::S3(garage) = &mut world.server else {
        unreachable!()
    };
    garage.stop();
    let out = world.put(&[] as &[&str], &records);
    assert_temporary(&out, &records, &world.archive(), Duration::from_secs(10));
    let out = world.get(&[name_of(&records[0])]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(10), "{:.1?}", out.elapsed);
    assert!(!out.stderr.contains("not in the archive"), "{}", out.stderr);
}

#[test]
fn azure_a_stopped_server_is_temporary_within_seconds() {
    let mut world = World::azure();
    let records = three_records(&world);
    let Server::Azure(azurite) = &mut world.server else {
        unreachable!()
    };
    azurite.stop();
    let out = world.put(&[] as &[&str], &records);
    assert_temporary(&out, &records, &world.archive(), Duration::from_secs(10));
}

#[test]
fn gcs_a_stopped_server_is_temporary_within_seconds() {
    let mut world = World::gcs();
    let records = three_records(&world);
    let Server::Gcs(gcs) = &mut world.server else {
        unreachable!()
    };
    gcs.stop();
    let out = world.put(&[] as &[&str], &records);
    assert_temporary(&out, &records, &world.archive(), Duration::from_secs(10));
    let out = world.get(&[name_of(&records[0])]);
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(10), "{:.1?}", out.elapsed);
    assert!(!out.stderr.contains("not in the archive"), "{}", out.stderr);
}

/// How a [`FaultyServer`] fails every request.
#[derive(Clone, Copy)]
enum Fault {
    /// Accepts the connection and never answers.
    Hang,
    /// Accepts the connection and closes it at once.
    Close,
}

/// A server on loopback that fails every request its way until dropped, counting the
/// connections it was asked for.
struct FaultyServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FaultyServer {
    fn start(fault: Fault) -> FaultyServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (Arc::clone(&stop), Arc::clone(&accepted));
        let thread = thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        match fault {
                            Fault::Hang => held.push(stream),
                            Fault::Close => drop(stream),
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FaultyServer {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far.
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn s3_a_hung_server_is_temporary_within_the_timeout() {
    let world = World::s3();
    let records = three_records(&world);
    let hung = FaultyServer::start(Fault::Hang);
    let args = [
        "--endpoint-url",
        &hung.endpoint(),
        "--timeout",
        "3",
        "--request-timeout",
        "1",
    ]
    .map(str::to_owned);
    let mut cmd = world.wal_store("put", &args);
    cmd.env("AWS_ENDPOINT_URL", hung.endpoint());
    let out = run(cmd, &ndjson(&records));
    // Records run --jobs at a time, each batch within --timeout: well under 10 s in all.
    assert_temporary(&out, &records, &world.archive(), Duration::from_secs(9));
    let mut cmd = world.wal_store("get", &args);
    cmd.env("AWS_ENDPOINT_URL", hung.endpoint())
        .arg(name_of(&records[0]));
    let out = run(cmd, "");
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(9), "{:.1?}", out.elapsed);
}

// ---------------------------------------------------------------------------------------
// A dead store fails the rest of the stream at once (issue: one --timeout per batch)
// ---------------------------------------------------------------------------------------

/// `n` small (1 MiB) uncompressed segments with consecutive names in the queue; their
/// records.
fn many_records(world: &World, n: u32) -> Vec<Value> {
    (1..=n)
        .map(|i| {
            let name = format!("0000000100000000000000{i:02X}");
            world.deliver(&name, &wal_segment(&name, u64::from(i)))
        })
        .collect()
}

/// The stream failed as a dead store must fail it: 75, every record `temporary`, one
/// line each naming its WAL; at most `jobs` records (those in flight when the store
/// first failed) with a failure of their own, every other one not tried, naming one of
/// those as the earlier WAL. Returns the stderr lines of those that failed on their own.
fn assert_tripped(out: &Out, names: &[String], jobs: usize) -> Vec<String> {
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert_eq!(error_kinds(&out.records), vec!["temporary"; names.len()]);
    assert_eq!(
        out.records.iter().map(name_of).collect::<Vec<_>>(),
        names,
        "records in input order"
    );
    let lines = out.stderr_lines();
    assert_eq!(
        lines.len(),
        names.len(),
        "one line per WAL:\n{}",
        out.stderr
    );
    let wals = format!("/{SERVER}/wals/");
    let mut own = Vec::new();
    let mut earlier = Vec::new();
    for name in names {
        let line = lines
            .iter()
            .find(|line| line.contains(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{}", out.stderr));
        assert!(
            line.starts_with("wal-store: ") && line.contains(&wals),
            "{line}"
        );
        assert!(line.chars().count() <= MAX_LINE, "{line}");
        match line.split_once(": not tried: the store failed for an earlier WAL, ") {
            Some((_, rest)) => earlier.push(rest[..24].to_owned()),
            None => own.push((name.clone(), line.to_string())),
        }
    }
    assert!(
        !own.is_empty() && own.len() <= jobs,
        "{} records failed on their own, not 1 to {jobs} (--jobs):\n{}",
        own.len(),
        out.stderr
    );
    for name in &earlier {
        assert!(
            own.iter().any(|(first, _)| first == name),
            "{name} is not a WAL that failed first"
        );
    }
    own.into_iter().map(|(_, line)| line).collect()
}

/// A hung server with 40 queued WAL and --jobs 4: without the breaker ten rounds of
/// --timeout (30 s); with it about one. The bound is loose (3 x --timeout) and the
/// connection count says the same without a clock: only the records already in flight
/// ever reached the server.
#[test]
fn s3_a_hung_server_fails_a_stream_of_40_records_within_about_one_timeout() {
    let world = World::s3();
    let records = many_records(&world, 40);
    let names: Vec<String> = records.iter().map(name_of).collect();
    let hung = FaultyServer::start(Fault::Hang);
    let timeout = Duration::from_secs(3);
    let args = [
        "--endpoint-url",
        &hung.endpoint(),
        "--timeout",
        "3",
        "--request-timeout",
        "1",
        "--jobs",
        "4",
    ]
    .map(str::to_owned);
    let out = world.put(&args, &records);
    let own = assert_tripped(&out, &names, 4);
    assert!(out.elapsed < 3 * timeout, "took {:.1?}", out.elapsed);
    for line in &own {
        assert!(
            line.contains(": no answer from the store within 3 s"),
            "{line}"
        );
    }
    assert_kept(&records);
    // A request each second (--request-timeout 1) for each record in flight, at most.
    let asked = hung.accepted();
    assert!(
        asked <= 4 * 4,
        "{asked} connections: records not in flight asked too"
    );

    // get and delete stop the same way.
    let mut get = world.wal_store("get", &args);
    get.args(&names[..20]);
    let out = run(get, "");
    assert_tripped(&out, &names[..20], 4);
    assert!(out.elapsed < 3 * timeout, "get took {:.1?}", out.elapsed);
    let requests: Vec<Value> = names[..20].iter().map(|n| json!({"name": n})).collect();
    let out = run(world.wal_store("delete", &args), &ndjson(&requests));
    assert_tripped(&out, &names[..20], 4);
    assert!(out.elapsed < 3 * timeout, "delete took {:.1?}", out.elapsed);
}

/// A server that drops every connection fails fast anyway; the breaker is what keeps
/// the other records from asking it again (5 attempts each, retries included).
#[test]
fn s3_a_server_dropping_connections_is_asked_only_for_the_records_in_flight() {
    let world = World::s3();
    let records = many_records(&world, 40);
    let names: Vec<String> = records.iter().map(name_of).collect();
    let closing = FaultyServer::start(Fault::Close);
    let args = ["--endpoint-url", &closing.endpoint(), "--jobs", "4"].map(str::to_owned);
    let out = world.put(&args, &records);
    for line in assert_tripped(&out, &names, 4) {
        assert!(
            line.contains("connection lost") && line.contains("after 4 retries"),
            "{line}"
        );
    }
    assert_kept(&records);
    let asked = closing.accepted();
    assert!(asked <= 4 * 5, "{asked} connections for 40 records");
}

/// The real server stopped under a queue of 40: one record's failure (connection
/// refused) and 39 not tried, the sources kept, 75.
fn stopped_with_a_queue(world: &mut World) {
    let records = many_records(world, 40);
    let names: Vec<String> = records.iter().map(name_of).collect();
    match &mut world.server {
        Server::S3(garage) => garage.stop(),
        Server::Azure(azurite) => azurite.stop(),
        Server::Gcs(gcs) => gcs.stop(),
    }
    let out = world.put(&["--jobs", "4"], &records);
    for line in assert_tripped(&out, &names, 4) {
        assert!(
            line.contains("cannot connect: Connection refused"),
            "{line}"
        );
    }
    assert_kept(&records);
}

#[test]
fn s3_a_stopped_server_fails_a_stream_of_40_records_at_once() {
    stopped_with_a_queue(&mut World::s3());
}

#[test]
fn azure_a_stopped_server_fails_a_stream_of_40_records_at_once() {
    stopped_with_a_queue(&mut World::azure());
}

#[test]
fn gcs_a_stopped_server_fails_a_stream_of_40_records_at_once() {
    stopped_with_a_queue(&mut World::gcs());
}

/// Failures of one record — a conflict, a file gone — say nothing of the store: the
/// records after them are stored (with --jobs 1, strictly after).
#[test]
fn s3_record_failures_do_not_stop_the_stream() {
    let world = World::s3();
    let wal = |n: u64, seed: u64| {
        let name = format!("00000001000000000000000{n}");
        world.deliver(&name, &wal_segment(&name, seed))
    };
    let first = wal(1, 1);
    assert_eq!(world.put(&[] as &[&str], &[first]).code, 0);
    let conflict = wal(1, 2);
    let mut gone = wal(2, 3);
    fs::remove_file(path_of(&gone)).unwrap();
    gone["path"] = json!(world.queue.join("000000010000000000000002.gone"));
    let later = [wal(3, 4), wal(4, 5)];
    let mut records = vec![conflict, gone];
    records.extend(later);
    let out = world.put(&["--jobs", "1"], &records);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        error_kinds(&out.records),
        ["conflict", "not_found", "none", "none"]
    );
    assert_eq!(out.records[2]["outcome"], "stored");
    assert_eq!(out.records[3]["outcome"], "stored");
    assert!(!out.stderr.contains("not tried"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------
// Settings walpipe cannot use: refused in one line before any request (issue 11)
// ---------------------------------------------------------------------------------------

/// A secret every run below is given, which no message may show.
const SECRET: &str = "s3cr3t-never-printed";

/// `wal-store get 000…01 --server pg --archive ARCHIVE ARGS` with S3 credentials and
/// `env`; no server anywhere unless `env` or `args` name one.
fn get_alone(archive: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = stage("wal-store");
    cmd.env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .args(["get", "--server", SERVER, "--archive", archive])
        .args(args)
        .arg("000000010000000000000001")
        .envs(env.iter().copied());
    run(cmd, "")
}

/// Refused at once with `code`, in one stderr line that starts with `starts`, no secret,
/// no panic; at most the name asked for passed on failed as `config` (a look-up that
/// cannot start hands its names down the pipe so the last stage decides).
fn assert_refused(out: &Out, code: i32, starts: &str) {
    assert_eq!(out.code, code, "{}", out.stderr);
    assert!(out.records.len() <= 1, "{:?}", out.records);
    for record in &out.records {
        assert_eq!(record["error"]["kind"], "config", "{record}");
        assert!(!record.to_string().contains(SECRET), "{record}");
    }
    assert_eq!(out.stderr_lines().len(), 1, "one line: {}", out.stderr);
    assert!(
        out.stderr.starts_with(&format!("wal-store: {starts}")),
        "{starts}: {}",
        out.stderr
    );
    assert!(!out.stderr.contains(SECRET), "{}", out.stderr);
    assert!(out.elapsed < Duration::from_secs(5), "{:.1?}", out.elapsed);
}

#[test]
fn a_malformed_endpoint_is_a_configuration_error_before_any_request() {
    for archive in ["s3://wals/p", "az://wals/p", "gs://wals/p"] {
        for endpoint in [
            "",
            "localhost:9000",
            "127.0.0.1",
            "http//127.0.0.1:9000",
            "http://",
            "http://bad host:9000",
            "http://127.0.0.1:99999",
            "http://[::1",
            "ftp://127.0.0.1:21",
            "http://127.0.0.1:9000/?x=1",
        ] {
            let out = get_alone(archive, &[&format!("--endpoint-url={endpoint}")], &[]);
            // A query is never shown: it may be a signature.
            let shown = endpoint.replace("?x=1", "?…");
            assert_refused(&out, 78, &format!("--endpoint-url {shown:?}: "));
        }
    }
    // WALPIPE_ENDPOINT_URL is the flag.
    let out = get_alone("s3://wals", &[], &[("WALPIPE_ENDPOINT_URL", "minio:9000")]);
    assert_refused(&out, 78, "--endpoint-url \"minio:9000\": ");
    // The variables each cloud's tools read are checked the same way, named as such.
    for (var, value) in [
        ("AWS_ENDPOINT_URL", "minio:9000"),
        ("AWS_ENDPOINT_URL_S3", "http://bad host"),
    ] {
        let out = get_alone("s3://wals", &[], &[(var, value)]);
        assert_refused(&out, 78, &format!("{var} {value:?}: "));
    }
    let out = get_alone(
        "az://wals",
        &[],
        &[(
            "AZURE_STORAGE_CONNECTION_STRING",
            "AccountName=a;AccountKey=a2V5;BlobEndpoint=127.0.0.1:10000/a",
        )],
    );
    assert_refused(
        &out,
        78,
        "the BlobEndpoint of AZURE_STORAGE_CONNECTION_STRING \"127.0.0.1:10000/a\": ",
    );
}

#[test]
fn credentials_in_an_endpoint_are_refused_unshown_and_nothing_is_sent() {
    let canary = FaultyServer::start(Fault::Close);
    let endpoint = format!("http://AKIAEXAMPLE:{SECRET}@127.0.0.1:{}", canary.port);
    let out = get_alone("s3://wals", &["--endpoint-url", &endpoint], &[]);
    assert_refused(
        &out,
        78,
        &format!(
            "--endpoint-url \"http://…@127.0.0.1:{}\": credentials",
            canary.port
        ),
    );
    assert_eq!(canary.accepted(), 0, "no request was made");
}

#[test]
fn a_malformed_archive_url_is_a_configuration_error() {
    for archive in [
        "s3://",
        "az://",
        "gs://",
        "s3:///prefix",
        "s3://b/../x",
        "s3://b/a//c",
        "s3://my bucket/p",
        "s3://b/a%2Fb",
        "ftp://b/p",
    ] {
        let out = get_alone(archive, &[], &[]);
        assert_refused(&out, 78, &format!("--archive {archive:?}: "));
    }
    let out = get_alone(&format!("s3://AKIAEXAMPLE:{SECRET}@b/p"), &[], &[]);
    assert_refused(&out, 78, "--archive \"s3://…@b/p\": ");
}

#[test]
fn numbers_out_of_range_are_usage_errors_never_a_panic() {
    let canary = FaultyServer::start(Fault::Close);
    let endpoint = format!("--endpoint-url={}", canary.endpoint());
    for (arg, starts) in [
        ("--jobs=257", "--jobs 257: at most 256"),
        ("--jobs=100000", "--jobs 100000: at most 256"),
        ("--timeout=1e30", "--timeout "),
        ("--timeout=NaN", "--timeout NaN: "),
        ("--timeout=inf", "--timeout inf: "),
        ("--timeout=-1", "--timeout -1: "),
        ("--timeout=0", "--timeout 0: "),
        ("--timeout=0.0000001", "--timeout "),
        ("--request-timeout=1e300", "--request-timeout "),
        ("--part-size=0", "--part-size 0: "),
        ("--part-size=4097", "--part-size 4097: "),
        (
            "--part-size=18446744073709551615",
            "--part-size 18446744073709551615: ",
        ),
        ("--region=", "--region: empty"),
    ] {
        let out = get_alone("s3://wals", &[&endpoint, arg], &[]);
        assert_refused(&out, 64, starts);
    }
    for (var, value) in [("WALPIPE_JOBS", "100000"), ("WALPIPE_TIMEOUT", "NaN")] {
        let out = get_alone("s3://wals", &[&endpoint], &[(var, value)]);
        assert_eq!(out.code, 64, "{var}={value}: {}", out.stderr);
    }
    // Past what a number holds: clap's own usage error.
    let out = get_alone(
        "s3://wals",
        &[&endpoint, "--jobs=18446744073709551616"],
        &[],
    );
    assert_eq!(out.code, 64, "{}", out.stderr);
    assert_eq!(canary.accepted(), 0, "nothing was asked of the store");
}

/// `wal-store get` against `archive`, `args` and `env`, with short timeouts: the store (a
/// [`FaultyServer`]) never answers, so it ends 75 after asking whoever it asks.
fn get_from_nowhere(archive: &str, args: &[&str], env: &[(&str, &str)]) {
    let mut all = vec!["--timeout=2", "--request-timeout=1"];
    all.extend_from_slice(args);
    let out = get_alone(archive, &all, env);
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(!out.stderr.contains(SECRET), "{}", out.stderr);
}

/// The provider's own endpoint setting, pointing at a server: the variables to set.
type ProviderSettings = fn(&FaultyServer) -> Vec<(String, String)>;

/// Issue 11: `--endpoint-url` was dropped for gs:// archives (and lost to
/// AWS_ENDPOINT_URL_S3 or another endpoint setting): the requests went, signed, to the
/// provider. The flag is where the requests go, for every provider.
#[test]
fn the_endpoint_flag_is_where_the_requests_go_for_every_provider() {
    let account = "devstoreaccount1";
    let cases: [(&str, ProviderSettings); 3] = [
        ("s3://wals/p", |other| {
            vec![("AWS_ENDPOINT_URL_S3".into(), other.endpoint())]
        }),
        ("az://wals/p", |other| {
            vec![(
                "AZURE_STORAGE_CONNECTION_STRING".into(),
                format!(
                    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;\
                     AccountKey=a2V5;BlobEndpoint={}/devstoreaccount1",
                    other.endpoint()
                ),
            )]
        }),
        ("gs://wals/p", |other| {
            vec![
                ("GOOGLE_BASE_URL".into(), other.endpoint()),
                ("GOOGLE_SKIP_SIGNATURE".into(), "true".into()),
            ]
        }),
    ];
    for (archive, settings) in cases {
        let flagged = FaultyServer::start(Fault::Close);
        let other = FaultyServer::start(Fault::Close);
        let env = settings(&other);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // The scheme in capitals is still plain http.
        let endpoint = match archive {
            "az://wals/p" => format!("HTTP://127.0.0.1:{}/{account}", flagged.port),
            _ => format!("HTTP://127.0.0.1:{}", flagged.port),
        };
        get_from_nowhere(archive, &["--endpoint-url", &endpoint], &env);
        assert!(
            flagged.accepted() > 0,
            "{archive}: the flag's server was not asked"
        );
        assert_eq!(other.accepted(), 0, "{archive}: another endpoint was asked");
        // Without the flag, the provider's own setting is where they go.
        get_from_nowhere(archive, &[], &env);
        assert!(
            other.accepted() > 0,
            "{archive}: the provider's setting was not used"
        );
    }
}

#[test]
fn max_batch_of_any_size_is_used_as_given() {
    let canary = FaultyServer::start(Fault::Close);
    let work = WorkDir::new();
    let path = work.join("000000010000000000000001");
    fs::copy(&wal_fixture_segments()[0], &path).unwrap();
    let mut cmd = stage("wal-store");
    cmd.env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .args(["put", "--server", SERVER, "--archive", "s3://wals/p"])
        .arg(format!("--endpoint-url={}", canary.endpoint()))
        .args(["--timeout=2", "--request-timeout=1", "--keep-source"])
        .arg("--max-batch=18446744073709551615");
    let out = run(cmd, &ndjson(&[raw_record(&path)]));
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(path.exists());
}
