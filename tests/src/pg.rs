//! A real, throwaway PostgreSQL 15 server for integration tests.
//!
//! walpipe is driven by PostgreSQL's `archive_command`/`restore_command` and by
//! `pg_receivewal`; mocks would hide exactly the timing and permission problems that matter
//! (a segment visible in the archive while `cp` still writes it; commands run as the
//! `postgres` user). So tests run the real server, set up for speed and isolation
//! (<https://www.postgresql.org/docs/15/app-initdb.html>,
//! <https://www.postgresql.org/docs/15/runtime-config-connection.html>): `initdb --no-sync`,
//! `fsync = off`, `listen_addresses = ''` with a per-cluster
//! socket directory (the port only names the socket file, so parallel tests never clash),
//! and every server-side command run through `runuser -u postgres --` when we are root.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::hermetic::clean_command;
use crate::workdir::{WorkDir, running_as_root};

/// Where the server binaries are unless `PG_BINDIR` says otherwise (Debian's layout; only
/// psql and pgbench have shims on `PATH`).
pub const DEFAULT_PG_BINDIR: &str = "/usr/lib/postgresql/15/bin";

/// The port every cluster uses. With `listen_addresses = ''` it only names the socket file
/// `<socket_dir>/.s.PGSQL.<port>`, and every cluster has its own socket directory.
pub const PORT: u16 = 5499;

/// How long `pg_ctl` may wait for a start or stop, in seconds.
const PG_CTL_TIMEOUT: &str = "60";

/// Lines of server log quoted in error messages.
const LOG_TAIL_LINES: usize = 30;

/// The PostgreSQL binary directory: `$PG_BINDIR`, else [`DEFAULT_PG_BINDIR`].
#[must_use]
pub fn pg_bindir() -> PathBuf {
    std::env::var_os("PG_BINDIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_PG_BINDIR), PathBuf::from)
}

/// The path of a PostgreSQL program, such as `pg_bin("pg_basebackup")`.
#[must_use]
pub fn pg_bin(name: &str) -> PathBuf {
    pg_bindir().join(name)
}

/// A command that runs `program` as the `postgres` user when we are root (through
/// `runuser -u postgres --`), as ourselves otherwise; hermetic ([`clean_command`]) and run
/// from `/`, since `postgres` may not be allowed into the test's working directory.
///
/// Use it for everything that creates files the server must own (`initdb`, `pg_ctl`,
/// `pg_basebackup`, copies of data directories). Pass absolute paths.
#[must_use]
pub fn as_postgres(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    };
    clean_command(&mut cmd);
    cmd.current_dir("/");
    cmd
}

/// A throwaway PostgreSQL cluster living in a [`WorkDir`].
///
/// Layout: `<work>/<name>/data` (the data directory), `<name>/sock` (its unix socket),
/// `<name>/server.log`, with `<name>` the first free of `pg`, `pg2`, `pg3`, ... Connect as
/// user `postgres` to database `postgres` (trust authentication), e.g. with
/// [`PgCluster::conninfo`].
///
/// Dropping a running cluster stops it with `pg_ctl -m immediate` (or SIGQUIT to the
/// postmaster if that fails). The cluster holds a clone of the work directory, which is
/// therefore removed only after the server is gone.
#[derive(Debug)]
pub struct PgCluster {
    work: WorkDir,
    data: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    port: u16,
    /// The postmaster's PID while we believe the server runs.
    pid: Option<i32>,
}

impl PgCluster {
    /// Runs `initdb` for a new cluster in `work` and configures it; does not start it.
    ///
    /// Appended to `postgresql.conf`: the port, socket directory, `listen_addresses = ''`,
    /// `fsync = off`, then `extra_conf` verbatim (one `name = value` per line; the last
    /// setting of a name wins), e.g. `archive_mode = on` and an `archive_command`.
    pub fn init(work: &WorkDir, extra_conf: &str) -> io::Result<Self> {
        let mut cluster = Self::new_slot(work, None);
        let out = as_postgres(pg_bin("initdb"))
            .arg("-D")
            .arg(&cluster.data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-locale",
                "-E",
                "UTF8",
            ])
            .arg("--no-sync")
            .output()?;
        check("initdb", &out)?;
        cluster.configure(extra_conf)?;
        Ok(cluster)
    }

    /// Takes over an existing data directory, such as a copy of a `pg_basebackup`, and
    /// configures it like [`PgCluster::init`] does (own socket directory and log, `fsync =
    /// off`, then `extra_conf`); does not start it. For a restore, `extra_conf` sets
    /// `restore_command` and the recovery target, and the caller creates `recovery.signal`
    /// (as `postgres`: see [`as_postgres`]).
    ///
    /// The data directory must be owned by the server's user with mode 0700.
    pub fn adopt(work: &WorkDir, data_dir: &Path, extra_conf: &str) -> io::Result<Self> {
        let mut cluster = Self::new_slot(work, Some(data_dir));
        cluster.configure(extra_conf)?;
        Ok(cluster)
    }

    /// Picks the first free `pg`, `pg2`, ... directory in `work` for sockets and logs.
    fn new_slot(work: &WorkDir, data_dir: Option<&Path>) -> Self {
        let name = (1..=u32::MAX)
            .map(|n| {
                if n == 1 {
                    "pg".to_owned()
                } else {
                    format!("pg{n}")
                }
            })
            .find(|name| !work.join(name).exists())
            .expect("an unused cluster name");
        let base = work.mkdir_owned(&name);
        let sock = work.mkdir_owned(format!("{name}/sock"));
        Self {
            work: work.clone(),
            data: data_dir.map_or_else(|| base.join("data"), Path::to_path_buf),
            sock,
            log: base.join("server.log"),
            port: PORT,
            pid: None,
        }
    }

    /// Appends our settings and `extra_conf` to `postgresql.conf`.
    fn configure(&mut self, extra_conf: &str) -> io::Result<()> {
        let conf_path = self.data.join("postgresql.conf");
        // Appending keeps the file's owner (postgres) even when we are root.
        let mut conf = OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open {}: {e}", conf_path.display()),
                )
            })?;
        write!(
            conf,
            "\n# --- walpipe-tests ---\n\
             port = {port}\n\
             listen_addresses = ''\n\
             unix_socket_directories = '{sock}'\n\
             fsync = off\n\
             {extra_conf}\n",
            port = self.port,
            sock = self.sock.display(),
        )
    }

    /// Starts the server (`pg_ctl start -w`); the error quotes the server log's tail.
    pub fn start(&mut self) -> io::Result<()> {
        let out = as_postgres(pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", PG_CTL_TIMEOUT, "start"])
            .output()?;
        self.after_start("pg_ctl start", &out)
    }

    /// Stops the server (`pg_ctl stop -m fast -w`): a clean shutdown with a checkpoint.
    pub fn stop(&mut self) -> io::Result<()> {
        let out = as_postgres(pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", PG_CTL_TIMEOUT, "stop"])
            .output()?;
        check("pg_ctl stop", &out).map_err(|e| self.with_log(&e))?;
        self.pid = None;
        Ok(())
    }

    /// Restarts the server (`pg_ctl restart -m fast -w`), e.g. after changing
    /// `archive_mode`; the error quotes the server log's tail.
    pub fn restart(&mut self) -> io::Result<()> {
        let out = as_postgres(pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-m", "fast", "-w", "-t", PG_CTL_TIMEOUT, "restart"])
            .output()?;
        self.after_start("pg_ctl restart", &out)
    }

    fn after_start(&mut self, what: &str, out: &Output) -> io::Result<()> {
        if let Err(e) = check(what, out) {
            // pg_ctl may give up waiting while the server still comes up: remember its
            // PID, if any, so that Drop stops it.
            self.pid = self.read_postmaster_pid().ok();
            return Err(self.with_log(&e));
        }
        self.pid = Some(self.read_postmaster_pid().map_err(|e| self.with_log(&e))?);
        Ok(())
    }

    /// The postmaster's PID: the first line of `postmaster.pid`.
    fn read_postmaster_pid(&self) -> io::Result<i32> {
        let path = self.data.join("postmaster.pid");
        let text = fs::read_to_string(&path)?;
        text.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("no PID in {}", path.display())))
    }

    /// Runs `sql` with `psql -X -q -At -v ON_ERROR_STOP=1`, fed on standard input, so it
    /// may hold several statements (each runs in its own transaction, like a script).
    /// Returns the rows of all results, `|`-separated, one per line, trimmed.
    ///
    /// The error names the SQL and includes psql's stderr.
    pub fn psql(&self, sql: &str) -> io::Result<String> {
        let mut cmd = Command::new(pg_bin("psql"));
        clean_command(&mut cmd);
        cmd.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", "postgres"])
            .args(["-d", "postgres", "-f", "-"]);
        self.connect_args(&mut cmd);
        let out = run_with_stdin(&mut cmd, sql.as_bytes())?;
        check(&format!("psql {sql:?}"), &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs `pgbench` against database `postgres` with `args` (options only, e.g.
    /// `["-i", "-s", "1"]` or `["-c", "2", "-T", "3", "-n"]`); returns its stdout.
    pub fn pgbench<I, S>(&self, args: I) -> io::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(pg_bin("pgbench"));
        clean_command(&mut cmd);
        self.connect_args(&mut cmd);
        cmd.args(["-U", "postgres"]).args(args).arg("postgres");
        let out = cmd.stdin(Stdio::null()).output()?;
        check("pgbench", &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Takes a base backup into `<work>/<rel>` with `pg_basebackup -c fast --no-sync`
    /// plus `extra_args`, run as `postgres`; returns the backup's path.
    ///
    /// With `["-X", "none"]` the backup carries no WAL and waits until the WAL it needs is
    /// archived (so `archive_mode` must be on): the restore then exercises
    /// `restore_command`. With `["-X", "stream"]` it is self-contained.
    pub fn base_backup<I, S>(&self, rel: impl AsRef<Path>, extra_args: I) -> io::Result<PathBuf>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let dest = self.work.join(rel);
        let mut cmd = as_postgres(pg_bin("pg_basebackup"));
        self.connect_args(&mut cmd);
        cmd.args(["-U", "postgres", "-c", "fast", "--no-sync", "-D"])
            .arg(&dest)
            .args(extra_args);
        check("pg_basebackup", &cmd.stdin(Stdio::null()).output()?)?;
        Ok(dest)
    }

    /// Adds `-h <socket_dir> -p <port>` (understood by psql, pgbench, `pg_basebackup`,
    /// `pg_receivewal`, ...).
    pub fn connect_args(&self, cmd: &mut Command) {
        cmd.arg("-h")
            .arg(&self.sock)
            .arg("-p")
            .arg(self.port.to_string());
    }

    /// A libpq connection string for this cluster (e.g. for the `postgres` crate).
    #[must_use]
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.sock.display(),
            self.port
        )
    }

    /// Forces a WAL switch and returns the name of the segment it closed
    /// (`pg_walfile_name(pg_switch_wal())`). If nothing was written since the last switch,
    /// that is the previous (already closed) segment.
    pub fn switch_wal(&self) -> io::Result<String> {
        self.psql("SELECT pg_walfile_name(pg_switch_wal())")
    }

    /// Waits until the archiver has *finished* with `segment`, i.e. until
    /// `pg_wal/archive_status/<segment>.done` exists. The file being visible in the archive
    /// is not enough: `cp` may still be writing it.
    ///
    /// Fails with [`io::ErrorKind::TimedOut`] after `timeout`, quoting the server log (a
    /// failing `archive_command` is reported there).
    pub fn wait_archived(&self, segment: &str, timeout: Duration) -> io::Result<()> {
        let status = self.data.join("pg_wal/archive_status");
        let done = status.join(format!("{segment}.done"));
        let deadline = Instant::now() + timeout;
        while !done.exists() {
            if Instant::now() >= deadline {
                let ready = status.join(format!("{segment}.ready")).exists();
                let msg = format!(
                    "{segment} not archived after {timeout:?} ({}.ready {})",
                    segment,
                    if ready { "exists" } else { "is missing" },
                );
                return Err(self.with_log(&io::Error::new(io::ErrorKind::TimedOut, msg)));
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// The data directory.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The unix socket directory (the `host` to connect to).
    #[must_use]
    pub fn socket_dir(&self) -> &Path {
        &self.sock
    }

    /// The port (it only names the socket file).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server log file.
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The work directory the cluster lives in.
    #[must_use]
    pub fn work_dir(&self) -> &WorkDir {
        &self.work
    }

    /// Whether the server was started and not stopped through this value.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.pid.is_some()
    }

    /// The last `lines` lines of the server log (empty if there is none yet).
    #[must_use]
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `err` with the server log's tail appended.
    fn with_log(&self, err: &io::Error) -> io::Error {
        io::Error::new(
            err.kind(),
            format!(
                "{err}\n--- tail of {} ---\n{}",
                self.log.display(),
                self.log_tail(LOG_TAIL_LINES)
            ),
        )
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        let stopped = as_postgres(pg_bin("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", PG_CTL_TIMEOUT, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !stopped {
            // SIGQUIT is PostgreSQL's immediate shutdown.
            if let Err(e) = kill(Pid::from_raw(pid), Signal::SIGQUIT) {
                eprintln!("walpipe-tests: cannot stop postmaster {pid}: {e}");
            }
        }
    }
}

/// Runs `cmd` with `input` on its standard input, capturing stdout and stderr.
pub(crate) fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Write from another thread: a large output could otherwise fill the stdout pipe
    // while we still block on writing the input.
    thread::scope(|scope| {
        let writer = scope.spawn(move || stdin.write_all(input));
        let out = child.wait_with_output();
        let written = writer.join().expect("the stdin writer does not panic");
        let out = out?;
        // A broken pipe only means the child stopped reading; its status tells why.
        match written {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
            _ => Ok(out),
        }
    })
}

/// `Ok` if the process succeeded, else an error naming `what` with its status and stderr.
fn check(what: &str, out: &Output) -> io::Result<()> {
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end(),
        if out.stdout.is_empty() {
            String::new()
        } else {
            format!(
                "\nstdout: {}",
                String::from_utf8_lossy(&out.stdout).trim_end()
            )
        }
    )))
}
