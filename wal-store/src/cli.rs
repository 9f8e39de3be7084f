//! The command line of wal-store, and the resolved configuration the logic runs on.
//!
//! `Args` mirrors what the user typed (clap derive, every flag also from `WALPIPE_*`);
//! [`Config`] is what the rest of the crate sees: paths resolved, defaults applied.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::FalseyValueParser;
use clap::{Args as ClapArgs, Parser, Subcommand};
use wal_core::cli::LayoutArgs;
use wal_core::layout::{ResolvedLayout, ServerLayout};
use wal_core::stage::MAX_JOBS;
use wal_core::trust::{Role, ServerDirs, Territory};
use wal_core::xlogdb::Xlogdb;
use wal_core::{WalError, durable};

use crate::cloud::CloudTarget;
use crate::cloud::connect::CloudOptions;
use crate::cloud::location::{CloudLocation, Endpoint};

/// The end of `wal-store --help`.
const EXAMPLES: &str = r"  # archive the incoming queue, zstd-compressed, into /var/lib/barman/pg/wals and xlog.db
  wal-scan incoming /var/lib/barman/pg/incoming | wal-compress --algorithm zstd \
    | wal-store put --home /var/lib/barman --server pg
  # restore one WAL decompressed to pg_wal/RECOVERYXLOG (restore-wal's pipeline)
  wal-store get --home /var/lib/barman --server pg 000000010000000A00000042 \
    | wal-compress --decompress --temp-dir pg_wal \
    | wal-store place --home /var/lib/barman --server pg --to pg_wal/RECOVERYXLOG
  # rewrite xlog.db from the files the archive holds
  wal-store rebuild-xlogdb --home /var/lib/barman --server pg";

/// The end of `wal-store put --help`.
const PUT_EXAMPLES: &str = r"  # archive the incoming queue, zstd-compressed, with Barman's archive-wal lines on stderr
  wal-scan incoming /var/lib/barman/pg/incoming | wal-compress --algorithm zstd \
    | wal-store put --home /var/lib/barman --server pg --report
  # into S3 (credentials from AWS_* or ~/.aws); xlog.db stays local, in the server's meta/
  wal-scan incoming /var/lib/barman/pg/incoming | wal-compress --algorithm zstd \
    | wal-store put --home /var/lib/barman --server pg --archive s3://backups/walpipe";

/// The end of `wal-store get --help`.
const GET_EXAMPLES: &str = r"  # where is a WAL? a record naming its file (the archive, else the incoming or streaming queue)
  wal-store get --home /var/lib/barman --server pg 000000010000000A00000042
  # restore it decompressed to pg_wal/RECOVERYXLOG (restore-wal's pipeline)
  wal-store get --home /var/lib/barman --server pg 000000010000000A00000042 \
    | wal-compress --decompress --temp-dir pg_wal \
    | wal-store place --home /var/lib/barman --server pg --to pg_wal/RECOVERYXLOG";

/// The end of `wal-store place --help`.
const PLACE_EXAMPLES: &str = r"  # restore one WAL decompressed to pg_wal/RECOVERYXLOG (restore-wal's pipeline)
  wal-store get --home /var/lib/barman --server pg 000000010000000A00000042 \
    | wal-compress --decompress --temp-dir pg_wal \
    | wal-store place --home /var/lib/barman --server pg --to pg_wal/RECOVERYXLOG
  # several WAL files, decompressed into a directory under their names
  mkdir -p /var/tmp/wal; wal-store get --home /var/lib/barman --server pg \
      000000010000000A00000042 000000010000000A00000043 \
    | wal-compress --decompress --temp-dir /var/tmp/wal \
    | wal-store place --home /var/lib/barman --server pg --to-dir /var/tmp/wal";

/// The end of `wal-store fetch --help`.
const FETCH_EXAMPLES: &str = r#"  # verify a cloud archive: list it, download each object, check it (verify-wal's pipeline)
  T=$(mktemp -d); wal-scan archive s3://backups/walpipe --server pg \
    | wal-store fetch --archive s3://backups/walpipe --server pg --temp-dir "$T" \
    | wal-verify --temp-dir "$T" > /dev/null
  # an encrypted one: each download decrypted before it is checked
  T=$(mktemp -d); wal-scan archive s3://backups/walpipe --server pg \
    | wal-store fetch --archive s3://backups/walpipe --server pg --temp-dir "$T" \
    | wal-encrypt --decrypt --key /etc/walpipe/archive.key --temp-dir "$T" \
    | wal-verify --temp-dir "$T" > /dev/null"#;

/// The end of `wal-store delete --help`.
const DELETE_EXAMPLES: &str = r#"  # retention by hand: delete every segment archived before 000000010000000A00000000
  wal-scan archive /var/lib/barman/pg/wals --server pg \
    | jq -c 'select(.kind == "segment" and .name < "000000010000000A00000000")' \
    | wal-store delete --home /var/lib/barman --server pg
  # delete one archived WAL by name
  wal-store get --home /var/lib/barman --server pg 000000010000000A00000042 \
    | wal-store delete --home /var/lib/barman --server pg"#;

/// The end of `wal-store rebuild-xlogdb --help`.
const REBUILD_EXAMPLES: &str = r"  # rewrite /var/lib/barman/pg/wals/pg-xlog.db from the files the archive holds
  wal-store rebuild-xlogdb --home /var/lib/barman --server pg
  # a cloud archive's catalogue, from a listing of the bucket, kept locally
  wal-store rebuild-xlogdb --server pg --archive s3://backups/walpipe \
    --xlogdb /var/lib/barman/pg/meta/pg-xlog.db";

/// The end of `wal-store list --help`.
const LIST_EXAMPLES: &str = r"  # every archived file, one record a line (as wal-scan archive prints them)
  wal-store list --home /var/lib/barman --server pg
  # the names and sizes of what a cloud archive holds
  wal-store list --server pg --archive s3://backups/walpipe | jq -r '[.name, .size] | @tsv'";

/// The end of `wal-store layout --help`.
const LAYOUT_EXAMPLES: &str = r"  # where the archive, queues, errors/, locks and xlog.db are, as shell assignments
  wal-store layout --home /var/lib/barman --server pg --shell
  # check that places given apart can be used together (exit 78 when they overlap)
  wal-store layout --home /var/lib/barman --server pg --archive /srv/wal/pg --incoming /srv/wal/in";

/// Stores WAL files into an archive, gets them back, deletes them, and keeps xlog.db.
#[derive(Debug, Parser)]
#[command(name = "wal-store", version, about)]
#[command(after_help = wal_core::cli::examples(EXAMPLES))]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// wal-store's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store the files of the input records (stdin) durably; print them with `outcome`.
    #[command(after_help = wal_core::cli::examples(PUT_EXAMPLES))]
    Put {
        /// Where the archive is.
        #[command(flatten)]
        archive: ArchiveArgs,
        // --queue, --keep-source and --report are how a wrapper uses this one stage, so no
        // variable sets them: a WALPIPE_QUEUE=1 in a settings file would change every call.
        /// Store into a flat queue directory (archive_command's hand-off to the incoming
        /// queue): no hash directories, no xlog.db, and a different file of the same name
        /// fails the record instead of going to errors/.
        #[arg(long)]
        queue: bool,
        /// Leave the source files in place (Barman's `skip_delete`; for pg_wal files).
        #[arg(long)]
        keep_source: bool,
        /// Also print Barman's archive-wal lines to stderr, at log level info: the heading
        /// `Processing xlog segments from LABEL for SERVER`, then `\t<name>` per WAL,
        /// duplicates, `no file found`, unknown files (LABEL: Barman's name of the queue,
        /// `file archival` or `streaming`) [LABEL's default: file archival].
        #[arg(
            long,
            value_name = "LABEL",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "file archival"
        )]
        report: Option<String>,
        /// With --report: begin each of those lines with the byte 0x1E (ASCII record
        /// separator), which no other stderr line begins with (control characters in them
        /// are escaped), so that a wrapper sends them elsewhere by that mark, not by their
        /// text (archive-wal: to its stdout, where Barman prints them).
        #[arg(long, requires = "report")]
        report_marked: bool,
        /// Most records stored per xlog.db fsync.
        #[arg(long, env = "WALPIPE_MAX_BATCH", default_value_t = 256)]
        max_batch: usize,
        /// How to decrypt an encrypted copy to compare it with a re-delivered WAL.
        #[command(flatten)]
        decryption: DecryptArgs,
        /// Where the earlier stages wrote their temporary copies (`wal-compress
        /// --temp-dir`): a record's temps are removed only from here or from a queue.
        #[arg(long, value_name = "DIR", env = "WALPIPE_TEMP_DIR")]
        temp_dir: Option<PathBuf>,
        /// Store files whose first page is not a WAL page header of this archive's system
        /// (pgBackRest's `archive-header-check=n`): for archives that hold WAL of an
        /// unusual build. The size and page address checks go too.
        #[arg(long, env = "WALPIPE_NO_HEADER_CHECK", value_parser = FalseyValueParser::new())]
        no_header_check: bool,
        /// Mark each look-ahead record (`ahead`, from `wal-scan file --look-ahead`) once
        /// durably stored, in DIR (`layout --look-ahead-marks` prints it): PostgreSQL's
        /// call for it then returns at once (`settled`).
        #[arg(long, value_name = "DIR")]
        marks: Option<PathBuf>,
    },
    /// Exit 0 when the WAL file PATH (archive_command's `%p`) was stored ahead of this
    /// call (archive-command --look-ahead) and still is: its mark in DIR names this very
    /// file (size, modification time, device and inode), the stored copy is there and
    /// so is its catalogue line. Else exit 1, silently: archive it. Either way the marks
    /// of PATH and of the WAL files before it are removed (PostgreSQL has moved on).
    Settled {
        /// Where the archive is.
        #[command(flatten)]
        archive: ArchiveArgs,
        /// The look-ahead marks.
        #[arg(long, value_name = "DIR")]
        marks: PathBuf,
        /// The call's --look-ahead, checked as `wal-scan file` checks it: a bad setting
        /// is refused (64) before any call is settled.
        #[arg(long, value_name = "N|auto", default_value = "auto")]
        look_ahead: String,
        /// The call's --look-ahead-time, checked likewise.
        #[arg(long, value_name = "SECS", default_value_t = 10.0)]
        look_ahead_time: f64,
        /// The WAL file PostgreSQL hands over.
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Resolve where the server's files are (Barman's layout under --home, each place
    /// overridable), and check that the archive, its queues, errors directory and server
    /// name can be used together (no directory inside another, a plain server name);
    /// exit 78 if not. Prints nothing unless asked: the wrappers run it before any work.
    #[command(alias = "check-layout")]
    #[command(after_help = wal_core::cli::examples(LAYOUT_EXAMPLES))]
    Layout {
        /// Where the archive is.
        #[command(flatten)]
        archive: ArchiveArgs,
        /// Print the layout as shell assignments, one a line, values single-quoted:
        /// `SERVER`, `ARCHIVE`, `CLOUD` (0 or 1), `INCOMING`, `STREAMING`, `ERRORS`,
        /// `LOCK_DIR`, `XLOGDB`, `ARCHIVE_WAL_LOCK` (empty where there is none),
        /// `SAY_INFO` (1 when the log level shows info lines, else 0), and `TEMP_DIR` with
        /// --stage-temp-dir. For the wrappers, which `eval` it.
        #[arg(long)]
        shell: bool,
        /// Refuse (exit 64) a layout without this place: `incoming` (the incoming queue)
        /// or `lock-dir` (where locks go); a cloud archive has them only under --home or
        /// when named.
        #[arg(long, value_name = "PLACE", value_parser = ["incoming", "lock-dir"])]
        require: Vec<String>,
        /// Also make (if missing) and print where the stages before `put` write their
        /// temporary copies (`TEMP_DIR` with --shell, else the one line printed): a local
        /// archive's root (on the archive's filesystem, so storing a copy is a link, not
        /// a second write); for a cloud archive --temp-dir, else its private temp
        /// directory `$TMPDIR/walpipe-<uid>/<server>-<hash of the archive>` (mode 0700,
        /// ours).
        #[arg(long, alias = "private-temp-dir")]
        stage_temp_dir: bool,
        /// A cloud archive's temp directory instead of the private one (an absolute
        /// path: a relative one would be another directory for each caller).
        #[arg(long, value_name = "DIR", env = "WALPIPE_TEMP_DIR")]
        temp_dir: Option<PathBuf>,
        /// Also build a cloud archive's client, sending nothing: settings that cannot
        /// work together (two endpoints, an account at odds with the URL, credentials
        /// that cannot be read) are refused here (exit 78), before a wrapper's pipeline
        /// starts. For the wrappers whose pipeline reaches the archive.
        #[arg(long)]
        client: bool,
        /// Also make (if missing) and print the archive's look-ahead marks directory
        /// (`MARKS_DIR` with --shell): `$TMPDIR/walpipe-ahead-<uid>/<server>-<hash of the
        /// archive>`, mode 0700, ours.
        #[arg(long)]
        look_ahead_marks: bool,
    },
    /// Find archived files (NAME...), or write out the files of the records on stdin.
    ///
    /// With NAMEs: each is looked up where Barman's `get-wal` looks (the archive, then the
    /// incoming and streaming queues) and printed as a record pointing at the file where
    /// it is, its compression identified by magic; with --to/--to-dir it is first copied
    /// out as stored. A NAME not in the archive is printed as a failed record (kind
    /// `not_found`) with one line on stderr (none with --quiet-missing), and the exit
    /// status is 66.
    ///
    /// Without NAMEs: `wal-store place`, the write-out (its alias).
    #[command(after_help = wal_core::cli::examples(GET_EXAMPLES))]
    Get {
        /// Where the archive is.
        #[command(flatten)]
        archive: ArchiveArgs,
        /// WAL file names to look up; none to write out the records read on stdin.
        names: Vec<String>,
        /// When a segment is not found, look for its `.partial` too (Barman's
        /// `get-wal --partial`: the end of a streamed timeline). Ignored without NAMEs.
        #[arg(long, env = "WALPIPE_PARTIAL", value_parser = FalseyValueParser::new())]
        partial: bool,
        /// No stderr line for a NAME not in the archive (its failed record and exit 66
        /// still say it; other errors are still printed). Ignored without NAMEs.
        #[arg(long)]
        quiet_missing: bool,
        /// Before the look-up, remove the temps of ours that killed restores left in
        /// --temp-dir (`%p`'s directory: PostgreSQL runs one restore_command at a time,
        /// so any found there is stale): `.<WAL name>.<suffix>` of the stages' temp
        /// grammar, nothing else. Never for a directory other restores share (a spool).
        #[arg(long, requires = "temp_dir")]
        sweep_temps: bool,
        /// Write the file to PATH (must not exist).
        #[arg(long, value_name = "PATH", conflicts_with = "to_dir")]
        to: Option<PathBuf>,
        /// Write each file into DIR, under its WAL name (which must not exist there).
        #[arg(long, value_name = "DIR")]
        to_dir: Option<PathBuf>,
        /// Cloud archives, without --to/--to-dir: download each object here, as a temp
        /// file the record lists in `temps` [default: the system's temp directory].
        /// Without NAMEs: where the earlier stages wrote their temporary copies (and a
        /// spool of complete files under their WAL names), besides the destination's own
        /// directory; a record's temps are removed or moved only from there.
        #[arg(long, value_name = "DIR", env = "WALPIPE_TEMP_DIR")]
        temp_dir: Option<PathBuf>,
        /// Write out files whose first page is not a WAL page header matching their name
        /// (the size and page address checks go too).
        #[arg(long, env = "WALPIPE_NO_HEADER_CHECK", value_parser = FalseyValueParser::new())]
        no_header_check: bool,
    },
    /// Write out the files of the records on stdin: the end of a restore.
    ///
    /// The records (typically from `wal-compress --decompress`) are written to --to PATH
    /// (one record) or into --to-dir DIR under their names, each durably (temp in the
    /// destination directory, fsync, rename without replacing, fsync the directory). A
    /// record's file that is one of its `temps` is moved, others are copied; the other
    /// temps are removed. Records failed upstream pass through. Being the last stage, it
    /// exits with the whole restore's status: 0 when every record was written; for a
    /// failed record the code of its kind (66 not_found, 75 temporary, 65 corrupt, ...;
    /// the worst of several, not_found the least), with no stderr line for a record that
    /// arrived failed; 70 when no record came at all (a stage before failed).
    /// `get --to`/`--to-dir` without NAMEs does the same.
    #[command(after_help = wal_core::cli::examples(PLACE_EXAMPLES))]
    Place {
        /// Where the archive is (its directories may not be the destination).
        #[command(flatten)]
        archive: ArchiveArgs,
        /// Where the files go.
        #[command(flatten)]
        destination: PlaceArgs,
    },
    /// Download the objects of a cloud archive's listing (`wal-scan archive URL`) into
    /// --temp-dir, each record pointing at its copy (listed in its `temps`), for the
    /// stages that read files (wal-encrypt --decrypt, wal-verify). A record naming an
    /// object that is not its WAL's in this archive fails alone; one that arrives with an
    /// outcome (settled) or failed passes untouched.
    #[command(after_help = wal_core::cli::examples(FETCH_EXAMPLES))]
    Fetch {
        /// Where the archive is (a cloud archive).
        #[command(flatten)]
        archive: ArchiveArgs,
        /// Where the downloads go [default: the system's temp directory].
        #[arg(long, value_name = "DIR", env = "WALPIPE_TEMP_DIR")]
        temp_dir: Option<PathBuf>,
    },
    /// Delete the archived files of the input records; print them with `outcome: deleted`.
    #[command(after_help = wal_core::cli::examples(DELETE_EXAMPLES))]
    Delete {
        /// Where the archive is.
        #[command(flatten)]
        archive: ArchiveArgs,
    },
    /// Rewrite xlog.db from what the archive holds.
    #[command(after_help = wal_core::cli::examples(REBUILD_EXAMPLES))]
    RebuildXlogdb {
        /// Where the archive is.
        #[command(flatten)]
        archive: ArchiveArgs,
    },
    /// Print one record per archived file (name order), as `wal-scan archive` does.
    #[command(after_help = wal_core::cli::examples(LIST_EXAMPLES))]
    List {
        /// Where the archive is.
        #[command(flatten)]
        archive: ArchiveArgs,
    },
}

/// `place`'s flags: where the files go (one of --to, --to-dir), and from where temps may
/// be taken.
#[derive(Debug, ClapArgs)]
#[group(id = "destination", required = true, multiple = false, args = ["to", "to_dir"])]
pub struct PlaceArgs {
    /// Write the file to PATH (must not exist).
    #[arg(long, value_name = "PATH")]
    pub to: Option<PathBuf>,
    /// Write each file into DIR, under its WAL name (which must not exist there).
    #[arg(long, value_name = "DIR")]
    pub to_dir: Option<PathBuf>,
    /// Where the earlier stages wrote their temporary copies (and a spool of complete
    /// files under their WAL names), besides the destination's own directory; a record's
    /// temps are removed or moved only from there.
    #[arg(long, value_name = "DIR", env = "WALPIPE_TEMP_DIR")]
    pub temp_dir: Option<PathBuf>,
    /// Write out files whose first page is not a WAL page header matching their name
    /// (the size and page address checks go too).
    #[arg(long, env = "WALPIPE_NO_HEADER_CHECK", value_parser = FalseyValueParser::new())]
    pub no_header_check: bool,
}

/// Flags shared by every subcommand: where the archive and its companions are.
#[derive(Debug, ClapArgs)]
pub struct ArchiveArgs {
    /// Where the server's files are.
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// How to reach a cloud archive.
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// Flags for cloud archives (ignored for a directory). Credentials come from where each
/// cloud's tools read them: `AWS_*` and `~/.aws`, `AZURE_STORAGE_CONNECTION_STRING` or
/// `AZURE_STORAGE_*`, `GOOGLE_APPLICATION_CREDENTIALS`.
#[derive(Debug, ClapArgs)]
pub struct CloudArgs {
    /// An S3-compatible server (`http://127.0.0.1:3900`), an Azure blob endpoint, or a GCS
    /// emulator: `http://` or `https://`, a host, an optional port and path [default:
    /// `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, the profile's `endpoint_url`, the
    /// connection string's `BlobEndpoint`, `GOOGLE_BASE_URL`, the service account's
    /// `gcs_base_url`].
    #[arg(long, value_name = "URL", env = "WALPIPE_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// The AWS profile to read from `~/.aws/credentials` and `~/.aws/config`
    /// [default: `AWS_PROFILE`, else `default`].
    #[arg(long, env = "WALPIPE_PROFILE")]
    pub profile: Option<String>,
    /// The S3 region [default: `AWS_REGION`, the profile's].
    #[arg(long, env = "WALPIPE_REGION")]
    pub region: Option<String>,
    /// Most seconds one record may take, retries included; then it fails as
    /// `temporary` (exit 75). From 0.001 to 86400.
    #[arg(
        long,
        value_name = "SECS",
        env = "WALPIPE_TIMEOUT",
        default_value_t = 60.0
    )]
    pub timeout: f64,
    /// Most seconds one request may take. From 0.001 to 86400.
    #[arg(
        long,
        value_name = "SECS",
        env = "WALPIPE_REQUEST_TIMEOUT",
        default_value_t = 30.0
    )]
    pub request_timeout: f64,
    /// Records uploaded, downloaded or deleted at once: at most 256 (0 counts as 1).
    #[arg(long, env = "WALPIPE_JOBS", default_value_t = 8)]
    pub jobs: usize,
    /// Objects up to this many MiB go up in one create-only request; larger ones in parts
    /// of this size (memory: about jobs × part size).
    #[arg(
        long,
        value_name = "MIB",
        env = "WALPIPE_PART_SIZE",
        default_value_t = 64
    )]
    pub part_size: usize,
}

/// The longest `--timeout` and `--request-timeout`: a day. Longer is no bound at all, and
/// far longer does not fit the clocks the client adds it to.
const MAX_SECONDS: f64 = 86_400.0;

/// The shortest: a millisecond (a smaller value would round to no time at all).
const MIN_SECONDS: f64 = 0.001;

impl CloudArgs {
    fn resolve(self) -> Result<CloudOptions, WalError> {
        let duration = |flag: &str, secs: f64| {
            if (MIN_SECONDS..=MAX_SECONDS).contains(&secs) {
                Ok(Duration::from_secs_f64(secs))
            } else {
                Err(WalError::Usage(format!(
                    "--{flag} {secs}: a number of seconds from {MIN_SECONDS} to {MAX_SECONDS}"
                )))
            }
        };
        if self.part_size < 5 || self.part_size > 4096 {
            return Err(WalError::Usage(format!(
                "--part-size {}: between 5 and 4096 MiB (S3's part limits)",
                self.part_size
            )));
        }
        if self.jobs > MAX_JOBS {
            return Err(WalError::Usage(format!(
                "--jobs {}: at most {MAX_JOBS} records at once",
                self.jobs
            )));
        }
        if self.region.as_deref() == Some("") {
            return Err(WalError::Usage("--region: empty".into()));
        }
        // Checked before anything connects: the client would panic on a malformed URL.
        let endpoint = self
            .endpoint_url
            .map(|text| Endpoint::parse("--endpoint-url", &text))
            .transpose()?;
        Ok(CloudOptions {
            endpoint,
            profile: self.profile,
            region: self.region,
            request_timeout: duration("request-timeout", self.request_timeout)?,
            deadline: duration("timeout", self.timeout)?,
            jobs: self.jobs.max(1),
            part_size: self.part_size << 20,
        })
    }
}

/// `put`'s flags for comparing encrypted copies (as `wal-encrypt --decrypt` takes them).
///
/// A duplicate whose stored copy is encrypted is compared after decryption by
/// `wal-encrypt --decrypt` (found next to this executable); without a key or passphrase
/// it cannot be compared and is a conflict, as in Barman.
#[derive(ClapArgs)]
pub struct DecryptArgs {
    /// The secret key to decrypt encrypted copies with (`gpg --export-secret-keys` output).
    #[arg(long, value_name = "KEY", env = "WALPIPE_KEY")]
    pub key: Option<PathBuf>,
    /// The passphrase of --key (or of symmetrically encrypted copies) is the first line
    /// of FILE.
    #[arg(
        long,
        value_name = "FILE",
        env = "WALPIPE_PASSPHRASE_FILE",
        conflicts_with = "passphrase_command"
    )]
    pub passphrase_file: Option<PathBuf>,
    /// The passphrase is what CMD (run by `sh`) prints (Barman's
    /// `encryption_passphrase_command`). wal-encrypt gets it in its environment; give it
    /// in the variable rather than the flag to keep it off this command line too.
    #[arg(
        long,
        value_name = "CMD",
        env = "WALPIPE_PASSPHRASE_COMMAND",
        hide_env_values = true
    )]
    pub passphrase_command: Option<String>,
}

/// As derived, but the command left out (see [`PassphraseSource`]'s).
impl std::fmt::Debug for DecryptArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptArgs")
            .field("key", &self.key)
            .field("passphrase_file", &self.passphrase_file)
            .field(
                "passphrase_command",
                &self.passphrase_command.as_ref().map(|_| ".."),
            )
            .finish()
    }
}

/// Where a passphrase comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    /// The first line of this file.
    File(PathBuf),
    /// What this shell command prints.
    Command(String),
}

/// The command is left out: it may hold the passphrase itself, and debug output ends up
/// in logs.
impl std::fmt::Debug for PassphraseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassphraseSource::File(path) => f.debug_tuple("File").field(path).finish(),
            PassphraseSource::Command(_) => f.write_str("Command(..)"),
        }
    }
}

/// How to decrypt encrypted copies, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decryption {
    /// The secret key file.
    pub key: Option<PathBuf>,
    /// Its passphrase, or the passphrase of symmetric messages.
    pub passphrase: Option<PassphraseSource>,
}

impl DecryptArgs {
    /// `None` when neither a key nor a passphrase is given.
    fn resolve(self) -> Option<Decryption> {
        let passphrase = match (self.passphrase_file, self.passphrase_command) {
            (Some(file), _) => Some(PassphraseSource::File(file)),
            (None, Some(command)) => Some(PassphraseSource::Command(command)),
            (None, None) => None,
        };
        (self.key.is_some() || passphrase.is_some()).then_some(Decryption {
            key: self.key,
            passphrase,
        })
    }
}

/// Where everything is, resolved: a local archive or a cloud one.
#[derive(Debug, Clone)]
pub enum Target {
    /// A directory in Barman's layout.
    Local(LocalTarget),
    /// A bucket or container.
    Cloud(CloudTarget),
}

impl Target {
    /// The server name.
    #[must_use]
    pub fn server(&self) -> &str {
        match self {
            Target::Local(local) => &local.layout.server,
            Target::Cloud(cloud) => &cloud.server,
        }
    }

    /// The queues whose entries are sources this server's `put` may remove.
    #[must_use]
    pub fn queues(&self) -> Vec<(&'static str, &Path)> {
        match self {
            Target::Local(local) => vec![
                ("--incoming", local.layout.incoming.as_path()),
                ("--streaming", local.layout.streaming.as_path()),
            ],
            Target::Cloud(cloud) => [
                ("--incoming", cloud.incoming.as_deref()),
                ("--streaming", cloud.streaming.as_deref()),
            ]
            .into_iter()
            .filter_map(|(flag, dir)| dir.map(|dir| (flag, dir)))
            .collect(),
        }
    }

    /// The directories `put` owns, and what each is to it: the queues, the archive (or,
    /// storing into a queue, that queue), `errors/`, and `temp_dir`.
    pub fn territory(
        &self,
        into_queue: bool,
        temp_dir: Option<&Path>,
    ) -> Result<Territory, WalError> {
        let xlogdb = self.xlogdb();
        Territory::of_server(&ServerDirs {
            archive: match self {
                Target::Local(local) => Some(&local.layout.wals),
                Target::Cloud(_) => None,
            },
            queues: if into_queue {
                Vec::new()
            } else {
                self.queues()
            },
            errors: self.errors_dir().filter(|_| !into_queue),
            temp: temp_dir,
            xlogdb: xlogdb.map(Xlogdb::path),
            lock_dir: xlogdb.map(|x| durable::parent_of(x.lock_path())),
        })
    }

    /// Where conflicting and unknown sources go, if anywhere.
    #[must_use]
    pub fn errors_dir(&self) -> Option<&Path> {
        match self {
            Target::Local(local) => Some(&local.layout.errors),
            Target::Cloud(cloud) => cloud.errors.as_deref(),
        }
    }

    /// The catalogue, if any.
    #[must_use]
    pub fn xlogdb(&self) -> Option<&Xlogdb> {
        match self {
            Target::Local(local) => Some(&local.xlogdb),
            Target::Cloud(cloud) => cloud.xlogdb.as_ref(),
        }
    }
}

/// A local archive, resolved.
#[derive(Debug, Clone)]
pub struct LocalTarget {
    /// The server's directories.
    pub layout: ServerLayout,
    /// The catalogue.
    pub xlogdb: Xlogdb,
}

impl TryFrom<ArchiveArgs> for Target {
    type Error = WalError;

    fn try_from(args: ArchiveArgs) -> Result<Self, WalError> {
        Target::resolved(args.layout.settings().resolve()?, args.cloud)
    }
}

impl Target {
    /// The target of a layout resolved by wal-core's one resolver.
    fn resolved(layout: ResolvedLayout, cloud: CloudArgs) -> Result<Target, WalError> {
        let xlogdb = layout.xlogdb();
        if let Some(location) = CloudLocation::parse(&layout.archive)? {
            return Ok(Target::Cloud(CloudTarget {
                location,
                server: layout.server,
                options: cloud.resolve()?,
                xlogdb,
                errors: layout.places.errors,
                incoming: layout.places.incoming,
                streaming: layout.places.streaming,
            }));
        }
        let dirs = ServerLayout::from_archive(Path::new(&layout.archive), &layout.server);
        let dirs = layout.local().unwrap_or(dirs);
        let xlogdb = xlogdb.unwrap_or_else(|| dirs.xlogdb());
        Ok(Target::Local(LocalTarget {
            layout: dirs,
            xlogdb,
        }))
    }
}

/// The resolved work to do.
#[derive(Debug, Clone)]
pub enum Config {
    /// `put`.
    Put {
        /// Where to store.
        target: Target,
        /// Flat queue instead of an archive.
        queue: bool,
        /// Keep sources.
        keep_source: bool,
        /// Print Barman's lines, under this queue's label.
        report: Option<String>,
        /// Begin each of them with a mark (`report.rs`).
        report_marked: bool,
        /// Records per xlog.db fsync.
        max_batch: usize,
        /// How to decrypt encrypted copies to compare them.
        decryption: Option<Decryption>,
        /// The directories put may act on.
        territory: Territory,
        /// Where comparison copies go when the record's own file is not in a directory
        /// of ours.
        temp_dir: Option<PathBuf>,
        /// Check that what is stored has the shape of this archive's WAL.
        header_check: bool,
        /// Where to mark look-ahead records once stored.
        marks: Option<PathBuf>,
    },
    /// `settled`.
    Settled {
        /// The archive.
        target: Target,
        /// The look-ahead marks.
        marks: PathBuf,
        /// archive_command's `%p`.
        path: PathBuf,
    },
    /// `layout`: what to print, if anything.
    Layout {
        /// The resolved layout, to print as shell assignments (`--shell`).
        shell: Option<ResolvedLayout>,
        /// The stages' temp directory (made already), if asked for.
        temp_dir: Option<PathBuf>,
        /// The look-ahead marks directory (made already), if asked for.
        marks_dir: Option<PathBuf>,
    },
    /// `get`.
    Get {
        /// Where from.
        target: Target,
        /// Which files; empty: the records read on stdin.
        names: Vec<String>,
        /// Also look for `<segment>.partial`.
        partial: bool,
        /// No stderr line for a name not found.
        quiet_missing: bool,
        /// Sweep killed restores' temps from `temp_dir` first.
        sweep_temps: bool,
        /// Where to.
        to: GetDestination,
        /// Where cloud downloads go without a destination.
        temp_dir: PathBuf,
        /// Write-out: the directories whose temps (and spooled files) are ours.
        territory: Territory,
        /// Write-out: check that what is written has the shape of WAL for its name.
        header_check: bool,
    },
    /// `fetch`.
    Fetch {
        /// Which cloud archive.
        target: Box<CloudTarget>,
        /// Where the downloads go.
        temp_dir: PathBuf,
    },
    /// `delete`.
    Delete {
        /// Where from.
        target: Target,
    },
    /// `rebuild-xlogdb`.
    RebuildXlogdb {
        /// Which archive.
        target: Target,
    },
    /// `list`.
    List {
        /// Which archive.
        target: Target,
    },
}

/// `put`'s configuration.
fn put_config(command: Command) -> Result<Config, WalError> {
    let Command::Put {
        archive,
        queue,
        keep_source,
        report,
        report_marked,
        max_batch,
        decryption,
        temp_dir,
        no_header_check,
        marks,
    } = command
    else {
        return Err(WalError::Internal("put_config of another command".into()));
    };
    if let Some(label) = &report
        && (label.trim().is_empty() || label.chars().any(char::is_control))
    {
        return Err(WalError::Usage(format!(
            "--report={label:?}: a queue's label, as Barman's heading names it (file archival, \
             streaming)"
        )));
    }
    let target: Target = archive.try_into()?;
    Ok(Config::Put {
        territory: target.territory(queue, temp_dir.as_deref())?,
        marks: marks.map(|dir| marks_dir(&target, dir)).transpose()?,
        target,
        queue,
        keep_source,
        report,
        report_marked,
        max_batch: max_batch.max(1),
        decryption: decryption.resolve(),
        temp_dir,
        header_check: !no_header_check,
    })
}

/// Refuses a directory in (or that is) PostgreSQL's pg_wal: a directory holding
/// `archive_status/`, or below one.
fn outside_pg_wal(label: &str, dir: &Path) -> Result<(), WalError> {
    let resolved =
        std::fs::canonicalize(dir).map_err(|e| WalError::io("cannot resolve", dir, e))?;
    match resolved
        .ancestors()
        .find(|level| level.join("archive_status").is_dir())
    {
        Some(pg_wal) => Err(WalError::Config(format!(
            "{label} {}: inside PostgreSQL's pg_wal {}",
            dir.display(),
            pg_wal.display()
        ))),
        None => Ok(()),
    }
}

/// A look-ahead marks directory: a private one of ours (files there are named as WAL
/// files), apart from the archive, its queues, errors/ and pg_wal.
fn marks_dir(target: &Target, dir: PathBuf) -> Result<PathBuf, WalError> {
    use std::os::unix::fs::PermissionsExt;
    wal_core::private::check_ours(&dir)?;
    // A mark vouches for a call: no one else may write one.
    for level in [dir.as_path(), durable::parent_of(&dir)] {
        let mode = std::fs::metadata(level)
            .map_err(|e| WalError::io("cannot use the directory", level, e))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            return Err(WalError::Config(format!(
                "--marks {}: {} is writable by others (mode {:o}): marks must be ours alone",
                dir.display(),
                level.display(),
                mode & 0o7777
            )));
        }
    }
    outside_pg_wal("--marks", &dir)?;
    let mut territory = target.territory(false, None)?;
    territory.add(Role::Spool, "--marks", &dir)?;
    territory.check_disjoint()?;
    Ok(dir)
}

/// The directories a write-out owns: the destination's (temps of the last stages sit
/// beside `%p`), and `--temp-dir`, also a spool of complete files under their names.
fn write_out_territory(
    target: &Target,
    to: &GetDestination,
    temp_dir: Option<&Path>,
) -> Result<Territory, WalError> {
    // The archive and the queues, so that a spool that is one of them is refused: a
    // write-out moves and removes files there under their WAL names.
    let mut territory = target.territory(false, None)?;
    match to {
        GetDestination::File(path) => {
            territory.add(Role::Temp, "--to", wal_core::durable::parent_of(path))?;
        }
        GetDestination::Dir(dir) => {
            // Files land there under their WAL names: a spool (restore's prefetch).
            territory.add(Role::Spool, "--to-dir", dir)?;
        }
        GetDestination::InPlace => {}
    }
    if let Some(dir) = temp_dir {
        territory.add(Role::Spool, "--temp-dir", dir)?;
    }
    territory.check_disjoint()?;
    Ok(territory)
}

/// `get`'s configuration (also `place`'s, a `get` without names): `(partial,
/// quiet_missing, sweep_temps)`, `(to, to_dir)` as given.
fn get_config(
    archive: ArchiveArgs,
    names: Vec<String>,
    (partial, quiet_missing, sweep_temps): (bool, bool, bool),
    (to, to_dir): (Option<PathBuf>, Option<PathBuf>),
    temp_dir: Option<PathBuf>,
    no_header_check: bool,
) -> Result<Config, WalError> {
    let to = GetDestination::new(&names, to, to_dir)?;
    let target: Target = archive.try_into()?;
    let territory = if names.is_empty() {
        write_out_territory(&target, &to, temp_dir.as_deref())?
    } else {
        // A look-up in an archive that overlaps its queues would answer from the wrong
        // place ("not archived" for WAL that is there): refused as every stage refuses.
        target.territory(false, None)?;
        Territory::new()
    };
    Ok(Config::Get {
        to,
        temp_dir: temp_dir.unwrap_or_else(std::env::temp_dir),
        target,
        names,
        partial,
        quiet_missing,
        sweep_temps,
        territory,
        header_check: !no_header_check,
    })
}

/// Where `get` writes the files it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetDestination {
    /// Nowhere: print records pointing at the files where they are.
    InPlace,
    /// One file, at this path (`--to`).
    File(PathBuf),
    /// Each file into this directory, under its WAL name (`--to-dir`).
    Dir(PathBuf),
}

impl GetDestination {
    /// Checks that the flags of `get` make sense together.
    fn new(
        names: &[String],
        to: Option<PathBuf>,
        to_dir: Option<PathBuf>,
    ) -> Result<Self, WalError> {
        let destination = match (to, to_dir) {
            (Some(path), _) => GetDestination::File(path),
            (None, Some(dir)) => GetDestination::Dir(dir),
            (None, None) => GetDestination::InPlace,
        };
        if names.is_empty() && destination == GetDestination::InPlace {
            return Err(WalError::Usage(
                "get: give the WAL names to look up, or --to PATH or --to-dir DIR to \
                 write out the records read on stdin"
                    .into(),
            ));
        }
        if names.len() > 1 && matches!(destination, GetDestination::File(_)) {
            return Err(WalError::Usage(
                "get: --to PATH takes one name; use --to-dir DIR for several".into(),
            ));
        }
        Ok(destination)
    }
}

/// Where a command stands in a restore's pipeline: what it does with the input it was
/// meant for when its own settings are refused ([`crate::run_args`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineRole {
    /// `get NAME...`: the first stage; the names it was asked for.
    LookUp(Vec<String>),
    /// `place` (`get` without names): the last stage.
    WriteOut,
    /// Anything else.
    Other,
}

impl Args {
    /// This command's [`PipelineRole`].
    #[must_use]
    pub fn pipeline_role(&self) -> PipelineRole {
        match &self.command {
            Command::Get { names, .. } if !names.is_empty() => PipelineRole::LookUp(names.clone()),
            Command::Get { .. } | Command::Place { .. } => PipelineRole::WriteOut,
            _ => PipelineRole::Other,
        }
    }
}

/// `layout`'s configuration: the layout resolved and checked, and the private temp
/// directory made, when asked for.
fn layout_config(
    archive: ArchiveArgs,
    shell: bool,
    require: &[String],
    (stage_temp_dir, temp_dir): (bool, Option<PathBuf>),
    client: bool,
    look_ahead_marks: bool,
) -> Result<Config, WalError> {
    let layout = archive.layout.settings().resolve()?;
    if let Some(dir) = &temp_dir {
        wal_core::layout::must_be_absolute("--temp-dir", dir)?;
    }
    for place in require {
        let (present, flag, what) = match place.as_str() {
            "incoming" => (
                layout.places.incoming.is_some(),
                "--incoming",
                "incoming queue",
            ),
            _ => (layout.places.lock_dir.is_some(), "--lock-dir", "lock files"),
        };
        if !present {
            return Err(WalError::Usage(format!(
                "--home DIR (or {flag} DIR) is required: a cloud archive keeps its {what} \
                 local, under the home"
            )));
        }
    }
    let key =
        wal_core::private::archive_key(&layout.archive, archive.cloud.endpoint_url.as_deref())?;
    let target = Target::resolved(layout.clone(), archive.cloud)?;
    // The archive, queues, errors/, catalogue and locks apart from each other.
    target.territory(false, temp_dir.as_deref())?;
    // A cloud client's settings that cannot work (two endpoints, an account at odds with
    // the URL, ...) are found here, before a wrapper starts its pipeline, where the stage
    // that found them would end the others mid-stream. Building a client sends nothing.
    if client && let Target::Cloud(cloud) = &target {
        crate::cloud::Bucket::open(cloud)?;
    }
    // Printed alone, on a line of its own, without --shell: checked before it is made.
    let one_line = |dir: &Path| {
        if shell || !dir.as_os_str().as_encoded_bytes().contains(&b'\n') {
            return Ok(());
        }
        Err(WalError::Config(format!(
            "{}: a temp directory path with a line break",
            dir.to_string_lossy().escape_debug()
        )))
    };
    let temp_dir = match (stage_temp_dir, temp_dir) {
        (false, _) => None,
        (true, _) if !layout.cloud => {
            let root = PathBuf::from(&layout.archive);
            one_line(&root)?;
            std::fs::create_dir_all(&root)
                .map_err(|e| WalError::io("cannot create the archive", &root, e))?;
            Some(root)
        }
        (true, Some(dir)) => {
            one_line(&dir)?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| WalError::io("cannot create the temp directory", &dir, e))?;
            Some(dir)
        }
        (true, None) => {
            let base = std::env::temp_dir();
            one_line(&base)?;
            Some(wal_core::private::dir_for(
                &base,
                "walpipe",
                &layout.server,
                &key,
            )?)
        }
    };
    // Marks that cannot be kept turn look-ahead off (MARKS_DIR empty), with a line:
    // they only save work, and must never fail the call for %p.
    let marks_dir = look_ahead_marks.then(|| {
        let base = std::env::temp_dir();
        one_line(&base)
            .and_then(|()| outside_pg_wal("$TMPDIR", &base))
            .and_then(|()| wal_core::private::dir_for(&base, "walpipe-ahead", &layout.server, &key))
            .and_then(|dir| marks_dir(&target, dir))
            .unwrap_or_else(|err| {
                wal_core::log::warn!("wal-store: look-ahead off: {err}");
                PathBuf::new()
            })
    });
    Ok(Config::Layout {
        shell: shell.then_some(layout),
        temp_dir,
        marks_dir,
    })
}

impl TryFrom<Args> for Config {
    type Error = WalError;

    fn try_from(args: Args) -> Result<Self, WalError> {
        Ok(match args.command {
            command @ Command::Put { .. } => put_config(command)?,
            Command::Settled {
                archive,
                marks,
                look_ahead,
                look_ahead_time,
                path,
            } => {
                wal_core::lookahead::parse_count(&look_ahead)?;
                wal_core::lookahead::check_time(look_ahead_time)?;
                let target: Target = archive.try_into()?;
                Config::Settled {
                    marks: marks_dir(&target, marks)?,
                    target,
                    path,
                }
            }
            Command::Layout {
                archive,
                shell,
                require,
                stage_temp_dir,
                temp_dir,
                client,
                look_ahead_marks,
            } => layout_config(
                archive,
                shell,
                &require,
                (stage_temp_dir, temp_dir),
                client,
                look_ahead_marks,
            )?,
            Command::Get {
                archive,
                names,
                partial,
                quiet_missing,
                sweep_temps,
                to,
                to_dir,
                temp_dir,
                no_header_check,
            } => get_config(
                archive,
                names,
                (partial, quiet_missing, sweep_temps),
                (to, to_dir),
                temp_dir,
                no_header_check,
            )?,
            Command::Place {
                archive,
                destination:
                    PlaceArgs {
                        to,
                        to_dir,
                        temp_dir,
                        no_header_check,
                    },
            } => get_config(
                archive,
                Vec::new(),
                (false, false, false),
                (to, to_dir),
                temp_dir,
                no_header_check,
            )?,
            Command::Fetch { archive, temp_dir } => match archive.try_into()? {
                Target::Cloud(cloud) => Config::Fetch {
                    target: Box::new(cloud),
                    temp_dir: temp_dir.unwrap_or_else(std::env::temp_dir),
                },
                Target::Local(local) => {
                    return Err(WalError::Usage(format!(
                        "fetch: {} is a local archive: its records point at its files already \
                         (fetch is for s3://, az://, gs:// archives)",
                        local.layout.wals.display()
                    )));
                }
            },
            Command::Delete { archive } => Config::Delete {
                target: archive.try_into()?,
            },
            Command::RebuildXlogdb { archive } => Config::RebuildXlogdb {
                target: archive.try_into()?,
            },
            Command::List { archive } => Config::List {
                target: archive.try_into()?,
            },
        })
    }
}
