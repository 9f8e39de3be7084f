//! `wal-check`: parse the command line, look at the server and its archive, print the
//! report, exit with its verdict.

use std::process::ExitCode;

use wal_check::cli::Args;
use wal_check::{TOOL, run};

fn main() -> ExitCode {
    let args = match wal_core::cli::parse_args::<Args>() {
        Ok(args) => args,
        // A Nagios check that cannot run is UNKNOWN (3), with a status line; clap has
        // said why on stderr.
        Err(status)
            if status != ExitCode::SUCCESS && std::env::args().any(|arg| arg == "--nagios") =>
        {
            let _ = std::io::Write::write_all(
                &mut std::io::stdout(),
                b"BARMAN UNKNOWN - wal-check: bad arguments (see its stderr)\n",
            );
            return ExitCode::from(wal_check::report::NAGIOS_UNKNOWN);
        }
        Err(status) => return status,
    };
    let nagios = args.nagios();
    let stdout = std::io::stdout();
    match run(args, &mut stdout.lock()) {
        Ok(code) => code,
        Err(err) if nagios => {
            // A check that could not run is UNKNOWN to Nagios, and says why on stdout.
            let line = format!(
                "BARMAN UNKNOWN - {}\n",
                wal_check::report::one_line(&err.to_string()).replace('|', "/")
            );
            let _ = std::io::Write::write_all(&mut std::io::stdout(), line.as_bytes());
            ExitCode::from(wal_check::report::NAGIOS_UNKNOWN)
        }
        Err(err) => {
            wal_core::log::error!("{TOOL}: {err}");
            wal_core::ExitCode::for_error(&err).into()
        }
    }
}
