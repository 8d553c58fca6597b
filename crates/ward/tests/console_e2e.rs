//! The web console in a real browser: Debian's headless Chromium driven through
//! chromedriver (WebDriver), against a real server with real agent processes. Logs in, reads
//! the dashboard and the agents, creates a group and moves an agent into it, and checks what
//! must be refused: no session, a forged form, an auditor's change, a disabled account's
//! session. No page may log a JavaScript error.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use ward_testkit::webdriver::Browser;

const PASSWORD: &str = "correct horse battery staple";

fn account(server: &Server, name: &str, role: &str) {
    let mut child = Command::new(ward_bin())
        .args([
            "account",
            "--data",
            &server.data_str(),
            "create",
            name,
            "--role",
            role,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "account create {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn log_in(browser: &Browser, base: &str, user: &str) {
    browser.goto(&format!("{base}/login"));
    browser.fill(&browser.find("#user"), user);
    browser.fill(&browser.find("#password"), PASSWORD);
    browser.click(&browser.find("#login"));
    assert!(
        browser.until(Duration::from_secs(10), |b| !b.url().contains("/login")),
        "{user} was not logged in: {}",
        browser.source()
    );
}

/// A POST sent from the page by script, as a forged or hand-made form would be; its status and
/// body.
fn post_from_page(browser: &Browser, path: &str, body: &str) -> (u64, String) {
    let answer = browser.execute(
        "const r = await fetch(arguments[0], {method: 'POST', body: arguments[1], \
         headers: {'Content-Type': 'application/x-www-form-urlencoded'}, redirect: 'manual'}); \
         return {status: r.status, body: await r.text()};",
        json!([path, body]),
    );
    (
        answer["status"].as_u64().unwrap_or(0),
        answer["body"].as_str().unwrap_or("").to_string(),
    )
}

fn csrf(browser: &Browser) -> String {
    browser
        .execute(
            "return document.querySelector('input[name=csrf]').value;",
            json!([]),
        )
        .as_str()
        .unwrap()
        .to_string()
}

/// The page shown has no serious or critical accessibility violation (axe-core), and every
/// page visited so far logged no error to the browser's console.
fn no_errors(browser: &Browser, page: &str) {
    let violations = browser.accessibility_violations();
    assert!(
        violations.is_empty(),
        "{page} ({}): accessibility: {violations:#?}",
        browser.url()
    );
    let errors: Vec<Value> = browser
        .console_log()
        .into_iter()
        .filter(|entry| entry["level"] == "SEVERE")
        // A page answered 403 or 422 on purpose shows up as a failed resource load.
        .filter(|entry| {
            !entry["message"]
                .as_str()
                .unwrap_or("")
                .contains("the server responded with a status of")
        })
        .collect();
    assert!(errors.is_empty(), "{page}: JavaScript errors: {errors:?}");
}

/// Sends a signal to an agent process (`STOP` pauses it, `CONT` lets it go on).
fn signal(agent: &Agent, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &agent.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

fn group_paths(server: &Server) -> Vec<String> {
    cli(server, &["group", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["path"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn an_admin_and_an_auditor_use_the_console_in_a_real_browser() {
    let server = fast_server();
    account(&server, "alice", "admin");
    account(&server, "audra", "auditor");
    let modern = https_agent(&server);
    let url = format!("https://127.0.0.1:{}", server.clients);
    let token = group_token(&server, "My Company", false);
    let capped = run_agent(
        enroll(&server, &url, &token, Some("TLSv1.2")),
        Some("TLSv1.2"),
    );
    let base = format!("https://127.0.0.1:{}", server.console);
    let browser = Browser::start();
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    // Without a session every page sends the browser to the login page, and back after it.
    browser.goto(&format!("{base}/agents"));
    assert!(
        browser.url().contains("/login?next=%2Fagents"),
        "{}",
        browser.url()
    );
    // The local admin token is no login; nor is a wrong password.
    browser.fill(&browser.find("#user"), "alice");
    browser.fill(&browser.find("#password"), "wrong password");
    browser.click(&browser.find("#login"));
    assert!(browser.until(Duration::from_secs(10), |b| b
        .find_all("#login-error")
        .len()
        == 1));
    no_errors(&browser, "login");
    log_in(&browser, &base, "alice");

    // The dashboard: both agents, by the version each really negotiated.
    browser.goto(&format!("{base}/"));
    // Read until it is there: once in a full test run under load, chromedriver gave an empty
    // page source for a page it had just loaded (the test then failed with nothing to show).
    let mut dashboard = String::new();
    let shown = browser.until(Duration::from_secs(10), |b| {
        dashboard = b.source();
        dashboard.contains("clients · TLSv1.3: 1") && dashboard.contains("clients · TLSv1.2: 1")
    });
    assert!(shown, "both agents by their version, on: {dashboard:?}");
    assert_eq!(browser.text(&browser.find("#agents-total .figure")), "2");
    browser.screenshot(&shots.join("console-dashboard.png"));
    no_errors(&browser, "dashboard");

    // Find an agent by a part of its id, and open its page.
    let id = capped.id();
    browser.goto(&format!("{base}/agents?q={}", &id[..10]));
    assert!(browser
        .text(&browser.find("#agents-count"))
        .starts_with("1 agents"));
    browser.goto(&format!("{base}/agents"));
    assert!(browser.source().contains(&modern.id()));
    browser.screenshot(&shots.join("console-agents.png"));
    no_errors(&browser, "agents list");
    browser.goto(&format!("{base}/agents/{id}"));
    let page = browser.source();
    assert!(page.contains("TLSv1.2"), "{page}");
    assert!(page.contains("The ClientHello it offered"), "{page}");
    no_errors(&browser, "agents");
    // A handshake refused from the agent's address shows on its page.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.clients)).unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    drop(stream);
    assert!(
        browser.until(Duration::from_secs(30), |b| {
            b.goto(&format!("{base}/agents/{id}"));
            !b.find_all("#agent-refused").is_empty()
        }),
        "{}",
        browser.source()
    );
    assert!(browser
        .text(&browser.find("#agent-refused"))
        .contains("clients"));
    no_errors(&browser, "agent with refusals");

    // Create a group; a second one of the same name is refused next to the field.
    browser.goto(&format!("{base}/groups"));
    browser.fill(&browser.find("#group-name"), "Branch");
    browser.click(&browser.find("#create-group"));
    assert!(browser.until(Duration::from_secs(10), |b| b.url().contains("created=")));
    assert!(group_paths(&server).contains(&"My Company/Branch".to_string()));
    browser.fill(&browser.find("#group-name"), "Branch");
    browser.click(&browser.find("#create-group"));
    assert!(browser.until(Duration::from_secs(10), |b| !b
        .find_all("#name-error")
        .is_empty()));
    assert!(browser
        .text(&browser.find("#name-error"))
        .contains("already exists"));

    // Move the capped agent into it, through the guarded operation.
    browser.goto(&format!("{base}/agents"));
    browser.click(&browser.find(&format!("input[name=id][value='{id}']")));
    browser.click(&browser.find("#move-group option[value='My Company/Branch']"));
    browser.click(&browser.find("#move"));
    assert!(browser.until(Duration::from_secs(10), |b| !b
        .find_all("#moved")
        .is_empty()));
    let shown = cli(&server, &["client", "show", &id]);
    assert_eq!(shown["group"], "My Company/Branch", "{shown}");
    no_errors(&browser, "groups and move");

    // A plan from the form: TLS 1.3 only on the clients listener cuts off the agent capped at
    // TLS 1.2 (its real ClientHello replayed), and names it; a bad word is refused, in words.
    browser.goto(&format!("{base}/tls"));
    browser.fill(&browser.find("#protocol"), "-all +TLSv1.3");
    browser.click(&browser.find("#listener option[value=clients]"));
    browser.click(&browser.find("#plan"));
    assert!(browser.until(Duration::from_secs(20), |b| !b
        .find_all("#verdict")
        .is_empty()));
    assert!(
        !browser.find_all("#plan-not-ok").is_empty(),
        "{}",
        browser.source()
    );
    let cut_off = browser.text(&browser.find("#plan-cut-off"));
    assert!(cut_off.contains(&id), "{cut_off}");
    assert!(!cut_off.contains(&modern.id()), "{cut_off}");
    browser.screenshot(&shots.join("console-plan.png"));
    no_errors(&browser, "plan verdict");
    browser.goto(&format!("{base}/tls?protocol=TLSv1.0"));
    assert!(browser.source().contains("TLSv1.0"), "{}", browser.source());
    assert!(browser.find_all("#verdict").is_empty());
    // A certificate pair that is not there is refused, naming the file.
    browser.goto(&format!(
        "{base}/tls?certificate=%2Fnonexistent%2Fcert.pem&key=%2Fnonexistent%2Fkey.pem&listener=clients"
    ));
    assert!(browser.find_all("#verdict").is_empty());
    let refusals: Vec<String> = browser
        .find_all("[role=alert]")
        .iter()
        .map(|e| browser.text(e))
        .collect();
    assert!(
        refusals.iter().any(|r| r.contains("/nonexistent/cert.pem")),
        "{refusals:?}"
    );
    no_errors(&browser, "plan");

    // The harden wizard, from the plan to done, with the real agents: TLS 1.3 only on the
    // clients listener. The capped agent is paused, so the wait step has someone to wait for.
    let clients_conf = server.path("conf/ssl/sslforclients.conf");
    let before = std::fs::read_to_string(&clients_conf).unwrap();
    browser.goto(&format!(
        "{base}/tls?protocol=-all+%2BTLSv1.3&listener=clients"
    ));
    browser.click(&browser.find("#harden-this"));
    assert!(browser.until(Duration::from_secs(20), |b| !b
        .find_all("#harden-confirm")
        .is_empty()));
    assert!(browser.text(&browser.find("#plan-cut-off")).contains(&id));
    no_errors(&browser, "harden review");
    signal(&capped, "STOP");
    browser.click(&browser.find("#harden-start"));
    assert!(
        browser.until(Duration::from_secs(20), |b| !b
            .find_all("#harden-waiting")
            .is_empty()),
        "{}",
        browser.source()
    );
    let pending = browser.text(&browser.find("#progress"));
    assert!(pending.contains(&id), "{pending}");
    assert!(!pending.contains(&modern.id()), "{pending}");
    browser.screenshot(&shots.join("console-harden.png"));
    no_errors(&browser, "harden wait");
    // The page follows by itself: once the agent runs again and acknowledges, the apply button
    // appears in the same page (no reload: the mark set on it stays).
    browser.execute("window.wardMark = 'same page'; return null;", json!([]));
    signal(&capped, "CONT");
    assert!(
        browser.until(Duration::from_secs(60), |b| !b
            .find_all("#harden-apply")
            .is_empty()),
        "{}",
        browser.source()
    );
    assert_eq!(
        browser.execute("return window.wardMark || null;", json!([])),
        json!("same page")
    );
    assert_eq!(
        cli(&server, &["client", "show", &id])["group"],
        "My Company/Branch/Legacy TLS"
    );
    browser.click(&browser.find("#harden-apply"));
    assert!(
        browser.until(Duration::from_secs(30), |b| !b
            .find_all("#verify")
            .is_empty()),
        "{}",
        browser.source()
    );
    let verify = browser.text(&browser.find("#verify"));
    // Both listeners answer as their files say (the clients one now TLS 1.3 only).
    assert_eq!(verify.matches("as planned").count(), 2, "{verify}");
    assert!(!verify.contains("differs"), "{verify}");
    let hardened = std::fs::read_to_string(&clients_conf).unwrap();
    assert!(hardened.contains("SSLProtocol -all +TLSv1.3"), "{hardened}");
    // Both agents come back after the change: the capped one on the plain-HTTP listener.
    assert!(
        browser.until(Duration::from_secs(60), |b| !b
            .find_all("#all-back")
            .is_empty()),
        "{}",
        browser.source()
    );
    no_errors(&browser, "harden done");
    // Roll back, moving the agent back where it was.
    browser.click(&browser.find("#move_back"));
    browser.click(&browser.find("#rollback"));
    assert!(
        browser.until(Duration::from_secs(30), |b| !b
            .find_all("#rolled-back")
            .is_empty()),
        "{}",
        browser.source()
    );
    assert_eq!(std::fs::read_to_string(&clients_conf).unwrap(), before);
    assert_eq!(
        cli(&server, &["client", "show", &id])["group"],
        "My Company/Branch"
    );
    no_errors(&browser, "rollback");

    // The TLS page: each listener as it runs, and the fleet by stack.
    browser.goto(&format!("{base}/tls"));
    let listeners = browser.text(&browser.find("#listeners"));
    assert!(listeners.contains("sslforclients.conf"), "{listeners}");
    assert!(!browser.find_all("#stacks").is_empty());
    no_errors(&browser, "TLS overview");

    // A group's own page: a bad interval is refused next to its field; a good one is saved.
    browser.goto(&format!("{base}/groups"));
    browser.click(&browser.find("a[aria-label='Open My Company/Branch']"));
    assert!(browser.until(Duration::from_secs(10), |b| !b
        .find_all("#group-form")
        .is_empty()));
    browser.fill(&browser.find("#interval"), "soon");
    browser.click(&browser.find("#save-group"));
    assert!(
        browser.until(Duration::from_secs(10), |b| !b
            .find_all("#interval-error")
            .is_empty()),
        "{}",
        browser.source()
    );
    no_errors(&browser, "group refusal");
    browser.fill(&browser.find("#interval"), "2s");
    browser.click(&browser.find("#save-group"));
    assert!(browser.until(Duration::from_secs(10), |b| !b
        .find_all("#group-done")
        .is_empty()));
    let shown = cli(&server, &["group", "show", "My Company/Branch"]);
    assert_eq!(shown["own"]["interval"], "2s", "{shown}");
    no_errors(&browser, "group");

    // Server lists: a new list, a refused entry next to its field, the seed's copy to HTTP.
    browser.goto(&format!("{base}/serverlists"));
    browser.fill(&browser.find("#list-name"), "Extra");
    browser.fill(&browser.find("#list-servers"), "1:nonsense");
    browser.click(&browser.find("#create-list"));
    assert!(
        browser.until(Duration::from_secs(10), |b| !b
            .find_all("#create-servers-error")
            .is_empty()),
        "{}",
        browser.source()
    );
    browser.fill(
        &browser.find("#list-servers"),
        "1:https://mgr9:443\n2:https://mgr8:443",
    );
    browser.click(&browser.find("#create-list"));
    assert!(browser.until(Duration::from_secs(10), |b| !b
        .find_all("#list-done")
        .is_empty()));
    browser.click(&browser.find("#copy-from option[value='Extra']"));
    browser.fill(&browser.find("#copy-name"), "Extra-http");
    browser.click(&browser.find("#copy"));
    assert!(browser.until(Duration::from_secs(10), |b| b
        .source()
        .contains("Copied to Extra-http")));
    let copy = cli(&server, &["serverlist", "show", "Extra-http"]);
    assert_eq!(copy["servers"][0]["url"], "http://mgr9:8014", "{copy}");
    assert_eq!(copy["servers"].as_array().unwrap().len(), 2, "{copy}");
    // A list's servers edited in place (through the guard).
    browser.click(&browser.find("details.edit-list:has(#edit-Extra) > summary"));
    browser.fill(&browser.find("#servers-Extra"), "1:https://mgr7:443");
    browser.click(&browser.find("#save-Extra"));
    assert!(browser.until(Duration::from_secs(10), |b| b
        .source()
        .contains("Saved Extra:")));
    let edited = cli(&server, &["serverlist", "show", "Extra"]);
    assert_eq!(edited["servers"][0]["url"], "https://mgr7:443", "{edited}");
    assert_eq!(edited["servers"].as_array().unwrap().len(), 1, "{edited}");
    no_errors(&browser, "server lists");

    // Accounts: made and disabled from the console; a reserved name is refused, in words.
    browser.goto(&format!("{base}/accounts"));
    browser.fill(&browser.find("#account-name"), "local-admin");
    browser.fill(&browser.find("#account-password"), PASSWORD);
    browser.click(&browser.find("#create-account"));
    assert!(browser.until(Duration::from_secs(20), |b| b
        .find_all("[role=alert]")
        .iter()
        .any(|alert| b.text(alert).contains("local-admin"))));
    assert!(!cli(&server, &["account", "list"])
        .to_string()
        .contains("local-admin"));
    no_errors(&browser, "accounts refusal");
    browser.fill(&browser.find("#account-name"), "carol");
    browser.fill(&browser.find("#account-password"), PASSWORD);
    browser.click(&browser.find("#create-account"));
    assert!(browser.until(Duration::from_secs(20), |b| !b
        .find_all("#account-done")
        .is_empty()));
    browser.click(&browser.find("#disable-carol"));
    assert!(browser.until(Duration::from_secs(10), |b| !b
        .find_all("#enable-carol")
        .is_empty()));
    let carol = cli(&server, &["account", "list"])
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "carol")
        .cloned()
        .unwrap();
    assert_eq!(
        (carol["role"].as_str(), carol["disabled"].as_bool()),
        (Some("auditor"), Some(true))
    );
    no_errors(&browser, "accounts");

    // Rotations: a key rotation started and aborted from the console.
    browser.goto(&format!("{base}/tls/rotations"));
    assert!(browser
        .text(&browser.find("#key-state"))
        .contains("No rotation"));
    no_errors(&browser, "rotations");
    browser.click(&browser.find("#key-rotate"));
    assert!(browser.until(Duration::from_secs(20), |b| !b
        .find_all("#rotation-done")
        .is_empty()));
    assert!(browser
        .text(&browser.find("#key-state"))
        .contains("under way"));
    assert!(!browser.find_all("#key-ack").is_empty());
    browser.click(&browser.find("#key-abort"));
    assert!(
        browser.until(Duration::from_secs(20), |b| b
            .source()
            .contains("The key rotation was aborted")),
        "{}",
        browser.source()
    );
    no_errors(&browser, "rotation steps");

    // A form without the session's CSRF token changes nothing, even from the console's origin.
    browser.goto(&format!("{base}/groups"));
    let (status, _) = post_from_page(&browser, "/groups", "name=Forged");
    assert_eq!(status, 403);
    let (status, _) = post_from_page(&browser, "/groups", "name=Forged&csrf=0000");
    assert_eq!(status, 403);
    assert!(!group_paths(&server).iter().any(|p| p.ends_with("Forged")));

    // Logging out ends the session.
    browser.click(&browser.find("#logout"));
    assert!(browser.until(Duration::from_secs(10), |b| b.url().contains("/login")));
    browser.goto(&format!("{base}/groups"));
    assert!(browser.url().contains("/login"), "{}", browser.url());

    // An auditor sees everything, is shown no write control, and is refused if it sends one.
    log_in(&browser, &base, "audra");
    browser.goto(&format!("{base}/groups"));
    assert!(browser.find_all("#new-group").is_empty());
    assert!(browser.source().contains("Branch"));
    browser.goto(&format!("{base}/agents"));
    assert!(browser.find_all("#move").is_empty());
    assert!(browser.find_all("input[name=id]").is_empty());
    let token = csrf(&browser);
    let (status, body) =
        post_from_page(&browser, "/groups", &format!("name=ByAuditor&csrf={token}"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Auditors read"), "{body}");
    assert!(!group_paths(&server)
        .iter()
        .any(|p| p.ends_with("ByAuditor")));
    browser.goto(&format!(
        "{base}/tls/harden?protocol=-all+%2BTLSv1.3&listener=clients"
    ));
    assert!(!browser.find_all("#verdict").is_empty());
    assert!(browser.find_all("#harden-confirm").is_empty());
    let (status, _) = post_from_page(
        &browser,
        "/tls/harden/stage",
        &format!("protocol=TLSv1.3&listener=clients&csrf={token}"),
    );
    assert_eq!(status, 403);
    assert_eq!(std::fs::read_to_string(&clients_conf).unwrap(), before);
    assert_eq!(
        cli(&server, &["client", "show", &id])["group"],
        "My Company/Branch"
    );
    browser.goto(&format!("{base}/audit"));
    assert!(browser.source().contains("group.create"));
    no_errors(&browser, "auditor");

    // Disabling the account ends its session at once.
    cli(&server, &["account", "disable", "audra"]);
    browser.goto(&format!("{base}/audit"));
    assert!(browser.url().contains("/login"), "{}", browser.url());
}
