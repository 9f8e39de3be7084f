//! A wal-hooks stopped by a signal takes its running hook down with it.
//!
//! Each hook runs in a process group of its own, so that a timeout can kill everything the
//! script started. The price: a Ctrl-C (sent to the terminal's foreground group) or a
//! `kill` of the pipeline would no longer reach the hook, which would go on running,
//! orphaned, after archiving stopped. So `main` blocks SIGINT, SIGTERM and SIGHUP and a
//! thread waits for them ([`install`]): on one, it passes the signal on to the running
//! hook's group (SIGKILL after a grace period), then ends the process by that same signal,
//! the Unix way. Hooks get the default signal mask back (std resets it in every child).
//!
//! The registry of the running hook ([`spawn_registered`], [`finished`]) is used whether
//! or not the handler is installed, so in-process callers of [`crate::run`] work unchanged.

use std::io;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal, killpg, raise};
use nix::unistd::Pid;

/// How long a hook has to exit after the signal is passed on, before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(1);

/// The process group of the hook running now, and whether the process is stopping.
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

/// The signals that end a wal-hooks run.
fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Blocks the stop signals in the calling thread (and so in every thread it starts later)
/// and starts the thread that handles them. Call it first thing in `main`.
pub fn install() -> io::Result<()> {
    let signals = stop_signals();
    signals.thread_block().map_err(io::Error::from)?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(signal) = signals.wait() else {
                return;
            };
            stop_running_hook(signal);
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

/// Passes `signal` on to the running hook's group, waits for the hook to be reaped, and
/// sends SIGKILL to the group if it is not within [`KILL_GRACE`]. No new hook starts after.
fn stop_running_hook(signal: Signal) {
    let group = {
        let mut state = running();
        state.stopping = true;
        state.group
    };
    let Some(group) = group else {
        return;
    };
    let _ = killpg(group, signal);
    let deadline = Instant::now() + KILL_GRACE;
    while running().group.is_some() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let _ = killpg(group, Signal::SIGKILL);
}

/// Spawns `command` (which must put the child in a new process group) and registers its
/// group as the running hook, atomically with respect to the signal thread: a signal
/// either finds the hook registered, or stops the process before it starts.
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

/// The running hook has been reaped. If it was stopped by a signal to us, this does not
/// return: the record it ran for must not go on as if its hook had merely failed.
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
