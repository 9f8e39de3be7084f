//! The command line, exactly as typed: flags, their environment variables and their help.
//!
//! Parsing only checks that each value is well-formed; which flags matter in which mode,
//! and the defaults that depend on the machine, belong to [`crate::Config`], which is all
//! the rest of the crate sees (ripgrep's LowArgs/HiArgs).

use std::path::PathBuf;

use clap::Parser;

/// The end of `wal-encrypt --help`.
const EXAMPLES: &str = r#"  # archive encrypted to a certificate (gpg --export KEYID > /etc/walpipe/archive.pub)
  wal-scan incoming /var/lib/barman/pg/incoming | wal-compress --algorithm zstd \
    | wal-encrypt --recipient /etc/walpipe/archive.pub \
    | wal-store put --home /var/lib/barman --server pg
  # verify it: decrypt with the secret key (gpg --export-secret-keys) into a private directory
  T=$(mktemp -d); wal-scan archive /var/lib/barman/pg/wals --server pg \
    | wal-encrypt --decrypt --key /etc/walpipe/archive.key --temp-dir "$T" \
    | wal-verify --temp-dir "$T" > /dev/null"#;

/// OpenPGP-encrypt (or decrypt) the WAL file each record points at.
///
/// Reads WAL records (NDJSON, one per line) on stdin and writes them to stdout in the
/// same order. Each healthy record's file is encrypted into a hidden temporary file,
/// `.<name>.gpg`, next to it (or in --temp-dir), as `gpg --encrypt --compress-level 0`
/// would (Barman's command): a binary OpenPGP message with a SEIPDv1 packet, which
/// GnuPG 2.2 and later read, and no inner compression (the data is compressed already).
/// The record then points at the temporary file, with `encryption: "gpg"` and `size`
/// updated, and the file listed in `temps` for wal-store to remove once stored. The source
/// file is never touched. Records already encrypted pass through unchanged.
///
/// With --decrypt, each file is decrypted into `.<name>.decrypted` with the secret key of
/// --key, or with the passphrase for `gpg --symmetric` messages. A message for another
/// key or a wrong passphrase fails its record as `usage`; a corrupt, truncated or
/// unauthenticated (no MDC) message as `corrupt`, and leaves no plaintext behind. A file
/// that is not encrypted fails as `corrupt` too (an encrypted archive holds nothing else,
/// and passing it on would let anyone who can write to the archive inject WAL), unless
/// --allow-unencrypted (or --allow-unencrypted-in its directory) lets it through
/// unchanged; an OpenPGP message that is not encrypted (literal data, compressed or
/// signed only) is always refused. A record that arrives with an `outcome` (settled:
/// `wal-verify --recall` vouches for its stored file) passes on untouched.
///
/// Exit status: 0 all records done, 1 some records failed (their `error` says why),
/// 64 bad usage or unusable keys, 65 input lines that are not records, 66 a key file does
/// not exist, 73 --temp-dir unusable, 74 the record stream itself failed.
#[derive(Debug, Clone, Parser)]
#[command(name = "wal-encrypt", version, max_term_width = 100)]
#[command(after_help = wal_core::cli::examples(EXAMPLES))]
pub struct Args {
    /// Decrypt instead of encrypting (--recipient is then ignored).
    #[arg(long)]
    pub decrypt: bool,

    /// Encrypt to the certificate (public key) in CERT, armoured or binary, as
    /// `gpg --export [--armor] KEYID` writes it; every valid encryption-capable subkey is
    /// used. Repeat the flag (or separate files with commas) for several recipients.
    #[arg(
        long,
        value_name = "CERT",
        env = "WALPIPE_RECIPIENT",
        value_delimiter = ','
    )]
    pub recipient: Vec<PathBuf>,

    /// Decrypt with the secret key in KEY, as `gpg --export-secret-keys` writes it.
    #[arg(long, value_name = "KEY", env = "WALPIPE_KEY")]
    pub key: Option<PathBuf>,

    /// The passphrase is the first line of FILE. Without --recipient it encrypts
    /// symmetrically (`gpg --symmetric`); when decrypting it unlocks --key and opens
    /// symmetric messages.
    #[arg(
        long,
        value_name = "FILE",
        env = "WALPIPE_PASSPHRASE_FILE",
        conflicts_with = "passphrase_command"
    )]
    pub passphrase_file: Option<PathBuf>,

    /// The passphrase is what CMD (run by `sh`) prints, surrounding white space removed
    /// (Barman's `encryption_passphrase_command`); run once, when first needed. CMD
    /// reaches the shell through its environment, never its command line, and no message
    /// (nor this help) quotes it: give it in the variable rather than the flag to keep it
    /// out of this process's command line too.
    #[arg(
        long,
        value_name = "CMD",
        env = "WALPIPE_PASSPHRASE_COMMAND",
        hide_env_values = true
    )]
    pub passphrase_command: Option<String>,

    /// When decrypting, pass files that are not encrypted on unchanged instead of failing
    /// them: the migration from an unencrypted archive. Without it a plain file fails as
    /// `corrupt`.
    #[arg(
        long,
        env = "WALPIPE_ALLOW_UNENCRYPTED",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub allow_unencrypted: bool,

    /// When decrypting, pass files that are not encrypted on unchanged when they are
    /// directly in DIR (repeatable, or comma-separated): the queues of WAL not archived
    /// yet, which `restore-wal` also reads.
    #[arg(
        long,
        value_name = "DIR",
        env = "WALPIPE_ALLOW_UNENCRYPTED_IN",
        value_delimiter = ','
    )]
    pub allow_unencrypted_in: Vec<PathBuf>,

    /// Files to work on at once; output keeps the input order [default: 0, one per core].
    #[arg(long, value_name = "N", env = "WALPIPE_JOBS")]
    pub jobs: Option<usize>,

    /// Directory for the temporary files [default: the directory of each record's file].
    #[arg(long, value_name = "DIR", env = "WALPIPE_TEMP_DIR")]
    pub temp_dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn recipients_repeat_and_split_on_commas() {
        let args = Args::try_parse_from([
            "wal-encrypt",
            "--recipient",
            "a.asc,b.gpg",
            "--recipient",
            "c",
        ])
        .unwrap();
        assert_eq!(
            args.recipient,
            [
                PathBuf::from("a.asc"),
                PathBuf::from("b.gpg"),
                PathBuf::from("c")
            ]
        );
    }

    #[test]
    fn one_passphrase_source_at_a_time() {
        let err = Args::try_parse_from([
            "wal-encrypt",
            "--passphrase-file",
            "f",
            "--passphrase-command",
            "cat f",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
