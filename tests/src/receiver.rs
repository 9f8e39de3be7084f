//! wal-receive as the tests drive it (the command line pointed at a test cluster, its
//! status file), a PostgreSQL that never answers, and waiting for a condition: what the
//! receiver's tests, the check's and the streaming end-to-end tests share.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::paths::target_bin;
use crate::pg::{PgCluster, pg_bin};

/// Adds `SUBCOMMAND --home HOME --server SERVER --dbname <pg> --pg-receivewal <15's>` to
/// `cmd` (a wal-receive command, run as whichever user), stdin closed.
pub fn receive_args<'a>(
    cmd: &'a mut Command,
    pg: &PgCluster,
    subcommand: &str,
    home: &Path,
    server: &str,
) -> &'a mut Command {
    cmd.arg(subcommand)
        .arg("--home")
        .arg(home)
        .args(["--server", server, "--dbname", &pg.conninfo()])
        .arg("--pg-receivewal")
        .arg(pg_bin("pg_receivewal"))
        .stdin(Stdio::null())
}

/// The built wal-receive, hermetic, with [`receive_args`].
#[must_use]
pub fn wal_receive(pg: &PgCluster, subcommand: &str, home: &Path, server: &str) -> Command {
    let mut cmd = Command::new(target_bin("wal-receive"));
    crate::hermetic::clean_command(&mut cmd);
    receive_args(&mut cmd, pg, subcommand, home, server);
    cmd
}

/// The receiver's status file of `server` under `home` (the lock directory), parsed;
/// `Null` while there is none (or it does not parse).
#[must_use]
pub fn receiver_status(home: &Path, server: &str) -> serde_json::Value {
    std::fs::read(home.join(format!(".{server}-receive-wal.json")))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// A "PostgreSQL" on 127.0.0.1 that accepts connections and never says a word (a
/// stopped or wedged server): each connection is held open, unanswered, for the test's
/// life. Returns its port.
///
/// # Panics
/// When no port can be bound.
#[must_use]
pub fn silent_postgres() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("a bound address").port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut stream = stream;
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// Polls `done` every 100 ms until it holds; after `timeout`, fails naming `what` and
/// what `describe` says then (logs, files).
///
/// # Panics
/// When `done` does not hold in time.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) {
    let until = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < until,
            "timed out after {timeout:?} waiting for {what}\n{}",
            describe()
        );
        thread::sleep(Duration::from_millis(100));
    }
}
