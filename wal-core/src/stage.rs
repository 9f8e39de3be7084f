//! The stage driver: the loop every walpipe binary runs.
//!
//! A stage reads records, does its job on each, and writes them out in input order. A
//! record that fails gets its `error` set, one line goes to stderr, and the stream goes on;
//! records that an earlier stage failed pass through untouched; an input line that is not
//! a record becomes an error record of kind `bad_record`. Only whole-stream failures
//! (stdout gone, stdin unreadable) stop the loop. The [`Summary`] then chooses the exit code
//! (or a [`Verdict`], when the stage chose it). A stdout that is a closed pipe ends the
//! stage quietly: the next stage is gone and has said why ([`downstream_gone`]).
//!
//! Input is read on its own thread so that a stage can take every record already waiting
//! as one batch (wal-store fsyncs xlog.db once per batch) without ever waiting for more.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, Read, Write};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread;

use serde_json::Value;

use crate::error::{ErrorKind, WalError};
use crate::exit::ExitCode;
use crate::record::{RecordError, WalRecord};

/// The most records any stage works on at once (`--jobs` of wal-compress, wal-encrypt
/// and wal-store's cloud transfers, all read from `WALPIPE_JOBS`): far beyond any
/// machine's cores or a store's useful connections, and low enough that a typo such as
/// `--jobs 100000` is refused instead of exhausting threads or memory.
pub const MAX_JOBS: usize = 256;

/// A transforming stage's `--jobs`: `None` or 0 means `default` (one per core, capped by
/// the stage), more than [`MAX_JOBS`] is a usage error naming the flag.
pub fn jobs(
    asked: Option<usize>,
    default: impl FnOnce() -> std::num::NonZeroUsize,
) -> Result<std::num::NonZeroUsize, WalError> {
    match asked {
        Some(asked) if asked > MAX_JOBS => Err(WalError::Usage(format!(
            "--jobs {asked}: at most {MAX_JOBS} files at once (0: one per core)"
        ))),
        asked => Ok(asked
            .and_then(std::num::NonZeroUsize::new)
            .unwrap_or_else(default)),
    }
}

/// How many records the input thread reads ahead of the stage.
const READ_AHEAD: usize = 64;

/// The longest input line taken for a record (a record is a few hundred bytes): a longer
/// one is malformed, and is never held in memory whole.
const MAX_LINE: usize = 1 << 20;

/// What a stage run amounted to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records written out.
    pub records: u64,
    /// Records this stage failed.
    pub failed: u64,
    /// Of those, the ones that failed for a transient reason (kind `temporary`).
    pub temporary: u64,
    /// Input lines that were not records.
    pub malformed: u64,
    /// Records that arrived failed by an earlier stage and were passed on as they were:
    /// not this stage's failures (it did not report them), but not its successes either,
    /// which a stage that vouches for what it saw (wal-verify) must not count as done.
    pub arrived_failed: u64,
    /// Of those, the ones an earlier stage failed as not being the WAL they claim to be
    /// (kind `corrupt` or `unknown`): wal-verify counts them with its own corrupt files.
    pub arrived_corrupt: u64,
}

impl Summary {
    /// 65 when the input held lines that are not records; 75 when records failed, all for
    /// transient reasons (a store that did not answer: try again later); 1 when records
    /// failed otherwise; else 0.
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        if self.malformed > 0 {
            ExitCode::DataErr
        } else if self.failed > 0 && self.temporary == self.failed {
            ExitCode::TempFail
        } else if self.failed > 0 {
            ExitCode::RecordsFailed
        } else {
            ExitCode::Ok
        }
    }
}

/// The debug line for a record a stage passes on: its name, then what this stage (or an
/// earlier one) made of it, where its bytes are and in what form.
fn what_became_of(record: &WalRecord, arrived_failed: bool) -> String {
    use crate::log::one_line;
    let mut text = one_line(&record.name).into_owned();
    match (&record.error, record.outcome) {
        (Some(err), _) if arrived_failed => {
            let _ = write!(
                text,
                ": passed on, failed by {} ({})",
                err.stage,
                err.kind.as_str()
            );
        }
        (Some(err), _) => {
            let _ = write!(text, ": failed ({})", err.kind.as_str());
        }
        (None, Some(outcome)) => {
            let _ = write!(text, ": {}", outcome.as_str());
        }
        (None, None) => text.push_str(": passed on"),
    }
    let _ = write!(text, ", {} bytes", record.size);
    if let Some(compression) = record.compression {
        let _ = write!(text, ", {compression}");
    }
    if let Some(encryption) = record.encryption {
        let _ = write!(text, ", {}", encryption.name());
    }
    if let Some(path) = &record.path {
        let _ = write!(text, ", at {}", one_line(&path.to_string_lossy()));
    }
    if let Some(stored) = &record.stored_at {
        let _ = write!(text, ", stored at {}", one_line(&stored.to_string_lossy()));
    }
    text
}

/// Writes records, one per line, flushing after each batch so the next stage of the pipe
/// sees them at once.
#[derive(Debug)]
pub struct RecordWriter<W: Write> {
    output: W,
    stage: &'static str,
    summary: Summary,
}

impl<W: Write> RecordWriter<W> {
    /// A writer for `stage` (the name that prefixes its stderr lines).
    pub fn new(stage: &'static str, output: W) -> Self {
        RecordWriter {
            output,
            stage,
            summary: Summary::default(),
        }
    }

    /// Writes one record. If this stage failed it (`was_failed` tells whether it arrived
    /// failed), the failure is counted and reported on stderr.
    pub fn write(&mut self, record: &WalRecord, was_failed: bool) -> Result<(), WalError> {
        if let Some(err) = &record.error {
            if err.kind == ErrorKind::BadRecord && err.stage == self.stage && record.name.is_empty()
            {
                self.summary.malformed += 1;
                crate::log::error!("{}: {}", self.stage, crate::log::one_line(&err.message));
            } else if record.ahead.is_some() {
                // Archived ahead of PostgreSQL's call: its own call will archive it, and
                // say why if it fails again.
            } else if !was_failed {
                self.summary.failed += 1;
                if err.kind == ErrorKind::Temporary {
                    self.summary.temporary += 1;
                }
                crate::log::error!("{}: {}", self.stage, crate::log::one_line(&err.message));
            } else {
                self.summary.arrived_failed += 1;
                if matches!(err.kind, ErrorKind::Corrupt | ErrorKind::Unknown) {
                    self.summary.arrived_corrupt += 1;
                }
            }
        }
        if crate::log::enabled(crate::log::Level::Debug) && !record.name.is_empty() {
            crate::log::debug!("{}: {}", self.stage, what_became_of(record, was_failed));
        }
        self.summary.records += 1;
        record.write_line(&mut self.output).map_err(output_error)
    }

    /// Flushes what was written.
    pub fn flush(&mut self) -> Result<(), WalError> {
        self.output.flush().map_err(output_error)
    }

    /// The counts so far.
    #[must_use]
    pub fn summary(&self) -> Summary {
        self.summary
    }
}

/// What `action` every failure to write records to stdout says ([`downstream_gone`]).
const WRITE_RECORDS: &str = "cannot write records to";

/// A failure to write records to stdout.
fn output_error(source: io::Error) -> WalError {
    WalError::io(WRITE_RECORDS, "stdout", source)
}

/// True when `err` is a write of records into a closed pipe (EPIPE): the next stage is
/// gone, typically because it failed as it started (a key file that is not there) and
/// said why itself. [`exit_status`] then ends the stage with its usual code for the
/// failure (74) but without a second stderr line ("cannot write records to stdout")
/// that would only hide the cause. Any other output error (a full disk) is reported.
#[must_use]
pub fn downstream_gone(err: &WalError) -> bool {
    matches!(
        err,
        WalError::Io { action, source, .. }
            if *action == WRITE_RECORDS && source.kind() == io::ErrorKind::BrokenPipe
    )
}

/// How a stage's run ended: its [`Summary`], and the exit status when the stage chose it
/// itself rather than from the counts (wal-store's write-out, which decides a whole
/// restore's status from the records it gets; a look-up that did not find a name). A
/// chosen status has had its stderr lines already, or needs none (a record that arrived
/// failed was reported by the stage that failed it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The counts.
    pub summary: Summary,
    /// The status chosen by the stage; `None`: [`Summary::exit_code`].
    pub status: Option<ExitCode>,
}

impl Verdict {
    /// The status chosen, else the summary's.
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        self.status.unwrap_or_else(|| self.summary.exit_code())
    }
}

impl From<Summary> for Verdict {
    fn from(summary: Summary) -> Self {
        Verdict {
            summary,
            status: None,
        }
    }
}

/// Reads records on a background thread, for the lifetime of `body`.
///
/// `body` gets a [`RecordReader`] to pull from. A read error on the input ends the stream
/// and is returned after `body` completes.
pub fn with_reader<R, T>(
    stage: &'static str,
    input: R,
    body: impl FnOnce(&mut RecordReader) -> Result<T, WalError>,
) -> Result<T, WalError>
where
    R: BufRead + Send,
{
    let (sender, receiver) = sync_channel(READ_AHEAD);
    thread::scope(|scope| {
        let reader_thread = scope.spawn(move || read_lines(stage, input, &sender));
        let mut reader = RecordReader { receiver };
        let result = body(&mut reader);
        // Unblock the reader if the body stopped early, then collect its verdict.
        drop(reader);
        let read_result = reader_thread
            .join()
            .map_err(|_| WalError::Internal("input thread panicked".into()))?;
        let value = result?;
        read_result?;
        Ok(value)
    })
}

/// The stage's end of the input thread.
#[derive(Debug)]
pub struct RecordReader {
    receiver: Receiver<WalRecord>,
}

impl RecordReader {
    /// The next record, waiting for it; `None` at the end of the input.
    pub fn next_record(&mut self) -> Option<WalRecord> {
        self.receiver.recv().ok()
    }

    /// The next record and every one already waiting, up to `max` in all; empty at the end
    /// of the input. Never waits once it has one record.
    pub fn next_batch(&mut self, max: usize) -> Vec<WalRecord> {
        let Some(first) = self.next_record() else {
            return Vec::new();
        };
        let mut batch = vec![first];
        while batch.len() < max.max(1) {
            match self.receiver.try_recv() {
                Ok(record) => batch.push(record),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        batch
    }
}

fn read_lines(
    stage: &'static str,
    mut input: impl BufRead,
    sender: &SyncSender<WalRecord>,
) -> Result<(), WalError> {
    let mut buffer = Vec::with_capacity(1024);
    let mut line_number = 0u64;
    loop {
        buffer.clear();
        let read = (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buffer)
            .map_err(|e| WalError::io("cannot read records from", "stdin", e))?;
        if read == 0 {
            return Ok(());
        }
        line_number += 1;
        if buffer.len() > MAX_LINE && buffer.last() != Some(&b'\n') {
            skip_rest_of_line(&mut input)?;
            let start = String::from_utf8_lossy(&buffer[..200]).into_owned();
            let err = WalError::BadRecord {
                line: line_number,
                reason: format!("longer than {MAX_LINE} bytes"),
            };
            if sender.send(malformed_record(stage, &start, &err)).is_err() {
                return Ok(());
            }
            continue;
        }
        let text = String::from_utf8_lossy(&buffer);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let record = WalRecord::from_line(text, line_number)
            .and_then(|record| record.check_name(line_number).map(|()| record))
            .unwrap_or_else(|err| malformed_record(stage, text, &err));
        if sender.send(record).is_err() {
            // The stage stopped reading: nothing more to do.
            return Ok(());
        }
    }
}

/// Discards the input up to and including the next newline.
fn skip_rest_of_line(input: &mut impl BufRead) -> Result<(), WalError> {
    loop {
        let available = input
            .fill_buf()
            .map_err(|e| WalError::io("cannot read records from", "stdin", e))?;
        if available.is_empty() {
            return Ok(());
        }
        let (used, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (available.len(), false),
        };
        input.consume(used);
        if done {
            return Ok(());
        }
    }
}

/// The error record standing for an input line that is not a record. The raw line is kept
/// in `line` so it can be inspected or repaired and replayed.
fn malformed_record(stage: &str, text: &str, err: &WalError) -> WalRecord {
    let mut record = WalRecord::new("");
    record.error = Some(RecordError {
        stage: stage.to_string(),
        kind: ErrorKind::BadRecord,
        message: err.to_string(),
    });
    record
        .extra
        .insert("line".to_string(), Value::String(text.to_string()));
    record
}

/// Refuses a `--temp-dir` that is not a directory before any record is touched: every
/// record would fail the same way.
pub fn check_temp_dir(dir: &std::path::Path) -> Result<(), WalError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(WalError::io(
            "cannot create files in",
            dir,
            io::Error::from(io::ErrorKind::NotADirectory),
        )),
        Err(e) => Err(WalError::io("cannot create files in", dir, e)),
    }
}

/// For a stage that cannot start (a key file that is not there, a temp directory that
/// is not one): every record of `input` is passed on failed with `err`, whose one stderr
/// line the caller prints (it returns `err` for its exit status). The pipeline goes on
/// to its last stage, which decides the outcome from the records it gets: a restore's
/// write-out then fails with `err`'s kind and says nothing more, where a stage that
/// stopped at once would have left it no record (and its upstream a closed pipe).
pub fn fail_every_record(
    stage: &'static str,
    err: WalError,
    input: impl BufRead + Send,
    output: impl Write,
) -> WalError {
    let mut writer = RecordWriter::new(stage, output);
    let passed = with_reader(stage, input, |reader| {
        while let Some(mut record) = reader.next_record() {
            if !record.failed() {
                record.error = Some(startup_failure(stage, &err));
            }
            // Counted, not reported: the caller reports `err` once.
            writer.summary.records += 1;
            record
                .write_line(&mut writer.output)
                .map_err(output_error)?;
        }
        writer.flush()
    });
    match passed {
        Err(write_failed) if !downstream_gone(&write_failed) => {
            report_error(stage, &write_failed);
            err
        }
        _ => err,
    }
}

/// [`fail_every_record`] for a stage whose input is names, not records (a look-up): a
/// failed record for each name that is a plain file name (any other would be a malformed
/// line to the next stage, a second message), then `err` back for the caller to report.
pub fn fail_every_name(
    stage: &'static str,
    err: WalError,
    names: &[String],
    mut output: impl Write,
) -> WalError {
    for name in names
        .iter()
        .filter(|name| crate::record::is_plain_name(name))
    {
        let mut record = WalRecord::new(name.as_str());
        record.error = Some(startup_failure(stage, &err));
        if let Err(write_failed) = record.write_line(&mut output).map_err(output_error) {
            if !downstream_gone(&write_failed) {
                report_error(stage, &write_failed);
            }
            return err;
        }
    }
    let _ = output.flush();
    err
}

/// The error a record gets from a stage that cannot start: kind `config` whatever `err`'s
/// (the stage is set up wrong), so that its own "not found" (a key file, an archive
/// directory) never reads as a WAL the archive lacks.
fn startup_failure(stage: &str, err: &WalError) -> RecordError {
    RecordError {
        stage: stage.to_string(),
        kind: ErrorKind::Config,
        message: err.to_string(),
    }
}

/// Seconds since the epoch, for look-ahead deadlines.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Fails a look-ahead record whose time is up ([`WalRecord::ahead`]) `temporary`,
/// untouched; returns whether it did.
fn expire(stage: &str, record: &mut WalRecord, now: f64) -> bool {
    if !record.ahead_expired(now) {
        return false;
    }
    let err = WalError::Temporary(format!(
        "{}: left for PostgreSQL's own call (the look-ahead time is up)",
        record.name
    ));
    record.fail(stage, &err);
    true
}

/// Runs `work` on a healthy record, unless it is a look-ahead record whose time is up.
fn work_on(
    stage: &str,
    record: &mut WalRecord,
    work: impl FnOnce(&mut WalRecord) -> Result<(), WalError>,
) {
    if !expire(stage, record, now())
        && let Err(err) = work(record)
    {
        record.fail(stage, &err);
    }
}

/// Runs `work` on each healthy record, one at a time, in order.
pub fn run_each<R, W>(
    stage: &'static str,
    input: R,
    output: W,
    mut work: impl FnMut(&mut WalRecord) -> Result<(), WalError>,
) -> Result<Summary, WalError>
where
    R: BufRead + Send,
    W: Write,
{
    let mut writer = RecordWriter::new(stage, output);
    with_reader(stage, input, |reader| {
        while let Some(mut record) = reader.next_record() {
            let was_failed = record.failed();
            if !was_failed {
                work_on(stage, &mut record, &mut work);
            }
            writer.write(&record, was_failed)?;
            writer.flush()?;
        }
        Ok(())
    })?;
    Ok(writer.summary())
}

/// Runs `work` on up to `jobs` healthy records at once; output keeps the input order.
///
/// Memory stays bounded: at most `2 × jobs` records are in flight.
pub fn run_parallel<R, W, F>(
    stage: &'static str,
    jobs: usize,
    input: R,
    output: W,
    work: F,
) -> Result<Summary, WalError>
where
    R: BufRead + Send,
    W: Write,
    F: Fn(&mut WalRecord) -> Result<(), WalError> + Sync,
{
    let jobs = jobs.max(1);
    if jobs == 1 {
        return run_each(stage, input, output, work);
    }
    let mut writer = RecordWriter::new(stage, output);
    with_reader(stage, input, |reader| {
        let (task_sender, task_receiver) = sync_channel::<(u64, WalRecord)>(jobs);
        let (done_sender, done_receiver) = sync_channel::<(u64, WalRecord, bool)>(jobs);
        let task_receiver = Mutex::new(task_receiver);
        thread::scope(|scope| {
            let mut started = 0;
            for _ in 0..jobs {
                let done_sender = done_sender.clone();
                let task_receiver = &task_receiver;
                let work = &work;
                // A thread the system refuses is a job fewer, never a panic; with none at
                // all the run cannot go on.
                let spawned = thread::Builder::new().spawn_scoped(scope, move || {
                    loop {
                        let task = task_receiver.lock().map(|rx| rx.recv());
                        let Ok(Ok((sequence, mut record))) = task else {
                            return;
                        };
                        let was_failed = record.failed();
                        if !was_failed {
                            work_on(stage, &mut record, work);
                        }
                        if done_sender.send((sequence, record, was_failed)).is_err() {
                            return;
                        }
                    }
                });
                match spawned {
                    Ok(_) => started += 1,
                    Err(e) if started == 0 => {
                        return Err(WalError::io("cannot start a worker thread for", stage, e));
                    }
                    Err(_) => break,
                }
            }
            drop(done_sender);
            // Feed tasks from a thread of its own so the writer below never blocks the feeder.
            let feeder = scope.spawn(move || {
                let mut sequence = 0u64;
                while let Some(record) = reader.next_record() {
                    if task_sender.send((sequence, record)).is_err() {
                        break;
                    }
                    sequence += 1;
                }
            });
            let mut pending = BTreeMap::new();
            let mut next = 0u64;
            let mut outcome = Ok(());
            for (sequence, record, was_failed) in done_receiver {
                pending.insert(sequence, (record, was_failed));
                while let Some((record, was_failed)) = pending.remove(&next) {
                    if outcome.is_ok() {
                        outcome = writer
                            .write(&record, was_failed)
                            .and_then(|()| writer.flush());
                    }
                    next += 1;
                }
            }
            feeder
                .join()
                .map_err(|_| WalError::Internal("feeder thread panicked".into()))?;
            outcome
        })
    })?;
    Ok(writer.summary())
}

/// Runs `work` on batches: every record already waiting, up to `max_batch`. `work` sees
/// failed records too (it decides what to do with them) and fails records itself.
pub fn run_batches<R, W>(
    stage: &'static str,
    max_batch: usize,
    input: R,
    output: W,
    mut work: impl FnMut(&mut [WalRecord]) -> Result<(), WalError>,
) -> Result<Summary, WalError>
where
    R: BufRead + Send,
    W: Write,
{
    let mut writer = RecordWriter::new(stage, output);
    with_reader(stage, input, |reader| {
        loop {
            let mut batch = reader.next_batch(max_batch);
            if batch.is_empty() {
                return Ok(());
            }
            let arrived_failed: Vec<bool> = batch.iter().map(WalRecord::failed).collect();
            let now = now();
            for record in batch.iter_mut().filter(|r| !r.failed()) {
                expire(stage, record, now);
            }
            work(&mut batch)?;
            for (record, was_failed) in batch.iter().zip(arrived_failed) {
                writer.write(record, was_failed)?;
            }
            writer.flush()?;
        }
    })?;
    Ok(writer.summary())
}

/// Ends a binary: reports a whole-stream error on stderr and turns the result into the
/// process exit status (the one place where results become exit codes). A write into a
/// closed pipe is not reported ([`downstream_gone`]): the stage after this one failed
/// and said why.
#[must_use]
pub fn exit_status(stage: &str, result: Result<Summary, WalError>) -> std::process::ExitCode {
    exit_status_of(stage, result.map(Verdict::from))
}

/// [`exit_status`] for a stage that may choose its status itself ([`Verdict`]).
#[must_use]
pub fn exit_status_of(stage: &str, result: Result<Verdict, WalError>) -> std::process::ExitCode {
    match result {
        Ok(verdict) => verdict.exit_code().into(),
        Err(err) => {
            if !downstream_gone(&err) {
                report_error(stage, &err);
            }
            ExitCode::for_error(&err).into()
        }
    }
}

/// One stderr line for `err`, then its causes (cargo's "Caused by:").
pub fn report_error(stage: &str, err: &WalError) {
    let mut text = format!("{stage}: {}", crate::log::one_line(&err.to_string()));
    let mut cause = std::error::Error::source(err);
    // The io::Error source is already part of the message.
    if matches!(err, WalError::Io { .. }) {
        cause = cause.and_then(std::error::Error::source);
    }
    while let Some(c) = cause {
        let _ = write!(text, "\n  caused by: {c}");
        cause = c.source();
    }
    crate::log::error!("{text}");
}

/// The stdin every stage reads by default.
#[must_use]
pub fn stdin() -> io::BufReader<io::Stdin> {
    io::BufReader::with_capacity(64 * 1024, io::stdin())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn lines(output: &[u8]) -> Vec<serde_json::Value> {
        output
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    const INPUT: &str = concat!(
        r#"{"name":"000000010000000000000001","size":1,"time":1.0}"#,
        "\n",
        "this is not json\n",
        "\n",
        r#"{"name":"000000010000000000000002","size":2,"time":2.0,"error":{"stage":"wal-scan","kind":"io","message":"earlier"}}"#,
        "\n",
        r#"{"name":"000000010000000000000003","size":3,"time":3.0,"x":true}"#,
        "\n",
    );

    #[test]
    fn run_each_goes_on_after_failures() {
        let mut out = Vec::new();
        let summary = run_each("t", Cursor::new(INPUT), &mut out, |record| {
            if record.name.ends_with('3') {
                return Err(WalError::Temporary("nope".into()));
            }
            record.size *= 10;
            Ok(())
        })
        .unwrap();
        let records = lines(&out);
        assert_eq!(records.len(), 4);
        assert_eq!(records[0]["size"], 10);
        assert_eq!(records[1]["error"]["kind"], "bad_record");
        assert_eq!(records[1]["line"], "this is not json");
        assert_eq!(records[2]["error"]["stage"], "wal-scan");
        assert_eq!(records[2]["size"], 2, "failed records pass untouched");
        assert_eq!(records[3]["error"]["kind"], "temporary");
        assert_eq!(records[3]["x"], true, "unknown fields are forwarded");
        assert_eq!(
            summary,
            Summary {
                records: 4,
                failed: 1,
                temporary: 1,
                malformed: 1,
                arrived_failed: 1,
                arrived_corrupt: 0,
            }
        );
        assert_eq!(summary.exit_code(), ExitCode::DataErr);
    }

    #[test]
    fn paths_in_names_and_endless_lines_are_malformed() {
        let mut input = String::from(r#"{"name":"../00000002.history","path":"/etc/passwd"}"#);
        input.push('\n');
        input.push_str(&"x".repeat(MAX_LINE + 10));
        input.push('\n');
        input.push_str(r#"{"name":"000000010000000000000001"}"#);
        input.push('\n');
        let mut out = Vec::new();
        let mut touched = Vec::new();
        let summary = run_each("t", Cursor::new(input), &mut out, |record| {
            touched.push(record.name.clone());
            Ok(())
        })
        .unwrap();
        let records = lines(&out);
        assert_eq!(touched, ["000000010000000000000001"]);
        assert_eq!(records[0]["error"]["kind"], "bad_record");
        assert!(
            records[0]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not a plain file name")
        );
        assert_eq!(records[1]["error"]["kind"], "bad_record");
        assert!(records[1]["line"].as_str().unwrap().len() <= 200);
        assert_eq!(summary.malformed, 2);
        assert_eq!(summary.exit_code(), ExitCode::DataErr);
    }

    #[test]
    fn only_transient_failures_ask_for_a_retry() {
        let mut summary = Summary {
            records: 3,
            failed: 2,
            temporary: 2,
            malformed: 0,
            arrived_failed: 0,
            arrived_corrupt: 0,
        };
        assert_eq!(summary.exit_code(), ExitCode::TempFail);
        summary.temporary = 1;
        assert_eq!(summary.exit_code(), ExitCode::RecordsFailed);
        summary.failed = 0;
        summary.temporary = 0;
        assert_eq!(summary.exit_code(), ExitCode::Ok);
    }

    #[test]
    fn run_parallel_keeps_input_order() {
        let mut input = String::new();
        for i in 0..200 {
            let _ = writeln!(input, "{{\"name\":\"{i:024X}\",\"size\":{i},\"time\":0.0}}");
        }
        let mut out = Vec::new();
        let summary = run_parallel("t", 4, Cursor::new(input), &mut out, |record| {
            // Uneven work so that completion order differs from input order.
            std::thread::sleep(std::time::Duration::from_micros((record.size % 7) * 200));
            record.size += 1000;
            Ok(())
        })
        .unwrap();
        let sizes: Vec<u64> = lines(&out)
            .iter()
            .map(|r| r["size"].as_u64().unwrap())
            .collect();
        assert_eq!(sizes, (1000..1200).collect::<Vec<_>>());
        assert_eq!(summary.exit_code(), ExitCode::Ok);
    }

    #[test]
    fn run_batches_sees_every_record_and_waits_for_none() {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        let summary = run_batches("t", 2, Cursor::new(INPUT), &mut out, |batch| {
            assert!(batch.len() <= 2);
            seen.extend(batch.iter().map(|r| r.name.clone()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 4);
        assert_eq!(summary.records, 4);
        assert_eq!(summary.malformed, 1);
        assert_eq!(summary.failed, 0);
    }

    #[test]
    fn a_closed_output_stops_the_stream() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = run_each("t", Cursor::new(INPUT), Closed, |_| Ok(())).unwrap_err();
        assert_eq!(ExitCode::for_error(&err), ExitCode::IoErr);
        assert!(
            downstream_gone(&err),
            "a closed pipe is told quietly: {err}"
        );
    }

    #[test]
    fn only_a_closed_pipe_is_a_downstream_gone() {
        struct Failing(io::ErrorKind);
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(self.0))
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::Error::from(self.0))
            }
        }
        let record = WalRecord::new("000000010000000000000001");
        let mut closed = RecordWriter::new("t", Failing(io::ErrorKind::BrokenPipe));
        let err = closed.write(&record, false).unwrap_err();
        assert!(downstream_gone(&err), "{err}");
        assert!(downstream_gone(&closed.flush().unwrap_err()));
        // Its usual code all the same: the stage did fail to pass its records on.
        assert_eq!(ExitCode::for_error(&err), ExitCode::IoErr);
        // A full disk, or an EPIPE that is not ours to write records, is reported.
        let mut full = RecordWriter::new("t", Failing(io::ErrorKind::StorageFull));
        assert!(!downstream_gone(&full.write(&record, false).unwrap_err()));
        let elsewhere = WalError::io(
            "cannot write records for",
            "wal-encrypt",
            io::Error::from(io::ErrorKind::BrokenPipe),
        );
        assert!(!downstream_gone(&elsewhere));
    }

    #[test]
    fn a_verdict_overrides_the_counts() {
        let summary = Summary {
            records: 1,
            failed: 1,
            temporary: 0,
            malformed: 0,
            arrived_failed: 0,
            arrived_corrupt: 0,
        };
        assert_eq!(Verdict::from(summary).exit_code(), ExitCode::RecordsFailed);
        let chosen = Verdict {
            summary,
            status: Some(ExitCode::NoInput),
        };
        assert_eq!(chosen.exit_code(), ExitCode::NoInput);
    }
}
