//! `wal-verify`: parse the command line, verify the records on stdin, report, exit with
//! the verdict.

use wal_verify::cli::Args;
use wal_verify::{TOOL, run};

fn main() -> std::process::ExitCode {
    let args = match wal_core::cli::parse_args::<Args>() {
        Ok(args) => args,
        Err(status) => return status,
    };
    let stdout = std::io::stdout();
    wal_core::stage::exit_status_of(TOOL, run(&args, wal_core::stage::stdin(), stdout.lock()))
}
