//! Decryption: find the session key, then stream the plaintext out.
//!
//! The session key packets are parsed and opened by sequoia. The common shape, a SEIPDv1
//! packet with an AES session key and a literal data packet inside (what this stage and
//! `gpg --encrypt --compress-level 0` write), is then decrypted by [`crate::seipd`] on
//! OpenSSL; anything else (gpg's default zlib compression, SEIPDv2, other ciphers, ASCII
//! armour) is read by sequoia's streaming decryptor, which is slower but reads every
//! OpenPGP message, given the session key already found.
//!
//! What fails a record, and how it is told:
//! * no key or passphrase opens the message: [`Failure::NoKey`], naming the keys the
//!   message is for and the keys we hold;
//! * a SED packet (encrypted data without integrity protection, which gpg itself only
//!   decrypts with a warning): refused before decrypting anything;
//! * a malformed, truncated or modified message: an `InvalidData` or `UnexpectedEof`
//!   I/O error, which the caller reports as corrupt data.

use std::io::{self, BufReader, Cursor, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sequoia_openpgp as openpgp;

use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use openpgp::policy::StandardPolicy;
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, KeyHandle, Packet};
use wal_core::WalError;
use wal_core::openpgp::{
    BodyLength, HEAD_LENGTH, MessageStart, TAG_AEAD, TAG_MARKER, TAG_PKESK, TAG_SED, TAG_SEIPD,
    TAG_SKESK,
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
        match wal_core::openpgp::identify(&head[..len]) {
            None => return Err(invalid("not an encrypted OpenPGP message").into()),
            Some(MessageStart::EncryptedData {
                authenticated: false,
            }) => return Err(unauthenticated().into()),
            Some(MessageStart::Armored) => return self.with_sequoia(input, output, None),
            Some(_) => {}
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
    /// SKESK packets with the passphrase; the first that `accept`s wins.
    fn session_key(
        &self,
        pkesks: &[PKESK],
        skesks: &[SKESK],
        mut accept: impl FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> io::Result<bool>,
    ) -> Result<(Option<SymmetricAlgorithm>, SessionKey), Failure> {
        let mut problems = Vec::new();
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
                                if let Some((algo, key)) = pkesk.decrypt(&mut *decryptor, None)
                                    && accept(algo, &key)?
                                {
                                    return Ok((algo, key));
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
                    problems.push("wrong passphrase".to_string());
                }
            }
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

    /// Signatures are not checked: archives are encrypted, not signed (as Barman's).
    fn check(&mut self, _structure: MessageStructure) -> openpgp::Result<()> {
        Ok(())
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
