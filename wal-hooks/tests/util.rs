//! Helpers shared by the test modules: the hermetic command, records in and out, and hook
//! scripts that write down what they saw.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test, with no `WALPIPE_*`/`PG*`/`BARMAN_*` variables inherited.
pub fn wal_hooks() -> assert_cmd::Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wal-hooks"));
    walpipe_tests::clean_command(&mut cmd);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BARMAN_") {
            cmd.env_remove(key);
        }
    }
    assert_cmd::Command::from_std(cmd)
}

/// `wal-hooks --server pg ARGS...` on `input`; returns the output, whatever the exit.
pub fn run_hooks(args: &[&str], input: &str) -> Output {
    let output = wal_hooks()
        .args(["--server", "pg"])
        .args(args)
        .write_stdin(input)
        .output()
        .unwrap();
    eprintln!(
        "wal-hooks {args:?}: {}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub use walpipe_tests::{ndjson, parse_records as parse};

/// The stderr of a run, as text.
pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A directory for hook scripts and what they write.
pub struct HookDir {
    dir: tempfile::TempDir,
}

impl HookDir {
    pub fn new() -> Self {
        HookDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes an executable script `name` with `body` (after a `#!/bin/sh` line) and
    /// returns its path as a string, ready for `--script`.
    pub fn script(&self, name: &str, body: &str) -> String {
        let path = self.dir.path().join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// The log every [`HookDir::recorder`] appends to.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("seen.log")
    }

    /// A script that appends, per run, a `--- run` line and then every `BARMAN_*` variable
    /// and `WALPIPE_RECORD`, one `NAME=value` line each, sorted; then exits `code`.
    pub fn recorder(&self, code: i32) -> String {
        let log = self.log();
        self.script(
            &format!("record-{code}.sh"),
            &format!(
                "{{ echo '--- run'; env | grep -E '^(BARMAN_[A-Z_]+|WALPIPE_RECORD)=' | LC_ALL=C sort; }} >> '{}'\nexit {code}",
                log.display()
            ),
        )
    }

    /// What the recorders saw: one map of variables per run, in run order.
    pub fn runs(&self) -> Vec<BTreeMap<String, String>> {
        let text = fs::read_to_string(self.log()).unwrap_or_default();
        let mut runs = Vec::new();
        for line in text.lines() {
            if line == "--- run" {
                runs.push(BTreeMap::new());
                continue;
            }
            let (key, value) = line.split_once('=').expect("NAME=value");
            runs.last_mut()
                .expect("a run began")
                .insert(key.to_owned(), value.to_owned());
        }
        runs
    }
}
