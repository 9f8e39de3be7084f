//! Crash safety: SIGKILL the archiving pipeline at random moments, re-run it, and check that
//! the archive converges (architecture.md, "Durability"): no WAL lost, none corrupt, none
//! moved to errors/ as a false duplicate, and xlog.db cataloguing each stored WAL exactly once.
//!
//! Two tests:
//! * `killed_archive_wal_runs_converge`: `scripts/archive-wal` over a queue of real
//!   segments, killed (the whole process group, or one stage) again and again;
//! * `killed_archive_command_runs_converge`: `scripts/archive-command` (the default,
//!   queue mode) killed while it copies segments into the queue, each re-run until it
//!   succeeds as PostgreSQL would, then one clean `archive-wal`.
//!
//! The kill moments are random: a plain delay (0-30 ms, 0-400 ms), or an event seen from
//! outside: wal-store inside a durability syscall (fsync, link, flock, unlink, rename), a
//! new file in the archive (linked, not yet catalogued), xlog.db grown (catalogued, sources
//! not yet removed), a temp file in the queue (archive-command mid-copy). Every choice comes
//! from one seed, printed at the start and on failure; `WALPIPE_CRASH_SEED=N` replays the
//! same sequence of choices (the timing of the machine still varies).
//!
//! After every round the cheap invariants are checked (a queue file only leaves once its WAL
//! is archived and catalogued, nothing in errors/, no line twice in xlog.db); after the final
//! clean run every WAL is decompressed and compared with the original, and xlog.db's size,
//! compression and time columns are compared with the stored file and the source.
//! Hidden temporary files that killed runs leave in the queue are counted, not failed on.
//!
//! Needs `cargo build --workspace --bins` first. Run with `--nocapture` to see where the
//! kills landed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use wal_core::codec;
use wal_core::xlogdb::XlogLine;
use wal_core::{Compression, WalName};
use walpipe_tests::{WorkDir, clean_command, script, target_bin, wal_fixture_segments};

const SERVER: &str = "pg";
/// Real segments in the archive-wal test's queue (the whole fixture set has about 20).
const ARCHIVE_WAL_SEGMENTS: usize = 20;
/// Fewer real segments than this make a test too weak to mean anything.
const MIN_SEGMENTS: usize = 10;
/// Real segments delivered through archive-command.
const ARCHIVE_COMMAND_SEGMENTS: usize = 10;
/// Kill rounds of archive-wal at most, and the time they may take in all.
const MAX_KILL_ROUNDS: usize = 60;
const KILL_PHASE_BUDGET: Duration = Duration::from_secs(30);
/// Kill plans per file for archive-command (1 to this many), and attempts per file at most.
const MAX_KILLS_PER_FILE: u64 = 3;
const MAX_ATTEMPTS_PER_FILE: usize = 20;
/// A wrapper still running this long after it was started (or after a stage was killed)
/// is hung: a bug in itself.
const HANG_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_micros(500);
const STAGES: [&str; 3] = ["wal-scan", "wal-compress", "wal-store"];
/// mtime given to the i-th queued file, so xlog.db's time column can be checked exactly.
const BASE_MTIME: u64 = 1_700_000_000;
const HISTORY_NAME: &str = "00000002.history";
const HISTORY: &[u8] = b"1\t0/5000028\tno recovery target specified\n";

// ---------------------------------------------------------------------------------------
// Seeded choices

/// xorshift64*: tiny and fully specified, so a seed replays the same choices.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        // One SplitMix64 step, so nearby seeds and streams give unrelated sequences.
        let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

/// `$WALPIPE_CRASH_SEED` (decimal or 0x-hex), else one from the clock.
fn crash_seed() -> u64 {
    if let Ok(text) = std::env::var("WALPIPE_CRASH_SEED") {
        let text = text.trim();
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        return parsed.unwrap_or_else(|e| panic!("WALPIPE_CRASH_SEED={text:?}: {e}"));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    (now.as_nanos() as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

/// Prints the seed again when the test fails, however it fails.
struct SeedReport {
    test: &'static str,
    seed: u64,
}

impl Drop for SeedReport {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "{}: FAILED with seed {}; replay with WALPIPE_CRASH_SEED={} cargo test -p walpipe-tests --test crash {}",
                self.test, self.seed, self.seed, self.test
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Processes seen through /proc

#[derive(Debug, Clone)]
struct ProcInfo {
    pid: i32,
    comm: String,
    state: char,
    pgrp: i32,
}

fn proc_info(pid: i32) -> Option<ProcInfo> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let _ppid = rest.next()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        comm,
        state,
        pgrp,
    })
}

/// The live (not zombie) processes of process group `pgid`.
fn group_members(pgid: i32) -> Vec<ProcInfo> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_info)
        .filter(|p| p.pgrp == pgid && p.state != 'Z' && p.state != 'X')
        .collect()
}

fn live_stages(pgid: i32) -> Vec<ProcInfo> {
    let mut stages: Vec<ProcInfo> = group_members(pgid)
        .into_iter()
        .filter(|p| STAGES.contains(&p.comm.as_str()))
        .collect();
    stages.sort_by_key(|p| p.pid);
    stages
}

/// What the process's main thread is doing: `running`, a syscall's name, or `gone`.
fn activity(pid: i32) -> String {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return match proc_info(pid) {
            Some(p) if p.state == 'D' => "disk-wait".into(),
            Some(p) if p.state == 'R' => "running".into(),
            Some(_) => "waiting".into(),
            None => "gone".into(),
        };
    };
    let first = text.split_whitespace().next().unwrap_or("");
    match first.parse::<u64>() {
        Ok(number) => syscall_name(number),
        Err(_) if first.is_empty() => "gone".into(),
        // In the kernel but not in a syscall (a page fault, preempted).
        Err(_) if first == "-1" => "in-kernel".into(),
        Err(_) => first.to_string(),
    }
}

/// x86_64 numbers (elsewhere the numbers are printed as they are).
fn syscall_name(number: u64) -> String {
    let name = match (std::env::consts::ARCH, number) {
        ("x86_64", 0) => "read",
        ("x86_64", 1) => "write",
        ("x86_64", 73) => "flock",
        ("x86_64", 74) => "fsync",
        ("x86_64", 75) => "fdatasync",
        ("x86_64", 82) => "rename",
        ("x86_64", 86) => "link",
        ("x86_64", 87) => "unlink",
        ("x86_64", 202) => "futex",
        ("x86_64", 257) => "openat",
        ("x86_64", 263) => "unlinkat",
        ("x86_64", 265) => "linkat",
        ("x86_64", 316) => "renameat2",
        _ => return format!("syscall-{number}"),
    };
    name.into()
}

/// Syscalls of wal-store's durability steps: a kill seen in one lands right after it.
fn is_durability_step(activity: &str) -> bool {
    matches!(
        activity,
        "fsync"
            | "fdatasync"
            | "link"
            | "linkat"
            | "flock"
            | "unlink"
            | "unlinkat"
            | "rename"
            | "renameat2"
            | "disk-wait"
    )
}

fn kill_group(pgid: i32) {
    match killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => panic!("cannot kill process group {pgid}: {e}"),
    }
}

fn kill_one(pid: i32) {
    match kill(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => panic!("cannot kill {pid}: {e}"),
    }
}

/// Waits for `child` (the wrapper) to exit, then for every process of its group to be gone
/// (a SIGKILLed stage may take a moment to die, and holds the archive-wal lock until then).
fn reap(child: &mut Child, pgid: i32, what: &str) -> ExitStatus {
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the wrapper") {
            break status;
        }
        if start.elapsed() > HANG_TIMEOUT {
            let stages = live_stages(pgid);
            kill_group(pgid);
            let _ = child.wait();
            panic!("{what} hung for {HANG_TIMEOUT:?}; live stages: {stages:?}");
        }
        thread::sleep(Duration::from_millis(2));
    };
    while !group_members(pgid).is_empty() {
        assert!(
            start.elapsed() < HANG_TIMEOUT,
            "process group {pgid} of {what} does not go away: {:?}",
            group_members(pgid)
        );
        thread::sleep(Duration::from_millis(2));
    }
    status
}

// ---------------------------------------------------------------------------------------
// The server layout and its originals

#[derive(Debug, Clone)]
struct Original {
    name: String,
    /// The bytes to compare with (the read-only fixture, or a file of our own).
    bytes_at: PathBuf,
    mtime: u64,
    segment: bool,
}

#[derive(Debug)]
struct Home {
    work: WorkDir,
    root: PathBuf,
    incoming: PathBuf,
    wals: PathBuf,
    errors: PathBuf,
    log: PathBuf,
}

impl Home {
    fn new() -> Self {
        let work = WorkDir::new();
        let root = work.path().to_path_buf();
        let incoming = work.mkdir_owned(format!("{SERVER}/incoming"));
        let wals = work.mkdir_owned(format!("{SERVER}/wals"));
        let errors = work.mkdir_owned(format!("{SERVER}/errors"));
        let log = work.join("wrapper.log");
        File::create(&log).expect("create the log");
        Home {
            work,
            root,
            incoming,
            wals,
            errors,
            log,
        }
    }

    fn xlogdb(&self) -> PathBuf {
        self.wals.join(format!("{SERVER}-xlog.db"))
    }

    fn archived_path(&self, name: &str) -> PathBuf {
        self.wals
            .join(WalName::parse(name).expect("a WAL name").relpath())
    }

    fn note(&self, text: &str) {
        let mut log = File::options()
            .append(true)
            .open(&self.log)
            .expect("open the log");
        writeln!(log, "{text}").expect("write the log");
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Starts `scripts/<name> args...` in its own process group, output to the log.
    fn spawn(&self, name: &str, args: &[&str]) -> Child {
        let log = File::options()
            .append(true)
            .open(&self.log)
            .expect("open the log");
        let mut cmd = Command::new(script(name));
        clean_command(&mut cmd);
        cmd.env("WALPIPE_BIN_DIR", bin_dir())
            .args(["--home"])
            .arg(&self.root)
            .args(["--server", SERVER])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .process_group(0);
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
    }

    fn spawn_archive_wal(&self) -> Child {
        self.spawn("archive-wal", &["--compression", "zstd"])
    }
}

fn bin_dir() -> PathBuf {
    let store = target_bin("wal-store");
    for bin in STAGES {
        let path = target_bin(bin);
        assert!(
            path.is_file(),
            "{} is missing: run `cargo build --workspace --bins` first",
            path.display()
        );
    }
    store
        .parent()
        .expect("the binary is in a directory")
        .to_path_buf()
}

/// Copies `src` to `dest` and gives it the mtime `mtime`.
fn copy_with_mtime(src: &Path, dest: &Path, mtime: u64) {
    fs::copy(src, dest)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", src.display(), dest.display()));
    File::options()
        .write(true)
        .open(dest)
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime)))
        .unwrap_or_else(|e| panic!("set the mtime of {}: {e}", dest.display()));
}

/// Up to `count` real segments plus a history file, copied into `dir` with known mtimes.
fn originals_into(dir: &Path, count: usize, keep: &Path) -> Vec<Original> {
    let segments = wal_fixture_segments();
    // The set holds "about 20": take what there is, up to `count`, but never under 10.
    let count = count.min(segments.len());
    assert!(
        count >= MIN_SEGMENTS,
        "the fixture set has {} segments, the test wants at least {MIN_SEGMENTS}",
        segments.len()
    );
    let history = keep.join(HISTORY_NAME);
    fs::write(&history, HISTORY).expect("write the history file");
    let mut originals: Vec<Original> = segments[..count]
        .iter()
        .map(|path| Original {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            bytes_at: path.clone(),
            mtime: 0,
            segment: true,
        })
        .collect();
    originals.push(Original {
        name: HISTORY_NAME.into(),
        bytes_at: history,
        mtime: 0,
        segment: false,
    });
    for (i, original) in originals.iter_mut().enumerate() {
        original.mtime = BASE_MTIME + i as u64;
        copy_with_mtime(
            &original.bytes_at,
            &dir.join(&original.name),
            original.mtime,
        );
    }
    originals
}

fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    let mut left = File::open(a)?;
    let mut right = File::open(b)?;
    codec::same_content(&mut left, &mut right)
}

// ---------------------------------------------------------------------------------------
// What the directories hold, and the invariants that must hold after any kill

#[derive(Debug, Default)]
struct Snapshot {
    /// WAL names still in the queue.
    queued: BTreeSet<String>,
    /// Non-hidden, non-original names in the queue.
    queue_strays: Vec<String>,
    /// Hidden files left in the queue (temps of killed runs).
    queue_hidden: usize,
    /// WAL name -> path, for every non-hidden file in the archive (xlog.db aside).
    archived: BTreeMap<String, PathBuf>,
    /// Hidden files in the archive.
    archive_hidden: Vec<PathBuf>,
    /// xlog.db lines, in order.
    catalogue: Vec<XlogLine>,
    /// xlog.db lines that do not parse.
    torn_lines: Vec<String>,
    /// Entries of errors/.
    errors: Vec<String>,
}

fn names_in(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                e.expect("readable entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    }
}

fn snapshot(home: &Home, originals: &[Original]) -> Snapshot {
    let mut snap = Snapshot::default();
    let known: BTreeSet<&str> = originals.iter().map(|o| o.name.as_str()).collect();
    for name in names_in(&home.incoming) {
        if name.starts_with('.') {
            snap.queue_hidden += 1;
        } else if known.contains(name.as_str()) {
            snap.queued.insert(name);
        } else {
            snap.queue_strays.push(name);
        }
    }
    let xlogdb_name = format!("{SERVER}-xlog.db");
    let mut walk = vec![home.wals.clone()];
    while let Some(dir) = walk.pop() {
        for name in names_in(&dir) {
            let path = dir.join(&name);
            if path.is_dir() {
                walk.push(path);
            } else if name.starts_with('.') {
                snap.archive_hidden.push(path);
            } else if dir != home.wals || name != xlogdb_name {
                snap.archived.insert(name, path);
            }
        }
    }
    if let Ok(text) = fs::read_to_string(home.xlogdb()) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match XlogLine::parse(line) {
                Some(parsed) => snap.catalogue.push(parsed),
                None => snap.torn_lines.push(line.to_string()),
            }
        }
    }
    snap.errors = names_in(&home.errors);
    snap
}

/// Where a WAL stands between runs: the crash windows a kill can leave it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalState {
    /// Only in the queue.
    Queued,
    /// In the archive, not in xlog.db, source still queued (killed between link and append).
    LinkedNotCatalogued,
    /// Catalogued, source still queued (killed between append and removing the source).
    CataloguedStillQueued,
    /// Catalogued and its source removed.
    Done,
}

/// The invariants that must hold after any kill; returns where each WAL stands.
fn check_invariants(
    home: &Home,
    originals: &[Original],
    snap: &Snapshot,
) -> Result<BTreeMap<String, WalState>, String> {
    let mut problems = Vec::new();
    let mut states = BTreeMap::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in &snap.catalogue {
        *counts.entry(line.name.as_str()).or_default() += 1;
    }
    for (name, count) in &counts {
        if *count > 1 {
            problems.push(format!("{name} is catalogued {count} times in xlog.db"));
        }
    }
    for line in &snap.torn_lines {
        problems.push(format!("xlog.db has an unparsable line {line:?}"));
    }
    for original in originals {
        let name = original.name.as_str();
        let queued = snap.queued.contains(name);
        let archived = snap.archived.get(name);
        let catalogued = counts.contains_key(name);
        if let Some(path) = archived {
            let expected = home.archived_path(name);
            if *path != expected {
                problems.push(format!(
                    "{name} is archived at {}, not at {}",
                    path.display(),
                    expected.display()
                ));
            }
        }
        match (queued, archived.is_some(), catalogued) {
            (_, false, true) => {
                problems.push(format!("{name} is catalogued but not in the archive"));
            }
            (false, false, false) => {
                problems.push(format!("{name} is LOST: gone from the queue, not archived"));
            }
            (false, true, false) => problems.push(format!(
                "{name} left the queue while not catalogued: no later run will catalogue it"
            )),
            (true, true, false) => {
                states.insert(original.name.clone(), WalState::LinkedNotCatalogued);
            }
            (true, true, true) => {
                states.insert(original.name.clone(), WalState::CataloguedStillQueued);
            }
            (false, true, true) => {
                states.insert(original.name.clone(), WalState::Done);
            }
            (true, false, false) => {
                states.insert(original.name.clone(), WalState::Queued);
            }
        }
    }
    for name in counts.keys() {
        if !originals.iter().any(|o| o.name == *name) {
            problems.push(format!("xlog.db catalogues {name}, which was never queued"));
        }
    }
    for name in snap.archived.keys() {
        if !originals.iter().any(|o| &o.name == name) {
            problems.push(format!("stray file {name} in the archive"));
        }
    }
    if !snap.errors.is_empty() {
        problems.push(format!(
            "errors/ holds {:?} (false duplicates?)",
            snap.errors
        ));
    }
    if !snap.queue_strays.is_empty() {
        problems.push(format!(
            "unexpected non-hidden files in the queue: {:?}",
            snap.queue_strays
        ));
    }
    if problems.is_empty() {
        Ok(states)
    } else {
        Err(problems.join("\n"))
    }
}

/// The full check after the final clean run: everything archived once, byte-identical.
fn verify_final(home: &Home, originals: &[Original]) -> Result<(), String> {
    let snap = snapshot(home, originals);
    let mut problems = Vec::new();
    if let Err(e) = check_invariants(home, originals, &snap) {
        problems.push(e);
    }
    if !snap.queued.is_empty() {
        problems.push(format!(
            "still queued after the clean run: {:?}",
            snap.queued
        ));
    }
    for original in originals {
        let name = original.name.as_str();
        let path = home.archived_path(name);
        let lines: Vec<&XlogLine> = snap.catalogue.iter().filter(|l| l.name == name).collect();
        if lines.len() != 1 {
            problems.push(format!("{name}: {} xlog.db lines, want 1", lines.len()));
        }
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                problems.push(format!(
                    "{name}: not in the archive at {}: {e}",
                    path.display()
                ));
                continue;
            }
        };
        let (found, mut stored) = match codec::open_decompressed(&path) {
            Ok(opened) => opened,
            Err(e) => {
                problems.push(format!("{name}: cannot open {}: {e}", path.display()));
                continue;
            }
        };
        let mut original_bytes = File::open(&original.bytes_at).expect("open the original");
        match codec::same_content(&mut stored, &mut original_bytes) {
            Ok(true) => {}
            Ok(false) => problems.push(format!(
                "{name}: CORRUPT: {} does not decompress to the original",
                path.display()
            )),
            Err(e) => problems.push(format!(
                "{name}: CORRUPT: {} does not decompress: {e}",
                path.display()
            )),
        }
        if original.segment && found != Some(Compression::Zstd) {
            problems.push(format!("{name}: stored as {found:?}, want zstd"));
        }
        if meta.mtime() != original.mtime.cast_signed() {
            problems.push(format!(
                "{name}: archived mtime {} , want the source's {}",
                meta.mtime(),
                original.mtime
            ));
        }
        if let Some(line) = lines.first() {
            if line.size != meta.len() {
                problems.push(format!(
                    "{name}: xlog.db size {} but the stored file has {} bytes",
                    line.size,
                    meta.len()
                ));
            }
            let want = found.map(|c| c.name().to_string());
            if line.compression != want {
                problems.push(format!(
                    "{name}: xlog.db compression {:?}, the stored file is {want:?}",
                    line.compression
                ));
            }
            if line.encryption.is_some() {
                problems.push(format!(
                    "{name}: xlog.db encryption {:?}, want None",
                    line.encryption
                ));
            }
            if (line.time - original.mtime as f64).abs() > 1e-3 {
                problems.push(format!(
                    "{name}: xlog.db time {}, want the source's mtime {}",
                    line.time, original.mtime
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

// ---------------------------------------------------------------------------------------
// Kill plans

#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// A fixed delay after the start (the first kinds: early and up to 400 ms).
    Delay {
        label: &'static str,
        after: Duration,
    },
    /// wal-store seen inside a durability syscall for the `skip + 1`-th time.
    StoreStep { skip: u64 },
    /// The archive gained a file since the round started (linked, maybe not catalogued),
    /// then `after`.
    Linked { after: Duration },
    /// xlog.db grew since the round started (catalogued, sources maybe not removed yet),
    /// then `after`.
    Catalogued { after: Duration },
    /// A hidden temp file appeared in the queue (archive-command mid-copy), then `after`.
    TempInQueue { after: Duration },
}

impl Trigger {
    fn label(&self) -> &'static str {
        match self {
            Trigger::Delay { label, .. } => label,
            Trigger::StoreStep { .. } => "wal-store-step",
            Trigger::Linked { .. } => "after-link",
            Trigger::Catalogued { .. } => "after-xlogdb",
            Trigger::TempInQueue { .. } => "temp-in-queue",
        }
    }

    /// How long after the trigger's event the kill is sent.
    fn delay(&self) -> Duration {
        match *self {
            Trigger::Delay { after, .. }
            | Trigger::Linked { after }
            | Trigger::Catalogued { after }
            | Trigger::TempInQueue { after } => after,
            Trigger::StoreStep { .. } => Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Group,
    Store,
    /// A stage among those alive, picked with this number.
    AnyStage(u64),
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    trigger: Trigger,
    target: Target,
}

/// A plan for an archive-wal round. Always the same number of draws, so a seed replays.
fn archive_wal_plan(rng: &mut Rng) -> Plan {
    let kind = rng.below(100);
    let param = rng.next_u64();
    let target = rng.below(100);
    let pick = rng.next_u64();
    let trigger = match kind {
        0..10 => Trigger::Delay {
            label: "delay-0-30ms",
            after: Duration::from_millis(param % 31),
        },
        10..30 => Trigger::Delay {
            label: "delay-0-400ms",
            after: Duration::from_millis(param % 401),
        },
        30..60 => Trigger::StoreStep { skip: param % 4 },
        60..85 => Trigger::Linked {
            after: Duration::from_micros(param % 1000),
        },
        _ => Trigger::Catalogued {
            after: Duration::from_micros(param % 3000),
        },
    };
    let target = match target {
        0..50 => Target::Group,
        50..75 => Target::Store,
        _ => Target::AnyStage(pick),
    };
    Plan { trigger, target }
}

/// A plan for an archive-command attempt; `typical` is how long a clean one takes.
fn archive_command_plan(rng: &mut Rng, typical: Duration) -> Plan {
    let kind = rng.below(100);
    let param = rng.next_u64();
    let target = rng.below(100);
    let pick = rng.next_u64();
    let typical_us = typical.as_micros().max(1000) as u64;
    let trigger = match kind {
        0..10 => Trigger::Delay {
            label: "delay-0-30ms",
            after: Duration::from_millis(param % 31),
        },
        10..40 => Trigger::Delay {
            label: "delay-0-1.5x-typical",
            after: Duration::from_micros(param % (typical_us * 3 / 2)),
        },
        40..70 => Trigger::StoreStep { skip: param % 3 },
        _ => Trigger::TempInQueue {
            after: Duration::from_micros(param % typical_us),
        },
    };
    let target = match target {
        0..50 => Target::Group,
        50..75 => Target::Store,
        _ => Target::AnyStage(pick),
    };
    Plan { trigger, target }
}

/// What happened to one run of a wrapper.
#[derive(Debug)]
struct Outcome {
    status: ExitStatus,
    /// `Some((target, activity))` when a kill was sent.
    killed: Option<(String, String)>,
    elapsed: Duration,
}

/// Non-hidden files in the archive, xlog.db aside.
fn count_archived(wals: &Path) -> usize {
    let mut total = 0;
    let mut walk = vec![wals.to_path_buf()];
    while let Some(dir) = walk.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk.push(entry.path());
            } else if !name.starts_with('.') && !name.ends_with("-xlog.db") {
                total += 1;
            }
        }
    }
    total
}

/// The hidden (temporary) names in `dir`.
fn hidden_names(dir: &Path) -> BTreeSet<String> {
    names_in(dir)
        .into_iter()
        .filter(|name| name.starts_with('.'))
        .collect()
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// Runs one wrapper to its end, killing per `plan` (if any) when its trigger fires.
fn run_with_plan(home: &Home, mut child: Child, plan: Option<Plan>, what: &str) -> Outcome {
    let pgid = child.id().cast_signed();
    let start = Instant::now();
    let archived_before = count_archived(&home.wals);
    let xlogdb_before = file_len(&home.xlogdb());
    let hidden_before = hidden_names(&home.incoming);
    let mut store_pid: Option<i32> = None;
    let mut last_scan: Option<Instant> = None;
    let mut steps_seen = 0u64;
    let mut last_activity = String::new();
    let mut fired_at: Option<Instant> = None;
    let killed = loop {
        if child.try_wait().expect("wait for the wrapper").is_some() {
            break None;
        }
        if start.elapsed() > HANG_TIMEOUT {
            let members = group_members(pgid);
            kill_group(pgid);
            let _ = child.wait();
            panic!("{what} still runs after {HANG_TIMEOUT:?}: {members:?}");
        }
        let Some(plan) = plan else {
            thread::sleep(Duration::from_millis(2));
            continue;
        };
        if store_pid.is_none() && last_scan.is_none_or(|at| at.elapsed() > Duration::from_millis(3))
        {
            last_scan = Some(Instant::now());
            store_pid = live_stages(pgid)
                .into_iter()
                .find(|p| p.comm == "wal-store")
                .map(|p| p.pid);
        }
        if fired_at.is_none() {
            let event = match plan.trigger {
                Trigger::Delay { .. } => true,
                Trigger::StoreStep { skip } => store_pid.is_some_and(|pid| {
                    let now = activity(pid);
                    let mut hit = false;
                    if is_durability_step(&now) && now != last_activity {
                        hit = steps_seen == skip;
                        steps_seen += 1;
                    }
                    last_activity = now;
                    hit
                }),
                Trigger::Linked { .. } => count_archived(&home.wals) > archived_before,
                Trigger::Catalogued { .. } => file_len(&home.xlogdb()) > xlogdb_before,
                Trigger::TempInQueue { .. } => hidden_names(&home.incoming)
                    .difference(&hidden_before)
                    .next()
                    .is_some(),
            };
            if event {
                fired_at = Some(match plan.trigger {
                    Trigger::Delay { .. } => start,
                    _ => Instant::now(),
                });
            }
        }
        if fired_at.is_some_and(|at| at.elapsed() >= plan.trigger.delay()) {
            break Some(send_kill(pgid, plan.target));
        }
        thread::sleep(POLL);
    };
    let status = reap(&mut child, pgid, what);
    Outcome {
        status,
        killed,
        elapsed: start.elapsed(),
    }
}

/// Sends SIGKILL to the target; returns (what was killed, what wal-store was doing).
fn send_kill(pgid: i32, target: Target) -> (String, String) {
    let stages = live_stages(pgid);
    let store = stages.iter().find(|p| p.comm == "wal-store");
    let store_doing = store.map_or_else(|| "not-running".to_string(), |p| activity(p.pid));
    let victim = match target {
        Target::Group => None,
        Target::Store => store,
        Target::AnyStage(_) if stages.is_empty() => None,
        Target::AnyStage(pick) => Some(&stages[(pick % stages.len() as u64) as usize]),
    };
    if let Some(p) = victim {
        kill_one(p.pid);
        (p.comm.clone(), store_doing)
    } else {
        let alive: Vec<&str> = stages.iter().map(|p| p.comm.as_str()).collect();
        kill_group(pgid);
        (format!("group[{}]", alive.join(",")), store_doing)
    }
}

/// Tallies for the report.
#[derive(Debug, Default)]
struct Tally {
    rounds: usize,
    unplanned: usize,
    finished_before_kill: usize,
    by_target: BTreeMap<String, usize>,
    by_trigger: BTreeMap<&'static str, usize>,
    by_activity: BTreeMap<String, usize>,
    /// WAL that kills left linked into the archive but not catalogued.
    left_linked_not_catalogued: usize,
    /// WAL that kills left catalogued with their source still queued.
    left_catalogued_still_queued: usize,
}

impl Tally {
    fn add(&mut self, plan: Option<Plan>, outcome: &Outcome) {
        self.rounds += 1;
        match (&outcome.killed, plan) {
            (Some((target, doing)), Some(plan)) => {
                let stage = target.split('[').next().unwrap_or(target).to_string();
                *self.by_target.entry(stage).or_default() += 1;
                *self.by_trigger.entry(plan.trigger.label()).or_default() += 1;
                *self.by_activity.entry(doing.clone()).or_default() += 1;
            }
            (_, Some(_)) => self.finished_before_kill += 1,
            (_, None) => self.unplanned += 1,
        }
    }

    fn report(&self, test: &str, elapsed: Duration) {
        let mut text = format!(
            "{test}: {} runs in {:.1}s: {} killed, {} finished before their kill, {} run without a kill\n",
            self.rounds,
            elapsed.as_secs_f64(),
            self.rounds - self.finished_before_kill - self.unplanned,
            self.finished_before_kill,
            self.unplanned
        );
        let _ = writeln!(text, "  killed:   {:?}", self.by_target);
        let _ = writeln!(text, "  triggers: {:?}", self.by_trigger);
        let _ = writeln!(
            text,
            "  what wal-store was doing at the kill: {:?}",
            self.by_activity
        );
        let _ = write!(
            text,
            "  WAL left by a kill linked but not catalogued: {}; catalogued with the source still queued: {}",
            self.left_linked_not_catalogued, self.left_catalogued_still_queued
        );
        eprintln!("{text}");
    }
}

fn fail(home: &Home, seed: u64, context: &str, problems: &str) -> ! {
    panic!(
        "seed {seed} (WALPIPE_CRASH_SEED={seed}): {context}\n{problems}\n--- wrapper log tail ({}) ---\n{}",
        home.log.display(),
        home.log_tail(60)
    );
}

/// The final clean archive-wal run (must exit 0), a second one (a no-op), and the checks.
fn final_runs_and_verify(home: &Home, originals: &[Original], seed: u64, tally: &mut Tally) {
    for run in ["final clean run", "second clean run"] {
        home.note(&format!("=== {run}"));
        let outcome = run_with_plan(home, home.spawn_archive_wal(), None, "archive-wal");
        tally.add(None, &outcome);
        if !outcome.status.success() {
            fail(
                home,
                seed,
                &format!("the {run} of archive-wal failed: {}", outcome.status),
                "",
            );
        }
    }
    if let Err(problems) = verify_final(home, originals) {
        fail(home, seed, "the archive after the clean runs", &problems);
    }
}

/// Delivers one file with archive-command as PostgreSQL would: run it, and run it again
/// until it exits 0; the first `max_kills` runs get a kill plan.
#[allow(clippy::too_many_arguments)] // a test helper: the state of one test, spelled out
fn deliver(
    home: &Home,
    pg_wal: &Path,
    original: &Original,
    max_kills: u64,
    seed: u64,
    rng: &mut Rng,
    tally: &mut Tally,
    typical: &mut Duration,
) {
    let wal_path = pg_wal.join(&original.name);
    let wal_arg = wal_path.to_str().expect("a UTF-8 path");
    let queued = home.incoming.join(&original.name);
    // Every attempt but the last was killed (an unkilled failure fails the test).
    for kills in 0..MAX_ATTEMPTS_PER_FILE as u64 {
        let attempt = kills + 1;
        let plan = archive_command_plan(rng, *typical);
        let plan = (kills < max_kills).then_some(plan);
        home.note(&format!(
            "=== {} attempt {attempt}: {plan:?}",
            original.name
        ));
        let child = home.spawn("archive-command", &[wal_arg]);
        let outcome = run_with_plan(home, child, plan, "archive-command");
        home.note(&format!(
            "=== {} attempt {attempt}: {:?} after {:?}, exit {}",
            original.name, outcome.killed, outcome.elapsed, outcome.status
        ));
        tally.add(plan, &outcome);
        let context = format!(
            "{} attempt {attempt} ({plan:?}, killed {:?}, {})",
            original.name, outcome.killed, outcome.status
        );
        if outcome.status.code().is_some_and(|code| code > 125) {
            fail(
                home,
                seed,
                &context,
                "archive-command exited above 125: fatal to PostgreSQL's archiver",
            );
        }
        if queued.exists() && !same_bytes(&queued, &original.bytes_at).expect("compare") {
            fail(
                home,
                seed,
                &context,
                "a partial or different copy is visible in the queue under the WAL's name",
            );
        }
        if outcome.status.success() {
            if !queued.exists() {
                fail(
                    home,
                    seed,
                    &context,
                    "archive-command exited 0 but the WAL is not in the queue",
                );
            }
            if outcome.killed.is_none() {
                *typical = (*typical * 3 + outcome.elapsed) / 4;
            }
            return;
        }
        if outcome.killed.is_none() {
            fail(
                home,
                seed,
                &context,
                "archive-command failed without being killed (a re-delivery after a kill must succeed)",
            );
        }
    }
    fail(
        home,
        seed,
        &format!(
            "{} not delivered after {MAX_ATTEMPTS_PER_FILE} attempts",
            original.name
        ),
        "",
    );
}

// ---------------------------------------------------------------------------------------
// The tests

#[test]
fn killed_archive_wal_runs_converge() {
    let seed = crash_seed();
    let _report = SeedReport {
        test: "killed_archive_wal_runs_converge",
        seed,
    };
    eprintln!(
        "killed_archive_wal_runs_converge: seed {seed} (replay with WALPIPE_CRASH_SEED={seed})"
    );
    let mut rng = Rng::new(seed, 1);
    let home = Home::new();
    let originals = originals_into(&home.incoming, ARCHIVE_WAL_SEGMENTS, home.work.path());
    let started = Instant::now();
    let mut tally = Tally::default();

    let mut round = 0;
    let mut previous: BTreeMap<String, WalState> = BTreeMap::new();
    while round < MAX_KILL_ROUNDS && started.elapsed() < KILL_PHASE_BUDGET {
        if snapshot(&home, &originals).queued.is_empty() {
            break;
        }
        round += 1;
        let plan = archive_wal_plan(&mut rng);
        home.note(&format!("=== round {round}: {plan:?}"));
        let outcome = run_with_plan(&home, home.spawn_archive_wal(), Some(plan), "archive-wal");
        home.note(&format!(
            "=== round {round}: {:?} after {:?}, exit {}",
            outcome.killed, outcome.elapsed, outcome.status
        ));
        tally.add(Some(plan), &outcome);
        if outcome.killed.is_none() && !outcome.status.success() {
            fail(
                &home,
                seed,
                &format!(
                    "round {round}: archive-wal failed unkilled: {}",
                    outcome.status
                ),
                "",
            );
        }
        let snap = snapshot(&home, &originals);
        match check_invariants(&home, &originals, &snap) {
            Ok(states) => {
                // The WAL this kill left in a window (not those an earlier kill left there).
                for (name, state) in &states {
                    if previous.get(name) != Some(state) {
                        match state {
                            WalState::LinkedNotCatalogued => tally.left_linked_not_catalogued += 1,
                            WalState::CataloguedStillQueued => {
                                tally.left_catalogued_still_queued += 1;
                            }
                            WalState::Queued | WalState::Done => {}
                        }
                    }
                }
                previous = states;
            }
            Err(problems) => fail(
                &home,
                seed,
                &format!(
                    "after round {round} ({plan:?}, killed {:?})",
                    outcome.killed
                ),
                &problems,
            ),
        }
    }
    let kill_phase = started.elapsed();
    let left = snapshot(&home, &originals).queued.len();
    final_runs_and_verify(&home, &originals, seed, &mut tally);
    tally.report("killed_archive_wal_runs_converge", started.elapsed());
    eprintln!(
        "  kill phase {:.1}s over {round} rounds, {left} of {} WAL still queued before the clean run; {} hidden temps left in the queue",
        kill_phase.as_secs_f64(),
        originals.len(),
        snapshot(&home, &originals).queue_hidden
    );
}

#[test]
fn killed_archive_command_runs_converge() {
    let seed = crash_seed();
    let _report = SeedReport {
        test: "killed_archive_command_runs_converge",
        seed,
    };
    eprintln!(
        "killed_archive_command_runs_converge: seed {seed} (replay with WALPIPE_CRASH_SEED={seed})"
    );
    let mut rng = Rng::new(seed, 2);
    let home = Home::new();
    // PostgreSQL's pg_wal: the files archive-command is handed (%p), never to be touched.
    let pg_wal = home.work.mkdir_owned("pg_wal");
    let originals = originals_into(&pg_wal, ARCHIVE_COMMAND_SEGMENTS, home.work.path());
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut typical = Duration::from_millis(200);

    for original in &originals {
        let max_kills = 1 + rng.below(MAX_KILLS_PER_FILE);
        deliver(
            &home,
            &pg_wal,
            original,
            max_kills,
            seed,
            &mut rng,
            &mut tally,
            &mut typical,
        );
    }
    // PostgreSQL re-delivers a segment whose archive_command it did not see succeed: an
    // identical copy already queued must be accepted.
    for _ in 0..2 {
        let original = &originals[rng.below(originals.len() as u64) as usize];
        let wal_path = pg_wal.join(&original.name);
        home.note(&format!("=== re-delivery of {}", original.name));
        let child = home.spawn(
            "archive-command",
            &[wal_path.to_str().expect("a UTF-8 path")],
        );
        let outcome = run_with_plan(&home, child, None, "archive-command");
        tally.add(None, &outcome);
        if !outcome.status.success() {
            fail(
                &home,
                seed,
                &format!("re-delivering {} failed: {}", original.name, outcome.status),
                "",
            );
        }
    }
    let hidden_after_delivery = snapshot(&home, &originals).queue_hidden;
    final_runs_and_verify(&home, &originals, seed, &mut tally);
    // The sources in pg_wal are PostgreSQL's: untouched, and never sharing an inode.
    for original in &originals {
        let source = pg_wal.join(&original.name);
        let meta = fs::metadata(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert_eq!(
            meta.nlink(),
            1,
            "seed {seed}: {} shares its inode",
            source.display()
        );
        assert!(
            same_bytes(&source, &original.bytes_at).expect("compare"),
            "seed {seed}: {} was modified",
            source.display()
        );
    }
    tally.report("killed_archive_command_runs_converge", started.elapsed());
    eprintln!("  {hidden_after_delivery} hidden temps left in the queue by killed copies");
}
