//! The agent's settings file (`DIR/agent.json`, mode 0600): its identity and key, the server's
//! key and CA, and the settings it follows. Written atomically, so a crash or `kill -9` at any
//! moment leaves the old file or the new one, never a torn one.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The server entries and schedule the agent follows.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The whole settings object as the server sent it.
    pub raw: Value,
}

impl Settings {
    pub fn serial(&self) -> i64 {
        self.raw["serial"].as_i64().unwrap_or(0)
    }

    pub fn mode_push(&self) -> bool {
        self.raw["mode"] == "push"
    }

    pub fn interval(&self) -> std::time::Duration {
        parse_duration(self.raw["interval"].as_str().unwrap_or("5m"))
    }

    pub fn randomize(&self) -> std::time::Duration {
        parse_duration(self.raw["randomize"].as_str().unwrap_or("0s"))
    }

    pub fn servers(&self) -> Vec<crate::select::Candidate> {
        self.raw["server_list"]["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                Some(crate::select::Candidate {
                    priority: s["priority"].as_u64()? as u32,
                    url: s["url"].as_str()?.to_string(),
                    verify_certificate: s["verify_certificate"].as_bool().unwrap_or(true),
                })
            })
            .collect()
    }
}

/// `5m`, `90s`, `1h30m`, `500ms` (what the server sends).
pub fn parse_duration(text: &str) -> std::time::Duration {
    let mut total = std::time::Duration::ZERO;
    let mut number = 0u64;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(d) = c.to_digit(10) {
            number = number.saturating_mul(10).saturating_add(u64::from(d));
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                std::time::Duration::from_millis(number)
            }
            ('s', _) => std::time::Duration::from_secs(number),
            ('m', _) => std::time::Duration::from_secs(number * 60),
            ('h', _) => std::time::Duration::from_secs(number * 3600),
            ('d', _) => std::time::Duration::from_secs(number * 86_400),
            _ => std::time::Duration::ZERO,
        };
        total += unit;
        number = 0;
    }
    total
}

/// Everything in the settings file.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentState {
    pub agent: String,
    pub private_key: String,
    pub server_public: String,
    /// PEM of the CA that signs the servers' certificates; empty for none.
    pub ca_pem: String,
    pub settings: Settings,
    pub acked_serial: i64,
}

impl AgentState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("agent.json")
    }

    pub fn to_json(&self) -> Value {
        json!({
            "agent": self.agent,
            "private_key": self.private_key,
            "server_public": self.server_public,
            "ca_pem": self.ca_pem,
            "settings": self.settings.raw,
            "acked_serial": self.acked_serial,
        })
    }

    pub fn from_json(value: &Value) -> Result<AgentState, String> {
        let text = |key: &str| {
            value[key]
                .as_str()
                .map(str::to_string)
                .ok_or(format!("settings file: no '{key}'"))
        };
        Ok(AgentState {
            agent: text("agent")?,
            private_key: text("private_key")?,
            server_public: text("server_public")?,
            ca_pem: value["ca_pem"].as_str().unwrap_or_default().to_string(),
            settings: Settings {
                raw: value["settings"].clone(),
            },
            acked_serial: value["acked_serial"].as_i64().unwrap_or(0),
        })
    }

    pub fn load(dir: &Path) -> Result<AgentState, String> {
        let path = AgentState::path(dir);
        let text = fs::read_to_string(&path)
            .map_err(|e| format!("{}: {e} (enroll first: ward agent enroll)", path.display()))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        AgentState::from_json(&value)
    }

    /// Writes the file atomically with mode 0600.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = AgentState::path(dir);
        if !path.exists() {
            fs::write(&path, b"").map_err(|e| format!("{}: {e}", path.display()))?;
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let text = format!("{:#}\n", self.to_json());
        ward_tls::edit::write_atomic(&path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (text, secs) in [
            ("5m", 300),
            ("90s", 90),
            ("1h30m", 5400),
            ("1d", 86_400),
            ("0s", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                std::time::Duration::from_secs(secs),
                "{text}"
            );
        }
        assert_eq!(
            parse_duration("500ms"),
            std::time::Duration::from_millis(500)
        );
    }

    #[test]
    fn state_round_trips_atomically_with_private_mode() {
        let dir = tempfile_dir();
        let state = AgentState {
            agent: "a1".into(),
            private_key: "00".repeat(32),
            server_public: "11".repeat(32),
            ca_pem: String::new(),
            settings: Settings {
                raw: json!({"serial": 3, "mode": "push", "interval": "1s"}),
            },
            acked_serial: 3,
        };
        state.save(&dir).unwrap();
        assert_eq!(AgentState::load(&dir).unwrap(), state);
        let mode = fs::metadata(AgentState::path(&dir))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(state.settings.mode_push());
        assert_eq!(state.settings.interval(), std::time::Duration::from_secs(1));
        let _ = fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let mut bytes = [0u8; 8];
        openssl::rand::rand_bytes(&mut bytes).unwrap();
        let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::env::temp_dir().join(format!("ward-agent-test-{name}"))
    }
}
