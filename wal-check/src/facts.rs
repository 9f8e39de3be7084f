//! What the check looks at, gathered once: what the server says over SQL, and what the
//! archive's files say (the catalogue, the queues, errors/, the identity file, the
//! receiver's status). Nothing here judges; [`crate::judge`] does.
//!
//! The check never waits for an archiver and creates nothing: the catalogue is read
//! without its lock (it is only appended to or replaced whole), directories that do not
//! exist are empty.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wal_core::error::Result;
use wal_core::identity::{self, Identity};
use wal_core::layout::{ResolvedLayout, ServerLayout};
use wal_core::pg::conninfo::Conninfo;
use wal_core::pg::server::{Server, Slot};
use wal_core::receiver::{self, Status};
use wal_core::xlogdb::Xlogdb;
use wal_core::{WalError, WalKind, WalName, process};

/// What the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// `server_version_num`.
    pub version: u32,
    /// A standby (it cannot switch WAL).
    pub in_recovery: bool,
    /// `wal_level`.
    pub wal_level: String,
    /// `archive_mode`.
    pub archive_mode: String,
    /// `archive_command` as the server shows it (`(disabled)` when archiving is off).
    pub archive_command: String,
    /// `pg_control_system()`'s system identifier.
    pub system_identifier: u64,
    /// `pg_stat_archiver`.
    pub archiver: ArchiverStats,
    /// The slot `--slot`, if asked for and it exists.
    pub slot: Option<Slot>,
}

/// `pg_stat_archiver`, and Barman's `is_archiving` rule over it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiverStats {
    /// WAL files archived since the statistics were reset.
    pub archived_count: i64,
    /// The last one.
    pub last_archived_wal: Option<String>,
    /// Failed attempts.
    pub failed_count: i64,
    /// The last WAL that failed.
    pub last_failed_wal: Option<String>,
    /// Barman's `is_archiving`: archive_mode on, and no failure since the last success
    /// (a failed `.history` of a timeline already archived excepted). `None` when the
    /// server cannot tell (it failed and never succeeded).
    pub is_archiving: Option<bool>,
}

/// The catalogue, tallied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalogue {
    /// Its path.
    pub path: PathBuf,
    /// Lines.
    pub count: usize,
    /// The stored bytes they add up to.
    pub total_size: u64,
    /// The newest WAL's time (its file's mtime when archived), seconds since the epoch:
    /// the time of the last segment by name (Barman's rule; a bogus time on some other
    /// line cannot mask a stale archive), when it is a time.
    pub newest_time: Option<f64>,
    /// The last segment (or `.partial`) by name, and its recorded time.
    pub newest: Option<(String, f64)>,
    /// The first and last segment (or `.partial`) of each timeline, and how many.
    pub timelines: std::collections::BTreeMap<u32, Span>,
}

/// The WAL of one timeline in the catalogue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Span {
    /// The first segment's name.
    pub first: String,
    /// The last one's.
    pub last: String,
    /// How many.
    pub count: u64,
}

/// A queue directory and how many WAL files wait there (hidden files, `.tmp` and
/// `.partial` not counted: pg_receivewal's open segment is not waiting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The directory.
    pub dir: PathBuf,
    /// Files waiting.
    pub waiting: u64,
}

/// The receiver as its status file and its lock tell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiverFacts {
    /// The status, if there is one that reads.
    pub status: Option<Status>,
    /// Why the status file is not one (a link, a fifo, garbage).
    pub unreadable: Option<String>,
    /// Whether the process it names runs now and holds the receiver's lock.
    pub running: bool,
}

/// A receiver runs when its lock (`.<server>-receive-wal.lock`) is held and the status
/// names a live process by pid and start time, not stopped: a pid alone could be any
/// process's by now.
fn receiver_facts(lock_dir: &Path, server: &str) -> ReceiverFacts {
    let (status, unreadable) = match Status::load(&receiver::status_path(lock_dir, server)) {
        Ok(status) => (status, None),
        Err(err) => (None, Some(err.to_string())),
    };
    let lock = receiver::lock_path(lock_dir, server);
    let running = status.as_ref().is_some_and(|status| {
        status.state != "stopped"
            && wal_core::lock::is_held(&lock) != Some(false)
            && matches!(
                (i32::try_from(status.pid), status.start_time),
                (Ok(pid), Some(start)) if process::is_running(pid, start)
            )
    });
    ReceiverFacts {
        status,
        unreadable,
        running,
    }
}

/// pg_receivewal on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgReceivewal {
    /// Where it is.
    pub path: PathBuf,
    /// Its major release, if `--version` told.
    pub major: Option<u32>,
}

/// What the archive's files say.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveFacts {
    /// The catalogue, or why it cannot be read (none for a cloud archive without a home).
    pub catalogue: std::result::Result<Catalogue, String>,
    /// The incoming queue, if this layout has one.
    pub incoming: Option<Queue>,
    /// The streaming queue, if this layout has one.
    pub streaming: Option<Queue>,
    /// The names in errors/.
    pub errors: Vec<String>,
    /// The identity file and what it says: `Ok(None)` when there is none (yet).
    pub identity: std::result::Result<Option<(PathBuf, Identity)>, String>,
    /// The receiver.
    pub receiver: ReceiverFacts,
    /// The directory two levels above a local archive that does not exist (its home:
    /// a `--home` mistyped), when it does not exist either.
    pub missing_archive: Option<PathBuf>,
}

impl ArchiveFacts {
    /// Reads the archive's files of `layout`.
    #[must_use]
    pub fn gather(layout: &ResolvedLayout) -> ArchiveFacts {
        let places = &layout.places;
        let catalogue = match layout.xlogdb() {
            Some(xlogdb) => tally(&xlogdb).map_err(|err| err.to_string()),
            None => {
                Err("no catalogue (a cloud archive's is kept under --home, or --xlogdb)".into())
            }
        };
        let identity = match layout.local() {
            Some(local) => read_identity(&local),
            None => Ok(None),
        };
        let receiver = places
            .lock_dir
            .as_ref()
            .map_or_else(ReceiverFacts::default, |dir| {
                receiver_facts(dir, &layout.server)
            });
        // A first archive makes `<home>/<server>/wals`, so only a missing home (two
        // levels up) says the place is wrong rather than new.
        let missing_archive = layout.local().and_then(|local| {
            let home = local.wals.parent()?.parent()?.to_path_buf();
            (!local.wals.is_dir() && !home.as_os_str().is_empty() && !home.is_dir()).then_some(home)
        });
        ArchiveFacts {
            missing_archive,
            catalogue,
            incoming: places.incoming.as_deref().map(|dir| queue(dir, false)),
            streaming: places.streaming.as_deref().map(|dir| queue(dir, true)),
            errors: places.errors.as_deref().map(names).unwrap_or_default(),
            identity,
            receiver,
        }
    }

    /// Whether anything shows that WAL reaches walpipe: catalogued, or waiting in a queue.
    #[must_use]
    pub fn wal_arrived(&self) -> bool {
        self.catalogue.as_ref().is_ok_and(|c| c.count > 0)
            || [&self.incoming, &self.streaming]
                .into_iter()
                .flatten()
                .any(|q| q.waiting > 0)
    }
}

fn tally(xlogdb: &Xlogdb) -> Result<Catalogue> {
    let mut catalogue = Catalogue {
        path: xlogdb.path().to_path_buf(),
        ..Catalogue::default()
    };
    xlogdb.scan_unlocked(|line| {
        catalogue.count += 1;
        catalogue.total_size = catalogue.total_size.saturating_add(line.size);
        if let Ok(wal) = WalName::parse_file_name(&line.name)
            && matches!(wal.kind(), WalKind::Segment | WalKind::Partial)
        {
            let span = catalogue.timelines.entry(wal.timeline()).or_default();
            if span.count == 0 || line.name < span.first {
                span.first.clone_from(&line.name);
            }
            if line.name > span.last {
                span.last.clone_from(&line.name);
            }
            span.count += 1;
            if catalogue
                .newest
                .as_ref()
                .is_none_or(|(name, _)| line.name > *name)
            {
                catalogue.newest = Some((line.name.clone(), line.time));
            }
        }
    })?;
    catalogue.newest_time = catalogue
        .newest
        .as_ref()
        .map(|(_, time)| *time)
        .filter(|time| time.is_finite());
    Ok(catalogue)
}

fn read_identity(local: &ServerLayout) -> std::result::Result<Option<(PathBuf, Identity)>, String> {
    let Some(path) = identity::path_for(local, false) else {
        return Ok(None);
    };
    identity::load(&path)
        .map(|found| found.map(|identity| (path, identity)))
        .map_err(|err| err.to_string())
}

/// The names of the entries of `dir`, as text (a name that is not UTF-8 still counts),
/// with whether each is a regular file (none when `dir` does not exist or is no
/// directory).
fn entries(dir: &Path) -> Vec<(String, bool)> {
    let mut found: Vec<(String, bool)> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| {
                    let regular = entry.file_type().is_ok_and(|t| t.is_file());
                    (entry.file_name().to_string_lossy().into_owned(), regular)
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Every entry of errors/, hidden ones too (Barman lists them all: a temp left there by
/// a crash is worth a look).
fn names(dir: &Path) -> Vec<String> {
    entries(dir).into_iter().map(|(name, _)| name).collect()
}

/// The WAL files waiting in `dir`: regular files named as WAL (Barman's rule; hidden
/// temps are not), `.partial`s included unless `partial_open`: in the streaming queue a
/// `.partial` is pg_receivewal's open segment, not waiting.
fn queue(dir: &Path, partial_open: bool) -> Queue {
    let waiting = entries(dir)
        .iter()
        .filter(|(name, regular)| {
            *regular
                && WalName::parse_file_name(name)
                    .is_ok_and(|wal| !(partial_open && wal.kind() == WalKind::Partial))
        })
        .count();
    Queue {
        dir: dir.to_path_buf(),
        waiting: waiting as u64,
    }
}

/// Asks the server what the check needs, in one conversation.
pub fn ask_server(
    conninfo: &Conninfo,
    deadline: Duration,
    slot: Option<&str>,
) -> Result<ServerFacts> {
    let mut db = Server::connect(conninfo, deadline)?;
    let (version, in_recovery, wal_level, archive_mode, archive_command, system_identifier) = db
        .ask("cannot read the server's settings", |client| {
            let row = client.query_one(
                "SELECT current_setting('server_version_num')::int4, pg_is_in_recovery(), \
                 current_setting('wal_level'), current_setting('archive_mode'), \
                 current_setting('archive_command'), \
                 (SELECT system_identifier::text FROM pg_control_system())",
                &[],
            )?;
            Ok((
                row.try_get::<_, i32>(0)?,
                row.try_get::<_, bool>(1)?,
                row.try_get::<_, String>(2)?,
                row.try_get::<_, String>(3)?,
                row.try_get::<_, String>(4)?,
                row.try_get::<_, String>(5)?,
            ))
        })?;
    let archiver = db.ask("cannot read pg_stat_archiver", |client| {
        let row = client.query_one(
            "SELECT archived_count, last_archived_wal, failed_count, last_failed_wal, \
             current_setting('archive_mode') IN ('on', 'always') \
             AND (last_failed_wal IS NULL \
                  OR last_failed_wal LIKE '%.history' \
                     AND substring(last_failed_wal from 1 for 8) \
                         <= substring(last_archived_wal from 1 for 8) \
                  OR last_failed_time <= last_archived_time) \
             FROM pg_stat_archiver",
            &[],
        )?;
        Ok(ArchiverStats {
            archived_count: row.try_get(0)?,
            last_archived_wal: row.try_get(1)?,
            failed_count: row.try_get(2)?,
            last_failed_wal: row.try_get(3)?,
            is_archiving: row.try_get(4)?,
        })
    })?;
    let slot = match slot {
        Some(name) => db.slot(name)?,
        None => None,
    };
    Ok(ServerFacts {
        version: u32::try_from(version)
            .map_err(|_| WalError::Internal(format!("server_version_num {version}")))?,
        in_recovery,
        wal_level,
        archive_mode,
        archive_command,
        system_identifier: system_identifier
            .parse()
            .map_err(|_| WalError::Internal(format!("system identifier {system_identifier:?}")))?,
        archiver,
        slot,
    })
}

/// Switches WAL (Barman's last resort when nothing was ever archived); returns the
/// segment closed.
pub fn switch_wal(conninfo: &Conninfo, deadline: Duration) -> Result<String> {
    let mut db = Server::connect(conninfo, deadline)?;
    let closed: String = db.ask("cannot switch WAL", |client| {
        client
            .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
            .and_then(|row| row.try_get(0))
    })?;
    WalName::parse_file_name(&closed)
        .map(|_| closed.clone())
        .map_err(|_| WalError::Internal(format!("pg_switch_wal closed {closed:?}")))
}

/// pg_receivewal as the receiver would find it, for a server of `server_major`.
#[must_use]
pub fn find_pg_receivewal(given: Option<&Path>, server_major: u32) -> Option<PgReceivewal> {
    let path = receiver::find_pg_receivewal(given, server_major)
        .ok()
        .filter(|path| path.is_file())?;
    let major = receiver::client_major(&path).ok();
    Some(PgReceivewal { path, major })
}

/// What `status` asks the server beyond the check's facts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerStatus {
    /// `server_version` (`15.4 (Debian …)`).
    pub version: String,
    /// A standby.
    pub in_recovery: bool,
    /// The segment being written (none on a standby).
    pub current_wal: Option<String>,
    /// `archive_command`.
    pub archive_command: String,
    /// `pg_stat_archiver.archived_count`.
    pub archived_count: i64,
    /// The last WAL archived, when (as `ctime` shows it, in the server's time zone) and
    /// when in seconds since the epoch.
    pub last_archived: Option<(String, String, f64)>,
    /// `pg_stat_archiver.failed_count`.
    pub failed_count: i64,
    /// The last WAL that failed, when (text) and when (seconds).
    pub last_failed: Option<(String, String, f64)>,
    /// WAL archived per second since the statistics were reset.
    pub archived_per_second: Option<f64>,
    /// How far what the receiver has written is behind the server: bytes and seconds
    /// (`pg_stat_replication`'s `write_lsn` and `write_lag`: an asynchronous
    /// pg_receivewal flushes only at segment ends), if it is connected.
    pub receiver_lag: Option<(i64, f64)>,
    /// The WAL the slot keeps on the server, in bytes, if the slot exists.
    pub slot_retained: Option<i64>,
}

/// `ctime`'s form (`Sun Dec  6 14:00:00 2026`) of a timestamptz column, in the server's
/// time zone, as Barman's status shows times.
fn ctime_sql(column: &str) -> String {
    format!(
        "to_char({column}, 'Dy Mon ') || lpad(to_char({column}, 'FMDD'), 2, ' ') \
         || to_char({column}, ' HH24:MI:SS YYYY')"
    )
}

/// Asks the server what `status` shows, in one conversation.
pub fn ask_status(
    conninfo: &Conninfo,
    deadline: Duration,
    application_name: &str,
    slot: Option<&str>,
) -> Result<ServerStatus> {
    let mut db = Server::connect(conninfo, deadline)?;
    let sql = format!(
        "SELECT current_setting('server_version'), pg_is_in_recovery(), \
         CASE WHEN pg_is_in_recovery() THEN NULL \
              ELSE pg_walfile_name(pg_current_wal_lsn()) END, \
         current_setting('archive_command'), \
         archived_count, last_archived_wal, {}, \
         extract(epoch FROM last_archived_time)::float8, \
         failed_count, last_failed_wal, {}, \
         extract(epoch FROM last_failed_time)::float8, \
         (archived_count / nullif(extract(epoch FROM now() - stats_reset), 0))::float8 \
         FROM pg_stat_archiver",
        ctime_sql("last_archived_time"),
        ctime_sql("last_failed_time")
    );
    let mut status = db.ask("cannot read the server's status", move |client| {
        let row = client.query_one(sql.as_str(), &[])?;
        let when = |wal: Option<String>, text: Option<String>, at: Option<f64>| {
            Some((wal?, text.unwrap_or_default(), at.unwrap_or_default()))
        };
        Ok(ServerStatus {
            version: row.try_get(0)?,
            in_recovery: row.try_get(1)?,
            current_wal: row.try_get(2)?,
            archive_command: row.try_get(3)?,
            archived_count: row.try_get(4)?,
            last_archived: when(row.try_get(5)?, row.try_get(6)?, row.try_get(7)?),
            failed_count: row.try_get(8)?,
            last_failed: when(row.try_get(9)?, row.try_get(10)?, row.try_get(11)?),
            archived_per_second: row.try_get(12)?,
            ..ServerStatus::default()
        })
    })?;
    if status.in_recovery {
        return Ok(status);
    }
    let name = application_name.to_owned();
    status.receiver_lag = db.ask("cannot read pg_stat_replication", move |client| {
        let rows = client.query(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), write_lsn)::int8, \
             coalesce(extract(epoch FROM write_lag), 0)::float8 \
             FROM pg_stat_replication WHERE application_name = $1 \
             ORDER BY backend_start DESC LIMIT 1",
            &[&name],
        )?;
        rows.first()
            .map(|row| Ok((row.try_get::<_, Option<i64>>(0)?, row.try_get(1)?)))
            .transpose()
            .map(|found| found.and_then(|(bytes, seconds)| Some((bytes?, seconds))))
    })?;
    if let Some(slot) = slot {
        let slot = slot.to_owned();
        status.slot_retained = db.ask("cannot read pg_replication_slots", move |client| {
            let rows = client.query(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )?;
            rows.first()
                .map(|row| row.try_get::<_, Option<i64>>(0))
                .transpose()
                .map(Option::flatten)
        })?;
    }
    Ok(status)
}
