//! decrypt ∘ encrypt = id, in-process through the library's `run`, over sizes around
//! every boundary of the format (the random prefix, partial body chunks of 256 KiB, the
//! two-octet length forms) and several contents; memory stays flat with file size.

use std::fs;
use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use tempfile::tempdir;
use wal_encrypt::{Config, Passphrase, run};

use crate::util::{Gpg, ndjson, parse, record, sample, segment_name, segment_records, write_file};

const SIZES: [usize; 14] = [
    0, 1, 17, 18, 19, 191, 192, 8_383, 8_384, 262_143, 262_144, 262_145, 524_288, 1_000_003,
];

fn run_in_process(config: &Config, records: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    let summary = run(config, Cursor::new(ndjson(records)), &mut out).unwrap();
    assert_eq!(summary.failed, 0, "{}", String::from_utf8_lossy(&out));
    parse(&out)
}

fn round_trip(encrypt: &Config, decrypt: &Config, seed: u64) {
    let dir = tempdir().unwrap();
    let originals: Vec<Vec<u8>> = SIZES
        .iter()
        .enumerate()
        .map(|(n, &size)| sample(seed + n as u64, size))
        .collect();
    let records = segment_records(dir.path(), &originals);
    let encrypted = run_in_process(encrypt, &records);
    let decrypted = run_in_process(decrypt, &encrypted);
    for ((data, before), after) in originals.iter().zip(&encrypted).zip(&decrypted) {
        let size = data.len();
        assert_eq!(before["encryption"], "gpg", "{size}");
        assert!(before["size"].as_u64().unwrap() > size as u64, "{size}");
        let path = after["path"].as_str().unwrap();
        assert!(fs::read(path).unwrap() == *data, "size {size}, seed {seed}");
        assert_eq!(after["size"], size);
    }
}

#[test]
fn decrypt_undoes_encrypt_with_keys() {
    let gpg = Gpg::new();
    let encrypt = Config::encrypt_to(vec![gpg.file("pub.asc")]).with_jobs(2);
    let decrypt = Config::decrypt(Some(gpg.file("sec.gpg")), None).with_jobs(3);
    for seed in [1, 1000, 77_777] {
        round_trip(&encrypt, &decrypt, seed);
    }
}

#[test]
fn decrypt_undoes_encrypt_with_a_passphrase() {
    let dir = tempdir().unwrap();
    let file = write_file(dir.path(), "pw", b"s3cret\n");
    let encrypt = Config::encrypt_with(Passphrase::File(file.clone()));
    let decrypt = Config::decrypt(None, Some(Passphrase::Command("echo s3cret".into())));
    round_trip(&encrypt, &decrypt, 5);
}

/// Peak resident memory (KiB) of `wal-encrypt args` on one record for `path`.
fn peak_kib(args: &[&std::ffi::OsStr], name: &str, path: &Path, dir: &Path) -> u64 {
    let report = dir.join("time.out");
    let mut cmd = Command::new("/usr/bin/time");
    walpipe_tests::clean_command(&mut cmd);
    let status = cmd
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_wal-encrypt"))
        .args(args)
        .stdin(
            fs::File::open(write_file(
                dir,
                "in.json",
                ndjson([&record(name, path)]).as_bytes(),
            ))
            .unwrap(),
        )
        .stdout(std::process::Stdio::null())
        .status()
        .expect("GNU time (/usr/bin/time) runs");
    assert!(status.success());
    fs::read_to_string(&report).unwrap().trim().parse().unwrap()
}

#[test]
fn memory_stays_flat_with_file_size() {
    let gpg = Gpg::new();
    let dir = tempdir().unwrap();
    let small = write_file(dir.path(), &segment_name(1), &sample(61, 1 << 20));
    let large = write_file(dir.path(), &segment_name(2), &sample(62, 64 << 20));
    let cert = gpg.file("pub.asc");
    let key = gpg.file("sec.gpg");
    let encrypt = crate::args!["--recipient", cert.as_os_str(), "--jobs", "1"];
    let decrypt = crate::args!["--decrypt", "--key", key.as_os_str(), "--jobs", "1"];
    let peaks: Vec<u64> = [(&small, 1), (&large, 2)]
        .iter()
        .map(|(path, n)| {
            let name = segment_name(*n);
            let encrypted_peak = peak_kib(encrypt, &name, path, dir.path());
            let encrypted = dir.path().join(format!(".{name}.gpg"));
            let decrypted_peak = peak_kib(decrypt, &name, &encrypted, dir.path());
            // gpg's zlib-compressed output goes through sequoia: flat too.
            let theirs = dir.path().join(format!("{name}.zlib.gpg"));
            gpg.encrypt(path, &theirs, &["--compress-level", "1"]);
            let sequoia_peak = peak_kib(decrypt, &name, &theirs, dir.path());
            encrypted_peak.max(decrypted_peak).max(sequoia_peak)
        })
        .collect();
    // 64 times the data, well under 8 MiB more memory.
    assert!(peaks[1] < peaks[0] + 8 * 1024, "peak RSS {peaks:?} KiB");
}
