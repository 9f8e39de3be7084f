//! `wal-store rebuild-xlogdb`: the catalogue rebuilt equals the one archiving wrote.

use std::fs;

use crate::common::*;

#[test]
fn a_rebuilt_catalogue_equals_the_written_one() {
    let home = Home::new();
    let raw = home.queue_file(SEG1, 1);
    let zst = home.queue_file(SEG2, 2);
    let hist = home.queue_file("00000002.history", 3);
    put(
        &home,
        &[],
        &[record_for(&raw), compressed_record(&zst), record_for(&hist)],
    );
    let written = home.xlogdb_text();
    fs::remove_file(home.xlogdb()).unwrap();
    let out = wal_store()
        .args(["rebuild-xlogdb", "--server", "pg", "--archive"])
        .arg(home.wals())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("history: 1, backup_labels: 0, wal_file: 2"),
        "{stderr}"
    );
    let mut a: Vec<&str> = written.lines().collect();
    let rebuilt = home.xlogdb_text();
    let mut b: Vec<&str> = rebuilt.lines().collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
}
