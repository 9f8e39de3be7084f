//! `take`: hands a prefetched segment to PostgreSQL.
//!
//! A segment being fetched by a live prefetch is waited for (polled every few
//! milliseconds, `--wait` at most) rather than fetched twice. A spooled file is used only
//! when it still stands for what the archive holds ([`Spool::is_current`]) and is a whole
//! segment of its name (page header and size); anything else is removed, and the caller
//! restores from the archive. Taking is a move: rename into `%p` without replacing (a
//! durable copy across filesystems), the file and both directories fsynced. Nothing but a
//! complete file ever appears under `%p`.

use std::fs::{self, File};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use wal_core::error::{IoContext, Result};
use wal_core::names::SegmentSize;
use wal_core::{WalError, WalName, durable, shape};

use crate::spool::Spool;

/// How often a wait looks for the segment a prefetch is fetching.
const POLL: Duration = Duration::from_millis(5);

/// What became of the segment asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Moved to `%p`; the cluster's segment size, from its header.
    Yes(SegmentSize),
    /// The spool holds no current, whole copy of it.
    No,
    /// A live prefetch is fetching it, and the wait was 0: ask again.
    InFlight,
}

/// Moves the spooled `name` to `to`, waiting up to `wait` for a live prefetch of it (no
/// wait at all: [`Taken::InFlight`]).
pub fn take(spool: &Spool, name: &WalName, to: &Path, wait: Duration) -> Result<Taken> {
    let file = spool.file(name.as_str());
    if !exists(&file) && spool.in_flight(name.as_str()) {
        if wait.is_zero() {
            return Ok(Taken::InFlight);
        }
        let deadline = Instant::now() + wait;
        while !exists(&file) && spool.in_flight(name.as_str()) && Instant::now() < deadline {
            thread::sleep(POLL);
        }
    }
    if !spool.is_current(name) {
        return Ok(Taken::No);
    }
    let Ok(size) = whole_segment(name, &file) else {
        // Not what a prefetch writes (it checks each file before it lands): a stray.
        let _ = fs::remove_file(&file);
        return Ok(Taken::No);
    };
    durable::fsync_file(&file)?;
    durable::move_durably(&file, to)?;
    Ok(Taken::Yes(size))
}

/// Whether at least half of the `n` segments after `name` are neither spooled nor being
/// fetched: then a prefetch is worth starting. Refilling in batches rather than one
/// segment a call halves the processes started.
#[must_use]
pub fn window_needs_work(spool: &Spool, name: &WalName, n: u16, size: SegmentSize) -> bool {
    if n == 0 {
        return false;
    }
    let missing = crate::plan::window(name, n, size)
        .iter()
        .skip(1)
        .filter(|next| !exists(&spool.file(next)) && !spool.in_flight(next))
        .count();
    missing * 2 >= usize::from(n)
}

/// The segment size of the whole segment `file` holds for `name`, or why it is not one.
fn whole_segment(name: &WalName, file: &Path) -> Result<SegmentSize> {
    let mut opened = File::open(file).context("cannot open", file)?;
    let size = opened.metadata().context("cannot stat", file)?.len();
    let head = shape::read_head(name, &mut opened).context("cannot read", file)?;
    shape::check_segment(name, &head, size)
        .map(|header| header.segment_size)
        .map_err(|e| WalError::Corrupt {
            path: file.to_path_buf(),
            message: e.to_string(),
        })
}

/// Whether anything is there under `path` (a dangling link too).
fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}
