//! wal-verify: is this archive restorable?
//!
//! A stage over `wal-scan archive`'s records: each file is opened and read whole
//! ([`file`]); then the timelines are checked for gaps along their history files
//! ([`timelines`]), and all segments for one PostgreSQL system. Records go out with
//! outcome `verified` or their `error`, so `jq` and `wal-store delete` compose with it;
//! a summary goes to stderr, or as JSON to stdout for a monitor.

pub mod cli;
pub mod file;
pub mod records;
pub mod state;
pub mod timelines;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;
use wal_core::exit::ExitCode;
use wal_core::names::{SegmentSize, WalKind, WalName};
use wal_core::stage::{self, Verdict};
use wal_core::trust::{Role, Territory};
use wal_core::{ErrorKind, Outcome, WalError, WalRecord};

use crate::cli::Args;
use crate::file::Verified;
use crate::state::{Identity, State};
use crate::timelines::{Archive, Timeline, number};

/// This tool's name in messages.
pub const TOOL: &str = "wal-verify";

/// What the files said, gathered while they are verified.
#[derive(Debug, Default)]
struct Seen {
    /// Every WAL name that arrived, verified or not.
    names: Vec<WalName>,
    /// What the verified files told.
    verified: Vec<Verified>,
}

/// A run's shared state: what the records told so far, and what was remembered.
struct Verifier<'a> {
    args: &'a Args,
    seen: Mutex<Seen>,
    corrupt: AtomicU64,
    reused: AtomicU64,
    remembered: Mutex<State>,
    territory: Territory,
}

impl Verifier<'_> {
    /// Verifies one record (or takes it as verified from the state).
    fn verify_record(&self, record: &mut WalRecord) -> Result<(), WalError> {
        let args = self.args;
        // What an earlier stage said (`--recall`) is checked again here, not trusted.
        record.outcome = None;
        if let Ok(name) = WalName::parse_file_name(&record.name) {
            lock(&self.seen).names.push(name);
        }
        let identity = Identity::of_record(record, &self.territory);
        let remembering = args.state.is_some();
        if remembering && let Some(identity) = &identity {
            let known = lock(&self.remembered)
                .known(&record.name, identity, args.deep)
                .cloned();
            if let Some(known) = known {
                self.reused.fetch_add(1, Ordering::Relaxed);
                record.outcome = Some(Outcome::Verified);
                lock(&self.seen).verified.push(known);
                return Ok(());
            }
        }
        let verified = file::verify(record, args.deep);
        remove_temps(record, &self.territory);
        match verified {
            Ok(verified) => {
                record.outcome = Some(Outcome::Verified);
                if remembering && let Some(identity) = identity {
                    lock(&self.remembered).remember(identity, args.deep, verified.clone());
                }
                lock(&self.seen).verified.push(verified);
                Ok(())
            }
            Err(err) => {
                if matches!(err.kind(), ErrorKind::Corrupt | ErrorKind::Unknown) {
                    self.corrupt.fetch_add(1, Ordering::Relaxed);
                }
                Err(err)
            }
        }
    }
}

/// `--from`/`--to`, each a segment name.
fn bounds(args: &Args) -> Result<[Option<WalName>; 2], WalError> {
    let parse = |bound: &Option<String>| {
        bound
            .as_deref()
            .map(|name| {
                WalName::parse_file_name(name)
                    .ok()
                    .filter(|wal| wal.kind() == WalKind::Segment)
                    .ok_or_else(|| {
                        WalError::Usage(format!("--from/--to {name:?}: not a WAL segment name"))
                    })
            })
            .transpose()
    };
    let [from, to] = [parse(&args.from)?, parse(&args.to)?];
    if let (Some(from), Some(to)) = (&from, &to)
        && (from.log(), from.segment()) > (to.log(), to.segment())
    {
        return Err(WalError::Usage(format!(
            "--from {from} comes after --to {to}"
        )));
    }
    Ok([from, to])
}

/// Verifies the records on `input`, writes them (or, with --json, the summary) to
/// `output`; the verdict says the exit status.
pub fn run<R, W>(args: &Args, input: R, mut output: W) -> Result<Verdict, WalError>
where
    R: BufRead + Send,
    W: Write,
{
    let jobs = stage::jobs(args.jobs, || {
        std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN)
    })?;
    let [from, to] = bounds(args)?;
    if let Some(path) = &args.state {
        state_can_be_replaced(path)?;
    }
    if args.recall {
        return recall(args, jobs.get(), input, output);
    }
    let mut territory = Territory::new();
    if let Some(dir) = &args.temp_dir {
        territory.add(Role::Temp, "--temp-dir", dir)?;
    }
    let verifier = Verifier {
        args,
        seen: Mutex::new(Seen::default()),
        corrupt: AtomicU64::new(0),
        reused: AtomicU64::new(0),
        // Loaded even with --full: what is there must be a state before it is replaced.
        remembered: Mutex::new(match (&args.state, args.full) {
            (Some(path), false) => State::load(path)?,
            (Some(path), true) => State::load(path).map(|_| State::default())?,
            (None, _) => State::default(),
        }),
        territory,
    };
    let progress = wal_core::progress::Progress::on_terminal(TOOL, "files verified");
    let work = |record: &mut WalRecord| {
        let verified = verifier.verify_record(record);
        progress.tick(record.size);
        verified
    };
    let summary = if args.json {
        stage::run_parallel(TOOL, jobs.get(), input, std::io::sink(), work)?
    } else {
        stage::run_parallel(TOOL, jobs.get(), input, &mut output, work)?
    };
    drop(progress);
    let seen = verifier
        .seen
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut report = Report::of(&seen, from.as_ref(), to.as_ref());
    if summary.records == 0 {
        report.problems.push(
            "no file arrived: an empty archive, or a listing that failed (said above): \
             nothing is proven"
                .into(),
        );
    } else if report.timelines.is_empty() && (from.is_some() || to.is_some()) {
        report.problems.push(format!(
            "no WAL segment within --from {} --to {}: the WAL asked for is not in the archive",
            args.from.as_deref().unwrap_or("(the first)"),
            args.to.as_deref().unwrap_or("(the last)")
        ));
    }
    if let Some(path) = &args.xlogdb {
        report.problems.extend(catalogue_problems(path, &seen)?);
    }
    if let Some(dir) = &args.errors_dir {
        report.problems.extend(errors_problem(dir));
    }
    // Files an earlier stage already found not to be WAL (wal-scan: an entry under a WAL's
    // name that is no regular file) are corrupt entries of the archive too.
    let corrupt = verifier.corrupt.into_inner() + summary.arrived_corrupt;
    if let Some(path) = &args.state {
        let mut remembered = verifier
            .remembered
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        remembered.retain(&seen.names.iter().map(|n| n.as_str().to_owned()).collect());
        remembered.save(path, &report.last_run(&summary, corrupt))?;
        wal_core::log::info!(
            "{TOOL}: {} files taken as verified from {} (unchanged since)",
            verifier.reused.into_inner(),
            path.display()
        );
    }
    report.say(&summary, corrupt);
    if args.json {
        let text = report.to_json(&summary, corrupt).to_string() + "\n";
        output
            .write_all(text.as_bytes())
            .and_then(|()| output.flush())
            .map_err(|e| WalError::io("cannot write", std::path::Path::new("<stdout>"), e))?;
    }
    let holds = corrupt == 0 && report.holds();
    // Records an earlier stage failed were not verified, though none failed here.
    let status = if !holds {
        Some(ExitCode::DataErr)
    } else if summary.arrived_failed > 0 {
        Some(ExitCode::RecordsFailed)
    } else {
        None
    };
    Ok(Verdict { summary, status })
}

/// The state is replaced whole at the end: a link, a directory or a device there is
/// refused before any work, not found after it.
fn state_can_be_replaced(path: &std::path::Path) -> Result<(), WalError> {
    if std::fs::symlink_metadata(path).is_ok_and(|meta| !meta.file_type().is_file()) {
        return Err(WalError::Config(format!(
            "--state {}: not a regular file",
            path.display()
        )));
    }
    let dir = wal_core::durable::parent_of(path);
    if !dir.is_dir() {
        return Err(WalError::Config(format!(
            "--state {}: its directory {} is not there",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// `--recall`: marks the records whose stored files the state still vouches for, and
/// passes every record on; nothing is read but the state and each file's identity.
fn recall<R, W>(args: &Args, jobs: usize, input: R, output: W) -> Result<Verdict, WalError>
where
    R: BufRead + Send,
    W: Write,
{
    let Some(path) = &args.state else {
        return Err(WalError::Usage("--recall needs --state FILE".into()));
    };
    let state = State::load(path)?;
    let marked = AtomicU64::new(0);
    let territory = Territory::new();
    let summary = stage::run_parallel(TOOL, jobs, input, output, |record| {
        let known = record.outcome.is_none()
            && Identity::of_record(record, &territory)
                .is_some_and(|identity| state.known(&record.name, &identity, args.deep).is_some());
        if known {
            record.outcome = Some(Outcome::Verified);
            marked.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })?;
    if summary.records > 0 {
        wal_core::log::info!(
            "{TOOL}: {} of {} files still as verified in {} (the others go on to be read)",
            marked.into_inner(),
            summary.records,
            path.display()
        );
    }
    Ok(Verdict {
        summary,
        status: None,
    })
}

/// The catalogue against the files that arrived: a line without a file (recovery would
/// ask for WAL the archive cannot give), a file without a line (what Barman's tools, which
/// trust the catalogue, do not know of). A catalogue that cannot be read is an error.
fn catalogue_problems(path: &std::path::Path, seen: &Seen) -> Result<Vec<String>, WalError> {
    let catalogue = wal_core::xlogdb::Xlogdb::at(path.to_path_buf(), path.with_extension("lock"));
    let mut catalogued = std::collections::BTreeSet::new();
    catalogue.scan_unlocked(|line| {
        catalogued.insert(line.name);
    })?;
    let arrived: std::collections::BTreeSet<String> =
        seen.names.iter().map(|n| n.as_str().to_owned()).collect();
    let mut problems = Vec::new();
    for (what, names) in [
        (
            "catalogue line(s) without a file",
            catalogued.difference(&arrived).collect::<Vec<_>>(),
        ),
        (
            "file(s) without a catalogue line (wal-store rebuild-xlogdb adds them)",
            arrived.difference(&catalogued).collect::<Vec<_>>(),
        ),
    ] {
        if !names.is_empty() {
            problems.push(format!(
                "{} {what} in {}: {}{}",
                names.len(),
                path.display(),
                names
                    .iter()
                    .take(5)
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if names.len() > 5 { ", …" } else { "" }
            ));
        }
    }
    Ok(problems)
}

/// Removes the record's temporary files that lie in the temp directory and carry a temp
/// name made for its WAL (a decrypted copy, once verified); others stay, with a line.
fn remove_temps(record: &mut WalRecord, territory: &Territory) {
    let name = record.name.clone();
    record
        .temps
        .retain(|temp| match territory.temp_file(temp, &name) {
            Ok(()) => match std::fs::remove_file(temp) {
                Ok(()) => false,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => {
                    wal_core::log::warn!("{TOOL}: cannot remove {}: {e}", temp.display());
                    true
                }
            },
            Err(_) => true,
        });
}

/// Anything in errors/ is worth a look.
fn errors_problem(dir: &std::path::Path) -> Option<String> {
    let count = std::fs::read_dir(dir).map_or(0, Iterator::count);
    (count > 0).then(|| {
        format!(
            "{count} file(s) in {}: look at them (a conflict's .duplicate, an .unknown, a \
             crash's temp)",
            dir.display()
        )
    })
}

/// Records that did not verify: those failed here, those an earlier stage failed (a file
/// that could not be fetched or decrypted is not verified), and input lines that were no
/// record.
fn failed(summary: &stage::Summary) -> u64 {
    summary.failed + summary.arrived_failed + summary.malformed
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The archive's verdict beyond single files.
#[derive(Debug)]
struct Report {
    timelines: Vec<Timeline>,
    problems: Vec<String>,
}

impl Report {
    fn of(seen: &Seen, from: Option<&WalName>, to: Option<&WalName>) -> Report {
        let headers: Vec<_> = seen
            .verified
            .iter()
            .filter_map(|v| v.header.map(|h| (&v.name, h)))
            .collect();
        let size = headers
            .first()
            .map_or(SegmentSize::DEFAULT, |(_, h)| h.segment_size);
        let mut archive = Archive::default();
        for name in &seen.names {
            if name.kind() == WalKind::Segment
                && let Some(n) = number(name, size)
            {
                archive
                    .segments
                    .entry(name.timeline())
                    .or_default()
                    .insert(n);
            }
        }
        // A `.partial` stands for its segment only at the end of its timeline (where
        // streaming stopped, or the timeline branched off): before a later segment,
        // recovery needs the segment itself, which restore_command asks for.
        for name in &seen.names {
            if name.kind() == WalKind::Partial
                && let Some(n) = number(name, size)
            {
                let present = archive.segments.entry(name.timeline()).or_default();
                if present.last().is_none_or(|&last| last < n) {
                    present.insert(n);
                }
            }
        }
        for verified in &seen.verified {
            if let Some(&last) = verified.switches.last() {
                archive.parents.insert(verified.name.timeline(), last);
            }
        }
        let bound = |name: Option<&WalName>| name.and_then(|n| number(n, size));
        let (timelines, mut problems) = archive.analyse(size, bound(from), bound(to));
        // The same WAL twice (a cloud archive's keys under two extensions): which one a
        // restore gets depends on the tool.
        let mut counted: BTreeMap<&str, u32> = BTreeMap::new();
        for name in &seen.names {
            *counted.entry(name.as_str()).or_default() += 1;
        }
        let doubled: Vec<&str> = counted
            .iter()
            .filter(|&(_, &count)| count > 1)
            .map(|(&name, _)| name)
            .collect();
        if !doubled.is_empty() {
            problems.push(format!(
                "{} WAL file(s) stored more than once (under two extensions: a restore may \
                 get either): {}{}",
                doubled.len(),
                doubled
                    .iter()
                    .take(5)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", "),
                if doubled.len() > 5 { ", …" } else { "" }
            ));
        }
        // One system, one segment size, one release: anything else is WAL of another
        // cluster in this archive.
        let mut systems: BTreeMap<(u64, u64, &str), Vec<&str>> = BTreeMap::new();
        for (name, header) in &headers {
            systems
                .entry((
                    header.system_identifier,
                    header.segment_size.bytes(),
                    header.pg_version,
                ))
                .or_default()
                .push(name.as_str());
        }
        if systems.len() > 1 {
            let mut groups: Vec<_> = systems.into_iter().collect();
            groups.sort_by_key(|(_, names)| std::cmp::Reverse(names.len()));
            for ((system, bytes, version), names) in &groups[1..] {
                let mut names = names.clone();
                names.sort_unstable();
                problems.push(format!(
                    "{} segment(s) of another cluster (system {system}, PostgreSQL {version}, \
                     {bytes}-byte segments; most of the archive is system {}): {}{}",
                    names.len(),
                    groups[0].0.0,
                    names.iter().take(5).copied().collect::<Vec<_>>().join(", "),
                    if names.len() > 5 { ", …" } else { "" }
                ));
            }
        }
        Report {
            timelines,
            problems,
        }
    }

    fn holds(&self) -> bool {
        self.problems.is_empty() && self.timelines.iter().all(|t| t.gaps.is_empty())
    }

    /// The summary on stderr, one line per fact.
    fn say(&self, summary: &stage::Summary, corrupt: u64) {
        wal_core::log::info!(
            "{TOOL}: {} files: {} verified, {} failed ({corrupt} corrupt)",
            summary.records,
            summary.records - failed(summary),
            failed(summary)
        );
        for t in &self.timelines {
            wal_core::log::info!(
                "{TOOL}: timeline {}: {} to {}, {} segments{}",
                t.id,
                t.first,
                t.last,
                t.segments,
                if t.gaps.is_empty() { ", no gap" } else { "" }
            );
            for (from, to, missing) in &t.gaps {
                wal_core::log::error!(
                    "{TOOL}: timeline {}: missing {from} to {to} ({missing} segments)",
                    t.id
                );
            }
            if t.beyond_switch > 0 {
                wal_core::log::warn!(
                    "{TOOL}: timeline {}: {} segment(s) after a child timeline branched off \
                     (an abandoned branch, on no recovery path)",
                    t.id,
                    t.beyond_switch
                );
            }
        }
        for problem in &self.problems {
            wal_core::log::error!("{TOOL}: {problem}");
        }
        let holds = corrupt == 0 && failed(summary) == 0 && self.holds();
        if holds {
            wal_core::log::info!("{TOOL}: OK");
        } else {
            wal_core::log::error!("{TOOL}: FAILED");
        }
    }

    /// The verdict a later wal-check reports.
    fn last_run(&self, summary: &stage::Summary, corrupt: u64) -> wal_core::verified::LastRun {
        let mut problems: Vec<String> = self
            .timelines
            .iter()
            .flat_map(|t| {
                t.gaps.iter().map(move |(from, to, missing)| {
                    format!(
                        "timeline {}: missing {from} to {to} ({missing} segments)",
                        t.id
                    )
                })
            })
            .collect();
        problems.extend(self.problems.iter().cloned());
        wal_core::verified::LastRun {
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            ok: corrupt == 0 && failed(summary) == 0 && self.holds(),
            files: summary.records,
            failed: failed(summary),
            problems,
        }
    }

    fn to_json(&self, summary: &stage::Summary, corrupt: u64) -> serde_json::Value {
        let holds = corrupt == 0 && failed(summary) == 0 && self.holds();
        json!({
            "status": if holds { "OK" } else { "FAILED" },
            "files": summary.records,
            "verified": summary.records - failed(summary),
            "failed": failed(summary),
            "corrupt": corrupt,
            "timelines": self.timelines.iter().map(Timeline::to_json).collect::<Vec<_>>(),
            "problems": self.problems,
        })
    }
}
