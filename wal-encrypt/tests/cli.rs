//! The command line: exit codes of help, version, bad flags and unusable keys; the
//! environment standing in for flags.

use std::fs;

use predicates::prelude::*;
use tempfile::tempdir;

use crate::util::{
    Gpg, content_of, ndjson, parse, path_of, record, sample, segment_name, wal_encrypt, write_file,
};

#[test]
fn help_and_version_exit_0_on_stdout() {
    wal_encrypt()
        .arg("--help")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Usage: wal-encrypt"))
        .stdout(predicate::str::contains("WALPIPE_RECIPIENT"))
        .stdout(predicate::str::contains("WALPIPE_PASSPHRASE_COMMAND"));
    wal_encrypt()
        .arg("--version")
        .assert()
        .code(0)
        .stdout(predicate::str::starts_with("wal-encrypt "));
}

/// Issue 11: clap shows a variable's value in the help by default; a passphrase command
/// may hold the passphrase.
#[test]
fn help_never_shows_the_passphrase_command() {
    wal_encrypt()
        .arg("--help")
        .env("WALPIPE_PASSPHRASE_COMMAND", "echo s3cret")
        .env("WALPIPE_KEY", "shown.gpg")
        .assert()
        .code(0)
        .stdout(predicate::str::contains("s3cret").not())
        .stdout(predicate::str::contains("shown.gpg"));
}

#[test]
fn bad_flags_exit_64_not_2() {
    for args in [
        &[][..],
        &["--decrypt"],
        &["--recipient", "c", "--jobs", "many"],
        &["--no-such-flag"],
        &["--recipient", "c", "extra-argument"],
        &["--passphrase-file", "f", "--passphrase-command", "echo x"],
        &["--passphrase-command", " "],
        &["--recipient", ""],
    ] {
        wal_encrypt()
            .args(args)
            .write_stdin("")
            .assert()
            .code(64)
            .stdout("")
            .stderr(predicate::str::contains("wal-encrypt").or(predicate::str::contains("error:")));
    }
}

#[test]
fn unusable_keys_fail_every_record_and_say_why_once() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let file = write_file(dir.path(), &name, b"wal");
    let input = ndjson([&record(&name, &file)]);
    let junk = write_file(
        dir.path(),
        "junk.asc",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnope\n",
    );
    for (args, code, says) in [
        (
            vec!["--recipient".into(), dir.path().join("missing.asc")],
            66,
            "cannot read certificate",
        ),
        (
            vec!["--recipient".into(), junk.clone()],
            64,
            "not an OpenPGP certificate",
        ),
        (
            vec!["--recipient".into(), gpg.file("expired.gpg")],
            64,
            "expired",
        ),
        (
            vec!["--decrypt".into(), "--key".into(), gpg.file("pub.asc")],
            64,
            "holds no secret key",
        ),
        (
            vec!["--decrypt".into(), "--key".into(), dir.path().join("nope")],
            66,
            "cannot read secret key",
        ),
        (
            vec!["--passphrase-file".into(), dir.path().join("nope")],
            64,
            "cannot read passphrase file",
        ),
    ] {
        // Each record is passed on failed (kind `config`: a stage set up wrong), so the
        // last stage of the pipeline decides; the cause is said once.
        wal_encrypt()
            .args(&args)
            .write_stdin(input.clone())
            .assert()
            .code(code)
            .stdout(
                predicate::str::contains(r#""kind":"config""#)
                    .and(predicate::str::contains("\n").count(1)),
            )
            .stderr(predicate::str::contains(says).and(predicate::str::contains("\n").count(1)));
    }
    assert!(!dir.path().join(format!(".{name}.gpg")).exists());
}

/// A stage that cannot start passes the records on, failed with kind `config`.
#[test]
fn a_missing_temp_dir_fails_every_record_with_73() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let file = write_file(dir.path(), &segment_name(1), b"wal");
    wal_encrypt()
        .arg("--recipient")
        .arg(gpg.file("pub.asc"))
        .arg("--temp-dir")
        .arg(dir.path().join("nope"))
        .write_stdin(ndjson([&record(&segment_name(1), &file)]))
        .assert()
        .code(73)
        .stdout(predicate::str::contains(r#""kind":"config""#))
        .stderr(predicate::str::contains("nope").and(predicate::str::contains("\n").count(1)));
}

#[test]
fn the_environment_stands_in_for_flags() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let temps = dir.path().join("temps");
    fs::create_dir(&temps).unwrap();
    let name = segment_name(1);
    let data = sample(41, 40_000);
    let file = write_file(dir.path(), &name, &data);
    // Two recipients in one variable, comma-separated.
    let recipients = format!(
        "{},{}",
        gpg.file("pub.asc").display(),
        gpg.file("other.asc").display()
    );
    let output = wal_encrypt()
        .env("WALPIPE_RECIPIENT", recipients)
        .env("WALPIPE_JOBS", "2")
        .env("WALPIPE_TEMP_DIR", &temps)
        // Wrappers export one set of variables: the key is ignored when encrypting.
        .env("WALPIPE_KEY", gpg.file("sec.gpg"))
        .write_stdin(ndjson([&record(&name, &file)]))
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = parse(&output.stdout);
    let encrypted = path_of(&out[0]);
    // WALPIPE_TEMP_DIR is the temp dir: a copy there has a name no other run makes.
    assert_eq!(encrypted.parent(), Some(temps.as_path()));
    assert!(
        encrypted.extension() == Some(std::ffi::OsStr::new("gpg"))
            && encrypted != temps.join(format!(".{name}.gpg")),
        "{}",
        encrypted.display()
    );
    assert!(gpg.decrypt(&encrypted) == data);
    // Decrypting with the other key, its passphrase command from the environment too
    // (the key needs none: the command is never run).
    let mut copy = out[0].clone();
    copy["source"] = serde_json::Value::Null;
    let output = wal_encrypt()
        .env("WALPIPE_RECIPIENT", "ignored-when-decrypting")
        .env("WALPIPE_KEY", gpg.file("other-sec.gpg"))
        .env("WALPIPE_PASSPHRASE_COMMAND", "exit 1")
        .env("WALPIPE_TEMP_DIR", &temps)
        .arg("--decrypt")
        .write_stdin(ndjson([&copy]))
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = parse(&output.stdout);
    let decrypted = path_of(&out[0]);
    assert_eq!(decrypted.parent(), Some(temps.as_path()));
    assert!(
        decrypted.to_str().unwrap().ends_with(".decrypted"),
        "{}",
        decrypted.display()
    );
    assert!(content_of(&out[0]) == data);
    // A flag beats its variable.
    let output = wal_encrypt()
        .env("WALPIPE_RECIPIENT", dir.path().join("missing.asc"))
        .arg("--recipient")
        .arg(gpg.file("pub.gpg"))
        .write_stdin(ndjson([&record(&name, &file)]))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
}
