//! The domain and store types as ward-api's answers: the one place they are turned into what
//! the admin API (and the console) shows. The domain types do not derive `Serialize`.

use ward_api::fleet as api;
use ward_fleet::group::{Effective, Field};
use ward_fleet::{Group, ServerEntry, ServerList, Tree};
use ward_proto::duration::format as format_duration;
use ward_store::{AgentRecord, AuditEntry, TokenRecord};

pub use crate::api::time;

fn optional_time(ms: Option<i64>) -> Option<String> {
    ms.map(time)
}

pub fn mode(mode: ward_fleet::Mode) -> api::Mode {
    match mode {
        ward_fleet::Mode::Pull => api::Mode::Pull,
        ward_fleet::Mode::Push => api::Mode::Push,
    }
}

pub fn protocol(protocol: ward_fleet::Protocol) -> api::Protocol {
    match protocol {
        ward_fleet::Protocol::Http => api::Protocol::Http,
        ward_fleet::Protocol::Https => api::Protocol::Https,
    }
}

fn effective(tree: &Tree, effective: &Effective) -> api::EffectiveSettings {
    let from = |field: Field| tree.path(effective.source(field));
    api::EffectiveSettings {
        server_list: effective.server_list.clone(),
        interval: format_duration(effective.interval),
        randomize: format_duration(effective.randomize),
        mode: mode(effective.mode),
        policy: effective.policy.clone(),
        inherited_from: api::InheritedFrom {
            server_list: from(Field::ServerList),
            interval: from(Field::Interval),
            randomize: from(Field::Randomize),
            mode: from(Field::Mode),
            policy: from(Field::Policy),
        },
    }
}

/// A group's own settings.
pub fn own(group: &Group) -> api::OwnSettings {
    let own = &group.own;
    api::OwnSettings {
        server_list: own.server_list.clone(),
        interval: own.interval.map(format_duration),
        randomize: own.randomize.map(format_duration),
        mode: own.mode.map(mode),
        policy: own.policy.clone(),
    }
}

pub fn group(tree: &Tree, group: &Group, settings: Option<&Effective>) -> api::Group {
    api::Group {
        id: group.id,
        path: tree.path(group.id),
        name: group.name.clone(),
        parent: group.parent.and_then(|p| tree.path(p)),
        own: own(group),
        effective: settings.map(|e| effective(tree, e)),
    }
}

pub fn entry(priority: usize, entry: &ServerEntry) -> api::ServerEntry {
    api::ServerEntry {
        priority,
        url: entry.url(),
        address: entry.address.clone(),
        protocol: protocol(entry.protocol),
        port: entry.port,
        verify_certificate: entry.verify_certificate,
    }
}

pub fn list(list: &ServerList, used_by: Vec<String>) -> api::ServerList {
    api::ServerList {
        name: list.name.clone(),
        servers: list
            .levels
            .iter()
            .enumerate()
            .flat_map(|(index, level)| level.iter().map(move |e| entry(index + 1, e)))
            .collect(),
        used_by,
    }
}

/// An agent as the admin API shows it; `online` by [`ward_fleet::presence`].
pub fn agent(tree: &Tree, agent: &AgentRecord, online: bool, held: bool) -> api::Agent {
    api::Agent {
        id: agent.id.clone(),
        hostname: agent.hostname.clone(),
        group: tree.path(agent.group),
        online,
        held,
        simulated: agent.simulated,
        last_seen: if held {
            Some(time(ward_proto::now_ms()))
        } else {
            optional_time(agent.last_checkin_ms)
        },
        last_checkin: optional_time(agent.last_checkin_ms),
        channel: agent.channel.clone(),
        server: agent.server.clone(),
        tls_version: agent.tls_version.clone(),
        tls_group: agent.tls_group.clone(),
        hello: agent.hello.clone(),
        tls_versions: agent.tls_versions.clone(),
        serial: agent.serial,
        acked_serial: agent.acked_serial,
        pending: agent.pending(),
        os: api::Os {
            name: agent.os_name.clone(),
            version: agent.os_version.clone(),
        },
        agent_version: agent.agent_version.clone(),
        enrolled: time(agent.enrolled_ms),
        settings: None,
        reverted: agent
            .reverted
            .as_ref()
            .filter(|_| agent.refuses_serial())
            .map(|r| api::AgentReverted {
                serial: r.serial,
                reason: r.reason.clone(),
                at: time(r.at_ms),
            }),
        reported_hello: agent
            .reported_hello
            .clone()
            .filter(|reported| agent.hello.as_ref() != Some(reported)),
        peer: agent.peer.clone(),
    }
}

pub fn token(tree: &Tree, token: &TokenRecord) -> api::Token {
    api::Token {
        id: token.id,
        group: tree.path(token.group),
        created: time(token.created_ms),
        expires: optional_time(token.expires_ms),
        uses_left: token.uses_left,
        revoked: token.revoked,
        allow_http: token.allow_http,
        accept_cut_off: token.accept_cut_off,
        token: None,
        warnings: Vec::new(),
    }
}

pub fn audit(entry: &AuditEntry) -> api::AuditEntry {
    api::AuditEntry {
        id: entry.id,
        at: time(entry.at_ms),
        actor: entry.actor.clone(),
        action: entry.action.clone(),
        target: entry.target.clone(),
        before: entry.before.clone(),
        after: entry.after.clone(),
    }
}

/// A value as an audit entry's free-form JSON.
pub fn audited<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

pub fn role(role: crate::auth::Role) -> api::Role {
    match role {
        crate::auth::Role::Admin => api::Role::Admin,
        crate::auth::Role::Auditor => api::Role::Auditor,
    }
}

/// A role as stored (`admin` or `auditor`).
pub fn stored_role(text: &str) -> api::Role {
    // Anything else is no role the store writes: shown as the lesser one.
    match crate::auth::Role::parse(text) {
        Some(crate::auth::Role::Admin) => api::Role::Admin,
        _ => api::Role::Auditor,
    }
}
