//! wal-verify: is this archive restorable?
//!
//! A stage over `wal-scan archive`'s records: each file is opened and read whole
//! ([`file`]); then the timelines are checked for gaps along their history files
//! ([`timelines`]), and all segments for one PostgreSQL system. Records go out with
//! outcome `verified` or their `error`, so `jq` and `wal-store delete` compose with it;
//! a summary goes to stderr, or as JSON to stdout for a monitor.

pub mod cli;
pub mod file;
pub mod timelines;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;
use wal_core::exit::ExitCode;
use wal_core::names::{SegmentSize, WalKind, WalName};
use wal_core::stage::{self, Verdict};
use wal_core::{ErrorKind, Outcome, WalError, WalRecord};

use crate::cli::Args;
use crate::file::Verified;
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
    let bounds = [&args.from, &args.to].map(|bound| {
        bound.as_deref().map(|name| {
            WalName::parse_file_name(name)
                .ok()
                .filter(|wal| wal.kind() == WalKind::Segment)
                .ok_or_else(|| {
                    WalError::Usage(format!("--from/--to {name:?}: not a WAL segment name"))
                })
        })
    });
    let [from, to] = bounds;
    let (from, to) = (from.transpose()?, to.transpose()?);
    let seen = Mutex::new(Seen::default());
    let corrupt = AtomicU64::new(0);
    let work = |record: &mut WalRecord| {
        if let Ok(name) = WalName::parse_file_name(&record.name) {
            lock(&seen).names.push(name);
        }
        match file::verify(record, args.deep) {
            Ok(verified) => {
                record.outcome = Some(Outcome::Verified);
                lock(&seen).verified.push(verified);
                Ok(())
            }
            Err(err) => {
                if matches!(err.kind(), ErrorKind::Corrupt | ErrorKind::Unknown) {
                    corrupt.fetch_add(1, Ordering::Relaxed);
                }
                Err(err)
            }
        }
    };
    let summary = if args.json {
        stage::run_parallel(TOOL, jobs.get(), input, std::io::sink(), work)?
    } else {
        stage::run_parallel(TOOL, jobs.get(), input, &mut output, work)?
    };
    let seen = seen
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let report = Report::of(&seen, from.as_ref(), to.as_ref());
    let corrupt = corrupt.into_inner();
    report.say(&summary, corrupt);
    if args.json {
        let text = report.to_json(&summary, corrupt).to_string() + "\n";
        output
            .write_all(text.as_bytes())
            .and_then(|()| output.flush())
            .map_err(|e| WalError::io("cannot write", std::path::Path::new("<stdout>"), e))?;
    }
    let holds = corrupt == 0 && report.holds();
    Ok(Verdict {
        summary,
        status: (!holds).then_some(ExitCode::DataErr),
    })
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock()
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
            if matches!(name.kind(), WalKind::Segment | WalKind::Partial)
                && let Some(n) = number(name, size)
            {
                archive
                    .segments
                    .entry(name.timeline())
                    .or_default()
                    .insert(n);
            }
        }
        for verified in &seen.verified {
            if let Some(&last) = verified.switches.last() {
                archive.parents.insert(verified.name.timeline(), last);
            }
        }
        let bound = |name: Option<&WalName>| name.and_then(|n| number(n, size));
        let (timelines, mut problems) = archive.analyse(size, bound(from), bound(to));
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
        eprintln!(
            "{TOOL}: {} files: {} verified, {} failed ({corrupt} corrupt)",
            summary.records,
            summary.records - summary.failed,
            summary.failed
        );
        for t in &self.timelines {
            eprintln!(
                "{TOOL}: timeline {}: {} to {}, {} segments{}",
                t.id,
                t.first,
                t.last,
                t.segments,
                if t.gaps.is_empty() { ", no gap" } else { "" }
            );
            for (from, to, missing) in &t.gaps {
                eprintln!(
                    "{TOOL}: timeline {}: missing {from} to {to} ({missing} segments)",
                    t.id
                );
            }
            if t.beyond_switch > 0 {
                eprintln!(
                    "{TOOL}: timeline {}: {} segment(s) after a child timeline branched off \
                     (an abandoned branch, on no recovery path)",
                    t.id, t.beyond_switch
                );
            }
        }
        for problem in &self.problems {
            eprintln!("{TOOL}: {problem}");
        }
        let holds = corrupt == 0 && summary.failed == 0 && self.holds();
        eprintln!("{TOOL}: {}", if holds { "OK" } else { "FAILED" });
    }

    fn to_json(&self, summary: &stage::Summary, corrupt: u64) -> serde_json::Value {
        let holds = corrupt == 0 && summary.failed == 0 && self.holds();
        json!({
            "status": if holds { "OK" } else { "FAILED" },
            "files": summary.records,
            "verified": summary.records - summary.failed,
            "failed": summary.failed,
            "corrupt": corrupt,
            "timelines": self.timelines.iter().map(Timeline::to_json).collect::<Vec<_>>(),
            "problems": self.problems,
        })
    }
}
