//! The two queue scans: Barman's `get_next_batch` of the file and streaming archivers.
//!
//! Both list the directory as a shell glob `*` would (dot-files are invisible: Barman's
//! `put-wal` and walpipe's durable writes name their temporaries `.<something>`), sort the
//! names by bytes, and cut
//! the batch **before** looking at any file. Barman #1087: a streaming
//! directory of 200 000 WALs took over a day because every run built a WalFileInfo, and ran
//! `file(1)`, for every file, batch size or not. Here a run over a backlog costs one
//! `readdir` pass and a sort of names; only the batch's entries are stat'ed or opened.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use wal_core::error::IoContext;
use wal_core::names::{WalKind, classify};
use wal_core::{WalError, WalRecord};

use crate::config::{QueueConfig, QueueKind, ShapeCheck};
use crate::entry::{Entry, STAGE, Sniff, examine};
use crate::output::Records;

/// Scans the queue of `config` into `out`, then says on stderr what it found.
pub fn scan<W: Write>(
    config: &QueueConfig,
    shape: ShapeCheck,
    out: &mut Records<W>,
) -> Result<(), WalError> {
    let names = list(config)?;
    let total = names.len();
    let end = match config.batch_size {
        0 => total,
        size => size.min(total),
    };
    let (batch, rest) = names.split_at(end);
    match config.kind {
        QueueKind::Incoming => scan_incoming(config, batch, shape, out)?,
        QueueKind::Streaming => scan_streaming(config, batch, rest, shape, out)?,
    }
    wal_core::log::info!(
        "{STAGE}: {}",
        batch_message(config.kind, &config.server, total, out.wal_files())
    );
    Ok(())
}

/// The queue's names, without dot-files, in byte order (Barman's `sorted(glob(...))`). Nothing but `readdir`:
/// no stat, no open, no parsing.
///
/// A missing queue is an error (exit 66), not an empty queue: a typo in a path must not
/// look like a quiet night.
fn list(config: &QueueConfig) -> Result<Vec<OsString>, WalError> {
    let dir = &config.dir;
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).context("cannot list", dir)? {
        let name = entry.context("cannot list", dir)?.file_name();
        if !name.as_bytes().starts_with(b".") {
            names.push(name);
        }
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// In-progress copies of archive_command scripts (`rsync`, `cp` then `mv`): never ours to
/// touch, and not errors either (Barman ignores them silently).
fn is_temporary(name: &OsString) -> bool {
    name.as_bytes().ends_with(b".tmp")
}

/// Barman's `FileWalArchiver.get_next_batch`: every WAL file of the batch, in name order,
/// compression and encryption sniffed (a client may have compressed or encrypted it
/// before dropping it in).
fn scan_incoming<W: Write>(
    config: &QueueConfig,
    batch: &[OsString],
    shape: ShapeCheck,
    out: &mut Records<W>,
) -> Result<(), WalError> {
    for name in batch.iter().filter(|name| !is_temporary(name)) {
        out.emit(examine(&config.dir.join(name), name, Sniff::Content, shape))?;
    }
    Ok(())
}

/// Barman's `StreamingWalArchiver.get_next_batch`, with one fix.
///
/// pg_receivewal finds where to resume by looking at the newest file of its directory, so
/// one file is always left behind:
/// * `.partial` files are held back; when the batch holds more than one, all but the last
///   are archived after the other WALs (a restarted pg_receivewal leaves an old one behind;
///   Barman appends them at the end of the batch, out of name order, and so do we);
/// * when the batch holds no `.partial`, its last WAL is held back instead, even a complete
///   one. Our fix: Barman does that even when the batch size cut the listing before the
///   real `.partial`, needlessly keeping one complete WAL per run. When a `.partial` is in
///   the listing beyond the batch, pg_receivewal's file is already left behind, so nothing
///   in the batch is held back.
///
/// Records go out as they are found, except the latest WAL (and any error records after
/// it), which waits until the end of the batch decides whether it is held back: memory
/// stays flat however large the batch.
fn scan_streaming<W: Write>(
    config: &QueueConfig,
    batch: &[OsString],
    rest: &[OsString],
    shape: ShapeCheck,
    out: &mut Records<W>,
) -> Result<(), WalError> {
    // The latest WAL of the batch and the error records found after it.
    let mut latest: Vec<Entry> = Vec::new();
    let mut partials: Vec<WalRecord> = Vec::new();
    for name in batch.iter().filter(|name| !is_temporary(name)) {
        match examine(&config.dir.join(name), name, Sniff::Nothing, shape) {
            Entry::Wal(record) if record.kind == Some(WalKind::Partial) => partials.push(record),
            wal @ Entry::Wal(_) => {
                for entry in latest.drain(..) {
                    out.emit(entry)?;
                }
                latest.push(wal);
            }
            Entry::Vanished(_) => {}
            other if latest.is_empty() => out.emit(other)?,
            other => latest.push(other),
        }
    }
    // Backwards: pg_receivewal's `.partial` is normally the last name of the listing.
    let partial_beyond_batch = rest.iter().rev().any(|name| {
        name.as_bytes().ends_with(b".partial")
            && name.to_str().and_then(classify) == Some(WalKind::Partial)
    });
    if partials.is_empty() && !partial_beyond_batch && !latest.is_empty() {
        latest.remove(0); // held back: the newest file pg_receivewal will look for
    }
    for entry in latest {
        out.emit(entry)?;
    }
    if partials.len() > 1 {
        partials.pop(); // the last one is the segment pg_receivewal is writing
        let names: Vec<&str> = partials.iter().map(|p| p.name.as_str()).collect();
        wal_core::log::info!(
            "{STAGE}: Archiving partial files for server {}: {}",
            config.server,
            names.join(", ")
        );
        for partial in partials {
            out.emit(Entry::Wal(partial))?;
        }
    }
    Ok(())
}

/// Barman's summary of a batch, word for word.
fn batch_message(kind: QueueKind, server: &str, total: usize, archived: usize) -> String {
    let archiver = kind.archiver_name();
    if archived == 0 {
        format!("No xlog segments found from {archiver} for {server}.")
    } else if archived < total {
        format!(
            "Found {total} xlog segments from {archiver} for {server}. \
             Archive a batch of {archived} segments in this run."
        )
    } else {
        format!(
            "Found {total} xlog segments from {archiver} for {server}. \
             Archive all segments in one run."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_messages_are_barmans() {
        assert_eq!(
            batch_message(QueueKind::Incoming, "pg", 5, 2),
            "Found 5 xlog segments from file archival for pg. Archive a batch of 2 segments in this run."
        );
        assert_eq!(
            batch_message(QueueKind::Streaming, "pg", 3, 3),
            "Found 3 xlog segments from streaming for pg. Archive all segments in one run."
        );
        assert_eq!(
            batch_message(QueueKind::Streaming, "pg", 1, 0),
            "No xlog segments found from streaming for pg."
        );
    }
}
