//! UTC timestamps as text, without a date crate: the conf editor's marker lines and the
//! RFC 3339 times of the CLI's JSON.

use std::time::SystemTime;

/// `2026-11-28 15:04:05 UTC`. Hand-rolled (days to civil date, H. Hinnant's algorithm) to
/// avoid a date crate for one line of text.
pub fn format_utc(time: SystemTime) -> String {
    let (year, month, day, hour, minute, second) = utc_fields(time);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} UTC")
}

pub fn utc_fields(time: SystemTime) -> (i64, u32, u32, u64, u64, u64) {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-11-28T15:04:05Z`.
pub fn format_rfc3339(time: SystemTime) -> String {
    let (year, month, day, hour, minute, second) = utc_fields(time);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_formatting() {
        let cases = [
            (0, "1970-01-01 00:00:00 UTC"),
            (951_782_400, "2000-02-29 00:00:00 UTC"),
            (1_795_000_000, "2026-11-18 11:06:40 UTC"),
            (4_102_444_799, "2099-12-31 23:59:59 UTC"),
        ];
        for (secs, expected) in cases {
            let time = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(format_utc(time), expected);
            assert_eq!(
                format_rfc3339(time),
                expected.replace(' ', "T").replace("TUTC", "Z")
            );
        }
    }
}
