//! What a directory tree looks like, to prove a run left it alone.
//!
//! The hostile-input tests hand walpipe records, queues and flags that point outside the
//! directories it was configured to own. Their invariant is that nothing there changed:
//! [`Snapshot::of`] before, [`Snapshot::assert_unchanged`] after, comparing every entry's
//! type, content, mode and mtime (not the access time, which reading may change).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One entry as seen: its type, its mode and mtime, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    mtime_ns: i128,
    /// A file's bytes, a link's target, nothing for the rest.
    content: Vec<u8>,
}

/// Every entry under a directory (the directory itself included), by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    root: PathBuf,
    entries: BTreeMap<PathBuf, Entry>,
}

impl Snapshot {
    /// Reads the tree under `root` (symbolic links are recorded, never followed; fifos
    /// are recorded, never opened).
    ///
    /// # Panics
    /// When `root` cannot be read.
    #[must_use]
    pub fn of(root: &Path) -> Snapshot {
        let mut entries = BTreeMap::new();
        walk(root, &mut entries);
        Snapshot {
            root: root.to_path_buf(),
            entries,
        }
    }

    /// Every entry's path (the root's included), sorted.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.entries.keys().map(PathBuf::as_path)
    }

    /// Fails the test, listing what differs, unless the tree under the same root is as it
    /// was.
    ///
    /// # Panics
    /// When anything was added, removed or changed.
    pub fn assert_unchanged(&self, what: &str) {
        let now = Snapshot::of(&self.root);
        let mut differences = Vec::new();
        for (path, before) in &self.entries {
            match now.entries.get(path) {
                None => differences.push(format!("removed: {}", path.display())),
                Some(after) if after != before => {
                    differences.push(format!(
                        "changed: {} ({before:?} -> {after:?})",
                        path.display()
                    ));
                }
                Some(_) => {}
            }
        }
        for path in now
            .entries
            .keys()
            .filter(|p| !self.entries.contains_key(*p))
        {
            differences.push(format!("added: {}", path.display()));
        }
        assert!(
            differences.is_empty(),
            "{what}: {} changed:\n{}",
            self.root.display(),
            differences
                .iter()
                .map(|d| if d.len() > 300 { &d[..300] } else { d })
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn walk(path: &Path, entries: &mut BTreeMap<PathBuf, Entry>) {
    let meta = fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
    let file_type = meta.file_type();
    let (kind, content) = if file_type.is_symlink() {
        let target = fs::read_link(path).unwrap();
        ("symlink", target.into_os_string().into_encoded_bytes())
    } else if file_type.is_file() {
        ("file", fs::read(path).unwrap_or_default())
    } else if file_type.is_dir() {
        ("dir", Vec::new())
    } else if file_type.is_fifo() {
        ("fifo", Vec::new())
    } else {
        ("other", Vec::new())
    };
    entries.insert(
        path.to_path_buf(),
        Entry {
            kind,
            mode: meta.mode(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            content,
        },
    );
    if file_type.is_dir() {
        let mut children: Vec<PathBuf> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        children.sort();
        for child in children {
            walk(&child, entries);
        }
    }
}
