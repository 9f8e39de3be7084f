//! The command line of wal-verify.

use clap::Parser;

/// The end of `wal-verify --help`.
const EXAMPLES: &str = r"  # is the archive restorable? every file read, every timeline checked (summary on stderr)
  wal-scan archive /var/lib/barman/pg/wals --server pg | wal-verify --deep > /dev/null
  # the WAL a base backup needs, catalogue and errors/ included, as JSON for a monitor
  wal-scan archive /var/lib/barman/pg/wals --server pg | wal-verify --json \
    --from 000000010000000A00000010 --to 000000010000000A00000018 \
    --xlogdb /var/lib/barman/pg/wals/pg-xlog.db --errors-dir /var/lib/barman/pg/errors
  # incremental: a re-run reads only what changed (wal-check check --verify-state reads it)
  wal-scan archive /var/lib/barman/pg/wals --server pg \
    | wal-verify --deep --state /var/lib/barman/pg/verify.state > /dev/null";

/// Verifies the archive whose records arrive on stdin (`wal-scan archive`): every file
/// is opened, decompressed and checked for the shape of WAL its name promises (with
/// --deep, every page header and record CRC), and every timeline for gaps along its history. Writes each
/// record back, a failed one with its `error`; a summary goes to stderr (or, with --json,
/// to stdout instead of the records).
///
/// Exit status: 0 everything holds; 65 a file is corrupt or WAL is missing; 64 bad usage;
/// 74 the record stream itself failed.
#[derive(Debug, Parser)]
#[command(name = "wal-verify", version, about)]
#[command(after_help = wal_core::cli::examples(EXAMPLES))]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent switches of the command line"
)]
pub struct Args {
    /// Check every page header of each segment (magic, flags, timeline, page address
    /// advancing page by page), not only the first, and the CRC of every WAL record that
    /// starts and ends in it.
    #[arg(long, env = "WALPIPE_DEEP", value_parser = clap::builder::FalseyValueParser::new())]
    pub deep: bool,
    /// Files verified at once [default: one per core].
    #[arg(long, value_name = "N", env = "WALPIPE_JOBS")]
    pub jobs: Option<usize>,
    /// Print the summary as JSON on stdout (instead of the records), for a monitor.
    #[arg(long)]
    pub json: bool,
    /// Look for gaps only from this WAL segment's position on (a base backup's first
    /// WAL, say), on any timeline.
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    /// Look for gaps only up to this WAL segment's position.
    #[arg(long, value_name = "NAME")]
    pub to: Option<String>,
    /// The archive's catalogue: each line must name a file that arrived, and each file
    /// that arrived must have a line (read without its lock, as a check reads it).
    #[arg(long, value_name = "PATH", env = "WALPIPE_XLOGDB")]
    pub xlogdb: Option<std::path::PathBuf>,
    /// The archive's errors directory: anything there (a conflict's `.duplicate`, an
    /// `.unknown`, a crash's temp) is a problem to look at.
    #[arg(long, value_name = "DIR", env = "WALPIPE_ERRORS_DIR")]
    pub errors_dir: Option<std::path::PathBuf>,
    /// Where an earlier stage wrote the plaintext of encrypted files (`wal-encrypt
    /// --decrypt --temp-dir DIR`): each record's temporary files there are removed once
    /// verified; nothing elsewhere is ever removed.
    #[arg(long, value_name = "DIR", env = "WALPIPE_TEMP_DIR")]
    pub temp_dir: Option<std::path::PathBuf>,
    /// Remember what was verified in FILE, and take a file as verified again when its
    /// size, modification time and inode are still those verified (at least as deep): a
    /// re-run over an unchanged archive reads nothing but the listing.
    #[arg(long, value_name = "FILE", env = "WALPIPE_VERIFY_STATE")]
    pub state: Option<std::path::PathBuf>,
    /// With --state: read every file again (the state is rewritten).
    #[arg(long, requires = "state")]
    pub full: bool,
    /// With --state: verify nothing; mark the records whose stored files the state still
    /// vouches for (`outcome: verified`) and pass every record on. Placed before the
    /// stages that download or decrypt (scripts/verify-wal does), so that a re-run
    /// fetches and decrypts only what changed; the last wal-verify checks the state
    /// again itself.
    #[arg(long, requires = "state", conflicts_with_all = ["json", "full"])]
    pub recall: bool,
}
