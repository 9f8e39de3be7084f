//! wal-compress's integration tests: one test binary (as cargo's testsuite), one module per
//! area. The binary is run hermetically (no inherited `WALPIPE_*`), in fresh temporary
//! directories; the stock CLIs (`gzip`, `bzip2`, `xz`, `zstd`, `lz4`) check our formats.

mod cli;
mod compress;
mod decompress;
mod roundtrip;
mod stream;
mod util;
