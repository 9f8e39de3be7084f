//! Python virtualenvs the tests run real tools from (Barman 3.19 itself, Prometheus'
//! own parser), made once from PyPI under the WAL cache (`<cache>/<name>`) and reused.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use crate::fixtures::wal_cache_dir;
use crate::hermetic::clean_command;
use crate::wrappers::assert_success;

/// The virtualenv `<cache>/name` with `packages` installed (pip requirement strings),
/// made once: a `.complete` marker says it was finished, so a killed install is redone.
///
/// # Panics
/// When python3, its venv module or PyPI is not there (`scripts/install-test-deps`).
#[must_use]
pub fn venv(name: &str, packages: &[&str]) -> PathBuf {
    static MAKE: Mutex<()> = Mutex::new(());
    let _guard = MAKE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let venv = wal_cache_dir().join(name);
    if venv.join(".complete").exists() && venv.join("bin/python3").exists() {
        return venv;
    }
    let t = Instant::now();
    let _ = fs::remove_dir_all(&venv);
    fs::create_dir_all(wal_cache_dir()).unwrap();
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let run = |cmd: &mut Command, what: &str| {
        clean_command(cmd);
        let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
            panic!("{what}: {e} (python3 and python3-venv: scripts/install-test-deps)")
        });
        assert_success(&out, what);
    };
    run(
        Command::new(python).args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(packages),
        &format!("pip install {} (needs PyPI)", packages.join(" ")),
    );
    fs::write(venv.join(".complete"), b"").unwrap();
    eprintln!("made {} in {:.1?}", venv.display(), t.elapsed());
    venv
}

/// Barman 3.19 from PyPI (and `zstandard` for its zstd compression).
#[must_use]
pub fn barman_venv() -> PathBuf {
    venv("barman-venv", &["barman==3.19.*", "zstandard"])
}
