//! The resolved configuration: what the stage does, decided once from the command line.
//!
//! [`crate::cli::Args`] mirrors what was typed; this is what it means, with defaults
//! filled in (zstd at Barman's `medium` level, one job per core) and checked, so the
//! per-record code never looks at flags.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::thread;

use wal_core::codec::Level;
use wal_core::{Compression, WalError};

use crate::cli::Args;

/// The algorithm when none is given: zstd is both fast and strong on WAL (at level 3
/// about 300 MB/s, ratio 6, on the real segments of scripts/bench-archive).
pub const DEFAULT_ALGORITHM: Compression = Compression::Zstd;

/// What to do with each record's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Compress uncompressed, unencrypted files with `algorithm` at `level`.
    Compress {
        /// The format written.
        algorithm: Compression,
        /// The level, resolved per algorithm by [`Level::resolve`].
        level: Level,
    },
    /// Decompress compressed, unencrypted files, whatever their format.
    Decompress,
}

/// Everything [`crate::run`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Compress or decompress.
    pub mode: Mode,
    /// Records worked on at once (at least 1).
    pub jobs: NonZeroUsize,
    /// Where temporary files go; `None`: next to each record's file.
    pub temp_dir: Option<PathBuf>,
}

impl Config {
    /// Compression with `algorithm` at `level`, one job per core, temps next to the files.
    #[must_use]
    pub fn compress(algorithm: Compression, level: Level) -> Self {
        Config {
            mode: Mode::Compress { algorithm, level },
            jobs: default_jobs(),
            temp_dir: None,
        }
    }

    /// Decompression, one job per core, temps next to the files.
    #[must_use]
    pub fn decompress() -> Self {
        Config {
            mode: Mode::Decompress,
            jobs: default_jobs(),
            temp_dir: None,
        }
    }

    /// Resolves the command line: defaults, then checks.
    ///
    /// With `--decompress`, `--algorithm` and `--level` are ignored rather than refused:
    /// wrappers export one set of `WALPIPE_*` variables for archiving and restoring alike.
    pub fn from_args(args: Args) -> Result<Self, WalError> {
        let mode = if args.decompress {
            Mode::Decompress
        } else {
            Mode::Compress {
                algorithm: args.algorithm.unwrap_or(DEFAULT_ALGORITHM),
                level: args.level.unwrap_or_default(),
            }
        };
        let jobs = wal_core::stage::jobs(args.jobs, default_jobs)?;
        let temp_dir = match args.temp_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                return Err(WalError::Usage("--temp-dir: empty path".into()));
            }
            other => other,
        };
        Ok(Config {
            mode,
            jobs,
            temp_dir,
        })
    }

    /// The same configuration with `jobs` workers (0 means one per core, and more than
    /// [`MAX_JOBS`] means [`MAX_JOBS`]).
    #[must_use]
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = NonZeroUsize::new(jobs.min(MAX_JOBS)).unwrap_or_else(default_jobs);
        self
    }

    /// The same configuration with temporary files in `dir`.
    #[must_use]
    pub fn with_temp_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.temp_dir = Some(dir.into());
        self
    }
}

/// Most jobs by default: each holds about 3.5 MiB of codec state and buffers (measured
/// by scripts/bench-archive), and a stage should stay within 32 MiB. `--jobs` can go higher.
const DEFAULT_JOBS_CAP: usize = 6;

pub use wal_core::stage::MAX_JOBS;

/// One job per core, up to [`DEFAULT_JOBS_CAP`]: compression is CPU-bound, and the file
/// reads are sequential.
fn default_jobs() -> NonZeroUsize {
    let cores = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    NonZeroUsize::new(cores.min(DEFAULT_JOBS_CAP)).unwrap_or(NonZeroUsize::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(decompress: bool) -> Args {
        Args {
            decompress,
            algorithm: None,
            level: None,
            jobs: None,
            temp_dir: None,
        }
    }

    #[test]
    fn defaults_are_zstd_medium_one_job_per_core() {
        let config = Config::from_args(args(false)).unwrap();
        assert_eq!(
            config.mode,
            Mode::Compress {
                algorithm: Compression::Zstd,
                level: Level::Medium
            }
        );
        assert_eq!(config.jobs, default_jobs());
        assert_eq!(config.temp_dir, None);
    }

    #[test]
    fn zero_jobs_means_one_per_core() {
        let config = Config::from_args(Args {
            jobs: Some(0),
            ..args(false)
        })
        .unwrap();
        assert_eq!(config.jobs, default_jobs());
        assert_eq!(Config::decompress().with_jobs(3).jobs.get(), 3);
    }

    #[test]
    fn jobs_above_the_bound_are_a_usage_error() {
        let config = Config::from_args(Args {
            jobs: Some(MAX_JOBS),
            ..args(false)
        })
        .unwrap();
        assert_eq!(config.jobs.get(), MAX_JOBS);
        let err = Config::from_args(Args {
            jobs: Some(100_000),
            ..args(false)
        })
        .unwrap_err();
        assert_eq!(err.kind(), wal_core::ErrorKind::Usage);
        assert_eq!(
            err.to_string(),
            "--jobs 100000: at most 256 files at once (0: one per core)"
        );
        assert_eq!(
            Config::decompress().with_jobs(usize::MAX).jobs.get(),
            MAX_JOBS
        );
    }

    #[test]
    fn decompress_ignores_the_algorithm() {
        let config = Config::from_args(Args {
            algorithm: Some(Compression::Gzip),
            level: Some(Level::High),
            ..args(true)
        })
        .unwrap();
        assert_eq!(config.mode, Mode::Decompress);
    }

    #[test]
    fn an_empty_temp_dir_is_a_usage_error() {
        let err = Config::from_args(Args {
            temp_dir: Some(PathBuf::new()),
            ..args(false)
        })
        .unwrap_err();
        assert_eq!(err.kind(), wal_core::ErrorKind::Usage);
    }
}
