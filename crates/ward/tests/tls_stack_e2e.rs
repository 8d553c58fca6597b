//! The TLS stack ward links (the vendored OpenSSL 3.5 with the weak suites), with real
//! handshakes against a real server: post-quantum key exchange for agents, the seed's legacy
//! suites only when named, and the certificate each kind of client gets. The clients here are
//! built on the same OpenSSL as ward (Debian's `openssl` has no 3DES at all).

mod support;

use std::net::{Ipv4Addr, TcpStream};
use std::process::Command;
use std::time::Duration;

use openssl::pkey::Id;
use openssl::ssl::{SslStream, SslVerifyMode};
use serde_json::Value;
use support::*;
use ward_tls::context::{connector_builder, ClientTls, ServerVerification};
use ward_tls::TlsVersion;

/// How a test client offers: versions, TLS <= 1.2 suites, groups, SNI.
struct Offer {
    min: TlsVersion,
    max: TlsVersion,
    ciphers: &'static str,
    groups: Option<&'static str>,
    sni: bool,
}

/// A handshake with the clients listener; the stream, or OpenSSL's reason.
fn handshake(port: u16, offer: &Offer) -> Result<SslStream<TcpStream>, String> {
    let mut builder = connector_builder(&ClientTls {
        min: Some(offer.min),
        max: Some(offer.max),
        verification: ServerVerification::None,
        cipher_list: Some(offer.ciphers.to_string()),
    })
    .unwrap();
    if let Some(groups) = offer.groups {
        builder.set_groups_list(groups).unwrap();
    }
    builder.set_verify(SslVerifyMode::NONE);
    let connector = builder.build();
    let mut config = connector.configure().unwrap();
    config.set_use_server_name_indication(offer.sni);
    config.set_verify_hostname(false);
    let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    config.connect("localhost", tcp).map_err(|e| e.to_string())
}

fn peer_key_type(stream: &SslStream<TcpStream>) -> Id {
    stream
        .ssl()
        .peer_certificate()
        .unwrap()
        .public_key()
        .unwrap()
        .id()
}

/// What the clients listener negotiated, from `ward tls handshakes --json`.
fn negotiated(server: &Server) -> Vec<Value> {
    let output = ward(&["tls", "handshakes", "--data", &server.data_str(), "--json"]);
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    report["negotiated"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["listener"] == "clients")
        .cloned()
        .collect()
}

#[test]
fn agents_negotiate_the_post_quantum_group_and_x25519_only_clients_still_connect() {
    let server = fast_server();
    let agent = https_agent(&server);
    agent.until(Duration::from_secs(10), |s| s["tls_version"] == "TLSv1.3");
    let pq = eventually(Duration::from_secs(10), || {
        negotiated(&server)
            .into_iter()
            .find(|h| h["group"] == "X25519MLKEM768")
    })
    .expect("an agent check-in negotiated X25519MLKEM768");
    assert_eq!(pq["post_quantum"], true, "{pq}");
    assert_eq!(pq["version"], "TLSv1.3", "{pq}");
    // The agent list and readiness say how much of the fleet a post-quantum group protects.
    let listed = cli(&server, &["agents", "show", &agent.id()]);
    assert_eq!(listed["tls_group"], "X25519MLKEM768", "{listed}");
    let readiness = cli(&server, &["tls", "readiness"]);
    assert_eq!(readiness["post_quantum"]["agents"], 1, "{readiness}");
    assert_eq!(readiness["post_quantum"]["share"], 1.0, "{readiness}");

    // A client that offers only X25519 is still served, with X25519.
    let classic = Offer {
        min: TlsVersion::Tls1_3,
        max: TlsVersion::Tls1_3,
        ciphers: "DEFAULT",
        groups: Some("X25519"),
        sni: true,
    };
    let stream = handshake(server.clients, &classic).expect("an X25519-only client connects");
    assert_eq!(
        ward_tls::ffi::negotiated_group(stream.ssl()),
        Some("x25519")
    );
    drop(stream);
    eventually(Duration::from_secs(10), || {
        negotiated(&server)
            .into_iter()
            .find(|h| h["group"] == "x25519" && h["post_quantum"] == false)
    })
    .expect("the X25519 handshake is recorded as such");
    // /metrics counts handshakes by group.
    let metrics = https_get(server.console, &server.ca_pem(), "/metrics", None).body;
    assert!(
        metrics.contains(
            "ward_tls_handshakes_by_group_total{listener=\"clients\",group=\"X25519MLKEM768\"}"
        ),
        "{metrics}"
    );
}

#[test]
fn each_client_gets_the_certificate_it_can_use() {
    let mut server = Server::init();
    server.start();
    let rsa_kx = Offer {
        min: TlsVersion::Tls1_2,
        max: TlsVersion::Tls1_2,
        ciphers: "AES128-SHA",
        groups: None,
        sni: true,
    };
    let stream = handshake(server.clients, &rsa_kx).expect("an RSA key exchange client");
    assert_eq!(peer_key_type(&stream), Id::RSA);
    let ecdsa = Offer {
        min: TlsVersion::Tls1_2,
        max: TlsVersion::Tls1_2,
        ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256",
        groups: None,
        sni: true,
    };
    let stream = handshake(server.clients, &ecdsa).expect("an ECDHE-ECDSA client");
    assert_eq!(peer_key_type(&stream), Id::EC);
}

#[test]
fn the_seeds_3des_clients_are_served_only_when_an_admin_names_3des() {
    let mut server = Server::init();
    server.start();
    // Windows XP's schannel: TLS 1.0 at most, RSA key exchange with 3DES, no SNI.
    let xp = Offer {
        min: TlsVersion::Tls1_0,
        max: TlsVersion::Tls1_0,
        ciphers: "DES-CBC3-SHA:@SECLEVEL=0",
        groups: None,
        sni: false,
    };
    // The default clients listener has TLS 1.0 (the seed's starting point) but no 3DES.
    let refused = handshake(server.clients, &xp).expect_err("3DES is not served by default");
    assert!(
        refused.contains("handshake failure") || refused.contains("alert"),
        "{refused}"
    );
    // The seed's note: name 3DES in SSLCipherSuite, reload.
    name_seed_3des(&server);
    let configtest = ward(&["server", "configtest", "--data", &server.data_str()]);
    let said = String::from_utf8_lossy(&configtest.stdout).into_owned();
    assert!(configtest.status.success(), "{said}");
    assert!(
        said.contains("DES-CBC3-SHA") && said.contains("Sweet32"),
        "{said}"
    );
    assert!(run_cli(&server, &["server", "reload"]).status.success());
    let stream = handshake(server.clients, &xp).expect("3DES is served once named");
    assert_eq!(
        stream.ssl().current_cipher().unwrap().name(),
        "DES-CBC3-SHA"
    );
    assert_eq!(stream.ssl().version_str(), "TLSv1");
    assert_eq!(
        peer_key_type(&stream),
        Id::RSA,
        "an RSA key exchange gets the RSA certificate"
    );
}

/// (completed, resumed) handshakes on the clients listener, from `/metrics`.
fn handshakes_on_clients(server: &Server) -> (u64, u64) {
    let metrics = https_get(server.console, &server.ca_pem(), "/metrics", None).body;
    let value = |line: &str, prefix: &str| -> Option<u64> {
        line.strip_prefix(prefix)?
            .split(' ')
            .next_back()?
            .parse()
            .ok()
    };
    let completed = metrics
        .lines()
        .filter_map(|l| value(l, "ward_tls_handshakes_total{listener=\"clients\""))
        .sum();
    let resumed = metrics
        .lines()
        .filter_map(|l| value(l, "ward_tls_resumed_total{listener=\"clients\""))
        .sum();
    (completed, resumed)
}

#[test]
fn a_restarted_server_resumes_the_agents_sessions() {
    let mut server = fast_server();
    let agent = https_agent(&server);
    // The agent holds a session ticket from this server.
    eventually(Duration::from_secs(10), || {
        (handshakes_on_clients(&server).1 > 0).then_some(())
    })
    .expect("the agent resumes before the restart");
    let ticket_key = std::fs::read(server.path("keys/tickets.key")).unwrap();
    assert_eq!(ticket_key.len(), 80, "one key, not rotated yet");
    server
        .terminate(Duration::from_secs(10))
        .expect("a clean stop");
    // The key is older than its lifetime by now (12 h): the restarted server rotates it at
    // once, keeping it as the previous key.
    let aged = std::process::Command::new("touch")
        .args(["-d", "13 hours ago"])
        .arg(server.path("keys/tickets.key"))
        .status()
        .unwrap();
    assert!(aged.success());
    server.start();
    let rotated = eventually(Duration::from_secs(10), || {
        let keys = std::fs::read(server.path("keys/tickets.key")).ok()?;
        (keys.len() == 160).then_some(keys)
    })
    .expect("the aged ticket key is rotated at start");
    assert_eq!(
        &rotated[80..],
        &ticket_key[..],
        "the old key is kept as the previous one"
    );
    // The counters start from zero; the previous key still decrypts the agent's old ticket,
    // so its very first handshake after the restart is already resumed (with an unknown key
    // it would be a full one, and only the later ones resumed).
    let (completed, resumed) = eventually(Duration::from_secs(15), || {
        let counts = handshakes_on_clients(&server);
        (counts.0 > 0).then_some(counts)
    })
    .unwrap_or_else(|| panic!("no check-in after the restart: {:?}", agent.status()));
    assert_eq!(
        resumed, completed,
        "every handshake since the restart resumed"
    );
}

#[test]
fn an_xp_ie8_agent_needs_3des_on_https_and_always_works_over_clients_http() {
    let server = fast_server();
    legacy_http_group(&server);
    let token = group_token(&server, "My Company/Legacy", true);
    // Enrolled over plain HTTP (its stack cannot talk to the default HTTPS listener).
    let http = format!("http://127.0.0.1:{}", server.clients_http);
    let agent = run_agent(
        enroll_with(&server, &http, &token, &["--client-profile", "xp-ie8"]),
        None,
    );
    agent.until(Duration::from_secs(10), |s| {
        s["channel"] == "http" && s["client_profile"] == "xp-ie8" && s["last_error"].is_null()
    });
    let reported = cli(&server, &["agents", "show", &agent.id()]);
    assert_eq!(reported["tls_versions"], serde_json::json!(["TLSv1"]));

    // Moved to the root's HTTPS-only list: the default clients listener refuses its stack.
    // Enrolled over HTTP, ward has never seen it over TLS, but the agent reported the
    // ClientHello its stack sends: the move guard replays it, and refuses the move.
    let refused = run_cli(
        &server,
        &["agents", "move", &agent.id(), "--group", "My Company"],
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("reports of itself"), "{said}");
    // The admin names 3DES (the seed's note for XP clients) and reloads: now it is served,
    // the move goes through, and the agent checks in over HTTPS.
    name_seed_3des(&server);
    assert!(run_cli(&server, &["server", "reload"]).status.success());
    cli(
        &server,
        &["agents", "move", &agent.id(), "--group", "My Company"],
    );
    agent.until(Duration::from_secs(15), |s| {
        s["channel"] == "https" && s["tls_version"] == "TLSv1" && s["last_error"].is_null()
    });
    let seen = eventually(Duration::from_secs(10), || {
        negotiated(&server)
            .into_iter()
            .find(|h| h["cipher"] == "DES-CBC3-SHA" && h["version"] == "TLSv1")
    })
    .expect("the server saw the XP stack's 3DES handshake");
    assert!(
        seen["group"].is_null(),
        "RSA key exchange has no group: {seen}"
    );
    // And back on the HTTP list it keeps working whatever HTTPS allows.
    cli(
        &server,
        &[
            "agents",
            "move",
            &agent.id(),
            "--group",
            "My Company/Legacy",
        ],
    );
    agent.until(Duration::from_secs(15), |s| {
        s["channel"] == "http" && s["last_error"].is_null()
    });
}

#[test]
fn a_client_that_leaves_after_the_servers_hello_is_recorded_as_abandoned() {
    use std::io::{Read, Write};
    let mut server = Server::init();
    server.start();
    let connector = connector_builder(&ClientTls {
        min: Some(TlsVersion::Tls1_2),
        max: Some(TlsVersion::Tls1_3),
        verification: ServerVerification::None,
        cipher_list: None,
    })
    .unwrap()
    .build();
    let hello = ward_tls::replay::client_hello(connector.configure().unwrap(), "localhost")
        .expect("it waits for the server");
    assert_eq!(hello[0], 22, "a handshake record");

    // A scanner's way: send the hello, read the server's answer, close.
    let mut tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, server.clients)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(&hello).unwrap();
    let mut answer = [0u8; 512];
    let read = tcp.read(&mut answer).unwrap();
    assert!(
        read > 0 && answer[0] == 22,
        "the server answered with its hello"
    );
    drop(tcp);

    let refused = eventually(Duration::from_secs(10), || {
        let output = ward(&["tls", "handshakes", "--data", &server.data_str(), "--json"]);
        let report: Value = serde_json::from_slice(&output.stdout).ok()?;
        report["refused"].as_array()?.first().cloned()
    })
    .expect("the connection is recorded");
    assert_eq!(refused["kind"], "abandoned", "{refused}");
    let reason = refused["reason"].as_str().unwrap();
    assert!(
        reason.contains("TLSv1.3") && reason.contains("TLS_AES"),
        "{reason}"
    );
    assert!(!reason.contains("wrong version number"), "{reason}");
}

#[test]
fn the_scanner_reports_the_groups_a_listener_accepts_and_the_groups_directive_sets_them() {
    let mut server = Server::init();
    // The console keeps ward's default groups; the clients listener is told X25519 and P-256.
    let file = server.path("conf/ssl/sslforclients.conf");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!("{text}\nSSLOpenSSLConfCmd Groups X25519:P-256\n"),
    )
    .unwrap();
    server.start();
    let scan = |port: u16| -> Value {
        let output = ward(&["tls", "scan", &format!("127.0.0.1:{port}"), "--json"]);
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let console = scan(server.console);
    assert_eq!(console["groups"]["X25519MLKEM768"], true, "{console}");
    assert_eq!(console["groups"]["X25519"], true, "{console}");
    let clients = scan(server.clients);
    assert_eq!(clients["groups"]["X25519MLKEM768"], false, "{clients}");
    assert_eq!(clients["groups"]["X25519"], true, "{clients}");
    assert_eq!(clients["groups"]["P-256"], true, "{clients}");
    assert_eq!(clients["groups"]["P-384"], false, "{clients}");
    // A command other than Groups/Curves is said to be ignored, with its line.
    std::fs::write(
        &file,
        format!("{text}\nSSLOpenSSLConfCmd Options -SessionTicket\n"),
    )
    .unwrap();
    let configtest = ward(&["server", "configtest", "--data", &server.data_str()]);
    let said = String::from_utf8_lossy(&configtest.stdout).into_owned();
    assert!(
        said.contains("SSLOpenSSLConfCmd Options is not applied"),
        "{said}"
    );
}

#[test]
fn every_clienthello_is_kept_once_and_each_agent_knows_its_own() {
    let server = fast_server();
    let agent = https_agent(&server);
    let digest = eventually(Duration::from_secs(10), || {
        let shown = cli(&server, &["agents", "show", &agent.id()]);
        shown["hello"].as_str().map(str::to_string)
    })
    .expect("the agent's ClientHello digest is kept with it");
    let hello = eventually(Duration::from_secs(10), || {
        let reply = https_get(
            server.console,
            &server.ca_pem(),
            "/api/v1/tls/hellos",
            Some(&server.token()),
        );
        let answer = reply.json();
        answer["hellos"]
            .as_array()?
            .iter()
            .find(|h| h["digest"] == digest.as_str() && h["count"].as_u64() >= Some(2))
            .cloned()
    })
    .expect("the hello is listed, counted once per connection");
    assert!(
        hello["offered_versions"]
            .as_array()
            .unwrap()
            .contains(&Value::from("TLSv1.3")),
        "{hello}"
    );
    assert!(
        hello["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["listener"] == "clients" && p["peer"] == "127.0.0.1"),
        "{hello}"
    );
    // Its later check-ins, fresh or resumed (different bytes every time), are the same stack.
    std::thread::sleep(Duration::from_secs(2));
    let shown = cli(&server, &["agents", "show", &agent.id()]);
    assert_eq!(shown["hello"], digest.as_str(), "{shown}");
}

#[test]
fn a_plan_judges_every_peer_by_replaying_its_real_clienthello() {
    let mut server = Server::init();
    server.start();
    // Two real clients from their own loopback addresses: curl capped at TLS 1.0, and curl
    // as it comes.
    let curl = |source: &str, extra: &[&str]| {
        let output = Command::new(ward_testkit::tool("curl", "curl"))
            .args(["-sk", "--max-time", "10", "--interface", source])
            .args(extra)
            .arg(format!("https://127.0.0.1:{}/healthz", server.clients))
            .output()
            .unwrap();
        assert!(output.status.success(), "curl from {source}: {output:?}");
    };
    curl(
        "127.0.0.2",
        &[
            "--tlsv1.0",
            "--tls-max",
            "1.0",
            "--ciphers",
            "DEFAULT:@SECLEVEL=0",
        ],
    );
    curl("127.0.0.3", &[]);
    let plan = |words: &str| -> Value {
        eventually(Duration::from_secs(10), || {
            let output = run_cli(&server, &["tls", "plan", "--protocol", words, "--json"]);
            let plan: Value = serde_json::from_slice(&output.stdout).ok()?;
            (plan["peers"].as_array()?.len() >= 2).then_some(plan)
        })
        .expect("both peers are in the plan")
    };
    let verdict = |plan: &Value, address: &str| -> (String, String) {
        let peer = plan["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["address"] == address && p["listener"] == "clients")
            .unwrap_or_else(|| panic!("no peer {address}: {plan}"));
        (
            peer["verdict"].as_str().unwrap().to_string(),
            peer["reason"].as_str().unwrap().to_string(),
        )
    };
    let hardened = plan("all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1");
    let (old, why) = verdict(&hardened, "127.0.0.2");
    assert_eq!(old, "cut_off", "{why}");
    assert!(
        why.contains("unsupported protocol") || why.contains("version"),
        "{why}"
    );
    assert_eq!(verdict(&hardened, "127.0.0.3").0, "unaffected");
    // The human plan names the peer it would cut off.
    let human = run_cli(
        &server,
        &[
            "tls",
            "plan",
            "--protocol",
            "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
        ],
    );
    let text = String::from_utf8_lossy(&human.stdout).into_owned();
    assert!(
        text.contains("1 would be cut off") && text.contains("clients 127.0.0.2:"),
        "{text}"
    );
    // The seed's reverse procedure keeps both.
    let reverse = plan("all -SSLv2 -SSLv3");
    assert_eq!(verdict(&reverse, "127.0.0.2").0, "unaffected");
    assert_eq!(verdict(&reverse, "127.0.0.3").0, "unaffected");
    // What the plan predicted is what the listener does once the change is applied.
    server.set_protocol(
        "conf/ssl/sslforclients.conf",
        "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
    );
    assert!(run_cli(&server, &["server", "reload"]).status.success());
    let refused = Command::new(ward_testkit::tool("curl", "curl"))
        .args(["-sk", "--max-time", "10", "--interface", "127.0.0.2"])
        .args([
            "--tlsv1.0",
            "--tls-max",
            "1.0",
            "--ciphers",
            "DEFAULT:@SECLEVEL=0",
        ])
        .arg(format!("https://127.0.0.1:{}/healthz", server.clients))
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "the TLS 1.0 client is now refused"
    );
    curl("127.0.0.3", &[]);
}

/// `openssl s_client` against the clients listener verifying with `ca_file` alone, offering
/// only the signature algorithms `sigalgs`, a verify failure ending the handshake: whether it
/// completed, and its output.
fn verify_with(server: &Server, ca_file: &std::path::Path, sigalgs: &str) -> (bool, String) {
    let output = std::process::Command::new(ward_testkit::tool("openssl", "openssl"))
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{}", server.clients))
        .args([
            "-tls1_2",
            "-sigalgs",
            sigalgs,
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(ca_file)
        .args(["-verify_ip", "127.0.0.1"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (
        output.status.success() && text.contains("Verify return code: 0 (ok)"),
        text,
    )
}

/// A stack that verifies RSA signatures only (no ECDSA, as Windows XP's CryptoAPI or Java 6
/// without SunEC) verifies the chain the clients listener serves it. The peer is `openssl
/// s_client` offering only RSA signature algorithms (so the server must serve its RSA
/// certificate, and every signature it accepts is RSA), trusting only the RSA root of ward's
/// CA, with a verify failure ending the handshake: it completes, so the whole chain it was
/// served verifies with RSA signatures alone. The ECDSA root alone does not verify it, so the
/// chain does not pass through ECDSA.
#[test]
fn an_rsa_only_verifier_verifies_the_chain_it_is_served() {
    let mut server = Server::init();
    server.start();
    let roots = openssl::x509::X509::stack_from_pem(&server.ca_pem()).unwrap();
    assert_eq!(roots.len(), 2, "ward's CA: an ECDSA and an RSA root");
    let dir = tempfile::tempdir().unwrap();
    let (ecdsa_root, rsa_root) = (dir.path().join("ecdsa.pem"), dir.path().join("rsa.pem"));
    std::fs::write(&ecdsa_root, roots[0].to_pem().unwrap()).unwrap();
    std::fs::write(&rsa_root, roots[1].to_pem().unwrap()).unwrap();
    assert!(roots[1].public_key().unwrap().rsa().is_ok());
    let rsa_only = "RSA-PSS+SHA256:RSA+SHA256:RSA+SHA384:RSA+SHA512";
    let (verified, text) = verify_with(&server, &rsa_root, rsa_only);
    assert!(verified, "{text}");
    assert!(text.contains("Server public key is 2048 bit"), "{text}");
    let (verified, text) = verify_with(&server, &ecdsa_root, rsa_only);
    assert!(
        !verified,
        "the ECDSA root must not verify the RSA chain: {text}"
    );
    // And a modern client still gets the ECDSA certificate, verified by the ECDSA root.
    let (verified, text) = verify_with(&server, &ecdsa_root, "ECDSA+SHA256");
    assert!(verified, "{text}");
    assert!(text.contains("Server public key is 256 bit"), "{text}");
}
