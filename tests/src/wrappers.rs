//! Running the wrapper scripts (`scripts/archive-wal`, `scripts/archive-command`, ...)
//! against the built binaries, and reading what they leave in a Barman-shaped archive.
//!
//! The scripts find the binaries through `WALPIPE_BIN_DIR`, else through whatever build
//! lies next to them (possibly a stale `target/release`). Tests therefore always pass the
//! directory of the binaries they were built with, [`bin_dir`].
//!
//! The archive readers here are deliberately independent of `wal-core`: a test must not
//! trust the code it checks to tell it where a file belongs or what a catalogue line says.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::hermetic::clean_command;
use crate::paths::{script, target_bin};
use crate::pg::as_postgres;

/// Every binary walpipe installs.
pub const BINARIES: [&str; 9] = [
    "wal-scan",
    "wal-compress",
    "wal-encrypt",
    "wal-hooks",
    "wal-store",
    "wal-spool",
    "wal-receive",
    "wal-check",
    "wal-verify",
];

/// The directory holding the built `wal-scan`, `wal-compress` and `wal-store` (that of
/// `target_bin("wal-store")`).
///
/// # Panics
/// When the binaries are not built (`cargo build --workspace --bins`).
#[must_use]
pub fn bin_dir() -> PathBuf {
    let store = target_bin("wal-store");
    assert!(
        store.is_file(),
        "{} is missing: run `cargo build --workspace --bins`",
        store.display()
    );
    store
        .parent()
        .expect("a binary lives in a directory")
        .to_path_buf()
}

/// A command's exit status, stdout and stderr, for an assertion's message.
#[must_use]
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `scripts/<name>`, run as ourselves: hermetic ([`clean_command`]), with
/// `WALPIPE_BIN_DIR` = [`bin_dir`] and no standard input. Set further `WALPIPE_*`
/// variables after this call.
#[must_use]
pub fn wrapper(name: &str) -> Command {
    let mut cmd = Command::new(script(name));
    clean_command(&mut cmd);
    cmd.env("WALPIPE_BIN_DIR", bin_dir()).stdin(Stdio::null());
    cmd
}

/// The built binary `name` (`wal-store`, ...), hermetic ([`clean_command`]), with no
/// standard input unless given.
#[must_use]
pub fn tool(name: &str) -> Command {
    let mut cmd = Command::new(target_bin(name));
    clean_command(&mut cmd);
    cmd.stdin(Stdio::null());
    cmd
}

/// `scripts/<name>`, run as the `postgres` user when we are root (see [`as_postgres`]),
/// with `WALPIPE_BIN_DIR` = [`bin_dir`] and no standard input; from `/`, so pass
/// absolute paths.
#[must_use]
pub fn wrapper_as_postgres(name: &str) -> Command {
    let mut cmd = as_postgres(script(name));
    cmd.env("WALPIPE_BIN_DIR", bin_dir()).stdin(Stdio::null());
    cmd
}

/// An `archive_command` (for `postgresql.conf`, run by PostgreSQL's shell) handing `%p`
/// to `scripts/archive-command` with the binaries under test ([`bin_dir`]): into the
/// incoming queue of `server` in `home`, where `archive-wal` takes it from.
#[must_use]
pub fn queue_archive_command(home: &Path, server: &str) -> String {
    format!(
        "WALPIPE_BIN_DIR={bin} {script} --home {home} --server {server} %p",
        bin = bin_dir().display(),
        script = script("archive-command").display(),
        home = home.display(),
    )
}

/// Where Barman keeps `name` in the archive `wals`: `<wals>/<hash dir>/<name>`, the hash
/// directory being the first 16 hex digits in upper case, except timeline history files,
/// which sit in the archive root (`docs/barman-formats.md#archive-layout`).
///
/// # Panics
/// When `name` is too short to be a WAL file name.
#[must_use]
pub fn archived_path(wals: &Path, name: &str) -> PathBuf {
    if name.ends_with(".history") {
        return wals.join(name);
    }
    assert!(name.len() >= 24, "not a WAL file name: {name:?}");
    wals.join(name[..16].to_ascii_uppercase()).join(name)
}

/// One line of a `<server>-xlog.db` file.
#[derive(Debug, Clone, PartialEq)]
pub struct XlogdbEntry {
    /// The WAL file name.
    pub name: String,
    /// Bytes as stored.
    pub size: u64,
    /// The source's mtime, seconds since the epoch.
    pub time: f64,
    /// `None` for the literal `None`, else the compression name.
    pub compression: Option<String>,
    /// `None` for the literal `None`, else the encryption name.
    pub encryption: Option<String>,
}

/// Parses an xlog.db file strictly as Barman writes it: every line `\n`-terminated, five
/// fields separated by single TABs (`docs/barman-formats.md#xlogdb`). A missing file reads
/// as empty.
///
/// # Panics
/// On a line that is not in that format, naming the line.
#[must_use]
pub fn read_xlogdb(path: &Path) -> Vec<XlogdbEntry> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{}: last line not terminated: {text:?}",
        path.display()
    );
    let none_or = |field: &str| (field != "None").then(|| field.to_owned());
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(
                fields.len(),
                5,
                "{}: not 5 TAB-separated fields: {line:?}",
                path.display()
            );
            XlogdbEntry {
                name: fields[0].to_owned(),
                size: fields[1]
                    .parse()
                    .unwrap_or_else(|e| panic!("bad size in {line:?}: {e}")),
                time: fields[2]
                    .parse()
                    .unwrap_or_else(|e| panic!("bad time in {line:?}: {e}")),
                compression: none_or(fields[3]),
                encryption: none_or(fields[4]),
            }
        })
        .collect()
}

/// The content of a zstd file, decompressed by the real `zstd` CLI (`zstd -qdc`), so the
/// archive is checked with the tool a human would use, not with our own codec.
///
/// # Panics
/// When `zstd` is missing or fails (the file is not valid zstd).
#[must_use]
pub fn zstd_decompress(path: &Path) -> Vec<u8> {
    let out = Command::new("zstd")
        .arg("-qdc")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("the zstd CLI is needed: run scripts/install-test-deps");
    assert!(
        out.status.success(),
        "zstd -qdc {} failed ({}): {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The names in `dir`, hidden ones included, sorted; empty when `dir` does not exist.
///
/// # Panics
/// On an I/O error other than a missing directory.
#[must_use]
pub fn dir_names(dir: &Path) -> Vec<String> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    };
    let mut names: Vec<String> = entries
        .map(|entry| {
            entry
                .expect("readable directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// What a wrapper (or any command) run gave: exit code and UTF-8 output.
#[derive(Debug)]
pub struct Run {
    /// Exit code (a death by signal panics: wrappers must always exit).
    pub code: i32,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl Run {
    /// stdout, line by line.
    #[must_use]
    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Runs `cmd` to completion, feeding it `stdin` if given, and logs the result to stderr
/// (shown when a test fails).
pub fn run(cmd: &mut Command, stdin: Option<&str>) -> Run {
    use std::io::Write as _;
    use std::process::Stdio;
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the command runs");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(text.as_bytes()).expect("stdin accepted");
    }
    let out = child.wait_with_output().expect("the command ends");
    let run = Run {
        code: out.status.code().unwrap_or_else(|| {
            panic!(
                "killed by a signal: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        }),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    };
    eprintln!("{run:?}");
    run
}

/// Panics naming `what`, with its status, stdout and stderr, unless the process succeeded.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `wal-scan archive HOME/SERVER/wals --server SERVER`: the records of a local archive,
/// as the verify and restore pipelines start from them.
///
/// # Panics
/// When the scan fails.
#[must_use]
pub fn scan_archive(home: &Path, server: &str) -> Vec<u8> {
    let scan = tool("wal-scan")
        .arg("archive")
        .arg(home.join(server).join("wals"))
        .args(["--server", server])
        .output()
        .unwrap();
    assert!(
        scan.status.success(),
        "wal-scan archive: {}",
        output_text(&scan)
    );
    scan.stdout
}
