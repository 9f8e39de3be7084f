//! wal-store: puts WAL files into an archive, gets them back, deletes them.

use std::process::ExitCode;

use wal_store::cli::Args;

fn main() -> ExitCode {
    let args = match wal_core::cli::parse_args::<Args>() {
        Ok(args) => args,
        Err(status) => return status,
    };
    let result = wal_store::run_args(args, wal_core::stage::stdin(), std::io::stdout().lock());
    wal_core::stage::exit_status_of(wal_store::STAGE, result)
}
