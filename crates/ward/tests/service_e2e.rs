//! ward as a service manager and a log collector see it: `READY=1` on `NOTIFY_SOCKET` once
//! every listener accepts, `STOPPING=1` at the end; JSON logs that `jq` reads line by line,
//! whose check-in and handshake lines carry the agent, the listener and the peer as fields;
//! text logs without their own timestamps under journald; and the generated manual pages and
//! shell completions, as `man` and each shell read them.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Each line of `log` that `jq` reads, as jq wrote it back (`jq -c .`, run once per line).
fn through_jq(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut jq = Command::new("jq")
                .args(["-c", "."])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("jq (scripts/test installs it)");
            jq.stdin.take().unwrap().write_all(line.as_bytes()).unwrap();
            let output = jq.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "jq refused a log line: {line}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            serde_json::from_slice(&output.stdout).unwrap()
        })
        .collect()
}

#[test]
fn ready_is_told_once_every_listener_accepts_and_logs_carry_their_fields() {
    let mut server = Server::init();
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    server.start_with_env(
        &["--log-format", "json"],
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("RUST_LOG", "info,ward_server=debug"),
        ],
    );
    let mut buffer = [0u8; 1024];
    let started = Instant::now();
    let ready = loop {
        let n = notify.recv(&mut buffer).expect("READY=1 within 30 s");
        let state = String::from_utf8_lossy(&buffer[..n]).to_string();
        if state.lines().any(|l| l == "READY=1") {
            break state;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{state}");
    };
    assert!(ready.contains("STATUS=serving"), "{ready}");
    // Said only once every listener accepts.
    for port in [server.console, server.clients, server.clients_http] {
        TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("port {port} after READY=1: {e}"));
    }
    // A check-in, and a handshake that fails (plain text on the TLS port).
    let agent = https_agent(&server);
    let id = agent.id();
    let mut stream = TcpStream::connect(("127.0.0.1", server.clients)).unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    drop(stream);
    std::thread::sleep(Duration::from_millis(500));
    drop(agent);
    server.terminate(Duration::from_secs(15)).expect("stops");
    let stopping = notify.recv(&mut buffer).expect("STOPPING=1");
    assert_eq!(&buffer[..stopping], b"STOPPING=1");

    let log = server.log_text();
    let lines = through_jq(&log);
    assert!(lines.iter().all(|l| l["level"].is_string()), "{log}");
    let checkin = lines
        .iter()
        .find(|l| {
            l["fields"]["message"] == "check-in recorded" && l["fields"]["agent"] == id.as_str()
        })
        .unwrap_or_else(|| panic!("no check-in line for {id}: {log}"));
    assert_eq!(checkin["fields"]["listener"], "clients", "{checkin}");
    assert!(
        checkin["fields"]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{checkin}"
    );
    let handshake = lines
        .iter()
        .find(|l| l["fields"]["message"] == "handshake failed")
        .unwrap_or_else(|| panic!("no handshake line: {log}"));
    assert_eq!(handshake["fields"]["listener"], "clients", "{handshake}");
    assert!(handshake["fields"]["peer"].is_string(), "{handshake}");
}

#[test]
fn under_journald_text_logs_leave_the_time_to_the_journal() {
    let stamped = |env: &[(&str, &str)]| {
        let mut server = Server::init();
        server.start_with_env(&[], env);
        server.terminate(Duration::from_secs(15)).expect("stops");
        let log = server.log_text();
        let line = log
            .lines()
            .find(|l| l.contains("listening"))
            .unwrap_or_else(|| panic!("{log}"))
            .to_string();
        // RFC 3339 as tracing writes it: "2026-12-06T04:01:02.123456Z  INFO ..."
        let year = line
            .get(..4)
            .is_some_and(|y| y.bytes().all(|b| b.is_ascii_digit()));
        (year && line.get(4..5) == Some("-"), line)
    };
    let (with_time, line) = stamped(&[]);
    assert!(with_time, "{line}");
    let (with_time, line) = stamped(&[("JOURNAL_STREAM", "8:12345")]);
    assert!(!with_time, "{line}");
    assert!(line.trim_start().starts_with("INFO"), "{line}");
}

#[test]
fn manual_pages_render_and_completions_load_in_their_shells() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(ward_bin())
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut pages: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    for required in [
        "ward.1",
        "ward-server.1",
        "ward-agent.1",
        "ward-tls.1",
        "ward-completions.1",
    ] {
        assert!(
            pages.iter().any(|p| p.file_name().unwrap() == required),
            "{required} missing: {pages:?}"
        );
    }
    for page in &pages {
        let rendered = Command::new("man")
            .arg("-l")
            .arg(page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(
            rendered.status.success() && text.contains("NAME") && text.contains("SYNOPSIS"),
            "{}: {}",
            page.display(),
            String::from_utf8_lossy(&rendered.stderr)
        );
    }
    for (shell, check) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let script = Command::new(ward_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(script.status.success(), "{shell}");
        assert!(script.stdout.len() > 1000, "{shell}: a real script");
        let file = dir.path().join(format!("ward.{shell}"));
        std::fs::write(&file, &script.stdout).unwrap();
        let loaded = Command::new(check)
            .arg("-n")
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("{check} (scripts/test installs it): {e}"));
        assert!(
            loaded.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&loaded.stderr)
        );
    }
}

#[test]
fn the_version_names_the_commit_and_the_tls_library() {
    let out = Command::new(ward_bin()).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("ward 0."), "{text}");
    let commit = text
        .split("commit ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{text}"
    );
    assert!(text.contains("TLS: OpenSSL 3."), "{text}");
}
