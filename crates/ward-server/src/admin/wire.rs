//! The admin API's JSON shapes, built explicitly from the domain and store types (they do not
//! derive Serialize). Field names here are a contract with scripts: keep them stable.

use serde_json::{json, Value};
use ward_fleet::group::{Effective, Field};
use ward_fleet::{Group, ServerEntry, ServerList, Tree};
use ward_store::{AgentRecord, AuditEntry, TokenRecord};

use ward_proto::duration::format as format_duration;

pub use crate::api::time;

fn optional_time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(time(ms)))
}

fn effective_json(tree: &Tree, effective: &Effective) -> Value {
    let from = |field: Field| tree.path(effective.source(field));
    json!({
        "server_list": effective.server_list,
        "interval": format_duration(effective.interval),
        "randomize": format_duration(effective.randomize),
        "mode": effective.mode.name(),
        "policy": effective.policy,
        "inherited_from": {
            "server_list": from(Field::ServerList),
            "interval": from(Field::Interval),
            "randomize": from(Field::Randomize),
            "mode": from(Field::Mode),
            "policy": from(Field::Policy),
        },
    })
}

pub fn group_json(tree: &Tree, group: &Group, effective: Option<&Effective>) -> Value {
    let own = &group.own;
    let mut value = json!({
        "id": group.id,
        "path": tree.path(group.id),
        "name": group.name,
        "parent": group.parent.and_then(|p| tree.path(p)),
        "own": {
            "server_list": own.server_list,
            "interval": own.interval.map(format_duration),
            "randomize": own.randomize.map(format_duration),
            "mode": own.mode.map(|m| m.name()),
            "policy": own.policy,
        },
    });
    if let Some(effective) = effective {
        value["effective"] = effective_json(tree, effective);
    }
    value
}

pub fn entry_json(priority: usize, entry: &ServerEntry) -> Value {
    json!({
        "priority": priority,
        "url": entry.url(),
        "address": entry.address,
        "protocol": entry.protocol.name(),
        "port": entry.port,
        "verify_certificate": entry.verify_certificate,
    })
}

pub fn list_json(list: &ServerList, used_by: Vec<String>) -> Value {
    let servers: Vec<Value> = list
        .levels
        .iter()
        .enumerate()
        .flat_map(|(index, level)| level.iter().map(move |e| entry_json(index + 1, e)))
        .collect();
    json!({"name": list.name, "servers": servers, "used_by": used_by})
}

/// The shape `ward client list --json` promises: `id`, `hostname`, `group` (path),
/// `last_checkin` (RFC 3339 or null), `channel`, `tls_version`, `serial`, `acked_serial`.
/// An agent as the admin API shows it; `online` by [`ward_fleet::presence`].
pub fn agent_json(tree: &Tree, agent: &AgentRecord, online: bool, held: bool) -> Value {
    json!({
        "id": agent.id,
        "hostname": agent.hostname,
        "group": tree.path(agent.group),
        "online": online,
        "held": held,
        "simulated": agent.simulated,
        "last_seen": if held { Value::String(time(ward_proto::now_ms())) } else { optional_time(agent.last_checkin_ms) },
        "last_checkin": optional_time(agent.last_checkin_ms),
        "channel": agent.channel,
        "server": agent.server,
        "tls_version": agent.tls_version,
        "tls_group": agent.tls_group,
        "hello": agent.hello,
        "tls_versions": agent.tls_versions,
        "serial": agent.serial,
        "acked_serial": agent.acked_serial,
        "pending": agent.pending(),
        "os": {"name": agent.os_name, "version": agent.os_version},
        "agent_version": agent.agent_version,
        "enrolled": time(agent.enrolled_ms),
    })
}

pub fn token_json(tree: &Tree, token: &TokenRecord) -> Value {
    json!({
        "id": token.id,
        "group": tree.path(token.group),
        "created": time(token.created_ms),
        "expires": optional_time(token.expires_ms),
        "uses_left": token.uses_left,
        "revoked": token.revoked,
        "allow_http": token.allow_http,
    })
}

pub fn audit_json(entry: &AuditEntry) -> Value {
    json!({
        "id": entry.id,
        "at": time(entry.at_ms),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "before": entry.before,
        "after": entry.after,
    })
}
