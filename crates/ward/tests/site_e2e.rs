//! ward on PostgreSQL: a real server process whose database is a private PostgreSQL cluster
//! (`ward_testkit::pg`), real agents checking in through it, changes reaching them, and the
//! fleet kept in PostgreSQL across a restart; a database ward cannot use is refused with the
//! reason and changed in no way.

mod support;

use std::time::Duration;

use support::*;
use ward_testkit::pg::Cluster;
use ward_tls::TlsVersion;

/// How many rows `table` holds in the cluster's database.
fn rows(cluster: &Cluster, table: &str) -> i64 {
    cluster
        .client()
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0)
}

/// Waits up to `bound` for `agent` to take a serial newer than `before`; its status.
fn newer_serial(agent: &Agent, before: i64, bound: Duration) -> serde_json::Value {
    agent.until(bound, |s| {
        s["serial"].as_i64().is_some_and(|serial| serial > before)
    })
}

/// Admin changes made through a server one after another on a thread of their own until
/// stopped (at most 2,000): each creates a group, and the names of those the server
/// acknowledged (the command exited 0) are kept.
struct Changes {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Changes {
    fn start(server: &Server, prefix: &str) -> Changes {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (data, prefix, stopped) = (server.data_str(), prefix.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            for n in 0..2000 {
                if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let name = format!("{prefix}-{n}");
                if ward(&["group", "create", &name, "--data", &data])
                    .status
                    .success()
                {
                    acknowledged.push(name);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            acknowledged
        });
        Changes { stop, thread }
    }

    /// Stops them; what was acknowledged.
    fn stop(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Every change in `acknowledged` is in the fleet `server` serves.
fn all_kept(server: &Server, acknowledged: &[String]) {
    let groups = cli(server, &["group", "list"]).to_string();
    for name in acknowledged {
        assert!(
            groups.contains(&format!("\"{name}\"")),
            "{name} lost: {groups}"
        );
    }
}

/// Simulated agents (`ward simulate`, their own processes' worth of real TLS check-ins)
/// loading a server: enrolled once, then run for a while, pulling every two seconds.
struct SimulatedFleet {
    command: Vec<String>,
    running: Option<std::process::Child>,
}

/// The simulated agents' check-in interval.
const SIMULATED_INTERVAL: Duration = Duration::from_secs(2);

impl SimulatedFleet {
    /// `agents` simulated agents enrolled through `server` (their identities kept, so a run
    /// checks in from its first second).
    fn enroll(server: &Server, agents: usize) -> SimulatedFleet {
        let token = group_token(server, "My Company", false);
        let command: Vec<String> = [
            "simulate",
            "--server",
            &format!("https://127.0.0.1:{}", server.clients),
            "--token",
            &token,
            "--ca",
            &server.path("certs/ca.pem").display().to_string(),
            "--agents",
            &agents.to_string(),
            "--mode",
            "pull",
            "--interval",
            &format!("{}s", SIMULATED_INTERVAL.as_secs()),
            "--identities",
            &server.dir.path().join("fleet.json").display().to_string(),
            "--json",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        let mut fleet = SimulatedFleet {
            command,
            running: None,
        };
        let enrolled = fleet.output("1s");
        assert_eq!(enrolled["enrollment"]["failed"], 0, "{enrolled}");
        fleet
    }

    fn spawn(&self, duration: &str) -> std::process::Child {
        std::process::Command::new(ward_bin())
            .args(&self.command)
            .args(["--duration", duration])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn output(&mut self, duration: &str) -> serde_json::Value {
        let child = self.spawn(duration);
        Self::report(child)
    }

    /// Starts a run of `duration` in the background.
    fn start(&mut self, duration: &str) {
        self.running = Some(self.spawn(duration));
    }

    /// The running run's report, once it ends.
    fn finish(&mut self) -> serde_json::Value {
        Self::report(self.running.take().expect("a run"))
    }

    fn report(child: std::process::Child) -> serde_json::Value {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "simulate: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

/// What a simulated fleet's run says of an outage that ended at `back_ms` (unix ms): every
/// agent lost contact during it and was back before the run ended (none lost), and how long
/// after `back_ms` the last one was back.
fn fleet_came_back(report: &serde_json::Value, back_ms: i64) -> Duration {
    assert_eq!(report["lost"]["count"], 0, "every agent is back: {report}");
    assert!(
        report["recovered"]["checkins"].as_u64() > Some(0),
        "the outage reached the simulated agents: {report}"
    );
    let last = report["recovered"]["last_at_ms"].as_i64().unwrap();
    let after = Duration::from_millis((last - back_ms).max(0) as u64);
    eprintln!(
        "{} simulated agents ({} check-ins at {:.0}/s): the last was back {after:?} after the \
         database ({} intervals of {SIMULATED_INTERVAL:?}); failures meanwhile: {}",
        report["agents"],
        report["checkins"],
        report["checkins_per_second"].as_f64().unwrap_or(0.0),
        after.as_secs_f64() / SIMULATED_INTERVAL.as_secs_f64(),
        report["failures"]
    );
    after
}

/// Waits until each of `agents` has checked in again since now, without an error; how long
/// the slowest took.
fn all_back(agents: &[Agent], bound: Duration) -> Duration {
    let started = std::time::Instant::now();
    let seen: Vec<serde_json::Value> = agents
        .iter()
        .map(|a| a.status().unwrap()["last_checkin"].clone())
        .collect();
    for (agent, seen) in agents.iter().zip(seen) {
        agent.until(bound, |s| {
            s["last_error"].is_null() && s["last_checkin"] != seen
        });
    }
    started.elapsed()
}

/// Waits until `count` push check-ins are held on `server` (its metrics say so).
fn wait_held(server: &Server, count: usize) {
    let line = format!("ward_push_held_agents {count}");
    let held = eventually(Duration::from_secs(15), || {
        let metrics = https_get(server.console, &server.ca_pem(), "/metrics", None).body;
        metrics.lines().any(|l| l == line).then_some(())
    });
    assert!(held.is_some(), "{}", server.log_text());
}

/// A change made through `server` reaches `agent`, held on another server, within 3 s (the
/// CLI's own time included).
fn reaches_from(server: &Server, agent: &Agent) {
    let before = serial_of(agent);
    let started = std::time::Instant::now();
    set_root_policy(server, r#"{"from": "the other server"}"#);
    newer_serial(agent, before, Duration::from_secs(10));
    let took = started.elapsed();
    eprintln!("the change reached the agent held on the other server in {took:?} (CLI included)");
    assert!(
        took < Duration::from_secs(3),
        "the change took {took:?} to reach the agent held on the other server"
    );
}

/// The serial `agent` follows now.
fn serial_of(agent: &Agent) -> i64 {
    agent.status().unwrap()["serial"].as_i64().unwrap()
}

#[test]
fn a_server_on_postgresql_serves_agents_and_keeps_its_fleet_across_a_restart() {
    let cluster = Cluster::start();
    let mut server = Server::init();
    let env = [("WARD_DATABASE", cluster.uri())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    server.start_with_env(&[], &env);
    fast_checkins(&server);
    let agent = https_agent(&server);
    // The fleet lives in PostgreSQL: the agent, its check-ins, the audit of the change above.
    assert_eq!(rows(&cluster, "agents"), 1);
    assert!(rows(&cluster, "audit") >= 1);
    let clients = cli(&server, &["client", "list"]);
    assert_eq!(clients.as_array().map(Vec::len), Some(1), "{clients}");

    // A change through the admin API reaches the agent.
    let before = serial_of(&agent);
    set_root_policy(&server, r#"{"antivirus": "strict"}"#);
    let status = newer_serial(&agent, before, Duration::from_secs(15));
    let serial = status["serial"].as_i64().unwrap();
    let pending = cli(&server, &["client", "list", "--pending"]);
    assert!(
        eventually(Duration::from_secs(10), || {
            let pending = cli(&server, &["client", "list", "--pending"]);
            pending.as_array().is_some_and(Vec::is_empty).then_some(())
        })
        .is_some(),
        "the agent acknowledged serial {serial}: {pending}"
    );

    // Restarted on the same database: the same fleet, and the agent goes on checking in.
    assert!(server
        .terminate(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    server.start_with_env(&[], &env);
    let clients = cli(&server, &["client", "list"]);
    assert_eq!(clients.as_array().map(Vec::len), Some(1), "{clients}");
    let seen = clients[0]["last_seen"].clone();
    let later = eventually(Duration::from_secs(15), || {
        let clients = cli(&server, &["client", "list"]);
        (clients[0]["last_seen"] != seen).then_some(clients)
    });
    assert!(later.is_some(), "{}", server.log_text());
}

/// A site server's backup, taken while it runs, holds the site's database (`pg_dump`). After
/// the server's data dir and the database are both lost, a restore into an empty database
/// brings back a working site: the fleet as it was at the backup, and its agent checking in.
/// A restore into a database that holds the site is refused and writes nothing.
#[test]
fn a_site_backed_up_while_it_runs_comes_back_into_an_empty_database() {
    let cluster = Cluster::start();
    cluster
        .client()
        .batch_execute("CREATE DATABASE site")
        .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:{}/site", cluster.port());
    let mut server = Server::init_with(&["--database", &url]);
    server.start();
    fast_checkins(&server);
    let agent = https_agent(&server);
    cli(&server, &["group", "create", "Before the backup"]);
    let out = server.dir.path().join("site-backup.tar");
    let out_text = out.display().to_string();
    let backup = cli(&server, &["server", "backup", "--out", &out_text]);
    assert_eq!(backup["site"], true, "{backup}");
    cli(&server, &["group", "create", "After the backup"]);

    // The database still holds the site: restoring its snapshot there is refused.
    let elsewhere = server.dir.path().join("elsewhere");
    let elsewhere_text = elsewhere.display().to_string();
    let refused = ward(&[
        "server",
        "restore",
        "--from",
        &out_text,
        "--data",
        &elsewhere_text,
    ]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("holds a ward site already") && said.contains("--files-only"),
        "{said}"
    );
    assert!(!elsewhere.exists());

    // The disaster: the server, its data dir and its database are lost.
    assert!(server.terminate(Duration::from_secs(20)).is_some());
    std::fs::remove_dir_all(server.data()).unwrap();
    let mut admin = cluster.client();
    admin
        .batch_execute("DROP DATABASE site WITH (FORCE)")
        .unwrap();
    admin.batch_execute("CREATE DATABASE site").unwrap();
    let restored = ward(&[
        "server",
        "restore",
        "--from",
        &out_text,
        "--data",
        &server.data_str(),
        "--json",
    ]);
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let restored: serde_json::Value = serde_json::from_slice(&restored.stdout).unwrap();
    assert_eq!(restored["database"], url.as_str(), "{restored}");
    assert!(
        !server.path("site.dump").exists(),
        "no copy of the database stays"
    );
    server.start();
    let groups = cli(&server, &["group", "list"]).to_string();
    assert!(groups.contains("Before the backup"), "{groups}");
    assert!(!groups.contains("After the backup"), "{groups}");
    // The agent goes on checking in, and takes a change.
    let before = serial_of(&agent);
    set_root_policy(&server, r#"{"restored": true}"#);
    newer_serial(&agent, before, Duration::from_secs(30));
}

#[test]
fn a_database_ward_cannot_use_is_refused_with_the_reason_and_left_alone() {
    let cluster = Cluster::start();
    // Another application's tables, and no ward site.
    cluster
        .client()
        .batch_execute(
            "CREATE TABLE invoices (id BIGINT PRIMARY KEY); INSERT INTO invoices VALUES (7);",
        )
        .unwrap();
    let mut server = Server::init();
    let cases = [
        (cluster.uri(), "holds tables but no ward site"),
        (
            // Nothing listens there.
            format!(
                "postgres://postgres@127.0.0.1:{}/postgres",
                ward_testkit::free_port()
            ),
            "",
        ),
    ];
    for (url, reason) in cases {
        let mut child = std::process::Command::new(ward_bin())
            .args(["server", "--data", &server.data_str(), "--database", &url])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "{url}: still running");
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{url}: {stderr}");
        assert!(stderr.contains("ward: error:"), "{url}: {stderr}");
        assert!(stderr.contains(reason), "{url}: {stderr}");
        // `ward server init` on it refuses too, before it writes anything.
        let fresh = server.dir.path().join("fresh");
        let init = std::process::Command::new(ward_bin())
            .args(["server", "init", "--data"])
            .arg(&fresh)
            .args(["--database", &url])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&init.stderr);
        assert!(!init.status.success(), "{url}: {stderr}");
        assert!(stderr.contains(reason), "{url}: {stderr}");
        assert!(!fresh.exists(), "{url}: init wrote {}", fresh.display());
    }
    // The other application's database is as it was.
    let tables: i64 = cluster
        .client()
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 1);
    assert_eq!(rows(&cluster, "invoices"), 1);
    // And the server starts on its own SQLite file as before.
    server.start();
}

#[test]
fn a_database_password_in_a_ward_toml_others_can_read_is_refused() {
    let server = Server::init();
    server.replace_in(
        "ward.toml",
        "path = \"ward.db\"",
        "path = \"postgres://ward:s3cret@127.0.0.1:5432/ward\"",
    );
    let output = std::process::Command::new(ward_bin())
        .args(["server", "--data", &server.data_str()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("holds a password, and others can read the file"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cret"),
        "the password is not repeated: {stderr}"
    );
}

/// Two servers on one database: a change made through one reaches a push agent held on the
/// other within moments (PostgreSQL's NOTIFY), not when its hold runs out (55 s).
#[test]
fn a_change_through_one_server_wakes_a_push_agent_held_on_the_other() {
    let cluster = Cluster::start();
    let env = [("WARD_DATABASE", cluster.uri())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first = Server::init();
    first.start_with_env(&[], &env);
    let mut second = Server::init();
    second.start_with_env(&[], &env);
    cli(
        &first,
        &[
            "group",
            "set",
            "My Company",
            "--mode",
            "push",
            "--randomize",
            "0s",
        ],
    );
    // Each server lists both, alive, with what each serves; the one asked says so.
    let listed = eventually(Duration::from_secs(15), || {
        let listed = cli(&first, &["server", "list"]);
        (listed["servers"].as_array()?.len() == 2).then_some(listed)
    })
    .expect("both servers registered");
    let servers = listed["servers"].as_array().unwrap();
    assert!(servers.iter().all(|s| s["alive"] == true), "{listed}");
    let this: Vec<&serde_json::Value> = servers.iter().filter(|s| s["this"] == true).collect();
    assert_eq!(this.len(), 1, "{listed}");
    assert!(this[0]["name"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{}", first.console)));
    for server in servers {
        let listener = |role: &str| {
            server["listeners"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["role"] == role)
                .cloned()
                .unwrap_or_else(|| panic!("no {role} listener: {listed}"))
        };
        assert!(listener("clients")["tls"]
            .as_str()
            .is_some_and(|tls| tls.starts_with("TLSv1") && tls.ends_with("TLSv1.3")));
        assert_eq!(listener("clients-http")["tls"], "plain HTTP", "{listed}");
    }
    let agent = https_agent(&first);
    agent.until(Duration::from_secs(15), |s| s["mode"] == "push");
    // Held on the first server now (a push check-in waits there for a change).
    wait_held(&first, 1);
    reaches_from(&second, &agent);
}

/// The database goes away under a running server: the server stays up (its console answers),
/// an agent's check-ins get a signed 503 it obeys (not an unsigned failure), and when the
/// database comes back the server recovers by itself; what was acknowledged before is there.
#[test]
fn a_server_outlives_its_database_going_away_and_recovers_when_it_returns() {
    let mut cluster = Cluster::start();
    let env = [("WARD_DATABASE", cluster.uri())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut server = Server::init();
    server.start_with_env(&[], &env);
    fast_checkins(&server);
    let agent = https_agent(&server);
    // A change acknowledged before the outage.
    set_root_policy(&server, r#"{"before": "the outage"}"#);
    let acknowledged = eventually(Duration::from_secs(15), || {
        let clients = cli(&server, &["client", "list"]);
        let client = &clients[0];
        (client["pending"] == false).then(|| client["serial"].clone())
    })
    .expect("acknowledged before the outage");

    // Admin changes all along, through the outage, and simulated agents checking in.
    let mut fleet = SimulatedFleet::enroll(&server, 200);
    fleet.start("20s");
    let changes = Changes::start(&server, "outage");
    std::thread::sleep(Duration::from_secs(3));
    cluster.stop();
    // Check-ins now find the database gone: the agent is told, signed, to wait.
    let told = agent.until(Duration::from_secs(20), |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("the server is busy (503); retry after"))
    });
    assert!(told["last_error"].is_string());
    assert!(
        server.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the server runs"
    );
    let health = https_get(server.console, &server.ca_pem(), "/healthz", None);
    assert_eq!(health.status, 200);

    // Long enough that every simulated agent finds it gone (more than its interval).
    std::thread::sleep(SIMULATED_INTERVAL + Duration::from_secs(1));
    cluster.restart();
    let back_ms = ward_proto::now_ms();
    // Back by itself: the agent checks in again, and what it acknowledged is kept.
    agent.until(Duration::from_secs(40), |s| s["last_error"].is_null());
    fleet_came_back(&fleet.finish(), back_ms);
    let changed = changes.stop();
    assert!(!changed.is_empty());
    all_kept(&server, &changed);
    let clients = cli(&server, &["client", "list"]);
    let id = agent.id();
    let real = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap();
    assert_eq!(real["serial"], acknowledged, "{real}");
    assert_eq!(real["pending"], false, "{real}");
    // And a change made now reaches it.
    let before = serial_of(&agent);
    set_root_policy(&server, r#"{"after": "the outage"}"#);
    newer_serial(&agent, before, Duration::from_secs(15));
}

/// A site of two servers on one database, as an admin builds it: `ward server init
/// --database URL` creates the site on the first and joins it on the second, which takes the
/// site's CA, agreement and ticket keys and gets its own certificates from that CA. An agent
/// enrolled through the first, with both in its server list, is woken there by a change made
/// through the second; a CA rotation through the first switches both servers; the plan
/// through the second names an agent only the first has seen; and when the first is killed
/// (`kill -9`) the agent moves to the second and goes on, with every change acknowledged
/// through the second before the kill kept.
#[test]
fn a_site_of_two_servers_shares_its_keys_rotates_as_one_and_survives_the_loss_of_one() {
    let cluster = Cluster::start();
    let url = cluster.uri();
    let mut first = Server::init_with(&["--database", &url]);
    let mut second = Server::init_with(&["--database", &url]);
    // The URL has no password: ward.toml keeps it, and the servers start without it.
    let toml = std::fs::read_to_string(first.path("ward.toml")).unwrap();
    assert!(toml.contains(&url), "{toml}");
    assert!(!first.path("ward.db").exists());
    for shared in [
        "admin.token",
        "certs/ca.pem",
        "certs/ca.key",
        "keys/agreement.key",
        "keys/tickets.key",
    ] {
        assert_eq!(
            std::fs::read(first.path(shared)).unwrap(),
            std::fs::read(second.path(shared)).unwrap(),
            "{shared} is the site's"
        );
    }
    assert_ne!(
        std::fs::read(first.path("certs/server.key")).unwrap(),
        std::fs::read(second.path("certs/server.key")).unwrap(),
        "each server has its own certificate"
    );
    first.start();
    second.start();
    // The second server's certificate is the site CA's: the first's CA file verifies it.
    let health = https_get(second.clients, &first.ca_pem(), "/healthz", None);
    assert_eq!(health.status, 200);

    // Agents enrolled through the first server, with both servers in their list.
    let list = [
        format!("1:https://127.0.0.1:{}", first.clients),
        format!("2:https://127.0.0.1:{}", second.clients),
    ];
    cli(
        &first,
        &[
            "serverlist",
            "create",
            "Site",
            "--server",
            &list[0],
            "--server",
            &list[1],
        ],
    );
    cli(
        &first,
        &[
            "group",
            "set",
            "My Company",
            "--server-list",
            "Site",
            "--mode",
            "push",
            "--interval",
            "2s",
            "--randomize",
            "0s",
        ],
    );
    let agent = https_agent(&first);
    let url_first = format!("https://127.0.0.1:{}", first.clients);
    let token = group_token(&first, "My Company", false);
    let capped = run_agent(
        enroll(&first, &url_first, &token, Some("TLSv1.2")),
        Some("TLSv1.2"),
    );
    let capped_id = capped.id();
    for one in [&agent, &capped] {
        one.until(Duration::from_secs(15), |s| s["mode"] == "push");
    }
    wait_held(&first, 2);
    // A change through the second server reaches the agent held on the first.
    reaches_from(&second, &agent);

    // The plan through the second server names the agent only the first has seen (its
    // ClientHello, recorded by the first server, replayed by the second).
    let plan = run_cli(
        &second,
        &["tls", "plan", "--protocol", "-all +TLSv1.3", "--json"],
    );
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan_text.contains(&capped_id),
        "the plan through B names {capped_id}: {plan_text}"
    );

    // Harden across the site, as the seed does it (TLS 1.2 only), through the first server:
    // both servers' listeners change, each in its own conf files.
    let names = [site_name(&first), site_name(&second)];
    let clients_conf = "conf/ssl/sslforclients.conf";
    let tls12 = "-all +TLSv1.2";
    // A server whose files would not take the change stops it before any server changes.
    let good = std::fs::read_to_string(second.path(clients_conf)).unwrap();
    let first_before = std::fs::read_to_string(first.path(clients_conf)).unwrap();
    std::fs::write(
        second.path(clients_conf),
        format!("{good}\nSSLNoSuchDirective on\n"),
    )
    .unwrap();
    let refused = run_cli(&first, &["tls", "harden", "--protocol", tls12, "--yes"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains(&format!("server {} would not apply it", names[1]))
            && said.contains("No server's listeners were changed"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(first.path(clients_conf)).unwrap(),
        first_before,
        "the first server's file is untouched"
    );
    std::fs::write(second.path(clients_conf), &good).unwrap();
    let hardened = harden_site(&first, tls12, &[]);
    let applied: Vec<&str> = hardened["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(applied, names, "{hardened}");
    for (server, summary) in [&first, &second]
        .iter()
        .zip(hardened["servers"].as_array().unwrap())
    {
        for scanned in summary["scan"].as_array().unwrap() {
            assert_eq!(
                scanned["accepted"],
                serde_json::json!(["TLSv1.2"]),
                "{hardened}"
            );
        }
        assert!(std::fs::read_to_string(server.path(clients_conf))
            .unwrap()
            .contains(&format!("SSLProtocol {tls12}")));
    }
    // Real peers: neither server's clients listener speaks TLS 1.3 any more.
    for server in [&first, &second] {
        assert_eq!(s_client(server.clients, TlsVersion::Tls1_3), None);
        assert_eq!(
            s_client(server.clients, TlsVersion::Tls1_2).as_deref(),
            Some("TLSv1.2")
        );
    }
    // Every agent keeps checking in.
    let before = [serial_of(&agent), serial_of(&capped)];
    set_root_policy(&second, r#"{"hardened": true}"#);
    for (one, before) in [&agent, &capped].into_iter().zip(before) {
        newer_serial(one, before, Duration::from_secs(20));
    }
    // A rollback through the second server undoes it on both.
    let rolled = cli(&second, &["tls", "rollback", "--yes"]);
    assert_eq!(rolled["servers"].as_array().unwrap().len(), 2, "{rolled}");
    for server in [&first, &second] {
        assert_eq!(
            s_client(server.clients, TlsVersion::Tls1_3).as_deref(),
            Some("TLSv1.3")
        );
    }
    // Hardened again, now through the second server and to TLS 1.3 only, which the capped
    // agent cannot speak: it is moved first to a legacy group whose HTTP list names each
    // server's own clients-http port. The site stays so from here on.
    let tls13 = harden_site(&second, "-all +TLSv1.3", &[]);
    let staged = tls13["staged"].to_string();
    assert!(staged.contains("moved 1 agent(s)"), "{tls13}");
    let lists = cli(&second, &["serverlist", "list"]).to_string();
    for server in [&first, &second] {
        assert!(
            lists.contains(&format!("http://127.0.0.1:{}", server.clients_http)),
            "{lists}"
        );
        assert_eq!(s_client(server.clients, TlsVersion::Tls1_2), None);
    }

    // A CA rotation through the first server: the second takes the next CA at once, every
    // agent acknowledges it, and the switch through the first switches both.
    cli(&first, &["server", "rotate-ca", "start"]);
    let next = eventually(Duration::from_secs(10), || {
        std::fs::read(second.path("certs/ca-next.pem")).ok()
    })
    .expect("the second server took the next CA");
    assert_eq!(
        next,
        std::fs::read(first.path("certs/ca-next.pem")).unwrap()
    );
    let acknowledged = eventually(Duration::from_secs(30), || {
        let status = run_cli(&second, &["server", "rotate-ca", "status", "--json"]);
        status.status.success().then_some(())
    });
    assert!(
        acknowledged.is_some(),
        "{}",
        String::from_utf8_lossy(&run_cli(&second, &["server", "rotate-ca", "status"]).stdout)
    );
    cli(&first, &["server", "rotate-ca", "switch"]);
    let switched = eventually(Duration::from_secs(10), || {
        (std::fs::read(second.path("certs/ca.pem")).ok()? == next).then_some(())
    });
    assert!(switched.is_some(), "{}", second.log_text());
    // The second server's listeners serve a certificate of the new CA now.
    let served = eventually(Duration::from_secs(10), || {
        let ok = std::panic::catch_unwind(|| https_get(second.clients, &next, "/healthz", None));
        ok.ok().filter(|reply| reply.status == 200)
    });
    assert!(served.is_some(), "{}", second.log_text());

    // Twenty changes acknowledged through the second server.
    for n in 0..20 {
        cli(&second, &["group", "create", &format!("Branch {n}")]);
    }

    // Both agents held on the first server again (their first priority; a change brings
    // back one that went to the second meanwhile).
    let held_on_first = || {
        let metrics = https_get(first.console, &next, "/metrics", None).body;
        metrics.lines().any(|l| l == "ward_push_held_agents 2")
    };
    let mut round = 0;
    while !held_on_first() {
        round += 1;
        assert!(
            round <= 10,
            "not held on the first server: {}",
            first.log_text()
        );
        set_root_policy(&second, &format!(r#"{{"round": {round}}}"#));
        std::thread::sleep(Duration::from_secs(3));
    }

    // The first server is killed: the agents move to the second and go on checking in (a
    // push agent's check-in returns when a change is made for it).
    send_signal(first.pid(), 9);
    assert!(first.wait_exit(Duration::from_secs(10)).is_some());
    // The capped agent goes over plain HTTP, to the second server's own clients-http port.
    let urls_second = [
        format!("https://127.0.0.1:{}", second.clients),
        format!("http://127.0.0.1:{}", second.clients_http),
    ];
    for change in 0..2 {
        let before = [serial_of(&agent), serial_of(&capped)];
        set_root_policy(&second, &format!(r#"{{"after the kill": {change}}}"#));
        for ((one, before), url) in [&agent, &capped].into_iter().zip(before).zip(&urls_second) {
            one.until(Duration::from_secs(40), |s| {
                s["server"].as_str() == Some(url.as_str())
                    && s["serial"].as_i64().is_some_and(|serial| serial > before)
            });
        }
    }
    let groups = cli(&second, &["group", "list"]);
    for n in 0..20 {
        assert!(
            groups.to_string().contains(&format!("Branch {n}")),
            "Branch {n} kept: {groups}"
        );
    }

    // With the first server gone, a harden or a rollback through the second stops, naming
    // it, and changes nothing; left out by name, the second's listeners are rolled back alone.
    let conf_before = std::fs::read_to_string(second.path(clients_conf)).unwrap();
    let stopped = run_cli(
        &second,
        &[
            "tls",
            "harden",
            "--protocol",
            "-all +TLSv1.2 +TLSv1.3",
            "--yes",
        ],
    );
    let said = String::from_utf8_lossy(&stopped.stderr);
    assert!(!stopped.status.success(), "{said}");
    assert!(
        said.contains(&names[0]) && said.contains(&format!("--exclude {}", names[0])),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(second.path(clients_conf)).unwrap(),
        conf_before
    );
    let stopped = run_cli(&second, &["tls", "rollback", "--yes"]);
    let said = String::from_utf8_lossy(&stopped.stderr);
    assert!(!stopped.status.success(), "{said}");
    assert!(
        said.contains(&names[0]) && said.contains(&format!("--exclude {}", names[0])),
        "{said}"
    );
    assert_eq!(s_client(second.clients, TlsVersion::Tls1_2), None);
    let alone = cli(
        &second,
        &["tls", "rollback", "--yes", "--exclude", &names[0]],
    );
    assert_eq!(alone["excluded"], serde_json::json!([names[0]]), "{alone}");
    assert_eq!(alone["servers"][0]["name"], names[1].as_str(), "{alone}");
    assert_eq!(
        s_client(second.clients, TlsVersion::Tls1_2).as_deref(),
        Some("TLSv1.2")
    );
}

/// A server's name on its site: its host name and console port (`ward server list`).
fn site_name(server: &Server) -> String {
    let listed = cli(server, &["server", "list"]);
    listed["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["this"] == true)
        .and_then(|s| s["name"].as_str())
        .unwrap()
        .to_string()
}

/// `ward tls harden --protocol WORDS --yes --json` through `server`, which must succeed; its
/// summary.
fn harden_site(server: &Server, protocol: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["tls", "harden", "--protocol", protocol, "--yes", "--json"];
    args.extend(["--watch", "10s"]);
    args.extend(extra);
    let out = run_cli(server, &args);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The database's primary fails over to its synchronous streaming replica (a real second
/// cluster made with `pg_basebackup`, promoted) while agents check in every second and admin
/// changes are made one after another: the server, given both hosts with
/// `target_session_attrs=read-write`, goes on with the new primary by itself; every agent is
/// back, and every change it acknowledged (before, during, after) is there.
#[test]
fn the_database_fails_over_to_its_synchronous_replica_under_load_losing_nothing_acknowledged() {
    let mut primary = Cluster::start();
    let replica = primary.replica(true);
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        primary.port(),
        replica.port()
    );
    let mut server = Server::init();
    server.start_with_env(&[], &[("WARD_DATABASE", url.as_str())]);
    fast_checkins(&server);
    let agents: Vec<Agent> = (0..3).map(|_| https_agent(&server)).collect();
    let mut fleet = SimulatedFleet::enroll(&server, 200);
    fleet.start("15s");
    let changes = Changes::start(&server, "failover");
    std::thread::sleep(Duration::from_secs(3));
    primary.stop();
    std::thread::sleep(Duration::from_secs(1));
    replica.promote();
    let back_ms = ward_proto::now_ms();
    let took = all_back(&agents, Duration::from_secs(60));
    fleet_came_back(&fleet.finish(), back_ms);
    eprintln!("every agent checked in again {took:?} after the replica was promoted");
    // Changes go on after the failover too.
    std::thread::sleep(Duration::from_secs(2));
    let acknowledged = changes.stop();
    eprintln!(
        "{} changes acknowledged before, during and after",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() >= 10,
        "few changes acknowledged: {acknowledged:?}"
    );
    assert!(
        server.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the server runs"
    );
    all_kept(&server, &acknowledged);
    // Read on the new primary itself, not through the server.
    let stored: i64 = replica
        .client()
        .query_one(
            "SELECT count(*) FROM groups WHERE name LIKE 'failover-%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(stored as usize >= acknowledged.len(), "{stored} stored");
}
