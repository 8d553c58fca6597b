//! The hardening engine: TLS readiness of the fleet, plans for a proposed `SSLProtocol`, and
//! the steps of `ward tls harden` that change the server (stage, apply, rollback, cleanup):
//! typed operations (ward-api's `tls` requests and answers), the admin API's `/tls/` routes
//! and the console call them.
//!
//! - [`model`]: the decisions, pure and table-tested;
//! - `readiness`, `plan`: the read-only answers;
//! - `verify`: the listeners scanned from the server itself;
//! - `steps`: stage, apply and rollback, which write through `Store::apply` (audited, serials
//!   bumped) and edit the conf files with ward-tls's editor;
//! - this file: the proposal, the fleet as plans read it, the state of the last harden
//!   (`<data>/harden/state.json`, written atomically, so an interrupted harden can be resumed
//!   or rolled back from any admin client).

/// The pure model harden judges with; it lives in [`ward_plan::reach`], where every plan
/// (the admin API's moves, reload, rollback) asks the same question.
pub use ward_plan::reach as model;
mod plan;
mod readiness;
mod steps;
mod verify;

pub use plan::plan;
pub use readiness::{hellos, readiness};
pub use steps::{apply, cleanup, rollback, stage};
pub use verify::verify;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::json;
use ward_api::tls::{HardenStatus, ListenerChoice, TlsChange as ChangeRequest};
use ward_fleet::serverlist::{self, Protocol};
use ward_fleet::{Group, GroupId, OwnSettings, ServerList};
use ward_store::{Change, Mutation, Store};
use ward_tls::edit::{self, EditOutcome};
use ward_tls::protocol::ProtocolDecision;

use crate::api::{blocking, ApiError};
use crate::auth::Caller;
use crate::config::Role;
use crate::impact::render::{agent_line, fill_hostnames};
use crate::impact::{facts, held, Fleet};
use crate::ops::{audit, create_group, referenced_group, tree_of};
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

/// What `ward tls harden` did last, kept across restarts (its shape is ward-api's, so the
/// admin API answers it as it is).
pub use ward_api::tls::{HardenState, Moved, Original, Step};

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

    /// From a request: `protocol`, `cipher_suite`, `cipher_suite_tls13`, `certificate` and
    /// `key`, `preset`, or `conf` (a whole file's text, with `conf_name`), and `listener`.
    pub fn from_request(request: ChangeRequest) -> Result<Proposal, ApiError> {
        let certificate =
            match (request.certificate, request.key) {
                (Some(certificate), Some(key)) => Some(CertificatePair { certificate, key }),
                (None, None) => None,
                _ => return Err(ApiError::bad_request(
                    "'certificate' and 'key' go together (the certificate file and its key file)",
                )),
            };
        let conf = request.conf.map(|text| {
            (
                request
                    .conf_name
                    .unwrap_or_else(|| "(proposed conf)".into()),
                text,
            )
        });
        let change = TlsChange {
            protocol: request.protocol,
            cipher_suite: request.cipher_suite,
            cipher_suite_tls13: request.cipher_suite_tls13,
            certificate,
            preset: request.preset,
            conf,
        };
        let listener = request.listener.unwrap_or(ListenerChoice::All);
        Proposal::of(change, listener.name())
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

/// The offline threshold a request gives, in check-in intervals (1 to 1000, 3 by default).
fn offline_intervals(given: Option<u32>) -> Result<u32, ApiError> {
    match given {
        None => Ok(OFFLINE_INTERVALS),
        Some(n) if (1..=1000).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(
            "offline_intervals: a number from 1 to 1000",
        )),
    }
}

/// Agents listed per category, as a request gives it (at most ten million).
fn limit(given: Option<u64>) -> Result<usize, ApiError> {
    match given {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if n <= 10_000_000 => Ok(n as usize),
        Some(_) => Err(ApiError::bad_request("limit: a number from 0 to 10000000")),
    }
}

/// `GET /tls/harden`: the last harden's state, and of the agents it moved, which have
/// acknowledged their new settings (`acknowledged`) and which have not (`unacknowledged`).
pub async fn status(shared: &App) -> Result<HardenStatus, ApiError> {
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
    Ok(HardenStatus {
        state,
        acknowledged,
        unacknowledged,
    })
}
