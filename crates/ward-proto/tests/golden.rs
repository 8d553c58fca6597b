//! Golden fixtures: one JSON file per v1 message in `tests/golden/`, as the released agents
//! and servers send them. Both sides read and write these messages through the same types,
//! so each fixture checks what either side will meet:
//! - it parses (a newer side understands an older peer);
//! - written back, it gives the same JSON, except fields the protocol has retired (an older
//!   peer still finds every field it reads, under the same name, with the same value);
//! - without any one of its required fields it is refused, naming that field (no silent
//!   default);
//! - with an unknown field added it still parses (a newer peer may add fields).
//!
//! A change to a message that would break a released agent fails here. Never edit a fixture
//! to make this test pass: add a new optional field, or a new message version.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use ward_proto::messages::{
    decode, encode, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse, ErrorBody,
    Hello, SettingsPackage,
};

/// One fixture: its file, the fields it may lack (optional), the fields it has that the
/// protocol no longer writes (retired), and how to check it.
struct Fixture {
    file: &'static str,
    optional: &'static [&'static str],
    retired: &'static [&'static str],
    check: fn(&Fixture, &Value),
}

fn check_as<T: Serialize + DeserializeOwned>(fixture: &Fixture, original: &Value) {
    let file = fixture.file;
    let bytes = serde_json::to_vec(original).unwrap();
    let parsed: T =
        decode(file, &bytes).unwrap_or_else(|e| panic!("{file}: an old message is refused: {e}"));
    let written: Value = serde_json::from_str(&encode(&parsed)).unwrap();
    let mut expected = original.clone();
    for retired in fixture.retired {
        expected.as_object_mut().unwrap().remove(*retired);
    }
    assert_eq!(
        written, expected,
        "{file}: written back, the message differs from what released peers read"
    );

    for (key, _) in original.as_object().unwrap() {
        if fixture.optional.contains(&key.as_str()) || fixture.retired.contains(&key.as_str()) {
            continue;
        }
        let mut without = original.clone();
        without.as_object_mut().unwrap().remove(key);
        let bytes = serde_json::to_vec(&without).unwrap();
        match decode::<T>(file, &bytes) {
            Ok(_) => panic!("{file}: accepted without the required field '{key}'"),
            Err(error) => assert!(
                error.to_string().contains(key.as_str()),
                "{file}: the refusal does not name '{key}': {error}"
            ),
        }
    }

    let mut extended = original.clone();
    extended.as_object_mut().unwrap().insert(
        "added_by_a_newer_peer".into(),
        serde_json::json!({"x": [1]}),
    );
    let bytes = serde_json::to_vec(&extended).unwrap();
    decode::<T>(file, &bytes)
        .unwrap_or_else(|e| panic!("{file}: an unknown field is refused: {e}"));
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        file: "hello.json",
        optional: &[],
        // The server's Ed25519 signing key: never used by any agent, no longer generated.
        retired: &["signing_key"],
        check: check_as::<Hello>,
    },
    Fixture {
        file: "enroll_request.json",
        optional: &["agent"],
        retired: &[],
        check: check_as::<EnrollRequest>,
    },
    Fixture {
        file: "enroll_request_reregister.json",
        optional: &["agent"],
        retired: &[],
        check: check_as::<EnrollRequest>,
    },
    Fixture {
        file: "enroll_response.json",
        optional: &[],
        retired: &[],
        check: check_as::<EnrollResponse>,
    },
    Fixture {
        file: "checkin_request.json",
        optional: &["wait_ms"],
        retired: &[],
        check: check_as::<CheckinRequest>,
    },
    Fixture {
        file: "checkin_request_push.json",
        optional: &["wait_ms"],
        retired: &[],
        check: check_as::<CheckinRequest>,
    },
    // An agent that went back to its last working settings, reporting its stack's hello.
    Fixture {
        file: "checkin_request_reverted.json",
        optional: &["wait_ms", "reverted", "hello"],
        retired: &[],
        check: check_as::<CheckinRequest>,
    },
    Fixture {
        file: "checkin_response_unchanged.json",
        // `null` and absent both mean "unchanged".
        optional: &["settings"],
        retired: &[],
        check: check_as::<CheckinResponse>,
    },
    Fixture {
        file: "checkin_response_settings.json",
        optional: &["settings"],
        retired: &[],
        check: check_as::<CheckinResponse>,
    },
    Fixture {
        file: "error.json",
        optional: &[],
        retired: &[],
        check: check_as::<ErrorBody>,
    },
    Fixture {
        file: "settings_package.json",
        optional: &[],
        retired: &[],
        check: check_as::<SettingsPackage>,
    },
];

#[test]
fn every_v1_message_reads_and_writes_as_released() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|f| f.file.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "every fixture file is checked, and only those"
    );
    for fixture in FIXTURES {
        let text = std::fs::read_to_string(dir.join(fixture.file)).unwrap();
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", fixture.file));
        (fixture.check)(fixture, &value);
    }
}

#[test]
fn nested_fields_are_required_too() {
    let text = include_str!("golden/checkin_response_settings.json");
    for (pointer, field) in [
        ("/settings", "interval"),
        ("/settings", "mode"),
        ("/settings/server_list", "servers"),
        ("/settings/server_list/servers/0", "url"),
        ("/settings/server_list/servers/0", "priority"),
    ] {
        let mut value: Value = serde_json::from_str(text).unwrap();
        value
            .pointer_mut(pointer)
            .and_then(Value::as_object_mut)
            .unwrap()
            .remove(field);
        let error = decode::<CheckinResponse>("check-in response", value.to_string().as_bytes())
            .expect_err(field);
        assert!(error.to_string().contains(field), "{error}");
    }
    // A duration the codec cannot read exactly is refused, not rounded.
    let mut value: Value = serde_json::from_str(text).unwrap();
    value["settings"]["interval"] = "1.5s".into();
    let error = decode::<CheckinResponse>("check-in response", value.to_string().as_bytes())
        .expect_err("1.5s");
    assert!(error.to_string().contains("1.5s"), "{error}");
}
