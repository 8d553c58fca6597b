//! An agent listener's connection whose request is a check-in, served without hyper.
//!
//! A pull agent sends one request per connection; a push agent keeps its connection and holds
//! each check-in on it for minutes. Through hyper, every held check-in kept hyper's read and
//! write buffers (8 KiB each), its dispatcher and a pending read on the socket for the whole
//! hold. Here the head and body are read into one buffer that is freed before the check-in is
//! handled, so a held check-in keeps only its own state; the socket is watched for the agent
//! leaving, as hyper did, without a buffer.
//!
//! Only one shape of request is served here: `POST /agent/v1/checkin` over HTTP/1.1 with one
//! `Content-Length` within the check-in limit, no `Transfer-Encoding`, no `Expect`. Anything
//! else, or anything unusual about it, goes to hyper with the bytes read so far, so hyper
//! answers it exactly as before ([`First::Hyper`]). After a check-in whose client did not ask
//! to close, the connection waits for the next one (a push agent holds its next check-in on it).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;
use ward_proto::messages::CHECKIN_PATH;

use crate::api::{AddressClaim, ConnTls, HttpResponse};
use crate::config::Role;
use crate::io::Buffered;
use crate::records::HandOver;
use crate::state::App;

/// The largest request head served here; a larger one goes to hyper (which allows more).
const MAX_HEAD: usize = 8 * 1024;
/// The most header lines served here; more go to hyper.
const MAX_HEADERS: usize = 32;

/// What is left of a connection after [`serve`].
pub enum First<S> {
    /// Answered and closed, or closed (the client left, or a timeout passed).
    Done,
    /// For hyper: the stream, with the bytes read from it and not yet consumed, and whether
    /// its first request keeps the connection ([`keeps_alive`]).
    Hyper {
        stream: Buffered<S>,
        keep_alive: bool,
    },
}

/// What the head of a request says, when it is a check-in served here.
#[derive(Debug, PartialEq, Eq)]
struct CheckinHead {
    /// Bytes of the head, up to and including the blank line.
    head_len: usize,
    body_len: usize,
    headers: HeaderMap,
    /// The client asked to close after the answer (`Connection: close`).
    close: bool,
}

/// How the bytes read so far parse.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// The head is not all there yet.
    Partial,
    /// A check-in this module serves.
    Checkin(CheckinHead),
    /// Anything else: hyper's to answer.
    Other,
}

/// Whether the request whose head starts `buffer` keeps its connection for another: a whole
/// HTTP/1.1 head without `Connection: close`. Pure, table-tested.
fn keeps_alive(buffer: &[u8]) -> bool {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut lines);
    match request.parse(buffer) {
        Ok(httparse::Status::Complete(_)) if request.version == Some(1) => !request
            .headers
            .iter()
            .any(|line| line.name.eq_ignore_ascii_case("connection") && asks_to_close(line.value)),
        _ => false,
    }
}

/// A `Connection` header's value names `close`.
fn asks_to_close(value: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// Parses `buffer` as the start of a request: pure, table-tested.
fn parse(buffer: &[u8], body_limit: usize) -> Parsed {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut lines);
    let head_len = match request.parse(buffer) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buffer.len() < MAX_HEAD => return Parsed::Partial,
        _ => return Parsed::Other,
    };
    if head_len > MAX_HEAD
        || request.method != Some("POST")
        || request.path != Some(CHECKIN_PATH)
        || request.version != Some(1)
    {
        return Parsed::Other;
    }
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    let mut body_len = None;
    let mut close = false;
    for line in request.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line.name.as_bytes()),
            HeaderValue::from_bytes(line.value),
        ) else {
            return Parsed::Other;
        };
        if name == hyper::header::TRANSFER_ENCODING || name == hyper::header::EXPECT {
            return Parsed::Other;
        }
        if name == hyper::header::CONTENT_LENGTH {
            let length = std::str::from_utf8(line.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok());
            match (body_len, length) {
                (None, Some(length)) if length <= body_limit => body_len = Some(length),
                _ => return Parsed::Other,
            }
        }
        if name == hyper::header::CONNECTION {
            close |= asks_to_close(line.value);
        }
        headers.append(name, value);
    }
    match body_len {
        Some(body_len) => Parsed::Checkin(CheckinHead {
            head_len,
            body_len,
            headers,
            close,
        }),
        None => Parsed::Other,
    }
}

/// Serves the connection's check-ins while it carries them; hands anything else to hyper.
///
/// A check-in without `Connection: close` keeps the connection: a push agent holds its next
/// check-in on it, so a change's answer costs no teardown and its acknowledgement no
/// handshake. A kept connection waits for its next request up to the idle timeout, and is
/// closed (with its answer, or while it waits) once the listener's TLS settings are reloaded:
/// a connection never outlives the settings it was accepted under by more than one answer.
/// Closes a connection that stays silent past the header timeout (the idle timeout between
/// requests), or that the server shuts down between requests. `socket` is the TCP socket
/// under `stream`, corked for a last answer.
pub async fn serve<S>(
    shared: &App,
    role: Role,
    tls: Option<ConnTls>,
    peer: SocketAddr,
    claim: &AddressClaim,
    socket: std::os::fd::RawFd,
    mut stream: S,
) -> First<S>
where
    S: AsyncRead + AsyncWrite + HandOver + Unpin,
{
    let limits = &shared.config.limits;
    let mut shutdown = shared.shutdown.subscribe();
    let mut reloads = shared.tls_generation.subscribe();
    // Accepted under settings a reload has replaced since.
    let outdated =
        |reloads: &tokio::sync::watch::Receiver<u64>| crate::api::outdated(tls, *reloads.borrow());
    // Bytes of the next request read with the last one (agents pipeline none).
    let mut carried = Vec::new();
    let mut first = true;
    loop {
        let mut buffer = std::mem::take(&mut carried);
        let wait = if first {
            limits.header_timeout
        } else {
            limits.idle_timeout
        };
        // Each phase is boxed while it runs: the connection's task keeps room only for the
        // phase it is in (a held check-in waits for minutes; the whole function's state
        // machine, sized for its largest phase, was about 14.7 KiB).
        let head = Box::pin(tokio::time::timeout(wait, async {
            loop {
                match parse(&buffer, limits.checkin_body_bytes) {
                    Parsed::Partial => {}
                    Parsed::Checkin(head) => return Some(Some(head)),
                    Parsed::Other => return Some(None),
                }
                if buffer.capacity() - buffer.len() < 512 {
                    buffer.reserve(1024);
                }
                let read = tokio::select! {
                    read = stream.read_buf(&mut buffer) => read,
                    _ = shutdown.wait_for(|closing| *closing), if buffer.is_empty() => return None,
                    // A kept connection between requests: closed with the settings it was
                    // accepted under.
                    _ = reloads.wait_for(|now| crate::api::outdated(tls, *now)), if buffer.is_empty() && !first => return None,
                };
                match read {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        }))
        .await;
        let head = match head {
            Ok(Some(Some(head))) => head,
            Ok(Some(None)) => {
                return First::Hyper {
                    keep_alive: keeps_alive(&buffer),
                    stream: Buffered::new(buffer, stream),
                }
            }
            // Closed, shut down, reloaded, or silent past the timeout (as hyper closes it).
            Ok(None) | Err(_) => return First::Done,
        };
        first = false;
        shared.telemetry.metrics.request(role);
        debug!(method = "POST", path = CHECKIN_PATH, %peer, "request");
        let whole = head.head_len + head.body_len;
        let body_read = Box::pin(tokio::time::timeout(limits.header_timeout, async {
            while buffer.len() < whole {
                buffer.reserve(whole - buffer.len());
                match stream.read_buf(&mut buffer).await {
                    Ok(0) | Err(_) => return false,
                    Ok(_) => {}
                }
            }
            true
        }))
        .await;
        match body_read {
            Ok(true) => {}
            // The client left mid-body.
            Ok(false) => return First::Done,
            Err(_) => {
                let refused = crate::api::error_response(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    &format!(
                        "the request body did not arrive within {}s",
                        limits.header_timeout.as_secs()
                    ),
                );
                let _ = Box::pin(write_response(&mut stream, &refused, true)).await;
                return First::Done;
            }
        }
        if !head.close {
            // A kept connection (a push agent holds its check-ins on it): its TLS records
            // leave OpenSSL, whose SSL object is freed (`records`).
            crate::records::hand_over_counted(&mut stream, &shared.telemetry.metrics.ops);
        }
        let body = Bytes::copy_from_slice(&buffer[head.head_len..whole]);
        // What a held check-in no longer needs is freed before the hold.
        let mut rest = buffer.split_off(whole);
        drop(buffer);
        rest.shrink_to_fit();
        // Built straight into its box: a future moved into another still takes room in the
        // caller's state machine.
        let checkin = Box::pin(crate::agent_api::checkin(
            shared,
            role,
            peer,
            tls,
            claim,
            &head.headers,
            body,
        ));
        let Some(response) = watched(checkin, &mut stream, &mut rest).await else {
            debug!("the agent left while its check-in was held");
            return First::Done;
        };
        // Kept only for a client that asked, under the settings it was accepted under, while
        // the server runs on.
        let close = head.close || outdated(&reloads) || *shutdown.borrow();
        if close {
            // The answer, close_notify and the FIN in one segment.
            crate::io::cork(socket);
        }
        match Box::pin(write_response(&mut stream, &response, close)).await {
            Ok(()) if !close => carried = rest,
            _ => {
                // The agent has its answer and the FIN. Freeing the connection (its TLS
                // object, the descriptor, the poller's registration) waits while a change's
                // answers to other held agents are under way: they come first
                // (`channel::Deliveries`).
                shared
                    .deliveries
                    .wait(crate::channel::DELIVERIES_FIRST)
                    .await;
                return First::Done;
            }
        }
    }
}

/// Runs `checkin` while watching `stream`: `None` when the client leaves first (its check-in
/// is dropped, as hyper drops a request whose client went). Bytes the client sends meanwhile
/// are kept in `rest`.
async fn watched<S, F>(
    mut checkin: std::pin::Pin<Box<F>>,
    stream: &mut S,
    rest: &mut Vec<u8>,
) -> Option<HttpResponse>
where
    S: AsyncRead + Unpin,
    F: std::future::Future<Output = HttpResponse>,
{
    let mut probe = [0u8; 256];
    let mut watching = true;
    loop {
        tokio::select! {
            response = &mut checkin => return Some(response),
            read = stream.read(&mut probe), if watching => match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => {
                    // A pipelined request (agents send none): kept for hyper, and the socket
                    // is no longer watched, so nothing is buffered without bound.
                    rest.extend_from_slice(&probe[..n]);
                    watching = false;
                }
            },
        }
    }
}

/// Writes `response` as HTTP/1.1 with its length; `Connection: close` (and a TLS close) when
/// `close`.
async fn write_response<S>(
    stream: &mut S,
    response: &HttpResponse,
    close: bool,
) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let body = response.body().clone();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let bytes = serialize(response.status(), response.headers(), &body, close);
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    if close {
        // Bounded: a client that does not read cannot keep the slot.
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    }
    Ok(())
}

/// The bytes of an HTTP/1.1 response: pure, table-tested.
fn serialize(status: StatusCode, headers: &HeaderMap, body: &[u8], close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_str(),
            status.canonical_reason().unwrap_or("")
        )
        .as_bytes(),
    );
    for (name, value) in headers {
        if name == hyper::header::CONTENT_LENGTH || name == hyper::header::CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests;
