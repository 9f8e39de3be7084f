//! Hermetic child processes.
//!
//! walpipe's binaries read `WALPIPE_*` settings and the PostgreSQL tools read `PG*`
//! (`PGHOST`, `PGPORT`, `PGDATA`, ...). A developer's shell or a CI runner setting one of
//! them must not change what a test sees, so every spawned command starts without them
//! (bat's tests clear the environment for the same reason).

use std::env;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

/// Whether an environment variable name is one the tests must not inherit.
fn is_walpipe_or_pg(key: &OsStr) -> bool {
    let key = key.as_bytes();
    key.starts_with(b"WALPIPE_") || key.starts_with(b"PG")
}

/// Removes every `WALPIPE_*` and `PG*` variable from `cmd`: both those it would inherit
/// from this process and those already set on it with [`Command::env`].
///
/// Set the variables a test means to pass *after* calling this.
pub fn clean_command(cmd: &mut Command) {
    remove_vars(cmd, is_walpipe_or_pg);
}

/// Removes from `cmd` every variable `matches` names, inherited or already set on it.
fn remove_vars(cmd: &mut Command, matches: fn(&OsStr) -> bool) {
    let mut keys: Vec<OsString> = env::vars_os()
        .map(|(key, _)| key)
        .filter(|key| matches(key))
        .collect();
    keys.extend(
        cmd.get_envs()
            .map(|(key, _)| key.to_os_string())
            .filter(|key| matches(key)),
    );
    for key in keys {
        cmd.env_remove(key);
    }
}

/// Whether a variable belongs to a cloud client or to the test servers' tools.
/// `STORAGE_EMULATOR_HOST` sends Google's own clients (barman-cloud's) to a GCS emulator.
fn is_cloud(key: &OsStr) -> bool {
    let key = key.as_bytes();
    key == b"STORAGE_EMULATOR_HOST"
        || [b"AWS_".as_slice(), b"AZURE_", b"GOOGLE_", b"GARAGE_"]
            .iter()
            .any(|prefix| key.starts_with(prefix))
}

/// [`clean_command`], and also no inherited cloud settings (`AWS_*`, `AZURE_*`,
/// `GOOGLE_*`, `GARAGE_*`, `STORAGE_EMULATOR_HOST`), the user's `~/.aws` files hidden and EC2 metadata lookups off:
/// a cloud command sees only the server a test gives it.
///
/// Set the variables a test means to pass *after* calling this.
pub fn clean_cloud_command(cmd: &mut Command) -> &mut Command {
    clean_command(cmd);
    remove_vars(cmd, is_cloud);
    cmd.env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_two_prefixes() {
        assert!(is_walpipe_or_pg(OsStr::new("WALPIPE_HOME")));
        assert!(is_walpipe_or_pg(OsStr::new("PGPORT")));
        assert!(is_walpipe_or_pg(OsStr::new("PG_BINDIR")));
        assert!(!is_walpipe_or_pg(OsStr::new("PATH")));
        assert!(!is_walpipe_or_pg(OsStr::new("WALPIPE")));
        assert!(!is_walpipe_or_pg(OsStr::new("pgport")));
    }

    #[test]
    fn cloud_prefixes() {
        assert!(is_cloud(OsStr::new("AWS_PROFILE")));
        assert!(is_cloud(OsStr::new("AZURE_STORAGE_CONNECTION_STRING")));
        assert!(is_cloud(OsStr::new("GOOGLE_APPLICATION_CREDENTIALS")));
        assert!(is_cloud(OsStr::new("STORAGE_EMULATOR_HOST")));
        assert!(!is_cloud(OsStr::new("HOME")));
    }
}
