//! The simulated agents' identities, and the `--identities` file that keeps them between runs
//! (0600: the private keys are the agents' credentials) so a second run enrolls nobody, their
//! TLS sessions, so a second run resumes as agents that ran all along do, and the settings
//! each follows (kept once per distinct settings, as a real agent keeps its settings file), so
//! a second run does not start from bootstrap settings whose first answer is on probation.

use std::path::Path;

use serde::{Deserialize, Serialize};
use ward_proto::messages::Settings;
use ward_proto::{hex, unhex, AgentKey, KeyPair};

/// One simulated agent's identity.
pub(super) struct Identity {
    pub(super) id: String,
    pub(super) key: AgentKey,
    pub(super) private_hex: String,
    pub(super) legacy: bool,
    /// The settings it follows (none for identities from a file that kept none).
    pub(super) settings: Option<Settings>,
    /// Its last TLS session (DER), resumed by its next connection.
    pub(super) session: Option<Vec<u8>>,
}

/// The `--identities` file, as it is written.
#[derive(Serialize, Deserialize)]
struct IdentitiesFile {
    #[serde(default)]
    server_public: String,
    #[serde(default)]
    agents: Vec<Entry>,
    /// The distinct settings the agents follow; an entry names its own by index.
    #[serde(default)]
    settings: Vec<Settings>,
}

/// One agent in the file.
#[derive(Serialize, Deserialize)]
struct Entry {
    #[serde(default)]
    id: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    legacy: bool,
    /// Its last TLS session (DER, hex); absent for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    /// The index of its settings in the file's `settings`; absent for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    settings: Option<usize>,
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
    let file: IdentitiesFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if file.server_public != hex(server_public) {
        return Err(format!(
            "{}: made for another server; remove it to enroll anew",
            path.display()
        ));
    }
    let mut identities = Vec::new();
    for entry in file.agents.into_iter().take(at_most) {
        let private = unhex(&entry.private_key).map_err(|e| e.to_string())?;
        let pair = KeyPair::from_private_bytes(&private).map_err(|e| e.to_string())?;
        let key = AgentKey::for_agent(&pair, server_public).map_err(|e| e.to_string())?;
        identities.push(Identity {
            id: entry.id,
            key,
            private_hex: hex(&private),
            legacy: entry.legacy,
            settings: entry
                .settings
                .and_then(|index| file.settings.get(index))
                .cloned(),
            // A session the file cannot give back is only a full handshake more.
            session: entry.session.and_then(|s| unhex(&s).ok()),
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
    // 15,000 agents follow a handful of distinct settings: each is written once.
    let mut distinct: Vec<Settings> = Vec::new();
    let mut index_of = std::collections::HashMap::new();
    let mut agents = Vec::with_capacity(identities.len());
    for identity in identities {
        let settings = identity.settings.as_ref().map(|settings| {
            let key = (settings.group.clone(), settings.serial);
            *index_of.entry(key).or_insert_with(|| {
                distinct.push(settings.clone());
                distinct.len() - 1
            })
        });
        agents.push(Entry {
            id: identity.id.clone(),
            private_key: identity.private_hex.clone(),
            legacy: identity.legacy,
            session: identity.session.as_deref().map(hex),
            settings,
        });
    }
    let file = IdentitiesFile {
        server_public: hex(server_public),
        agents,
        settings: distinct,
    };
    let text = serde_json::to_string(&file).map_err(|e| e.to_string())?;
    ward_fs::write(path, text.as_bytes(), 0o600).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `save` writes, `load` gives back: ids, keys, legacy flags, sessions and settings
    /// (each distinct settings written once); a file of another server is refused.
    #[test]
    fn the_identities_file_round_trips_and_belongs_to_one_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.json");
        let server = KeyPair::generate().unwrap();
        let server_public = server.public_bytes().unwrap();
        let agent = |id: &str, legacy: bool, session: Option<Vec<u8>>| {
            let pair = KeyPair::generate().unwrap();
            Identity {
                id: id.into(),
                key: AgentKey::for_agent(&pair, &server_public).unwrap(),
                private_hex: hex(&pair.private_bytes().unwrap()),
                legacy,
                settings: None,
                session,
            }
        };
        let followed = {
            let mut settings = super::super::agent::bootstrap_settings("https://mgr1:443");
            settings.serial = 7;
            settings.group = "My Company".into();
            settings.policy = serde_json::json!({"antivirus": "strict"});
            settings
        };
        let with_settings = |mut identity: Identity| {
            identity.settings = Some(followed.clone());
            identity
        };
        let saved = [
            with_settings(agent("a", false, Some(vec![1, 2, 3]))),
            agent("b", true, None),
            with_settings(agent("c", false, None)),
        ];
        save(Some(&path), &server_public, &saved).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let written: IdentitiesFile = serde_json::from_str(&text).unwrap();
        assert_eq!(
            written.settings.len(),
            1,
            "one copy of settings two agents follow"
        );
        let loaded = load(Some(&path), &server_public, 10).unwrap();
        assert_eq!(loaded.len(), 3);
        for (before, after) in saved.iter().zip(&loaded) {
            assert_eq!(
                (
                    &after.id,
                    &after.private_hex,
                    after.legacy,
                    &after.session,
                    &after.settings
                ),
                (
                    &before.id,
                    &before.private_hex,
                    before.legacy,
                    &before.session,
                    &before.settings
                )
            );
        }
        assert_eq!(load(Some(&path), &server_public, 1).unwrap().len(), 1);
        let other = KeyPair::generate().unwrap().public_bytes().unwrap();
        let refused = load(Some(&path), &other, 10).err().unwrap();
        assert!(refused.contains("made for another server"), "{refused}");
    }
}
