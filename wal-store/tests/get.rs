//! `wal-store get`: an archived file, copied out as stored.

use std::fs;

use crate::common::*;

#[test]
fn copies_out_as_stored_with_its_compression() {
    let home = Home::new();
    let src = home.queue_file(SEG1, 1);
    put(&home, &[], &[compressed_record(&src)]);
    let to = home.dir.path().join("restored");
    let out = wal_store()
        .args(["get", "--server", "pg", "--archive"])
        .arg(home.wals())
        .args([SEG1, "--to"])
        .arg(&to)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = &parse(&out.stdout)[0];
    assert_eq!(record["compression"], "zstd");
    assert_eq!(record["outcome"], "fetched");
    assert_eq!(
        fs::read(&to).unwrap(),
        fs::read(home.archived(SEG1)).unwrap()
    );
}

#[test]
fn a_missing_file_exits_66_and_writes_nothing() {
    let home = Home::new();
    let to = home.dir.path().join("restored");
    let out = wal_store()
        .args(["get", "--server", "pg", "--archive"])
        .arg(home.wals())
        .args([SEG2, "--to"])
        .arg(&to)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&out.stderr).contains(SEG2));
    assert!(!to.exists());
}
