//! A real browser for the console's tests: Debian's `chromium`, headless, driven through
//! `chromedriver` (W3C WebDriver) by a small blocking client over loopback HTTP. The browser
//! gets a fresh profile and the flags that keep it off the (closed) network; the driver and the
//! browser are stopped when the [`Browser`] is dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The key W3C WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    /// The browser's profile dir: named on its command line, so a browser its driver left
    /// behind (a test that panicked mid-command) can be found and stopped.
    user_data: std::path::PathBuf,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session at
    /// 1280x800 that accepts the test server's self-signed certificate.
    pub fn start() -> Browser {
        let driver_path = crate::tool("chromedriver", "chromium-driver");
        let chromium = crate::tool("chromium", "chromium");
        let profile = tempfile::tempdir().expect("a browser profile dir");
        let port = crate::free_port();
        let log = std::fs::File::create(profile.path().join("chromedriver.log"))
            .expect("chromedriver's log");
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("cannot start chromedriver");
        assert!(
            crate::wait_for_port(port, Duration::from_secs(20)),
            "chromedriver did not listen on {port}"
        );
        let user_data = profile.path().join("profile");
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            user_data: user_data.clone(),
            _profile: profile,
        };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    "--window-size=1280,800",
                    format!("--user-data-dir={}", user_data.display()),
                ],
            },
        }}});
        let answer = browser.call("POST", "/session", Some(capabilities));
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_string();
        browser
    }

    /// One WebDriver command; its `value`. A WebDriver error panics with its message.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("chromedriver");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .expect("a request to chromedriver");
        let payload = read_answer(&mut stream);
        let value: Value = serde_json::from_str(&payload)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {payload}"));
        let value = value["value"].clone();
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            panic!(
                "WebDriver {method} {path}: {error}: {}",
                value["message"].as_str().unwrap_or("")
            );
        }
        value
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({"url": url})),
        );
    }

    pub fn url(&self) -> String {
        self.call("GET", &self.session_path("/url"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's HTML as the browser has it now.
    pub fn source(&self) -> String {
        self.call("GET", &self.session_path("/source"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn title(&self) -> String {
        self.call("GET", &self.session_path("/title"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The elements a CSS selector matches.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self.call(
            "POST",
            &self.session_path("/elements"),
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .map(|elements| {
                elements
                    .iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(|id| Element(id.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element a CSS selector matches (a panic naming the selector when none does).
    pub fn find(&self, css: &str) -> Element {
        self.find_all(css).into_iter().next().unwrap_or_else(|| {
            panic!(
                "no element matches {css:?} on {}:\n{}",
                self.url(),
                self.source()
            )
        })
    }

    pub fn click(&self, element: &Element) {
        self.call(
            "POST",
            &self.session_path(&format!("/element/{}/click", element.0)),
            Some(json!({})),
        );
    }

    /// Types into a field (after clearing it).
    pub fn fill(&self, element: &Element, text: &str) {
        let path = self.session_path(&format!("/element/{}", element.0));
        self.call("POST", &format!("{path}/clear"), Some(json!({})));
        self.call(
            "POST",
            &format!("{path}/value"),
            Some(json!({"text": text})),
        );
    }

    pub fn text(&self, element: &Element) -> String {
        self.call(
            "GET",
            &self.session_path(&format!("/element/{}/text", element.0)),
            None,
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Runs a script in the page (`arguments` as given); its result. An `async` script's
    /// promise is awaited by the browser.
    pub fn execute(&self, script: &str, arguments: Value) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/async"),
            Some(json!({
                "script": format!(
                    "const done = arguments[arguments.length - 1];\
                     Promise.resolve((async function() {{ {script} }}).apply(null, \
                     Array.prototype.slice.call(arguments, 0, -1))).then(done, \
                     e => done({{__error: String(e)}}));"
                ),
                "args": arguments,
            })),
        )
    }

    /// The browser's console log since the last call (entries with `level` and `message`).
    pub fn console_log(&self) -> Vec<Value> {
        self.call(
            "POST",
            &self.session_path("/se/log"),
            Some(json!({"type": "browser"})),
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
    }

    /// axe-core's serious and critical accessibility violations on the page shown now, one line
    /// each (the rule, its help, the elements). axe-core is the pinned copy `scripts/test`
    /// installs from npm into `target/axe`.
    pub fn accessibility_violations(&self) -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/axe/node_modules/axe-core/axe.min.js");
        let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run scripts/test, which installs axe-core (pinned) from npm",
                path.display()
            )
        });
        let found = self.execute(
            "(0, eval)(arguments[0]); \
             const results = await window.axe.run(document, {resultTypes: ['violations']}); \
             return results.violations \
               .filter(v => v.impact === 'serious' || v.impact === 'critical') \
               .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' (' + \
                    v.nodes.map(n => n.target.join(' ')).join(', ') + ')');",
            json!([source]),
        );
        if let Some(error) = found.get("__error") {
            panic!("axe-core did not run: {error}");
        }
        found
            .as_array()
            .map(|lines| {
                lines
                    .iter()
                    .filter_map(|l| l.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let encoded = self.call("GET", &self.session_path("/screenshot"), None);
        let encoded = encoded.as_str().expect("a base64 screenshot");
        let png = openssl::base64::decode_block(encoded).expect("base64");
        std::fs::write(path, png).expect("the screenshot file");
    }

    /// Waits (at most `bound`) until `check` holds.
    pub fn until(&self, bound: Duration, mut check: impl FnMut(&Browser) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < bound {
            if check(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

/// One HTTP answer's body: by its `Content-Length`, or its chunks (chromedriver may keep the
/// connection open, so nothing is read past the answer).
fn read_answer(stream: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16384];
    let head_end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut buffer).expect("chromedriver's answer");
        assert!(n > 0, "chromedriver closed before its answer's head");
        raw.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &raw[head_end..];
        let complete = match length {
            Some(length) => body.len() >= length,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let n = stream.read(&mut buffer).expect("chromedriver's answer");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buffer[..n]);
    }
    let body = String::from_utf8_lossy(&raw[head_end..]).to_string();
    if chunked {
        dechunk(&body)
    } else {
        body
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.call("DELETE", &path, None)
            }));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Whatever of the browser outlived its driver.
        let _ = Command::new("pkill")
            .arg("-KILL")
            .args(["-f", "--"])
            .arg(format!("--user-data-dir={}", self.user_data.display()))
            .status();
    }
}
