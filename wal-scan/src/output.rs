//! How entries become records on stdout, and which of them count as failures.
//!
//! wal-core's [`RecordWriter`] counts every record this stage sets `error` on as failed
//! (exit 1). An `unknown` queue entry is not a failure, though: it is classification,
//! which wal-store acts on by moving the entry to errors/, and Barman carries on too. So
//! unknown entries are written as if they had arrived failed (not counted) and reported on
//! stderr here, in the same `wal-scan: <message>` form as real failures.

use std::io::Write;

use wal_core::WalError;
use wal_core::stage::{RecordWriter, Summary};

use crate::entry::{Entry, STAGE};

/// The stage's output: records, and the count of WAL records among them.
#[derive(Debug)]
pub struct Records<W: Write> {
    writer: RecordWriter<W>,
    wal_files: usize,
}

impl<W: Write> Records<W> {
    /// Records written to `output`.
    pub fn new(output: W) -> Self {
        Records {
            writer: RecordWriter::new(STAGE, output),
            wal_files: 0,
        }
    }

    /// Writes the record `entry` stands for, if any.
    pub fn emit(&mut self, entry: Entry) -> Result<(), WalError> {
        match entry {
            Entry::Wal(record) => {
                self.wal_files += 1;
                self.writer.write(&record, false)
            }
            Entry::Unknown(record) => {
                if let Some(err) = &record.error {
                    wal_core::log::warn!("{STAGE}: {}", wal_core::log::one_line(&err.message));
                }
                self.writer.write(&record, true)
            }
            // The writer reports it on stderr and counts it.
            Entry::Failed(record) => self.writer.write(&record, false),
            Entry::Vanished(_) => Ok(()),
        }
    }

    /// How many WAL records (not error records) were written.
    #[must_use]
    pub fn wal_files(&self) -> usize {
        self.wal_files
    }

    /// Flushes and returns the counts that choose the exit code.
    pub fn finish(mut self) -> Result<Summary, WalError> {
        self.writer.flush()?;
        Ok(self.writer.summary())
    }
}
