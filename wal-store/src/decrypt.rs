//! Decrypted copies of encrypted files, to compare them with what is being stored.
//!
//! A local archive stores an encrypted WAL under its plain name, and encryption is
//! randomised, so a re-delivered WAL never matches its stored copy byte for byte: only the
//! plaintexts can be compared. wal-store does not link an OpenPGP implementation (heavy
//! dependencies live in the one binary that needs them): it runs `wal-encrypt --decrypt`,
//! found next to its own executable, on a small record stream, with the key and
//! passphrase it was given and none of its own `WALPIPE_*` environment. The plaintexts
//! are hidden temporary files (mode 0600, written by wal-encrypt) in a directory the
//! caller picks, removed when the [`Plaintexts`] holding them is dropped.
//!
//! A passphrase command goes to the child in its environment, never on its command line:
//! every local user reads any process's argv in `/proc/PID/cmdline`, while its environment
//! is readable by the same user only, and the command may hold the passphrase itself
//! (`echo …`). No error here quotes it either. Paths (the key, a passphrase file) are no
//! secret and stay flags. Only records wal-store found encrypted are sent, so
//! wal-encrypt's refusal of plain files (its default) never applies here.

use std::env;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wal_core::error::Result;
use wal_core::record::Encryption;
use wal_core::{ErrorKind, WalError, WalRecord};

use crate::cli::{Decryption, PassphraseSource};

/// The binary that decrypts.
const WAL_ENCRYPT: &str = "wal-encrypt";

/// The variable wal-encrypt takes a passphrase command from.
const PASSPHRASE_COMMAND: &str = "WALPIPE_PASSPHRASE_COMMAND";

/// Decrypted copies, removed on drop.
#[derive(Debug, Default)]
pub struct Plaintexts {
    paths: Vec<PathBuf>,
}

impl Drop for Plaintexts {
    fn drop(&mut self) {
        for path in &self.paths {
            if let Err(e) = fs::remove_file(path)
                && e.kind() != io::ErrorKind::NotFound
            {
                wal_core::log::warn!(
                    "{}: cannot remove decrypted copy {}: {e}",
                    crate::STAGE,
                    wal_core::log::one_line(&path.to_string_lossy())
                );
            }
        }
    }
}

/// What became of one encrypted file.
#[derive(Debug)]
pub enum Decrypted {
    /// Its plaintext is at this path (owned by the [`Plaintexts`]).
    Plain(PathBuf),
    /// It does not decrypt: corrupt, truncated or modified (the message says why).
    Corrupt(String),
}

/// Decrypts each of `files` (`(WAL name, path)`) into `dir` with `decryption`; the
/// plaintexts belong to `plaintexts`.
///
/// A file the key cannot open (another key, a wrong passphrase) or that cannot be read
/// is an error: the configuration or the disk needs a human, and the record is retried.
pub fn decrypt(
    files: &[(&str, &Path)],
    dir: &Path,
    decryption: &Decryption,
    plaintexts: &mut Plaintexts,
) -> Result<Vec<Decrypted>> {
    let exe = wal_encrypt_path()?;
    let mut command = Command::new(&exe);
    for (key, _) in env::vars_os() {
        if key.to_string_lossy().starts_with("WALPIPE_") {
            command.env_remove(key);
        }
    }
    command
        .args(["--decrypt", "--jobs", "1", "--temp-dir"])
        .arg(dir);
    if let Some(key) = &decryption.key {
        command.arg("--key").arg(key);
    }
    match &decryption.passphrase {
        Some(PassphraseSource::File(path)) => command.arg("--passphrase-file").arg(path),
        Some(PassphraseSource::Command(line)) => command.env(PASSPHRASE_COMMAND, line),
        None => &mut command,
    };
    let mut input = Vec::new();
    for (name, path) in files {
        let mut record = WalRecord::new(*name);
        record.path = Some(path.to_path_buf());
        record.encryption = Some(Encryption::Gpg);
        record
            .write_line(&mut input)
            .map_err(|e| WalError::io("cannot write records for", &exe, e))?;
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| WalError::io("cannot run", &exe, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A child that exits early (bad key file) closes its end: its stderr says why.
        let _ = stdin.write_all(&input);
    }
    let output = child
        .wait_with_output()
        .map_err(|e| WalError::io("cannot run", &exe, e))?;
    let records: Vec<WalRecord> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .enumerate()
        .filter_map(|(index, line)| WalRecord::from_line(line, index as u64 + 1).ok())
        .collect();
    if records.len() != files.len() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(WalError::Usage(format!(
            "{WAL_ENCRYPT} --decrypt failed ({}): {}",
            output.status,
            stderr.trim()
        )));
    }
    let mut results = Vec::with_capacity(records.len());
    for record in records {
        // Each temp is ours to remove, whatever else happens.
        plaintexts.paths.extend(record.temps.iter().cloned());
        results.push(match (&record.error, &record.path) {
            (None, Some(path)) if record.encryption.is_none() => Decrypted::Plain(path.clone()),
            (Some(error), _) if error.kind == ErrorKind::Corrupt => {
                Decrypted::Corrupt(error.message.clone())
            }
            (Some(error), _) if error.kind == ErrorKind::Usage => {
                return Err(WalError::Usage(error.message.clone()));
            }
            (Some(error), _) => return Err(WalError::Temporary(error.message.clone())),
            _ => {
                return Err(WalError::Internal(format!(
                    "{WAL_ENCRYPT} --decrypt left {} encrypted",
                    record.name
                )));
            }
        });
    }
    Ok(results)
}

/// `wal-encrypt` in the directory of the running executable (how the binaries are
/// installed and built: side by side).
fn wal_encrypt_path() -> Result<PathBuf> {
    let exe = env::current_exe().map_err(|e| WalError::io("cannot locate", "wal-store", e))?;
    Ok(exe.with_file_name(format!("{WAL_ENCRYPT}{}", env::consts::EXE_SUFFIX)))
}
