//! The connection string: libpq's `key=value` form, read the way libpq reads it, so that
//! the receiver's own SQL connection and pg_receivewal's replication connection reach
//! the same server as the same user.
//!
//! pg_receivewal gets the string itself (`--dbname`), with `application_name` added
//! unless given, and reads the libpq environment (`PGHOST`, `PGPORT`, `PGUSER`,
//! `PGPASSFILE`, …) on its own. The SQL connection (the `postgres` crate, which reads no
//! environment) gets the same keys with the same environment fallbacks applied here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::WalError;
use crate::error::Result;

/// Barman's default `streaming_archiver_name`: kept, so that a
/// `synchronous_standby_names` written for Barman's receiver names ours too.
pub const DEFAULT_APPLICATION_NAME: &str = "barman_receive_wal";

/// The libpq environment variable for each key the SQL connection uses.
const ENVIRONMENT: [(&str, &str); 7] = [
    ("host", "PGHOST"),
    ("port", "PGPORT"),
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("dbname", "PGDATABASE"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("passfile", "PGPASSFILE"),
];

/// A parsed connection string: its keys in the order given (a key given twice: the last
/// value, as libpq).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conninfo {
    pairs: Vec<(String, String)>,
}

impl Conninfo {
    /// Parses libpq's `key = value` form: values bare or single-quoted, `\` escaping the
    /// next character. A URI (`postgresql://…`) is refused: give its parts as keys.
    pub fn parse(text: &str) -> Result<Conninfo> {
        if text.starts_with("postgresql://") || text.starts_with("postgres://") {
            return Err(WalError::Usage(
                "--dbname: a URI; give the connection as key=value pairs \
                 (host=… port=… user=…)"
                    .into(),
            ));
        }
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.peek().is_none() {
                break;
            }
            let mut key = String::new();
            while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
                key.push(c);
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.next() != Some('=') {
                return Err(bad(text, &format!("\"{key}\" has no \"=\"")));
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let mut value = String::new();
            if chars.next_if_eq(&'\'').is_some() {
                loop {
                    match chars.next() {
                        None => return Err(bad(text, "an unterminated quoted value")),
                        Some('\'') => break,
                        Some('\\') => value.push(chars.next().unwrap_or('\\')),
                        Some(c) => value.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    if c == '\\' {
                        value.push(chars.next().unwrap_or('\\'));
                    } else {
                        value.push(c);
                    }
                }
            }
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                return Err(bad(text, &format!("\"{key}\" is not a connection keyword")));
            }
            pairs.retain(|(k, _)| *k != key);
            pairs.push((key, value));
        }
        Ok(Conninfo { pairs })
    }

    /// The value of `key`, if given.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` unless given.
    pub fn set_default(&mut self, key: &str, value: &str) {
        if self.get(key).is_none() {
            self.pairs.push((key.to_owned(), value.to_owned()));
        }
    }

    /// The string for pg_receivewal's `--dbname`: every value quoted.
    #[must_use]
    pub fn to_libpq(&self) -> String {
        self.pairs
            .iter()
            .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The application name pg_receivewal connects with (what
    /// `synchronous_standby_names` must name for synchronous streaming).
    #[must_use]
    pub fn application_name(&self) -> &str {
        self.get("application_name")
            .unwrap_or(DEFAULT_APPLICATION_NAME)
    }

    /// The SQL connection's settings: the keys given, else the libpq environment, else
    /// libpq's defaults (the local socket directory, the OS user); the password, if none
    /// is given, from the password file as libpq finds it.
    pub fn sql_config(&self) -> Result<postgres::Config> {
        self.sql_config_with(|name| std::env::var(name).ok())
    }

    fn sql_config_with(&self, env: impl Fn(&str) -> Option<String>) -> Result<postgres::Config> {
        let mut settings: BTreeMap<&str, String> = BTreeMap::new();
        for (key, variable) in ENVIRONMENT {
            if let Some(value) = self.get(key).map(str::to_owned).or_else(|| env(variable)) {
                settings.insert(key, value);
            }
        }
        for (key, _) in &self.pairs {
            if !matches!(
                key.as_str(),
                "host"
                    | "hostaddr"
                    | "port"
                    | "user"
                    | "password"
                    | "dbname"
                    | "connect_timeout"
                    | "passfile"
                    | "application_name"
                    | "sslmode"
                    | "options"
                    | "replication"
            ) {
                return Err(WalError::Usage(format!(
                    "--dbname: \"{key}\" is not supported by the receiver's SQL connection"
                )));
            }
        }
        if let Some(mode) = self
            .get("sslmode")
            .map(str::to_owned)
            .or_else(|| env("PGSSLMODE"))
            && !matches!(mode.as_str(), "disable" | "allow" | "prefer")
        {
            return Err(WalError::Usage(format!(
                "--dbname: sslmode={mode}: the receiver connects without TLS (use a local \
                 socket or a trusted network)"
            )));
        }
        // libpq: an empty value is no value; a list (`a,b`) is tried in turn, which this
        // connection does not do: refused rather than taken as one host's name.
        let host = settings
            .get("host")
            .cloned()
            .filter(|host| !host.is_empty())
            .or_else(|| {
                self.get("hostaddr")
                    .map(str::to_owned)
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "/var/run/postgresql".into());
        for (key, value) in [
            ("host", &host),
            ("port", &settings.get("port").cloned().unwrap_or_default()),
        ] {
            if value.contains(',') {
                return Err(WalError::Usage(format!(
                    "--dbname: {key}={value}: lists of hosts or ports are not supported; \
                     name one server"
                )));
            }
        }
        let port = match settings.get("port") {
            Some(port) => port
                .parse::<u16>()
                .map_err(|_| WalError::Usage(format!("--dbname: port={port}: not a port")))?,
            None => 5432,
        };
        let user = match settings.get("user") {
            Some(user) => user.clone(),
            None => env("USER").unwrap_or_else(|| "postgres".into()),
        };
        let dbname = settings
            .get("dbname")
            .cloned()
            .unwrap_or_else(|| user.clone());
        let mut config = postgres::Config::new();
        config
            .host(&host)
            .port(port)
            .user(&user)
            .dbname(&dbname)
            .application_name(&format!("{}_check", self.application_name()));
        if let Some(timeout) = settings.get("connect_timeout") {
            let seconds: u64 = timeout.parse().map_err(|_| {
                WalError::Usage(format!("--dbname: connect_timeout={timeout}: not seconds"))
            })?;
            config.connect_timeout(Duration::from_secs(seconds.max(2)));
        } else {
            config.connect_timeout(Duration::from_secs(10));
        }
        let password = settings.get("password").cloned().or_else(|| {
            let file = settings
                .get("passfile")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|home| Path::new(&home).join(".pgpass")))?;
            password_from_file(&file, &host, port, &dbname, &user)
        });
        if let Some(password) = password {
            config.password(password);
        }
        Ok(config)
    }
}

fn bad(text: &str, why: &str) -> WalError {
    let _ = text;
    WalError::Usage(format!("--dbname: {why} (key=value pairs, libpq's form)"))
}

/// The password for `host:port:dbname:user` in a libpq password file (`*` matches
/// anything; `\:` and `\\` escape), if the file is there and names it. Like libpq, a file
/// others can read is ignored.
fn password_from_file(
    file: &Path,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    // As libpq: only a regular file (never a fifo, which would hang us), and not a huge
    // one.
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(crate::durable::open_regular(file).ok()?, 1 << 20),
        &mut text,
    )
    .ok()?;
    // A socket directory is "localhost" to the password file, as to libpq.
    let host = if host.starts_with('/') {
        "localhost"
    } else {
        host
    };
    let wanted = [
        host.to_owned(),
        port.to_string(),
        dbname.to_owned(),
        user.to_owned(),
    ];
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let fields = split_passfile_line(line);
            (fields.len() == 5
                && fields[..4]
                    .iter()
                    .zip(&wanted)
                    .all(|(field, want)| field == "*" || field == want))
            .then(|| fields[4].clone())
        })
}

fn split_passfile_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields
                .last_mut()
                .unwrap_or(&mut String::new())
                .push(chars.next().unwrap_or('\\')),
            ':' => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpqs_form_parses_and_quotes_back() {
        let info =
            Conninfo::parse(r"host=/tmp/s port = 5499 user='o\'brien' password=a\ b").unwrap();
        assert_eq!(info.get("host"), Some("/tmp/s"));
        assert_eq!(info.get("port"), Some("5499"));
        assert_eq!(info.get("user"), Some("o'brien"));
        assert_eq!(info.get("password"), Some("a b"));
        let again = Conninfo::parse(&info.to_libpq()).unwrap();
        assert_eq!(again, info);
        // The last of a key wins, as in libpq.
        let twice = Conninfo::parse("port=1 port=2").unwrap();
        assert_eq!(twice.get("port"), Some("2"));
    }

    #[test]
    fn what_is_not_a_connection_string_is_refused_in_one_line() {
        for text in [
            "host",
            "host=/tmp 'x'=1",
            "user='unterminated",
            "postgresql://h/db",
            "Host=x",
        ] {
            let err = Conninfo::parse(text).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Usage, "{text}");
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }

    #[test]
    fn the_environment_fills_what_is_not_given() {
        let env = |name: &str| match name {
            "PGHOST" => Some("/run/pg".to_owned()),
            "PGPORT" => Some("6000".to_owned()),
            "PGUSER" => Some("barman".to_owned()),
            _ => None,
        };
        let config = Conninfo::parse("port=7000")
            .unwrap()
            .sql_config_with(env)
            .unwrap();
        assert_eq!(config.get_ports(), &[7000]);
        // An empty host is libpq's default socket directory (what was given, even empty,
        // is not asked of the environment); lists are refused.
        let config = Conninfo::parse("host=")
            .unwrap()
            .sql_config_with(env)
            .unwrap();
        assert_eq!(
            config.get_hosts(),
            &[postgres::config::Host::Unix("/var/run/postgresql".into())]
        );
        for list in ["host=a,b", "port=5432,5433"] {
            let err = Conninfo::parse(list)
                .unwrap()
                .sql_config_with(env)
                .unwrap_err();
            assert!(err.to_string().contains("lists of hosts or ports"), "{err}");
        }
        assert_eq!(config.get_user(), Some("barman"));
        assert_eq!(config.get_dbname(), Some("barman"));
        let err = Conninfo::parse("sslmode=require")
            .unwrap()
            .sql_config_with(env)
            .unwrap_err();
        assert!(err.to_string().contains("without TLS"), "{err}");
    }

    #[test]
    fn the_password_file_is_read_as_libpq_reads_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:*:*:*:no\nlocalhost:5499:*:bar\\:man:s\\:cret\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            password_from_file(&file, "/tmp/sock", 5499, "db", "bar:man").as_deref(),
            Some("s:cret")
        );
        assert_eq!(
            password_from_file(&file, "/tmp/sock", 5400, "db", "bar:man"),
            None
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            password_from_file(&file, "/tmp/sock", 5499, "db", "bar:man"),
            None
        );
    }
}
