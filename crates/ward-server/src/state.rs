//! The app state: one `Arc<App>` that every connection task shares. It holds data and
//! handles; each cache is defined by the module that owns it (`channel` for the agent
//! channel, `auth` for logins). Also the reload, which swaps the listeners' acceptors.
//!
//! Imports no API module: the agent API, the admin API and harden depend on it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{error, info};
use ward_store::Store;
use ward_tls::Severity;

use crate::channel::{AgentKeys, HeldAgents, Replays, SettingsCache};
use crate::checkins::CheckinWriter;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::listener_tls::{self, Finding, ListenerTls, TlsSlots};
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
    /// The server's X25519 agreement keys (the next one too during a key rotation).
    pub agreement: std::sync::RwLock<Arc<crate::channel::Agreement>>,
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
    /// Check-ins shed lately: the wait a shed one is told grows with them.
    pub shed_load: crate::channel::ShedLoad,
    /// Connections refused at a cap that may still be answered (handshaken, and a check-in
    /// shed with a signed wait); the rest are closed at once.
    pub refusal_budget: crate::channel::RefusalBudget,
    /// Held check-ins woken by a change and not yet answered: new handshakes wait for them.
    pub deliveries: crate::channel::Deliveries,
    pub config: Config,
    pub tls: TlsSlots,
    pub telemetry: Arc<Telemetry>,
    /// Check-ins, written in batches (group commit).
    pub checkins: CheckinWriter,
    /// The local admin token (`admin.token`); on a site, the site's, so the CLI on any
    /// server's host can drive every server (it is taken again when the site's changes).
    pub admin_token: std::sync::RwLock<String>,
    pub started: SystemTime,
    pub shutdown: watch::Sender<bool>,
    pub reload_lock: tokio::sync::Mutex<()>,
    /// The CAs every agent's settings tell it to trust (`certs/agent-trust.pem`); empty until
    /// a CA rotation, when agents keep the CA they were enrolled with.
    pub agent_trust: Arc<std::sync::RwLock<Arc<str>>>,
    /// The generation of the site's files this server holds, and the newest it heard of.
    pub site: Arc<crate::site::SiteWatch>,
    /// The web console's pages on the console listener, when the binary gives one
    /// (`crate::run_with`); set once, before the listeners accept.
    pub web: std::sync::OnceLock<Arc<dyn WebConsole>>,
}

/// The agents' agreement keys of `data`: the current one, a rotation's next and an aborted
/// rotation's withdrawn one.
pub fn load_agreement(data: &DataDir) -> Result<crate::channel::Agreement, String> {
    let error = |e: &dyn std::fmt::Display| e.to_string();
    let current = data.load_agreement_key().map_err(|e| error(&e))?;
    let key = |path: &std::path::Path| -> Result<Option<crate::channel::ServerKey>, String> {
        crate::datadir::read_agreement_key(path)
            .map_err(|e| error(&e))?
            .map(crate::channel::ServerKey::new)
            .transpose()
            .map_err(|e| error(&e))
    };
    Ok(crate::channel::Agreement {
        current: crate::channel::ServerKey::new(current).map_err(|e| error(&e))?,
        next: key(&data.agreement_next_key())?,
        withdrawn: key(&data.agreement_withdrawn_key())?,
    })
}

/// The CAs every agent's settings carry: those a CA rotation wrote, else ward's CA, so that an
/// agent enrolled over plain HTTP (pinned, without a CA) can verify the clients listener when
/// its settings move it to HTTPS.
pub fn load_agent_trust(data: &DataDir) -> Result<String, String> {
    match std::fs::read_to_string(data.agent_trust()) {
        Ok(pem) => Ok(pem),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(std::fs::read_to_string(data.ca_cert()).unwrap_or_default())
        }
        Err(e) => Err(format!("{}: {e}", data.agent_trust().display())),
    }
}

/// Why the app could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// A conf file has errors; every finding is listed.
    Tls(Vec<Finding>),
    Other(String),
}

impl App {
    /// Opens everything a server runs on, except its sockets: the store (with the fleet
    /// initialised on a new database), both listeners' TLS from their conf files, the keys and
    /// the admin token, the telemetry and check-in writers. Returns the findings of the conf
    /// files too (warnings and notes, to log). `ward server` binds the listeners after this;
    /// tests call handlers on it directly.
    pub fn open(data: DataDir, config: Config) -> Result<(App, Vec<Finding>), OpenError> {
        let other = |e: &dyn std::fmt::Display| OpenError::Other(e.to_string());
        let wakes = crate::wakes::channel();
        let database = data.database(&config).map_err(|e| other(&e))?;
        let opened = ward_store::open(&database).map_err(|e| other(&e))?;
        // Servers of a site share its CA and keys: this data dir takes the site's (or gives
        // its own, the first server) before anything reads them.
        let synced = crate::site::sync_files(&data, &*opened).map_err(|e| other(&e))?;
        if let crate::site::Synced::Took { generation, .. }
        | crate::site::Synced::Put { generation } = synced
        {
            tracing::info!(generation, ?synced, "the site's files are in line");
        }
        let site = Arc::new(crate::site::SiteWatch::new(
            crate::site::local_generation(&data).map_err(|e| other(&e))?,
        ));
        // Changes other servers on the database commit wake this server's held check-ins
        // too; a change of the site's files is taken (`site_follow`).
        let changes = Arc::new(crate::wakes::FleetChanges::default());
        let (remote, heard, changed) = (wakes.clone(), site.clone(), changes.clone());
        opened.watch(Arc::new(move |note| {
            if let ward_store::ChangeNote::Site { generation } = note {
                heard.heard(generation);
            } else if let Some(wake) = crate::wakes::Wake::of_note(note) {
                // Before the wake: a check-in it wakes is not answered from before the change.
                changed.bump();
                let _ = remote.send(Arc::new(wake));
            }
        }));
        let store: Arc<dyn Store> = Arc::new(crate::wakes::Publishing::new(
            opened,
            wakes.clone(),
            changes.clone(),
        ));
        let host = if config.clients.ip().is_unspecified() {
            crate::datadir::host_names()
                .pop()
                .unwrap_or_else(|| "localhost".into())
        } else {
            config.clients.ip().to_string()
        };
        crate::ops::initialise(&store, &host, config.clients.port()).map_err(|e| other(&e))?;
        // The session ticket keys exist before the listeners are built (a data dir from
        // before them gets its first key here).
        data.load_ticket_keys().map_err(|e| other(&e))?;
        let (loaded, findings) = listener_tls::load_all(&data, &config);
        let Some((console_tls, clients_tls)) = loaded else {
            return Err(OpenError::Tls(findings));
        };
        let admin_token = data
            .read_admin_token()
            .map_err(|e| OpenError::Other(format!("{}: {e}", data.admin_token().display())))?;
        let agreement = load_agreement(&data).map_err(|e| other(&e))?;
        // The replay window as the last run left it: check-ins it accepted stay refused.
        let replay = Replays::default();
        let since = ward_proto::now_ms() - ward_store::NONCE_WINDOW_MS;
        let seen = store.recent_nonces(since).map_err(|e| other(&e))?;
        replay.with(|cache| {
            for (agent, nonce, at_ms) in &seen {
                cache.remember(agent, nonce, *at_ms);
            }
        });
        let agent_trust = load_agent_trust(&data).map_err(|e| other(&e))?;
        let telemetry = Telemetry::start(
            store.clone(),
            config.failures_per_second,
            config.telemetry_retention,
        );
        let app = App {
            site,
            agent_trust: Arc::new(std::sync::RwLock::new(agent_trust.into())),
            checkins: CheckinWriter::start(store.clone(), telemetry.clone(), changes),
            telemetry,
            store,
            agreement: std::sync::RwLock::new(Arc::new(agreement)),
            agent_keys: Default::default(),
            replay,
            fleet_version: watch::channel(0).0,
            tls_generation: watch::channel(0).0,
            wakes,
            held: Default::default(),
            shed_load: Default::default(),
            deliveries: Default::default(),
            refusal_budget: crate::channel::RefusalBudget::new(
                crate::channel::REFUSALS_ANSWERED_PER_SECOND,
            ),
            settings_cache: Default::default(),
            fleet_lock: tokio::sync::Mutex::new(()),
            argon2_permits: tokio::sync::Semaphore::new(2),
            login_limiter: std::sync::Mutex::new(crate::auth::LoginLimiter::new(
                Duration::from_secs(300),
                5,
                20,
            )),
            tls: TlsSlots::new(console_tls, clients_tls),
            data,
            admin_token: std::sync::RwLock::new(admin_token),
            started: SystemTime::now(),
            shutdown: watch::channel(false).0,
            reload_lock: tokio::sync::Mutex::new(()),
            web: std::sync::OnceLock::new(),
            config,
        };
        Ok((app, findings))
    }

    /// Marks a fleet change: the cached settings may be stale (push agents are woken by the
    /// store, for the changes that concern them). The one place the settings cache is
    /// invalidated.
    pub fn agreement(&self) -> Arc<crate::channel::Agreement> {
        self.agreement
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What every agent's settings carry besides its group's: the CAs to trust (ward's CA,
    /// the current and the next during a CA rotation) and the server's next agreement key
    /// (during a key rotation).
    pub fn handed(&self) -> crate::ops::Handed {
        crate::ops::Handed {
            trust_pem: self.agent_trust(),
            server_key: self.agreement().handed(),
        }
    }

    pub fn agent_trust(&self) -> Arc<str> {
        self.agent_trust
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn fleet_changed(&self) {
        self.fleet_version.send_modify(|v| *v += 1);
    }
}

/// What a reload's check decides, from the new listeners, before they are swapped in.
pub struct Checked {
    /// Swap them in.
    pub swap: bool,
    /// What the check found (the plan of the change), for the caller to show.
    pub report: Option<ward_api::tls::GuardPlan>,
}

/// A reload's check: given the new console and clients listeners (built, not yet serving),
/// whether to swap them in. Runs on a blocking thread.
pub type Check = Box<dyn FnOnce(&ListenerTls, &ListenerTls) -> Checked + Send>;

/// What a reload did.
pub enum Reloaded {
    /// The new settings serve new connections.
    Swapped(Vec<Finding>, Option<ward_api::tls::GuardPlan>),
    /// The new files have errors; the old settings keep serving.
    Invalid(Vec<Finding>),
    /// The check kept the old settings (the new ones would cut agents off, or a dry run).
    Kept(Vec<Finding>, Option<ward_api::tls::GuardPlan>),
}

/// Re-reads both conf files, builds and checks new acceptors, and swaps them in only if both
/// are good. Open connections keep the settings they started with. Unchecked: for callers
/// that planned the change themselves (harden's apply, rollback).
pub async fn reload(shared: &App) -> Result<Vec<Finding>, Vec<Finding>> {
    match reload_checked(shared, None).await {
        Reloaded::Swapped(findings, _) => Ok(findings),
        Reloaded::Invalid(findings) | Reloaded::Kept(findings, _) => Err(findings),
    }
}

/// [`reload`], with `check` asked before the swap (under the reload lock, so nothing changes
/// the listeners between the check and the swap).
pub async fn reload_checked(shared: &App, check: Option<Check>) -> Reloaded {
    let _one_at_a_time = shared.reload_lock.lock().await;
    let data = shared.data.clone();
    let config = shared.config.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let (loaded, findings) = listener_tls::load_all(&data, &config);
        let checked = match (&loaded, check) {
            (Some((console, clients)), Some(check)) => check(console, clients),
            _ => Checked {
                swap: true,
                report: None,
            },
        };
        (loaded, findings, checked)
    })
    .await;
    let (loaded, findings, checked) = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            return Reloaded::Invalid(vec![Finding {
                severity: Severity::Error,
                text: format!("reload task failed: {e}"),
            }])
        }
    };
    match loaded {
        Some(_) if !checked.swap => {
            info!("reload kept the old settings: its check refused the new ones");
            Reloaded::Kept(findings, checked.report)
        }
        Some((console, clients)) => {
            let ranges = (console.policy.protocol.range, clients.policy.protocol.range);
            shared.tls.replace(console, clients);
            shared.tls_generation.send_modify(|g| *g += 1);
            shared.telemetry.metrics.reload(true);
            info!(console = %ranges.0, clients = %ranges.1, "reloaded TLS settings");
            for finding in &findings {
                info!(severity = %finding.severity, "{}", finding.text);
            }
            Reloaded::Swapped(findings, checked.report)
        }
        None => {
            shared.telemetry.metrics.reload(false);
            for finding in findings.iter().filter(|f| f.severity == Severity::Error) {
                error!(
                    "reload refused, the old settings keep serving: {}",
                    finding.text
                );
            }
            Reloaded::Invalid(findings)
        }
    }
}

/// An app on a fresh data dir in a temporary directory, for tests that call handlers in
/// process (no socket is bound).
#[cfg(test)]
pub(crate) fn test_app() -> (tempfile::TempDir, Arc<App>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = DataDir::new(dir.path().join("data"));
    let loopback = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    crate::datadir::initialise(&data, [loopback(18445), loopback(18443), loopback(18014)])
        .expect("initialise a data dir");
    let config = crate::config::load(&data.config()).expect("the new ward.toml loads");
    let (app, _) = App::open(data, config).expect("the app opens");
    (dir, Arc::new(app))
}

/// A boxed future of a web console page's response.
pub type Answer<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = crate::api::HttpResponse> + Send + 'a>>;

/// The seam for the web console: what serves the console listener's pages (every path that is
/// not `/healthz`, `/metrics` or the admin API). The console itself (`ward-console`) lives in a
/// crate of its own on top of `operations`, and the `ward` binary hands it to
/// [`crate::run_with`]; without one, those paths answer 404.
pub trait WebConsole: Send + Sync + 'static {
    /// One request to a path of the console's (never `/api/v1/...`, `/metrics`, `/healthz`).
    fn serve<'a>(
        &'a self,
        app: &'a App,
        peer: std::net::SocketAddr,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Answer<'a>;
}
