//! wal-check: is this server's WAL reaching its walpipe archive, and will it go on?
//!
//! Barman's `check` items for the WAL side (`FileWalArchiver.check`,
//! `StreamingWalArchiver.check` and the server-level ones around them), against a live
//! PostgreSQL (over SQL, with the receiver's deadline-bound connection) and the
//! archive's own files (the catalogue, the queues, errors/, the identity file, the
//! receiver's status), printed as Barman prints them: console, Nagios or JSON. The facts
//! are gathered in [`facts`], judged in [`judge`], printed by [`report`].
//!
//! Read-only, as a monitor must be: where Barman archives what waits in the queues before
//! judging "WAL archive", walpipe counts WAL waiting in a queue as WAL that arrived (the
//! archive_command works; archive-wal's pace is the queue items' business). The one
//! action left is Barman's last resort when nothing ever arrived: `pg_switch_wal()`, then
//! a bounded wait (a third of `--check-timeout`) for the segment to show up.

pub mod cli;
pub mod facts;
pub mod judge;
pub mod prometheus;
pub mod report;
pub mod status;
pub mod units;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wal_core::WalError;
use wal_core::error::Result;
use wal_core::exit::ExitCode;

use crate::cli::{Args, Command, LimitArgs, OnOff, OutputArgs, ServerArgs};
use crate::facts::ArchiveFacts;
use crate::judge::{Expect, Facts};
use crate::report::Form;

/// This tool's name in messages.
pub const TOOL: &str = "wal-check";

/// Runs the command, writing the report to `out`; returns the report's exit status.
pub fn run(args: Args, out: &mut dyn std::io::Write) -> Result<std::process::ExitCode> {
    match args.command {
        Command::Check {
            server,
            limits,
            output,
        } => check(&server, &limits, &output, out),
        Command::Status {
            server,
            json,
            prometheus,
        } => status(&server, json, prometheus.as_deref(), out),
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Writes the metrics file after the report: a file that cannot be written is said on
/// stderr and leaves the report's verdict as it is (its staleness is what an alert on
/// `walpipe_status_timestamp_seconds` sees).
fn write_metrics(metrics: &prometheus::Metrics, path: &std::path::Path) {
    if let Err(err) = metrics.write(path) {
        wal_core::log::error!("{TOOL}: --prometheus: {err}");
    }
}

fn write_out(out: &mut dyn std::io::Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| WalError::io("cannot write", std::path::Path::new("<stdout>"), e))
}

/// The layout (refused, like the other tools refuse it, when it would lose WAL there:
/// read-only as the check is) and the connection of `server`.
fn open(
    server: &ServerArgs,
) -> Result<(
    wal_core::layout::ResolvedLayout,
    wal_core::pg::conninfo::Conninfo,
    Duration,
)> {
    let layout = server.layout.settings().resolve()?;
    layout.territory()?;
    let (conninfo, deadline) = server.pg.connection()?;
    Ok((layout, conninfo, deadline))
}

/// What the server answered, or why it did not (an item of the report); a connection
/// string that is not one is the caller's error, not the server's.
fn answer<T>(asked: Result<T>) -> Result<std::result::Result<T, String>> {
    match asked {
        Ok(found) => Ok(Ok(found)),
        Err(err @ WalError::Usage(_)) => Err(err),
        Err(err) => Ok(Err(err.to_string())),
    }
}

fn status(
    server: &ServerArgs,
    json: bool,
    prometheus: Option<&std::path::Path>,
    out: &mut dyn std::io::Write,
) -> Result<std::process::ExitCode> {
    let (layout, conninfo, deadline) = open(server)?;
    let archive = ArchiveFacts::gather(&layout);
    let application_name = archive.receiver.status.as_ref().map_or_else(
        || wal_core::pg::conninfo::DEFAULT_APPLICATION_NAME.to_owned(),
        |s| s.application_name.clone(),
    );
    let server_status = answer(facts::ask_status(
        &conninfo,
        deadline,
        &application_name,
        server.pg.slot.as_deref(),
    ))?;
    let facts = status::StatusFacts {
        server: layout.server.clone(),
        archive,
        server_status,
        archiver: server.archiver == OnOff::On,
        streaming: server.streaming_archiver == OnOff::On,
        slot: server.pg.slot.clone(),
        now: now(),
    };
    let lines = status::lines(&facts);
    let text = if json {
        status::json_report(&facts.server, &lines)
    } else {
        status::console(&facts.server, &lines)
    };
    write_out(out, &text)?;
    if let Some(path) = prometheus {
        write_metrics(&status::metrics(&facts), path);
    }
    Ok(ExitCode::Ok.into())
}

fn check(
    server: &ServerArgs,
    limits: &LimitArgs,
    output: &OutputArgs,
    out: &mut dyn std::io::Write,
) -> Result<std::process::ExitCode> {
    let (layout, conninfo, deadline) = open(server)?;
    if !(1..=3600).contains(&limits.check_timeout) {
        return Err(WalError::Usage(format!(
            "--check-timeout {}: from 1 to 3600 seconds",
            limits.check_timeout
        )));
    }
    let expect = Expect {
        server: layout.server.clone(),
        archiver: server.archiver == OnOff::On,
        streaming: server.streaming_archiver == OnOff::On,
        slot: server.pg.slot.clone(),
        max_age: limits
            .last_wal_maximum_age
            .as_deref()
            .map(units::parse_age)
            .transpose()?,
        max_queue: limits.max_incoming_wals_queue,
        verify: limits.verify_state.is_some(),
    };
    let mut archive = ArchiveFacts::gather(&layout);
    let server_facts = answer(facts::ask_server(
        &conninfo,
        deadline,
        expect.slot.as_deref(),
    ))?;
    let mut switch_error = None;
    if let Ok(found) = &server_facts
        && !archive.wal_arrived()
        && archive.catalogue.is_ok()
        && archive.missing_archive.is_none()
    {
        if found.in_recovery {
            switch_error = Some("a standby cannot switch WAL".into());
        } else {
            match facts::switch_wal(&conninfo, deadline) {
                Ok(_) => {
                    let wait = Duration::from_secs((limits.check_timeout / 3).max(1));
                    archive = wait_for_wal(&layout, wait);
                }
                Err(err) => switch_error = Some(err.to_string()),
            }
        }
    }
    let pg_receivewal = if expect.streaming {
        let major = server_facts.as_ref().map_or(15, |s| s.version / 10_000);
        facts::find_pg_receivewal(server.pg.pg_receivewal.as_deref(), major)
    } else {
        None
    };
    let facts = Facts {
        archive,
        server: server_facts,
        switch_error,
        pg_receivewal,
        verified: limits.verify_state.as_deref().map_or(Ok(None), |path| {
            wal_core::verified::load(path).map_err(|err| err.to_string())
        }),
        now: now(),
    };
    let items = judge::judge(&expect, &facts);
    let form = if output.nagios {
        Form::Nagios
    } else if output.json {
        Form::Json
    } else {
        Form::Console
    };
    let (text, code) = report::render(&expect.server, &items, form);
    write_out(out, &text)?;
    if let Some(path) = &output.prometheus {
        write_metrics(&report::metrics(&expect.server, &items), path);
    }
    Ok(if code == 0 {
        ExitCode::Ok.into()
    } else {
        std::process::ExitCode::from(code)
    })
}

/// Gathers the archive's facts until WAL shows up, or `wait` has passed.
fn wait_for_wal(layout: &wal_core::layout::ResolvedLayout, wait: Duration) -> ArchiveFacts {
    let until = Instant::now() + wait;
    loop {
        let archive = ArchiveFacts::gather(layout);
        if archive.wal_arrived() || Instant::now() >= until {
            return archive;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
