//! walpipe-docgen: the man pages and shell completions of walpipe's binaries, rendered
//! from the very clap definitions the binaries parse their flags with.
//!
//! A page written by hand next to the code drifts the first time a flag changes; one
//! rendered from the definition cannot. `scripts/install` and `scripts/package-deb` run
//! this once per install; it is a build tool and is never installed itself. The shell
//! wrappers' pages are written by hand (`docs/man/`): they have no clap definition.
//!
//! Usage: `walpipe-docgen OUT_DIR` writes
//! - `OUT_DIR/man1/`: one page per binary and one per subcommand (`wal-store-put.1`),
//! - `OUT_DIR/bash/<binary>.bash`, `OUT_DIR/zsh/_<binary>`, `OUT_DIR/fish/<binary>.fish`.
//!
//! Exit codes: 0 written, 64 usage, 74 a file could not be written.

#[cfg(test)]
mod examples;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Command;
use clap_complete::Shell;

/// Every binary walpipe installs, with the definition it parses its flags with (its own
/// and the log flags all share).
fn binaries() -> Vec<Command> {
    vec![
        wal_core::cli::command::<wal_scan::cli::Args>(),
        wal_core::cli::command::<wal_compress::cli::Args>(),
        wal_core::cli::command::<wal_encrypt::cli::Args>(),
        wal_core::cli::command::<wal_hooks::cli::Args>(),
        wal_core::cli::command::<wal_store::cli::Args>(),
        wal_core::cli::command::<wal_spool::cli::Args>(),
        wal_core::cli::command::<wal_receive::cli::Args>(),
        wal_core::cli::command::<wal_check::cli::Args>(),
        wal_core::cli::command::<wal_verify::cli::Args>(),
    ]
}

/// The shells whose completion files are written, and where each goes under OUT_DIR.
const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "bash"),
    (Shell::Zsh, "zsh"),
    (Shell::Fish, "fish"),
];

fn main() -> ExitCode {
    const USAGE: &str = "usage: walpipe-docgen OUT_DIR (writes OUT_DIR/man1, bash, zsh, fish)";
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let out_dir = match args.as_slice() {
        [flag] if flag.as_os_str() == "-h" || flag.as_os_str() == "--help" => {
            eprintln!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [out_dir] if !out_dir.to_string_lossy().starts_with('-') => out_dir,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(64);
        }
    };
    match render_all(out_dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err((path, err)) => {
            eprintln!("walpipe-docgen: {}: {err}", path.display());
            ExitCode::from(74)
        }
    }
}

/// Writes every page and completion file; the error names the directory it failed in.
fn render_all(out_dir: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    let man_dir = out_dir.join("man1");
    create_dir(&man_dir)?;
    for (_, dir) in SHELLS {
        create_dir(&out_dir.join(dir))?;
    }
    for mut command in binaries() {
        let name = command.get_name().to_string();
        clap_mangen::generate_to(command.clone(), &man_dir).map_err(|e| (man_dir.clone(), e))?;
        for (shell, dir) in SHELLS {
            let dir = out_dir.join(dir);
            if shell == Shell::Bash {
                let path = dir.join(format!("{name}.bash"));
                std::fs::write(&path, bash_completion(&mut command, &name))
                    .map_err(|e| (path, e))?;
            } else {
                clap_complete::generate_to(shell, &mut command, &name, &dir)
                    .map_err(|e| (dir, e))?;
            }
        }
    }
    Ok(())
}

/// The bash completion of `name`. clap_complete spells the states of a hyphenated name
/// two ways, so nothing after a subcommand ever completes
/// (<https://github.com/clap-rs/clap/issues/6421>): the script is generated for the name
/// without hyphens, which only its last line (`complete ... NAME`) names, and that line is
/// then given the real name.
fn bash_completion(command: &mut Command, name: &str) -> String {
    let plain = name.replace('-', "_");
    let mut script = Vec::new();
    clap_complete::generate(Shell::Bash, command, &plain, &mut script);
    let script = String::from_utf8_lossy(&script);
    let suffix = format!(" {plain}");
    script
        .lines()
        .map(|line| match line.strip_suffix(&suffix) {
            Some(start) if line.trim_start().starts_with("complete ") => format!("{start} {name}"),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn create_dir(dir: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    std::fs::create_dir_all(dir).map_err(|e| (dir.to_path_buf(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every binary's definition is consistent, and every example in its help and its
    /// subcommands' parses with it.
    #[test]
    fn every_command_line_is_consistent_and_every_example_parses() {
        for binary in binaries() {
            binary.clone().debug_assert();
            let mut helps: Vec<String> = Vec::new();
            let mut pending = vec![binary.clone()];
            while let Some(command) = pending.pop() {
                helps.extend(command.get_after_help().map(ToString::to_string));
                pending.extend(command.get_subcommands().cloned());
            }
            assert!(!helps.is_empty(), "{} has examples", binary.get_name());
            for help in helps {
                examples::assert_examples_parse(&binary, &help);
            }
        }
    }

    #[test]
    fn every_binary_gets_a_page_per_command_and_three_completions() {
        let out = tempfile::tempdir().unwrap();
        render_all(out.path()).unwrap();
        for command in binaries() {
            let name = command.get_name();
            let page =
                std::fs::read_to_string(out.path().join("man1").join(format!("{name}.1"))).unwrap();
            assert!(page.contains(".TH"), "{name}.1 is no man page");
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                let sub_page = out
                    .path()
                    .join("man1")
                    .join(format!("{name}-{}.1", sub.get_name()));
                assert!(sub_page.is_file(), "no page {}", sub_page.display());
            }
            for path in [
                out.path().join("bash").join(format!("{name}.bash")),
                out.path().join("zsh").join(format!("_{name}")),
                out.path().join("fish").join(format!("{name}.fish")),
            ] {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    text.contains(name),
                    "{} does not name {name}",
                    path.display()
                );
            }
        }
    }
}
