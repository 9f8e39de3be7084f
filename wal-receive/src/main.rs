//! `wal-receive`: install the signal handling, parse the command line, run, turn the
//! result into an exit code.

use std::process::ExitCode;
use std::time::Duration;

use wal_receive::cli::Args;
use wal_receive::{TOOL, run};

/// How long pg_receivewal has to flush and exit after SIGINT or SIGTERM.
const GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    // First, before any thread exists: the signal mask is inherited by threads.
    let announce = |signal: nix::sys::signal::Signal| {
        wal_core::log::info!(
            "{TOOL}: {} received. Terminate gracefully.",
            signal.as_str()
        );
    };
    // Read before the handling is installed, said once the flags have set the log level.
    let ignored = wal_core::child::ignored_stop_signals();
    if let Err(err) = wal_core::child::install(GRACE, announce) {
        wal_core::log::error!("{TOOL}: cannot set up signal handling: {err}");
        return wal_core::ExitCode::Software.into();
    }
    let args = match wal_core::cli::parse_args::<Args>() {
        Ok(args) => args,
        Err(status) => return status,
    };
    for signal in ignored {
        wal_core::log::warn!(
            "{TOOL}: warning: started with {0} ignored (in the background of a script?): \
             {0} will not stop this receiver",
            signal.as_str()
        );
    }
    match run(args) {
        Ok(code) => code.into(),
        Err(err) => {
            wal_core::log::error!("{TOOL}: {err}");
            wal_core::ExitCode::for_error(&err).into()
        }
    }
}
