//! `--decompress`: reads what the CLIs and Barman write, finds the format by its magic
//! when the record does not say, and refuses damaged streams without leaving files behind.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};
use tempfile::tempdir;
use wal_core::Compression;

use crate::util::{
    cli_of, content_of, dot_files, ndjson, path_of, record, run_cli, run_ok, sample, segment_name,
    wal_compress, write_file,
};

#[test]
fn files_written_by_the_clis_are_found_by_their_magic() {
    let dir = tempdir().unwrap();
    let data = sample(21, 250_000);
    let plain = write_file(dir.path(), "plain", &data);
    let plain = plain.to_str().unwrap();
    let mut records = Vec::new();
    let mut algorithms = Vec::new();
    for (n, algorithm) in Compression::ALL.into_iter().enumerate() {
        let Some(cli) = cli_of(algorithm) else {
            continue;
        };
        let stream = match algorithm {
            Compression::Zstd => run_cli(cli, &["-q", "-c", "-19", plain]),
            Compression::Gzip => run_cli(cli, &["-c", "-n", plain]),
            _ => run_cli(cli, &["-c", plain]),
        };
        let name = segment_name(n as u32 + 1);
        // compression null: the record does not say (an archive listing, a restored copy).
        records.push(record(&name, &write_file(dir.path(), &name, &stream)));
        algorithms.push(algorithm);
    }
    let out = run_ok(&["--decompress"], &ndjson(&records), 0);
    assert_eq!(out.len(), records.len());
    for ((output, input), algorithm) in out.iter().zip(&records).zip(algorithms) {
        let name = input["name"].as_str().unwrap();
        let temp = dir.path().join(format!(".{name}.decompressed"));
        assert_eq!(path_of(output), temp, "{algorithm}");
        assert!(content_of(output) == data, "{algorithm} decoded");
        assert_eq!(output["compression"], Value::Null);
        assert_eq!(output["size"], data.len());
        assert_eq!(output["temps"], json!([temp]));
        assert_eq!(output["source"], input["source"]);
    }
}

#[test]
fn concatenated_cli_streams_are_read_to_the_end() {
    let dir = tempdir().unwrap();
    let first = sample(22, 10_000);
    let second = sample(23, 10_000);
    let a = write_file(dir.path(), "a", &first);
    let b = write_file(dir.path(), "b", &second);
    let mut stream = run_cli("gzip", &["-c", a.to_str().unwrap()]);
    stream.extend(run_cli("gzip", &["-c", b.to_str().unwrap()]));
    let name = segment_name(1);
    let mut rec = record(&name, &write_file(dir.path(), &name, &stream));
    rec["compression"] = json!("gzip");
    let out = run_ok(&["--decompress"], &ndjson([&rec]), 0);
    assert_eq!(content_of(&out[0]), [first, second].concat());
}

#[test]
fn uncompressed_and_encrypted_records_pass_unchanged() {
    let dir = tempdir().unwrap();
    let plain_name = segment_name(1);
    // A WAL page starts with its magic (0xD110 for PostgreSQL 15), never a codec's.
    let mut wal = vec![0x10, 0xd1, 0x06, 0x00];
    wal.extend(sample(24, 8188));
    let plain = record(&plain_name, &write_file(dir.path(), &plain_name, &wal));
    let encrypted_name = segment_name(2);
    let mut encrypted = record(
        &encrypted_name,
        &write_file(dir.path(), &encrypted_name, b"\x85\x01\x0c ciphertext"),
    );
    encrypted["compression"] = json!("zstd");
    encrypted["encryption"] = json!("gpg");
    let empty_name = "00000003.history";
    let empty = record(empty_name, &write_file(dir.path(), empty_name, b""));
    let records = [plain, encrypted, empty];
    let out = run_ok(&["--decompress"], &ndjson(&records), 0);
    assert_eq!(out, records);
    assert!(dot_files(dir.path()).is_empty());
}

/// Compresses `data` as `name` in `dir` with our own encoder; returns the record.
fn compressed_record(dir: &Path, algorithm: Compression, name: &str, data: &[u8]) -> Value {
    let file = write_file(dir, &format!("{name}.plain"), data);
    let out = run_ok(
        &[
            "--algorithm",
            algorithm.name(),
            "--temp-dir",
            dir.to_str().unwrap(),
        ],
        &ndjson([&record(name, &file)]),
        0,
    );
    let stream = content_of(&out[0]);
    fs::remove_file(path_of(&out[0])).unwrap();
    fs::remove_file(file).unwrap();
    let mut rec = record(name, &write_file(dir, name, &stream));
    rec["compression"] = json!(algorithm.name());
    rec
}

/// Runs `--decompress` on `rec` and checks that it fails as corrupt, naming the file,
/// leaving no temporary file, while the next record is still done.
fn assert_corrupt(dir: &Path, rec: &Value, what: &str) {
    let good_name = "00000009.history";
    let good = record(good_name, &write_file(dir, good_name, b"not compressed"));
    let output = wal_compress()
        .arg("--decompress")
        .write_stdin(ndjson([rec, &good]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{what}: {stderr}");
    let out = crate::util::parse(&output.stdout);
    assert_eq!(out.len(), 2, "{what}: the stream goes on");
    let error = &out[0]["error"];
    assert_eq!(error["kind"], "corrupt", "{what}: {error}");
    assert_eq!(error["stage"], "wal-compress");
    let path = rec["path"].as_str().unwrap();
    assert!(
        error["message"].as_str().unwrap().contains(path),
        "{what}: {error}"
    );
    assert!(stderr.contains(path), "{what}: {stderr}");
    assert_eq!(
        out[0]["path"], rec["path"],
        "{what}: the record still points at the file"
    );
    assert_eq!(out[1], good);
    assert!(
        dot_files(dir).is_empty(),
        "{what}: left {:?}",
        dot_files(dir)
    );
}

#[test]
fn truncated_streams_are_corrupt_and_leave_nothing() {
    let data = sample(25, 200_000);
    for algorithm in Compression::ALL {
        for percent in [50, 99] {
            let dir = tempdir().unwrap();
            let name = segment_name(1);
            let rec = compressed_record(dir.path(), algorithm, &name, &data);
            let path = path_of(&rec);
            let stream = fs::read(&path).unwrap();
            let cut = stream.len() * percent / 100;
            fs::write(&path, &stream[..cut]).unwrap();
            assert_corrupt(dir.path(), &rec, &format!("{algorithm} cut at {cut}"));
        }
    }
}

#[test]
fn damaged_streams_are_corrupt_and_leave_nothing() {
    let data = sample(26, 200_000);
    for algorithm in Compression::ALL {
        let dir = tempdir().unwrap();
        let name = segment_name(1);
        let rec = compressed_record(dir.path(), algorithm, &name, &data);
        let path = path_of(&rec);
        let mut stream = fs::read(&path).unwrap();
        let middle = stream.len() / 2;
        for byte in &mut stream[middle..middle + 16] {
            *byte ^= 0x5a;
        }
        fs::write(&path, &stream).unwrap();
        assert_corrupt(dir.path(), &rec, &format!("{algorithm} damaged"));
    }
}

#[test]
fn a_record_claiming_a_format_its_file_is_not_in_is_corrupt() {
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let mut rec = record(&name, &write_file(dir.path(), &name, &sample(27, 5000)));
    rec["compression"] = json!("bzip2");
    assert_corrupt(dir.path(), &rec, "plain file said to be bzip2");
    let empty = segment_name(2);
    let mut rec = record(&empty, &write_file(dir.path(), &empty, b""));
    rec["compression"] = json!("snappy");
    assert_corrupt(dir.path(), &rec, "empty file said to be snappy");
}

#[test]
fn a_snappy_segment_cut_between_chunks_is_corrupt() {
    // The snappy framing format has no end marker: only the size tells a cut segment.
    let dir = tempdir().unwrap();
    let name = segment_name(1);
    let rec = compressed_record(dir.path(), Compression::Snappy, &name, &sample(28, 1 << 20));
    let path = path_of(&rec);
    let stream = fs::read(&path).unwrap();
    // Stream identifier (10 bytes), then chunks of 1 type byte + 3 length bytes + data.
    let mut end = 10;
    for _ in 0..3 {
        let len = usize::from(stream[end + 1])
            | usize::from(stream[end + 2]) << 8
            | usize::from(stream[end + 3]) << 16;
        end += 4 + len;
    }
    fs::write(&path, &stream[..end]).unwrap();
    assert_corrupt(dir.path(), &rec, "snappy segment cut after three chunks");
}
