//! wal-spool: restore-wal's prefetch spool, its rules in one place.
//!
//! `restore-wal --prefetch N` (Barman's `barman-wal-restore --parallel`) fetches the N
//! segments after the one PostgreSQL asked for in the background, into a spool directory
//! where the next calls find them decompressed and ready. The shell composes the fetch
//! (`wal-store get | wal-compress --decompress | wal-store get --to-dir SPOOL`); this
//! tool decides everything about the spool:
//! * [`take`]: hand the spooled segment to PostgreSQL (`take NAME --to %p`), waiting for
//!   one a live worker is fetching; exit 66 when there is nothing current to take;
//! * [`plan`]: under the spool's lock, sweep what is stale and claim the names a new
//!   worker is to fetch (`plan NAME --prefetch N --worker PID`): it prints the spool
//!   directory, then the names, one a line (nothing when there is nothing to fetch);
//! * [`spool`]: where the spool is, that it is ours and apart from every directory of
//!   WAL that must stay, and whether a spooled file still stands for the archive's;
//! * [`claim`]: which worker fetches which segment, and since when.

pub mod claim;
pub mod cli;
pub mod plan;
pub mod spool;
pub mod take;

use std::io::Write;
use std::time::Duration;

use wal_core::error::{IoContext, Result};
use wal_core::exit::ExitCode;
use wal_core::{WalError, WalKind, WalName};

use crate::cli::{Args, Command};
use crate::spool::Spool;
use crate::take::Taken;

/// This stage's name in messages.
pub const STAGE: &str = "wal-spool";

/// Runs the command; prints what it says on `out`.
pub fn run(args: Args, out: &mut impl Write) -> Result<ExitCode> {
    match args.command {
        Command::Take {
            spool,
            name,
            to,
            wait,
            prefetch,
        } => {
            check_prefetch(prefetch.unwrap_or(0))?;
            let Some(name) = segment(&name)? else {
                // Only segments are spooled: a history file or backup label is never here.
                return Ok(ExitCode::NoInput);
            };
            let spool = Spool::open(&spool, &to)?;
            // Decided before any wait, so that the caller can start the next fetch while
            // this one is still in flight.
            let prefetch_hint = prefetch.is_some_and(|n| {
                take::window_needs_work(&spool, &name, n, plan::remembered_size(&spool))
            });
            let taken = take::take(&spool, &name, &to, Duration::from_secs(wait.into()))?;
            let hint = prefetch_hint
                && match taken {
                    Taken::Yes(_) | Taken::InFlight => true,
                    // Fetched by the caller now: worth starting beside it when it is
                    // there to fetch (only a local archive can tell).
                    Taken::No => spool.is_archived(&name),
                };
            if hint {
                writeln!(out, "prefetch").context("cannot write", "stdout")?;
            }
            Ok(match taken {
                Taken::Yes(_) => ExitCode::Ok,
                Taken::InFlight => ExitCode::TempFail,
                Taken::No => ExitCode::NoInput,
            })
        }
        Command::Plan {
            spool,
            name,
            prefetch,
            worker,
            restored,
        } => {
            check_prefetch(prefetch)?;
            let Some(name) = segment(&name)? else {
                return Ok(ExitCode::Ok);
            };
            let spool = Spool::open(&spool, restored.as_deref().unwrap_or(".".as_ref()))?;
            let claimed = plan::plan(&spool, &name, prefetch, worker, restored.as_deref())?;
            if !claimed.is_empty() {
                let mut text = format!("{}\n", spool.dir.display());
                for name in claimed {
                    text.push_str(&name);
                    text.push('\n');
                }
                out.write_all(text.as_bytes())
                    .context("cannot write", "stdout")?;
            }
            Ok(ExitCode::Ok)
        }
    }
}

/// The most segments a spool keeps ahead.
pub const MAX_PREFETCH: u16 = 999;

fn check_prefetch(prefetch: u16) -> Result<()> {
    if prefetch > MAX_PREFETCH {
        return Err(WalError::Usage(format!(
            "--prefetch {prefetch}: at most {MAX_PREFETCH} segments"
        )));
    }
    Ok(())
}

/// `name` as a segment name (`None` for the other WAL file names: only segments are
/// prefetched); an error for a name that is no WAL file name at all.
fn segment(name: &str) -> Result<Option<WalName>> {
    let wal = WalName::parse_file_name(name)?;
    let upper = wal.as_str().bytes().all(|b| !b.is_ascii_lowercase());
    Ok((wal.kind() == WalKind::Segment && upper).then_some(wal))
}
