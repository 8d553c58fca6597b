//! The server itself: its status, reloads and certificate renewal (guarded), and the CA and
//! agreement key rotations.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::tls::GuardPlan;

/// One listener's TLS settings as they serve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListenerTls {
    pub file: String,
    pub enabled: Vec<String>,
    /// The OpenSSL security level ward forces (0 while TLSv1 or TLSv1.1 is served).
    pub security_level: Option<u32>,
}

/// One listener: where it listens, and its TLS (`null` for clients-http).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListenerStatus {
    pub address: String,
    pub tls: Option<ListenerTls>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Listeners {
    pub console: ListenerStatus,
    pub clients: ListenerStatus,
    #[serde(rename = "clients-http")]
    pub clients_http: ListenerStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reloads {
    pub ok: u64,
    pub failed: u64,
}

/// `GET /server`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServerStatus {
    pub version: String,
    /// Unix seconds.
    pub started: u64,
    pub uptime_seconds: u64,
    pub data_dir: String,
    pub listeners: Listeners,
    pub reloads: Reloads,
}

/// `GET /servers`: the ward servers on this server's database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Servers {
    pub servers: Vec<SiteServer>,
}

/// One server on the database, as its heartbeat says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SiteServer {
    /// Its host name and console port.
    pub name: String,
    /// The one answering this request.
    pub this: bool,
    /// Its last heartbeat is recent (within three heartbeat periods).
    pub alive: bool,
    pub version: String,
    /// RFC 3339, UTC.
    pub started: String,
    /// RFC 3339, UTC.
    pub last_heartbeat: String,
    pub listeners: Vec<SiteListener>,
}

/// A listener of a server on the database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SiteListener {
    /// `console`, `clients` or `clients-http`.
    pub role: String,
    pub address: String,
    /// The TLS versions it accepts (`TLSv1.2-TLSv1.3`), or `plain HTTP`.
    pub tls: String,
}

/// What a guarded change may say (`POST /server/reload`, the switches and aborts); an empty
/// body says neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardedRequest {
    /// Go on even when agents would lose their last path (audited, with whom).
    #[serde(default)]
    pub accept_cut_off: bool,
    /// Plan the change and keep everything as it is.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /server/certificates/renew`: a renewal has no dry run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    #[serde(default)]
    pub accept_cut_off: bool,
}

/// A configtest or reload finding: `note`, `warning` or `error`, with file:line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    pub severity: String,
    pub message: String,
}

/// A certificate written by a renewal, and its days left.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Renewed {
    pub file: String,
    pub days_left: i64,
}

/// `POST /server/reload` (and a renewal's reload): whether the new settings serve, the
/// findings, and the plan that guarded it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReloadAnswer {
    pub reloaded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    pub findings: Vec<Finding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<GuardPlan>,
    /// `POST /server/certificates/renew` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed: Option<Vec<Renewed>>,
}

/// One CA of the data dir.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CaDescription {
    pub file: String,
    pub fingerprint: Option<String>,
    pub subject: Option<String>,
    pub not_after: String,
    pub days_left: Option<i64>,
}

/// An agent that has not acknowledged a rotation, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Unacknowledged {
    pub id: String,
    pub group: Option<String>,
    pub last_checkin: Option<String>,
    pub channel: Option<String>,
    pub why: String,
}

/// Who has acknowledged a rotation under way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Acknowledgement {
    pub agents: usize,
    pub acknowledged: usize,
    pub waiting: usize,
    pub simulated_ignored: usize,
    /// The first 1000 of them, by id.
    pub not_acknowledged: Vec<Unacknowledged>,
}

/// `GET /server/ca`, and what the CA steps answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CaStatus {
    pub current: Option<CaDescription>,
    pub next: Option<CaDescription>,
    pub previous: Option<CaDescription>,
    pub under_way: bool,
    /// The agents' settings carry the CAs of `certs/agent-trust.pem`.
    pub agents_told: bool,
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub acknowledgement: Option<Acknowledgement>,
    /// `rotate` and `abort`: how many agents got a new serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents_bumped: Option<u64>,
    /// `rotate`: the rotation under way was handed out again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resent: Option<bool>,
    /// `abort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<bool>,
    /// `abort` with `dry_run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<usize>,
}

/// `GET /server/agreement-key`, and what the key steps answer (keys by SHA-256).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyStatus {
    pub current: String,
    pub next: Option<String>,
    pub under_way: bool,
    /// An aborted rotation's next key, accepted until no agent signs under it.
    pub withdrawn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_under_withdrawn: Option<usize>,
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub acknowledgement: Option<Acknowledgement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents_bumped: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resent: Option<bool>,
    /// `abort`: the key is removed (`false`: withdrawn, still accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<GuardPlan>,
}

/// A switch (or a key abort's dry run): the plan, and the status after.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SwitchAnswer {
    pub switched: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    pub plan: GuardPlan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyStatus>,
    /// A key abort's dry run: whether it would remove the key (else withdraw it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removes_key: Option<bool>,
}

/// The versions each listener serves, by listener name.
pub type Ranges = BTreeMap<String, String>;
