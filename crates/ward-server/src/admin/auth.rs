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
}

/// The name the local admin token acts under in the audit log.
pub const LOCAL_ADMIN: &str = "local-admin";

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
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let hash = sha256_hex(&token);
    (token, hash)
}

pub fn sha256_hex(text: &str) -> String {
    openssl::sha::sha256(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Failed logins in a sliding window, per account and per address.
pub struct LoginLimiter {
    window: Duration,
    per_account: usize,
    per_address: usize,
    accounts: HashMap<String, VecDeque<Instant>>,
    addresses: HashMap<IpAddr, VecDeque<Instant>>,
}

impl LoginLimiter {
    pub fn new(window: Duration, per_account: usize, per_address: usize) -> LoginLimiter {
        LoginLimiter {
            window,
            per_account,
            per_address,
            accounts: HashMap::new(),
            addresses: HashMap::new(),
        }
    }

    fn recent(list: &mut VecDeque<Instant>, now: Instant, window: Duration) -> usize {
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            list.pop_front();
        }
        list.len()
    }

    /// `Some(wait)` when this account or address has failed too often lately.
    pub fn blocked(&mut self, account: &str, address: IpAddr, now: Instant) -> Option<Duration> {
        let window = self.window;
        let mut wait = None;
        if let Some(list) = self.accounts.get_mut(account) {
            if Self::recent(list, now, window) >= self.per_account {
                wait = list
                    .front()
                    .map(|t| window.saturating_sub(now.duration_since(*t)));
            }
        }
        if let Some(list) = self.addresses.get_mut(&address) {
            if Self::recent(list, now, window) >= self.per_address {
                let address_wait = list
                    .front()
                    .map(|t| window.saturating_sub(now.duration_since(*t)));
                wait = wait.max(address_wait);
            }
        }
        wait
    }

    pub fn failed(&mut self, account: &str, address: IpAddr, now: Instant) {
        // Bound the memory a flood of made-up account names can take.
        if self.accounts.len() > 100_000 {
            self.accounts.clear();
        }
        if self.addresses.len() > 100_000 {
            self.addresses.clear();
        }
        self.accounts
            .entry(account.to_string())
            .or_default()
            .push_back(now);
        self.addresses.entry(address).or_default().push_back(now);
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
    fn limiter_blocks_per_account_and_per_address_then_forgets() {
        let mut limiter = LoginLimiter::new(Duration::from_secs(300), 3, 5);
        let start = Instant::now();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.blocked("alice", a, start), None);
            limiter.failed("alice", a, start);
        }
        // Alice is blocked from any address; others from this address are not (yet).
        assert_eq!(
            limiter.blocked("alice", b, start),
            Some(Duration::from_secs(300))
        );
        assert_eq!(limiter.blocked("bob", a, start), None);
        limiter.failed("bob", a, start);
        limiter.failed("carol", a, start);
        // Five failures from one address block everyone there.
        assert!(limiter.blocked("dave", a, start).is_some());
        assert_eq!(limiter.blocked("dave", b, start), None);
        // The window passes.
        let later = start + Duration::from_secs(301);
        assert_eq!(limiter.blocked("alice", a, later), None);
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (token, hash) = new_token();
        assert_eq!(token.len(), 64);
        assert_eq!(hash, sha256_hex(&token));
        assert_ne!(new_token().0, token);
    }
}
