//! Barman's archive-wal output, for humans (stderr, only with `--report`).
//!
//! `scripts/archive-wal` shows these lines as Barman does: the heading naming the queue, a
//! TAB and the name per WAL, the duplicate error line, `no file found`, and the block
//! listing unknown files moved to errors/ (`docs/barman-formats.md#archive-wal-output`).
//! They never go to stdout, which carries records only; they are `info` lines, so `-q`
//! silences a run that went well, heading included.

use wal_core::log::one_line;
use wal_core::record::Outcome;
use wal_core::{ErrorKind, WalRecord};

/// Collects and prints Barman's lines.
#[derive(Debug)]
pub struct Report {
    enabled: bool,
    server: String,
    wal_lines: u64,
    unknown: Vec<String>,
}

impl Report {
    /// A report for `server`'s queue `label` (Barman's `file archival`, `streaming`),
    /// which prints its heading at once; without a label, a report that prints nothing.
    pub fn new(label: Option<&str>, server: &str) -> Self {
        if let Some(label) = label {
            wal_core::log::info!("Processing xlog segments from {label} for {server}");
        }
        Report {
            enabled: label.is_some(),
            server: server.to_string(),
            wal_lines: 0,
            unknown: Vec::new(),
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
        wal_core::log::info!("\t{}", one_line(&record.name));
        match (&record.error, record.outcome) {
            (Some(_), Some(Outcome::Conflict)) => wal_core::log::info!(
                "\tError: {} is already present in server {}. File moved to errors directory.",
                one_line(&record.name),
                self.server
            ),
            (Some(error), _) => wal_core::log::info!("\tError: {}", one_line(&error.message)),
            _ => {}
        }
    }

    /// `no file found` and the unknown-files block, at the end of the run.
    pub fn finish(&mut self) {
        if !self.enabled {
            return;
        }
        if self.wal_lines == 0 {
            wal_core::log::info!("\tno file found");
        }
        if !self.unknown.is_empty() {
            wal_core::log::info!(
                "Some unknown objects have been found while processing xlog segments for {}. Objects moved to errors directory:",
                self.server
            );
            for name in &self.unknown {
                wal_core::log::info!("\t{}", one_line(name));
            }
        }
    }
}
