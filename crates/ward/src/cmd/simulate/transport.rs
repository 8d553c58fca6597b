//! How simulated agents reach the server: one exchange over tokio (on the connection the
//! agent's last push check-in kept, as the real agent does, or a new one), TLS through
//! tokio-openssl with the shared connectors (modern or capped at TLSv1, verified or
//! not), each agent's session slot for resumption, the resolved-address cache, source
//! addresses spread over 127.0.0.x, and the open-files limit every held connection needs.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslConnector, SslSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use ward_agent::transport::{
    parse_response, request_message, response_read, split_url, still_open, Exchange,
};
use ward_agent::AgentError;
use ward_agent::Offer;
use ward_tls::context::{connector_builder, ClientTls, ServerVerification};

use super::report::{tally, Stats};

/// One agent's TLS session, kept between its connections: OpenSSL's new-session callback
/// fills it, the next connection resumes it.
pub(super) type SessionSlot = Arc<Mutex<Option<SslSession>>>;

/// A slot holding the session `der` encodes (empty when there is none or it does not decode).
pub(super) fn session_slot(der: Option<&[u8]>) -> SessionSlot {
    Arc::new(Mutex::new(
        der.and_then(|der| SslSession::from_der(der).ok()),
    ))
}

/// The session in `slot`, DER-encoded, to keep in the identities file.
pub(super) fn session_der(slot: &SessionSlot) -> Option<Vec<u8>> {
    slot.lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|session| session.to_der().ok())
}

fn session_index() -> Index<Ssl, SessionSlot> {
    static INDEX: OnceLock<Index<Ssl, SessionSlot>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("an OpenSSL ex_data index"))
}

/// A connector for agents offering `offer` (ward's own, capped or not, or a real stack's
/// profile).
/// `groups` replaces ward's own key-exchange groups for an offer without a profile.
fn connector(
    ca_pem: &[u8],
    verify: bool,
    offer: Offer,
    groups: Option<&str>,
) -> Result<SslConnector, String> {
    let verification = match (verify, ca_pem.is_empty()) {
        (false, _) => ServerVerification::None,
        (true, true) => ServerVerification::System,
        (true, false) => ServerVerification::Ca(ca_pem.to_vec()),
    };
    let client = match offer.profile {
        Some(profile) => profile.client_tls(verification),
        None => ClientTls {
            min: None,
            max: offer.tls_max,
            verification,
            cipher_list: None,
        },
    };
    let mut builder = connector_builder(&client).map_err(|e| e.to_string())?;
    if let Some(profile) = offer.profile {
        profile
            .apply_groups(&mut builder)
            .map_err(|e| e.to_string())?;
    } else if let Some(groups) = groups {
        builder
            .set_groups_list(groups)
            .map_err(|_| format!("{groups}: not groups this OpenSSL knows"))?;
    }
    // Each connection carries its agent's session slot; OpenSSL hands new sessions (a TLS 1.3
    // ticket arrives after the handshake) to it.
    builder.set_new_session_callback(|ssl, session| {
        if let Some(slot) = ssl.ex_data(session_index()) {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(session);
        }
    });
    Ok(builder.build())
}

/// The connection an agent's last push check-in kept, for its next one to the same server.
pub(super) struct Kept {
    url: String,
    verify: bool,
    stream: Stream,
}

impl Kept {
    /// Ends the connection (the run is over).
    pub(super) async fn close(self) {
        self.stream.close().await;
    }
}

/// The read buffer under OpenSSL: a resumed handshake's flight and an answer fit.
const READ_BUFFER: usize = 4096;

enum Stream {
    /// OpenSSL reads a handshake record by record, each in two reads (header, then body):
    /// under it, a small buffer takes what the socket has in one `recv` (as the server's
    /// `io::Buffered` does), about 7 calls fewer per resumed check-in.
    Tls(Box<tokio_openssl::SslStream<tokio::io::BufReader<tokio::net::TcpStream>>>),
    Plain(tokio::net::TcpStream),
}

impl Stream {
    /// Open, with nothing from the server waiting, on the socket or inside OpenSSL (which
    /// reads ahead), as the agent checks.
    fn quiet(&self) -> bool {
        match self {
            Stream::Tls(tls) => {
                still_open(tls.get_ref().get_ref())
                    && tls.get_ref().buffer().is_empty()
                    && !ward_tls::ffi::has_pending(tls.ssl())
            }
            Stream::Plain(tcp) => still_open(tcp),
        }
    }

    /// A whole request ([`request_message`]) in one write, as the agent sends it.
    async fn write(&mut self, message: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tls(tls) => tls.write_all(message).await,
            Stream::Plain(tcp) => tcp.write_all(message).await,
        }
    }

    async fn read(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            Stream::Tls(tls) => read_response(tls.as_mut(), out).await,
            Stream::Plain(tcp) => read_response(tcp, out).await,
        }
    }

    fn version(&self) -> (&'static str, Option<String>) {
        match self {
            Stream::Tls(tls) => ("https", Some(tls.ssl().version_str().to_string())),
            Stream::Plain(_) => ("http", None),
        }
    }

    /// close_notify over TLS (a session dropped without one is not resumable), then the
    /// socket closes.
    async fn close(self) {
        if let Stream::Tls(mut tls) = self {
            let _ = tls.shutdown().await;
        }
    }
}

/// Why an exchange failed, as a short class for the report.
pub(super) struct Failure {
    pub(super) class: &'static str,
    pub(super) detail: String,
}

impl Failure {
    pub(super) fn agent_error(self, url: &str) -> AgentError {
        AgentError::transport(url, format!("{}: {}", self.class, self.detail))
    }
}

/// What every agent task shares: the connectors, the source addresses, the address cache and
/// the counters.
pub(super) struct Shared {
    modern: SslConnector,
    legacy: SslConnector,
    unverified_modern: SslConnector,
    unverified_legacy: SslConnector,
    /// What the legacy agents offer: `--legacy-profile`, or ward's own capped at TLSv1.
    pub(super) legacy_offer: Offer,
    sources: Vec<IpAddr>,
    addresses: Mutex<HashMap<String, SocketAddr>>,
    pub(super) stats: Stats,
}

impl Shared {
    /// Connectors trusting `ca_pem` (the system's CAs when empty), connections spread over
    /// `sources` addresses 127.0.0.1, 127.0.0.2, ...
    /// `groups`: the key-exchange groups ward's own offer makes instead of its default.
    pub(super) fn new(
        ca_pem: &[u8],
        sources: u8,
        legacy_offer: Offer,
        groups: Option<&str>,
    ) -> Result<Shared, String> {
        let modern = Offer::default();
        Ok(Shared {
            modern: connector(ca_pem, true, modern, groups)?,
            legacy: connector(ca_pem, true, legacy_offer, groups)?,
            unverified_modern: connector(ca_pem, false, modern, groups)?,
            unverified_legacy: connector(ca_pem, false, legacy_offer, groups)?,
            legacy_offer,
            sources: (1..=sources)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                .collect(),
            addresses: Mutex::default(),
            stats: Stats::default(),
        })
    }

    async fn address(&self, host: &str, port: u16) -> Result<SocketAddr, Failure> {
        let key = format!("{host}:{port}");
        if let Some(address) = self
            .addresses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(*address);
        }
        let address = tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Failure {
                class: "resolve",
                detail: format!("{host}: no address"),
            })?;
        self.addresses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, address);
        Ok(address)
    }

    /// One exchange: on the connection in `kept` when it is to this server and still open,
    /// or on a new one resuming `session` over HTTPS. With `keep_alive` (a push check-in),
    /// the connection is left in `kept` when the server keeps it too. The answer, and when it
    /// had arrived (ms since the epoch: read to its end, before this side checked it).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn exchange(
        &self,
        agent: usize,
        legacy: bool,
        url: &str,
        verify: bool,
        session: &SessionSlot,
        kept: &mut Option<Kept>,
        keep_alive: bool,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<(Exchange, i64), Failure> {
        let (_, host, _) = split_url(url).map_err(|detail| Failure {
            class: "url",
            detail,
        })?;
        let message = request_message(method, path, &host, headers, body, keep_alive);
        let work = async {
            let (mut stream, mut reused) = match kept.take() {
                Some(previous)
                    if previous.url == url
                        && previous.verify == verify
                        && previous.stream.quiet() =>
                {
                    (previous.stream, true)
                }
                Some(previous) => {
                    previous.stream.close().await;
                    (
                        self.connect(agent, legacy, url, verify, session).await?,
                        false,
                    )
                }
                None => (
                    self.connect(agent, legacy, url, verify, session).await?,
                    false,
                ),
            };
            let mut written = stream.write(&message).await;
            if written.is_err() && reused {
                // Not written on the kept connection: the server had closed it. Once more, on a
                // new one. A request that was sent is never sent again, whatever comes back
                // (the server may have recorded it, and its nonce with it), as the agent does.
                stream = self.connect(agent, legacy, url, verify, session).await?;
                reused = false;
                written = stream.write(&message).await;
            }
            written.map_err(|e| Failure {
                class: "write",
                detail: e.to_string(),
            })?;
            let mut raw = Vec::new();
            stream.read(&mut raw).await.map_err(|e| Failure {
                class: "read",
                detail: e.to_string(),
            })?;
            if reused {
                self.stats.reused.fetch_add(1, Ordering::Relaxed);
            }
            self.finish((url, verify), raw, stream, kept, keep_alive)
                .await
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| Failure {
                class: "timeout",
                detail: format!("{url}: no answer in {timeout:?}"),
            })?
    }

    /// The answer in `raw`, timed now; the connection kept in `kept` or closed.
    async fn finish(
        &self,
        (url, verify): (&str, bool),
        raw: Vec<u8>,
        stream: Stream,
        kept: &mut Option<Kept>,
        keep_alive: bool,
    ) -> Result<(Exchange, i64), Failure> {
        let received_ms = ward_proto::now_ms();
        let malformed = || Failure {
            class: "malformed_response",
            detail: format!("{url}: not an HTTP response"),
        };
        if raw.is_empty() {
            return Err(Failure {
                class: "read",
                detail: format!("{url}: the connection closed before an answer"),
            });
        }
        let mut exchange = parse_response(&raw).ok_or_else(malformed)?;
        (exchange.channel, exchange.tls_version) = stream.version();
        if keep_alive && exchange.reusable() {
            *kept = Some(Kept {
                url: url.to_string(),
                verify,
                stream,
            });
        } else {
            stream.close().await;
        }
        Ok((exchange, received_ms))
    }

    /// A new connection to `url`, through its TLS handshake over HTTPS.
    async fn connect(
        &self,
        agent: usize,
        legacy: bool,
        url: &str,
        verify: bool,
        session: &SessionSlot,
    ) -> Result<Stream, Failure> {
        let failure = |class: &'static str| {
            move |e: std::io::Error| Failure {
                class,
                detail: e.to_string(),
            }
        };
        let (scheme, host, port) = split_url(url).map_err(|detail| Failure {
            class: "url",
            detail,
        })?;
        let address = self.address(&host, port).await?;
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(failure("socket"))?;
        if address.ip().is_loopback() && address.is_ipv4() && self.sources.len() > 1 {
            let source = self.sources[agent % self.sources.len()];
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(failure("bind"))?;
        }
        let tcp = tokio::time::timeout(Duration::from_secs(10), socket.connect(address))
            .await
            .map_err(|_| Failure {
                class: "connect_timeout",
                detail: format!("{url}: no answer in 10s"),
            })?
            .map_err(failure("connect"))?;
        let _ = tcp.set_nodelay(true);
        if scheme != "https" {
            return Ok(Stream::Plain(tcp));
        }
        let tls = |e: openssl::error::ErrorStack| Failure {
            class: "tls",
            detail: e.to_string(),
        };
        let connector = match (verify, legacy) {
            (true, false) => &self.modern,
            (true, true) => &self.legacy,
            (false, false) => &self.unverified_modern,
            (false, true) => &self.unverified_legacy,
        };
        let mut config = connector.configure().map_err(tls)?;
        // Old stacks' profiles send no server name.
        if legacy {
            config.set_use_server_name_indication(self.legacy_offer.profile.is_none_or(|p| p.sni));
        }
        let previous = session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
            .and_then(ward_tls::ffi::session_to_offer);
        if let Some(previous) = previous {
            // A copy, as the agent offers, so the session kept stays resumable. It came from
            // this agent's earlier connection through the same connector (this run's, or an
            // earlier run's kept as DER, which OpenSSL ties to no context).
            unsafe { config.set_session(&previous) }.map_err(tls)?;
        }
        let mut ssl = config.into_ssl(&host).map_err(tls)?;
        ssl.set_ex_data(session_index(), session.clone());
        let tcp = tokio::io::BufReader::with_capacity(READ_BUFFER, tcp);
        let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(tls)?;
        std::pin::Pin::new(&mut stream)
            .connect()
            .await
            .map_err(|e| Failure {
                class: "tls_handshake",
                detail: e.to_string(),
            })?;
        if let Some(group) = ward_tls::ffi::negotiated_group(stream.ssl()) {
            tally(&self.stats.groups, group);
        }
        if stream.ssl().session_reused() {
            self.stats.resumed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.stats.full_handshakes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Stream::Tls(Box::new(stream)))
    }
}

/// Reads one response: to the end of its `Content-Length` (the connection may carry the next
/// request), or to the end of the stream when it gives none; at most 4 MiB. A peer that
/// closes without close_notify still sent a whole response.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    loop {
        if response_read(out) {
            return Ok(());
        }
        out.reserve(4096);
        match stream.read_buf(out).await {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(_) if !out.is_empty() => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Raises the soft limit on open files to the hard one: every agent may hold a connection.
pub(super) fn raise_fd_limit() -> u64 {
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        limit.rlim_cur
    }
}
