//! The command line of wal-store, and the resolved configuration the logic runs on.
//!
//! `Args` mirrors what the user typed (clap derive, every flag also from `WALPIPE_*`);
//! [`Config`] is what the rest of the crate sees: paths resolved, defaults applied.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use wal_core::WalError;
use wal_core::layout::ServerLayout;
use wal_core::xlogdb::Xlogdb;

use crate::cloud::CloudTarget;
use crate::cloud::connect::CloudOptions;
use crate::cloud::location::CloudLocation;

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
        /// Cloud archives, without --to/--to-dir: download each object here, as a temp
        /// file the record lists in `temps` [default: the system's temp directory].
        #[arg(long, value_name = "DIR", env = "WALPIPE_TEMP_DIR")]
        temp_dir: Option<PathBuf>,
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
    /// Print one record per archived file (name order), as `wal-scan archive` does.
    List {
        /// Where the archive is.
        #[command(flatten)]
        archive: ArchiveArgs,
    },
}

/// Flags shared by every subcommand: where the archive and its companions are.
#[derive(Debug, ClapArgs)]
pub struct ArchiveArgs {
    /// The archive: a directory (Barman's `wals_directory`), or `s3://BUCKET/PREFIX`,
    /// `az://CONTAINER/PREFIX`, `gs://BUCKET/PREFIX` (keys `PREFIX/SERVER/wals/…`, as
    /// barman-cloud names them).
    #[arg(long, env = "WALPIPE_ARCHIVE")]
    pub archive: String,
    /// Server name (names xlog.db `<server>-xlog.db` and the lock files).
    #[arg(long, env = "WALPIPE_SERVER")]
    pub server: String,
    /// Where conflicting and unknown files go [default: beside the archive: `../errors`].
    #[arg(long, env = "WALPIPE_ERRORS_DIR")]
    pub errors_dir: Option<PathBuf>,
    /// Where lock files go [default: Barman's home when the archive is `<home>/<server>/wals`, else the archive].
    #[arg(long, env = "WALPIPE_LOCK_DIR")]
    pub lock_dir: Option<PathBuf>,
    /// The xlog.db file [default: `<archive>/<server>-xlog.db`; none for a cloud archive].
    #[arg(long, env = "WALPIPE_XLOGDB")]
    pub xlogdb: Option<PathBuf>,
    /// How to reach a cloud archive.
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// Flags for cloud archives (ignored for a directory). Credentials come from where each
/// cloud's tools read them: `AWS_*` and `~/.aws`, `AZURE_STORAGE_CONNECTION_STRING` or
/// `AZURE_STORAGE_*`, `GOOGLE_APPLICATION_CREDENTIALS`.
#[derive(Debug, ClapArgs)]
pub struct CloudArgs {
    /// An S3-compatible server (`http://127.0.0.1:3900`), or an Azure blob endpoint
    /// [default: `AWS_ENDPOINT_URL`, the profile's `endpoint_url`, the connection string's].
    #[arg(long, value_name = "URL", env = "WALPIPE_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// The AWS profile to read from `~/.aws/credentials` and `~/.aws/config`
    /// [default: `AWS_PROFILE`, else `default`].
    #[arg(long, env = "WALPIPE_PROFILE")]
    pub profile: Option<String>,
    /// The S3 region [default: `AWS_REGION`, the profile's].
    #[arg(long, env = "WALPIPE_REGION")]
    pub region: Option<String>,
    /// Most seconds one record may take, retries included; then it fails as
    /// `temporary` (exit 75).
    #[arg(
        long,
        value_name = "SECS",
        env = "WALPIPE_TIMEOUT",
        default_value_t = 60.0
    )]
    pub timeout: f64,
    /// Most seconds one request may take.
    #[arg(
        long,
        value_name = "SECS",
        env = "WALPIPE_REQUEST_TIMEOUT",
        default_value_t = 30.0
    )]
    pub request_timeout: f64,
    /// Records uploaded, downloaded or deleted at once.
    #[arg(long, env = "WALPIPE_JOBS", default_value_t = 8)]
    pub jobs: usize,
    /// Objects up to this many MiB go up in one create-only request; larger ones in parts
    /// of this size (memory: about jobs × part size).
    #[arg(
        long,
        value_name = "MIB",
        env = "WALPIPE_PART_SIZE",
        default_value_t = 64
    )]
    pub part_size: usize,
}

impl CloudArgs {
    fn resolve(self) -> Result<CloudOptions, WalError> {
        let duration = |flag: &str, secs: f64| {
            if secs.is_finite() && secs > 0.0 {
                Ok(Duration::from_secs_f64(secs))
            } else {
                Err(WalError::Usage(format!(
                    "--{flag} {secs}: a positive number of seconds"
                )))
            }
        };
        if self.part_size < 5 || self.part_size > 4096 {
            return Err(WalError::Usage(format!(
                "--part-size {}: between 5 and 4096 MiB (S3's part limits)",
                self.part_size
            )));
        }
        Ok(CloudOptions {
            endpoint_url: self.endpoint_url,
            profile: self.profile,
            region: self.region,
            request_timeout: duration("request-timeout", self.request_timeout)?,
            deadline: duration("timeout", self.timeout)?,
            jobs: self.jobs.max(1),
            part_size: self.part_size << 20,
        })
    }
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

/// Where everything is, resolved: a local archive or a cloud one.
#[derive(Debug, Clone)]
pub enum Target {
    /// A directory in Barman's layout.
    Local(LocalTarget),
    /// A bucket or container.
    Cloud(CloudTarget),
}

impl Target {
    /// The server name.
    #[must_use]
    pub fn server(&self) -> &str {
        match self {
            Target::Local(local) => &local.layout.server,
            Target::Cloud(cloud) => &cloud.server,
        }
    }

    /// Where conflicting and unknown sources go, if anywhere.
    #[must_use]
    pub fn errors_dir(&self) -> Option<&Path> {
        match self {
            Target::Local(local) => Some(&local.layout.errors),
            Target::Cloud(cloud) => cloud.errors.as_deref(),
        }
    }

    /// The catalogue, if any.
    #[must_use]
    pub fn xlogdb(&self) -> Option<&Xlogdb> {
        match self {
            Target::Local(local) => Some(&local.xlogdb),
            Target::Cloud(cloud) => cloud.xlogdb.as_ref(),
        }
    }
}

/// A local archive, resolved.
#[derive(Debug, Clone)]
pub struct LocalTarget {
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
        if let Some(location) = CloudLocation::parse(&args.archive)? {
            let lock_dir = args.lock_dir;
            let xlogdb = args.xlogdb.map(|path| {
                let dir = lock_dir.clone().unwrap_or_else(|| {
                    path.parent()
                        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
                });
                let lock = wal_core::lock::xlogdb_lock_path(&dir, &args.server);
                Xlogdb::at(path, lock)
            });
            return Ok(Target::Cloud(CloudTarget {
                location,
                server: args.server,
                options: args.cloud.resolve()?,
                xlogdb,
                errors: args.errors_dir,
            }));
        }
        let archive = PathBuf::from(&args.archive);
        let mut layout = ServerLayout::from_archive(&archive, &args.server);
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
        Ok(Target::Local(LocalTarget { layout, xlogdb }))
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
        /// Where cloud downloads go without a destination.
        temp_dir: PathBuf,
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
    /// `list`.
    List {
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
                temp_dir,
            } => Config::Get {
                to: GetDestination::new(&names, to, to_dir)?,
                temp_dir: temp_dir.unwrap_or_else(std::env::temp_dir),
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
            Command::List { archive } => Config::List {
                target: archive.try_into()?,
            },
        })
    }
}
