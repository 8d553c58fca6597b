//! The hardening engine: TLS readiness of the fleet, plans for a proposed `SSLProtocol`, and
//! the steps of `ward tls harden` that change the server (stage, apply, rollback), under
//! `/api/v1/tls/` on the console.
//!
//! - [`model`]: the decisions, pure and table-tested;
//! - `readiness`, `plan`: the read-only answers;
//! - `steps`: stage, apply and rollback, which write through `Store::apply` (audited, serials
//!   bumped) and edit the conf files with ward-tls's editor;
//! - this file: the proposal, the fleet as plans read it, the state of the last harden
//!   (`<data>/harden/state.json`, written atomically, so an interrupted harden can be resumed
//!   or rolled back from any admin client), and the routes.

/// The pure model harden judges with; it lives in [`ward_plan::reach`], where every plan
/// (the admin API's moves, reload, rollback) asks the same question.
pub use ward_plan::reach as model;
mod plan;
mod readiness;
mod steps;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use ward_fleet::serverlist::{self, Protocol};
use ward_fleet::{Group, GroupId, OwnSettings, ServerList};
use ward_store::{Change, Mutation, Store};
use ward_tls::edit::{self, EditOutcome};
use ward_tls::protocol::ProtocolDecision;

use crate::api::{
    blocking, json_response, object, only_keys, query_pairs, string, ApiError, ApiResult,
    HttpResponse,
};
use crate::auth::Caller;
use crate::config::Role;
use crate::impact::{agent_json, facts, fill_hostnames, held, Fleet};
use crate::ops::{audit, create_group, find_group, tree_of};
use crate::state::App;
use model::{Risk, Verdict};
use ward_plan::change::{CertificatePair, Change as TlsChange};
use ward_proto::now_ms;

/// Default: an agent silent for more than this many check-in intervals counts as offline.
pub use crate::impact::OFFLINE_INTERVALS;
/// The name of the legacy subgroup harden creates under each affected group.
pub const LEGACY_NAME: &str = "Legacy TLS";
/// Agents listed per category in a plan or readiness answer, unless the caller asks.
const DEFAULT_LIMIT: usize = 1000;

/// The last step a harden finished (`staged`, `applied`, `rolled_back` in the state file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    #[default]
    Staged,
    Applied,
    RolledBack,
}

/// What `ward tls harden` did last, kept across restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HardenState {
    /// The `SSLProtocol` words harden sets (empty when it sets none).
    pub protocol: String,
    /// The `SSLCipherSuite` list it sets, if any.
    #[serde(default)]
    pub cipher_suite: Option<String>,
    /// The `SSLCipherSuite TLSv1.3` list it sets, if any.
    #[serde(default)]
    pub cipher_suite_tls13: Option<String>,
    /// The certificate and key files it puts in place, if any.
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
    /// Agents moved by staging, and where from.
    pub moved: Vec<Moved>,
    /// The conf files as they were before the last harden that changed them.
    pub originals: Vec<Original>,
    /// Copies taken by an apply that has not finished: written before the first edit, so a
    /// crash mid-apply leaves the way back on record (rollback uses them, `--resume` keeps
    /// them as the originals).
    #[serde(default)]
    pub applying: Vec<Original>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub agent: String,
    pub from: GroupId,
    pub to: GroupId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    /// The conf file.
    pub file: PathBuf,
    /// A copy of its bytes before the harden, in the harden dir.
    pub saved: PathBuf,
}

fn state_path(root: &Path) -> PathBuf {
    root.join("harden").join("state.json")
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError::internal(message)
}

fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::conflict(code, message)
}

pub fn read_state(root: &Path) -> Result<Option<HardenState>, ApiError> {
    let path = state_path(root);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| internal(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(internal(format!("{}: {e}", path.display()))),
    }
}

fn write_state(root: &Path, state: &HardenState) -> Result<(), ApiError> {
    let path = state_path(root);
    let dir = path.parent().expect("state has a dir");
    std::fs::create_dir_all(dir).map_err(|e| internal(format!("{}: {e}", dir.display())))?;
    let mut text = serde_json::to_vec_pretty(state).map_err(|e| internal(e.to_string()))?;
    text.push(b'\n');
    ward_fs::write(&path, &text, 0o600).map_err(|e| internal(format!("{}: {e}", path.display())))
}

/// A proposed TLS change for one or both HTTPS listeners: `SSLProtocol`, cipher lists, a
/// certificate, a preset or a whole conf file ([`ward_plan::change::Change`]).
#[derive(Clone, Debug)]
pub struct Proposal {
    pub change: TlsChange,
    /// The `SSLProtocol` words it sets (normalised), when it sets one: what harden edits.
    pub words: String,
    /// The protocol decision of those words, when it sets one.
    pub decision: Option<ProtocolDecision>,
    /// The listeners it is for: `Console`, `Clients` or both.
    pub roles: Vec<Role>,
    pub listener: String,
}

/// The keys of a request body that make a [`Proposal`].
const PROPOSAL_KEYS: &[&str] = &[
    "protocol",
    "cipher_suite",
    "cipher_suite_tls13",
    "certificate",
    "key",
    "preset",
    "conf",
    "conf_name",
    "listener",
];

fn roles_of(listener: &str) -> Result<Vec<Role>, ApiError> {
    Ok(match listener {
        "all" => vec![Role::Console, Role::Clients],
        "clients" => vec![Role::Clients],
        "console" => vec![Role::Console],
        other => {
            return Err(ApiError::bad_request(format!(
                "listener: '{other}' is not clients, console or all"
            )))
        }
    })
}

impl Proposal {
    /// An `SSLProtocol` change alone (harden's own, and `--resume`'s).
    pub fn parse(words: &str, listener: &str) -> Result<Proposal, ApiError> {
        Proposal::of(
            TlsChange {
                protocol: Some(words.to_string()),
                ..TlsChange::default()
            },
            listener,
        )
    }

    pub fn of(change: TlsChange, listener: &str) -> Result<Proposal, ApiError> {
        let roles = roles_of(listener)?;
        let directives = change
            .directives()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let words = directives
            .iter()
            .find(|(name, _)| *name == "SSLProtocol")
            .map(|(_, words)| words.clone())
            .unwrap_or_default();
        let decision = if words.is_empty() {
            None
        } else {
            Some(
                ward_tls::parse_ssl_protocol(&ward_tls::protocol::split_words(&words))
                    .map_err(|e| ApiError::bad_request(format!("protocol '{words}': {e}")))?,
            )
        };
        Ok(Proposal {
            change,
            words,
            decision,
            roles,
            listener: listener.to_string(),
        })
    }

    /// From a request body: `protocol`, `cipher_suite`, `cipher_suite_tls13`, `certificate`
    /// and `key`, `preset`, or `conf` (a whole file's text, with `conf_name`), and `listener`.
    fn from_body(body: &Map<String, Value>) -> Result<Proposal, ApiError> {
        let certificate =
            match (string(body, "certificate")?, string(body, "key")?) {
                (Some(certificate), Some(key)) => Some(CertificatePair { certificate, key }),
                (None, None) => None,
                _ => return Err(ApiError::bad_request(
                    "'certificate' and 'key' go together (the certificate file and its key file)",
                )),
            };
        let conf = match string(body, "conf")? {
            Some(text) => Some((
                string(body, "conf_name")?.unwrap_or_else(|| "(proposed conf)".into()),
                text,
            )),
            None => None,
        };
        let change = TlsChange {
            protocol: string(body, "protocol")?,
            cipher_suite: string(body, "cipher_suite")?,
            cipher_suite_tls13: string(body, "cipher_suite_tls13")?,
            certificate,
            preset: string(body, "preset")?,
            conf,
        };
        let listener = string(body, "listener")?.unwrap_or_else(|| "all".into());
        Proposal::of(change, &listener)
    }

    /// Each listener it touches, with the policy it would run there: the running policy with
    /// the change made (a whole conf file replaces it).
    fn planned(&self, shared: &App) -> Result<Vec<(Role, ward_tls::TlsPolicy)>, ApiError> {
        self.roles
            .iter()
            .map(|role| {
                let current = shared.tls.current(*role);
                self.change
                    .apply(&current.policy)
                    .map(|policy| (*role, policy))
                    .map_err(|e| ApiError::bad_request(e.to_string()))
            })
            .collect()
    }

    /// What harden's apply writes into the conf files: each setting with its value (a preset
    /// expanded), and the certificate pair. A whole conf file is planned and guarded, but put
    /// in place by the admin and `ward server reload` (which the same plan guards).
    fn edits(&self) -> Result<Vec<edit::Edit>, ApiError> {
        if self.change.conf.is_some() {
            return Err(ApiError::bad_request(
                "harden edits SSLProtocol, SSLCipherSuite and the certificate; put a whole conf \
                 file in place yourself and run `ward server reload`, which the same plan guards",
            ));
        }
        let mut edits = Vec::new();
        for (name, value) in self
            .change
            .directives()
            .map_err(|e| ApiError::bad_request(e.to_string()))?
        {
            let setting = match name {
                "SSLProtocol" => edit::Setting::Protocol,
                "SSLCipherSuite" => edit::Setting::CipherSuite,
                "SSLCipherSuite TLSv1.3" => edit::Setting::CipherSuiteTls13,
                // The pair, once, below.
                "SSLCertificateFile" | "SSLCertificateKeyFile" => continue,
                other => return Err(internal(format!("no edit for {other}"))),
            };
            edits.push(edit::Edit::Setting(setting, value));
        }
        if let Some(pair) = &self.change.certificate {
            edits.push(edit::Edit::Certificate {
                certificate: pair.certificate.clone(),
                key: pair.key.clone(),
            });
        }
        Ok(edits)
    }

    /// The certificate and key files it puts in place: what the harden state records.
    fn certificate_pair(&self) -> Option<(String, String)> {
        self.change
            .certificate
            .as_ref()
            .map(|pair| (pair.certificate.clone(), pair.key.clone()))
    }

    /// The suites it sets (a preset expanded): what the harden state records.
    fn suites(&self) -> (Option<String>, Option<String>) {
        let directives = self.change.directives().unwrap_or_default();
        let find = |wanted: &str| {
            directives
                .iter()
                .find(|(name, _)| *name == wanted)
                .map(|(_, value)| value.clone())
        };
        (find("SSLCipherSuite"), find("SSLCipherSuite TLSv1.3"))
    }
}

fn offline_intervals(body: &Map<String, Value>) -> Result<u32, ApiError> {
    match body.get("offline_intervals") {
        None | Some(Value::Null) => Ok(OFFLINE_INTERVALS),
        Some(value) => value
            .as_u64()
            .filter(|n| (1..=1000).contains(n))
            .map(|n| n as u32)
            .ok_or_else(|| ApiError::bad_request("offline_intervals: a number from 1 to 1000")),
    }
}

fn limit(body: &Map<String, Value>) -> Result<usize, ApiError> {
    match body.get("limit") {
        None | Some(Value::Null) => Ok(DEFAULT_LIMIT),
        Some(value) => value
            .as_u64()
            .map(|n| n.min(10_000_000) as usize)
            .ok_or_else(|| ApiError::bad_request("limit: a number")),
    }
}

/// `GET /api/v1/tls/harden`: the last harden's state, and of the agents it moved, which have
/// acknowledged their new settings (`acknowledged`) and which have not (`unacknowledged`).
async fn harden_state(shared: &App) -> ApiResult {
    let state = read_state(shared.data.root())?;
    let store = shared.store.clone();
    let moved: Vec<String> = state
        .as_ref()
        .map(|s| s.moved.iter().map(|m| m.agent.clone()).collect())
        .unwrap_or_default();
    let (acknowledged, unacknowledged) = blocking(move || {
        let (mut yes, mut no) = (Vec::new(), Vec::new());
        for id in moved {
            match store.agent(&id)? {
                Some(agent) if agent.acked_serial >= agent.serial => yes.push(id),
                _ => no.push(id),
            }
        }
        Ok((yes, no))
    })
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"state": state, "acknowledged": acknowledged, "unacknowledged": unacknowledged}),
    ))
}

pub async fn route(
    shared: &App,
    caller: &Caller,
    method: &Method,
    segments: &[&str],
    query: &str,
    body: &Bytes,
) -> Option<ApiResult> {
    let result = match (segments, method) {
        (["tls", "readiness"], &Method::GET) => readiness::readiness(shared, query).await,
        (["tls", "hellos"], &Method::GET) => readiness::hellos(shared).await,
        (["tls", "plan"], &Method::POST) => plan::plan(shared, body).await,
        (["tls", "harden"], &Method::GET) => harden_state(shared).await,
        (["tls", "harden", "stage"], &Method::POST) => steps::stage(shared, caller, body).await,
        (["tls", "harden", "apply"], &Method::POST) => steps::apply(shared, caller, body).await,
        (["tls", "rollback"], &Method::POST) => steps::rollback(shared, caller, body).await,
        (["tls", "harden", "cleanup"], &Method::POST) => steps::cleanup(shared, caller, body).await,
        (["tls", ..], _) => Err(ApiError::client(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET /tls/readiness, GET /tls/hellos, POST /tls/plan, GET /tls/harden, POST /tls/harden/stage, POST \
             /tls/harden/apply, POST /tls/harden/cleanup, POST /tls/rollback",
        )),
        _ => return None,
    };
    Some(result)
}
