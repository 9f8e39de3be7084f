//! The command line of wal-check: the server's layout, how to reach PostgreSQL, which
//! archivers feed the archive, the limits to check against, the output form.

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};
use wal_core::cli::{LayoutArgs, PgArgs};

/// The end of `wal-check --help`.
const EXAMPLES: &str = r"  # Barman's check for the WAL side (exit 1 when an item failed)
  wal-check check --home /var/lib/barman --server pg \
    --dbname 'host=pg1 user=barman dbname=postgres'
  # for Nagios (exit 0, 2 or 3), the streaming receiver and its slot checked too
  wal-check check --home /var/lib/barman --server pg --nagios \
    --streaming-archiver on --slot walpipe
  # from cron every minute: the figures as Prometheus gauges for node_exporter
  wal-check status --home /var/lib/barman --server pg \
    --prometheus /var/lib/node_exporter/walpipe.prom > /dev/null";

/// The end of `wal-check check --help`.
const CHECK_EXAMPLES: &str = r"  # the newest WAL at most an hour old, at most 10 WAL files waiting in each queue
  wal-check check --home /var/lib/barman --server pg \
    --last-wal-maximum-age '1 hour' --max-incoming-wals-queue 10
  # for Nagios, with the last verify-wal --state verdict as an item
  wal-check check --home /var/lib/barman --server pg --nagios \
    --verify-state /var/lib/barman/pg/verify.state";

/// The end of `wal-check status --help`.
const STATUS_EXAMPLES: &str = r"  # how archiving goes, with the receiver, its lag and the WAL its slot keeps
  wal-check status --home /var/lib/barman --server pg --streaming-archiver on --slot walpipe
  # from cron every minute: the figures as Prometheus gauges for node_exporter
  wal-check status --home /var/lib/barman --server pg \
    --prometheus /var/lib/node_exporter/walpipe.prom > /dev/null";

/// Checks a PostgreSQL server and its walpipe archive as `barman check` does for the WAL
/// side: one line per item, `OK` or `FAILED (hint)`; exit 1 when an item failed.
#[derive(Debug, Parser)]
#[command(name = "wal-check", version, about)]
#[command(after_help = wal_core::cli::examples(EXAMPLES))]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Args {
    /// Whether the output is Nagios' (errors are then reported as UNKNOWN).
    #[must_use]
    pub fn nagios(&self) -> bool {
        match &self.command {
            Command::Check { output, .. } => output.nagios,
            Command::Status { .. } => false,
        }
    }
}

/// wal-check's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Barman's WAL-side check items, each `OK` or `FAILED (hint)`: the WAL archive, the
    /// queues, PostgreSQL, the replication slot, the newest WAL's age, the archive's size,
    /// the system identifier, archive_mode, archive_command, continuous archiving,
    /// pg_receivewal, the receiver, errors/.
    #[command(after_help = wal_core::cli::examples(CHECK_EXAMPLES))]
    Check {
        /// The server and its archive.
        #[command(flatten)]
        server: ServerArgs,
        /// What to check against.
        #[command(flatten)]
        limits: LimitArgs,
        /// The output form.
        #[command(flatten)]
        output: OutputArgs,
    },
    /// How archiving goes: Barman's `status` lines for the WAL side (PostgreSQL's
    /// version, state and current WAL, archive_command, the last archived and failed WAL,
    /// the rate), then the receiver (state, last received WAL, lag, the WAL its slot
    /// keeps) and the archive (WAL per timeline, size, queues).
    #[command(after_help = wal_core::cli::examples(STATUS_EXAMPLES))]
    Status {
        /// The server and its archive.
        #[command(flatten)]
        server: ServerArgs,
        /// Barman's `-f json`: `{"SERVER": {"key": {"description": …, "message": …}}}`.
        #[arg(long)]
        json: bool,
        /// Also write the figures as Prometheus gauges to FILE (replaced whole: for
        /// node_exporter's textfile collector, a `*.prom` file in its directory).
        #[arg(long, value_name = "FILE", env = "WALPIPE_STATUS_PROMETHEUS")]
        prometheus: Option<std::path::PathBuf>,
    },
}

/// Barman's `on`/`off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// The server: its walpipe layout, the connection, which archivers feed it.
#[derive(Debug, ClapArgs)]
pub struct ServerArgs {
    /// Where the server's files are.
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// How to reach it.
    #[command(flatten)]
    pub pg: PgArgs,
    /// Whether archive_command feeds the archive (Barman's `archiver`): its items
    /// (archive_mode, archive_command, continuous archiving) are checked; off, the
    /// incoming queue must be empty.
    #[arg(long, value_enum, env = "WALPIPE_ARCHIVER", default_value = "on")]
    pub archiver: OnOff,
    /// Whether wal-receive feeds the streaming queue (Barman's `streaming_archiver`):
    /// pg_receivewal, the receiver and the slot are checked; off, the streaming queue
    /// must be empty.
    #[arg(
        long,
        value_enum,
        env = "WALPIPE_STREAMING_ARCHIVER",
        default_value = "off"
    )]
    pub streaming_archiver: OnOff,
}

/// The limits (Barman's options of the same names).
#[derive(Debug, ClapArgs)]
pub struct LimitArgs {
    /// The newest archived WAL may be at most this old: `N hours`, `N days`, `N weeks`,
    /// `N months` (Barman's forms; also `N minutes`, `N seconds`).
    #[arg(long, value_name = "AGE", env = "WALPIPE_LAST_WAL_MAXIMUM_AGE")]
    pub last_wal_maximum_age: Option<String>,
    /// At most this many WAL files may wait in each queue.
    #[arg(long, value_name = "N", env = "WALPIPE_MAX_INCOMING_WALS_QUEUE")]
    pub max_incoming_wals_queue: Option<u64>,
    /// Barman's `check_timeout`, in seconds (1 to 3600): when nothing was ever archived,
    /// the check switches WAL and waits a third of this for it to arrive.
    #[arg(
        long,
        value_name = "SECS",
        env = "WALPIPE_CHECK_TIMEOUT",
        default_value_t = 30
    )]
    pub check_timeout: u64,
    /// wal-verify's state file (`verify-wal --state FILE`): its last verdict is the item
    /// `archive verify`.
    #[arg(long, value_name = "FILE", env = "WALPIPE_VERIFY_STATE")]
    pub verify_state: Option<std::path::PathBuf>,
}

/// How to print the report.
#[derive(Debug, ClapArgs)]
pub struct OutputArgs {
    /// Barman's `--nagios`: one status line (`BARMAN OK - …`, `BARMAN CRITICAL - …`) with
    /// the WAL size as perfdata, then a line per failed item; exit 0, 2 (an item failed)
    /// or 3 (the check could not run).
    #[arg(long, conflicts_with = "json")]
    pub nagios: bool,
    /// Barman's `-f json`: `{"SERVER": {"item_name": {"status": "OK", "hint": ""}}}`.
    #[arg(long)]
    pub json: bool,
    /// Also write each item's verdict as a Prometheus gauge to FILE
    /// (`walpipe_check_ok{server,item}`, replaced whole: for node_exporter's textfile
    /// collector).
    #[arg(long, value_name = "FILE", env = "WALPIPE_CHECK_PROMETHEUS")]
    pub prometheus: Option<std::path::PathBuf>,
}
