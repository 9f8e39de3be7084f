//! A throwaway key pair made by the real GnuPG, and the real `gpg` to open what walpipe
//! encrypted with it.
//!
//! Encrypted archives must interoperate with the gpg a human (or Barman) would use, so a
//! test never trusts walpipe's own OpenPGP code to check its output: [`Gpg`] makes the
//! key pair with `gpg --quick-gen-key`, exports it as the files walpipe takes
//! (`--recipient CERT`, `--key KEY`), and decrypts with `gpg --decrypt`. Needs GnuPG 2.2+
//! (`scripts/install-test-deps`).

use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

use crate::pg::run_with_stdin;

/// The algorithms of an RSA key pair: primary key, encryption subkey.
const RSA: [&str; 2] = ["rsa3072", "rsa3072"];

/// The algorithms of an elliptic-curve key pair: primary key, encryption subkey.
const ECC: [&str; 2] = ["ed25519", "cv25519"];

/// Options of every `gpg` call: unattended, the key trusted as it is, and passphrases
/// given through loopback (no pinentry in a test).
const COMMON_ARGS: [&str; 7] = [
    "--batch",
    "--no-tty",
    "--quiet",
    "--trust-model",
    "always",
    "--pinentry-mode",
    "loopback",
];

/// A GnuPG home (mode 0700) holding a fresh key pair without a passphrase, exported as
/// [`Gpg::cert`] and [`Gpg::key`]; the home's gpg-agent is stopped on drop.
///
/// The key is RSA (3072 bits, as GnuPG 2.2 makes by default) unless made by [`Gpg::ecc`]: Barman
/// recognises an encrypted WAL file by what `file` says of it, and `file` names only
/// messages to RSA keys.
///
/// The exported files are mode 0644: PostgreSQL runs `restore_command` (and so
/// `restore-wal --key`) as the `postgres` user, which must be able to read the key.
#[derive(Debug)]
pub struct Gpg {
    /// Where the home and the exported files are.
    dir: PathBuf,
    /// The temporary directory behind `dir`, if the kit made it (removed after the agent
    /// is stopped: fields drop after [`Drop::drop`]).
    _temp: Option<TempDir>,
}

impl Gpg {
    /// The e-mail address of the key's user ID (for `--recipient`).
    pub const EMAIL: &str = "t@test.invalid";

    /// A key pair in a fresh temporary directory, removed on drop.
    ///
    /// # Panics
    /// When the directory cannot be made or gpg fails.
    #[must_use]
    pub fn new() -> Self {
        let temp = tempfile::tempdir().expect("cannot create a temporary directory");
        Self::make(temp.path().to_path_buf(), Some(temp), RSA)
    }

    /// An elliptic-curve key pair (Ed25519, with a Cv25519 encryption subkey: GnuPG 2.4's
    /// default) in a fresh temporary directory, removed on drop.
    ///
    /// # Panics
    /// When the directory cannot be made or gpg fails.
    #[must_use]
    pub fn ecc() -> Self {
        let temp = tempfile::tempdir().expect("cannot create a temporary directory");
        Self::make(temp.path().to_path_buf(), Some(temp), ECC)
    }

    /// A key pair in `dir` (which must exist, and stays): `dir/gnupg`, `dir/cert.asc` and
    /// `dir/secret.gpg`. Give a [`crate::WorkDir`] for files the `postgres` user reads.
    ///
    /// # Panics
    /// When `dir/gnupg` already exists or gpg fails.
    #[must_use]
    pub fn in_dir(dir: &Path) -> Self {
        Self::make(dir.to_path_buf(), None, RSA)
    }

    /// `primary` signs and certifies, `subkey` encrypts (gpg's algorithm names).
    fn make(dir: PathBuf, temp: Option<TempDir>, [primary, subkey]: [&str; 2]) -> Self {
        let gpg = Gpg { dir, _temp: temp };
        let home = gpg.home();
        fs::create_dir(&home).unwrap_or_else(|e| panic!("cannot create {}: {e}", home.display()));
        fs::set_permissions(&home, Permissions::from_mode(0o700)).unwrap();
        gpg.run(&[
            "--quick-gen-key",
            &format!("Test <{}>", Self::EMAIL),
            primary,
            "sign,cert",
            "never",
        ]);
        let listing = String::from_utf8(gpg.run(&["--with-colons", "--list-keys"])).unwrap();
        let fingerprint = listing
            .lines()
            .find_map(|line| line.strip_prefix("fpr:"))
            .and_then(|fields| fields.split(':').nth(8))
            .expect("gpg lists the new key's fingerprint")
            .to_owned();
        gpg.run(&["--quick-add-key", &fingerprint, subkey, "encr", "never"]);
        let exports = [
            (gpg.cert(), gpg.run(&["--export", "--armor", Self::EMAIL])),
            (gpg.key(), gpg.run(&["--export-secret-keys", Self::EMAIL])),
        ];
        for (path, bytes) in exports {
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        }
        gpg
    }

    /// The GnuPG home (`--homedir`).
    #[must_use]
    pub fn home(&self) -> PathBuf {
        self.dir.join("gnupg")
    }

    /// The public certificate, as `gpg --export --armor` wrote it.
    #[must_use]
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.asc")
    }

    /// The secret key, as `gpg --export-secret-keys` wrote it.
    #[must_use]
    pub fn key(&self) -> PathBuf {
        self.dir.join("secret.gpg")
    }

    /// `gpg ARGS` in this home (stdin empty): its stdout; panics unless it succeeds.
    // Not `must_use`: many calls (key generation, `--encrypt --output`) are for effect.
    #[allow(clippy::must_use_candidate)]
    pub fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .expect("gpg runs (scripts/install-test-deps)");
        checked(args, out)
    }

    /// `gpg --decrypt` of the file at `path`.
    #[must_use]
    pub fn decrypt(&self, path: &Path) -> Vec<u8> {
        self.run(&["--decrypt", path.to_str().unwrap()])
    }

    /// `gpg --decrypt` of a message encrypted with `passphrase` (`gpg --symmetric`'s, or
    /// walpipe's with `--passphrase-file`).
    #[must_use]
    pub fn decrypt_with_passphrase(&self, path: &Path, passphrase: &str) -> Vec<u8> {
        let args = ["--decrypt", path.to_str().unwrap()];
        let out = self
            .command_with_passphrase(passphrase, &args)
            .stdin(Stdio::null())
            .output()
            .expect("gpg runs (scripts/install-test-deps)");
        checked(&args, out)
    }

    /// `gpg --list-packets` of the file at `path` (without decrypting: no passphrase is
    /// given, so a symmetric message shows its session key packet only).
    #[must_use]
    pub fn list_packets(&self, path: &Path) -> String {
        let out = self
            .command_with_passphrase("", &["--list-packets", path.to_str().unwrap()])
            .stdin(Stdio::null())
            .output()
            .expect("gpg runs (scripts/install-test-deps)");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `gpg --decrypt` of `bytes`, fed on stdin.
    #[must_use]
    pub fn decrypt_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let args = ["--decrypt"];
        let out = run_with_stdin(&mut self.command(&args), bytes)
            .expect("gpg runs (scripts/install-test-deps)");
        checked(&args, out)
    }

    /// `gpg --decrypt --output OUTPUT INPUT`, replacing `output`; `Err` with gpg's
    /// message when it fails (a corrupt or truncated file), for tests that report rather
    /// than panic.
    pub fn decrypt_file(&self, input: &Path, output: &Path) -> Result<(), String> {
        let out = self
            .command(&["--yes", "--output"])
            .arg(output)
            .args(["--decrypt"])
            .arg(input)
            .stdin(Stdio::null())
            .output()
            .expect("gpg runs (scripts/install-test-deps)");
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "gpg --decrypt {}: {}",
                input.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Stops this home's gpg-agent (it is started again by the next call that needs it).
    pub fn stop_agent(&self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home())
            .args(["--kill", "gpg-agent"])
            .status();
    }

    /// `gpg` in this home, the key's (empty) passphrase given.
    fn command(&self, args: &[&str]) -> Command {
        self.command_with_passphrase("", args)
    }

    fn command_with_passphrase(&self, passphrase: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir")
            .arg(self.home())
            .args(COMMON_ARGS)
            .args(["--passphrase", passphrase])
            .args(args);
        cmd
    }
}

impl Default for Gpg {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        self.stop_agent();
    }
}

/// `out`'s stdout; panics with its stderr unless gpg succeeded.
fn checked(args: &[&str], out: Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
