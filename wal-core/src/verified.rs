//! The verdict of the last archive verification, as wal-verify leaves it in its state
//! file (`--state`) and wal-check reports it: when it ran, whether everything held, how
//! many files it saw, and what it found wrong.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::{Result, WalError};

/// The key of the last verdict in a wal-verify state file.
pub const LAST_RUN_KEY: &str = "last_run";

/// One verification's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    /// When it ended, seconds since the epoch.
    pub time: f64,
    /// Everything held.
    pub ok: bool,
    /// Files it saw.
    pub files: u64,
    /// Files that failed.
    pub failed: u64,
    /// What it found wrong beyond single files (gaps, stray catalogue lines, …), one line
    /// each.
    pub problems: Vec<String>,
}

/// The last verdict kept in the state file at `path` (its first line): `None` when there
/// is no file, an error naming it when it is not one of ours (a link, a fifo, a first
/// line over 16 MiB, garbage).
pub fn load(path: &Path) -> Result<Option<LastRun>> {
    let file = match durable::open_regular(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WalError::io("cannot read the verify state", path, e)),
    };
    let mut line = Vec::new();
    std::io::BufRead::read_until(
        &mut std::io::BufReader::new(std::io::Read::take(file, 16 << 20)),
        b'\n',
        &mut line,
    )
    .map_err(|e| WalError::io("cannot read the verify state", path, e))?;
    let not_ours = |why: String| {
        WalError::Config(format!(
            "{}: not a wal-verify state ({why})",
            path.display()
        ))
    };
    let value: serde_json::Value =
        serde_json::from_slice(&line).map_err(|e| not_ours(e.to_string()))?;
    match value.get(LAST_RUN_KEY) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(last) => serde_json::from_value(last.clone())
            .map(Some)
            .map_err(|e| not_ours(e.to_string())),
    }
}
