//! Real TLS clients of other stacks than ward's (the host's OpenSSL through `openssl
//! s_client`, `curl` and Python, GnuTLS through `gnutls-cli`, Java's JSSE), what each sends,
//! and a relay that makes each one a distinct loopback peer of a server and tells whether the
//! server answered it with a ServerHello.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::tool;

/// A command that makes one TLS connection to the address it is given.
pub type Connect = Box<dyn Fn(SocketAddr) -> Command + Send + Sync>;

/// The outside clients, each a name and its command. Holds the Java program's directory.
pub struct OutsideClients {
    pub clients: Vec<(String, Connect)>,
    _java: tempfile::TempDir,
}

fn s_client(flags: &'static [&'static str]) -> Connect {
    Box::new(move |address| {
        let mut command = Command::new(tool("openssl", "openssl"));
        command
            .args(["s_client", "-connect", &address.to_string()])
            .args(flags);
        command
    })
}

const JAVA_HELLO: &str = "import javax.net.ssl.*;\nimport java.security.cert.X509Certificate;\n\
public class Hello { public static void main(String[] a) throws Exception {\n\
TrustManager[] all = { new X509TrustManager() {\n\
public void checkClientTrusted(X509Certificate[] c, String s) {}\n\
public void checkServerTrusted(X509Certificate[] c, String s) {}\n\
public X509Certificate[] getAcceptedIssuers() { return new X509Certificate[0]; } } };\n\
SSLContext context = SSLContext.getInstance(\"TLS\"); context.init(null, all, null);\n\
SSLSocket socket = (SSLSocket) context.getSocketFactory().createSocket(\"127.0.0.1\", Integer.parseInt(a[0]));\n\
if (a.length > 1) socket.setEnabledProtocols(new String[] { a[1] });\n\
socket.startHandshake(); } }\n";

/// Every outside client: `openssl s_client` (4 settings), `curl`, Python's `ssl`,
/// `gnutls-cli` (3 priorities) and a Java client (2 settings).
pub fn outside_clients() -> OutsideClients {
    let mut clients: Vec<(String, Connect)> = vec![
        ("openssl s_client".into(), s_client(&[])),
        ("openssl s_client -tls1_2".into(), s_client(&["-tls1_2"])),
        (
            "openssl s_client -tls1 @SECLEVEL=0".into(),
            s_client(&["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
        ),
        (
            "openssl s_client -tls1_2 -cipher AES128-SHA".into(),
            s_client(&["-tls1_2", "-cipher", "AES128-SHA"]),
        ),
        (
            "curl".into(),
            Box::new(|address: SocketAddr| {
                let mut command = Command::new(tool("curl", "curl"));
                command.args([
                    "-sk",
                    "--max-time",
                    "10",
                    &format!("https://localhost:{}/", address.port()),
                ]);
                command
            }),
        ),
        (
            "python ssl".into(),
            Box::new(|address: SocketAddr| {
                let mut command = Command::new("python3");
                command.args([
                    "-c",
                    "import socket,ssl,sys\n\
                     c=ssl.create_default_context(); c.check_hostname=False; c.verify_mode=ssl.CERT_NONE\n\
                     s=socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
                     c.wrap_socket(s, server_hostname='localhost')",
                    &address.port().to_string(),
                ]);
                command
            }),
        ),
    ];
    for (label, priority) in [
        ("gnutls-cli", None),
        (
            "gnutls-cli TLS 1.2 only",
            Some("NORMAL:-VERS-ALL:+VERS-TLS1.2"),
        ),
        (
            "gnutls-cli TLS 1.0, RSA and 3DES",
            Some("NONE:+VERS-TLS1.0:+RSA:+3DES-CBC:+AES-128-CBC:+SHA1:+COMP-NULL:+SIGN-ALL"),
        ),
    ] {
        clients.push((
            label.into(),
            Box::new(move |address: SocketAddr| {
                let mut command = Command::new(tool("gnutls-cli", "gnutls-bin"));
                command.args(["--insecure", "--port", &address.port().to_string()]);
                if let Some(priority) = priority {
                    command.arg(format!("--priority={priority}"));
                }
                command.arg("127.0.0.1");
                command
            }),
        ));
    }
    let java = tempfile::tempdir().expect("a temporary directory");
    let source = java.path().join("Hello.java");
    std::fs::write(&source, JAVA_HELLO).expect("the Java client's source");
    for (label, protocol) in [("java", None), ("java TLSv1.2", Some("TLSv1.2"))] {
        let source = source.clone();
        clients.push((
            label.into(),
            Box::new(move |address: SocketAddr| {
                let mut command = Command::new(tool("java", "default-jre-headless"));
                command.arg(&source).arg(address.port().to_string());
                if let Some(protocol) = protocol {
                    command.arg(protocol);
                }
                command
            }),
        ));
    }
    OutsideClients {
        clients,
        _java: java,
    }
}

/// Runs `command` (with everything but its TLS connection to `address` thrown away) until
/// `done` says so or `bound` passes, then ends it.
pub fn run_until(mut command: Command, bound: Duration, done: impl Fn() -> bool) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let started = Instant::now();
    while !done() && started.elapsed() < bound {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The ClientHello (records included) an outside program sends: a listener that reads it and
/// closes.
pub fn captured_hello(name: &str, connect: &Connect) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let label = name.to_string();
    let reader = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match ward_tls::hello::needed_len(&bytes) {
                Ok(Some(n)) if bytes.len() >= n => break,
                _ => {}
            }
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "{label} closed before its ClientHello was complete");
            bytes.extend_from_slice(&buf[..n]);
        }
        bytes
    });
    let finished = Arc::new(Mutex::new(false));
    let flag = finished.clone();
    let waiter = thread::spawn(move || {
        let hello = reader.join();
        *flag.lock().unwrap() = true;
        hello
    });
    run_until(connect(address), Duration::from_secs(20), || {
        *finished.lock().unwrap()
    });
    waiter
        .join()
        .unwrap()
        .unwrap_or_else(|_| panic!("{name}: no ClientHello"))
}

/// How a server answered a ClientHello: with its hello (served) or not (an alert, or a close).
fn served(first: &[u8]) -> bool {
    first.len() >= 6 && first[0] == 22 && first[5] == 2
}

/// A TCP relay on 127.0.0.1 that connects on to `server` from the loopback address `source`,
/// so a client that cannot choose its address still reaches the server as its own peer; it
/// notes, for the last connection, whether the server answered with a ServerHello.
pub struct Relay {
    pub address: SocketAddr,
    answer: Arc<Mutex<Option<bool>>>,
}

impl Relay {
    pub fn new(source: Ipv4Addr, server: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(None));
        let noted = answer.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(upstream) = connect_from(source, server) else {
                    continue;
                };
                let noted = noted.clone();
                thread::spawn(move || pump(client, upstream, noted));
            }
        });
        Relay { address, answer }
    }

    /// Forgets the last answer.
    pub fn reset(&self) {
        *self.answer.lock().unwrap() = None;
    }

    /// The server's answer to the last connection: `Some(true)` for a ServerHello.
    pub fn answer(&self) -> Option<bool> {
        *self.answer.lock().unwrap()
    }
}

/// A TCP connection to `to` from the address `source` (bound before connecting).
fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        socket.connect(to).await
    })?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Copies both ways; notes the server's first six bytes (or its close) as the answer.
fn pump(client: TcpStream, upstream: TcpStream, answer: Arc<Mutex<Option<bool>>>) {
    let (Ok(mut client_in), Ok(mut upstream_out)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let up = thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = client_in.read(&mut buf) {
            if n == 0 || upstream_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = upstream_out.shutdown(Shutdown::Write);
    });
    let (mut upstream_in, mut client_out) = (upstream, client);
    let _ = upstream_in.set_read_timeout(Some(Duration::from_secs(15)));
    let mut first = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match upstream_in.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if first.len() < 6 {
                    first.extend_from_slice(&buf[..n]);
                    if first.len() >= 6 {
                        *answer.lock().unwrap() = Some(served(&first));
                    }
                }
                if client_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    if first.len() < 6 {
        *answer.lock().unwrap() = Some(false);
    }
    let _ = client_out.shutdown(Shutdown::Both);
    let _ = up.join();
}
