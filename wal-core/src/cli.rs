//! The command-line step every walpipe binary shares (feature `cli`).
//!
//! clap exits with status 2 on bad flags; walpipe's contract is sysexits, so a usage error
//! must be 64 (EX_USAGE), while `--help` and `--version` succeed. Every binary's `main`
//! starts with [`parse_args`] so that rule lives in one place (uutils' uucore plays the
//! same role). It is the only part of wal-core that sees argv.

use std::path::PathBuf;

use crate::exit::ExitCode;
use crate::layout::{LayoutSettings, Places};

/// Where a server's files are: the flags every binary that reads or writes a server's
/// archive takes (each also a `WALPIPE_*` variable), resolved in one place
/// ([`LayoutSettings::resolve`]).
#[derive(Debug, Clone, clap::Args)]
pub struct LayoutArgs {
    /// Barman's home: the server's archive, queues and errors/ are
    /// `DIR/SERVER/{wals,incoming,streaming,errors}`, the locks in DIR.
    #[arg(long, value_name = "DIR", env = "WALPIPE_HOME")]
    pub home: Option<PathBuf>,
    /// Server name (Barman's section name: names the catalogue `<server>-xlog.db`, the
    /// lock files and a cloud archive's key prefix).
    #[arg(long, value_name = "NAME", env = "WALPIPE_SERVER")]
    pub server: String,
    /// The archive: a directory (Barman's `wals_directory`), or `s3://BUCKET/PREFIX`,
    /// `az://CONTAINER/PREFIX`, `gs://BUCKET/PREFIX` or barman-cloud's
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX` (keys
    /// `PREFIX/SERVER/wals/…`, as barman-cloud names them) [default: `HOME/SERVER/wals`].
    #[arg(long, value_name = "DIR|URL", env = "WALPIPE_ARCHIVE")]
    pub archive: Option<String>,
    /// The incoming queue (archive_command's drop directory) [default: `HOME/SERVER/incoming`,
    /// else beside a local archive: `../incoming`; a cloud archive without a home: none].
    #[arg(long, value_name = "DIR", env = "WALPIPE_INCOMING")]
    pub incoming: Option<PathBuf>,
    /// The streaming queue (pg_receivewal's directory) [default: `HOME/SERVER/streaming`,
    /// else beside a local archive: `../streaming`; a cloud archive without a home: none].
    #[arg(long, value_name = "DIR", env = "WALPIPE_STREAMING")]
    pub streaming: Option<PathBuf>,
    /// Where conflicting and unknown files go [default: `HOME/SERVER/errors`, else beside a
    /// local archive: `../errors`; a cloud archive without a home: none, conflicts fail].
    #[arg(long, value_name = "DIR", env = "WALPIPE_ERRORS_DIR")]
    pub errors_dir: Option<PathBuf>,
    /// Where lock files go [default: HOME; else Barman's home when a local archive is
    /// `<home>/<server>/wals`, else the archive; a cloud archive without a home: none].
    #[arg(long, value_name = "DIR", env = "WALPIPE_LOCK_DIR")]
    pub lock_dir: Option<PathBuf>,
    /// The xlog.db catalogue [default: `<archive>/<server>-xlog.db`; a cloud archive:
    /// `HOME/SERVER/meta/SERVER-xlog.db`, none without a home].
    #[arg(long, value_name = "PATH", env = "WALPIPE_XLOGDB")]
    pub xlogdb: Option<PathBuf>,
}

/// How to reach PostgreSQL over SQL and the receiver's slot: the flags of the tools that
/// ask the server (wal-receive, wal-check), each also a `WALPIPE_*` variable.
#[cfg(feature = "pg")]
#[derive(Debug, Clone, clap::Args)]
pub struct PgArgs {
    /// The connection, libpq's `key=value` form (`host=/var/run/postgresql port=5432
    /// user=streaming_barman`); what it leaves out comes from the libpq environment
    /// (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGPASSFILE…) [default: the environment alone].
    #[arg(long, value_name = "CONNINFO", env = "WALPIPE_DBNAME")]
    pub dbname: Option<String>,
    /// How long to wait for PostgreSQL to answer one SQL question (the connection
    /// included), in seconds (1 to 3600): a server that accepts and never answers is a
    /// temporary failure after that long.
    #[arg(
        long,
        value_name = "SECS",
        env = "WALPIPE_SQL_TIMEOUT",
        default_value_t = 30
    )]
    pub sql_timeout: u64,
    /// The physical replication slot the receiver streams from (Barman's `slot_name`).
    #[arg(long, value_name = "NAME", env = "WALPIPE_SLOT")]
    pub slot: Option<String>,
    /// The pg_receivewal to run [default: `pg_receivewal` on PATH, else the server's
    /// version's under /usr/lib/postgresql/<major>/bin].
    #[arg(long, value_name = "PATH", env = "WALPIPE_PG_RECEIVEWAL")]
    pub pg_receivewal: Option<PathBuf>,
}

#[cfg(feature = "pg")]
impl PgArgs {
    /// The connection string (checked) and the answer deadline (1 to 3600 s), and the
    /// slot name checked as the server would (lower-case letters, digits and `_`, at most
    /// 63 characters).
    pub fn connection(
        &self,
    ) -> crate::error::Result<(crate::pg::conninfo::Conninfo, std::time::Duration)> {
        let conninfo =
            crate::pg::conninfo::Conninfo::parse(self.dbname.as_deref().unwrap_or_default())?;
        if !(1..=3600).contains(&self.sql_timeout) {
            return Err(crate::WalError::Usage(format!(
                "--sql-timeout {}: from 1 to 3600 seconds",
                self.sql_timeout
            )));
        }
        if let Some(slot) = &self.slot {
            let valid = !slot.is_empty()
                && slot.len() <= 63
                && slot
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(crate::WalError::Usage(format!(
                    "--slot {slot:?}: a slot name is lower-case letters, digits and '_', at \
                     most 63 characters"
                )));
            }
        }
        Ok((conninfo, std::time::Duration::from_secs(self.sql_timeout)))
    }
}

impl LayoutArgs {
    /// The settings as given, for [`LayoutSettings::resolve`].
    #[must_use]
    pub fn settings(&self) -> LayoutSettings {
        LayoutSettings {
            home: self.home.clone(),
            server: self.server.clone(),
            archive: self.archive.clone(),
            given: Places {
                incoming: self.incoming.clone(),
                streaming: self.streaming.clone(),
                errors: self.errors_dir.clone(),
                lock_dir: self.lock_dir.clone(),
                xlogdb: self.xlogdb.clone(),
            },
        }
    }
}

/// The `Examples:` section that ends a binary's help (clap's `after_help`, shown by `-h`
/// and `--help`): the heading styled as clap styles its own (`Usage:`, `Options:`), then
/// `lines` as written. clap does not reflow them (no `wrap_help`): keep each under 100
/// columns, a comment line (`# …`) before each command, long pipelines continued with ` \`.
#[must_use]
pub fn examples(lines: &str) -> clap::builder::StyledStr {
    use std::fmt::Write as _;
    let header = *clap::builder::Styles::default().get_header();
    let mut text = clap::builder::StyledStr::new();
    // Writing into a string cannot fail.
    let _ = write!(text, "{header}Examples:{header:#}\n{lines}");
    text
}

/// `A`'s command with the flags every binary shares: `-v`/`--verbose` and `-q`/`--quiet`,
/// which choose what the logger shows ([`crate::log`]), taken before or after a
/// subcommand. The man pages and completions are made from this command too.
#[must_use]
pub fn command<A: clap::CommandFactory>() -> clap::Command {
    use clap::{Arg, ArgAction};
    A::command()
        .arg(
            Arg::new(VERBOSE)
                .short('v')
                .long("verbose")
                .action(ArgAction::Count)
                .global(true)
                .help("Say more: a line for every WAL record each stage passes on (WALPIPE_LOG=debug)"),
        )
        .arg(
            Arg::new(QUIET)
                .short('q')
                .long("quiet")
                .action(ArgAction::Count)
                .global(true)
                .help("Only warnings and errors; twice: errors only (WALPIPE_LOG=warn, error)"),
        )
}

const VERBOSE: &str = "walpipe-verbose";
const QUIET: &str = "walpipe-quiet";

/// Parses the process arguments into `A` and sets the logger's threshold (the flags of
/// [`command`] and a wrapper's, else `WALPIPE_LOG`); on failure prints why and returns the exit status to
/// end with (64 for bad flags, 78 for a `WALPIPE_LOG` that names no level, 0 for
/// `--help`/`--version`). A usage error is one line, as every walpipe diagnostic:
/// `<binary>: <clap's first line>`, without clap's usage block (a wrapper's caller,
/// PostgreSQL's log, shows one line per failure).
pub fn parse_args<A: clap::Parser>() -> Result<A, std::process::ExitCode> {
    let command = command::<A>();
    let binary = command.get_name().to_owned();
    let parsed = command
        .try_get_matches()
        .and_then(|mut matches| A::from_arg_matches_mut(&mut matches).map(|a| (a, matches)));
    let (args, matches) = parsed.map_err(|err| -> std::process::ExitCode {
        if err.use_stderr() {
            crate::log::error!("{}", usage_line(&binary, &err));
            ExitCode::Usage.into()
        } else {
            let _ = err.print();
            ExitCode::Ok.into()
        }
    })?;
    let level =
        crate::log::threshold_from_env(matches.get_count(VERBOSE), matches.get_count(QUIET))
            .map_err(|err| -> std::process::ExitCode {
                crate::log::error!("{binary}: {err}");
                ExitCode::for_error(&err).into()
            })?;
    crate::log::set_threshold(level);
    Ok(args)
}

/// The one line for a usage error: `<binary>: <what clap says first> (<binary> --help)`.
fn usage_line(binary: &str, err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let mut lines = rendered
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    let first = lines.next().unwrap_or("bad usage");
    let mut first = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    // "the following required arguments were not provided:" names them on the lines
    // after it, up to the usage.
    if first.ends_with(':') {
        let named: Vec<&str> = lines
            .take_while(|line| !line.starts_with("Usage:"))
            .collect();
        first = format!("{} {}", first, named.join(", "));
    }
    format!("{binary}: {first} ({binary} --help)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{FromArgMatches as _, Parser};

    #[derive(Debug, Parser)]
    #[command(name = "wal-test")]
    struct Args {
        #[arg(long)]
        count: u16,
    }

    #[derive(Debug, Parser)]
    #[command(name = "wal-tool")]
    struct Tool {
        #[command(subcommand)]
        command: ToolCommand,
    }

    #[derive(Debug, clap::Subcommand)]
    enum ToolCommand {
        Put {
            #[arg(long)]
            count: u16,
        },
    }

    fn counts(argv: &[&str]) -> (u8, u8, u16) {
        let mut matches = command::<Tool>().try_get_matches_from(argv).unwrap();
        let ToolCommand::Put { count } = Tool::from_arg_matches_mut(&mut matches).unwrap().command;
        (matches.get_count(VERBOSE), matches.get_count(QUIET), count)
    }

    #[test]
    fn the_log_flags_are_taken_before_and_after_a_subcommand() {
        assert_eq!(counts(&["wal-tool", "put", "--count", "3"]), (0, 0, 3));
        assert_eq!(
            counts(&["wal-tool", "-v", "put", "--count", "3"]),
            (1, 0, 3)
        );
        assert_eq!(
            counts(&["wal-tool", "put", "-qq", "--count", "3"]),
            (0, 2, 3)
        );
        assert_eq!(
            counts(&["wal-tool", "--quiet", "put", "--count", "3", "--verbose"]),
            (1, 1, 3)
        );
        // A binary without subcommands takes them too.
        let matches = command::<Args>()
            .try_get_matches_from(["wal-test", "--count", "1", "-v"])
            .unwrap();
        assert_eq!(matches.get_count(VERBOSE), 1);
    }

    #[test]
    fn examples_start_with_their_heading() {
        let text = examples("  # list\n  wal-test --count 1").to_string();
        assert_eq!(text, "Examples:\n  # list\n  wal-test --count 1");
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
        // A missing flag is named.
        let err = Args::try_parse_from(["wal-test"]).unwrap_err();
        let line = usage_line("wal-test", &err);
        assert!(line.contains("not provided: --count <COUNT>"), "{line}");
    }
}
