//! wal-store: puts WAL files into an archive, gets them back, deletes them.

use clap::Parser;
use wal_core::ExitCode;
use wal_store::cli::{Args, Config};

fn main() -> std::process::ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::Usage.into()
            } else {
                ExitCode::Ok.into()
            };
        }
    };
    let result = Config::try_from(args).and_then(|config| {
        wal_store::run(&config, wal_core::stage::stdin(), std::io::stdout().lock())
    });
    wal_core::stage::exit_status("wal-store", result)
}
