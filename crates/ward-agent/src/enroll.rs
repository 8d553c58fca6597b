//! `ward agent enroll` and `ward agent import-settings`: key agreement with a server, proof of
//! a token, and the settings file.

use std::path::Path;
use std::time::Duration;

use ward_proto::messages::{
    self, EnrollResponse, Hello, ServerListSettings, Settings, SettingsPackage, ENROLL_PATH,
    HELLO_PATH, SETTINGS_PACKAGE_FORMAT,
};
use ward_proto::{hex, unhex, KeyPair};

use crate::error::AgentError;
use crate::requests::{enroll_request, verify_signed};
use crate::state::AgentState;
use crate::transport::{Call, Transport};
use crate::{HostFacts, Offer};

/// How the agent learns to trust the server at enrollment.
pub struct Trust {
    /// The CA certificate (PEM) of the server's TLS certificates; empty for the system's.
    pub ca_pem: Vec<u8>,
    /// The SHA-256 (hex) of the server's agreement key (`agreement_key_sha256` of
    /// `/agent/v1/hello`). Required over plain HTTP, which cannot prove who answers.
    pub pin: Option<String>,
}

/// What `ward agent enroll` is told.
pub struct EnrollOptions<'a> {
    pub url: &'a str,
    pub token: &'a str,
    pub trust: Trust,
    /// What it offers in TLS (a client profile, or a version cap): kept in the state.
    pub offer: Offer,
    /// The name shown in the client list (default: the host name).
    pub name: Option<String>,
    /// Replace an identity already in the state dir.
    pub force: bool,
}

/// `ward agent enroll`: key agreement with the server, proof of the token, the settings file.
/// A state dir that already holds an identity is refused unless `force`.
pub fn enroll(dir: &Path, options: EnrollOptions<'_>) -> Result<AgentState, AgentError> {
    if !options.force {
        if let Ok(existing) = AgentState::load(dir) {
            return Err(AgentError::Usage(format!(
                "{} already holds agent {} (group {}): enrolling again would replace its \
                 identity and key; use --force to do so, or another --state",
                dir.display(),
                existing.agent,
                existing.settings.group
            )));
        }
    }
    enroll_as(dir, &options, None)
}

/// Enrollment, or with `existing` (id and key pair) a re-registration that keeps the identity.
fn enroll_as(
    dir: &Path,
    options: &EnrollOptions<'_>,
    existing: Option<(String, KeyPair)>,
) -> Result<AgentState, AgentError> {
    let url = options.url;
    let pin = options.trust.pin.as_ref().map(|p| p.to_ascii_lowercase());
    if url.starts_with("http://") && pin.is_none() {
        return Err(AgentError::Usage(
            "enrolling over plain HTTP needs --pin (the server's agreement_key_sha256): HTTP \
             cannot prove which server answers"
                .into(),
        ));
    }
    let mut transport = Transport::new(&options.trust.ca_pem, options.offer)?;
    let verify = pin.is_none();
    let call = Call {
        method: "GET",
        path: HELLO_PATH,
        headers: &[],
        body: b"",
        keep_alive: false,
    };
    let answer = transport.exchange(url, verify, &call, Duration::from_secs(30))?;
    if answer.status == 404 {
        return Err(AgentError::Refused {
            server: url.to_string(),
            status: 404,
            code: "not_found".into(),
            message: "no agent API here: is this the console port (8445)? agents enroll on the \
                      clients listener (443) or clients-http (8014)"
                .into(),
        });
    }
    let hello: Hello =
        messages::decode("hello", &answer.body).map_err(|e| AgentError::untrusted(url, e))?;
    let server_public = unhex(&hello.agreement_key).map_err(|e| AgentError::untrusted(url, e))?;
    if let Some(pin) = &pin {
        let actual = hex(&openssl::sha::sha256(&server_public));
        if &actual != pin {
            return Err(AgentError::untrusted(
                url,
                format!(
                    "the server's key {actual} does not match the pin {pin}: refusing to enroll"
                ),
            ));
        }
    }
    let (existing_id, pair) = match existing {
        Some((id, pair)) => (Some(id), pair),
        None => (
            None,
            KeyPair::generate().map_err(|e| AgentError::state(format!("key: {e}")))?,
        ),
    };
    let host = HostFacts::local(options.name.clone());
    // What this agent's TLS stack sends, so the server can judge it before it ever sees it.
    let (_, server_host, _) = crate::transport::split_url(url).map_err(AgentError::Usage)?;
    let client_hello = transport.client_hello(&server_host).ok();
    let request = enroll_request(
        &server_public,
        &pair,
        options.token,
        options.offer,
        existing_id.as_deref(),
        &host,
        client_hello.as_deref(),
    )?;
    let headers = [("Content-Type", "application/json".to_string())];
    let call = Call {
        method: "POST",
        path: ENROLL_PATH,
        headers: &headers,
        body: request.body.as_bytes(),
        keep_alive: false,
    };
    let answer = transport.exchange(url, verify, &call, Duration::from_secs(30))?;
    let answer: EnrollResponse = verify_signed(&request.key, &request.nonce, url, &answer)?;
    // The path it enrolled through worked: the settings it got are on probation until a
    // check-in with one of their servers completes, and it comes back here if none does.
    let last_working =
        enrolled_through(url, verify, &answer.settings).map(|settings| crate::state::LastWorking {
            settings,
            acked_serial: 0,
            server_public: hello.agreement_key.clone(),
        });
    let reported_hello = client_hello
        .as_deref()
        .and_then(|bytes| ward_tls::hello::parse_client_hello(bytes).ok())
        .map(|parsed| hex(&parsed.fingerprint()));
    let state = AgentState {
        agent: answer.agent,
        private_key: hex(&pair
            .private_bytes()
            .map_err(|e| AgentError::state(format!("key: {e}")))?),
        server_public: hello.agreement_key,
        ca_pem: String::from_utf8_lossy(&options.trust.ca_pem).into_owned(),
        settings: answer.settings,
        acked_serial: 0,
        tls_max: options.offer.tls_max.map(|v| v.name().to_string()),
        client_profile: options.offer.profile.map(|p| p.name.to_string()),
        name: options.name.clone(),
        last_working,
        reverted: None,
        reported_hello,
    };
    state.save(dir)?;
    write_policy(dir, &state)?;
    Ok(state)
}

/// The settings `settings` would be with only the server the agent enrolled through
/// (`url`), when their list does not name it: where the agent comes back to if none of the
/// listed servers works for it.
fn enrolled_through(url: &str, verify: bool, settings: &Settings) -> Option<Settings> {
    if settings.servers().iter().any(|entry| entry.url == url) {
        return None;
    }
    let mut fallback = settings.clone();
    fallback.server_list = ServerListSettings {
        name: format!("{} (enrolled through {url})", settings.server_list.name),
        servers: vec![crate::transport::entry_for(url, verify).ok()?],
    };
    Some(fallback)
}

/// Writes the policy document the agent follows to `DIR/policy.json`, atomically.
pub fn write_policy(dir: &Path, state: &AgentState) -> Result<(), AgentError> {
    let path = dir.join("policy.json");
    let text = format!("{:#}\n", state.settings.policy);
    ward_fs::replace(&path, text.as_bytes(), 0o644)
        .map_err(|e| AgentError::state(format!("{}: {e}", path.display())))
}

/// Reads a settings package from `ward group export-settings`.
pub fn read_package(text: &str) -> Result<SettingsPackage, AgentError> {
    let package: SettingsPackage = messages::decode("settings package", text.as_bytes())
        .map_err(|e| AgentError::Usage(e.to_string()))?;
    if package.format != SETTINGS_PACKAGE_FORMAT {
        return Err(AgentError::Usage(format!(
            "not a ward settings package (format {SETTINGS_PACKAGE_FORMAT}, found '{}')",
            package.format
        )));
    }
    Ok(package)
}

/// `ward agent import-settings`: the seed's communication-settings drop for an agent that
/// lost contact. Takes the servers, the server key and the CA from the package and registers
/// with its token: an agent the server still knows (same id, same key) moves into the
/// package's group and keeps its identity; otherwise (or with no agent yet) it enrolls anew.
/// The TLS cap and name of the state dir are kept unless given. Returns the state and whether
/// the identity was kept.
pub fn import_settings(
    package: &SettingsPackage,
    dir: &Path,
    offer: Offer,
) -> Result<(AgentState, bool), AgentError> {
    let servers = package.settings.servers();
    let Some(first) = servers.first() else {
        return Err(AgentError::Usage("the package lists no server".into()));
    };
    let previous = AgentState::load(dir).ok();
    let existing = previous.as_ref().and_then(|state| {
        let pair = KeyPair::from_private_bytes(&unhex(&state.private_key).ok()?).ok()?;
        Some((state.agent.clone(), pair))
    });
    // The offer of the state dir is kept unless a new one is given.
    let offer = offer.or(previous.as_ref().map(AgentState::offer).unwrap_or_default());
    let server_public = unhex(&package.server_public)
        .map_err(|e| AgentError::Usage(format!("the package's server key: {e}")))?;
    // The package names the server's key: pin it, whatever channel the first server uses.
    let options = EnrollOptions {
        url: &first.url,
        token: &package.token,
        trust: Trust {
            pin: Some(hex(&openssl::sha::sha256(&server_public))),
            ca_pem: package.ca_pem.clone().into_bytes(),
        },
        offer,
        name: previous.as_ref().and_then(|s| s.name.clone()),
        force: true,
    };
    let state = enroll_as(dir, &options, existing)?;
    let kept = previous.map(|p| p.agent) == Some(state.agent.clone());
    Ok((state, kept))
}
