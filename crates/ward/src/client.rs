//! A small blocking HTTPS client for the admin API, for the CLI on the server host: it finds
//! the console address, the CA and the local admin token in the data dir.
//!
//! One request per connection (`Connection: close`), JSON in and out.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use ward_server::DataDir;
use ward_tls::context::{build_connector, ClientTls, ServerVerification};

pub struct AdminClient {
    address: SocketAddr,
    ca_pem: Vec<u8>,
    token: String,
}

/// A response: status code and JSON body (`Value::Null` when the body is not JSON).
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl AdminClient {
    /// The client for the server whose data dir is `data`.
    pub fn local(data: &DataDir) -> Result<AdminClient, String> {
        // The address the running server really uses (flags may override ward.toml).
        let mut address = match ward_server::server::running_console(data) {
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
        let ca_pem = std::fs::read(data.ca_cert())
            .map_err(|e| format!("{}: {e}", data.ca_cert().display()))?;
        let token = data
            .read_admin_token()
            .map_err(|e| format!("{}: {e}", data.admin_token().display()))?;
        Ok(AdminClient {
            address,
            ca_pem,
            token,
        })
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply, String> {
        let unreachable = |e: &dyn std::fmt::Display| {
            format!(
                "cannot reach the server's console listener at {}: {e} (is `ward server` running?)",
                self.address
            )
        };
        let connector = build_connector(&ClientTls {
            min: None,
            max: None,
            verification: ServerVerification::Ca(self.ca_pem.clone()),
            cipher_list: None,
        })
        .map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect_timeout(&self.address, Duration::from_secs(10))
            .map_err(|e| unreachable(&e))?;
        tcp.set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(|e| e.to_string())?;
        // The server's own certificate always names localhost; on the server host that is the
        // name to check, whatever address the console listens on.
        let host = "localhost".to_string();
        let mut tls = connector.connect(&host, tcp).map_err(|e| unreachable(&e))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
}

fn parse_response(bytes: &[u8]) -> Result<Reply, String> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "malformed HTTP response from the server".to_string())?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "malformed HTTP status line from the server".to_string())?;
    Ok(Reply {
        status,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    })
}
