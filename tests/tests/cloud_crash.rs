//! Crash safety of a cloud archive: `scripts/archive-wal --archive s3://…` into a real
//! Garage server, its whole process group SIGKILLed at random moments, re-run until the
//! queue is empty. The promise is the local archive's (`tests/tests/crash.rs`, whose
//! machinery this shares through the kit's [`walpipe_tests::crash`] and
//! [`walpipe_tests::convergence`]): never lose a WAL; a source leaves the queue only once
//! its object is stored complete and catalogued; any process may be killed at any moment,
//! and running again finishes the work with nothing lost and no false duplicate or
//! conflict.
//!
//! Two tests: zstd, and zstd + gpg (`--recipient`, with `--key` so that an encrypted object
//! a killed run left behind can be compared with its source, as Barman needs to).
//!
//! The queue holds real segments, four synthetic ones (three incompressible, one of the
//! kit's mixed content) and a history file. Both of wal-store's upload paths are killed in:
//! odd epochs give it `WALPIPE_PART_SIZE=5` (MiB, S3's smallest part; archive-wal passes
//! the variable through), so every object over 5 MiB — the incompressible segments and the
//! larger real ones — goes up as a multipart upload and kills land with parts in flight;
//! even epochs keep the default (64 MiB), so every WAL goes up as one create-only PUT, as
//! in a default deployment, and kills cut 16 MiB bodies short.
//!
//! A test runs epochs, each a fresh home and server name (`pg1`, `pg2`, …) in the same
//! bucket, until its time budget is spent: the queue is filled, archive-wal is killed round
//! after round until the queue is empty, then run twice more unkilled and everything is
//! checked. The kill moments (one seed, printed at the start and on failure;
//! `WALPIPE_CRASH_SEED=N` replays the choices): a delay (0-30 ms, 0-2.5 s); wal-store in a
//! durability syscall (xlog.db's flock and fsync, removing sources); wal-store having read
//! N bytes of the files it uploads (`rchar`: kills spread over the uploads); bytes sent and
//! not yet acknowledged on one of wal-store's connections to Garage (a body on the wire); a
//! new multipart upload seen in the bucket with at least k parts received (the first round
//! of an epoch always kills on one of these two); a new object listed (stored, not yet
//! catalogued); xlog.db grown (catalogued, sources not yet removed); a source gone from
//! the queue (removal under way); a `.compare` copy in the queue (wal-store comparing an
//! object a killed run left). The whole process group is killed, or wal-store alone.
//!
//! After every kill, read with botocore (the kit's [`S3Reader`], independent of walpipe's
//! client): each WAL is still queued or its object, at Barman's key, decrypts (real gpg)
//! and decompresses to the original bytes — never neither; no object under the server's
//! prefix is partial, corrupt or under a key that is no original's; a WAL leaves the queue
//! only catalogued; xlog.db names each WAL at most once; nothing in errors/. After the
//! clean runs: the queue holds no WAL, each WAL is stored exactly once, and xlog.db
//! (Barman's place for a cloud archive: `<home>/<server>/meta/<server>-xlog.db`) lists each
//! once with the object's size, `zstd`, `gpg` when encrypted, and the source's mtime.
//!
//! The report says where the kills landed, with the server's own evidence of interrupted
//! uploads: the request bodies Garage's log says were cut short, and the unfinished
//! multipart uploads the bucket holds after a kill. Those are invisible to listings and
//! readers; they are counted, not failed on (on S3, reclaiming them is a lifecycle rule's
//! job). A comparison's copy (`.compare`) left in a queue after the clean runs fails the
//! test (the next put of its WAL must sweep it); other hidden temps are counted.
//!
//! Needs `cargo build --workspace --bins` first. Run with `--nocapture` for the report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use wal_core::shape::{self, HEADER_LENGTH};
use wal_core::{Compression, WalName};
use walpipe_tests::convergence::{
    BASE_MTIME, Catalogue, Original, Queue, WalState, column_problems, compare_stored, file_len,
    hidden_names, leftover_problems, names_in, new_windows, originals, wal_state,
};
use walpipe_tests::crash::{
    Event, Outcome, Pipeline, Rng, RunLog, SeedReport, Tally, Trigger, Watch, draw_plan,
};
use walpipe_tests::s3reader::{S3Object, Upload};
use walpipe_tests::wrappers::bin_dir;
use walpipe_tests::{
    Garage, Gpg, S3Reader, SEGMENT_SIZE, WorkDir, clean_cloud_command, script, wal_segment_of,
};

/// The archive is `s3://<bucket>/PREFIX`; each epoch's server keeps its keys under
/// `PREFIX/<server>/wals/`.
const PREFIX: &str = "crash";
/// Real segments queued (compressed, the larger ones exceed the part size).
const REAL_SEGMENTS: usize = 12;
/// Incompressible synthetic segments: four parts each in multipart epochs.
const RANDOM_SEGMENTS: usize = 3;
/// wal-store's `--part-size` in MiB (`WALPIPE_PART_SIZE`) in multipart epochs: S3's
/// smallest.
const PART_SIZE_MIB: &str = "5";
/// Epochs at most, kill rounds per epoch at most, and the time the kill rounds of all
/// epochs may take (an epoch under way is finished, unkilled, when it runs out).
const MAX_EPOCHS: usize = 12;
const MAX_ROUNDS_PER_EPOCH: usize = 30;
const KILL_PHASE_BUDGET: Duration = Duration::from_secs(75);
/// How often the bucket is looked at while a run goes, for the events that need it.
const S3_POLL: Duration = Duration::from_millis(15);
const STAGES: [&str; 4] = ["wal-scan", "wal-compress", "wal-encrypt", "wal-store"];
/// archive-wal's pipeline; a run still going after 120 s is hung (the store's own
/// timeouts are 60 s a WAL).
const PIPELINE: Pipeline = Pipeline {
    stages: &STAGES,
    hang_timeout: Duration::from_secs(120),
};

/// The system identifier of the cluster that wrote the real segment `original`, from its
/// long page header.
fn system_identifier(original: &Original) -> u64 {
    let bytes = fs::read(&original.bytes_at).expect("read a real segment");
    let name = WalName::parse(&original.name).expect("a segment name");
    shape::check_segment(&name, &bytes, bytes.len() as u64)
        .unwrap_or_else(|e| panic!("{}: {e}", original.name))
        .system_identifier
}

// ---------------------------------------------------------------------------------------
// Kill plans

/// What this test watches for (besides delays and wal-store's durability steps).
#[derive(Debug, Clone, Copy)]
enum Cloud {
    /// wal-store has read this many bytes (`rchar`): mostly the files it uploads.
    Read { bytes: u64 },
    /// wal-store has bytes sent and not yet acknowledged on a connection to Garage: a
    /// request body on the wire.
    Sending,
    /// A multipart upload begun since the run started has received this many parts.
    Multipart { parts: usize },
    /// The bucket lists an object more than when the run started (not catalogued yet).
    Stored,
    /// xlog.db grew (catalogued, sources maybe not removed yet).
    Catalogued,
    /// A WAL left the queue (its source removed, others maybe not yet).
    SourceRemoved,
    /// A `.compare` copy appeared in the queue: wal-store comparing an object it found.
    Comparing,
}

impl Event for Cloud {
    fn label(&self) -> &'static str {
        match self {
            Cloud::Read { .. } => "store-read-bytes",
            Cloud::Sending => "body-on-the-wire",
            Cloud::Multipart { .. } => "multipart-parts",
            Cloud::Stored => "object-listed",
            Cloud::Catalogued => "after-xlogdb",
            Cloud::SourceRemoved => "source-removed",
            Cloud::Comparing => "comparing-download",
        }
    }
}

type Plan = walpipe_tests::crash::Plan<Cloud>;

/// A plan for one round (the kit's [`draw_plan`]: a seed replays). `multipart`: the
/// epoch uploads in parts (else a multipart event would never come, and a body on the wire
/// is looked for instead). The `first` round of an epoch always kills mid-upload (on a
/// multipart upload's parts, or on a body on the wire), so that every epoch tries its
/// upload path. Three kills in four take the whole group, the fourth wal-store alone.
fn plan(rng: &mut Rng, multipart: bool, first: bool) -> Plan {
    draw_plan(rng, [75, 100], |kind, param| {
        let micros = |bound: u64| Duration::from_micros((param >> 8) % bound);
        let seen = |event, after| Trigger::Seen { event, after };
        match if first { 60 + kind % 12 } else { kind } {
            0..8 => Trigger::early(param),
            8..20 => Trigger::Delay {
                label: "delay-0-2.5s",
                after: Duration::from_millis(param % 2501),
            },
            20..25 => Trigger::StoreStep { skip: param % 4 },
            25..30 => seen(Cloud::SourceRemoved, micros(500)),
            30..45 => seen(
                Cloud::Read {
                    bytes: param % (80 << 20),
                },
                Duration::ZERO,
            ),
            45..60 => seen(Cloud::Sending, Duration::ZERO),
            60..72 if !multipart => seen(Cloud::Sending, micros(2000)),
            60..72 => seen(
                Cloud::Multipart {
                    parts: (param % 4) as usize,
                },
                micros(20_000),
            ),
            72..82 => seen(Cloud::Stored, micros(3000)),
            82..92 => seen(Cloud::Catalogued, micros(3000)),
            _ => seen(Cloud::Comparing, micros(2000)),
        }
    })
}

// ---------------------------------------------------------------------------------------
// The bucket, the originals, the epochs

/// What one test works with: the server, its reader, the key pair when encrypting, the
/// originals, and what has been checked of the bucket so far.
struct Rig {
    work: WorkDir,
    garage: Garage,
    reader: S3Reader,
    gpg: Option<Gpg>,
    originals: Vec<Original>,
    log: RunLog,
    seed: u64,
    /// Object key -> the ETag whose content was found identical to the original.
    verified: BTreeMap<String, String>,
    /// Verified objects found later with another ETag (replaced).
    replaced: usize,
}

/// One epoch: a fresh home and server name, the same originals.
struct Epoch {
    /// Objects over 5 MiB go up in parts (else as one PUT).
    multipart: bool,
    server: String,
    home: PathBuf,
    incoming: PathBuf,
    errors: PathBuf,
}

impl Epoch {
    fn xlogdb(&self) -> PathBuf {
        self.home
            .join(&self.server)
            .join("meta")
            .join(format!("{}-xlog.db", self.server))
    }

    /// Where this server's objects are: `PREFIX/<server>/wals/`.
    fn prefix(&self) -> String {
        format!("{PREFIX}/{}/wals/", self.server)
    }
}

impl Rig {
    fn new(seed: u64, encrypted: bool) -> Self {
        let work = WorkDir::new();
        let garage = Garage::start(work.path());
        let reader = S3Reader::start(&garage, garage.bucket());
        let gpg = encrypted.then(|| Gpg::in_dir(work.path()));
        let keep = work.mkdir_owned("originals");
        fs::create_dir(work.join("check")).expect("create the check directory");
        let mut originals = originals(REAL_SEGMENTS, &keep);
        // Incompressible (xorshift bytes), then the kit's mixed content: names of another
        // log file than the real set's, mtimes after theirs. Each opens with the long page
        // header of its name, of the real segments' cluster (wal-store stores nothing
        // that is not WAL-shaped).
        let system_id = system_identifier(&originals[0]);
        let mut bytes = Rng::new(seed, 3);
        for i in 0..=RANDOM_SEGMENTS {
            let name = format!("0000000100000001{i:08X}");
            let mut content = wal_segment_of(&name, seed, SEGMENT_SIZE, system_id);
            if i < RANDOM_SEGMENTS {
                for chunk in content[HEADER_LENGTH..].chunks_mut(8) {
                    chunk.copy_from_slice(&bytes.next_u64().to_le_bytes()[..chunk.len()]);
                }
            }
            let bytes_at = keep.join(&name);
            fs::write(&bytes_at, content).expect("write a synthetic segment");
            originals.push(Original {
                name,
                bytes_at,
                mtime: BASE_MTIME + originals.len() as u64,
                segment: true,
            });
        }
        let log = RunLog::create(work.join("wrapper.log"));
        Rig {
            work,
            garage,
            reader,
            gpg,
            originals,
            log,
            seed,
            verified: BTreeMap::new(),
            replaced: 0,
        }
    }

    /// A fresh home for server `pg<n>`, its queue filled with the originals.
    fn epoch(&self, n: usize) -> Epoch {
        let server = format!("pg{n}");
        let home = self.work.mkdir_owned(format!("home{n}"));
        let incoming = self.work.mkdir_owned(format!("home{n}/{server}/incoming"));
        let errors = self.work.mkdir_owned(format!("home{n}/{server}/errors"));
        for original in &self.originals {
            original.queue_into(&incoming);
        }
        Epoch {
            multipart: n % 2 == 1,
            server,
            home,
            incoming,
            errors,
        }
    }

    /// Barman's key of `original` in `epoch`, with walpipe's extensions.
    fn key_of(&self, epoch: &Epoch, original: &Original) -> String {
        let hash = if original.segment {
            format!("{}/", &original.name[..16])
        } else {
            String::new()
        };
        let gpg = if self.gpg.is_some() { ".gpg" } else { "" };
        format!("{}{hash}{}.zst{gpg}", epoch.prefix(), original.name)
    }

    /// PUT requests (single objects, multipart parts) whose body Garage's log says was
    /// cut short: an upload the kill interrupted mid-body, seen from the server.
    fn cut_bodies(&self) -> (usize, usize) {
        let log = fs::read_to_string(self.garage.dir().join("garage.log")).unwrap_or_default();
        let cut: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("error reading a body") && line.contains(" PUT /"))
            .collect();
        let parts = cut
            .iter()
            .filter(|line| line.contains("partNumber="))
            .count();
        (cut.len() - parts, parts)
    }

    fn encryption(&self) -> Option<&'static str> {
        self.gpg.as_ref().map(|_| "gpg")
    }

    /// `scripts/archive-wal` for `epoch`, in a process group of its own.
    fn spawn(&self, epoch: &Epoch) -> Child {
        let mut cmd = Command::new(script("archive-wal"));
        // clean_cloud_command drops WALPIPE_BIN_DIR too: set it after.
        clean_cloud_command(&mut cmd)
            .env("WALPIPE_BIN_DIR", bin_dir())
            .envs(self.garage.env())
            .arg("--home")
            .arg(&epoch.home)
            .args(["--server", &epoch.server, "--compression", "zstd"])
            .arg("--archive")
            .arg(format!("s3://{}/{PREFIX}", self.garage.bucket()));
        if epoch.multipart {
            cmd.env("WALPIPE_PART_SIZE", PART_SIZE_MIB);
        }
        if let Some(gpg) = &self.gpg {
            cmd.arg("--recipient")
                .arg(gpg.cert())
                .arg("--key")
                .arg(gpg.key());
        }
        Pipeline::spawn(&mut cmd, self.log.path())
    }

    fn fail(&self, context: &str, problems: &str) -> ! {
        self.log.fail(self.seed, context, problems)
    }

    /// Downloads `object` unless this ETag was checked already, then opens it as the real
    /// gpg would (when encrypting) and decompresses it: `Err` unless it is the original.
    fn verify(&mut self, object: &S3Object, original: &Original) -> Result<(), String> {
        match self.verified.get(&object.key) {
            Some(etag) if *etag == object.etag => return Ok(()),
            Some(_) => self.replaced += 1,
            None => {}
        }
        let name = original.name.as_str();
        let check = self.work.join("check");
        fs::remove_dir_all(&check)
            .and_then(|()| fs::create_dir(&check))
            .expect("empty the check directory");
        let downloaded = check.join(name);
        let etag = self.reader.get(&object.key, &downloaded);
        if etag != object.etag {
            return Err(format!(
                "{name}: {} changed while nothing ran: listed {}, served {etag}",
                object.key, object.etag
            ));
        }
        let compressed = match &self.gpg {
            Some(gpg) => {
                let decrypted = downloaded.with_extension("decrypted");
                gpg.decrypt_file(&downloaded, &decrypted)
                    .map_err(|e| format!("{name}: CORRUPT: {}: {e}", object.key))?;
                decrypted
            }
            None => downloaded,
        };
        let (found, corrupt) = compare_stored(&compressed, original)?;
        if let Some(problem) = corrupt {
            return Err(format!("{problem} (object {})", object.key));
        }
        if found != Some(Compression::Zstd) {
            return Err(format!(
                "{name}: {} is stored as {found:?}, want zstd",
                object.key
            ));
        }
        self.verified
            .insert(object.key.clone(), object.etag.clone());
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// What a kill left, and the invariants

#[derive(Debug)]
struct Snapshot {
    queue: Queue,
    objects: Vec<S3Object>,
    uploads: Vec<Upload>,
    catalogue: Catalogue,
    errors: Vec<String>,
}

fn snapshot(rig: &mut Rig, epoch: &Epoch) -> Snapshot {
    Snapshot {
        queue: Queue::read(&epoch.incoming, &rig.originals),
        objects: rig.reader.objects(&epoch.prefix()),
        uploads: rig.reader.uploads(&epoch.prefix()),
        catalogue: Catalogue::read(&epoch.xlogdb()),
        errors: names_in(&epoch.errors),
    }
}

/// The invariants that must hold after any kill; returns where each WAL stands.
fn check_invariants(
    rig: &mut Rig,
    epoch: &Epoch,
    snap: &Snapshot,
) -> Result<BTreeMap<String, WalState>, String> {
    let originals = rig.originals.clone();
    let mut problems = snap.catalogue.problems(&originals);
    let counts = snap.catalogue.counts();
    let keys: BTreeSet<String> = originals.iter().map(|o| rig.key_of(epoch, o)).collect();
    for object in &snap.objects {
        if !keys.contains(&object.key) {
            problems.push(format!(
                "stray object {} ({} bytes): no original's key (partial, or stored under another name)",
                object.key, object.size
            ));
        }
    }
    let mut states = BTreeMap::new();
    for original in &originals {
        let name = original.name.as_str();
        let key = rig.key_of(epoch, original);
        let stored = match snap.objects.iter().find(|o| o.key == key) {
            Some(object) => match rig.verify(object, original) {
                Ok(()) => true,
                Err(problem) => {
                    problems.push(problem);
                    false
                }
            },
            None => false,
        };
        match wal_state(
            name,
            snap.queue.queued.contains(name),
            stored,
            counts.contains_key(name),
        ) {
            Ok(state) => {
                states.insert(original.name.clone(), state);
            }
            Err(problem) => problems.push(problem),
        }
    }
    problems.extend(leftover_problems(&snap.queue, &snap.errors));
    if problems.is_empty() {
        Ok(states)
    } else {
        Err(problems.join("\n"))
    }
}

/// The full check after the clean runs: every WAL stored once and catalogued once.
fn verify_final(rig: &mut Rig, epoch: &Epoch) -> Result<Snapshot, String> {
    let snap = snapshot(rig, epoch);
    let mut problems = Vec::new();
    if let Err(e) = check_invariants(rig, epoch, &snap) {
        problems.push(e);
    }
    if !snap.queue.queued.is_empty() {
        problems.push(format!(
            "still queued after the clean runs: {:?}",
            snap.queue.queued
        ));
    }
    for original in &rig.originals {
        let (lines, count_problem) = snap.catalogue.lines_of(&original.name);
        problems.extend(count_problem);
        let key = rig.key_of(epoch, original);
        let Some(object) = snap.objects.iter().find(|o| o.key == key) else {
            problems.push(format!("{}: no object at {key}", original.name));
            continue;
        };
        if let Some(line) = lines.first() {
            problems.extend(column_problems(
                line,
                original,
                object.size,
                Some(Compression::Zstd.name()),
                rig.encryption(),
            ));
        }
    }
    if problems.is_empty() {
        Ok(snap)
    } else {
        Err(problems.join("\n"))
    }
}

// ---------------------------------------------------------------------------------------
// Watching a run

/// wal-store's connections to Garage at the kill: how many were established, and the
/// bytes sent but not yet acknowledged on them (an upload's body on the wire).
#[derive(Debug, Clone, Copy, Default)]
struct Wire {
    connections: usize,
    unacked: u64,
}

/// `/proc/PID/io`'s `rchar`: bytes the process read with read(2) and friends.
fn read_bytes(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|line| line.strip_prefix("rchar: "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Process `pid`'s TCP connections to 127.0.0.1:`port`, from its socket descriptors and
/// `/proc/PID/net/tcp` (`tx_queue` is what is sent and not yet acknowledged).
fn wire(pid: i32, port: u16) -> Wire {
    let inodes: BTreeSet<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let remote = format!(":{port:04X}");
    let mut found = Wire::default();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, _, rem, state, queues, _, _, _, _, inode, ..] = fields[..] else {
            continue;
        };
        // 01: ESTABLISHED.
        if state == "01" && rem.ends_with(&remote) && inodes.contains(inode) {
            found.connections += 1;
            let tx = queues.split(':').next().unwrap_or("0");
            found.unacked += u64::from_str_radix(tx, 16).unwrap_or(0);
        }
    }
    found
}

/// Tells [`Pipeline::run`] when this test's events happened, and notes the wire at the
/// kill.
struct CloudWatch<'a> {
    reader: &'a mut S3Reader,
    prefix: String,
    xlogdb: PathBuf,
    incoming: PathBuf,
    garage_port: u16,
    objects_before: usize,
    uploads_before: BTreeSet<String>,
    xlogdb_before: u64,
    hidden_before: BTreeSet<String>,
    originals: &'a [Original],
    queued_before: usize,
    last_poll: Option<Instant>,
    at_kill: Option<Wire>,
}

impl CloudWatch<'_> {
    /// Whether the bucket may be asked again ([`S3_POLL`] since the last time).
    fn poll_due(&mut self) -> bool {
        if self.last_poll.is_some_and(|at| at.elapsed() < S3_POLL) {
            return false;
        }
        self.last_poll = Some(Instant::now());
        true
    }
}

impl Watch<Cloud> for CloudWatch<'_> {
    fn seen(&mut self, event: Cloud, store: Option<i32>) -> bool {
        match event {
            Cloud::Read { bytes } => store.is_some_and(|pid| read_bytes(pid) >= bytes),
            Cloud::Sending => store.is_some_and(|pid| wire(pid, self.garage_port).unacked > 0),
            Cloud::Catalogued => file_len(&self.xlogdb) > self.xlogdb_before,
            Cloud::SourceRemoved => {
                Queue::read(&self.incoming, self.originals).queued.len() < self.queued_before
            }
            Cloud::Comparing => hidden_names(&self.incoming)
                .difference(&self.hidden_before)
                .any(|name| name.ends_with(".compare")),
            Cloud::Stored => {
                self.poll_due() && self.reader.objects(&self.prefix).len() > self.objects_before
            }
            Cloud::Multipart { parts } => {
                self.poll_due()
                    && self
                        .reader
                        .uploads(&self.prefix)
                        .iter()
                        .any(|u| !self.uploads_before.contains(&u.id) && u.parts >= parts)
            }
        }
    }

    fn before_kill(&mut self, store: Option<i32>) {
        self.at_kill = store.map(|pid| wire(pid, self.garage_port));
    }
}

/// What a killed round left, beyond the invariants.
#[derive(Debug, Default)]
struct CloudTally {
    kills: Tally,
    epochs: usize,
    /// WAL that kills left stored but not catalogued / catalogued with the source queued.
    left_stored_not_catalogued: usize,
    left_catalogued_still_queued: usize,
    /// Kills after which the bucket had new unfinished multipart uploads.
    mid_multipart: usize,
    /// Those uploads, by the parts they had received.
    uploads_by_parts: BTreeMap<usize, usize>,
    /// Kills with upload bytes unacknowledged on a connection to Garage.
    bytes_on_the_wire: usize,
    /// Kills after which Garage logged request bodies cut short, and those bodies
    /// (single-object PUTs, multipart parts).
    cutting_a_body: usize,
    cut: (usize, usize),
    /// Kills while wal-store had a connection to Garage established.
    connected: usize,
    /// Hidden temps in the queues after the clean runs (never a download temp: those fail
    /// the test).
    hidden_left: usize,
    /// Unfinished multipart uploads in the bucket at the end.
    uploads_left: usize,
    /// Unkilled runs that exited 75 (Garage did not answer in time on the loaded machine):
    /// archive-wal's documented "try again", which the next run does, as cron would.
    temporary_failures: usize,
}

impl CloudTally {
    fn report(&self, test: &str, elapsed: Duration, rig: &Rig) {
        let mut text = self.kills.summary(test, elapsed);
        let _ = writeln!(
            text,
            "  {} epochs of {} WAL; WAL left by a kill stored but not catalogued: {}; catalogued with the source still queued: {}",
            self.epochs,
            rig.originals.len(),
            self.left_stored_not_catalogued,
            self.left_catalogued_still_queued
        );
        let _ = writeln!(
            text,
            "  kills during uploads: {} cut request bodies short (Garage's log: {} single PUTs, {} multipart parts); {} left multipart uploads unfinished ({} uploads, by parts received: {:?}); {} with upload bytes unacknowledged on a connection to Garage; {} with a connection to Garage open",
            self.cutting_a_body,
            self.cut.0,
            self.cut.1,
            self.mid_multipart,
            self.uploads_by_parts.values().sum::<usize>(),
            self.uploads_by_parts,
            self.bytes_on_the_wire,
            self.connected
        );
        let _ = write!(
            text,
            "  left at the end: {} unfinished multipart uploads (invisible to listings and readers); {} hidden temps in the queues; objects replaced after being verified: {}; unkilled runs that exited 75 and were run again: {}",
            self.uploads_left, self.hidden_left, rig.replaced, self.temporary_failures
        );
        eprintln!("{text}");
    }
}

/// How often a clean run that exited 75 is run again before the test fails: a stall of
/// Garage's on the loaded machine is not a defect of walpipe's, a run that never succeeds is.
const TEMPORARY_FAILURE_RETRIES: usize = 2;

/// Exit 75 (EX_TEMPFAIL) from an unkilled run: the store did not answer in time, and
/// archive-wal asks to be run again, having kept every source it had not finished.
fn is_temporary_failure(outcome: &Outcome) -> bool {
    outcome.killed.is_none() && outcome.status.code() == Some(75)
}

/// Runs archive-wal for `epoch` once, killing per `plan` (if any).
fn run_round(rig: &mut Rig, epoch: &Epoch, plan: Option<Plan>) -> (Outcome, Option<Wire>) {
    let uploads_before = rig
        .reader
        .uploads(&epoch.prefix())
        .into_iter()
        .map(|u| u.id)
        .collect();
    let objects_before = rig.reader.objects(&epoch.prefix()).len();
    let child = rig.spawn(epoch);
    let mut watch = CloudWatch {
        reader: &mut rig.reader,
        prefix: epoch.prefix(),
        xlogdb: epoch.xlogdb(),
        incoming: epoch.incoming.clone(),
        garage_port: garage_port(&rig.garage),
        objects_before,
        uploads_before,
        xlogdb_before: file_len(&epoch.xlogdb()),
        hidden_before: hidden_names(&epoch.incoming),
        originals: &rig.originals,
        queued_before: Queue::read(&epoch.incoming, &rig.originals).queued.len(),
        last_poll: None,
        at_kill: None,
    };
    let outcome = PIPELINE.run(child, plan, "archive-wal", &mut watch);
    let at_kill = watch.at_kill;
    (outcome, at_kill)
}

fn garage_port(garage: &Garage) -> u16 {
    let endpoint = garage.endpoint();
    endpoint
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {endpoint}"))
}

/// The two unkilled runs that end an epoch, each run again while it exits 75.
fn clean_runs(rig: &mut Rig, n: usize, epoch: &Epoch, tally: &mut CloudTally) {
    for run in ["final clean run", "second clean run"] {
        rig.log.note(&format!("=== epoch {n}: {run}"));
        let mut outcome = run_round(rig, epoch, None).0;
        tally.kills.add(None::<Plan>, &outcome);
        for _ in 0..TEMPORARY_FAILURE_RETRIES {
            if !is_temporary_failure(&outcome) {
                break;
            }
            tally.temporary_failures += 1;
            rig.log
                .note(&format!("=== epoch {n}: {run} exited 75, run again"));
            outcome = run_round(rig, epoch, None).0;
            tally.kills.add(None::<Plan>, &outcome);
        }
        if !outcome.status.success() {
            rig.fail(
                &format!(
                    "epoch {n}: the {run} of archive-wal failed: {}",
                    outcome.status
                ),
                "",
            );
        }
    }
}

/// One epoch: kill rounds until the queue is empty (or the budget is spent), then two
/// clean runs and the final checks.
fn run_epoch(rig: &mut Rig, n: usize, rng: &mut Rng, tally: &mut CloudTally, deadline: Instant) {
    let epoch = rig.epoch(n);
    tally.epochs += 1;
    let mut previous: BTreeMap<String, WalState> = BTreeMap::new();
    let mut uploads: BTreeSet<String> = BTreeSet::new();
    for round in 1..=MAX_ROUNDS_PER_EPOCH {
        if Instant::now() >= deadline
            || Queue::read(&epoch.incoming, &rig.originals)
                .queued
                .is_empty()
        {
            break;
        }
        let plan = plan(rng, epoch.multipart, round == 1);
        let context = format!("epoch {n} round {round}");
        rig.log.note(&format!("=== {context}: {plan:?}"));
        let (outcome, wire) = run_round(rig, &epoch, Some(plan));
        rig.log.note(&format!(
            "=== {context}: {:?} after {:?}, exit {}, wire {wire:?}",
            outcome.killed, outcome.elapsed, outcome.status
        ));
        tally.kills.add(Some(plan), &outcome);
        if outcome.killed.is_none() && is_temporary_failure(&outcome) {
            tally.temporary_failures += 1;
        } else if outcome.killed.is_none() && !outcome.status.success() {
            rig.fail(
                &format!("{context}: archive-wal failed unkilled: {}", outcome.status),
                "",
            );
        }
        if outcome.killed.is_some()
            && let Some(wire) = wire
        {
            tally.connected += usize::from(wire.connections > 0);
            tally.bytes_on_the_wire += usize::from(wire.unacked > 0);
        }
        let snap = snapshot(rig, &epoch);
        let mut mid_multipart = false;
        for upload in &snap.uploads {
            if uploads.insert(upload.id.clone()) {
                mid_multipart = true;
                *tally.uploads_by_parts.entry(upload.parts).or_default() += 1;
                rig.log.note(&format!("=== {context}: left {upload:?}"));
            }
        }
        tally.mid_multipart += usize::from(mid_multipart);
        let cut = rig.cut_bodies();
        if cut != tally.cut {
            tally.cutting_a_body += 1;
            rig.log.note(&format!(
                "=== {context}: Garage saw {} PUT bodies cut short",
                cut.0 + cut.1 - tally.cut.0 - tally.cut.1
            ));
            tally.cut = cut;
        }
        match check_invariants(rig, &epoch, &snap) {
            Ok(states) => {
                let (stored, catalogued) = new_windows(&previous, &states);
                tally.left_stored_not_catalogued += stored;
                tally.left_catalogued_still_queued += catalogued;
                previous = states;
            }
            Err(problems) => rig.fail(
                &format!("after {context} ({plan:?}, killed {:?})", outcome.killed),
                &problems,
            ),
        }
    }
    clean_runs(rig, n, &epoch, tally);
    match verify_final(rig, &epoch) {
        Ok(snap) => {
            tally.hidden_left += snap.queue.hidden;
            // A killed comparison's copy (`.NAME.<pid>-<random>.compare`, and no download
            // of any kind) is swept by the next put of its WAL, which the clean runs make:
            // none may be left to fill the queue.
            let downloads: Vec<String> = hidden_names(&epoch.incoming)
                .into_iter()
                .filter(|name| name.ends_with(".compare") || name.ends_with(".download"))
                .collect();
            if !downloads.is_empty() {
                rig.fail(
                    &format!("epoch {n}: download temps left in the queue"),
                    &downloads.join("\n"),
                );
            }
            tally.uploads_left += snap.uploads.len();
        }
        Err(problems) => rig.fail(&format!("epoch {n}: after the clean runs"), &problems),
    }
}

fn killed_runs_converge(test: &'static str, encrypted: bool) {
    let report = SeedReport::start("cloud_crash", test);
    let mut rng = Rng::new(report.seed, 1);
    let mut rig = Rig::new(report.seed, encrypted);
    let started = Instant::now();
    let deadline = started + KILL_PHASE_BUDGET;
    let mut tally = CloudTally::default();
    for n in 1..=MAX_EPOCHS {
        if n > 1 && Instant::now() >= deadline {
            break;
        }
        run_epoch(&mut rig, n, &mut rng, &mut tally, deadline);
    }
    tally.report(test, started.elapsed(), &rig);
}

// ---------------------------------------------------------------------------------------
// The tests

#[test]
fn killed_cloud_archive_wal_runs_converge() {
    killed_runs_converge("killed_cloud_archive_wal_runs_converge", false);
}

#[test]
fn killed_encrypted_cloud_archive_wal_runs_converge() {
    killed_runs_converge("killed_encrypted_cloud_archive_wal_runs_converge", true);
}
