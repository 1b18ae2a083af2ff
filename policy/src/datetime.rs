//! UTC timestamps as Cedar `datetime` strings (`2026-11-22T10:15:00.000Z`) and back.
//!
//! Only the one shape Portcullis writes is parsed: `YYYY-MM-DDThh:mm:ss[.SSS]Z`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from 1970-01-01 to 10000-01-01.
const YEAR_10000: u64 = 253_402_300_800;

/// Whether Cedar's `datetime(...)` can represent `time`: the years 1970 to
/// 9999 (Cedar reads exactly four year digits).
pub(crate) fn in_cedar_range(time: SystemTime) -> bool {
    time.duration_since(UNIX_EPOCH)
        .is_ok_and(|since_epoch| since_epoch.as_secs() < YEAR_10000)
}

/// Formats `time` for Cedar's `datetime(...)`, or `None` when
/// [`in_cedar_range`] is false.
pub(crate) fn format_utc(time: SystemTime) -> Option<String> {
    if !in_cedar_range(time) {
        return None;
    }
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    let seconds = i64::try_from(since_epoch.as_secs()).ok()?;
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    ))
}

/// Parses `YYYY-MM-DDThh:mm:ss[.SSS]Z` (UTC, year 1970 or later).
pub(crate) fn parse_utc(text: &str) -> Option<SystemTime> {
    let body = text.strip_suffix('Z')?;
    let (date, clock) = body.split_once('T')?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = number(date_parts.next()?, 4)?;
    let month: i64 = number(date_parts.next()?, 2)?;
    let day: i64 = number(date_parts.next()?, 2)?;
    let (clock, millis) = match clock.split_once('.') {
        Some((clock, millis)) => (clock, number(millis, 3)?),
        None => (clock, 0),
    };
    let mut clock_parts = clock.splitn(3, ':');
    let hour: i64 = number(clock_parts.next()?, 2)?;
    let minute: i64 = number(clock_parts.next()?, 2)?;
    let second: i64 = number(clock_parts.next()?, 2)?;
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid || year < 1970 {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let since_epoch = Duration::from_secs(u64::try_from(seconds).ok()?)
        + Duration::from_millis(u64::try_from(millis).ok()?);
    UNIX_EPOCH.checked_add(since_epoch)
}

/// Parses exactly `width` ASCII digits.
fn number(text: &str, width: usize) -> Option<i64> {
    if text.len() != width || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_cedar_datetime_text() {
        for text in [
            "1970-01-01T00:00:00.000Z",
            "2000-02-29T23:59:59.999Z",
            "2026-11-22T10:15:00.000Z",
            "2100-03-01T00:00:00.001Z",
            "9999-12-31T23:59:59.999Z",
        ] {
            let parsed = parse_utc(text);
            assert_eq!(parsed.and_then(format_utc).as_deref(), Some(text));
        }
        assert_eq!(
            parse_utc("2026-11-22T10:15:00Z")
                .and_then(format_utc)
                .as_deref(),
            Some("2026-11-22T10:15:00.000Z")
        );
        let after_9999 =
            parse_utc("9999-12-31T23:59:59Z").map(|time| time + Duration::from_secs(1));
        assert_eq!(after_9999.and_then(format_utc), None);
        assert_eq!(format_utc(UNIX_EPOCH - Duration::from_secs(1)), None);
        assert_eq!(
            UNIX_EPOCH
                .checked_add(Duration::from_secs(YEAR_10000 - 1))
                .and_then(format_utc)
                .as_deref(),
            Some("9999-12-31T23:59:59.000Z")
        );
    }

    #[test]
    fn rejects_other_shapes() {
        for text in [
            "2026-11-22",
            "2026-11-22T10:15:00+01:00",
            "2026-02-30T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-1-22T10:15:00Z",
        ] {
            assert_eq!(parse_utc(text), None, "{text}");
        }
    }
}
