//! wal-scan's integration tests: one test binary (cargo's testsuite layout), one module per
//! subcommand, driving the real binary in a hermetic environment.

mod archive;
mod cli;
mod cloud;
mod file;
mod incoming;
mod scale;
mod streaming;
mod support;
