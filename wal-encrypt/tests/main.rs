//! wal-encrypt's integration tests: one test binary (as cargo's testsuite), one module per
//! area. The binary is run hermetically (no inherited `WALPIPE_*`), in fresh temporary
//! directories; a real GnuPG (keys made by `gpg --quick-gen-key`, one home per test, its
//! agent killed at the end) checks our messages and writes the ones we read.

mod cli;
mod errors;
mod gpg;
mod roundtrip;
mod stream;
mod util;
