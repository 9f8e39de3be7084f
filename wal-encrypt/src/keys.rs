//! Keys and passphrases: certificate files in, the keys to encrypt to or decrypt with out.
//!
//! Barman names a key by its id in gpg's keyring (`encryption_key_id`); walpipe never
//! needs a keyring or an agent, so it takes the files `gpg --export [--armor] KEYID` and
//! `gpg --export-secret-keys` write. Certificates are checked once, before any record:
//! a recipient whose certificate is expired, revoked or has no encryption-capable key is
//! a configuration error, not a per-record one. Passphrases are read when first needed
//! and kept for the run, as Barman caches `encryption_passphrase_command`'s output.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::KeyID;
use openpgp::cert::CertParser;
use openpgp::crypto::mem::Protected;
use openpgp::crypto::{Decryptor, Password, SessionKey, mpi};
use openpgp::packet::key::SecretKeyMaterial;
use openpgp::packet::{Key, key};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::types::RevocationStatus;
use openssl::bn::{BigNum, BigNumContext};
use openssl::pkey::Private;
use openssl::rsa::{Padding, Rsa, RsaPrivateKeyBuilder};
use wal_core::WalError;
use wal_core::error::IoContext;

use crate::config::Passphrase;

/// A public key to encrypt a session key to.
pub type PublicKey = Key<key::PublicParts, key::UnspecifiedRole>;

/// A secret key to decrypt session keys with.
pub type SecretKey = Key<key::SecretParts, key::UnspecifiedRole>;

/// Reads every certificate in `path` (armoured or binary, one or several).
fn read_certs(path: &Path, what: &'static str) -> Result<Vec<Cert>, WalError> {
    let bytes = fs::read(path).context(what, path)?;
    let mut certs = Vec::new();
    for cert in CertParser::from_bytes(&bytes).map_err(|e| not_openpgp(path, &e))? {
        certs.push(cert.map_err(|e| not_openpgp(path, &e))?);
    }
    if certs.is_empty() {
        return Err(WalError::Usage(format!(
            "{}: holds no OpenPGP certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn not_openpgp(path: &Path, err: &impl std::fmt::Display) -> WalError {
    WalError::Usage(format!(
        "{}: not an OpenPGP certificate: {err}",
        path.display()
    ))
}

/// The keys to encrypt to: every valid, unexpired, unrevoked encryption-capable key of
/// every certificate in `paths` (gpg's choice among a certificate's subkeys may differ,
/// but any of them can decrypt).
pub fn load_recipients(paths: &[PathBuf]) -> Result<Vec<PublicKey>, WalError> {
    let policy = StandardPolicy::new();
    let mut keys = Vec::new();
    for path in paths {
        for cert in read_certs(path, "cannot read certificate")? {
            let unusable = |why: String| {
                WalError::Usage(format!(
                    "{}: certificate {}: {why}",
                    path.display(),
                    cert.fingerprint()
                ))
            };
            let valid = cert
                .with_policy(&policy, None)
                .map_err(|e| unusable(format!("not valid: {e}")))?;
            if let RevocationStatus::Revoked(_) = valid.revocation_status() {
                return Err(unusable("revoked".into()));
            }
            valid
                .alive()
                .map_err(|e| unusable(format!("not alive: {e}")))?;
            let found: Vec<PublicKey> = valid
                .keys()
                .supported()
                .alive()
                .revoked(false)
                .for_storage_encryption()
                .for_transport_encryption()
                .map(|ka| ka.key().clone().role_into_unspecified())
                .collect();
            if found.is_empty() {
                return Err(unusable(
                    "no valid encryption-capable key (expired, revoked or signing-only)".into(),
                ));
            }
            // A certificate given twice (or in two files) gets one packet per key.
            for key in found {
                if !keys
                    .iter()
                    .any(|k: &PublicKey| k.fingerprint() == key.fingerprint())
                {
                    keys.push(key);
                }
            }
        }
    }
    Ok(keys)
}

/// The secret keys of a key file, unlocked on first use.
#[derive(Debug)]
pub struct SecretKeys {
    path: PathBuf,
    keys: Vec<SecretKey>,
    unlocked: OnceLock<Result<Vec<Unlocked>, String>>,
}

impl SecretKeys {
    /// Reads the secret keys in `path`; a file without any is a usage error.
    pub fn load(path: &Path) -> Result<Self, WalError> {
        let mut keys = Vec::new();
        for cert in read_certs(path, "cannot read secret key")? {
            keys.extend(
                cert.keys()
                    .secret()
                    .map(|ka| ka.key().clone().role_into_unspecified()),
            );
        }
        if keys.is_empty() {
            return Err(WalError::Usage(format!(
                "{}: holds no secret key (export it with `gpg --export-secret-keys`)",
                path.display()
            )));
        }
        Ok(SecretKeys {
            path: path.to_path_buf(),
            keys,
            unlocked: OnceLock::new(),
        })
    }

    /// The key ids of the keys in the file.
    pub fn key_ids(&self) -> Vec<KeyID> {
        self.keys.iter().map(Key::keyid).collect()
    }

    /// The file they came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keys ready for use; those protected by a passphrase are unlocked with
    /// `passphrase` (asked for only when some key needs it).
    pub fn unlocked(
        &self,
        passphrase: impl FnOnce() -> Result<Option<Password>, String>,
    ) -> Result<&[Unlocked], String> {
        self.unlocked
            .get_or_init(|| {
                self.unlock(passphrase)
                    .map(|keys| keys.into_iter().map(Unlocked::new).collect())
            })
            .as_deref()
            .map_err(Clone::clone)
    }

    fn unlock(
        &self,
        passphrase: impl FnOnce() -> Result<Option<Password>, String>,
    ) -> Result<Vec<SecretKey>, String> {
        let (mut ready, locked): (Vec<SecretKey>, Vec<SecretKey>) = self
            .keys
            .iter()
            .cloned()
            .partition(Key::has_unencrypted_secret);
        if locked.is_empty() {
            return Ok(ready);
        }
        let Some(password) = passphrase()? else {
            if ready.is_empty() {
                return Err(format!(
                    "{}: the secret key is protected by a passphrase: give \
                     --passphrase-file or --passphrase-command",
                    self.path.display()
                ));
            }
            return Ok(ready);
        };
        // Keys that do not unlock (gpg's secret-less stubs, another passphrase) are left out.
        ready.extend(
            locked
                .into_iter()
                .filter_map(|key| key.decrypt_secret(&password).ok()),
        );
        if ready.is_empty() {
            return Err(format!(
                "{}: wrong passphrase for the secret key",
                self.path.display()
            ));
        }
        Ok(ready)
    }
}

/// An unlocked secret key, ready to open session keys.
///
/// RSA keys are prepared once with their CRT parameters: sequoia's OpenSSL backend
/// rebuilds the key from `n`, `e`, `d`, `p`, `q` alone for every decryption, so OpenSSL
/// exponentiates with the full `d`, about four times the work (some 10 ms per message
/// for RSA-3072, the default of `gpg --quick-gen-key`). Other algorithms go through
/// sequoia's key pair.
pub struct Unlocked {
    key: SecretKey,
    rsa: Option<Rsa<Private>>,
}

impl std::fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlocked")
            .field("key", &self.key.keyid())
            .field("rsa_crt", &self.rsa.is_some())
            .finish()
    }
}

impl Unlocked {
    fn new(key: SecretKey) -> Self {
        let rsa = rsa_with_crt(&key);
        Unlocked { key, rsa }
    }

    /// The key's handle, to match a PKESK's recipient.
    pub fn key_handle(&self) -> openpgp::KeyHandle {
        self.key.key_handle()
    }

    /// Something sequoia can open a PKESK packet with.
    pub fn decryptor(&self) -> openpgp::Result<Box<dyn Decryptor + '_>> {
        Ok(match &self.rsa {
            Some(rsa) => Box::new(RsaDecryptor {
                public: self.key.parts_as_public(),
                rsa,
            }),
            None => Box::new(self.key.clone().into_keypair()?),
        })
    }
}

/// The OpenSSL RSA key of `key`, CRT parameters included; `None` for other keys.
#[allow(clippy::many_single_char_names)] // RSA's own names (RFC 8017): n, e, d, p, q.
fn rsa_with_crt(key: &SecretKey) -> Option<Rsa<Private>> {
    let mpi::PublicKey::RSA { e, n } = key.mpis() else {
        return None;
    };
    let SecretKeyMaterial::Unencrypted(secret) = key.secret() else {
        return None;
    };
    secret.map(|mpis| {
        let mpi::SecretKeyMaterial::RSA { d, p, q, .. } = mpis else {
            return None;
        };
        let number = |bytes: &[u8]| BigNum::from_slice(bytes).ok();
        let (n, e, d) = (number(n.value())?, number(e.value())?, number(d.value())?);
        let (p, q) = (number(p.value())?, number(q.value())?);
        let mut context = BigNumContext::new().ok()?;
        let one = BigNum::from_u32(1).ok()?;
        let reduced = |prime: &BigNum, context: &mut BigNumContext| {
            let mut minus_one = BigNum::new().ok()?;
            minus_one.checked_sub(prime, &one).ok()?;
            let mut exponent = BigNum::new().ok()?;
            exponent.nnmod(&d, &minus_one, context).ok()?;
            Some(exponent)
        };
        let dmp1 = reduced(&p, &mut context)?;
        let dmq1 = reduced(&q, &mut context)?;
        let mut iqmp = BigNum::new().ok()?;
        iqmp.mod_inverse(&q, &p, &mut context).ok()?;
        RsaPrivateKeyBuilder::new(n, e, d)
            .ok()?
            .set_factors(p, q)
            .ok()?
            .set_crt_params(dmp1, dmq1, iqmp)
            .ok()
            .map(RsaPrivateKeyBuilder::build)
    })
}

/// RSA session key decryption (PKCS #1 v1.5) with a prepared OpenSSL key; sequoia
/// checks what comes out (algorithm octet, checksum) as for its own key pairs.
struct RsaDecryptor<'a> {
    public: &'a Key<key::PublicParts, key::UnspecifiedRole>,
    rsa: &'a Rsa<Private>,
}

impl Decryptor for RsaDecryptor<'_> {
    fn public(&self) -> &Key<key::PublicParts, key::UnspecifiedRole> {
        self.public
    }

    fn decrypt(
        &mut self,
        ciphertext: &mpi::Ciphertext,
        _plaintext_len: Option<usize>,
    ) -> openpgp::Result<SessionKey> {
        let mpi::Ciphertext::RSA { c } = ciphertext else {
            return Err(openpgp::Error::InvalidArgument("not an RSA ciphertext".into()).into());
        };
        let mut plain: Protected = vec![0u8; self.rsa.size() as usize].into();
        let len = self
            .rsa
            .private_decrypt(c.value(), &mut plain, Padding::PKCS1)?;
        Ok(SessionKey::from(&plain[..len]))
    }
}

/// A passphrase read once, when first needed.
#[derive(Debug)]
pub struct LazyPassphrase {
    source: Option<Passphrase>,
    value: OnceLock<Result<Option<Password>, String>>,
}

impl LazyPassphrase {
    /// A passphrase from `source` (none when `None`).
    pub fn new(source: Option<Passphrase>) -> Self {
        LazyPassphrase {
            source,
            value: OnceLock::new(),
        }
    }

    /// The passphrase, read on the first call.
    pub fn get(&self) -> Result<Option<Password>, String> {
        self.value
            .get_or_init(|| self.source.as_ref().map(read_passphrase).transpose())
            .clone()
    }
}

/// Reads a passphrase: the first line of a file (as `gpg --passphrase-file`), or the
/// output of a shell command with surrounding white space removed (as Barman's
/// `encryption_passphrase_command`). An empty passphrase is an error.
///
/// Messages name a file but never quote a command: a command may carry the passphrase
/// itself (`echo …`, `printf …`), and the messages end up in logs and records.
pub fn read_passphrase(source: &Passphrase) -> Result<Password, String> {
    let (bytes, origin) = match source {
        Passphrase::File(path) => {
            let bytes = fs::read(path)
                .map_err(|e| format!("cannot read passphrase file {}: {e}", path.display()))?;
            let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line).to_vec();
            (line, format!("passphrase file {}", path.display()))
        }
        Passphrase::Command(command) => (
            run_passphrase_command(command)?,
            "the passphrase command".to_string(),
        ),
    };
    if bytes.is_empty() {
        return Err(format!("{origin}: empty passphrase"));
    }
    Ok(Password::from(bytes))
}

/// The variable that carries a passphrase command to the shell that runs it.
const COMMAND_VARIABLE: &str = "WALPIPE_PASSPHRASE_COMMAND";

/// The shell's script: take the command from the environment, drop it from what the
/// command's own children inherit, run it. `sh -c COMMAND` (Barman's way) would put the
/// command in the shell's argv, which every local user reads in `/proc/PID/cmdline`; the
/// environment is readable by the same user only.
const RUN_COMMAND_FROM_ENV: &str = "walpipe_passphrase_command=$WALPIPE_PASSPHRASE_COMMAND; \
     unset WALPIPE_PASSPHRASE_COMMAND; eval \"$walpipe_passphrase_command\"";

/// Runs `command` with `sh`; its stdout, trimmed. Its stderr is the terminal's or the
/// caller's log, as PostgreSQL passes on `archive_command`'s: the command's own
/// diagnostics (a vault that refused) are what a human needs.
fn run_passphrase_command(command: &str) -> Result<Vec<u8>, String> {
    let output = Command::new("sh")
        .arg("-c")
        .arg(RUN_COMMAND_FROM_ENV)
        .env(COMMAND_VARIABLE, command)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e: io::Error| format!("cannot run the passphrase command: sh: {e}"))?;
    if !output.status.success() {
        return Err(format!("the passphrase command failed: {}", output.status));
    }
    Ok(output.stdout.trim_ascii().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passphrase_files_give_their_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        fs::write(&path, b" secret words \r\nsecond line\n").unwrap();
        let password = read_passphrase(&Passphrase::File(path.clone())).unwrap();
        password.map(|p| assert_eq!(&p[..], b" secret words "));
        fs::write(&path, b"\nsecond line\n").unwrap();
        let err = read_passphrase(&Passphrase::File(path)).unwrap_err();
        assert!(err.ends_with("empty passphrase"), "{err}");
        let err = read_passphrase(&Passphrase::File(dir.path().join("missing"))).unwrap_err();
        assert!(err.starts_with("cannot read passphrase file"), "{err}");
    }

    #[test]
    fn passphrase_commands_are_trimmed_and_checked() {
        let password = read_passphrase(&Passphrase::Command("printf '  pw \\n'".into())).unwrap();
        password.map(|p| assert_eq!(&p[..], b"pw"));
        let err = read_passphrase(&Passphrase::Command("exit 3 # s3cret".into())).unwrap_err();
        assert_eq!(err, "the passphrase command failed: exit status: 3");
        let err = read_passphrase(&Passphrase::Command("true # s3cret".into())).unwrap_err();
        assert_eq!(err, "the passphrase command: empty passphrase");
    }

    #[test]
    fn a_passphrase_command_runs_as_sh_would_run_it_but_not_from_argv() {
        // Quotes, variables, pipes and a compound command, as `sh -c` takes them.
        let command = "x='a b'; printf '%s|' \"$x\" | tr '|' '-'; echo \"$0\"";
        let password = read_passphrase(&Passphrase::Command(command.into())).unwrap();
        password.map(|p| assert_eq!(&p[..], b"a b-sh"));
        // The command sees neither itself in the environment nor in its shell's argv.
        let command = "tr '\\0' ' ' </proc/$$/cmdline; env | grep -c ^WALPIPE_PASSPHRASE_COMMAND= \
                       || true";
        let password = read_passphrase(&Passphrase::Command(command.into())).unwrap();
        password.map(|p| {
            let seen = String::from_utf8_lossy(p).into_owned();
            assert!(!seen.contains("cmdline"), "{seen}");
            assert!(seen.ends_with('0'), "{seen}");
        });
    }

    #[test]
    fn a_lazy_passphrase_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        fs::write(&path, b"one\n").unwrap();
        let lazy = LazyPassphrase::new(Some(Passphrase::File(path.clone())));
        assert!(lazy.get().unwrap().is_some());
        fs::remove_file(&path).unwrap();
        assert!(lazy.get().unwrap().is_some(), "not read again");
        assert!(LazyPassphrase::new(None).get().unwrap().is_none());
    }

    #[test]
    fn a_certificate_given_twice_gets_one_packet_per_key() {
        use sequoia_openpgp::cert::CertBuilder;
        use sequoia_openpgp::serialize::Serialize;
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = CertBuilder::new()
            .add_transport_encryption_subkey()
            .generate()
            .unwrap();
        let path = dir.path().join("cert.pgp");
        let mut bytes = Vec::new();
        cert.serialize(&mut bytes).unwrap();
        fs::write(&path, &bytes).unwrap();
        let once = load_recipients(std::slice::from_ref(&path)).unwrap();
        let twice = load_recipients(&[path.clone(), path]).unwrap();
        assert_eq!(once.len(), 1);
        assert_eq!(twice.len(), 1);
    }

    #[test]
    fn files_without_certificates_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.asc");
        fs::write(&path, b"this is not a key\n").unwrap();
        let err = load_recipients(std::slice::from_ref(&path)).unwrap_err();
        assert_eq!(err.kind(), wal_core::ErrorKind::Usage);
        let err = load_recipients(&[dir.path().join("missing")]).unwrap_err();
        assert_eq!(err.kind(), wal_core::ErrorKind::NotFound);
        assert!(
            err.to_string().starts_with("cannot read certificate"),
            "{err}"
        );
    }
}
