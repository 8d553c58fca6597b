//! `ward bench handshakes`: a TLS load generator with ward's own OpenSSL, so that handshakes
//! Debian's tools cannot make (X25519MLKEM768: wrk and nginx link OpenSSL 3.0) are measured
//! the same way as the rest. Each connection: connect, handshake (resuming the last session
//! when asked), `GET` the path, read the answer; then close, or (keep-alive) send the next
//! request on it. Bounded in time and in connections; reports requests/s, how many handshakes
//! were full and resumed, and the group they used.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use openssl::ssl::{
    SslConnector, SslMethod, SslSession, SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use super::super::CmdResult;

#[derive(Args)]
pub struct HandshakesArgs {
    /// The server's address, host:port
    #[arg(long)]
    connect: String,
    /// The path to GET
    #[arg(long, default_value = "/healthz")]
    path: String,
    /// The one TLS version to offer
    #[arg(long, value_enum, default_value_t = Version::Tls12)]
    tls: Version,
    /// Key-exchange groups to offer, in OpenSSL's list form (the first gets a key share)
    #[arg(long, default_value = "X25519")]
    groups: String,
    /// Resume the last session each time (tickets), as agents do
    #[arg(long)]
    resume: bool,
    /// Keep each connection and send request after request on it
    #[arg(long)]
    keep_alive: bool,
    /// Connections at once
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// How long to run
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Version {
    #[value(name = "1.2")]
    Tls12,
    #[value(name = "1.3")]
    Tls13,
}

#[derive(Default)]
struct Counts {
    requests: u64,
    full: u64,
    resumed: u64,
    errors: BTreeMap<String, u64>,
    groups: BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct Report {
    connect: String,
    tls: &'static str,
    groups_offered: String,
    resume: bool,
    keep_alive: bool,
    connections: u32,
    seconds: f64,
    requests: u64,
    requests_per_second: f64,
    full_handshakes: u64,
    resumed_handshakes: u64,
    groups_used: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    /// This generator's CPU seconds, and their share of the run: near 1.0 (one thread), it
    /// was the limit, not the server.
    cpu_seconds: f64,
    busy_share: f64,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    ward_proto::duration::parse(text).map_err(|e| e.to_string())
}

pub fn run(args: HandshakesArgs) -> CmdResult {
    let version = match args.tls {
        Version::Tls12 => SslVersion::TLS1_2,
        Version::Tls13 => SslVersion::TLS1_3,
    };
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    builder
        .set_min_proto_version(Some(version))
        .and_then(|_| builder.set_max_proto_version(Some(version)))
        .map_err(|e| e.to_string())?;
    builder
        .set_groups_list(&args.groups)
        .map_err(|e| format!("--groups {}: {e}", args.groups))?;
    // A benchmark of the server's cost: the client does not verify (it would only add its
    // own work to the measure).
    builder.set_verify(SslVerifyMode::NONE);
    let last: Arc<Mutex<Option<SslSession>>> = Arc::default();
    if args.resume {
        builder.set_session_cache_mode(SslSessionCacheMode::CLIENT);
        let keep = last.clone();
        builder.set_new_session_callback(move |_, session| {
            *keep.lock().unwrap_or_else(|p| p.into_inner()) = Some(session);
        });
    }
    let connector = builder.build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let counts = Arc::new(Mutex::new(Counts::default()));
    let cpu_before = super::super::cpu_seconds();
    let started = Instant::now();
    let deadline = started + args.duration;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: bench\r\n{}\r\n",
        args.path,
        if args.keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        }
    );
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..args.connections {
            let connector = connector.clone();
            let counts = counts.clone();
            let last = last.clone();
            let address = args.connect.clone();
            let request = request.clone();
            let (resume, keep_alive) = (args.resume, args.keep_alive);
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let session = resume
                        .then(|| last.lock().unwrap_or_else(|p| p.into_inner()).clone())
                        .flatten();
                    let outcome = tokio::time::timeout(
                        Duration::from_secs(10),
                        one_connection(
                            &connector, &address, session, &request, keep_alive, deadline,
                        ),
                    )
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()));
                    let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
                    match outcome {
                        Ok(done) => {
                            counts.requests += done.requests;
                            if done.resumed {
                                counts.resumed += 1;
                            } else {
                                counts.full += 1;
                            }
                            *counts.groups.entry(done.group).or_default() += 1;
                        }
                        Err(error) => *counts.errors.entry(error).or_default() += 1,
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = super::super::cpu_seconds() - cpu_before;
    let counts = std::mem::take(&mut *counts.lock().unwrap_or_else(|p| p.into_inner()));
    let report = Report {
        connect: args.connect,
        tls: match args.tls {
            Version::Tls12 => "TLSv1.2",
            Version::Tls13 => "TLSv1.3",
        },
        groups_offered: args.groups,
        resume: args.resume,
        keep_alive: args.keep_alive,
        connections: args.connections,
        seconds,
        requests: counts.requests,
        requests_per_second: counts.requests as f64 / seconds,
        full_handshakes: counts.full,
        resumed_handshakes: counts.resumed,
        groups_used: counts.groups,
        errors: counts.errors,
        cpu_seconds,
        busy_share: cpu_seconds / seconds,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "{} {} ({}{}): {:.0} requests/s over {:.1} s; handshakes {} full, {} resumed; \
             groups {:?}; errors {:?}; this generator busy {:.0}% of the run",
            report.connect,
            report.tls,
            report.groups_offered,
            if report.keep_alive {
                ", keep-alive"
            } else {
                ""
            },
            report.requests_per_second,
            report.seconds,
            report.full_handshakes,
            report.resumed_handshakes,
            report.groups_used,
            report.errors,
            100.0 * report.busy_share,
        );
    }
    if report.requests == 0 {
        return Err(format!(
            "no request succeeded against {}: {:?}",
            report.connect, report.errors
        ));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

struct Done {
    requests: u64,
    resumed: bool,
    group: String,
}

/// One connection: its handshake and its requests (one, or until `deadline` with keep-alive).
async fn one_connection(
    connector: &SslConnector,
    address: &str,
    session: Option<SslSession>,
    request: &str,
    keep_alive: bool,
    deadline: Instant,
) -> Result<Done, String> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = tcp.set_nodelay(true);
    let mut config = connector.configure().map_err(|e| e.to_string())?;
    if let Some(session) = session.as_deref().and_then(ward_tls::ffi::session_to_offer) {
        // A copy, as agents offer (ward's agents' listener renews a TLS 1.3 ticket only when
        // it is half spent). SAFETY: the session comes from this connector's own context.
        unsafe { config.set_session(&session) }.map_err(|e| e.to_string())?;
    }
    let ssl = config
        .verify_hostname(false)
        .into_ssl("localhost")
        .map_err(|e| e.to_string())?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
    std::pin::Pin::new(&mut stream)
        .connect()
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let resumed = stream.ssl().session_reused();
    let group = ward_tls::ffi::negotiated_group(stream.ssl())
        .unwrap_or("-")
        .to_string();
    let mut requests = 0;
    let mut buffer = Vec::with_capacity(4096);
    loop {
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {}", e.kind()))?;
        read_response(&mut stream, &mut buffer).await?;
        requests += 1;
        if !keep_alive || Instant::now() >= deadline {
            break;
        }
    }
    if !keep_alive {
        // The server closes after its answer (and sends a TLS 1.3 ticket before): read to the
        // end, so the ticket is taken for the next connection.
        let mut rest = [0u8; 1024];
        while matches!(stream.read(&mut rest).await, Ok(n) if n > 0) {}
    }
    // close_notify: OpenSSL marks the session of a connection freed without it as not
    // resumable (`ssl_clear_bad_session`), and the next connection would start afresh.
    let _ = stream.shutdown().await;
    Ok(Done {
        requests,
        resumed,
        group,
    })
}

/// Reads one HTTP/1.1 response with a Content-Length body; a status other than 200 is an error.
async fn read_response(
    stream: &mut SslStream<TcpStream>,
    buffer: &mut Vec<u8>,
) -> Result<(), String> {
    buffer.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let status = head.split(' ').nth(1).unwrap_or("");
            if status != "200" {
                return Err(format!("status {status}"));
            }
            let Some(length) = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
            else {
                // No length: the body runs to the close.
                while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
                return Ok(());
            };
            while buffer.len() < end + 4 + length {
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("read: {}", e.kind()))?;
                if n == 0 {
                    return Err("closed mid-body".into());
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            return Ok(());
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {}", e.kind()))?;
        if n == 0 {
            return Err("closed before the answer".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}
