//! The command line as typed: clap's view of argv and of the `WALPIPE_*` environment.
//!
//! Nothing here is interpreted; [`crate::Config::from_args`] validates these values and
//! fills in defaults, and the rest of the crate sees only that `Config` (the raw/resolved
//! split of ripgrep's LowArgs/HiArgs).

use std::path::PathBuf;

use clap::builder::FalseyValueParser;
use clap::{Args as ClapArgs, Parser, Subcommand};

/// The end of `wal-scan --help`.
const EXAMPLES: &str = r"  # archive the incoming queue, zstd-compressed, into Barman's layout (archive-wal's pipeline)
  wal-scan incoming /var/lib/barman/pg/incoming | wal-compress --algorithm zstd \
    | wal-store put --home /var/lib/barman --server pg
  # hand one WAL file (archive_command's %p) over to the incoming queue, durably
  wal-scan file pg_wal/000000010000000A00000042 \
    | wal-store put --queue --keep-source --server pg --archive /var/lib/barman/pg/incoming
  # is the archive restorable? every file read, every timeline checked for gaps
  wal-scan archive /var/lib/barman/pg/wals --server pg | wal-verify --deep > /dev/null";

/// The end of `wal-scan incoming --help`.
const INCOMING_EXAMPLES: &str = r"  # archive the queue, zstd-compressed, into Barman's layout (archive-wal's pipeline)
  wal-scan incoming /var/lib/barman/pg/incoming | wal-compress --algorithm zstd \
    | wal-store put --home /var/lib/barman --server pg
  # what the next run would take: the first 100 entries, names and kinds (or errors)
  wal-scan incoming /var/lib/barman/pg/incoming --batch-size 100 | jq -c '{name, kind, error}'";

/// The end of `wal-scan streaming --help`.
const STREAMING_EXAMPLES: &str = r"  # archive what wal-receive streamed (the newest .partial stays for pg_receivewal)
  wal-scan streaming /var/lib/barman/pg/streaming | wal-compress --algorithm zstd \
    | wal-store put --home /var/lib/barman --server pg
  # at most 50 segments a run (Barman's streaming_archiver_batch_size)
  wal-scan streaming /var/lib/barman/pg/streaming --batch-size 50 \
    | wal-compress --algorithm zstd | wal-store put --home /var/lib/barman --server pg";

/// The end of `wal-scan file --help`.
const FILE_EXAMPLES: &str = r"  # archive_command's hand-off: a durable copy of %p into the incoming queue
  wal-scan file pg_wal/000000010000000A00000042 \
    | wal-store put --queue --keep-source --server pg --archive /var/lib/barman/pg/incoming
  # straight into the archive, compressed (archive-command --direct; no temps in pg_wal)
  wal-scan file pg_wal/000000010000000A00000042 \
    | wal-compress --algorithm zstd --temp-dir /var/lib/barman/pg/wals \
    | wal-store put --home /var/lib/barman --server pg --keep-source \
        --temp-dir /var/lib/barman/pg/wals";

/// The end of `wal-scan archive --help`.
const ARCHIVE_EXAMPLES: &str = r#"  # is the archive restorable? every file read, every timeline checked for gaps
  wal-scan archive /var/lib/barman/pg/wals --server pg | wal-verify --deep > /dev/null
  # retention by hand: delete every segment archived before 000000010000000A00000000
  wal-scan archive /var/lib/barman/pg/wals --server pg \
    | jq -c 'select(.kind == "segment" and .name < "000000010000000A00000000")' \
    | wal-store delete --home /var/lib/barman --server pg
  # a cloud archive (listed by wal-store list; credentials from AWS_* or ~/.aws)
  wal-scan archive s3://backups/walpipe --server pg --endpoint-url http://127.0.0.1:3900"#;

/// `wal-scan`: list WAL files as records, one JSON object per line on stdout.
#[derive(Debug, Parser)]
#[command(name = "wal-scan", version, about, long_about = None)]
#[command(after_help = wal_core::cli::examples(EXAMPLES))]
pub struct Args {
    /// What to scan.
    #[command(subcommand)]
    pub command: Command,
    /// Queues and named files: take a plain (neither compressed nor encrypted) file for
    /// WAL without checking that it has WAL's shape for its name (a segment of exactly
    /// its segment size opening with a PostgreSQL page header whose address matches the
    /// name; a history file or backup label of their grammar).
    #[arg(long, global = true, env = "WALPIPE_NO_HEADER_CHECK", value_parser = FalseyValueParser::new())]
    pub no_header_check: bool,
}

/// The four things wal-scan can list.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The archive_command drop queue (Barman's incoming directory, "file archival").
    ///
    /// Entries are sorted by name; with a batch size only the first N are looked at.
    /// WAL files become records (compression, or an OpenPGP encryption, sniffed from
    /// their first bytes); other entries become error records of kind `unknown`, for
    /// wal-store to move to errors/.
    #[command(after_help = wal_core::cli::examples(INCOMING_EXAMPLES))]
    Incoming(QueueArgs),
    /// The pg_receivewal queue (Barman's streaming directory).
    ///
    /// As `incoming`, but nothing is sniffed, `.partial` files are held back, and one
    /// file is always left for pg_receivewal to find its restart position.
    #[command(after_help = wal_core::cli::examples(STREAMING_EXAMPLES))]
    Streaming(QueueArgs),
    /// Records for the given files (archive_command's `%p`).
    ///
    /// A named file must be a WAL file: a regular file (not a symbolic link) with a WAL
    /// name. Anything else fails its record, and the first failed file sets the exit
    /// status: 66 missing, 65 not a WAL file, 74 unreadable.
    #[command(after_help = wal_core::cli::examples(FILE_EXAMPLES))]
    File(FileArgs),
    /// What an archive holds, one record per archived file in name order.
    ///
    /// A directory is read here; a cloud archive (any `scheme://` URL) is listed by
    /// the `wal-store list` installed next to wal-scan, with the cloud flags below and the
    /// cloud's own credentials from the environment.
    #[command(after_help = wal_core::cli::examples(ARCHIVE_EXAMPLES))]
    Archive(ArchiveArgs),
}

/// Arguments of the two queue scans.
#[derive(Debug, ClapArgs)]
pub struct QueueArgs {
    /// The queue directory.
    pub dir: PathBuf,
    /// Look at the first N entries only (0: all); `.tmp` and bad entries use up slots.
    #[arg(
        long,
        value_name = "N",
        env = "WALPIPE_BATCH_SIZE",
        default_value_t = 0
    )]
    pub batch_size: usize,
    /// Server name for messages [default: the name of DIR's parent directory].
    #[arg(long, value_name = "NAME", env = "WALPIPE_SERVER")]
    pub server: Option<String>,
}

/// Arguments of `wal-scan file`.
#[derive(Debug, ClapArgs)]
pub struct FileArgs {
    /// The files.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also archive ahead (archive-command's look-ahead): after the one named file, up to
    /// N segments after it that PostgreSQL has marked ready (`archive_status/<name>.ready`
    /// beside it), in name order, each a record with `ahead` set (worked on only for
    /// --look-ahead-time; its failure fails no call). `auto`: twice the cores less one
    /// (two rounds of work for every core).
    #[arg(long, value_name = "N|auto")]
    pub look_ahead: Option<String>,
    /// With --look-ahead: seconds the look-ahead records may be worked on, from now; the
    /// stages leave those not done by then to PostgreSQL's own calls.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub look_ahead_time: f64,
    /// With --look-ahead: the look-ahead marks (`wal-store put --marks`): a segment
    /// marked there is stored already, and not looked ahead again.
    #[arg(long, value_name = "DIR")]
    pub marks: Option<PathBuf>,
}

/// Arguments of `wal-scan archive`.
#[derive(Debug, ClapArgs)]
pub struct ArchiveArgs {
    /// The archive: a directory (Barman's `wals_directory`), or `s3://BUCKET/PREFIX`,
    /// `az://CONTAINER/PREFIX`, `gs://BUCKET/PREFIX` or barman-cloud's
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX` (keys `PREFIX/NAME/wals/…`).
    #[arg(value_name = "DIR|URL")]
    pub dir: PathBuf,
    /// Server name: the catalogue is `DIR/NAME-xlog.db` (required unless --xlogdb is given;
    /// always required for a cloud archive).
    #[arg(long, value_name = "NAME", env = "WALPIPE_SERVER")]
    pub server: Option<String>,
    /// The xlog.db catalogue to take compression and encryption from (local archives: a
    /// cloud archive's keys say how each file is stored).
    #[arg(long, value_name = "PATH", env = "WALPIPE_XLOGDB")]
    pub xlogdb: Option<PathBuf>,
    /// How to reach a cloud archive.
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// Flags for a cloud archive (ignored for a directory), passed on to `wal-store list`.
/// Credentials come from where each cloud's tools read them: `AWS_*` and `~/.aws`,
/// `AZURE_STORAGE_CONNECTION_STRING` or `AZURE_STORAGE_*`, `GOOGLE_APPLICATION_CREDENTIALS`.
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct CloudArgs {
    /// An S3-compatible server (`http://127.0.0.1:3900`), or an Azure blob endpoint
    /// [default: `AWS_ENDPOINT_URL`, the profile's, the connection string's].
    #[arg(long, value_name = "URL", env = "WALPIPE_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// The AWS profile to read from `~/.aws` [default: `AWS_PROFILE`, else `default`].
    #[arg(long, value_name = "NAME", env = "WALPIPE_PROFILE")]
    pub profile: Option<String>,
    /// The S3 region [default: `AWS_REGION`, the profile's].
    #[arg(long, value_name = "REGION", env = "WALPIPE_REGION")]
    pub region: Option<String>,
    /// Most seconds the listing may take, retries included; then it fails as `temporary`
    /// (exit 75) [default: wal-store's, 60].
    #[arg(long, value_name = "SECS", env = "WALPIPE_TIMEOUT")]
    pub timeout: Option<f64>,
    /// Most seconds one request may take [default: wal-store's, 30].
    #[arg(long, value_name = "SECS", env = "WALPIPE_REQUEST_TIMEOUT")]
    pub request_timeout: Option<f64>,
}
