//! Duplicate detection by content.
//!
//! When the archive already holds a file of the same name, Barman compares it with
//! `filecmp.cmp` in shallow mode: equal size and mtime count as equal without reading a
//! byte (`docs/barman-formats.md#duplicates-and-conflicts`). We always compare the
//! decompressed bytes, so a half-written or
//! different file is never taken for the one we hold, and a copy compressed with another
//! algorithm or level is still recognised as the same WAL.
//!
//! Encrypted files (an OpenPGP message, by its first packet) are compared once
//! decrypted ([`crate::decrypt`]), when a key or passphrase is configured. Without one
//! they cannot be compared: Barman then calls any re-delivery of an encrypted WAL a
//! duplicate error (`docs/barman-formats.md#duplicates-and-conflicts`,
//! `docs/barman-formats.md#encryption`), and so do we ([`Comparison::Encrypted`]).

use std::io;
use std::path::Path;

use wal_core::codec;
use wal_core::compression::Compression;
use wal_core::error::{IoContext, Result};
use wal_core::openpgp;
use wal_core::record::Encryption;

use crate::cli::Decryption;
use crate::decrypt::{self, Decrypted, Plaintexts};

/// How the stored copy is stored, as found while comparing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredForm {
    /// The compression of its (decrypted) bytes.
    pub compression: Option<Compression>,
    /// Whether it is encrypted.
    pub encryption: Option<Encryption>,
}

/// How a stored file relates to the one being stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// The same WAL bytes; the stored copy is stored so.
    Same(StoredForm),
    /// Different WAL bytes.
    Different,
    /// One side does not decode (corrupt or truncated compressed data, or an encrypted
    /// message that does not decrypt): they cannot be the same WAL. The message says
    /// which and why.
    Undecodable(String),
    /// One side is encrypted and no key is configured to decrypt it: they cannot be
    /// compared (Barman's `DuplicateWalFile` for encrypted copies).
    Encrypted(String),
}

/// Compares `stored` and `incoming` once decrypted (with `decryption`, when given) and
/// decompressed (each identified by its first bytes; raw WAL has no magic).
///
/// Decrypted copies go to `incoming`'s directory, where the plaintext already is, and
/// are removed before this returns.
pub fn compare(
    stored: &Path,
    incoming: &Path,
    name: &str,
    decryption: Option<&Decryption>,
    scratch: &Path,
) -> Result<Comparison> {
    let mut plaintexts = Plaintexts::default();
    let mut sides = [stored.to_path_buf(), incoming.to_path_buf()];
    let mut encrypted = Vec::new();
    for (index, path) in sides.iter().enumerate() {
        if openpgp::is_encrypted_file(path).context("cannot read", path)? {
            encrypted.push(index);
        }
    }
    if !encrypted.is_empty() {
        let Some(decryption) = decryption else {
            let which = if encrypted == [1] { incoming } else { stored };
            return Ok(Comparison::Encrypted(format!(
                "{} is encrypted and no key was given to compare it with (--key, \
                 --passphrase-file, --passphrase-command)",
                which.display()
            )));
        };
        let files: Vec<(&str, &Path)> = encrypted
            .iter()
            .map(|&index| (name, sides[index].as_path()))
            .collect();
        let results = decrypt::decrypt(&files, scratch, decryption, &mut plaintexts)?;
        for (&index, result) in encrypted.iter().zip(results) {
            match result {
                Decrypted::Plain(path) => sides[index] = path,
                Decrypted::Corrupt(why) => return Ok(Comparison::Undecodable(why)),
            }
        }
    }
    let (compression, mut left) =
        codec::open_decompressed(&sides[0]).context("cannot read", &sides[0])?;
    let (_, mut right) = codec::open_decompressed(&sides[1]).context("cannot read", &sides[1])?;
    match codec::same_content(&mut left, &mut right) {
        Ok(true) => Ok(Comparison::Same(StoredForm {
            compression,
            encryption: encrypted.contains(&0).then_some(Encryption::Gpg),
        })),
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
