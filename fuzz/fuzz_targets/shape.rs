//! Fuzz target: the WAL header/shape check (wal_core::shape::check).
//! The checks are in `walpipe_fuzz::parsers::wal_shape`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| walpipe_fuzz::parsers::wal_shape(data));
