//! One connection, from accept to close: the connection cap, the ClientHello read, the TLS
//! handshake with its timeout and telemetry, then HTTP/1.1 with keep-alive, header and idle
//! timeouts, and graceful shutdown.
//!
//! Everything here runs in the connection's own task, never in the accept loop, so one silent
//! client stalls nobody.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use openssl::ssl::{ErrorCode, Ssl};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_openssl::SslStream;
use tracing::{debug, info_span, Instrument};
use ward_tls::context::version_from_openssl;
use ward_tls::hello::{self, ClientHello, HelloError};

use crate::checkin_conn::{self, First};
use crate::config::Role;
use crate::failure::{self, HandshakeEnd};
use crate::http;
use crate::io::{Activity, Buffered, Tracked};
use crate::metrics::HandshakeResult;
use crate::records::{HandOver, TlsConn};
use crate::state::App;
use crate::telemetry::FailureReport;

/// Closes the gauge when the connection ends, however it ends.
struct OpenGuard {
    shared: Arc<App>,
    role: Role,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.shared.telemetry.metrics.connection_closed(self.role);
    }
}

/// A connection's places under the caps: its listener's, and for an agent listener the
/// agent listeners' shared pool. Given back when the connection ends.
pub struct Slots {
    _listener: OwnedSemaphorePermit,
    _pool: Option<OwnedSemaphorePermit>,
}

impl Slots {
    pub fn new(listener: OwnedSemaphorePermit, pool: Option<OwnedSemaphorePermit>) -> Slots {
        Slots {
            _listener: listener,
            _pool: pool,
        }
    }
}

/// Serves an accepted connection that holds a slot under the listener's cap.
pub async fn serve(
    shared: Arc<App>,
    role: Role,
    tcp: TcpStream,
    peer: SocketAddr,
    permit: Slots,
    claim: crate::api::AddressClaim,
) {
    shared.telemetry.metrics.connection_opened(role);
    let claim = Arc::new(claim);
    let _guard = OpenGuard {
        shared: shared.clone(),
        role,
    };
    let _permit = permit;
    let _ = tcp.set_nodelay(true);
    let span = info_span!("connection", listener = role.name(), %peer);
    async move {
        if role.is_tls() {
            // Read before the acceptor is taken: a connection never pairs old settings with
            // a newer generation (reload swaps the settings first, then bumps it).
            let generation = *shared.tls_generation.borrow();
            // Boxed, each phase: a held push connection keeps only its HTTP phase's state,
            // not room for the handshake's as well (its task is as large as its largest
            // phase otherwise).
            if let Some(done) = Box::pin(handshake(&shared, role, tcp, peer)).await {
                let tls = done.version.map(|version| crate::api::ConnTls {
                    version,
                    group: done.group,
                    hello: Some(done.hello),
                    generation,
                });
                let accepted = Accepted {
                    role,
                    tls,
                    peer,
                    claim,
                    socket: done.socket,
                };
                let stream = TlsConn::new(done.stream);
                Box::pin(serve_agent_or_http(shared, accepted, stream)).await;
            }
        } else {
            let accepted = Accepted {
                role,
                tls: None,
                peer,
                claim,
                socket: tcp.as_raw_fd(),
            };
            Box::pin(serve_agent_or_http(shared, accepted, tcp)).await;
        }
    }
    .instrument(span)
    .await
}

/// Reads from `tcp` until `buffer` holds a whole ClientHello, or the peer stops. The record
/// headers say how much is needed; the hello is parsed once, when it is all there.
async fn read_client_hello(
    tcp: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> Result<ClientHello, HelloError> {
    loop {
        match hello::needed_len(buffer)? {
            Some(needed) if buffer.len() >= needed => return hello::parse_client_hello(buffer),
            _ => {}
        }
        buffer.reserve(4096);
        match tcp.read_buf(buffer).await {
            Ok(0) | Err(_) => return Err(HelloError::Incomplete),
            Ok(_) => {}
        }
    }
}

type TlsStream = SslStream<Buffered<TcpStream>>;

/// The TLS handshake, bounded by the handshake timeout, with telemetry either way.
/// A finished handshake: the stream, and what was negotiated and offered.
struct Handshaken {
    stream: TlsStream,
    /// The TCP socket under the stream.
    socket: std::os::fd::RawFd,
    version: Option<ward_tls::TlsVersion>,
    group: Option<&'static str>,
    /// The fingerprint of the client's ClientHello.
    hello: [u8; 32],
}

async fn handshake(
    shared: &Arc<App>,
    role: Role,
    mut tcp: TcpStream,
    peer: SocketAddr,
) -> Option<Handshaken> {
    let timeout = shared.config.limits.handshake_timeout;
    let started = Instant::now();
    let deadline = started + timeout;
    let mut buffer = Vec::with_capacity(1024);
    let hello = match tokio::time::timeout(timeout, read_client_hello(&mut tcp, &mut buffer)).await
    {
        Ok(result) => result,
        Err(_) => {
            let range = shared.tls.current(role).policy.protocol.range;
            report_failure(
                shared,
                role,
                range,
                peer,
                Err(&HelloError::Incomplete),
                &HandshakeEnd::TimedOut,
            );
            return None;
        }
    };
    if buffer.is_empty() {
        // Connected and closed without a byte: a TCP health check or a port probe. Counted,
        // not recorded one by one.
        shared
            .telemetry
            .metrics
            .failure_only(role, crate::failure::FailureKind::Closed);
        return None;
    }
    // The listener's settings are taken once, here: a reload later does not touch this
    // connection.
    let tls = shared.tls.current(role);
    let range = tls.policy.protocol.range;
    let hello = match hello {
        Ok(hello) => hello,
        Err(error) => {
            if error == HelloError::NotTls && looks_like_http(&buffer) {
                let _ = tcp
                    .write_all(&plain_response(400, "this port speaks HTTPS: use https://"))
                    .await;
            }
            report_failure(
                shared,
                role,
                range,
                peer,
                Err(&error),
                &HandshakeEnd::Closed,
            );
            return None;
        }
    };
    // What this client really sent, kept (deduplicated) for exact plans: replayed through a
    // proposed listener, it says whether the change would cut this client off.
    let hello_digest = shared.telemetry.hello(role, peer.ip(), &hello, &buffer);
    if role.serves_agent_api() {
        // Held agents a change woke are answered first (`channel::Deliveries`).
        let remaining = deadline.saturating_duration_since(Instant::now());
        shared
            .deliveries
            .wait(crate::channel::DELIVERIES_FIRST.min(remaining))
            .await;
    }
    let mut ssl = match Ssl::new(&tls.context) {
        Ok(ssl) => ssl,
        Err(error) => {
            tracing::error!(%error, "cannot create a TLS session");
            return None;
        }
    };
    if role.serves_agent_api() {
        // A kept connection's records leave OpenSSL later (`records`): watched from the start.
        ward_tls::handoff::watch(&mut ssl);
    }
    let socket = tcp.as_raw_fd();
    let mut stream = SslStream::new(ssl, Buffered::new(buffer, tcp)).ok()?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    let end = match tokio::time::timeout(remaining, Pin::new(&mut stream).accept()).await {
        Ok(Ok(())) => {
            let ssl = stream.ssl();
            let cipher = ssl.current_cipher().map(|c| c.name()).unwrap_or("");
            let group = ward_tls::ffi::negotiated_group(ssl);
            // The client's key share is spent: about 7 KiB of a held push connection with
            // X25519MLKEM768, which OpenSSL would keep until the connection ends.
            ward_tls::ffi::release_peer_key_share(ssl);
            let negotiated = version_from_openssl(ssl.version_str());
            if let Some(version) = negotiated {
                debug!(
                    version = version.name(),
                    cipher,
                    group,
                    resumed = ssl.session_reused(),
                    "handshake"
                );
                shared.telemetry.handshake(
                    role,
                    peer.ip(),
                    version,
                    cipher,
                    group,
                    ssl.session_reused(),
                );
            }
            let result = if ssl.session_reused() {
                HandshakeResult::Resumed
            } else {
                HandshakeResult::Full
            };
            shared
                .telemetry
                .metrics
                .ops
                .handshake(role, result, started.elapsed());
            return Some(Handshaken {
                stream,
                socket,
                version: negotiated,
                group,
                hello: hello_digest,
            });
        }
        Ok(Err(error)) => {
            let reason = error
                .ssl_error()
                .and_then(|stack| stack.errors().first())
                .and_then(|e| e.reason())
                .map(str::to_string);
            // A suite was chosen: the server's hello went out, and the client left after it.
            // (Below TLS 1.3 the chosen suite is pending until the handshake finishes.)
            let chosen = ward_tls::ffi::chosen_cipher(stream.ssl()).map(|c| c.name());
            let refused_by_alert = reason.as_deref().is_some_and(|r| r.contains("alert"));
            if let (Some(cipher), false) = (chosen, refused_by_alert) {
                HandshakeEnd::Abandoned {
                    version: stream.ssl().version_str().to_string(),
                    cipher: cipher.to_string(),
                }
            } else if reason.is_none()
                && (error.code() == ErrorCode::SYSCALL || error.code() == ErrorCode::ZERO_RETURN)
            {
                HandshakeEnd::Closed
            } else {
                HandshakeEnd::OpenSsl(reason)
            }
        }
        Err(_) => HandshakeEnd::TimedOut,
    };
    shared
        .telemetry
        .metrics
        .ops
        .handshake(role, HandshakeResult::Failed, started.elapsed());
    report_failure(shared, role, range, peer, Ok(&hello), &end);
    None
}

fn report_failure(
    shared: &App,
    role: Role,
    range: ward_tls::VersionRange,
    peer: SocketAddr,
    hello: Result<&ClientHello, &HelloError>,
    end: &HandshakeEnd,
) {
    let timeout_secs = shared.config.limits.handshake_timeout.as_secs();
    let (kind, reason) = failure::classify(hello, range, end, timeout_secs);
    let (offered_max, offered_versions) = match hello {
        Ok(hello) => {
            let (max, versions) = failure::offered(hello);
            (Some(max), versions)
        }
        Err(_) => (None, Vec::new()),
    };
    let offered = offered_max.clone().unwrap_or_else(|| "-".into());
    let report = FailureReport {
        role,
        peer: peer.to_string(),
        offered_max,
        offered_versions,
        server_name: hello.ok().and_then(|h| h.server_name.clone()),
        kind,
        reason: reason.clone(),
    };
    // Logged when recorded: the same rate limit keeps a flood out of the log.
    if shared.telemetry.failure(report) {
        tracing::info!(
            listener = role.name(),
            %peer,
            kind = kind.name(),
            reason,
            offered,
            "handshake failed"
        );
    }
}

fn looks_like_http(buffer: &[u8]) -> bool {
    [
        "GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ",
    ]
    .iter()
    .any(|m| buffer.starts_with(m.as_bytes()))
}

/// A complete HTTP/1.1 response written by hand, for the moments before or instead of hyper:
/// the connection cap and plain HTTP on a TLS port.
pub fn plain_response(status: u16, message: &str) -> Vec<u8> {
    let (reason, code) = match status {
        400 => ("Bad Request", "bad_request"),
        _ => ("Service Unavailable", "too_busy"),
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Retry-After: 5\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Who a connection is, once accepted (and its TLS handshaken).
struct Accepted {
    role: Role,
    tls: Option<crate::api::ConnTls>,
    peer: SocketAddr,
    claim: Arc<crate::api::AddressClaim>,
    /// The TCP socket under the stream (valid while the stream lives).
    socket: std::os::fd::RawFd,
}

/// On an agent listener, a check-in first (`checkin_conn`: a held one keeps no HTTP
/// buffers), then hyper for anything else; hyper alone elsewhere.
async fn serve_agent_or_http<S>(shared: Arc<App>, accepted: Accepted, stream: S)
where
    S: AsyncRead + AsyncWrite + HandOver + Unpin + Send + 'static,
{
    if !accepted.role.serves_agent_api() {
        return serve_http(shared, accepted, stream).await;
    }
    let Accepted {
        role,
        tls,
        peer,
        ref claim,
        socket,
    } = accepted;
    let first = Box::pin(checkin_conn::serve(
        &shared, role, tls, peer, claim, socket, stream,
    ))
    .await;
    if let First::Hyper {
        mut stream,
        keep_alive,
    } = first
    {
        // A kept connection's requests for hyper go through ward's record layer: cheaper per
        // request than OpenSSL's. One request then a close is left to OpenSSL (the hand-over's
        // key derivation would cost more than it saves).
        if let Some(inner) = stream.get_mut().filter(|_| keep_alive) {
            crate::records::hand_over_counted(inner, &shared.telemetry.metrics.ops);
        }
        Box::pin(serve_http(shared, accepted, stream)).await;
    }
}

/// HTTP/1.1 on an established stream until the client goes, the idle timeout passes, or the
/// server shuts down (in-flight requests finish first).
async fn serve_http<S>(shared: Arc<App>, accepted: Accepted, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        role,
        tls,
        peer,
        claim,
        socket: _,
    } = accepted;
    let activity = Activity::new();
    let io = TokioIo::new(Tracked::new(stream, activity.clone()));
    let limits = shared.config.limits.clone();
    let service_shared = shared.clone();
    let service = service_fn(move |request| {
        let shared = service_shared.clone();
        let claim = claim.clone();
        async move { Ok::<_, Infallible>(http::handle(&shared, role, tls, peer, &claim, request).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut shutdown = shared.shutdown.subscribe();
    let mut closing = *shutdown.borrow();
    if closing {
        connection.as_mut().graceful_shutdown();
    }
    let tick = (limits.idle_timeout / 4).max(Duration::from_millis(50));
    // Once closing, the connection gets the shutdown grace to finish its request; then it is
    // dropped, so a client that stalls mid-request cannot keep its slot.
    let mut hard_deadline = closing.then(|| tokio::time::Instant::now() + limits.shutdown_grace);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    debug!(%error, "connection ended with an error");
                }
                return;
            }
            changed = shutdown.changed(), if !closing => {
                let _ = changed;
                closing = true;
                hard_deadline = Some(tokio::time::Instant::now() + limits.shutdown_grace);
                connection.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(tick), if !closing => {
                if activity.idle_for() >= limits.idle_timeout {
                    debug!("idle timeout");
                    closing = true;
                    hard_deadline = Some(tokio::time::Instant::now() + limits.shutdown_grace);
                    connection.as_mut().graceful_shutdown();
                }
            }
            _ = tokio::time::sleep_until(hard_deadline.unwrap_or_else(tokio::time::Instant::now)), if hard_deadline.is_some() => {
                debug!("closing deadline passed; dropping the connection");
                return;
            }
        }
    }
}

/// A connection beyond the listener's cap: a clear 503 (after the handshake on TLS listeners,
/// so the client can read it), then close. On an agent listener the one request is read, so a
/// check-in is shed with a signed 503 and a spread-out wait the agent obeys (`http::shed`).
pub async fn refuse(
    shared: Arc<App>,
    role: Role,
    tcp: TcpStream,
    permit: OwnedSemaphorePermit,
    limit: String,
) {
    let _permit = permit;
    shared.telemetry.metrics.connection_refused(role);
    let message = format!("the {role} listener is at its limit of {limit}; retry later");
    let response = plain_response(503, &message);
    let timeout = shared.config.limits.handshake_timeout;
    let _ = tokio::time::timeout(timeout, async {
        if role.is_tls() {
            let tls = shared.tls.current(role);
            let Ok(ssl) = Ssl::new(&tls.context) else {
                return;
            };
            let Ok(mut stream) = SslStream::new(ssl, tcp) else {
                return;
            };
            if Pin::new(&mut stream).accept().await.is_ok() {
                answer_refused(&shared, role, stream, &message, &response).await;
            }
        } else {
            answer_refused(&shared, role, tcp, &message, &response).await;
        }
    })
    .await;
}

/// How long a connection beyond the caps may take to send its request before it gets the
/// plain 503.
const REFUSED_REQUEST_WAIT: Duration = Duration::from_secs(1);

/// A refused connection's answer: on an agent listener, its one request through `http::shed`;
/// elsewhere the plain 503 `response`.
async fn answer_refused<S>(
    shared: &Arc<App>,
    role: Role,
    mut stream: S,
    message: &str,
    response: &[u8],
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // An agent sends its request as soon as it is connected; a connection that says nothing
    // for a moment (an idle flood) gets the plain 503 at once, not a slot until a timeout.
    let mut first = vec![0u8; 4096];
    let read = match role.serves_agent_api() {
        true => tokio::time::timeout(REFUSED_REQUEST_WAIT, stream.read(&mut first)).await,
        false => Ok(Ok(0)),
    };
    let Ok(Ok(read @ 1..)) = read else {
        let _ = stream.write_all(response).await;
        let _ = stream.shutdown().await;
        return;
    };
    first.truncate(read);
    let stream = Buffered::new(first, stream);
    let service_shared = shared.clone();
    let message: Arc<str> = message.into();
    let service = service_fn(move |request| {
        let shared = service_shared.clone();
        let message = message.clone();
        async move { Ok::<_, Infallible>(http::shed(&shared, role, request, &message).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.limits.header_timeout)
        .keep_alive(false);
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
