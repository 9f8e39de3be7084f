//! The command line of wal-spool: where the spool and the archive it stands for are, and
//! the two operations restore-wal needs.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};
use wal_core::cli::LayoutArgs;

/// The end of `wal-spool --help`.
const EXAMPLES: &str = r"  # restore_command with prefetch (restore-wal --prefetch 4): take %f from the spool first
  wal-spool take 000000010000000A00000042 --to pg_wal/RECOVERYXLOG --prefetch 4 \
    --home /var/lib/barman --server pg
  # claim the next segments for this worker: prints the spool, then the names to fetch
  wal-spool plan 000000010000000A00000042 --prefetch 4 --worker $$ \
    --home /var/lib/barman --server pg";

/// Takes prefetched WAL segments out of restore-wal's spool, and plans what its
/// background fetch claims next.
#[derive(Debug, Parser)]
#[command(name = "wal-spool", version, about)]
#[command(after_help = wal_core::cli::examples(EXAMPLES))]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// wal-spool's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Move the spooled segment NAME to --to PATH durably, waiting for it while a
    /// prefetch is fetching it. Exit 0 when taken, 66 (silently) when the spool holds no
    /// current copy of it (the caller then restores NAME from the archive), 75 when it is
    /// in flight and --wait is 0.
    Take {
        /// Where the spool is and which archive it stands for.
        #[command(flatten)]
        spool: SpoolArgs,
        /// The segment PostgreSQL asks for (`%f`).
        name: String,
        /// Where PostgreSQL wants it (`%p`); must not exist.
        #[arg(long, value_name = "PATH")]
        to: PathBuf,
        /// Most seconds to wait for a segment a live prefetch is fetching; 0: do not wait,
        /// exit 75 (the caller may start the next prefetch, then take again).
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        wait: u32,
        /// Print `prefetch` when at least half of the N segments after NAME are neither
        /// spooled nor being fetched, and NAME is taken, in flight or (a local archive)
        /// there to restore: the caller then starts a prefetch.
        #[arg(long, value_name = "N", env = "WALPIPE_PREFETCH")]
        prefetch: Option<u16>,
    },
    /// Under the spool's lock: remove what lies outside NAME's window (NAME and the N
    /// segments after it) and spooled files that no longer stand for the archive's, then,
    /// when at least half of the window's segments after NAME are neither spooled nor
    /// being fetched, claim those for --worker and print the spool directory, then
    /// their names, one a line (nothing at all when there is nothing to fetch).
    Plan {
        /// Where the spool is and which archive it stands for.
        #[command(flatten)]
        spool: SpoolArgs,
        /// The segment just restored.
        name: String,
        /// How many segments after NAME to keep spooled (at most 999).
        #[arg(long, value_name = "N", env = "WALPIPE_PREFETCH")]
        prefetch: u16,
        /// The process that fetches the claimed names (its claims last while it runs).
        #[arg(long, value_name = "PID")]
        worker: i32,
        /// The file NAME was just restored to (`%p`): its page header gives the cluster's
        /// segment size, which names the segments that follow.
        #[arg(long, value_name = "PATH")]
        restored: Option<PathBuf>,
    },
}

/// Where the spool is, and the archive whose files it holds copies of.
#[derive(Debug, ClapArgs)]
pub struct SpoolArgs {
    /// Where the server's files are.
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// A cloud archive's endpoint: with the URL, it names the default spool (the same
    /// bucket on two servers is two archives) [default: `AWS_ENDPOINT_URL`].
    #[arg(long, value_name = "URL", env = "WALPIPE_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// The spool directory [default:
    /// `/var/tmp/walpipe-restore-<uid>/<server>-<hash of the archive>`].
    #[arg(long, value_name = "DIR", env = "WALPIPE_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
}
