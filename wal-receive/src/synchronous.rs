//! Whether the server waits for the receiver: Barman's `_is_synchronous`, from
//! `synchronous_standby_names`.

/// The standby names of a `synchronous_standby_names` value: `FIRST n (a, b)`,
/// `ANY n (a, b)`, `n (a, b)` or `a, b`; double-quoted names keep their case and
/// characters, others are folded to lower case (as the server compares them).
#[must_use]
pub fn standby_names(setting: &str) -> Vec<String> {
    let mut text = setting.trim();
    for keyword in ["first", "any"] {
        if text.len() > keyword.len()
            && text[..keyword.len()].eq_ignore_ascii_case(keyword)
            && text[keyword.len()..].starts_with(char::is_whitespace)
        {
            text = text[keyword.len()..].trim_start();
        }
    }
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && text[digits..].trim_start().starts_with('(') {
        text = text[digits..].trim_start();
    }
    if let Some(inner) = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
        text = inner;
    }
    let mut names = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            ',' if !quoted => {
                names.push(finish(&current, was_quoted));
                current.clear();
                was_quoted = false;
            }
            c => current.push(c),
        }
    }
    names.push(finish(&current, was_quoted));
    names.retain(|name| !name.is_empty());
    names
}

fn finish(name: &str, quoted: bool) -> String {
    if quoted {
        name.to_owned()
    } else {
        name.trim().to_ascii_lowercase()
    }
}

/// Whether the server waits for `application_name` (Barman's `_is_synchronous`): a
/// `synchronous_standby_names` that names it, or `*`.
#[must_use]
pub fn is_synchronous(setting: &str, application_name: &str) -> bool {
    standby_names(setting)
        .iter()
        .any(|name| name == "*" || name.eq_ignore_ascii_case(application_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_synchronous_standby_names() {
        assert_eq!(standby_names(""), Vec::<String>::new());
        assert_eq!(standby_names("a, B"), ["a", "b"]);
        assert_eq!(
            standby_names("FIRST 2 (s1, barman_receive_wal)"),
            ["s1", "barman_receive_wal"]
        );
        assert_eq!(standby_names("any 1 (\"My Node\", x)"), ["My Node", "x"]);
        assert_eq!(standby_names("2 (a,b)"), ["a", "b"]);
        assert_eq!(standby_names("*"), ["*"]);
        assert!(is_synchronous(
            "ANY 1 (barman_receive_wal)",
            "barman_receive_wal"
        ));
        assert!(is_synchronous("*", "walpipe"));
        assert!(!is_synchronous("standby1", "barman_receive_wal"));
        assert!(!is_synchronous("", "barman_receive_wal"));
        // A name that merely contains ours is another standby.
        assert!(!is_synchronous("barman_receive_wal2", "barman_receive_wal"));
    }
}
