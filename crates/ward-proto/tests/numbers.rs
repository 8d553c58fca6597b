//! Numbers in a policy document read back exactly as written, on every side. Found by
//! fuzzing (fuzz/, target `policy`): serde_json's default float parser is not correctly
//! rounded for large exponents, so `4.7e200` was read as `4.7000000000000004e200`, and that,
//! written and read again, as `4.7e200`: a document changed on each trip through the store
//! or the wire.

use serde_json::Value;
use ward_proto::messages::{decode, encode, Settings};

fn settings_with(number: &str) -> Vec<u8> {
    format!(
        r#"{{"serial": 1, "group": "My Company", "mode": "pull", "interval": "5m",
            "randomize": "1m", "policy": {{"x": {number}}},
            "server_list": {{"name": "Default", "servers": []}}}}"#
    )
    .into_bytes()
}

#[test]
fn policy_numbers_read_back_as_written() {
    for number in [
        "4.7e200",
        "5.971697858821402e141",
        "1.7976931348623157e308",
        "2.2250738585072011e-308",
        "5e-324",
        "0.30000000000000004",
        "123456789012345678901234567890",
    ] {
        let expected: f64 = number.parse().unwrap();
        let settings: Settings = decode("settings", &settings_with(number)).unwrap();
        assert_eq!(settings.policy["x"].as_f64(), Some(expected), "{number}");
        let again: Settings = decode("settings", encode(&settings).as_bytes()).unwrap();
        assert_eq!(again, settings, "{number}: changed by a round trip");
        let text = settings.policy.to_string();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            settings.policy,
            "{number}: changed by the store's text"
        );
    }
}
