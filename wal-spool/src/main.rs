//! The `wal-spool` binary: parse, resolve, run, exit (the skeleton every walpipe binary shares).

use std::process::ExitCode;

use wal_spool::cli::Args;
use wal_spool::{STAGE, run};

fn main() -> ExitCode {
    let args = match wal_core::cli::parse_args::<Args>() {
        Ok(args) => args,
        Err(status) => return status,
    };
    match run(args, &mut std::io::stdout().lock()) {
        Ok(code) => code.into(),
        Err(err) => {
            wal_core::stage::report_error(STAGE, &err);
            wal_core::exit::ExitCode::for_error(&err).into()
        }
    }
}
