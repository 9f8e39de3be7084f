//! wal-hooks's integration tests: one test binary (as cargo's testsuite), one module per
//! area. The binary runs hermetically (no inherited `WALPIPE_*` or `BARMAN_*`) on records
//! written by hand, with real shell scripts as hooks that write down what they saw.
//! Storing around the hooks (pre sees the queue file, post the archived one) is tested
//! with the real pipeline in the workspace tests (`tests/tests/hooks.rs`).

mod cli;
mod env;
mod retry;
mod stream;
mod util;
