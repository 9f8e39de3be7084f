//! Fuzz target: WAL file names and the segment arithmetic on them (wal_core::names).
//! The checks are in `walpipe_fuzz::parsers::wal_name`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| walpipe_fuzz::parsers::wal_name(data));
