//! Group names and paths. A path names a group by the names from the root down, joined with
//! `/`: `My Company/Legacy XP`. So a name cannot contain `/`.

use std::fmt;

pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong {
        chars: usize,
    },
    Slash,
    ControlCharacter,
    /// Leading or trailing spaces would make two paths look the same.
    OuterWhitespace,
    /// An invisible or direction-changing character (Unicode Cf, Zl, Zp) or a space other
    /// than U+0020: two names that look the same would be two groups.
    Invisible(char),
    /// `.` or `..`: they read as "this" and "the parent" wherever names become paths.
    Dots,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("a name cannot be empty"),
            NameError::TooLong { chars } => {
                write!(
                    f,
                    "a name has at most {MAX_NAME_CHARS} characters, this one has {chars}"
                )
            }
            NameError::Slash => {
                f.write_str("a name cannot contain '/', which separates the names of a path")
            }
            NameError::ControlCharacter => f.write_str("a name cannot contain control characters"),
            NameError::OuterWhitespace => f.write_str("a name cannot begin or end with a space"),
            NameError::Dots => f.write_str(
                "'.' and '..' are not names: they read as this and the parent wherever names \
                 become paths",
            ),
            NameError::Invisible(c) => write!(
                f,
                "a name cannot contain U+{:04X}, an invisible, direction-changing or non-ASCII \
                 space character: two names that look the same would name two groups",
                *c as u32
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks one group (or server list) name.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(NameError::TooLong { chars });
    }
    if name.contains('/') {
        return Err(NameError::Slash);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    if let Some(c) = name.chars().find(|c| invisible(*c)) {
        return Err(NameError::Invisible(c));
    }
    if name.trim() != name {
        return Err(NameError::OuterWhitespace);
    }
    if name == "." || name == ".." {
        return Err(NameError::Dots);
    }
    Ok(())
}

/// Unicode's format characters (Cf: soft hyphen, zero-width spaces and joiners, bidirectional
/// marks, embeddings, overrides and isolates, the byte order mark, tags...), the line and
/// paragraph separators (Zl, Zp), and every space separator but U+0020 (Zs), as of Unicode 15:
/// inclusive ranges of code points.
const INVISIBLE: &[(u32, u32)] = &[
    // Cf
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
    // Zl, Zp
    (0x2028, 0x2029),
    // Zs other than U+0020
    (0x00A0, 0x00A0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
];

fn invisible(c: char) -> bool {
    let c = c as u32;
    INVISIBLE
        .iter()
        .any(|(low, high)| (*low..=*high).contains(&c))
}

/// The body of a regular-expression character class holding every character no name may
/// contain: `/`, the control characters, the invisible ones, and `extra`. Written so that
/// both ECMA-262 (JSON Schema) and Python's `re` read it alike: BMP characters as `\uXXXX`,
/// the others as themselves.
fn forbidden_class(extra: &str) -> String {
    let escape = |c: u32| match char::from_u32(c) {
        Some(c) if c as u32 > 0xFFFF => c.to_string(),
        _ => format!("\\u{c:04X}"),
    };
    let mut class = String::from("/\\u0000-\\u001F\\u007F-\\u009F");
    for (low, high) in INVISIBLE {
        class.push_str(&escape(*low));
        if high > low {
            class.push('-');
            class.push_str(&escape(*high));
        }
    }
    class.push_str(extra);
    class
}

/// One name as a regular expression without anchors or lookaround (so every engine reads it):
/// 1 to [`MAX_NAME_CHARS`] allowed characters, not beginning or ending with a space, and
/// neither `.` nor `..`. `extra` names more characters to refuse (escaped for a class).
fn name_regex(extra: &str) -> String {
    let k = forbidden_class(extra);
    let middle = MAX_NAME_CHARS - 2;
    format!("(?:[^{k} .]|[^{k} .][^{k} ]|\\.[^{k} .]|[^{k} ][^{k}]{{1,{middle}}}[^{k} ])")
}

/// The pattern (JSON Schema `pattern`) of exactly the names [`check_name`] takes.
pub fn name_pattern() -> String {
    format!("^{}$", name_regex(""))
}

/// The pattern of exactly the paths [`split_path`] takes: 1 to [`MAX_DEPTH`] names joined
/// with `/`.
pub fn path_pattern() -> String {
    let name = name_regex("");
    format!("^{name}(?:/{name}){{0,{}}}$", MAX_DEPTH - 1)
}

/// The pattern of the names an account may have: a name without `:` (the audit log's
/// `agent:ID`); `local-admin` is refused apart (a JSON Schema `not`).
pub fn account_pattern() -> String {
    format!("^{}$", name_regex(":"))
}

/// Splits a path into its names; each is checked. `"/A/B/"` and `"A//B"` are refused.
pub fn split_path(path: &str) -> Result<Vec<&str>, PathError> {
    let names: Vec<&str> = path.split('/').collect();
    if names.len() > MAX_DEPTH {
        return Err(PathError::TooDeep);
    }
    for (index, name) in names.iter().enumerate() {
        check_name(name).map_err(|error| PathError::Name { index, error })?;
    }
    Ok(names)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    Name { index: usize, error: NameError },
    TooDeep,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Name { index, error } => {
                write!(f, "name {} of the path: {error}", index + 1)
            }
            PathError::TooDeep => write!(f, "a path has at most {MAX_DEPTH} names"),
        }
    }
}

impl std::error::Error for PathError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let long = "x".repeat(65);
        let cases: &[(&str, Result<(), NameError>)] = &[
            ("Legacy XP", Ok(())),
            ("Legacy TLS", Ok(())),
            ("サーバー", Ok(())),
            (&long[..64], Ok(())),
            ("", Err(NameError::Empty)),
            (&long, Err(NameError::TooLong { chars: 65 })),
            ("a/b", Err(NameError::Slash)),
            ("tab\there", Err(NameError::ControlCharacter)),
            (" lead", Err(NameError::OuterWhitespace)),
            ("trail ", Err(NameError::OuterWhitespace)),
            (".", Err(NameError::Dots)),
            ("..", Err(NameError::Dots)),
            ("...", Ok(())),
            (".hidden", Ok(())),
            // Two names that look the same must not be two groups.
            ("a\u{200b}b", Err(NameError::Invisible('\u{200b}'))),
            (
                "admin\u{202e}gpj.exe",
                Err(NameError::Invisible('\u{202e}')),
            ),
            ("\u{feff}Legacy", Err(NameError::Invisible('\u{feff}'))),
            ("soft\u{ad}hyphen", Err(NameError::Invisible('\u{ad}'))),
            ("line\u{2028}break", Err(NameError::Invisible('\u{2028}'))),
            ("no\u{a0}break", Err(NameError::Invisible('\u{a0}'))),
            (
                "ideographic\u{3000}space",
                Err(NameError::Invisible('\u{3000}')),
            ),
            ("tag\u{e0041}", Err(NameError::Invisible('\u{e0041}'))),
            ("Café Ünïcode 東京", Ok(())),
        ];
        for (name, expected) in cases {
            assert_eq!(&check_name(name), expected, "{name:?}");
        }
        // The error names the code point.
        assert!(check_name("a\u{200b}b")
            .unwrap_err()
            .to_string()
            .contains("U+200B"));
    }

    /// The patterns take exactly what the checks take: every code point alone, and a table of
    /// longer names and paths.
    #[test]
    fn the_patterns_say_what_the_checks_say() {
        let compile = |pattern: &str| {
            regex::RegexBuilder::new(pattern)
                .size_limit(1 << 30)
                .build()
                .unwrap()
        };
        let name = compile(&name_pattern());
        let path = compile(&path_pattern());
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let text = c.to_string();
            assert_eq!(
                name.is_match(&text),
                check_name(&text).is_ok(),
                "U+{:04X}",
                c as u32
            );
            let inside = format!("a{c}b");
            assert_eq!(
                name.is_match(&inside),
                check_name(&inside).is_ok(),
                "a U+{:04X} b",
                c as u32
            );
        }
        let long = "x".repeat(MAX_NAME_CHARS);
        let too_long = "x".repeat(MAX_NAME_CHARS + 1);
        let deep = vec!["a"; MAX_DEPTH].join("/");
        let too_deep = vec!["a"; MAX_DEPTH + 1].join("/");
        for text in [
            "",
            " ",
            "a",
            " a",
            "a ",
            "a b",
            ".",
            "..",
            "...",
            ". ",
            " .",
            ".a",
            "a.",
            "a..",
            "Legacy XP",
            &long,
            &too_long,
            "a/b",
            "/a",
            "a/",
            "a//b",
            "a/./b",
            "a/../b",
            "a/ b",
            "a /b",
            &deep,
            &too_deep,
            "My Company/Legacy TLS",
            "x/..",
            "../x",
        ] {
            assert_eq!(
                name.is_match(text),
                check_name(text).is_ok(),
                "name {text:?}"
            );
            assert_eq!(
                path.is_match(text),
                split_path(text).is_ok(),
                "path {text:?}"
            );
        }
        let account = compile(&account_pattern());
        assert!(account.is_match("alice") && !account.is_match("agent:1"));
    }

    #[test]
    fn paths() {
        assert_eq!(
            split_path("My Company/Legacy XP").unwrap(),
            vec!["My Company", "Legacy XP"]
        );
        assert_eq!(split_path("Root").unwrap(), vec!["Root"]);
        assert_eq!(
            split_path("A//B").unwrap_err().to_string(),
            "name 2 of the path: a name cannot be empty"
        );
        assert_eq!(
            split_path("/A").unwrap_err(),
            PathError::Name {
                index: 0,
                error: NameError::Empty
            }
        );
        let deep = vec!["a"; 33].join("/");
        assert_eq!(split_path(&deep).unwrap_err(), PathError::TooDeep);
    }
}
