//! `scripts/install` gives a DBA a walpipe that works from its prefix alone.
//!
//! What the README's quick start promises after an install, proven with the installed
//! files only (never the source tree, never `WALPIPE_BIN_DIR`, `PATH` cut to the system's):
//! * a real PostgreSQL 15 archives through `walpipe-archive-command` and
//!   `walpipe-archive-wal`, `walpipe-verify-wal` finds the archive whole, and a point-in-time
//!   recovery through `walpipe-restore-wal` brings the data back exactly;
//! * every binary, subcommand and wrapper has a man page that `man -l` renders without a
//!   warning, bash completes the binaries' and the wrappers' flags, the systemd units name
//!   the installed commands, and `--uninstall` leaves no file behind;
//! * the Debian package holds that same install under /usr (units under /lib/systemd),
//!   declares the libraries the binaries link against, and its wrappers archive and
//!   restore from a root it was unpacked into;
//! * flags pointing at the wrong place are refused with one line and the documented code,
//!   and an uninstall never removes a file outside the prefix, whatever its manifest says.
//!
//! Needs `cargo build --workspace --bins` first (walpipe-docgen included), PostgreSQL 15,
//! man-db and groff.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use walpipe_tests::pitr::{LOAD_ROUNDS, Primary};
use walpipe_tests::wrappers::{BINARIES, assert_success, bin_dir, dir_names, output_text};
use walpipe_tests::{WorkDir, as_postgres, script, wal_segment};

const SERVER: &str = "pg";

const WRAPPERS: [&str; 5] = [
    "walpipe-archive-command",
    "walpipe-archive-wal",
    "walpipe-restore-wal",
    "walpipe-delete-wal",
    "walpipe-verify-wal",
];

/// The PATH the installed commands get: the system's, nothing of the source tree.
const SYSTEM_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Installs walpipe into `prefix` from the binaries under test.
fn install(prefix: &Path, extra: &[&str]) -> Output {
    Command::new(script("install"))
        .arg("--prefix")
        .arg(prefix)
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(extra)
        .env_remove("WALPIPE_BIN_DIR")
        .output()
        .unwrap()
}

/// A shell command line running an installed command with nothing of the test's
/// environment that could lead it back to the source tree.
fn installed(prefix: &Path, command: &str) -> String {
    format!(
        "env -u WALPIPE_BIN_DIR PATH={SYSTEM_PATH} {}/bin/{command}",
        prefix.display()
    )
}

/// Runs an installed command as PostgreSQL's user, in the same cut-down environment.
fn run_installed_as_postgres(prefix: &Path, command: &str, args: &[&str]) -> Output {
    as_postgres(prefix.join("bin").join(command))
        .args(args)
        .env_remove("WALPIPE_BIN_DIR")
        .env("PATH", SYSTEM_PATH)
        .output()
        .unwrap()
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn installed_commands_archive_a_real_server_and_recover_it_to_a_point_in_time() {
    let work = WorkDir::new();
    let prefix = work.join("prefix");
    let out = install(&prefix, &[]);
    assert_success(&out, "scripts/install");
    let home = work.mkdir_owned("home");
    let home_arg = home.to_str().unwrap();

    let archive_command = format!(
        "{} --home {home_arg} --server {SERVER} %p",
        installed(&prefix, "walpipe-archive-command")
    );
    let primary = Primary::run(&work, &archive_command);
    let out = run_installed_as_postgres(
        &prefix,
        "walpipe-archive-wal",
        &["--home", home_arg, "--server", SERVER],
    );
    assert_success(&out, "walpipe-archive-wal");
    let wals = home.join(SERVER).join("wals");
    let archived: usize = dir_names(&wals)
        .iter()
        .filter(|name| name.len() == 16)
        .map(|hash_dir| dir_names(&wals.join(hash_dir)).len())
        .sum();
    assert!(archived > LOAD_ROUNDS, "{archived} segments archived");
    let out = run_installed_as_postgres(
        &prefix,
        "walpipe-verify-wal",
        &["--home", home_arg, "--server", SERVER],
    );
    assert_success(&out, "walpipe-verify-wal");

    let restore_command = format!(
        "{} --home {home_arg} --server {SERVER} %f %p",
        installed(&prefix, "walpipe-restore-wal")
    );
    let recovered = primary.recover("recovered", &restore_command);
    primary.assert_recovered(&recovered, "installed walpipe");
}

/// The binaries are named in the workspace (a member with a `src/main.rs`), in
/// `scripts/install` and in the test kit (`BINARIES`, which the install test below holds
/// the man pages and completions to): a binary added to one and not the others would go
/// uninstalled, undocumented or untested.
#[test]
fn every_binary_of_the_workspace_is_installed_and_tested() {
    let root = walpipe_tests::paths::workspace_root();
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find_map(|line| line.strip_prefix("members = "))
        .expect("a members line");
    let mut binaries: Vec<&str> = members
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|member| member.trim().trim_matches('"'))
        .filter(|member| root.join(member).join("src/main.rs").is_file())
        // Build and test tools, never installed.
        .filter(|member| !["docgen", "tests"].contains(member))
        .collect();
    binaries.sort_unstable();
    let mut kit = BINARIES.to_vec();
    kit.sort_unstable();
    assert_eq!(
        binaries, kit,
        "workspace members vs the test kit's BINARIES"
    );
    let install = fs::read_to_string(script("install")).unwrap();
    let mut installed: Vec<&str> = install
        .lines()
        .find_map(|line| line.strip_prefix("BINARIES=("))
        .and_then(|list| list.strip_suffix(')'))
        .expect("scripts/install's BINARIES=(...) line")
        .split_whitespace()
        .collect();
    installed.sort_unstable();
    assert_eq!(installed, kit, "scripts/install vs the test kit's BINARIES");
}

#[test]
fn the_install_holds_every_command_page_completion_and_unit_and_uninstall_removes_them() {
    let work = WorkDir::new();
    let prefix = work.join("prefix");
    assert_success(&install(&prefix, &[]), "scripts/install");
    let bin = prefix.join("bin");
    let man1 = prefix.join("share/man/man1");
    for name in BINARIES.iter().chain(WRAPPERS.iter()) {
        assert!(bin.join(name).is_file(), "{name} installed");
        assert!(
            man1.join(format!("{name}.1")).is_file(),
            "{name}.1 installed"
        );
        assert!(
            prefix
                .join("share/bash-completion/completions")
                .join(name)
                .is_file(),
            "{name}'s bash completion installed"
        );
    }
    assert!(
        man1.join("wal-store-put.1").is_file(),
        "subcommands have pages"
    );

    // Found without WALPIPE_BIN_DIR and without PATH: a %p that is not there is 66 (the
    // wrapper ran wal-store), not 70 (it could not find it).
    let out = Command::new(bin.join("walpipe-archive-command"))
        .args(["--home", "/nonexistent", "--server", SERVER])
        .arg(work.join("000000010000000000000001"))
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(66), "{}", output_text(&out));

    every_page_renders_without_a_warning(&man1);
    for unit in [
        "walpipe-receive@.service",
        "walpipe-archive-wal@.service",
        "walpipe-archive-wal@.timer",
    ] {
        let text = fs::read_to_string(prefix.join("lib/systemd/system").join(unit)).unwrap();
        assert!(!text.contains("@BINDIR@"), "{unit}: {text}");
        for line in text.lines().filter(|l| l.starts_with("ExecStart=")) {
            let program = line["ExecStart=".len()..].split(' ').next().unwrap();
            assert!(
                Path::new(program).starts_with(&bin) && Path::new(program).is_file(),
                "{unit} runs {program}, not an installed command"
            );
        }
    }

    units_verify_as_instances_of_a_server(&prefix, &work.join("units"));

    // The manifest lists exactly what is there, and uninstall takes all of it away.
    let manifest = fs::read_to_string(prefix.join("lib/walpipe/manifest")).unwrap();
    let mut listed: Vec<PathBuf> = manifest.lines().map(PathBuf::from).collect();
    listed.push(prefix.join("lib/walpipe/manifest"));
    listed.sort();
    assert_eq!(files_under(&prefix), listed);
    // Installing again over it changes nothing in the list.
    assert_success(&install(&prefix, &[]), "scripts/install, again");
    assert_eq!(files_under(&prefix), listed);
    let out = Command::new(script("install"))
        .arg("--uninstall")
        .arg("--prefix")
        .arg(&prefix)
        .output()
        .unwrap();
    assert_success(&out, "scripts/install --uninstall");
    assert_eq!(files_under(&prefix), Vec::<PathBuf>::new());
}

/// `systemd-analyze verify` finds nothing wrong with the units as instances for server
/// `pg`: every directive known, every command installed and executable, every
/// `Documentation=` page among the installed ones.
fn units_verify_as_instances_of_a_server(prefix: &Path, scratch: &Path) {
    fs::create_dir_all(scratch).unwrap();
    let mut instances = Vec::new();
    for unit in files_under(&prefix.join("lib/systemd/system")) {
        let name = unit
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .replace('@', "@pg");
        fs::copy(&unit, scratch.join(&name)).unwrap();
        instances.push(scratch.join(name));
    }
    assert_eq!(instances.len(), 3, "{instances:?}");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&instances)
        .current_dir(scratch)
        .env("MANPATH", prefix.join("share/man"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        output_text(&out)
    );
}

/// `man -l` renders each page to text with no warning from groff.
fn every_page_renders_without_a_warning(man1: &Path) {
    let pages = files_under(man1);
    assert!(pages.len() > BINARIES.len() + WRAPPERS.len(), "{pages:?}");
    for page in pages {
        let out = Command::new("man")
            .args(["--warnings=w", "-l"])
            .arg(&page)
            .env("MANWIDTH", "80")
            // Into a pipe man prints plain text, unless one of these says otherwise.
            .env_remove("MAN_KEEP_FORMATTING")
            .env_remove("MANPAGER")
            .env_remove("PAGER")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && out.stderr.is_empty() && text.contains("NAME"),
            "man -l {}: {}",
            page.display(),
            output_text(&out)
        );
    }
}

/// Asks bash, started interactively, what it completes after `words` with the cursor on
/// the last one, using the completion file installed for the command.
fn complete(prefix: &Path, command: &str, words: &[&str]) -> Vec<String> {
    let file = prefix
        .join("share/bash-completion/completions")
        .join(command);
    let function_call = format!(
        "source {file}\n\
         spec=$(complete -p {command}) || exit 3\n\
         fn=${{spec#*-F }}; fn=${{fn%% *}}\n\
         COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n\
         \"$fn\" \"${{COMP_WORDS[0]}}\" \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        file = file.display(),
        // Quoted, so that an empty word (the cursor after a space) stays a word.
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-i", "-c", &function_call])
        .env_remove("WALPIPE_BIN_DIR")
        .env(
            "PATH",
            format!("{}:{SYSTEM_PATH}", prefix.join("bin").display()),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{command}: {}", output_text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_the_flags_of_binaries_subcommands_and_wrappers() {
    let work = WorkDir::new();
    let prefix = work.join("prefix");
    assert_success(&install(&prefix, &[]), "scripts/install");
    let subcommands = complete(&prefix, "wal-store", &["wal-store", ""]);
    for expected in ["put", "get", "delete"] {
        assert!(
            subcommands.iter().any(|s| s == expected),
            "wal-store <TAB>: {subcommands:?}"
        );
    }
    let flags = complete(&prefix, "wal-store", &["wal-store", "put", "--arch"]);
    assert_eq!(flags, ["--archive"], "wal-store put --arch<TAB>");
    let flags = complete(&prefix, "wal-verify", &["wal-verify", "--de"]);
    assert_eq!(flags, ["--deep"], "wal-verify --de<TAB>");
    let flags = complete(
        &prefix,
        "walpipe-archive-command",
        &["walpipe-archive-command", "--dir"],
    );
    assert_eq!(flags, ["--direct"], "walpipe-archive-command --dir<TAB>");
    let flags = complete(
        &prefix,
        "walpipe-restore-wal",
        &["walpipe-restore-wal", "--pref"],
    );
    assert!(
        flags.iter().all(|f| f.starts_with("--pref")) && !flags.is_empty(),
        "walpipe-restore-wal --pref<TAB>: {flags:?}"
    );
}

#[test]
fn wrong_flags_are_refused_and_an_uninstall_never_leaves_its_prefix() {
    let work = WorkDir::new();
    let prefix = work.join("prefix");
    let refused = |args: &[&str], code: i32, words: &str| {
        let out = Command::new(script("install"))
            .args(args)
            .env_remove("WALPIPE_BIN_DIR")
            .output()
            .unwrap();
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {text}");
        assert!(text.contains(words), "{args:?}: {text}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).lines().count(),
            1,
            "{args:?}: one line: {text}"
        );
    };
    let prefix_arg = prefix.to_str().unwrap();
    refused(&["--prefix", "relative/dir"], 64, "absolute");
    refused(&["--prefix"], 64, "--prefix needs a value");
    let empty = work.join("empty");
    fs::create_dir(&empty).unwrap();
    refused(
        &["--prefix", prefix_arg, "--bin-dir", empty.to_str().unwrap()],
        66,
        &format!("{}/wal-scan", empty.display()),
    );
    refused(
        &["--uninstall", "--prefix", prefix_arg],
        66,
        "no walpipe installed",
    );
    assert!(!prefix.exists(), "nothing made by refused runs");

    // A manifest naming a file elsewhere (edited, or another tool's) is refused whole,
    // and so is one reaching elsewhere through a link planted in the prefix.
    let outside = work.join("precious");
    fs::write(&outside, "keep me").unwrap();
    assert_success(&install(&prefix, &[]), "scripts/install");
    let manifest = prefix.join("lib/walpipe/manifest");
    for hostile in [
        outside.display().to_string(),
        format!("{}/bin/../../precious", prefix.display()),
    ] {
        let original = fs::read_to_string(&manifest).unwrap();
        fs::write(&manifest, format!("{hostile}\n{original}")).unwrap();
        refused(&["--uninstall", "--prefix", prefix_arg], 65, &hostile);
        assert_eq!(fs::read_to_string(&outside).unwrap(), "keep me");
        assert!(prefix.join("bin/wal-store").is_file(), "nothing removed");
        fs::write(&manifest, original).unwrap();
    }
    std::os::unix::fs::symlink(work.path(), prefix.join("share/elsewhere")).unwrap();
    let original = fs::read_to_string(&manifest).unwrap();
    let through_link = format!("{}/share/elsewhere/precious", prefix.display());
    fs::write(&manifest, format!("{original}{through_link}\n")).unwrap();
    let out = Command::new(script("install"))
        .args(["--uninstall", "--prefix", prefix_arg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", output_text(&out));
    assert_eq!(fs::read_to_string(&outside).unwrap(), "keep me");
}

#[test]
fn the_debian_package_holds_the_install_and_its_wrappers_run_from_where_it_is_unpacked() {
    let work = WorkDir::new();
    let stripped = stripped_binaries(&work);
    let out = Command::new(script("package-deb"))
        .arg("--bin-dir")
        .arg(&stripped)
        .arg("--out")
        .arg(work.join("deb"))
        // xz is slow: what is checked is the same.
        .args(["--compression", "gzip"])
        .env_remove("WALPIPE_BIN_DIR")
        .output()
        .unwrap();
    assert_success(&out, "scripts/package-deb");
    let deb = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(deb.starts_with(work.join("deb")), "{}", deb.display());

    let info = Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .output()
        .unwrap();
    assert_success(&info, "dpkg-deb -I");
    let info = String::from_utf8(info.stdout).unwrap();
    let depends = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends: {info}"));
    for library in ["libc6", "liblzma5", "libssl3"] {
        let versioned = format!("{library} (>= ");
        assert!(
            depends.split(", ").any(|d| d.starts_with(&versioned)),
            "{library}, with the version built against, in {depends}"
        );
    }
    assert!(info.contains(" md5sums"), "{info}");
    lintian_finds_nothing(&deb);
    assert!(info.contains(" Package: walpipe\n"), "{info}");

    let contents = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    assert_success(&contents, "dpkg-deb -c");
    let contents = String::from_utf8(contents.stdout).unwrap();
    for line in contents.lines() {
        assert!(line.contains(" root/root "), "owned by root: {line}");
    }
    let paths: Vec<&str> = contents
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    for expected in BINARIES
        .iter()
        .chain(WRAPPERS.iter())
        .map(|name| format!("./usr/bin/{name}"))
        .chain([
            "./usr/lib/walpipe/common.sh".to_string(),
            "./usr/share/man/man1/wal-store-put.1.gz".to_string(),
            "./usr/share/man/man1/walpipe-archive-command.1.gz".to_string(),
            "./usr/share/bash-completion/completions/wal-store".to_string(),
            "./lib/systemd/system/walpipe-receive@.service".to_string(),
            "./lib/systemd/system/walpipe-archive-wal@.timer".to_string(),
            "./usr/share/doc/walpipe/README.md".to_string(),
            "./usr/share/doc/walpipe/copyright".to_string(),
            "./usr/share/doc/walpipe/changelog.gz".to_string(),
            "./etc/walpipe/".to_string(),
        ])
    {
        assert!(
            paths.contains(&expected.as_str()),
            "{expected} in:\n{contents}"
        );
    }
    assert!(
        !paths.iter().any(|p| p.ends_with("/manifest")),
        "dpkg keeps the file list:\n{contents}"
    );
    let unit = paths
        .iter()
        .find(|p| p.ends_with("walpipe-receive@.service"))
        .unwrap();
    let root = work.join("root");
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .output()
        .unwrap();
    assert_success(&out, "dpkg-deb -x");
    packaged_pages_are_compressed_and_render(&root);
    let unit_text = fs::read_to_string(root.join(unit)).unwrap();
    assert!(
        unit_text.contains("ExecStart=/usr/bin/wal-receive stream"),
        "{unit_text}"
    );

    unpacked_wrappers_archive_and_restore(&root, &work);
}

/// The debug binaries, stripped as the dist profile strips them (lintian refuses
/// unstripped ones, and they are large), in a directory of `work`.
fn stripped_binaries(work: &WorkDir) -> PathBuf {
    let stripped = work.join("bin");
    fs::create_dir_all(&stripped).unwrap();
    for name in BINARIES.iter().copied().chain(["walpipe-docgen"]) {
        let out = Command::new("strip")
            .arg("-o")
            .arg(stripped.join(name))
            .arg(bin_dir().join(name))
            .output()
            .unwrap();
        assert_success(&out, &format!("strip {name}"));
    }
    stripped
}

/// Debian's own checker of packages finds nothing to say about `deb`.
fn lintian_finds_nothing(deb: &Path) {
    let lint = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .unwrap();
    let tags: Vec<String> = String::from_utf8_lossy(&lint.stdout)
        .lines()
        .filter(|line| line.contains(": walpipe"))
        .map(str::to_owned)
        .collect();
    assert!(
        lint.status.success() && tags.is_empty(),
        "lintian: {}",
        output_text(&lint)
    );
}

/// Every man page in the package unpacked at `root` is gzipped, and man renders it.
fn packaged_pages_are_compressed_and_render(root: &Path) {
    let man1 = root.join("usr/share/man/man1");
    let pages = fs::read_dir(&man1).unwrap().count();
    assert!(pages >= 35, "{pages} pages");
    for page in fs::read_dir(&man1).unwrap() {
        let page = page.unwrap().path();
        assert_eq!(page.extension().unwrap(), "gz", "{}", page.display());
    }
    let rendered = Command::new("man")
        .arg("-l")
        .arg(man1.join("walpipe-archive-wal.1.gz"))
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    assert_success(&rendered, "man -l walpipe-archive-wal.1.gz");
    assert!(String::from_utf8_lossy(&rendered.stdout).contains("verbose"));
}

/// The wrappers unpacked into `root` find their binaries next to them, with nothing in
/// the environment: a segment archived, then restored byte for byte.
fn unpacked_wrappers_archive_and_restore(root: &Path, work: &WorkDir) {
    let name = "000000010000000000000007";
    let original = wal_segment(name, 7);
    let wal = work.join(name);
    fs::write(&wal, &original).unwrap();
    let home = work.join("home");
    let run_unpacked = |wrapper: &str, args: &[&std::ffi::OsStr]| {
        let out = Command::new(root.join("usr/bin").join(wrapper))
            .args(args)
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .output()
            .unwrap();
        assert_success(&out, wrapper);
    };
    let home_args = [
        "--home".as_ref(),
        home.as_os_str(),
        "--server".as_ref(),
        SERVER.as_ref(),
    ];
    let mut args = home_args.to_vec();
    args.extend(["--direct".as_ref(), wal.as_os_str()]);
    run_unpacked("walpipe-archive-command", &args);
    let restored = work.join("restored");
    let mut args = home_args.to_vec();
    args.extend([name.as_ref(), restored.as_os_str()]);
    run_unpacked("walpipe-restore-wal", &args);
    assert!(
        fs::read(&restored).unwrap() == original,
        "restored byte for byte"
    );
}

#[test]
fn a_reinstall_spelled_otherwise_or_under_a_strict_umask_leaves_a_working_install() {
    let work = WorkDir::new();
    let prefix = work.join("prefix");
    let units = work.join("units");
    let units_arg = format!("--systemd-dir={}", units.display());
    assert_success(&install(&prefix, &[&units_arg]), "scripts/install");
    let before = files_under(&prefix);
    // The same places, spelled otherwise: nothing the first install put there goes.
    let slashed = format!("{}//", prefix.display());
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 077 && exec {} --prefix {slashed} --bin-dir {} --systemd-dir {}/",
            script("install").display(),
            bin_dir().display(),
            units.display()
        ))
        .env_remove("WALPIPE_BIN_DIR")
        .output()
        .unwrap();
    assert_success(&out, "scripts/install, again, spelled otherwise, umask 077");
    assert_eq!(files_under(&prefix), before);
    assert_eq!(files_under(&units).len(), 3, "the units are still there");
    // Under umask 077 every directory stayed readable: PostgreSQL's user runs it.
    let out = run_installed_as_postgres(&prefix, "walpipe-archive-command", &["--help"]);
    assert_success(&out, "walpipe-archive-command --help as postgres");
    // Refused before anything is written: a prefix with . or .., or characters a unit
    // file would read otherwise.
    for bad in ["/tmp/x/../y", "/tmp/a b", "/tmp/a&b", "/tmp/100%"] {
        let out = install(Path::new(bad), &[]);
        assert_eq!(out.status.code(), Some(64), "{bad}: {}", output_text(&out));
    }
    // The units of another --systemd-dir are removed by uninstall: they run this
    // prefix's commands.
    let out = Command::new(script("install"))
        .args(["--uninstall", "--prefix"])
        .arg(&prefix)
        .output()
        .unwrap();
    assert_success(&out, "scripts/install --uninstall");
    assert_eq!(files_under(&prefix), Vec::<PathBuf>::new());
    assert_eq!(files_under(&units), Vec::<PathBuf>::new());
}
