//! wal-store: puts WAL files into an archive, gets them back, deletes them.

use std::process::ExitCode;

use wal_store::cli::{Args, Config};

fn main() -> ExitCode {
    let args = match wal_core::cli::parse_args::<Args>() {
        Ok(args) => args,
        Err(status) => return status,
    };
    let result = Config::try_from(args).and_then(|config| {
        wal_store::run(&config, wal_core::stage::stdin(), std::io::stdout().lock())
    });
    wal_core::stage::exit_status(wal_store::STAGE, result)
}
