//! Decryption: find the session key, then stream the plaintext out.
//!
//! The session key packets are parsed and opened by sequoia. The common shape, a SEIPDv1
//! packet with an AES session key and a literal data packet inside (what this stage and
//! `gpg --encrypt --compress-level 0` write), is then decrypted by [`crate::seipd`] on
//! OpenSSL; anything else (gpg's default zlib compression, SEIPDv2, other ciphers, ASCII
//! armour) is read by sequoia's streaming decryptor, which is slower but reads every
//! OpenPGP message, given the session key already found.
//!
//! Only encrypted messages are read. [`classify`] tells from the first bytes whether a
//! file is one, a plain file, or an OpenPGP message that is not encrypted (`gpg --store`,
//! `gpg --sign`, compressed data); the last is refused here, and sequoia, which would
//! read it, is told to refuse any message whose outer layer is not encryption (armour
//! hides the first packet until it is read). Whether a plain file passes is the caller's
//! choice ([`crate::config::Unencrypted`]).
//!
//! What fails a record, and how it is told:
//! * no key or passphrase opens the message: [`Failure::NoKey`], naming the keys the
//!   message is for and the keys we hold;
//! * a SED packet (encrypted data without integrity protection, which gpg itself only
//!   decrypts with a warning): refused before decrypting anything;
//! * a malformed, truncated, modified or unencrypted message: an `InvalidData` or
//!   `UnexpectedEof` I/O error, which the caller reports as corrupt data.
//!
//! A wrong key and corrupt data can look alike. OpenPGP's quick check (the two repeated
//! octets of the encrypted prefix) fails for a wrong session key and also for the right
//! one over a change in the first 18 bytes of the encrypted data; the MDC fails for both
//! too. So the rule goes by where the session key came from:
//! * **From a PKESK packet, with one of our secret keys**: the packet checked it already
//!   (PKCS #1 padding or the AES key wrap, the algorithm octet, the session key's
//!   checksum), and a wrong secret key gets past those with negligible probability. A
//!   session key that came out of a PKESK packet and then fails the quick check, or the
//!   MDC, is the right key over corrupt data: `corrupt`. (Were it reported as a key
//!   problem, a corrupt stored copy would fail every re-delivery of its WAL as a
//!   configuration error, for ever.)
//! * **From a passphrase (SKESK packet)**: nothing checks a key derived from a passphrase
//!   (gpg's packets carry no encrypted session key at all; ours carry one whose algorithm
//!   octet is right by chance once in 256 tries). A failing quick check is a wrong
//!   passphrase or a corrupt first block, and nothing in a SEIPDv1 message tells which:
//!   it is reported as a wrong passphrase (`usage`), the message naming both, the
//!   passphrase being the likelier cause and the one a human can fix. Once the quick
//!   check has passed, the passphrase is right (a wrong one passes once in 65 536 tries,
//!   and the MDC still stops it), so every later failure is `corrupt`.
//! * Encrypted data shorter than the 18 bytes of the quick check is truncated, whatever
//!   the key.

use std::io::{self, BufReader, Cursor, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sequoia_openpgp as openpgp;

use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageLayer, MessageStructure, VerificationHelper,
};
use openpgp::policy::StandardPolicy;
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, KeyHandle, Packet};
use wal_core::WalError;
use wal_core::openpgp::{
    ARMOR_HEADER, BodyLength, HEAD_LENGTH, TAG_AEAD, TAG_LITERAL, TAG_MARKER, TAG_PKESK, TAG_SED,
    TAG_SEIPD, TAG_SKESK,
};

use crate::cipher::{self, BLOCK};
use crate::config::Passphrase;
use crate::framing::{BodyReader, CHUNK, invalid, read_full, read_header, truncated};
use crate::keys::{LazyPassphrase, SecretKeys};
use crate::seipd::{self, Inner};

/// Why a message could not be decrypted.
#[derive(Debug)]
pub enum Failure {
    /// No configured key or passphrase opens it; the message says what it is for.
    NoKey(String),
    /// Reading, writing or the data itself failed: the caller tells which from where the
    /// error came (`InvalidData`/`UnexpectedEof` from neither side: corrupt data).
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

/// What a file holds, as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// An encrypted OpenPGP message, or an ASCII-armoured message (whose packets are only
    /// seen as it is read, and refused then if it is not encrypted).
    Encrypted,
    /// An OpenPGP message that is not encrypted; what it is.
    Unencrypted(&'static str),
    /// No OpenPGP at all: a plain file.
    Plain,
}

/// Packet tags of the messages that are OpenPGP but not encrypted.
const TAG_SIGNATURE: u8 = 2;
const TAG_ONE_PASS_SIGNATURE: u8 = 4;
const TAG_COMPRESSED: u8 = 8;

/// The start of every ASCII-armoured OpenPGP block: messages, cleartext-signed text,
/// keys, signatures.
const ARMOR_ANY: &[u8] = b"-----BEGIN PGP ";

/// What `head` (the first [`HEAD_LENGTH`] bytes of a file, or all of a shorter one)
/// starts. None of walpipe's plain formats (WAL pages, whose magic starts below 0x80,
/// history and backup files in ASCII, the compression magics) starts like an OpenPGP
/// packet of these tags.
#[must_use]
pub fn classify(head: &[u8]) -> Content {
    if head.starts_with(ARMOR_HEADER) {
        return Content::Encrypted;
    }
    if head.starts_with(ARMOR_ANY) {
        return Content::Unencrypted(
            "ASCII-armoured OpenPGP data other than a message (cleartext-signed text, a key \
             or a signature)",
        );
    }
    if wal_core::openpgp::identify(head).is_some() {
        return Content::Encrypted;
    }
    let Some(header) = wal_core::openpgp::parse_header(head) else {
        return Content::Plain;
    };
    match header.tag {
        // A marker packet ("PGP") may come first; readers skip it, as we do.
        TAG_MARKER if header.length == BodyLength::Full(3) => {
            let rest = head.get(header.header_len + 3..).unwrap_or_default();
            match classify(rest) {
                Content::Plain => Content::Unencrypted("an OpenPGP marker packet"),
                other => other,
            }
        }
        TAG_LITERAL => Content::Unencrypted("OpenPGP literal data (`gpg --store`)"),
        TAG_COMPRESSED => Content::Unencrypted("OpenPGP compressed data"),
        TAG_SIGNATURE | TAG_ONE_PASS_SIGNATURE => {
            Content::Unencrypted("an OpenPGP message that is only signed")
        }
        _ => Content::Plain,
    }
}

/// Why an OpenPGP message that is not encrypted is refused.
pub fn not_encrypted(what: &str) -> io::Error {
    invalid(format!(
        "{what}, not encrypted: refusing to take its content for plaintext (anyone can \
         write such a message)"
    ))
}

/// The buffer for reading packet headers; bulk reads go around it.
const READ_BUFFER: usize = 8 * 1024;

/// The longest session key packet accepted (a PKESK for a 16384-bit RSA key is about 2 KiB).
const MAX_ESK_PACKET: u32 = 64 * 1024;

/// Decrypts files with a secret key and/or a passphrase.
#[derive(Debug)]
pub struct Decryptor {
    keys: Option<SecretKeys>,
    passphrase: LazyPassphrase,
}

impl Decryptor {
    /// Reads the secret keys in `key` (unlocked when first needed).
    pub fn new(key: Option<&Path>, passphrase: Option<Passphrase>) -> Result<Self, WalError> {
        Ok(Decryptor {
            keys: key.map(SecretKeys::load).transpose()?,
            passphrase: LazyPassphrase::new(passphrase),
        })
    }

    /// Decrypts the message `input` holds into `output`; returns the bytes written. On an
    /// error, `output` may hold part of the plaintext and must be thrown away.
    pub fn decrypt<R, W>(&self, input: &mut R, output: &mut W) -> Result<u64, Failure>
    where
        R: Read + Seek + Send + Sync,
        W: Write,
    {
        let mut head = [0u8; HEAD_LENGTH];
        let len = read_full(input, &mut head)?;
        input.seek(SeekFrom::Start(0))?;
        match classify(&head[..len]) {
            Content::Plain => return Err(invalid("not an encrypted OpenPGP message").into()),
            Content::Unencrypted(what) => return Err(not_encrypted(what).into()),
            Content::Encrypted if head.starts_with(ARMOR_HEADER) => {
                return self.with_sequoia(input, output, None);
            }
            Content::Encrypted => {}
        }
        // Small: reads of a chunk bypass it, straight into the cipher's buffer.
        let mut reader = BufReader::with_capacity(READ_BUFFER, &mut *input);
        let (pkesks, skesks, length) = read_session_key_packets(&mut reader)?;
        let Some(length) = length else {
            drop(reader);
            input.seek(SeekFrom::Start(0))?;
            return self.with_sequoia(input, output, None);
        };
        let mut body = BodyReader::new(reader, length);
        let mut version = [0u8; 1];
        if read_full(&mut body, &mut version)? == 0 {
            return Err(truncated().into());
        }
        if version[0] != 1 {
            // SEIPDv2 (AEAD): sequoia's job.
            drop(body);
            input.seek(SeekFrom::Start(0))?;
            return self.with_sequoia(input, output, None);
        }
        let mut first = vec![0u8; 2 * BLOCK];
        let got = read_full(&mut body, &mut first)?;
        if got < BLOCK + 2 {
            // Not even the quick check's prefix: no key could open it.
            return Err(truncated().into());
        }
        first.truncate(got);
        let (algo, key) = self.session_key(&pkesks, &skesks, |algo, key| match algo {
            Some(algo) if cipher::ciphers(algo).is_some() => cipher::quick_check(algo, key, &first),
            // Left to sequoia, which checks it itself.
            Some(_) => Ok(true),
            None => Ok(false),
        })?;
        let algo = algo.ok_or_else(|| invalid("a session key without its cipher"))?;
        if cipher::ciphers(algo).is_none() {
            drop(body);
            input.seek(SeekFrom::Start(0))?;
            return self.with_sequoia(input, output, Some((algo, key)));
        }
        let inner = seipd::read(Cursor::new(first).chain(&mut body), algo, &key, output)?;
        match inner {
            Inner::Literal(copied) => {
                // The packet ended where its header said: nothing may follow it.
                if body.into_inner().read(&mut [0u8; 1])? != 0 {
                    return Err(invalid("data after the encrypted data packet").into());
                }
                Ok(copied)
            }
            Inner::Other => {
                drop(body);
                input.seek(SeekFrom::Start(0))?;
                self.with_sequoia(input, output, Some((algo, key)))
            }
        }
    }

    /// Finds the session key: from the PKESK packets with our secret keys, then from the
    /// SKESK packets with the passphrase; the first that `accept`s (that opens the
    /// encrypted data: the quick check) wins. A session key from a PKESK packet that
    /// `accept` refuses makes the data corrupt, a passphrase's makes it a wrong passphrase
    /// (the module doc says why).
    fn session_key(
        &self,
        pkesks: &[PKESK],
        skesks: &[SKESK],
        mut accept: impl FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> io::Result<bool>,
    ) -> Result<(Option<SymmetricAlgorithm>, SessionKey), Failure> {
        let mut problems = Vec::new();
        // The key that opened a PKESK packet whose session key does not open the data.
        let mut refused_by_data = None;
        if !pkesks.is_empty() {
            let recipients = key_list(pkesks.iter().map(PKESK::recipient));
            match &self.keys {
                None => problems.push(format!(
                    "it is encrypted to {recipients} and no --key was given"
                )),
                Some(keys) => match keys.unlocked(|| self.passphrase.get()) {
                    Err(problem) => problems.push(problem),
                    Ok(secrets) => {
                        for pkesk in pkesks {
                            let recipient = pkesk.recipient();
                            for secret in secrets.iter().filter(|secret| {
                                recipient
                                    .as_ref()
                                    .is_none_or(|r| r.aliases(secret.key_handle()))
                            }) {
                                let Ok(mut decryptor) = secret.decryptor() else {
                                    continue;
                                };
                                if let Some((algo, key)) = pkesk.decrypt(&mut *decryptor, None) {
                                    if accept(algo, &key)? {
                                        return Ok((algo, key));
                                    }
                                    refused_by_data.get_or_insert_with(|| secret.key_handle());
                                }
                            }
                        }
                        problems.push(format!(
                            "it is encrypted to {recipients}, and {} holds {}",
                            keys.path().display(),
                            key_list(keys.key_ids().into_iter().map(|id| Some(id.into())))
                        ));
                    }
                },
            }
        }
        if !skesks.is_empty() {
            match self.passphrase.get() {
                Err(problem) => problems.push(problem),
                Ok(None) => problems
                    .push("it is encrypted with a passphrase and none was given".to_string()),
                Ok(Some(password)) => {
                    for skesk in skesks {
                        if let Ok((Some(algo), key)) = skesk.decrypt(&password)
                            && accept(Some(algo), &key)?
                        {
                            return Ok((Some(algo), key));
                        }
                    }
                    problems.push(
                        "wrong passphrase (or the first 18 bytes of the encrypted data are \
                         corrupt: with a passphrase, OpenPGP cannot tell the two apart)"
                            .to_string(),
                    );
                }
            }
        }
        if let Some(handle) = refused_by_data {
            return Err(Failure::Io(invalid(format!(
                "the session key that key {handle:X} decrypted (its checksum verified) does \
                 not open the encrypted data, which is corrupt from its start (OpenPGP's \
                 quick check failed)"
            ))));
        }
        if problems.is_empty() {
            problems.push("it holds no session key packet".to_string());
        }
        Err(Failure::NoKey(format!(
            "cannot decrypt: {}",
            problems.join("; ")
        )))
    }

    /// Reads the whole message with sequoia (`preset`: the session key, when known).
    fn with_sequoia<R, W>(
        &self,
        input: &mut R,
        output: &mut W,
        preset: Option<(SymmetricAlgorithm, SessionKey)>,
    ) -> Result<u64, Failure>
    where
        R: Read + Send + Sync,
        W: Write,
    {
        let policy = StandardPolicy::new();
        let helper = Helper {
            decryptor: self,
            preset,
        };
        let decryptor = DecryptorBuilder::from_reader(input).and_then(|builder| {
            builder
                .buffer_size(CHUNK)
                .with_policy(&policy, None, helper)
        });
        let mut decryptor = match decryptor {
            Ok(decryptor) => decryptor,
            Err(err) => return Err(sequoia_failure(err)),
        };
        Ok(seipd::copy(&mut decryptor, output)?)
    }
}

/// Reads the packets before the encrypted data: the session key packets, and the length
/// of the SEIPD packet that follows them (`None` for an AEAD packet, sequoia's job).
type SessionKeyPackets = (Vec<PKESK>, Vec<SKESK>, Option<BodyLength>);

fn read_session_key_packets(reader: &mut impl Read) -> Result<SessionKeyPackets, Failure> {
    let (mut pkesks, mut skesks) = (Vec::new(), Vec::new());
    loop {
        let mut raw = Vec::new();
        let header = read_header(reader, &mut raw)?
            .ok_or_else(|| invalid("no encrypted data packet (truncated?)"))?;
        match header.tag {
            TAG_PKESK | TAG_SKESK | TAG_MARKER => {
                let BodyLength::Full(len) = header.length else {
                    return Err(invalid("a session key packet without a definite length").into());
                };
                if len > MAX_ESK_PACKET {
                    return Err(invalid(format!("a {len}-byte session key packet")).into());
                }
                let start = raw.len();
                raw.resize(start + len as usize, 0);
                reader.read_exact(&mut raw[start..]).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        truncated()
                    } else {
                        e
                    }
                })?;
                match Packet::from_bytes(&raw) {
                    Ok(Packet::PKESK(pkesk)) => pkesks.push(pkesk),
                    Ok(Packet::SKESK(skesk)) => skesks.push(skesk),
                    // Markers, and session keys of versions or algorithms sequoia does
                    // not know: not for us.
                    Ok(_) => {}
                    Err(e) => return Err(invalid(format!("bad session key packet: {e}")).into()),
                }
            }
            TAG_SEIPD => return Ok((pkesks, skesks, Some(header.length))),
            TAG_AEAD => return Ok((pkesks, skesks, None)),
            TAG_SED => return Err(unauthenticated().into()),
            tag => {
                return Err(invalid(format!(
                    "not an encrypted OpenPGP message (a packet of tag {tag} where the \
                     encrypted data belongs)"
                ))
                .into());
            }
        }
    }
}

fn unauthenticated() -> io::Error {
    invalid(
        "the message is not integrity protected (SED packet, no MDC): refusing to decrypt \
         data that may have been modified",
    )
}

/// `A, B and C` for the key handles of a message's recipients (`anyone` for the
/// anonymous recipient).
fn key_list(handles: impl Iterator<Item = Option<KeyHandle>>) -> String {
    let names: Vec<String> = handles
        .map(|handle| {
            handle.map_or_else(|| "an anonymous recipient".into(), |h| format!("key {h:X}"))
        })
        .collect();
    match names.as_slice() {
        [] => "no key".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Turns a sequoia error into a failure: no session key is [`Failure::NoKey`]; anything
/// else is about the data (or I/O, which the caller blames).
fn sequoia_failure(err: openpgp::anyhow::Error) -> Failure {
    if let Some(openpgp::Error::MissingSessionKey(message)) = err.downcast_ref::<openpgp::Error>() {
        return Failure::NoKey(message.clone());
    }
    match err.downcast::<io::Error>() {
        Ok(io) => Failure::Io(io),
        Err(err) => Failure::Io(invalid(format!("{err:#}"))),
    }
}

/// Hands sequoia the session key, or the keys to find it with.
struct Helper<'a> {
    decryptor: &'a Decryptor,
    preset: Option<(SymmetricAlgorithm, SessionKey)>,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(Vec::new())
    }

    /// Signatures are not checked: archives are encrypted, not signed (as Barman's). The
    /// message must be encrypted, though: sequoia reads unencrypted ones too, and their
    /// content would pass for plaintext. Layers are nested, literal data innermost, so an
    /// outer encryption layer means everything handed on was decrypted.
    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        match structure.into_iter().next() {
            Some(MessageLayer::Encryption { .. }) => Ok(()),
            Some(MessageLayer::Compression { .. }) => {
                Err(not_encrypted("OpenPGP compressed data").into())
            }
            Some(MessageLayer::SignatureGroup { .. }) => {
                Err(not_encrypted("an OpenPGP message that is only signed").into())
            }
            None => Err(not_encrypted("OpenPGP literal data (`gpg --store`)").into()),
        }
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        skesks: &[SKESK],
        _sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        if let Some((algo, key)) = self.preset.take()
            && decrypt(Some(algo), &key)
        {
            return Ok(None);
        }
        match self
            .decryptor
            .session_key(pkesks, skesks, |algo, key| Ok(decrypt(algo, key)))
        {
            Ok(_) => Ok(None),
            Err(Failure::NoKey(message)) => Err(openpgp::Error::MissingSessionKey(message).into()),
            Err(Failure::Io(e)) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::crypto::{Password, S2K};
    use openpgp::packet::skesk::SKESK4;
    use openpgp::serialize::Serialize;
    use openpgp::types::HashAlgorithm;

    /// A wrong passphrase opens the session key packet to a random cipher octet; once in
    /// about a hundred tries it names AES-128 or AES-192 with the 32 bytes of an AES-256
    /// key. Each of 2000 wrong passphrases must read as one (the least S2K count keeps the
    /// tries fast; the chance that none hits those octets is below 10⁻⁶).
    #[test]
    fn every_wrong_passphrase_reads_as_one() {
        let algo = SymmetricAlgorithm::AES256;
        let session_key = SessionKey::new(algo.key_size().unwrap()).unwrap();
        let s2k = S2K::Iterated {
            hash: HashAlgorithm::SHA256,
            salt: [3u8; 8],
            hash_bytes: 1024,
        };
        let right = Password::from("right");
        let skesk = SKESK4::with_password(algo, algo, s2k, &session_key, &right).unwrap();
        let mut message = Vec::new();
        Packet::from(SKESK::V4(skesk))
            .serialize(&mut message)
            .unwrap();
        let plain = vec![7u8; 100];
        let (message, _) = seipd::write(
            message,
            algo,
            &session_key,
            &mut plain.as_slice(),
            Some(plain.len() as u64),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let decrypt_with = |passphrase: &str| {
            let file = dir.path().join("passphrase");
            std::fs::write(&file, passphrase).unwrap();
            let decryptor = Decryptor::new(None, Some(Passphrase::File(file))).unwrap();
            let mut out = Vec::new();
            decryptor
                .decrypt(&mut Cursor::new(&message), &mut out)
                .map(|_| out)
        };
        assert_eq!(decrypt_with("right").unwrap(), plain);
        for n in 0..2000 {
            match decrypt_with(&format!("wrong {n}")) {
                Err(Failure::NoKey(message)) => {
                    assert!(message.contains("wrong passphrase"), "try {n}: {message}");
                }
                Err(Failure::Io(e)) => panic!("try {n}: reported as {:?}: {e}", e.kind()),
                Ok(_) => panic!("try {n}: a wrong passphrase decrypted"),
            }
        }
    }
}
