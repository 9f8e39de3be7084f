//! What the receiver asks PostgreSQL over a plain SQL connection: its version, where its
//! WAL is, the replication slot, and whether it waits for the receiver (synchronous
//! streaming). Each question is one query; an unreachable server is a temporary failure.

use postgres::{Client, NoTls};
use wal_core::WalError;
use wal_core::error::Result;
use wal_core::names::{SegmentSize, lsn_to_segment, parse_lsn};

use crate::conninfo::Conninfo;

/// An open SQL connection to the server.
#[allow(missing_debug_implementations)] // postgres::Client has no Debug
pub struct Server {
    client: Client,
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

impl Server {
    /// Connects with the connection string's settings.
    pub fn connect(conninfo: &Conninfo) -> Result<Server> {
        let config = conninfo.sql_config()?;
        let client = config
            .connect(NoTls)
            .map_err(|err| failed("cannot connect to PostgreSQL", &err))?;
        Ok(Server { client })
    }

    /// `server_version_num` (150004 for 15.4).
    pub fn version_num(&mut self) -> Result<u32> {
        let row = self
            .client
            .query_one("SELECT current_setting('server_version_num')::int4", &[])
            .map_err(|err| failed("cannot read server_version_num", &err))?;
        let version: i32 = row.get(0);
        u32::try_from(version).map_err(|_| WalError::Internal("negative server version".into()))
    }

    /// Where the server's WAL is.
    pub fn position(&mut self) -> Result<Position> {
        let row = self
            .client
            .query_one(
                "SELECT CASE WHEN pg_is_in_recovery() \
                   THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) \
                   ELSE pg_current_wal_lsn() END::text, \
                 (SELECT timeline_id FROM pg_control_checkpoint()), \
                 (SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size')",
                &[],
            )
            .map_err(|err| failed("cannot read the server's WAL position", &err))?;
        let lsn: Option<String> = row.get(0);
        let lsn = lsn
            .as_deref()
            .and_then(parse_lsn)
            .ok_or_else(|| WalError::Config("the server reports no WAL position".into()))?;
        let timeline: i32 = row.get(1);
        let size: i64 = row.get(2);
        Ok(Position {
            lsn,
            timeline: u32::try_from(timeline)
                .map_err(|_| WalError::Internal(format!("timeline {timeline}")))?,
            segment_size: SegmentSize::new(u64::try_from(size).unwrap_or(0))?,
        })
    }

    /// The physical slot `name`, if it exists.
    pub fn slot(&mut self, name: &str) -> Result<Option<Slot>> {
        let rows = self
            .client
            .query(
                "SELECT active, restart_lsn::text FROM pg_replication_slots \
                 WHERE slot_name = $1 AND slot_type = 'physical'",
                &[&name],
            )
            .map_err(|err| failed("cannot read pg_replication_slots", &err))?;
        Ok(rows.first().map(|row| Slot {
            active: row.get(0),
            restart_lsn: row
                .get::<_, Option<String>>(1)
                .as_deref()
                .and_then(parse_lsn),
        }))
    }

    /// Creates the physical slot `name`, reserving WAL from now on (Barman's creates
    /// it without, so its check says "not initialised" until streaming starts).
    pub fn create_slot(&mut self, name: &str) -> Result<()> {
        self.client
            .execute(
                "SELECT pg_create_physical_replication_slot($1, true)",
                &[&name],
            )
            .map(drop)
            .map_err(|err| failed(&format!("cannot create replication slot '{name}'"), &err))
    }

    /// Drops the slot `name`.
    pub fn drop_slot(&mut self, name: &str) -> Result<()> {
        self.client
            .execute("SELECT pg_drop_replication_slot($1)", &[&name])
            .map(drop)
            .map_err(|err| failed(&format!("cannot drop replication slot '{name}'"), &err))
    }

    /// `synchronous_standby_names`.
    pub fn synchronous_standby_names(&mut self) -> Result<String> {
        let row = self
            .client
            .query_one("SELECT current_setting('synchronous_standby_names')", &[])
            .map_err(|err| failed("cannot read synchronous_standby_names", &err))?;
        Ok(row.get(0))
    }
}

/// The standby names of a `synchronous_standby_names` value: `FIRST n (a, b)`,
/// `ANY n (a, b)`, `n (a, b)` or `a, b`; double-quoted names keep their case and
/// characters, others are folded to lower case (as the server compares them).
#[must_use]
pub fn standby_names(setting: &str) -> Vec<String> {
    let mut text = setting.trim();
    for keyword in ["first", "any"] {
        if text.len() > keyword.len()
            && text[..keyword.len()].eq_ignore_ascii_case(keyword)
            && text[keyword.len()..].starts_with(char::is_whitespace)
        {
            text = text[keyword.len()..].trim_start();
        }
    }
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && text[digits..].trim_start().starts_with('(') {
        text = text[digits..].trim_start();
    }
    if let Some(inner) = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
        text = inner;
    }
    let mut names = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            ',' if !quoted => {
                names.push(finish(&current, was_quoted));
                current.clear();
                was_quoted = false;
            }
            c => current.push(c),
        }
    }
    names.push(finish(&current, was_quoted));
    names.retain(|name| !name.is_empty());
    names
}

fn finish(name: &str, quoted: bool) -> String {
    if quoted {
        name.to_owned()
    } else {
        name.trim().to_ascii_lowercase()
    }
}

/// Whether the server waits for `application_name` (Barman's `_is_synchronous`): a
/// `synchronous_standby_names` that names it, or `*`.
#[must_use]
pub fn is_synchronous(setting: &str, application_name: &str) -> bool {
    standby_names(setting)
        .iter()
        .any(|name| name == "*" || name.eq_ignore_ascii_case(application_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_synchronous_standby_names() {
        assert_eq!(standby_names(""), Vec::<String>::new());
        assert_eq!(standby_names("a, B"), ["a", "b"]);
        assert_eq!(
            standby_names("FIRST 2 (s1, barman_receive_wal)"),
            ["s1", "barman_receive_wal"]
        );
        assert_eq!(standby_names("any 1 (\"My Node\", x)"), ["My Node", "x"]);
        assert_eq!(standby_names("2 (a,b)"), ["a", "b"]);
        assert_eq!(standby_names("*"), ["*"]);
        assert!(is_synchronous(
            "ANY 1 (barman_receive_wal)",
            "barman_receive_wal"
        ));
        assert!(is_synchronous("*", "walpipe"));
        assert!(!is_synchronous("standby1", "barman_receive_wal"));
        assert!(!is_synchronous("", "barman_receive_wal"));
        // A name that merely contains ours is another standby.
        assert!(!is_synchronous("barman_receive_wal2", "barman_receive_wal"));
    }
}
