//! Encryption: session key packets by sequoia, then the SEIPDv1 packet (see
//! [`crate::seipd`]).
//!
//! Each file gets a fresh random AES-256 session key, encrypted to every recipient key
//! (a version 3 PKESK packet each) or under the passphrase (a version 4 SKESK packet).
//! AES-256 is the first preference of every certificate gpg makes, and SEIPDv1 is what
//! GnuPG 2.2 reads; the output is what `gpg --encrypt --compress-level 0` writes.
//!
//! A passphrase goes through the S2K function once per run, not once per file: sequoia's
//! default (iterated and salted SHA-256, the largest count) takes about 0.35 s, which per
//! WAL would cap symmetric archiving at a few segments a second. Each file's SKESK packet
//! carries its own session key encrypted under that derived key (RFC 9580 §5.3), so files
//! still never share a session key.

use std::io::{self, Read, Write};

use sequoia_openpgp as openpgp;

use openpgp::Packet;
use openpgp::crypto::S2K;
use openpgp::crypto::{Password, SessionKey};
use openpgp::packet::pkesk::PKESK3;
use openpgp::packet::skesk::SKESK4;
use openpgp::packet::{PKESK, SKESK};
use openpgp::serialize::Serialize;
use openpgp::types::SymmetricAlgorithm;
use wal_core::WalError;

use crate::cipher;
use crate::keys::PublicKey;
use crate::seipd;

/// The cipher of every message this stage writes.
const ALGORITHM: SymmetricAlgorithm = SymmetricAlgorithm::AES256;

/// The key a passphrase derives, with the S2K parameters that derive it again.
struct Symmetric {
    s2k: S2K,
    key: SessionKey,
}

impl std::fmt::Debug for Symmetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symmetric").finish_non_exhaustive()
    }
}

/// Encrypts files for a fixed set of recipients or a passphrase.
#[derive(Debug)]
pub struct Encryptor {
    recipients: Vec<PublicKey>,
    symmetric: Option<Symmetric>,
}

fn pgp(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::other(e)
}

impl Encryptor {
    /// Encryption to `recipients`.
    #[must_use]
    pub fn to_recipients(recipients: Vec<PublicKey>) -> Self {
        Encryptor {
            recipients,
            symmetric: None,
        }
    }

    /// Encryption under `password` (derives its key now).
    pub fn with_password(password: &Password) -> Result<Self, WalError> {
        let s2k = S2K::default();
        let key = s2k
            .derive_key(password, ALGORITHM.key_size().map_err(internal)?)
            .map_err(internal)?;
        Ok(Encryptor {
            recipients: Vec::new(),
            symmetric: Some(Symmetric { s2k, key }),
        })
    }

    /// Writes `input` to `output` as an encrypted OpenPGP message; returns `output` and
    /// the bytes of `input` encrypted. `size`, when known, is the exact size of `input`
    /// (see [`seipd::write`]).
    pub fn encrypt<W: Write>(
        &self,
        input: &mut impl Read,
        size: Option<u64>,
        mut output: W,
    ) -> io::Result<(W, u64)> {
        let session_key = SessionKey::new(ALGORITHM.key_size().map_err(pgp)?).map_err(pgp)?;
        let mut head = Vec::with_capacity(600 * self.recipients.len().max(1));
        for key in &self.recipients {
            let pkesk = PKESK3::for_recipient(ALGORITHM, &session_key, key).map_err(pgp)?;
            Packet::from(PKESK::V3(pkesk))
                .serialize(&mut head)
                .map_err(pgp)?;
        }
        if let Some(symmetric) = &self.symmetric {
            // The algorithm octet, then the session key, under the derived key.
            let mut plain = Vec::with_capacity(1 + session_key.len());
            plain.push(u8::from(ALGORITHM));
            plain.extend_from_slice(&session_key);
            let esk = cipher::cfb_encrypt(ALGORITHM, &symmetric.key, &plain)?;
            let skesk =
                SKESK4::new(ALGORITHM, symmetric.s2k.clone(), Some(esk.into())).map_err(pgp)?;
            Packet::from(SKESK::V4(skesk))
                .serialize(&mut head)
                .map_err(pgp)?;
        }
        output.write_all(&head)?;
        seipd::write(output, ALGORITHM, &session_key, input, size)
    }
}

fn internal(e: impl std::fmt::Display) -> WalError {
    WalError::Internal(format!("cannot derive a key from the passphrase: {e}"))
}
