//! The supervisor: pg_receivewal run, watched, and run again.
//!
//! Barman runs pg_receivewal with `--no-loop` and leaves restarting to `barman cron`, a
//! minute later, forever, whatever the error. Here each run is judged by what
//! pg_receivewal said before it ended: a transient failure (the server restarting, the
//! network, a slot still held by the walsender of the run just killed) is retried after
//! a pause that doubles up to a bound; a permanent one (WAL the server has removed, a
//! missing slot, authentication) stops the receiver with one line naming the cause and
//! what fixes it, since retrying cannot.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use wal_core::WalError;
use wal_core::error::Result;
use wal_core::log::Level;
use wal_core::names::{SegmentSize, lsn_to_segment, parse_lsn};

use wal_core::receiver::Status;

/// pg_receivewal's messages that retrying cannot cure, with what to tell the DBA.
const PERMANENT: [(&str, &str); 7] = [
    (
        "has already been removed",
        "the server no longer has the WAL the queue needs: stream from a slot, and run \
         `wal-receive reset` to start from what the server has",
    ),
    (
        "replication slot",
        "check --slot (`wal-receive create-slot` makes it)",
    ),
    (
        "password authentication failed",
        "check the password (PGPASSFILE)",
    ),
    (
        "no pg_hba.conf entry",
        "allow the replication connection in pg_hba.conf",
    ),
    (
        "incompatible server version",
        "use the pg_receivewal of the server's version",
    ),
    (
        "must be superuser or replication role",
        "grant the user REPLICATION",
    ),
    (
        "could not create directory",
        "check the streaming directory",
    ),
];

/// How one pg_receivewal run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It exited 0 (stopped by a signal of ours, or the end of a `--no-loop` stream).
    Clean,
    /// Running it again may work; the message says why it stopped.
    Transient(String),
    /// Running it again will not: the message says why and what to do.
    Permanent(String),
}

/// Judges a run from its exit and the error lines it printed (pg_receivewal says the
/// cause first, then `disconnected`).
#[must_use]
pub fn judge(command: &str, exit: std::process::ExitStatus, errors: &[String]) -> Ending {
    if exit.success() {
        return Ending::Clean;
    }
    let ended = match (exit.code(), exit.signal()) {
        (Some(code), _) => format!("{command} terminated with error code: {code}"),
        (None, Some(signal)) => format!("{command} terminated by signal: {signal}"),
        (None, None) => format!("{command} terminated"),
    };
    let permanent = errors.iter().find_map(|said| {
        let said = said.trim();
        // A slot in use right after a restart is the killed run's walsender, not yet
        // gone: it goes away by itself.
        if said.contains("is active for PID") {
            return None;
        }
        PERMANENT
            .iter()
            .find(|(pattern, _)| said.contains(pattern))
            .map(|(_, fix)| format!("{ended}: {said} ({fix})"))
    });
    if let Some(why) = permanent {
        return Ending::Permanent(why);
    }
    match errors.first() {
        Some(said) => Ending::Transient(format!("{ended}: {}", said.trim())),
        None => Ending::Transient(ended),
    }
}

/// What pg_receivewal's `--verbose` lines say about progress: `finished segment at
/// X/Y (timeline N)` gives the segment just completed.
#[must_use]
pub fn finished_segment(line: &str, size: SegmentSize) -> Option<(String, String, u32)> {
    let rest = line.split_once("finished segment at ")?.1;
    let (lsn_text, rest) = rest.split_once(' ')?;
    let timeline: u32 = rest
        .trim()
        .strip_prefix("(timeline ")?
        .strip_suffix(')')?
        .parse()
        .ok()?;
    let lsn = parse_lsn(lsn_text)?;
    // The segment that ends at this LSN.
    let (segment, _) = lsn_to_segment(lsn.checked_sub(1)?, timeline, size);
    Some((segment, lsn_text.to_owned(), timeline))
}

/// One pg_receivewal run to carry out.
#[derive(Debug)]
pub struct Run<'a> {
    /// The pg_receivewal binary.
    pub binary: &'a Path,
    /// Its arguments.
    pub args: Vec<String>,
    /// The server name, prefixing each of its lines on stderr (as Barman logs them).
    pub server: &'a str,
    /// The segment size, for the status.
    pub segment_size: SegmentSize,
}

/// Runs pg_receivewal once, passing its lines to stderr with the server's name and
/// keeping `status` current; returns how it ended.
pub fn run_once(run: &Run<'_>, status: &mut Status, status_path: &Path) -> Result<Ending> {
    // pg_receivewal must see SIGINT: started with the default signal mask, not the
    // blocked one of this process (wal_core::child).
    let child = wal_core::child::spawn_clean(run.binary, &run.args)
        .map_err(|e| WalError::io("cannot run", run.binary, e))?;
    status.child =
        wal_core::process::start_time(child.pid.as_raw()).map(|start| (child.pid.as_raw(), start));
    status.state = "streaming".into();
    status.write(status_path)?;
    let mut errors: Vec<String> = Vec::new();
    let mut level = Level::Info;
    for line in BufReader::new(child.stderr).lines() {
        let Ok(line) = line else { break };
        level = level_of(&line, level);
        wal_core::log::emit(level, format_args!("{}: {line}", run.server));
        if let Some((segment, lsn, timeline)) = finished_segment(&line, run.segment_size) {
            status.last_segment = Some(segment);
            status.last_lsn = Some(lsn);
            status.timeline = Some(timeline);
            status.write(status_path)?;
        } else if let Some((_, said)) = line.split_once("error: ") {
            // The first few are the cause; the rest repeats it.
            if errors.len() < 4 {
                errors.push(said.to_owned());
            }
        }
    }
    let exit = wal_core::child::wait_clean(child.pid)
        .map_err(|e| WalError::io("cannot wait for", run.binary, e));
    status.child = None;
    let name = run.binary.file_name().map_or_else(
        || "pg_receivewal".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(judge(&name, exit?, &errors))
}

/// The level at which a line of pg_receivewal is passed on, `previous` being the last
/// line's: its own level word after the program name (`error`, `fatal`, `warning`, as
/// PostgreSQL's frontends write them), a `detail` or `hint` line at the level of the line
/// it explains, anything else (progress: "starting log streaming at ...", "finished
/// segment at ...") at info. So `-q` keeps its warnings and errors and drops its chatter.
fn level_of(line: &str, previous: Level) -> Level {
    // A message's continuation ("\tThis probably means the server terminated abnormally").
    if line.starts_with([' ', '\t']) {
        return previous;
    }
    let Some((_, said)) = line.split_once(": ") else {
        return Level::Info;
    };
    let word = said.split_once(": ").map_or("", |(word, _)| word);
    match word {
        "error" | "fatal" | "FATAL" | "ERROR" | "PANIC" => Level::Error,
        "warning" | "WARNING" => Level::Warn,
        "detail" | "hint" | "DETAIL" | "HINT" => previous,
        _ => Level::Info,
    }
}

/// Stops the pg_receivewal a killed receiver left running (the status file names it,
/// and it still runs with the same start time): a second one writing the same queue
/// must never run beside it. SIGINT, as a service manager stops it, then SIGKILL after
/// `grace`.
/// Returns whether there was one.
#[must_use = "a stopped orphan may still hold the slot a moment"]
pub fn stop_orphan(previous: &Status, grace: Duration) -> bool {
    let Some((pid, start)) = previous.child else {
        return false;
    };
    if !wal_core::process::is_running(pid, start) {
        return false;
    }
    // The status file is input: only a pg_receivewal is ever stopped from it.
    let command = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if command.trim_end() != "pg_receivewal" {
        wal_core::log::warn!(
            "Not stopping pid {pid}, named by the status file as pg_receivewal: it is {:?}",
            command.trim_end()
        );
        return false;
    }
    wal_core::log::warn!(
        "Stopping pg_receivewal (pid {pid}) left running by a receiver that was killed"
    );
    let target = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGINT);
    let until = std::time::Instant::now() + grace;
    while wal_core::process::is_running(pid, start) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    if wal_core::process::is_running(pid, start) {
        let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
    }
    true
}

/// The pause before restart number `attempt` (1, 2, 4, … seconds, at most `max`); a run
/// that lasted `ran` at least `max` starts the count again.
#[must_use]
pub fn pause(attempt: u32, max: Duration) -> Duration {
    let seconds = 1u64.checked_shl(attempt.min(20)).unwrap_or(u64::MAX) / 2;
    Duration::from_secs(seconds.max(1)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::ExitStatus;

    #[test]
    fn pg_receivewal_lines_keep_their_own_level() {
        let level = |line: &str, previous: Level| level_of(line, previous);
        let info = Level::Info;
        assert_eq!(
            level(
                "pg_receivewal: starting log streaming at 0/1000000 (timeline 1)",
                info
            ),
            info
        );
        assert_eq!(
            level(
                "pg_receivewal: finished segment at 0/2000000 (timeline 1)",
                Level::Error
            ),
            info
        );
        assert_eq!(
            level("pg_receivewal: error: could not connect", info),
            Level::Error
        );
        assert_eq!(level("pg_receivewal: fatal: no slot", info), Level::Error);
        assert_eq!(
            level("pg_receivewal: warning: a warning", info),
            Level::Warn
        );
        // A detail, a hint and a continuation belong to the line they follow.
        assert_eq!(
            level("pg_receivewal: detail: why", Level::Warn),
            Level::Warn
        );
        assert_eq!(level("pg_receivewal: hint: do", Level::Error), Level::Error);
        assert_eq!(
            level("\tThis probably means the server terminated", Level::Error),
            Level::Error
        );
        // A word that only looks like a level in the middle of a message is not one.
        assert_eq!(
            level("pg_receivewal: renamed partial file: error: x", info),
            info
        );
        assert_eq!(level("no program name at all", info), info);
    }

    #[test]
    fn runs_are_judged_by_what_pg_receivewal_said() {
        let code = |c: i32| ExitStatus::from_raw(c << 8);
        let said = |line: &str| vec![line.to_owned(), "disconnected".to_owned()];
        assert_eq!(judge("pg_receivewal", code(0), &[]), Ending::Clean);
        let removed = "could not send replication command \"START_REPLICATION\": ERROR:  \
                       requested WAL segment 000000010000000000000003 has already been removed";
        assert!(
            matches!(judge("pg_receivewal", code(1), &said(removed)), Ending::Permanent(m) if m.contains("wal-receive reset"))
        );
        let no_slot = "replication slot \"walpipe\" does not exist";
        assert!(matches!(
            judge("pg_receivewal", code(1), &said(no_slot)),
            Ending::Permanent(_)
        ));
        let busy = "replication slot \"walpipe\" is active for PID 4242";
        assert!(matches!(
            judge("pg_receivewal", code(1), &said(busy)),
            Ending::Transient(_)
        ));
        let gone = "unexpected termination of replication stream: FATAL:  terminating connection due to administrator command";
        assert!(
            matches!(judge("pg_receivewal", code(1), &said(gone)), Ending::Transient(m) if m.starts_with("pg_receivewal terminated with error code: 1"))
        );
        let killed = ExitStatus::from_raw(9);
        assert_eq!(
            judge("pg_receivewal", killed, &[]),
            Ending::Transient("pg_receivewal terminated by signal: 9".into())
        );
    }

    #[test]
    fn progress_lines_name_the_finished_segment() {
        let line = "pg_receivewal: finished segment at 0/3000000 (timeline 1)";
        assert_eq!(
            finished_segment(line, SegmentSize::DEFAULT),
            Some(("000000010000000000000002".into(), "0/3000000".into(), 1))
        );
        assert_eq!(
            finished_segment(
                "pg_receivewal: starting log streaming at 0/1000000 (timeline 1)",
                SegmentSize::DEFAULT
            ),
            None
        );
        assert_eq!(
            finished_segment("finished segment at 0/0 (timeline 1)", SegmentSize::DEFAULT),
            None
        );
    }

    #[test]
    fn pauses_double_up_to_the_bound() {
        let max = Duration::from_secs(60);
        let pauses: Vec<u64> = (1..=9).map(|n| pause(n, max).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(pause(u32::MAX, max), max);
    }
}
