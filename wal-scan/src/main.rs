//! The `wal-scan` binary: parse, resolve, run, exit (the skeleton every walpipe binary shares).

use std::process::ExitCode;

use wal_scan::cli::Args;
use wal_scan::{Config, STAGE, run};

fn main() -> ExitCode {
    let args = match wal_core::cli::parse_args::<Args>() {
        Ok(args) => args,
        Err(status) => return status,
    };
    match Config::from_args(args).and_then(|config| run(&config, std::io::stdout().lock())) {
        Ok(outcome) => outcome.exit_code().into(),
        Err(err) => wal_core::stage::exit_status(STAGE, Err(err)),
    }
}
