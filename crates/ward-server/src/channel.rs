//! What the server remembers of the agent channel between requests: its agreement keys,
//! derived agent keys, seen nonces, the settings already computed per (group, serial), and which push agents hold a
//! check-in right now. Owned here, held by the app state, used by the agent API (and harden
//! reads who is held).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use ward_proto::AgentKey;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// One server agreement key: the X25519 pair, its public half, and the public half's SHA-256
/// (hex): what `ward agent enroll --pin` compares and the store records per check-in.
#[derive(Clone)]
pub struct ServerKey {
    pub pair: ward_proto::KeyPair,
    pub public: Vec<u8>,
    pub sha256: Arc<str>,
}

impl ServerKey {
    pub fn new(pair: ward_proto::KeyPair) -> Result<ServerKey, openssl::error::ErrorStack> {
        let public = pair.public_bytes()?;
        let sha256 = ward_proto::hex(&openssl::sha::sha256(&public)).into();
        Ok(ServerKey {
            pair,
            public,
            sha256,
        })
    }

    /// The key an agent with `agent_public` derives with this server key.
    pub fn derive(&self, agent_public: &[u8]) -> Option<AgentKey> {
        AgentKey::for_server(&self.pair, &self.public, agent_public).ok()
    }
}

/// The server's agreement keys: the current one (`/agent/v1/hello` publishes it, enrollment
/// uses it) and, during a key rotation, the next one, which agents get in their settings and
/// sign with from then on. A check-in signed under either is accepted until the switch.
#[derive(Clone)]
pub struct Agreement {
    pub current: ServerKey,
    pub next: Option<ServerKey>,
    /// An aborted rotation's next key: accepted until no agent signs under it, never handed
    /// out (the settings hand the current key again).
    pub withdrawn: Option<ServerKey>,
}

impl Agreement {
    /// The current key, then the next one, then a withdrawn one.
    pub fn keys(&self) -> impl Iterator<Item = &ServerKey> {
        std::iter::once(&self.current)
            .chain(self.next.as_ref())
            .chain(self.withdrawn.as_ref())
    }

    /// The key every agent's settings hand it (hex of the public key): the next one during a
    /// rotation, the current one while an abort withdraws a key (agents that adopted it go
    /// back), none otherwise.
    pub fn handed(&self) -> String {
        match (&self.next, &self.withdrawn) {
            (Some(next), _) => ward_proto::hex(&next.public),
            (None, Some(_)) => ward_proto::hex(&self.current.public),
            (None, None) => String::new(),
        }
    }
}

/// An agent's key as the server last verified it: the key, the server key it was derived
/// with, and the agent's public key (to derive it with another server key).
#[derive(Clone)]
pub struct KnownKey {
    pub key: AgentKey,
    pub server_key: Arc<str>,
    pub agent_public: Arc<[u8]>,
}

/// Per-agent keys derived so far.
#[derive(Default)]
pub struct AgentKeys(Mutex<HashMap<String, KnownKey>>);

impl AgentKeys {
    pub fn get(&self, agent: &str) -> Option<KnownKey> {
        lock(&self.0).get(agent).cloned()
    }

    pub fn insert(&self, agent: &str, key: KnownKey) {
        lock(&self.0).insert(agent.to_string(), key);
    }

    /// Forgets retired agents' keys.
    pub fn remove(&self, agents: &[String]) {
        let mut keys = lock(&self.0);
        for agent in agents {
            keys.remove(agent);
        }
    }
}

/// Replay protection for the agent API: nonces per agent id, and per enrolling key.
#[derive(Default)]
pub struct Replays(Mutex<ward_proto::ReplayCache>);

impl Replays {
    pub fn with<T>(&self, f: impl FnOnce(&mut ward_proto::ReplayCache) -> T) -> T {
        f(&mut lock(&self.0))
    }
}

/// The check-in answer that hands a group's settings at a serial (`CheckinResponse` with
/// them, encoded), by (group, serial), valid for one fleet version: a change that wakes
/// 15,000 held check-ins computes and encodes each group's answer once; each agent's answer
/// differs only in its MAC.
#[derive(Default)]
pub struct SettingsCache(Mutex<CacheEntries>);

#[derive(Default)]
struct CacheEntries {
    version: u64,
    entries: HashMap<(i64, i64), Arc<str>>,
}

/// The most entries kept; beyond it the cache starts over.
const SETTINGS_CACHE_ENTRIES: usize = 10_000;

impl SettingsCache {
    pub fn get(&self, version: u64, group: i64, serial: i64) -> Option<Arc<str>> {
        let cache = lock(&self.0);
        (cache.version == version)
            .then(|| cache.entries.get(&(group, serial)).cloned())
            .flatten()
    }

    /// Keeps `answer` computed under `version`. Only forward: an answer computed under an
    /// older version never replaces newer entries.
    pub fn insert(&self, version: u64, group: i64, serial: i64, answer: Arc<str>) {
        let mut cache = lock(&self.0);
        if version > cache.version || cache.entries.len() >= SETTINGS_CACHE_ENTRIES {
            cache.version = version;
            cache.entries.clear();
        }
        if version == cache.version {
            cache.entries.insert((group, serial), answer);
        }
    }
}

/// How many check-ins were shed lately (a 503 for want of room), counted in 5-second buckets:
/// this bucket and the one before, so the count covers the last 5 to 10 seconds.
pub struct ShedLoad {
    origin: std::time::Instant,
    buckets: Mutex<ShedBuckets>,
}

impl Default for ShedLoad {
    fn default() -> ShedLoad {
        ShedLoad {
            origin: std::time::Instant::now(),
            buckets: Mutex::default(),
        }
    }
}

#[derive(Default)]
struct ShedBuckets {
    bucket: u64,
    this: u64,
    last: u64,
}

/// The seconds of one bucket.
const SHED_BUCKET_S: u64 = 5;

impl ShedLoad {
    /// Counts one shed now; how many were shed in this bucket and the one before, this one
    /// included.
    pub fn shed(&self) -> u64 {
        self.shed_at(self.origin.elapsed().as_secs())
    }

    /// [`ShedLoad::shed`] at `now_s` seconds since its origin.
    fn shed_at(&self, now_s: u64) -> u64 {
        let mut buckets = lock(&self.buckets);
        let bucket = now_s / SHED_BUCKET_S;
        if bucket != buckets.bucket {
            buckets.last = if bucket == buckets.bucket + 1 {
                buckets.this
            } else {
                0
            };
            buckets.this = 0;
            buckets.bucket = bucket;
        }
        buckets.this += 1;
        buckets.this + buckets.last
    }
}

/// Refused connections answered a second (see [`RefusalBudget`]): at about 0.35 ms of a core
/// each, a sixth of one core at most; as many as a herd's spread aims to let back a second
/// (`agent_api::SHED_RATE`), so the answers keep up with what they spread.
pub const REFUSALS_ANSWERED_PER_SECOND: u64 = 500;

/// How many connections refused at a cap are answered a second, and how many at once after a
/// quiet spell: a token bucket. An answer costs a whole TLS handshake (and, for a check-in, its
/// MAC check and a signed 503 whose wait spreads the herd out), about as much as a check-in
/// served. Beyond this budget a refused connection is closed at once, at the cost of an accept,
/// and its agent backs off on its own: so an overload spends at most a small, fixed share of the
/// server on refusals, and the check-ins it serves keep the rest.
pub struct RefusalBudget {
    origin: std::time::Instant,
    /// Answers a second, and the most kept for a burst.
    rate: u64,
    state: Mutex<Bucket>,
}

/// Tokens in thousandths, and when they were last counted (milliseconds since the origin).
struct Bucket {
    milli_tokens: u64,
    at_ms: u64,
}

impl RefusalBudget {
    /// `rate` answers a second, starting full (one second's worth).
    pub fn new(rate: u64) -> RefusalBudget {
        RefusalBudget {
            origin: std::time::Instant::now(),
            rate,
            state: Mutex::new(Bucket {
                milli_tokens: rate * 1000,
                at_ms: 0,
            }),
        }
    }

    /// Whether a refused connection may be answered now (the answer is taken from the budget).
    pub fn take(&self) -> bool {
        let now_ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.take_at(now_ms)
    }

    /// [`RefusalBudget::take`] at `now_ms` milliseconds since its origin.
    fn take_at(&self, now_ms: u64) -> bool {
        let mut bucket = lock(&self.state);
        // A rate of n a second is n thousandths of a token a millisecond.
        let earned = now_ms
            .saturating_sub(bucket.at_ms)
            .saturating_mul(self.rate);
        bucket.milli_tokens = bucket
            .milli_tokens
            .saturating_add(earned)
            .min(self.rate * 1000);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        match bucket.milli_tokens.checked_sub(1000) {
            Some(left) => {
                bucket.milli_tokens = left;
                true
            }
            None => false,
        }
    }
}

/// The longest a new connection waits for held check-ins' answers before its handshake.
pub const DELIVERIES_FIRST: std::time::Duration = std::time::Duration::from_secs(1);

/// Held check-ins that a change has woken and that are not answered yet. While there are any,
/// a new connection to an agent listener waits before its handshake (up to
/// [`DELIVERIES_FIRST`]): the server answers every held agent a change concerns first, and
/// takes the handshakes of those that come back after, instead of interleaving them (one
/// handshake costs as much as several answers, so 15,000 answers would otherwise stretch over
/// seconds).
#[derive(Default)]
pub struct Deliveries {
    pending: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One held check-in being answered; counted until dropped.
pub struct Delivering<'a>(&'a Deliveries);

impl Drop for Delivering<'_> {
    fn drop(&mut self) {
        if self.0.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Deliveries {
    /// A woken check-in starts its answer.
    pub fn start(&self) -> Delivering<'_> {
        self.pending.fetch_add(1, Ordering::AcqRel);
        Delivering(self)
    }

    /// Answers under way.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Returns once no answer is under way, or after `longest`.
    pub async fn wait(&self, longest: std::time::Duration) {
        // Every agent connection asks: when nothing is under way, no registration either.
        if self.pending() == 0 {
            return;
        }
        let deadline = tokio::time::Instant::now() + longest;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the count is read: a last answer in between still wakes it.
            notified.as_mut().enable();
            if self.pending() == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

/// Push agents whose check-in the server holds right now: connected, so not silent. One held
/// check-in per agent: a newer one (the agent reconnected, behind a NAT that rebound it, or
/// after a restart) supersedes the older, which returns at once, so an agent never ties up
/// more than one connection however it reaches the server.
#[derive(Default)]
pub struct HeldAgents(Mutex<HashMap<String, Holding>>);

struct Holding {
    count: u32,
    /// The generation of the newest hold.
    latest: u64,
    superseded: Arc<tokio::sync::Notify>,
}

impl HeldAgents {
    /// Marks `agent` as held while the guard lives, superseding its older holds.
    pub fn hold(&self, agent: &str) -> Held<'_> {
        let mut held = lock(&self.0);
        let holding = held.entry(agent.to_string()).or_insert_with(|| Holding {
            count: 0,
            latest: 0,
            superseded: Arc::default(),
        });
        holding.count += 1;
        holding.latest += 1;
        holding.superseded.notify_waiters();
        Held {
            agents: self,
            agent: agent.to_string(),
            generation: holding.latest,
            superseded: holding.superseded.clone(),
        }
    }

    pub fn snapshot(&self) -> HashSet<String> {
        lock(&self.0).keys().cloned().collect()
    }

    pub fn is_held(&self, agent: &str) -> bool {
        lock(&self.0).contains_key(agent)
    }

    /// How many agents are held right now.
    pub fn count(&self) -> usize {
        lock(&self.0).len()
    }
}

pub struct Held<'a> {
    agents: &'a HeldAgents,
    agent: String,
    generation: u64,
    superseded: Arc<tokio::sync::Notify>,
}

impl Held<'_> {
    fn is_superseded(&self) -> bool {
        lock(&self.agents.0)
            .get(&self.agent)
            .is_some_and(|holding| holding.latest != self.generation)
    }

    /// Resolves once a newer check-in of the same agent is held.
    pub async fn superseded(&self) {
        loop {
            let notified = self.superseded.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_superseded() {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut held = lock(&self.agents.0);
        if let Some(holding) = held.get_mut(&self.agent) {
            holding.count -= 1;
            if holding.count == 0 {
                held.remove(&self.agent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sheds_are_counted_over_this_bucket_and_the_one_before() {
        let load = ShedLoad::default();
        // (seconds, count it must return)
        let table = [
            (0, 1),
            (1, 2),
            (4, 3),
            (5, 4),  // a new bucket: 3 before, 1 now
            (9, 5),  // still the second bucket
            (10, 3), // a third: the first is forgotten, 2 before, 1 now
            (30, 1), // buckets skipped: nothing before
        ];
        for (now_s, expected) in table {
            assert_eq!(load.shed_at(now_s), expected, "at {now_s} s");
        }
    }

    #[test]
    fn refusals_are_answered_within_the_budget_and_it_refills_with_time() {
        let budget = RefusalBudget::new(2);
        // (milliseconds, answered?)
        let table = [
            (0, true),     // full: two a second, two at once
            (0, true),     //
            (0, false),    // spent
            (499, false),  // 0.998 of a token earned
            (500, true),   // one whole
            (500, false),  //
            (5000, true),  // a long quiet spell refills to the burst, no more
            (5000, true),  //
            (5000, false), //
            (4000, false), // a clock read late earns nothing and takes nothing back
            (5500, true),  //
        ];
        for (at_ms, expected) in table {
            assert_eq!(budget.take_at(at_ms), expected, "at {at_ms} ms");
        }
        let none = RefusalBudget::new(0);
        assert!(
            !none.take_at(0) && !none.take_at(60_000),
            "a zero budget answers nobody"
        );
    }

    /// A connection waits while answers are under way, and goes on when the last one is done,
    /// or when its longest wait has passed.
    #[tokio::test]
    async fn a_handshake_waits_for_the_answers_under_way_and_no_longer_than_told() {
        let deliveries = Arc::new(Deliveries::default());
        let long = Duration::from_secs(30);
        tokio::time::timeout(Duration::from_secs(5), deliveries.wait(long))
            .await
            .expect("nothing under way: no wait");
        let first = deliveries.start();
        let second = deliveries.start();
        let waiting = {
            let deliveries = deliveries.clone();
            tokio::spawn(async move { deliveries.wait(long).await })
        };
        drop(first);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "one answer is still under way");
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the last answer ends the wait")
            .unwrap();
        let _stuck = deliveries.start();
        let started = std::time::Instant::now();
        deliveries.wait(Duration::from_millis(100)).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(deliveries.pending(), 1);
    }

    #[test]
    fn a_held_agent_stays_held_until_its_last_check_in_ends() {
        let held = HeldAgents::default();
        let first = held.hold("a");
        let second = held.hold("a");
        drop(first);
        assert!(held.is_held("a"));
        drop(second);
        assert!(!held.is_held("a"));
        assert!(held.snapshot().is_empty());
    }

    /// A newer hold of the same agent supersedes the older (which returns), not another
    /// agent's.
    #[tokio::test]
    async fn a_newer_check_in_of_the_same_agent_supersedes_the_held_one() {
        let held = HeldAgents::default();
        let first = held.hold("a");
        let other = held.hold("b");
        let quiet = tokio::time::timeout(Duration::from_millis(50), first.superseded()).await;
        assert!(quiet.is_err(), "nothing newer yet");
        let second = held.hold("a");
        tokio::time::timeout(Duration::from_secs(5), first.superseded())
            .await
            .expect("superseded");
        let quiet = tokio::time::timeout(Duration::from_millis(50), second.superseded()).await;
        assert!(quiet.is_err(), "the newest is not superseded");
        let quiet = tokio::time::timeout(Duration::from_millis(50), other.superseded()).await;
        assert!(quiet.is_err(), "another agent's hold is not");
        assert_eq!(held.count(), 2);
        drop((first, second, other));
        assert_eq!(held.count(), 0);
    }
}
