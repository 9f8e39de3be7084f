//! wal-scan: where a walpipe pipeline starts.
//!
//! It turns a place that holds WAL files into records, one JSON object per line on stdout
//! (the wire format is documented on [`wal_core::record`]): Barman's two queues (the
//! archive_command drop queue `incoming` and pg_receivewal's `streaming` directory), files
//! named on the command line (archive_command's `%p`), or an archive, local or in the cloud
//! (what delete, verify and restore start from; a cloud archive is listed by the
//! `wal-store list` beside this binary, so no object-store client is linked here). It
//! reads no records and changes no file: compressing,
//! storing and moving are later stages' jobs (an unknown queue entry becomes an error
//! record of kind `unknown`, which wal-store moves to errors/).

pub mod cli;
pub mod config;

mod archive;
mod cloud;
mod entry;
mod files;
mod output;
mod queue;

use std::io::Write;

pub use config::Config;
pub use wal_core::stage::Summary;

use wal_core::exit::ExitCode;
use wal_core::{ErrorKind, WalError};

use crate::config::Scan;
use crate::output::Records;

/// The stage name: prefix of every stderr line, and `error.stage` of failed records.
pub const STAGE: &str = entry::STAGE;

/// What a run amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Records written, and how many of them failed.
    pub summary: Summary,
    /// `wal-scan file`: the error kind of the first named file that is not a readable WAL
    /// file. It chooses the exit status (66 missing, 65 not WAL, 74 unreadable), as a
    /// failed record alone (exit 1) would not say why archive_command failed.
    pub named_file_failure: Option<ErrorKind>,
}

impl Scanned {
    /// The exit status of the run.
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        match self.named_file_failure {
            Some(kind) => ExitCode::for_kind(kind),
            None => self.summary.exit_code(),
        }
    }
}

/// Runs the scan `config` describes, writing records to `output`.
///
/// Errors are whole-run failures (the queue or archive cannot be listed, stdout is gone);
/// a file that cannot be read becomes an error record and a failure in the [`Summary`].
pub fn run(config: &Config, output: impl Write) -> Result<Scanned, WalError> {
    let mut records = Records::new(output);
    let mut named_file_failure = None;
    match &config.scan {
        Scan::Queue(queue) => queue::scan(queue, config.shape, &mut records)?,
        Scan::Files(paths, ahead) => {
            named_file_failure = files::scan(paths, config.shape, &mut records)?;
            if let (Some(ahead), [path], None) = (ahead, paths.as_slice(), named_file_failure) {
                files::look_ahead(path, ahead, config.shape, &mut records)?;
            }
        }
        Scan::Archive(archive) => archive::scan(archive, &mut records)?,
        Scan::Cloud(cloud) => cloud::scan(cloud, &mut records)?,
    }
    Ok(Scanned {
        summary: records.finish()?,
        named_file_failure,
    })
}
