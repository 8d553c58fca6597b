//! ward-testkit: helpers for ward's tests that run real peers (Apache httpd, nginx,
//! `openssl s_client`) and real ward processes, on loopback ports.
//!
//! A missing tool fails the test with the command that installs it; tests never skip.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use ward_tls::pki;

pub mod peers;
pub mod pg;
pub mod webdriver;

/// The path of a tool from a Debian package, or a panic that says how to get it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} not found: install it with `apt-get install {package}` (scripts/test does)");
}

/// A loopback port that was free a moment ago, chosen below the kernel's ephemeral range so
/// that the outgoing connections of tests running in parallel cannot take it in between, and
/// never the same port twice in one test process.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_start.clamp(10_001, 65_535));
    // One seed per process, so that parallel test processes start at different places.
    static SEED: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        std::process::id().wrapping_mul(2_654_435_761)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
    });
    loop {
        let n = seed.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919));
        let port = (low + n % (high - low)) as u16;
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.get_or_insert_with(HashSet::new).contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            given.get_or_insert_with(HashSet::new).insert(port);
            return port;
        }
    }
}

/// Waits until something accepts TCP on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A CA and a server certificate for localhost and 127.0.0.1, written into a temp dir.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_pem: Vec<u8>,
}

pub fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::new_ca("ward test CA").unwrap();
    let server = pki::new_server_cert(&ca, &["localhost"], &[Ipv4Addr::LOCALHOST.into()]).unwrap();
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    std::fs::write(&cert, server.cert_pem().unwrap()).unwrap();
    std::fs::write(&key, server.key_pem().unwrap()).unwrap();
    Certs {
        ca_pem: ca.cert_pem().unwrap(),
        cert,
        key,
        dir,
    }
}

/// A child process killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub name: &'static str,
}

impl Daemon {
    /// What the process wrote to stderr, if it has already exited (for failure messages).
    pub fn exit_report(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                format!("{} exited with {status}: {stderr}", self.name)
            }
            _ => format!("{} is still running", self.name),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(name: &'static str, command: &mut Command) -> Daemon {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Daemon { child, name }
}

/// The `openssl s_client` flag pinning one version.
pub fn s_client_flag(version: ward_tls::TlsVersion) -> &'static str {
    match version {
        ward_tls::TlsVersion::Tls1_0 => "-tls1",
        ward_tls::TlsVersion::Tls1_1 => "-tls1_1",
        ward_tls::TlsVersion::Tls1_2 => "-tls1_2",
        ward_tls::TlsVersion::Tls1_3 => "-tls1_3",
    }
}

/// One `openssl s_client` handshake pinned to `version`; the negotiated protocol and cipher
/// when the server accepted.
pub fn s_client(port: u16, version: ward_tls::TlsVersion) -> Option<(String, String)> {
    let output: Output = Command::new(tool("openssl", "openssl"))
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .arg(s_client_flag(version))
        .args(["-cipher", "ALL:@SECLEVEL=0", "-brief"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    match (field("Protocol version:"), field("Ciphersuite:")) {
        (Some(protocol), Some(cipher)) if output.status.success() => Some((protocol, cipher)),
        _ => None,
    }
}
