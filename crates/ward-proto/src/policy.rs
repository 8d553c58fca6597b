//! The limits of a group's policy document, one definition for both sides: the server refuses
//! a document beyond them (so it never accepts what its agents cannot read), and an agent
//! refuses settings that carry one (an older server may have stored it).
//!
//! The depth counts the document itself: `{}` is 1 deep, `{"a": [1]}` is 2. An agent reads the
//! document inside its check-in answer, a few levels further down, well within serde_json's
//! own limit of 128.

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The deepest nesting of objects and arrays a policy document may have.
pub const MAX_DEPTH: usize = 32;

/// The largest policy document, as compact JSON.
pub const MAX_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyError {
    NotAnObject,
    TooDeep { depth: usize },
    TooLarge { bytes: usize },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::NotAnObject => f.write_str("a policy document is a JSON object"),
            PolicyError::TooDeep { depth } => write!(
                f,
                "a policy document nests at most {MAX_DEPTH} levels of objects and arrays, this \
                 one at least {depth}"
            ),
            PolicyError::TooLarge { bytes } => write!(
                f,
                "a policy document has at most {MAX_BYTES} bytes as compact JSON, this one \
                 {bytes}"
            ),
        }
    }
}

impl std::error::Error for PolicyError {}

/// Checks a policy document against the limits.
pub fn check(policy: &Value) -> Result<(), PolicyError> {
    if !policy.is_object() {
        return Err(PolicyError::NotAnObject);
    }
    let depth = depth(policy);
    if depth > MAX_DEPTH {
        return Err(PolicyError::TooDeep { depth });
    }
    let bytes = serde_json::to_vec(policy).map_or(usize::MAX, |text| text.len());
    if bytes > MAX_BYTES {
        return Err(PolicyError::TooLarge { bytes });
    }
    Ok(())
}

/// How deep `value` nests (a scalar is 0 deep, `{}` and `[]` 1), without recursion; it stops
/// counting one level past the limit.
fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(map) => Box::new(map.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        deepest = deepest.max(level);
        if level > MAX_DEPTH {
            continue;
        }
        stack.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

/// Deserializes a policy document and checks it: what `Settings::policy` is read with.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    let policy = Value::deserialize(deserializer)?;
    check(&policy).map_err(serde::de::Error::custom)?;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{"a": {"a": ... {} }}`, `depth` deep.
    pub(crate) fn nested(depth: usize) -> Value {
        let mut value = serde_json::json!({});
        for _ in 1..depth {
            value = serde_json::json!({ "a": value });
        }
        value
    }

    #[test]
    fn limits() {
        let check_text = |text: &str| check(&serde_json::from_str(text).unwrap());
        let cases: &[(&str, Result<(), PolicyError>)] = &[
            ("{}", Ok(())),
            (r#"{"a": [1, {"b": []}]}"#, Ok(())),
            ("[]", Err(PolicyError::NotAnObject)),
            ("null", Err(PolicyError::NotAnObject)),
        ];
        for (text, expected) in cases {
            assert_eq!(&check_text(text), expected, "{text}");
        }
        assert_eq!(depth(&nested(5)), 5);
        assert_eq!(check(&nested(MAX_DEPTH)), Ok(()));
        assert_eq!(
            check(&nested(MAX_DEPTH + 1)),
            Err(PolicyError::TooDeep {
                depth: MAX_DEPTH + 1
            })
        );
        // Deep arrays count as objects do; the count stops one past the limit.
        let mut deep = serde_json::json!([]);
        for _ in 0..200 {
            deep = serde_json::json!([deep]);
        }
        assert_eq!(
            check(&serde_json::json!({ "a": deep })),
            Err(PolicyError::TooDeep {
                depth: MAX_DEPTH + 1
            })
        );
        let big = serde_json::json!({ "a": "x".repeat(MAX_BYTES) });
        assert!(matches!(check(&big), Err(PolicyError::TooLarge { .. })));
        let fits = serde_json::json!({ "a": "x".repeat(MAX_BYTES - 8) });
        assert_eq!(serde_json::to_vec(&fits).unwrap().len(), MAX_BYTES);
        assert_eq!(check(&fits), Ok(()));
    }

    /// The agent's side: a check-in answer whose settings carry a document at the limit is
    /// read, one level more is refused naming the limit (not serde_json's recursion limit).
    #[test]
    fn an_agent_reads_a_document_at_the_limit_and_refuses_one_beyond() {
        use crate::messages::{decode, CheckinResponse};
        let answer = |policy: Value| {
            serde_json::json!({
                "serial": 8,
                "settings": {
                    "group": "My Company", "interval": "1m", "mode": "push",
                    "policy": policy, "randomize": "0s", "serial": 8,
                    "server_list": {"name": "Default", "servers": []}
                }
            })
            .to_string()
        };
        let read: CheckinResponse = decode("check-in answer", answer(nested(MAX_DEPTH)).as_bytes())
            .expect("a document at the limit");
        assert_eq!(read.settings.map(|s| s.policy), Some(nested(MAX_DEPTH)));
        let error =
            decode::<CheckinResponse>("check-in answer", answer(nested(MAX_DEPTH + 1)).as_bytes())
                .unwrap_err();
        assert!(
            error.to_string().contains("nests at most 32 levels"),
            "{error}"
        );
    }
}
