//! The wrappers on cloud archives, against real servers: Garage (S3), Azurite (Azure
//! Blob) and fake-gcs-server (Google Cloud Storage), each test starting its own in a
//! fresh work directory (nothing is skipped: a missing server fails, naming
//! `scripts/install-test-deps`).
//!
//! * `archive-wal` with `--archive s3://…` archives real WAL (zstd; zstd + gpg) from the
//!   local queues: every key is Barman's (`PREFIX/SERVER/wals/<hash>/<name>.zst`), each
//!   object opens with the real `zstd -d` (and `gpg --decrypt`) to the original bytes, and
//!   xlog.db is in Barman's meta directory; `restore-wal` brings every segment back byte
//!   for byte, with and without `--prefetch`, and misses quietly (66);
//! * `wal-scan archive URL` lists the bucket; `delete-wal` deletes from it;
//! * `archive-command --direct` uploads into Azurite without a home;
//! * `restore-wal` and `wal-scan archive` read a fake-gcs-server bucket that a Google
//!   client filled as barman-cloud does (the emulator has no XML API upload, the one
//!   wal-store's GCS client uses, so archiving into it fails, keeping the WAL);
//! * faults through the wrappers (wrong credentials, missing bucket, server stopped; on
//!   GCS the last two, the emulator checking no credentials): 75 within the timeout, one
//!   line naming the bucket, the source kept, no secret shown;
//! * point-in-time recovery of a real PostgreSQL 15 (the kit's [`walpipe_tests::pitr`])
//!   archived into a Garage bucket by `archive-command --direct`, or through the local
//!   queue by `archive-wal` (zstd; zstd + gpg: every object ciphertext that only the real
//!   gpg with the secret key turns back into zstd of the segment), restored by
//!   `restore-wal --prefetch 4` (`--key` for the encrypted bucket) from it; and the
//!   same recovery from a fake-gcs-server bucket filled as barman-cloud would.
//!
//! What the servers hold is read with clients independent of walpipe (the kit's `aws` CLI,
//! azblob.py, curl on the GCS JSON API), objects are opened with the real `zstd` and `gpg`. Needs
//! `cargo build --workspace --bins` first.

use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use walpipe_tests::clean_cloud_command;
use walpipe_tests::cloud::FAKE_GCS_PRIVATE_KEY;
use walpipe_tests::pitr::{LOAD_ROUNDS, Primary, reference_copy};
use walpipe_tests::spool::wait_for_workers;
use walpipe_tests::wrappers::{
    Run, bin_dir, dir_names, queue_archive_command, read_xlogdb, run, wrapper, wrapper_as_postgres,
};
use walpipe_tests::{
    Azurite, FakeGcs, Garage, Gpg, WorkDir, script, target_bin, wal_fixture_files,
};

const SERVER: &str = "pg";
const HISTORY: &str = "00000002.history";

/// How long prefetch workers may take to let go of the spool.
const WORKERS_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Helpers

/// `scripts/<name>` (hermetic, [`wrapper`]) with only `env` for clouds.
fn cloud_wrapper(name: &str, env: &[(String, String)]) -> Command {
    with_cloud_env(wrapper(name), env)
}

/// `cmd`, a wrapper from [`wrapper`] or [`wrapper_as_postgres`], with only `env` for
/// clouds.
fn with_cloud_env(mut cmd: Command, env: &[(String, String)]) -> Command {
    // clean_cloud_command also drops the WALPIPE_BIN_DIR the wrapper was given: give it
    // back, or the scripts would pick whatever build lies next to them.
    clean_cloud_command(&mut cmd)
        .env("WALPIPE_BIN_DIR", bin_dir())
        .envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// A built binary (hermetic) with only `env` for clouds.
fn cloud_bin(name: &str, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(target_bin(name));
    walpipe_tests::clean_command(&mut cmd);
    clean_cloud_command(&mut cmd).envs(env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::null());
    cmd
}

fn assert_ok(run: &Run, what: &str) {
    assert_eq!(run.code, 0, "{what}: {run:?}");
}

/// Barman's key for `name` under `prefix` (server `pg`), before extensions.
fn barman_key(prefix: &str, name: &str) -> String {
    let base = if prefix.is_empty() {
        format!("{SERVER}/wals")
    } else {
        format!("{prefix}/{SERVER}/wals")
    };
    if name.ends_with(".history") {
        format!("{base}/{name}")
    } else {
        format!("{base}/{}/{name}", &name[..16])
    }
}

/// Whether an object key ends in Barman's zstd extension (exactly `.zst`).
fn is_zst(key: &str) -> bool {
    key.rsplit_once('.').is_some_and(|(_, ext)| ext == "zst")
}

/// `bytes` decompressed by the real `zstd` CLI.
fn zstd_d(bytes: &[u8]) -> Vec<u8> {
    pipe_through(Command::new("zstd").arg("-qdc"), bytes, "zstd -d")
}

/// Whether the real `zstd` CLI refuses to decompress `bytes`.
fn zstd_refuses(bytes: &[u8]) -> bool {
    !feed(Command::new("zstd").arg("-qdc"), bytes, "zstd -d")
        .status
        .success()
}

/// `bytes` fed to `cmd`, its stdout; panics unless it succeeds.
fn pipe_through(cmd: &mut Command, bytes: &[u8], what: &str) -> Vec<u8> {
    let out = feed(cmd, bytes, what);
    assert!(
        out.status.success(),
        "{what}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// What `cmd` gave, fed `bytes` on stdin (a command that stops reading early is fine).
fn feed(cmd: &mut Command, bytes: &[u8], what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e} (scripts/install-test-deps)"));
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    out
}

/// The records of an NDJSON text.
fn records(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

/// A Garage server and a Barman home beside it, in one work directory.
struct S3Home {
    work: WorkDir,
    garage: Garage,
    home: PathBuf,
}

impl S3Home {
    fn start() -> Self {
        let work = WorkDir::new();
        let garage = Garage::start(work.path());
        let home = work.mkdir_owned("home");
        for queue in ["incoming", "streaming"] {
            // PostgreSQL's archive_command writes there as its own user.
            work.mkdir_owned(format!("home/{SERVER}/{queue}"));
        }
        S3Home { work, garage, home }
    }

    fn env(&self) -> Vec<(String, String)> {
        self.garage.env()
    }

    fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.garage.bucket())
    }

    fn incoming(&self) -> PathBuf {
        self.home.join(SERVER).join("incoming")
    }

    fn xlogdb(&self) -> PathBuf {
        self.home
            .join(SERVER)
            .join("meta")
            .join(format!("{SERVER}-xlog.db"))
    }

    /// Every key under `prefix/pg/wals/` (`pg/wals/` for no prefix), with its size.
    fn keys(&self, prefix: &str) -> Vec<(String, u64)> {
        let dir = barman_key(prefix, HISTORY);
        let dir = dir.strip_suffix(HISTORY).unwrap();
        self.garage.list_keys(self.garage.bucket(), dir)
    }

    fn object(&self, key: &str) -> Vec<u8> {
        self.garage.get_object(self.garage.bucket(), key)
    }

    /// Queues `files` and runs `archive-wal --home H --server pg --archive URL EXTRA…`.
    fn archive_wal(&self, prefix: &str, files: &[(String, Vec<u8>)], extra: &[&str]) -> Run {
        for (name, bytes) in files {
            fs::write(self.incoming().join(name), bytes).unwrap();
        }
        run(
            cloud_wrapper("archive-wal", &self.env())
                .arg("--home")
                .arg(&self.home)
                .args(["--server", SERVER, "--archive", &self.url(prefix)])
                .args(extra),
            None,
        )
    }

    /// `archive-wal --home H --server pg --archive URL EXTRA…` on what the queues hold, run
    /// as PostgreSQL's user (cron's way; the queue is that user's).
    fn archive_queue_as_postgres(&self, prefix: &str, extra: &[&str]) -> Run {
        run(
            with_cloud_env(wrapper_as_postgres("archive-wal"), &self.env())
                .arg("--home")
                .arg(&self.home)
                .args(["--server", SERVER, "--archive", &self.url(prefix)])
                .args(extra),
            None,
        )
    }

    /// `restore-wal --archive URL --server pg EXTRA… NAME DEST` (no home).
    fn restore(&self, prefix: &str, extra: &[&str], name: &str, dest: &Path) -> Run {
        run(
            cloud_wrapper("restore-wal", &self.env())
                .args(["--server", SERVER, "--archive", &self.url(prefix)])
                .args(extra)
                .arg(name)
                .arg(dest),
            None,
        )
    }
}

/// Restores every one of `files` from the archive into a fresh directory, in order, as
/// PostgreSQL asks for them, with `extra` flags; each must come back byte for byte and
/// leave nothing else in the directory. Then the name after the last one and a history
/// file probe: 66, silently.
fn restore_all(s3: &S3Home, prefix: &str, files: &[(String, Vec<u8>)], extra: &[&str], tag: &str) {
    let pg_wal = s3.work.mkdir_owned(format!("pg_wal-{tag}"));
    let dest = pg_wal.join("RECOVERYXLOG");
    let t = Instant::now();
    let flag = |name: &str| {
        extra
            .iter()
            .position(|arg| *arg == name)
            .map(|i| extra[i + 1])
    };
    let prefetch: usize = flag("--prefetch").map_or(0, |n| n.parse().unwrap());
    for (index, (name, bytes)) in files.iter().enumerate() {
        let run = s3.restore(prefix, extra, name, &dest);
        assert_ok(&run, &format!("restore-wal {name} ({tag})"));
        assert!(run.stderr.is_empty(), "{tag}: {}", run.stderr);
        let restored = fs::read(&dest).unwrap();
        assert!(restored == *bytes, "{tag}: {name} restored byte for byte");
        fs::remove_file(&dest).unwrap();
        assert_eq!(
            dir_names(&pg_wal),
            Vec::<String>::new(),
            "{tag}: no temp left"
        );
        if index == 0 && prefetch > 0 {
            // The first call started a worker on the window: the next N segments are
            // spooled, complete, and nothing else is.
            let spool = Path::new(flag("--spool-dir").unwrap());
            let want: Vec<&String> = files[1..].iter().take(prefetch).map(|(n, _)| n).collect();
            let spooled = settled_spool(spool, &want);
            assert_eq!(spooled.iter().collect::<Vec<_>>(), want, "{tag}: the spool");
            // Besides them only the spool's own files: claims, the lock, the tick fifo.
            let is_claim = |n: &str| Path::new(n).extension().is_some_and(|e| e == "claim");
            assert!(
                dir_names(spool).iter().all(|n| n.len() == 24
                    || is_claim(n)
                    || [".tick", ".lock", ".segment-size", ".layout-checked"]
                        .contains(&n.as_str())),
                "{tag}: no temp left in the spool: {:?}",
                dir_names(spool)
            );
        }
    }
    eprintln!(
        "{tag}: {} files restored in {:.2?}",
        files.len(),
        t.elapsed()
    );
    let last = &files.last().unwrap().0;
    let after = format!(
        "{}{:08X}",
        &last[..16],
        u32::from_str_radix(&last[16..], 16).unwrap() + 1
    );
    for missing in [after.as_str(), "0000000A.history"] {
        let run = s3.restore(prefix, extra, missing, &dest);
        assert_eq!(run.code, 66, "{tag}: {missing} is not archived: {run:?}");
        assert!(
            run.stderr.is_empty(),
            "{tag}: a miss is silent: {}",
            run.stderr
        );
        assert!(!dest.exists());
    }
}

/// The segments in `spool` once they are `want` with no worker busy, or as they are after
/// 10 s. A worker runs in the background: it may claim its segments a moment after the
/// call that started it returned, so an idle spool alone does not mean it is done.
fn settled_spool(spool: &Path, want: &[&String]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        wait_for_workers(spool, WORKERS_TIMEOUT);
        let spooled: Vec<String> = dir_names(spool)
            .into_iter()
            .filter(|n| n.len() == 24)
            .collect();
        if spooled.iter().eq(want.iter().copied()) || Instant::now() >= deadline {
            return spooled;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Archiving and restoring

#[test]
fn archive_wal_into_garage_in_barmans_layout_and_restore_byte_identical() {
    let s3 = S3Home::start();
    let mut files = wal_fixture_files(5);
    let history = (
        HISTORY.to_owned(),
        b"1\t0/3000000\tno recovery target specified\n".to_vec(),
    );
    let run = s3.archive_wal("prod", &files, &["--compression", "zstd"]);
    assert_ok(&run, "archive-wal");
    for (name, _) in &files {
        assert!(
            run.stdout.contains(&format!("\t{name}\n")),
            "{}",
            run.stdout
        );
    }
    // A history file later, in a second run.
    let run = s3.archive_wal("prod", std::slice::from_ref(&history), &[]);
    assert_ok(&run, "archive-wal (history)");
    files.push(history);
    let keys = assert_archived(&s3, "prod", &files, None);

    // Archiving the same files again: duplicates, exit 0, nothing new.
    let run = s3.archive_wal("prod", &files[..2], &[]);
    assert_ok(&run, "archive-wal of duplicates");
    assert_eq!(s3.keys("prod"), keys);
    assert_eq!(read_xlogdb(&s3.xlogdb()).len(), files.len());

    // wal-scan lists the bucket as wal-store sees it.
    let listing = run_listing(&s3, "prod");
    assert_eq!(
        listing
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        files.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
    );
    for record in &listing {
        assert_eq!(record["compression"], "zstd");
        let url = record["stored_at"].as_str().unwrap();
        assert!(
            url.starts_with("s3://wals/prod/pg/wals/") && is_zst(url),
            "{url}"
        );
    }

    let segments: Vec<_> = files
        .iter()
        .filter(|(name, _)| name.len() == 24)
        .cloned()
        .collect();
    restore_all(&s3, "prod", &segments, &[], "plain");
    // Made by restore-wal itself, ours (0700).
    let spool = s3.work.join("spool");
    let spool_flag = spool.to_str().unwrap();
    restore_all(
        &s3,
        "prod",
        &segments,
        &["--prefetch", "4", "--spool-dir", spool_flag],
        "prefetch",
    );
    wait_for_workers(&spool, WORKERS_TIMEOUT);
    let left: Vec<String> = dir_names(&spool)
        .into_iter()
        .filter(|n| n.len() == 24)
        .collect();
    assert!(left.len() <= 4, "the spool stays bounded: {left:?}");
    // The history file restores too.
    let dest = s3.work.join("history-restored");
    let run = s3.restore("prod", &[], HISTORY, &dest);
    assert_ok(&run, "restore-wal of a history file");
    assert_eq!(fs::read(&dest).unwrap(), files.last().unwrap().1);
}

/// The bucket holds exactly `files` under `prefix`, each at Barman's key with `.zst`,
/// each opening with the real zstd to its bytes; the queue and errors/ are empty, there
/// is no local archive, and xlog.db (in the meta directory) lists each once, zstd, with
/// the stored size. Returns the keys with their sizes.
///
/// With `gpg` (the key pair the files were encrypted for), encrypted after compression
/// instead: keys end in `.zst.gpg`, each object is an OpenPGP message the real zstd
/// refuses, and the real gpg decrypts it to what then opens with zstd; xlog.db records
/// zstd and gpg.
fn assert_archived(
    s3: &S3Home,
    prefix: &str,
    files: &[(String, Vec<u8>)],
    gpg: Option<&Gpg>,
) -> Vec<(String, u64)> {
    let keys = s3.keys(prefix);
    let ext = if gpg.is_some() { ".zst.gpg" } else { ".zst" };
    let expected: Vec<String> = files
        .iter()
        .map(|(name, _)| format!("{}{ext}", barman_key(prefix, name)))
        .collect();
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(
        keys.iter().map(|(key, _)| key.clone()).collect::<Vec<_>>(),
        sorted
    );
    for ((name, bytes), key) in files.iter().zip(&expected) {
        let object = s3.object(key);
        let compressed = match gpg {
            None => object,
            Some(gpg) => {
                // Every OpenPGP packet opens with a tag byte with the high bit set; a zstd
                // frame opens with 0x28.
                assert!(object[0] & 0x80 != 0, "{key} is an OpenPGP message");
                assert!(zstd_refuses(&object), "{key} is not readable as zstd");
                gpg.decrypt_bytes(&object)
            }
        };
        assert!(zstd_d(&compressed) == *bytes, "{key} opens to {name}");
    }
    assert_eq!(dir_names(&s3.incoming()), Vec::<String>::new());
    let server_dir = s3.home.join(SERVER);
    assert_eq!(dir_names(&server_dir.join("errors")), Vec::<String>::new());
    assert!(!server_dir.join("wals").exists(), "no local archive");
    let catalogue = read_xlogdb(&s3.xlogdb());
    assert_eq!(
        catalogue
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        files.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
    );
    for (entry, key) in catalogue.iter().zip(&expected) {
        let size = keys.iter().find(|(k, _)| k == key).unwrap().1;
        assert_eq!(entry.compression.as_deref(), Some("zstd"), "{key}");
        let encryption = gpg.map(|_| "gpg");
        assert_eq!(entry.encryption.as_deref(), encryption, "{key}");
        assert_eq!(entry.size, size, "xlog.db records the stored size of {key}");
    }
    keys
}

/// `wal-scan archive s3://… --server pg` against the server: its records.
fn run_listing(s3: &S3Home, prefix: &str) -> Vec<Value> {
    let out = cloud_bin("wal-scan", &s3.env())
        .args(["archive", &s3.url(prefix), "--server", SERVER])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wal-scan archive: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    records(&String::from_utf8(out.stdout).unwrap())
}

#[test]
fn archive_wal_compressed_and_encrypted_into_garage_restores_with_the_key() {
    let s3 = S3Home::start();
    let gpg = Gpg::in_dir(s3.work.path());
    let (cert, key) = (gpg.cert(), gpg.key());
    let files = wal_fixture_files(3);
    let cert_flag = cert.to_str().unwrap();
    let run = s3.archive_wal("enc", &files, &["--recipient", cert_flag]);
    assert_ok(&run, "archive-wal --recipient");
    assert_archived(&s3, "enc", &files, Some(&gpg));
    gpg.stop_agent();
    let listing = run_listing(&s3, "enc");
    assert!(
        listing.iter().all(|r| r["encryption"] == "gpg"),
        "{listing:?}"
    );

    // Without a key nothing is written to %p.
    let pg_wal = s3.work.mkdir_owned("pg_wal-nokey");
    let dest = pg_wal.join("RECOVERYXLOG");
    let run = s3.restore("enc", &[], &files[0].0, &dest);
    assert_ne!(run.code, 0, "an encrypted file is refused without a key");
    assert_ne!(run.code, 66);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert_eq!(dir_names(&pg_wal), Vec::<String>::new());

    let key_flag = key.to_str().unwrap();
    restore_all(&s3, "enc", &files, &["--key", key_flag], "key");
    // Made by restore-wal itself, ours (0700).
    let spool = s3.work.join("spool");
    restore_all(
        &s3,
        "enc",
        &files,
        &[
            "--key",
            key_flag,
            "--prefetch",
            "2",
            "--spool-dir",
            spool.to_str().unwrap(),
        ],
        "key-prefetch",
    );
    wait_for_workers(&spool, WORKERS_TIMEOUT);
}

#[test]
fn archive_command_direct_uploads_into_azurite_without_a_home() {
    let work = WorkDir::new();
    let azurite = Azurite::start(work.path());
    let env = azurite.env();
    let url = format!("az://{}/cluster1", azurite.container());
    let pg_wal = work.mkdir_owned("pg_wal");
    let temps = work.mkdir_owned("temps");
    let files = wal_fixture_files(2);
    let archive_command = |path: &Path| {
        run(
            cloud_wrapper("archive-command", &env)
                .args(["--direct", "--server", SERVER, "--archive", &url])
                .arg("--temp-dir")
                .arg(&temps)
                .arg(path),
            None,
        )
    };
    for (name, bytes) in &files {
        let path = pg_wal.join(name);
        fs::write(&path, bytes).unwrap();
        let run = archive_command(&path);
        assert_ok(&run, "archive-command --direct");
        assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));
        assert_eq!(fs::read(&path).unwrap(), *bytes, "pg_wal is never touched");
    }
    assert_eq!(dir_names(&temps), Vec::<String>::new(), "no temp left");
    let blobs = azurite.list_blobs(azurite.container(), "cluster1/");
    let expected: Vec<String> = files
        .iter()
        .map(|(name, _)| format!("{}.zst", barman_key("cluster1", name)))
        .collect();
    assert_eq!(
        blobs.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>(),
        expected
    );
    for ((name, bytes), blob) in files.iter().zip(&expected) {
        let stored = azurite.get_blob(azurite.container(), blob);
        assert!(zstd_d(&stored) == *bytes, "{blob} is {name}");
    }

    // PostgreSQL re-delivers a WAL whose success it did not record: still 0.
    let first = pg_wal.join(&files[0].0);
    let run = archive_command(&first);
    assert_ok(&run, "an identical re-delivery");
    // A different file under an archived name is refused, pg_wal untouched.
    let mut other = files[0].1.clone();
    other[4096] ^= 0xff;
    fs::write(&first, &other).unwrap();
    let run = archive_command(&first);
    assert_eq!(run.code, 1, "a conflict fails: {run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains(&files[0].0), "{}", run.stderr);
    assert_eq!(fs::read(&first).unwrap(), other);
    assert_eq!(azurite.list_blobs(azurite.container(), "cluster1/"), blobs);
    assert_eq!(dir_names(&temps), Vec::<String>::new(), "no temp left");

    // And restore-wal reads it back from Azure.
    let dest = work.join("restored");
    let run = run_restore_cloud(&env, &url, &files[1].0, &dest);
    assert_ok(&run, "restore-wal from Azurite");
    assert!(fs::read(&dest).unwrap() == files[1].1);
}

/// `bytes` compressed by the real `zstd` CLI, as barman-cloud stores a `.zst`.
fn zstd_c(bytes: &[u8]) -> Vec<u8> {
    pipe_through(Command::new("zstd").arg("-qc"), bytes, "zstd")
}

/// Stores each of `files` in `gcs`'s bucket under `prefix` as barman-cloud-wal-archive
/// does (Barman's key, zstd by the real CLI), through the emulator's JSON API: the
/// upload path of Google's clients. (fake-gcs-server has no XML API upload, the one
/// wal-store's client uses; see tests/tests/cloud_servers.rs.)
fn upload_like_barman_cloud(gcs: &FakeGcs, prefix: &str, files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        let key = format!("{}.zst", barman_key(prefix, name));
        gcs.put_object(gcs.bucket(), &key, &zstd_c(bytes));
    }
}

/// restore-wal and wal-scan on a GCS bucket that a Google client filled: every WAL
/// restored byte for byte, a missing one 66; archive-command's upload, which the
/// emulator refuses, fails without losing the WAL; a missing bucket and the server
/// stopped are 200 for restore-wal (PostgreSQL aborts rather than take the end of the
/// archive) and 75 for archive-command and wal-scan.
#[test]
fn restore_wal_from_fake_gcs_and_faults_that_keep_every_wal() {
    let work = WorkDir::new();
    let mut gcs = FakeGcs::start(work.path());
    let env = gcs.env();
    let url = format!("gs://{}/cluster1", gcs.bucket());
    let files = wal_fixture_files(3);
    upload_like_barman_cloud(&gcs, "cluster1", &files[..2]);

    let dest = work.join("restored");
    for (name, bytes) in &files[..2] {
        let restored = run_restore_cloud(&env, &url, name, &dest);
        assert_ok(&restored, "restore-wal from fake-gcs-server");
        assert_eq!(restored.stderr, "", "nothing to say on success");
        assert!(fs::read(&dest).unwrap() == *bytes, "{name} restored");
        fs::remove_file(&dest).unwrap();
    }
    let missing = run_restore_cloud(&env, &url, &files[2].0, &dest);
    assert_eq!(missing.code, 66, "not archived: {missing:?}");
    assert!(!dest.exists());

    // wal-scan lists the bucket: Barman's names, zstd, the URLs of the objects.
    let scan = cloud_bin("wal-scan", &env)
        .args(["archive", &url, "--server", SERVER])
        .output()
        .unwrap();
    assert_eq!(scan.status.code(), Some(0), "{scan:?}");
    let listed = records(&String::from_utf8(scan.stdout).unwrap());
    let names: Vec<&str> = listed.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, [files[0].0.as_str(), files[1].0.as_str()]);
    for (record, (name, _)) in listed.iter().zip(&files) {
        assert_eq!(record["compression"], "zstd", "{record}");
        assert_eq!(
            record["stored_at"],
            format!("gs://{}/{}.zst", gcs.bucket(), barman_key("cluster1", name)),
            "{record}"
        );
    }

    // archive-command --direct of a new WAL: the emulator refuses the upload (400 to
    // the XML API's PUT), so the WAL stays in pg_wal and nothing is stored.
    let pg_wal = work.mkdir_owned("pg_wal");
    let temps = work.mkdir_owned("temps");
    let (name, bytes) = &files[2];
    let source = pg_wal.join(name);
    fs::write(&source, bytes).unwrap();
    let archive_command = |url: &str| {
        let t = Instant::now();
        let run = run(
            cloud_wrapper("archive-command", &env)
                .args(["--direct", "--server", SERVER, "--timeout", "5"])
                .args(["--archive", url])
                .arg("--temp-dir")
                .arg(&temps)
                .arg(&source),
            None,
        );
        (run, t.elapsed())
    };
    let objects = gcs.list_objects(gcs.bucket(), "");
    let (out, took) = archive_command(&url);
    assert_ne!(
        out.code, 0,
        "the emulator stores no XML API upload: {out:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains(name.as_str()), "{}", out.stderr);
    assert_eq!(fs::read(&source).unwrap(), *bytes, "the source is kept");
    assert_eq!(dir_names(&temps), Vec::<String>::new(), "no temp left");
    assert_eq!(gcs.list_objects(gcs.bucket(), ""), objects);

    // A bucket that does not exist.
    let (out, took) = archive_command("gs://no-such-bucket/p");
    assert_store_failure(
        &out,
        took,
        "no-such-bucket",
        FAKE_GCS_PRIVATE_KEY,
        (&source, bytes),
        &temps,
    );
    let out = run_restore_cloud(&env, "gs://no-such-bucket/p", &files[0].0, &dest);
    assert_eq!(out.code, 200, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("no-such-bucket"), "{}", out.stderr);
    assert!(!dest.exists());

    // The server stopped.
    gcs.stop();
    let (out, took) = archive_command(&url);
    assert_store_failure(
        &out,
        took,
        gcs.bucket(),
        FAKE_GCS_PRIVATE_KEY,
        (&source, bytes),
        &temps,
    );
    let t = Instant::now();
    let out = run_restore_cloud(&env, &url, &files[0].0, &dest);
    assert_eq!(out.code, 200, "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(!dest.exists());
    let scan = cloud_bin("wal-scan", &env)
        .args(["archive", &url, "--server", SERVER, "--timeout", "5"])
        .output()
        .unwrap();
    assert_eq!(scan.status.code(), Some(75), "{scan:?}");
}

/// `restore-wal --server pg --archive URL NAME DEST` with only `env` for clouds.
fn run_restore_cloud(env: &[(String, String)], url: &str, name: &str, dest: &Path) -> Run {
    run(
        cloud_wrapper("restore-wal", env)
            .args(["--server", SERVER, "--archive", url, name])
            .arg(dest),
        None,
    )
}

#[test]
fn delete_wal_deletes_from_a_cloud_archive_and_its_catalogue() {
    let s3 = S3Home::start();
    let files = wal_fixture_files(4);
    assert_ok(&s3.archive_wal("", &files, &[]), "archive-wal");
    assert_eq!(s3.keys("").len(), 4);
    let keep_from = &files[2].0;
    let listing = run_listing(&s3, "");
    let doomed: String = listing
        .iter()
        .filter(|r| r["name"].as_str().unwrap() < keep_from.as_str())
        .fold(String::new(), |mut text, r| {
            let _ = writeln!(text, "{r}");
            text
        });
    let log = s3.work.join("hook.log");
    let hook = format!(
        "echo \"$BARMAN_PHASE $BARMAN_SEGMENT $BARMAN_FILE\" >> {}",
        log.display()
    );
    let out = run(
        cloud_wrapper("delete-wal", &s3.env())
            .arg("--home")
            .arg(&s3.home)
            .args(["--server", SERVER, "--archive", &s3.url("")])
            .args(["--post-wal-delete-script", &hook]),
        Some(&doomed),
    );
    assert_ok(&out, "delete-wal");
    let deleted = records(&out.stdout);
    assert_eq!(deleted.len(), 2);
    assert!(
        deleted.iter().all(|r| r["outcome"] == "deleted"),
        "{deleted:?}"
    );
    let left: Vec<String> = s3.keys("").into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        left,
        files[2..]
            .iter()
            .map(|(n, _)| format!("{}.zst", barman_key("", n)))
            .collect::<Vec<_>>()
    );
    let catalogue: Vec<String> = read_xlogdb(&s3.xlogdb())
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(
        catalogue,
        files[2..]
            .iter()
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>()
    );
    // The hooks name the objects by URL.
    let hooks = fs::read_to_string(&log).unwrap();
    for (name, _) in &files[..2] {
        let url = format!("s3://wals/{}.zst", barman_key("", name));
        assert!(hooks.contains(&format!("post {name} {url}\n")), "{hooks}");
    }
    // Deleting again: already gone counts as deleted.
    let again = run(
        cloud_wrapper("delete-wal", &s3.env()).args(["--server", SERVER, "--archive", &s3.url("")]),
        Some(&doomed),
    );
    assert_ok(&again, "delete-wal again, without a home");
    assert_eq!(run_listing(&s3, "").len(), 2);
}

// ---------------------------------------------------------------------------------------
// Faults

/// What every store failure of archive-command must look like: 75 within `limit`, one
/// line naming `bucket`, no secret, the source untouched, no temp left.
fn assert_store_failure(
    run: &Run,
    took: Duration,
    bucket: &str,
    secret: &str,
    source: (&Path, &[u8]),
    temps: &Path,
) {
    assert_eq!(run.code, 75, "a store failure is temporary: {run:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
    assert!(
        run.stderr.contains(bucket),
        "the line names the bucket: {}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(secret),
        "no secret shown: {}",
        run.stderr
    );
    assert!(!run.stdout.contains(secret));
    assert_eq!(fs::read(source.0).unwrap(), source.1, "the source is kept");
    assert_eq!(dir_names(temps), Vec::<String>::new(), "no temp left");
}

#[test]
fn archive_command_store_failures_exit_75_quickly_and_say_which_bucket() {
    let work = WorkDir::new();
    let mut garage = Garage::start(work.path());
    let secret = garage.secret_access_key().to_owned();
    let (name, bytes) = wal_fixture_files(1).remove(0);
    let pg_wal = work.mkdir_owned("pg_wal");
    let temps = work.mkdir_owned("temps");
    let source = pg_wal.join(&name);
    fs::write(&source, &bytes).unwrap();
    let attempt = |env: &[(String, String)], bucket: &str| {
        let t = Instant::now();
        let run = run(
            cloud_wrapper("archive-command", env)
                .args(["--direct", "--server", SERVER, "--timeout", "5"])
                .args(["--archive", &format!("s3://{bucket}/p")])
                .arg("--temp-dir")
                .arg(&temps)
                .arg(&source),
            None,
        );
        (run, t.elapsed())
    };

    // Wrong credentials.
    let mut wrong = garage.env();
    // Another last character: appending "0" after dropping one left the secret as it
    // was whenever it ended in "0" (one run in sixteen), and the store then accepted it.
    let last = if secret.ends_with('0') { "1" } else { "0" };
    let wrong_secret = format!("{}{last}", &secret[..secret.len() - 1]);
    for (key, value) in &mut wrong {
        if key == "AWS_SECRET_ACCESS_KEY" {
            value.clone_from(&wrong_secret);
        }
    }
    let (out, took) = attempt(&wrong, "wals");
    assert_store_failure(&out, took, "wals", &wrong_secret, (&source, &bytes), &temps);
    assert!(!out.stderr.contains(&secret));

    // A bucket that does not exist.
    let (out, took) = attempt(&garage.env(), "no-such-bucket");
    assert_store_failure(
        &out,
        took,
        "no-such-bucket",
        &secret,
        (&source, &bytes),
        &temps,
    );

    // Nothing was stored by either.
    assert_eq!(garage.list_keys("wals", ""), Vec::<(String, u64)>::new());

    // The server stopped.
    let env = garage.env();
    garage.stop();
    let (out, took) = attempt(&env, "wals");
    assert_store_failure(&out, took, "wals", &secret, (&source, &bytes), &temps);

    // restore-wal says 200 (PostgreSQL aborts the recovery: not "not found", which would
    // end it early) and wal-scan 75.
    let dest = work.join("RECOVERYXLOG");
    let t = Instant::now();
    let restore = run(
        cloud_wrapper("restore-wal", &env)
            .args([
                "--server",
                SERVER,
                "--archive",
                "s3://wals/p",
                "--timeout",
                "5",
            ])
            .arg(&name)
            .arg(&dest),
        None,
    );
    assert_eq!(restore.code, 200, "{restore:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(restore.stderr.lines().count(), 1, "{}", restore.stderr);
    assert!(!dest.exists());
    let scan = cloud_bin("wal-scan", &env)
        .args([
            "archive",
            "s3://wals/p",
            "--server",
            SERVER,
            "--timeout",
            "5",
        ])
        .output()
        .unwrap();
    assert_eq!(scan.status.code(), Some(75));
    let stderr = String::from_utf8(scan.stderr).unwrap();
    assert!(
        stderr.starts_with("wal-scan: ") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

#[test]
fn restore_wal_from_a_missing_bucket_is_a_failure_not_the_end_of_the_archive() {
    let work = WorkDir::new();
    let garage = Garage::start(work.path());
    let dest = work.join("RECOVERYXLOG");
    let out = run(
        cloud_wrapper("restore-wal", &garage.env())
            .args(["--server", SERVER, "--archive", "s3://no-such-bucket/p"])
            .args(["000000010000000000000001"])
            .arg(&dest),
        None,
    );
    assert_eq!(out.code, 200, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("no-such-bucket"), "{}", out.stderr);
    assert!(!dest.exists());
}

#[test]
fn cloud_archives_need_a_home_only_for_local_parts() {
    // archive-wal has queues to read: no home, no run.
    let out = run(
        wrapper("archive-wal").args(["--server", SERVER, "--archive", "s3://wals/p"]),
        None,
    );
    assert_eq!(out.code, 64);
    assert!(out.stderr.contains("--home"), "{}", out.stderr);
    // archive-command without --direct hands over to the local incoming queue.
    let out = run(
        wrapper("archive-command").args([
            "--server",
            SERVER,
            "--archive",
            "s3://wals/p",
            "/etc/hostname",
        ]),
        None,
    );
    assert_eq!(out.code, 64);
    assert!(out.stderr.contains("--home"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------
// Point-in-time recovery of a real PostgreSQL 15 from a Garage bucket

/// `VAR=value …` for a shell command line (the values here need no quoting).
fn env_prefix(env: &[(String, String)]) -> String {
    env.iter().fold(String::new(), |mut text, (k, v)| {
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/:.-_".contains(&b)),
            "{k} needs quoting"
        );
        let _ = write!(text, "{k}={v} ");
        text
    })
}

/// What a command PostgreSQL runs needs to reach a server whose client settings are
/// `env`, as `VAR=value …` to put before it: PostgreSQL runs its commands as its own
/// user, with its own environment, so the credentials go on the command line (a test's;
/// a real one reads ~/.aws), with the binaries under test.
fn command_env(env: &[(String, String)]) -> String {
    format!(
        "{}AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent \
         WALPIPE_BIN_DIR={}",
        env_prefix(env),
        bin_dir().display()
    )
}

/// Recovers `primary`'s base backup into `<work>/<name>` with `restore-wal --archive URL
/// EXTRA… --prefetch 4` (into a fresh spool) as restore_command, checks the recovery
/// ([`Primary::assert_recovered`]) and stops the server; the spool then holds at most 4
/// segments.
fn recover_from_bucket(
    primary: &Primary,
    env: &[(String, String)],
    url: &str,
    extra: &str,
    name: &str,
) {
    let spool = primary.work.mkdir_owned(format!("{name}-spool"));
    let restore_command = format!(
        "{cloud} {script} --server {SERVER} --archive {url}{extra} \
         --prefetch 4 --spool-dir {spool} %f %p",
        cloud = command_env(env),
        script = script("restore-wal").display(),
        spool = spool.display(),
    );
    let mut restored = primary.recover(name, &restore_command);
    primary.assert_recovered(&restored, name);
    restored.stop().unwrap();
    wait_for_workers(&spool, WORKERS_TIMEOUT);
    let left: Vec<String> = dir_names(&spool)
        .into_iter()
        .filter(|n| n.len() == 24)
        .collect();
    assert!(left.len() <= 4, "the spool holds at most 4 files: {left:?}");
}

#[test]
fn pitr_of_postgres_15_from_a_garage_bucket_with_prefetch() {
    let t = Instant::now();
    let work = WorkDir::new();
    let garage = Garage::start(work.path());
    let url = format!("s3://{}/pitr", garage.bucket());
    let archive_command = format!(
        "{cloud} {script} --direct --compression zstd --server {SERVER} --archive {url} %p",
        cloud = command_env(&garage.env()),
        script = script("archive-command").display(),
    );

    let primary = Primary::run(&work, &archive_command);

    let keys = garage.list_keys(garage.bucket(), "pitr/pg/wals/");
    assert!(
        keys.len() > LOAD_ROUNDS && keys.iter().all(|(k, _)| is_zst(k)),
        "{keys:?}"
    );
    let last = &primary.last;
    assert!(
        keys.iter()
            .any(|(k, _)| k == &format!("pitr/pg/wals/{}/{last}.zst", &last[..16])),
        "{last} archived in Barman's layout: {keys:?}"
    );
    recover_from_bucket(&primary, &garage.env(), &url, "", "restored");
    eprintln!("total: {:.1?}", t.elapsed());
}

/// A primary archiving through the local queue into `s3.url(prefix)`: its
/// archive_command keeps a reference copy of every file and hands it to `archive-command`
/// (the incoming queue of `s3.home`); once the primary is stopped, `archive-wal` with
/// `flags` uploads the queue, as PostgreSQL's user. Returns the primary and every file it
/// archived (segments and the backup label), from the reference copy.
fn run_primary_through_the_queue(
    s3: &S3Home,
    prefix: &str,
    flags: &[&str],
) -> (Primary, Vec<(String, Vec<u8>)>) {
    let reference = s3.work.mkdir_owned("ref");
    let archive_command = format!(
        "{} && {}",
        reference_copy(&reference),
        queue_archive_command(&s3.home, SERVER)
    );
    let primary = Primary::run(&s3.work, &archive_command);
    let run = s3.archive_queue_as_postgres(prefix, flags);
    assert_ok(&run, "archive-wal");
    let archived: Vec<(String, Vec<u8>)> = dir_names(&reference)
        .into_iter()
        .map(|name| {
            let bytes = fs::read(reference.join(&name)).unwrap();
            (name, bytes)
        })
        .collect();
    let segments = archived.iter().filter(|(n, _)| n.len() == 24).count();
    assert!(
        segments > LOAD_ROUNDS,
        "a few segments to restore: {segments}"
    );
    (primary, archived)
}

#[test]
fn pitr_of_postgres_15_archived_by_archive_wal_into_garage_with_zstd() {
    let t = Instant::now();
    let s3 = S3Home::start();

    let (primary, archived) =
        run_primary_through_the_queue(&s3, "queued", &["--compression", "zstd"]);

    assert_archived(&s3, "queued", &archived, None);
    recover_from_bucket(&primary, &s3.env(), &s3.url("queued"), "", "restored");
    eprintln!("total: {:.1?}", t.elapsed());
}

#[test]
fn pitr_of_postgres_15_archived_by_archive_wal_into_garage_with_zstd_and_gpg() {
    let t = Instant::now();
    let s3 = S3Home::start();
    let gpg = Gpg::in_dir(s3.work.path());
    let (cert, key) = (gpg.cert(), gpg.key());
    let cert_flag = cert.to_str().unwrap();

    let (primary, archived) = run_primary_through_the_queue(
        &s3,
        "encrypted",
        &["--compression", "zstd", "--recipient", cert_flag],
    );

    assert_archived(&s3, "encrypted", &archived, Some(&gpg));
    gpg.stop_agent();
    let extra = format!(" --key {}", key.display());
    recover_from_bucket(
        &primary,
        &s3.env(),
        &s3.url("encrypted"),
        &extra,
        "restored",
    );
    eprintln!("total: {:.1?}", t.elapsed());
}

/// PostgreSQL 15 archived into a GCS bucket as barman-cloud-wal-archive stores WAL
/// (zstd, Barman's keys; uploaded through the emulator's JSON API, see
/// [`upload_like_barman_cloud`]), recovered to the restore point by
/// `restore-wal --prefetch 4` from the bucket.
#[test]
fn pitr_of_postgres_15_from_a_gcs_bucket_with_prefetch() {
    let t = Instant::now();
    let work = WorkDir::new();
    let gcs = FakeGcs::start(work.path());
    let url = format!("gs://{}/pitr", gcs.bucket());
    let reference = work.mkdir_owned("ref");

    let primary = Primary::run(&work, &reference_copy(&reference));

    let archived: Vec<(String, Vec<u8>)> = dir_names(&reference)
        .into_iter()
        .map(|name| {
            let bytes = fs::read(reference.join(&name)).unwrap();
            (name, bytes)
        })
        .collect();
    let segments = archived.iter().filter(|(n, _)| n.len() == 24).count();
    assert!(
        segments > LOAD_ROUNDS,
        "a few segments to restore: {segments}"
    );
    upload_like_barman_cloud(&gcs, "pitr", &archived);
    let objects = gcs.list_objects(gcs.bucket(), "pitr/pg/wals/");
    assert_eq!(objects.len(), archived.len(), "{objects:?}");
    let last = &primary.last;
    assert!(
        objects
            .iter()
            .any(|(k, _)| k == &format!("pitr/pg/wals/{}/{last}.zst", &last[..16])),
        "{last} archived in Barman's layout: {objects:?}"
    );
    recover_from_bucket(&primary, &gcs.env(), &url, "", "restored");
    eprintln!("total: {:.1?}", t.elapsed());
}
