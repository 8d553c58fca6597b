//! Whether an agent keeps a path to a server, without I/O: what ward knows of each agent's TLS
//! capability, and whether an agent would keep a working path to the server under a proposed
//! clients listener (the versions it serves, the certificate its verifying agents would
//! trust) or a new server list. Every plan judges with it: harden, reload, rollback and the
//! fleet edits. Table tests are in `reach/tests.rs`.

use std::collections::BTreeMap;
use std::fmt;

use ward_fleet::serverlist::Protocol;
use ward_fleet::{GroupId, ServerList};
use ward_tls::{ProtocolSet, TlsVersion, VersionRange};

/// How ward knows what an agent can speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Knowledge {
    /// The agent said so at check-in (the TLS versions its build and `--tls-max` allow).
    Reported,
    /// Only seen: the version negotiated at its last check-in (the server picks the highest
    /// both sides share, so that is the agent's highest while the listener allowed more).
    Observed,
    /// Never reported and never seen over TLS.
    Unknown,
}

impl Knowledge {
    pub fn name(self) -> &'static str {
        match self {
            Knowledge::Reported => "reported",
            Knowledge::Observed => "observed",
            Knowledge::Unknown => "unknown",
        }
    }
}

/// What an agent can speak, and how sure ward is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub versions: ProtocolSet,
    pub knowledge: Knowledge,
}

impl Capability {
    /// From the versions an agent reported and the version negotiated at its last check-in.
    pub fn of(reported: ProtocolSet, negotiated: Option<TlsVersion>) -> Capability {
        if !reported.is_empty() {
            return Capability {
                versions: reported,
                knowledge: Knowledge::Reported,
            };
        }
        match negotiated {
            Some(version) => Capability {
                versions: ProtocolSet::only(version),
                knowledge: Knowledge::Observed,
            },
            None => Capability {
                versions: ProtocolSet::EMPTY,
                knowledge: Knowledge::Unknown,
            },
        }
    }

    /// The highest version, `None` when unknown.
    pub fn highest(self) -> Option<TlsVersion> {
        self.versions.iter().last()
    }

    /// Whether the agent can complete a handshake with a listener serving `range`; `None`
    /// when ward does not know.
    pub fn can_reach(self, range: VersionRange) -> Option<bool> {
        match self.knowledge {
            Knowledge::Unknown => None,
            _ => Some(self.versions.iter().any(|v| range.contains(v))),
        }
    }
}

/// An agent as the plan sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentFacts {
    pub group: GroupId,
    pub capability: Capability,
    /// The agent has not acknowledged its current settings serial.
    pub pending: bool,
    /// Milliseconds since the agent was last heard from (check-in, else enrollment).
    pub silent_ms: i64,
    /// Exact evidence: its last real ClientHello, replayed through the proposed clients
    /// listener, is served (`Some(true)`) or refused. It overrides the capability.
    pub replayed: Option<bool>,
    /// It refuses its current settings: it went back to the last that worked.
    pub reverted: bool,
}

/// What the agent's group gives it, as far as the plan cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupFacts<'a> {
    pub list: Option<&'a ServerList>,
    /// After this long without a check-in, the agent counts as offline: it would not pick up
    /// new settings before the change.
    pub offline_after_ms: i64,
}

/// Why an agent is at risk rather than plainly fine or cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Risk {
    /// ward does not know what it can speak, and it has no HTTP path.
    Unknown,
    /// It would be cut off, and it is offline: it would not be moved in time.
    Offline,
    /// Only the settings it has not acknowledged yet give it a working path.
    Pending,
    /// It went back to the last settings that worked: its group's settings cut it off, so
    /// what it runs is not what its group says, and only a real check-in tells.
    Reverted,
}

impl Risk {
    pub fn name(self) -> &'static str {
        match self {
            Risk::Unknown => "capability_unknown",
            Risk::Offline => "offline",
            Risk::Pending => "pending",
            Risk::Reverted => "reverted",
        }
    }
}

/// The plan's answer for one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It keeps a working path; `via` says which.
    Unaffected {
        via: Via,
    },
    /// It would lose contact.
    CutOff,
    AtRisk(Risk),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    Https,
    Http,
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Unaffected { .. } => "unaffected",
            Verdict::CutOff => "cut_off",
            Verdict::AtRisk(_) => "at_risk",
        }
    }
}

fn has(list: Option<&ServerList>, protocol: Protocol) -> bool {
    list.is_some_and(|l| l.levels.iter().flatten().any(|e| e.protocol == protocol))
}

/// The clients listener as a plan sees it: the versions it would serve, and the hosts for
/// which an agent that verifies the certificate would refuse it.
#[derive(Clone, Copy, Debug)]
pub struct Clients<'a> {
    pub range: VersionRange,
    /// Server list host -> why an agent that checks the certificate (its settings' CA and the
    /// host name) would refuse the listener's certificate there. Empty: trusted everywhere.
    pub untrusted: &'a BTreeMap<String, String>,
}

static TRUSTED_EVERYWHERE: BTreeMap<String, String> = BTreeMap::new();

impl Clients<'static> {
    /// A listener serving `range` whose certificate every agent trusts.
    pub fn serving(range: VersionRange) -> Clients<'static> {
        Clients {
            range,
            untrusted: &TRUSTED_EVERYWHERE,
        }
    }
}

impl<'a> Clients<'a> {
    /// The first HTTPS entry of `list` whose certificate check would fail, and why; `None`
    /// when some HTTPS entry is trusted (or the list has none).
    pub fn distrust<'l>(&self, list: Option<&'l ServerList>) -> Option<(&'l str, &'a str)> {
        let mut first = None;
        for entry in list
            .into_iter()
            .flat_map(|l| l.levels.iter().flatten())
            .filter(|e| e.protocol == Protocol::Https)
        {
            match self.untrusted.get(&entry.address) {
                Some(why) if entry.verify_certificate => {
                    first.get_or_insert((entry.address.as_str(), why.as_str()));
                }
                _ => return None,
            }
        }
        first
    }
}

/// Whether `agent` keeps a path to the server under the clients listener `clients`. HTTPS
/// entries reach that listener when the agent can handshake with it and trusts its
/// certificate there; HTTP entries reach clients-http, which has no TLS to refuse.
pub fn judge(agent: &AgentFacts, group: GroupFacts<'_>, clients: Clients<'_>) -> Verdict {
    let distrusted = clients.distrust(group.list).is_some();
    let https = has(group.list, Protocol::Https) && !distrusted;
    let http = has(group.list, Protocol::Http);
    let reach = if distrusted {
        // No HTTPS entry it would trust: however well it speaks TLS, it has no HTTPS path.
        Some(false)
    } else {
        agent
            .replayed
            .or_else(|| agent.capability.can_reach(clients.range))
    };
    if agent.reverted {
        // Its group's settings are not the ones it runs (they cut it off, for a reason ward
        // could not see): no path of them can be counted on, however well it speaks TLS.
        return Verdict::AtRisk(Risk::Reverted);
    }
    if https && reach == Some(true) {
        return Verdict::Unaffected { via: Via::Https };
    }
    let offline = agent.silent_ms > group.offline_after_ms;
    if http {
        if agent.pending {
            // Silent too long, it will not pick the new list up in time.
            return Verdict::AtRisk(if offline {
                Risk::Offline
            } else {
                Risk::Pending
            });
        }
        return Verdict::Unaffected { via: Via::Http };
    }
    match reach {
        None => Verdict::AtRisk(Risk::Unknown),
        Some(_) if offline => Verdict::AtRisk(Risk::Offline),
        Some(_) => Verdict::CutOff,
    }
}

/// The sentence that says why, for the operator.
pub fn explain(
    agent: &AgentFacts,
    group: GroupFacts<'_>,
    clients: Clients<'_>,
    verdict: &Verdict,
) -> String {
    let range = clients.range;
    let speaks = Speaks(agent.capability);
    let list = group.list.map(|l| l.name.as_str()).unwrap_or("(none)");
    if let (Verdict::CutOff | Verdict::AtRisk(Risk::Offline), Some((host, why))) =
        (verdict, clients.distrust(group.list))
    {
        let offline = match verdict {
            Verdict::AtRisk(_) => format!(
                ", and it has been silent for {} (offline)",
                human(agent.silent_ms)
            ),
            _ => String::new(),
        };
        return format!(
            "it would not trust the proposed clients certificate at '{host}': {why}; server \
             list '{list}' has no HTTP entry{offline}"
        );
    }
    match (verdict, agent.replayed) {
        (Verdict::Unaffected { via: Via::Https }, Some(true)) => {
            return format!(
                "its real ClientHello, replayed through the proposed clients listener ({range}), \
                 is served"
            )
        }
        (Verdict::CutOff, Some(false)) => {
            return format!(
                "its real ClientHello, replayed through the proposed clients listener ({range}), \
                 is refused, and server list '{list}' has no HTTP entry"
            )
        }
        _ => {}
    }
    match verdict {
        Verdict::Unaffected { via: Via::Https } => {
            format!("{speaks}; the clients listener would accept {range}")
        }
        Verdict::Unaffected { via: Via::Http } => {
            format!("server list '{list}' has an HTTP entry (clients-http has no TLS to refuse)")
        }
        Verdict::CutOff => {
            format!("{speaks}, below {range}, and server list '{list}' has no HTTP entry")
        }
        Verdict::AtRisk(Risk::Unknown) => format!(
            "ward has no record of its TLS versions (never reported, never seen over TLS), and \
             server list '{list}' has no HTTP entry"
        ),
        Verdict::AtRisk(Risk::Offline) => format!(
            "{speaks}, it has no working path to a listener serving {range} in the settings it \
             acknowledged, and it has been silent for {}: more than the {} after which it would \
             not pick new settings up in time",
            human(agent.silent_ms),
            human(group.offline_after_ms)
        ),
        Verdict::AtRisk(Risk::Pending) => format!(
            "{speaks}; only its new server list '{list}' has an HTTP entry, and it has not \
             acknowledged those settings yet"
        ),
        Verdict::AtRisk(Risk::Reverted) => format!(
            "{speaks}; it went back to the last settings that worked because its group's \
             (server list '{list}') cut it off, so no path of that list can be counted on"
        ),
    }
}

struct Speaks(Capability);

impl fmt::Display for Speaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.knowledge, self.0.highest()) {
            (Knowledge::Unknown, _) | (_, None) => f.write_str("its TLS versions are unknown"),
            (Knowledge::Reported, Some(max)) => write!(f, "it speaks {max} at most (reported)"),
            (Knowledge::Observed, Some(max)) => {
                write!(f, "it negotiated {max} (observed, not reported)")
            }
        }
    }
}

/// `3h 5m`, `42s`, `1d 2h`: the two largest units.
pub fn human(ms: i64) -> String {
    let seconds = (ms.max(0) / 1000) as u64;
    let units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let parts: Vec<String> = units
        .iter()
        .scan(seconds, |left, (name, size)| {
            let count = *left / size;
            *left %= size;
            Some((count, name))
        })
        .filter(|(count, _)| *count > 0)
        .take(2)
        .map(|(count, name)| format!("{count}{name}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

/// The name of the HTTP variant of a server list: the seed's "list that uses HTTP on 8014".
pub fn http_list_name(list: &str) -> String {
    format!("{list}-http")
}

#[cfg(test)]
mod tests;
