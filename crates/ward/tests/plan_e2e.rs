//! The exact plan of changes other than `SSLProtocol`, and the guards that ask it, with real
//! agents and a real server: a certificate the agents would not trust, a cipher change that
//! cuts off a legacy stack, rollback.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::*;
use ward_tls::pki::{self, Issued};

/// Writes a server certificate for localhost and 127.0.0.1 issued by `ca` into the data dir's
/// `certs/` as `NAME.pem` and `NAME.key`; returns both paths.
fn certificate_from(server: &Server, ca: &Issued, name: &str) -> (PathBuf, PathBuf) {
    let ip = "127.0.0.1".parse().unwrap();
    let issued = pki::new_server_cert(ca, &["localhost"], &[ip]).unwrap();
    let cert = server.path(&format!("certs/{name}.pem"));
    let key = server.path(&format!("certs/{name}.key"));
    std::fs::write(&cert, issued.cert_pem().unwrap()).unwrap();
    std::fs::write(&key, issued.key_pem().unwrap()).unwrap();
    (cert, key)
}

/// The CA of the server's data dir, as `ward server init` made it.
fn wards_ca(server: &Server) -> Issued {
    let cert = openssl::x509::X509::from_pem(&server.ca_pem()).unwrap();
    let key = std::fs::read(server.path("certs/ca.key")).unwrap();
    Issued {
        cert,
        key: openssl::pkey::PKey::private_key_from_pem(&key).unwrap(),
    }
}

fn plan(server: &Server, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["tls", "plan", "--listener", "clients", "--json"];
    all.extend_from_slice(args);
    let output = run_cli(server, &all);
    let value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:?}"));
    (output.status.code(), value)
}

fn cut_off_ids(plan: &Value) -> Vec<String> {
    plan["cut_off"]
        .as_array()
        .unwrap_or_else(|| panic!("no cut_off in {plan}"))
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_certificate_from_another_ca_is_predicted_and_refused_at_reload() {
    let server = fast_server();
    let agent = https_agent(&server);
    let id = agent.id();
    let foreign_ca = pki::new_ca("someone else's CA").unwrap();
    let (foreign, foreign_key) = certificate_from(&server, &foreign_ca, "foreign");
    let (renewed, renewed_key) = certificate_from(&server, &wards_ca(&server), "renewed");

    // The plan: the agent pins ward's CA, so the foreign certificate cuts it off...
    let plan_certificate = |cert: &std::path::Path, key: &std::path::Path| {
        plan(
            &server,
            &[
                "--certificate",
                cert.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ],
        )
    };
    let (code, answer) = plan_certificate(&foreign, &foreign_key);
    assert_eq!(code, Some(2), "{answer}");
    assert_eq!(cut_off_ids(&answer), std::slice::from_ref(&id));
    let reason = answer["cut_off"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("would not trust") && reason.contains("does not chain to the CA"),
        "{reason}"
    );
    assert!(
        answer["untrusted_certificate"]["127.0.0.1"].is_string(),
        "{answer}"
    );
    // ... and a certificate from ward's own CA (a renewal) cuts nobody off.
    let (code, answer) = plan_certificate(&renewed, &renewed_key);
    assert_eq!(code, Some(0), "{answer}");
    assert!(cut_off_ids(&answer).is_empty());

    // The same certificate put in the conf file by hand: the reload is refused.
    server.replace_in(
        "conf/ssl/sslforclients.conf",
        "SSLCertificateFile certs/server.pem\nSSLCertificateKeyFile certs/server.key",
        "SSLCertificateFile certs/foreign.pem\nSSLCertificateKeyFile certs/foreign.key",
    );
    let refused = run_cli(&server, &["server", "reload"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(
        said.contains("1 agents do not trust this certificate") && said.contains(&id),
        "{said}"
    );
    // The old certificate keeps serving: the agent keeps checking in.
    let before = agent.status().unwrap()["last_checkin"].clone();
    agent.until(Duration::from_secs(10), |s| {
        s["last_checkin"] != before && s["last_error"].is_null()
    });
    // Accepted, the agent refuses the new certificate, as the plan said.
    let accepted = run_cli(&server, &["server", "reload", "--accept-cut-off"]);
    assert!(accepted.status.success(), "{accepted:?}");
    agent.until(Duration::from_secs(15), |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate"))
    });
}

/// An agent that offers what Windows XP's schannel offers (TLS 1.0, RSA key exchange, 3DES),
/// enrolled over HTTPS into the root group, running.
fn xp_agent(server: &Server) -> Agent {
    let url = format!("https://127.0.0.1:{}", server.clients);
    let token = group_token(server, "My Company", false);
    let agent = run_agent(
        enroll_with(server, &url, &token, &["--client-profile", "xp-ie8"]),
        None,
    );
    agent.until(Duration::from_secs(10), |s| {
        s["channel"] == "https" && s["tls_version"] == "TLSv1"
    });
    agent
}

#[test]
fn a_cipher_change_that_cuts_off_an_rsa_only_client_is_predicted_and_harden_stages_it() {
    let server = fast_server();
    // The seed's XP note: 3DES named on the clients listener, so the XP stack is served.
    let file = server.path("conf/ssl/sslforclients.conf");
    name_seed_3des(&server);
    let reloaded = run_cli(&server, &["server", "reload"]);
    assert!(
        reloaded.status.success(),
        "adding 3DES cuts nobody off: {reloaded:?}"
    );
    let xp = xp_agent(&server);
    let modern = https_agent(&server);
    let before = std::fs::read(&file).unwrap();

    // The versions do not change, so only the replay of the XP stack's real ClientHello can
    // say that dropping 3DES cuts it off.
    // (Hellos are recorded by the telemetry writer, within a second.)
    let answer = eventually(Duration::from_secs(10), || {
        let (code, answer) = plan(&server, &["--cipher-suite", "HIGH:!3DES"]);
        (code == Some(2)).then_some(answer)
    })
    .expect("the plan never named the XP agent");
    assert_eq!(cut_off_ids(&answer), [xp.id()]);
    let line = &answer["cut_off"][0];
    assert_eq!(line["evidence"], "replayed", "{line}");
    // In an admin's words: what the stack offers, and why OpenSSL refuses it.
    let reason = line["reason"].as_str().unwrap();
    assert!(
        reason.contains("is refused")
            && reason.contains("offers only TLSv1")
            && reason.contains("3DES")
            && reason.contains("no shared cipher"),
        "{line}"
    );
    assert_eq!(answer["change"], "SSLCipherSuite HIGH:!3DES", "{answer}");

    // Readiness groups the fleet by stack: the XP stack and the modern one, each with what it
    // offers, as OpenSSL classes its suites.
    let readiness = cli(&server, &["tls", "readiness"]);
    let stacks = readiness["stacks"].as_array().unwrap();
    let of = |id: &str| {
        stacks
            .iter()
            .find(|s| s["ids"].as_array().unwrap().iter().any(|i| i == id))
            .unwrap_or_else(|| panic!("{id} in no stack: {readiness}"))
            .clone()
    };
    let xp_stack = of(&xp.id());
    assert_eq!(xp_stack["agents"], 1, "{xp_stack}");
    assert_eq!(xp_stack["offered_versions"], serde_json::json!(["TLSv1"]));
    assert!(
        xp_stack["suite_classes"]["3DES"].as_u64() > Some(0),
        "{xp_stack}"
    );
    assert!(xp_stack["suite_classes"]["RSA key exchange"].as_u64() > Some(0));
    assert!(xp_stack["suite_classes"]["TLS 1.3"].is_null());
    assert_eq!(xp_stack["post_quantum"], false);
    // JA4 says the same: TLS 1.0 at most for XP, 1.3 for the modern stack.
    assert!(
        xp_stack["ja4"].as_str().unwrap().starts_with("t10"),
        "{xp_stack}"
    );
    let modern_stack = of(&modern.id());
    assert_ne!(modern_stack["fingerprint"], xp_stack["fingerprint"]);
    assert!(
        modern_stack["suite_classes"]["TLS 1.3"].as_u64() > Some(0),
        "{modern_stack}"
    );
    assert_eq!(modern_stack["post_quantum"], true, "{modern_stack}");
    assert!(
        // (It connects to 127.0.0.1: no SNI, "i".)
        modern_stack["ja4"].as_str().unwrap().starts_with("t13i"),
        "{modern_stack}"
    );

    // Harden stages the XP agent on HTTP, waits for it, edits the cipher list and reloads.
    let hardened = run_cli(
        &server,
        &[
            "tls",
            "harden",
            "--listener",
            "clients",
            "--cipher-suite",
            "HIGH:!3DES",
            "--yes",
            "--watch",
            "2s",
        ],
    );
    assert!(hardened.status.success(), "{hardened:?}");
    let shown = cli(&server, &["agents", "show", &xp.id()]);
    assert_eq!(shown["group"], "My Company/Legacy TLS", "{shown}");
    xp.until(Duration::from_secs(15), |s| {
        s["channel"] == "http" && s["last_error"].is_null()
    });
    modern.until(Duration::from_secs(15), |s| {
        s["channel"] == "https" && s["last_error"].is_null()
    });
    let edited = std::fs::read_to_string(&file).unwrap();
    assert!(
        edited.lines().any(|l| l == "SSLCipherSuite HIGH:!3DES")
            && edited
                .lines()
                .any(|l| l == "#SSLCipherSuite HIGH:DES-CBC3-SHA:!aNULL:!MD5"),
        "{edited}"
    );
    // The plan now finds nobody to cut off, and rollback puts the file back byte for byte.
    let (code, _) = plan(&server, &["--cipher-suite", "HIGH:!3DES"]);
    assert_eq!(code, Some(0));
    let rolled = run_cli(&server, &["tls", "rollback", "--yes"]);
    assert!(rolled.status.success(), "{rolled:?}");
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn a_group_edit_that_would_take_an_agents_only_path_is_refused() {
    let server = fast_server();
    legacy_http_group(&server);
    server.set_protocol(
        "conf/ssl/sslforclients.conf",
        "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1",
    );
    assert!(run_cli(&server, &["server", "reload"]).status.success());
    let http = format!("http://127.0.0.1:{}", server.clients_http);
    let token = group_token(&server, "My Company/Legacy", true);
    let xp = run_agent(enroll(&server, &http, &token, Some("TLSv1")), Some("TLSv1"));
    xp.until(Duration::from_secs(10), |s| s["channel"] == "http");

    // Inheriting the root's HTTPS-only list would leave it no path: refused, nothing changed.
    let refused = run_cli(
        &server,
        &[
            "group",
            "set",
            "My Company/Legacy",
            "--inherit",
            "server_list",
        ],
    );
    assert!(!refused.status.success(), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("would leave 1 agent(s)") && said.contains(&xp.id()),
        "{said}"
    );
    let group = cli(&server, &["group", "show", "My Company/Legacy"]);
    assert_eq!(group["own"]["server_list"], "Default-http", "{group}");
    // So would moving the group under one whose list it inherits... it sets its own, so a
    // move changes nothing for it, and is allowed.
    cli(&server, &["group", "create", "Other"]);
    cli(
        &server,
        &[
            "group",
            "move",
            "My Company/Legacy",
            "--parent",
            "My Company/Other",
        ],
    );
    // Accepted, the change is made and audited with whom it cut off.
    let accepted = run_cli(
        &server,
        &[
            "group",
            "set",
            "My Company/Other/Legacy",
            "--inherit",
            "server_list",
            "--accept-cut-off",
        ],
    );
    assert!(accepted.status.success(), "{accepted:?}");
    let entry = audit_entry(&server, |e| {
        e["action"] == "group.update" && !e["after"]["cut_off_accepted"].is_null()
    });
    assert_eq!(
        entry["after"]["cut_off_accepted"],
        serde_json::json!([xp.id()])
    );
}

/// One real client of the differential: its name and how it makes one connection.
type Client = (String, Box<dyn Fn(std::net::SocketAddr)>);

/// ward's own clients, in this process: each client profile's stack, and an agent's with
/// `--tls-max TLSv1.2`.
fn own_clients() -> Vec<Client> {
    use ward_tls::context::{connector_builder, ClientTls, ServerVerification};
    let mut offers: Vec<(String, ClientTls, Option<&'static str>, bool)> =
        ward_tls::profile::CLIENT_PROFILES
            .iter()
            .map(|p| {
                (
                    format!("ward --client-profile {}", p.name),
                    p.client_tls(ServerVerification::None),
                    p.groups,
                    p.sni,
                )
            })
            .collect();
    offers.push((
        "ward agent --tls-max TLSv1.2".into(),
        ClientTls {
            min: None,
            max: Some(ward_tls::TlsVersion::Tls1_2),
            verification: ServerVerification::None,
            cipher_list: None,
        },
        None,
        true,
    ));
    offers
        .into_iter()
        .map(|(name, tls, groups, sni)| {
            let connect = move |address: std::net::SocketAddr| {
                let mut builder = connector_builder(&tls).unwrap();
                if let Some(groups) = groups {
                    builder.set_groups_list(groups).unwrap();
                }
                let mut config = builder.build().configure().unwrap();
                config.set_use_server_name_indication(sni);
                config.set_verify_hostname(false);
                let tcp = std::net::TcpStream::connect(address).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let _ = config.connect("localhost", tcp);
            };
            (name, Box::new(connect) as Box<dyn Fn(std::net::SocketAddr)>)
        })
        .collect()
}

/// The clients listener's conf for each proposed change: (name, text). They mix protocol,
/// cipher, certificate and group changes.
fn proposed_confs() -> Vec<(&'static str, String)> {
    let both = "SSLCertificateFile certs/server.pem\nSSLCertificateKeyFile certs/server.key\n\
                SSLCertificateFile certs/server-rsa.pem\nSSLCertificateKeyFile certs/server-rsa.key\n";
    let ecdsa = "SSLCertificateFile certs/server.pem\nSSLCertificateKeyFile certs/server.key\n";
    vec![
        ("TLS 1.2 and later", format!("SSLProtocol all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1\n{both}")),
        ("3DES named for XP", format!("SSLProtocol all -SSLv2 -SSLv3\nSSLCipherSuite HIGH:DES-CBC3-SHA:!aNULL:!MD5\n{both}")),
        ("3DES, the ECDSA certificate only", format!("SSLProtocol all -SSLv2 -SSLv3\nSSLCipherSuite HIGH:DES-CBC3-SHA:!aNULL:!MD5\n{ecdsa}")),
        ("TLS 1.3 only", format!("SSLProtocol -all +TLSv1.3\n{both}")),
        ("ECDHE-ECDSA suites only", format!("SSLProtocol all -SSLv2 -SSLv3\nSSLCipherSuite ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA\n{both}")),
        ("X25519 only", format!("SSLProtocol all -SSLv2 -SSLv3\nSSLOpenSSLConfCmd Groups X25519\n{both}")),
        ("the default again", format!("SSLProtocol all -SSLv2 -SSLv3\n{both}")),
    ]
}

#[test]
fn the_plans_verdict_for_every_real_client_is_what_the_reloaded_listener_answers() {
    use std::net::{Ipv4Addr, SocketAddr};
    use ward_testkit::peers::{outside_clients, run_until, Relay};
    let server = fast_server();
    let listener = SocketAddr::from((Ipv4Addr::LOCALHOST, server.clients));
    let outside = outside_clients();
    let own = own_clients();
    // Every client by name: ward's own first, then the outside ones.
    let clients: Vec<String> = own
        .iter()
        .map(|(name, _)| name.clone())
        .chain(outside.clients.iter().map(|(name, _)| name.clone()))
        .collect();
    // Each client is its own peer: a relay from 127.0.0.(20 + i).
    let relays: Vec<Relay> = (0..clients.len())
        .map(|i| Relay::new(Ipv4Addr::new(127, 0, 0, 20 + i as u8), listener))
        .collect();
    // One connection of client `i` through its relay; whether the listener served it.
    let connect = |i: usize| -> bool {
        let relay = &relays[i];
        relay.reset();
        match own.get(i) {
            Some((_, connect)) => connect(relay.address),
            None => {
                let (_, command) = &outside.clients[i - own.len()];
                run_until(command(relay.address), Duration::from_secs(20), || {
                    relay.answer().is_some()
                });
            }
        }
        eventually(Duration::from_secs(10), || relay.answer())
            .unwrap_or_else(|| panic!("{}: no answer from the listener", clients[i]))
    };
    // Every client once, so the server keeps its ClientHello under its address.
    for i in 0..clients.len() {
        connect(i);
    }
    let address = |i: usize| format!("127.0.0.{}", 20 + i);
    let file = server.path("conf/ssl/sslforclients.conf");
    let proposal_file = server.dir.path().join("proposed.conf");
    let mut compared = 0;
    let (mut served, mut refused) = (0, 0);
    for (name, text) in proposed_confs() {
        std::fs::write(&proposal_file, &text).unwrap();
        // The plan: every peer's verdict, from its real ClientHello replayed.
        let peers = eventually(Duration::from_secs(10), || {
            let (_, answer) = plan(&server, &["--conf", proposal_file.to_str().unwrap()]);
            let peers = answer["peers"].as_array().cloned().unwrap_or_default();
            (0..clients.len())
                .all(|i| peers.iter().any(|p| p["address"] == address(i)))
                .then_some(peers)
        })
        .unwrap_or_else(|| panic!("{name}: the plan does not list every client"));
        // The change, applied and reloaded; then each client again.
        std::fs::write(&file, &text).unwrap();
        let reloaded = run_cli(&server, &["server", "reload"]);
        assert!(reloaded.status.success(), "{name}: {reloaded:?}");
        for (i, client) in clients.iter().enumerate() {
            let peer = peers.iter().find(|p| p["address"] == address(i)).unwrap();
            let predicted = match peer["verdict"].as_str() {
                Some("unaffected") => true,
                Some("cut_off") => false,
                other => panic!("{name} / {client}: verdict {other:?}: {peer}"),
            };
            let real = connect(i);
            assert_eq!(
                predicted,
                real,
                "{name} / {client}: the plan said {peer}, the reloaded listener {}",
                if real { "served it" } else { "refused it" }
            );
            if real {
                served += 1;
            } else {
                refused += 1;
            }
            compared += 1;
        }
    }
    assert_eq!(compared, proposed_confs().len() * clients.len());
    assert!(
        served > 10 && refused > 10,
        "{served} served, {refused} refused"
    );
}

#[test]
fn harden_with_a_certificate_the_agents_would_not_trust_stages_them_first() {
    let server = fast_server();
    let agent = https_agent(&server);
    let foreign_ca = pki::new_ca("a new CA the agents do not have").unwrap();
    let (foreign, foreign_key) = certificate_from(&server, &foreign_ca, "foreign");
    let file = server.path("conf/ssl/sslforclients.conf");
    let before = std::fs::read(&file).unwrap();
    let hardened = run_cli(
        &server,
        &[
            "tls",
            "harden",
            "--listener",
            "clients",
            "--certificate",
            foreign.to_str().unwrap(),
            "--key",
            foreign_key.to_str().unwrap(),
            "--yes",
            "--watch",
            "2s",
        ],
    );
    assert!(hardened.status.success(), "{hardened:?}");
    // The agent was staged on HTTP before the certificate changed, and keeps checking in.
    let shown = cli(&server, &["agents", "show", &agent.id()]);
    assert_eq!(shown["group"], "My Company/Legacy TLS", "{shown}");
    agent.until(Duration::from_secs(15), |s| {
        s["channel"] == "http" && s["last_error"].is_null()
    });
    let edited = std::fs::read_to_string(&file).unwrap();
    let names: Vec<&str> = edited
        .lines()
        .filter(|l| l.starts_with("SSLCertificateFile"))
        .collect();
    assert_eq!(names, [format!("SSLCertificateFile {}", foreign.display())]);
    // The listener serves it: a client that pins the foreign CA now verifies the server.
    let ca = server.dir.path().join("foreign-ca.pem");
    std::fs::write(&ca, foreign_ca.cert_pem().unwrap()).unwrap();
    let verified = std::process::Command::new(ward_testkit::tool("curl", "curl"))
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{ssl_verify_result}",
            "--cacert",
        ])
        .arg(&ca)
        .arg(format!("https://127.0.0.1:{}/healthz", server.clients))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&verified.stdout),
        "0",
        "{verified:?}"
    );
    // Rollback (with the agent moved back) cuts nobody off, and puts the file back byte
    // for byte.
    let rolled = run_cli(&server, &["tls", "rollback", "--yes", "--move-back"]);
    assert!(rolled.status.success(), "{rolled:?}");
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

/// Days left on the certificate at `relative` in the data dir.
fn days_left(server: &Server, relative: &str) -> i64 {
    let cert =
        openssl::x509::X509::from_pem(&std::fs::read(server.path(relative)).unwrap()).unwrap();
    ward_tls::pki::seconds_left(&cert).unwrap() / 86_400
}

#[test]
fn a_certificate_near_expiry_is_warned_about_and_renewed_and_agents_keep_checking_in() {
    let mut server = Server::init();
    // ward's own certificate, 10 days from expiry.
    let ca = wards_ca(&server);
    let ip = "127.0.0.1".parse().unwrap();
    let short =
        pki::new_server_cert_for(pki::KeyType::EcdsaP256, &ca, &["localhost"], &[ip], 10).unwrap();
    std::fs::write(server.path("certs/server.pem"), short.cert_pem().unwrap()).unwrap();
    std::fs::write(server.path("certs/server.key"), short.key_pem().unwrap()).unwrap();
    assert!(days_left(&server, "certs/server.pem") <= 10);
    // configtest warns, and still passes.
    let checked = run_cli(&server, &["server", "configtest"]);
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{checked:?}");
    assert!(
        said.contains("certs/server.pem: the certificate expires in") && said.contains("day(s)"),
        "{said}"
    );
    // The server renews it by itself at start, and reloads.
    server.start();
    eventually(Duration::from_secs(20), || {
        (days_left(&server, "certs/server.pem") > 700).then_some(())
    })
    .expect("the server did not renew its certificate");
    fast_checkins(&server);
    let agent = https_agent(&server);
    // /metrics says how long each certificate has.
    let metrics = https_get(server.console, &server.ca_pem(), "/metrics", None);
    assert!(
        metrics.body.contains(
            "ward_tls_certificate_expiry_seconds{listener=\"clients\",file=\"certs/server.pem\"}"
        ),
        "{}",
        metrics.body
    );
    // Renewed by hand while the agent runs: it keeps checking in over HTTPS.
    let renewed = run_cli(&server, &["server", "renew-cert"]);
    assert!(renewed.status.success(), "{renewed:?}");
    assert!(String::from_utf8_lossy(&renewed.stdout).contains("reloaded"));
    let before = agent.status().unwrap()["last_checkin"].clone();
    agent.until(Duration::from_secs(15), |s| {
        s["last_checkin"] != before && s["channel"] == "https" && s["last_error"].is_null()
    });
    // An expired certificate is an error, and a reload of it is refused.
    let expired =
        pki::new_server_cert_for(pki::KeyType::EcdsaP256, &ca, &["localhost"], &[ip], 0).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    std::fs::write(server.path("certs/server.pem"), expired.cert_pem().unwrap()).unwrap();
    std::fs::write(server.path("certs/server.key"), expired.key_pem().unwrap()).unwrap();
    let checked = run_cli(&server, &["server", "configtest"]);
    assert!(!checked.status.success(), "{checked:?}");
    assert!(
        String::from_utf8_lossy(&checked.stdout).contains("the certificate has expired"),
        "{checked:?}"
    );
    let reload = run_cli(&server, &["server", "reload"]);
    assert!(!reload.status.success(), "{reload:?}");
    agent.until(Duration::from_secs(10), |s| s["last_error"].is_null());
}

#[test]
fn a_backup_of_a_running_server_under_writes_restores_every_acknowledged_write() {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let mut server = fast_server();
    let agent = https_agent(&server);
    // Admin writes under way, each noted once acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        let (console, ca, token) = (server.console, server.ca_pem(), server.token());
        std::thread::spawn(move || {
            for n in 0..10_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = tls_connect(console, &ca, None) else {
                    continue;
                };
                let name = format!("g-{n}");
                let bearer = format!("Bearer {token}");
                let reply = HttpConnection::new(stream).request(
                    "POST",
                    "/api/v1/groups",
                    &[
                        ("Authorization", &bearer),
                        ("Content-Type", "application/json"),
                    ],
                    &format!("{{\"name\": \"{name}\"}}"),
                );
                if reply.is_some_and(|r| r.status == 201) {
                    acknowledged.lock().unwrap().push(name);
                }
            }
        })
    };
    eventually(Duration::from_secs(20), || {
        (acknowledged.lock().unwrap().len() >= 10).then_some(())
    })
    .expect("writes are under way");
    let before_backup = acknowledged.lock().unwrap().clone();
    let file = server.dir.path().join("ward.backup");
    let backed_up = run_cli(
        &server,
        &["server", "backup", "--out", file.to_str().unwrap()],
    );
    assert!(backed_up.status.success(), "{backed_up:?}");
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Restore refuses a dir that is not empty.
    let refused = ward(&[
        "server",
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data",
        &server.data_str(),
    ]);
    assert!(!refused.status.success(), "{refused:?}");
    // The machine is lost: the restored data dir takes its place.
    server.terminate(Duration::from_secs(10));
    std::fs::rename(server.data(), server.dir.path().join("lost")).unwrap();
    let restored = ward(&[
        "server",
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data",
        &server.data_str(),
    ]);
    assert!(restored.status.success(), "{restored:?}");
    for (secret, mode) in [
        ("admin.token", 0o600),
        ("certs/ca.key", 0o600),
        ("ward.db", 0o600),
    ] {
        let got = std::fs::metadata(server.path(secret))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(got, mode, "{secret}");
    }
    server.start();
    let groups = cli(&server, &["group", "list"]);
    let names: Vec<&str> = groups
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    let lost: Vec<&String> = before_backup
        .iter()
        .filter(|n| !names.contains(&n.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged before the backup, lost: {lost:?}"
    );
    // Its agents keep checking in: same CA, same keys, same agent records.
    let before = agent.status().unwrap()["last_checkin"].clone();
    agent.until(Duration::from_secs(20), |s| {
        s["last_checkin"] != before && s["last_error"].is_null()
    });
}
