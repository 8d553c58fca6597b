//! Version skew with real binaries, one release apart: an agent of the previous release
//! enrolls with this server, checks in over HTTPS and over plain HTTP (pinned key) and follows
//! a move to another group; and this release's agent does the same with the previous
//! release's server. The agent protocol (`/agent/v1/hello`, `enroll`, `checkin`, and the
//! settings they carry) must stay compatible in both directions.
//!
//! The previous release's `ward` is built by this test from its git commit
//! ([`PREVIOUS_RELEASE`]) into `target/version-skew/<commit>/`, once: later runs reuse the
//! binary. A file lock keeps test processes that run at the same time from building together.

mod support;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{eventually, free_port, https_get};

/// The previous release: the git commit (of this repository) whose agent and server this
/// release must work with. Bump it at each release, to the commit of the release just made.
const PREVIOUS_RELEASE: &str = "cbb4605ba4bd7af93dbb76abc96b2cf487609c41";

/// The longest the previous release's build may take, or be waited for.
const BUILD_BOUND: Duration = Duration::from_secs(60 * 60);

/// How long an agent may take to show what is expected of it.
const AGENT_BOUND: Duration = Duration::from_secs(30);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// An exclusive `flock` on a file, held until dropped (closing the file releases it).
struct BuildLock {
    _file: File,
}

impl BuildLock {
    fn acquire(path: &Path) -> BuildLock {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let deadline = Instant::now() + BUILD_BOUND;
        let mut told = false;
        loop {
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return BuildLock { _file: file };
            }
            let error = std::io::Error::last_os_error();
            let busy = matches!(
                error.raw_os_error(),
                Some(libc::EWOULDBLOCK) | Some(libc::EINTR)
            );
            assert!(busy, "flock {}: {error}", path.display());
            if !told {
                eprintln!(
                    "version skew: another test process holds {}; waiting for its build",
                    path.display()
                );
                told = true;
            }
            assert!(
                Instant::now() < deadline,
                "{} still locked after {BUILD_BOUND:?}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The previous release's `ward` binary: built from [`PREVIOUS_RELEASE`] on first use, then
/// reused. Its tree is `git archive`d into `target/version-skew/<commit>/src` and built there
/// with its own Cargo.lock (`--locked`) into `target/version-skew/<commit>/target`.
fn previous_ward() -> PathBuf {
    let root = repo_root();
    let base = root.join("target/version-skew").join(PREVIOUS_RELEASE);
    let binary = base.join("target/debug/ward");
    std::fs::create_dir_all(&base).unwrap();
    let _lock = BuildLock::acquire(&base.join("build.lock"));
    if binary.exists() {
        eprintln!("version skew: reusing {}", binary.display());
        return binary;
    }
    let started = Instant::now();
    // A fresh tree each time the binary is missing: a build interrupted before may have left
    // a partial one.
    let src = base.join("src");
    if src.exists() {
        std::fs::remove_dir_all(&src).unwrap();
    }
    std::fs::create_dir_all(&src).unwrap();
    eprintln!(
        "version skew: extracting {PREVIOUS_RELEASE} into {}",
        src.display()
    );
    let mut git = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["archive", PREVIOUS_RELEASE])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git runs");
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&src)
        .stdin(git.stdout.take().unwrap())
        .output()
        .expect("tar runs");
    let archived = git.wait_with_output().unwrap();
    assert!(
        archived.status.success() && tar.status.success(),
        "git archive {PREVIOUS_RELEASE} | tar -x failed: {}{}",
        String::from_utf8_lossy(&archived.stderr),
        String::from_utf8_lossy(&tar.stderr)
    );

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&src)
        .args(["build", "-p", "ward", "--bin", "ward"])
        .env("CARGO_TARGET_DIR", base.join("target"))
        .env("CARGO_TERM_COLOR", "never")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if src.join("Cargo.lock").exists() {
        command.arg("--locked");
    }
    // What cargo set for this test process describes this package, not the one built.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|prefix| key.starts_with(prefix))
            || key == "CARGO_PRIMARY_PACKAGE"
            || key == "CARGO_TARGET_TMPDIR"
        {
            command.env_remove(key.as_ref());
        }
    }
    eprintln!("version skew: building: {command:?}");
    let mut child = command.spawn().expect("cargo runs");
    let output = Arc::new(Mutex::new(String::new()));
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|pipe| {
        let output = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                eprintln!("version skew: cargo: {line}");
                let mut output = output.lock().unwrap();
                output.push_str(&line);
                output.push('\n');
            }
        })
    })
    .collect();
    let deadline = Instant::now() + BUILD_BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for reader in readers {
        let _ = reader.join();
    }
    let output = output.lock().unwrap().clone();
    match status {
        Some(status) if status.success() => {}
        Some(status) => panic!(
            "building {PREVIOUS_RELEASE} failed ({status}) in {}:\n{output}",
            src.display()
        ),
        None => panic!("building {PREVIOUS_RELEASE} took over {BUILD_BOUND:?}:\n{output}"),
    }
    assert!(
        binary.exists(),
        "cargo succeeded but {} is missing:\n{output}",
        binary.display()
    );
    eprintln!(
        "version skew: built {} in {:.0?}",
        binary.display(),
        started.elapsed()
    );
    binary
}

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()))
}

/// A real `ward server` of one release, on its own fresh data dir and free loopback ports,
/// stopped (SIGTERM, then SIGKILL) on drop.
struct Server {
    bin: PathBuf,
    dir: tempfile::TempDir,
    clients: u16,
    clients_http: u16,
    child: Option<Child>,
}

impl Server {
    /// `ward server init`, then `ward server`, as support's `Server` does, with this
    /// release's binary; waits until every listener answers. The root group checks in every
    /// second, without randomisation.
    fn start(bin: &Path) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (console, clients, clients_http) = (free_port(), free_port(), free_port());
        let data = dir.path().join("data");
        let init = run(
            bin,
            &[
                "server",
                "init",
                "--data",
                data.to_str().unwrap(),
                "--console-addr",
                &format!("127.0.0.1:{console}"),
                "--clients-addr",
                &format!("127.0.0.1:{clients}"),
                "--clients-http-addr",
                &format!("127.0.0.1:{clients_http}"),
            ],
        );
        assert!(init.status.success(), "{}: init: {init:?}", bin.display());
        let log = File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(bin)
            .args(["server", "--data", data.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut server = Server {
            bin: bin.to_path_buf(),
            dir,
            clients,
            clients_http,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in [console, clients, clients_http] {
            while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
                if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("{} exited with {status}:\n{}", bin.display(), server.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not start:\n{}",
                    bin.display(),
                    server.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        server.cli(&[
            "group",
            "set",
            "My Company",
            "--interval",
            "1s",
            "--randomize",
            "0s",
        ]);
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn ca(&self) -> PathBuf {
        self.data().join("certs/ca.pem")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `ward ARGS --data DIR --json` of the server's own release, which must succeed; its JSON.
    fn cli(&self, args: &[&str]) -> Value {
        let data = self.data().display().to_string();
        let mut all = args.to_vec();
        all.extend(["--data", &data, "--json"]);
        let output = run(&self.bin, &all);
        assert!(
            output.status.success(),
            "{} {args:?}: {}",
            self.bin.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    }

    fn token(&self, group: &str, allow_http: bool) -> String {
        let mut args = vec!["group", "token", "create", group];
        if allow_http {
            args.push("--allow-http");
        }
        self.cli(&args)["token"].as_str().unwrap().to_string()
    }

    /// The server's agreement-key pin, learned over HTTPS (where the CA proves who answers).
    fn pin(&self) -> String {
        let ca = std::fs::read(self.ca()).unwrap();
        let hello = https_get(self.clients, &ca, "/agent/v1/hello", None).json();
        hello["agreement_key_sha256"].as_str().unwrap().to_string()
    }

    /// The server's record of an agent, from `ward client list`.
    fn client(&self, id: &str) -> Option<Value> {
        self.cli(&["client", "list"])
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A running `ward agent run` of one release, killed on drop.
struct Agent {
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Child,
}

impl Agent {
    /// `ward agent enroll` with `url` (over plain HTTP with the server's pin), then
    /// `ward agent run` in the background, both of `bin`'s release.
    fn enroll_and_run(bin: &Path, server: &Server, url: &str, token: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().display().to_string();
        let ca = server.ca().display().to_string();
        let mut args = vec![
            "agent", "enroll", "--server", url, "--token", token, "--ca", &ca, "--state", &state,
        ];
        let pin = server.pin();
        if url.starts_with("http://") {
            args.extend(["--pin", &pin]);
        }
        let enrolled = run(bin, &args);
        assert!(
            enrolled.status.success(),
            "{} agent enroll {url}: {}\nserver log:\n{}",
            bin.display(),
            String::from_utf8_lossy(&enrolled.stderr),
            server.log()
        );
        let log = File::create(dir.path().join("agent.log")).unwrap();
        let child = Command::new(bin)
            .args(["agent", "run", "--state", &state])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Agent {
            bin: bin.to_path_buf(),
            dir,
            child,
        }
    }

    /// `ward agent status --json` of the agent's own release.
    fn status(&self) -> Option<Value> {
        let state = self.dir.path().display().to_string();
        let output = run(&self.bin, &["agent", "status", "--state", &state, "--json"]);
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    /// Waits until the status satisfies `check`; its status then.
    fn until(&self, server: &Server, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(AGENT_BOUND, || self.status().filter(|s| check(s))).unwrap_or_else(|| {
            panic!(
                "{} agent: never {what}; last status: {:?}\nagent log:\n{}\nserver log:\n{}",
                self.bin.display(),
                self.status(),
                std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default(),
                server.log()
            )
        })
    }

    /// The policy document the agent wrote, as it follows its group's settings.
    fn policy(&self) -> Value {
        let text = std::fs::read_to_string(self.dir.path().join("policy.json")).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("policy.json: {e}: {text}"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server of one release and agents of another: each agent enrolls (over HTTPS, and over
/// plain HTTP with the pinned key), checks in, is seen by the server with what it reported,
/// and follows a move to another group.
fn skew(direction: &str, server_bin: &Path, agent_bin: &Path) {
    eprintln!(
        "version skew: {direction}: server {}, agents {}",
        server_bin.display(),
        agent_bin.display()
    );
    let server = Server::start(server_bin);
    let https = format!("https://localhost:{}", server.clients);
    let http = format!("http://127.0.0.1:{}", server.clients_http);
    // The seed's legacy group: a plain-HTTP server list; and under each group the one its
    // agent moves to, which has a policy of its own.
    server.cli(&[
        "serverlist",
        "create",
        "Skew HTTP",
        "--server",
        &format!("1:{http}"),
    ]);
    server.cli(&["group", "create", "Legacy"]);
    server.cli(&[
        "group",
        "set",
        "My Company/Legacy",
        "--server-list",
        "Skew HTTP",
    ]);
    let policy = server.dir.path().join("moved-policy.json");
    std::fs::write(&policy, r#"{"skew": "moved"}"#).unwrap();
    let policy = policy.display().to_string();
    server.cli(&["group", "create", "Moved"]);
    server.cli(&["group", "set", "My Company/Moved", "--policy", &policy]);
    server.cli(&["group", "create", "Moved", "--parent", "My Company/Legacy"]);
    server.cli(&[
        "group",
        "set",
        "My Company/Legacy/Moved",
        "--policy",
        &policy,
    ]);
    let https_token = server.token("My Company", false);
    let http_token = server.token("My Company/Legacy", true);

    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let cases = [
        (
            "https",
            https,
            https_token,
            "My Company",
            "My Company/Moved",
        ),
        (
            "http",
            http,
            http_token,
            "My Company/Legacy",
            "My Company/Legacy/Moved",
        ),
    ];
    let mut agents = Vec::new();
    for (channel, url, token, group, _) in &cases {
        let agent = Agent::enroll_and_run(agent_bin, &server, url, token);
        let status = agent.until(&server, &format!("checked in over {channel}"), |s| {
            s["channel"] == *channel
                && s["serial"].as_i64() > Some(0)
                && !s["last_checkin"].is_null()
                && s["last_error"].is_null()
        });
        // The server it checks in with comes from its group's server list (not necessarily
        // the URL it enrolled with), on the listener of its channel.
        let port = if *channel == "https" {
            server.clients
        } else {
            server.clients_http
        };
        let used = status["server"].as_str().unwrap_or_default().to_string();
        assert!(
            used.starts_with(&format!("{channel}://")) && used.ends_with(&format!(":{port}")),
            "{direction}: {status}"
        );
        if *channel == "https" {
            assert_eq!(status["tls_version"], "TLSv1.3", "{direction}: {status}");
        } else {
            assert!(status["tls_version"].is_null(), "{direction}: {status}");
        }
        // The server understood what the agent reported: its check-in's fields, not defaults.
        let id = status["id"]
            .as_str()
            .expect("status has the id")
            .to_string();
        let client = eventually(AGENT_BOUND, || {
            server
                .client(&id)
                .filter(|c| c["channel"] == *channel && c["pending"] == false)
        })
        .unwrap_or_else(|| {
            panic!(
                "{direction}: the server never saw {id} check in over {channel}: {:?}",
                server.client(&id)
            )
        });
        assert_eq!(client["group"], *group, "{direction}: {client}");
        assert_eq!(client["server"], used, "{direction}: {client}");
        assert_eq!(client["hostname"], hostname, "{direction}: {client}");
        assert_eq!(client["os"]["name"], "linux", "{direction}: {client}");
        assert!(
            client["agent_version"]
                .as_str()
                .is_some_and(|v| !v.is_empty()),
            "{direction}: {client}"
        );
        assert!(
            client["tls_versions"]
                .as_array()
                .is_some_and(|v| v.contains(&Value::from("TLSv1.3"))),
            "{direction}: {client}"
        );
        if *channel == "https" {
            assert_eq!(client["tls_version"], "TLSv1.3", "{direction}: {client}");
        }
        agents.push((agent, id, used, status["serial"].as_i64().unwrap()));
    }

    // Moved by the admin, each agent picks up its new group's settings (a higher serial, the
    // group's policy written) and acknowledges them.
    for ((channel, _, _, _, moved), (agent, id, used, before)) in cases.iter().zip(&agents) {
        server.cli(&["client", "move", id, "--group", moved]);
        let status = agent.until(&server, &format!("picked up its move to {moved}"), |s| {
            s["serial"].as_i64() > Some(*before)
                && s["channel"] == *channel
                && s["last_error"].is_null()
        });
        assert_eq!(status["server"], *used, "{direction}: {status}");
        assert_eq!(agent.policy()["skew"], "moved", "{direction}: {moved}");
        let serial = status["serial"].as_i64().unwrap();
        let client = eventually(AGENT_BOUND, || {
            server
                .client(id)
                .filter(|c| c["pending"] == false && c["acked_serial"].as_i64() >= Some(serial))
        })
        .unwrap_or_else(|| {
            panic!(
                "{direction}: the server never saw {id} acknowledge serial {serial}: {:?}",
                server.client(id)
            )
        });
        assert_eq!(client["group"], *moved, "{direction}: {client}");
        assert_eq!(client["channel"], *channel, "{direction}: {client}");
    }
    eprintln!("version skew: {direction}: ok");
}

#[test]
fn agents_and_servers_one_release_apart_enroll_check_in_and_follow_moves() {
    let previous = previous_ward();
    let current = PathBuf::from(env!("CARGO_BIN_EXE_ward"));
    skew(
        "this server, the previous release's agents",
        &current,
        &previous,
    );
    skew(
        "the previous release's server, this release's agents",
        &previous,
        &current,
    );
}
