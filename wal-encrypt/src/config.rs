//! The resolved configuration: what the stage does, decided once from the command line.
//!
//! [`crate::cli::Args`] mirrors what was typed; this is what it means. Wrappers export one
//! set of `WALPIPE_*` variables for archiving and restoring alike, so each mode takes the
//! flags it needs and ignores the others instead of refusing them: encryption ignores
//! --key; decryption ignores --recipient; a passphrase encrypts only when no recipient is
//! given (it never silently becomes a second way into messages meant for a key).
//!
//! Nothing here reads a file: keys are loaded by [`crate::run`].

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::thread;

use wal_core::WalError;

use crate::cli::Args;

/// Where a passphrase comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Passphrase {
    /// The first line of this file (`gpg --passphrase-file`).
    File(PathBuf),
    /// What this shell command prints (Barman's `encryption_passphrase_command`).
    Command(String),
}

/// What to do with each record's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Encrypt unencrypted files.
    Encrypt {
        /// Certificate files to encrypt to; when empty, `passphrase` is set.
        recipients: Vec<PathBuf>,
        /// The passphrase for symmetric encryption (only without recipients).
        passphrase: Option<Passphrase>,
    },
    /// Decrypt encrypted files.
    Decrypt {
        /// The secret key file.
        key: Option<PathBuf>,
        /// Unlocks `key`, and opens symmetrically encrypted messages.
        passphrase: Option<Passphrase>,
    },
}

/// Everything [`crate::run`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Encrypt or decrypt, with which keys.
    pub mode: Mode,
    /// Records worked on at once (at least 1).
    pub jobs: NonZeroUsize,
    /// Where temporary files go; `None`: next to each record's file.
    pub temp_dir: Option<PathBuf>,
}

impl Config {
    /// Encryption to the certificates in `recipients`, one job per core.
    #[must_use]
    pub fn encrypt_to(recipients: Vec<PathBuf>) -> Self {
        Config {
            mode: Mode::Encrypt {
                recipients,
                passphrase: None,
            },
            jobs: default_jobs(),
            temp_dir: None,
        }
    }

    /// Symmetric encryption with the passphrase from `passphrase`, one job per core.
    #[must_use]
    pub fn encrypt_with(passphrase: Passphrase) -> Self {
        Config {
            mode: Mode::Encrypt {
                recipients: Vec::new(),
                passphrase: Some(passphrase),
            },
            jobs: default_jobs(),
            temp_dir: None,
        }
    }

    /// Decryption with `key` and/or `passphrase`, one job per core.
    #[must_use]
    pub fn decrypt(key: Option<PathBuf>, passphrase: Option<Passphrase>) -> Self {
        Config {
            mode: Mode::Decrypt { key, passphrase },
            jobs: default_jobs(),
            temp_dir: None,
        }
    }

    /// Resolves the command line: which flags count in this mode, then checks.
    pub fn from_args(args: Args) -> Result<Self, WalError> {
        for path in args
            .recipient
            .iter()
            .chain(&args.key)
            .chain(&args.passphrase_file)
            .chain(&args.temp_dir)
        {
            non_empty(path)?;
        }
        let passphrase = match (args.passphrase_file, args.passphrase_command) {
            (Some(file), _) => Some(Passphrase::File(file)),
            (None, Some(command)) if command.trim().is_empty() => {
                return Err(WalError::Usage(
                    "--passphrase-command: empty command".into(),
                ));
            }
            (None, Some(command)) => Some(Passphrase::Command(command)),
            (None, None) => None,
        };
        let mode = if args.decrypt {
            if args.key.is_none() && passphrase.is_none() {
                return Err(WalError::Usage(
                    "--decrypt needs --key KEY (with its passphrase if it has one) \
                     or a passphrase (--passphrase-file, --passphrase-command)"
                        .into(),
                ));
            }
            Mode::Decrypt {
                key: args.key,
                passphrase,
            }
        } else if !args.recipient.is_empty() {
            Mode::Encrypt {
                recipients: args.recipient,
                passphrase: None,
            }
        } else if passphrase.is_some() {
            Mode::Encrypt {
                recipients: Vec::new(),
                passphrase,
            }
        } else {
            return Err(WalError::Usage(
                "nothing to encrypt to: give --recipient CERT or a passphrase \
                 (--passphrase-file, --passphrase-command)"
                    .into(),
            ));
        };
        let jobs = args
            .jobs
            .and_then(NonZeroUsize::new)
            .unwrap_or_else(default_jobs);
        Ok(Config {
            mode,
            jobs,
            temp_dir: args.temp_dir,
        })
    }

    /// The same configuration with `jobs` workers (0 means one per core).
    #[must_use]
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = NonZeroUsize::new(jobs).unwrap_or_else(default_jobs);
        self
    }

    /// The same configuration with temporary files in `dir`.
    #[must_use]
    pub fn with_temp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_dir = Some(dir.into());
        self
    }
}

fn non_empty(path: &Path) -> Result<(), WalError> {
    if path.as_os_str().is_empty() {
        Err(WalError::Usage("empty path given for a file flag".into()))
    } else {
        Ok(())
    }
}

/// Most jobs by default, as wal-compress: each job holds about 2 MiB of buffers (256 KiB
/// chunks in flight between the cipher and its hashing thread); a whole process stays
/// near 12 MiB resident with one job, whatever the file size (tests/roundtrip.rs).
const DEFAULT_JOBS_CAP: usize = 6;

/// One job per core, up to [`DEFAULT_JOBS_CAP`]: encryption is CPU-bound.
fn default_jobs() -> NonZeroUsize {
    let cores = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    NonZeroUsize::new(cores.min(DEFAULT_JOBS_CAP)).unwrap_or(NonZeroUsize::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wal_core::ErrorKind;

    fn args() -> Args {
        Args {
            decrypt: false,
            recipient: Vec::new(),
            key: None,
            passphrase_file: None,
            passphrase_command: None,
            jobs: None,
            temp_dir: None,
        }
    }

    #[test]
    fn encryption_needs_a_recipient_or_a_passphrase() {
        let err = Config::from_args(args()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        let config = Config::from_args(Args {
            recipient: vec!["a.asc".into()],
            ..args()
        })
        .unwrap();
        assert_eq!(config, Config::encrypt_to(vec!["a.asc".into()]));
    }

    #[test]
    fn a_passphrase_encrypts_only_without_recipients() {
        let config = Config::from_args(Args {
            recipient: vec!["a.asc".into()],
            passphrase_file: Some("pw".into()),
            key: Some("secret.gpg".into()),
            ..args()
        })
        .unwrap();
        assert_eq!(
            config.mode,
            Mode::Encrypt {
                recipients: vec!["a.asc".into()],
                passphrase: None
            }
        );
        let config = Config::from_args(Args {
            passphrase_command: Some("pass show wal".into()),
            ..args()
        })
        .unwrap();
        assert_eq!(
            config,
            Config::encrypt_with(Passphrase::Command("pass show wal".into()))
        );
    }

    #[test]
    fn decryption_needs_a_key_or_a_passphrase_and_ignores_recipients() {
        let err = Config::from_args(Args {
            decrypt: true,
            recipient: vec!["a.asc".into()],
            ..args()
        })
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Usage);
        let config = Config::from_args(Args {
            decrypt: true,
            recipient: vec!["a.asc".into()],
            key: Some("secret.gpg".into()),
            passphrase_file: Some("pw".into()),
            jobs: Some(3),
            ..args()
        })
        .unwrap();
        assert_eq!(
            config.mode,
            Mode::Decrypt {
                key: Some("secret.gpg".into()),
                passphrase: Some(Passphrase::File("pw".into()))
            }
        );
        assert_eq!(config.jobs.get(), 3);
    }

    #[test]
    fn empty_paths_and_commands_are_usage_errors() {
        for bad in [
            Args {
                temp_dir: Some(PathBuf::new()),
                passphrase_file: Some("pw".into()),
                ..args()
            },
            Args {
                recipient: vec![PathBuf::new()],
                ..args()
            },
            Args {
                passphrase_command: Some("  ".into()),
                ..args()
            },
        ] {
            assert_eq!(Config::from_args(bad).unwrap_err().kind(), ErrorKind::Usage);
        }
    }

    #[test]
    fn zero_jobs_means_one_per_core() {
        let config = Config::encrypt_to(vec!["a".into()]).with_jobs(0);
        assert_eq!(config.jobs, default_jobs());
        assert_eq!(config.with_jobs(2).jobs.get(), 2);
    }
}
