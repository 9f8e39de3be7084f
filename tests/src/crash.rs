//! Crash testing: a wrapper's process group (or one of its stages) killed with SIGKILL at
//! moments drawn from one seed.
//!
//! Shared by the convergence tests of the local archive (`tests/tests/crash.rs`) and of a
//! cloud archive (`tests/tests/cloud_crash.rs`):
//!
//! * [`Rng`], [`crash_seed`] and [`SeedReport`]: every choice comes from one seed, printed
//!   at the start and again on failure; `WALPIPE_CRASH_SEED=N` replays the same choices
//!   (the machine's timing still varies);
//! * [`Pipeline`]: starts a wrapper in a process group of its own, watches it from
//!   outside through `/proc` (which stages live, what wal-store's main thread is doing),
//!   sends SIGKILL when a [`Plan`]'s [`Trigger`] fires, and reaps the whole group;
//! * [`Tally`]: where the kills landed, for the report; [`RunLog`]: the wrappers' output
//!   and the test's notes, quoted when it fails.
//!
//! What a killed run must leave standing, the WAL the tests queue and the invariants both
//! archives share, is [`crate::convergence`].
//!
//! A test's own events (a file linked into a local archive, an object listed in a bucket)
//! are its [`Event`] type; the kit only says when to look for them ([`Watch`]).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How often a running wrapper is looked at.
const POLL: Duration = Duration::from_micros(500);

// ---------------------------------------------------------------------------------------
// Seeded choices

/// xorshift64*: tiny and fully specified, so a seed replays the same choices.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// The generator of `stream` (one per test) for `seed`.
    #[must_use]
    pub fn new(seed: u64, stream: u64) -> Self {
        // One SplitMix64 step, so nearby seeds and streams give unrelated sequences.
        let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound` (modulo bias is irrelevant here).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

/// `$WALPIPE_CRASH_SEED` (decimal or 0x-hex), else one from the clock.
///
/// # Panics
/// When the variable is set but is no number.
#[must_use]
pub fn crash_seed() -> u64 {
    if let Ok(text) = std::env::var("WALPIPE_CRASH_SEED") {
        let text = text.trim();
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        return parsed.unwrap_or_else(|e| panic!("WALPIPE_CRASH_SEED={text:?}: {e}"));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    (now.as_nanos() as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

/// A test's seed: printed when the test starts, and again when it fails, however it fails
/// (on drop while panicking), with the command that replays it.
#[derive(Debug)]
pub struct SeedReport {
    /// The integration-test binary (`--test NAME`).
    pub binary: &'static str,
    /// The test function.
    pub test: &'static str,
    /// The seed of its choices.
    pub seed: u64,
}

impl SeedReport {
    /// Picks the seed of `test` in test binary `binary` ([`crash_seed`]) and prints it.
    #[must_use]
    pub fn start(binary: &'static str, test: &'static str) -> Self {
        let seed = crash_seed();
        eprintln!("{test}: seed {seed} (replay with WALPIPE_CRASH_SEED={seed})");
        SeedReport { binary, test, seed }
    }
}

impl Drop for SeedReport {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "{}: FAILED with seed {}; replay with WALPIPE_CRASH_SEED={} cargo test -p walpipe-tests --test {} {}",
                self.test, self.seed, self.seed, self.binary, self.test
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Processes seen through /proc

/// One process, as `/proc/PID/stat` shows it.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    /// Its pid.
    pub pid: i32,
    /// Its command name (`wal-store`).
    pub comm: String,
    /// Its state letter (`R`, `S`, `D`, `Z`, ...).
    pub state: char,
    /// Its process group.
    pub pgrp: i32,
}

/// What `/proc/PID/stat` says of `pid`, if it still exists.
#[must_use]
pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let _ppid = rest.next()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        comm,
        state,
        pgrp,
    })
}

/// The live (not zombie) processes of process group `pgid`.
#[must_use]
pub fn group_members(pgid: i32) -> Vec<ProcInfo> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_info)
        .filter(|p| p.pgrp == pgid && p.state != 'Z' && p.state != 'X')
        .collect()
}

/// What the process's main thread is doing: `running`, a syscall's name, or `gone`.
#[must_use]
pub fn activity(pid: i32) -> String {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return match proc_info(pid) {
            Some(p) if p.state == 'D' => "disk-wait".into(),
            Some(p) if p.state == 'R' => "running".into(),
            Some(_) => "waiting".into(),
            None => "gone".into(),
        };
    };
    let first = text.split_whitespace().next().unwrap_or("");
    match first.parse::<u64>() {
        Ok(number) => syscall_name(number),
        Err(_) if first.is_empty() => "gone".into(),
        // In the kernel but not in a syscall (a page fault, preempted).
        Err(_) if first == "-1" => "in-kernel".into(),
        Err(_) => first.to_string(),
    }
}

/// x86_64 numbers (elsewhere the numbers are printed as they are).
fn syscall_name(number: u64) -> String {
    let name = match (std::env::consts::ARCH, number) {
        ("x86_64", 0) => "read",
        ("x86_64", 1) => "write",
        ("x86_64", 7) => "poll",
        ("x86_64", 9) => "mmap",
        ("x86_64", 11) => "munmap",
        ("x86_64", 12) => "brk",
        ("x86_64", 20) => "writev",
        ("x86_64", 44) => "sendto",
        ("x86_64", 45) => "recvfrom",
        ("x86_64", 73) => "flock",
        ("x86_64", 74) => "fsync",
        ("x86_64", 75) => "fdatasync",
        ("x86_64", 82) => "rename",
        ("x86_64", 86) => "link",
        ("x86_64", 87) => "unlink",
        ("x86_64", 202) => "futex",
        ("x86_64", 232) => "epoll_wait",
        ("x86_64", 257) => "openat",
        ("x86_64", 263) => "unlinkat",
        ("x86_64", 265) => "linkat",
        ("x86_64", 281) => "epoll_pwait",
        ("x86_64", 316) => "renameat2",
        _ => return format!("syscall-{number}"),
    };
    name.into()
}

/// Syscalls of wal-store's durability steps: a kill seen in one lands right after it.
#[must_use]
pub fn is_durability_step(activity: &str) -> bool {
    matches!(
        activity,
        "fsync"
            | "fdatasync"
            | "link"
            | "linkat"
            | "flock"
            | "unlink"
            | "unlinkat"
            | "rename"
            | "renameat2"
            | "disk-wait"
    )
}

/// SIGKILL to every process of group `pgid` (none left is fine).
///
/// # Panics
/// When the signal cannot be sent.
pub fn kill_group(pgid: i32) {
    match killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => panic!("cannot kill process group {pgid}: {e}"),
    }
}

/// SIGKILL to `pid` (gone already is fine).
///
/// # Panics
/// When the signal cannot be sent.
pub fn kill_one(pid: i32) {
    match kill(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => panic!("cannot kill {pid}: {e}"),
    }
}

/// A test's log: the wrappers' output and the test's notes between runs, quoted when it
/// fails.
#[derive(Debug)]
pub struct RunLog(PathBuf);

impl RunLog {
    /// Creates (empties) the log at `path`.
    ///
    /// # Panics
    /// When it cannot be created.
    #[must_use]
    pub fn create(path: PathBuf) -> Self {
        File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        RunLog(path)
    }

    /// Where it is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Like [`Path::display`], for messages.
    #[must_use]
    pub fn display(&self) -> std::path::Display<'_> {
        self.0.display()
    }

    /// Appends a line.
    ///
    /// # Panics
    /// When the log cannot be written.
    pub fn note(&self, text: &str) {
        let mut log = File::options()
            .append(true)
            .open(&self.0)
            .expect("open the log");
        writeln!(log, "{text}").expect("write the log");
    }

    /// Fails the test of `seed`: the context, the problems found, and the log's last 60
    /// lines.
    pub fn fail(&self, seed: u64, context: &str, problems: &str) -> ! {
        panic!(
            "seed {seed} (WALPIPE_CRASH_SEED={seed}): {context}\n{problems}\n--- wrapper log tail ({}) ---\n{}",
            self.display(),
            self.tail(60)
        );
    }

    /// Its last `lines` lines.
    #[must_use]
    pub fn tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.0).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

// ---------------------------------------------------------------------------------------
// Kill plans

/// Something a test watches for from outside (a file linked, an object listed), to kill
/// just after it.
pub trait Event: Copy + fmt::Debug {
    /// Its name in the report.
    fn label(&self) -> &'static str;
}

/// When to kill.
#[derive(Debug, Clone, Copy)]
pub enum Trigger<E> {
    /// A fixed delay after the start.
    Delay {
        /// Its name in the report (the range it was drawn from).
        label: &'static str,
        /// The delay.
        after: Duration,
    },
    /// wal-store seen inside a durability syscall for the `skip + 1`-th time.
    StoreStep {
        /// Steps let pass first.
        skip: u64,
    },
    /// The test's `event` seen since the start, then `after`.
    Seen {
        /// What to look for.
        event: E,
        /// How long after it the kill is sent.
        after: Duration,
    },
}

impl<E: Event> Trigger<E> {
    /// Its name in the report.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Trigger::Delay { label, .. } => label,
            Trigger::StoreStep { .. } => "wal-store-step",
            Trigger::Seen { event, .. } => event.label(),
        }
    }

    /// How long after the trigger's event the kill is sent.
    #[must_use]
    pub fn delay(&self) -> Duration {
        match *self {
            Trigger::Delay { after, .. } | Trigger::Seen { after, .. } => after,
            Trigger::StoreStep { .. } => Duration::ZERO,
        }
    }
}

impl<E> Trigger<E> {
    /// A delay of 0-30 ms after the start, from `param`: the pipeline barely started.
    #[must_use]
    pub fn early(param: u64) -> Self {
        Trigger::Delay {
            label: "delay-0-30ms",
            after: Duration::from_millis(param % 31),
        }
    }
}

/// What to kill.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The wrapper's whole process group.
    Group,
    /// wal-store alone (the group when it is not running).
    Store,
    /// A stage among those alive, picked with this number.
    AnyStage(u64),
}

/// When and what to kill in one run.
#[derive(Debug, Clone, Copy)]
pub struct Plan<E> {
    /// When.
    pub trigger: Trigger<E>,
    /// What.
    pub target: Target,
}

/// Draws a plan: a kind (0-99), a parameter, a target (0-99) and a stage pick, always
/// these four, so a seed replays the same plans. `trigger` makes the trigger of a kind
/// from the parameter; targets below `targets[0]` kill the whole group, below
/// `targets[1]` wal-store, the rest a stage picked among those alive.
pub fn draw_plan<E>(
    rng: &mut Rng,
    targets: [u64; 2],
    trigger: impl FnOnce(u64, u64) -> Trigger<E>,
) -> Plan<E> {
    let kind = rng.below(100);
    let param = rng.next_u64();
    let target = rng.below(100);
    let pick = rng.next_u64();
    let target = if target < targets[0] {
        Target::Group
    } else if target < targets[1] {
        Target::Store
    } else {
        Target::AnyStage(pick)
    };
    Plan {
        trigger: trigger(kind, param),
        target,
    }
}

/// How a test tells that its [`Event`]s happened.
///
/// A closure `FnMut(E, Option<i32>) -> bool` is one: given the event and wal-store's pid
/// (once seen), whether the event happened since the run started.
pub trait Watch<E> {
    /// Whether `event` happened since the run started; `store` is wal-store's pid once
    /// it was seen.
    fn seen(&mut self, event: E, store: Option<i32>) -> bool;

    /// Called right before the kill is sent, to note what was in flight.
    fn before_kill(&mut self, _store: Option<i32>) {}
}

impl<E, F: FnMut(E, Option<i32>) -> bool> Watch<E> for F {
    fn seen(&mut self, event: E, store: Option<i32>) -> bool {
        self(event, store)
    }
}

/// What happened to one run of a wrapper.
#[derive(Debug)]
pub struct Outcome {
    /// How it exited.
    pub status: ExitStatus,
    /// `Some((target, activity))` when a kill was sent: what was killed (`wal-store`,
    /// `group[wal-scan,wal-store]`) and what wal-store was doing.
    pub killed: Option<(String, String)>,
    /// From start to reaped.
    pub elapsed: Duration,
}

/// The stages of a wrapper's pipeline, and how long a run may take before it counts as
/// hung (a bug in itself).
#[derive(Debug, Clone, Copy)]
pub struct Pipeline {
    /// The stages' command names (`wal-scan`, `wal-compress`, `wal-store`, ...).
    pub stages: &'static [&'static str],
    /// A wrapper still running this long after it was started (or after a stage was
    /// killed) is hung.
    pub hang_timeout: Duration,
}

impl Pipeline {
    /// Starts `cmd` in a process group of its own (so the group can be killed as one),
    /// stdin empty, stdout and stderr appended to `log`.
    ///
    /// # Panics
    /// When the log cannot be opened or the command cannot start.
    #[must_use]
    pub fn spawn(cmd: &mut Command, log: &Path) -> Child {
        let log = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .process_group(0);
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
    }

    /// The live stages of group `pgid`, by pid.
    #[must_use]
    pub fn live_stages(&self, pgid: i32) -> Vec<ProcInfo> {
        let mut stages: Vec<ProcInfo> = group_members(pgid)
            .into_iter()
            .filter(|p| self.stages.contains(&p.comm.as_str()))
            .collect();
        stages.sort_by_key(|p| p.pid);
        stages
    }

    /// Waits for `child` (the wrapper) to exit, then for every process of its group to be
    /// gone (a SIGKILLed stage may take a moment to die, and holds the archive-wal lock
    /// until then).
    ///
    /// # Panics
    /// When either takes longer than the hang timeout.
    pub fn reap(&self, child: &mut Child, pgid: i32, what: &str) -> ExitStatus {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the wrapper") {
                break status;
            }
            if start.elapsed() > self.hang_timeout {
                let stages = self.live_stages(pgid);
                kill_group(pgid);
                let _ = child.wait();
                panic!(
                    "{what} hung for {:?}; live stages: {stages:?}",
                    self.hang_timeout
                );
            }
            thread::sleep(Duration::from_millis(2));
        };
        while !group_members(pgid).is_empty() {
            assert!(
                start.elapsed() < self.hang_timeout,
                "process group {pgid} of {what} does not go away: {:?}",
                group_members(pgid)
            );
            thread::sleep(Duration::from_millis(2));
        }
        status
    }

    /// Runs `child` (started with [`Pipeline::spawn`]) to its end, killing per `plan` (if
    /// any) when its trigger fires; `watch` tells when the test's events happened.
    ///
    /// # Panics
    /// When the run hangs.
    pub fn run<E: Event>(
        &self,
        mut child: Child,
        plan: Option<Plan<E>>,
        what: &str,
        watch: &mut impl Watch<E>,
    ) -> Outcome {
        let pgid = child.id().cast_signed();
        let start = Instant::now();
        let mut store_pid: Option<i32> = None;
        let mut last_scan: Option<Instant> = None;
        let mut steps_seen = 0u64;
        let mut last_activity = String::new();
        let mut fired_at: Option<Instant> = None;
        let killed = loop {
            if child.try_wait().expect("wait for the wrapper").is_some() {
                break None;
            }
            if start.elapsed() > self.hang_timeout {
                let members = group_members(pgid);
                kill_group(pgid);
                let _ = child.wait();
                panic!(
                    "{what} still runs after {:?}: {members:?}",
                    self.hang_timeout
                );
            }
            let Some(plan) = plan else {
                thread::sleep(Duration::from_millis(2));
                continue;
            };
            if store_pid.is_none()
                && last_scan.is_none_or(|at| at.elapsed() > Duration::from_millis(3))
            {
                last_scan = Some(Instant::now());
                store_pid = self
                    .live_stages(pgid)
                    .into_iter()
                    .find(|p| p.comm == "wal-store")
                    .map(|p| p.pid);
            }
            if fired_at.is_none() {
                let event = match plan.trigger {
                    Trigger::Delay { .. } => true,
                    Trigger::StoreStep { skip } => store_pid.is_some_and(|pid| {
                        let now = activity(pid);
                        let mut hit = false;
                        if is_durability_step(&now) && now != last_activity {
                            hit = steps_seen == skip;
                            steps_seen += 1;
                        }
                        last_activity = now;
                        hit
                    }),
                    Trigger::Seen { event, .. } => watch.seen(event, store_pid),
                };
                if event {
                    fired_at = Some(match plan.trigger {
                        Trigger::Delay { .. } => start,
                        _ => Instant::now(),
                    });
                }
            }
            if fired_at.is_some_and(|at| at.elapsed() >= plan.trigger.delay()) {
                watch.before_kill(store_pid);
                break Some(self.send_kill(pgid, plan.target));
            }
            thread::sleep(POLL);
        };
        let status = self.reap(&mut child, pgid, what);
        Outcome {
            status,
            killed,
            elapsed: start.elapsed(),
        }
    }

    /// Sends SIGKILL to the target; returns (what was killed, what wal-store was doing).
    fn send_kill(&self, pgid: i32, target: Target) -> (String, String) {
        let stages = self.live_stages(pgid);
        let store = stages.iter().find(|p| p.comm == "wal-store");
        let store_doing = store.map_or_else(|| "not-running".to_string(), |p| activity(p.pid));
        let victim = match target {
            Target::Group => None,
            Target::Store => store,
            Target::AnyStage(_) if stages.is_empty() => None,
            Target::AnyStage(pick) => Some(&stages[(pick % stages.len() as u64) as usize]),
        };
        if let Some(p) = victim {
            kill_one(p.pid);
            (p.comm.clone(), store_doing)
        } else {
            let alive: Vec<&str> = stages.iter().map(|p| p.comm.as_str()).collect();
            kill_group(pgid);
            (format!("group[{}]", alive.join(",")), store_doing)
        }
    }
}

/// Where the kills of a test landed, for its report.
#[derive(Debug, Default)]
pub struct Tally {
    /// Runs in all.
    pub rounds: usize,
    /// Runs without a plan (the clean runs).
    pub unplanned: usize,
    /// Runs that ended before their plan's kill.
    pub finished_before_kill: usize,
    /// Kills by what was killed (`wal-store`, `group`, ...).
    pub by_target: BTreeMap<String, usize>,
    /// Kills by trigger label.
    pub by_trigger: BTreeMap<&'static str, usize>,
    /// Kills by what wal-store was doing.
    pub by_activity: BTreeMap<String, usize>,
}

impl Tally {
    /// Counts one run.
    pub fn add<E: Event>(&mut self, plan: Option<Plan<E>>, outcome: &Outcome) {
        self.rounds += 1;
        match (&outcome.killed, plan) {
            (Some((target, doing)), Some(plan)) => {
                let stage = target.split('[').next().unwrap_or(target).to_string();
                *self.by_target.entry(stage).or_default() += 1;
                *self.by_trigger.entry(plan.trigger.label()).or_default() += 1;
                *self.by_activity.entry(doing.clone()).or_default() += 1;
            }
            (_, Some(_)) => self.finished_before_kill += 1,
            (_, None) => self.unplanned += 1,
        }
    }

    /// Runs that were killed.
    #[must_use]
    pub fn killed(&self) -> usize {
        self.rounds - self.finished_before_kill - self.unplanned
    }

    /// The report's first lines, each ending in a newline: runs, kills by target, by
    /// trigger, by what wal-store was doing.
    #[must_use]
    pub fn summary(&self, test: &str, elapsed: Duration) -> String {
        let mut text = format!(
            "{test}: {} runs in {:.1}s: {} killed, {} finished before their kill, {} run without a kill\n",
            self.rounds,
            elapsed.as_secs_f64(),
            self.killed(),
            self.finished_before_kill,
            self.unplanned
        );
        let _ = writeln!(text, "  killed:   {:?}", self.by_target);
        let _ = writeln!(text, "  triggers: {:?}", self.by_trigger);
        let _ = writeln!(
            text,
            "  what wal-store was doing at the kill: {:?}",
            self.by_activity
        );
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_streams_differ_and_replay() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(7, 1).next_u64()).collect();
        assert!(
            a.windows(2).all(|w| w[0] == w[1]),
            "same seed, same numbers"
        );
        let mut one = Rng::new(7, 1);
        let mut two = Rng::new(7, 2);
        assert_ne!(one.next_u64(), two.next_u64());
        assert!((0..100).all(|_| one.below(5) < 5));
    }
}
