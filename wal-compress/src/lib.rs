//! wal-compress: the walpipe stage that compresses the WAL file each record points at, or
//! with `--decompress` restores its plain bytes.
//!
//! It sits between `wal-scan` (or `wal-hooks`) and `wal-encrypt`/`wal-store` when
//! archiving, and after `wal-store get`/`wal-encrypt --decrypt` when restoring. It writes
//! Barman's formats (gzip, bzip2, xz, zstd, lz4 frames, snappy framing) so Barman
//! and the stock CLIs read what it writes, and it reads theirs.
//!
//! It is not where files are stored or removed: it writes a hidden temporary copy, points
//! the record at it and lists it in `temps`; `wal-store` fsyncs, stores, and removes the
//! temporary copies and the source. Compression itself ([`wal_core::codec`]) is in
//! wal-core because wal-store needs it too, to compare a WAL with an archived copy.
//!
//! [`run`] is the whole stage, callable in-process; `main` only parses the command line.

use std::io::{BufRead, Write};

use wal_core::WalError;
use wal_core::codec::Level;
use wal_core::stage::{self, Summary};

pub mod cli;
pub mod config;
mod transform;

pub use config::{Config, Mode};

/// The stage name: prefix of every stderr line, and `error.stage` of failed records.
pub const STAGE: &str = "wal-compress";

/// Runs the stage: reads records from `input`, writes them to `output` in the same order,
/// working on up to `config.jobs` files at once.
///
/// Per-record failures are in the records (and counted in the [`Summary`]); an `Err` is a
/// failure of the whole stream: an unusable `--temp-dir`, unreadable input, or an output
/// that cannot be written.
pub fn run(
    config: &Config,
    input: impl BufRead + Send,
    output: impl Write,
) -> Result<Summary, WalError> {
    if let Some(Err(err)) = config.temp_dir.as_deref().map(stage::check_temp_dir) {
        return Err(stage::fail_every_record(STAGE, err, input, output));
    }
    if let Mode::Compress { algorithm, level } = config.mode {
        note_clamped_level(algorithm, level);
    }
    let transformer = transform::Transformer::new(config);
    stage::run_parallel(STAGE, config.jobs.get(), input, output, |record| {
        transformer.process(record)
    })
}

/// Says once on stderr when an integer level is outside the algorithm's range, as Barman
/// logs "Compression level X out of range for <alg>, using Y instead".
fn note_clamped_level(algorithm: wal_core::Compression, level: Level) {
    if let (Level::Exact(asked), Some(used)) = (level, level.resolve(algorithm))
        && asked != used
    {
        wal_core::log::warn!(
            "{STAGE}: compression level {asked} out of range for {algorithm}, using {used}"
        );
    }
}
