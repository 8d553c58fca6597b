//! ward-server: the management server's runtime.
//!
//! Three listeners (console 8445, clients 443, clients-http 8014), each HTTPS one with TLS from
//! its Apache-style conf file; hot reload without dropping connections; TLS telemetry (what
//! every client negotiated, and what every refused client offered).
//!
//! - [`config`]: ward.toml and the listener roles.
//! - [`datadir`]: the data directory and its first initialisation.
//! - [`listener_tls`]: building, checking and swapping each listener's acceptor.
//! - [`state`]: the app state every connection shares, the reload, and the seam the web
//!   console (`ward-console`) serves the console listener's pages through (`WebConsole`).
//! - [`api`]: HTTP plumbing: responses, errors by source, bodies, queries.
//! - [`auth`]: admin credentials, passwords, sessions, the login limiter.
//! - [`ops`]: fleet operations shared by the APIs (tree, groups, audit, agent settings).
//! - `channel`: the agent channel's caches (keys, nonces, settings, held check-ins).
//! - [`server`]: start, accept loops, graceful shutdown (imported by no other module).
//! - `conn`: one connection: ClientHello, handshake, HTTP.
//! - `http`: routing by role, health, metrics, and to the three APIs.
//! - `agent_api`: enrollment and check-in (`/agent/v1/`).
//! - `checkins`: group commit of agents' check-ins (one transaction per batch).
//! - [`admin`]: the admin API (`/api/v1/` on the console): the gate, fleet handlers, OpenAPI.
//! - [`failure`]: why a handshake failed, in words (pure).
//! - `impact`: who a proposed change would cut off, exactly (the fleet read, every agent's
//!   ClientHello replayed through the proposed listener, the certificate checked), judged by
//!   `ward_plan::reach`; harden, the reload guard, rollback and fleet edits ask it.
//! - [`harden`]: TLS readiness, plans, and the steps of `ward tls harden`.
//! - [`telemetry`]: metrics and the batched telemetry writer.
//! - [`site`]: the files a site's servers share through the database (CA, agreement and
//!   ticket keys): taken at start, put by the change that makes them.
//! - `site_follow`: the running server takes the site's changes as they are made.
//! - `wakes`: the store wrapper that tells held push check-ins which changes concern them.
//! - [`notify`]: the service manager's readiness protocol (`READY=1` once every listener
//!   accepts).

pub mod admin;
pub(crate) mod agent_api;
pub mod api;
pub mod auth;
mod channel;
mod checkin_conn;
mod checkins;
pub mod commit;
pub mod config;
mod conn;
pub mod datadir;
pub mod failure;
mod http;
mod impact;
mod io;
pub mod listener_tls;
pub mod metrics;
pub mod notify;
pub mod operations;
pub mod ops;
mod records;
pub mod server;
pub mod site;
mod site_follow;
pub mod state;
pub mod telemetry;
mod wakes;

use ward_tls::Severity;

pub use config::Role;
pub use datadir::DataDir;
pub use listener_tls::Finding;
pub use server::{run, run_with, Overrides, ServerError};

/// `ward server configtest`: checks ward.toml and both conf files (including what OpenSSL
/// says of cipher lists and certificates) and returns every finding. The settings are good
/// when no finding is an error.
pub fn configtest(data: &DataDir) -> Vec<Finding> {
    let mut findings = vec![Finding {
        severity: Severity::Note,
        text: format!("TLS library: {}", ward_tls::openssl_build()),
    }];
    let config = match config::load(&data.config()) {
        Ok(config) => config,
        Err(error) => {
            findings.push(Finding {
                severity: Severity::Error,
                text: error.to_string(),
            });
            config::parse(
                "defaults",
                &config::default_toml(config::default_addresses()),
            )
            .expect("defaults parse")
        }
    };
    findings.push(Finding {
        severity: Severity::Note,
        text: format!(
            "{}: request bodies: enrollment at most {} bytes and check-in at most {} bytes (read \
             before the agent is authenticated), admin API at most {} bytes (after)",
            data.config().display(),
            config.limits.enroll_body_bytes,
            config.limits.checkin_body_bytes,
            config.limits.max_body_bytes
        ),
    });
    let problems = match data.database(&config) {
        Ok(database) => datadir::unsafe_modes(data, &database),
        Err(problem) => vec![problem],
    };
    for problem in problems {
        findings.push(Finding {
            severity: Severity::Error,
            text: problem,
        });
    }
    let (_, more) = listener_tls::load_all(data, &config);
    findings.extend(more);
    findings
}
