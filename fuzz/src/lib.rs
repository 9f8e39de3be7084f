//! walpipe's fuzz checks: what must hold for any input of wal-core's parsers and
//! decoders, as functions of raw bytes that panic when it does not.
//!
//! Each fuzz target (`fuzz_targets/`, run by `scripts/fuzz`) is one call into this crate;
//! wal-core's `tests/fuzz_regressions.rs` includes these same modules to replay every
//! saved crash input under `cargo test`, so a fixed crash stays fixed.

pub mod codecs;
pub mod parsers;
