//! Every message of the agent API (`/agent/v1/*`) and the settings package, typed once for
//! both sides.
//!
//! Compatibility rules, pinned by the golden fixtures in `tests/golden/`:
//! - a field the other side needs is required: a message without it is refused with the
//!   field's name, never read as a silent default;
//! - unknown fields are ignored, so a newer peer may add fields (a new field is optional,
//!   with `#[serde(default)]`, so an older peer that omits it is still understood);
//! - durations are text in the one codec of [`crate::duration`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET`: the server's identity, what an agent pins at enrollment.
pub const HELLO_PATH: &str = "/agent/v1/hello";
/// `POST` an [`EnrollRequest`], answered with a signed [`EnrollResponse`].
pub const ENROLL_PATH: &str = "/agent/v1/enroll";
/// `POST` a signed [`CheckinRequest`], answered with a signed [`CheckinResponse`].
pub const CHECKIN_PATH: &str = "/agent/v1/checkin";

/// The headers that carry a request's authentication, and the response's MAC.
pub mod header {
    pub const AGENT: &str = "X-Ward-Agent";
    pub const TIME: &str = "X-Ward-Time";
    pub const NONCE: &str = "X-Ward-Nonce";
    pub const MAC: &str = "X-Ward-Mac";
}

/// The `format` of a settings package from `ward group export-settings`.
pub const SETTINGS_PACKAGE_FORMAT: &str = "ward-settings-1";

/// The answer to `GET /agent/v1/hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always `ward`.
    pub server: String,
    /// The server's release.
    pub version: String,
    /// `clients` or `clients-http`.
    pub listener: String,
    /// The server's X25519 public key (hex), for the agent key agreement.
    pub agreement_key: String,
    /// Its SHA-256 (hex): what `ward agent enroll --pin` compares.
    pub agreement_key_sha256: String,
}

/// What an agent says of itself at enrollment and at every check-in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReport {
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub agent_version: String,
    /// The TLS versions the agent can speak (`TLSv1` ... `TLSv1.3`), after its `--tls-max`.
    pub tls_versions: Vec<String>,
    /// The name shown in the client list (`ward agent enroll --name`); the host name when
    /// absent. Added after v1's first release: optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Sent by `ward simulate`'s agents: a rehearsal, not a real machine. Optional.
    #[serde(default, skip_serializing_if = "is_false")]
    pub simulated: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// `POST /agent/v1/enroll`. Carries no token: a lookup and a proof derived from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The agent's X25519 public key (hex, 32 bytes).
    pub agent_public: String,
    /// [`crate::enroll::token_lookup`] of the token's SHA-256.
    pub token_lookup: String,
    /// [`crate::enroll::proof`] of the [`crate::enroll::statement`].
    pub proof: String,
    /// 16 random bytes (hex), never sent twice.
    pub nonce: String,
    /// Unix milliseconds when the agent sent it.
    pub time_ms: i64,
    #[serde(flatten)]
    pub host: HostReport,
    /// Re-registration: the id the agent had, proven by holding the same key.
    #[serde(default)]
    pub agent: Option<String>,
    /// The ClientHello the agent's TLS stack sends (hex, records included), built in memory
    /// by its own OpenSSL: how the server judges an agent it has not seen over TLS. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello: Option<String>,
}

/// The answer to an enrollment: the agent's id and the settings it follows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub agent: String,
    pub settings: Settings,
}

/// `POST /agent/v1/checkin`: what the agent acknowledges and reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckinRequest {
    /// The settings serial the agent has applied.
    pub acked_serial: i64,
    #[serde(flatten)]
    pub host: HostReport,
    /// The server URL the agent used for this check-in.
    pub server: String,
    /// Push: how long the server may hold the check-in waiting for a change (0: pull).
    #[serde(default)]
    pub wait_ms: u64,
    /// The SHA-256 (hex, of the DER) of each CA whose server certificates the agent accepts
    /// now: what `ward server rotate-ca` waits for. Added with CA rotation: optional, and an
    /// older agent that omits it is taken to trust only the CA it was enrolled with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_cas: Vec<String>,
    /// The agent went back to the last settings that worked: the serial it refused, and why.
    /// Sent at every check-in until the server hands it other settings. Added with the
    /// agent's revert: optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted: Option<Reverted>,
    /// The ClientHello the agent's TLS stack sends (hex, records included), built in memory
    /// by its own OpenSSL: sent when the stack changed since it last reported one. Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hello: Option<String>,
}

/// Why an agent went back to the last settings that worked: the settings serial it left,
/// and what failed with each server those settings named, as it last tried them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reverted {
    pub serial: i64,
    pub failures: Vec<PathFailure>,
}

/// One server a reverted agent could not complete a verified check-in with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathFailure {
    /// The server's URL.
    pub server: String,
    /// What failed, in the agent's words (`connection refused`, a TLS alert, ...).
    pub error: String,
}

impl Reverted {
    /// What failed, per server: `http://mgr1:8014: connection refused; ...`.
    pub fn failures_text(&self) -> String {
        let failures: Vec<String> = self
            .failures
            .iter()
            .map(|f| format!("{}: {}", f.server, f.error))
            .collect();
        failures.join("; ")
    }

    /// One line for an admin: `serial 7: http://mgr1:8014: connection refused; ...`.
    pub fn summary(&self) -> String {
        format!("serial {}: {}", self.serial, self.failures_text())
    }
}

/// The answer to a check-in: the agent's current serial, and its settings when that serial
/// is newer than the one it acknowledged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckinResponse {
    pub serial: i64,
    pub settings: Option<Settings>,
}

/// The error shape of every ward API: a stable code and a sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// A busy server's wait before the next try, in seconds. In the body, so that a signed
    /// 503's wait is covered by its MAC (a `Retry-After` header is not, and anyone on the
    /// plain channel could stretch it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
            retry_after_s: None,
        }
    }

    /// A busy server's answer: try again after `retry_after` (whole seconds, at least 1).
    pub fn busy(message: impl Into<String>, retry_after: Duration) -> ErrorBody {
        ErrorBody {
            retry_after_s: Some(retry_after.as_secs().max(1)),
            ..ErrorBody::new("too_busy", message)
        }
    }
}

/// The settings an agent follows: its group's effective settings at a serial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub serial: i64,
    /// The group's path, e.g. `My Company/Legacy XP`.
    pub group: String,
    pub server_list: ServerListSettings,
    /// How often a pull agent checks in.
    #[serde(with = "crate::duration::text")]
    pub interval: Duration,
    /// Up to this much is added at random to each pull interval.
    #[serde(with = "crate::duration::text")]
    pub randomize: Duration,
    pub mode: Mode,
    /// The group's policy document, inherited whole; within [`crate::policy`]'s limits (a
    /// document beyond them is refused with the reason).
    #[serde(deserialize_with = "crate::policy::deserialize")]
    pub policy: Value,
    /// PEM of the CAs whose server certificates the agent accepts from these settings on,
    /// replacing the CA it was enrolled with: how `ward server rotate-ca` hands every agent a
    /// new CA inside its signed settings. Empty (and absent on the wire) until a rotation:
    /// keep the enrolled CA.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trust_pem: String,
    /// The server's next X25519 agreement key (hex), during an agreement key rotation: the
    /// agent signs with the key derived from it from these settings on (the server accepts
    /// both until the switch). Empty (and absent on the wire) otherwise: keep the one it has.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_key: String,
}

impl Settings {
    /// The servers in priority order, as listed.
    pub fn servers(&self) -> &[ServerEntry] {
        &self.server_list.servers
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerListSettings {
    pub name: String,
    pub servers: Vec<ServerEntry>,
}

/// One server of a list, as the agent uses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEntry {
    /// 1 is tried first.
    pub priority: u32,
    /// `https://mgr1:443`.
    pub url: String,
    pub address: String,
    pub protocol: Scheme,
    pub port: u16,
    /// Whether the agent checks the server's certificate (HTTPS only).
    pub verify_certificate: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

/// Pull (check in every interval) or push (a held check-in delivers changes at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Pull,
    Push,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pull => "pull",
            Mode::Push => "push",
        }
    }
}

/// What `ward group export-settings` writes and `ward agent import-settings` reads: the seed's
/// communication-settings package for an agent that lost contact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettingsPackage {
    /// [`SETTINGS_PACKAGE_FORMAT`].
    pub format: String,
    pub group: String,
    /// The server's X25519 public key (hex): pinned by the importing agent.
    pub server_public: String,
    /// The CA (PEM) of the servers' certificates; empty for the system's.
    pub ca_pem: String,
    /// An enrollment token for the group.
    pub token: String,
    pub settings: Settings,
}

/// Why a message could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Which message, e.g. `check-in request`.
    pub message: &'static str,
    /// serde's reason, which names the missing or malformed field.
    pub reason: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed {}: {}", self.message, self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// A message as it travels: JSON and a newline. The agent API signs these exact bytes.
pub fn encode<T: Serialize>(message: &T) -> String {
    let mut text = serde_json::to_string(message).expect("protocol messages serialise");
    text.push('\n');
    text
}

/// Reads a message; `what` names it in the error.
pub fn decode<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(|error| DecodeError {
        message: what,
        reason: error.to_string(),
    })
}

/// The `message` of an error body, if `bytes` is one.
pub fn error_message(bytes: &[u8]) -> Option<ErrorDetail> {
    serde_json::from_slice::<ErrorBody>(bytes)
        .ok()
        .map(|body| body.error)
}
