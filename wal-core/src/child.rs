//! A walpipe tool stopped by a signal takes its running child down with it (feature
//! `child`: wal-hooks' hook scripts, wal-receive's pg_receivewal).
//!
//! Each child runs in a process group of its own, so that a timeout can kill everything it
//! started. The price: a Ctrl-C (sent to the terminal's foreground group), a `kill` of the
//! pipeline or a service manager's stop would no longer reach the child, which would go on
//! running, orphaned. So `main` blocks SIGINT, SIGTERM and SIGHUP and a thread waits for
//! them ([`install`]): on one, it passes the signal on to the running child's group
//! (SIGKILL after a grace period), then ends the process by that same signal, the Unix
//! way. A child started by std inherits the blocked mask (std does not clear it): hook
//! scripts run through `/bin/sh`, which clears its own; a program that must see the
//! signals itself (wal-receive's pg_receivewal) starts with [`spawn_clean`], which gives
//! it the default mask.
//!
//! The registry of the running child ([`spawn_registered`], [`finished`]) is used whether
//! or not the handler is installed, so in-process callers work unchanged.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawn};
use nix::sys::signal::{SigSet, Signal, killpg, raise};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

/// How long a child has to exit after the signal is passed on, before SIGKILL: set by
/// [`install`].
static KILL_GRACE: OnceLock<Duration> = OnceLock::new();

/// The process group of the child running now, and whether the process is stopping.
#[derive(Debug)]
struct Running {
    group: Option<Pid>,
    stopping: bool,
}

static RUNNING: Mutex<Running> = Mutex::new(Running {
    group: None,
    stopping: false,
});

fn running() -> std::sync::MutexGuard<'static, Running> {
    RUNNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The signals that end a run.
fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// The stop signals this process was started with ignored (`SigIgn` of
/// `/proc/self/status`): a non-interactive shell starts `tool &` with SIGINT ignored, and
/// an ignored signal is discarded before the signal thread could see it. Changing a
/// disposition needs `unsafe`, which walpipe forbids, so a long-running tool says so at
/// start instead (SIGTERM still stops it).
#[must_use]
pub fn ignored_stop_signals() -> Vec<Signal> {
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("SigIgn:"))?;
            u64::from_str_radix(line["SigIgn:".len()..].trim(), 16).ok()
        })
        .unwrap_or(0);
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP]
        .into_iter()
        .filter(|signal| mask & (1u64 << ((*signal as u32) - 1)) != 0)
        .collect()
}

/// Blocks the stop signals in the calling thread (and so in every thread it starts later)
/// and starts the thread that handles them: on a signal, `announce` is called (a line to
/// say why the tool stops), the running child gets the signal and `grace` to exit. Call
/// it first thing in `main`.
pub fn install(grace: Duration, announce: fn(Signal)) -> io::Result<()> {
    let _ = KILL_GRACE.set(grace);
    let signals = stop_signals();
    signals.thread_block().map_err(io::Error::from)?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(signal) = signals.wait() else {
                return;
            };
            announce(signal);
            stop_running_child(signal);
            // Die by the signal: unblock it in this thread only and raise it here; its
            // disposition was never changed, so the default action ends the process.
            let mut only = SigSet::empty();
            only.add(signal);
            let _ = only.thread_unblock();
            let _ = raise(signal);
            // Not reached unless raising failed.
            std::process::exit(128 + signal as i32);
        })?;
    Ok(())
}

/// Passes `signal` on to the running child's group, waits for the child to be reaped, and
/// sends SIGKILL to the group if it is not within the grace period. No new child starts
/// after.
fn stop_running_child(signal: Signal) {
    let group = {
        let mut state = running();
        state.stopping = true;
        state.group
    };
    let Some(group) = group else {
        return;
    };
    let _ = killpg(group, signal);
    let deadline = Instant::now() + KILL_GRACE.get().copied().unwrap_or(Duration::ZERO);
    while running().group.is_some() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let _ = killpg(group, Signal::SIGKILL);
}

/// Spawns `command` (which must put the child in a new process group) and registers its
/// group as the running child, atomically with respect to the signal thread: a signal
/// either finds the child registered, or stops the process before it starts.
pub fn spawn_registered(command: &mut Command) -> io::Result<Child> {
    let mut state = running();
    if state.stopping {
        drop(state);
        wait_for_the_end();
    }
    let child = command.spawn()?;
    state.group = i32::try_from(child.id()).ok().map(Pid::from_raw);
    Ok(child)
}

/// A child started by [`spawn_clean`].
#[derive(Debug)]
pub struct CleanChild {
    /// Its pid, also its process group.
    pub pid: Pid,
    /// The read end of its stderr.
    pub stderr: File,
}

/// Starts `program` with `args` (and our environment) as the running child, in a process
/// group of its own, with the default signal mask and the stop signals' default actions,
/// stdin and stdout on `/dev/null`,
/// stderr a pipe; registered as [`spawn_registered`] does. Reap it with [`wait_clean`].
pub fn spawn_clean(program: &Path, args: &[String]) -> io::Result<CleanChild> {
    let text = |bytes: &[u8]| CString::new(bytes).map_err(io::Error::other);
    let mut argv = vec![text(program.as_os_str().as_bytes())?];
    for arg in args {
        argv.push(text(arg.as_bytes())?);
    }
    let envp = std::env::vars_os()
        .map(|(key, value)| {
            let mut pair = key.into_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            text(&pair)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let null = File::options().read(true).write(true).open("/dev/null")?;
    let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
    let mut actions = PosixSpawnFileActions::init()?;
    actions.add_dup2(null.as_raw_fd(), 0)?;
    actions.add_dup2(null.as_raw_fd(), 1)?;
    actions.add_dup2(write.as_raw_fd(), 2)?;
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_sigmask(&SigSet::empty())?;
    // The stop signals we pass on must act even if we were started with them ignored.
    attr.set_sigdefault(&stop_signals())?;
    attr.set_pgroup(Pid::from_raw(0))?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF
            | PosixSpawnFlags::POSIX_SPAWN_SETPGROUP,
    )?;
    let mut state = running();
    if state.stopping {
        drop(state);
        wait_for_the_end();
    }
    let pid = posix_spawn(program, &actions, &attr, &argv, &envp)?;
    state.group = Some(pid);
    Ok(CleanChild {
        pid,
        stderr: File::from(read),
    })
}

/// Reaps a child of [`spawn_clean`], then [`finished`].
pub fn wait_clean(pid: Pid) -> io::Result<ExitStatus> {
    let status = loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => break ExitStatus::from_raw((code & 0xff) << 8),
            Ok(WaitStatus::Signaled(_, signal, _)) => break ExitStatus::from_raw(signal as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(err.into()),
        }
    };
    finished();
    Ok(status)
}

/// The running child has been reaped. If it was stopped by a signal to us, this does not
/// return: the work it ran for must not go on as if the child had merely failed.
pub fn finished() {
    let stopping = {
        let mut state = running();
        state.group = None;
        state.stopping
    };
    if stopping {
        wait_for_the_end();
    }
}

/// Parks the calling thread until the signal thread ends the process.
fn wait_for_the_end() -> ! {
    loop {
        thread::park();
    }
}
