//! Management server lists: named, ordered priority levels, each with one or more servers.
//!
//! On the command line a server is `PRIORITY:PROTO://ADDRESS:PORT`, e.g. `1:https://mgr1:443`
//! or `2:http://[::1]:8014`. Agents try priority 1 first (in random order), then 2, ...

use std::fmt;

use crate::name::{self, NameError};

pub const MAX_PRIORITY: u32 = 16;
pub const MAX_SERVERS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Https,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
        }
    }

    pub fn parse(text: &str) -> Option<Protocol> {
        match text.to_ascii_lowercase().as_str() {
            "http" => Some(Protocol::Http),
            "https" => Some(Protocol::Https),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerEntry {
    /// A host name or an IP address (IPv6 without brackets).
    pub address: String,
    pub protocol: Protocol,
    pub port: u16,
    /// Whether the agent checks the server's certificate (HTTPS only).
    pub verify_certificate: bool,
}

impl ServerEntry {
    /// `https://mgr1:443`, with IPv6 addresses in brackets.
    pub fn url(&self) -> String {
        let host = if self.address.contains(':') {
            format!("[{}]", self.address)
        } else {
            self.address.clone()
        };
        format!("{}://{host}:{}", self.protocol.name(), self.port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerList {
    pub name: String,
    /// `levels[0]` is priority 1. No level is empty.
    pub levels: Vec<Vec<ServerEntry>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    Shape(String),
    Priority(String),
    Protocol(String),
    Address(String),
    Port(String),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = "expected PRIORITY:PROTO://ADDRESS:PORT, e.g. 1:https://mgr1:443";
        match self {
            SpecError::Shape(spec) => write!(f, "'{spec}': {hint}"),
            SpecError::Priority(spec) => write!(
                f,
                "'{spec}': the priority is a number from 1 to {MAX_PRIORITY}"
            ),
            SpecError::Protocol(spec) => write!(f, "'{spec}': the protocol is http or https"),
            SpecError::Address(spec) => {
                write!(f, "'{spec}': the address is a host name or an IP address")
            }
            SpecError::Port(spec) => write!(f, "'{spec}': the port is a number from 1 to 65535"),
        }
    }
}

impl std::error::Error for SpecError {}

fn valid_host(address: &str) -> bool {
    if address.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    // RFC 1123 host names: labels of letters, digits and hyphens, not starting or ending with
    // a hyphen, at most 253 characters in all.
    !address.is_empty()
        && address.len() <= 253
        && address.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Parses `PRIORITY:PROTO://ADDRESS:PORT`.
pub fn parse_spec(spec: &str) -> Result<(u32, ServerEntry), SpecError> {
    let shape = || SpecError::Shape(spec.to_string());
    let (priority, url) = spec.split_once(':').ok_or_else(shape)?;
    let priority: u32 = priority
        .parse()
        .ok()
        .filter(|p| (1..=MAX_PRIORITY).contains(p))
        .ok_or_else(|| SpecError::Priority(spec.to_string()))?;
    let (protocol, rest) = url.split_once("://").ok_or_else(shape)?;
    let protocol =
        Protocol::parse(protocol).ok_or_else(|| SpecError::Protocol(spec.to_string()))?;
    let (address, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']').ok_or_else(shape)?;
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(SpecError::Address(spec.to_string()));
        }
        (address, after.strip_prefix(':').ok_or_else(shape)?)
    } else {
        let (address, port) = rest.rsplit_once(':').ok_or_else(shape)?;
        // An IPv6 address must be in brackets, or its last group reads as the port.
        if address.contains(':') {
            return Err(SpecError::Address(spec.to_string()));
        }
        (address, port)
    };
    if !valid_host(address) {
        return Err(SpecError::Address(spec.to_string()));
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| SpecError::Port(spec.to_string()))?;
    Ok((
        priority,
        ServerEntry {
            address: address.to_ascii_lowercase(),
            protocol,
            port,
            verify_certificate: true,
        },
    ))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListError {
    Name(NameError),
    Empty,
    TooMany,
    Duplicate(String),
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::Name(error) => write!(f, "server list name: {error}"),
            ListError::Empty => f.write_str("a server list needs at least one server"),
            ListError::TooMany => write!(f, "a server list holds at most {MAX_SERVERS} servers"),
            ListError::Duplicate(url) => write!(f, "{url} is listed twice"),
        }
    }
}

impl std::error::Error for ListError {}

/// Builds a list from prioritised entries. Priorities need not be contiguous (`1` and `5`
/// give two levels); within a level, entries keep their order.
pub fn build(name: &str, entries: Vec<(u32, ServerEntry)>) -> Result<ServerList, ListError> {
    name::check_name(name).map_err(ListError::Name)?;
    if entries.is_empty() {
        return Err(ListError::Empty);
    }
    if entries.len() > MAX_SERVERS {
        return Err(ListError::TooMany);
    }
    let mut seen = std::collections::HashSet::new();
    for (_, entry) in &entries {
        if !seen.insert((entry.address.clone(), entry.protocol, entry.port)) {
            return Err(ListError::Duplicate(entry.url()));
        }
    }
    let mut priorities: Vec<u32> = entries.iter().map(|(p, _)| *p).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let levels = priorities
        .iter()
        .map(|priority| {
            entries
                .iter()
                .filter(|(p, _)| p == priority)
                .map(|(_, e)| e.clone())
                .collect()
        })
        .collect();
    Ok(ServerList {
        name: name.to_string(),
        levels,
    })
}

/// The seed's "management server list that uses HTTP on port 8014": the same servers, every
/// one as plain HTTP on `port`. Entries that become the same are kept once.
pub fn http_copy(
    list: &ServerList,
    name: &str,
    protocol: Protocol,
    port: u16,
) -> Result<ServerList, ListError> {
    http_copy_with(list, name, protocol, |_| port)
}

/// [`http_copy`] with each entry's port chosen by `port_of` (on a site, each server's own
/// clients-http port: [`site_http_port`]).
pub fn http_copy_with(
    list: &ServerList,
    name: &str,
    protocol: Protocol,
    port_of: impl Fn(&ServerEntry) -> u16,
) -> Result<ServerList, ListError> {
    let mut entries = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, level) in list.levels.iter().enumerate() {
        for entry in level {
            let copy = ServerEntry {
                address: entry.address.clone(),
                protocol,
                port: port_of(entry),
                verify_certificate: entry.verify_certificate,
            };
            if seen.insert(copy.url()) {
                entries.push((index as u32 + 1, copy));
            }
        }
    }
    build(name, entries)
}

/// One server of a site as an HTTP copy of a list sees it: the names it is known by (its
/// host name, its clients listener's address), its clients port and its clients-http port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteServer {
    pub hosts: Vec<String>,
    pub clients_port: u16,
    pub http_port: u16,
}

/// The clients-http port an HTTPS `entry` becomes on a site: that of the server whose
/// clients listener the entry names. The servers listening on the entry's port decide when
/// they agree on one clients-http port (the usual site: 443 and 8014 everywhere); else the one
/// of them the entry's host names; else `fallback` (the port of the server making the copy).
pub fn site_http_port(entry: &ServerEntry, site: &[SiteServer], fallback: u16) -> u16 {
    let on_port: Vec<&SiteServer> = site
        .iter()
        .filter(|s| s.clients_port == entry.port)
        .collect();
    if let Some(first) = on_port.first() {
        if on_port.iter().all(|s| s.http_port == first.http_port) {
            return first.http_port;
        }
    }
    on_port
        .iter()
        .find(|s| {
            s.hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(&entry.address))
        })
        .map_or(fallback, |s| s.http_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_a_site_each_entry_becomes_its_own_servers_clients_http_port() {
        let server = |hosts: &[&str], clients_port, http_port| SiteServer {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            clients_port,
            http_port,
        };
        let https = |address: &str, port| entry(address, Protocol::Https, port);
        // Two servers on one host (one machine, ports apart), a usual pair, one odd one out.
        let site = [
            server(&["mgr1", "127.0.0.1"], 8443, 8014),
            server(&["mgr1", "127.0.0.1"], 9443, 9014),
            server(&["mgr3", "10.0.0.3"], 443, 8014),
            server(&["mgr4", "10.0.0.4"], 443, 8014),
            server(&["mgr5", "10.0.0.5"], 4443, 8014),
            server(&["mgr6", "10.0.0.6"], 4443, 8015),
        ];
        // (entry, its clients-http port)
        let table = [
            (https("127.0.0.1", 8443), 8014),
            (https("127.0.0.1", 9443), 9014),
            (https("mgr1", 9443), 9014),
            // Both servers on 443 agree on 8014.
            (https("mgr3.example", 443), 8014),
            // Servers on 4443 disagree: the host decides.
            (https("MGR6", 4443), 8015),
            (https("10.0.0.5", 4443), 8014),
            // Nobody on that port, or nobody of that name: the copying server's own.
            (https("mgr9", 4443), 7014),
            (https("mgr1", 1443), 7014),
        ];
        for (entry, port) in table {
            assert_eq!(site_http_port(&entry, &site, 7014), port, "{}", entry.url());
        }
        let list = build(
            "Site",
            vec![(1, https("127.0.0.1", 8443)), (2, https("127.0.0.1", 9443))],
        )
        .unwrap();
        let copy = http_copy_with(&list, "Site (HTTP)", Protocol::Http, |e| {
            site_http_port(e, &site, 7014)
        })
        .unwrap();
        let urls: Vec<String> = copy.levels.iter().flatten().map(ServerEntry::url).collect();
        assert_eq!(urls, ["http://127.0.0.1:8014", "http://127.0.0.1:9014"]);
    }

    fn entry(address: &str, protocol: Protocol, port: u16) -> ServerEntry {
        ServerEntry {
            address: address.into(),
            protocol,
            port,
            verify_certificate: true,
        }
    }

    /// (spec, the entry it gives or the error text)
    type SpecCase<'a> = (&'a str, Result<(u32, ServerEntry), &'a str>);

    #[test]
    fn spec_table() {
        use Protocol::*;
        let cases: Vec<SpecCase> = vec![
            ("1:https://mgr1:443", Ok((1, entry("mgr1", Https, 443)))),
            ("2:http://mgr1:8014", Ok((2, entry("mgr1", Http, 8014)))),
            ("1:HTTPS://MGR1.Example.com:443", Ok((1, entry("mgr1.example.com", Https, 443)))),
            ("3:http://127.0.0.1:8014", Ok((3, entry("127.0.0.1", Http, 8014)))),
            ("1:https://[::1]:8443", Ok((1, entry("::1", Https, 8443)))),
            ("https://mgr1:443", Err("'https://mgr1:443': the priority is a number from 1 to 16")),
            ("0:https://mgr1:443", Err("'0:https://mgr1:443': the priority is a number from 1 to 16")),
            ("17:https://mgr1:443", Err("'17:https://mgr1:443': the priority is a number from 1 to 16")),
            ("1:ftp://mgr1:21", Err("'1:ftp://mgr1:21': the protocol is http or https")),
            ("1:https://mgr1", Err("'1:https://mgr1': expected PRIORITY:PROTO://ADDRESS:PORT, e.g. 1:https://mgr1:443")),
            ("1:https://mgr1:0", Err("'1:https://mgr1:0': the port is a number from 1 to 65535")),
            ("1:https://mgr1:70000", Err("'1:https://mgr1:70000': the port is a number from 1 to 65535")),
            ("1:https://bad_host:443", Err("'1:https://bad_host:443': the address is a host name or an IP address")),
            ("1:https://-x:443", Err("'1:https://-x:443': the address is a host name or an IP address")),
            ("1:https://[nope]:443", Err("'1:https://[nope]:443': the address is a host name or an IP address")),
            ("1:https://::1:443", Err("'1:https://::1:443': the address is a host name or an IP address")),
            ("", Err("'': expected PRIORITY:PROTO://ADDRESS:PORT, e.g. 1:https://mgr1:443")),
        ];
        for (spec, expected) in cases {
            let actual = parse_spec(spec).map_err(|e| e.to_string());
            assert_eq!(actual, expected.map_err(str::to_string), "{spec}");
        }
    }

    fn parsed(specs: &[&str]) -> Vec<(u32, ServerEntry)> {
        specs.iter().map(|s| parse_spec(s).unwrap()).collect()
    }

    #[test]
    fn lists_group_entries_by_priority() {
        let list = build(
            "Main",
            parsed(&[
                "2:http://mgr1:8014",
                "1:https://mgr1:443",
                "1:https://mgr2:443",
                "5:https://dr:443",
            ]),
        )
        .unwrap();
        let urls: Vec<Vec<String>> = list
            .levels
            .iter()
            .map(|l| l.iter().map(ServerEntry::url).collect())
            .collect();
        assert_eq!(
            urls,
            vec![
                vec!["https://mgr1:443", "https://mgr2:443"],
                vec!["http://mgr1:8014"],
                vec!["https://dr:443"],
            ]
        );
    }

    #[test]
    fn list_validation() {
        assert_eq!(build("Main", vec![]).unwrap_err(), ListError::Empty);
        assert_eq!(
            build(
                "Main",
                parsed(&["1:https://mgr1:443", "2:https://MGR1:443"])
            )
            .unwrap_err()
            .to_string(),
            "https://mgr1:443 is listed twice"
        );
        assert_eq!(
            build("a/b", parsed(&["1:https://x:1"])).unwrap_err(),
            ListError::Name(NameError::Slash)
        );
        let many: Vec<String> = (0..65).map(|i| format!("1:https://h{i}:443")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(build("Big", parsed(&many)).unwrap_err(), ListError::TooMany);
    }

    #[test]
    fn the_seeds_http_list() {
        let list = build(
            "Default",
            parsed(&[
                "1:https://mgr1:443",
                "1:https://mgr2:443",
                "2:https://mgr1:8443",
            ]),
        )
        .unwrap();
        let copy = http_copy(&list, "Default (HTTP 8014)", Protocol::Http, 8014).unwrap();
        let urls: Vec<Vec<String>> = copy
            .levels
            .iter()
            .map(|l| l.iter().map(ServerEntry::url).collect())
            .collect();
        // mgr1 appears once: its priority-2 entry became the same as its priority-1 one.
        assert_eq!(urls, vec![vec!["http://mgr1:8014", "http://mgr2:8014"]]);
        assert_eq!(copy.name, "Default (HTTP 8014)");
    }
}
