//! Fuzz target: wal_core::codec's xz decoder on hostile input, memory bounded.
//! The checks are in `walpipe_fuzz::codecs::decode_xz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| walpipe_fuzz::codecs::decode_xz(data));
