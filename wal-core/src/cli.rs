//! The command-line step every walpipe binary shares (feature `cli`).
//!
//! clap exits with status 2 on bad flags; walpipe's contract is sysexits, so a usage error
//! must be 64 (EX_USAGE), while `--help` and `--version` succeed. Every binary's `main`
//! starts with [`parse_args`] so that rule lives in one place (uutils' uucore plays the
//! same role). It is the only part of wal-core that sees argv.

use crate::exit::ExitCode;

/// Parses the process arguments into `A`; on failure prints clap's message and returns the
/// exit status to end with (64 for bad flags, 0 for `--help`/`--version`). A usage error
/// is one line, as every walpipe diagnostic: `<binary>: <clap's first line>`, without
/// clap's usage block (a wrapper's caller, PostgreSQL's log, shows one line per failure).
pub fn parse_args<A: clap::Parser>() -> Result<A, std::process::ExitCode> {
    A::try_parse().map_err(|err| {
        if err.use_stderr() {
            eprintln!("{}", usage_line(A::command().get_name(), &err));
            ExitCode::Usage.into()
        } else {
            let _ = err.print();
            ExitCode::Ok.into()
        }
    })
}

/// The one line for a usage error: `<binary>: <what clap says first> (<binary> --help)`.
fn usage_line(binary: &str, err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let first = rendered
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("bad usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    format!("{binary}: {first} ({binary} --help)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(name = "wal-test")]
    struct Args {
        #[arg(long)]
        count: u16,
    }

    #[test]
    fn usage_errors_are_one_line_naming_the_binary() {
        for argv in [
            &["wal-test", "--count", "many"][..],
            &["wal-test"],
            &["wal-test", "--count", "1", "--bogus"],
            &["wal-test", "--count", "70000"],
        ] {
            let err = Args::try_parse_from(argv).unwrap_err();
            let line = usage_line("wal-test", &err);
            assert!(!line.contains('\n'), "{line}");
            assert!(line.starts_with("wal-test: "), "{line}");
            assert!(!line.contains("error: "), "{line}");
        }
        let err = Args::try_parse_from(["wal-test", "--count", "many"]).unwrap_err();
        assert!(usage_line("wal-test", &err).contains("'many'"));
    }
}
