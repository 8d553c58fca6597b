//! Golden fixtures: one JSON file per main answer of the admin API in `tests/golden/`, as the
//! real server answers them (`crates/ward/tests/api_golden_e2e.rs` checks that the server's
//! live answers still have each fixture's shape). The CLI and the web console read answers
//! through these types, so each fixture checks what a released client will meet:
//! - it parses into its type (a newer server's answer is read by the client);
//! - written back, it gives the same JSON (the server still writes every field a released
//!   client reads, under the same name);
//! - without any one of its required fields it is refused, naming that field (no silent
//!   default hides a renamed field);
//! - with an unknown field added it still parses (a newer server may add fields).
//!
//! Renaming or removing a field fails here. Never edit a fixture to make this test pass: add
//! a new optional field instead.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use ward_api::{fleet, server, tls, Refusal};

struct Fixture {
    file: &'static str,
    /// Fields the answer may lack (`Option`s the server leaves out or sends as null).
    optional: &'static [&'static str],
    check: fn(&Fixture, &Value),
}

/// The object whose fields are checked: the fixture itself, or a list's first element.
fn object_of(value: &Value) -> &Value {
    match value {
        Value::Array(items) => items.first().expect("a list fixture has an element"),
        other => other,
    }
}

fn with_object(value: &Value, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut copy = value.clone();
    let object = match &mut copy {
        Value::Array(items) => items.first_mut().unwrap(),
        other => other,
    };
    edit(object.as_object_mut().expect("an object"));
    copy
}

fn check_as<T: Serialize + DeserializeOwned>(fixture: &Fixture, original: &Value) {
    let file = fixture.file;
    let parsed: T = serde_json::from_value(original.clone())
        .unwrap_or_else(|e| panic!("{file}: the answer is not read: {e}"));
    let written = serde_json::to_value(&parsed).unwrap();
    assert_eq!(
        &written, original,
        "{file}: written back, the answer differs from what released clients read"
    );

    let mut unlisted = Vec::new();
    for key in object_of(original).as_object().unwrap().keys() {
        let without = with_object(original, |object| {
            object.remove(key);
        });
        let result = serde_json::from_value::<T>(without);
        if fixture.optional.contains(&key.as_str()) {
            result.unwrap_or_else(|e| panic!("{file}: refused without optional '{key}': {e}"));
            continue;
        }
        match result {
            Ok(_) => unlisted.push(key.as_str()),
            Err(error) => assert!(
                error.to_string().contains(key.as_str()),
                "{file}: the refusal does not name '{key}': {error}"
            ),
        }
    }
    assert!(
        unlisted.is_empty(),
        "{file}: read without the fields {unlisted:?}: list them as optional if they are"
    );
    for optional in fixture.optional {
        assert!(
            object_of(original).get(*optional).is_some(),
            "{file}: the fixture lacks its optional field '{optional}': show it set"
        );
    }

    let extended = with_object(original, |object| {
        object.insert(
            "added_by_a_newer_server".into(),
            serde_json::json!({"x": [1]}),
        );
    });
    serde_json::from_value::<T>(extended)
        .unwrap_or_else(|e| panic!("{file}: an unknown field is refused: {e}"));
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        file: "group.json",
        optional: &["effective", "parent", "path"],
        check: check_as::<fleet::Group>,
    },
    Fixture {
        file: "server_list.json",
        optional: &[],
        check: check_as::<fleet::ServerList>,
    },
    Fixture {
        file: "agent.json",
        optional: &[
            "channel",
            "group",
            "hello",
            "last_checkin",
            "last_seen",
            "peer",
            "server",
            "settings",
            "tls_group",
            "tls_version",
        ],
        check: check_as::<fleet::Agent>,
    },
    Fixture {
        file: "token.json",
        optional: &["expires", "group", "token", "uses_left"],
        check: check_as::<fleet::Token>,
    },
    Fixture {
        file: "accounts.json",
        optional: &[],
        check: check_as::<Vec<fleet::AccountInfo>>,
    },
    Fixture {
        file: "audit.json",
        optional: &["after", "before"],
        check: check_as::<Vec<fleet::AuditEntry>>,
    },
    Fixture {
        file: "status.json",
        optional: &[],
        check: check_as::<server::ServerStatus>,
    },
    Fixture {
        file: "ca_status.json",
        optional: &["current", "next", "previous"],
        check: check_as::<server::CaStatus>,
    },
    Fixture {
        file: "key_status.json",
        optional: &["next", "withdrawn"],
        check: check_as::<server::KeyStatus>,
    },
    Fixture {
        file: "plan.json",
        optional: &[],
        check: check_as::<tls::Plan>,
    },
    Fixture {
        file: "readiness.json",
        optional: &[],
        check: check_as::<tls::Readiness>,
    },
    Fixture {
        file: "harden_status.json",
        optional: &["state"],
        check: check_as::<tls::HardenStatus>,
    },
    Fixture {
        file: "refusal_would_cut_off.json",
        optional: &["agents", "count"],
        check: check_as::<Refusal>,
    },
];

fn golden_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn every_fixture_reads_and_writes_back_unchanged() {
    let mut failures = Vec::new();
    for fixture in FIXTURES {
        let text = std::fs::read_to_string(golden_dir().join(fixture.file))
            .unwrap_or_else(|e| panic!("{}: {e}", fixture.file));
        let value: Value = serde_json::from_str(&text).unwrap();
        let outcome = std::panic::catch_unwind(|| (fixture.check)(fixture, &value));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "a panic".into());
            failures.push(message);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Each file in the directory is checked (none is forgotten), and each fixture has a file.
#[test]
fn every_golden_file_is_a_fixture() {
    let mut files: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut named: Vec<String> = FIXTURES.iter().map(|f| f.file.to_string()).collect();
    named.sort();
    assert_eq!(files, named);
}
