//! Writing check-ins. Most check-ins of a settled fleet change nothing but when they came; the
//! rest carry news (an acknowledged serial, a revert, another address, another TLS version).
//!
//! - A check-in with news is written by the group commit: one writer thread takes every
//!   check-in waiting, records them in one transaction (one sync to disk), and answers each
//!   once its write is durable. Nothing it acknowledged is lost on a crash.
//! - A check-in whose facts are those its agent's last written one had, with nothing in the
//!   fleet changed since (no admin change here, no other server's note), is a *touch*: it is
//!   answered at once from what that write returned, and its time and nonce are written with
//!   the other touches of the last [`TOUCH_FLUSH`] in one transaction. A crash loses at most
//!   that long of last-seen times and nonces: an agent looks [`TOUCH_FLUSH`] less recent, and
//!   a touch captured in that second could be replayed once after the restart, where it
//!   asserts again the facts already recorded. An acknowledged serial is never a touch.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use ward_fleet::GroupId;
use ward_store::{AgentRecord, Checkin, Store, StoreError, Touch};

use crate::wakes::FleetChanges;

/// The most check-ins in one transaction.
const MAX_BATCH: usize = 1024;

/// How long a touch waits for the others to be written with it: the lag the presence rule
/// allows for.
pub const TOUCH_FLUSH: Duration = ward_fleet::presence::RECORDING_LAG;

/// Touches waiting past this many are written at once, without waiting for [`TOUCH_FLUSH`].
const TOUCH_BATCH: usize = 8 * MAX_BATCH;

type Reply = oneshot::Sender<Result<Option<AgentRecord>, StoreError>>;

/// What a check-in's answer needs of its agent's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    pub group: GroupId,
    pub serial: i64,
    /// It reverted from exactly `serial` ([`AgentRecord::refuses_serial`]).
    pub refuses_serial: bool,
}

impl From<&AgentRecord> for Standing {
    fn from(record: &AgentRecord) -> Standing {
        Standing {
            group: record.group,
            serial: record.serial,
            refuses_serial: record.refuses_serial(),
        }
    }
}

/// A recorded check-in: its agent's standing, and its record when it was written now (a
/// touch has none).
#[derive(Debug)]
pub struct Recorded {
    pub standing: Standing,
    pub record: Option<AgentRecord>,
}

/// What the last written check-in of an agent said, and what it returned.
struct Last {
    facts: u64,
    changes: u64,
    standing: Standing,
}

struct Touches {
    store: Arc<dyn Store>,
    telemetry: Arc<crate::telemetry::Telemetry>,
    changes: Arc<FleetChanges>,
    hasher: RandomState,
    /// By the hash of the agent's id (8 bytes a key, for a million agents).
    last: Mutex<HashMap<u64, Last>>,
    pending: Mutex<Vec<Touch>>,
    /// Signalled when `pending` is full, or the writer stops.
    due: Condvar,
    /// Held while writing touches: one flush at a time, in order.
    flushing: Mutex<()>,
}

pub struct CheckinWriter {
    jobs: mpsc::Sender<(Checkin, Reply)>,
    touches: Arc<Touches>,
}

impl CheckinWriter {
    /// Starts the writer threads; they end when the writer is dropped (the touches left are
    /// written first).
    pub fn start(
        store: Arc<dyn Store>,
        telemetry: Arc<crate::telemetry::Telemetry>,
        changes: Arc<FleetChanges>,
    ) -> CheckinWriter {
        let (jobs, queue) = mpsc::channel::<(Checkin, Reply)>(8 * MAX_BATCH);
        {
            let (store, telemetry) = (store.clone(), telemetry.clone());
            std::thread::Builder::new()
                .name("ward-checkins".into())
                .spawn(move || group_commit(queue, &*store, &telemetry))
                .expect("spawn the check-in writer");
        }
        let touches = Arc::new(Touches {
            store,
            telemetry,
            changes,
            hasher: RandomState::new(),
            last: Mutex::default(),
            pending: Mutex::default(),
            due: Condvar::new(),
            flushing: Mutex::default(),
        });
        let flusher = Arc::downgrade(&touches);
        std::thread::Builder::new()
            .name("ward-touches".into())
            .spawn(move || {
                while let Some(touches) = flusher.upgrade() {
                    touches.wait_until_due();
                    touches.flush();
                }
            })
            .expect("spawn the touch writer");
        CheckinWriter { jobs, touches }
    }

    /// Records `checkin`: a touch at once, anything else with whatever else is waiting, once
    /// durable. `None` for an unknown agent.
    pub async fn record(&self, checkin: Checkin) -> Result<Option<Recorded>, StoreError> {
        let touches = &self.touches;
        let key = touches.hasher.hash_one(&checkin.agent);
        let facts = touches.facts(&checkin);
        let changes = touches.changes.now();
        if let Some(standing) = touches.touch(key, facts, changes, &checkin) {
            return Ok(Some(Recorded {
                standing,
                record: None,
            }));
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((checkin, reply))
            .await
            .map_err(|_| StoreError::Database("the check-in writer stopped".into()))?;
        let record = answer
            .await
            .map_err(|_| StoreError::Database("the check-in writer stopped".into()))??;
        let mut last = touches.last.lock().unwrap_or_else(|p| p.into_inner());
        let Some(record) = record else {
            last.remove(&key);
            return Ok(None);
        };
        let standing = Standing::from(&record);
        // `changes` as read before the write: a change committed meanwhile ends the touches.
        last.insert(
            key,
            Last {
                facts,
                changes,
                standing,
            },
        );
        Ok(Some(Recorded {
            standing,
            record: Some(record),
        }))
    }

    /// Writes the touches waiting now (at a graceful stop).
    pub fn flush(&self) {
        self.touches.flush();
    }
}

impl Drop for CheckinWriter {
    fn drop(&mut self) {
        self.touches.flush();
    }
}

impl Touches {
    /// A hash of everything a check-in says but when it came and its nonce.
    fn facts(&self, checkin: &Checkin) -> u64 {
        let Checkin {
            agent,
            at_ms: _,
            acked_serial,
            hostname,
            os_name,
            os_version,
            agent_version,
            tls_versions,
            channel,
            server,
            tls_version,
            tls_group,
            hello,
            peer,
            nonce: _,
            trusted_cas,
            agreement_key,
            reverted,
            reported_hello,
        } = checkin;
        let mut hasher = self.hasher.build_hasher();
        (agent, acked_serial, hostname, os_name, os_version).hash(&mut hasher);
        (agent_version, tls_versions, channel, server).hash(&mut hasher);
        (tls_version, tls_group, hello, peer).hash(&mut hasher);
        (trusted_cas, agreement_key, reverted, reported_hello).hash(&mut hasher);
        hasher.finish()
    }

    /// `checkin` as a touch, when it is one: its agent's standing, the touch queued.
    fn touch(&self, key: u64, facts: u64, changes: u64, checkin: &Checkin) -> Option<Standing> {
        // A revert or a reported hello is news each time it is said.
        if checkin.reverted.is_some() || checkin.reported_hello.is_some() {
            return None;
        }
        let standing = {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let last = last.get(&key)?;
            (last.facts == facts && last.changes == changes).then_some(last.standing)?
        };
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.push(Touch {
            agent: checkin.agent.clone(),
            at_ms: checkin.at_ms,
            nonce: checkin.nonce.clone(),
            server: checkin.server.clone(),
        });
        if pending.len() >= TOUCH_BATCH {
            self.due.notify_one();
        }
        self.telemetry.metrics.ops.touched();
        Some(standing)
    }

    /// Waits [`TOUCH_FLUSH`], or less when many touches are waiting.
    fn wait_until_due(&self) {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .due
            .wait_timeout_while(pending, TOUCH_FLUSH, |p| p.len() < TOUCH_BATCH);
    }

    /// Writes the touches waiting. Those that no longer apply (the agent gone, or another
    /// server wrote its facts since) end their agent's touches; when the write fails, they
    /// wait for the next one.
    fn flush(&self) {
        let _one = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let touches = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if touches.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        match self.store.touch_checkins(&touches) {
            Ok(applied) => {
                self.telemetry
                    .metrics
                    .ops
                    .touches_written(touches.len(), started.elapsed());
                let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                for (touch, _) in touches.iter().zip(applied).filter(|(_, a)| !a) {
                    last.remove(&self.hasher.hash_one(&touch.agent));
                }
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    touches = touches.len(),
                    "could not write the last check-in times; trying again"
                );
                // No more touches until the database answers again: check-ins take the
                // group commit, which says it is unavailable, and nothing piles up here.
                self.last.lock().unwrap_or_else(|p| p.into_inner()).clear();
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                let newer = std::mem::replace(&mut *pending, touches);
                pending.extend(newer);
            }
        }
    }
}

/// The group commit: every check-in waiting, in one transaction, until the writer is dropped.
fn group_commit(
    mut queue: mpsc::Receiver<(Checkin, Reply)>,
    store: &dyn Store,
    telemetry: &crate::telemetry::Telemetry,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let checkins: Vec<Checkin> = batch.iter().map(|(c, _)| c.clone()).collect();
        let started = std::time::Instant::now();
        let recorded = store.record_checkins(&checkins);
        telemetry
            .metrics
            .ops
            .committed(checkins.len(), started.elapsed());
        match recorded {
            Ok(records) => {
                for ((_, reply), record) in batch.drain(..).zip(records) {
                    let _ = reply.send(Ok(record));
                }
            }
            Err(error) => {
                // Every waiting check-in gets the error with its kind intact: a busy database
                // is a 503 with Retry-After, never a 500.
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Subject {
        _dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        writer: CheckinWriter,
    }

    fn subject() -> Subject {
        let dir = tempfile::tempdir().unwrap();
        let (store, group) = crate::wakes::tests::fleet_store(&dir);
        store
            .insert_agents(&[crate::wakes::tests::agent("a1", group)])
            .unwrap();
        let telemetry =
            crate::telemetry::Telemetry::start(store.clone(), 10, Duration::from_secs(86_400));
        let changes = Arc::new(FleetChanges::default());
        // As the server has it: every change applied through it is counted.
        let store: Arc<dyn Store> = Arc::new(crate::wakes::Publishing::new(
            store,
            crate::wakes::channel(),
            changes.clone(),
        ));
        let writer = CheckinWriter::start(store.clone(), telemetry, changes);
        Subject {
            _dir: dir,
            store,
            writer,
        }
    }

    fn checkin(at_ms: i64, nonce: &str) -> Checkin {
        Checkin {
            agent: "a1".into(),
            at_ms,
            acked_serial: 7,
            hostname: "h".into(),
            os_name: "Linux".into(),
            os_version: "6".into(),
            agent_version: "0.1.0".into(),
            tls_versions: vec!["TLSv1.3".into()],
            channel: "https".into(),
            server: "https://mgr1:443".into(),
            tls_version: Some("TLSv1.3".into()),
            tls_group: Some("X25519MLKEM768".into()),
            hello: Some("ab".into()),
            peer: Some("127.0.0.1".into()),
            nonce: Some(nonce.into()),
            trusted_cas: None,
            agreement_key: Some("k1".into()),
            reverted: None,
            reported_hello: None,
        }
    }

    fn last_seen(store: &Arc<dyn Store>) -> Option<i64> {
        store.agent("a1").unwrap().unwrap().last_checkin_ms
    }

    fn nonces(store: &Arc<dyn Store>) -> Vec<String> {
        let mut nonces: Vec<String> = store
            .recent_nonces(0)
            .unwrap()
            .into_iter()
            .map(|(_, nonce, _)| nonce)
            .collect();
        nonces.sort();
        nonces
    }

    const T0: i64 = 1_800_000_000_000;

    /// Which check-ins are touches (answered at once, written a moment later) and which are
    /// written before their answer: a table of check-ins, each against the one before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_check_in_that_says_nothing_new_is_a_touch() {
        let s = subject();
        let first = s.writer.record(checkin(T0, "n0")).await.unwrap().unwrap();
        assert!(first.record.is_some(), "the first check-in is written");
        assert_eq!(
            first.standing,
            Standing {
                group: first.record.as_ref().unwrap().group,
                serial: 7,
                refuses_serial: false
            }
        );
        // From another address, then acknowledging another serial, then with a hello.
        let moved = |at_ms, nonce| Checkin {
            peer: Some("127.0.0.2".into()),
            ..checkin(at_ms, nonce)
        };
        let acked = |at_ms, nonce| Checkin {
            acked_serial: 6,
            ..moved(at_ms, nonce)
        };
        let hello = |at_ms, nonce| Checkin {
            reported_hello: Some(("cd".into(), vec![1, 2])),
            ..acked(at_ms, nonce)
        };
        let cases: Vec<(&str, Checkin, bool)> = vec![
            ("the same facts", checkin(T0 + 1, "n1"), true),
            ("the same facts again", checkin(T0 + 2, "n2"), true),
            ("from another address", moved(T0 + 3, "n3"), false),
            ("the same as that", moved(T0 + 4, "n4"), true),
            ("another serial acknowledged", acked(T0 + 5, "n5"), false),
            ("a reported hello", hello(T0 + 6, "n6"), false),
            ("the same hello reported again", hello(T0 + 7, "n7"), false),
            ("back to the first facts", checkin(T0 + 8, "n8"), false),
            ("the first facts again", checkin(T0 + 9, "n9"), true),
        ];
        for (what, checkin, touch) in cases {
            let at_ms = checkin.at_ms;
            let recorded = s.writer.record(checkin).await.unwrap().unwrap();
            assert_eq!(recorded.record.is_none(), touch, "{what}");
            assert_eq!(recorded.standing.serial, 7, "{what}");
            if !touch {
                assert_eq!(last_seen(&s.store), Some(at_ms), "{what}: written at once");
            }
        }
        // The touches are written a moment later: the time moved forward, every nonce kept.
        assert_eq!(last_seen(&s.store), Some(T0 + 8));
        s.writer.flush();
        assert_eq!(last_seen(&s.store), Some(T0 + 9));
        let all: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        assert_eq!(nonces(&s.store), all);
    }

    /// A change to the fleet ends the touches: the next check-in is written, and answered
    /// with the new serial.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fleet_change_ends_the_touches() {
        let s = subject();
        s.writer.record(checkin(T0, "n0")).await.unwrap().unwrap();
        let touch = s
            .writer
            .record(checkin(T0 + 1, "n1"))
            .await
            .unwrap()
            .unwrap();
        assert!(touch.record.is_none());
        let group = touch.standing.group;
        s.store
            .apply(&ward_store::Change {
                tree_version: None,
                mutation: ward_store::Mutation::Nothing,
                bump_groups: vec![group],
                bump_agents: vec![],
                audit: ward_store::AuditEntry {
                    id: 0,
                    at_ms: T0,
                    actor: "test".into(),
                    action: "group.set".into(),
                    target: "My Company".into(),
                    before: None,
                    after: None,
                },
            })
            .unwrap();
        let bumped = s.store.agent("a1").unwrap().unwrap().serial;
        assert_ne!(bumped, 7);
        let after = s
            .writer
            .record(checkin(T0 + 2, "n2"))
            .await
            .unwrap()
            .unwrap();
        assert!(after.record.is_some(), "written after a change");
        assert_eq!(after.standing.serial, bumped);
        let again = s
            .writer
            .record(checkin(T0 + 3, "n3"))
            .await
            .unwrap()
            .unwrap();
        assert!(again.record.is_none(), "then touches again");
        assert_eq!(again.standing.serial, bumped);
    }

    /// A touch whose agent another server wrote meanwhile is not applied over it, and its
    /// agent's next check-in is written; touches still waiting are written when the writer
    /// is dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_touch_covers_up_nothing_and_none_is_left_behind() {
        let s = subject();
        s.writer.record(checkin(T0, "n0")).await.unwrap().unwrap();
        assert!(s
            .writer
            .record(checkin(T0 + 1, "n1"))
            .await
            .unwrap()
            .unwrap()
            .record
            .is_none());
        // Another server of the site records the agent, through another URL.
        s.store
            .record_checkin(&Checkin {
                server: "https://mgr2:443".into(),
                ..checkin(T0 + 2, "m2")
            })
            .unwrap();
        s.writer.flush();
        assert_eq!(last_seen(&s.store), Some(T0 + 2), "not covered up");
        let next = s
            .writer
            .record(checkin(T0 + 3, "n3"))
            .await
            .unwrap()
            .unwrap();
        assert!(next.record.is_some(), "written: its row said otherwise");
        assert!(s
            .writer
            .record(checkin(T0 + 4, "n4"))
            .await
            .unwrap()
            .unwrap()
            .record
            .is_none());
        let store = s.store.clone();
        drop(s.writer);
        assert_eq!(
            last_seen(&store),
            Some(T0 + 4),
            "written when the writer stopped"
        );
        assert_eq!(nonces(&store), ["m2", "n0", "n1", "n3", "n4"]);
    }
}
