//! Fuzz target: wal_core::codec's bzip2 decoder on hostile input, memory bounded.
//! The checks are in `walpipe_fuzz::codecs::decode_bzip2`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| walpipe_fuzz::codecs::decode_bzip2(data));
