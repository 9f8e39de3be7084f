//! The command line of wal-store, and the resolved configuration the logic runs on.
//!
//! `Args` mirrors what the user typed (clap derive, every flag also from `WALPIPE_*`);
//! [`Config`] is what the rest of the crate sees: paths resolved, defaults applied.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};
use wal_core::WalError;
use wal_core::layout::ServerLayout;
use wal_core::xlogdb::Xlogdb;

/// Stores WAL files into an archive, gets them back, deletes them, and keeps xlog.db.
#[derive(Debug, Parser)]
#[command(name = "wal-store", version, about)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// wal-store's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store the files of the input records (stdin) durably; print them with `outcome`.
    Put {
        /// Where the archive is.
        #[command(flatten)]
        archive: ArchiveArgs,
        /// Store into a flat queue directory (archive_command's hand-off to the incoming
        /// queue): no hash directories, no xlog.db, and a different file of the same name
        /// fails the record instead of going to errors/.
        #[arg(long, env = "WALPIPE_QUEUE")]
        queue: bool,
        /// Leave the source files in place (Barman's `skip_delete`; for pg_wal files).
        #[arg(long, env = "WALPIPE_KEEP_SOURCE")]
        keep_source: bool,
        /// Also print Barman's archive-wal lines (`\t<name>`, duplicates, unknown files) to stderr.
        #[arg(long, env = "WALPIPE_REPORT")]
        report: bool,
        /// Most records stored per xlog.db fsync.
        #[arg(long, env = "WALPIPE_MAX_BATCH", default_value_t = 256)]
        max_batch: usize,
        /// How to decrypt an encrypted copy to compare it with a re-delivered WAL.
        #[command(flatten)]
        decryption: DecryptArgs,
    },
    /// Find archived files (NAME...), or write out the files of the records on stdin.
    ///
    /// With NAMEs: each is looked up where Barman's `get-wal` looks (the archive, then the
    /// incoming and streaming queues) and printed as a record pointing at the file where
    /// it is, its compression identified by magic; with --to/--to-dir it is first copied
    /// out as stored. Exit 66 when a NAME is not in the archive (one line each on stderr;
    /// the others are still printed).
    ///
    /// Without NAMEs: the records on stdin (typically from `wal-compress --decompress`)
    /// are written to --to PATH (one record) or into --to-dir DIR under their names, each
    /// durably (temp in the destination directory, fsync, rename without replacing, fsync
    /// the directory). A record's file that is one of its `temps` is moved, others are
    /// copied; the other temps are removed. Records failed upstream pass through.
    Get {
        /// Where the archive is.
        #[command(flatten)]
        archive: ArchiveArgs,
        /// WAL file names to look up; none to write out the records read on stdin.
        names: Vec<String>,
        /// When a segment is not found, look for its `.partial` too (Barman's
        /// `get-wal --partial`: the end of a streamed timeline). Ignored without NAMEs.
        #[arg(long, env = "WALPIPE_PARTIAL")]
        partial: bool,
        /// Write the file to PATH (must not exist).
        #[arg(long, value_name = "PATH", conflicts_with = "to_dir")]
        to: Option<PathBuf>,
        /// Write each file into DIR, under its WAL name (which must not exist there).
        #[arg(long, value_name = "DIR")]
        to_dir: Option<PathBuf>,
    },
    /// Delete the archived files of the input records; print them with `outcome: deleted`.
    Delete {
        /// Where the archive is.
        #[command(flatten)]
        archive: ArchiveArgs,
    },
    /// Rewrite xlog.db from what the archive holds.
    RebuildXlogdb {
        /// Where the archive is.
        #[command(flatten)]
        archive: ArchiveArgs,
    },
}

/// Flags shared by every subcommand: where the archive and its companions are.
#[derive(Debug, ClapArgs)]
pub struct ArchiveArgs {
    /// The archive directory (Barman's `wals_directory`).
    #[arg(long, env = "WALPIPE_ARCHIVE")]
    pub archive: PathBuf,
    /// Server name (names xlog.db `<server>-xlog.db` and the lock files).
    #[arg(long, env = "WALPIPE_SERVER")]
    pub server: String,
    /// Where conflicting and unknown files go [default: beside the archive: `../errors`].
    #[arg(long, env = "WALPIPE_ERRORS_DIR")]
    pub errors_dir: Option<PathBuf>,
    /// Where lock files go [default: Barman's home when the archive is `<home>/<server>/wals`, else the archive].
    #[arg(long, env = "WALPIPE_LOCK_DIR")]
    pub lock_dir: Option<PathBuf>,
    /// The xlog.db file [default: `<archive>/<server>-xlog.db`].
    #[arg(long, env = "WALPIPE_XLOGDB")]
    pub xlogdb: Option<PathBuf>,
}

/// `put`'s flags for comparing encrypted copies (as `wal-encrypt --decrypt` takes them).
///
/// A duplicate whose stored copy is encrypted is compared after decryption by
/// `wal-encrypt --decrypt` (found next to this executable); without a key or passphrase
/// it cannot be compared and is a conflict, as in Barman.
#[derive(Debug, ClapArgs)]
pub struct DecryptArgs {
    /// The secret key to decrypt encrypted copies with (`gpg --export-secret-keys` output).
    #[arg(long, value_name = "KEY", env = "WALPIPE_KEY")]
    pub key: Option<PathBuf>,
    /// The passphrase of --key (or of symmetrically encrypted copies) is the first line
    /// of FILE.
    #[arg(
        long,
        value_name = "FILE",
        env = "WALPIPE_PASSPHRASE_FILE",
        conflicts_with = "passphrase_command"
    )]
    pub passphrase_file: Option<PathBuf>,
    /// The passphrase is what CMD (run with `sh -c`) prints (Barman's
    /// `encryption_passphrase_command`).
    #[arg(long, value_name = "CMD", env = "WALPIPE_PASSPHRASE_COMMAND")]
    pub passphrase_command: Option<String>,
}

/// Where a passphrase comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    /// The first line of this file.
    File(PathBuf),
    /// What this shell command prints.
    Command(String),
}

/// How to decrypt encrypted copies, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decryption {
    /// The secret key file.
    pub key: Option<PathBuf>,
    /// Its passphrase, or the passphrase of symmetric messages.
    pub passphrase: Option<PassphraseSource>,
}

impl DecryptArgs {
    /// `None` when neither a key nor a passphrase is given.
    fn resolve(self) -> Option<Decryption> {
        let passphrase = match (self.passphrase_file, self.passphrase_command) {
            (Some(file), _) => Some(PassphraseSource::File(file)),
            (None, Some(command)) => Some(PassphraseSource::Command(command)),
            (None, None) => None,
        };
        (self.key.is_some() || passphrase.is_some()).then_some(Decryption {
            key: self.key,
            passphrase,
        })
    }
}

/// Where everything is, resolved.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's directories.
    pub layout: ServerLayout,
    /// The catalogue.
    pub xlogdb: Xlogdb,
}

impl TryFrom<ArchiveArgs> for Target {
    type Error = WalError;

    fn try_from(args: ArchiveArgs) -> Result<Self, WalError> {
        if args.server.is_empty() || args.server.contains('/') {
            return Err(WalError::Usage(format!(
                "--server {:?}: a server name is a non-empty name without '/'",
                args.server
            )));
        }
        let mut layout = ServerLayout::from_archive(&args.archive, &args.server);
        if let Some(errors) = args.errors_dir {
            layout.errors = errors;
        }
        if let Some(lock_dir) = args.lock_dir {
            layout.lock_dir = lock_dir;
        }
        let xlogdb = match args.xlogdb {
            Some(path) => Xlogdb::at(
                path,
                wal_core::lock::xlogdb_lock_path(&layout.lock_dir, &layout.server),
            ),
            None => layout.xlogdb(),
        };
        Ok(Target { layout, xlogdb })
    }
}

/// The resolved work to do.
#[derive(Debug, Clone)]
pub enum Config {
    /// `put`.
    Put {
        /// Where to store.
        target: Target,
        /// Flat queue instead of an archive.
        queue: bool,
        /// Keep sources.
        keep_source: bool,
        /// Print Barman's lines.
        report: bool,
        /// Records per xlog.db fsync.
        max_batch: usize,
        /// How to decrypt encrypted copies to compare them.
        decryption: Option<Decryption>,
    },
    /// `get`.
    Get {
        /// Where from.
        target: Target,
        /// Which files; empty: the records read on stdin.
        names: Vec<String>,
        /// Also look for `<segment>.partial`.
        partial: bool,
        /// Where to.
        to: GetDestination,
    },
    /// `delete`.
    Delete {
        /// Where from.
        target: Target,
    },
    /// `rebuild-xlogdb`.
    RebuildXlogdb {
        /// Which archive.
        target: Target,
    },
}

/// Where `get` writes the files it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetDestination {
    /// Nowhere: print records pointing at the files where they are.
    InPlace,
    /// One file, at this path (`--to`).
    File(PathBuf),
    /// Each file into this directory, under its WAL name (`--to-dir`).
    Dir(PathBuf),
}

impl GetDestination {
    /// Checks that the flags of `get` make sense together.
    fn new(
        names: &[String],
        to: Option<PathBuf>,
        to_dir: Option<PathBuf>,
    ) -> Result<Self, WalError> {
        let destination = match (to, to_dir) {
            (Some(path), _) => GetDestination::File(path),
            (None, Some(dir)) => GetDestination::Dir(dir),
            (None, None) => GetDestination::InPlace,
        };
        if names.is_empty() && destination == GetDestination::InPlace {
            return Err(WalError::Usage(
                "get: give the WAL names to look up, or --to PATH or --to-dir DIR to \
                 write out the records read on stdin"
                    .into(),
            ));
        }
        if names.len() > 1 && matches!(destination, GetDestination::File(_)) {
            return Err(WalError::Usage(
                "get: --to PATH takes one name; use --to-dir DIR for several".into(),
            ));
        }
        Ok(destination)
    }
}

impl TryFrom<Args> for Config {
    type Error = WalError;

    fn try_from(args: Args) -> Result<Self, WalError> {
        Ok(match args.command {
            Command::Put {
                archive,
                queue,
                keep_source,
                report,
                max_batch,
                decryption,
            } => Config::Put {
                target: archive.try_into()?,
                queue,
                keep_source,
                report,
                max_batch: max_batch.max(1),
                decryption: decryption.resolve(),
            },
            Command::Get {
                archive,
                names,
                partial,
                to,
                to_dir,
            } => Config::Get {
                to: GetDestination::new(&names, to, to_dir)?,
                target: archive.try_into()?,
                names,
                partial,
            },
            Command::Delete { archive } => Config::Delete {
                target: archive.try_into()?,
            },
            Command::RebuildXlogdb { archive } => Config::RebuildXlogdb {
                target: archive.try_into()?,
            },
        })
    }
}
