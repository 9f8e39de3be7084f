//! The receiver's status file, for `walpipe`'s check and for a DBA: which process
//! streams, from where, how far it got, how often it restarted and why it last failed.
//!
//! `<lock dir>/.<server>-receive-wal.json`, replaced whole (written beside, fsynced,
//! renamed) at each change, so a reader never sees half of one. The pid and its start
//! time tell a running receiver from one that is gone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wal_core::error::Result;
use wal_core::{durable, process};

/// What the status file holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// The receiver's pid.
    pub pid: u32,
    /// Its start time (clock ticks after boot; with the pid, names this very process).
    pub start_time: Option<u64>,
    /// The server name.
    pub server: String,
    /// The slot streamed from, if any.
    pub slot: Option<String>,
    /// The application name pg_receivewal connects with.
    pub application_name: String,
    /// Whether the server waits for it (`--synchronous`).
    pub synchronous: bool,
    /// The pg_receivewal running now: its pid and start time.
    pub child: Option<(i32, u64)>,
    /// `starting`, `streaming`, `waiting` (paused before a restart) or `stopped`.
    pub state: String,
    /// The last segment pg_receivewal finished.
    pub last_segment: Option<String>,
    /// The LSN it had streamed to then.
    pub last_lsn: Option<String>,
    /// The timeline it streams.
    pub timeline: Option<u32>,
    /// How many times pg_receivewal was restarted.
    pub restarts: u64,
    /// Why it last stopped, if it failed.
    pub last_error: Option<String>,
    /// When this was written (seconds since the epoch).
    pub updated: f64,
}

/// Where the status of `server` is kept.
#[must_use]
pub fn path(lock_dir: &Path, server: &str) -> PathBuf {
    lock_dir.join(format!(".{server}-receive-wal.json"))
}

impl Status {
    /// A new status for this process.
    #[must_use]
    pub fn new(server: &str, slot: Option<&str>, application_name: &str) -> Status {
        let pid = std::process::id();
        Status {
            pid,
            start_time: i32::try_from(pid).ok().and_then(process::start_time),
            server: server.to_owned(),
            slot: slot.map(str::to_owned),
            application_name: application_name.to_owned(),
            state: "starting".into(),
            ..Status::default()
        }
    }

    /// The status at `path`, if there is one that reads.
    #[must_use]
    pub fn read(path: &Path) -> Option<Status> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes the status to `path`, whole.
    pub fn write(&mut self, path: &Path) -> Result<()> {
        self.updated = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| wal_core::WalError::Internal(e.to_string()))?;
        durable::replace_durably(path, |file| std::io::Write::write_all(file, &text))
    }
}
