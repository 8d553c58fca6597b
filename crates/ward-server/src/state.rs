//! The app state: one `Arc<App>` that every connection task shares. It holds data and
//! handles; each cache is defined by the module that owns it (`channel` for the agent
//! channel, `auth` for logins). Also the reload, which swaps the listeners' acceptors.
//!
//! Imports no API module: the agent API, the admin API and harden depend on it.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;
use tracing::{error, info};
use ward_store::Store;
use ward_tls::Severity;

use crate::channel::{AgentKeys, HeldAgents, Replays, SettingsCache};
use crate::checkins::CheckinWriter;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::listener_tls::{self, Finding, TlsSlots};
use crate::telemetry::Telemetry;
use crate::wakes::Wake;

/// What every connection task shares.
pub struct App {
    pub data: DataDir,
    pub store: Arc<dyn Store>,
    /// Admin writes run one at a time, so a change is checked against the state it applies to.
    pub fleet_lock: tokio::sync::Mutex<()>,
    pub login_limiter: std::sync::Mutex<crate::auth::LoginLimiter>,
    /// Password checks running at once (each holds argon2's memory).
    pub argon2_permits: tokio::sync::Semaphore,
    /// The server's X25519 pair for agent key agreement, and its public half.
    pub agreement: ward_proto::KeyPair,
    pub agreement_public: Vec<u8>,
    /// Per-agent keys derived so far.
    pub agent_keys: AgentKeys,
    pub replay: Replays,
    /// Bumped after every admin change (it keys the settings cache).
    pub fleet_version: watch::Sender<u64>,
    /// Which agents each applied change gave a new serial: held push check-ins wait on it.
    pub wakes: tokio::sync::broadcast::Sender<Arc<Wake>>,
    /// Bumped after every successful reload: held push check-ins end, so
    /// push agents reconnect under the new settings instead of keeping a connection that the
    /// new policy would refuse.
    pub tls_generation: watch::Sender<u64>,
    /// The settings sent per (group, serial), valid while `fleet_version` stays the same: a
    /// change that wakes 10,000 held check-ins computes each group's settings once.
    pub settings_cache: SettingsCache,
    /// Push agents whose check-in the server holds right now: connected, so not silent.
    pub held: HeldAgents,
    pub config: Config,
    pub tls: TlsSlots,
    pub telemetry: Arc<Telemetry>,
    /// Check-ins, written in batches (group commit).
    pub checkins: CheckinWriter,
    pub admin_token: String,
    pub started: SystemTime,
    pub shutdown: watch::Sender<bool>,
    pub reload_lock: tokio::sync::Mutex<()>,
}

impl App {
    /// Marks a fleet change: the cached settings may be stale (push agents are woken by the
    /// store, for the changes that concern them). The one place the settings cache is
    /// invalidated.
    pub fn fleet_changed(&self) {
        self.fleet_version.send_modify(|v| *v += 1);
    }
}

/// Re-reads both conf files, builds and checks new acceptors, and swaps them in only if both
/// are good. Open connections keep the settings they started with.
pub async fn reload(shared: &App) -> Result<Vec<Finding>, Vec<Finding>> {
    let _one_at_a_time = shared.reload_lock.lock().await;
    let data = shared.data.clone();
    let config = shared.config.clone();
    let (loaded, findings) =
        tokio::task::spawn_blocking(move || listener_tls::load_all(&data, &config))
            .await
            .map_err(|e| {
                vec![Finding {
                    severity: Severity::Error,
                    text: format!("reload task failed: {e}"),
                }]
            })?;
    match loaded {
        Some((console, clients)) => {
            let ranges = (console.policy.protocol.range, clients.policy.protocol.range);
            shared.tls.replace(console, clients);
            shared.tls_generation.send_modify(|g| *g += 1);
            shared.telemetry.metrics.reload(true);
            info!(console = %ranges.0, clients = %ranges.1, "reloaded TLS settings");
            for finding in &findings {
                info!(severity = %finding.severity, "{}", finding.text);
            }
            Ok(findings)
        }
        None => {
            shared.telemetry.metrics.reload(false);
            for finding in findings.iter().filter(|f| f.severity == Severity::Error) {
                error!(
                    "reload refused, the old settings keep serving: {}",
                    finding.text
                );
            }
            Err(findings)
        }
    }
}
