//! The `wal-scan` binary: parse, resolve, run, exit (the skeleton every walpipe binary shares).

use std::process::ExitCode;

use clap::Parser;
use wal_scan::cli::Args;
use wal_scan::{Config, run};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            // --help and --version are not errors; everything else clap rejects is a usage
            // error, EX_USAGE (64) rather than clap's 2.
            let _ = err.print();
            return if err.use_stderr() {
                wal_core::ExitCode::Usage.into()
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = Config::from_args(args).and_then(|config| run(&config, std::io::stdout().lock()));
    wal_core::stage::exit_status("wal-scan", result)
}
