//! The command-line step every walpipe binary shares (feature `cli`).
//!
//! clap exits with status 2 on bad flags; walpipe's contract is sysexits, so a usage error
//! must be 64 (EX_USAGE), while `--help` and `--version` succeed. Every binary's `main`
//! starts with [`parse_args`] so that rule lives in one place (uutils' uucore plays the
//! same role). It is the only part of wal-core that sees argv.

use crate::exit::ExitCode;

/// Parses the process arguments into `A`; on failure prints clap's message and returns the
/// exit status to end with (64 for bad flags, 0 for `--help`/`--version`).
pub fn parse_args<A: clap::Parser>() -> Result<A, std::process::ExitCode> {
    A::try_parse().map_err(|err| {
        let _ = err.print();
        if err.use_stderr() {
            ExitCode::Usage.into()
        } else {
            ExitCode::Ok.into()
        }
    })
}
