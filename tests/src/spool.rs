//! Waiting for `restore-wal --prefetch`'s background workers to be done with a spool.
//!
//! A prefetch worker outlives the restore-wal call that started it, and may start a
//! moment after that call returned. While it works it holds a claim, `<segment>.claim`
//! holding its pid, in the spool directory. A test that checks what the spool holds, or
//! removes the directory, must first wait until no live process holds a claim. Workers are
//! reparented to init and reaped by it, possibly late, so a zombie counts as gone.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::wrappers::dir_names;

/// Waits (`timeout` at most) until no prefetch worker holds a claim in `spool`.
///
/// # Panics
/// When a worker is still busy after `timeout`.
pub fn wait_for_workers(spool: &Path, timeout: Duration) {
    assert!(
        workers_idle_within(spool, timeout),
        "prefetch workers still busy in {}",
        spool.display()
    );
}

/// Whether, within `timeout`, no live process holds a claim in `spool` (a busy worker is
/// `false`, not a panic: for `Drop` implementations too).
#[must_use]
pub fn workers_idle_within(spool: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let busy = dir_names(spool).iter().any(|name| {
            Path::new(name)
                .extension()
                .is_some_and(|ext| ext == "claim")
                && fs::read_to_string(spool.join(name))
                    .ok()
                    .and_then(|text| text.split_whitespace().next().map(str::to_owned))
                    .and_then(|pid| pid.parse().ok())
                    .is_some_and(wal_core::process::alive)
        });
        if !busy {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
