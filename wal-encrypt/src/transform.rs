//! The work on one record: write an encrypted (or decrypted) copy of its file and point
//! the record at the copy.
//!
//! Everything streams through fixed buffers, so memory does not grow with the file.
//! Nothing is fsynced here: wal-store fsyncs the copy before storing it, and a copy lost
//! in a crash is made again from the untouched source. A failure removes the copy (so no
//! plaintext is left behind by a failed decryption) and fails the record with a kind that
//! says whose fault it was: `not_found` (the file is gone), `io` (reading or writing
//! failed), `corrupt` (the message is malformed, truncated, modified or unauthenticated),
//! `usage` (no configured key or passphrase opens it).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use wal_core::error::IoContext;
use wal_core::record::Encryption;
use wal_core::{WalError, WalRecord};

use crate::config::{Config, Mode};
use crate::decrypt::{Decryptor, Failure};
use crate::encrypt::Encryptor;
use crate::framing::CHUNK;
use crate::keys;
use wal_core::blame::{Side, Watched, blame};
use wal_core::temp::{TempFile, TempNames};

/// The keys of the run, loaded before the first record.
#[derive(Debug)]
enum Crypto {
    Encrypt(Encryptor),
    Decrypt(Decryptor),
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
                Encryptor::with_password(&password)?
            } else {
                Encryptor::to_recipients(keys::load_recipients(recipients)?)
            }),
            Mode::Decrypt { key, passphrase } => {
                Crypto::Decrypt(Decryptor::new(key.as_deref(), passphrase.clone())?)
            }
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
            Crypto::Decrypt(decryptor) => self.decrypt(record, decryptor),
        }
    }

    fn encrypt(&self, record: &mut WalRecord, encryptor: &Encryptor) -> Result<(), WalError> {
        if record.encryption.is_some() {
            return Ok(());
        }
        let path = record.require_path()?.clone();
        let file = File::open(&path).context("cannot open", &path)?;
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

    fn decrypt(&self, record: &mut WalRecord, decryptor: &Decryptor) -> Result<(), WalError> {
        let path = record.require_path()?.clone();
        // Records from an archive listing or `wal-store get` may not say; the first
        // packet does.
        if record.encryption.is_none()
            && wal_core::openpgp::identify_file(&path)
                .context("cannot read", &path)?
                .is_none()
        {
            return Ok(());
        }
        let mut input = Watched::new(File::open(&path).context("cannot open", &path)?);
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
