//! The fleet: groups, server lists, agents, enrollment tokens, accounts and sessions, the
//! audit log. Requests refuse unknown fields; `null` in a request means "as it is".

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::schema;

// ---- groups ------------------------------------------------------------------------------

/// `POST /groups`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    #[schemars(schema_with = "schema::name")]
    pub name: String,
    /// The parent's path (default: the root group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::path_or_null")]
    pub parent: Option<String>,
}

/// `pull` or `push`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Pull,
    Push,
}

/// A setting a group may stop setting itself (and inherit again).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    ServerList,
    Interval,
    Randomize,
    Mode,
    Policy,
}

/// `PATCH /groups/{id}`: the settings to set, and those to inherit again.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::name_or_null")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::name_or_null")]
    pub server_list: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::interval_or_null")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::randomize_or_null")]
    pub randomize: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::policy_or_null")]
    pub policy: Option<Map<String, Value>>,
    /// Settings to inherit from the parent again (not on the root group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit: Option<Vec<Setting>>,
    /// Change it even though agents would lose their last path (audited); otherwise 409
    /// `would_cut_off`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_cut_off: bool,
}

/// `POST /groups/{id}/move`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveGroup {
    /// The new parent's path.
    #[schemars(schema_with = "schema::path")]
    pub parent: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_cut_off: bool,
}

/// `POST /groups/{id}/export`: how far the package's token reaches.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// How many agents the package may bring back (default 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub uses: Option<i64>,
    /// How long it works (default `24h`, at most `30d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::package_lifetime_or_null")]
    pub expires: Option<String>,
}

/// A group's own settings (what it sets itself; `null`: inherited).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OwnSettings {
    pub server_list: Option<String>,
    pub interval: Option<String>,
    pub randomize: Option<String>,
    pub mode: Option<Mode>,
    #[schemars(schema_with = "schema::any")]
    pub policy: Option<Value>,
}

/// Which group each effective setting comes from (its path).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InheritedFrom {
    pub server_list: Option<String>,
    pub interval: Option<String>,
    pub randomize: Option<String>,
    pub mode: Option<String>,
    pub policy: Option<String>,
}

/// A group's settings after inheritance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EffectiveSettings {
    pub server_list: String,
    pub interval: String,
    pub randomize: String,
    pub mode: Mode,
    #[schemars(schema_with = "schema::any")]
    pub policy: Value,
    pub inherited_from: InheritedFrom,
}

/// A group, with its own and (when asked) effective settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Group {
    pub id: i64,
    pub path: Option<String>,
    pub name: String,
    /// The parent's path; `null` for the root.
    pub parent: Option<String>,
    pub own: OwnSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<EffectiveSettings>,
}

/// What a deletion removed: its name or path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Deleted {
    pub deleted: String,
}

/// `POST /groups/{id}/export`: the settings package (`ward agent import-settings` reads it),
/// and the id of the token minted for it (not part of the package: the CLI takes it out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExportedSettings {
    #[serde(flatten)]
    #[schemars(with = "Map<String, Value>")]
    pub package: ward_proto::messages::SettingsPackage,
    pub token_id: Option<i64>,
}

// ---- server lists --------------------------------------------------------------------------

/// `POST /serverlists`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServerList {
    #[schemars(schema_with = "schema::name")]
    pub name: String,
    /// Entries such as `1:https://mgr1:443`.
    #[schemars(schema_with = "schema::server_entries")]
    pub servers: Vec<String>,
}

/// `PUT /serverlists/{name}`: the list's servers, all of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerListEdit {
    /// Entries such as `1:https://mgr1:443`.
    #[schemars(schema_with = "schema::server_entries")]
    pub servers: Vec<String>,
    /// Change it even though agents would lose their last path (audited); otherwise 409
    /// `would_cut_off`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_cut_off: bool,
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Https,
}

/// `POST /serverlists/{name}/copy`: a copy with every server on one protocol and port (the
/// seed's HTTP 8014 list).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyList {
    #[schemars(schema_with = "schema::name")]
    pub name: String,
    /// `http` unless said (the seed's copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// 8014 for `http`, 443 for `https` unless said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
}

/// One server of a list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServerEntry {
    pub priority: usize,
    pub url: String,
    pub address: String,
    pub protocol: Protocol,
    pub port: u16,
    pub verify_certificate: bool,
}

/// A server list and the groups that use it (their paths).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServerList {
    pub name: String,
    pub servers: Vec<ServerEntry>,
    pub used_by: Vec<String>,
}

// ---- agents --------------------------------------------------------------------------------

/// `GET /agents`: the filters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentsQuery {
    /// Agents of this group and the groups under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::path_or_null")]
    pub group: Option<String>,
    /// Only agents that have not acknowledged their settings yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<bool>,
    /// Only agents online (`true`) or offline (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    /// Only agents whose highest TLS version is at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_max: Option<TlsVersionName>,
    /// Only agents silent for at least this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::lookback")]
    pub silent_for: Option<String>,
    /// Only agents whose id or host name contains this (ASCII case ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::search_or_null")]
    pub search: Option<String>,
    /// Only agents whose last ClientHello has this fingerprint (an agent's `hello`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::fingerprint_or_null")]
    pub stack: Option<String>,
    /// The order (default `id`); ties by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<AgentSort>,
    /// Every key of the order reversed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descending: Option<bool>,
    /// Agents skipped, in the order, before the first listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10_000_000))]
    pub offset: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub limit: Option<usize>,
}

/// What agents are listed by; a missing value (never checked in) comes first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentSort {
    #[default]
    Id,
    /// The host name, ASCII case ignored.
    Hostname,
    /// The group's path.
    Group,
    /// Offline first.
    Online,
    Channel,
    /// The TLS version negotiated at the last check-in.
    TlsVersion,
    /// The highest TLS version the agent speaks.
    Highest,
    /// The last check-in.
    LastSeen,
    /// Acknowledged first.
    Pending,
}

/// One page of agents and how many the query keeps in all (what the console lists).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentsPage {
    pub total: u64,
    pub agents: Vec<Agent>,
}

/// The fleet in figures (what the console's dashboard shows): counted where the agents are
/// stored, in one scan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FleetSummary {
    pub agents: u64,
    pub online: u64,
    /// Agents that have not acknowledged their settings yet.
    pub pending: u64,
    /// Agents that went back from their current settings (they cut them off).
    pub reverted: u64,
    /// Agents whose last check-in came over HTTPS, and of those, with a post-quantum key
    /// exchange.
    pub over_https: u64,
    pub post_quantum: u64,
    /// Agents per channel of their last check-in and the TLS version it negotiated.
    pub by_version: Vec<VersionCount>,
}

/// Agents of one channel (`https`, `http`; none: never checked in) and negotiated version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VersionCount {
    pub channel: Option<String>,
    pub tls_version: Option<String>,
    pub agents: u64,
}

/// A TLS version as ward names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TlsVersionName {
    #[serde(rename = "TLSv1")]
    Tls1,
    #[serde(rename = "TLSv1.1")]
    Tls11,
    #[serde(rename = "TLSv1.2")]
    Tls12,
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

impl TlsVersionName {
    pub fn name(self) -> &'static str {
        match self {
            TlsVersionName::Tls1 => "TLSv1",
            TlsVersionName::Tls11 => "TLSv1.1",
            TlsVersionName::Tls12 => "TLSv1.2",
            TlsVersionName::Tls13 => "TLSv1.3",
        }
    }
}

/// The operating system an agent reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Os {
    pub name: String,
    pub version: String,
}

/// What an agent's group gives it (`GET /agents/{id}` only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentSettings {
    pub server_list: String,
    pub interval: String,
    pub mode: Mode,
}

/// An agent (the seed's client), with its presence by ward-fleet's one rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Agent {
    pub id: String,
    pub hostname: String,
    /// Its group's path.
    pub group: Option<String>,
    /// A held push check-in, or a pull check-in within interval + randomisation + grace.
    pub online: bool,
    /// Its push check-in is held right now.
    pub held: bool,
    /// Enrolled by `ward simulate`.
    pub simulated: bool,
    pub last_seen: Option<String>,
    pub last_checkin: Option<String>,
    /// `https` or `http`.
    pub channel: Option<String>,
    /// The server it checked in with last.
    pub server: Option<String>,
    pub tls_version: Option<String>,
    /// The key-exchange group of its last HTTPS check-in.
    pub tls_group: Option<String>,
    /// The fingerprint of its last ClientHello.
    pub hello: Option<String>,
    /// The TLS versions it says it can speak.
    pub tls_versions: Vec<String>,
    pub serial: i64,
    pub acked_serial: i64,
    pub pending: bool,
    pub os: Os,
    pub agent_version: String,
    pub enrolled: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<AgentSettings>,
    /// It went back to the last settings that worked because its current serial cut it off
    /// (the server no longer hands that serial; a new change gives a new one). Absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted: Option<AgentReverted>,
    /// The fingerprint of the ClientHello its stack reports of itself, when it differs
    /// from the one seen over TLS (`hello`), or none was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_hello: Option<String>,
    /// The IP address its last check-in came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// An agent's revert: the serial it left, why (per server it tried), and when it said so.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentReverted {
    pub serial: i64,
    pub reason: String,
    pub at: String,
}

/// `POST /agents/move`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveAgents {
    #[schemars(length(min = 1))]
    pub ids: Vec<String>,
    /// The group's path.
    #[schemars(schema_with = "schema::path")]
    pub group: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_cut_off: bool,
}

/// What `POST /agents/move` did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MovedAgents {
    pub moved: Vec<String>,
    pub group: Option<String>,
    /// The serial the moved agents now have.
    pub serial: Option<i64>,
}

/// `POST /agents/delete`: retire agents (refused from then on).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAgents {
    #[schemars(length(min = 1))]
    pub ids: Vec<String>,
}

/// What `POST /agents/delete` retired.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeletedAgents {
    pub deleted: Vec<String>,
}

// ---- tokens --------------------------------------------------------------------------------

/// `POST /tokens`: an enrollment token for a group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// The group's path.
    #[schemars(schema_with = "schema::path")]
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::token_lifetime_or_null")]
    pub expires: Option<String>,
    /// How many enrollments it allows (default 1000; 0: any number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1_000_000_000))]
    pub uses: Option<i64>,
    /// It may enroll over plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_http: Option<bool>,
    /// Enroll even an agent whose own ClientHello shows that no server of its group's list
    /// would take it (it then goes back to the server it enrolled through, shown as
    /// reverted); refused with the reason otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_cut_off: Option<bool>,
}

/// An enrollment token (its secret only in the answer that made it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Token {
    pub id: i64,
    pub group: Option<String>,
    pub created: String,
    pub expires: Option<String>,
    pub uses_left: Option<i64>,
    pub revoked: bool,
    pub allow_http: bool,
    /// Its enrollments go through even when the agent's stack cannot use its group's list.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_cut_off: bool,
    /// The token itself: shown once, when it is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// What an admin should know before handing it out (shown once, when it is made).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `POST /tokens/{id}/revoke`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RevokedToken {
    pub revoked: i64,
}

// ---- accounts and sessions -----------------------------------------------------------------

/// `admin` or `auditor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Auditor,
}

/// `POST /accounts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    #[schemars(schema_with = "schema::account_name")]
    pub name: String,
    #[schemars(schema_with = "schema::password")]
    pub password: String,
    pub role: Role,
}

/// `POST /accounts/{name}/password`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    #[schemars(schema_with = "schema::password")]
    pub password: String,
}

/// An account as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AccountInfo {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
}

/// What `POST /accounts` made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreatedAccount {
    pub name: String,
    pub role: Role,
}

/// What a change of an account did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AccountChanged {
    pub account: String,
    pub sessions_ended: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// `POST /login`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schemars(length(max = 64))]
    pub user: String,
    pub password: String,
}

/// A login session: its bearer token (shown once) and when it ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoginAnswer {
    pub token: String,
    pub user: String,
    pub role: Role,
    pub expires: String,
}

/// `DELETE /session`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LoggedOut {
    pub logged_out: String,
}

// ---- audit ---------------------------------------------------------------------------------

/// `GET /audit`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// How far back (everything when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::lookback")]
    pub since: Option<String>,
    /// At most this many entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000_000))]
    pub limit: Option<usize>,
}

/// One audited change: who, what, on what, and the state before and after (free-form JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    #[schemars(schema_with = "schema::any")]
    pub before: Option<Value>,
    #[schemars(schema_with = "schema::any")]
    pub after: Option<Value>,
}
