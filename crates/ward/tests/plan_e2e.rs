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
    let (code, answer) = plan(
        &server,
        &[
            "--certificate",
            foreign.to_str().unwrap(),
            "--key",
            foreign_key.to_str().unwrap(),
        ],
    );
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
    let (code, answer) = plan(
        &server,
        &[
            "--certificate",
            renewed.to_str().unwrap(),
            "--key",
            renewed_key.to_str().unwrap(),
        ],
    );
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
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!("{text}\nSSLCipherSuite HIGH:DES-CBC3-SHA:!aNULL:!MD5\n"),
    )
    .unwrap();
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
    assert!(
        line["reason"].as_str().unwrap().contains("is refused"),
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
    let modern_stack = of(&modern.id());
    assert_ne!(modern_stack["fingerprint"], xp_stack["fingerprint"]);
    assert!(
        modern_stack["suite_classes"]["TLS 1.3"].as_u64() > Some(0),
        "{modern_stack}"
    );
    assert_eq!(modern_stack["post_quantum"], true, "{modern_stack}");

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
    let audit = cli(&server, &["audit"]);
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "group.update" && !e["after"]["cut_off_accepted"].is_null())
        .unwrap_or_else(|| panic!("no accepted group update in {audit}"))
        .clone();
    assert_eq!(
        entry["after"]["cut_off_accepted"],
        serde_json::json!([xp.id()])
    );
}
