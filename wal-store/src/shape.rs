//! The shape check at wal-store's two doors: what `put` stores and what `get` writes out
//! must be WAL of the right shape for its name ([`wal_core::shape`]).
//!
//! wal-store sees files as they are stored: compressed, perhaps encrypted. It reads only
//! the first bytes of the plaintext (through the decompressor named by the file's magic),
//! so the check costs one small read per file, never a full decompression. What it
//! cannot see it does not claim: an encrypted file is checked where it is decrypted (on
//! restore, after decryption), and the exact size of a compressed segment is checked when
//! it is written out, where the file is plain.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use wal_core::codec::{Plaintext, open_plaintext};
use wal_core::error::{IoContext, Result};
use wal_core::shape::{self, LongHeader};
use wal_core::{WalError, WalName};

/// What a check found out about a file's plaintext.
#[derive(Debug)]
pub enum Seen {
    /// Encrypted: nothing could be checked here.
    Encrypted,
    /// Checked; the long page header when the file has one.
    Checked(Option<LongHeader>),
}

/// Checks the file at `path` (open as `file`) for `name`: its plaintext, decompressed as
/// its magic says, must have the shape of WAL for that name. An encrypted file is let
/// through unchecked ([`Seen::Encrypted`]). With `whole`, a compressed file is
/// decompressed to its end to check its size too (at most one byte beyond the size its
/// header claims: a decompression bomb costs no more than one segment): for a file that
/// arrived compressed in a queue, whose plaintext nobody has checked.
pub fn check_file(name: &WalName, path: &Path, file: File, whole: bool) -> Result<Seen> {
    let file_size = file.metadata().context("cannot stat", path)?.len();
    let (compression, mut reader) = match open_plaintext(file) {
        Ok(Plaintext::Encrypted) => return Ok(Seen::Encrypted),
        Ok(Plaintext::Readable {
            compression,
            reader,
        }) => (compression, reader),
        Err(e)
            if e.kind() == std::io::ErrorKind::InvalidData
                || e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            return Err(corrupt(path, &format!("cannot decompress: {e}")));
        }
        Err(e) => return Err(WalError::io("cannot read", path, e)),
    };
    let (head, size) = match compression {
        None => (
            shape::read_head(name, reader).context("cannot read", path)?,
            Some(file_size),
        ),
        Some(algorithm) => {
            let undecodable =
                |e: std::io::Error| corrupt(path, &format!("cannot decompress ({algorithm}): {e}"));
            let head = shape::read_head(name, &mut reader).map_err(undecodable)?;
            let size = if whole {
                let claimed = shape::check_head(name, &head)
                    .ok()
                    .flatten()
                    .map_or(shape::head_length(name), |header| {
                        header.segment_size.bytes()
                    });
                let rest = std::io::copy(
                    &mut reader.take(claimed.saturating_sub(head.len() as u64) + 1),
                    &mut std::io::sink(),
                )
                .map_err(undecodable)?;
                Some(head.len() as u64 + rest)
            } else {
                None
            };
            (head, size)
        }
    };
    match size {
        Some(size) => shape::check(name, &head, size),
        None => shape::check_head(name, &head),
    }
    .map(Seen::Checked)
    .map_err(|why| corrupt(path, &why.to_string()))
}

/// Checks a file about to be handed to PostgreSQL: plain WAL (no compression, no
/// encryption: those are undone by then) of exactly the shape its name asks for.
pub fn check_plain(name: &WalName, path: &Path, file: File) -> Result<()> {
    let file_size = file.metadata().context("cannot stat", path)?.len();
    let head = shape::read_head(name, file).context("cannot read", path)?;
    shape::check(name, &head, file_size)
        .map(|_| ())
        .map_err(|why| corrupt(path, &why.to_string()))
}

fn corrupt(path: &Path, message: &str) -> WalError {
    WalError::Corrupt {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}
