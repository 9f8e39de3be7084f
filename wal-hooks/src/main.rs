//! `wal-hooks`: install the signal handling, parse the command line, run the stage, turn
//! the result into an exit code.

use std::process::ExitCode;

use wal_core::stage;
use wal_hooks::cli::Args;
use wal_hooks::{Config, STAGE, process, run};

fn main() -> ExitCode {
    // First, before any thread exists: the signal mask is inherited by threads.
    if let Err(err) = wal_core::child::install(process::KILL_GRACE, |_| {}) {
        wal_core::log::error!("{STAGE}: cannot set up signal handling: {err}");
        return wal_core::ExitCode::Software.into();
    }
    let args = match wal_core::cli::parse_args::<Args>() {
        Ok(args) => args,
        Err(status) => return status,
    };
    let result = Config::from_args(args)
        .and_then(|config| run(&config, stage::stdin(), std::io::stdout().lock()));
    stage::exit_status(STAGE, result)
}
