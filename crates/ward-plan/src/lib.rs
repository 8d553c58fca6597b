//! ward-plan: the exact plan's pure part. Who a proposed change would cut off, decided
//! without I/O; the server reads the fleet and the kept ClientHellos, replays them through
//! the proposed listener (`ward_tls::replay`) and asks these modules.
//!
//! - [`reach`]: whether an agent keeps a path to a server under a proposed clients listener
//!   or server list (unaffected, cut off, at risk), and why, in an admin's words.
//! - [`change`]: a proposed TLS change (`SSLProtocol`, cipher lists, certificate, a preset or
//!   a whole conf file) applied to a listener's current policy.
//! - [`preset`]: the named compliance presets (Mozilla, NIST SP 800-52r2, PCI DSS 4.0), each
//!   with its source.
//! - [`trust`]: whether an agent that checks the server's certificate would accept the
//!   proposed one: it chains to the CA the agents pin, and it names the host they connect to.

pub mod change;
pub mod preset;
pub mod reach;
pub mod trust;
