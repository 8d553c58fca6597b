//! One HTTP/1.1 exchange with a server, over HTTPS (with the agent's TLS cap, the CA from its
//! settings, and session resumption) or plain HTTP. I/O at the edge.
//!
//! A push agent keeps its connection ([`Call::keep_alive`]): its next check-in to the same
//! server, verified the same way, goes out on it, so a change's answer costs neither side a
//! teardown and its acknowledgement no handshake. Everything else is one request per
//! connection (`Connection: close`). A kept connection the server has closed meanwhile (its
//! idle timeout, a reload) is seen before it is used, and a request that could not be written
//! on it goes once more on a new connection. A request that was sent is never sent again: the
//! server may have recorded it, and its nonce with it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::ssl::{SslConnector, SslSession, SslStream};

use crate::error::AgentError;

use ward_tls::context::{connector_builder, ClientTls, ServerVerification};

/// A server's answer.
#[derive(Debug)]
pub struct Exchange {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `https` or `http`.
    pub channel: &'static str,
    /// The TLS version negotiated, over HTTPS.
    pub tls_version: Option<String>,
}

impl Exchange {
    /// Whether the connection may carry another request: the answer had its length and did
    /// not say `Connection: close`.
    pub fn reusable(&self) -> bool {
        self.header("content-length").is_some()
            && !self.header("connection").is_some_and(|value| {
                value
                    .split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("close"))
            })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request: method, path, extra headers, body.
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, String)],
    pub body: &'a [u8],
    /// Keep the connection for the next request to the same server (push check-ins); the
    /// server may still close it.
    pub keep_alive: bool,
}

/// A connection kept after an exchange, for the next one to the same server.
struct Kept {
    url: String,
    verify: bool,
    stream: Stream,
}

enum Stream {
    Tls(Box<SslStream<TcpStream>>),
    Plain(TcpStream),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tls(tls) => tls.get_ref(),
            Stream::Plain(tcp) => tcp,
        }
    }

    /// Open, with nothing from the server waiting: not on the socket (see [`still_open`]) and
    /// not inside OpenSSL, which reads ahead (a close_notify it took with the last answer).
    fn quiet(&self) -> bool {
        match self {
            Stream::Tls(tls) => still_open(tls.get_ref()) && !ward_tls::ffi::has_pending(tls.ssl()),
            Stream::Plain(tcp) => still_open(tcp),
        }
    }

    /// The channel, and the TLS version over HTTPS.
    fn version(&self) -> (&'static str, Option<String>) {
        match self {
            Stream::Tls(tls) => ("https", Some(tls.ssl().version_str().to_string())),
            Stream::Plain(_) => ("http", None),
        }
    }

    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Tls(tls) => tls.as_mut(),
            Stream::Plain(tcp) => tcp,
        }
    }

    /// Ends the connection: close_notify over TLS (OpenSSL marks the session of a connection
    /// dropped without one as not resumable), then the socket closes.
    fn close(mut self) {
        if let Stream::Tls(tls) = &mut self {
            let _ = tls.shutdown();
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Whether a kept connection is still open and quiet: nothing to read (a close_notify, a
/// FIN or a reset would be), checked without blocking or consuming.
pub fn still_open(socket: &impl AsRawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a local, on a descriptor the caller owns.
    let read = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    read < 0 && {
        let error = std::io::Error::last_os_error().kind();
        error == std::io::ErrorKind::WouldBlock || error == std::io::ErrorKind::Interrupted
    }
}

pub struct Transport {
    verified: SslConnector,
    unverified: SslConnector,
    /// The last session per server and connector (verified or not), for resumption: a
    /// session may only be resumed on the context that made it.
    sessions: HashMap<(String, bool), SslSession>,
    /// Where the connectors' new-session callback puts each session OpenSSL makes resumable.
    latest: Arc<Mutex<Option<SslSession>>>,
    interrupt: Arc<Interrupt>,
    /// Whether to send the server name (old stacks' profiles do not).
    sni: bool,
    /// The connection the last push check-in kept.
    kept: Option<Kept>,
}

/// Ends the exchange under way at once, from another thread: `ward agent stop` must not wait
/// for a held push check-in to return.
#[derive(Default)]
pub struct Interrupt {
    socket: Mutex<Option<TcpStream>>,
    interrupted: AtomicBool,
}

impl Interrupt {
    /// Shuts the current connection down (its read returns at once); exchanges fail until
    /// [`Interrupt::reset`].
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        if let Some(socket) = self.socket.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    pub fn reset(&self) {
        self.interrupted.store(false, Ordering::SeqCst);
    }

    fn register(&self, tcp: &TcpStream) -> bool {
        let mut slot = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        *slot = tcp.try_clone().ok();
        !self.interrupted.load(Ordering::SeqCst)
    }

    fn clear(&self) {
        *self.socket.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// `https://host:port` → (scheme, host, port).
pub fn split_url(url: &str) -> Result<(&str, String, u16), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url}: not a URL"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.strip_prefix('[') {
        Some(b) => {
            let (h, p) = b
                .split_once("]:")
                .ok_or_else(|| format!("{url}: bad address"))?;
            (h.to_string(), p)
        }
        None => {
            let (h, p) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("{url}: no port"))?;
            (h.to_string(), p)
        }
    };
    let port = port.parse().map_err(|_| format!("{url}: bad port"))?;
    match scheme {
        "http" | "https" => Ok((scheme, host, port)),
        _ => Err(format!("{url}: http or https only")),
    }
}

/// The one server entry for `url` (priority 1): how an agent lists a server it was told of
/// outside its settings (the one it enrolled through, the one a simulator starts from).
pub fn entry_for(
    url: &str,
    verify_certificate: bool,
) -> Result<ward_proto::messages::ServerEntry, String> {
    use ward_proto::messages::{Scheme, ServerEntry};
    let (scheme, host, port) = split_url(url)?;
    Ok(ServerEntry {
        priority: 1,
        url: url.to_string(),
        address: host,
        protocol: if scheme == "https" {
            Scheme::Https
        } else {
            Scheme::Http
        },
        port,
        verify_certificate,
    })
}

impl Transport {
    pub fn new(ca_pem: &[u8], offer: crate::Offer) -> Result<Transport, AgentError> {
        let config = |verification| match offer.profile {
            Some(profile) => profile.client_tls(verification),
            None => ClientTls {
                min: None,
                max: offer.tls_max,
                verification,
                cipher_list: None,
            },
        };
        let verification = if ca_pem.is_empty() {
            ServerVerification::System
        } else {
            ServerVerification::Ca(ca_pem.to_vec())
        };
        let latest: Arc<Mutex<Option<SslSession>>> = Arc::default();
        let build = |verification| -> Result<SslConnector, AgentError> {
            let mut builder = connector_builder(&config(verification))
                .map_err(|e| AgentError::state(format!("TLS client: {e}")))?;
            if let Some(profile) = offer.profile {
                profile
                    .apply_groups(&mut builder)
                    .map_err(|e| AgentError::state(format!("TLS client: {e}")))?;
            }
            let slot = latest.clone();
            builder.set_new_session_callback(move |_, session| {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(session);
            });
            Ok(builder.build())
        };
        Ok(Transport {
            verified: build(verification)?,
            unverified: build(ServerVerification::None)?,
            sessions: HashMap::new(),
            latest,
            interrupt: Arc::default(),
            sni: offer.profile.is_none_or(|p| p.sni),
            kept: None,
        })
    }

    /// The ClientHello this transport sends to `host` on a new connection (no session to
    /// resume), built in memory by the same OpenSSL configuration: what the agent reports of
    /// its own stack, so the server can judge it before it ever sees it over TLS.
    pub fn client_hello(&self, host: &str) -> Result<Vec<u8>, String> {
        let mut config = self.verified.configure().map_err(|e| e.to_string())?;
        config.set_use_server_name_indication(self.sni);
        ward_tls::replay::client_hello(config, host)
    }

    /// The handle that ends this transport's exchanges from another thread.
    pub fn interrupt(&self) -> Arc<Interrupt> {
        self.interrupt.clone()
    }

    /// Sends `method path` with `headers` and `body` to `url`: on the connection the last
    /// exchange kept for this server, or a new one.
    pub fn exchange(
        &mut self,
        url: &str,
        verify: bool,
        call: &Call<'_>,
        timeout: Duration,
    ) -> Result<Exchange, AgentError> {
        let result = self.exchange_inner(url, verify, call, timeout);
        self.interrupt.clear();
        result.map_err(|detail| {
            // A message that already starts with the URL does not repeat it.
            let detail = detail
                .strip_prefix(url)
                .and_then(|d| d.strip_prefix(": "))
                .map(str::to_string)
                .unwrap_or(detail);
            AgentError::transport(url, detail)
        })
    }

    fn exchange_inner(
        &mut self,
        url: &str,
        verify: bool,
        call: &Call<'_>,
        timeout: Duration,
    ) -> Result<Exchange, String> {
        let (_, host, _) = split_url(url)?;
        let request = request_message(
            call.method,
            call.path,
            &host,
            call.headers,
            call.body,
            call.keep_alive,
        );
        if let Some(kept) = self.kept.take() {
            if kept.url == url && kept.verify == verify && kept.stream.quiet() {
                match self.on_kept(kept, &request, call, timeout) {
                    Ok(exchange) => return Ok(exchange),
                    // Not written: the server had closed it. Once more, on a new connection.
                    Err(None) => {}
                    Err(Some(error)) => return Err(format!("{url}: {error}")),
                }
            } else {
                kept.stream.close();
            }
        }
        self.fresh(url, verify, call, &request, timeout)
    }

    /// The request on a kept connection. `Err(None)` when it could not be written (the server
    /// had closed the connection: a new one may carry it); `Err(Some(_))` when it failed after
    /// it was sent.
    fn on_kept(
        &mut self,
        mut kept: Kept,
        request: &[u8],
        call: &Call<'_>,
        timeout: Duration,
    ) -> Result<Exchange, Option<String>> {
        let tcp = kept.stream.tcp();
        if !self.interrupt.register(tcp) {
            return Err(Some("interrupted".into()));
        }
        tcp.set_read_timeout(Some(timeout))
            .map_err(|e| Some(e.to_string()))?;
        let io = kept.stream.io();
        if io.write_all(request).is_err() {
            return Err(None);
        }
        // Sent: never sent again, whatever comes back (the server may have recorded it, and
        // its nonce with it). No answer is a failure like any other.
        let mut raw = Vec::new();
        read_response(io, &mut raw).map_err(|e| Some(e.to_string()))?;
        let exchange = finish(&raw, kept.stream.version()).map_err(Some)?;
        self.keep(kept, call, &exchange);
        Ok(exchange)
    }

    /// The request on a new connection.
    fn fresh(
        &mut self,
        url: &str,
        verify: bool,
        call: &Call<'_>,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Exchange, String> {
        // A session left over from an exchange that failed after its handshake belongs to
        // another server (and maybe another connector): never file it under this one.
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (scheme, host, port) = split_url(url)?;
        // Every address the name has, in turn (`localhost` may be ::1 first, with the
        // server listening on 127.0.0.1 only).
        let mut last_error = format!("{url}: no address");
        let mut connected = None;
        for address in (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("{url}: {e}"))?
        {
            match TcpStream::connect_timeout(&address, Duration::from_secs(10)) {
                Ok(tcp) => {
                    connected = Some(tcp);
                    break;
                }
                Err(e) => last_error = format!("{url}: {e}"),
            }
        }
        let tcp = connected.ok_or(last_error)?;
        if !self.interrupt.register(&tcp) {
            return Err(format!("{url}: interrupted"));
        }
        tcp.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut stream = if scheme == "https" {
            let connector = if verify {
                &self.verified
            } else {
                &self.unverified
            };
            let mut config = connector.configure().map_err(|e| e.to_string())?;
            config.set_use_server_name_indication(self.sni);
            if let Some(session) = self.sessions.get(&(url.to_string(), verify)) {
                // A copy, so the session kept stays resumable after a TLS 1.3 connection used
                // it (the server gives a new one only when it is half spent). It comes from
                // this same connector's context, as OpenSSL requires.
                if let Some(copy) = ward_tls::ffi::session_to_offer(session) {
                    unsafe { config.set_session(&copy).map_err(|e| e.to_string())? };
                }
            }
            let tls = config
                .connect(&host, tcp)
                .map_err(|e| format!("{url}: TLS: {e}"))?;
            Stream::Tls(Box::new(tls))
        } else {
            Stream::Plain(tcp)
        };
        let io = stream.io();
        let mut raw = Vec::new();
        io.write_all(request)
            .and_then(|_| read_response(io, &mut raw))
            .map_err(|e| format!("{url}: {e}"))?;
        let exchange = finish(&raw, stream.version()).map_err(|e| format!("{url}: {e}"))?;
        let kept = Kept {
            url: url.to_string(),
            verify,
            stream,
        };
        self.keep(kept, call, &exchange);
        // The session OpenSSL handed to the callback during this exchange (a TLS 1.3 ticket
        // arrives after the handshake), kept for the next connection to this URL.
        if let Some(session) = self.latest.lock().unwrap_or_else(|p| p.into_inner()).take() {
            self.sessions.insert((url.to_string(), verify), session);
        }
        Ok(exchange)
    }

    /// Keeps the connection after `exchange` when the call asked and the server agreed (its
    /// answer had a length and no `Connection: close`); closes it otherwise.
    fn keep(&mut self, kept: Kept, call: &Call<'_>, exchange: &Exchange) {
        if call.keep_alive && exchange.reusable() {
            self.kept = Some(kept);
        } else {
            kept.stream.close();
        }
    }
}

/// The exchange `raw` holds, or why it is none.
fn finish(
    raw: &[u8],
    (channel, tls_version): (&'static str, Option<String>),
) -> Result<Exchange, String> {
    if raw.is_empty() {
        // A server that went away (killed, its host down) under a held check-in.
        return Err("the connection closed before an answer".into());
    }
    let mut exchange = parse_response(raw).ok_or("malformed HTTP response")?;
    exchange.channel = channel;
    exchange.tls_version = tls_version;
    Ok(exchange)
}

/// The largest answer the agent reads; a server (or an attacker on plain HTTP) cannot make
/// it buffer more.
pub const MAX_RESPONSE: u64 = 4 << 20;

/// Reads one response into `out`: to the end of its `Content-Length` (the connection may
/// carry the next request), or to the end of the stream when it gives none; at most
/// [`MAX_RESPONSE`] bytes.
fn read_response(stream: &mut dyn ReadWrite, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 8192];
    loop {
        if response_read(out) {
            return Ok(());
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A peer that closes without close_notify still sent a whole response.
            Err(_) if !out.is_empty() => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Whether `out` holds a whole response (cut to it) or as much as an agent reads of one
/// ([`MAX_RESPONSE`]): reading stops. A response without a length ends with the stream.
pub fn response_read(out: &mut Vec<u8>) -> bool {
    if let Framing::Complete(length) = framing(out) {
        out.truncate(length);
        return true;
    }
    out.len() as u64 >= MAX_RESPONSE
}

/// How much of a response the bytes read so far hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    /// Its head is not all there yet, or its body is short of its length.
    Partial,
    /// The head has no length: the response ends with the stream.
    ToEnd,
    /// The response is the first this many bytes.
    Complete(usize),
}

/// How much of a response `raw` holds (pure, table-tested).
pub fn framing(raw: &[u8]) -> Framing {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Framing::Partial;
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let length = head
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.trim().parse::<usize>());
    match length {
        Some(Ok(length)) if raw.len() >= split + 4 + length => {
            Framing::Complete(split + 4 + length)
        }
        Some(Ok(_)) => Framing::Partial,
        Some(Err(_)) | None => Framing::ToEnd,
    }
}

/// A whole HTTP/1.1 request (`Connection: close` unless `keep_alive`): its head and its body
/// in one buffer, so it goes in one write (one TLS record and one segment, where a head and a
/// body written apart made two of each).
pub fn request_message(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, String)],
    body: &[u8],
    keep_alive: bool,
) -> Vec<u8> {
    let close = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n{close}",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    message
}

/// A whole HTTP/1.1 response, as read to the end of a `Connection: close` exchange;
/// `channel` and `tls_version` are left for the caller.
pub fn parse_response(raw: &[u8]) -> Option<Exchange> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if let Some(length) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(length);
    }
    Some(Exchange {
        status,
        headers,
        body,
        channel: "http",
        tls_version: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (bytes read so far, what they hold, why)
    #[test]
    fn a_response_is_complete_at_its_length_or_at_the_end_of_the_stream() {
        let table: &[(&str, Framing, &str)] = &[
            ("", Framing::Partial, "nothing yet"),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
                Framing::Partial,
                "no blank line yet",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no",
                Framing::Partial,
                "short of its length",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                Framing::Complete(40),
                "all there",
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length:2\r\n\r\nokHTTP",
                Framing::Complete(39),
                "bytes beyond it are not its",
            ),
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
                Framing::Complete(46),
                "empty",
            ),
            (
                "HTTP/1.1 200 OK\r\n\r\nok",
                Framing::ToEnd,
                "no length: to the end",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok",
                Framing::ToEnd,
                "a length that is none",
            ),
            (
                "Content-Length: 2\r\n\r\nok",
                Framing::ToEnd,
                "a status line is not a header",
            ),
        ];
        for (raw, expected, why) in table {
            assert_eq!(&framing(raw.as_bytes()), expected, "{why}: {raw:?}");
        }
        let answer = Exchange {
            status: 200,
            headers: vec![("Content-Length".into(), "2".into())],
            body: b"ok".to_vec(),
            channel: "http",
            tls_version: None,
        };
        assert!(answer.reusable());
        let closing = Exchange {
            headers: vec![
                ("content-length".into(), "2".into()),
                ("Connection".into(), "keep-alive, Close".into()),
            ],
            ..answer
        };
        assert!(!closing.reusable());
        let unframed = Exchange {
            headers: Vec::new(),
            ..closing
        };
        assert!(!unframed.reusable());
    }

    /// Reads one request (its head, then a body of `{}`) from `tcp`; `None` at its end.
    fn request(tcp: &mut TcpStream) -> Option<String> {
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n{}") {
            match tcp.read(&mut byte) {
                Ok(1) => request.push(byte[0]),
                _ => return None,
            }
        }
        Some(String::from_utf8_lossy(&request).into_owned())
    }

    /// A push check-in's connection carries the next one; one the server has closed since is
    /// not used, and the request goes on a new connection. A call that does not ask to keep
    /// the connection says `Connection: close`.
    #[test]
    fn a_kept_connection_carries_the_next_request_until_the_server_closes_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let server = std::thread::spawn(move || {
            let mut heads = Vec::new();
            let (mut first, _) = listener.accept().unwrap();
            first
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            for _ in 0..2 {
                heads.push(request(&mut first).expect("two requests on the first connection"));
                first.write_all(answer).unwrap();
            }
            // The server's idle timeout: the kept connection closes.
            drop(first);
            let (mut second, _) = listener.accept().unwrap();
            second
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            heads.push(request(&mut second).expect("the third request, on a new connection"));
            second.write_all(answer).unwrap();
            heads
        });
        let mut transport = Transport::new(b"", crate::Offer::default()).unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let call = |keep_alive| Call {
            method: "POST",
            path: "/agent/v1/checkin",
            headers: &[],
            body: b"{}",
            keep_alive,
        };
        for (n, keep_alive) in [(1, true), (2, true), (3, false)] {
            if n == 3 {
                // The server's FIN has arrived.
                let closed = eventually_closed(&transport);
                assert!(closed, "the closed connection is seen as closed");
            }
            let exchange = transport
                .exchange(&url, false, &call(keep_alive), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("request {n}: {e}"));
            assert_eq!(exchange.body, b"ok", "request {n}");
        }
        assert!(
            transport.kept.is_none(),
            "a Connection: close call keeps nothing"
        );
        let heads = server.join().unwrap();
        assert!(!heads[0].contains("Connection: close"), "{}", heads[0]);
        assert!(!heads[1].contains("Connection: close"), "{}", heads[1]);
        assert!(heads[2].contains("Connection: close"), "{}", heads[2]);
    }

    /// A request sent on a kept connection is never sent again, on that connection or a new
    /// one: the server may have recorded it, and its nonce with it. One that gets no answer
    /// fails, and the agent's next check-in is a new request.
    #[test]
    fn a_request_sent_on_a_kept_connection_is_not_sent_again() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            request(&mut tcp).expect("the first request");
            tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            request(&mut tcp).expect("the second request, on the kept connection");
            // Read, and then the server goes away without an answer.
            drop(tcp);
            listener.set_nonblocking(true).unwrap();
            let until = std::time::Instant::now() + Duration::from_secs(1);
            while std::time::Instant::now() < until {
                if listener.accept().is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        });
        let mut transport = Transport::new(b"", crate::Offer::default()).unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let call = Call {
            method: "POST",
            path: "/agent/v1/checkin",
            headers: &[],
            body: b"{}",
            keep_alive: true,
        };
        let first = transport.exchange(&url, false, &call, Duration::from_secs(5));
        assert_eq!(first.unwrap().body, b"ok");
        let Err(error) = transport.exchange(&url, false, &call, Duration::from_secs(5)) else {
            panic!("an answer from a server that gave none");
        };
        assert!(
            error.to_string().contains("closed before an answer"),
            "{error}"
        );
        assert!(!server.join().unwrap(), "the request was sent again");
    }

    fn eventually_closed(transport: &Transport) -> bool {
        for _ in 0..100 {
            match &transport.kept {
                Some(kept) if still_open(kept.stream.tcp()) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return true,
            }
        }
        false
    }

    /// A server that takes the request and goes away without an answer (a server killed
    /// under a held check-in) is said as such, not as a malformed answer; one that answers
    /// garbage is malformed.
    #[test]
    fn a_connection_closed_before_an_answer_is_said_so() {
        let cases: [(&[u8], &str); 2] = [
            (b"", "the connection closed before an answer"),
            (b"not HTTP at all\r\n\r\n", "malformed HTTP response"),
        ];
        for (answer, said) in cases {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = std::thread::spawn(move || {
                let (mut tcp, _) = listener.accept().unwrap();
                // The whole request (head, then its body `{}`), so closing sends no reset.
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n{}") {
                    match tcp.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                tcp.write_all(answer).unwrap();
                let _ = tcp.shutdown(Shutdown::Write);
                let _ = tcp.read_to_end(&mut request);
            });
            let mut transport = Transport::new(b"", crate::Offer::default()).unwrap();
            let call = Call {
                method: "POST",
                path: "/agent/v1/checkin",
                headers: &[],
                body: b"{}",
                keep_alive: false,
            };
            let url = format!("http://127.0.0.1:{port}");
            let Err(error) = transport.exchange(&url, false, &call, Duration::from_secs(5)) else {
                panic!("an answer from a server that gave none");
            };
            server.join().unwrap();
            assert!(error.to_string().contains(said), "{error}");
        }
    }
}
