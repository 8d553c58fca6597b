//! ward-agent: the managed client of the seed (its `smc`).
//!
//! - [`core`]: the check-in state machine, sans I/O (server order, push holds, back-off,
//!   Retry-After), shared by `ward agent run` and `ward simulate`.
//! - [`select`]: which server to try next, and the back-off (pure).
//! - [`requests`]: signed requests and checked answers, built from ward-proto's messages
//!   (pure).
//! - [`state`]: the settings file, written atomically.
//! - [`transport`]: one HTTP(S) exchange, with the TLS cap and session resumption.
//! - [`enroll`]: enrollment and the settings-package import.
//! - [`run`]: the run loop that drives the core with blocking sockets.
//! - [`control`]: one agent per state dir (a lock) and its control socket.
//! - [`error`]: why an exchange or the agent's own state failed, by source.

pub mod control;
pub mod core;
pub mod enroll;
pub mod error;
pub mod requests;
pub mod run;
pub mod select;
pub mod state;
pub mod transport;

use ward_tls::profile::ClientProfile;
use ward_tls::TlsVersion;

pub use control::{control, socket_path, RunLock};
pub use enroll::{enroll, import_settings, read_package, EnrollOptions, Trust};
pub use error::AgentError;
pub use run::{run, RunConfig, Status, Stopper};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the agent offers in TLS: a real stack's profile (`--client-profile xp-ie8`), or
/// ward's own offer, capped at a version (`--tls-max TLSv1`), or neither.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    pub profile: Option<&'static ClientProfile>,
    pub tls_max: Option<TlsVersion>,
}

impl Offer {
    pub fn capped(tls_max: Option<TlsVersion>) -> Offer {
        Offer {
            profile: None,
            tls_max,
        }
    }

    /// The offer from what a settings file keeps (names that no longer parse are dropped).
    pub fn from_names(profile: Option<&str>, tls_max: Option<&str>) -> Offer {
        Offer {
            profile: profile.and_then(ward_tls::profile::client_profile),
            tls_max: tls_max.and_then(TlsVersion::parse_loose),
        }
    }

    pub fn is_default(&self) -> bool {
        self.profile.is_none() && self.tls_max.is_none()
    }

    /// This offer, or `other` when this one says nothing.
    pub fn or(self, other: Offer) -> Offer {
        if self.is_default() {
            other
        } else {
            self
        }
    }

    /// The TLS versions it can speak, lowest first.
    pub fn versions(&self) -> Vec<String> {
        match self.profile {
            Some(profile) => profile.versions().map(|v| v.name().to_string()).collect(),
            None => speakable(self.tls_max),
        }
    }

    /// The highest version it offers, when capped.
    pub fn max(&self) -> Option<TlsVersion> {
        self.profile.map(|p| p.max).or(self.tls_max)
    }
}

/// The TLS versions an agent capped at `max` can speak.
pub fn speakable(max: Option<TlsVersion>) -> Vec<String> {
    TlsVersion::ALL
        .into_iter()
        .filter(|v| max.is_none_or(|m| *v <= m))
        .map(|v| v.name().to_string())
        .collect()
}

/// What an agent says of its host at enrollment and check-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    /// The name shown in the agent list, when not the host name.
    pub name: Option<String>,
    /// A simulated agent (`ward simulate`), not a real machine.
    pub simulated: bool,
}

impl HostFacts {
    /// This machine's, listed as `name` when given.
    pub fn local(name: Option<String>) -> HostFacts {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let os_version = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        HostFacts {
            hostname,
            os_name: std::env::consts::OS.to_string(),
            os_version,
            name,
            simulated: false,
        }
    }
}

/// A uniform random number in [0, 1), from OpenSSL's generator.
pub fn random_fraction() -> f64 {
    let mut b = [0u8; 8];
    let _ = openssl::rand::rand_bytes(&mut b);
    (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// One line of the agent's log on stderr, with a UTC timestamp.
pub fn log(message: std::fmt::Arguments<'_>) {
    eprintln!(
        "{} ward agent: {message}",
        ward_tls::utc::format_rfc3339(std::time::SystemTime::now())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speakable_versions_follow_the_cap() {
        assert_eq!(speakable(Some(TlsVersion::Tls1_0)), vec!["TLSv1"]);
        assert_eq!(speakable(None).len(), 4);
    }
}
