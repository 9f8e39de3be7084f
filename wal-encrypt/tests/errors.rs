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

/// Runs `wal-encrypt --decrypt --key sec.gpg` with `envs` set: exit code, records, stderr.
fn decrypt_with_env(
    gpg: &Gpg,
    envs: &[(&str, &std::ffi::OsStr)],
    extra: &[&std::ffi::OsStr],
    records: &[Value],
) -> (i32, Vec<Value>, String) {
    let key = gpg.file("sec.gpg");
    let mut cmd = wal_encrypt();
    cmd.args(args!["--decrypt", "--key", key.as_os_str()])
        .args(extra);
    for (name, value) in envs {
        cmd.env(name, value);
    }
    let output = cmd.write_stdin(ndjson(records)).output().unwrap();
    (
        output.status.code().unwrap(),
        parse(&output.stdout),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Variables and extra flags for one run of [`decrypt_with_env`].
type Setting<'a> = (
    &'a [(&'a str, &'a std::ffi::OsStr)],
    &'a [&'a std::ffi::OsStr],
);

/// Issue 11: a restore given a key takes an encrypted archive's integrity for granted, so
/// a plain file is refused (`corrupt`), unless --allow-unencrypted (a migration from an
/// unencrypted archive) or --allow-unencrypted-in its directory (the queues).
#[test]
fn a_plain_file_is_refused_unless_unencrypted_files_are_allowed() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let plain = write_file(dir.path(), &name, &sample(34, 3000));
    let refused = "not encrypted; --allow-unencrypted to accept plaintext (migration from an \
                   unencrypted archive)";

    let (code, out, stderr) = decrypt(&gpg, &[], &[record(&name, &plain)]);
    assert_eq!(code, 1);
    assert_eq!(out[0]["error"]["kind"], "corrupt");
    let message = out[0]["error"]["message"].as_str().unwrap();
    assert_eq!(message, format!("{}: {refused}", plain.display()));
    assert_eq!(
        stderr,
        format!("wal-encrypt: {message}\n"),
        "one line naming the file"
    );

    // Allowed, by flag or variable: passes through untouched.
    let unchanged = record(&name, &plain);
    let allowed: [Setting; 5] = [
        (&[][..], &args!["--allow-unencrypted"][..]),
        (
            &[("WALPIPE_ALLOW_UNENCRYPTED", std::ffi::OsStr::new("1"))][..],
            &[][..],
        ),
        (
            &[("WALPIPE_ALLOW_UNENCRYPTED", std::ffi::OsStr::new("yes"))][..],
            &[][..],
        ),
        (&[][..], &args!["--allow-unencrypted-in", dir.path()][..]),
        (
            &[("WALPIPE_ALLOW_UNENCRYPTED_IN", dir.path().as_os_str())][..],
            &[][..],
        ),
    ];
    for (envs, extra) in allowed {
        let (code, out, stderr) =
            decrypt_with_env(&gpg, envs, extra, std::slice::from_ref(&unchanged));
        assert_eq!(
            (code, &out[..]),
            (0, std::slice::from_ref(&unchanged)),
            "{envs:?} {extra:?}: {stderr}"
        );
    }
    // A switched-off variable, or a directory that is not the file's: refused.
    let elsewhere = tempdir().unwrap();
    let relative = dir
        .path()
        .join("..")
        .join(dir.path().file_name().unwrap())
        .join("sub");
    fs::create_dir(&relative).unwrap();
    let refused: [Setting; 3] = [
        (
            &[("WALPIPE_ALLOW_UNENCRYPTED", std::ffi::OsStr::new("0"))][..],
            &[][..],
        ),
        (
            &[][..],
            &args!["--allow-unencrypted-in", elsewhere.path()][..],
        ),
        (&[][..], &args!["--allow-unencrypted-in", &relative][..]),
    ];
    for (envs, extra) in refused {
        let (code, out, _) = decrypt_with_env(&gpg, envs, extra, std::slice::from_ref(&unchanged));
        assert_eq!(code, 1, "{envs:?} {extra:?}");
        assert_eq!(out[0]["error"]["kind"], "corrupt");
    }
    // The directory is compared as the filesystem sees it, not as spelt.
    let spelt = dir.path().join("sub").join("..");
    let (code, _, stderr) = decrypt_with_env(
        &gpg,
        &[],
        args!["--allow-unencrypted-in", &spelt],
        std::slice::from_ref(&unchanged),
    );
    assert_eq!(code, 0, "{stderr}");

    // A record that says gpg over plain bytes: corrupt, allowed or not (the file is not
    // what its catalogue says).
    let (code, out, _) = decrypt(
        &gpg,
        args!["--allow-unencrypted"],
        &[encrypted_record(&name, &plain)],
    );
    assert_eq!(code, 1);
    assert_eq!(out[0]["error"]["kind"], "corrupt");
    let message = out[0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("not an encrypted OpenPGP message"),
        "{message}"
    );
    assert_eq!(dot_files(dir.path()), Vec::<String>::new());
}

/// A literal data packet (new format) holding `data`: what `gpg --store` writes.
fn literal_packet(data: &[u8]) -> Vec<u8> {
    let mut body = vec![b'b', 0, 0, 0, 0, 0];
    body.extend_from_slice(data);
    let mut packet = vec![0xcb];
    wal_encrypt_length(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    packet
}

/// A new-format definite length.
fn wal_encrypt_length(len: usize, out: &mut Vec<u8>) {
    match len {
        0..=191 => out.push(len as u8),
        192..=8383 => {
            out.push((((len - 192) >> 8) + 192) as u8);
            out.push((len - 192) as u8);
        }
        _ => {
            out.push(0xff);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
}

/// Issue 11: an OpenPGP message that was never encrypted (`gpg --store`, signed only,
/// compressed only; armoured or binary) is refused as corrupt, whatever the flags: its
/// literal data would otherwise pass for a decrypted WAL, and anyone who can write to
/// the archive can make one without the key or passphrase.
#[test]
fn unencrypted_openpgp_messages_are_refused_as_corrupt() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let data = sample(35, 20_000);
    let plain = write_file(dir.path(), "plain", &data);
    let passphrase = write_file(dir.path(), "pw", b"walpipe test passphrase\n");
    let by_gpg = |n: u32, how: &[&str]| {
        let out = dir.path().join(segment_name(n));
        let mut args = vec![
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--local-user",
            "t@test.invalid",
            "--output",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(how);
        args.push(plain.to_str().unwrap());
        gpg.run(&args);
        out
    };
    let literal = literal_packet(&data);
    let mut compressed = vec![0xc8];
    wal_encrypt_length(literal.len() + 1, &mut compressed);
    compressed.push(0); // algorithm 0: stored
    compressed.extend_from_slice(&literal);
    let mut marked = b"\xca\x03PGP".to_vec();
    marked.extend_from_slice(&literal);
    let messages = [
        by_gpg(1, &["--store", "--armor"]),
        by_gpg(2, &["--store"]),
        by_gpg(3, &["--sign"]),
        by_gpg(4, &["--sign", "--armor"]),
        by_gpg(5, &["--clearsign"]),
        by_gpg(6, &["--sign", "--compress-level", "0"]),
        write_file(dir.path(), &segment_name(7), &literal),
        write_file(dir.path(), &segment_name(8), &compressed),
        write_file(dir.path(), &segment_name(9), &marked),
    ];
    let records: Vec<Value> = messages
        .iter()
        .zip(1..)
        .flat_map(|(path, n)| {
            [
                record(&segment_name(n), path),
                encrypted_record(&segment_name(n), path),
            ]
        })
        .collect();
    for extra in [
        &[][..],
        args![
            "--allow-unencrypted",
            "--passphrase-file",
            passphrase.as_os_str()
        ],
    ] {
        let (code, out, stderr) = decrypt(&gpg, extra, &records);
        assert_eq!(code, 1, "{stderr}");
        assert_eq!(out.len(), records.len());
        for (record, path) in out.iter().zip(messages.iter().flat_map(|p| [p, p])) {
            assert_eq!(
                record["error"]["kind"],
                "corrupt",
                "{}: {record}",
                path.display()
            );
            let message = record["error"]["message"].as_str().unwrap();
            assert!(message.starts_with(path.to_str().unwrap()), "{message}");
            assert!(message.contains("not encrypted"), "{message}");
            assert!(!message.contains("--allow-unencrypted"), "{message}");
        }
        assert_eq!(
            dot_files(dir.path()),
            Vec::<String>::new(),
            "no plaintext left"
        );
    }
}

/// Where the encrypted data of `message` starts: after the session key packets, the SEIPD
/// packet's header and its version octet.
fn seipd_body(message: &[u8]) -> usize {
    let mut at = 0;
    loop {
        let header = openpgp::parse_header(&message[at..]).unwrap();
        if header.tag == openpgp::TAG_SEIPD {
            assert_eq!(message[at + header.header_len], 1, "SEIPD version 1");
            return at + header.header_len + 1;
        }
        let openpgp::BodyLength::Full(len) = header.length else {
            panic!("session key packets have definite lengths");
        };
        at += header.header_len + len as usize;
    }
}

/// `message` with `byte` of its encrypted data flipped, ASCII-armoured when `armor`.
fn flipped(message: &[u8], byte: usize, armor: bool) -> Vec<u8> {
    let mut bad = message.to_vec();
    bad[seipd_body(message) + byte] ^= 0x40;
    if !armor {
        return bad;
    }
    let mut writer =
        sequoia_openpgp::armor::Writer::new(Vec::new(), sequoia_openpgp::armor::Kind::Message)
            .unwrap();
    std::io::Write::write_all(&mut writer, &bad).unwrap();
    writer.finalize().unwrap()
}

/// Issue 11: with a session key that a secret key decrypted (its checksum verified), a
/// change in the first 18 bytes of the encrypted data (where OpenPGP's quick check looks)
/// is corrupt data, never a wrong key: else a corrupt stored copy fails every re-delivery
/// as a usage error. Ours and gpg's, through our OpenSSL path and sequoia's (armour,
/// Twofish, gpg's compression).
#[test]
fn a_change_in_the_first_18_bytes_is_corrupt_not_a_wrong_key() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let data = sample(36, 50_000);
    let ours = encrypted_copy(dir.path(), "ours", &data, &gpg.file("pub.asc"));
    let plain = write_file(dir.path(), "plain", &data);
    let theirs = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        gpg.encrypt(&plain, &out, extra);
        fs::read(out).unwrap()
    };
    let messages = [
        ("ours", fs::read(&ours).unwrap(), false),
        ("ours armoured", fs::read(&ours).unwrap(), true),
        ("gpg", theirs("gpg", &["--compress-level", "0"]), false),
        ("gpg zlib", theirs("zlib", &[]), false),
        (
            "gpg twofish",
            theirs(
                "twofish",
                &["--cipher-algo", "TWOFISH", "--compress-level", "0"],
            ),
            false,
        ),
    ];
    let mut records = Vec::new();
    let mut what = Vec::new();
    for (label, message, armor) in &messages {
        for byte in 0..18 {
            let name = segment_name(records.len() as u32 + 1);
            let path = write_file(dir.path(), &name, &flipped(message, byte, *armor));
            records.push(record(&name, &path));
            what.push(format!("{label}, byte {byte}"));
        }
    }
    let (code, out, stderr) = decrypt(&gpg, &[], &records);
    assert_eq!(code, 1, "{stderr}");
    for (record, what) in out.iter().zip(&what) {
        assert_eq!(record["error"]["kind"], "corrupt", "{what}: {record}");
    }
    assert!(
        !stderr.contains("cannot decrypt: it is encrypted to"),
        "{stderr}"
    );
    assert_eq!(dot_files(dir.path()), Vec::<String>::new());
}

/// With a passphrase nothing tells a wrong passphrase from a corrupt first block (the
/// module doc of decrypt.rs): both are reported as a wrong passphrase that may be
/// corruption (`usage`). Past the quick check's 18 bytes, a change is corrupt.
#[test]
fn with_a_passphrase_only_the_first_block_is_ambiguous() {
    let dir = tempdir().unwrap();
    let data = sample(37, 50_000);
    let passphrase = write_file(dir.path(), "pw", b"walpipe test passphrase\n");
    let source = write_file(dir.path(), "plain", &data);
    let out = run_ok(
        args!["--passphrase-file", passphrase.as_os_str()],
        &ndjson([&record("plain", &source)]),
        0,
    );
    let message = fs::read(path_of(&out[0])).unwrap();
    fs::remove_file(path_of(&out[0])).unwrap();
    let records: Vec<Value> = [0, 17, 18, 1000]
        .iter()
        .zip(1..)
        .map(|(byte, n)| {
            let path = write_file(
                dir.path(),
                &segment_name(n),
                &flipped(&message, *byte, false),
            );
            record(&segment_name(n), &path)
        })
        .collect();
    let out = run_ok(
        args!["--decrypt", "--passphrase-file", passphrase.as_os_str()],
        &ndjson(&records),
        1,
    );
    let kinds: Vec<&Value> = out.iter().map(|r| &r["error"]["kind"]).collect();
    assert_eq!(kinds, ["usage", "usage", "corrupt", "corrupt"]);
    let message = out[0]["error"]["message"].as_str().unwrap();
    assert!(
        message
            .contains("wrong passphrase (or the first 18 bytes of the encrypted data are corrupt"),
        "{message}"
    );
}

/// Issue 11: a passphrase command may hold the passphrase (`echo ...`): no message quotes
/// it, whether it fails, prints nothing or prints a wrong passphrase.
#[test]
fn no_message_quotes_a_passphrase_command() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let plain = write_file(dir.path(), "plain", &sample(38, 1000));
    let symmetric = dir.path().join(segment_name(1));
    gpg.symmetric(&plain, &symmetric, "right", &[]);
    let input = ndjson([&record(&segment_name(1), &symmetric)]);
    for (command, encrypts) in [
        ("exit 3 # s3cret-in-the-command", true),
        ("true # s3cret-in-the-command", true),
        // A wrong passphrase (encrypting with it would work).
        ("echo s3cret-in-the-command", false),
    ] {
        let encrypt: &[&std::ffi::OsStr] = args!["--passphrase-command", command];
        let decrypt: &[&std::ffi::OsStr] = args!["--decrypt", "--passphrase-command", command];
        for flags in if encrypts {
            vec![decrypt, encrypt]
        } else {
            vec![decrypt]
        } {
            let output = wal_encrypt()
                .args(flags)
                .write_stdin(input.clone())
                .output()
                .unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert_ne!(output.status.code(), Some(0), "{command}: {all}");
            assert!(all.contains("passphrase"), "{command}: {all}");
            assert!(!all.contains("s3cret"), "{command}: {all}");
        }
    }
}
