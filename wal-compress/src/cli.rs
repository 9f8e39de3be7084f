//! The command line, exactly as typed: flags, their environment variables and their help.
//!
//! Parsing only checks that each value is well-formed; defaults that depend on the
//! machine (the number of cores) and the rules that tie flags together belong to
//! [`crate::Config`], which is all the rest of the crate sees (ripgrep's LowArgs/HiArgs).

use std::path::PathBuf;

use clap::Parser;
use wal_core::Compression;
use wal_core::codec::Level;

/// The end of `wal-compress --help`.
const EXAMPLES: &str = r"  # archive the incoming queue with zstd at level 3 (archive-wal's pipeline)
  wal-scan incoming /var/lib/barman/pg/incoming | wal-compress --algorithm zstd --level 3 \
    | wal-store put --home /var/lib/barman --server pg
  # restore one WAL decompressed to pg_wal/RECOVERYXLOG (restore-wal's; temps beside %p)
  wal-store get --home /var/lib/barman --server pg 000000010000000A00000042 \
    | wal-compress --decompress --temp-dir pg_wal \
    | wal-store place --home /var/lib/barman --server pg --to pg_wal/RECOVERYXLOG";

/// Compress (or decompress) the WAL file each record points at.
///
/// Reads WAL records (NDJSON, one per line) on stdin and writes them to stdout in the
/// same order. Each healthy record's file is compressed into a hidden temporary file,
/// `.<name>.compressed`, next to it (or in --temp-dir); the record then points at the
/// temporary file, with `compression` and `size` updated and the file listed in `temps`
/// for wal-store to remove once stored. The source file is never touched. Records that
/// are already compressed or encrypted pass through unchanged, as Barman never
/// re-compresses.
///
/// With --decompress, files that are compressed (by the record's `compression`, or by
/// their magic bytes when it is null) are decompressed into `.<name>.decompressed`.
///
/// Exit status: 0 all records done, 1 some records failed (their `error` says why),
/// 64 bad usage, 65 input lines that are not records, 73 --temp-dir unusable, 74 the
/// record stream itself failed (stdin unreadable, stdout closed).
#[derive(Debug, Clone, Parser)]
#[command(name = "wal-compress", version, max_term_width = 100)]
#[command(after_help = wal_core::cli::examples(EXAMPLES))]
pub struct Args {
    /// Decompress instead of compressing (--algorithm and --level are then ignored).
    #[arg(long)]
    pub decompress: bool,

    /// Compression algorithm: gzip, bzip2, xz, zstd, lz4 or snappy [default: zstd].
    #[arg(long, value_name = "ALG", env = "WALPIPE_COMPRESSION")]
    pub algorithm: Option<Compression>,

    /// Compression level: low, medium, high (Barman's per-algorithm levels) or an integer,
    /// clamped into the algorithm's range [default: medium].
    #[arg(
        long,
        value_name = "LEVEL",
        env = "WALPIPE_COMPRESSION_LEVEL",
        allow_negative_numbers = true
    )]
    pub level: Option<Level>,

    /// Files to work on at once, at most 256; output keeps the input order [default: 0,
    /// one per core, at most 6].
    #[arg(long, value_name = "N", env = "WALPIPE_JOBS")]
    pub jobs: Option<usize>,

    /// Directory for the temporary files [default: the directory of each record's file].
    #[arg(long, value_name = "DIR", env = "WALPIPE_TEMP_DIR")]
    pub temp_dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn negative_levels_parse_for_zstd() {
        let args = Args::try_parse_from(["wal-compress", "--level", "-5"]).unwrap();
        assert_eq!(args.level, Some(Level::Exact(-5)));
    }
}
