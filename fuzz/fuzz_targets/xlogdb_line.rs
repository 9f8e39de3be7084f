//! Fuzz target: xlog.db lines and Python float reprs (wal_core::xlogdb).
//! The checks are in `walpipe_fuzz::parsers::xlogdb_line`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| walpipe_fuzz::parsers::xlogdb_line(data));
