//! Fuzz target: The OpenPGP packet detector (wal_core::openpgp).
//! The checks are in `walpipe_fuzz::parsers::openpgp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| walpipe_fuzz::parsers::openpgp(data));
