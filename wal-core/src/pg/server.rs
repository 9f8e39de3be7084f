//! What the receiver asks PostgreSQL over a plain SQL connection: its version, where its
//! WAL is, the replication slot, and whether it waits for the receiver (synchronous
//! streaming). Each question is one query; an unreachable server is a temporary failure.
//!
//! A server can also hang: accept the connection and never answer (stopped, out of
//! memory, behind a dead network). libpq's `connect_timeout` covers only the socket, so
//! the conversation runs in a thread of its own and each answer is waited for at most
//! the deadline; a question left unanswered is a temporary failure like a refused
//! connection, and its thread ends whenever the server or the network gives up. At most
//! [`MAX_UNANSWERED`] such threads wait at once: a supervisor retrying a hung server for
//! days holds a few sockets, not one per retry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::conninfo::Conninfo;
use crate::WalError;
use crate::error::Result;
use crate::names::{SegmentSize, lsn_to_segment, parse_lsn};
use postgres::{Client, NoTls};

/// How many conversations may be alive at once (those still waiting for a server that
/// stopped answering included).
pub const MAX_UNANSWERED: usize = 3;

/// The conversations alive now.
static CONVERSATIONS: AtomicUsize = AtomicUsize::new(0);

/// A question for the conversation's thread.
type Question = Box<dyn FnOnce(&mut Client) + Send>;

/// An open SQL connection to the server, answering within a deadline.
#[derive(Debug)]
pub struct Server {
    questions: mpsc::Sender<Question>,
    deadline: Duration,
}

/// A physical replication slot as the server shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// A walsender streams from it now.
    pub active: bool,
    /// The oldest WAL it keeps (`None` until it reserved WAL).
    pub restart_lsn: Option<u64>,
}

/// Where the server's WAL is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// `pg_current_wal_lsn()` (a standby: the last WAL it received or replayed).
    pub lsn: u64,
    /// The timeline it writes (or replays) on.
    pub timeline: u32,
    /// `wal_segment_size`.
    pub segment_size: SegmentSize,
}

impl Position {
    /// The segment holding `lsn` on this timeline.
    #[must_use]
    pub fn segment_of(&self, lsn: u64) -> String {
        lsn_to_segment(lsn, self.timeline, self.segment_size).0
    }
}

fn failed(what: &str, err: &postgres::Error) -> WalError {
    // One line: the server's message, or the client's (connection refused, …).
    // The client's own errors keep their cause in the source ("Connection refused").
    let detail = err.as_db_error().map_or_else(
        || match std::error::Error::source(err) {
            Some(cause) => format!("{err}: {cause}"),
            None => err.to_string(),
        },
        |db| db.message().to_owned(),
    );
    let detail = detail.lines().next().unwrap_or_default().to_owned();
    if err.as_db_error().is_some() {
        WalError::Config(format!("{what}: {detail}"))
    } else {
        WalError::Temporary(format!("{what}: {detail}"))
    }
}

/// Counts a conversation's thread while it lives.
struct Alive;

impl Alive {
    fn enter() -> Option<Alive> {
        CONVERSATIONS
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_UNANSWERED).then_some(n + 1)
            })
            .ok()
            .map(|_| Alive)
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        CONVERSATIONS.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Server {
    /// Connects with the connection string's settings; each answer (the connection's
    /// included) is waited for at most `deadline`.
    pub fn connect(conninfo: &Conninfo, deadline: Duration) -> Result<Server> {
        let config = conninfo.sql_config()?;
        let Some(alive) = Alive::enter() else {
            return Err(WalError::Temporary(format!(
                "PostgreSQL has not answered {MAX_UNANSWERED} earlier connections yet"
            )));
        };
        let (questions, inbox) = mpsc::channel::<Question>();
        let (connected, connection) = mpsc::channel();
        std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || {
                let _alive = alive;
                match config.connect(NoTls) {
                    Ok(mut client) => {
                        if connected.send(Ok(())).is_ok() {
                            for question in inbox {
                                question(&mut client);
                            }
                        }
                    }
                    Err(err) => {
                        let _ = connected.send(Err(failed("cannot connect to PostgreSQL", &err)));
                    }
                }
            })
            .map_err(|err| WalError::Internal(format!("cannot start a thread: {err}")))?;
        let server = Server {
            questions,
            deadline,
        };
        server.wait(&connection, "cannot connect to PostgreSQL")??;
        Ok(server)
    }

    /// Waits for one answer on `answers`, at most the deadline.
    fn wait<T>(&self, answers: &mpsc::Receiver<T>, what: &str) -> Result<T> {
        answers
            .recv_timeout(self.deadline)
            .map_err(|err| match err {
                mpsc::RecvTimeoutError::Timeout => WalError::Temporary(format!(
                    "{what}: PostgreSQL did not answer within {} s",
                    self.deadline.as_secs()
                )),
                mpsc::RecvTimeoutError::Disconnected => {
                    WalError::Internal(format!("{what}: the connection's thread ended"))
                }
            })
    }

    /// Asks `question` in the conversation's thread; `what` names it in errors. A
    /// question only one tool asks is written there, with this.
    pub fn ask<T: Send + 'static>(
        &mut self,
        what: &str,
        question: impl FnOnce(&mut Client) -> std::result::Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T> {
        let (answer, answers) = mpsc::channel();
        self.questions
            .send(Box::new(move |client| {
                let _ = answer.send(question(client));
            }))
            .map_err(|_| WalError::Internal(format!("{what}: the connection's thread ended")))?;
        self.wait(&answers, what)?.map_err(|err| failed(what, &err))
    }

    /// `server_version_num` (150004 for 15.4).
    pub fn version_num(&mut self) -> Result<u32> {
        let version: i32 = self.ask("cannot read server_version_num", |client| {
            client
                .query_one("SELECT current_setting('server_version_num')::int4", &[])
                .and_then(|row| row.try_get(0))
        })?;
        u32::try_from(version).map_err(|_| WalError::Internal("negative server version".into()))
    }

    /// Where the server's WAL is.
    pub fn position(&mut self) -> Result<Position> {
        let (lsn, timeline, size): (Option<String>, i32, i64) =
            self.ask("cannot read the server's WAL position", |client| {
                client
                    .query_one(
                        "SELECT CASE WHEN pg_is_in_recovery() \
                           THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) \
                           ELSE pg_current_wal_lsn() END::text, \
                         (SELECT timeline_id FROM pg_control_checkpoint()), \
                         (SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size')",
                        &[],
                    )
                    .and_then(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            })?;
        let lsn = lsn
            .as_deref()
            .and_then(parse_lsn)
            .ok_or_else(|| WalError::Config("the server reports no WAL position".into()))?;
        Ok(Position {
            lsn,
            timeline: u32::try_from(timeline)
                .map_err(|_| WalError::Internal(format!("timeline {timeline}")))?,
            segment_size: SegmentSize::new(u64::try_from(size).unwrap_or(0))?,
        })
    }

    /// The physical slot `name`, if it exists.
    pub fn slot(&mut self, name: &str) -> Result<Option<Slot>> {
        let name = name.to_owned();
        let found: Option<(bool, Option<String>)> =
            self.ask("cannot read pg_replication_slots", move |client| {
                client
                    .query(
                        "SELECT active, restart_lsn::text FROM pg_replication_slots \
                         WHERE slot_name = $1 AND slot_type = 'physical'",
                        &[&name],
                    )
                    .and_then(|rows| {
                        rows.first()
                            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                            .transpose()
                    })
            })?;
        Ok(found.map(|(active, restart_lsn)| Slot {
            active,
            restart_lsn: restart_lsn.as_deref().and_then(parse_lsn),
        }))
    }

    /// Creates the physical slot `name`, reserving WAL from now on (Barman's creates
    /// it without, so its check says "not initialised" until streaming starts).
    pub fn create_slot(&mut self, name: &str) -> Result<()> {
        let what = format!("cannot create replication slot '{name}'");
        let name = name.to_owned();
        self.ask(&what, move |client| {
            client
                .execute(
                    "SELECT pg_create_physical_replication_slot($1, true)",
                    &[&name],
                )
                .map(drop)
        })
    }

    /// Drops the slot `name`.
    pub fn drop_slot(&mut self, name: &str) -> Result<()> {
        let what = format!("cannot drop replication slot '{name}'");
        let name = name.to_owned();
        self.ask(&what, move |client| {
            client
                .execute("SELECT pg_drop_replication_slot($1)", &[&name])
                .map(drop)
        })
    }

    /// `synchronous_standby_names`.
    pub fn synchronous_standby_names(&mut self) -> Result<String> {
        self.ask("cannot read synchronous_standby_names", |client| {
            client
                .query_one("SELECT current_setting('synchronous_standby_names')", &[])
                .and_then(|row| row.try_get(0))
        })
    }
}
