//! Encryption: session key packets by sequoia, then the SEIPDv1 packet (see
//! [`crate::seipd`]).
//!
//! Each file gets a fresh random AES-256 session key, encrypted to every recipient key
//! (a version 3 PKESK packet each) or under the passphrase (a version 4 SKESK packet).
//! AES-256 is the first preference of every certificate gpg makes, and SEIPDv1 is what
//! GnuPG 2.2 reads; the output is what `gpg --encrypt --compress-level 0` writes.
//!
//! A passphrase goes through the S2K function once per file, with a fresh salt each time,
//! as gpg and sequoia do: the SKESK packet encrypts the session key in CFB mode with an
//! all-zero IV, so packets sharing a derived key would share their first keystream block.
//! One file's session key, once known, would then give away 120 bits of every other
//! file's, and equal first bytes would link the files of one run. The S2K is sequoia's
//! default, which is also what GnuPG 2.2 writes for `--symmetric`: iterated and salted,
//! 65 011 712 bytes hashed (the most OpenPGP can encode), with SHA-256 here. That is one
//! SHA-256 pass over 62 MiB per file: 57-94 ms of a core on a 2-core machine busy with a
//! build (`s2k_cost_per_file` below), where gpg's own S2K took about 400 ms. It outweighs
//! the encryption of a compressed segment (a few ms), but `jobs` files derive at once and
//! a run still keeps up with several segments a second per core. The count protects the
//! passphrase against guessing from any one archived file; a lower one would make
//! archiving cheaper and every file cheaper to attack.

use std::io::{self, Read, Write};

use sequoia_openpgp as openpgp;

use openpgp::crypto::S2K;
use openpgp::crypto::mpi;
use openpgp::crypto::{Password, SessionKey};
use openpgp::packet::Tag;
use openpgp::packet::pkesk::PKESK3;
use openpgp::packet::skesk::SKESK4;
use openpgp::serialize::MarshalInto;
use openpgp::types::SymmetricAlgorithm;

use crate::framing::push_old_format_header;
use crate::keys::PublicKey;
use crate::seipd;

/// The cipher of every message this stage writes.
const ALGORITHM: SymmetricAlgorithm = SymmetricAlgorithm::AES256;

/// Encrypts files for a fixed set of recipients or a passphrase.
pub struct Encryptor {
    recipients: Vec<PublicKey>,
    password: Option<Password>,
}

/// Recipients by key id; the passphrase is never shown.
impl std::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryptor")
            .field(
                "recipients",
                &self
                    .recipients
                    .iter()
                    .map(|key| key.keyid().to_hex())
                    .collect::<Vec<_>>(),
            )
            .field("symmetric", &self.password.is_some())
            .finish()
    }
}

fn pgp(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::other(e)
}

impl Encryptor {
    /// Encryption to `recipients`, RSA keys first: Barman recognises an encrypted file
    /// by what `file` says of its first packet, which it names only for an RSA key.
    #[must_use]
    pub fn to_recipients(mut recipients: Vec<PublicKey>) -> Self {
        recipients.sort_by_key(|key| rsa_modulus_len(key).is_none());
        Encryptor {
            recipients,
            password: None,
        }
    }

    /// Encryption under `password` (each file derives its own key from it).
    #[must_use]
    pub fn with_password(password: Password) -> Self {
        Encryptor {
            recipients: Vec::new(),
            password: Some(password),
        }
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
        output.write_all(&self.session_key_packets(&session_key)?)?;
        seipd::write(output, ALGORITHM, &session_key, input, size)
    }

    /// The packets that give `session_key` to each recipient, or under the passphrase.
    fn session_key_packets(&self, session_key: &SessionKey) -> io::Result<Vec<u8>> {
        let mut head = Vec::with_capacity(600 * self.recipients.len().max(1));
        // Old-format headers, as gpg writes them: see `push_old_format_header`.
        let mut push = |tag: Tag, body: Vec<u8>| {
            push_old_format_header(tag.into(), body.len(), &mut head);
            head.extend_from_slice(&body);
        };
        for key in &self.recipients {
            push(Tag::PKESK, pkesk_body(session_key, key)?);
        }
        if let Some(password) = &self.password {
            // `S2K::default()` draws a new salt on every call.
            let skesk =
                SKESK4::with_password(ALGORITHM, ALGORITHM, S2K::default(), session_key, password)
                    .map_err(pgp)?;
            push(Tag::SKESK, skesk.to_vec().map_err(pgp)?);
        }
        Ok(head)
    }
}

/// The byte length of `key`'s RSA modulus; `None` for other algorithms.
fn rsa_modulus_len(key: &PublicKey) -> Option<usize> {
    match key.mpis() {
        mpi::PublicKey::RSA { n, .. } => Some(n.value().len()),
        _ => None,
    }
}

/// The body of a version 3 PKESK packet giving `session_key` to `key`.
///
/// An RSA ciphertext is as long as the modulus unless its first bytes are zero (one in
/// 256), and OpenPGP then writes it shorter. `file` does not recognise such a packet
/// (gpg's own included), so Barman would take the file for plain WAL: the encryption,
/// randomised, is drawn again until the ciphertext has the modulus' length.
fn pkesk_body(session_key: &SessionKey, key: &PublicKey) -> io::Result<Vec<u8>> {
    // Version, key id, algorithm; then the ciphertext's bit count and bytes.
    let full = rsa_modulus_len(key).map(|len| 1 + 8 + 1 + 2 + len);
    let mut attempts = 0;
    loop {
        let pkesk = PKESK3::for_recipient(ALGORITHM, session_key, key).map_err(pgp)?;
        let body = pkesk.to_vec().map_err(pgp)?;
        attempts += 1;
        // 64 short ciphertexts in a row happen once in 2^512 files.
        if full.is_none_or(|full| body.len() == full) || attempts == 64 {
            return Ok(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    use openpgp::Packet;
    use openpgp::packet::SKESK;
    use openpgp::parse::Parse;

    fn skesk(packets: &[u8]) -> SKESK4 {
        match Packet::from_bytes(packets).unwrap() {
            Packet::SKESK(SKESK::V4(skesk)) => skesk,
            other => panic!("not a v4 SKESK: {other:?}"),
        }
    }

    #[test]
    fn every_file_gets_its_own_salt_and_key_under_a_passphrase() {
        let password = Password::from("one passphrase for the run");
        let encryptor = Encryptor::with_password(password.clone());
        let mut seen: Vec<([u8; 8], Vec<u8>)> = Vec::new();
        for _ in 0..3 {
            let session_key = SessionKey::new(32).unwrap();
            let packet = skesk(&encryptor.session_key_packets(&session_key).unwrap());
            let S2K::Iterated {
                salt, hash_bytes, ..
            } = packet.s2k()
            else {
                panic!("iterated and salted S2K");
            };
            assert_eq!(*hash_bytes, 0x3e0_0000, "gpg's and sequoia's count");
            let esk = packet.esk().unwrap().unwrap().to_vec();
            // The session key comes back with the passphrase alone.
            let (algo, key) = packet.decrypt(&password).unwrap();
            assert_eq!((algo, &key[..]), (ALGORITHM, &session_key[..]));
            for (other_salt, other_esk) in &seen {
                assert_ne!(salt, other_salt);
                // Not even the first block (algorithm octet and 15 key octets) repeats.
                assert_ne!(&esk[..16], &other_esk[..16]);
            }
            seen.push((*salt, esk));
        }
    }

    /// A PKESK to an RSA key always holds a ciphertext of the modulus' length (which
    /// `file`, and so Barman, recognises): 1000 draws would see about four short ones.
    /// And RSA recipients come first, where `file` looks.
    #[test]
    fn rsa_session_key_packets_are_full_length_and_first() {
        use openpgp::cert::{CertBuilder, CipherSuite};
        use openpgp::policy::StandardPolicy;
        let key_of = |suite| {
            let (cert, _) = CertBuilder::new()
                .set_cipher_suite(suite)
                .add_transport_encryption_subkey()
                .generate()
                .unwrap();
            cert.keys()
                .with_policy(&StandardPolicy::new(), None)
                .for_transport_encryption()
                .next()
                .unwrap()
                .key()
                .clone()
                .role_into_unspecified()
        };
        let (ecc, rsa) = (key_of(CipherSuite::Cv25519), key_of(CipherSuite::RSA2k));
        let encryptor = Encryptor::to_recipients(vec![ecc.clone(), rsa.clone()]);
        assert_eq!(rsa_modulus_len(&encryptor.recipients[0]), Some(256));
        assert_eq!(rsa_modulus_len(&encryptor.recipients[1]), None);
        let session_key = SessionKey::new(32).unwrap();
        for _ in 0..1000 {
            assert_eq!(pkesk_body(&session_key, &rsa).unwrap().len(), 12 + 256);
        }
        let head = encryptor.session_key_packets(&session_key).unwrap();
        // gpg's header of a 268-byte PKESK.
        assert_eq!(&head[..3], [0x85, 0x01, 0x0c]);
    }

    /// What one file's S2K costs (the figure in the module doc): run with
    /// `cargo test -p wal-encrypt --release -- --ignored --nocapture s2k`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn s2k_cost_per_file() {
        let encryptor = Encryptor::with_password(Password::from("walpipe archive passphrase"));
        let session_key = SessionKey::new(32).unwrap();
        let rounds = 20u32;
        let start = Instant::now();
        for _ in 0..rounds {
            encryptor.session_key_packets(&session_key).unwrap();
        }
        eprintln!("S2K per file: {:?}", start.elapsed() / rounds);
    }
}
