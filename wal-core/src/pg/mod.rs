//! The SQL connection to PostgreSQL that the receiver and the check share (feature
//! `pg`): a libpq connection string read as libpq reads it ([`conninfo`]), and a
//! conversation whose every answer is waited for at most a deadline ([`server`]), with
//! the questions both ask (version, WAL position, slots).

pub mod conninfo;
pub mod server;
