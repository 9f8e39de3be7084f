//! The examples that end every binary's `--help` are checked against the very command
//! they document: each command line of the binary in them must parse, so an example
//! never shows a flag that does not exist (or no longer does).

use clap::Command;

/// Parses each command line of `binary`'s examples text (the `after_help` of it or of
/// one of its subcommands) with `binary`'s command.
///
/// # Panics
///
/// When the text holds no command line of the binary, or one that it refuses, naming it.
pub fn assert_examples_parse(binary: &Command, lines: &str) {
    let name = binary.get_name();
    // `$$`, the shell's own pid, is the one expansion an example needs to parse (a
    // worker's pid): any number does.
    let lines = &lines.replace("$$", "4242");
    let commands = example_commands(lines, name);
    assert!(!commands.is_empty(), "no {name} command in:\n{lines}");
    for argv in commands {
        if let Err(err) = binary.clone().try_get_matches_from(&argv) {
            panic!("{argv:?}: {err}");
        }
    }
}

/// The command lines of `binary` in an examples text, split into words as `sh` splits
/// them. Comment lines are skipped and ` \` continuations joined; each stage of a
/// pipeline or list (`|`, `;`) that runs `binary` is one command line, from the binary's
/// name (a cron line's schedule left out) up to a redirection (`>`). Quotes group words;
/// nothing is expanded (`"$T"` stays `$T`).
fn example_commands(lines: &str, binary: &str) -> Vec<Vec<String>> {
    let joined = lines.replace("\\\n", " ");
    let mut commands = Vec::new();
    for line in joined.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        for stage in shell_stages(line) {
            if let Some(start) = stage.iter().position(|word| word == binary) {
                let command = stage[start..]
                    .iter()
                    .take_while(|word| !word.starts_with('>'))
                    .cloned()
                    .collect();
                commands.push(command);
            }
        }
    }
    commands
}

/// One shell line's stages (split at unquoted `|` and `;`), each as its words.
fn shell_stages(line: &str) -> Vec<Vec<String>> {
    let mut stages = Vec::new();
    let mut stage = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(open), _) if c == open => quote = None,
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            (None, '|' | ';') => {
                stage.extend(word.take());
                stages.push(std::mem::take(&mut stage));
            }
            (None, _) if c.is_whitespace() => stage.extend(word.take()),
            // Inside quotes, or any other character.
            _ => word.get_or_insert_default().push(c),
        }
    }
    stage.extend(word);
    stages.push(stage);
    stages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_commands_are_split_as_sh_splits_them() {
        let lines = "  # archive, then list (not wal-test --bogus)\n\
                     \x20 wal-scan incoming /q | wal-test --count 1 \\\n\
                     \x20   --name 'a b|c' | jq -c '.name'\n\
                     \x20 T=$(mktemp -d); wal-test --count 2 --dir \"$T\" > /dev/null\n\
                     \x20 * * * * * wal-test --count 3";
        let commands = example_commands(lines, "wal-test");
        assert_eq!(
            commands,
            [
                &["wal-test", "--count", "1", "--name", "a b|c"][..],
                &["wal-test", "--count", "2", "--dir", "$T"],
                &["wal-test", "--count", "3"],
            ]
        );
        assert!(example_commands(lines, "wal-other").is_empty());
    }

    #[test]
    #[should_panic(expected = "--bogus")]
    fn an_example_with_a_flag_that_does_not_exist_fails() {
        let command = Command::new("wal-test").arg(clap::arg!(--count <N>));
        assert_examples_parse(&command, "  # count\n  wal-test --count 1 --bogus");
    }
}
