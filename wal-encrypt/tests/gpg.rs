//! Interoperability with a real GnuPG, both ways: gpg decrypts what we write byte for
//! byte, and we decrypt what gpg writes (Barman's `--compress-level 0`, gpg's default zlib
//! compression, `--symmetric`, `--armor`), with plain and passphrase-protected keys.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use tempfile::tempdir;

use crate::args;
use crate::util::{
    Gpg, LOCKED_PASSPHRASE, content_of, dot_files, encrypted_record, ndjson, path_of, record,
    run_ok, sample, segment_name, wal_encrypt, write_file,
};

/// What `gpg --list-packets` says about `path`.
fn packets(gpg: &Gpg, path: &std::path::Path) -> String {
    let output = gpg.output(&[
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--list-packets",
        path.to_str().unwrap(),
    ]);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn gpg_decrypts_what_we_encrypt_byte_for_byte() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    for (n, (size, cert)) in [
        (0, "pub.asc"),
        (1, "pub.gpg"),
        (8_384, "pub.asc"),
        (262_145, "pub.gpg"),
        (3 * 1024 * 1024 + 7, "pub.asc"),
    ]
    .into_iter()
    .enumerate()
    {
        let name = segment_name(n as u32);
        let data = sample(n as u64, size);
        let source = write_file(dir.path(), &name, &data);
        let out = run_ok(
            args!["--recipient", gpg.file(cert).as_os_str()],
            &ndjson([&record(&name, &source)]),
            0,
        );
        let encrypted = path_of(&out[0]);
        assert_eq!(encrypted, dir.path().join(format!(".{name}.gpg")));
        assert_eq!(out[0]["encryption"], "gpg");
        assert_eq!(out[0]["temps"][0], encrypted.to_str().unwrap());
        assert_eq!(out[0]["source"], source.to_str().unwrap());
        let meta = fs::metadata(&encrypted).unwrap();
        assert_eq!(out[0]["size"], meta.len());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(gpg.decrypt(&encrypted) == data, "size {size}");
        assert_eq!(fs::read(&source).unwrap(), data, "the source is untouched");
        // Barman's format: SEIPD with MDC, a literal packet, no compression inside.
        let listing = packets(&gpg, &encrypted);
        assert!(
            listing.contains(":pubkey enc packet: version 3"),
            "{listing}"
        );
        assert!(listing.contains("mdc_method: 2"), "{listing}");
        assert!(listing.contains(":literal data packet:"), "{listing}");
        assert!(!listing.contains("compressed packet"), "{listing}");
    }
}

#[test]
fn a_real_wal_segment_goes_both_ways() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let segment = &walpipe_tests::wal_fixture_segments()[0];
    let data = fs::read(segment).unwrap();
    let name = segment.file_name().unwrap().to_str().unwrap();
    let source = write_file(dir.path(), name, &data);
    let out = run_ok(
        args!["--recipient", gpg.file("pub.asc").as_os_str()],
        &ndjson([&record(name, &source)]),
        0,
    );
    assert!(gpg.decrypt(&path_of(&out[0])) == data);
    let theirs = dir.path().join("theirs.gpg");
    gpg.encrypt(&source, &theirs, &["--compress-level", "0"]);
    let out = run_ok(
        args!["--decrypt", "--key", gpg.file("sec.gpg").as_os_str()],
        &ndjson([&encrypted_record(name, &theirs)]),
        0,
    );
    assert!(content_of(&out[0]) == data);
    assert_eq!(out[0]["size"], data.len());
}

#[test]
fn several_recipients_and_subkeys_can_each_decrypt() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let data = sample(21, 100_000);
    let source = write_file(dir.path(), &name, &data);
    let out = run_ok(
        args![
            "--recipient",
            gpg.file("pub.gpg").as_os_str(),
            "--recipient",
            gpg.file("other.asc").as_os_str()
        ],
        &ndjson([&record(&name, &source)]),
        0,
    );
    let encrypted = path_of(&out[0]);
    // "Other" has two encryption subkeys and a signing subkey: one PKESK per encryption
    // key, none for the signing key.
    let listing = packets(&gpg, &encrypted);
    assert_eq!(
        listing.matches(":pubkey enc packet:").count(),
        3,
        "{listing}"
    );
    assert!(gpg.decrypt(&encrypted) == data);
    let copy = encrypted_record(&name, &encrypted);
    for key in ["sec.gpg", "other-sec.gpg"] {
        let out = run_ok(
            args!["--decrypt", "--key", gpg.file(key).as_os_str()],
            &ndjson([&copy]),
            0,
        );
        assert!(content_of(&out[0]) == data, "{key}");
        fs::remove_file(path_of(&out[0])).unwrap();
    }
}

#[test]
fn we_decrypt_gpg_output_compressed_or_not() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let data = sample(22, 700_000);
    let plain = write_file(dir.path(), "plain", &data);
    for (n, extra) in [
        // Barman's command line, then gpg's defaults (zlib), then bzip2 and armour.
        &["--compress-level", "0"][..],
        &[],
        &["--compress-algo", "bzip2"],
        &["--armor"],
    ]
    .into_iter()
    .enumerate()
    {
        let name = segment_name(n as u32);
        let message = dir.path().join(&name);
        gpg.encrypt(&plain, &message, extra);
        let listing = packets(&gpg, &message);
        assert_eq!(
            listing.contains("compressed packet"),
            extra != ["--compress-level", "0"],
            "{extra:?}: {listing}"
        );
        // `encryption: null`, as an archive listing that does not say: the first packet does.
        let out = run_ok(
            args!["--decrypt", "--key", gpg.file("sec.gpg").as_os_str()],
            &ndjson([&record(&name, &message)]),
            0,
        );
        assert_eq!(out[0]["encryption"], serde_json::Value::Null, "{extra:?}");
        assert!(content_of(&out[0]) == data, "{extra:?}");
    }
}

#[test]
fn symmetric_messages_go_both_ways() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let data = sample(23, 300_000);
    let plain = write_file(dir.path(), "plain", &data);
    let passphrase = write_file(dir.path(), "passphrase", b"walpipe test passphrase\n");
    // gpg --symmetric, with and without compression, read with either passphrase source.
    for (n, extra) in [&["--compress-level", "0"][..], &[]]
        .into_iter()
        .enumerate()
    {
        let name = segment_name(n as u32);
        let message = dir.path().join(&name);
        gpg.symmetric(&plain, &message, "walpipe test passphrase", extra);
        for source in [
            args!["--passphrase-file", passphrase.as_os_str()],
            args!["--passphrase-command", "echo '  walpipe test passphrase '"],
        ] {
            let mut flags = vec![std::ffi::OsStr::new("--decrypt")];
            flags.extend_from_slice(source);
            let out = run_ok(&flags, &ndjson([&encrypted_record(&name, &message)]), 0);
            assert!(content_of(&out[0]) == data, "{extra:?} {source:?}");
            fs::remove_file(path_of(&out[0])).unwrap();
        }
    }
    // Ours, read by gpg.
    let name = segment_name(9);
    let source = write_file(dir.path(), &name, &data);
    let out = run_ok(
        args!["--passphrase-file", passphrase.as_os_str()],
        &ndjson([&record(&name, &source)]),
        0,
    );
    let ours = path_of(&out[0]);
    let listing = packets(&gpg, &ours);
    assert!(
        listing.contains(":symkey enc packet: version 4"),
        "{listing}"
    );
    let decrypted = gpg.run(&[
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "walpipe test passphrase",
        "--decrypt",
        ours.to_str().unwrap(),
    ]);
    assert!(decrypted == data);
}

#[test]
fn a_protected_secret_key_is_unlocked_with_its_passphrase() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let data = sample(24, 50_000);
    let source = write_file(dir.path(), &name, &data);
    let out = run_ok(
        args!["--recipient", gpg.file("locked.gpg").as_os_str()],
        &ndjson([&record(&name, &source)]),
        0,
    );
    let copy = ndjson([&encrypted_record(&name, &path_of(&out[0]))]);
    let key = gpg.file("locked-sec.gpg");
    let command = format!("printf '%s\\n' '{LOCKED_PASSPHRASE}'");
    let out = run_ok(
        args![
            "--decrypt",
            "--key",
            key.as_os_str(),
            "--passphrase-command",
            &command
        ],
        &copy,
        0,
    );
    assert!(content_of(&out[0]) == data);
    fs::remove_file(path_of(&out[0])).unwrap();
    // Without the passphrase, or with a wrong one: the record fails, nothing is left.
    for (extra, expected) in [
        (&[][..], "protected by a passphrase"),
        (
            args!["--passphrase-command", "echo nope"],
            "wrong passphrase",
        ),
    ] {
        let mut flags = args!["--decrypt", "--key", key.as_os_str()].to_vec();
        flags.extend_from_slice(extra);
        let output = wal_encrypt()
            .args(&flags)
            .write_stdin(copy.clone())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let records = crate::util::parse(&output.stdout);
        assert_eq!(records[0]["error"]["kind"], "usage");
        let message = records[0]["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message}");
        assert_eq!(dot_files(dir.path()), [format!(".{name}.gpg")]);
    }
}
