//! The TLS channel: readiness, the kept ClientHellos, the exact plan of a proposed change,
//! the hardening steps and rollback; and the plan every guarded change answers with.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::schema;
use crate::server::{Finding, Ranges};

// ---- what plans say of an agent ----------------------------------------------------------

/// A handshake refused from an agent's address after its last check-in (readiness).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RefusedHandshake {
    pub at: String,
    pub listener: String,
    pub peer: String,
    pub offered_max: Option<String>,
    pub offered_versions: Vec<String>,
    pub reason: String,
}

/// One agent in a plan, a guard's refusal or readiness: what ward knows of its TLS, and
/// (where it is listed for a reason) why.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentLine {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The highest TLS version it can speak, as far as ward knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// `observed`, `reported` or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_serial: Option<i64>,
    /// What the verdict rests on: `replayed` (its real ClientHello), `reported`, `observed`
    /// or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// An agent at risk: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    /// A guard's line: `cut_off` or `at_risk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Readiness: how long it has been silent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent_for: Option<String>,
    /// Readiness: a handshake refused from its address since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<RefusedHandshake>,
}

/// Why an agent may lose contact although ward cannot say it would be cut off.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Nobody knows which versions it speaks.
    CapabilityUnknown,
    /// Silent for longer than the offline threshold: it would not be moved in time.
    Offline,
    /// Moved, and has not yet acknowledged its new settings.
    Pending,
    /// Went back to the last settings that worked: its group's settings cut it off.
    Reverted,
}

impl Risk {
    /// Harden brings a pending agent along by waiting for it; an offline agent, or one whose
    /// capability is unknown, it cannot.
    pub fn harden_can_help(self) -> bool {
        self == Risk::Pending
    }
}

/// The agents by verdict.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Counts {
    pub cut_off: u64,
    pub at_risk: u64,
    /// Agents at risk, by risk (a risk nobody runs is left out).
    pub at_risk_by_reason: BTreeMap<Risk, u64>,
    pub unaffected: u64,
    pub unaffected_over_https: u64,
    pub unaffected_over_http: u64,
    pub simulated_ignored: u64,
}

/// Another peer seen on a planned listener (the last day), judged by its replayed hello.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PeerLine {
    pub listener: String,
    pub address: String,
    pub fingerprint: String,
    pub ja4: Option<String>,
    pub last_seen: String,
    /// `unaffected`, `cut_off` or `unknown`.
    pub verdict: String,
    pub reason: String,
}

/// The plan a guarded change answers with (reload, renewal, switches, rollback, a key
/// abort): the agents that would lose their last working path, and why.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GuardPlan {
    /// The plan could not be made (the new settings do not build): why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_failed: Option<String>,
    #[serde(default)]
    pub lost: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untrusting: Option<usize>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub cut_off: Vec<AgentLine>,
    /// Hosts whose proposed certificate agents would not trust, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untrusted_certificate: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PeerLine>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers_cut_off: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated_ignored: Option<usize>,
}

impl Counts {
    /// How many agents run `risk`.
    pub fn at_risk_for(&self, risk: Risk) -> u64 {
        self.at_risk_by_reason.get(&risk).copied().unwrap_or(0)
    }
}

impl GuardPlan {
    /// The ids it names as cut off (what an accepted cut-off audits).
    pub fn cut_off_ids(&self) -> Vec<String> {
        self.cut_off.iter().map(|line| line.id.clone()).collect()
    }
}

// ---- the proposed change -------------------------------------------------------------------

/// `clients`, `console` or `all`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListenerChoice {
    Clients,
    Console,
    #[default]
    All,
}

impl ListenerChoice {
    pub fn name(self) -> &'static str {
        match self {
            ListenerChoice::Clients => "clients",
            ListenerChoice::Console => "console",
            ListenerChoice::All => "all",
        }
    }
}

/// A proposed TLS change: `SSLProtocol`, cipher lists, a certificate pair, a preset, or a
/// whole conf file. At least one; a conf file goes alone; a preset does not go with the
/// protocol and suites it names; `certificate` and `key` go together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TlsChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::ssl_protocol_or_null")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::cipher_list_or_null")]
    pub cipher_suite: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::tls13_suites_or_null")]
    pub cipher_suite_tls13: Option<String>,
    /// A certificate file (PEM, the leaf first) for the listener(s), with `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::certificate_file_or_null")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::key_file_or_null")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preset_or_null")]
    pub preset: Option<String>,
    /// A whole proposed conf file's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::ssl_conf_or_null")]
    pub conf: Option<String>,
    /// The name the conf file's findings carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf_name: Option<String>,
    /// Which listener's file the change is for (default `all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerChoice>,
}

/// A request body that carries a [`TlsChange`]'s fields beside its own (spelled out, not
/// flattened, so unknown fields are refused).
macro_rules! change_request {
    ($(#[$meta:meta])* $name:ident, $variants:ident, conf: $($conf:ident)?, { $($extra:tt)* }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[schemars(transform = $variants)]
        pub struct $name {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "schema::ssl_protocol_or_null")]
            pub protocol: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "schema::cipher_list_or_null")]
            pub cipher_suite: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "schema::tls13_suites_or_null")]
            pub cipher_suite_tls13: Option<String>,
            /// A certificate file (PEM, the leaf first) for the listener(s), with `key`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "schema::certificate_file_or_null")]
            pub certificate: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "schema::key_file_or_null")]
            pub key: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "schema::preset_or_null")]
            pub preset: Option<String>,
            $(
            /// A whole proposed conf file's text.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(schema_with = "schema::ssl_conf_or_null")]
            pub $conf: Option<String>,
            /// The name the conf file's findings carry.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub conf_name: Option<String>,
            )?
            /// Which listener's file the change is for (default `all`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub listener: Option<ListenerChoice>,
            /// An agent silent for more than this many check-in intervals would not be moved
            /// in time (default 3).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(range(min = 1, max = 1000))]
            pub offline_intervals: Option<u32>,
            $($extra)*
        }

        impl $name {
            /// A request for `change`'s directives and listener (never a whole conf file),
            /// everything else at its default: what a harden stages and applies after its
            /// plan.
            pub fn of_directives(change: &TlsChange, offline_intervals: Option<u32>) -> Self {
                Self {
                    protocol: change.protocol.clone(),
                    cipher_suite: change.cipher_suite.clone(),
                    cipher_suite_tls13: change.cipher_suite_tls13.clone(),
                    certificate: change.certificate.clone(),
                    key: change.key.clone(),
                    preset: change.preset.clone(),
                    listener: change.listener,
                    offline_intervals,
                    ..Self::default()
                }
            }

            /// The change it proposes.
            pub fn change(&self) -> TlsChange {
                #[allow(unused_mut)]
                let mut change = TlsChange {
                    protocol: self.protocol.clone(),
                    cipher_suite: self.cipher_suite.clone(),
                    cipher_suite_tls13: self.cipher_suite_tls13.clone(),
                    certificate: self.certificate.clone(),
                    key: self.key.clone(),
                    preset: self.preset.clone(),
                    conf: None,
                    conf_name: None,
                    listener: self.listener,
                };
                $(
                change.$conf = self.$conf.clone();
                change.conf_name = self.conf_name.clone();
                )?
                change
            }
        }
    };
}

change_request!(
    /// `POST /tls/plan`.
    PlanRequest, change_variants, conf: conf, {
        /// Agents listed per category (default 1000).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(max = 10_000_000))]
        pub limit: Option<u64>,
    }
);

change_request!(
    /// `POST /tls/harden/stage`.
    StageRequest, change_variants, conf: conf, {
        /// Move every agent that would be cut off into this one group (made under its parent
        /// when missing) instead of a legacy subgroup under each agent's group.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "schema::path_or_null")]
        pub legacy_group: Option<String>,
        /// The name of each legacy subgroup (default `Legacy TLS`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "schema::name_or_null")]
        pub legacy_name: Option<String>,
    }
);

change_request!(
    /// `POST /tls/harden/apply`: the conf files edited (no whole conf file: an admin puts one
    /// in place and reloads, which the same plan guards).
    ApplyRequest, directive_variants, conf:, {
        /// Apply even though agents would be cut off (audited, with whom).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub accept_cut_off: Option<bool>,
        /// Apply even though agents are at risk (unknown capability, offline, pending).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub accept_risk: Option<bool>,
        /// Check only, change nothing: both listeners' files load, each file takes the edit,
        /// and the plan lets the change through (the same refusals as an apply). `changed`
        /// then names the files an apply would edit (no backup yet). A site's harden asks
        /// every server this before it applies on any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub dry_run: Option<bool>,
    }
);

/// A string or null: the schema of a field a variant leaves unset.
fn unset() -> Value {
    json!({"type": "null"})
}

/// A field a variant sets: a string of the field's own format (so that a generator drawing
/// from the variant draws what the field takes).
fn set(format: &str) -> Value {
    json!({"type": "string", "format": format})
}

/// The ways a change may be made, as JSON Schema `anyOf` beside the body's own properties:
/// directives (some of protocol, suites, a certificate pair; no preset, no conf), a preset
/// (with a certificate pair or not; no protocol or suites, no conf), or a conf file alone.
fn variants(with_conf: bool) -> Value {
    let mut preset = schema::preset_or_null(&mut schemars::SchemaGenerator::default()).to_value();
    preset["type"] = json!("string");
    if let Some(names) = preset["enum"].as_array_mut() {
        names.retain(|name| !name.is_null());
    }
    let pair = json!({
        "oneOf": [
            {"properties": {"certificate": set("pem-certificate-file"), "key": set("pem-key-file")}, "required": ["certificate", "key"]},
            {"properties": {"certificate": unset(), "key": unset()}},
        ]
    });
    let some_directive = json!({
        "anyOf": [
            {"properties": {"protocol": set("ssl-protocol")}, "required": ["protocol"]},
            {"properties": {"cipher_suite": set("openssl-cipher-list")}, "required": ["cipher_suite"]},
            {"properties": {"cipher_suite_tls13": set("openssl-tls13-suites")}, "required": ["cipher_suite_tls13"]},
            {"properties": {"certificate": set("pem-certificate-file")}, "required": ["certificate"]},
        ]
    });
    let no_conf = json!({"properties": {"conf": unset()}});
    let mut ways = vec![
        json!({"allOf": [
            {"properties": {"preset": unset()}},
            no_conf.clone(),
            pair.clone(),
            some_directive,
        ]}),
        json!({"allOf": [
            {"properties": {
                "preset": preset,
                "protocol": unset(),
                "cipher_suite": unset(),
                "cipher_suite_tls13": unset(),
            }, "required": ["preset"]},
            no_conf,
            pair,
        ]}),
    ];
    if with_conf {
        ways.push(json!({
            "properties": {
                "conf": set("apache-ssl-conf"),
                "protocol": unset(),
                "cipher_suite": unset(),
                "cipher_suite_tls13": unset(),
                "certificate": unset(),
                "key": unset(),
                "preset": unset(),
            },
            "required": ["conf"],
        }));
    }
    Value::Array(ways)
}

fn change_variants(schema: &mut Schema) {
    schema.insert("anyOf".into(), variants(true));
}

fn directive_variants(schema: &mut Schema) {
    schema.insert("anyOf".into(), variants(false));
}

// ---- plan ----------------------------------------------------------------------------------

/// A listener as a plan sees it: the versions it serves now and would serve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListenerPlan {
    pub file: String,
    pub current: Vec<String>,
    pub planned: Vec<String>,
    pub changes: bool,
    pub serves_agents: bool,
}

/// The agents' part of a plan: counts, and the listed agents with their reasons.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Impact {
    pub agents: usize,
    pub counts: Counts,
    pub cut_off: Vec<AgentLine>,
    pub at_risk: Vec<AgentLine>,
    pub untrusted_certificate: BTreeMap<String, String>,
    /// Nobody cut off, nobody at risk.
    pub ok: bool,
}

/// `POST /tls/plan`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    #[serde(flatten)]
    pub impact: Impact,
    /// The SSLProtocol words it sets (empty when none).
    pub protocol: String,
    /// The change in an admin's words.
    pub change: String,
    pub listener: String,
    /// Apache's warnings for the protocol line.
    pub warnings: Vec<String>,
    pub listeners: BTreeMap<String, ListenerPlan>,
    pub offline_intervals: u32,
    pub peers: Vec<PeerLine>,
}

// ---- readiness and hellos ------------------------------------------------------------------

/// `GET /tls/readiness`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadinessQuery {
    /// Agents listed per bucket (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10_000_000))]
    pub limit: Option<u64>,
    /// An agent silent for more than this many intervals is lost (default 3; 1 to 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub offline_intervals: Option<u32>,
    /// Unix milliseconds: also list the agents heard from before it and not since (before
    /// the year 2100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 4_102_444_800_000i64))]
    pub silent_since: Option<u64>,
}

/// Agents of one highest version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Bucket {
    pub count: usize,
    pub agents: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PostQuantum {
    pub agents: u64,
    pub over_https: u64,
    pub share: f64,
}

/// A TLS stack of the fleet (the fingerprint of its ClientHello).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Stack {
    pub fingerprint: Option<String>,
    pub agents: usize,
    pub ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_versions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite_classes: Option<BTreeMap<String, usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_quantum: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The fleet by TLS capability, per listener and group, and the agents that stopped checking
/// in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Readiness {
    pub agents: usize,
    /// Agents by what ward knows of them: `observed`, `reported`, `unknown`.
    pub knowledge: BTreeMap<String, u64>,
    /// Per listener (`clients`, `clients-http`, `never_checked_in`), per highest version.
    pub listeners: BTreeMap<String, BTreeMap<String, Bucket>>,
    /// Per group path, per highest version: how many.
    pub groups: BTreeMap<String, BTreeMap<String, u64>>,
    pub offline_intervals: u32,
    pub lost_count: u64,
    pub lost: Vec<AgentLine>,
    pub post_quantum: PostQuantum,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silent_since: Option<Vec<AgentLine>>,
    pub stacks: Vec<Stack>,
    /// Agents that went back to the last settings that worked (their group's settings cut
    /// them off), each with what failed; absent when none did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reverted: Vec<AgentLine>,
    /// Addresses a connection cap refused in the last day, and the agents last seen from
    /// each; absent when none was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<String>,
}

/// A peer whose last ClientHello this is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HelloPeer {
    pub listener: String,
    pub peer: String,
}

/// A kept ClientHello.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HelloLine {
    pub digest: String,
    pub count: u64,
    pub last_seen: String,
    pub bytes: usize,
    pub offered_versions: Option<Vec<String>>,
    pub cipher_suites: Option<usize>,
    pub server_name: Option<String>,
    pub ja4: Option<String>,
    pub peers: Vec<HelloPeer>,
}

/// `GET /tls/hellos`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Hellos {
    pub hellos: Vec<HelloLine>,
    /// The most distinct hellos kept.
    pub bound: i64,
}

// ---- harden --------------------------------------------------------------------------------

/// The last step a harden finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    #[default]
    Staged,
    Applied,
    RolledBack,
}

/// An agent staging moved, and from and to which group (ids).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Moved {
    pub agent: String,
    pub from: i64,
    pub to: i64,
}

/// A conf file as it was, and where its copy is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Original {
    pub file: PathBuf,
    pub saved: PathBuf,
}

/// What `ward tls harden` did last, kept across restarts (`<data>/harden/state.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HardenState {
    /// The `SSLProtocol` words harden sets (empty when it sets none).
    pub protocol: String,
    #[serde(default)]
    pub cipher_suite: Option<String>,
    #[serde(default)]
    pub cipher_suite_tls13: Option<String>,
    /// The certificate and key files it puts in place.
    #[serde(default)]
    pub certificate: Option<(String, String)>,
    /// `clients`, `console` or `all`.
    pub listener: String,
    pub legacy_group: Option<String>,
    pub legacy_name: String,
    pub step: Step,
    pub started_ms: i64,
    pub updated_ms: i64,
    pub applied_ms: Option<i64>,
    pub moved: Vec<Moved>,
    /// The conf files as they were before the last harden that changed them.
    pub originals: Vec<Original>,
    /// Copies taken by an apply that has not finished (the way back after a crash).
    #[serde(default)]
    pub applying: Vec<Original>,
}

/// `GET /tls/harden`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HardenStatus {
    pub state: Option<HardenState>,
    pub acknowledged: Vec<String>,
    pub unacknowledged: Vec<String>,
}

/// A move staging made, by group path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StagedMove {
    pub agent: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// `POST /tls/harden/stage`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Staged {
    pub steps: Vec<String>,
    pub moved: Vec<StagedMove>,
    pub state: HardenState,
}

/// A conf file apply changed, and its backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangedFile {
    pub file: String,
    pub backup: String,
}

/// `POST /tls/harden/apply`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Applied {
    /// A check only (`dry_run`): nothing was changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    pub changed: Vec<ChangedFile>,
    /// The versions each listener serves after.
    pub ranges: Ranges,
    pub findings: Vec<Finding>,
    pub state: HardenState,
}

/// `POST /tls/rollback`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// Also move the agents harden moved back where they were (those still where it put them).
    #[serde(default)]
    pub move_back: bool,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub accept_cut_off: bool,
}

/// `POST /tls/rollback`: done, or (dry run) what it would do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RolledBack {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<GuardPlan>,
    /// Dry run: the files it would put back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores: Option<Vec<Original>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moves_back: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<HardenState>,
}

/// `GET /tls/verify`: this server's HTTPS listeners scanned from the server itself, each
/// version offered in turn: what each accepts against what its file enables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verified {
    pub listeners: Vec<VerifiedListener>,
}

/// One listener as `GET /tls/verify` scanned it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VerifiedListener {
    /// `console` or `clients`.
    pub listener: String,
    /// Where it was reached.
    pub address: String,
    /// The versions a handshake succeeded with, oldest first.
    pub accepted: Vec<String>,
    /// The versions its file enables, oldest first.
    pub enabled: Vec<String>,
    /// Whether the two are the same.
    pub ok: bool,
}

/// `POST /tls/harden/cleanup`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanupRequest {
    /// Conf file backups kept per file (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub keep_backups: Option<u64>,
    #[serde(default)]
    pub dry_run: bool,
}

/// What cleanup removed (or would).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CleanedUp {
    pub dry_run: bool,
    pub steps: Vec<String>,
}
