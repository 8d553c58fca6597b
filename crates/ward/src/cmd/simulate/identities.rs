//! The simulated agents' identities, and the `--identities` file that keeps them between runs
//! (0600: the private keys are the agents' credentials) so a second run enrolls nobody, and
//! their TLS sessions, so a second run resumes as agents that ran all along do.

use std::path::Path;

use serde_json::{json, Value};
use ward_proto::messages::Settings;
use ward_proto::{hex, unhex, AgentKey, KeyPair};

/// One simulated agent's identity.
pub(super) struct Identity {
    pub(super) id: String,
    pub(super) key: AgentKey,
    pub(super) private_hex: String,
    pub(super) legacy: bool,
    /// The settings it enrolled with (none for identities reused from a file).
    pub(super) settings: Option<Settings>,
    /// Its last TLS session (DER), resumed by its next connection.
    pub(super) session: Option<Vec<u8>>,
}

/// At most `at_most` identities from `path` (none when there is no file), which must have
/// been made for the server whose agreement key is `server_public`.
pub(super) fn load(
    path: Option<&Path>,
    server_public: &[u8],
    at_most: usize,
) -> Result<Vec<Identity>, String> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if value["server_public"] != hex(server_public) {
        return Err(format!(
            "{}: made for another server; remove it to enroll anew",
            path.display()
        ));
    }
    let mut identities = Vec::new();
    for entry in value["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .take(at_most)
    {
        let private =
            unhex(entry["private_key"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
        let pair = KeyPair::from_private_bytes(&private).map_err(|e| e.to_string())?;
        let key = AgentKey::for_agent(&pair, server_public).map_err(|e| e.to_string())?;
        identities.push(Identity {
            id: entry["id"].as_str().unwrap_or_default().to_string(),
            key,
            private_hex: hex(&private),
            legacy: entry["legacy"].as_bool().unwrap_or(false),
            settings: None,
            // A session the file cannot give back is only a full handshake more.
            session: entry["session"].as_str().and_then(|s| unhex(s).ok()),
        });
    }
    Ok(identities)
}

/// Writes `identities` to `path` (nothing without one), atomically and 0600.
pub(super) fn save(
    path: Option<&Path>,
    server_public: &[u8],
    identities: &[Identity],
) -> Result<(), String> {
    let Some(path) = path else {
        return Ok(());
    };
    let agents: Vec<Value> = identities
        .iter()
        .map(|i| {
            let mut entry = json!({"id": i.id, "private_key": i.private_hex, "legacy": i.legacy});
            if let Some(session) = &i.session {
                entry["session"] = json!(hex(session));
            }
            entry
        })
        .collect();
    let text = json!({"server_public": hex(server_public), "agents": agents}).to_string();
    ward_fs::write(path, text.as_bytes(), 0o600).map_err(|e| format!("{}: {e}", path.display()))
}
