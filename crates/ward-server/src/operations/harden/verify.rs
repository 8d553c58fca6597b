//! `GET /tls/verify`: the last step of a harden, from the server's side. Each HTTPS listener
//! is scanned (one real handshake per version, through ward-tls's scanner) at an address the
//! server reaches itself, and what it accepts is compared with what its file enables. The
//! CLI scans from where it runs; the console asks this.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ward_api::tls::{Verified, VerifiedListener};
use ward_tls::scan::{self, ScanConfig};

use crate::api::{blocking, ApiError};
use crate::config::Role;
use crate::state::App;

/// Each probe's bound: a listener that does not answer in this time is reported, not waited
/// for.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the server reaches its own listener bound to `bound`: a listener on every address is
/// reached on loopback.
pub fn reach(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bound.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bound.port())
        }
        _ => bound,
    }
}

pub async fn verify(shared: &App) -> Result<Verified, ApiError> {
    let targets: Vec<(&'static str, SocketAddr, Vec<String>)> =
        [("console", Role::Console), ("clients", Role::Clients)]
            .into_iter()
            .map(|(name, role)| {
                let enabled = shared
                    .tls
                    .current(role)
                    .policy
                    .protocol
                    .range
                    .versions()
                    .map(|v| v.name().to_string())
                    .collect();
                (name, reach(shared.config.address(role)), enabled)
            })
            .collect();
    blocking(move || {
        let config = ScanConfig {
            timeout: PROBE_TIMEOUT,
            server_name: None,
        };
        let mut listeners = Vec::new();
        for (name, address, enabled) in targets {
            let report = scan::scan(&address.to_string(), &config).map_err(|e| {
                ApiError::internal(format!("verify: scanning {name} at {address}: {e}"))
            })?;
            let accepted: Vec<String> = report.accepted().map(|p| p.name().to_string()).collect();
            listeners.push(VerifiedListener {
                listener: name.into(),
                address: address.to_string(),
                ok: ward_api::harden::as_planned(&accepted, &enabled),
                accepted,
                enabled,
            });
        }
        Ok(Verified { listeners })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_on_every_address_is_reached_on_loopback() {
        for (bound, reached) in [
            ("0.0.0.0:443", "127.0.0.1:443"),
            ("[::]:8445", "[::1]:8445"),
            ("127.0.0.2:8445", "127.0.0.2:8445"),
            ("[::1]:443", "[::1]:443"),
            ("192.0.2.7:443", "192.0.2.7:443"),
        ] {
            assert_eq!(
                reach(bound.parse().unwrap()).to_string(),
                reached,
                "{bound}"
            );
        }
    }
}
