//! The agent API under `/agent/v1/` on the clients and clients-http listeners: enrollment and
//! check-in, authenticated with ward-proto (no reusable secret on the wire, responses bound to
//! their request), so the plain-HTTP listener is as safe against tampering as HTTPS.

use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use ward_fleet::group::Effective;
use ward_fleet::Tree;
use ward_proto::{AgentKey, RequestAuth};
use ward_store::{AgentRecord, AuditEntry, Change, Checkin, Mutation, Store};
use ward_tls::TlsVersion;

use crate::admin::{auth, blocking, now_ms, ApiError};
use crate::config::Role;
use crate::http::{error_response, HttpResponse};
use crate::server::Shared;

/// The longest a push agent's check-in is held open waiting for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(55);

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// What an agent sends to name its token without sending it: derived from the token's
/// SHA-256, which the server stores.
pub fn token_lookup(token_sha256: &str) -> String {
    auth::sha256_hex(&format!("{token_sha256}:lookup"))
}

/// The settings an agent in `group` is sent, read from the store: the group tree, the server
/// lists and the group's effective settings, at `serial`.
fn group_settings(store: &dyn Store, group: i64, serial: i64) -> Result<Value, ApiError> {
    let tree = Tree::new(store.groups()?).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let lists = store.server_lists()?;
    let effective = tree
        .effective(group)
        .ok_or_else(|| ApiError::not_found("the group vanished"))?;
    Ok(settings_json(&tree, group, &effective, &lists, serial))
}

/// The settings an agent follows, as the agent API sends them.
pub(crate) fn settings_json(
    tree: &Tree,
    group: i64,
    effective: &Effective,
    lists: &[ward_fleet::ServerList],
    serial: i64,
) -> Value {
    let list = lists.iter().find(|l| l.name == effective.server_list);
    let servers: Vec<Value> = list
        .map(|l| {
            l.levels
                .iter()
                .enumerate()
                .flat_map(|(index, level)| {
                    level
                        .iter()
                        .map(move |e| crate::admin::entry_json(index + 1, e))
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "serial": serial,
        "group": tree.path(group),
        "server_list": {"name": effective.server_list, "servers": servers},
        "interval": crate::config::format_duration(effective.interval),
        "randomize": crate::config::format_duration(effective.randomize),
        "mode": effective.mode.name(),
        "policy": effective.policy,
    })
}

fn refuse(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    error_response(status, code, message)
}

fn signed(key: &AgentKey, nonce: &str, status: StatusCode, body: &Value) -> HttpResponse {
    let text = format!("{body}\n");
    let mac = ward_proto::sign_response(key, nonce, status.as_u16(), text.as_bytes());
    let mut response = crate::http::json_text(status, text);
    if let Ok(value) = HeaderValue::from_str(&mac) {
        response.headers_mut().insert("x-ward-mac", value);
    }
    response
}

fn agent_key(shared: &Shared, agent_public: &[u8]) -> Option<AgentKey> {
    let server_public = shared.agreement_public.as_slice();
    ward_proto::agree(&shared.agreement, agent_public, agent_public, server_public).ok()
}

fn field<'a>(body: &'a Value, key: &str) -> Result<&'a str, String> {
    body[key]
        .as_str()
        .ok_or_else(|| format!("'{key}' (a string) is required"))
}

fn versions(body: &Value) -> Vec<String> {
    body["tls_versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(TlsVersion::parse_loose)
        .map(|v| v.name().to_string())
        .collect()
}

pub async fn enroll(shared: &Shared, role: Role, body: Bytes) -> HttpResponse {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body must be a JSON object",
            )
        }
    };
    let parsed = (|| -> Result<_, String> {
        let public = unhex(field(&body, "agent_public")?)
            .filter(|b| b.len() == 32)
            .ok_or("agent_public: 32 bytes, hex")?;
        let proof = field(&body, "proof")?.to_string();
        let nonce = field(&body, "nonce")?.to_string();
        let time_ms = body["time_ms"]
            .as_i64()
            .ok_or("'time_ms' (a number) is required")?;
        let lookup = field(&body, "token_lookup")?.to_string();
        Ok((public, proof, nonce, time_ms, lookup))
    })();
    let (public, proof, nonce, time_ms, lookup) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, "bad_request", &message),
    };
    let now = now_ms();
    if now.abs_diff(time_ms) > ward_proto::MAX_SKEW_MS as u64 {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "stale",
            "the enrollment time is too far from the server's clock",
        );
    }
    let Some(key) = agent_key(shared, &public) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "agent_public is not a usable X25519 key",
        );
    };
    let store = shared.store.clone();
    let tokens = match blocking(move || Ok(store.tokens()?)).await {
        Ok(tokens) => tokens,
        Err(error) => return refuse(error.status, error.code, &error.message),
    };
    let Some(token) = tokens
        .into_iter()
        .find(|t| token_lookup(&t.token_sha256) == lookup)
    else {
        return refuse(
            StatusCode::FORBIDDEN,
            "unknown_token",
            "unknown enrollment token",
        );
    };
    // The proof covers the token, the freshness, the key and the identity claimed, so none of
    // them can be changed on the way.
    let statement = format!(
        "{}:{nonce}:{time_ms}:{}:{}",
        token.token_sha256,
        hex(&public),
        body["agent"].as_str().unwrap_or("")
    );
    let expected = hex(&ward_proto::enrollment_proof(&key, &statement));
    if expected.len() != proof.len() || !openssl::memcmp::eq(expected.as_bytes(), proof.as_bytes())
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "bad_proof",
            "the enrollment proof does not match the token",
        );
    }
    if token.revoked || token.expires_ms.is_some_and(|e| e <= now) || token.uses_left == Some(0) {
        return refuse(
            StatusCode::FORBIDDEN,
            "token_unusable",
            "the enrollment token is revoked, expired or used up",
        );
    }
    if role == Role::ClientsHttp && !token.allow_http {
        return refuse(
            StatusCode::FORBIDDEN,
            "https_required",
            "this token does not allow enrollment over plain HTTP: enroll over HTTPS, or use a token created with --allow-http",
        );
    }
    let fresh = shared
        .replay
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .requests
        .check_and_remember(&format!("enroll:{}", hex(&public)), &nonce, now);
    if !fresh {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "replayed",
            "this enrollment was already received (replay)",
        );
    }
    // Re-registration: an agent that proves it holds the key on record for its id moves into
    // the token's group and keeps its identity (the seed's communication-settings drop).
    if let Some(existing) = body["agent"].as_str() {
        let store = shared.store.clone();
        let id = existing.to_string();
        let public_hex = hex(&public);
        let result = blocking(move || {
            if store.agent_public_key(&id)?.as_deref() != Some(public_hex.as_str()) {
                return Ok(None);
            }
            let applied = store.apply(&Change {
                mutation: Mutation::Reregister {
                    agent: id.clone(),
                    group: token.group,
                    token: token.id,
                },
                bump_groups: vec![],
                bump_agents: vec![id.clone()],
                audit: AuditEntry {
                    id: 0,
                    at_ms: now,
                    actor: format!("agent:{id}"),
                    action: "agent.reregister".into(),
                    target: id.clone(),
                    before: None,
                    after: Some(json!({"token": token.id})),
                },
            })?;
            let settings = group_settings(&*store, token.group, applied.serial.unwrap_or(1))?;
            Ok(Some(json!({"agent": id, "settings": settings})))
        })
        .await;
        match result {
            Ok(Some(body)) => {
                shared.fleet_version.send_modify(|v| *v += 1);
                return signed(&key, &nonce, StatusCode::OK, &body);
            }
            Ok(None) => {} // not that agent's key: a new enrollment below
            Err(error) => return refuse(error.status, error.code, &error.message),
        }
    }
    let mut id = [0u8; 16];
    openssl::rand::rand_bytes(&mut id).expect("the system has randomness");
    let id = hex(&id);
    let record = AgentRecord {
        id: id.clone(),
        hostname: body["hostname"]
            .as_str()
            .unwrap_or("unknown")
            .chars()
            .take(255)
            .collect(),
        os_name: body["os_name"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(64)
            .collect(),
        os_version: body["os_version"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(64)
            .collect(),
        agent_version: body["agent_version"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(64)
            .collect(),
        tls_versions: versions(&body),
        group: token.group,
        last_checkin_ms: None,
        channel: None,
        server: None,
        tls_version: None,
        serial: 1,
        acked_serial: 0,
        enrolled_ms: now,
    };
    let store = shared.store.clone();
    let public_hex = hex(&public);
    let agent_id = id.clone();
    let group = token.group;
    let result = blocking(move || {
        store.apply(&Change {
            mutation: Mutation::Enroll {
                agent: record,
                public_key: public_hex,
                token: token.id,
            },
            bump_groups: vec![],
            bump_agents: vec![],
            audit: AuditEntry {
                id: 0,
                at_ms: now,
                actor: format!("agent:{agent_id}"),
                action: "agent.enroll".into(),
                target: agent_id.clone(),
                before: None,
                after: Some(json!({"token": token.id})),
            },
        })?;
        group_settings(&*store, group, 1)
    })
    .await;
    match result {
        Ok(settings) => {
            shared
                .agent_keys
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), key.clone());
            let body = json!({"agent": id, "settings": settings});
            signed(&key, &nonce, StatusCode::OK, &body)
        }
        Err(error) => refuse(error.status, error.code, &error.message),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Finds the agent's key: from the cache, else from its stored public key.
async fn key_of(shared: &Shared, agent: &str) -> Result<Option<AgentKey>, ApiError> {
    if let Some(key) = shared
        .agent_keys
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(agent)
    {
        return Ok(Some(key.clone()));
    }
    let store = shared.store.clone();
    let id = agent.to_string();
    let public = blocking(move || Ok(store.agent_public_key(&id)?)).await?;
    let key = public
        .and_then(|p| unhex(&p))
        .and_then(|p| agent_key(shared, &p));
    if let Some(key) = &key {
        shared
            .agent_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent.to_string(), key.clone());
    }
    Ok(key)
}

pub async fn checkin(
    shared: &Shared,
    role: Role,
    peer: std::net::SocketAddr,
    tls: Option<crate::http::Tls>,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> HttpResponse {
    let (Some(agent), Some(time), Some(nonce), Some(mac)) = (
        header(headers, "x-ward-agent"),
        header(headers, "x-ward-time").and_then(|t| t.parse::<i64>().ok()),
        header(headers, "x-ward-nonce"),
        header(headers, "x-ward-mac"),
    ) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unsigned",
            "a check-in must carry X-Ward-Agent, X-Ward-Time, X-Ward-Nonce and X-Ward-Mac",
        );
    };
    let key = match key_of(shared, agent).await {
        Ok(Some(key)) => key,
        Ok(None) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "unknown_agent",
                "unknown agent: enroll again, or import a settings package",
            )
        }
        Err(error) => return refuse(error.status, error.code, &error.message),
    };
    let auth = RequestAuth {
        agent: agent.to_string(),
        time_ms: time,
        nonce: nonce.to_string(),
    };
    let request = ward_proto::Request {
        method: "POST",
        path,
        auth: &auth,
        body: &body,
    };
    let verified = {
        let mut replay = shared.replay.lock().unwrap_or_else(|p| p.into_inner());
        ward_proto::verify_request(&key, &request, mac, now_ms(), &mut replay.requests)
    };
    if let Err(error) = verified {
        tracing::warn!(agent, %error, "check-in refused");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            &error.to_string(),
        );
    }
    let report: Value = match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => {
            return signed(
                &key,
                nonce,
                StatusCode::BAD_REQUEST,
                &json!({"error": {"code": "bad_request", "message": "the body must be a JSON object"}}),
            )
        }
    };
    let checkin = Checkin {
        agent: agent.to_string(),
        at_ms: now_ms(),
        acked_serial: report["acked_serial"].as_i64().unwrap_or(0),
        hostname: report["hostname"]
            .as_str()
            .unwrap_or("unknown")
            .chars()
            .take(255)
            .collect(),
        os_name: report["os_name"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(64)
            .collect(),
        os_version: report["os_version"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(64)
            .collect(),
        agent_version: report["agent_version"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(64)
            .collect(),
        tls_versions: versions(&report),
        channel: if role.is_tls() {
            "https".into()
        } else {
            "http".into()
        },
        server: report["server"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(255)
            .collect(),
        tls_version: tls.map(|t| t.version.name().to_string()),
        peer: Some(peer.ip().to_canonical().to_string()),
    };
    let wait = Duration::from_millis(report["wait_ms"].as_u64().unwrap_or(0)).min(MAX_WAIT);
    let mut wakes = shared.wakes.subscribe();
    let mut reloads = shared.tls_generation.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    let mut record = match shared.checkins.record(checkin.clone()).await {
        Ok(Some(record)) => record,
        Ok(None) => return refuse(StatusCode::UNAUTHORIZED, "unknown_agent", "unknown agent"),
        Err(error) => {
            let error = ApiError::from(error);
            return refuse(error.status, error.code, &error.message);
        }
    };
    // Push: hold the request until the agent's settings change, or the wait runs out.
    let _held = (!wait.is_zero()).then(|| Held::new(shared, agent));
    let mut shutdown = shared.shutdown.subscribe();
    // A connection accepted under settings a reload has replaced is not held: the agent
    // reconnects under the new ones (which may refuse it: that is the point).
    let outdated = |reloads: &tokio::sync::watch::Receiver<u64>| {
        tls.is_some_and(|t| t.generation != *reloads.borrow())
    };
    while record.serial <= checkin.acked_serial && tokio::time::Instant::now() < deadline {
        if *shutdown.borrow() || outdated(&reloads) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            wake = wakes.recv() => match wake {
                // A change for other agents: keep waiting, no database read.
                Ok(wake) if !wake.concerns(agent, record.group) => continue,
                // For this agent, or too many to tell (lagged): read the record again.
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = shutdown.changed() => break,
            _ = reloads.changed() => continue,
        }
        let store = shared.store.clone();
        let id = agent.to_string();
        match blocking(move || Ok(store.agent(&id)?)).await {
            Ok(Some(updated)) => record = updated,
            _ => break,
        }
    }
    let body = if record.serial > checkin.acked_serial {
        match cached_settings(shared, record.group, record.serial).await {
            Ok(settings) => json!({"serial": record.serial, "settings": settings}),
            Err(error) => return refuse(error.status, error.code, &error.message),
        }
    } else {
        json!({"serial": record.serial, "settings": null})
    };
    signed(&key, nonce, StatusCode::OK, &body)
}

/// Settings by (group, serial), for one `fleet_version`.
#[derive(Default)]
pub struct SettingsCache {
    version: u64,
    entries: std::collections::HashMap<(i64, i64), Value>,
}

/// The most entries kept; beyond it the cache starts over.
const SETTINGS_CACHE_ENTRIES: usize = 10_000;

/// `group_settings`, computed once per (group, serial) while no admin change intervenes.
async fn cached_settings(shared: &Shared, group: i64, serial: i64) -> Result<Value, ApiError> {
    let version = *shared.fleet_version.borrow();
    {
        let cache = shared
            .settings_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if cache.version == version {
            if let Some(settings) = cache.entries.get(&(group, serial)) {
                return Ok(settings.clone());
            }
        }
    }
    let store = shared.store.clone();
    let settings = blocking(move || group_settings(&*store, group, serial)).await?;
    let mut cache = shared
        .settings_cache
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // Only forward: an answer computed under an older version never replaces newer entries.
    if version > cache.version || cache.entries.len() >= SETTINGS_CACHE_ENTRIES {
        cache.version = version;
        cache.entries.clear();
    }
    if version == cache.version {
        cache.entries.insert((group, serial), settings.clone());
    }
    Ok(settings)
}

/// Marks an agent as held (connected, waiting for a change) while it lives.
struct Held<'a> {
    shared: &'a Shared,
    agent: String,
}

impl<'a> Held<'a> {
    fn new(shared: &'a Shared, agent: &str) -> Held<'a> {
        let mut held = shared.held.lock().unwrap_or_else(|p| p.into_inner());
        *held.entry(agent.to_string()).or_default() += 1;
        Held {
            shared,
            agent: agent.to_string(),
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut held = self.shared.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.agent) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.agent);
            }
        }
    }
}

/// Replay protection for the agent API: nonces per agent id, and per enrolling key.
#[derive(Default)]
pub struct Replays {
    pub requests: ward_proto::ReplayCache,
}
