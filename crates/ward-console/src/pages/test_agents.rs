//! Agents for the pages' table tests, built as ward-api reads them.

use ward_api::fleet::Agent;

/// An agent: `id`, `name`, its channel and negotiated version, the versions it speaks,
/// online, pending, last seen.
#[allow(clippy::too_many_arguments)]
pub fn agent(
    id: &str,
    name: &str,
    channel: Option<&str>,
    tls: Option<&str>,
    speaks: &[&str],
    online: bool,
    pending: bool,
    last_seen: Option<&str>,
) -> Agent {
    serde_json::from_value(serde_json::json!({
        "acked_serial": 0, "agent_version": "0.1.0", "channel": channel,
        "enrolled": "2026-12-04T16:51:16Z", "group": "My Company", "held": false,
        "hello": null, "hostname": name, "id": id, "last_checkin": last_seen,
        "last_seen": last_seen, "online": online,
        "os": {"name": "linux", "version": "6"}, "pending": pending, "serial": 1,
        "server": null, "simulated": false, "tls_group": null, "tls_version": tls,
        "tls_versions": speaks,
    }))
    .expect("an agent as ward-api reads it")
}
