//! Replays every input the fuzzer ever crashed on, so a fixed crash stays fixed.
//!
//! `fuzz/regressions/<target>/<name>` holds the inputs (kept in the repository; see
//! `scripts/fuzz`). Each is fed to the very check its fuzz target runs: the modules of
//! the fuzz crate are included here as they are, so `cargo test` needs no nightly, no
//! sanitizer and no cargo-fuzz. A check panics on a broken property, a decoder must refuse
//! bad input with `InvalidData`/`UnexpectedEof`, and every input must be done within a
//! time bound (a decoder looping or inflating without end is a failure too). The memory
//! bound is enforced where the allocation happens: by the fuzzer (`-malloc_limit_mb`) and
//! by the codec module's own tests.
//!
//! The decoder checks need wal-core's `codec` feature, which `cargo test --workspace`
//! turns on (wal-compress needs it); without it only the parser inputs are replayed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[cfg(feature = "codec")]
#[path = "../../fuzz/src/codecs.rs"]
mod codecs;
#[path = "../../fuzz/src/parsers.rs"]
mod parsers;

/// Generous for a debug build on a busy machine: a regression input is small, and the
/// slowest check (a decoder reading up to its output cap) takes well under a second.
const TIME_BOUND: Duration = Duration::from_secs(60);

fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions")
}

/// The check of `target`, `None` for a target without one in this build (decoders without
/// the `codec` feature); panics on a directory that names no fuzz target at all.
fn check_of(target: &str) -> Option<fn(&[u8])> {
    let found = parsers::TARGETS.iter().find(|(name, _)| *name == target);
    #[cfg(feature = "codec")]
    let found = found.or_else(|| codecs::TARGETS.iter().find(|(name, _)| *name == target));
    if let Some(&(_, check)) = found {
        return Some(check);
    }
    assert!(
        !cfg!(feature = "codec") && target.starts_with("decode_"),
        "fuzz/regressions/{target}: no fuzz target of that name"
    );
    None
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    entries
}

#[test]
fn every_saved_crash_input_passes_its_check() {
    let mut replayed = 0;
    let mut failures = Vec::new();
    for dir in sorted_entries(&regressions_dir()) {
        let target = dir
            .file_name()
            .and_then(|name| name.to_str())
            .expect("target directories have UTF-8 names")
            .to_owned();
        let Some(check) = check_of(&target) else {
            continue;
        };
        for input in sorted_entries(&dir) {
            let what = format!(
                "{target}/{}",
                input.file_name().unwrap_or_default().to_string_lossy()
            );
            let bytes = std::fs::read(&input).unwrap_or_else(|e| panic!("{what}: {e}"));
            let started = Instant::now();
            // The panic's message is printed by the hook; go on with the other inputs.
            if std::panic::catch_unwind(|| check(&bytes)).is_err() {
                failures.push(format!("{what}: the check panicked"));
            } else if started.elapsed() > TIME_BOUND {
                failures.push(format!("{what}: took {:?}", started.elapsed()));
            }
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no regression input under fuzz/regressions");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The decoder inputs the fuzzer found before the codec module bounded its decoders: each
/// declares a window or dictionary far above the 128 MiB limit, and is now refused before
/// anything that large is allocated.
#[cfg(feature = "codec")]
#[test]
fn oversized_windows_are_refused() {
    use wal_core::Compression;
    for (target, algorithm) in [
        ("decode_zstd", Compression::Zstd),
        ("decode_xz", Compression::Xz),
    ] {
        let dir = regressions_dir().join(target);
        for input in sorted_entries(&dir) {
            let name = input.file_name().unwrap_or_default().to_string_lossy();
            if !(name.starts_with("window-") || name.starts_with("dictionary-")) {
                continue;
            }
            let bytes = std::fs::read(&input).expect("a regression input");
            let mut reader =
                wal_core::codec::decoder(algorithm, &bytes[..]).expect("the stream starts as one");
            let e = std::io::copy(&mut reader, &mut std::io::sink())
                .expect_err(&format!("{target}/{name} decoded"));
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::InvalidData,
                "{target}/{name}: {e}"
            );
            assert!(
                e.to_string().contains("more than 128 MiB of memory"),
                "{target}/{name}: {e}"
            );
        }
    }
}
