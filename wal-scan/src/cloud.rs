//! `wal-scan archive URL`: what a cloud archive holds, as records.
//!
//! Listing a bucket needs an object-store client, and heavy dependencies live in the one
//! binary that needs them: wal-store has it. So a cloud archive is listed by the
//! `wal-store list` installed next to this executable (as wal-store runs the wal-encrypt
//! beside it), given the URL, the server and the cloud flags, none of our own `WALPIPE_*`
//! environment (what we were given is passed as flags, once) and all the rest of it (the
//! clouds' credentials). Its records (name order, compression and encryption from the
//! keys' extensions, `stored_at` the object's URL, no `path`) come out through this
//! stage's writer like a local archive's. Its warnings are passed on under this stage's
//! name; when it fails, its last line is this run's error and its exit status chooses
//! ours (75 for a store that does not answer, 64 for bad flags, 78 for an archive URL or
//! endpoint that cannot be used).

use std::env;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;

use wal_core::{WalError, WalRecord};

use crate::config::CloudConfig;
use crate::entry::{Entry, STAGE};
use crate::output::Records;

/// The binary that lists cloud archives.
const WAL_STORE: &str = "wal-store";

/// How wal-store starts its stderr lines.
const WAL_STORE_PREFIX: &str = "wal-store: ";

/// Writes one record per archived object, in name order, as `wal-store list` gives them.
pub fn scan<W: Write>(config: &CloudConfig, out: &mut Records<W>) -> Result<(), WalError> {
    let exe = wal_store_path()?;
    let mut child = list_command(&exe, config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            // Not "no such input" (66): the archive may well be there, the install is broken.
            WalError::Internal(format!(
                "cannot run {}: {e} (cloud archives are listed by the {WAL_STORE} installed \
                 beside {STAGE})",
                exe.display()
            ))
        })?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    // Read on the side, so a chatty child never blocks on a full stderr pipe.
    let diagnostics = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let relayed = relay(stdout, out);
    if relayed.is_err() {
        // Our stdout is gone, or the child talks nonsense: no point listing on.
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| WalError::io("cannot run", &exe, e))?;
    let diagnostics = diagnostics.join().unwrap_or_default();
    relayed?;
    conclude(&config.url, status, &diagnostics)
}

/// `wal-store list --archive URL --server NAME FLAGS…`, without our `WALPIPE_*` variables,
/// at our log level (its flags).
fn list_command(exe: &Path, config: &CloudConfig) -> Command {
    let mut command = Command::new(exe);
    for (key, _) in env::vars_os() {
        if key.to_string_lossy().starts_with("WALPIPE_") {
            command.env_remove(key);
        }
    }
    command
        .args(wal_core::log::flags_for_child())
        .args(["list", "--archive", &config.url, "--server", &config.server])
        // `--flag=VALUE`, one argument each: a value that starts with `-` (`--timeout -1`)
        // is then that flag's value, refused by wal-store with its own message, and not
        // taken for another flag.
        .args(
            config
                .flags
                .iter()
                .map(|(flag, value)| format!("{flag}={value}")),
        );
    command
}

/// Writes the child's records as ours; a line that is not a record is a bug there.
fn relay<W: Write>(stdout: impl BufRead, out: &mut Records<W>) -> Result<(), WalError> {
    for (index, line) in stdout.lines().enumerate() {
        let line = line.map_err(|e| WalError::io("cannot read the output of", WAL_STORE, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = WalRecord::from_line(&line, index as u64 + 1).map_err(|e| {
            WalError::Internal(format!("{WAL_STORE} list printed something else: {e}"))
        })?;
        out.emit(if record.error.is_some() {
            Entry::Failed(record)
        } else {
            Entry::Wal(record)
        })?;
    }
    Ok(())
}

/// After the child: its warnings passed on, or its failure made ours.
fn conclude(url: &str, status: ExitStatus, diagnostics: &str) -> Result<(), WalError> {
    let mut lines: Vec<String> = diagnostics
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.strip_prefix(WAL_STORE_PREFIX)
                .unwrap_or(line)
                .to_owned()
        })
        .collect();
    let last = if status.success() { None } else { lines.pop() };
    // The child runs at this process's level (its flags, when it was started), so each of its lines already passed that filter: passed on whatever
    // their level, or an error's "caused by" line would go missing at -qq.
    for line in &lines {
        wal_core::log::error!("{STAGE}: {line}");
    }
    if status.success() {
        return Ok(());
    }
    let message = last.unwrap_or_else(|| format!("{WAL_STORE} list failed ({status})"));
    Err(error_for(url, status.code(), message))
}

/// The error that gives this run the exit status wal-store chose.
fn error_for(url: &str, code: Option<i32>, message: String) -> WalError {
    let io_error = |kind| WalError::io("cannot list", url, io::Error::new(kind, message.clone()));
    match code {
        Some(64) => WalError::Usage(message),
        Some(78) => WalError::Config(message),
        Some(75) => WalError::Temporary(message),
        Some(66) => io_error(io::ErrorKind::NotFound),
        Some(74) => io_error(io::ErrorKind::Other),
        _ => WalError::Internal(match code {
            Some(code) => format!("{message} ({WAL_STORE} list exited {code})"),
            None => format!("{message} ({WAL_STORE} list was killed)"),
        }),
    }
}

/// `wal-store` in the directory of the running executable (the binaries are installed
/// and built side by side).
fn wal_store_path() -> Result<PathBuf, WalError> {
    let exe = env::current_exe().map_err(|e| WalError::io("cannot locate", STAGE, e))?;
    Ok(exe.with_file_name(format!("{WAL_STORE}{}", env::consts::EXE_SUFFIX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use wal_core::ErrorKind;
    use wal_core::exit::ExitCode;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn records_pass_through_and_nonsense_is_a_bug() {
        let listing = concat!(
            r#"{"name":"000000010000000000000001","kind":"segment","size":7,"time":1.5,"#,
            r#""compression":"zstd","stored_at":"s3://b/pg/wals/0000000100000000/000000010000000000000001.zst"}"#,
            "\n\n",
            r#"{"name":"00000002.history","kind":"history","size":40,"time":2.0,"encryption":"gpg","x":1}"#,
            "\n"
        );
        let mut out = Vec::new();
        let mut records = Records::new(&mut out);
        relay(listing.as_bytes(), &mut records).unwrap();
        let summary = records.finish().unwrap();
        assert_eq!((summary.records, summary.failed), (2, 0));
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["compression"], "zstd");
        assert_eq!(
            lines[0]["stored_at"],
            "s3://b/pg/wals/0000000100000000/000000010000000000000001.zst"
        );
        assert!(lines[0].get("path").is_none());
        assert_eq!(lines[1]["encryption"], "gpg");
        assert_eq!(lines[1]["x"], 1, "unknown fields are forwarded");

        let mut records = Records::new(Vec::new());
        let err = relay("not json\n".as_bytes(), &mut records).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
    }

    #[test]
    fn failures_keep_wal_stores_exit_status_and_last_line() {
        let cases = [
            (64, "--timeout 0: a positive number of seconds", 64),
            (78, "--endpoint-url \"localhost:9000\": not a URL", 78),
            (75, "cannot list s3://b/pg/wals: connection refused", 75),
            (66, "nothing there", 66),
            (74, "disk gone", 74),
            (3, "odd", 70),
        ];
        for (code, line, expected) in cases {
            let stderr = format!("wal-store: a warning\nwal-store: {line}\n");
            let err = conclude("s3://b", exited(code), &stderr).unwrap_err();
            assert_eq!(ExitCode::for_error(&err).code(), expected, "{code}");
            assert!(err.to_string().contains(line), "{err}");
            assert!(!err.to_string().contains("wal-store: "), "{err}");
        }
        let err = conclude("s3://b", exited(75), "").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Temporary);
        assert!(err.to_string().contains("wal-store list failed"), "{err}");
        let killed = ExitStatus::from_raw(9);
        let err = conclude("s3://b", killed, "").unwrap_err();
        assert!(err.to_string().contains("killed"), "{err}");
        assert!(conclude("s3://b", exited(0), "wal-store: a warning\n").is_ok());
    }

    #[test]
    fn the_child_gets_flags_not_our_environment() {
        let config = CloudConfig {
            url: "s3://b/p".into(),
            server: "pg".into(),
            flags: vec![("--endpoint-url", "http://127.0.0.1:1".into())],
        };
        let command = list_command(Path::new("/x/wal-store"), &config);
        let args: Vec<_> = command.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "list",
                "--archive",
                "s3://b/p",
                "--server",
                "pg",
                "--endpoint-url=http://127.0.0.1:1"
            ]
        );
    }
}
