//! A small blocking HTTPS client for the admin API.
//!
//! On the server host it finds the console address, the CA and the local admin token in the
//! data dir. From elsewhere it uses what `ward login` saved: the server URL, the CA file and a
//! session token, in `$XDG_CONFIG_HOME/ward/login.json` (mode 0600).
//!
//! One request per connection (`Connection: close`), JSON in and out: every request and
//! answer is a ward-api type ([`AdminClient::send`]); a refusal comes back as an
//! [`ApiFailure`] with the API's code, its sentence and what a guard refused on (its plan).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ward_api::fleet::{LoginAnswer, LoginRequest};
use ward_server::DataDir;
use ward_tls::context::{build_connector, ClientTls, ServerVerification};

pub struct AdminClient {
    /// `host:port` to connect to.
    address: String,
    /// The name the server certificate must carry.
    host: String,
    /// The CA to trust; empty for the system's trust store.
    ca_pem: Vec<u8>,
    token: String,
}

/// A response: its status code and body, as received.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A request the admin API refused, or that did not reach it: the API's stable code (or
/// `unreachable`), its sentence, and (a guard's refusal) what it refused on.
#[derive(Debug)]
pub struct ApiFailure {
    /// 0 when there was no answer.
    pub status: u16,
    pub code: String,
    pub message: String,
    pub refusal: Option<Box<ward_api::Refusal>>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            0 => f.write_str(&self.message),
            status => write!(f, "{} ({status})", self.message),
        }
    }
}

impl From<ApiFailure> for String {
    fn from(failure: ApiFailure) -> String {
        failure.to_string()
    }
}

impl Reply {
    /// The typed answer on success; otherwise the server's refusal. An answer that cannot be
    /// read is an error, never an empty result.
    pub fn into_result<T: DeserializeOwned>(self) -> Result<T, ApiFailure> {
        if (200..300).contains(&self.status) {
            return serde_json::from_slice(&self.body).map_err(|e| ApiFailure {
                status: self.status,
                code: "unreadable".into(),
                message: format!(
                    "the server's answer ({}) could not be read: {e}",
                    self.status
                ),
                refusal: None,
            });
        }
        match serde_json::from_slice::<ward_api::Refusal>(&self.body) {
            Ok(refusal) => Err(ApiFailure {
                status: self.status,
                code: refusal.error.code.clone(),
                message: refusal.error.message.clone(),
                refusal: Some(Box::new(refusal)),
            }),
            Err(_) => Err(ApiFailure {
                status: self.status,
                code: "refused".into(),
                message: format!("the server answered {}", self.status),
                refusal: None,
            }),
        }
    }
}

impl ApiFailure {
    /// The plan a guard refused on, if it sent one.
    pub fn plan(&self) -> Option<&ward_api::tls::GuardPlan> {
        self.refusal.as_ref().and_then(|r| r.plan.as_ref())
    }
}

/// What `ward login` keeps: where, who, the session and the CA.
#[derive(Serialize, Deserialize)]
struct SavedLogin {
    server: String,
    user: String,
    token: String,
    expires: String,
    ca_pem: String,
}

/// `https://HOST[:PORT]` → (`HOST:PORT`, `HOST`); the console's port 8445 when none is given.
fn split_url(url: &str) -> Result<(String, String), String> {
    if !url.starts_with("https://") {
        return Err(format!("{url}: the console URL starts with https://"));
    }
    let with_port = format!("{}:8445", url.trim_end_matches('/'));
    let (_, host, port) = ward_agent::transport::split_url(url)
        .map(|(scheme, host, port)| (scheme.to_string(), host, port))
        .or_else(|_| {
            ward_agent::transport::split_url(&with_port)
                .map(|(scheme, host, port)| (scheme.to_string(), host, port))
        })?;
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok((address, host))
}

fn login_file() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("ward").join("login.json")
}

impl AdminClient {
    /// The client for the server whose data dir is `data`.
    pub fn local(data: &DataDir) -> Result<AdminClient, String> {
        // The address the running server really uses (flags may override ward.toml).
        let mut address = match ward_server::datadir::running_console(data) {
            Some(address) => address,
            None => {
                ward_server::config::load(&data.config())
                    .map_err(|e| e.to_string())?
                    .console
            }
        };
        // A listener on every address is reached through loopback.
        if address.ip().is_unspecified() {
            address.set_ip(match address.ip() {
                IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        // Every CA of the data dir (a rotation's next and previous too), so the console is
        // reachable at every step of a CA rotation.
        std::fs::metadata(data.ca_cert())
            .map_err(|e| format!("{}: {e}", data.ca_cert().display()))?;
        let ca_pem = data.known_cas_pem();
        let token = data
            .read_admin_token()
            .map_err(|e| format!("{}: {e}", data.admin_token().display()))?;
        // The server's own certificate always names localhost: the name to check on its host.
        Ok(AdminClient {
            address: address.to_string(),
            host: "localhost".into(),
            ca_pem,
            token,
        })
    }

    /// A client for another server of the same site, at `address` (`host:port`), whose
    /// certificate names `host`: the same CAs and credential. The servers of a site share
    /// the local admin token, and a `ward login` session lives in the site's database, so
    /// either works on every server.
    pub fn peer(&self, address: String, host: String) -> AdminClient {
        AdminClient {
            address,
            host,
            ca_pem: self.ca_pem.clone(),
            token: self.token.clone(),
        }
    }

    /// The host this client connects to (name or address, IPv6 without brackets).
    pub fn server_host(&self) -> String {
        let host = self
            .address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(host, _)| host);
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    }

    /// The name the server's certificate must carry (also the SNI to send it).
    pub fn server_name(&self) -> &str {
        &self.host
    }

    /// Removes the login `ward login` saved (nothing to do when there is none).
    pub fn forget_saved() -> Result<(), String> {
        let path = login_file();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// The client `ward login` saved.
    pub fn saved() -> Result<AdminClient, String> {
        let path = login_file();
        let text = std::fs::read_to_string(&path)
            .map_err(|_| "not logged in: run `ward login --server https://HOST:8445 --user NAME`, or use --data DIR on the server host".to_string())?;
        let saved: SavedLogin =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let (address, host) = split_url(&saved.server)?;
        Ok(AdminClient {
            address,
            host,
            ca_pem: saved.ca_pem.into_bytes(),
            token: saved.token,
        })
    }

    /// Logs in with a password and saves the session for later commands.
    pub fn login(
        url: &str,
        ca_pem: Vec<u8>,
        user: &str,
        password: &str,
    ) -> Result<LoginAnswer, String> {
        let (address, host) = split_url(url)?;
        let client = AdminClient {
            address,
            host,
            ca_pem,
            token: String::new(),
        };
        let answer: LoginAnswer = client.send(
            "POST",
            "/api/v1/login",
            Some(&LoginRequest {
                user: user.to_string(),
                password: password.to_string(),
            }),
        )?;
        let saved = SavedLogin {
            server: url.to_string(),
            user: user.to_string(),
            token: answer.token.clone(),
            expires: answer.expires.clone(),
            ca_pem: String::from_utf8_lossy(&client.ca_pem).into_owned(),
        };
        let text = serde_json::to_string(&saved).map_err(|e| e.to_string())?;
        let path = login_file();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        ward_fs::write(&path, text.as_bytes(), 0o600)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(answer)
    }

    /// One request; `body` is sent as JSON.
    pub fn request<B: Serialize>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<Reply, String> {
        let unreachable = |e: &dyn std::fmt::Display| {
            format!(
                "cannot reach the server's console listener at {}: {e} (is `ward server` running?)",
                self.address
            )
        };
        let connector = build_connector(&ClientTls {
            min: None,
            max: None,
            verification: if self.ca_pem.is_empty() {
                ServerVerification::System
            } else {
                ServerVerification::Ca(self.ca_pem.clone())
            },
            cipher_list: None,
        })
        .map_err(|e| e.to_string())?;
        let address = self
            .address
            .to_socket_addrs()
            .map_err(|e| unreachable(&e))?
            .next()
            .ok_or_else(|| unreachable(&"no address"))?;
        let tcp = TcpStream::connect_timeout(&address, Duration::from_secs(10))
            .map_err(|e| unreachable(&e))?;
        tcp.set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(|e| e.to_string())?;
        let mut tls = connector
            .connect(&self.host, tcp)
            .map_err(|e| unreachable(&e))?;
        let body = match body {
            Some(body) => serde_json::to_string(body).map_err(|e| e.to_string())?,
            None => String::new(),
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host,
            self.token,
            body.len()
        );
        tls.write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        match tls.read_to_end(&mut response) {
            Ok(_) => {}
            // A peer that closes without close_notify still sent a whole response.
            Err(_) if !response.is_empty() => {}
            Err(e) => return Err(format!("reading the response: {e}")),
        }
        parse_response(&response)
    }

    /// A request whose failure is the command's failure: the typed answer, or the refusal
    /// with the API's code.
    pub fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ApiFailure> {
        self.request(method, path, body)
            .map_err(|message| ApiFailure {
                status: 0,
                code: "unreachable".into(),
                message,
                refusal: None,
            })?
            .into_result()
    }

    /// A GET of a typed answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        self.send::<(), T>("GET", path, None)
    }

    /// A POST (or another method) with a typed body.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiFailure> {
        self.send("POST", path, Some(body))
    }
}

fn parse_response(bytes: &[u8]) -> Result<Reply, String> {
    let exchange = ward_agent::transport::parse_response(bytes)
        .ok_or_else(|| "malformed HTTP response from the server".to_string())?;
    Ok(Reply {
        status: exchange.status,
        body: exchange.body,
    })
}

/// Percent-encodes one path segment (a server list name may hold spaces).
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("https://mgr1:8445").unwrap(),
            ("mgr1:8445".into(), "mgr1".into())
        );
        assert_eq!(
            split_url("https://mgr1").unwrap(),
            ("mgr1:8445".into(), "mgr1".into())
        );
        assert_eq!(
            split_url("https://[::1]:9/").unwrap(),
            ("[::1]:9".into(), "::1".into())
        );
        assert!(split_url("http://mgr1:8445").is_err());
        assert_eq!(
            segment("Default (HTTP 8014)"),
            "Default%20%28HTTP%208014%29"
        );
    }
}
