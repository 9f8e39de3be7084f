//! Helpers shared by the test modules: the hermetic command, records in and out, files,
//! and a real GnuPG with test keys.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};
use tempfile::TempDir;

/// The binary under test, with no `WALPIPE_*`/`PG*` variables inherited.
pub fn wal_encrypt() -> assert_cmd::Command {
    assert_cmd::Command::from_std(stage_command(env!("CARGO_BIN_EXE_wal-encrypt")))
}

/// Deterministic WAL-like bytes.
pub use walpipe_tests::synthetic_segment as sample;

pub use walpipe_tests::stage::{content_of, dot_files, path_of, record, segment_records};
use walpipe_tests::stage::{run_stage, stage_command};
pub use walpipe_tests::{segment_name, write_file};

/// The same record, saying its file is encrypted (as wal-store's listing says it).
pub fn encrypted_record(name: &str, path: &Path) -> Value {
    let mut record = record(name, path);
    record["encryption"] = json!("gpg");
    record
}

/// NDJSON in and out: the shared test kit's.
pub use walpipe_tests::{ndjson, parse_records as parse};

/// Runs `wal-encrypt args...` on `input`, expects exit `code`, returns the records.
pub fn run_ok(args: &[&OsStr], input: &str, code: i32) -> Vec<Value> {
    run_stage(env!("CARGO_BIN_EXE_wal-encrypt"), args, input, code)
}

/// `OsStr` arguments from anything path-like.
#[macro_export]
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        &[$(::std::ffi::OsStr::new($arg)),*]
    };
}

/// The passphrase of the "locked" test key.
pub const LOCKED_PASSPHRASE: &str = "correct horse battery staple";

/// Test keys made once per test binary by a real `gpg --quick-gen-key`, kept as the
/// bytes `gpg --export` and `gpg --export-secret-keys` wrote.
pub struct Keys {
    /// `Test <t@test.invalid>`: `--export --armor`, `--export`, `--export-secret-keys`.
    pub public_armored: Vec<u8>,
    pub public_binary: Vec<u8>,
    pub secret: Vec<u8>,
    /// `Other <o@test.invalid>`: another key pair (for "wrong key").
    pub other_public: Vec<u8>,
    pub other_secret: Vec<u8>,
    /// `Locked <l@test.invalid>`: a secret key protected by [`LOCKED_PASSPHRASE`].
    pub locked_public: Vec<u8>,
    pub locked_secret: Vec<u8>,
    /// `Expired <e@test.invalid>`: expired in 2021.
    pub expired_public: Vec<u8>,
}

/// The test keys (generated on first use, then shared by every test of the binary).
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let home = new_home(dir.path());
        let gpg = |args: &[&str]| run_gpg(&home, args);
        for (uid, passphrase) in [
            ("Test <t@test.invalid>", ""),
            ("Other <o@test.invalid>", ""),
            ("Locked <l@test.invalid>", LOCKED_PASSPHRASE),
        ] {
            gpg(&[
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                passphrase,
                "--quick-gen-key",
                uid,
                "default",
                "default",
                "never",
            ]);
        }
        // "Other" gets a second encryption subkey and a signing subkey.
        let listing =
            String::from_utf8(gpg(&["--with-colons", "--list-keys", "o@test.invalid"])).unwrap();
        let fingerprint = listing
            .lines()
            .find_map(|line| line.strip_prefix("fpr:"))
            .and_then(|rest| rest.split(':').nth(8))
            .expect("a fingerprint")
            .to_string();
        for usage in ["encr", "sign"] {
            gpg(&[
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-add-key",
                &fingerprint,
                "default",
                usage,
                "never",
            ]);
        }
        // "Expired": made in 2020, valid for a year.
        gpg(&[
            "--faked-system-time",
            "20200101T000000",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Expired <e@test.invalid>",
            "default",
            "default",
            "1y",
        ]);
        let secret = |uid: &str, passphrase: &str| {
            gpg(&[
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                passphrase,
                "--export-secret-keys",
                uid,
            ])
        };
        let keys = Keys {
            public_armored: gpg(&["--export", "--armor", "t@test.invalid"]),
            public_binary: gpg(&["--export", "t@test.invalid"]),
            secret: secret("t@test.invalid", ""),
            other_public: gpg(&["--export", "--armor", "o@test.invalid"]),
            other_secret: secret("o@test.invalid", ""),
            locked_public: gpg(&["--export", "l@test.invalid"]),
            locked_secret: secret("l@test.invalid", LOCKED_PASSPHRASE),
            expired_public: gpg(&["--export", "e@test.invalid"]),
        };
        kill_agent(&home);
        keys
    })
}

/// A GNUPGHOME (mode 700) in `dir`.
fn new_home(dir: &Path) -> PathBuf {
    let home = dir.join("gnupg");
    fs::create_dir(&home).unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
    home
}

/// Runs `gpg --homedir HOME --batch args...`; returns stdout, panics when gpg fails.
fn run_gpg(home: &Path, args: &[&str]) -> Vec<u8> {
    let output = gpg_command(home, args)
        .output()
        .expect("gpg runs (scripts/install-test-deps)");
    assert!(
        output.status.success(),
        "gpg {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn gpg_command(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("gpg");
    cmd.arg("--homedir")
        .arg(home)
        .args(["--batch", "--no-tty", "--quiet"])
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// Stops the gpg-agent gpg started for `home` (one per home, left running otherwise).
fn kill_agent(home: &Path) {
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home)
        .args(["--kill", "gpg-agent"])
        .status();
}

/// A test's own GnuPG: a fresh home holding the test key pair (and the public keys of
/// the other two), and the key files for wal-encrypt. The agent is killed on drop.
pub struct Gpg {
    pub dir: TempDir,
    home: PathBuf,
}

impl Gpg {
    pub fn new() -> Gpg {
        let keys = keys();
        let dir = tempfile::tempdir().unwrap();
        let home = new_home(dir.path());
        let gpg = Gpg { dir, home };
        for (name, bytes) in [
            ("pub.asc", &keys.public_armored),
            ("pub.gpg", &keys.public_binary),
            ("sec.gpg", &keys.secret),
            ("other.asc", &keys.other_public),
            ("other-sec.gpg", &keys.other_secret),
            ("locked.gpg", &keys.locked_public),
            ("locked-sec.gpg", &keys.locked_secret),
            ("expired.gpg", &keys.expired_public),
        ] {
            fs::write(gpg.file(name), bytes).unwrap();
        }
        for name in ["sec.gpg", "other.asc", "locked.gpg"] {
            gpg.run(&["--import", gpg.file(name).to_str().unwrap()]);
        }
        gpg
    }

    /// A file in this test's key directory (`pub.asc`, `sec.gpg`, ...).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs gpg in this home; returns stdout, panics when it fails.
    pub fn run(&self, args: &[&str]) -> Vec<u8> {
        run_gpg(&self.home, args)
    }

    /// Runs gpg in this home and returns everything.
    pub fn output(&self, args: &[&str]) -> Output {
        gpg_command(&self.home, args).output().unwrap()
    }

    /// `gpg --decrypt` of `path` with the test key: the plaintext.
    pub fn decrypt(&self, path: &Path) -> Vec<u8> {
        self.run(&[
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--decrypt",
            path.to_str().unwrap(),
        ])
    }

    /// `gpg --encrypt` of `input` to the test key into `output`, Barman's way unless
    /// `extra` says otherwise (extra flags go first, so they can override).
    pub fn encrypt(&self, input: &Path, output: &Path, extra: &[&str]) {
        let mut args = vec!["--yes", "--trust-model", "always"];
        args.extend_from_slice(extra);
        args.extend([
            "--recipient",
            "t@test.invalid",
            "--output",
            output.to_str().unwrap(),
            "--encrypt",
            input.to_str().unwrap(),
        ]);
        self.run(&args);
    }

    /// `gpg --symmetric` of `input` under `passphrase` into `output`.
    pub fn symmetric(&self, input: &Path, output: &Path, passphrase: &str, extra: &[&str]) {
        let mut args = vec![
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            passphrase,
        ];
        args.extend_from_slice(extra);
        args.extend([
            "--output",
            output.to_str().unwrap(),
            "--symmetric",
            input.to_str().unwrap(),
        ]);
        self.run(&args);
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        kill_agent(&self.home);
    }
}
