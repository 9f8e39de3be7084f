//! What every test needs: a hermetic `wal-scan` child, a Barman-shaped server directory with
//! fake WAL files, and the run's records, stderr and exit code.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

/// Size of the fake segments: real ones are 16 MiB, nothing here reads them whole.
pub const FAKE_WAL_SIZE: usize = 16 * 1024;

/// The mtime every fixture file gets, as wal-scan must report it.
pub const MTIME: f64 = 1_700_000_000.25;

/// `wal-scan` without any `WALPIPE_*` variable of the test's environment.
pub fn wal_scan() -> Command {
    let mut cmd = Command::cargo_bin("wal-scan").expect("wal-scan is built");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("WALPIPE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// What a run left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub records: Vec<Value>,
    pub stderr: String,
}

impl Run {
    /// The `name` of every record, in output order.
    pub fn names(&self) -> Vec<&str> {
        self.records
            .iter()
            .map(|r| r["name"].as_str().expect("every record has a name"))
            .collect()
    }

    /// The one record named `name`.
    pub fn record(&self, name: &str) -> &Value {
        let mut found = self.records.iter().filter(|r| r["name"] == name);
        let record = found
            .next()
            .unwrap_or_else(|| panic!("no record {name}: {self:?}"));
        assert!(found.next().is_none(), "two records {name}");
        record
    }

    /// stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// Runs `cmd` with `args`; stdout must be nothing but records.
pub fn run(mut cmd: Command, args: &[&OsStr]) -> Run {
    let output = cmd.args(args).output().expect("wal-scan runs");
    let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
    assert!(stdout.is_empty() || stdout.ends_with('\n'), "{stdout:?}");
    let records = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    Run {
        code: output.status.code().expect("wal-scan exits, is not killed"),
        records,
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// Runs a hermetic `wal-scan` with `args`.
pub fn scan<S: AsRef<OsStr>>(args: &[S]) -> Run {
    let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
    run(wal_scan(), &args)
}

/// `<tmp>/pg/{incoming,streaming,wals}`: Barman's layout for server `pg`.
pub struct Server {
    _tmp: TempDir,
    pub incoming: PathBuf,
    pub streaming: PathBuf,
    pub wals: PathBuf,
}

impl Server {
    pub fn new() -> Server {
        Server::in_dir(tempfile::tempdir().unwrap())
    }

    /// In tmpfs when there is one: creating (and removing) 100 000 files on a disk
    /// filesystem can take longer than the rest of the suite.
    pub fn in_memory() -> Server {
        let shm = Path::new("/dev/shm");
        if shm.is_dir()
            && let Ok(tmp) = tempfile::tempdir_in(shm)
        {
            return Server::in_dir(tmp);
        }
        Server::new()
    }

    fn in_dir(tmp: TempDir) -> Server {
        let base = tmp.path().join("pg");
        let server = Server {
            incoming: base.join("incoming"),
            streaming: base.join("streaming"),
            wals: base.join("wals"),
            _tmp: tmp,
        };
        for dir in [&server.incoming, &server.streaming, &server.wals] {
            fs::create_dir_all(dir).unwrap();
        }
        server
    }
}

/// Bytes that look like the start of a WAL segment (page magic 0xD110 of PostgreSQL 15).
pub fn fake_wal() -> Vec<u8> {
    let mut bytes = vec![0u8; FAKE_WAL_SIZE];
    bytes[..4].copy_from_slice(&[0x10, 0xd1, 0x06, 0x00]);
    bytes
}

/// Writes `content` to `dir/name` with mtime [`MTIME`]; returns the path.
pub fn put(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    let mtime = UNIX_EPOCH + Duration::from_secs_f64(MTIME);
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    path
}

/// A fake WAL file `dir/name`.
pub fn put_wal(dir: &Path, name: &str) -> PathBuf {
    put(dir, name, &fake_wal())
}

/// `content` compressed by the `program` CLI (`gzip`, `zstd`), read from stdin.
pub fn compressed_by(program: &str, content: &[u8]) -> Vec<u8> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/install-test-deps installs it)"));
    let mut stdin = child.stdin.take().unwrap();
    let input = content.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "{program} failed");
    output.stdout
}

/// A path as the string records carry.
pub fn text(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}
