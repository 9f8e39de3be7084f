//! The command line, exactly as typed: flags, their environment variables and their help.
//!
//! Parsing only checks that each value is well-formed; what the values mean together (the
//! hook's Barman name, the retry schedule, "no timeout") is decided in [`crate::Config`],
//! which is all the rest of the crate sees (ripgrep's LowArgs/HiArgs).
//!
//! `--phase`, `--event`, `--script` and `--retry` have no `WALPIPE_*` variable, unlike every
//! other walpipe flag: they say *which* hook one process is, and a pipeline runs several
//! wal-hooks processes from one environment (`scripts/archive-wal` runs one per script),
//! so a variable would make every one of them the same hook.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The end of `wal-hooks --help`.
const EXAMPLES: &str = r"  # Barman's pre-archive hook and post-archive retry hook around archiving (archive-wal's)
  wal-scan incoming /var/lib/barman/pg/incoming \
    | wal-hooks --phase pre --event archive --server pg --script /etc/barman/pre-archive \
    | wal-compress --algorithm zstd | wal-store put --home /var/lib/barman --server pg \
    | wal-hooks --phase post --event archive --server pg --retry --script /etc/barman/post-archive
  # a pre-delete hook (BARMAN_FILE: the archived file) before deleting one WAL
  wal-store get --home /var/lib/barman --server pg 000000010000000A00000042 \
    | wal-hooks --phase pre --event delete --server pg --script /etc/barman/pre-delete \
    | wal-store delete --home /var/lib/barman --server pg";

/// Run a Barman hook script for each WAL record going by.
///
/// Reads WAL records (NDJSON, one per line) on stdin and writes them to stdout in the same
/// order, running SCRIPT through `/bin/sh -c` once per record with Barman's environment:
/// BARMAN_VERSION (walpipe's), BARMAN_SERVER, BARMAN_CONFIGURATION, BARMAN_HOOK,
/// BARMAN_PHASE, BARMAN_RETRY, BARMAN_SEGMENT, BARMAN_FILE, BARMAN_SIZE, BARMAN_TIMESTAMP,
/// BARMAN_COMPRESSION and BARMAN_ERROR, plus WALPIPE_RECORD, the record as JSON. The
/// script's stdin is /dev/null; its stdout and stderr are captured, never passed on.
///
/// Put a `--phase pre` stage before wal-compress and a `--phase post` stage after
/// `wal-store put` (or around `wal-store delete` with `--event delete`).
///
/// A plain script that fails is reported on stderr (exit code and the end of its output)
/// and the record goes on unchanged, as in Barman. A --retry script is run again until it
/// exits 0, sleeping as Barman does (3 s after each of 5 failures, then 60 s, and again);
/// exit 62 gives up on the script and the record goes on; exit 63 in the pre phase stops:
/// this record and every later one leave as error records of kind `aborted` (not archived,
/// sources untouched); in the post phase 63 is reported and ignored, as in Barman.
///
/// Records that an earlier stage failed pass through. In the post phase their hook still
/// runs, with BARMAN_ERROR set (Barman's post hooks always run), except for queue entries
/// that are not WAL files (error kind `unknown`, for which Barman runs no hook), input
/// lines that are not records, and records stopped by exit 63 (Barman never got to them;
/// only the record whose own pre-archive hook exited 63 gets its post-archive hooks).
///
/// Exit status: 0 all records went on, 1 some records were stopped by exit 63, 64 bad
/// usage, 65 input lines that are not records, 74 the record stream itself failed.
#[derive(Debug, Clone, Parser)]
#[command(name = "wal-hooks", version, max_term_width = 100)]
#[command(after_help = wal_core::cli::examples(EXAMPLES))]
pub struct Args {
    /// Before the work (archive: before compression and storing) or after it.
    #[arg(long, value_enum)]
    pub phase: Phase,

    /// What the work is: archiving WAL files, or deleting them from the archive.
    #[arg(long, value_enum)]
    pub event: Event,

    /// The hook script: a shell command line, run with `/bin/sh -c`.
    #[arg(long, value_name = "CMD")]
    pub script: String,

    /// Barman's retry hook (`*_retry_script`): rerun until it exits 0, 62 or 63.
    #[arg(long)]
    pub retry: bool,

    /// Kill a run that takes longer than SECS (the whole process group) and count it as a
    /// failure; 0 waits forever, as Barman does [default: 0].
    #[arg(
        long,
        value_name = "SECS",
        env = "WALPIPE_HOOK_TIMEOUT",
        value_parser = parse_seconds
    )]
    pub timeout: Option<Duration>,

    /// Server name (BARMAN_SERVER).
    #[arg(long, value_name = "NAME", env = "WALPIPE_SERVER")]
    pub server: String,

    /// The configuration file named in BARMAN_CONFIGURATION (wal-hooks does not read it)
    /// [default: none, BARMAN_CONFIGURATION is empty].
    #[arg(long, value_name = "FILE", env = "WALPIPE_CONFIG", value_parser = clap::value_parser!(OsString))]
    pub configuration: Option<OsString>,

    /// The archive directory. With it, BARMAN_FILE of delete hooks, and of post-archive
    /// hooks for records that were not stored, is Barman's `<archive>/<hash dir>/<name>`;
    /// without it, or with a cloud archive's URL, the file or object the record names.
    #[arg(long, value_name = "DIR", env = "WALPIPE_ARCHIVE", value_parser = clap::value_parser!(OsString))]
    pub archive: Option<OsString>,

    /// Test-only: multiply the retry pauses (3 s, 60 s) by FACTOR, so tests can go through
    /// Barman's schedule in milliseconds. Not for production use.
    #[arg(
        long,
        value_name = "FACTOR",
        env = "WALPIPE_HOOK_RETRY_SLEEP_SCALE",
        hide = true,
        value_parser = parse_scale
    )]
    pub retry_sleep_scale: Option<f64>,
}

/// Barman's hook phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    /// `pre_*` hooks.
    Pre,
    /// `post_*` hooks.
    Post,
}

/// The work the hooks surround.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Event {
    /// `archive_script` / `archive_retry_script`.
    Archive,
    /// `wal_delete_script` / `wal_delete_retry_script`.
    Delete,
}

// Paths are OsStrings so that an empty value (a wrapper's unset setting) reads as "none"
// (see `Config::from_args`) instead of being refused as clap's PathBuf parser does.

/// Seconds as a non-negative decimal number (`30`, `0.5`); 0 means none. A positive value
/// too small to be a nanosecond is refused rather than read as 0, which would mean the
/// opposite: no timeout at all.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    match Duration::try_from_secs_f64(seconds) {
        Ok(duration) if duration.is_zero() && seconds > 0.0 => Err(format!(
            "{text:?} is less than a nanosecond (0 means no timeout)"
        )),
        Ok(duration) => Ok(duration),
        Err(_) => Err(format!("{text:?} is not a number of seconds from 0 up")),
    }
}

/// The largest retry-sleep factor: Barman's 60 s pause times this stays far inside what
/// a `Duration` holds (a larger factor would overflow it and panic between two runs).
const MAX_SCALE: f64 = 1000.0;

/// A factor from 0 to [`MAX_SCALE`].
fn parse_scale(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(factor) if (0.0..=MAX_SCALE).contains(&factor) => Ok(factor),
        _ => Err(format!("{text:?} is not a factor from 0 to {MAX_SCALE}")),
    }
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
    fn seconds_may_be_fractions_and_never_negative() {
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_seconds("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
        assert!(parse_seconds("inf").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_seconds("1e300").is_err());
        assert!(parse_seconds("1e-12").is_err(), "not silently no timeout");
        assert!(
            parse_seconds("1e18").is_ok(),
            "a huge timeout is no timeout, and safe"
        );
    }

    #[test]
    fn the_sleep_scale_is_hidden_from_help() {
        let help = Args::command().render_long_help().to_string();
        assert!(!help.contains("retry-sleep-scale"), "{help}");
        assert!(help.contains("--timeout"), "{help}");
        assert_eq!(parse_scale("0.001"), Ok(0.001));
        assert!(parse_scale("-2").is_err());
        assert!(parse_scale("NaN").is_err());
        assert!(parse_scale("1e300").is_err());
        assert_eq!(parse_scale("1000"), Ok(1000.0));
    }
}
