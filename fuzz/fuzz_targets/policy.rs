#![no_main]
//! The policy document: a JSON file an admin writes (`ward group set --policy FILE`, or the
//! `policy` of `PATCH /api/v1/groups/{id}`, which must be an object), carried whole to every
//! agent of the group. Along its way:
//!
//! - the store keeps it as text (`Value::to_string`, read back with `serde_json::from_str`):
//!   read back, it is the same document, and ward-fleet sees no change (no serial bump);
//! - ward-fleet: a child group that sets it has it as its effective policy, its parent keeps
//!   `{}`, and a serial bump reaches the child exactly when the document differs from the
//!   inherited `{}`;
//! - the settings that carry it (ward-proto) round-trip unchanged, byte for byte the second
//!   time (the bytes the answer's MAC covers);
//! - the agent writes it to `DIR/policy.json` (`{:#}`): read back, it is the same document.

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use ward_fleet::group::default_root;
use ward_fleet::serial::affected_groups;
use ward_fleet::{Group, Mode as FleetMode, OwnSettings, Tree};
use ward_proto::messages::{CheckinResponse, Mode, Settings};

#[path = "common.rs"]
mod common;

const ROOT: i64 = 1;
const CHILD: i64 = 2;

fn tree(policy: Option<Value>) -> Tree {
    let root = Group {
        id: ROOT,
        ..default_root("My Company", "Default")
    };
    let child = Group {
        id: CHILD,
        parent: Some(ROOT),
        name: "Legacy XP".into(),
        own: OwnSettings {
            policy,
            ..OwnSettings::default()
        },
    };
    Tree::new([root, child]).expect("a root and one child")
}

fuzz_target!(|data: &[u8]| {
    // The CLI reads the file as text and parses it; the API takes an object only.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(Value::Object(document)) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let policy = Value::Object(document);

    // The store: text and back.
    let stored = policy.to_string();
    let reread: Value = serde_json::from_str(&stored)
        .unwrap_or_else(|e| panic!("the store cannot read the policy it wrote: {e}\n{stored}"));
    assert_eq!(
        reread, policy,
        "the stored policy reads back otherwise\n{stored}"
    );

    // ward-fleet: inheritance and serials.
    let before = tree(None);
    let after = tree(Some(policy.clone()));
    let effective = after.effective(CHILD).expect("the child's settings");
    assert_eq!(effective.policy, policy);
    assert_eq!(effective.source(ward_fleet::group::Field::Policy), CHILD);
    let root = after.effective(ROOT).expect("the root's settings");
    assert_eq!(root.policy, Value::Object(Map::new()));
    let bumped = affected_groups(&before, &after, &[]);
    let expected: Vec<i64> = if policy == root.policy {
        vec![]
    } else {
        vec![CHILD]
    };
    assert_eq!(bumped, expected, "serial bumps for a policy change");
    let unchanged = affected_groups(&after, &tree(Some(reread)), &[]);
    assert!(
        unchanged.is_empty(),
        "re-reading the policy bumps {unchanged:?}"
    );

    // ward-proto: the settings that carry it.
    // Built as the server's `ops::settings_for` does, through the wire form (so a field
    // ward-proto adds later needs no change here).
    let mut settings: Settings = serde_json::from_value(json!({
        "serial": 2,
        "group": "My Company/Legacy XP",
        "server_list": {"name": effective.server_list, "servers": [{"priority": 1,
            "url": "http://mgr1:8014", "address": "mgr1", "protocol": "http", "port": 8014,
            "verify_certificate": true}]},
        "interval": "5m",
        "randomize": "1m",
        "mode": "pull",
        "policy": {},
    }))
    .expect("valid settings");
    settings.interval = effective.interval;
    settings.randomize = effective.randomize;
    settings.mode = match effective.mode {
        FleetMode::Pull => Mode::Pull,
        FleetMode::Push => Mode::Push,
    };
    settings.policy = effective.policy.clone();
    common::check_round_trip("settings", &settings);
    common::check_round_trip(
        "check-in answer",
        &CheckinResponse {
            serial: 2,
            settings: Some(settings),
        },
    );

    // The agent's policy.json (`enroll::write_policy`).
    let file = format!("{:#}\n", policy);
    let read: Value = serde_json::from_str(&file)
        .unwrap_or_else(|e| panic!("policy.json does not read back: {e}\n{file}"));
    assert_eq!(read, policy, "policy.json reads back otherwise\n{file}");
});
