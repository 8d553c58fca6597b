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
    if name.trim() != name {
        return Err(NameError::OuterWhitespace);
    }
    Ok(())
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
        ];
        for (name, expected) in cases {
            assert_eq!(&check_name(name), expected, "{name:?}");
        }
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
