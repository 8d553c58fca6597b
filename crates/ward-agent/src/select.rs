//! Server selection, pure: which server to try next.
//!
//! Priority 1 servers in random order, then priority 2, and so on. The agent sticks to the
//! last server that worked; after `return_after` of good contact on a lower priority it tries
//! the higher priorities again first. When every server failed, it backs off with jitter,
//! doubling up to a cap.

use std::time::Duration;

/// One server of the agent's list, with its priority (1 is first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub priority: u32,
    pub url: String,
    pub verify_certificate: bool,
}

/// The order in which to try `servers`. `shuffle` orders servers within one priority (the
/// caller passes a random permutation; tests pass a fixed one). `sticky` is the server that
/// worked last, tried first unless `prefer_higher` says it is time to look up the list again.
pub fn order(
    servers: &[Candidate],
    shuffle: &dyn Fn(&mut [Candidate]),
    sticky: Option<&str>,
    prefer_higher: bool,
) -> Vec<Candidate> {
    let mut priorities: Vec<u32> = servers.iter().map(|c| c.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let mut ordered = Vec::new();
    for priority in priorities {
        let mut level: Vec<Candidate> = servers
            .iter()
            .filter(|c| c.priority == priority)
            .cloned()
            .collect();
        shuffle(&mut level);
        ordered.extend(level);
    }
    if let Some(sticky) = sticky {
        if let Some(index) = ordered.iter().position(|c| c.url == sticky) {
            let last_good = ordered.remove(index);
            if prefer_higher {
                // Higher priorities first, then the one that worked, then the rest.
                let at = ordered
                    .iter()
                    .position(|c| c.priority >= last_good.priority)
                    .unwrap_or(ordered.len());
                ordered.insert(at, last_good);
            } else {
                ordered.insert(0, last_good);
            }
        }
    }
    ordered
}

/// How long to wait after `failures` rounds in which every server failed: doubling from
/// `base`, capped at `cap`, with `jitter` (0.0..1.0) taking off up to half.
pub fn backoff(failures: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let doubled = base.saturating_mul(1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX));
    let capped = doubled.min(cap);
    capped
        .mul_f64(1.0 - 0.5 * jitter.clamp(0.0, 1.0))
        .max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(priority: u32, url: &str) -> Candidate {
        Candidate {
            priority,
            url: url.into(),
            verify_certificate: true,
        }
    }

    fn urls(list: &[Candidate]) -> Vec<&str> {
        list.iter().map(|c| c.url.as_str()).collect()
    }

    /// (how a level is shuffled, the sticky server, time to look higher, the expected order)
    type Case<'a> = (
        &'a dyn Fn(&mut [Candidate]),
        Option<&'a str>,
        bool,
        Vec<&'a str>,
    );

    #[test]
    fn order_table() {
        let servers = vec![
            candidate(2, "http://a:8014"),
            candidate(1, "https://a:443"),
            candidate(1, "https://b:443"),
        ];
        let keep = |_: &mut [Candidate]| {};
        let reverse = |level: &mut [Candidate]| level.reverse();
        let cases: Vec<Case> = vec![
            (
                &keep,
                None,
                false,
                vec!["https://a:443", "https://b:443", "http://a:8014"],
            ),
            (
                &reverse,
                None,
                false,
                vec!["https://b:443", "https://a:443", "http://a:8014"],
            ),
            // Stick to what worked last.
            (
                &keep,
                Some("https://b:443"),
                false,
                vec!["https://b:443", "https://a:443", "http://a:8014"],
            ),
            (
                &keep,
                Some("http://a:8014"),
                false,
                vec!["http://a:8014", "https://a:443", "https://b:443"],
            ),
            // Time to go back up: priority 1 first again, then the one that worked.
            (
                &keep,
                Some("http://a:8014"),
                true,
                vec!["https://a:443", "https://b:443", "http://a:8014"],
            ),
            // A sticky server no longer in the list is ignored.
            (
                &keep,
                Some("https://gone:443"),
                false,
                vec!["https://a:443", "https://b:443", "http://a:8014"],
            ),
        ];
        for (shuffle, sticky, prefer_higher, expected) in cases {
            assert_eq!(
                urls(&order(&servers, shuffle, sticky, prefer_higher)),
                expected,
                "{sticky:?} {prefer_higher}"
            );
        }
    }

    #[test]
    fn backoff_doubles_caps_and_never_spins() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(0, base, cap, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(3, base, cap, 0.0), Duration::from_secs(8));
        assert_eq!(backoff(30, base, cap, 0.0), cap);
        assert_eq!(backoff(3, base, cap, 1.0), Duration::from_secs(4));
        assert!(backoff(0, Duration::ZERO, cap, 0.5) >= Duration::from_millis(100));
    }
}
