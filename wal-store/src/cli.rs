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
    },
    /// Copy one archived file out as stored, to PATH; print its record.
    Get {
        /// Where the archive is.
        #[command(flatten)]
        archive: ArchiveArgs,
        /// The WAL file name.
        name: String,
        /// Where to write it (must not exist).
        #[arg(long)]
        to: PathBuf,
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
    },
    /// `get`.
    Get {
        /// Where from.
        target: Target,
        /// Which file.
        name: String,
        /// Where to.
        to: PathBuf,
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
            } => Config::Put {
                target: archive.try_into()?,
                queue,
                keep_source,
                report,
                max_batch: max_batch.max(1),
            },
            Command::Get { archive, name, to } => Config::Get {
                target: archive.try_into()?,
                name,
                to,
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
