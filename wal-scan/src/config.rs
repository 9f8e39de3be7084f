//! The resolved configuration: what a scan does, validated, with every default filled in.
//!
//! [`crate::cli::Args`] mirrors the command line; this is what the logic sees. Defaults
//! that need thought live here, once: the server name of a queue (Barman's layout is
//! `<home>/<server>/incoming`, so it is the queue's parent directory) and the xlog.db of an
//! archive together with the lock that guards it. A cloud archive (a URL) is resolved to
//! what `wal-store list` needs: the URL, the server and the cloud flags to pass on.

use std::path::{Path, PathBuf};

use wal_core::WalError;
use wal_core::layout::ServerLayout;
use wal_core::lock::xlogdb_lock_path;
use wal_core::xlogdb::Xlogdb;

use crate::cli::{ArchiveArgs, Args, CloudArgs, Command, QueueArgs};

/// Suffix of Barman's catalogue file name (`XLOGDB_NAME = "{server}-xlog.db"`).
const XLOGDB_SUFFIX: &str = "-xlog.db";

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// What to scan.
    pub scan: Scan,
    /// Whether plain WAL files of queues and named files are checked for WAL's shape.
    pub shape: ShapeCheck,
}

/// Whether to check that a plain WAL file has the shape of WAL for its name
/// ([`wal_core::shape`]) before it becomes a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeCheck {
    /// Check: a file that fails becomes an error record (`corrupt`) and stays queued.
    On,
    /// `--no-header-check`.
    Off,
}

/// The scan to run.
#[derive(Debug, Clone)]
pub enum Scan {
    /// A queue directory (incoming or streaming).
    Queue(QueueConfig),
    /// Files named on the command line, and what to archive ahead of the first.
    Files(Vec<PathBuf>, Option<LookAhead>),
    /// A local archive.
    Archive(ArchiveConfig),
    /// A cloud archive.
    Cloud(CloudConfig),
}

/// `wal-scan file --look-ahead`: what to add after the named file.
#[derive(Debug, Clone, PartialEq)]
pub struct LookAhead {
    /// Most segments added.
    pub count: usize,
    /// Until when the stages may work on them, seconds since the epoch.
    pub until: f64,
    /// Where the marks of segments stored ahead already are.
    pub marks: Option<PathBuf>,
}

/// `--look-ahead N|auto` and the rest, checked (as `wal-store settled` checks them).
fn look_ahead(files: &crate::cli::FileArgs) -> Result<Option<LookAhead>, WalError> {
    let Some(count) = files.look_ahead.as_deref() else {
        return Ok(None);
    };
    let count = wal_core::lookahead::parse_count(count)?;
    let time = wal_core::lookahead::check_time(files.look_ahead_time)?;
    if files.paths.len() != 1 {
        return Err(WalError::Usage(
            "--look-ahead: name one file (archive_command's %p)".into(),
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    Ok(Some(LookAhead {
        count,
        until: now + time,
        marks: files.marks.clone(),
    }))
}

/// Which queue, and so which of Barman's archivers this scan stands in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// archive_command's drop queue (Barman's `FileWalArchiver`).
    Incoming,
    /// pg_receivewal's directory (Barman's `StreamingWalArchiver`).
    Streaming,
}

impl QueueKind {
    /// Barman's archiver name, as its log messages say it.
    #[must_use]
    pub fn archiver_name(self) -> &'static str {
        match self {
            QueueKind::Incoming => "file archival",
            QueueKind::Streaming => "streaming",
        }
    }
}

/// A queue scan.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Incoming or streaming.
    pub kind: QueueKind,
    /// The queue directory.
    pub dir: PathBuf,
    /// How many entries of the sorted listing to look at; 0 means all.
    pub batch_size: usize,
    /// The server, for messages.
    pub server: String,
}

/// An archive listing.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// The archive directory.
    pub dir: PathBuf,
    /// Where compression and encryption of archived files are recorded.
    pub catalogue: Catalogue,
    /// The catalogue was named with --xlogdb: it must exist. The default one may be
    /// missing (an archive Barman never catalogued, or one being rebuilt).
    pub xlogdb_required: bool,
}

/// A cloud archive, listed by `wal-store list`.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudConfig {
    /// The archive URL as given (`s3://BUCKET/PREFIX`); wal-store parses it.
    pub url: String,
    /// The server: the key component after the prefix.
    pub server: String,
    /// The cloud flags to pass on, in order, as (flag, value).
    pub flags: Vec<(&'static str, String)>,
}

/// How to read the archive's xlog.db.
#[derive(Debug, Clone)]
pub enum Catalogue {
    /// Under Barman's xlog.db lock: the server is known, so the lock file is too.
    Locked(Xlogdb),
    /// A catalogue given by path whose server is unknown: nobody else can be locking it
    /// under a name we could guess, so it is read as is.
    Unlocked(PathBuf),
}

impl Config {
    /// Validates `args` and fills in the defaults.
    pub fn from_args(args: Args) -> Result<Config, WalError> {
        let scan = match args.command {
            Command::Incoming(queue) => Scan::Queue(queue_config(QueueKind::Incoming, queue)?),
            Command::Streaming(queue) => Scan::Queue(queue_config(QueueKind::Streaming, queue)?),
            Command::File(files) => {
                let ahead = look_ahead(&files)?;
                Scan::Files(files.paths, ahead)
            }
            Command::Archive(archive) if is_cloud_url(&archive.dir) => {
                Scan::Cloud(cloud_config(archive)?)
            }
            Command::Archive(archive) => Scan::Archive(archive_config(archive)?),
        };
        let shape = if args.no_header_check {
            ShapeCheck::Off
        } else {
            ShapeCheck::On
        };
        Ok(Config { scan, shape })
    }
}

/// Refuses a directory whose path is not UTF-8: every record names its files by path, as
/// a JSON string, which cannot hold such a path (configuration error, exit 78).
fn utf8_dir(what: &str, dir: &Path) -> Result<(), WalError> {
    if dir.to_str().is_some() {
        return Ok(());
    }
    Err(WalError::Config(format!(
        "{what} {}: the path is not UTF-8, and records carry paths as JSON strings",
        dir.display()
    )))
}

fn queue_config(kind: QueueKind, args: QueueArgs) -> Result<QueueConfig, WalError> {
    utf8_dir("queue", &args.dir)?;
    let server = match args.server {
        Some(server) => non_empty_server(server)?,
        None => server_from_queue_dir(&args.dir)?,
    };
    Ok(QueueConfig {
        kind,
        dir: args.dir,
        batch_size: args.batch_size,
        server,
    })
}

/// Barman's layout puts a server's queues in `<home>/<server>/{incoming,streaming}`.
///
/// The path is made absolute without resolving symlinks: a queue directory that is a
/// symlink to another disk still belongs to the server whose directory holds the link.
/// Only a path ending in `..` is resolved, as it names no directory by itself.
fn server_from_queue_dir(dir: &Path) -> Result<String, WalError> {
    let cannot = || {
        WalError::Usage(format!(
            "cannot infer the server name from {}: give --server",
            dir.display()
        ))
    };
    let mut absolute = std::path::absolute(dir).map_err(|_| cannot())?;
    if absolute.file_name().is_none() {
        absolute = absolute.canonicalize().map_err(|_| cannot())?;
    }
    absolute
        .parent()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .map(str::to_owned)
        .ok_or_else(cannot)
}

fn non_empty_server(server: String) -> Result<String, WalError> {
    if server.is_empty() {
        Err(WalError::Usage("--server: the server name is empty".into()))
    } else {
        Ok(server)
    }
}

fn archive_config(args: ArchiveArgs) -> Result<ArchiveConfig, WalError> {
    utf8_dir("archive", &args.dir)?;
    let server = args.server.map(non_empty_server).transpose()?;
    let xlogdb_required = args.xlogdb.is_some();
    let catalogue = match (server, args.xlogdb) {
        (Some(server), None) => {
            Catalogue::Locked(ServerLayout::from_archive(&args.dir, &server).xlogdb())
        }
        (Some(server), Some(path)) => Catalogue::Locked(locked_at(&args.dir, &server, path)),
        (None, Some(path)) => match server_of_xlogdb(&path) {
            // `<server>-xlog.db`: the file names its server, and so its lock.
            Some(server) => Catalogue::Locked(locked_at(&args.dir, &server, path)),
            None => Catalogue::Unlocked(path),
        },
        (None, None) => {
            return Err(WalError::Usage(
                "archive: give --server NAME (the catalogue is DIR/NAME-xlog.db) or --xlogdb PATH"
                    .into(),
            ));
        }
    };
    Ok(ArchiveConfig {
        dir: args.dir,
        catalogue,
        xlogdb_required,
    })
}

/// Whether `dir` names a cloud archive: anything with a `scheme://`, as wal-store reads
/// `--archive` (it refuses schemes it does not know, so the list of them lives there).
fn is_cloud_url(dir: &Path) -> bool {
    dir.to_str().is_some_and(|text| text.contains("://"))
}

fn cloud_config(args: ArchiveArgs) -> Result<CloudConfig, WalError> {
    let url = args
        .dir
        .to_str()
        .expect("is_cloud_url saw UTF-8")
        .to_owned();
    let Some(server) = args.server else {
        return Err(WalError::Usage(format!(
            "archive {url}: give --server NAME (the keys are PREFIX/NAME/wals/...)"
        )));
    };
    let server = non_empty_server(server)?;
    if args.xlogdb.is_some() {
        return Err(WalError::Usage(format!(
            "archive {url}: --xlogdb is for local archives (a cloud archive's keys say how \
             each file is stored)"
        )));
    }
    Ok(CloudConfig {
        url,
        server,
        flags: cloud_flags(args.cloud),
    })
}

/// The flags given, for `wal-store list` (which validates their values).
fn cloud_flags(args: CloudArgs) -> Vec<(&'static str, String)> {
    let CloudArgs {
        endpoint_url,
        profile,
        region,
        timeout,
        request_timeout,
    } = args;
    [
        ("--endpoint-url", endpoint_url),
        ("--profile", profile),
        ("--region", region),
        ("--timeout", timeout.map(|secs| secs.to_string())),
        (
            "--request-timeout",
            request_timeout.map(|secs| secs.to_string()),
        ),
    ]
    .into_iter()
    .filter_map(|(flag, value)| value.map(|value| (flag, value)))
    .collect()
}

/// The catalogue at `path`, locked as wal-store and Barman lock the server's xlog.db.
fn locked_at(dir: &Path, server: &str, path: PathBuf) -> Xlogdb {
    let layout = ServerLayout::from_archive(dir, server);
    Xlogdb::at(path, xlogdb_lock_path(&layout.lock_dir, server))
}

/// `pg` for `…/pg-xlog.db`.
fn server_of_xlogdb(path: &Path) -> Option<String> {
    path.file_name()?
        .to_str()?
        .strip_suffix(XLOGDB_SUFFIX)
        .filter(|server| !server.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(argv: &[&str]) -> Result<Config, WalError> {
        let mut full = vec!["wal-scan"];
        full.extend_from_slice(argv);
        Config::from_args(Args::try_parse_from(full).unwrap())
    }

    #[test]
    fn the_server_defaults_to_the_queue_parent() {
        let Scan::Queue(queue) = config(&["incoming", "/var/lib/barman/pg/incoming/"])
            .unwrap()
            .scan
        else {
            panic!("not a queue scan");
        };
        assert_eq!(queue.server, "pg");
        assert_eq!(queue.kind, QueueKind::Incoming);
        assert_eq!(queue.batch_size, 0);
        let Scan::Queue(queue) = config(&["streaming", "/srv/x/./streaming", "--batch-size", "5"])
            .unwrap()
            .scan
        else {
            panic!("not a queue scan");
        };
        assert_eq!((queue.server.as_str(), queue.batch_size), ("x", 5));
        assert!(config(&["incoming", "/"]).is_err());
        assert!(config(&["incoming", "/q", "--server", ""]).is_err());
    }

    #[test]
    fn the_archive_catalogue_and_its_lock() {
        let Scan::Archive(archive) =
            config(&["archive", "/var/lib/barman/pg/wals", "--server", "pg"])
                .unwrap()
                .scan
        else {
            panic!("not an archive scan");
        };
        let Catalogue::Locked(db) = archive.catalogue else {
            panic!("not locked");
        };
        assert_eq!(db.path(), Path::new("/var/lib/barman/pg/wals/pg-xlog.db"));

        let Scan::Archive(archive) = config(&["archive", "/a", "--xlogdb", "/elsewhere/catalogue"])
            .unwrap()
            .scan
        else {
            panic!("not an archive scan");
        };
        assert!(
            matches!(archive.catalogue, Catalogue::Unlocked(p) if p == Path::new("/elsewhere/catalogue"))
        );
        assert_eq!(
            server_of_xlogdb(Path::new("/x/pg-xlog.db")).as_deref(),
            Some("pg")
        );
        assert_eq!(server_of_xlogdb(Path::new("/x/-xlog.db")), None);

        let err = config(&["archive", "/a"]).unwrap_err();
        assert_eq!(err.kind(), wal_core::ErrorKind::Usage);
    }

    #[test]
    fn a_cloud_archive_is_listed_with_the_flags_given() {
        let Scan::Cloud(cloud) = config(&[
            "archive",
            "s3://wals/prod",
            "--server",
            "pg",
            "--endpoint-url",
            "http://127.0.0.1:3900",
            "--timeout",
            "5",
            "--request-timeout",
            "2.5",
        ])
        .unwrap()
        .scan
        else {
            panic!("not a cloud scan");
        };
        assert_eq!(
            cloud,
            CloudConfig {
                url: "s3://wals/prod".into(),
                server: "pg".into(),
                flags: vec![
                    ("--endpoint-url", "http://127.0.0.1:3900".into()),
                    ("--timeout", "5".into()),
                    ("--request-timeout", "2.5".into()),
                ],
            }
        );
        let Scan::Cloud(cloud) = config(&["archive", "az://c", "--server", "pg", "--profile", "p"])
            .unwrap()
            .scan
        else {
            panic!("not a cloud scan");
        };
        assert_eq!(cloud.flags, vec![("--profile", "p".to_owned())]);
        // Any scheme goes to wal-store, which names the ones it knows.
        assert!(matches!(
            config(&["archive", "ftp://x", "--server", "pg"])
                .unwrap()
                .scan,
            Scan::Cloud(_)
        ));
        // A directory ignores the cloud flags.
        assert!(matches!(
            config(&["archive", "/a", "--server", "pg", "--region", "r"])
                .unwrap()
                .scan,
            Scan::Archive(_)
        ));
    }

    #[test]
    fn a_cloud_archive_needs_a_server_and_no_xlogdb() {
        for argv in [
            &["archive", "s3://wals"][..],
            &["archive", "s3://wals", "--server", ""],
            &["archive", "s3://wals", "--xlogdb", "/x/pg-xlog.db"],
            &["archive", "s3://wals", "--server", "pg", "--xlogdb", "/x"],
        ] {
            let err = config(argv).unwrap_err();
            assert_eq!(err.kind(), wal_core::ErrorKind::Usage, "{argv:?}");
        }
    }
}
