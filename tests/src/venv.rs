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

/// The virtualenv `<cache>/name` with `requirements` installed (the text of a pip
/// requirements file), made once: a `.complete` marker holding the requirements says it
/// was finished, so a killed install is redone, and a venv made for other requirements is
/// made again.
///
/// # Panics
/// When python3, its venv module or PyPI is not there (`scripts/install-test-deps`).
#[must_use]
pub fn venv(name: &str, requirements: &str) -> PathBuf {
    static MAKE: Mutex<()> = Mutex::new(());
    let _guard = MAKE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let venv = wal_cache_dir().join(name);
    if fs::read_to_string(venv.join(".complete")).is_ok_and(|made| made == requirements)
        && venv.join("bin/python3").exists()
    {
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
    let file = venv.join("requirements.txt");
    fs::write(&file, requirements).unwrap();
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&file),
        &format!("pip install -r {} (needs PyPI)", file.display()),
    );
    fs::write(venv.join(".complete"), requirements).unwrap();
    eprintln!("made {} in {:.1?}", venv.display(), t.elapsed());
    venv
}

/// Barman 3.19 from PyPI, with the libraries of its optional compressions (zstd, lz4,
/// snappy): `tests/barman-venv.requirements`, which scripts/bench-check installs too.
#[must_use]
pub fn barman_venv() -> PathBuf {
    venv("barman-venv", include_str!("../barman-venv.requirements"))
}

/// Writes a Barman configuration at `path` for one server: `[barman]` with `home` as
/// `barman_home`, the user running the test as `barman_user` (Barman runs only as it) and
/// `log`, then `[server]` with `description` and `server_lines` (`key = value` lines:
/// conninfo, backup_method, archiver…).
///
/// # Panics
/// When the user has no name or the file cannot be written.
pub fn barman_conf(path: &Path, home: &Path, log: &Path, server: &str, server_lines: &str) {
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .expect("the user database")
        .expect("a user name");
    fs::write(
        path,
        format!(
            "[barman]\nbarman_home = {}\nbarman_user = {}\nlog_file = {}\nlog_level = DEBUG\n\n\
             [{server}]\ndescription = walpipe test\n{server_lines}\n",
            home.display(),
            user.name,
            log.display()
        ),
    )
    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
