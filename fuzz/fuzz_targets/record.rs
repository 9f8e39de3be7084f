//! Fuzz target: NDJSON records: parse, write, parse again (wal_core::record).
//! The checks are in `walpipe_fuzz::parsers::record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| walpipe_fuzz::parsers::record(data));
