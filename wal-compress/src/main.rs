//! `wal-compress`: parse the command line, run the stage, turn the result into an exit code.

use std::process::ExitCode;

use wal_compress::cli::Args;
use wal_compress::{Config, STAGE, run};
use wal_core::stage;

fn main() -> ExitCode {
    let args = match wal_core::cli::parse_args::<Args>() {
        Ok(args) => args,
        Err(status) => return status,
    };
    let result = Config::from_args(args)
        .and_then(|config| run(&config, stage::stdin(), std::io::stdout().lock()));
    stage::exit_status(STAGE, result)
}
