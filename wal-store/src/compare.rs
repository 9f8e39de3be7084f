//! Duplicate detection by content.
//!
//! When the archive already holds a file of the same name, Barman compares it with
//! `filecmp.cmp` in shallow mode: equal size and mtime count as equal without reading a
//! byte (spec §3.5). We always compare the decompressed bytes, so a half-written or
//! different file is never taken for the one we hold, and a copy compressed with another
//! algorithm or level is still recognised as the same WAL.

use std::io;
use std::path::Path;

use wal_core::codec;
use wal_core::error::{IoContext, Result};

/// How a stored file relates to the one being stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// The same WAL bytes.
    Same,
    /// Different WAL bytes.
    Different,
    /// One side does not decode (corrupt or truncated compressed data): they cannot be the
    /// same WAL. The message says which and why.
    Undecodable(String),
}

/// Compares `stored` and `incoming` once decompressed (each identified by its magic
/// bytes; raw WAL has none).
pub fn compare(stored: &Path, incoming: &Path) -> Result<Comparison> {
    let (_, mut left) = codec::open_decompressed(stored).context("cannot read", stored)?;
    let (_, mut right) = codec::open_decompressed(incoming).context("cannot read", incoming)?;
    match codec::same_content(&mut left, &mut right) {
        Ok(true) => Ok(Comparison::Same),
        Ok(false) => Ok(Comparison::Different),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            Ok(Comparison::Undecodable(format!(
                "{} or {} does not decode: {e}",
                stored.display(),
                incoming.display()
            )))
        }
        Err(e) => Err(wal_core::WalError::io("cannot compare", stored, e)),
    }
}
