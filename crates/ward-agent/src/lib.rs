//! ward-agent: the managed client of the seed (its `smc`).
//!
//! - [`select`]: which server to try next (pure).
//! - [`state`]: the settings file, written atomically.
//! - [`transport`]: one HTTP(S) exchange, with the TLS cap and session resumption.
//! - this file: enrollment, the signed check-in, the run loop (pull or push), and the local
//!   control socket behind `ward agent status|stop`.

pub mod select;
pub mod state;
pub mod transport;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use ward_proto::{AgentKey, KeyPair, RequestAuth};
use ward_tls::TlsVersion;

use state::{AgentState, Settings};
use transport::{Call, Exchange, Transport};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How a check-in error says the server is too busy: the rest is `Retry-After` seconds.
const BUSY: &str = "the server is busy (503); retry after ";

/// The `Retry-After` a busy server asked for, from a check-in error.
fn retry_after(error: &str) -> Option<Duration> {
    let seconds = error.strip_prefix(BUSY)?.strip_suffix('s')?.parse().ok()?;
    Some(Duration::from_secs(seconds).min(Duration::from_secs(3600)))
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string; anything but pairs of hex digits is an error.
pub fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err("bad hex: odd length".into());
    }
    (0..text.len() / 2)
        .map(|i| {
            u8::from_str_radix(text.get(2 * i..2 * i + 2).unwrap_or("zz"), 16)
                .map_err(|_| "bad hex".to_string())
        })
        .collect()
}

fn sha256_hex(text: &str) -> String {
    hex(&openssl::sha::sha256(text.as_bytes()))
}

/// The TLS versions an agent capped at `max` can speak.
pub fn speakable(max: Option<TlsVersion>) -> Vec<String> {
    TlsVersion::ALL
        .into_iter()
        .filter(|v| max.is_none_or(|m| *v <= m))
        .map(|v| v.name().to_string())
        .collect()
}

/// What an agent says of its host at enrollment and check-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
}

impl HostFacts {
    /// This machine's.
    pub fn local() -> HostFacts {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let os_version = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        HostFacts {
            hostname,
            os_name: std::env::consts::OS.to_string(),
            os_version,
        }
    }
}

/// The agent's per-server key, from its settings file.
fn key_of(state: &AgentState) -> Result<AgentKey, String> {
    let pair =
        KeyPair::from_private_bytes(&unhex(&state.private_key)?).map_err(|e| e.to_string())?;
    agent_key(&pair, &unhex(&state.server_public)?)
}

/// The key an agent with `pair` shares with the server whose agreement key is
/// `server_public`: what signs its requests and checks the answers.
pub fn agent_key(pair: &KeyPair, server_public: &[u8]) -> Result<AgentKey, String> {
    let agent_public = pair.public_bytes().map_err(|e| e.to_string())?;
    ward_proto::agree(pair, server_public, &agent_public, server_public).map_err(|e| e.to_string())
}

/// How the agent learns to trust the server at enrollment.
pub struct Trust {
    /// The CA certificate (PEM) of the server's TLS certificates; empty for the system's.
    pub ca_pem: Vec<u8>,
    /// The SHA-256 (hex) of the server's agreement key (`agreement_key_sha256` of
    /// `/agent/v1/hello`). Required over plain HTTP, which cannot prove who answers.
    pub pin: Option<String>,
}

/// The text both sides put under the enrollment proof: the token, the request's freshness,
/// and everything in the request that decides what the enrollment does.
pub fn enrollment_statement(
    token_sha256: &str,
    nonce: &str,
    time_ms: i64,
    agent_public_hex: &str,
    existing: Option<&str>,
) -> String {
    format!(
        "{token_sha256}:{nonce}:{time_ms}:{agent_public_hex}:{}",
        existing.unwrap_or("")
    )
}

/// Checks a signed answer (bound to the request's `nonce`) and returns its JSON; an error
/// answer or a bad signature is an error.
pub fn verify_signed(key: &AgentKey, nonce: &str, exchange: &Exchange) -> Result<Value, String> {
    let Some(mac) = exchange.header("x-ward-mac") else {
        let message = serde_json::from_slice::<Value>(&exchange.body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| {
                format!(
                    "the server answered {} without a signature",
                    exchange.status
                )
            });
        return Err(format!("{message} ({})", exchange.status));
    };
    ward_proto::verify_response(key, nonce, exchange.status, &exchange.body, mac)
        .map_err(|e| format!("response refused: {e}"))?;
    let value: Value =
        serde_json::from_slice(&exchange.body).map_err(|e| format!("response: {e}"))?;
    if exchange.status != 200 {
        return Err(format!(
            "{} ({})",
            value["error"]["message"].as_str().unwrap_or("refused"),
            exchange.status
        ));
    }
    Ok(value)
}

/// `ward agent enroll`: key agreement with the server, proof of the token, the settings file.
pub fn enroll(
    url: &str,
    token: &str,
    trust: Trust,
    dir: &Path,
    tls_max: Option<TlsVersion>,
) -> Result<AgentState, String> {
    enroll_as(url, token, trust, dir, tls_max, None)
}

/// Enrollment, or with `existing` (id and key pair) a re-registration that keeps the identity.
fn enroll_as(
    url: &str,
    token: &str,
    trust: Trust,
    dir: &Path,
    tls_max: Option<TlsVersion>,
    existing: Option<(String, KeyPair)>,
) -> Result<AgentState, String> {
    let Trust { ca_pem, pin } = trust;
    let pin = pin.map(|p| p.to_ascii_lowercase());
    if url.starts_with("http://") && pin.is_none() {
        return Err(
            "enrolling over plain HTTP needs --pin (the server's agreement_key_sha256): HTTP cannot prove which server answers"
                .into(),
        );
    }
    let mut transport = Transport::new(&ca_pem, tls_max)?;
    let verify = pin.is_none();
    let call = Call {
        method: "GET",
        path: "/agent/v1/hello",
        headers: &[],
        body: b"",
    };
    let hello = transport.exchange(url, verify, &call, Duration::from_secs(30))?;
    let hello: Value =
        serde_json::from_slice(&hello.body).map_err(|e| format!("{url}: hello: {e}"))?;
    let server_public_hex = hello["agreement_key"]
        .as_str()
        .ok_or("the server sent no agreement key")?
        .to_string();
    let server_public = unhex(&server_public_hex)?;
    if let Some(pin) = &pin {
        let actual = hex(&openssl::sha::sha256(&server_public));
        if &actual != pin {
            return Err(format!(
                "the server's key {actual} does not match the pin {pin}: refusing to enroll"
            ));
        }
    }
    let (existing_id, pair) = match existing {
        Some((id, pair)) => (Some(id), pair),
        None => (None, KeyPair::generate().map_err(|e| e.to_string())?),
    };
    let request = enroll_request(
        &server_public,
        &pair,
        token,
        tls_max,
        existing_id.as_deref(),
        &HostFacts::local(),
    )?;
    let (body, key, auth_nonce) = (request.body, request.key, request.nonce);
    let headers = [("Content-Type", "application/json".to_string())];
    let call = Call {
        method: "POST",
        path: "/agent/v1/enroll",
        headers: &headers,
        body: body.as_bytes(),
    };
    let answer = transport.exchange(url, verify, &call, Duration::from_secs(30))?;
    let answer = verify_signed(&key, &auth_nonce, &answer)?;
    let state = AgentState {
        agent: answer["agent"]
            .as_str()
            .ok_or("the server sent no agent id")?
            .to_string(),
        private_key: hex(&pair.private_bytes().map_err(|e| e.to_string())?),
        server_public: server_public_hex,
        ca_pem: String::from_utf8_lossy(&ca_pem).into_owned(),
        settings: Settings {
            raw: answer["settings"].clone(),
        },
        acked_serial: 0,
    };
    state.save(dir)?;
    write_policy(dir, &state.settings)?;
    Ok(state)
}

/// A signed request, ready to send: its body and headers, and the nonce its answer must be
/// bound to.
pub struct SignedRequest {
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
    pub nonce: String,
}

/// An enrollment request for the key `pair` against the server's agreement key, proving
/// `token` without sending it; also the agent key that checks the answer.
pub struct EnrollRequest {
    pub body: String,
    pub nonce: String,
    pub key: AgentKey,
}

pub fn enroll_request(
    server_public: &[u8],
    pair: &KeyPair,
    token: &str,
    tls_max: Option<TlsVersion>,
    existing: Option<&str>,
    host: &HostFacts,
) -> Result<EnrollRequest, String> {
    let agent_public = pair.public_bytes().map_err(|e| e.to_string())?;
    let key = agent_key(pair, server_public)?;
    let token_sha = sha256_hex(token.trim());
    let auth = RequestAuth::new("", now_ms());
    let statement = enrollment_statement(
        &token_sha,
        &auth.nonce,
        auth.time_ms,
        &hex(&agent_public),
        existing,
    );
    let proof = hex(&ward_proto::enrollment_proof(&key, &statement));
    let body = json!({
        "agent_public": hex(&agent_public),
        "token_lookup": sha256_hex(&format!("{token_sha}:lookup")),
        "proof": proof,
        "nonce": auth.nonce,
        "time_ms": auth.time_ms,
        "hostname": host.hostname,
        "os_name": host.os_name,
        "os_version": host.os_version,
        "agent_version": VERSION,
        "tls_versions": speakable(tls_max),
        "agent": existing,
    })
    .to_string();
    Ok(EnrollRequest {
        body,
        nonce: auth.nonce,
        key,
    })
}

/// A signed check-in: what the agent acknowledges and reports, and how long the server may
/// hold it (push).
pub fn checkin_request(
    agent: &str,
    key: &AgentKey,
    acked_serial: i64,
    host: &HostFacts,
    tls_max: Option<TlsVersion>,
    server_url: &str,
    wait: Duration,
) -> SignedRequest {
    let body = json!({
        "acked_serial": acked_serial,
        "hostname": host.hostname,
        "os_name": host.os_name,
        "os_version": host.os_version,
        "agent_version": VERSION,
        "tls_versions": speakable(tls_max),
        "server": server_url,
        "wait_ms": wait.as_millis() as u64,
    })
    .to_string();
    let auth = RequestAuth::new(agent, now_ms());
    let mac = ward_proto::sign_request(
        key,
        &ward_proto::Request {
            method: "POST",
            path: CHECKIN_PATH,
            auth: &auth,
            body: body.as_bytes(),
        },
    );
    let headers = vec![
        ("Content-Type", "application/json".to_string()),
        ("X-Ward-Agent", auth.agent.clone()),
        ("X-Ward-Time", auth.time_ms.to_string()),
        ("X-Ward-Nonce", auth.nonce.clone()),
        ("X-Ward-Mac", mac),
    ];
    SignedRequest {
        body,
        headers,
        nonce: auth.nonce,
    }
}

pub const CHECKIN_PATH: &str = "/agent/v1/checkin";

fn write_policy(dir: &Path, settings: &Settings) -> Result<(), String> {
    let path = dir.join("policy.json");
    let text = format!("{:#}\n", settings.raw["policy"]);
    ward_tls::edit::write_atomic(&path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `ward agent import-settings`: the seed's communication-settings drop for an agent that
/// lost contact. Takes the servers, the server key and the CA from a package made by
/// `ward group export-settings` and registers with its token: an agent the server still knows
/// (same id, same key) moves into the package's group and keeps its identity; otherwise (or
/// with no agent yet) it enrolls anew. Returns the state and whether the identity was kept.
pub fn import_settings(
    package: &Value,
    dir: &Path,
    tls_max: Option<TlsVersion>,
) -> Result<(AgentState, bool), String> {
    if package["format"] != "ward-settings-1" {
        return Err("not a ward settings package (format ward-settings-1)".into());
    }
    let server_public = package["server_public"]
        .as_str()
        .ok_or("the package has no server key")?
        .to_string();
    let ca_pem = package["ca_pem"].as_str().unwrap_or_default().to_string();
    let settings = Settings {
        raw: package["settings"].clone(),
    };
    let servers = settings.servers();
    if servers.is_empty() {
        return Err("the package lists no server".into());
    }
    let existing = AgentState::load(dir).ok().and_then(|state| {
        let pair = KeyPair::from_private_bytes(&unhex(&state.private_key).ok()?).ok()?;
        Some((state.agent, pair))
    });
    let previous = existing.as_ref().map(|(id, _)| id.clone());
    let token = package["token"]
        .as_str()
        .ok_or("the package has no enrollment token")?;
    // The package names the server's key: pin it, whatever channel the first server uses.
    let trust = Trust {
        pin: Some(hex(&openssl::sha::sha256(&unhex(&server_public)?))),
        ca_pem: ca_pem.into_bytes(),
    };
    let state = enroll_as(&servers[0].url, token, trust, dir, tls_max, existing)?;
    let kept = previous.as_deref() == Some(state.agent.as_str());
    Ok((state, kept))
}

/// What `ward agent status` shows.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub id: String,
    pub server: Option<String>,
    pub channel: Option<String>,
    pub tls_version: Option<String>,
    pub serial: i64,
    pub last_checkin_ms: Option<i64>,
    pub next_checkin_ms: Option<i64>,
    pub last_error: Option<String>,
    pub mode: String,
}

fn rfc3339(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| {
        Value::String(ward_tls::utc::format_rfc3339(
            UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
        ))
    })
}

impl Status {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "server": self.server,
            "channel": self.channel,
            "tls_version": self.tls_version,
            "serial": self.serial,
            "last_checkin": rfc3339(self.last_checkin_ms),
            "next_checkin": rfc3339(self.next_checkin_ms),
            "mode": self.mode,
            "last_error": self.last_error,
            "pid": std::process::id(),
        })
    }
}

#[derive(Clone)]
pub struct RunConfig {
    pub dir: PathBuf,
    pub tls_max: Option<TlsVersion>,
    pub on_change: Option<String>,
    /// After this long on a lower priority, try the higher ones again.
    pub return_after: Duration,
}

/// Stops the run loop from another thread, waking it at once.
#[derive(Default)]
pub struct Stopper {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stopper {
    pub fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps up to `duration`; true if stopped meanwhile.
    fn sleep(&self, duration: Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, duration, |s| !*s)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

/// A uniform random number in [0, 1), from OpenSSL's generator.
pub fn random_fraction() -> f64 {
    let mut b = [0u8; 8];
    let _ = openssl::rand::rand_bytes(&mut b);
    (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

fn shuffle(list: &mut [select::Candidate]) {
    for i in (1..list.len()).rev() {
        let j = (random_fraction() * (i + 1) as f64) as usize;
        list.swap(i, j.min(i));
    }
}

/// One signed check-in with one server. `Ok(Some(settings))` when settings changed.
fn checkin(
    state: &AgentState,
    key: &AgentKey,
    transport: &mut Transport,
    server: &select::Candidate,
    tls_max: Option<TlsVersion>,
    wait: Duration,
) -> Result<(Exchange, Option<Settings>), String> {
    let request = checkin_request(
        &state.agent,
        key,
        state.acked_serial,
        &HostFacts::local(),
        tls_max,
        &server.url,
        wait,
    );
    let call = Call {
        method: "POST",
        path: CHECKIN_PATH,
        headers: &request.headers,
        body: request.body.as_bytes(),
    };
    let timeout = wait + Duration::from_secs(30);
    let exchange = transport.exchange(&server.url, server.verify_certificate, &call, timeout)?;
    if exchange.status == 503 {
        let seconds = exchange
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(5);
        return Err(format!("{BUSY}{seconds}s"));
    }
    let answer = verify_signed(key, &request.nonce, &exchange)?;
    let settings = match &answer["settings"] {
        Value::Null => None,
        raw => Some(Settings { raw: raw.clone() }),
    };
    Ok((exchange, settings))
}

fn run_on_change(command: &str, dir: &Path, serial: i64) {
    let result = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env("WARD_STATE", dir)
        .env("WARD_SERIAL", serial.to_string())
        .env("WARD_POLICY", dir.join("policy.json"))
        .status();
    if let Err(error) = result {
        eprintln!("ward agent: --on-change failed to start: {error}");
    }
}

/// The check-in loop, until `stopper` says stop. Pull: every interval plus a random delay
/// within the randomisation window, the first at once. Push: a held check-in (long poll),
/// renewed as soon as it returns; pull again while it fails.
pub fn run(config: &RunConfig, stopper: &Stopper, status: &Mutex<Status>) -> Result<(), String> {
    let mut state = AgentState::load(&config.dir)?;
    let key = key_of(&state)?;
    let mut transport = Transport::new(state.ca_pem.as_bytes(), config.tls_max)?;
    let mut sticky: Option<String> = None;
    let mut sticky_since = std::time::Instant::now();
    let mut failures = 0u32;
    // The serial the server last heard acknowledged: a push check-in is held open only once
    // the current serial is acknowledged (and the status updated), so a change is confirmed
    // at once rather than at the end of the next wait.
    let mut reported = None;
    {
        let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
        s.id = state.agent.clone();
        s.serial = state.acked_serial;
    }
    while !stopper.is_stopped() {
        let push = state.settings.mode_push();
        let wait = if push && reported == Some(state.acked_serial) {
            Duration::from_secs(50)
        } else {
            Duration::ZERO
        };
        let prefer_higher = sticky_since.elapsed() >= config.return_after;
        let servers = select::order(
            &state.settings.servers(),
            &shuffle,
            sticky.as_deref(),
            prefer_higher,
        );
        let mut outcome = Err("the server list is empty".to_string());
        let mut asked_to_wait = Duration::ZERO;
        for server in &servers {
            if stopper.is_stopped() {
                return Ok(());
            }
            outcome = checkin(&state, &key, &mut transport, server, config.tls_max, wait)
                .map(|r| (server.clone(), r));
            match &outcome {
                Ok(_) => break,
                Err(error) => {
                    eprintln!("ward agent: {}: {error}", server.url);
                    asked_to_wait = asked_to_wait.max(retry_after(error).unwrap_or_default());
                }
            }
        }
        let pause = match outcome {
            Ok((server, (exchange, settings))) => {
                failures = 0;
                reported = Some(state.acked_serial);
                if sticky.as_deref() != Some(server.url.as_str()) {
                    sticky = Some(server.url.clone());
                    sticky_since = std::time::Instant::now();
                } else if prefer_higher {
                    sticky_since = std::time::Instant::now();
                }
                if let Some(settings) = settings {
                    state.acked_serial = settings.serial();
                    state.settings = settings;
                    state.save(&config.dir)?;
                    write_policy(&config.dir, &state.settings)?;
                    if let Some(command) = &config.on_change {
                        run_on_change(command, &config.dir, state.acked_serial);
                    }
                }
                let interval = state.settings.interval();
                let pause = if state.settings.mode_push() {
                    Duration::ZERO
                } else {
                    interval + state.settings.randomize().mul_f64(random_fraction())
                };
                let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
                s.server = Some(server.url.clone());
                s.channel = Some(exchange.channel.to_string());
                s.tls_version = exchange.tls_version.clone();
                s.serial = state.acked_serial;
                s.last_checkin_ms = Some(now_ms());
                s.next_checkin_ms = Some(now_ms() + pause.as_millis() as i64);
                s.last_error = None;
                s.mode = state.settings.raw["mode"]
                    .as_str()
                    .unwrap_or("pull")
                    .to_string();
                pause
            }
            Err(error) => {
                failures += 1;
                // Back off, but never sooner than a busy server asked (Retry-After).
                let pause = select::backoff(
                    failures - 1,
                    Duration::from_secs(1),
                    state.settings.interval().max(Duration::from_secs(1)),
                    random_fraction(),
                )
                .max(asked_to_wait);
                let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
                s.last_error = Some(error);
                s.next_checkin_ms = Some(now_ms() + pause.as_millis() as i64);
                pause
            }
        };
        if stopper.sleep(pause) {
            break;
        }
    }
    Ok(())
}

pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("agent.sock")
}

/// Serves `status` and `stop` on the state dir's socket until the agent stops.
pub fn serve_control(
    dir: &Path,
    stopper: Arc<Stopper>,
    status: Arc<Mutex<Status>>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let path = socket_path(dir);
    if UnixStream::connect(&path).is_ok() {
        return Err(format!(
            "an agent already runs on {} (ward agent status)",
            dir.display()
        ));
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(std::thread::spawn(move || {
        while !stopper.is_stopped() {
            match listener.accept() {
                Ok((stream, _)) => {
                    // A silent or endless client cannot wedge the socket: short, bounded reads.
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut reader = BufReader::new(std::io::Read::take(&stream, 256));
                    let mut line = String::new();
                    let _ = reader.read_line(&mut line);
                    let mut stream = &stream;
                    match line.trim() {
                        "status" => {
                            let value = status.lock().unwrap_or_else(|p| p.into_inner()).to_json();
                            let _ = writeln!(stream, "{value}");
                        }
                        "stop" => {
                            stopper.stop();
                            let _ = writeln!(stream, "{{\"stopping\": true}}");
                        }
                        other => {
                            let _ =
                                writeln!(stream, "{{\"error\": \"unknown command '{other}'\"}}");
                        }
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let _ = std::fs::remove_file(&path);
    }))
}

/// Sends one command to a running agent's socket and returns its answer.
pub fn control(dir: &Path, command: &str) -> Result<Value, String> {
    let path = socket_path(dir);
    let mut stream = UnixStream::connect(&path)
        .map_err(|_| format!("no agent runs on {} (ward agent start)", dir.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    writeln!(stream, "{command}").map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&line).map_err(|e| format!("agent answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_back_from_the_error() {
        assert_eq!(
            retry_after(&format!("{BUSY}7s")),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&format!("{BUSY}99999s")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(retry_after("connection refused"), None);
    }

    #[test]
    fn speakable_versions_follow_the_cap() {
        assert_eq!(speakable(Some(TlsVersion::Tls1_0)), vec!["TLSv1"]);
        assert_eq!(speakable(None).len(), 4);
    }
}
