//! Barman 3.19 itself reads a local archive that walpipe wrote, on real WAL.
//!
//! A DBA must be able to go back from walpipe to Barman on the same home at any time:
//! `barman get-wal` (what `barman-wal-restore` calls over ssh) must return every segment
//! walpipe archived byte for byte, whatever the compression walpipe chose and also when
//! walpipe encrypted it to the certificate of a key Barman's gpg holds, and `barman
//! rebuild-xlogdb` must find in the archive what walpipe catalogued. The other way,
//! walpipe restoring what Barman archived, is `pitr_from_an_archive_written_by_barman` in
//! tests/tests/restore.rs.
//!
//! Barman comes from the tests' virtualenv (`<cache>/barman-venv`, made on first use from
//! PyPI with `zstandard`, `lz4` and `python-snappy`); it recognises encrypted files by
//! running `file`. walpipe runs as `scripts/archive-wal` with the built binaries (`cargo
//! build --workspace --bins`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use walpipe_tests::venv::{barman_conf, barman_venv};
use walpipe_tests::wrappers::{assert_success, read_xlogdb, run, wrapper};
use walpipe_tests::{Gpg, WorkDir, clean_command, wal_fixture_segments};

const SERVER: &str = "pg";

/// Every compression walpipe writes, and `none`.
const COMPRESSIONS: [&str; 7] = ["none", "gzip", "bzip2", "xz", "zstd", "lz4", "snappy"];

/// A walpipe home, and Barman configured on it.
struct Homes {
    work: WorkDir,
    home: PathBuf,
    conf: PathBuf,
    gpg: Gpg,
}

impl Homes {
    fn new() -> Homes {
        let work = WorkDir::new();
        let home = work.join("home");
        fs::create_dir_all(home.join(SERVER).join("incoming")).unwrap();
        let gpg = Gpg::new();
        let conf = work.join("barman.conf");
        // The key has no passphrase; Barman still wants a command that prints one.
        barman_conf(
            &conf,
            &home,
            &work.join("barman.log"),
            SERVER,
            "conninfo = host=/nonexistent port=5499 user=postgres dbname=postgres\n\
             backup_method = postgres\n\
             archiver = on\n\
             encryption_passphrase_command = echo unused",
        );
        Homes {
            work,
            home,
            conf,
            gpg,
        }
    }

    /// Puts `segment` in the incoming queue and runs archive-wal with `flags`.
    fn archive(&self, segment: &Path, flags: &[&str]) {
        let name = segment.file_name().unwrap();
        fs::copy(segment, self.home.join(SERVER).join("incoming").join(name)).unwrap();
        let archived = run(
            wrapper("archive-wal")
                .arg("--home")
                .arg(&self.home)
                .args(["--server", SERVER])
                .args(flags),
            None,
        );
        assert_eq!(archived.code, 0, "archive-wal {flags:?}: {archived:?}");
        assert!(
            archived.stdout.contains(name.to_str().unwrap()),
            "{archived:?}"
        );
    }

    /// `barman ARGS` on this home, Barman's gpg using the test key's home.
    fn barman(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(barman_venv().join("bin/barman"));
        clean_command(&mut cmd);
        let out = cmd
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .env("GNUPGHOME", self.gpg.home())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_success(&out, &format!("barman {args:?}"));
        out
    }

    fn xlogdb(&self) -> PathBuf {
        self.home
            .join(SERVER)
            .join("wals")
            .join(format!("{SERVER}-xlog.db"))
    }
}

#[test]
fn barman_get_wal_returns_every_segment_walpipe_archived() {
    let homes = Homes::new();
    let segments = wal_fixture_segments();
    assert!(segments.len() > COMPRESSIONS.len(), "WAL fixtures");
    let cert = homes.gpg.cert();
    let cert = cert.to_str().unwrap();
    // One segment per compression, then one compressed and encrypted.
    let mut runs: Vec<(&Path, Vec<&str>)> = COMPRESSIONS
        .iter()
        .zip(&segments)
        .map(|(compression, segment)| (segment.as_path(), vec!["--compression", compression]))
        .collect();
    runs.push((
        &segments[COMPRESSIONS.len()],
        vec!["--compression", "zstd", "--recipient", cert],
    ));
    for (segment, flags) in &runs {
        homes.archive(segment, flags);
    }

    for (segment, flags) in &runs {
        let name = segment.file_name().unwrap().to_str().unwrap();
        let out = homes.barman(&["get-wal", SERVER, name]);
        assert!(
            out.stdout == fs::read(segment).unwrap(),
            "barman get-wal {name} (walpipe {flags:?}): {} bytes, not the segment",
            out.stdout.len()
        );
    }

    // Barman rebuilds the catalogue walpipe wrote, line for line: names, sizes, times,
    // compressions. An encrypted file's compression cannot be seen from outside: Barman
    // (like walpipe's own rebuild) records `gpg` and no compression.
    let written = read_xlogdb(&homes.xlogdb());
    assert_eq!(written.len(), runs.len());
    homes.barman(&["rebuild-xlogdb", SERVER]);
    let rebuilt = read_xlogdb(&homes.xlogdb());
    assert_eq!(rebuilt.len(), written.len());
    for (ours, barmans) in written.iter().zip(&rebuilt) {
        assert_eq!(
            (&ours.name, ours.size, ours.time.to_bits()),
            (&barmans.name, barmans.size, barmans.time.to_bits())
        );
        if ours.encryption.is_some() {
            assert_eq!(ours.encryption.as_deref(), Some("gpg"));
            assert_eq!(barmans.encryption.as_deref(), Some("gpg"), "{barmans:?}");
            assert_eq!(barmans.compression, None);
        } else {
            assert_eq!(
                (&barmans.compression, &barmans.encryption),
                (&ours.compression, &None),
                "{}",
                ours.name
            );
        }
    }
    drop(homes.work);
}
