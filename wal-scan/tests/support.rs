//! What every test needs: a hermetic `wal-scan` child, a Barman-shaped server directory with
//! WAL files of the right shape for their names, and the run's records, stderr and exit
//! code.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;
use wal_core::names::{WalKind, classify};
use walpipe_tests::stage::{piped_through, stage_command};
use walpipe_tests::{history_file, parse_records, wal_segment, write_file};

/// Size of the segments [`put_wal`] writes: 1 MiB, the smallest segment size `initdb`
/// accepts (real ones are usually 16 MiB; wal-scan reads only their first page header).
pub const WAL_SIZE: usize = 1 << 20;

/// What [`put_wal`] writes under a name that is not a WAL name: a stranger in the queue.
pub const STRANGER: &[u8] = b"not WAL: a stranger in the queue\n";

/// The mtime every fixture file gets, as wal-scan must report it.
pub const MTIME: f64 = 1_700_000_000.25;

/// `wal-scan` without any `WALPIPE_*` (or `PG*`) variable of the test's environment.
pub fn wal_scan() -> Command {
    Command::from_std(stage_command(env!("CARGO_BIN_EXE_wal-scan")))
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
    let stdout = &output.stdout;
    assert!(
        stdout.is_empty() || stdout.ends_with(b"\n"),
        "{:?}",
        String::from_utf8_lossy(stdout)
    );
    Run {
        code: output.status.code().expect("wal-scan exits, is not killed"),
        records: parse_records(stdout),
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

/// Content with the shape of WAL for `name` (wal-scan refuses a plain file without it):
/// a [`WAL_SIZE`] segment opening with the long page header of that segment (a `.partial`
/// gets its segment's), a timeline history, or a backup label whose start location is
/// the one its name encodes. Another `seed` gives other content under the same name.
pub fn wal_content(name: &str, seed: u64) -> Vec<u8> {
    match classify(name) {
        Some(WalKind::Segment | WalKind::Partial) => wal_segment(&name[..24], seed),
        Some(WalKind::History) => {
            let timeline = u32::from_str_radix(&name[..8], 16).unwrap();
            assert!(timeline > 1, "{name}: timeline 1 has no history");
            history_file(timeline)
        }
        Some(WalKind::Backup) => backup_label(name),
        _ => panic!("{name}: not a WAL name"),
    }
}

/// A backup label for `<segment>.<offset>.backup`, as PostgreSQL 15 writes one, with 1 MiB
/// segments: it starts at the name's offset into the name's segment.
pub fn backup_label(name: &str) -> Vec<u8> {
    let field = |range: std::ops::Range<usize>| u64::from_str_radix(&name[range], 16).unwrap();
    let (log, segment, offset) = (field(8..16), field(16..24), field(25..33));
    let start = (segment << 20) | offset;
    let file = &name[..24];
    format!(
        "START WAL LOCATION: {log:X}/{start:X} (file {file})\n\
         STOP WAL LOCATION: {log:X}/{stop:X} (file {file})\n\
         CHECKPOINT LOCATION: {log:X}/{checkpoint:X}\n\
         BACKUP METHOD: streamed\n\
         BACKUP FROM: primary\n\
         START TIME: 2023-11-14 22:13:20 UTC\n\
         LABEL: wal-scan test\n\
         START TIMELINE: {timeline}\n",
        stop = start + 0xD8,
        checkpoint = start + 0x38,
        timeline = field(0..8),
    )
    .into_bytes()
}

/// Writes `content` to `dir/name` with mtime [`MTIME`]; returns the path.
pub fn put(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = write_file(dir, name, content);
    let mtime = UNIX_EPOCH + Duration::from_secs_f64(MTIME);
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    path
}

/// `dir/name` with [`wal_content`] for a WAL name, [`STRANGER`] bytes for any other name.
pub fn put_wal(dir: &Path, name: &str) -> PathBuf {
    if classify(name).is_some() {
        put(dir, name, &wal_content(name, 0))
    } else {
        put(dir, name, STRANGER)
    }
}

/// `content` compressed by the `program` CLI (`gzip`, `zstd`), read from stdin.
pub fn compressed_by(program: &str, content: &[u8]) -> Vec<u8> {
    piped_through(program, &["-c"], content)
}

/// A path as the string records carry.
pub fn text(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}
