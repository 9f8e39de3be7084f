//! wal-store: the only walpipe stage that writes into an archive or removes a source.
//!
//! `put` follows walpipe's durability order (`docs/durability.md#storing-a-batch`): bring the
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
mod fetch;
mod get;
mod identity;
mod list;
mod put;
mod rebuild;
mod report;
mod settled;
mod shape;

use std::io::{BufRead, Write};

use wal_core::WalError;
use wal_core::stage::Verdict;

use crate::cli::Config;

/// The stage name in records and messages.
pub const STAGE: &str = "wal-store";

/// Resolves `args` and runs them. Settings refused (a server name that is no plain name,
/// a malformed endpoint) are refused by every stage of a restore alike, so only one may
/// say it: a look-up hands each name down failed (`wal_core::stage::fail_every_name`) and says
/// why; a write-out that then gets such records exits with their verdict, silently
/// (`get::refused_write_out`); without them it says why itself.
pub fn run_args(
    args: cli::Args,
    input: impl BufRead + Send,
    output: impl Write,
) -> Result<Verdict, WalError> {
    let role = args.pipeline_role();
    match Config::try_from(args) {
        Ok(config) => run(&config, input, output),
        Err(err) => match role {
            cli::PipelineRole::LookUp(names) => {
                Err(wal_core::stage::fail_every_name(STAGE, err, &names, output))
            }
            cli::PipelineRole::WriteOut => get::refused_write_out(err, input),
            cli::PipelineRole::Other => Err(err),
        },
    }
}

/// Runs the configured subcommand over `input` records, writing records to `output`.
/// `get` may choose its exit status itself (see its module docs); the others' comes from
/// their summary.
pub fn run(
    config: &Config,
    input: impl BufRead + Send,
    output: impl Write,
) -> Result<Verdict, WalError> {
    match config {
        Config::Put {
            target,
            queue,
            keep_source,
            report,
            report_marked,
            max_batch,
            decryption,
            territory,
            temp_dir,
            header_check,
            marks,
        } => put::run(
            &put::PutOptions {
                target,
                queue: *queue,
                keep_source: *keep_source,
                report: report.as_deref(),
                report_marked: *report_marked,
                max_batch: *max_batch,
                decryption: decryption.as_ref(),
                territory,
                temp_dir: temp_dir.as_deref(),
                header_check: *header_check,
                marks: marks.as_deref(),
            },
            input,
            output,
        )
        .map(Verdict::from),
        Config::Settled {
            target,
            marks,
            path,
        } => Ok(settled::run(target, marks, path)),
        Config::Layout {
            shell,
            temp_dir,
            marks_dir,
        } => {
            let text = match shell {
                Some(layout) => {
                    let mut text = layout.shell_assignments();
                    // Whether the wrapper's own info lines (Barman's "Another archive-wal
                    // process is already running") are wanted at this log level.
                    let say_info = wal_core::log::enabled(wal_core::log::Level::Info);
                    let say_info: &[u8] = if say_info { b"1" } else { b"0" };
                    wal_core::layout::shell_assignment(&mut text, "SAY_INFO", say_info);
                    for (variable, dir) in [("TEMP_DIR", temp_dir), ("MARKS_DIR", marks_dir)] {
                        if let Some(dir) = dir {
                            let dir = dir.as_os_str().as_encoded_bytes();
                            wal_core::layout::shell_assignment(&mut text, variable, dir);
                        }
                    }
                    text
                }
                None => [temp_dir, marks_dir]
                    .into_iter()
                    .flatten()
                    .flat_map(|dir| format!("{}\n", dir.display()).into_bytes())
                    .collect(),
            };
            let mut output = output;
            output
                .write_all(&text)
                .map_err(|e| WalError::io("cannot write to", "stdout", e))?;
            Ok(Verdict::default())
        }
        Config::Get {
            target,
            names,
            partial,
            quiet_missing,
            sweep_temps,
            to,
            temp_dir,
            territory,
            header_check,
        } => get::run(
            &get::GetOptions {
                target,
                names,
                partial: *partial,
                quiet_missing: *quiet_missing,
                sweep_temps: *sweep_temps,
                to,
                temp_dir,
                territory,
                header_check: *header_check,
            },
            input,
            output,
        ),
        Config::Fetch { target, temp_dir } => {
            fetch::run(target, temp_dir, input, output).map(Verdict::from)
        }
        Config::Delete { target } => delete::run(target, input, output).map(Verdict::from),
        Config::RebuildXlogdb { target } => rebuild::run(target).map(Verdict::from),
        Config::List { target } => list::run(target, output).map(Verdict::from),
    }
}
