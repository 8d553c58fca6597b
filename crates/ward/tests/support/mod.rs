//! Running the real `ward server` process in tests, and talking to it as clients do.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode, SslVersion};

pub fn ward_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ward")
}

pub fn ward(args: &[&str]) -> Output {
    Command::new(ward_bin()).args(args).output().unwrap()
}

pub use ward_testkit::free_port;

/// A real `ward server` process on loopback ports, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub console: u16,
    pub clients: u16,
    pub clients_http: u16,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Server {
    /// Initialises a data dir on three free loopback ports; `edit` may change files before
    /// the server starts.
    pub fn init() -> Server {
        Server::init_with(&[])
    }

    /// [`Server::init`] with extra arguments to `ward server init` (`--database URL`).
    pub fn init_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (console, clients, clients_http) = (free_port(), free_port(), free_port());
        let data = dir.path().join("data");
        let (console_addr, clients_addr, clients_http_addr) = (
            format!("127.0.0.1:{console}"),
            format!("127.0.0.1:{clients}"),
            format!("127.0.0.1:{clients_http}"),
        );
        let mut args = vec![
            "server",
            "init",
            "--data",
            data.to_str().unwrap(),
            "--console-addr",
            &console_addr,
            "--clients-addr",
            &clients_addr,
            "--clients-http-addr",
            &clients_http_addr,
        ];
        args.extend(extra);
        let output = ward(&args);
        assert!(output.status.success(), "init failed: {output:?}");
        let log = dir.path().join("server.log");
        Server {
            dir,
            console,
            clients,
            clients_http,
            child: None,
            log,
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn data_str(&self) -> String {
        self.data().display().to_string()
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.data().join(relative)
    }

    /// Replaces `from` with `to` in a file of the data dir.
    pub fn replace_in(&self, relative: &str, from: &str, to: &str) {
        let path = self.path(relative);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{relative} does not contain {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    /// Sets the applied SSLProtocol of a conf file with the real editor (`ward tls edit`).
    pub fn set_protocol(&self, relative: &str, words: &str) {
        let output = ward(&[
            "tls",
            "edit",
            self.path(relative).to_str().unwrap(),
            "--protocol",
            words,
        ]);
        assert!(output.status.success(), "{output:?}");
    }

    /// Starts the server and waits until every listener answers.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts the server with extra arguments and waits until every listener answers.
    pub fn start_with(&mut self, extra: &[&str]) {
        self.start_with_env(extra, &[]);
    }

    /// Starts the server with extra arguments and environment variables, and waits until
    /// every listener answers.
    pub fn start_with_env(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(ward_bin())
            .args(["server", "--data", &self.data_str()])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [self.console, self.clients, self.clients_http] {
            while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("ward server exited with {status}:\n{}", self.log_text());
                }
                assert!(
                    Instant::now() < deadline,
                    "server did not start:\n{}",
                    self.log_text()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Waits up to `bound` for the server to exit by itself; its exit status.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            let status = self.child.as_mut()?.try_wait().unwrap();
            if let Some(status) = status {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// SIGTERM, and the exit status within `bound`.
    pub fn terminate(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe { libc_kill(child.id() as i32, 15) };
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.path("certs/ca.pem")).unwrap()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.path("admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(10));
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

pub fn send_signal(pid: i32, signal: i32) {
    unsafe { libc_kill(pid, signal) };
}

/// `openssl s_client` pinned to one version: the negotiated protocol, or `None` when refused.
pub fn s_client(port: u16, version: ward_tls::TlsVersion) -> Option<String> {
    ward_testkit::s_client(port, version).map(|(protocol, _)| protocol)
}

/// A keep-alive HTTP/1.1 client over any stream.
pub struct HttpConnection<S> {
    reader: BufReader<S>,
}

pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl<S: Read + Write> HttpConnection<S> {
    pub fn new(stream: S) -> HttpConnection<S> {
        HttpConnection {
            reader: BufReader::new(stream),
        }
    }

    pub fn stream(&mut self) -> &mut S {
        self.reader.get_mut()
    }

    /// Sends one request and reads its response; `None` when the server closed the connection.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Option<HttpReply> {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.reader.get_mut().write_all(request.as_bytes()).ok()?;
        self.read_reply()
    }

    pub fn read_reply(&mut self) -> Option<HttpReply> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':')?;
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).ok()?;
        Some(HttpReply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// A TLS connection to 127.0.0.1:`port`, capped at `max` (e.g. TLS1 for an XP-like client),
/// verifying the server against `ca_pem`.
pub fn tls_connect(
    port: u16,
    ca_pem: &[u8],
    max: Option<SslVersion>,
) -> Result<SslStream<TcpStream>, String> {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_max_proto_version(max).unwrap();
    builder.set_cipher_list("DEFAULT:@SECLEVEL=0").unwrap();
    for cert in openssl::x509::X509::stack_from_pem(ca_pem).unwrap() {
        builder.cert_store_mut().add_cert(cert).unwrap();
    }
    builder.set_verify(SslVerifyMode::PEER);
    let connector = builder.build();
    let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    connector
        .connect("localhost", tcp)
        .map_err(|e| e.to_string())
}

pub fn http_connect(port: u16) -> HttpConnection<TcpStream> {
    let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    HttpConnection::new(tcp)
}

/// One HTTPS GET on a fresh connection.
pub fn https_get(port: u16, ca_pem: &[u8], path: &str, token: Option<&str>) -> HttpReply {
    let stream = tls_connect(port, ca_pem, None).unwrap();
    let mut connection = HttpConnection::new(stream);
    let authorization = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = authorization
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    connection.request("GET", path, &headers, "").unwrap()
}

/// Polls `check` until it returns `Some`, for at most `bound`.
pub fn eventually<T>(bound: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn socket(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// A running `ward agent run` process, killed on drop.
pub struct Agent {
    pub dir: tempfile::TempDir,
    pub child: Child,
    /// Run with `--tls-max`.
    pub capped: bool,
}

impl Agent {
    pub fn state(&self) -> String {
        self.dir.path().display().to_string()
    }

    pub fn status(&self) -> Option<serde_json::Value> {
        let output = ward(&["agent", "status", "--state", &self.state(), "--json"]);
        output
            .status
            .success()
            .then(|| serde_json::from_slice(&output.stdout).unwrap())
    }

    pub fn id(&self) -> String {
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir.path().join("agent.json")).unwrap())
                .unwrap();
        state["agent"].as_str().unwrap().to_string()
    }

    /// Waits until the status satisfies `check`.
    pub fn until(
        &self,
        bound: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        eventually(bound, || self.status().filter(|s| check(s))).unwrap_or_else(|| {
            panic!(
                "agent {} status never matched; last: {:?}\nlog:\n{}",
                self.id(),
                self.status(),
                std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
            )
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ward ARGS --data DIR` against the test server.
pub fn run_cli(server: &Server, args: &[&str]) -> Output {
    let data = server.data_str();
    let mut all = args.to_vec();
    all.extend(["--data", &data]);
    ward(&all)
}

/// `ward ARGS --data DIR --json`, which must succeed; its JSON.
pub fn cli(server: &Server, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let output = run_cli(server, &all);
    assert!(
        output.status.success(),
        "ward {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}

/// A new enrollment token for `group`; `allow_http` lets it enroll over plain HTTP.
pub fn group_token(server: &Server, group: &str, allow_http: bool) -> String {
    let mut args = vec!["group", "token", "create", group];
    if allow_http {
        args.push("--allow-http");
    }
    cli(server, &args)["token"].as_str().unwrap().to_string()
}

/// The server's agreement-key pin, learned over HTTPS (where the CA proves who answers).
pub fn pin(server: &Server) -> String {
    let hello = https_get(server.clients, &server.ca_pem(), "/agent/v1/hello", None).json();
    hello["agreement_key_sha256"].as_str().unwrap().to_string()
}

pub fn enroll(server: &Server, url: &str, token: &str, tls_max: Option<&str>) -> tempfile::TempDir {
    match tls_max {
        Some(max) => enroll_with(server, url, token, &["--tls-max", max]),
        None => enroll_with(server, url, token, &[]),
    }
}

/// `ward agent enroll` with extra arguments (`--client-profile xp-ie8`, `--name ...`).
pub fn enroll_with(server: &Server, url: &str, token: &str, extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ca = server.path("certs/ca.pem");
    let mut args = vec![
        "agent",
        "enroll",
        "--server",
        url,
        "--token",
        token,
        "--ca",
        ca.to_str().unwrap(),
        "--state",
    ];
    let state = dir.path().display().to_string();
    args.push(&state);
    args.extend(extra);
    let pinned = pin(server);
    if url.starts_with("http://") {
        args.extend(["--pin", &pinned]);
    }
    let output = ward(&args);
    assert!(
        output.status.success(),
        "enroll: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir
}

/// Starts `ward agent run` on an enrolled state dir and waits for its first check-in.
pub fn run_agent(dir: tempfile::TempDir, tls_max: Option<&str>) -> Agent {
    let agent = start_agent(dir, tls_max);
    agent.until(Duration::from_secs(15), |s| !s["last_checkin"].is_null());
    agent
}

/// Starts `ward agent run` on a state dir, without waiting for anything.
pub fn start_agent(dir: tempfile::TempDir, tls_max: Option<&str>) -> Agent {
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut command = Command::new(ward_bin());
    command
        .args(["agent", "run", "--state"])
        .arg(dir.path())
        .args(["--return-after", "2s"]);
    if let Some(max) = tls_max {
        command.args(["--tls-max", max]);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let agent = Agent {
        dir,
        child,
        capped: tls_max.is_some(),
    };
    // Its control socket answers before it is used.
    agent.until(Duration::from_secs(15), |_| true);
    agent
}

/// An agent enrolled in the root group over HTTPS, running, after its first check-in.
pub fn https_agent(server: &Server) -> Agent {
    let url = format!("https://127.0.0.1:{}", server.clients);
    let token = group_token(server, "My Company", false);
    run_agent(enroll(server, &url, &token, None), None)
}

/// The seed's note for its XP clients: 3DES named on the clients listener.
pub const SEED_XP_CIPHERS: &str = "SSLCipherSuite HIGH:DES-CBC3-SHA:!aNULL:!MD5";

/// Appends [`SEED_XP_CIPHERS`] to the clients listener's conf file (not reloaded).
pub fn name_seed_3des(server: &Server) {
    let file = server.path("conf/ssl/sslforclients.conf");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}\n{SEED_XP_CIPHERS}\n")).unwrap();
}

/// The first audit entry (the log lists the newest first) that `matches`, or a panic that
/// shows the log.
pub fn audit_entry(
    server: &Server,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let audit = cli(server, &["audit"]);
    audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| matches(e))
        .unwrap_or_else(|| panic!("no such entry in {audit}"))
        .clone()
}

/// A started server whose root group checks in every second, without randomisation.
pub fn fast_server() -> Server {
    let mut server = Server::init();
    server.start();
    fast_checkins(&server);
    server
}

/// The root group checks in every second, without randomisation.
pub fn fast_checkins(server: &Server) {
    cli(
        server,
        &[
            "group",
            "set",
            "My Company",
            "--interval",
            "1s",
            "--randomize",
            "0s",
        ],
    );
}

/// The seed's legacy path: `Default-http`, the default list on the clients-http port, and
/// `My Company/Legacy`, a group that uses it.
pub fn legacy_http_group(server: &Server) {
    let port = server.clients_http.to_string();
    cli(
        server,
        &[
            "serverlist",
            "copy",
            "Default",
            "Default-http",
            "--port",
            &port,
        ],
    );
    cli(server, &["group", "create", "Legacy"]);
    cli(
        server,
        &[
            "group",
            "set",
            "My Company/Legacy",
            "--server-list",
            "Default-http",
        ],
    );
}

/// Sets the root group's policy document: a change every agent must pick up.
pub fn set_root_policy(server: &Server, policy: &str) {
    let path = server.dir.path().join("policy.json");
    std::fs::write(&path, policy).unwrap();
    cli(
        server,
        &[
            "group",
            "set",
            "My Company",
            "--policy",
            path.to_str().unwrap(),
        ],
    );
}

/// The seed's recovery of an agent that lost contact: the admin exports `group`'s
/// communication settings, the stopped agent imports them (capped at `tls_max`) and runs
/// again. Returns what the import printed, and the running agent.
pub fn recover(server: &Server, group: &str, mut agent: Agent, tls_max: &str) -> (Output, Agent) {
    let package = server.dir.path().join("recovery-settings.json");
    cli(
        server,
        &[
            "group",
            "export-settings",
            group,
            "--out",
            package.to_str().unwrap(),
        ],
    );
    let dir = std::mem::replace(&mut agent.dir, tempfile::tempdir().unwrap());
    drop(agent);
    let imported = ward(&[
        "agent",
        "import-settings",
        package.to_str().unwrap(),
        "--state",
        dir.path().to_str().unwrap(),
        "--tls-max",
        tls_max,
    ]);
    assert!(imported.status.success(), "{imported:?}");
    (imported, run_agent(dir, Some(tls_max)))
}

/// The agents of [`fleet_of_each_kind`], by what they are.
pub struct Fleet {
    pub agents: Vec<(&'static str, Agent)>,
}

impl Fleet {
    /// Every agent checks in again, now: a new root policy (`{"round": round}`) goes out, and
    /// each agent must fetch it over its own channel (a signed check-in answered after this
    /// call) and be without an error.
    pub fn all_check_in_again(&self, server: &Server, round: u32) {
        set_root_policy(server, &format!("{{\"round\": {round}}}"));
        for (kind, agent) in &self.agents {
            let channel = if kind.starts_with("https") {
                "https"
            } else {
                "http"
            };
            eventually(Duration::from_secs(30), || {
                let state: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(agent.dir.path().join("agent.json")).ok()?,
                )
                .ok()?;
                (state["settings"]["policy"]["round"] == round).then_some(())
            })
            .unwrap_or_else(|| panic!("the {kind} agent never fetched round {round}"));
            agent.until(Duration::from_secs(15), |s| {
                s["channel"] == channel && s["last_error"].is_null()
            });
        }
    }
}

/// A started server (check-ins every second) with one running agent of each kind: HTTPS pull
/// (the root group), HTTPS push (`Push`), HTTP pull (`Legacy`, on the clients-http list) and
/// HTTP push (`Legacy Push`).
pub fn fleet_of_each_kind() -> (Server, Fleet) {
    let server = fast_server();
    legacy_http_group(&server);
    cli(&server, &["group", "create", "Push"]);
    cli(
        &server,
        &["group", "set", "My Company/Push", "--mode", "push"],
    );
    cli(&server, &["group", "create", "Legacy Push"]);
    cli(
        &server,
        &[
            "group",
            "set",
            "My Company/Legacy Push",
            "--server-list",
            "Default-http",
            "--mode",
            "push",
        ],
    );
    let https = format!("https://127.0.0.1:{}", server.clients);
    let http = format!("http://127.0.0.1:{}", server.clients_http);
    let run = |url: &str, group: &str, allow_http: bool| {
        let token = group_token(&server, group, allow_http);
        run_agent(enroll(&server, url, &token, None), None)
    };
    let agents = vec![
        ("https pull", run(&https, "My Company", false)),
        ("https push", run(&https, "My Company/Push", false)),
        ("http pull", run(&http, "My Company/Legacy", true)),
        ("http push", run(&http, "My Company/Legacy Push", true)),
    ];
    for (kind, agent) in &agents {
        let mode = if kind.ends_with("push") {
            "push"
        } else {
            "pull"
        };
        agent.until(Duration::from_secs(15), |s| s["mode"] == mode);
    }
    (server, Fleet { agents })
}
