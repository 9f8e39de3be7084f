//! `wal-encrypt`: parse the command line, run the stage, turn the result into an exit code.

use std::process::ExitCode;

use clap::Parser;
use wal_core::stage;
use wal_encrypt::cli::Args;
use wal_encrypt::{Config, STAGE, run};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            // --help and --version are not errors; bad flags are EX_USAGE, not clap's 2.
            let _ = err.print();
            return if err.use_stderr() {
                wal_core::ExitCode::Usage.into()
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = Config::from_args(args)
        .and_then(|config| run(&config, stage::stdin(), std::io::stdout().lock()));
    stage::exit_status(STAGE, result)
}
