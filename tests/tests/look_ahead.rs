//! `archive-command --direct --look-ahead`: a call also archives the ready segments after
//! `%p`, and a later call for one of them returns at once, but only for the very file
//! stored, still stored and catalogued.
//!
//! First on a pg_wal of our own (real segments from the fixture set, `.ready` files as
//! PostgreSQL makes them), where each claim can be forced: a later call settled by its
//! mark does not even compress (a `wal-compress` that fails shows it), a file replaced,
//! a stored copy removed or a catalogue line dropped is archived again, a look-ahead
//! failure or time budget fails no call, calls killed at random lose nothing and leave
//! no false mark. Then on a real PostgreSQL 15 whose archiving was off during a bulk
//! load: the backlog drains through look-ahead, every segment archived once and byte
//! for byte, and a point-in-time recovery from that archive comes back exactly.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use walpipe_tests::pitr::{Primary, RESTORE_POINT, STATE_SQL, reference_copy};
use walpipe_tests::wrappers::{
    archived_path, bin_dir, dir_names, read_xlogdb, wrapper, zstd_decompress,
};
use walpipe_tests::{PgCluster, WorkDir, wal_fixture_segments};

const SERVER: &str = "pg";

/// A pg_wal of our own: `count` real segments with their `.ready` files, an archive home,
/// and the private temp directory the wrappers use.
struct World {
    work: WorkDir,
    pg_wal: PathBuf,
    home: PathBuf,
    tmp: PathBuf,
    names: Vec<String>,
}

impl World {
    fn new(count: usize) -> World {
        let work = WorkDir::new();
        let pg_wal = work.join("pg_wal");
        fs::create_dir_all(pg_wal.join("archive_status")).unwrap();
        let tmp = work.join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let mut names = Vec::new();
        for segment in wal_fixture_segments().iter().take(count) {
            let name = segment.file_name().unwrap().to_str().unwrap().to_owned();
            fs::copy(segment, pg_wal.join(&name)).unwrap();
            fs::write(
                pg_wal.join("archive_status").join(format!("{name}.ready")),
                b"",
            )
            .unwrap();
            names.push(name);
        }
        World {
            home: work.join("home"),
            work,
            pg_wal,
            tmp,
            names,
        }
    }

    /// archive-command for segment `index` with `extra` flags, binaries from `bin`.
    fn call(&self, index: usize, bin: &Path, extra: &[&str]) -> std::process::Output {
        let mut cmd = wrapper("archive-command");
        cmd.env("WALPIPE_BIN_DIR", bin)
            .env("TMPDIR", &self.tmp)
            .arg("--home")
            .arg(&self.home)
            .args(["--server", SERVER, "--direct"])
            .args(extra)
            .arg(self.pg_wal.join(&self.names[index]));
        cmd.output().unwrap()
    }

    fn wals(&self) -> PathBuf {
        self.home.join(SERVER).join("wals")
    }

    fn archived(&self, index: usize) -> PathBuf {
        archived_path(&self.wals(), &self.names[index])
    }

    /// The names marked as stored ahead.
    fn marks(&self) -> Vec<String> {
        let root = self
            .tmp
            .join(format!("walpipe-ahead-{}", nix::unistd::geteuid()));
        dir_names(&root)
            .iter()
            .flat_map(|dir| dir_names(&root.join(dir)))
            .collect()
    }

    /// Drops segment `index`'s catalogue line.
    fn drop_line(&self, index: usize) {
        let xlogdb = self.wals().join(format!("{SERVER}-xlog.db"));
        let kept: String = fs::read_to_string(&xlogdb)
            .unwrap()
            .split_inclusive('\n')
            .filter(|line| !line.starts_with(&self.names[index]))
            .collect();
        fs::write(&xlogdb, kept).unwrap();
    }

    /// PostgreSQL's side of a successful call: the segment is done.
    fn done(&self, index: usize) {
        let status = self.pg_wal.join("archive_status");
        let name = &self.names[index];
        // As PostgreSQL does it; a test's file, nothing to keep durable.
        #[allow(clippy::disallowed_methods)]
        fs::rename(
            status.join(format!("{name}.ready")),
            status.join(format!("{name}.done")),
        )
        .unwrap();
    }
}

/// The binaries under test, but a `wal-compress` that fails: a call that still succeeds
/// did not archive anything itself.
fn bin_without_compress(work: &WorkDir) -> PathBuf {
    let dir = work.join("bin-no-compress");
    fs::create_dir_all(&dir).unwrap();
    for entry in fs::read_dir(bin_dir()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name = name.to_str().unwrap();
        if name.starts_with("wal-") && !name.contains('.') && entry.path().is_file() {
            std::os::unix::fs::symlink(entry.path(), dir.join(name)).unwrap();
        }
    }
    let stub = dir.join("wal-compress");
    let _ = fs::remove_file(&stub);
    fs::write(
        &stub,
        // The settings check (an empty stream) passes; a record fails, once the whole
        // stream is read (so that no stage before it dies of a closed pipe, 74).
        "#!/bin/sh\nif read -r line; then cat >/dev/null; echo 'wal-compress: not here' >&2; exit 70; fi\n",
    )
    .unwrap();
    fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn text(out: &std::process::Output) -> String {
    walpipe_tests::wrappers::output_text(out)
}

/// Each segment archived byte for byte, catalogued once.
fn assert_archived_once(world: &World, upto: usize) {
    let lines = read_xlogdb(&world.wals().join(format!("{SERVER}-xlog.db")));
    for (index, name) in world.names.iter().enumerate().take(upto) {
        assert_eq!(
            lines.iter().filter(|l| &l.name == name).count(),
            1,
            "{name}: one catalogue line"
        );
        let original = fs::read(world.pg_wal.join(name)).unwrap();
        assert!(
            zstd_decompress(&world.archived(index)) == original,
            "{name}: stored byte for byte"
        );
    }
}

#[test]
fn a_later_call_returns_at_once_only_for_the_file_stored_ahead() {
    let world = World::new(9);
    let bin = bin_dir();
    let stub = bin_without_compress(&world.work);
    // Calls in order, each "done" as PostgreSQL marks it, as in a drain.
    let ahead = ["--look-ahead", "2"];

    // The call for 0 archives 0, 1 and 2; 1 and 2 are marked.
    let out = world.call(0, &bin, &ahead);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    world.done(0);
    assert!(world.archived(2).is_file() && !world.archived(3).exists());
    assert_eq!(
        world.marks(),
        [world.names[1].as_str(), world.names[2].as_str()]
    );
    // The call for 1 is settled by its mark: nothing compressed (the stub would fail).
    let out = world.call(1, &stub, &ahead);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stderr.is_empty(), "{}", text(&out));
    world.done(1);
    assert_eq!(
        world.marks(),
        [world.names[2].as_str()],
        "1's mark forgotten"
    );

    // 2 replaced by a copy (same bytes, another file): its mark is not that file's.
    let path = world.pg_wal.join(&world.names[2]);
    let bytes = fs::read(&path).unwrap();
    fs::remove_file(&path).unwrap();
    fs::write(&path, &bytes).unwrap();
    let out = world.call(2, &stub, &ahead);
    assert_eq!(out.status.code(), Some(70), "archived anew: {}", text(&out));
    let out = world.call(2, &bin, &ahead);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    world.done(2);

    // That call stored 3 and 4 ahead. 3 gone from the archive (its file and its line,
    // as a delete leaves it): archived anew.
    fs::remove_file(world.archived(3)).unwrap();
    world.drop_line(3);
    assert_eq!(world.call(3, &stub, &ahead).status.code(), Some(70));
    assert_eq!(world.call(3, &bin, &ahead).status.code(), Some(0));
    world.done(3);
    // 4's catalogue line dropped: archived anew (catalogued again).
    world.drop_line(4);
    assert_eq!(world.call(4, &stub, &ahead).status.code(), Some(70));
    assert_eq!(world.call(4, &bin, &ahead).status.code(), Some(0));
    world.done(4);

    // 3's call stored 5 and 6 ahead (4 was marked), 4's call 7 and 8.
    let later: Vec<&str> = world.names[5..].iter().map(String::as_str).collect();
    assert_eq!(world.marks(), later);
    assert_archived_once(&world, 9);
}

/// A segment stored ahead, then rewritten in place with its modification time put back
/// (no one but PostgreSQL should write there, but a mark must not vouch for other
/// bytes): its call is not settled by the mark; it finds the stored copy different and
/// fails (1), as without look-ahead.
#[test]
fn a_file_rewritten_in_place_is_not_settled_by_its_mark() {
    let world = World::new(3);
    let bin = bin_dir();
    let out = world.call(0, &bin, &["--look-ahead", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    world.done(0);
    let path = world.pg_wal.join(&world.names[1]);
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[(4 << 20) + 4000] ^= 0x10;
    let mut file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::io::Write::write_all(&mut file, &bytes).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    let out = world.call(1, &bin, &["--look-ahead", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // A bad setting is refused before any mark settles a call.
    let out = world.call(2, &bin, &["--look-ahead", "0"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(world.marks().contains(&world.names[2]), "nothing forgotten");
}

/// Marks no one but us may write, or none: a private directory that is another user's,
/// writable by others, or inside pg_wal turns look-ahead off with one line; the call
/// archives %p as a plain --direct call and succeeds.
#[test]
fn marks_that_cannot_be_trusted_turn_look_ahead_off() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new(3);
    let bin = bin_dir();
    let root = world
        .tmp
        .join(format!("walpipe-ahead-{}", nix::unistd::geteuid()));
    fs::create_dir_all(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
    let out = world.call(0, &bin, &["--look-ahead", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("look-ahead off") && said.contains("writable by others"),
        "{said}"
    );
    assert!(world.archived(0).is_file() && !world.archived(1).exists());
    world.done(0);
    fs::remove_dir_all(&root).unwrap();
    // $TMPDIR inside pg_wal.
    let out = wrapper("archive-command")
        .env("TMPDIR", world.pg_wal.join("archive_status"))
        .arg("--home")
        .arg(&world.home)
        .args(["--server", SERVER, "--direct", "--look-ahead", "2"])
        .arg(world.pg_wal.join(&world.names[1]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("inside PostgreSQL's pg_wal"));
    assert_eq!(
        dir_names(&world.pg_wal.join("archive_status")).len(),
        3,
        "nothing made in pg_wal"
    );
    assert!(world.archived(1).is_file() && !world.archived(2).exists());
}

/// A ready file that is not WAL (garbage) and one whose file is gone: the call that
/// looks ahead over them succeeds and says nothing; neither is stored nor marked, and
/// the one after them is.
#[test]
fn a_look_ahead_failure_fails_no_call() {
    let world = World::new(5);
    fs::write(world.pg_wal.join(&world.names[2]), b"garbage").unwrap();
    fs::remove_file(world.pg_wal.join(&world.names[3])).unwrap();
    let out = world.call(0, &bin_dir(), &["--look-ahead", "4"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stderr.is_empty(), "{}", text(&out));
    assert!(!world.archived(2).exists() && !world.archived(3).exists());
    assert!(world.archived(1).is_file() && world.archived(4).is_file());
    assert_eq!(
        world.marks(),
        [world.names[1].as_str(), world.names[4].as_str()]
    );
}

#[test]
fn the_time_budget_and_bad_settings() {
    let world = World::new(4);
    let bin = bin_dir();
    // No time to look ahead: only %p is stored, nothing is marked.
    let out = world.call(
        0,
        &bin,
        &["--look-ahead", "3", "--look-ahead-time", "0.000001"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(world.archived(0).is_file() && !world.archived(1).exists());
    assert!(world.marks().is_empty());
    for bad in [
        &["--look-ahead", "0"][..],
        &["--look-ahead", "65"],
        &["--look-ahead", "many"],
        &["--look-ahead", "2", "--look-ahead-time", "0"],
        &["--look-ahead", "2", "--look-ahead-time", "-1"],
    ] {
        let out = world.call(1, &bin, bad);
        assert_eq!(out.status.code(), Some(64), "{bad:?}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    }
    // Without --direct: refused (into the incoming queue a call is a cheap copy).
    let out = wrapper("archive-command")
        .env("TMPDIR", &world.tmp)
        .arg("--home")
        .arg(&world.home)
        .args(["--server", SERVER, "--look-ahead", "2"])
        .arg(world.pg_wal.join(&world.names[1]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    // Marks where they must never be: the archive, pg_wal.
    for marks in [world.wals(), world.pg_wal.clone()] {
        let out = walpipe_tests::wrappers::tool("wal-store")
            .args(["settled", "--home"])
            .arg(&world.home)
            .args(["--server", SERVER, "--marks"])
            .arg(&marks)
            .arg(world.pg_wal.join(&world.names[1]))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(78),
            "{}: {}",
            marks.display(),
            text(&out)
        );
    }
}

/// Calls killed at random while they archive ahead (SIGKILL to the whole call, its
/// stages and look-ahead work included), each retried as PostgreSQL retries: nothing is
/// lost, nothing catalogued twice, and no call ever succeeds for a segment that is not
/// stored and catalogued.
#[test]
fn calls_killed_at_random_lose_nothing_and_leave_no_false_mark() {
    let world = World::new(12);
    let bin = bin_dir();
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    let mut random = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    let mut kills = 0;
    for index in 0..world.names.len() {
        // At most two killed attempts per segment, then one that runs to its end.
        for attempt in 0.. {
            let mut cmd = wrapper("archive-command");
            cmd.env("WALPIPE_BIN_DIR", &bin)
                .env("TMPDIR", &world.tmp)
                .arg("--home")
                .arg(&world.home)
                .args(["--server", SERVER, "--direct", "--look-ahead", "3"])
                .arg(world.pg_wal.join(&world.names[index]))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0);
            let mut child = cmd.spawn().unwrap();
            if attempt < 2 && random(3) > 0 {
                std::thread::sleep(Duration::from_millis(random(100)));
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let status = child.wait().unwrap();
                if status.code().is_none() {
                    kills += 1;
                    continue;
                }
                assert_eq!(status.code(), Some(0));
            } else {
                let status = child.wait().unwrap();
                assert_eq!(status.code(), Some(0), "{}", world.names[index]);
            }
            // A success means stored and catalogued, now.
            assert!(world.archived(index).is_file(), "{}", world.names[index]);
            let lines = read_xlogdb(&world.wals().join(format!("{SERVER}-xlog.db")));
            assert!(lines.iter().any(|l| l.name == world.names[index]));
            world.done(index);
            break;
        }
    }
    assert!(kills > 0, "some calls were killed");
    assert_archived_once(&world, world.names.len());
}

/// Real PostgreSQL 15, archiving off (an empty archive_command) through a bulk load,
/// then turned on with --look-ahead: the backlog drains, every segment archived once and
/// byte for byte (against copies taken as PostgreSQL hands them over), some stored ahead
/// of their call; a recovery to a restore point from that archive comes back exactly.
#[test]
fn a_backlog_drains_through_look_ahead_and_recovers() {
    let work = WorkDir::new();
    let home = work.mkdir_owned("home");
    let reference = work.mkdir_owned("ref");
    let tmp = work.mkdir_owned("tmp");
    let calls = work.mkdir_owned("calls");
    // A reference copy of what PostgreSQL hands over, the call's start time, then
    // walpipe with look-ahead. On for the base backup (which waits for its WAL to be
    // archived), then off through the load.
    let command = format!(
        "{copy} && date +%s.%N > {calls}/%f && TMPDIR={tmp} WALPIPE_BIN_DIR={bin} {script} \
         --home {home} --server {SERVER} --direct --look-ahead 3 %p",
        copy = reference_copy(&reference),
        calls = calls.display(),
        tmp = tmp.display(),
        bin = bin_dir().display(),
        script = walpipe_tests::script("archive-command").display(),
        home = home.display(),
    );
    let mut pg = PgCluster::init(
        &work,
        &format!("archive_mode = on\narchive_command = '{command}'\n"),
    )
    .expect("initdb");
    pg.start().expect("start");
    pg.pgbench(["-i", "-q", "-s", "1"]).expect("pgbench -i");
    let backup = pg
        .base_backup("backup", ["-X", "none"])
        .expect("pg_basebackup");
    pg.psql("ALTER SYSTEM SET archive_command = ''")
        .expect("archiving off");
    pg.psql("SELECT pg_reload_conf()").expect("reload");
    pg.psql("CREATE TABLE bulk AS SELECT g, md5(g::text) AS h FROM generate_series(1, 1000000) g")
        .expect("bulk load");
    for _ in 0..3 {
        pg.pgbench(["-n", "-c", "2", "-t", "150"]).expect("pgbench");
        pg.switch_wal().expect("pg_switch_wal");
    }
    pg.psql(&format!(
        "SELECT pg_create_restore_point('{RESTORE_POINT}')"
    ))
    .expect("restore point");
    let state = pg.psql(STATE_SQL).expect("state");
    pg.pgbench(["-n", "-c", "2", "-t", "150"]).expect("pgbench");
    let last = pg.switch_wal().expect("pg_switch_wal");
    let ready = dir_names(&pg.data_dir().join("pg_wal/archive_status"))
        .iter()
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "ready"))
        .count();
    assert!(ready >= 8, "a backlog: {ready} segments ready");
    // Archiving on again.
    pg.psql(&format!("ALTER SYSTEM SET archive_command = '{command}'"))
        .expect("archive_command");
    pg.psql("SELECT pg_reload_conf()").expect("reload");
    pg.wait_archived(&last, Duration::from_secs(300))
        .expect("drained");
    assert_eq!(
        pg.psql("SELECT failed_count FROM pg_stat_archiver")
            .unwrap(),
        "0",
        "{}",
        pg.log_tail(40)
    );
    pg.stop().expect("stop");
    check_drained(&home, &reference, &calls, ready);
    let primary = Primary {
        work: work.clone(),
        backup,
        state,
        last,
    };
    let restore = format!(
        "WALPIPE_BIN_DIR={bin} {script} --home {home} --server {SERVER} %f %p",
        bin = bin_dir().display(),
        script = walpipe_tests::script("restore-wal").display(),
        home = home.display(),
    );
    let recovered = primary.recover("restored", &restore);
    primary.assert_recovered(&recovered, "look-ahead archive");
}

/// After the drain: every segment once, byte for byte against the copy PostgreSQL handed
/// over; some stored before PostgreSQL called for them (linked into place before the
/// call began).
fn check_drained(home: &Path, reference: &Path, calls: &Path, ready: usize) {
    let t = Instant::now();
    // Every segment once, byte for byte; some stored before PostgreSQL called for them.
    let wals = home.join(SERVER).join("wals");
    let lines = read_xlogdb(&wals.join(format!("{SERVER}-xlog.db")));
    let segments: Vec<String> = dir_names(reference)
        .into_iter()
        .filter(|n| n.len() == 24)
        .collect();
    assert!(segments.len() >= ready, "{segments:?}");
    let mut ahead = 0;
    for name in &segments {
        assert_eq!(
            lines.iter().filter(|l| &l.name == name).count(),
            1,
            "{name}"
        );
        let stored = archived_path(&wals, name);
        assert!(
            zstd_decompress(&stored) == fs::read(reference.join(name)).unwrap(),
            "{name}: byte for byte"
        );
        let called: f64 = fs::read_to_string(calls.join(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // When it was linked into place (its mtime is the source's).
        let meta = fs::metadata(&stored).unwrap();
        #[allow(clippy::cast_precision_loss, reason = "seconds, compared")]
        let stored_at = meta.ctime() as f64 + meta.ctime_nsec() as f64 / 1e9;
        if stored_at < called {
            ahead += 1;
        }
    }
    assert!(ahead > 0, "some segments stored ahead of their call");
    eprintln!(
        "look-ahead: {} segments drained, {ahead} stored ahead of their call ({:.1?})",
        segments.len(),
        t.elapsed()
    );
}

/// Into a bucket (Garage): a call stores %p and the segments ahead as objects; a later
/// call is settled by its mark only while the object is there (one listing); an object
/// deleted since is uploaded anew. Every object comes back byte for byte.
#[test]
fn look_ahead_into_a_bucket() {
    let world = World::new(4);
    let garage = walpipe_tests::Garage::start(world.work.path());
    let url = format!("s3://{}/ahead", garage.bucket());
    let stub = bin_without_compress(&world.work);
    let call = |index: usize, bin: &Path| {
        let mut cmd = wrapper("archive-command");
        cmd.env("WALPIPE_BIN_DIR", bin)
            .env("TMPDIR", &world.tmp)
            .envs(garage.env())
            .args(["--server", SERVER, "--direct", "--archive", &url])
            .args(["--look-ahead", "2"])
            .arg(world.pg_wal.join(&world.names[index]));
        cmd.output().unwrap()
    };
    let key = |index: usize| {
        let name = &world.names[index];
        format!("ahead/{SERVER}/wals/{}/{name}.zst", &name[..16])
    };
    let out = call(0, &bin_dir());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    world.done(0);
    let keys: Vec<String> = garage
        .list_keys(garage.bucket(), "ahead/")
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(keys, [key(0), key(1), key(2)]);
    // Settled by its mark: nothing compressed.
    let out = call(1, &stub);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    world.done(1);
    // The object of 2 deleted: archived anew.
    let out = garage
        .aws()
        .args([
            "s3api",
            "delete-object",
            "--bucket",
            garage.bucket(),
            "--key",
            &key(2),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(call(2, &stub).status.code(), Some(70));
    let out = call(2, &bin_dir());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    world.done(2);
    for index in 0..4 {
        let stored = garage.get_object(garage.bucket(), &key(index));
        let file = world.work.join("object.zst");
        fs::write(&file, stored).unwrap();
        assert!(
            zstd_decompress(&file) == fs::read(world.pg_wal.join(&world.names[index])).unwrap(),
            "{}: byte for byte",
            world.names[index]
        );
    }
}

/// Encrypted (a passphrase): the segments ahead are stored encrypted like %p, a later
/// call is settled by its mark, and the archive verifies clean with the passphrase.
#[test]
fn look_ahead_with_encryption() {
    let world = World::new(4);
    let passphrase = world.work.join("passphrase");
    fs::write(&passphrase, "a passphrase for the test\n").unwrap();
    let stub = bin_without_compress(&world.work);
    let encrypted = [
        "--look-ahead",
        "3",
        "--passphrase-file",
        passphrase.to_str().unwrap(),
    ];
    let out = world.call(0, &bin_dir(), &encrypted);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    world.done(0);
    for index in 1..4 {
        let out = world.call(index, &stub, &encrypted);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        world.done(index);
    }
    let out = wrapper("verify-wal")
        .env("TMPDIR", &world.tmp)
        .arg("--home")
        .arg(&world.home)
        .args(["--server", SERVER, "--deep", "--passphrase-file"])
        .arg(&passphrase)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 files: 4 verified"));
}
