//! How values are kept in columns, the same in every engine: TLS version lists as one
//! comma-separated text, durations as milliseconds, a server list's entries as JSON, repeated
//! texts shared once in memory. An engine maps a decoding failure to its own error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use ward_fleet::serverlist::{Protocol, ServerEntry};
use ward_fleet::ServerList;

/// A list of TLS version names as stored in one text column: comma-separated.
pub(crate) fn join_versions(versions: &[String]) -> String {
    versions.join(",")
}

/// The inverse of [`join_versions`]; an empty column is an empty list.
pub(crate) fn split_versions(column: &str) -> Vec<String> {
    column
        .split(',')
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// `TLSv1` = 1 ... `TLSv1.3` = 4; 0 for nothing known ([`crate::rank`]).
pub(crate) fn tls_rank(name: &str) -> i64 {
    i64::from(crate::rank::of(name))
}

/// The set of versions in a stored comma-separated list, as rank bits (see `AgentTls`).
pub(crate) fn version_bits(list: &str) -> u8 {
    crate::rank::bits(list.split(','))
}

pub(crate) fn millis(duration: Option<Duration>) -> Option<i64> {
    duration.map(|d| d.as_millis() as i64)
}

pub(crate) fn from_millis(value: Option<i64>) -> Option<Duration> {
    value.map(|ms| Duration::from_millis(ms.max(0) as u64))
}

/// One shared string per distinct value.
pub(crate) fn intern(seen: &mut HashMap<String, Arc<str>>, text: &str) -> Arc<str> {
    if let Some(shared) = seen.get(text) {
        return shared.clone();
    }
    let shared: Arc<str> = Arc::from(text);
    seen.insert(text.to_string(), shared.clone());
    shared
}

/// A server list's entries as stored: a JSON array of entries, each with its priority.
pub(crate) fn entries_json(list: &ServerList) -> String {
    let entries: Vec<Value> = list
        .levels
        .iter()
        .enumerate()
        .flat_map(|(index, level)| {
            level.iter().map(move |entry| {
                json!({
                    "priority": index + 1,
                    "address": entry.address,
                    "protocol": entry.protocol.name(),
                    "port": entry.port,
                    "verify_certificate": entry.verify_certificate,
                })
            })
        })
        .collect();
    Value::Array(entries).to_string()
}

/// The inverse of [`entries_json`]; `Err` names what does not decode.
pub(crate) fn list_from_json(name: String, entries: &str) -> Result<ServerList, &'static str> {
    let mut levels: Vec<(u64, Vec<ServerEntry>)> = Vec::new();
    let parsed: Vec<Value> = serde_json::from_str(entries).map_err(|_| "server list")?;
    for entry in parsed {
        let decode = || -> Option<(u64, ServerEntry)> {
            Some((
                entry["priority"].as_u64()?,
                ServerEntry {
                    address: entry["address"].as_str()?.to_string(),
                    protocol: Protocol::parse(entry["protocol"].as_str()?)?,
                    port: u16::try_from(entry["port"].as_u64()?).ok()?,
                    verify_certificate: entry["verify_certificate"].as_bool()?,
                },
            ))
        };
        let (priority, server) = decode().ok_or("server list entry")?;
        match levels.iter_mut().find(|(p, _)| *p == priority) {
            Some((_, level)) => level.push(server),
            None => levels.push((priority, vec![server])),
        }
    }
    levels.sort_by_key(|(p, _)| *p);
    Ok(ServerList {
        name,
        levels: levels.into_iter().map(|(_, l)| l).collect(),
    })
}

/// A server's listeners as stored: JSON.
pub(crate) fn listeners_json(listeners: &[crate::ListenerRecord]) -> String {
    serde_json::to_string(listeners).unwrap_or_else(|_| "[]".into())
}

/// The inverse of [`listeners_json`]; `Err` names what does not decode.
pub(crate) fn listeners_from_json(text: &str) -> Result<Vec<crate::ListenerRecord>, &'static str> {
    serde_json::from_str(text).map_err(|_| "server listeners")
}
