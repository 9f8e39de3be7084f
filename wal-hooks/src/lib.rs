//! wal-hooks: the walpipe stage that runs Barman's WAL hook scripts, unchanged, for each
//! record going by: `pre_archive_script`, `pre_archive_retry_script`,
//! `post_archive_retry_script`, `post_archive_script` and the four `*_wal_delete_*` ones
//! (`docs/barman-formats.md#hook-scripts`).
//!
//! One process runs one script; a wrapper chains one process per configured script, in
//! Barman's order (pre: plain then retry; post: retry then plain). A `pre` stage sits
//! before `wal-compress` (the script sees the queue file, not yet archived) and a `post`
//! stage after `wal-store put` (the script sees the stored file), so a hook is always
//! run before, resp. after, the work on its record, as in Barman.
//!
//! What is Barman's here: the environment ([`env`]), running through the shell with the
//! output captured ([`process`]), the retry loop and its exit codes ([`retry`]). What is
//! walpipe's: a `--timeout` per run, records instead of exceptions (exit 63 before the
//! work turns this record and every later one into error records of kind `aborted`, which
//! the later stages pass through, so their sources stay in the queue), and BARMAN_ERROR
//! for every post hook.
//!
//! It is not where anything is archived, deleted or decided about a file: it only runs
//! scripts and, on exit 63 before the work, fails records.
//!
//! [`run`] is the whole stage, callable in-process; `main` only parses the command line
//! and installs the signal handling ([`wal_core::child`]).

use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::thread;

use wal_core::record::RecordError;
use wal_core::stage::{self, Summary};
use wal_core::{ErrorKind, WalError, WalRecord};

pub mod cli;
pub mod config;
pub mod env;
pub mod process;
pub mod retry;

pub use config::{Config, Event, Phase};

use crate::process::Run;
use crate::retry::Verdict;

/// The stage name: prefix of every stderr line, and `error.stage` of failed records.
pub const STAGE: &str = "wal-hooks";

/// Marks the error of a record that was stopped because an earlier record's hook exited
/// 63: its post hooks do not run (Barman never got to it).
const STOPPED_AFTER: &str = "stopped after";

/// Runs the stage: reads records from `input`, runs the hook for each, writes them to
/// `output` in the same order, one at a time (as Barman: one WAL file after the other).
///
/// Hook failures are reported on stderr and never fail the stream; records stopped by an
/// exit 63 are counted as failed in the [`Summary`]. An `Err` is a failure of the whole
/// stream: unreadable input, or an output that cannot be written.
pub fn run(
    config: &Config,
    input: impl BufRead + Send,
    output: impl Write,
) -> Result<Summary, WalError> {
    let mut hooks = Hooks {
        config,
        stopped_by: None,
    };
    // Batches of one: the driver flushes after each, so the next stage gets every record
    // as soon as its hook is done, and sees failed records too (post hooks run for them).
    stage::run_batches(STAGE, 1, input, output, |batch| {
        for record in batch.iter_mut() {
            hooks.process(record);
        }
        Ok(())
    })
}

/// The hook and what happened so far in the stream.
struct Hooks<'a> {
    config: &'a Config,
    /// The record whose pre hook exited 63; every later record is stopped too.
    stopped_by: Option<String>,
}

impl Hooks<'_> {
    fn process(&mut self, record: &mut WalRecord) {
        match self.config.phase {
            Phase::Pre => self.before_work(record),
            Phase::Post => self.after_work(record),
        }
    }

    /// Pre phase: healthy records only; exit 63 stops this record and all later ones.
    fn before_work(&mut self, record: &mut WalRecord) {
        if record.failed() {
            return;
        }
        if let Some(first) = &self.stopped_by {
            record.error = Some(aborted(format!(
                "{}: not {}: {STOPPED_AFTER} {} exited 63 on {first}",
                wal_core::log::one_line(&record.name),
                self.config.work_done(),
                self.config.option_name(),
            )));
            return;
        }
        if self.run_hook(record) == Some(Verdict::AbortStop) {
            wal_core::log::error!(
                "{STAGE}: {}: {} ({}) was aborted (got exit status 63, walpipe requested to \
                 stop): this and every later WAL file are not {}",
                wal_core::log::one_line(&record.name),
                self.config.option_name(),
                self.config.script,
                self.config.work_done(),
            );
            // Barman's AbortedRetryHookScript text.
            record.error = Some(aborted(format!(
                "{}: Abort '{}' retry hook script ({}, exit code: 63)",
                wal_core::log::one_line(&record.name),
                self.config.option_name(),
                self.config.script,
            )));
            self.stopped_by = Some(record.name.clone());
        }
    }

    /// Post phase: every record the work was tried on, failed or not; exit 63 is ignored.
    fn after_work(&mut self, record: &WalRecord) {
        if !post_hooks_run_for(record, self.config.event) {
            return;
        }
        if self.run_hook(record) == Some(Verdict::AbortStop) {
            let what = match self.config.event {
                Event::Archive => "post-archive",
                Event::Delete => "post-wal-delete",
            };
            wal_core::log::warn!(
                "{STAGE}: {}: Ignoring stop request after receiving abort (exit code 63) \
                 from {what} retry hook script: {}",
                wal_core::log::one_line(&record.name),
                self.config.script
            );
        }
    }

    /// Runs the hook on `record`: once for a plain hook (`None`), until it exits 0, 62 or
    /// 63 for a retry hook.
    fn run_hook(&self, record: &WalRecord) -> Option<Verdict> {
        let env = env::hook_env(self.config, record);
        let config = self.config;
        if !config.retry {
            let run = process::run(&config.script, &env, config.timeout);
            if !run.succeeded() {
                self.report(record, &run, "");
            }
            return None;
        }
        let mut failures = 0u32;
        loop {
            let run = process::run(&config.script, &env, config.timeout);
            match Verdict::of_exit_code(run.status.code()) {
                Some(Verdict::AbortContinue) => {
                    wal_core::log::warn!(
                        "{STAGE}: {}: {} ({}) was aborted (got exit status 62, walpipe resumes)",
                        wal_core::log::one_line(&record.name),
                        config.option_name(),
                        config.script
                    );
                    return Some(Verdict::AbortContinue);
                }
                Some(verdict) => return Some(verdict),
                None => {
                    failures = failures.saturating_add(1);
                    let pause = config.schedule.pause_after(failures);
                    let note = format!(
                        " (attempt {failures}); trying again in {} s",
                        pause.as_secs_f64()
                    );
                    self.report(record, &run, &note);
                    thread::sleep(pause);
                }
            }
        }
    }

    /// Barman's warning for a failed run: "<script> returned N" and the script's output.
    fn report(&self, record: &WalRecord, run: &Run, note: &str) {
        let mut text = format!(
            "{STAGE}: {}: {} ({}) {}{note}",
            wal_core::log::one_line(&record.name),
            self.config.option_name(),
            self.config.script,
            run.status
        );
        for (label, tail) in [("stderr", &run.stderr_tail), ("stdout", &run.stdout_tail)] {
            for line in tail.lines() {
                let _ = write!(text, "\n  {label}: {line}");
            }
        }
        wal_core::log::warn!("{text}");
    }
}

/// The error of a record stopped by a hook's exit 63.
fn aborted(message: String) -> RecordError {
    RecordError {
        stage: STAGE.to_string(),
        kind: ErrorKind::Aborted,
        message,
    }
}

/// Whether post hooks run for `record`: yes for every record the work was tried on,
/// succeeded or failed (Barman runs post-archive hooks in a `finally`); no for queue
/// entries that are not WAL files (Barman runs no hook for those), for input lines that
/// are not records, and for records stopped by an earlier record's exit 63 (Barman never
/// reached them). The record whose own pre hook exited 63 gets its post-archive hooks, as
/// in Barman, but no post-delete hooks (Barman's delete has no `finally`: the stop
/// propagates out before them).
fn post_hooks_run_for(record: &WalRecord, event: Event) -> bool {
    let Some(error) = &record.error else {
        return true;
    };
    match error.kind {
        ErrorKind::Unknown | ErrorKind::BadRecord => false,
        ErrorKind::Aborted if error.stage == STAGE => {
            let stopped_earlier = error.message.contains(&format!(": {STOPPED_AFTER} "));
            event == Event::Archive && !stopped_earlier
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn lines(output: &[u8]) -> Vec<WalRecord> {
        String::from_utf8(output.to_vec())
            .unwrap()
            .lines()
            .enumerate()
            .map(|(i, line)| WalRecord::from_line(line, i as u64 + 1).unwrap())
            .collect()
    }

    fn input(names: &[&str]) -> String {
        names.iter().fold(String::new(), |mut text, name| {
            let _ = writeln!(text, r#"{{"name":"{name}","size":1,"time":1.5}}"#);
            text
        })
    }

    #[test]
    fn exit_63_before_the_work_stops_this_and_every_later_record() {
        let mut config = Config::new(
            Phase::Pre,
            Event::Archive,
            r#"test "$BARMAN_SEGMENT" != 000000010000000000000002 || exit 63"#,
            true,
            "pg",
        );
        config.schedule = retry::Schedule::scaled(0.0);
        let names = [
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003",
        ];
        let mut out = Vec::new();
        let summary = run(&config, Cursor::new(input(&names)), &mut out).unwrap();
        let records = lines(&out);
        assert!(records[0].error.is_none());
        let second = records[1].error.as_ref().unwrap();
        assert_eq!(second.kind, ErrorKind::Aborted);
        assert!(
            second.message.ends_with("exit code: 63)"),
            "{}",
            second.message
        );
        assert!(
            post_hooks_run_for(&records[1], Event::Archive),
            "the aborting record gets its post-archive hooks"
        );
        assert!(!post_hooks_run_for(&records[1], Event::Delete));
        assert_eq!(records[2].error.as_ref().unwrap().kind, ErrorKind::Aborted);
        assert!(
            !post_hooks_run_for(&records[2], Event::Archive),
            "later ones do not"
        );
        assert_eq!(summary.failed, 2);
    }

    #[test]
    fn post_hooks_skip_what_barman_never_hooks() {
        let mut record = WalRecord::new("junk");
        record.error = Some(RecordError {
            stage: "wal-scan".into(),
            kind: ErrorKind::Unknown,
            message: "junk: not a WAL file".into(),
        });
        assert!(!post_hooks_run_for(&record, Event::Archive));
        record.error.as_mut().unwrap().kind = ErrorKind::Conflict;
        assert!(post_hooks_run_for(&record, Event::Archive));
    }
}
