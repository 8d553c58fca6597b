//! Who is calling the admin API: the local admin token, or a session from `POST /api/v1/login`
//! (argon2id passwords). Failed logins are limited per account and per address.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Read only.
    Auditor,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// The SHA-256 of the session token the caller presented (`None` for the local admin
    /// token): what a logout ends.
    pub session: Option<String>,
}

/// The name the local admin token acts under in the audit log.
pub const LOCAL_ADMIN: &str = "local-admin";

/// The audit log names agents `agent:ID`; any name with a colon is kept for such actors.
pub const ACTOR_KIND_SEPARATOR: char = ':';

/// Why `name` cannot be an account: the audit log uses it (or a name that looks like it) for
/// an actor that is not an account, so an account of that name could pass its changes off
/// as theirs. `None`: it can be.
pub fn reserved_actor(name: &str) -> Option<String> {
    if name.eq_ignore_ascii_case(LOCAL_ADMIN) {
        return Some(format!(
            "'{name}' is how the audit log names the local admin token; choose another name"
        ));
    }
    if name.contains(ACTOR_KIND_SEPARATOR) {
        return Some(format!(
            "an account name cannot contain '{ACTOR_KIND_SEPARATOR}': the audit log names other \
             actors that way (agent:ID)"
        ));
    }
    None
}

/// Longest user name a login takes (account names are at most 64 characters).
pub const MAX_USER_CHARS: usize = 64;

/// How long a login session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    openssl::rand::rand_bytes(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A random bearer token (hex) and its SHA-256, which is all the store keeps.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes).expect("the system has randomness");
    let token = ward_proto::hex(&bytes);
    let hash = sha256_hex(&token);
    (token, hash)
}

pub use ward_proto::encoding::sha256_hex;

/// Failed logins in a sliding window, per (account, address) and per address (IPv6 by /64),
/// never per account alone: a stranger who fails from their own address slows only
/// themselves, never the account's owner elsewhere (nor the local admin token, which does
/// not log in). Past the limit, each further try waits longer: 2 s, 4 s, 8 s ... up to the
/// window. Attempts still being checked count too, so parallel guesses cannot slip past.
pub struct LoginLimiter {
    window: Duration,
    per_pair: usize,
    per_address: usize,
    pairs: HashMap<(String, IpAddr), Tries>,
    addresses: HashMap<IpAddr, Tries>,
}

/// Recent failures and attempts in flight, for one (account, address) or one address.
#[derive(Default)]
struct Tries {
    failures: VecDeque<Instant>,
    in_flight: usize,
}

/// Beyond this many tracked keys, expired entries are dropped and new keys are not tracked
/// (their address still is), so a flood of made-up names cannot reset anyone's throttle.
const MAX_TRACKED: usize = 100_000;

/// IPv4 as is; IPv6 by its /64, which one host usually controls whole.
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    }
}

impl LoginLimiter {
    /// `per_pair` failures of one account from one address, or `per_address` from one
    /// address, within `window`, and the next try waits.
    pub fn new(window: Duration, per_pair: usize, per_address: usize) -> LoginLimiter {
        LoginLimiter {
            window,
            per_pair,
            per_address,
            pairs: HashMap::new(),
            addresses: HashMap::new(),
        }
    }

    /// How long `tries` must still wait: nothing below `limit`; past it 2 s after the last
    /// failure, doubling with each further failure, at most the window.
    fn busy(tries: &mut Tries, now: Instant, window: Duration, limit: usize) -> Option<Duration> {
        while tries
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            tries.failures.pop_front();
        }
        let count = tries.failures.len() + tries.in_flight;
        if count < limit {
            return None;
        }
        let Some(last) = tries.failures.back() else {
            // Only attempts in flight: wait for them.
            return Some(Duration::from_secs(1));
        };
        let excess = (tries.failures.len() + 1).saturating_sub(limit).min(16) as u32;
        let delay = Duration::from_secs(1u64 << excess).min(window);
        let since = now.duration_since(*last);
        if tries.in_flight > 0 && tries.failures.len() + tries.in_flight > limit {
            return Some(delay.saturating_sub(since).max(Duration::from_secs(1)));
        }
        (since < delay).then(|| delay - since)
    }

    fn prune<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Tries>, now: Instant, window: Duration) {
        map.retain(|_, tries| {
            tries.in_flight > 0
                || tries
                    .failures
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
        });
    }

    /// Starts a login attempt: `Err(wait)` when this account from this address, or this
    /// address, must wait.
    pub fn begin(&mut self, account: &str, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let (window, address) = (self.window, address_key(address));
        if self.pairs.len() >= MAX_TRACKED {
            Self::prune(&mut self.pairs, now, window);
        }
        if self.addresses.len() >= MAX_TRACKED {
            Self::prune(&mut self.addresses, now, window);
        }
        let pair = (account.to_string(), address);
        let mut wait = None;
        if let Some(tries) = self.pairs.get_mut(&pair) {
            wait = wait.max(Self::busy(tries, now, window, self.per_pair));
        }
        if let Some(tries) = self.addresses.get_mut(&address) {
            wait = wait.max(Self::busy(tries, now, window, self.per_address));
        }
        if let Some(wait) = wait {
            return Err(wait);
        }
        if self.pairs.len() < MAX_TRACKED || self.pairs.contains_key(&pair) {
            self.pairs.entry(pair).or_default().in_flight += 1;
        }
        if self.addresses.len() < MAX_TRACKED || self.addresses.contains_key(&address) {
            self.addresses.entry(address).or_default().in_flight += 1;
        }
        Ok(())
    }

    /// Ends an attempt begun with [`LoginLimiter::begin`]; a failure counts for the window.
    pub fn finish(&mut self, account: &str, address: IpAddr, now: Instant, failed: bool) {
        let address = address_key(address);
        let pair = (account.to_string(), address);
        for tries in [self.pairs.get_mut(&pair)].into_iter().flatten() {
            tries.in_flight = tries.in_flight.saturating_sub(1);
            if failed {
                tries.failures.push_back(now);
            }
        }
        for tries in [self.addresses.get_mut(&address)].into_iter().flatten() {
            tries.in_flight = tries.in_flight.saturating_sub(1);
            if failed {
                tries.failures.push_back(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(hash, hash_password("correct horse").unwrap(), "salted");
    }

    #[test]
    fn a_stranger_slows_only_themselves_and_the_delay_grows() {
        let mut limiter = LoginLimiter::new(Duration::from_secs(300), 3, 5);
        let start = Instant::now();
        let attacker: IpAddr = "127.0.0.1".parse().unwrap();
        let owner: IpAddr = "127.0.0.2".parse().unwrap();
        let fail = |limiter: &mut LoginLimiter, who: &str, from: IpAddr, at: Instant| {
            limiter.begin(who, from, at).unwrap();
            limiter.finish(who, from, at, true);
        };
        for _ in 0..3 {
            fail(&mut limiter, "alice", attacker, start);
        }
        // The stranger waits; alice from her own address does not.
        assert_eq!(
            limiter.begin("alice", attacker, start),
            Err(Duration::from_secs(2))
        );
        assert!(limiter.begin("alice", owner, start).is_ok());
        limiter.finish("alice", owner, start, false);
        // Each further failure doubles the wait: 2 s, then 4 s, then 8 s.
        let mut at = start;
        for expected in [4, 8] {
            at += Duration::from_secs(expected / 2);
            fail(&mut limiter, "alice", attacker, at);
            assert_eq!(
                limiter.begin("alice", attacker, at),
                Err(Duration::from_secs(expected))
            );
        }
        // Five failures from one address slow everyone there, nobody elsewhere.
        assert!(limiter.begin("dave", attacker, at).is_err());
        assert!(limiter.begin("dave", owner, at).is_ok());
        limiter.finish("dave", owner, at, false);
        // The window passes.
        let much_later = at + Duration::from_secs(301);
        assert!(limiter.begin("alice", attacker, much_later).is_ok());
    }

    #[test]
    fn the_delay_never_exceeds_the_window() {
        let mut limiter = LoginLimiter::new(Duration::from_secs(60), 1, 1000);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let mut at = Instant::now();
        for _ in 0..40 {
            match limiter.begin("x", a, at) {
                Ok(()) => limiter.finish("x", a, at, true),
                Err(wait) => {
                    assert!(wait <= Duration::from_secs(60), "{wait:?}");
                    at += wait;
                }
            }
        }
    }

    #[test]
    fn parallel_attempts_count_before_they_finish() {
        let mut limiter = LoginLimiter::new(Duration::from_secs(300), 3, 100);
        let now = Instant::now();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.begin("eve", a, now).is_ok());
        }
        assert!(
            limiter.begin("eve", a, now).is_err(),
            "a fourth guess while three are checked"
        );
        for _ in 0..3 {
            limiter.finish("eve", a, now, false);
        }
        assert!(
            limiter.begin("eve", a, now).is_ok(),
            "successful attempts leave no mark"
        );
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let mut limiter = LoginLimiter::new(Duration::from_secs(300), 100, 2);
        let now = Instant::now();
        for host in ["2001:db8::1", "2001:db8::2"] {
            let ip: IpAddr = host.parse().unwrap();
            limiter.begin("x", ip, now).unwrap();
            limiter.finish("x", ip, now, true);
        }
        let same_64: IpAddr = "2001:db8::ffff".parse().unwrap();
        let other_64: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(limiter.begin("y", same_64, now).is_err());
        assert!(limiter.begin("y", other_64, now).is_ok());
    }

    #[test]
    fn names_the_audit_log_uses_for_other_actors_are_no_account_names() {
        let cases = [
            ("alice", false),
            ("local-admin", true),
            ("Local-Admin", true),
            ("agent:7f3a", true),
            ("agent", false),
            ("system:renewal", true),
            ("local-admin2", false),
        ];
        for (name, reserved) in cases {
            assert_eq!(reserved_actor(name).is_some(), reserved, "{name}");
        }
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (token, hash) = new_token();
        assert_eq!(token.len(), 64);
        assert_eq!(hash, sha256_hex(&token));
        assert_ne!(new_token().0, token);
    }
}
