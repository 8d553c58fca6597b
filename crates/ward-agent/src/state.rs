//! The agent's settings file (`DIR/agent.json`, mode 0600): its identity and key, the server's
//! key and CA, the settings it follows, and how it was enrolled (its TLS cap and name). Written
//! atomically, so a crash or `kill -9` at any moment leaves the old file or the new one, never
//! a torn one. A file written by an older agent (no `tls_max`, no `name`) still loads.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ward_proto::messages::{Reverted, Settings};

use crate::error::AgentError;

/// Everything in the settings file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    pub agent: String,
    /// The agent's X25519 private key (hex).
    pub private_key: String,
    /// The server's X25519 public key (hex).
    pub server_public: String,
    /// PEM of the CA that signs the servers' certificates; empty for the system's.
    #[serde(default)]
    pub ca_pem: String,
    pub settings: Settings,
    #[serde(default)]
    pub acked_serial: i64,
    /// The highest TLS version the agent offers (`--tls-max` at enrollment), kept so a restart
    /// does not lift the cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_max: Option<String>,
    /// The client profile it imitates (`--client-profile xp-ie8`), kept likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_profile: Option<String>,
    /// The name shown in the client list (`--name`); the host name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The last settings that worked, while `settings` are on probation (taken, not yet
    /// confirmed by a verified check-in with a server they name): what the agent goes back
    /// to when they cut it off. Absent when the settings are confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_working: Option<LastWorking>,
    /// The settings serial the agent left for the last that worked, and why: reported at
    /// each check-in until the server hands other settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted: Option<Reverted>,
    /// The fingerprint (hex) of the ClientHello the agent last reported of its stack: it
    /// reports again when its stack changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_hello: Option<String>,
}

/// Settings that worked, with the agreement key the agent signed with under them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastWorking {
    pub settings: Settings,
    pub acked_serial: i64,
    pub server_public: String,
}

impl AgentState {
    /// What the agent was told to offer at enrollment.
    pub fn offer(&self) -> crate::Offer {
        crate::Offer::from_names(self.client_profile.as_deref(), self.tls_max.as_deref())
    }

    /// The CAs whose server certificates the agent accepts now: those its settings carry
    /// (a CA rotation), else the one it was enrolled with (empty: the system's). Settings whose
    /// CAs hold no certificate OpenSSL can read are passed over: an agent never ends up
    /// unable to build its TLS client.
    pub fn trust_pem(&self) -> &str {
        let carried = &self.settings.trust_pem;
        if carried.is_empty()
            || ward_tls::pki::certificate_fingerprints(carried.as_bytes()).is_empty()
        {
            &self.ca_pem
        } else {
            carried
        }
    }

    /// Takes the server's next agreement key from the settings (a key rotation), if they
    /// carry one that differs from the key it has; whether it did. From then on the agent
    /// signs with the key derived from it.
    pub fn adopt_server_key(&mut self) -> bool {
        let next = &self.settings.server_key;
        let usable = ward_proto::unhex(next).is_ok_and(|bytes| bytes.len() == 32);
        if !usable || *next == self.server_public {
            return false;
        }
        self.server_public = next.clone();
        true
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join("agent.json")
    }

    pub fn exists(dir: &Path) -> bool {
        AgentState::path(dir).exists()
    }

    pub fn load(dir: &Path) -> Result<AgentState, AgentError> {
        let path = AgentState::path(dir);
        let text = fs::read_to_string(&path).map_err(|e| {
            AgentError::state(format!(
                "{}: {e} (enroll first: ward agent enroll)",
                path.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| AgentError::state(format!("{}: {e}", path.display())))
    }

    /// Writes the file atomically with mode 0600. A missing directory is created 0700; an
    /// existing one keeps its mode (it may be shared on purpose).
    pub fn save(&self, dir: &Path) -> Result<(), AgentError> {
        let io =
            |path: &Path, e: std::io::Error| AgentError::state(format!("{}: {e}", path.display()));
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io(dir, e))?;
        }
        let path = AgentState::path(dir);
        let mut text = serde_json::to_string_pretty(self).expect("the state serialises");
        text.push('\n');
        ward_fs::write(&path, text.as_bytes(), 0o600).map_err(|e| io(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn settings() -> Settings {
        serde_json::from_str(
            r#"{"serial": 3, "group": "My Company", "mode": "push", "interval": "1s",
                "randomize": "0s", "policy": {},
                "server_list": {"name": "Default", "servers": []}}"#,
        )
        .unwrap()
    }

    /// A state with made-up keys, serial 0 acknowledged, nothing given at enrollment.
    fn plain_state() -> AgentState {
        AgentState {
            agent: "a1".into(),
            private_key: "00".repeat(32),
            server_public: "11".repeat(32),
            ca_pem: String::new(),
            settings: settings(),
            acked_serial: 0,
            tls_max: None,
            client_profile: None,
            name: None,
            last_working: None,
            reverted: None,
            reported_hello: None,
        }
    }

    #[test]
    fn state_round_trips_atomically_with_private_mode() {
        let dir = tempfile_dir();
        let state = AgentState {
            acked_serial: 3,
            tls_max: Some("TLSv1".into()),
            client_profile: Some("xp-ie8".into()),
            ..plain_state()
        };
        state.save(&dir).unwrap();
        assert_eq!(AgentState::load(&dir).unwrap(), state);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&AgentState::path(&dir)), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_settings_cas_replace_the_enrolled_one_only_when_they_hold_a_certificate() {
        let ca = ward_tls::pki::new_ca("a test CA").unwrap();
        let pem = String::from_utf8(ca.cert_pem().unwrap()).unwrap();
        let mut state = AgentState {
            ca_pem: "the enrolled CA".into(),
            ..plain_state()
        };
        assert_eq!(state.trust_pem(), "the enrolled CA");
        state.settings.trust_pem = "-----BEGIN CERTIFICATE-----\nnot base64\n".into();
        assert_eq!(state.trust_pem(), "the enrolled CA");
        state.settings.trust_pem = pem.clone();
        assert_eq!(state.trust_pem(), pem);
    }

    #[test]
    fn the_settings_next_server_key_is_adopted_once_and_only_when_usable() {
        let mut state = plain_state();
        assert!(!state.adopt_server_key(), "no key in the settings");
        for unusable in ["zz".repeat(32), "22".repeat(31), "not hex".into()] {
            state.settings.server_key = unusable;
            assert!(!state.adopt_server_key());
            assert_eq!(state.server_public, "11".repeat(32));
        }
        state.settings.server_key = "22".repeat(32);
        assert!(state.adopt_server_key());
        assert_eq!(state.server_public, "22".repeat(32));
        assert!(!state.adopt_server_key(), "already adopted");
    }

    #[test]
    fn an_existing_directory_keeps_its_mode() {
        let dir = tempfile_dir();
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        let state = plain_state();
        state.save(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o750
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_of_the_previous_release_loads() {
        let dir = tempfile_dir();
        fs::create_dir_all(&dir).unwrap();
        let old = format!(
            r#"{{"agent": "a1", "private_key": "{}", "server_public": "{}", "ca_pem": "",
                "acked_serial": 3, "settings": {}}}"#,
            "00".repeat(32),
            "11".repeat(32),
            serde_json::to_string(&settings()).unwrap()
        );
        fs::write(AgentState::path(&dir), old).unwrap();
        let state = AgentState::load(&dir).unwrap();
        assert_eq!(state.acked_serial, 3);
        assert_eq!(state.tls_max, None);
        let _ = fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let mut bytes = [0u8; 8];
        openssl::rand::rand_bytes(&mut bytes).unwrap();
        std::env::temp_dir().join(format!("ward-agent-test-{}", ward_proto::hex(&bytes)))
    }
}
