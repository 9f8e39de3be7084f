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
    let mut keys: Vec<OsString> = env::vars_os()
        .map(|(key, _)| key)
        .filter(|key| is_walpipe_or_pg(key))
        .collect();
    keys.extend(
        cmd.get_envs()
            .map(|(key, _)| key.to_os_string())
            .filter(|key| is_walpipe_or_pg(key)),
    );
    for key in keys {
        cmd.env_remove(key);
    }
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
}
