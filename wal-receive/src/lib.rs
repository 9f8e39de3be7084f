//! wal-receive: the streaming half of Barman's WAL archiver (`receive-wal`).
//!
//! pg_receivewal streams the server's WAL into the streaming queue, where archive-wal
//! picks up each finished segment; the open segment is a `.partial` that pg_receivewal
//! resumes from. This tool decides everything around it, with Barman's rules and
//! messages: one receiver per server (`.<server>-receive-wal.lock`), the replication
//! slot (created reserving WAL, refused while in use), the truncation of a `.partial`
//! left half-padded, `reset` after the server lost the WAL the queue needs, synchronous
//! streaming when `synchronous_standby_names` names it, and the supervision Barman
//! leaves to cron ([`receive`]). The SQL it asks is in [`server`]; its progress in a
//! status file ([`status`]).

pub mod cli;
pub mod receive;
pub mod reset;
pub mod synchronous;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wal_core::WalError;
use wal_core::error::{IoContext, Result};
use wal_core::exit::ExitCode;
use wal_core::layout::ResolvedLayout;
use wal_core::lock::LockFile;
use wal_core::pg::conninfo::{self, Conninfo};
use wal_core::pg::server::Server;
use wal_core::receiver::{self, Status};

use crate::cli::{Args, Command, ServerArgs};
use crate::receive::{Ending, Run};
use crate::reset::Reset;

/// This tool's name in messages.
pub const TOOL: &str = "wal-receive";

/// How long an orphaned pg_receivewal has to stop after SIGINT.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// The oldest server pg_receivewal streams from (PostgreSQL 10 renamed pg_receivexlog).
const MIN_SERVER: u32 = 100_000;

/// Runs the command.
pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Stream {
            server,
            once,
            create_slot,
            max_pause,
        } => {
            if !(1..=3600).contains(&max_pause) {
                return Err(WalError::Usage(format!(
                    "--max-pause {max_pause}: from 1 to 3600 seconds"
                )));
            }
            let receiver = Receiver::open(&server)?;
            receiver.stream(once, create_slot, Duration::from_secs(max_pause))
        }
        Command::CreateSlot {
            server,
            if_not_exists,
        } => {
            let receiver = Receiver::open(&server)?;
            let slot = receiver.slot()?;
            let mut db = receiver.connect()?;
            if db.slot(slot)?.is_some() {
                if if_not_exists {
                    wal_core::log::info!("Replication slot '{slot}' already exists");
                    return Ok(ExitCode::Ok);
                }
                return Err(WalError::Config(format!(
                    "replication slot '{slot}' already exists (--if-not-exists accepts it)"
                )));
            }
            wal_core::log::info!(
                "Creating physical replication slot '{slot}' on server '{}'",
                receiver.layout.server
            );
            db.create_slot(slot)?;
            wal_core::log::info!("Replication slot '{slot}' created");
            Ok(ExitCode::Ok)
        }
        Command::DropSlot { server } => {
            let receiver = Receiver::open(&server)?;
            let slot = receiver.slot()?;
            let mut db = receiver.connect()?;
            match db.slot(slot)? {
                None => Err(WalError::Config(format!(
                    "replication slot '{slot}' does not exist"
                ))),
                Some(found) if found.active => Err(WalError::Config(format!(
                    "replication slot '{slot}' is in use: stop the receiver first"
                ))),
                Some(_) => {
                    wal_core::log::info!(
                        "Dropping physical replication slot '{slot}' on server '{}'",
                        receiver.layout.server
                    );
                    db.drop_slot(slot)?;
                    wal_core::log::info!("Replication slot '{slot}' dropped");
                    Ok(ExitCode::Ok)
                }
            }
        }
        Command::Reset { server } => Receiver::open(&server)?.reset(),
    }
}

/// A server to receive from: its layout, connection and slot, checked.
#[derive(Debug)]
struct Receiver {
    layout: ResolvedLayout,
    streaming: PathBuf,
    lock_dir: PathBuf,
    conninfo: Conninfo,
    sql_timeout: Duration,
    slot: Option<String>,
    pg_receivewal: Option<PathBuf>,
}

impl Receiver {
    fn open(args: &ServerArgs) -> Result<Receiver> {
        let layout = args.layout.settings().resolve()?;
        let (Some(streaming), Some(lock_dir)) = (
            layout.places.streaming.clone(),
            layout.places.lock_dir.clone(),
        ) else {
            return Err(WalError::Usage(
                "--home DIR (or --streaming DIR and --lock-dir DIR) is required: the \
                 streaming queue and the receiver's lock are local"
                    .into(),
            ));
        };
        // pg_receivewal writes into the streaming queue and archive-wal empties it: it
        // must be nobody else's directory, and the lock and status files no queue's entry.
        layout.territory()?;
        let (mut conninfo, sql_timeout) = args.pg.connection()?;
        conninfo.set_default("application_name", conninfo::DEFAULT_APPLICATION_NAME);
        Ok(Receiver {
            layout,
            streaming,
            lock_dir,
            conninfo,
            sql_timeout,
            slot: args.pg.slot.clone(),
            pg_receivewal: args.pg.pg_receivewal.clone(),
        })
    }

    fn connect(&self) -> Result<Server> {
        Server::connect(&self.conninfo, self.sql_timeout)
    }

    fn slot(&self) -> Result<&str> {
        self.slot
            .as_deref()
            .ok_or_else(|| WalError::Usage("--slot NAME is required".into()))
    }

    /// Takes the receiver's lock, or says another receiver holds it (`busy`).
    fn lock(&self, busy: &str) -> Result<LockFile> {
        fs::create_dir_all(&self.lock_dir)
            .context("cannot create the lock directory", &self.lock_dir)?;
        let path = receiver::lock_path(&self.lock_dir, &self.layout.server);
        LockFile::try_acquire(&path)?.ok_or_else(|| WalError::Temporary(busy.to_owned()))
    }

    fn reset(&self) -> Result<ExitCode> {
        let server = &self.layout.server;
        let _lock = self.lock(&format!(
            "Unable to reset the status of receive-wal for server {server}. Process is still running"
        ))?;
        let mut db = self.connect()?;
        let position = db.position()?;
        let current = position.segment_of(position.lsn);
        let restart = match &self.slot {
            Some(slot) => {
                if let Some(found) = db.slot(slot)? {
                    found
                        .restart_lsn
                        .map_or_else(|| current.clone(), |lsn| position.segment_of(lsn))
                } else {
                    // Said, not refused: the reset itself is still right (the queue
                    // realigned on the server's position), but streaming will need it.
                    wal_core::log::warn!(
                        "{TOOL}: replication slot '{slot}' does not exist on server \
                         '{server}': reset to PostgreSQL's current WAL; create it \
                         (wal-receive create-slot) before streaming"
                    );
                    current.clone()
                }
            }
            None => current.clone(),
        };
        fs::create_dir_all(&self.streaming).context("cannot create", &self.streaming)?;
        let entries = entry_names(&self.streaming)?;
        match reset::plan(&entries, &current, &restart) {
            Reset::Aligned => {
                wal_core::log::info!("Nothing to do. Position of receive-wal is aligned.");
                Ok(ExitCode::Ok)
            }
            Reset::Ahead { newest, current } => Err(WalError::Config(format!(
                "The receive-wal position is ahead of PostgreSQL current WAL lsn ({newest} > {current})"
            ))),
            Reset::Realign { remove, create } => {
                reset::realign(&self.streaming, remove.as_deref(), &create, &mut |line| {
                    wal_core::log::info!("{line}");
                })?;
                Ok(ExitCode::Ok)
            }
        }
    }

    fn stream(&self, once: bool, create_slot: bool, max_pause: Duration) -> Result<ExitCode> {
        let server = &self.layout.server;
        let _lock = self.lock(&format!(
            "Another receive-wal process is already running for server {server}."
        ))?;
        fs::create_dir_all(&self.streaming).context("cannot create", &self.streaming)?;
        let status_path = receiver::status_path(&self.lock_dir, server);
        // A slot an orphan streamed from may stay active a moment after it stopped.
        let stopped_orphan = Status::read(&status_path)
            .is_some_and(|previous| receive::stop_orphan(&previous, ORPHAN_GRACE));
        let mut status = Status::new(
            server,
            self.slot.as_deref(),
            self.conninfo.application_name(),
        );
        status.write(&status_path)?;
        let mut attempt = 0u32;
        let mut first = true;
        loop {
            let started = Instant::now();
            let ending = match self.prepare(first, first && !stopped_orphan, create_slot) {
                Ok(run) => {
                    status.synchronous = run.args.iter().any(|a| a == "--synchronous");
                    let run = Run {
                        binary: &run.binary,
                        args: run.args,
                        server,
                        segment_size: run.segment_size,
                    };
                    receive::run_once(&run, &mut status, &status_path)?
                }
                // The server not answering: as transient as pg_receivewal losing it.
                Err(WalError::Temporary(why)) => Ending::Transient(why),
                // Anything else says what to fix, with its own kind (a usage error of the
                // connection string stays 64).
                Err(err) => {
                    status.state = "stopped".into();
                    status.last_error = Some(err.to_string());
                    status.write(&status_path)?;
                    return Err(err);
                }
            };
            first = false;
            let why = match ending {
                Ending::Clean if once => {
                    status.state = "stopped".into();
                    status.write(&status_path)?;
                    return Ok(ExitCode::Ok);
                }
                Ending::Clean => "pg_receivewal ended".to_owned(),
                Ending::Permanent(why) => {
                    status.state = "stopped".into();
                    status.last_error = Some(why.clone());
                    status.write(&status_path)?;
                    return Err(WalError::Config(why));
                }
                Ending::Transient(why) if once => {
                    status.state = "stopped".into();
                    status.last_error = Some(why.clone());
                    status.write(&status_path)?;
                    return Err(WalError::Temporary(why));
                }
                Ending::Transient(why) => why,
            };
            attempt = if started.elapsed() >= max_pause {
                1
            } else {
                attempt + 1
            };
            let pause = receive::pause(attempt, max_pause);
            wal_core::log::warn!(
                "{TOOL}: {server}: {why}; restarting in {} s",
                pause.as_secs()
            );
            status.state = "waiting".into();
            status.restarts += 1;
            status.last_error = Some(why);
            status.write(&status_path)?;
            std::thread::sleep(pause);
        }
    }

    /// The checks before each pg_receivewal run (Barman's, in its order), then its
    /// command line. The slot is created only at the first start, with --create-slot;
    /// a slot in use is refused at the first start unless it was an orphan's (then, and
    /// after a restart, it is waited for).
    fn prepare(&self, first: bool, refuse_active: bool, create_slot: bool) -> Result<Prepared> {
        let server = &self.layout.server;
        let mut db = self.connect()?;
        let version = db.version_num()?;
        if version < MIN_SERVER {
            return Err(WalError::Config(format!(
                "PostgreSQL version too old ({version} < {MIN_SERVER}): pg_receivewal needs 10 or later"
            )));
        }
        let binary = receiver::find_pg_receivewal(self.pg_receivewal.as_deref(), version / 10_000)?;
        let client = receiver::client_major(&binary)?;
        if client < version / 10_000 {
            return Err(WalError::Config(format!(
                "pg_receivewal version not compatible with PostgreSQL server version \
                 ({} is {client}, the server {})",
                binary.display(),
                version / 10_000
            )));
        }
        if let Some(slot) = &self.slot {
            match db.slot(slot)? {
                None if first && create_slot => {
                    wal_core::log::info!(
                        "Creating physical replication slot '{slot}' on server '{server}'"
                    );
                    db.create_slot(slot)?;
                }
                None => {
                    return Err(WalError::Config(format!(
                        "replication slot '{slot}' doesn't exist. Please execute \
                         'wal-receive create-slot --server {server} --slot {slot}'"
                    )));
                }
                Some(found) if found.active && refuse_active => {
                    return Err(WalError::Config(format!(
                        "replication slot '{slot}' is already in use"
                    )));
                }
                // After a restart, the killed run's walsender may still hold it a moment.
                Some(found) if found.active => {
                    return Err(WalError::Temporary(format!(
                        "replication slot '{slot}' is still in use"
                    )));
                }
                Some(_) => {}
            }
        }
        let position = db.position()?;
        let synchronous = synchronous::is_synchronous(
            &db.synchronous_standby_names()?,
            self.conninfo.application_name(),
        );
        drop(db);
        if let Some((path, size)) =
            reset::partial_to_truncate(&self.streaming, position.segment_size.bytes())?
        {
            wal_core::log::warn!(
                "Truncating partial file {} that has wrong size {size} while {} was expected.",
                path.display(),
                position.segment_size.bytes()
            );
            reset::truncate(&path)?;
        }
        let mut args = vec![
            format!("--dbname={}", self.conninfo.to_libpq()),
            "--verbose".into(),
            "--no-loop".into(),
            "--no-password".into(),
            format!("--directory={}", path_text(&self.streaming)?),
        ];
        if let Some(slot) = &self.slot {
            args.push(format!("--slot={slot}"));
        }
        if synchronous {
            args.push("--synchronous".into());
        }
        Ok(Prepared {
            binary,
            args,
            segment_size: position.segment_size,
        })
    }
}

/// A checked pg_receivewal command line.
#[derive(Debug)]
struct Prepared {
    binary: PathBuf,
    args: Vec<String>,
    segment_size: wal_core::names::SegmentSize,
}

fn path_text(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| WalError::Config(format!("{}: not a UTF-8 path", path.display())))
}

/// The names in `dir` (those that are text).
fn entry_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).context("cannot list", dir)? {
        let entry = entry.context("cannot list", dir)?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}
