//! The agent API under `/agent/v1/` on the clients and clients-http listeners: enrollment and
//! check-in, authenticated with ward-proto (no reusable secret on the wire, responses bound to
//! their request), so the plain-HTTP listener is as safe against tampering as HTTPS. Every
//! message is a ward-proto type; nothing here builds or reads protocol JSON by hand.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::json;
use ward_proto::messages::{
    self, header, CheckinRequest, CheckinResponse, EnrollRequest, EnrollResponse, ErrorBody,
    HostReport, CHECKIN_PATH,
};
use ward_proto::{enroll as proof, hex, now_ms, unhex, AgentKey, AuthError, RequestAuth};
use ward_store::{
    AgentRecord, Applied, AuditEntry, Change, Checkin, HelloSeen, Mutation, Store, StoreError,
    TelemetryBatch, TokenRecord, TokenUse,
};
use ward_tls::TlsVersion;

use crate::api::{blocking, ApiError, ConnTls, HttpResponse};
use crate::channel::KnownKey;
use crate::checkins::Standing;
use crate::config::Role;
use crate::ops::group_settings;
use crate::state::App;

/// The longest a push agent's check-in is held open waiting for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(55);

/// A refusal before the agent is known (unsigned: there is no key to sign with).
fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> HttpResponse {
    ApiError::agent(status, code, message).response()
}

/// A store or internal failure, unsigned.
fn failed(error: ApiError) -> HttpResponse {
    error.response()
}

/// The longest wait a shed check-in is told: a random whole number of seconds from 1 to the
/// spread, which grows with the check-ins shed over the last 5-10 s (one second more for each
/// `SHED_RATE`), up to this. So a herd told to come back (thousands reconnecting after a
/// restart) comes back spread out at about `SHED_RATE` a second, not at once, while a few shed
/// check-ins are back within a second or two. Well inside every interval an agent can have,
/// so a shed agent is back within its next one.
pub const SHED_SPREAD: Duration = Duration::from_secs(30);

/// Shed check-ins a second that a herd's spread aims at: well below what one core takes with
/// their handshakes (about 1,500 check-ins a second with resumed TLS), so the agents that are
/// in keep their room.
pub const SHED_RATE: u64 = 500;

/// The spread for a shed check-in when `recent` were shed over the last 5-10 s (itself
/// included).
pub fn shed_spread(recent: u64) -> Duration {
    Duration::from_secs((1 + recent / SHED_RATE).min(SHED_SPREAD.as_secs()))
}

/// A wait drawn from 1..=the spread for `recent` sheds.
fn shed_wait(recent: u64) -> Duration {
    let mut bytes = [0u8; 8];
    openssl::rand::rand_bytes(&mut bytes).expect("the system has randomness");
    Duration::from_secs(1 + u64::from_le_bytes(bytes) % shed_spread(recent).as_secs())
}

/// A signed 503: the agent waits as told (the wait is in the signed body, and in
/// `Retry-After` for anything else that reads it).
fn busy(shared: &App, key: &AgentKey, nonce: &str, message: impl Into<String>) -> HttpResponse {
    let recent = shared.shed_load.shed();
    let wait = shed_wait(recent);
    let mut response = signed(
        key,
        nonce,
        StatusCode::SERVICE_UNAVAILABLE,
        &ErrorBody::busy(message, wait),
    );
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        HeaderValue::from(wait.as_secs()),
    );
    response
}

/// A failure after the agent is known: signed, so a busy store's 503 is an instruction the
/// agent follows (an unsigned one it must treat as a transport failure).
fn failed_signed(shared: &App, key: &AgentKey, nonce: &str, error: ApiError) -> HttpResponse {
    error.log();
    if error.status == StatusCode::SERVICE_UNAVAILABLE {
        return busy(shared, key, nonce, error.message);
    }
    signed(
        key,
        nonce,
        error.status,
        &ErrorBody::new(error.code, error.message),
    )
}

/// A response MAC'd with the agent's key and bound to its request's nonce.
fn signed<T: Serialize>(key: &AgentKey, nonce: &str, status: StatusCode, body: &T) -> HttpResponse {
    signed_text(key, nonce, status, &messages::encode(body))
}

/// [`signed`] for a body already encoded (an answer shared by many agents).
fn signed_text(key: &AgentKey, nonce: &str, status: StatusCode, text: &str) -> HttpResponse {
    let mac = ward_proto::sign_response(key, nonce, status.as_u16(), text.as_bytes());
    let mut response = crate::api::json_text(status, text.to_string());
    if let Ok(value) = HeaderValue::from_str(&mac) {
        response.headers_mut().insert(header::MAC, value);
    }
    response
}

/// The key of an agent with `agent_public`, derived with the server's current agreement key
/// (enrollment's), as the cache keeps it.
fn agent_key(shared: &App, agent_public: &[u8]) -> Option<KnownKey> {
    let agreement = shared.agreement();
    Some(KnownKey {
        key: agreement.current.derive(agent_public)?,
        server_key: agreement.current.sha256.clone(),
        agent_public: agent_public.into(),
    })
}

/// The versions an agent reports, in ward's spelling; unknown words are dropped.
fn versions(host: &HostReport) -> Vec<String> {
    host.tls_versions
        .iter()
        .filter_map(|v| TlsVersion::parse_loose(v))
        .map(|v| v.name().to_string())
        .collect()
}

fn clip(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

/// The name an agent is listed under: its `--name`, else its host name.
fn display_name(host: &HostReport) -> String {
    let name = host
        .name
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or(&host.hostname);
    clip(name, 255)
}

pub async fn enroll(shared: &App, role: Role, body: Bytes) -> HttpResponse {
    let request: EnrollRequest = match messages::decode("enrollment request", &body) {
        Ok(request) => request,
        Err(error) => return refuse(StatusCode::BAD_REQUEST, "bad_request", error.to_string()),
    };
    let Some(public) = unhex(&request.agent_public).ok().filter(|b| b.len() == 32) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "agent_public: 32 bytes, hex",
        );
    };
    let now = now_ms();
    if now.abs_diff(request.time_ms) > ward_proto::MAX_SKEW_MS as u64 {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "stale",
            "the enrollment time is too far from the server's clock",
        );
    }
    let Some(known) = agent_key(shared, &public) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "agent_public is not a usable X25519 key",
        );
    };
    let key = known.key.clone();
    let store = shared.store.clone();
    let lookup = request.token_lookup.clone();
    let found = match blocking(move || Ok(store.token_by_lookup(&lookup)?)).await {
        Ok(found) => found,
        Err(error) => return failed(error),
    };
    let Some(token) = found else {
        return refuse(
            StatusCode::FORBIDDEN,
            "unknown_token",
            "unknown enrollment token",
        );
    };
    // The proof covers the token, the freshness, the key and the identity claimed, so none of
    // them can be changed on the way.
    let statement = proof::statement(
        &token.token_sha256,
        &request.nonce,
        request.time_ms,
        &hex(&public),
        request.agent.as_deref(),
    );
    if !proof::proof_matches(&key, &statement, &request.proof) {
        return refuse(
            StatusCode::FORBIDDEN,
            "bad_proof",
            "the enrollment proof does not match the token",
        );
    }
    if let Some(reason) = token.refusal(now) {
        return refuse(StatusCode::FORBIDDEN, "token_unusable", reason);
    }
    if role == Role::ClientsHttp && !token.allow_http {
        return refuse(
            StatusCode::FORBIDDEN,
            "https_required",
            "this token does not allow enrollment over plain HTTP: enroll over HTTPS, or use a token created with --allow-http",
        );
    }
    let fresh = shared.replay.with(|replay| {
        replay.check_and_remember(&format!("enroll:{}", hex(&public)), &request.nonce, now)
    });
    if !fresh {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "replayed",
            "this enrollment was already received (replay)",
        );
    }
    // Re-registration: an agent that proves it holds the key on record for its id moves into
    // the token's group and keeps its identity (the seed's communication-settings drop).
    if let Some(existing) = request.agent.clone() {
        let store = shared.store.clone();
        let handed = shared.handed();
        let public_hex = hex(&public);
        let token = token.clone();
        let token_id = token.id;
        let group = token.group;
        let lookup = request.token_lookup.clone();
        let result = blocking(move || {
            if store.agent_public_key(&existing)?.as_deref() != Some(public_hex.as_str()) {
                return Ok(None);
            }
            let applied = with_token(&*store, &lookup, token, now, |token| Change {
                tree_version: None,
                mutation: Mutation::Reregister {
                    agent: existing.clone(),
                    group,
                    token,
                },
                bump_groups: vec![],
                bump_agents: vec![existing.clone()],
                audit: AuditEntry {
                    id: 0,
                    at_ms: now,
                    actor: format!("agent:{existing}"),
                    action: "agent.reregister".into(),
                    target: existing.clone(),
                    before: None,
                    after: Some(json!({"token": token_id})),
                },
            })?;
            let applied = match applied {
                Ok(applied) => applied,
                Err(reason) => return Ok(Some(Err(reason))),
            };
            let settings = group_settings(&*store, group, applied.serial.unwrap_or(1), &handed)?;
            Ok(Some(Ok(EnrollResponse {
                agent: existing,
                settings,
            })))
        })
        .await;
        match result {
            Ok(Some(Ok(answer))) => {
                shared.fleet_changed();
                return signed(&key, &request.nonce, StatusCode::OK, &answer);
            }
            Ok(Some(Err(reason))) => {
                return refuse(StatusCode::FORBIDDEN, "token_unusable", reason);
            }
            Ok(None) => {} // not that agent's key: a new enrollment below
            Err(error) => return failed(error),
        }
    }
    let mut id = [0u8; 16];
    openssl::rand::rand_bytes(&mut id).expect("the system has randomness");
    let id = hex(&id);
    let host = &request.host;
    let reported = request.hello.as_deref().and_then(reported_hello);
    let record = AgentRecord {
        id: id.clone(),
        hostname: display_name(host),
        os_name: clip(&host.os_name, 64),
        os_version: clip(&host.os_version, 64),
        agent_version: clip(&host.agent_version, 64),
        tls_versions: versions(host),
        group: token.group,
        last_checkin_ms: None,
        channel: None,
        server: None,
        tls_version: None,
        tls_group: None,
        hello: None,
        serial: 1,
        acked_serial: 0,
        enrolled_ms: now,
        simulated: request.host.simulated,
        reverted: None,
        reported_hello: reported.as_ref().map(|(digest, _)| digest.clone()),
        peer: None,
    };
    // Enrollment is a path like the others: an agent whose own ClientHello shows that no
    // server of its group's list would take it is refused, with the reason, unless the
    // token accepts that (it then comes back to the server it enrolled through).
    if let (Some((_, hello)), false) = (&reported, token.accept_cut_off) {
        let store = shared.store.clone();
        let context = shared.tls.current(Role::Clients).context.clone();
        let hello = hello.clone();
        let group = token.group;
        match blocking(move || no_usable_server(&*store, &context, group, &hello)).await {
            Ok(Some(why)) => {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "would_cut_off",
                    format!(
                        "{why}. Enroll it with a token for a group whose server list has an \
                         HTTP entry, or create the token with --accept-cut-off (the agent then \
                         keeps using the server it enrolled through)"
                    ),
                )
            }
            Ok(None) => {}
            Err(error) => return failed(error),
        }
    }
    let store = shared.store.clone();
    let handed = shared.handed();
    let public_hex = hex(&public);
    let agent_id = id.clone();
    let group = token.group;
    let lookup = request.token_lookup.clone();
    let result = blocking(move || {
        let token_id = token.id;
        let applied = with_token(&*store, &lookup, token, now, |token| Change {
            tree_version: None,
            mutation: Mutation::Enroll {
                agent: Box::new(record.clone()),
                public_key: public_hex.clone(),
                token,
            },
            bump_groups: vec![],
            bump_agents: vec![],
            audit: AuditEntry {
                id: 0,
                at_ms: now,
                actor: format!("agent:{agent_id}"),
                action: "agent.enroll".into(),
                target: agent_id.clone(),
                before: None,
                after: Some(json!({"token": token_id})),
            },
        })?;
        if applied.is_ok() {
            if let Some((digest, bytes)) = reported {
                // The stack's own hello, kept like an observed one: a plan replays it.
                store.record_telemetry(&TelemetryBatch {
                    hellos: vec![HelloSeen {
                        digest,
                        bytes,
                        at_ms: now,
                        count: 1,
                    }],
                    ..TelemetryBatch::default()
                })?;
            }
        }
        match applied {
            Ok(_) => group_settings(&*store, group, 1, &handed).map(Ok),
            Err(reason) => Ok(Err(reason)),
        }
    })
    .await;
    match result {
        Ok(Ok(settings)) => {
            shared.agent_keys.insert(&id, known);
            let answer = EnrollResponse {
                agent: id,
                settings,
            };
            signed(&key, &request.nonce, StatusCode::OK, &answer)
        }
        Ok(Err(reason)) => refuse(StatusCode::FORBIDDEN, "token_unusable", reason),
        Err(error) => failed(error),
    }
}

/// Why an agent whose stack sends `hello` could use no server of `group`'s list: `None` when
/// the list has an HTTP entry (clients-http has no TLS to refuse), or the clients listener
/// serves its hello (replayed in memory, as a plan does); else the words.
fn no_usable_server(
    store: &dyn Store,
    clients: &openssl::ssl::SslContext,
    group: i64,
    hello: &[u8],
) -> Result<Option<String>, ApiError> {
    let tree = crate::ops::tree_of(store)?;
    let Some(effective) = tree.effective(group) else {
        return Ok(None);
    };
    let lists = store.server_lists()?;
    let Some(list) = lists.iter().find(|l| l.name == effective.server_list) else {
        return Ok(None);
    };
    let entries: Vec<_> = list.levels.iter().flatten().collect();
    if entries
        .iter()
        .any(|e| e.protocol == ward_fleet::Protocol::Http)
    {
        return Ok(None);
    }
    match ward_tls::replay::replay(clients, hello) {
        ward_tls::replay::Verdict::Refused { reason } => {
            let offer = ward_tls::hello::parse_client_hello(hello)
                .map(|parsed| ward_tls::hello::describe_offer(&parsed))
                .unwrap_or_else(|_| "its ClientHello".into());
            let urls: Vec<String> = entries.iter().map(|e| e.url()).collect();
            Ok(Some(format!(
                "this agent's TLS stack ({offer}) can use no server of its group's list '{}' \
                 ({}): the clients listener refuses its ClientHello: {reason}",
                list.name,
                urls.join(", ")
            )))
        }
        _ => Ok(None),
    }
}

/// The most times an enrollment re-reads its token after another enrollment used it first:
/// each retry means another one succeeded, so a loop this long means a burst of enrollments
/// on one token, answered 409 (`stale`, retryable) past it.
const TOKEN_RETRIES: usize = 32;

/// Applies the change `make` builds around one use of `token`, as read: when another
/// enrollment used (or an admin revoked) the token since, the store refuses it as stale and
/// the token is read again and its rule checked again (`TokenRecord::refusal`), so a token's
/// uses are never over-spent and its rule is stated once, above the store. `Err(reason)` when
/// the token no longer enrolls.
fn with_token(
    store: &dyn Store,
    lookup: &str,
    mut token: TokenRecord,
    now: i64,
    make: impl Fn(TokenUse) -> Change,
) -> Result<Result<Applied, &'static str>, ApiError> {
    let mut tries = 0;
    loop {
        match store.apply(&make(token.one_use())) {
            Ok(applied) => return Ok(Ok(applied)),
            Err(StoreError::Stale(_)) if tries < TOKEN_RETRIES => tries += 1,
            Err(error) => return Err(error.into()),
        }
        token = match store.token_by_lookup(lookup)? {
            Some(token) => token,
            None => return Ok(Err("the enrollment token was deleted")),
        };
        if let Some(reason) = token.refusal(now) {
            return Ok(Err(reason));
        }
    }
}

fn header_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// What checking a check-in's MAC found.
enum Verified {
    /// It verified under this key (its answer is signed with it), derived with the server
    /// agreement key of this SHA-256.
    Key(AgentKey, Arc<str>),
    /// No agent of that id.
    Unknown,
    Refused(AuthError),
}

/// Verifies a check-in under each key the agent may sign with: the one that verified last
/// (cached), then those derived with the server's current and next agreement keys (a key
/// rotation under way), each tried once. A forged MAC costs one HMAC while no rotation is
/// under way; the store is read only for an agent not seen since the start.
async fn verify_checkin(
    shared: &App,
    agent: &str,
    request: &ward_proto::Request<'_>,
    mac: &str,
) -> Result<Verified, ApiError> {
    let now = now_ms();
    let check = |key: &AgentKey| {
        shared
            .replay
            .with(|replay| ward_proto::verify_request(key, request, mac, now, replay))
    };
    let known = match shared.agent_keys.get(agent) {
        Some(known) => known,
        None => {
            let store = shared.store.clone();
            let id = agent.to_string();
            let public = blocking(move || Ok(store.agent_public_key(&id)?)).await?;
            match public
                .and_then(|p| unhex(&p).ok())
                .and_then(|p| agent_key(shared, &p))
            {
                Some(known) => known,
                None => return Ok(Verified::Unknown),
            }
        }
    };
    let agreement = shared.agreement();
    // A key derived with a server key that is no longer accepted (switched away from) is
    // never tried: only what the agent derives with the current or next key verifies.
    if agreement.keys().any(|k| k.sha256 == known.server_key) {
        match check(&known.key) {
            Ok(()) => {
                shared.agent_keys.insert(agent, known.clone());
                return Ok(Verified::Key(known.key, known.server_key));
            }
            Err(AuthError::BadMac) => {}
            Err(error) => return Ok(Verified::Refused(error)),
        }
    }
    for server_key in agreement.keys().filter(|k| k.sha256 != known.server_key) {
        let Some(key) = server_key.derive(&known.agent_public) else {
            continue;
        };
        match check(&key) {
            Ok(()) => {
                shared.agent_keys.insert(
                    agent,
                    KnownKey {
                        key: key.clone(),
                        server_key: server_key.sha256.clone(),
                        agent_public: known.agent_public.clone(),
                    },
                );
                return Ok(Verified::Key(key, server_key.sha256.clone()));
            }
            Err(AuthError::BadMac) => {}
            Err(error) => return Ok(Verified::Refused(error)),
        }
    }
    Ok(Verified::Refused(AuthError::BadMac))
}

/// A check-in's signature headers: the agent, its request's authentication and the MAC.
fn signed_checkin(headers: &HeaderMap) -> Option<(&str, RequestAuth, &str)> {
    let agent = header_value(headers, header::AGENT)?;
    let time_ms = header_value(headers, header::TIME)?.parse::<i64>().ok()?;
    let nonce = header_value(headers, header::NONCE)?;
    let mac = header_value(headers, header::MAC)?;
    let auth = RequestAuth {
        agent: agent.to_string(),
        time_ms,
        nonce: nonce.to_string(),
    };
    Some((agent, auth, mac))
}

/// A check-in the server has no room for (its agent listeners at their caps): verified like
/// any check-in, then shed with a signed 503 whose wait is spread over [`SHED_SPREAD`], so the
/// agent obeys it and the herd comes back spread out. Nothing is recorded. A request that
/// does not verify gets the unsigned 503 (which an agent treats as a transport failure).
pub async fn shed(
    shared: &App,
    role: Role,
    headers: &HeaderMap,
    body: Bytes,
    message: &str,
) -> HttpResponse {
    let unsigned = || crate::api::too_busy(message);
    let Some((agent, auth, mac)) = signed_checkin(headers) else {
        return unsigned();
    };
    let request = ward_proto::Request {
        method: "POST",
        path: CHECKIN_PATH,
        auth: &auth,
        body: &body,
    };
    match verify_checkin(shared, agent, &request, mac).await {
        Ok(Verified::Key(key, _)) => {
            shared
                .telemetry
                .metrics
                .ops
                .checkin_answered(role, crate::metrics::CheckinResult::Busy);
            busy(shared, &key, &auth.nonce, message)
        }
        _ => unsigned(),
    }
}

pub async fn checkin(
    shared: &App,
    role: Role,
    peer: std::net::SocketAddr,
    tls: Option<ConnTls>,
    claim: &crate::api::AddressClaim,
    headers: &HeaderMap,
    body: Bytes,
) -> HttpResponse {
    let response = checkin_answer(shared, role, peer, tls, claim, headers, body).await;
    let result = crate::metrics::CheckinResult::of_status(response.status().as_u16());
    shared.telemetry.metrics.ops.checkin_answered(role, result);
    response
}

/// A check-in verified and recorded: what its answer and its hold need, and no more (a held
/// check-in keeps this for minutes).
struct Admitted<'a> {
    agent: &'a str,
    key: AgentKey,
    nonce: String,
    acked_serial: i64,
    standing: Standing,
    wait: Duration,
    /// Subscribed before the check-in was recorded: no change after it is missed.
    wakes: tokio::sync::broadcast::Receiver<Arc<crate::wakes::Wake>>,
    reloads: tokio::sync::watch::Receiver<u64>,
}

#[allow(clippy::too_many_arguments)]
async fn checkin_answer(
    shared: &App,
    role: Role,
    peer: std::net::SocketAddr,
    tls: Option<ConnTls>,
    claim: &crate::api::AddressClaim,
    headers: &HeaderMap,
    body: Bytes,
) -> HttpResponse {
    // Verified and recorded in its own box, freed before the hold: a held check-in's state
    // keeps room only for the hold (thousands are held; see checkin_conn).
    let admitted = match Box::pin(admit(shared, role, peer, tls, claim, headers, body)).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    hold_and_answer(shared, tls, admitted).await
}

/// Verifies and records a check-in; the answer when it goes no further.
#[allow(clippy::too_many_arguments)]
async fn admit<'a>(
    shared: &App,
    role: Role,
    peer: std::net::SocketAddr,
    tls: Option<ConnTls>,
    claim: &crate::api::AddressClaim,
    headers: &'a HeaderMap,
    body: Bytes,
) -> Result<Admitted<'a>, HttpResponse> {
    let started = std::time::Instant::now();
    let Some((agent, auth, mac)) = signed_checkin(headers) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "unsigned",
            "a check-in must carry X-Ward-Agent, X-Ward-Time, X-Ward-Nonce and X-Ward-Mac",
        ));
    };
    let nonce = auth.nonce.as_str();
    let request = ward_proto::Request {
        method: "POST",
        path: CHECKIN_PATH,
        auth: &auth,
        body: &body,
    };
    let (key, server_key) = match verify_checkin(shared, agent, &request, mac).await {
        Ok(Verified::Key(key, server_key)) => (key, server_key),
        Ok(Verified::Unknown) => {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "unknown_agent",
                "unknown agent: enroll again, or import a settings package",
            ))
        }
        Ok(Verified::Refused(error)) => {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                format!("agent {agent}: {error}"),
            ))
        }
        Err(error) => return Err(failed(error)),
    };
    // Proven to be an agent: from now on this connection counts against the agent (one held
    // check-in each), not against its address.
    claim.release();
    let report: CheckinRequest = match messages::decode("check-in request", &body) {
        Ok(report) => report,
        Err(error) => {
            ApiError::agent(StatusCode::BAD_REQUEST, "bad_request", error.to_string()).log();
            return Err(signed(
                &key,
                nonce,
                StatusCode::BAD_REQUEST,
                &ErrorBody::new("bad_request", error.to_string()),
            ));
        }
    };
    let checkin = Checkin {
        agent: agent.to_string(),
        at_ms: now_ms(),
        acked_serial: report.acked_serial,
        hostname: display_name(&report.host),
        os_name: clip(&report.host.os_name, 64),
        os_version: clip(&report.host.os_version, 64),
        agent_version: clip(&report.host.agent_version, 64),
        tls_versions: versions(&report.host),
        channel: if role.is_tls() {
            "https".into()
        } else {
            "http".into()
        },
        server: clip(&report.server, 255),
        tls_version: tls.map(|t| t.version.name().to_string()),
        tls_group: tls.and_then(|t| t.group).map(str::to_string),
        hello: tls.and_then(|t| t.hello).map(|digest| hex(&digest)),
        peer: Some(peer.ip().to_canonical().to_string()),
        // Kept with the check-in, durably: the replay window survives a restart.
        nonce: Some(nonce.to_string()),
        trusted_cas: trusted_cas(&report.trusted_cas),
        agreement_key: Some(server_key.to_string()),
        reverted: report
            .reverted
            .as_ref()
            .map(|r| (r.serial, clip(&r.failures_text(), 1000))),
        reported_hello: report.hello.as_deref().and_then(reported_hello),
    };
    let wait = Duration::from_millis(report.wait_ms).min(MAX_WAIT);
    let wakes = shared.wakes.subscribe();
    let reloads = shared.tls_generation.subscribe();
    let recorded = match shared.checkins.record(checkin.clone()).await {
        Ok(Some(recorded)) => recorded,
        Ok(None) => {
            return Err(refuse(
                StatusCode::UNAUTHORIZED,
                "unknown_agent",
                "unknown agent",
            ))
        }
        Err(error) => return Err(failed_signed(shared, &key, nonce, ApiError::from(error))),
    };
    // A collector reads who checked in, through which listener, from where, as fields.
    tracing::debug!(
        agent,
        listener = role.name(),
        %peer,
        channel = checkin.channel.as_str(),
        tls_version = checkin.tls_version.as_deref(),
        acked_serial = checkin.acked_serial,
        serial = recorded.standing.serial,
        touch = recorded.record.is_none(),
        "check-in recorded"
    );
    shared
        .telemetry
        .metrics
        .ops
        .checkin_recorded(role, started.elapsed());
    let reverted_now = recorded.record.as_ref().and_then(|record| {
        record
            .reverted
            .as_ref()
            .filter(|r| r.at_ms == checkin.at_ms && checkin.reverted.is_some())
    });
    if let Some(reverted) = reverted_now {
        shared.telemetry.metrics.agent_reverted();
        tracing::warn!(
            agent,
            listener = role.name(),
            %peer,
            reason = reverted.reason.as_str(),
            "an agent went back to the last settings that worked"
        );
    }
    Ok(Admitted {
        agent,
        key,
        nonce: nonce.to_string(),
        acked_serial: checkin.acked_serial,
        standing: recorded.standing,
        wait,
        wakes,
        reloads,
    })
}

/// Holds a push check-in until its agent's settings change (or the wait runs out, the agent
/// comes back on another connection, a reload or the shutdown), then answers it.
async fn hold_and_answer(
    shared: &App,
    tls: Option<ConnTls>,
    admitted: Admitted<'_>,
) -> HttpResponse {
    let Admitted {
        agent,
        key,
        nonce,
        acked_serial,
        mut standing,
        wait,
        mut wakes,
        mut reloads,
    } = admitted;
    let nonce = nonce.as_str();
    let deadline = tokio::time::Instant::now() + wait;
    // New settings for it: a newer serial than it acknowledged, unless it is the one it
    // reverted from (it is not handed again; a change gives a new one).
    let due = |standing: &Standing| standing.serial > acked_serial && !standing.refuses_serial;
    // Push: hold the request until the agent's settings change, or the wait runs out.
    let _held = (!wait.is_zero()).then(|| shared.held.hold(agent));
    let mut shutdown = shared.shutdown.subscribe();
    // A connection accepted under settings a reload has replaced is not held: the agent
    // reconnects under the new ones (which may refuse it: that is the point).
    let outdated =
        |reloads: &tokio::sync::watch::Receiver<u64>| crate::api::outdated(tls, *reloads.borrow());
    let held_for_a_change = !wait.is_zero() && !due(&standing);
    let mut woken_at = None;
    // Counted from the wake until the answer is made: new handshakes wait for it.
    let mut _answering = None;
    while !due(&standing) && tokio::time::Instant::now() < deadline {
        if *shutdown.borrow() || outdated(&reloads) {
            break;
        }
        let wake = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            // The agent came back on another connection: that one is held, this one ends.
            _ = superseded(_held.as_ref()) => break,
            wake = wakes.recv() => match wake {
                // A change for other agents: keep waiting, no database read.
                Ok(wake) if !wake.concerns(agent, standing.group) => continue,
                // For this agent: its record from the one read the change makes for all it
                // concerns.
                Ok(wake) => Some(wake),
                // Too many to tell (lagged): read the record again, alone.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = shutdown.changed() => break,
            _ = reloads.changed() => continue,
        };
        woken_at = wake.as_ref().map(|w| w.at);
        let delivering = shared.deliveries.start();
        let shared_read = match wake {
            Some(wake) => Box::pin(wake.record(&shared.store, agent)).await,
            None => None,
        };
        let updated = match shared_read {
            Some(record) => Ok(record),
            None => {
                let store = shared.store.clone();
                let id = agent.to_string();
                Box::pin(blocking(move || Ok(store.agent(&id)?))).await
            }
        };
        match updated {
            Ok(Some(updated)) => standing = Standing::from(&updated),
            _ => break,
        }
        if due(&standing) {
            _answering = Some(delivering);
        }
    }
    let response = if due(&standing) {
        match Box::pin(cached_answer(shared, standing.group, standing.serial)).await {
            Ok(answer) => signed_text(&key, nonce, StatusCode::OK, &answer),
            Err(error) => return failed_signed(shared, &key, nonce, error),
        }
    } else {
        let answer = CheckinResponse {
            serial: standing.serial,
            settings: None,
        };
        signed(&key, nonce, StatusCode::OK, &answer)
    };
    if held_for_a_change && due(&standing) {
        // A held check-in that returns with new settings: a wake-up delivered.
        shared
            .telemetry
            .metrics
            .ops
            .woken(woken_at.map(|at| at.elapsed()));
    }
    response
}

/// A ClientHello an agent reports of its own stack (hex): its fingerprint (hex) and bytes,
/// when it is one (`ward_tls::hello::reported_fingerprint`); anything else is left out.
fn reported_hello(text: &str) -> Option<(String, Vec<u8>)> {
    if text.len() > 2 * ward_tls::hello::MAX_REPORTED_HELLO {
        return None;
    }
    let bytes = unhex(text).ok()?;
    let fingerprint = ward_tls::hello::reported_fingerprint(&bytes)?;
    Some((hex(&fingerprint), bytes))
}

/// Resolves when a newer check-in of the same agent is held (never for a check-in that is
/// not held).
async fn superseded(held: Option<&crate::channel::Held<'_>>) {
    match held {
        Some(held) => held.superseded().await,
        None => std::future::pending().await,
    }
}

/// The CAs an agent reports it trusts, as the store keeps them: SHA-256 fingerprints (64
/// lowercase hex digits), sorted, comma-separated; at most 8, anything else left out. `None`
/// when it reported none (an agent older than CA rotation).
fn trusted_cas(reported: &[String]) -> Option<String> {
    let mut prints: Vec<&str> = reported
        .iter()
        .map(String::as_str)
        .filter(|p| {
            p.len() == 64
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .take(8)
        .collect();
    prints.sort_unstable();
    prints.dedup();
    (!prints.is_empty()).then(|| prints.join(","))
}

/// How long settings wait for this server to take a change of the site's files it heard of.
const SITE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The answer that hands `group`'s settings at `serial` (`CheckinResponse`, encoded),
/// computed and encoded once per (group, serial) while no admin change intervenes.
async fn cached_answer(shared: &App, group: i64, serial: i64) -> Result<Arc<str>, ApiError> {
    let version = *shared.fleet_version.borrow();
    if let Some(answer) = shared.settings_cache.get(version, group, serial) {
        return Ok(answer);
    }
    // On a site, a change of its CAs or keys another server made is taken first: a serial
    // it bumped must not be answered with what it replaced.
    shared.site.current(SITE_WAIT).await;
    let store = shared.store.clone();
    let handed = shared.handed();
    let settings = blocking(move || group_settings(&*store, group, serial, &handed)).await?;
    let answer: Arc<str> = messages::encode(&CheckinResponse {
        serial,
        settings: Some(settings),
    })
    .into();
    shared
        .settings_cache
        .insert(version, group, serial, answer.clone());
    Ok(answer)
}

#[cfg(test)]
mod tests;
