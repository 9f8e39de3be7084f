//! wal-store: the only walpipe stage that writes into an archive or removes a source.
//!
//! `put` follows walpipe's durability order (architecture.md, "Durability"): bring the
//! bytes into the archive without ever replacing a file, fsync, catalogue in xlog.db (one
//! fsync per batch), and only then remove the source. A kill at any moment leaves a state
//! that the next run completes. `get`, `delete`, `rebuild-xlogdb` and `list` serve
//! restore, retention and repair. Each works on a local archive or a cloud one
//! ([`cloud`]: S3, Azure Blob Storage, GCS).

pub mod cli;
pub mod cloud;
mod compare;
mod decrypt;
mod delete;
mod get;
mod identity;
mod list;
mod put;
mod rebuild;
mod report;
mod shape;

use std::io::{BufRead, Write};

use wal_core::WalError;
use wal_core::stage::Summary;

use crate::cli::Config;

/// The stage name in records and messages.
pub const STAGE: &str = "wal-store";

/// Runs the configured subcommand over `input` records, writing records to `output`.
pub fn run(
    config: &Config,
    input: impl BufRead + Send,
    output: impl Write,
) -> Result<Summary, WalError> {
    match config {
        Config::Put {
            target,
            queue,
            keep_source,
            report,
            max_batch,
            decryption,
            territory,
            temp_dir,
            header_check,
        } => put::run(
            &put::PutOptions {
                target,
                queue: *queue,
                keep_source: *keep_source,
                report: *report,
                max_batch: *max_batch,
                decryption: decryption.as_ref(),
                territory,
                temp_dir: temp_dir.as_deref(),
                header_check: *header_check,
            },
            input,
            output,
        ),
        Config::CheckLayout => Ok(Summary::default()),
        Config::Get {
            target,
            names,
            partial,
            to,
            temp_dir,
            territory,
            header_check,
        } => get::run(
            &get::GetOptions {
                target,
                names,
                partial: *partial,
                to,
                temp_dir,
                territory,
                header_check: *header_check,
            },
            input,
            output,
        ),
        Config::Delete { target } => delete::run(target, input, output),
        Config::RebuildXlogdb { target } => rebuild::run(target),
        Config::List { target } => list::run(target, output),
    }
}
