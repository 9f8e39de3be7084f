//! One run of a hook script: `/bin/sh -c SCRIPT`, its output captured, optionally timed out.
//!
//! Barman runs hooks through the shell with their stdout and stderr captured, and logs both
//! when the script fails (`docs/barman-formats.md#running-a-hook`). Here stdout is the
//! record stream, so a script's output
//! must never reach it: both pipes are read on threads of their own, keeping only the last
//! few lines for the failure message. The script's stdin is `/dev/null` (it must not eat
//! records). Each run gets a process group of its own so that a timeout kills everything the
//! script started, not just the shell: SIGTERM to the group, SIGKILL after a grace period.

use std::fmt;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use wal_core::child;

/// How long a hook has to exit after SIGTERM (a timeout, or a signal passed on), before
/// SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(1);

/// The shell that runs hook scripts, as Python's `shell=True` does.
const SHELL: &str = "/bin/sh";
/// Bytes of each output stream kept for the failure message.
const TAIL_BYTES: usize = 4096;
/// Lines of each output stream shown in the failure message.
const TAIL_LINES: usize = 10;
/// How long to wait for a script's output to end after the script exited: a background
/// job it started may hold the pipes open, and must not hold up the stream.
const OUTPUT_GRACE: Duration = Duration::from_millis(250);

/// How a run ended.
#[derive(Debug)]
pub enum Status {
    /// The script exited with this code.
    Exited(i32),
    /// The script was killed by this signal (not by us).
    Signalled(i32),
    /// It ran longer than the timeout and was killed.
    TimedOut(Duration),
    /// It could not be started.
    NotStarted(io::Error),
}

impl Status {
    /// The exit code, when the script exited by itself.
    #[must_use]
    pub fn code(&self) -> Option<i32> {
        match self {
            Status::Exited(code) => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Exited(code) => write!(f, "returned {code}"),
            Status::Signalled(signal) => {
                let name = Signal::try_from(*signal).map_or("unknown signal", Signal::as_str);
                write!(f, "was killed by signal {signal} ({name})")
            }
            Status::TimedOut(limit) => {
                write!(
                    f,
                    "timed out after {} s and was killed",
                    limit.as_secs_f64()
                )
            }
            Status::NotStarted(err) => write!(f, "could not be started: {err}"),
        }
    }
}

/// What one run gave.
#[derive(Debug)]
pub struct Run {
    /// How it ended.
    pub status: Status,
    /// The last lines of its stdout.
    pub stdout_tail: String,
    /// The last lines of its stderr.
    pub stderr_tail: String,
}

impl Run {
    /// True when the script exited 0.
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.status.code() == Some(0)
    }
}

/// Runs `script` with `env` added to the environment, killing it after `timeout`.
#[must_use]
pub fn run(script: &str, env: &[(&str, String)], timeout: Option<Duration>) -> Run {
    let mut command = Command::new(SHELL);
    command
        .arg("-c")
        .arg(script)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match child::spawn_registered(&mut command) {
        Ok(child) => child,
        Err(err) => {
            return Run {
                status: Status::NotStarted(err),
                stdout_tail: String::new(),
                stderr_tail: String::new(),
            };
        }
    };
    // The child leads its own group: its pid is the group id.
    let group = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let (done, outputs_done) = mpsc::channel();
    let stdout = child.stdout.take().map(|pipe| drain(pipe, done.clone()));
    let stderr = child.stderr.take().map(|pipe| drain(pipe, done.clone()));
    drop(done);
    let (exited, exit) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = exited.send(child.wait());
    });
    let status = wait(&exit, group, timeout);
    let _ = waiter.join();
    child::finished();
    // Both readers end at EOF; give a background job holding the pipes a moment only.
    let deadline = Instant::now() + OUTPUT_GRACE;
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if outputs_done.recv_timeout(left).is_err() {
            break;
        }
    }
    Run {
        status,
        stdout_tail: stdout.map(|tail| tail_text(&tail)).unwrap_or_default(),
        stderr_tail: stderr.map(|tail| tail_text(&tail)).unwrap_or_default(),
    }
}

/// Waits for the exit status from the waiter thread; on timeout kills the group.
fn wait(
    exit: &mpsc::Receiver<io::Result<ExitStatus>>,
    group: Pid,
    timeout: Option<Duration>,
) -> Status {
    let received = match timeout {
        None => exit.recv().map_err(|_| RecvTimeoutError::Disconnected),
        Some(limit) => exit.recv_timeout(limit),
    };
    match received {
        Ok(Ok(status)) => status_of(status),
        Ok(Err(err)) => Status::NotStarted(err),
        Err(RecvTimeoutError::Disconnected) => {
            Status::NotStarted(io::Error::other("lost track of the script"))
        }
        Err(RecvTimeoutError::Timeout) => {
            let _ = killpg(group, Signal::SIGTERM);
            if exit.recv_timeout(KILL_GRACE).is_err() {
                let _ = killpg(group, Signal::SIGKILL);
                let _ = exit.recv();
            }
            // Whatever the script started and left behind goes too.
            let _ = killpg(group, Signal::SIGKILL);
            Status::TimedOut(timeout.unwrap_or_default())
        }
    }
}

fn status_of(status: ExitStatus) -> Status {
    match (status.code(), status.signal()) {
        (Some(code), _) => Status::Exited(code),
        (None, Some(signal)) => Status::Signalled(signal),
        (None, None) => Status::NotStarted(io::Error::other(format!("ended oddly: {status}"))),
    }
}

/// The last [`TAIL_BYTES`] read from a pipe, kept by a reader thread.
type Tail = Arc<Mutex<Vec<u8>>>;

/// Reads `pipe` to its end on a thread of its own, keeping its last bytes; says so on
/// `done` at the end.
fn drain(mut pipe: impl Read + Send + 'static, done: mpsc::Sender<()>) -> Tail {
    let tail: Tail = Arc::new(Mutex::new(Vec::with_capacity(TAIL_BYTES)));
    let kept = Arc::clone(&tail);
    thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        loop {
            match pipe.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    let mut kept = kept
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    kept.extend_from_slice(&buffer[..n]);
                    if kept.len() > TAIL_BYTES {
                        let excess = kept.len() - TAIL_BYTES;
                        kept.drain(..excess);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = done.send(());
    });
    tail
}

/// The last [`TAIL_LINES`] lines of what was kept, trimmed.
fn tail_text(tail: &Tail) -> String {
    let bytes = tail
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    last_lines(&String::from_utf8_lossy(&bytes), TAIL_LINES)
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_output_are_captured() {
        let run = run(
            "echo out; echo err >&2; echo \"$GREETING\" >&2; exit 3",
            &[("GREETING", "hello".to_string())],
            None,
        );
        assert_eq!(run.status.code(), Some(3));
        assert_eq!(run.stdout_tail, "out");
        assert_eq!(run.stderr_tail, "err\nhello");
        assert_eq!(run.status.to_string(), "returned 3");
    }

    #[test]
    fn only_the_last_lines_are_kept() {
        let run = run("seq 1 5000 >&2; exit 1", &[], None);
        assert_eq!(
            run.stderr_tail,
            (4991..=5000)
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn a_timeout_kills_the_whole_group() {
        let started = Instant::now();
        // The shell does not exec the last command here, so sleep is a grandchild.
        let run = run("sleep 100; true", &[], Some(Duration::from_millis(200)));
        assert!(
            matches!(run.status, Status::TimedOut(_)),
            "{:?}",
            run.status
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_script_killed_by_a_signal_says_so() {
        let run = run("kill -9 $$", &[], None);
        assert_eq!(run.status.to_string(), "was killed by signal 9 (SIGKILL)");
    }

    #[test]
    fn a_background_job_holding_the_pipes_does_not_hold_us() {
        let started = Instant::now();
        let run = run("sleep 3 & echo started", &[], None);
        assert!(run.succeeded());
        assert_eq!(run.stdout_tail, "started");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn last_lines_trims_the_final_newline() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("", 2), "");
    }
}
