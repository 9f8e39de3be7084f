//! Running a command to its end, with a deadline: a cloud test talks to real servers,
//! and a client that hangs on one must fail the test, not stall the whole run.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What a command gave.
#[derive(Debug)]
pub struct Finished {
    /// Its exit code.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Runs `cmd` with `stdin`, reading its stdout and stderr as it goes.
///
/// # Panics
/// When `cmd` cannot start, is still running after `limit` (it is killed first), or is
/// killed by a signal.
pub fn run_within(cmd: &mut Command, stdin: &str, limit: Duration) -> Finished {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (cargo build --workspace --bins)"));
    let mut pipe = child.stdin.take().expect("piped stdin");
    let input = stdin.to_owned();
    let writer = thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let out = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let err = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {limit:?}: killed");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let _ = writer.join();
    let stderr = String::from_utf8_lossy(&err.join().expect("stderr reader")).into_owned();
    Finished {
        code: status
            .code()
            .unwrap_or_else(|| panic!("{cmd:?} killed by a signal: {status}\n{stderr}")),
        stdout: out.join().expect("stdout reader"),
        stderr,
        elapsed,
    }
}
