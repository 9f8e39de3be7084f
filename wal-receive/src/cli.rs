//! The command line of wal-receive: the server's layout, how to reach PostgreSQL, and
//! what to do.

use clap::{Args as ClapArgs, Parser, Subcommand};
use wal_core::cli::{LayoutArgs, PgArgs};

/// The end of `wal-receive --help`.
const EXAMPLES: &str = r"  # once: a replication slot that keeps WAL for the receiver from now on
  wal-receive create-slot --home /var/lib/barman --server pg --slot walpipe \
    --dbname 'host=pg1 user=streaming_barman'
  # stream into /var/lib/barman/pg/streaming until SIGINT or SIGTERM (a service's ExecStart)
  wal-receive stream --home /var/lib/barman --server pg --slot walpipe \
    --dbname 'host=pg1 user=streaming_barman'
  # or from cron, as Barman's receive-wal: streams while it can, exit 75 if one already does
  * * * * * wal-receive stream --once --home /var/lib/barman --server pg --slot walpipe";

/// The end of `wal-receive stream --help`.
const STREAM_EXAMPLES: &str = r"  # keep streaming, creating the slot if missing (Barman's create_slot = auto)
  wal-receive stream --home /var/lib/barman --server pg --slot walpipe --create-slot \
    --dbname 'host=pg1 user=streaming_barman'
  # from cron, as Barman's receive-wal: streams while it can, exit 75 if one already does
  * * * * * wal-receive stream --once --home /var/lib/barman --server pg --slot walpipe";

/// The end of `wal-receive create-slot --help`.
const CREATE_SLOT_EXAMPLES: &str = r"  # keep WAL for the receiver from now on; a slot already there is fine
  wal-receive create-slot --home /var/lib/barman --server pg --slot walpipe --if-not-exists \
    --dbname 'host=pg1 user=streaming_barman'
  # drop it when the server is no longer streamed (refused while a receiver uses it)
  wal-receive drop-slot --home /var/lib/barman --server pg --slot walpipe \
    --dbname 'host=pg1 user=streaming_barman'";

/// The end of `wal-receive reset --help`.
const RESET_EXAMPLES: &str = r"  # the server removed the WAL the queue waits for: restart from the slot's position
  wal-receive reset --home /var/lib/barman --server pg --slot walpipe \
    --dbname 'host=pg1 user=streaming_barman'
  # without a slot: from the server's current WAL
  wal-receive reset --home /var/lib/barman --server pg --dbname 'host=pg1 user=streaming_barman'";

/// Streams a PostgreSQL server's WAL into walpipe's streaming queue with pg_receivewal,
/// over a replication slot, and keeps it streaming (Barman's `receive-wal`).
#[derive(Debug, Parser)]
#[command(name = "wal-receive", version, about)]
#[command(after_help = wal_core::cli::examples(EXAMPLES))]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// wal-receive's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run pg_receivewal into the streaming queue and keep it running: restarted with a
    /// growing pause (1 s doubling to --max-pause) after a transient failure (the server
    /// restarting, the network), stopped with exit 78 and one line saying why on a
    /// permanent one (a missing slot, WAL the server no longer has, authentication).
    /// SIGINT or SIGTERM stop pg_receivewal and then the receiver.
    #[command(after_help = wal_core::cli::examples(STREAM_EXAMPLES))]
    Stream {
        /// Where the server is and how to reach it.
        #[command(flatten)]
        server: ServerArgs,
        /// Run pg_receivewal once and end with it, as Barman's `receive-wal` (for cron):
        /// exit 0 when it ended by itself, 75 on a transient failure, 78 on a permanent
        /// one.
        #[arg(long, env = "WALPIPE_ONCE", value_parser = clap::builder::FalseyValueParser::new())]
        once: bool,
        /// Create the slot when it is missing (Barman's `create_slot = auto`).
        #[arg(long, env = "WALPIPE_CREATE_SLOT", value_parser = clap::builder::FalseyValueParser::new())]
        create_slot: bool,
        /// The longest pause between two restarts, in seconds (1 to 3600).
        #[arg(
            long,
            value_name = "SECS",
            env = "WALPIPE_MAX_PAUSE",
            default_value_t = 60
        )]
        max_pause: u64,
    },
    /// Create the physical replication slot --slot, reserving WAL from now on.
    #[command(after_help = wal_core::cli::examples(CREATE_SLOT_EXAMPLES))]
    CreateSlot {
        /// Where the server is and how to reach it.
        #[command(flatten)]
        server: ServerArgs,
        /// A slot of that name already there is no error.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Drop the replication slot --slot; refused while a receiver streams from it.
    DropSlot {
        /// Where the server is and how to reach it.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Realign the streaming queue with the server after it lost the WAL the queue
    /// waits for: the newest `.partial` is replaced by an empty `<segment>.partial` of
    /// the slot's restart position (without a slot, the server's current one). Refused
    /// while a receiver runs, and when the queue is ahead of the server.
    #[command(after_help = wal_core::cli::examples(RESET_EXAMPLES))]
    Reset {
        /// Where the server is and how to reach it.
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// The server: its walpipe layout, the connection, the slot, pg_receivewal.
#[derive(Debug, ClapArgs)]
pub struct ServerArgs {
    /// Where the server's files are (the streaming queue, the lock directory).
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// How to reach it.
    #[command(flatten)]
    pub pg: PgArgs,
}
