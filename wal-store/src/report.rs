//! Barman's archive-wal output, for humans (stderr, only with `--report`).
//!
//! `scripts/archive-wal` shows these lines as Barman does: the heading naming the queue, a
//! TAB and the name per WAL, the duplicate error line, `no file found`, and the block
//! listing unknown files moved to errors/ (`docs/barman-formats.md#archive-wal-output`).
//! They never go to stdout, which carries records only; they are `info` lines, so `-q`
//! silences a run that went well, heading included. With `--report-marked` each begins
//! with [`MARK`], which no other line on stderr begins with: archive-wal sends the marked
//! lines to its stdout by that mark, so which lines are Barman's is decided here, never
//! by their text in the wrapper.

use wal_core::log::{Level, one_line};
use wal_core::record::Outcome;
use wal_core::{ErrorKind, WalRecord};

/// The first byte of a marked line: ASCII's record separator, a control character, so
/// one that no other stderr line begins with (the logger escapes them in names and paths).
pub const MARK: char = '\u{1e}';

/// Collects and prints Barman's lines.
#[derive(Debug)]
pub struct Report {
    enabled: bool,
    marked: bool,
    server: String,
    wal_lines: u64,
    unknown: Vec<String>,
}

impl Report {
    /// A report for `server`'s queue `label` (Barman's `file archival`, `streaming`),
    /// which prints its heading at once, each line `marked` or not; without a label, a
    /// report that prints nothing.
    pub fn new(label: Option<&str>, marked: bool, server: &str) -> Self {
        let report = Report {
            enabled: label.is_some(),
            marked,
            server: server.to_string(),
            wal_lines: 0,
            unknown: Vec::new(),
        };
        if let Some(label) = label {
            report.say(format_args!(
                "Processing xlog segments from {label} for {server}"
            ));
        }
        report
    }

    /// One line, at `info`.
    fn say(&self, line: std::fmt::Arguments<'_>) {
        if self.marked {
            wal_core::log::emit(Level::Info, format_args!("{MARK}{line}"));
        } else {
            wal_core::log::emit(Level::Info, line);
        }
    }

    /// The lines for one record.
    pub fn record(&mut self, record: &WalRecord) {
        if !self.enabled {
            return;
        }
        if record.outcome == Some(Outcome::Unknown) {
            let base = record
                .stored_at
                .as_ref()
                .and(record.source.as_ref())
                .and_then(|p| p.file_name());
            self.unknown.push(
                base.map_or_else(|| record.name.clone(), |n| n.to_string_lossy().into_owned()),
            );
            return;
        }
        if record
            .error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorKind::Unknown)
        {
            return;
        }
        self.wal_lines += 1;
        self.say(format_args!("\t{}", one_line(&record.name)));
        match (&record.error, record.outcome) {
            (Some(_), Some(Outcome::Conflict)) => {
                let server = self.server.clone();
                self.say(format_args!(
                    "\tError: {} is already present in server {server}. File moved to errors directory.",
                    one_line(&record.name),
                ));
            }
            (Some(error), _) => self.say(format_args!("\tError: {}", one_line(&error.message))),
            _ => {}
        }
    }

    /// `no file found` and the unknown-files block, at the end of the run.
    pub fn finish(&mut self) {
        if !self.enabled {
            return;
        }
        if self.wal_lines == 0 {
            self.say(format_args!("\tno file found"));
        }
        if !self.unknown.is_empty() {
            let server = self.server.clone();
            self.say(format_args!(
                "Some unknown objects have been found while processing xlog segments for {server}. Objects moved to errors directory:"
            ));
            for name in std::mem::take(&mut self.unknown) {
                self.say(format_args!("\t{}", one_line(&name)));
            }
        }
    }
}
