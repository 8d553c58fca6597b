//! Changes between the servers of one database: every applied change that bumps serials sends
//! a `NOTIFY ward_changes` in its own transaction (PostgreSQL delivers it at commit, and only
//! if it commits), naming the groups and agents it bumped and the store that made it; every
//! server LISTENs on a connection of its own and hands what the others made to the caller of
//! [`crate::Store::watch`] (the server wakes its held push check-ins with it).
//!
//! A notification is lost if the listening connection is down when it is sent. So after any
//! gap (a reconnect) the listener reports [`ChangeNote::Unknown`]: the server then treats
//! every held check-in as concerned, and each re-reads its record. A change is never missed
//! for good, only learned a little later and at the cost of one read per held agent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Config, NoTls};
use serde::{Deserialize, Serialize};

use crate::{Change, ChangeNote};

/// The channel every ward server of a database listens on.
pub(super) const CHANNEL: &str = "ward_changes";

/// PostgreSQL refuses a payload of 8,000 bytes or more; past this a change is sent as
/// "anything may have changed".
const MAX_PAYLOAD: usize = 7_000;

/// How long the listener waits before connecting again after it lost its connection.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// What a notification carries.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Payload {
    /// The store that made the change (its own notifications are not reported back to it).
    origin: String,
    /// `None`: too many to name.
    bumped: Option<(Vec<i64>, Vec<String>)>,
    /// The site's files changed: their new generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    site: Option<i64>,
}

/// The payload that says the site's files are now at `generation`.
pub(super) fn site_payload(origin: &str, generation: i64) -> String {
    serde_json::to_string(&Payload {
        origin: origin.to_string(),
        bumped: None,
        site: Some(generation),
    })
    .unwrap_or_default()
}

/// The payload of `change`'s notification, when it bumps anyone.
pub(super) fn payload(origin: &str, change: &Change) -> Option<String> {
    if change.bump_groups.is_empty() && change.bump_agents.is_empty() {
        return None;
    }
    let named = Payload {
        origin: origin.to_string(),
        bumped: Some((change.bump_groups.clone(), change.bump_agents.clone())),
        site: None,
    };
    let text = serde_json::to_string(&named).ok()?;
    if text.len() <= MAX_PAYLOAD {
        return Some(text);
    }
    serde_json::to_string(&Payload {
        origin: origin.to_string(),
        bumped: None,
        site: None,
    })
    .ok()
}

/// What a notification's payload says, unless it came from `origin` itself. One that does
/// not decode (a newer ward's) says "anything may have changed".
fn read(origin: &str, text: &str) -> Option<ChangeNote> {
    match serde_json::from_str::<Payload>(text) {
        Ok(payload) if payload.origin == origin => None,
        Ok(Payload {
            site: Some(generation),
            ..
        }) => Some(ChangeNote::Site { generation }),
        Ok(Payload {
            bumped: Some((groups, agents)),
            ..
        }) => Some(ChangeNote::Bumped { groups, agents }),
        _ => Some(ChangeNote::Unknown),
    }
}

/// Listens on its own thread until `stop` is set, handing the other stores' changes to
/// `note`; after every gap in listening, [`ChangeNote::Unknown`] first.
pub(super) fn listen(
    config: Config,
    origin: String,
    stop: Arc<AtomicBool>,
    note: Arc<dyn Fn(ChangeNote) + Send + Sync>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ward-pg-listen".into())
        .spawn(move || {
            let mut listened = false;
            while !stop.load(Ordering::Relaxed) {
                let mut client = match config.connect(NoTls) {
                    Ok(client) => client,
                    Err(_) => {
                        std::thread::sleep(RECONNECT_PAUSE);
                        continue;
                    }
                };
                if client.batch_execute(&format!("LISTEN {CHANNEL}")).is_err() {
                    std::thread::sleep(RECONNECT_PAUSE);
                    continue;
                }
                if listened {
                    // Down for a while: whatever was sent meanwhile is lost.
                    note(ChangeNote::Unknown);
                }
                listened = true;
                while !stop.load(Ordering::Relaxed) {
                    let next = client
                        .notifications()
                        .timeout_iter(Duration::from_secs(1))
                        .next();
                    match next {
                        Ok(Some(notification)) => {
                            if let Some(change) = read(&origin, notification.payload()) {
                                note(change);
                            }
                        }
                        // A quiet second: still connected?
                        Ok(None) if client.is_closed() => break,
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(groups: Vec<i64>, agents: Vec<String>) -> Change {
        Change {
            tree_version: None,
            mutation: crate::Mutation::Nothing,
            bump_groups: groups,
            bump_agents: agents,
            audit: crate::AuditEntry {
                id: 0,
                at_ms: 0,
                actor: "t".into(),
                action: "t".into(),
                target: "t".into(),
                before: None,
                after: None,
            },
        }
    }

    #[test]
    fn a_notification_names_what_it_bumped_and_its_origin_ignores_it() {
        // (what the change bumped, read by another store, read by its own)
        let many: Vec<String> = (0..1000).map(|n| format!("agent-{n:08}")).collect();
        let cases = [
            (change(vec![], vec![]), None, None),
            (
                change(vec![3, 4], vec!["a".into()]),
                Some(ChangeNote::Bumped {
                    groups: vec![3, 4],
                    agents: vec!["a".into()],
                }),
                None,
            ),
            (change(vec![], many), Some(ChangeNote::Unknown), None),
        ];
        for (change, by_other, by_self) in cases {
            let sent = payload("server-a", &change);
            assert!(sent.as_ref().is_none_or(|p| p.len() <= MAX_PAYLOAD));
            assert_eq!(sent.as_deref().and_then(|p| read("server-b", p)), by_other);
            assert_eq!(sent.as_deref().and_then(|p| read("server-a", p)), by_self);
        }
        assert_eq!(
            read("server-b", "{\"from\": \"a newer ward\"}"),
            Some(ChangeNote::Unknown)
        );
    }
}
