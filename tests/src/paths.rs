//! Where the workspace, its built binaries and its scripts are.
//!
//! Tests run with the package directory as their working directory and may be built into a
//! shared or relocated target directory, so paths are derived from the crate's manifest
//! location and the running test executable, never from the current directory.

use std::env;
use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the top-level `Cargo.toml`).
#[must_use]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the test kit lives one level below the workspace root")
        .to_path_buf()
}

/// The path of `scripts/<name>` in the workspace.
#[must_use]
pub fn script(name: &str) -> PathBuf {
    workspace_root().join("scripts").join(name)
}

/// The path of a built binary of this workspace, such as `target_bin("wal-scan")`.
///
/// Looked up, first hit wins:
/// 1. `$WALPIPE_BIN_DIR/<name>` when `WALPIPE_BIN_DIR` is set (used as is, even if missing);
/// 2. the profile directory of the running test executable (`<target>/<profile>/deps/..`),
///    so a `cargo test --release` run finds release binaries;
/// 3. `debug` then `release` under `$CARGO_TARGET_DIR` (relative paths are taken from the
///    workspace root) or `<workspace>/target`, the newer one when both exist.
///
/// Cargo only builds the binaries of the package under test; a test that runs another
/// crate's binary needs `cargo build --workspace --bins` first.
///
/// # Panics
/// When no built binary is found, with a message saying how to build it.
#[must_use]
pub fn target_bin(name: &str) -> PathBuf {
    let file = format!("{name}{}", env::consts::EXE_SUFFIX);
    if let Some(dir) = env::var_os("WALPIPE_BIN_DIR") {
        return PathBuf::from(dir).join(file);
    }
    let mut candidates = Vec::new();
    if let Some(profile_dir) = env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
    {
        candidates.push(profile_dir.join(&file));
    }
    let target_dir = env::var_os("CARGO_TARGET_DIR").map_or_else(
        || workspace_root().join("target"),
        |dir| workspace_root().join(dir),
    );
    let mut profiles: Vec<PathBuf> = ["debug", "release"]
        .iter()
        .map(|profile| target_dir.join(profile).join(&file))
        .filter(|path| path.is_file())
        .collect();
    profiles.sort_by_key(|path| std::cmp::Reverse(path.metadata().and_then(|m| m.modified()).ok()));
    candidates.extend(profiles);
    candidates
        .into_iter()
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "binary {name:?} not found in {} (debug or release); \
                 build it with `cargo build --workspace --bins` or set WALPIPE_BIN_DIR",
                target_dir.display()
            )
        })
}
