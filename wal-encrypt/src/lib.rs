//! wal-encrypt: the walpipe stage that OpenPGP-encrypts the WAL file each record points
//! at, or with `--decrypt` restores its plain bytes.
//!
//! It sits between `wal-compress` and `wal-store` when archiving, and between
//! `wal-store get` and `wal-compress --decompress` when restoring. Barman encrypts WAL by
//! running `gpg --encrypt --compress-level 0` (its `encryption = gpg`); this stage
//! encrypts in-process, so an archive host needs no gpg binary, keyring or agent, and
//! writes what that gpg command writes: a binary OpenPGP message (SEIPDv1, no inner
//! compression) that `gpg --decrypt` opens. It reads gpg's messages back, compressed or
//! not, to a public key or a passphrase. Restoring, it hands on nothing that was not
//! encrypted unless told to ([`config::Unencrypted`]): an encrypted archive that accepted
//! plaintext would let anyone who can write to it inject WAL.
//!
//! Keys are files (`gpg --export` and `gpg --export-secret-keys` output), parsed and
//! checked by sequoia-openpgp; the bulk cipher and MDC run on OpenSSL ([`cipher`] says
//! why). It is not where files are stored or removed: it writes a hidden temporary copy,
//! points the record at it and lists it in `temps`; `wal-store` fsyncs, stores, and
//! removes the temporary copies and the source.
//!
//! [`run`] is the whole stage, callable in-process; `main` only parses the command line.

use std::io::{BufRead, Write};

use wal_core::WalError;
use wal_core::stage::{self, Summary};

pub mod cli;
pub mod config;

mod cipher;
mod decrypt;
mod encrypt;
mod framing;
mod keys;
mod seipd;
mod transform;

pub use config::{Config, Mode, Passphrase};

/// The stage name: prefix of every stderr line, and `error.stage` of failed records.
pub const STAGE: &str = "wal-encrypt";

/// Runs the stage: loads the keys, then reads records from `input` and writes them to
/// `output` in the same order, working on up to `config.jobs` files at once.
///
/// Per-record failures are in the records (and counted in the [`Summary`]); an `Err` is a
/// failure of the whole stream: a key file that is missing or unusable, an unusable
/// `--temp-dir`, unreadable input, or an output that cannot be written.
pub fn run(
    config: &Config,
    input: impl BufRead + Send,
    output: impl Write,
) -> Result<Summary, WalError> {
    let started = config
        .temp_dir
        .as_deref()
        .map_or(Ok(()), stage::check_temp_dir)
        .and_then(|()| transform::Transformer::new(config));
    let transformer = match started {
        Ok(transformer) => transformer,
        Err(err) => return Err(stage::fail_every_record(STAGE, err, input, output)),
    };
    stage::run_parallel(STAGE, config.jobs.get(), input, output, |record| {
        transformer.process(record)
    })
}
