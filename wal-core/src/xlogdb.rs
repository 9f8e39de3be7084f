//! xlog.db: Barman's catalogue of archived WAL, in Barman's exact format.
//!
//! One line per archived file: `name \t size \t time \t compression \t encryption \n`, with
//! `None` for missing values and `time` as Python's `str(float)`
//! (`docs/barman-formats.md#xlogdb`). Barman and
//! walpipe read each other's file, so the format is reproduced to the byte.
//!
//! Unlike Barman (one lock, open, write and fsync per WAL), appends are batched: one lock
//! and one fsync for every WAL stored in a batch. Rewrites build the new file under a
//! temporary name and rename it over the old one while holding the lock; every writer
//! (Barman's included) opens the file only after taking the lock, so no append can land in
//! the replaced inode (Barman #328).

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::compression::Compression;
use crate::durable;
use crate::error::{IoContext, Result, WalError};
use crate::lock::{LockFile, xlogdb_lock_path};

/// The longest catalogue line a reader takes (a real one is under 100 bytes).
const LINE_MAX: u64 = 4096;

/// One xlog.db line.
#[derive(Debug, Clone, PartialEq)]
pub struct XlogLine {
    /// WAL file name.
    pub name: String,
    /// Bytes as stored.
    pub size: u64,
    /// Source mtime, seconds since the epoch.
    pub time: f64,
    /// Compression name as recorded (Barman may record `pigz` or `custom`), or `None`.
    pub compression: Option<String>,
    /// Encryption name (`gpg`), or `None`.
    pub encryption: Option<String>,
}

impl XlogLine {
    /// Barman's `to_xlogdb_line`, `\n` included.
    #[must_use]
    pub fn to_line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\n",
            self.name,
            self.size,
            python_float_repr(self.time),
            self.compression.as_deref().unwrap_or("None"),
            self.encryption.as_deref().unwrap_or("None"),
        )
    }

    /// Barman's `from_xlogdb_line`: whitespace-separated, 3 to 5 fields, `None` for null.
    /// Returns `None` for a line it cannot parse.
    #[must_use]
    pub fn parse(line: &str) -> Option<XlogLine> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !(3..=5).contains(&fields.len()) {
            return None;
        }
        let optional = |i: usize| {
            fields
                .get(i)
                .filter(|value| **value != "None")
                .map(|value| (*value).to_string())
        };
        Some(XlogLine {
            name: fields[0].to_string(),
            size: fields[1].parse().ok()?,
            time: fields[2].parse().ok()?,
            compression: optional(3),
            encryption: optional(4),
        })
    }

    /// The recorded compression, if walpipe knows it.
    #[must_use]
    pub fn known_compression(&self) -> Option<Compression> {
        self.compression.as_deref().and_then(|c| c.parse().ok())
    }
}

/// Formats `value` as Python's `repr(float)`: the shortest digits that round-trip, `.0` on
/// integral values, and exponent notation outside `1e-4 <= |x| < 1e16`.
#[must_use]
pub fn python_float_repr(value: f64) -> String {
    if value.is_nan() {
        return "nan".into();
    }
    if value.is_infinite() {
        return if value > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-4..1e16).contains(&magnitude) {
        // Rust: "1.5e-5" / "1e16"; Python: "1.5e-05" / "1e+16".
        let text = format!("{value:e}");
        let (mantissa, exponent) = text.split_once('e').expect("{:e} has an exponent");
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(digits) => ('-', digits),
            None => ('+', exponent),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    let text = format!("{value}");
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

/// Where a catalogue ended at one moment ([`Xlogdb::end`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatalogueEnd {
    /// The file's device and inode; `None` when there was no file.
    file: Option<(u64, u64)>,
    /// Its length then.
    len: u64,
}

/// A server's xlog.db and its lock.
#[derive(Debug, Clone)]
pub struct Xlogdb {
    path: PathBuf,
    lock_path: PathBuf,
}

impl Xlogdb {
    /// Barman's layout: `<dir>/<server>-xlog.db`, locked by `<lock_dir>/.<server>-xlogdb.lock`.
    #[must_use]
    pub fn for_server(dir: &Path, server: &str, lock_dir: &Path) -> Xlogdb {
        Xlogdb {
            path: dir.join(format!("{server}-xlog.db")),
            lock_path: xlogdb_lock_path(lock_dir, server),
        }
    }

    /// An xlog.db at an explicit path.
    #[must_use]
    pub fn at(path: PathBuf, lock_path: PathBuf) -> Xlogdb {
        Xlogdb { path, lock_path }
    }

    /// The catalogue file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its lock file.
    #[must_use]
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    fn lock(&self) -> Result<LockFile> {
        if let Some(dir) = self
            .lock_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            durable::create_dir_durably(dir)?;
        }
        LockFile::acquire(&self.lock_path)
    }

    /// Appends `lines` under the lock with a single fsync.
    pub fn append(&self, lines: &[XlogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let _lock = self.lock()?;
        self.append_locked(lines)
    }

    /// Where the catalogue ends now, for [`Xlogdb::append_new_since`]: the file (device
    /// and inode) and its length; an empty mark when it is not there.
    #[must_use]
    pub fn end(&self) -> CatalogueEnd {
        use std::os::unix::fs::MetadataExt;
        fs::symlink_metadata(&self.path).map_or(CatalogueEnd::default(), |meta| CatalogueEnd {
            file: Some((meta.dev(), meta.ino())),
            len: meta.len(),
        })
    }

    /// Appends, under the lock with a single fsync, the `lines` whose WAL no line appended
    /// since `since` ([`Xlogdb::end`] taken before this run found them stored) names
    /// already: two runs storing one WAL at once (the second finds it stored by the first
    /// but not yet catalogued, and takes it for an interrupted run's) must not both
    /// catalogue it. Only what was appended meanwhile is read; a catalogue replaced
    /// meanwhile (another file: delete and rebuild-xlogdb write a new one) or shorter is
    /// read whole. Returns the names left out.
    pub fn append_new_since(
        &self,
        lines: &[XlogLine],
        since: CatalogueEnd,
    ) -> Result<HashSet<String>> {
        if lines.is_empty() {
            return Ok(HashSet::new());
        }
        let _lock = self.lock()?;
        let recent = self.names_since_locked(since)?;
        let fresh: Vec<XlogLine> = lines
            .iter()
            .filter(|line| !recent.contains(&line.name))
            .cloned()
            .collect();
        self.append_locked(&fresh)?;
        Ok(lines
            .iter()
            .filter(|line| recent.contains(&line.name))
            .map(|line| line.name.clone())
            .collect())
    }

    /// The names of the lines after `since` (all of them when the file is another or
    /// shorter); a line that does not parse names nothing.
    fn names_since_locked(&self, since: CatalogueEnd) -> Result<HashSet<String>> {
        use std::io::{Seek, SeekFrom};
        use std::os::unix::fs::MetadataExt;
        let mut file = match durable::open_regular(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
            Err(e) => return Err(WalError::io("cannot open", &self.path, e)),
        };
        let meta = file.metadata().context("cannot stat", &self.path)?;
        let same_file = since.file == Some((meta.dev(), meta.ino()));
        let from = if same_file && since.len <= meta.len() {
            since.len
        } else {
            0
        };
        file.seek(SeekFrom::Start(from))
            .context("cannot read", &self.path)?;
        let mut names = HashSet::new();
        for text in BufReader::new(file).lines() {
            let text = text.context("cannot read", &self.path)?;
            if let Some(line) = XlogLine::parse(&text) {
                names.insert(line.name);
            }
        }
        Ok(names)
    }

    fn append_locked(&self, lines: &[XlogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let existed = self.path.exists();
        // Never through a link, never a fifo or a device: the catalogue is a file of ours.
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
            .open(&self.path)
            .context("cannot open", &self.path)?;
        self.must_be_regular(
            file.metadata()
                .context("cannot stat", &self.path)?
                .file_type(),
        )?;
        let text: String = lines.iter().map(XlogLine::to_line).collect();
        file.write_all(text.as_bytes())
            .context("cannot append to", &self.path)?;
        file.sync_all().context("cannot fsync", &self.path)?;
        if !existed {
            durable::fsync_parents([self.path.as_path()])?;
        }
        Ok(())
    }

    /// Every line, in file order; a missing file is an empty catalogue. Unparsable lines
    /// are errors naming the line (Barman's hint: run rebuild-xlogdb).
    pub fn read(&self) -> Result<Vec<XlogLine>> {
        let _lock = self.lock()?;
        self.read_locked()
    }

    fn read_locked(&self) -> Result<Vec<XlogLine>> {
        let file = match durable::open_regular(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(WalError::io("cannot open", &self.path, e)),
        };
        let mut lines = Vec::new();
        for (index, text) in BufReader::new(file).lines().enumerate() {
            let text = text.context("cannot read", &self.path)?;
            if text.trim().is_empty() {
                continue;
            }
            lines.push(XlogLine::parse(&text).ok_or_else(|| WalError::BadXlogLine {
                path: self.path.clone(),
                line: index as u64 + 1,
                text: text.clone(),
            })?);
        }
        Ok(lines)
    }

    /// Every line, in file order, handed to `each` as read, without the lock: for a
    /// reader that must neither wait for an archiver nor create anything, nor hold a
    /// large catalogue in memory (a check). The catalogue is only appended to, or
    /// replaced whole by a rename, so what is read is a consistent catalogue; a last line
    /// still being appended (no line end yet) is left out. A missing file is empty.
    pub fn scan_unlocked(&self, mut each: impl FnMut(XlogLine)) -> Result<()> {
        let file = match durable::open_regular(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(WalError::io("cannot open", &self.path, e)),
        };
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        for index in 1u64.. {
            line.clear();
            // A catalogue line is under 100 bytes: a longer one is no line of ours, and
            // is not read whole (nor echoed whole).
            let read = io::Read::take(&mut reader, LINE_MAX + 1)
                .read_until(b'\n', &mut line)
                .context("cannot read", &self.path)?;
            let complete = line.ends_with(b"\n");
            let bad = |why: &str| WalError::BadXlogLine {
                path: self.path.clone(),
                line: index,
                text: why.to_owned(),
            };
            if read == 0 || (!complete && line.len() as u64 <= LINE_MAX) {
                return Ok(());
            }
            if !complete {
                return Err(bad(&format!("over {LINE_MAX} bytes")));
            }
            let Ok(text) = std::str::from_utf8(&line) else {
                return Err(bad("not UTF-8 text"));
            };
            if text.trim().is_empty() {
                continue;
            }
            each(XlogLine::parse(text).ok_or_else(|| {
                let shown: String = text.trim_end().chars().take(60).collect();
                bad(&shown)
            })?);
        }
        Ok(())
    }

    /// Whether a line names `name`, read without the lock as [`Self::scan_unlocked`]
    /// reads, but from the end backwards: the line of a WAL stored a moment ago is among
    /// the last, and a catalogue of a few years holds millions of lines that a check made
    /// for every archive_command call would otherwise read whole. A line that is not a
    /// catalogue line is reported as the forward scan reports it.
    pub fn catalogues(&self, name: &str) -> Result<bool> {
        self.catalogues_by_blocks(name, 64 * 1024)
    }

    fn catalogues_by_blocks(&self, name: &str, block: u64) -> Result<bool> {
        use std::os::unix::fs::FileExt;
        let file = match durable::open_regular(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(WalError::io("cannot open", &self.path, e)),
        };
        let mut pos = file.metadata().context("cannot stat", &self.path)?.len();
        // The start of the line that ends where the bytes read so far begin.
        let mut tail: Vec<u8> = Vec::new();
        // Until a line end is met, the bytes read are a line still being appended.
        let mut unfinished = true;
        while pos > 0 {
            let start = pos.saturating_sub(block);
            let mut buf = vec![0; usize::try_from(pos - start).unwrap_or(usize::MAX)];
            file.read_exact_at(&mut buf, start)
                .context("cannot read", &self.path)?;
            buf.extend_from_slice(&tail);
            let mut lines: Vec<&[u8]> = buf.split(|&b| b == b'\n').collect();
            if unfinished {
                lines.pop();
                if lines.is_empty() {
                    tail.clear();
                    pos = start;
                    continue;
                }
                unfinished = false;
            }
            // The first piece may begin in the block before.
            let first = if start > 0 && !lines.is_empty() {
                lines.remove(0)
            } else {
                &[]
            };
            for line in lines.iter().rev() {
                let text = std::str::from_utf8(line).ok();
                // Blank as the forward scan takes it (`str::trim`).
                if text.is_some_and(|text| text.trim().is_empty()) {
                    continue;
                }
                match text
                    .filter(|_| line.len() as u64 <= LINE_MAX)
                    .and_then(XlogLine::parse)
                {
                    Some(found) if found.name == name => return Ok(true),
                    Some(_) => {}
                    // Not a catalogue line: the forward scan answers, or says where and why.
                    None => return self.catalogues_forward(name),
                }
            }
            if first.len() as u64 > LINE_MAX {
                return self.catalogues_forward(name);
            }
            tail = first.to_vec();
            pos = start;
        }
        Ok(false)
    }

    /// [`Self::catalogues`] by the forward scan.
    fn catalogues_forward(&self, name: &str) -> Result<bool> {
        let mut found = false;
        self.scan_unlocked(|line| found |= line.name == name)
            .map(|()| found)
    }

    /// The set of names catalogued.
    pub fn names(&self) -> Result<HashSet<String>> {
        Ok(self.read()?.into_iter().map(|l| l.name).collect())
    }

    /// Refuses a catalogue path that is not a regular file (a link, a fifo, a device, a
    /// directory): a configuration error, before anything is written through it.
    fn must_be_regular(&self, file_type: fs::FileType) -> Result<()> {
        if file_type.is_file() {
            return Ok(());
        }
        Err(WalError::Config(format!(
            "{}: {}, not a catalogue file: xlog.db must be a regular file",
            self.path.display(),
            durable::describe_type(file_type)
        )))
    }

    /// Keeps only the lines `keep` accepts; returns how many were removed.
    pub fn retain(&self, mut keep: impl FnMut(&XlogLine) -> bool) -> Result<usize> {
        let _lock = self.lock()?;
        let lines = self.read_locked()?;
        let before = lines.len();
        let kept: Vec<XlogLine> = lines.into_iter().filter(|l| keep(l)).collect();
        let removed = before - kept.len();
        if removed > 0 {
            self.write_locked(&kept)?;
        }
        Ok(removed)
    }

    /// Replaces the whole catalogue with `lines` (rebuild).
    pub fn replace(&self, lines: &[XlogLine]) -> Result<()> {
        let _lock = self.lock()?;
        self.write_locked(lines)
    }

    fn write_locked(&self, lines: &[XlogLine]) -> Result<()> {
        // Replacing renames over the path: whatever is there must be a catalogue already.
        match fs::symlink_metadata(&self.path) {
            Ok(meta) => self.must_be_regular(meta.file_type())?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(WalError::io("cannot stat", &self.path, e)),
        }
        let text: String = lines.iter().map(XlogLine::to_line).collect();
        durable::replace_durably(&self.path, |file| file.write_all(text.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_repr_matches_python() {
        for (value, python) in [
            (1_795_313_864.672_685_9, "1795313864.6726859"),
            (1_718_040_000.0, "1718040000.0"),
            (1_718_040_000.123_456_7, "1718040000.1234567"),
            (43.0, "43.0"),
            (0.0, "0.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (-2.5, "-2.5"),
            (123_456_789_012_345_680.0, "1.2345678901234568e+17"),
        ] {
            assert_eq!(python_float_repr(value), python, "{value}");
        }
    }

    #[test]
    fn barman_lines_round_trip() {
        let barman = "000000010000000000000001\t1479083\t1795313864.6726859\tzstd\tNone\n";
        let line = XlogLine::parse(barman).unwrap();
        assert_eq!(line.size, 1_479_083);
        assert_eq!(line.known_compression(), Some(Compression::Zstd));
        assert_eq!(line.encryption, None);
        assert_eq!(line.to_line(), barman);

        let plain = XlogLine {
            name: "000000000000000000000002".into(),
            size: 42,
            time: 43.0,
            compression: None,
            encryption: None,
        };
        // Barman's test writes `43` for an int; a float (all real times) gets `.0`.
        assert_eq!(
            plain.to_line(),
            "000000000000000000000002\t42\t43.0\tNone\tNone\n"
        );
    }

    #[test]
    fn three_to_five_columns_are_accepted() {
        let legacy = XlogLine::parse("00000002.history 41 1700000000.5").unwrap();
        assert_eq!((legacy.compression, legacy.encryption), (None, None));
        let four = XlogLine::parse("000000010000000000000003\t100\t1.0\tgzip").unwrap();
        assert_eq!(four.known_compression(), Some(Compression::Gzip));
        let custom = XlogLine::parse("000000010000000000000004\t100\t1.0\tcustom\tgpg").unwrap();
        assert_eq!(custom.known_compression(), None);
        assert_eq!(custom.encryption.as_deref(), Some("gpg"));
        assert!(XlogLine::parse("a b").is_none());
        assert!(XlogLine::parse("a 1 2 3 4 5").is_none());
        assert!(XlogLine::parse("a x 2").is_none());
    }

    #[test]
    fn append_retain_replace() {
        let dir = tempfile::tempdir().unwrap();
        let db = Xlogdb::for_server(dir.path(), "pg", dir.path());
        assert!(db.read().unwrap().is_empty());
        let line = |n: u32| XlogLine {
            name: format!("{n:024X}"),
            size: u64::from(n),
            time: 1.5,
            compression: Some("zstd".into()),
            encryption: None,
        };
        db.append(&[line(1), line(2)]).unwrap();
        db.append(&[line(3)]).unwrap();
        assert_eq!(db.read().unwrap().len(), 3);
        assert!(db.path().ends_with("pg-xlog.db"));
        assert_eq!(db.retain(|l| l.size != 2).unwrap(), 1);
        assert_eq!(db.names().unwrap().len(), 2);
        db.replace(&[line(9)]).unwrap();
        let text = fs::read_to_string(db.path()).unwrap();
        assert_eq!(text, "000000000000000000000009\t9\t1.5\tzstd\tNone\n");
        fs::write(db.path(), "garbage\n").unwrap();
        let err = db.read().unwrap_err();
        assert!(
            err.to_string().contains("line 1: cannot parse line"),
            "{err}"
        );
    }

    /// The backward search finds a line wherever the blocks cut it, never takes a line
    /// still being appended, and reports a foreign line as the forward scan does.
    #[test]
    fn catalogues_reads_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let db = Xlogdb::for_server(dir.path(), "pg", dir.path());
        assert!(!db.catalogues("000000010000000000000001").unwrap());
        let lines: Vec<XlogLine> = (1..=40u32)
            .map(|n| XlogLine {
                name: format!("{n:024X}"),
                size: u64::from(n) * 1000,
                time: 1_700_000_000.25,
                compression: Some("zstd".into()),
                encryption: None,
            })
            .collect();
        db.append(&lines).unwrap();
        // Blocks smaller than a line, of a line, and cutting lines anywhere.
        for block in [7, 13, 64, 80, 1000, 64 * 1024] {
            for line in &lines {
                assert!(
                    db.catalogues_by_blocks(&line.name, block).unwrap(),
                    "{block}"
                );
            }
            assert!(
                !db.catalogues_by_blocks("000000010000000000000099", block)
                    .unwrap()
            );
        }
        // A line still being appended (no line end yet) is not one yet.
        let mut file = OpenOptions::new().append(true).open(db.path()).unwrap();
        file.write_all(b"000000010000000000000099\t1\t1.0\tNone\tNone")
            .unwrap();
        for block in [7, 64 * 1024] {
            assert!(
                !db.catalogues_by_blocks("000000010000000000000099", block)
                    .unwrap()
            );
        }
        // Blank lines, however blank (as `str::trim` sees them), are skipped.
        file.write_all("\n\n \u{a0}\u{b}\n".as_bytes()).unwrap();
        assert!(
            db.catalogues_by_blocks("000000010000000000000099", 5)
                .unwrap()
        );
        file.write_all(b"not a catalogue line\n").unwrap();
        // Found before the foreign line is reached; past it, the forward scan's error.
        let err = db.catalogues("000000010000000000000001").unwrap_err();
        assert!(
            matches!(err, WalError::BadXlogLine { line: 44, .. }),
            "{err}"
        );
    }

    /// Two runs storing one WAL at once: the one that catalogues second leaves it out.
    #[test]
    fn a_wal_catalogued_meanwhile_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let db = Xlogdb::for_server(dir.path(), "pg", dir.path());
        let line = |n: u32| XlogLine {
            name: format!("{n:024X}"),
            size: u64::from(n),
            time: 1.5,
            compression: None,
            encryption: None,
        };
        assert_eq!(db.end(), CatalogueEnd::default());
        db.append(&[line(1)]).unwrap();
        let since = db.end();
        // Another run catalogues WAL 2 after this one started.
        db.append(&[line(2)]).unwrap();
        let left_out = db.append_new_since(&[line(2), line(3)], since).unwrap();
        assert_eq!(left_out, HashSet::from([line(2).name]));
        let names: Vec<String> = db.read().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, [line(1).name, line(2).name, line(3).name]);
        // Only what was appended since is read (the run looked at the rest itself)...
        assert!(
            db.append_new_since(&[line(1)], db.end())
                .unwrap()
                .is_empty()
        );
        // ...unless the catalogue was rewritten meanwhile (wal-store delete, rebuild): a
        // new file as long as the old one (the offset then points into other lines)...
        db.replace(&[line(5), line(7)]).unwrap();
        let since = db.end();
        db.append(&[line(6)]).unwrap();
        db.replace(&[line(6), line(7)]).unwrap();
        assert_eq!(fs::metadata(db.path()).unwrap().len(), since.len);
        let left_out = db.append_new_since(&[line(6)], since).unwrap();
        assert_eq!(left_out, HashSet::from([line(6).name]));
        // ...or a shorter one: then all of it is read.
        let since = db.end();
        db.replace(&[line(8)]).unwrap();
        let left_out = db.append_new_since(&[line(8), line(9)], since).unwrap();
        assert_eq!(left_out, HashSet::from([line(8).name]));
        let names: Vec<String> = db.read().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, [line(8).name, line(9).name]);
    }
}
