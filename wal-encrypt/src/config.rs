//! The resolved configuration: what the stage does, decided once from the command line.
//!
//! [`crate::cli::Args`] mirrors what was typed; this is what it means. Wrappers export one
//! set of `WALPIPE_*` variables for archiving and restoring alike, so each mode takes the
//! flags it needs and ignores the others instead of refusing them: encryption ignores
//! --key and --allow-unencrypted*; decryption ignores --recipient; a passphrase encrypts
//! only when no recipient is given (it never silently becomes a second way into messages
//! meant for a key).
//!
//! Nothing here reads a file: keys are loaded by [`crate::run`].

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::thread;

use wal_core::WalError;
use wal_core::stage::MAX_JOBS;

use crate::cli::Args;

/// Where a passphrase comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Passphrase {
    /// The first line of this file (`gpg --passphrase-file`).
    File(PathBuf),
    /// What this shell command prints (Barman's `encryption_passphrase_command`).
    Command(String),
}

/// The command is left out: it may hold the passphrase itself (`echo …`), and debug output
/// ends up in logs.
impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Passphrase::File(path) => f.debug_tuple("File").field(path).finish(),
            Passphrase::Command(_) => f.write_str("Command(..)"),
        }
    }
}

/// Which files that are not encrypted a decryption passes on, unchanged.
///
/// An archive written with encryption holds nothing else, so by default a plain file is
/// refused (kind `corrupt`): accepting it would let anyone who can write to the archive
/// hand PostgreSQL WAL of their own without knowing the key or passphrase. An archive
/// that was unencrypted before encryption was turned on holds both (Barman's `get-wal`
/// passes plain files on, whatever the configuration): that migration needs
/// [`Unencrypted::Allowed`]. An OpenPGP message that is not encrypted (literal data,
/// compressed or signed only) is refused whatever this says: it is neither a file of an
/// unencrypted archive nor an encrypted one, and its content is never taken for plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unencrypted {
    /// Every plain file is refused.
    Refused,
    /// Every plain file passes (`--allow-unencrypted`).
    Allowed,
    /// Plain files directly in these directories pass (`--allow-unencrypted-in`): the
    /// queues beside an archive, which hold WAL not archived (so not encrypted) yet and are
    /// trusted as much as the archiving that reads them.
    AllowedIn(Vec<PathBuf>),
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
        /// Which plain files pass.
        unencrypted: Unencrypted,
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

    /// Decryption with `key` and/or `passphrase`, refusing plain files, one job per core.
    #[must_use]
    pub fn decrypt(key: Option<PathBuf>, passphrase: Option<Passphrase>) -> Self {
        Config {
            mode: Mode::Decrypt {
                key,
                passphrase,
                unencrypted: Unencrypted::Refused,
            },
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
            .chain(&args.allow_unencrypted_in)
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
            let unencrypted = if args.allow_unencrypted {
                Unencrypted::Allowed
            } else if args.allow_unencrypted_in.is_empty() {
                Unencrypted::Refused
            } else {
                Unencrypted::AllowedIn(args.allow_unencrypted_in)
            };
            Mode::Decrypt {
                key: args.key,
                passphrase,
                unencrypted,
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
        let jobs = wal_core::stage::jobs(args.jobs, default_jobs)?;
        Ok(Config {
            mode,
            jobs,
            temp_dir: args.temp_dir,
        })
    }

    /// The same configuration with `jobs` workers (0 means one per core, and more than
    /// [`MAX_JOBS`] means [`MAX_JOBS`]).
    #[must_use]
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = NonZeroUsize::new(jobs.min(MAX_JOBS)).unwrap_or_else(default_jobs);
        self
    }

    /// The same configuration with temporary files in `dir`.
    #[must_use]
    pub fn with_temp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_dir = Some(dir.into());
        self
    }

    /// The same configuration passing on the plain files `unencrypted` says (decryption
    /// only; encryption has no use for it).
    #[must_use]
    pub fn with_unencrypted(mut self, unencrypted: Unencrypted) -> Self {
        if let Mode::Decrypt {
            unencrypted: slot, ..
        } = &mut self.mode
        {
            *slot = unencrypted;
        }
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
            allow_unencrypted: false,
            allow_unencrypted_in: Vec::new(),
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
                passphrase: Some(Passphrase::File("pw".into())),
                unencrypted: Unencrypted::Refused,
            }
        );
        assert_eq!(config.jobs.get(), 3);
    }

    #[test]
    fn plain_files_are_refused_unless_allowed_everywhere_or_in_given_directories() {
        let decrypt = |allow_unencrypted, allow_unencrypted_in: &[&str]| {
            let config = Config::from_args(Args {
                decrypt: true,
                key: Some("secret.gpg".into()),
                allow_unencrypted,
                allow_unencrypted_in: allow_unencrypted_in.iter().map(PathBuf::from).collect(),
                ..args()
            })
            .unwrap();
            let Mode::Decrypt { unencrypted, .. } = config.mode else {
                panic!("decrypting");
            };
            unencrypted
        };
        assert_eq!(decrypt(false, &[]), Unencrypted::Refused);
        assert_eq!(decrypt(true, &["q"]), Unencrypted::Allowed);
        assert_eq!(
            decrypt(false, &["in", "st"]),
            Unencrypted::AllowedIn(vec!["in".into(), "st".into()])
        );
        let config = Config::decrypt(None, Some(Passphrase::File("pw".into())))
            .with_unencrypted(Unencrypted::Allowed);
        assert!(matches!(
            config.mode,
            Mode::Decrypt {
                unencrypted: Unencrypted::Allowed,
                ..
            }
        ));
    }

    #[test]
    fn debug_output_never_shows_a_passphrase_command() {
        let config = Config::encrypt_with(Passphrase::Command("echo hunter2".into()));
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Command(..)"), "{shown}");
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
    fn jobs_beyond_the_bound_are_refused_or_capped() {
        let config = Config::encrypt_to(vec!["a".into()]).with_jobs(100_000);
        assert_eq!(config.jobs.get(), MAX_JOBS);
    }

    #[test]
    fn zero_jobs_means_one_per_core() {
        let config = Config::encrypt_to(vec!["a".into()]).with_jobs(0);
        assert_eq!(config.jobs, default_jobs());
        assert_eq!(config.with_jobs(2).jobs.get(), 2);
    }
}
