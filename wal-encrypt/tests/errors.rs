//! Bad input fails its record, with its kind and a message naming the file, and the
//! stream goes on: a message for another key, no key, a wrong passphrase, a corrupt, a
//! truncated or an unauthenticated message, a file that is no message at all. No
//! plaintext is left behind in a temporary file.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::tempdir;
use wal_core::openpgp;

use crate::args;
use crate::util::{
    Gpg, content_of, dot_files, encrypted_record, ndjson, parse, path_of, record, run_ok, sample,
    segment_name, wal_encrypt, write_file,
};

/// Encrypts `data` to `cert` with wal-encrypt into `dir/<name>` (a stored copy).
fn encrypted_copy(dir: &Path, name: &str, data: &[u8], cert: &Path) -> PathBuf {
    let plain = write_file(dir, &format!("{name}.plain"), data);
    let out = run_ok(
        args!["--recipient", cert.as_os_str()],
        &ndjson([&record(name, &plain)]),
        0,
    );
    let stored = dir.join(name);
    wal_core::durable::move_durably(&path_of(&out[0]), &stored).unwrap();
    fs::remove_file(plain).unwrap();
    stored
}

/// The same message with its SEIPD packet turned into a SED packet: encrypted data
/// without integrity protection.
fn unauthenticated(message: &[u8]) -> Vec<u8> {
    let header = openpgp::parse_header(message).unwrap();
    let openpgp::BodyLength::Full(len) = header.length else {
        panic!("a PKESK has a definite length");
    };
    let end = header.header_len + len as usize;
    let mut sed = message[..end].to_vec();
    sed.extend_from_slice(&[0xc9, 100]);
    sed.extend_from_slice(&sample(99, 100));
    sed
}

/// Runs `wal-encrypt --decrypt --key sec.gpg` on `records`: exit code and records.
fn decrypt(gpg: &Gpg, extra: &[&std::ffi::OsStr], records: &[Value]) -> (i32, Vec<Value>, String) {
    let key = gpg.file("sec.gpg");
    let mut flags = args!["--decrypt", "--key", key.as_os_str()].to_vec();
    flags.extend_from_slice(extra);
    let output = wal_encrypt()
        .args(&flags)
        .write_stdin(ndjson(records))
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        parse(&output.stdout),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A good message, then every kind of bad one, then a good one: the records, in
/// order, for segments 1 to 8.
fn good_and_bad_messages(gpg: &Gpg, dir: &Path, data: &[u8]) -> Vec<Value> {
    let cert = gpg.file("pub.asc");
    let good = |n: u32| encrypted_copy(dir, &segment_name(n), data, &cert);
    let good1 = good(1);
    let wrong_key = encrypted_copy(dir, &segment_name(2), data, &gpg.file("other.asc"));
    let corrupt = good(3);
    let mut bytes = fs::read(&corrupt).unwrap();
    // Late in the literal data: most of the plaintext is out before the MDC says no.
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    fs::write(&corrupt, bytes).unwrap();
    let truncated = good(4);
    let bytes = fs::read(&truncated).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let sed = write_file(
        dir,
        &segment_name(5),
        &unauthenticated(&fs::read(&good1).unwrap()),
    );
    let not_a_message = write_file(dir, &segment_name(6), &sample(32, 5000));
    let missing = dir.join(segment_name(7));
    let good2 = good(8);
    [
        &good1,
        &wrong_key,
        &corrupt,
        &truncated,
        &sed,
        &not_a_message,
        &missing,
        &good2,
    ]
    .iter()
    .zip(1..)
    .map(|(path, n)| encrypted_record(&segment_name(n), path))
    .collect()
}

#[test]
fn every_bad_message_fails_alone_and_leaves_nothing_behind() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let data = sample(31, 1_000_000);
    let records = good_and_bad_messages(&gpg, dir.path(), &data);
    let names: Vec<String> = (1..=8).map(segment_name).collect();
    let (code, out, stderr) = decrypt(&gpg, args!["--jobs", "3"], &records);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(out.len(), 8);
    let kinds: Vec<&Value> = out.iter().map(|r| &r["error"]["kind"]).collect();
    assert_eq!(
        kinds,
        [
            &Value::Null,
            &Value::from("usage"),
            &Value::from("corrupt"),
            &Value::from("corrupt"),
            &Value::from("corrupt"),
            &Value::from("corrupt"),
            &Value::from("not_found"),
            &Value::Null,
        ]
    );
    let message = |i: usize| out[i]["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message(1).contains("cannot decrypt: it is encrypted to key"),
        "{}",
        message(1)
    );
    assert!(message(1).contains("sec.gpg holds"), "{}", message(1));
    assert!(message(2).contains("MDC does not match"), "{}", message(2));
    assert!(message(3).contains("truncated"), "{}", message(3));
    assert!(
        message(4).contains("not integrity protected"),
        "{}",
        message(4)
    );
    assert!(
        message(5).contains("not an encrypted OpenPGP message"),
        "{}",
        message(5)
    );
    assert!(message(6).starts_with("cannot open"), "{}", message(6));
    for i in 1..=6 {
        assert!(
            message(i).contains(dir.path().to_str().unwrap()),
            "{}",
            message(i)
        );
        assert_eq!(
            out[i]["path"], records[i]["path"],
            "failed records keep their file"
        );
        assert_eq!(out[i]["encryption"], "gpg");
        assert_eq!(out[i]["error"]["stage"], "wal-encrypt");
    }
    // One stderr line per failure, each naming the stage.
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("wal-encrypt: "))
            .count(),
        6,
        "{stderr}"
    );
    for i in [0, 7] {
        assert!(content_of(&out[i]) == data);
    }
    // No plaintext of the failures: only the two good copies are there.
    assert_eq!(
        dot_files(dir.path()),
        [
            format!(".{}.decrypted", names[0]),
            format!(".{}.decrypted", names[7])
        ]
    );
}

#[test]
fn no_key_and_wrong_passphrases_fail_with_usage() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let data = sample(33, 10_000);
    let to_key = encrypted_copy(dir.path(), &segment_name(1), &data, &gpg.file("pub.gpg"));
    let passphrase = write_file(dir.path(), "pw", b"right\n");
    let plain = write_file(dir.path(), "plain", &data);
    let symmetric = dir.path().join(segment_name(2));
    gpg.symmetric(&plain, &symmetric, "right", &[]);
    let wrong = write_file(dir.path(), "wrong", b"wrong\n");
    // A passphrase but no key, for a message to a key.
    let out = run_ok(
        args!["--decrypt", "--passphrase-file", passphrase.as_os_str()],
        &ndjson([&encrypted_record(&segment_name(1), &to_key)]),
        1,
    );
    assert_eq!(out[0]["error"]["kind"], "usage");
    let message = out[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("no --key was given"), "{message}");
    // A key but no passphrase, then a wrong one, for a symmetric message.
    for (extra, expected) in [
        (&[][..], "none was given"),
        (
            args!["--passphrase-file", wrong.as_os_str()],
            "wrong passphrase",
        ),
    ] {
        let (code, out, _) = decrypt(
            &gpg,
            extra,
            &[encrypted_record(&segment_name(2), &symmetric)],
        );
        assert_eq!(code, 1);
        assert_eq!(out[0]["error"]["kind"], "usage");
        let message = out[0]["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message}");
    }
    assert!(
        dot_files(dir.path()).is_empty(),
        "{:?}",
        dot_files(dir.path())
    );
}

#[test]
fn a_record_that_says_gpg_over_plain_bytes_is_corrupt_but_null_passes() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let plain = write_file(dir.path(), &name, &sample(34, 3000));
    let (code, out, _) = decrypt(
        &gpg,
        &[],
        &[encrypted_record(&name, &plain), record(&name, &plain)],
    );
    assert_eq!(code, 1);
    assert_eq!(out[0]["error"]["kind"], "corrupt");
    // Not encrypted, and not said to be: passes through untouched.
    assert_eq!(out[1], record(&name, &plain));
}
