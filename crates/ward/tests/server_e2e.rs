//! `ward server` end to end: the real process, real TLS handshakes with `openssl s_client`,
//! the seed's edit and a hot reload, telemetry, limits and shutdown.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use openssl::ssl::SslVersion;
use support::*;
use ward_tls::TlsVersion;

/// Which versions `openssl s_client` can negotiate on a port.
fn accepted(port: u16) -> Vec<&'static str> {
    TlsVersion::ALL
        .into_iter()
        .filter(|version| s_client(port, *version).as_deref() == Some(version.name()))
        .map(TlsVersion::name)
        .collect()
}

/// The seed's edit of both files, with the real editor.
fn set_both(server: &Server, words: &str) {
    for file in ["conf/ssl/ssl.conf", "conf/ssl/sslforclients.conf"] {
        server.set_protocol(file, words);
    }
}

#[test]
fn each_listener_serves_exactly_its_conf_file() {
    let mut server = Server::init();
    // Different policies, so a listener serving the other's file would show.
    server.set_protocol("conf/ssl/ssl.conf", "TLSv1.2");
    server.set_protocol("conf/ssl/sslforclients.conf", "all -SSLv2 -SSLv3 -TLSv1.3");
    server.start();
    assert_eq!(accepted(server.console), vec!["TLSv1.2"]);
    assert_eq!(
        accepted(server.clients),
        vec!["TLSv1", "TLSv1.1", "TLSv1.2"]
    );
    // The plain listener speaks no TLS at all.
    assert_eq!(accepted(server.clients_http), Vec::<&str>::new());
}

#[test]
fn seed_edit_and_reload_change_new_connections_and_keep_open_ones() {
    let mut server = Server::init();
    server.start();
    let ca = server.ca_pem();
    assert_eq!(
        accepted(server.clients),
        vec!["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
    );
    // The console serves admins only: TLS 1.2 and 1.3 from the start.
    assert_eq!(accepted(server.console), vec!["TLSv1.2", "TLSv1.3"]);

    // An XP-like client holds a keep-alive TLS 1.0 connection across the change.
    let stream = tls_connect(server.clients, &ca, Some(SslVersion::TLS1)).unwrap();
    assert_eq!(stream.ssl().version_str(), "TLSv1");
    let mut old = HttpConnection::new(stream);
    assert_eq!(old.request("GET", "/healthz", &[], "").unwrap().status, 200);

    // The seed's step 5 on both files, then a reload instead of a restart.
    set_both(&server, "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1");
    let output = ward(&["server", "reload", "--data", &server.data_str()]);
    assert!(output.status.success(), "{output:?}\n{}", server.log_text());

    assert_eq!(accepted(server.clients), vec!["TLSv1.2", "TLSv1.3"]);
    assert_eq!(accepted(server.console), vec!["TLSv1.2", "TLSv1.3"]);
    // The open connection was not dropped and keeps its TLS 1.0 session.
    let reply = old
        .request("GET", "/agent/v1/hello", &[], "")
        .expect("connection kept");
    assert_eq!(reply.status, 200);
    assert_eq!(old.stream().ssl().version_str(), "TLSv1");
    // A new XP-like connection is refused.
    assert!(tls_connect(server.clients, &ca, Some(SslVersion::TLS1)).is_err());

    // The seed's reverse procedure brings TLS 1.0 back, again without a restart.
    set_both(&server, "all -SSLv2 -SSLv3");
    send_signal(server.pid(), 1); // SIGHUP
    let back = eventually(Duration::from_secs(10), || {
        (s_client(server.clients, TlsVersion::Tls1_0).as_deref() == Some("TLSv1")).then_some(())
    });
    assert!(
        back.is_some(),
        "SIGHUP did not re-enable TLSv1:\n{}",
        server.log_text()
    );
}

#[test]
fn broken_conf_is_refused_on_reload_and_the_old_policy_keeps_serving() {
    let mut server = Server::init();
    server.set_protocol("conf/ssl/sslforclients.conf", "TLSv1.2");
    server.start();
    assert_eq!(accepted(server.clients), vec!["TLSv1.2"]);
    let path = server.path("conf/ssl/sslforclients.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("\nSSLProtocol TLSv1.2\n", "\nSSLProtocol all -TLSv1.0\n");
    std::fs::write(&path, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("SSLProtocol all -TLSv1.0"))
        .unwrap()
        + 1;

    let output = ward(&["server", "reload", "--data", &server.data_str()]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!(
            "{}:{line}: SSLProtocol: Illegal protocol 'TLSv1.0'",
            path.display()
        )),
        "{stdout}"
    );
    assert_eq!(
        accepted(server.clients),
        vec!["TLSv1.2"],
        "the old policy keeps serving"
    );
    // SIGHUP is refused the same way, and logged with file:line.
    send_signal(server.pid(), 1);
    let logged = eventually(Duration::from_secs(10), || {
        let log = server.log_text();
        (log.matches("reload refused").count() >= 2).then_some(log)
    });
    let log = logged.expect("the SIGHUP reload is logged");
    assert!(
        log.contains(&format!("{}:{line}:", path.display())),
        "{log}"
    );
    assert_eq!(accepted(server.clients), vec!["TLSv1.2"]);

    // configtest says the same, exit 1.
    let output = ward(&["server", "configtest", "--data", &server.data_str()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Illegal protocol 'TLSv1.0'"));
}

#[test]
fn each_api_lives_only_on_its_listeners() {
    let mut server = Server::init();
    server.start();
    let ca = server.ca_pem();
    let token = server.token();
    // Health everywhere, without authentication.
    assert_eq!(https_get(server.console, &ca, "/healthz", None).status, 200);
    assert_eq!(https_get(server.clients, &ca, "/healthz", None).status, 200);
    assert_eq!(
        http_connect(server.clients_http)
            .request("GET", "/healthz", &[], "")
            .unwrap()
            .status,
        200
    );
    // The agent API is never on the console, even with the admin token.
    assert_eq!(
        https_get(server.console, &ca, "/agent/v1/hello", None).status,
        404
    );
    assert_eq!(
        https_get(server.console, &ca, "/agent/v1/hello", Some(&token)).status,
        404
    );
    let hello = https_get(server.clients, &ca, "/agent/v1/hello", None);
    assert_eq!(hello.status, 200);
    assert_eq!(hello.json()["agreement_key"].as_str().unwrap().len(), 64);
    assert_eq!(
        http_connect(server.clients_http)
            .request("GET", "/agent/v1/hello", &[], "")
            .unwrap()
            .status,
        200
    );
    // The admin API is never on the client listeners, and needs the token on the console.
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    assert_eq!(
        https_get(server.clients, &ca, "/api/v1/server", Some(&token)).status,
        404
    );
    assert_eq!(
        http_connect(server.clients_http)
            .request("GET", "/api/v1/server", &auth, "")
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        http_connect(server.clients_http)
            .request("POST", "/api/v1/server/reload", &auth, "")
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        https_get(server.console, &ca, "/api/v1/server", None).status,
        401
    );
    assert_eq!(
        https_get(server.console, &ca, "/api/v1/server", Some("wrong")).status,
        401
    );
    assert_eq!(
        https_get(server.console, &ca, "/api/v1/anything", None).status,
        401
    );
    let status = https_get(server.console, &ca, "/api/v1/server", Some(&token));
    assert_eq!(status.status, 200);
    assert_eq!(
        status.json()["listeners"]["clients"]["tls"]["enabled"][0],
        "TLSv1"
    );
    // Metrics only on the console.
    let metrics = https_get(server.console, &ca, "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .body
        .contains("ward_tls_handshakes_total{listener=\"console\",version=\"TLSv1.3\"}"));
    assert_eq!(https_get(server.clients, &ca, "/metrics", None).status, 404);
}

#[test]
fn refused_tls1_client_shows_up_in_telemetry_with_its_offer_and_the_reason() {
    let mut server = Server::init();
    server.set_protocol(
        "conf/ssl/sslforclients.conf",
        "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
    );
    server.start();
    assert_eq!(s_client(server.clients, TlsVersion::Tls1_0), None);
    assert_eq!(
        s_client(server.clients, TlsVersion::Tls1_2).as_deref(),
        Some("TLSv1.2")
    );
    let report = eventually(Duration::from_secs(10), || {
        let output = ward(&["tls", "handshakes", "--data", &server.data_str(), "--json"]);
        assert!(output.status.success(), "{output:?}");
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let ready = !value["refused"].as_array().unwrap().is_empty()
            && !value["negotiated"].as_array().unwrap().is_empty();
        ready.then_some(value)
    })
    .expect("telemetry written within 10 s");
    let refused = &report["refused"][0];
    assert_eq!(refused["listener"], "clients");
    assert_eq!(refused["offered_max"], "TLSv1");
    assert_eq!(refused["offered_versions"], serde_json::json!(["TLSv1"]));
    assert_eq!(refused["kind"], "protocol_version");
    assert_eq!(
        refused["reason"],
        "client offers only TLSv1, listener accepts TLSv1.2-TLSv1.3"
    );
    assert!(refused["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let negotiated = &report["negotiated"][0];
    assert_eq!(negotiated["listener"], "clients");
    assert_eq!(negotiated["version"], "TLSv1.2");
    assert_eq!(report["peers"][0]["peer"], "127.0.0.1");
    assert_eq!(report["peers"][0]["refused"], 1);
    // The human form says it too.
    let output = ward(&["tls", "handshakes", "--data", &server.data_str()]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("client offers only TLSv1"));
    // And the metrics count it.
    let metrics = https_get(server.console, &server.ca_pem(), "/metrics", None);
    assert!(
        metrics.body.contains(
            "ward_tls_handshake_failures_total{listener=\"clients\",reason=\"protocol_version\"} 1"
        ),
        "{}",
        metrics.body
    );
}

#[test]
fn silent_clients_time_out_without_stalling_others() {
    let mut server = Server::init();
    server.replace_in(
        "ward.toml",
        "handshake_timeout = \"10s\"",
        "handshake_timeout = \"1s\"",
    );
    server.replace_in(
        "ward.toml",
        "idle_timeout = \"60s\"",
        "idle_timeout = \"1s\"",
    );
    server.start();
    // Ten clients connect and say nothing.
    let silent: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(socket(server.clients)).unwrap())
        .collect();
    // Others are served meanwhile.
    assert_eq!(
        https_get(server.clients, &server.ca_pem(), "/healthz", None).status,
        200
    );
    // The silent ones are closed after the handshake timeout.
    for mut stream in silent {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buffer = [0u8; 1];
        let read = std::io::Read::read(&mut stream, &mut buffer);
        // Closed by the server (end of stream or reset), not our own 10 s read timeout.
        let closed_by_server = match &read {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        assert!(closed_by_server, "expected the server to close: {read:?}");
    }
    // An idle keep-alive connection is closed after the idle timeout.
    let mut connection = http_connect(server.clients_http);
    assert_eq!(
        connection
            .request("GET", "/healthz", &[], "")
            .unwrap()
            .status,
        200
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        connection.request("GET", "/healthz", &[], "").is_none(),
        "idle connection closed"
    );
}

#[test]
fn slow_request_headers_are_cut_off() {
    let mut server = Server::init();
    server.replace_in(
        "ward.toml",
        "header_timeout = \"10s\"",
        "header_timeout = \"1s\"",
    );
    server.start();
    let mut tcp = TcpStream::connect(socket(server.clients_http)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Half a request line, then nothing: a slowloris.
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x").unwrap();
    let mut rest = Vec::new();
    let read = std::io::Read::read_to_end(&mut tcp, &mut rest);
    assert!(
        read.is_ok(),
        "closed by the server, not by our 10 s read timeout: {read:?}"
    );
    // The server is still fine for others.
    assert_eq!(
        http_connect(server.clients_http)
            .request("GET", "/healthz", &[], "")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn a_stalled_request_body_gets_408_and_frees_the_slot() {
    let mut server = Server::init();
    server.replace_in(
        "ward.toml",
        "header_timeout = \"10s\"",
        "header_timeout = \"1s\"",
    );
    server.replace_in(
        "ward.toml",
        "max_connections = 100000",
        "max_connections = 1",
    );
    server.start();
    let token = server.token();
    // Headers announce a body that never comes. (The one slot may still be held, briefly, by
    // the connection `start` made to see the listener answer: then a 503, and again.)
    let (connection, reply) = eventually(Duration::from_secs(10), || {
        let stream = tls_connect(server.console, &server.ca_pem(), None).ok()?;
        let mut connection = HttpConnection::new(stream);
        let request = format!(
            "POST /api/v1/groups HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: 10\r\n\r\n"
        );
        connection.stream().write_all(request.as_bytes()).ok()?;
        let reply = connection
            .read_reply()
            .expect("an answer, not a hung connection");
        (reply.status != 503).then_some((connection, reply))
    })
    .expect("the slot is free");
    assert_eq!(reply.status, 408);
    assert_eq!(reply.json()["error"]["code"], "body_timeout");
    drop(connection);
    // The one slot is free again.
    let status = eventually(Duration::from_secs(10), || {
        let stream = tls_connect(server.console, &server.ca_pem(), None).ok()?;
        let mut connection = HttpConnection::new(stream);
        connection
            .request("GET", "/healthz", &[], "")
            .filter(|r| r.status == 200)
    });
    assert!(status.is_some());
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut server = Server::init();
    server.start_with(&["--log-format", "json"]);
    assert_eq!(
        s_client(server.clients, TlsVersion::Tls1_2).as_deref(),
        Some("TLSv1.2")
    );
    server.terminate(Duration::from_secs(15)).expect("stops");
    let log = server.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with('{')).collect();
    assert!(lines.iter().any(|l| l.contains("listening")), "{log}");
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            value["level"].is_string() && value["fields"].is_object(),
            "{line}"
        );
    }
}

#[test]
fn connection_cap_answers_503_and_oversized_bodies_413() {
    let mut server = Server::init();
    server.replace_in(
        "ward.toml",
        "max_connections = 100000",
        "max_connections = 2",
    );
    server.replace_in(
        "ward.toml",
        "max_body_bytes = 1048576",
        "max_body_bytes = 100",
    );
    server.start();
    // The start-up probe's connection may still hold a slot for a moment.
    let (first, mut second) = eventually(Duration::from_secs(5), || {
        let mut first = http_connect(server.clients_http);
        let mut second = http_connect(server.clients_http);
        let both = first.request("GET", "/healthz", &[], "")?.status == 200
            && second.request("GET", "/healthz", &[], "")?.status == 200;
        both.then_some((first, second))
    })
    .expect("two connections served at once");
    assert_eq!(
        second.request("GET", "/healthz", &[], "").unwrap().status,
        200
    );
    let mut third = http_connect(server.clients_http);
    let reply = third.read_reply().expect("a 503 answer");
    assert_eq!(reply.status, 503);
    assert!(
        reply.body.contains("at its limit of 2 connections"),
        "{}",
        reply.body
    );
    assert!(reply.headers.iter().any(|(name, _)| name == "retry-after"));
    // Closing one frees a slot.
    drop(first);
    let served = eventually(Duration::from_secs(5), || {
        let mut connection = http_connect(server.clients_http);
        connection
            .request("GET", "/healthz", &[], "")
            .filter(|r| r.status == 200)
    });
    assert!(served.is_some());
    drop(second);
    // A body over the limit is refused before it is read.
    let mut connection = eventually(Duration::from_secs(5), || {
        let mut connection = http_connect(server.clients_http);
        connection
            .request("GET", "/healthz", &[], "")
            .filter(|r| r.status == 200)
            .map(|_| connection)
    })
    .unwrap();
    let reply = connection
        .request("POST", "/agent/v1/hello", &[], &"x".repeat(101))
        .unwrap();
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"]["code"], "body_too_large");
}

/// A real agent whose check-in finds the listener at its cap: shed with a signed 503 that
/// the agent takes as an instruction (its log gives the wait; an unsigned 503 it would log as
/// a transport failure), counted as a busy check-in. The agent then tries the next server of
/// its list, and waits as told only when the whole round failed (ward-agent's core tests).
#[test]
fn a_check_in_beyond_the_cap_is_shed_with_a_signed_wait() {
    let mut server = Server::init();
    server.replace_in(
        "ward.toml",
        "max_connections = 100000",
        "max_connections = 2",
    );
    server.start();
    fast_checkins(&server);
    let url = format!("https://127.0.0.1:{}", server.clients);
    let token = group_token(&server, "My Company", false);
    let dir = enroll(&server, &url, &token, None);
    // Both of the clients listener's slots taken by kept-alive connections.
    let connect = || {
        let stream = tls_connect(server.clients, &server.ca_pem(), None).ok()?;
        let mut connection = HttpConnection::new(stream);
        let reply = connection.request("GET", "/healthz", &[], "")?;
        (reply.status == 200).then_some(connection)
    };
    let held = eventually(Duration::from_secs(5), || Some((connect()?, connect()?)))
        .expect("two connections served at once");
    let agent = start_agent(dir, None);
    let log = agent.dir.path().join("agent.log");
    let obeyed = eventually(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.lines()
            .find(|line| line.contains("the server is busy (503); retry after"))
            .map(str::to_string)
    });
    let line = obeyed.unwrap_or_else(|| panic!("{}", std::fs::read_to_string(&log).unwrap()));
    let wait: u64 = line
        .split("retry after ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!((1..=30).contains(&wait), "{line}");
    let metrics = https_get(server.console, &server.ca_pem(), "/metrics", None).body;
    let busy = "ward_agent_checkins_total{listener=\"clients\",result=\"busy\"} ";
    let shed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(busy))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(shed >= 1.0, "{metrics}");
    // It goes on checking in.
    drop(held);
    agent.until(Duration::from_secs(40), |s| !s["last_checkin"].is_null());
}

#[test]
fn plain_http_on_the_tls_port_gets_a_clear_answer() {
    let mut server = Server::init();
    server.start();
    let mut tcp = TcpStream::connect(socket(server.clients)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = HttpConnection::new(tcp).read_reply().unwrap();
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("this port speaks HTTPS"));
}

#[test]
fn sigterm_finishes_in_flight_work_and_exits_cleanly() {
    let mut server = Server::init();
    server.start();
    let mut connection = http_connect(server.clients_http);
    assert_eq!(
        connection
            .request("GET", "/healthz", &[], "")
            .unwrap()
            .status,
        200
    );
    let status = server
        .terminate(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("exits within the grace period:\n{}", server.log_text()));
    assert!(status.success(), "{status}");
    assert!(!server.path("ward.pid").exists(), "pid file removed");
    assert!(server.log_text().contains("stopped"));
    assert!(
        TcpStream::connect(socket(server.clients_http)).is_err(),
        "no longer listening"
    );
}

#[test]
fn a_port_in_use_stops_the_start_with_a_clear_error() {
    let server = Server::init();
    let _taken = std::net::TcpListener::bind(socket(server.clients)).unwrap();
    let output = ward(&["server", "--data", &server.data_str()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{} for the clients listener",
            server.clients
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--clients-addr"), "{stderr}");
}

#[test]
fn a_second_server_on_a_data_dir_in_use_is_refused_and_changes_nothing() {
    let mut server = Server::init();
    server.start();
    let pid_file = std::fs::read(server.path("ward.pid")).unwrap();
    // Other ports, same data dir: refused before anything is opened.
    let output = ward(&[
        "server",
        "--data",
        &server.data_str(),
        "--console-addr",
        &format!("127.0.0.1:{}", ward_testkit::free_port()),
        "--clients-addr",
        &format!("127.0.0.1:{}", ward_testkit::free_port()),
        "--clients-http-addr",
        &format!("127.0.0.1:{}", ward_testkit::free_port()),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("another ward server (pid {})", server.pid())),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(server.path("ward.pid")).unwrap(),
        pid_file,
        "the first server's pid file is untouched"
    );
    let ca = server.ca_pem();
    assert_eq!(https_get(server.console, &ca, "/healthz", None).status, 200);
}

#[test]
fn a_first_start_that_cannot_listen_initialises_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = ward(&[
        "server",
        "--data",
        data.to_str().unwrap(),
        "--console-addr",
        &format!("127.0.0.1:{}", ward_testkit::free_port()),
        "--clients-addr",
        &format!("127.0.0.1:{port}"),
        "--clients-http-addr",
        &format!("127.0.0.1:{}", ward_testkit::free_port()),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(!data.exists(), "the data dir was created: {stderr}");
}

#[test]
fn init_writes_everything_once_with_private_modes() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::init();
    for (file, mode) in [
        ("admin.token", 0o600),
        ("certs/ca.key", 0o600),
        ("certs/server.key", 0o600),
        ("keys/agreement.key", 0o600),
        ("certs/ca.pem", 0o644),
        ("ward.toml", 0o644),
        ("ward.db", 0o600),
    ] {
        let meta = std::fs::metadata(server.path(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    }
    let conf = std::fs::read_to_string(server.path("conf/ssl/sslforclients.conf")).unwrap();
    assert!(conf.contains("\nSSLProtocol all -SSLv2 -SSLv3\n"));
    // The server certificate is for localhost, 127.0.0.1 and ::1, signed by the CA.
    let cert =
        openssl::x509::X509::from_pem(&std::fs::read(server.path("certs/server.pem")).unwrap())
            .unwrap();
    let names: Vec<String> = cert
        .subject_alt_names()
        .unwrap()
        .iter()
        .map(|n| {
            n.dnsname()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{:?}", n.ipaddress().unwrap()))
        })
        .collect();
    assert!(names.contains(&"localhost".to_string()), "{names:?}");
    assert!(names.contains(&"[127, 0, 0, 1]".to_string()), "{names:?}");
    assert!(
        names.contains(&"[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]".to_string()),
        "{names:?}"
    );
    let ca = openssl::x509::X509::from_pem(&server.ca_pem()).unwrap();
    assert!(cert.verify(&ca.public_key().unwrap()).unwrap());
    // A second init changes nothing.
    let token = server.token();
    let output = ward(&["server", "init", "--data", &server.data_str()]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("already initialised"));
    assert_eq!(server.token(), token);
}

#[test]
fn secrets_others_can_read_and_a_data_dir_others_can_write_are_refused_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let mut server = Server::init();
    let chmod = |relative: &str, mode: u32| {
        let path = if relative.is_empty() {
            server.data()
        } else {
            server.path(relative)
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // (what is opened up, the words the refusal must have)
    let cases: &[(&str, u32, &str)] = &[
        (
            "admin.token",
            0o644,
            "admin.token: readable or writable by other users (mode 644)",
        ),
        (
            "certs/server.key",
            0o640,
            "server.key: readable or writable by other users",
        ),
        ("keys/agreement.key", 0o604, "agreement.key"),
        ("ward.db", 0o664, "ward.db"),
        (
            "",
            0o777,
            "writable by other users (mode 777); run `chmod go-w",
        ),
    ];
    for (relative, mode, words) in cases {
        let before = if relative.is_empty() { 0o700 } else { 0o600 };
        chmod(relative, *mode);
        let start = ward(&["server", "--data", &server.data_str()]);
        assert_eq!(start.status.code(), Some(1), "{relative}: {start:?}");
        let said = String::from_utf8_lossy(&start.stderr);
        assert!(said.contains(words), "{relative}: {said}");
        let checked = run_cli(&server, &["server", "configtest"]);
        assert!(!checked.status.success(), "{relative}: {checked:?}");
        assert!(
            String::from_utf8_lossy(&checked.stdout).contains(words),
            "{relative}: {checked:?}"
        );
        chmod(relative, before);
    }
    // Put right, it starts.
    server.start();
}

#[test]
fn an_unauthenticated_agent_body_is_cut_at_its_small_bound_not_buffered_whole() {
    let mut server = Server::init();
    server.start();
    // 64 KiB of junk as a chunked check-in (no Content-Length to refuse early): 413 once the
    // check-in's 16 KiB bound is passed, before any MAC could be checked.
    let mut tcp = TcpStream::connect(socket(server.clients_http)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(
        b"POST /agent/v1/checkin HTTP/1.1\r\nHost: ward\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    let chunk = vec![b'x'; 4096];
    for _ in 0..16 {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        if tcp.write_all(&frame).is_err() {
            break; // the server already answered and closed
        }
    }
    let mut answer = [0u8; 64];
    let read = std::io::Read::read(&mut tcp, &mut answer).unwrap();
    let head = String::from_utf8_lossy(&answer[..read]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    // The admin API keeps its larger bound for authenticated callers: 20 KiB is read (and
    // refused for what it says, not for its size).
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(20 << 10));
    let reply = https_post(&server, "/api/v1/groups", &big);
    assert_eq!(reply.status, 400, "{}", reply.body);
    // configtest shows the bounds.
    let checked = run_cli(&server, &["server", "configtest"]);
    assert!(
        String::from_utf8_lossy(&checked.stdout)
            .contains("check-in at most 16384 bytes (read before the agent is authenticated)"),
        "{checked:?}"
    );
}

/// POST `body` to the admin API with the local token.
fn https_post(server: &Server, path: &str, body: &str) -> HttpReply {
    let stream = tls_connect(server.console, &server.ca_pem(), None).unwrap();
    let bearer = format!("Bearer {}", server.token());
    HttpConnection::new(stream)
        .request(
            "POST",
            path,
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            body,
        )
        .unwrap()
}

#[test]
fn idle_connections_flooding_clients_http_leave_the_console_answering() {
    // A service manager's usual limit: 1024 open files, soft and hard.
    let mut server = Server::init();
    let log = std::fs::File::create(&server.log).unwrap();
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 1024 && exec '{}' server --data '{}'",
            ward_bin(),
            server.data_str()
        ))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    server.child = Some(child);
    for port in [server.console, server.clients, server.clients_http] {
        assert!(
            ward_testkit::wait_for_port(port, Duration::from_secs(20)),
            "{}",
            server.log_text()
        );
    }
    assert!(
        server.log_text().contains("open files: 1024"),
        "{}",
        server.log_text()
    );
    // 1,100 silent TCP connections to clients-http, held open: more than the limit allows.
    let flood: Vec<TcpStream> = (0..1100)
        .filter_map(|_| TcpStream::connect(socket(server.clients_http)).ok())
        .collect();
    assert!(flood.len() > 1000, "{} connections opened", flood.len());
    std::thread::sleep(Duration::from_secs(1));
    // The console still answers: it has descriptors of its own.
    let health = https_get(server.console, &server.ca_pem(), "/healthz", None);
    assert_eq!(health.status, 200, "{}", server.log_text());
    // The flood is refused cleanly, and said once, not every 100 ms.
    std::thread::sleep(Duration::from_secs(2));
    let accept_failures = server.log_text().matches("accept failed").count();
    assert!(
        accept_failures <= 2,
        "{accept_failures} accept failures logged"
    );
    drop(flood);
}
