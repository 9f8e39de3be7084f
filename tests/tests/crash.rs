//! Crash safety: SIGKILL the archiving pipeline at random moments, re-run it, and check that
//! the archive converges (`docs/durability.md#how-a-rerun-converges`): no WAL lost, none
//! corrupt, none
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
//! The machinery (seeded choices, process groups watched and killed, the invariants this
//! test shares with the cloud archive's, `tests/tests/cloud_crash.rs`) is the kit's
//! [`walpipe_tests::crash`] and [`walpipe_tests::convergence`].
//!
//! Needs `cargo build --workspace --bins` first. Run with `--nocapture` to see where the
//! kills landed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use wal_core::{Compression, WalName};
use walpipe_tests::convergence::{
    Catalogue, Original, Queue, WalState, column_problems, compare_stored, file_len, hidden_names,
    leftover_problems, names_in, new_windows, originals_into, same_bytes, wal_state,
};
use walpipe_tests::crash::{Event, Outcome, Pipeline, Rng, RunLog, SeedReport, Trigger, draw_plan};
use walpipe_tests::{WorkDir, clean_command, script, target_bin};

const SERVER: &str = "pg";
/// Real segments in the archive-wal test's queue (the whole fixture set has about 20).
const ARCHIVE_WAL_SEGMENTS: usize = 20;
/// Real segments delivered through archive-command.
const ARCHIVE_COMMAND_SEGMENTS: usize = 10;
/// Kill rounds of archive-wal at most, and the time they may take in all.
const MAX_KILL_ROUNDS: usize = 60;
const KILL_PHASE_BUDGET: Duration = Duration::from_secs(30);
/// Kill plans per file for archive-command (1 to this many), and attempts per file at most.
const MAX_KILLS_PER_FILE: u64 = 3;
const MAX_ATTEMPTS_PER_FILE: usize = 20;
const STAGES: [&str; 3] = ["wal-scan", "wal-compress", "wal-store"];
/// The wrappers' pipeline; a wrapper still running 120 s after it was started (or after a
/// stage was killed) is hung: a bug in itself.
const PIPELINE: Pipeline = Pipeline {
    stages: &STAGES,
    hang_timeout: Duration::from_secs(120),
};

// ---------------------------------------------------------------------------------------
// The server layout and its originals

#[derive(Debug)]
struct Home {
    work: WorkDir,
    root: PathBuf,
    incoming: PathBuf,
    wals: PathBuf,
    errors: PathBuf,
    log: RunLog,
}

impl Home {
    fn new() -> Self {
        let work = WorkDir::new();
        let root = work.path().to_path_buf();
        let incoming = work.mkdir_owned(format!("{SERVER}/incoming"));
        let wals = work.mkdir_owned(format!("{SERVER}/wals"));
        let errors = work.mkdir_owned(format!("{SERVER}/errors"));
        let log = RunLog::create(work.join("wrapper.log"));
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

    /// Starts `scripts/<name> args...` in its own process group, output to the log.
    fn spawn(&self, name: &str, args: &[&str]) -> Child {
        let mut cmd = Command::new(script(name));
        clean_command(&mut cmd);
        cmd.env("WALPIPE_BIN_DIR", bin_dir())
            .args(["--home"])
            .arg(&self.root)
            .args(["--server", SERVER])
            .args(args);
        Pipeline::spawn(&mut cmd, self.log.path())
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

// ---------------------------------------------------------------------------------------
// What the directories hold, and the invariants that must hold after any kill

#[derive(Debug, Default)]
struct Snapshot {
    /// What the queue holds.
    queue: Queue,
    /// WAL name -> path, for every non-hidden file in the archive (xlog.db aside).
    archived: BTreeMap<String, PathBuf>,
    /// Hidden files in the archive.
    archive_hidden: Vec<PathBuf>,
    /// xlog.db.
    catalogue: Catalogue,
    /// Entries of errors/.
    errors: Vec<String>,
}

fn snapshot(home: &Home, originals: &[Original]) -> Snapshot {
    let mut snap = Snapshot {
        queue: Queue::read(&home.incoming, originals),
        ..Snapshot::default()
    };
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
    snap.catalogue = Catalogue::read(&home.xlogdb());
    snap.errors = names_in(&home.errors);
    snap
}

/// The invariants that must hold after any kill; returns where each WAL stands.
fn check_invariants(
    home: &Home,
    originals: &[Original],
    snap: &Snapshot,
) -> Result<BTreeMap<String, WalState>, String> {
    let mut problems = snap.catalogue.problems(originals);
    let mut states = BTreeMap::new();
    let counts = snap.catalogue.counts();
    for original in originals {
        let name = original.name.as_str();
        let archived = snap.archived.get(name);
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
        match wal_state(
            name,
            snap.queue.queued.contains(name),
            archived.is_some(),
            counts.contains_key(name),
        ) {
            Ok(state) => {
                states.insert(original.name.clone(), state);
            }
            Err(problem) => problems.push(problem),
        }
    }
    for name in snap.archived.keys() {
        if !originals.iter().any(|o| &o.name == name) {
            problems.push(format!("stray file {name} in the archive"));
        }
    }
    problems.extend(leftover_problems(&snap.queue, &snap.errors));
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
    if !snap.queue.queued.is_empty() {
        problems.push(format!(
            "still queued after the clean run: {:?}",
            snap.queue.queued
        ));
    }
    for original in originals {
        let name = original.name.as_str();
        let path = home.archived_path(name);
        let (lines, count_problem) = snap.catalogue.lines_of(name);
        problems.extend(count_problem);
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
        let found = match compare_stored(&path, original) {
            Ok((found, corrupt)) => {
                problems.extend(corrupt);
                found
            }
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
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
            problems.extend(column_problems(
                line,
                original,
                meta.len(),
                found.map(Compression::name),
                None,
            ));
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

/// What this test watches for (besides delays and wal-store's durability steps).
#[derive(Debug, Clone, Copy)]
enum Local {
    /// The archive gained a file since the round started (linked, maybe not catalogued).
    Linked,
    /// xlog.db grew since the round started (catalogued, sources maybe not removed yet).
    Catalogued,
    /// A hidden temp file appeared in the queue (archive-command mid-copy).
    TempInQueue,
}

impl Event for Local {
    fn label(&self) -> &'static str {
        match self {
            Local::Linked => "after-link",
            Local::Catalogued => "after-xlogdb",
            Local::TempInQueue => "temp-in-queue",
        }
    }
}

type Plan = walpipe_tests::crash::Plan<Local>;

/// A plan for an archive-wal round (the kit's [`draw_plan`]: a seed replays).
fn archive_wal_plan(rng: &mut Rng) -> Plan {
    draw_plan(rng, [50, 75], |kind, param| match kind {
        0..10 => Trigger::early(param),
        10..30 => Trigger::Delay {
            label: "delay-0-400ms",
            after: Duration::from_millis(param % 401),
        },
        30..60 => Trigger::StoreStep { skip: param % 4 },
        60..85 => Trigger::Seen {
            event: Local::Linked,
            after: Duration::from_micros(param % 1000),
        },
        _ => Trigger::Seen {
            event: Local::Catalogued,
            after: Duration::from_micros(param % 3000),
        },
    })
}

/// A plan for an archive-command attempt; `typical` is how long a clean one takes.
fn archive_command_plan(rng: &mut Rng, typical: Duration) -> Plan {
    let typical_us = typical.as_micros().max(1000) as u64;
    draw_plan(rng, [50, 75], |kind, param| match kind {
        0..10 => Trigger::early(param),
        10..40 => Trigger::Delay {
            label: "delay-0-1.5x-typical",
            after: Duration::from_micros(param % (typical_us * 3 / 2)),
        },
        40..70 => Trigger::StoreStep { skip: param % 3 },
        _ => Trigger::Seen {
            event: Local::TempInQueue,
            after: Duration::from_micros(param % typical_us),
        },
    })
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

/// Runs one wrapper to its end, killing per `plan` (if any) when its trigger fires.
fn run_with_plan(home: &Home, child: Child, plan: Option<Plan>, what: &str) -> Outcome {
    let archived_before = count_archived(&home.wals);
    let xlogdb_before = file_len(&home.xlogdb());
    let hidden_before = hidden_names(&home.incoming);
    let mut seen = |event: Local, _store: Option<i32>| match event {
        Local::Linked => count_archived(&home.wals) > archived_before,
        Local::Catalogued => file_len(&home.xlogdb()) > xlogdb_before,
        Local::TempInQueue => hidden_names(&home.incoming)
            .difference(&hidden_before)
            .next()
            .is_some(),
    };
    PIPELINE.run(child, plan, what, &mut seen)
}

/// Tallies for the report.
#[derive(Debug, Default)]
struct Tally {
    kills: walpipe_tests::crash::Tally,
    /// WAL that kills left linked into the archive but not catalogued.
    left_linked_not_catalogued: usize,
    /// WAL that kills left catalogued with their source still queued.
    left_catalogued_still_queued: usize,
}

impl Tally {
    fn add(&mut self, plan: Option<Plan>, outcome: &Outcome) {
        self.kills.add(plan, outcome);
    }

    fn report(&self, test: &str, elapsed: Duration) {
        let mut text = self.kills.summary(test, elapsed);
        let _ = write!(
            text,
            "  WAL left by a kill linked but not catalogued: {}; catalogued with the source still queued: {}",
            self.left_linked_not_catalogued, self.left_catalogued_still_queued
        );
        eprintln!("{text}");
    }
}

fn fail(home: &Home, seed: u64, context: &str, problems: &str) -> ! {
    home.log.fail(seed, context, problems)
}

/// The final clean archive-wal run (must exit 0), a second one (a no-op), and the checks.
fn final_runs_and_verify(home: &Home, originals: &[Original], seed: u64, tally: &mut Tally) {
    for run in ["final clean run", "second clean run"] {
        home.log.note(&format!("=== {run}"));
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
        home.log.note(&format!(
            "=== {} attempt {attempt}: {plan:?}",
            original.name
        ));
        let child = home.spawn("archive-command", &[wal_arg]);
        let outcome = run_with_plan(home, child, plan, "archive-command");
        home.log.note(&format!(
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
    let report = SeedReport::start("crash", "killed_archive_wal_runs_converge");
    let seed = report.seed;
    let mut rng = Rng::new(seed, 1);
    let home = Home::new();
    let originals = originals_into(&home.incoming, ARCHIVE_WAL_SEGMENTS, home.work.path());
    let started = Instant::now();
    let mut tally = Tally::default();

    let mut round = 0;
    let mut previous: BTreeMap<String, WalState> = BTreeMap::new();
    while round < MAX_KILL_ROUNDS && started.elapsed() < KILL_PHASE_BUDGET {
        if snapshot(&home, &originals).queue.queued.is_empty() {
            break;
        }
        round += 1;
        let plan = archive_wal_plan(&mut rng);
        home.log.note(&format!("=== round {round}: {plan:?}"));
        let outcome = run_with_plan(&home, home.spawn_archive_wal(), Some(plan), "archive-wal");
        home.log.note(&format!(
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
                let (linked, catalogued) = new_windows(&previous, &states);
                tally.left_linked_not_catalogued += linked;
                tally.left_catalogued_still_queued += catalogued;
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
    let left = snapshot(&home, &originals).queue.queued.len();
    final_runs_and_verify(&home, &originals, seed, &mut tally);
    tally.report("killed_archive_wal_runs_converge", started.elapsed());
    eprintln!(
        "  kill phase {:.1}s over {round} rounds, {left} of {} WAL still queued before the clean run; {} hidden temps left in the queue",
        kill_phase.as_secs_f64(),
        originals.len(),
        snapshot(&home, &originals).queue.hidden
    );
}

#[test]
fn killed_archive_command_runs_converge() {
    let report = SeedReport::start("crash", "killed_archive_command_runs_converge");
    let seed = report.seed;
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
        home.log
            .note(&format!("=== re-delivery of {}", original.name));
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
    let hidden_after_delivery = snapshot(&home, &originals).queue.hidden;
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
