//! Whether a process that left its pid behind (a prefetch claim, a download's temp name)
//! still runs.
//!
//! Such processes outlive whoever started them and are reaped by init, possibly late (in
//! a container whose init does not reap, never): a zombie counts as gone. A pid is reused
//! once its process is gone, so a claim also records the process's start time, which
//! tells the process that wrote it from a later one with the same pid.

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Whether `pid` is a live process. `kill(pid, 0)` answers even where /proc hides other
/// users' processes (`hidepid`): no such process is dead, not permitted is alive.
#[must_use]
pub fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match kill(Pid::from_raw(pid), None) {
        Err(Errno::ESRCH) => false,
        Ok(()) => !matches!(state_and_start(pid), Some((state, _)) if is_dead_state(state)),
        Err(_) => true,
    }
}

/// `pid`'s start time (clock ticks after boot, field 22 of `/proc/PID/stat`), `None`
/// when it is gone, a zombie, or /proc does not say.
#[must_use]
pub fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    match state_and_start(pid)? {
        (state, _) if is_dead_state(state) => None,
        (_, start) => start,
    }
}

/// Whether `pid` runs and started at `start` (see [`start_time`]): the very process
/// that recorded both.
#[must_use]
pub fn is_running(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

fn is_dead_state(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// The state and start time from `/proc/PID/stat`. The command name before them is in
/// parentheses and may hold any byte, `") "` included: the fields follow its last `") "`.
fn state_and_start(pid: i32) -> Option<(char, Option<u64>)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 3.. of the line: the state is field 3, the start time field 22.
    let start = fields.nth(18).and_then(|field| field.parse().ok());
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn this_process_runs_and_a_reaped_child_does_not() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(alive(me));
        let start = start_time(me).expect("our own start time");
        assert!(is_running(me, start));
        assert!(
            !is_running(me, start + 1),
            "another start time is another process"
        );
        let mut child = Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        child.wait().unwrap();
        assert!(
            !alive(pid) || start_time(pid).is_some(),
            "reaped: gone, or a new process"
        );
        assert!(!alive(0) && !alive(-1) && start_time(0).is_none());
    }

    #[test]
    fn a_zombie_is_gone() {
        let child = Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // Not waited for: a zombie once it exited.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while start_time(pid).is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never exited"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!alive(pid), "a zombie is not alive");
        drop(child);
    }
}
