//! The `wal-scan` binary: parse, resolve, run, exit (the skeleton every walpipe binary shares).

use std::process::ExitCode;

use wal_scan::cli::Args;
use wal_scan::{Config, run};

fn main() -> ExitCode {
    let args = match wal_core::cli::parse_args::<Args>() {
        Ok(args) => args,
        Err(status) => return status,
    };
    let result = Config::from_args(args).and_then(|config| run(&config, std::io::stdout().lock()));
    wal_core::stage::exit_status("wal-scan", result)
}
