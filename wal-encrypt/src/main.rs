//! `wal-encrypt`: parse the command line, run the stage, turn the result into an exit code.

use std::process::ExitCode;

use wal_core::stage;
use wal_encrypt::cli::Args;
use wal_encrypt::{Config, STAGE, run};

fn main() -> ExitCode {
    let args = match wal_core::cli::parse_args::<Args>() {
        Ok(args) => args,
        Err(status) => return status,
    };
    let result = Config::from_args(args)
        .and_then(|config| run(&config, stage::stdin(), std::io::stdout().lock()));
    stage::exit_status(STAGE, result)
}
