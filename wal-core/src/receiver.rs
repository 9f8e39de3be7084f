//! What the streaming receiver (wal-receive) and the check of a server (wal-check) both
//! know of it: the receiver's status file, for the check and for a DBA (which process
//! streams, from where, how far it got, how often it restarted and why it last failed),
//! and where pg_receivewal is and which release it is.
//!
//! `<lock dir>/.<server>-receive-wal.json`, replaced whole (written beside, fsynced,
//! renamed) at each change, so a reader never sees half of one. The pid and its start
//! time tell a running receiver from one that is gone.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::Result;
use crate::{WalError, durable, process};
use serde::{Deserialize, Serialize};

/// What the status file holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// The receiver's pid.
    pub pid: u32,
    /// Its start time (clock ticks after boot; with the pid, names this very process).
    pub start_time: Option<u64>,
    /// The server name.
    pub server: String,
    /// The slot streamed from, if any.
    pub slot: Option<String>,
    /// The application name pg_receivewal connects with.
    pub application_name: String,
    /// Whether the server waits for it (`--synchronous`).
    pub synchronous: bool,
    /// The pg_receivewal running now: its pid and start time.
    pub child: Option<(i32, u64)>,
    /// `starting`, `streaming`, `waiting` (paused before a restart) or `stopped`.
    pub state: String,
    /// The last segment pg_receivewal finished.
    pub last_segment: Option<String>,
    /// The LSN it had streamed to then.
    pub last_lsn: Option<String>,
    /// The timeline it streams.
    pub timeline: Option<u32>,
    /// How many times pg_receivewal was restarted.
    pub restarts: u64,
    /// Why it last stopped, if it failed.
    pub last_error: Option<String>,
    /// When this was written (seconds since the epoch).
    pub updated: f64,
}

/// The most a status file may hold (it holds a few hundred bytes).
const STATUS_MAX: u64 = 64 * 1024;

/// How long `pg_receivewal --version` may take.
const VERSION_DEADLINE: Duration = Duration::from_secs(10);

/// The receiver's lock file of `server` (Barman's `.<server>-receive-wal.lock`): held
/// while a receiver runs.
#[must_use]
pub fn lock_path(lock_dir: &Path, server: &str) -> PathBuf {
    lock_dir.join(format!(".{server}-receive-wal.lock"))
}

/// Where the status of `server` is kept.
#[must_use]
pub fn status_path(lock_dir: &Path, server: &str) -> PathBuf {
    lock_dir.join(format!(".{server}-receive-wal.json"))
}

impl Status {
    /// A new status for this process.
    #[must_use]
    pub fn new(server: &str, slot: Option<&str>, application_name: &str) -> Status {
        let pid = std::process::id();
        Status {
            pid,
            start_time: i32::try_from(pid).ok().and_then(process::start_time),
            server: server.to_owned(),
            slot: slot.map(str::to_owned),
            application_name: application_name.to_owned(),
            state: "starting".into(),
            ..Status::default()
        }
    }

    /// The status at `path`, if there is one that reads (see [`Status::load`]).
    #[must_use]
    pub fn read(path: &Path) -> Option<Status> {
        Status::load(path).ok().flatten()
    }

    /// The status at `path`: `None` when there is none, an error naming the file when it
    /// is not one of ours (a link, a fifo, a device, garbage, over 64 KiB): the status
    /// file is read by others (a check), and must never hang or flood them.
    pub fn load(path: &Path) -> Result<Option<Status>> {
        let file = match durable::open_regular(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(WalError::io("cannot read the receiver's status", path, e)),
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, STATUS_MAX + 1), &mut bytes)
            .map_err(|e| WalError::io("cannot read the receiver's status", path, e))?;
        if bytes.len() as u64 > STATUS_MAX {
            return Err(WalError::Config(format!(
                "{}: not a receiver status (over {STATUS_MAX} bytes)",
                path.display()
            )));
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            WalError::Config(format!("{}: not a receiver status ({e})", path.display()))
        })
    }

    /// Writes the status to `path`, whole.
    pub fn write(&mut self, path: &Path) -> Result<()> {
        self.updated = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let text =
            serde_json::to_vec_pretty(self).map_err(|e| WalError::Internal(e.to_string()))?;
        durable::replace_durably(path, |file| std::io::Write::write_all(file, &text))
    }
}

/// Finds pg_receivewal: `given`, else on PATH, else under the server's version's
/// directory in Debian's layout.
pub fn find_pg_receivewal(given: Option<&Path>, server_major: u32) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("pg_receivewal"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let debian = PathBuf::from(format!(
        "/usr/lib/postgresql/{server_major}/bin/pg_receivewal"
    ));
    on_path
        .into_iter()
        .chain([debian])
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| WalError::Config("pg_receivewal not present in $PATH".into()))
}

/// The major version pg_receivewal `--version` reports (`pg_receivewal (PostgreSQL)
/// 15.18 (Debian …)` → 15), as Barman reads it: parenthesised text removed, the second
/// word.
pub fn client_major(binary: &Path) -> Result<u32> {
    let text = version_line(binary)?;
    major_of_version_line(&text).ok_or_else(|| {
        WalError::Config(format!(
            "{}: not a pg_receivewal (its --version said {:?})",
            binary.display(),
            text.trim()
        ))
    })
}

/// What `binary --version` prints first (at most 4 KiB), within [`VERSION_DEADLINE`]:
/// a program that hangs or floods is killed, with whatever it started (its own process
/// group), and is no pg_receivewal.
fn version_line(binary: &Path) -> Result<String> {
    let not_one =
        |why: &str| WalError::Config(format!("{}: not a pg_receivewal ({why})", binary.display()));
    if std::fs::metadata(binary).is_ok_and(|m| m.is_dir()) {
        return Err(not_one("a directory"));
    }
    let mut child = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| WalError::io("cannot run", binary, e))?;
    let group = i32::try_from(child.id())
        .map(nix::unistd::Pid::from_raw)
        .ok();
    let stdout = child.stdout.take();
    let (sender, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(out) = stdout {
            let _ = std::io::Read::read_to_end(&mut std::io::Read::take(out, 4096), &mut text);
        }
        let _ = sender.send(text);
    });
    let text = said.recv_timeout(VERSION_DEADLINE);
    // Done or not, nothing it started outlives the question.
    if let Some(group) = group {
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.wait();
    let text = text.map_err(|_| {
        not_one(&format!(
            "--version did not answer within {} s",
            VERSION_DEADLINE.as_secs()
        ))
    })?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// See [`client_major`].
#[must_use]
pub fn major_of_version_line(text: &str) -> Option<u32> {
    let mut plain = String::new();
    let mut depth = 0u32;
    for c in text.lines().next()?.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let version = plain.split_whitespace().nth(1)?;
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_as_barman_reads_them() {
        assert_eq!(
            major_of_version_line("pg_receivewal (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(
            major_of_version_line("pg_receivewal (PostgreSQL) 17devel"),
            Some(17)
        );
        assert_eq!(major_of_version_line("nonsense"), None);
    }
}
