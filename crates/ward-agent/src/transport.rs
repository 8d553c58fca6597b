//! One HTTP/1.1 exchange with a server, over HTTPS (with the agent's TLS cap, the CA from its
//! settings, and session resumption) or plain HTTP. I/O at the edge.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::ssl::{SslConnector, SslSession};

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

    /// Sends `method path` with `headers` and `body` to `url`; `Connection: close`.
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
        // A session left over from an exchange that failed after its handshake belongs to
        // another server (and maybe another connector): never file it under this one.
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Call {
            method,
            path,
            headers,
            body,
        } = *call;
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
        let request = request_head(method, path, &host, headers, body.len());
        let mut raw = Vec::new();
        let (channel, tls_version) = if scheme == "https" {
            let connector = if verify {
                &self.verified
            } else {
                &self.unverified
            };
            let mut config = connector.configure().map_err(|e| e.to_string())?;
            config.set_use_server_name_indication(self.sni);
            if let Some(session) = self.sessions.get(&(url.to_string(), verify)) {
                // The session comes from this same connector's context, as OpenSSL requires.
                unsafe { config.set_session(session).map_err(|e| e.to_string())? };
            }
            let mut tls = config
                .connect(&host, tcp)
                .map_err(|e| format!("{url}: TLS: {e}"))?;
            let version = tls.ssl().version_str().to_string();
            tls.write_all(request.as_bytes())
                .and_then(|_| tls.write_all(body))
                .map_err(|e| format!("{url}: {e}"))?;
            read_all(&mut tls, &mut raw).map_err(|e| format!("{url}: {e}"))?;
            // A clean close_notify: OpenSSL marks the session of a connection dropped without
            // one as not resumable.
            let _ = tls.shutdown();
            // The session OpenSSL handed to the callback during this exchange (a TLS 1.3
            // ticket arrives after the handshake), kept for the next connection to this URL.
            if let Some(session) = self.latest.lock().unwrap_or_else(|p| p.into_inner()).take() {
                self.sessions.insert((url.to_string(), verify), session);
            }
            ("https", Some(version))
        } else {
            let mut tcp = tcp;
            tcp.write_all(request.as_bytes())
                .and_then(|_| tcp.write_all(body))
                .map_err(|e| format!("{url}: {e}"))?;
            read_all(&mut tcp, &mut raw).map_err(|e| format!("{url}: {e}"))?;
            ("http", None)
        };
        if raw.is_empty() {
            // A server that went away (killed, its host down) under a held check-in.
            return Err(format!("{url}: the connection closed before an answer"));
        }
        let mut exchange =
            parse_response(&raw).ok_or_else(|| format!("{url}: malformed HTTP response"))?;
        exchange.channel = channel;
        exchange.tls_version = tls_version;
        Ok(exchange)
    }
}

/// The largest answer the agent reads; a server (or an attacker on plain HTTP) cannot make
/// it buffer more.
pub const MAX_RESPONSE: u64 = 4 << 20;

fn read_all(stream: &mut impl Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    match stream.take(MAX_RESPONSE).read_to_end(out) {
        Ok(_) => Ok(()),
        // A peer that closes without close_notify still sent a whole response.
        Err(_) if !out.is_empty() => Ok(()),
        Err(e) => Err(e),
    }
}

/// An HTTP/1.1 request head (`Connection: close`), up to and including the blank line.
pub fn request_head(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, String)],
    body_len: usize,
) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {body_len}\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
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
