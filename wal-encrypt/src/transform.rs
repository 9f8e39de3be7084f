//! The work on one record: write an encrypted (or decrypted) copy of its file and point
//! the record at the copy.
//!
//! Everything streams through fixed buffers, so memory does not grow with the file.
//! Nothing is fsynced here: wal-store fsyncs the copy before storing it, and a copy lost
//! in a crash is made again from the untouched source. A failure removes the copy (so no
//! plaintext is left behind by a failed decryption) and fails the record with a kind that
//! says whose fault it was: `not_found` (the file is gone), `io` (reading or writing
//! failed), `corrupt` (the message is malformed, truncated, modified, unauthenticated or
//! not encrypted at all), `usage` (no configured key or passphrase opens it).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use wal_core::error::IoContext;
use wal_core::record::Encryption;
use wal_core::{WalError, WalRecord};

use crate::config::{Config, Mode, Unencrypted};
use crate::decrypt::{self, Content, Decryptor, Failure};
use crate::encrypt::Encryptor;
use crate::framing::CHUNK;
use crate::keys;
use wal_core::blame::{Side, Watched, blame};
use wal_core::temp::{TempFile, TempNames};

/// The keys of the run, loaded before the first record.
#[derive(Debug)]
enum Crypto {
    Encrypt(Encryptor),
    Decrypt(Decryptor, PlainPolicy),
}

/// Which plain files a decryption passes on, resolved once.
#[derive(Debug)]
enum PlainPolicy {
    Refused,
    Allowed,
    /// Files directly in these directories (canonical paths; those that do not exist are
    /// left out: nothing is in them).
    AllowedIn(Vec<PathBuf>),
}

impl PlainPolicy {
    fn new(unencrypted: &Unencrypted) -> Self {
        match unencrypted {
            Unencrypted::Refused => PlainPolicy::Refused,
            Unencrypted::Allowed => PlainPolicy::Allowed,
            Unencrypted::AllowedIn(dirs) => PlainPolicy::AllowedIn(
                dirs.iter()
                    .filter_map(|dir| fs::canonicalize(dir).ok())
                    .collect(),
            ),
        }
    }

    /// Whether the plain file at `path` passes. Directories are compared canonical, so
    /// `restore-wal`'s relative or symlinked spelling of a queue matches wal-store's.
    fn allows(&self, path: &Path) -> bool {
        match self {
            PlainPolicy::Refused => false,
            PlainPolicy::Allowed => true,
            PlainPolicy::AllowedIn(dirs) => path
                .parent()
                .map(|parent| {
                    if parent.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        parent
                    }
                })
                .and_then(|parent| fs::canonicalize(parent).ok())
                .is_some_and(|parent| dirs.contains(&parent)),
        }
    }
}

/// Does the configured job on each record; shared by all worker threads.
#[derive(Debug)]
pub struct Transformer<'a> {
    config: &'a Config,
    crypto: Crypto,
    names: TempNames,
}

impl<'a> Transformer<'a> {
    /// Loads the keys `config` names: certificates are checked, a symmetric passphrase is
    /// read and derived now; a secret key is unlocked when first needed.
    pub fn new(config: &'a Config) -> Result<Self, WalError> {
        let crypto = match &config.mode {
            Mode::Encrypt {
                recipients,
                passphrase,
            } => Crypto::Encrypt(if recipients.is_empty() {
                let source = passphrase.as_ref().ok_or_else(|| {
                    WalError::Usage("nothing to encrypt to: no recipient, no passphrase".into())
                })?;
                let password = keys::read_passphrase(source).map_err(WalError::Usage)?;
                Encryptor::with_password(password)
            } else {
                Encryptor::to_recipients(keys::load_recipients(recipients)?)
            }),
            Mode::Decrypt {
                key,
                passphrase,
                unencrypted,
            } => Crypto::Decrypt(
                Decryptor::new(key.as_deref(), passphrase.clone())?,
                PlainPolicy::new(unencrypted),
            ),
        };
        Ok(Transformer {
            config,
            crypto,
            names: TempNames::default(),
        })
    }

    /// Encrypts or decrypts the record's file, updating the record; leaves records it has
    /// nothing to do for unchanged.
    pub fn process(&self, record: &mut WalRecord) -> Result<(), WalError> {
        match &self.crypto {
            Crypto::Encrypt(encryptor) => self.encrypt(record, encryptor),
            Crypto::Decrypt(decryptor, plain) => self.decrypt(record, decryptor, plain),
        }
    }

    fn encrypt(&self, record: &mut WalRecord, encryptor: &Encryptor) -> Result<(), WalError> {
        if record.encryption.is_some() {
            return Ok(());
        }
        let path = record.require_path()?.clone();
        let file = wal_core::durable::open_wal(&path)?;
        let size = file.metadata().context("cannot stat", &path)?.len();
        let mut input = Watched::new(file);
        let (temp, mut output) = self.create_copy(record, &path, "gpg")?;
        let result = encryptor
            .encrypt(&mut input, Some(size), &mut output)
            .and_then(|(output, _)| output.flush());
        if let Err(error) = result {
            return Err(match blame(&input, &output) {
                Side::Input => WalError::io("cannot read", &path, error),
                Side::Output => WalError::io("cannot write", temp.path(), error),
                Side::Data => WalError::io("cannot encrypt", &path, error),
            });
        }
        record.size = output.bytes();
        record.encryption = Some(Encryption::Gpg);
        temp.hand_to(record);
        Ok(())
    }

    fn decrypt(
        &self,
        record: &mut WalRecord,
        decryptor: &Decryptor,
        plain: &PlainPolicy,
    ) -> Result<(), WalError> {
        // Settled already (`wal-verify --recall`: its state vouches for the stored file):
        // nothing to decrypt, and no path to read.
        if record.outcome.is_some() {
            return Ok(());
        }
        let path = record.require_path()?.clone();
        let mut file = wal_core::durable::open_wal(&path)?;
        // The bytes decide, not the record's `encryption`: a listing or `wal-store get`
        // may not say, and a file can be swapped under a catalogue that says gpg.
        let mut head = Vec::with_capacity(wal_core::openpgp::HEAD_LENGTH);
        (&mut file)
            .take(wal_core::openpgp::HEAD_LENGTH as u64)
            .read_to_end(&mut head)
            .context("cannot read", &path)?;
        match decrypt::classify(&head) {
            Content::Encrypted => {}
            Content::Plain if record.encryption.is_some() => {
                return Err(WalError::Corrupt {
                    path,
                    message: "not an encrypted OpenPGP message, though its record says it is"
                        .into(),
                });
            }
            Content::Plain if plain.allows(&path) => return Ok(()),
            Content::Plain => {
                return Err(WalError::Corrupt {
                    path,
                    message: "not encrypted; --allow-unencrypted to accept plaintext \
                              (migration from an unencrypted archive)"
                        .into(),
                });
            }
            Content::Unencrypted(what) => {
                return Err(WalError::Corrupt {
                    path,
                    message: decrypt::not_encrypted(what).to_string(),
                });
            }
        }
        file.rewind().context("cannot read", &path)?;
        let mut input = Watched::new(file);
        let (temp, mut output) = self.create_copy(record, &path, "decrypted")?;
        let result = decryptor
            .decrypt(&mut input, &mut output)
            .and_then(|copied| output.flush().map(|()| copied).map_err(Failure::Io));
        match result {
            Ok(_) => {}
            Err(Failure::NoKey(message)) => {
                return Err(WalError::Usage(format!("{}: {message}", path.display())));
            }
            Err(Failure::Io(error)) => {
                return Err(match blame(&input, &output) {
                    Side::Input => WalError::io("cannot read", &path, error),
                    Side::Output => WalError::io("cannot write", temp.path(), error),
                    Side::Data => WalError::Corrupt {
                        path,
                        message: if error.kind() == io::ErrorKind::UnexpectedEof {
                            "truncated OpenPGP message".into()
                        } else {
                            format!("cannot decrypt: {error}")
                        },
                    },
                });
            }
        }
        record.size = output.bytes();
        record.encryption = None;
        temp.hand_to(record);
        Ok(())
    }

    /// Creates the temporary copy of `path` for `record`, buffered and watched.
    fn create_copy(
        &self,
        record: &WalRecord,
        path: &Path,
        suffix: &str,
    ) -> Result<(TempFile, Watched<BufWriter<File>>), WalError> {
        let (temp, file) =
            self.names
                .create_for(self.config.temp_dir.as_deref(), record, path, suffix)?;
        Ok((temp, Watched::new(BufWriter::with_capacity(CHUNK, file))))
    }
}
