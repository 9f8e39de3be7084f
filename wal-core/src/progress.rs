//! How far a long run has got, for the DBA watching it: a counter of files and bytes on
//! stderr, redrawn in place, only when stderr is a terminal.
//!
//! A backlog archived by hand, a verify of ten thousand files or a restore of a day's WAL
//! can run for minutes with nothing to say until the end. On a terminal the last stage
//! of such a pipeline (wal-store put, place writing files out; wal-verify), and
//! rebuild-xlogdb reading a local archive, show how many files it has done, their bytes and the rate; the line is cleared when the run ends, so
//! the summary lines that follow stay as they always were. Never anywhere else: in a pipe,
//! a log file, under cron or PostgreSQL, stderr carries the same one line per event as
//! ever, and stdout, the records, is the same byte for byte either way. `WALPIPE_PROGRESS=0`
//! turns it off on a terminal too.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A counter drawn on stderr when it is a terminal; nothing at all otherwise.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    bytes: std::sync::atomic::AtomicU64,
}

impl Progress {
    /// The counter of `tool` (the prefix its stderr lines carry), counting `unit`
    /// ("files stored", "files verified"). Drawn only when stderr is a terminal,
    /// `WALPIPE_PROGRESS` is not `0` and the log level shows `info` lines.
    #[must_use]
    pub fn on_terminal(tool: &'static str, unit: &'static str) -> Self {
        // A DBA who asked for quiet (-q) gets no counter either.
        let wanted = std::env::var_os("WALPIPE_PROGRESS").is_none_or(|v| v != "0")
            && crate::log::enabled(crate::log::Level::Info);
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let template = format!("{tool}: {{spinner}} {{pos}} {unit}, {{msg}} [{{elapsed}}]");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar.set_message("0 B");
            bar.enable_steady_tick(Duration::from_millis(200));
            *drawn_bar() = Some(bar.clone());
            bar
        });
        Progress {
            bar,
            bytes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// One more file done, of `bytes`.
    pub fn tick(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            let total = self
                .bytes
                .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed)
                + bytes;
            bar.inc(1);
            bar.set_message(HumanBytes(total).to_string());
        }
    }

    /// Whether anything is drawn.
    #[must_use]
    pub fn is_drawn(&self) -> bool {
        self.bar.is_some()
    }
}

impl Drop for Progress {
    /// The line goes when the run ends: what follows on stderr starts on a clean line.
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            drawn_bar().take();
            bar.finish_and_clear();
        }
    }
}

/// The counter drawn now, if any: the logger writes its lines above it.
fn drawn_bar() -> std::sync::MutexGuard<'static, Option<ProgressBar>> {
    static DRAWN: std::sync::Mutex<Option<ProgressBar>> = std::sync::Mutex::new(None);
    // A thread that panicked holding it left a bar or none: either is still right.
    DRAWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `write` (a line for stderr) with the counter, if one is drawn, taken off the
/// screen and redrawn below the line afterwards: a line never lands in the middle of it.
pub fn suspend(write: impl FnOnce()) {
    let bar = drawn_bar().clone();
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}
