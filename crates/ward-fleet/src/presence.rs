//! Whether an agent is online, pure: one rule for the client list, its filters and anything
//! else that asks.
//!
//! - A push agent is online while the server holds its check-in, and for a short grace after
//!   one returned (it reconnects at once).
//! - A pull agent is online while its last check-in is within its interval, plus the
//!   randomisation window, plus a grace of half an interval (at least 1 s, at most 5 min) for
//!   a slow network or a busy server.
//!
//! - Either is given [`RECORDING_LAG`] more: a check-in that changes nothing is recorded
//!   that much later than it was answered (the server writes those in batches).
//!
//! So an agent that stops shows as offline within two intervals (plus its randomisation).

use std::time::Duration;

use crate::group::{Effective, Mode};

/// How much later than its answer a check-in may be recorded: the server writes those that
/// change nothing but the time in one batch each this often.
pub const RECORDING_LAG: Duration = Duration::from_secs(1);

/// The grace beyond the expected next check-in.
pub fn grace(interval: Duration) -> Duration {
    (interval / 2).clamp(Duration::from_secs(1), Duration::from_secs(300))
}

/// Whether an agent whose last check-in was at `last_checkin_ms` (`None`: never) and whose
/// check-in is `held` right now is online at `now_ms`, under its group's `effective` settings.
pub fn online(
    effective: &Effective,
    last_checkin_ms: Option<i64>,
    held: bool,
    now_ms: i64,
) -> bool {
    if held {
        return true;
    }
    let Some(last) = last_checkin_ms else {
        return false;
    };
    last >= since_ms(effective, now_ms)
}

/// How long after its last check-in an agent not held counts as online, under its group's
/// `effective` settings.
pub fn window(effective: &Effective) -> Duration {
    RECORDING_LAG
        + match effective.mode {
            Mode::Push => grace(effective.interval).min(Duration::from_secs(10)),
            Mode::Pull => effective.interval + effective.randomize + grace(effective.interval),
        }
}

/// The earliest last check-in (unix milliseconds) that leaves an agent not held online at
/// `now_ms`: what a store is asked to compare with.
pub fn since_ms(effective: &Effective, now_ms: i64) -> i64 {
    now_ms.saturating_sub(window(effective).as_millis().min(i64::MAX as u128) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn effective(mode: Mode, interval_s: u64, randomize_s: u64) -> Effective {
        Effective {
            server_list: "Default".into(),
            interval: Duration::from_secs(interval_s),
            randomize: Duration::from_secs(randomize_s),
            mode,
            policy: Value::Null,
            sources: [0; 5],
        }
    }

    #[test]
    fn the_rule_as_a_table() {
        let now = 1_000_000;
        // (mode, interval s, randomize s, seconds since the last check-in or None, held, online)
        type Row = (Mode, u64, u64, Option<i64>, bool, bool);
        let table: &[Row] = &[
            (Mode::Pull, 60, 0, Some(59), false, true),
            (Mode::Pull, 60, 0, Some(91), false, true),
            (Mode::Pull, 60, 0, Some(92), false, false),
            (Mode::Pull, 60, 30, Some(121), false, true),
            (Mode::Pull, 60, 30, Some(122), false, false),
            (Mode::Pull, 1, 0, Some(3), false, true),
            (Mode::Pull, 1, 0, Some(4), false, false),
            (Mode::Pull, 300, 0, None, false, false),
            (Mode::Push, 300, 0, Some(200), true, true),
            (Mode::Push, 300, 0, Some(5), false, true),
            (Mode::Push, 300, 0, Some(11), false, true),
            (Mode::Push, 300, 0, Some(12), false, false),
            (Mode::Push, 300, 0, None, true, true),
        ];
        for &(mode, interval, randomize, ago, held, expected) in table {
            let last = ago.map(|s| now - s * 1000);
            assert_eq!(
                online(&effective(mode, interval, randomize), last, held, now),
                expected,
                "{mode:?} every {interval}s+{randomize}s, last {ago:?}s ago, held {held}"
            );
        }
    }
}
