//! Fuzz target: wal_core::codec's lz4 decoder on hostile input, memory bounded.
//! The checks are in `walpipe_fuzz::codecs::decode_lz4`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| walpipe_fuzz::codecs::decode_lz4(data));
