//! What an operator watches, from a real server with real agents: the histograms and counters
//! of `/metrics` are there, move with the work, and pass Prometheus's own linter (`promtool
//! check metrics`, from Debian's `prometheus` package).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

fn metrics(server: &Server) -> String {
    https_get(server.console, &server.ca_pem(), "/metrics", None).body
}

/// The value of the sample `name` (with its labels, exactly).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[test]
fn metrics_move_with_the_work_and_pass_promtool() {
    let server = fast_server();
    // A pull agent over HTTPS (check-ins, full then resumed handshakes, group commits), a
    // push agent held (then woken by a change), an admin request.
    let pull = https_agent(&server);
    cli(&server, &["group", "create", "Push"]);
    cli(
        &server,
        &["group", "set", "My Company/Push", "--mode", "push"],
    );
    let url = format!("https://127.0.0.1:{}", server.clients);
    let token = group_token(&server, "My Company/Push", false);
    let push = run_agent(enroll(&server, &url, &token, None), None);
    push.until(Duration::from_secs(15), |s| s["held"] == true);
    set_root_policy(&server, r#"{"watched": true}"#);
    push.until(Duration::from_secs(15), |s| s["held"] == true);
    pull.until(Duration::from_secs(15), |s| s["last_error"].is_null());
    // Woken by the change, and held again: between its answer and its next check-in the
    // agent is not held, so the two are read from one scrape.
    let text = eventually(Duration::from_secs(15), || {
        let text = metrics(&server);
        (sample(&text, "ward_push_wakeups_total")? >= 1.0
            && sample(&text, "ward_push_held_agents")? >= 1.0)
            .then_some(text)
    })
    .expect("a held check-in woken by the change, and the agent held again");

    let at_least = |name: &str, minimum: f64| {
        let value = sample(&text, name).unwrap_or_else(|| panic!("no {name}:\n{text}"));
        assert!(
            value >= minimum,
            "{name} = {value}, expected at least {minimum}"
        );
    };
    at_least(
        "ward_agent_checkin_seconds_count{listener=\"clients\",channel=\"https\"}",
        3.0,
    );
    at_least(
        "ward_agent_checkin_seconds_bucket{listener=\"clients\",channel=\"https\",le=\"+Inf\"}",
        3.0,
    );
    at_least(
        "ward_agent_checkins_total{listener=\"clients\",result=\"ok\"}",
        3.0,
    );
    at_least(
        "ward_tls_handshake_seconds_count{listener=\"clients\",result=\"full\"}",
        1.0,
    );
    at_least(
        "ward_tls_handshake_seconds_count{listener=\"clients\",result=\"resumed\"}",
        1.0,
    );
    at_least("ward_checkin_commit_batch_size_count", 3.0);
    at_least("ward_checkin_commit_seconds_count", 3.0);
    at_least(
        "ward_admin_request_seconds_count{method=\"PATCH\",route=\"/groups/{id}\"}",
        1.0,
    );
    at_least("ward_push_held_agents", 1.0);
    // The binary counts what OpenSSL holds: at least its contexts and the held connection.
    at_least("ward_tls_library_bytes", 100_000.0);
    assert_eq!(
        sample(
            &text,
            "ward_connections_capped_total{listener=\"clients\",cap=\"address\"}"
        ),
        Some(0.0)
    );

    // Prometheus's linter has nothing to say.
    let mut promtool = Command::new(ward_testkit::tool("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// A push agent that dies while its check-in is held: the server sees its socket close and
/// lets the hold go at once, not when the hold's wait (up to 50 s here) runs out.
#[test]
fn a_held_check_in_is_let_go_as_soon_as_its_agent_dies() {
    let mut server = Server::init();
    server.start();
    cli(
        &server,
        &[
            "group",
            "set",
            "My Company",
            "--mode",
            "push",
            "--interval",
            "5m",
        ],
    );
    let url = format!("https://127.0.0.1:{}", server.clients);
    let token = group_token(&server, "My Company", false);
    let mut push = run_agent(enroll(&server, &url, &token, None), None);
    push.until(Duration::from_secs(15), |s| s["held"] == true);
    let held = eventually(Duration::from_secs(10), || {
        (sample(&metrics(&server), "ward_push_held_agents")? == 1.0).then_some(())
    });
    assert!(held.is_some(), "the push agent's check-in is held");
    push.child.kill().unwrap();
    push.child.wait().unwrap();
    let released = eventually(Duration::from_secs(5), || {
        (sample(&metrics(&server), "ward_push_held_agents")? == 0.0).then_some(())
    });
    assert!(
        released.is_some(),
        "a held check-in outlived its agent:\n{}",
        server.log_text()
    );
}

/// A push agent (a real `ward agent run`) takes a change's answer on the connection its
/// check-in was held on, and acknowledges and holds again on that same connection: two
/// changes cost the server no new connection and no handshake. A reload of the listener's TLS
/// settings closes the kept connection, so the agent's next check-in comes on a new one, under
/// the new settings.
#[test]
fn a_push_agent_keeps_its_connection_across_changes_until_a_reload() {
    let server = fast_server();
    cli(&server, &["group", "set", "My Company", "--mode", "push"]);
    let url = format!("https://127.0.0.1:{}", server.clients);
    let token = group_token(&server, "My Company", false);
    let agent = run_agent(enroll(&server, &url, &token, None), None);
    agent.until(Duration::from_secs(15), |s| s["held"] == true);
    let connections = |text: &str| sample(text, "ward_connections_total{listener=\"clients\"}");
    let before = metrics(&server);
    let opened = connections(&before).expect("a connection counter");
    let wakeups = sample(&before, "ward_push_wakeups_total").unwrap_or(0.0);
    for change in 1..=2 {
        let serial = agent.status().unwrap()["serial"].as_i64().unwrap();
        set_root_policy(&server, &format!(r#"{{"change": {change}}}"#));
        agent.until(Duration::from_secs(15), |s| {
            s["serial"].as_i64().unwrap() > serial && s["held"] == true
        });
        // The acknowledgement is recorded, and the check-in that carried it is held.
        let acknowledged = eventually(Duration::from_secs(15), || {
            let pending = cli(&server, &["client", "list", "--pending"]);
            let text = metrics(&server);
            (pending.as_array()?.is_empty()
                && sample(&text, "ward_push_held_agents")? == 1.0
                && sample(&text, "ward_push_wakeups_total")? >= wakeups + change as f64)
                .then_some(text)
        })
        .unwrap_or_else(|| panic!("change {change} acknowledged and held again"));
        assert_eq!(
            connections(&acknowledged),
            Some(opened),
            "change {change}: the agent's connection carried the answer, the acknowledgement \
             and the next hold"
        );
    }
    // The kept connection's records left OpenSSL before its first hold; the agent (OpenSSL)
    // took both changes and sent both acknowledgements through ward's record layer.
    let handed_over = |text: &str| sample(text, "ward_tls_handovers_total{result=\"handed_over\"}");
    let text = metrics(&server);
    let before_keep_alive = handed_over(&text).expect("a hand-over counter");
    assert!(
        before_keep_alive >= 1.0,
        "the kept connection was handed over"
    );
    assert_eq!(
        sample(&text, "ward_tls_handovers_total{result=\"kept\"}"),
        Some(0.0)
    );
    // Requests for hyper on an agent listener (here a client's keep-alive health checks) are
    // served through ward's record layer too, at TLS 1.3 and 1.2 alike.
    for max in [None, Some(openssl::ssl::SslVersion::TLS1_2)] {
        let tls = tls_connect(server.clients, &server.ca_pem(), max).unwrap();
        let mut connection = HttpConnection::new(tls);
        for round in 0..3 {
            let reply = connection
                .request("GET", "/healthz", &[], "")
                .unwrap_or_else(|| panic!("{max:?}: answer {round} on the kept connection"));
            assert_eq!(reply.status, 200, "{max:?}: {}", reply.body);
        }
    }
    assert_eq!(
        handed_over(&metrics(&server)),
        Some(before_keep_alive + 2.0),
        "each keep-alive connection handed over once"
    );
    assert!(run_cli(&server, &["server", "reload"]).status.success());
    let reconnected = eventually(Duration::from_secs(15), || {
        let text = metrics(&server);
        (connections(&text)? > opened && sample(&text, "ward_push_held_agents")? == 1.0)
            .then_some(())
    });
    assert!(
        reconnected.is_some(),
        "after the reload the agent holds its check-in on a new connection"
    );
    let status = agent.status().unwrap();
    assert!(status["last_error"].is_null(), "{status}");
}
