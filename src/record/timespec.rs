//! The times a user types for `--at`, `--since`, `--until` and the rewind prompt, and how
//! recorded times are shown. Wall-clock times are in the local time zone (the TZ
//! environment variable, else the system's), like the clock on the user's wall.
//!
//! Accepted: `now`; `-45m`, `-1h30m` (before `now`); `03:10`, `03:10:42` (the last such time
//! of day, today or yesterday); `2026-12-01 03:10[:42]`; RFC 3339 (`2026-12-01T03:10:42Z`).

use std::time::{Duration, SystemTime};

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

fn tz() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

fn to_system(t: Timestamp) -> SystemTime {
    SystemTime::from(t)
}

/// Parses a time; `now` is what relative times and bare times of day count from.
pub fn parse(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let s = text.trim();
    let bad = || {
        format!(
            "`{s}` is not a time (expected e.g. `03:10`, `2026-12-01 03:10`, `-45m` or `2026-12-01T03:10:42Z`)"
        )
    };
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(rest) = s.strip_prefix('-') {
        let d = humantime::parse_duration(rest.trim()).map_err(|_| bad())?;
        return now.checked_sub(d).ok_or_else(bad);
    }
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(to_system(t));
    }
    let tz = tz();
    if let Ok(dt) = s.replacen(' ', "T", 1).parse::<jiff::civil::DateTime>() {
        return dt
            .to_zoned(tz)
            .map(|z| to_system(z.timestamp()))
            .map_err(|_| bad());
    }
    if let Ok(time) = s.parse::<jiff::civil::Time>() {
        let now_ts = Timestamp::try_from(now).map_err(|_| bad())?;
        let today = now_ts.to_zoned(tz.clone()).date();
        let at = today.to_datetime(time).to_zoned(tz.clone()).map_err(|_| bad())?;
        let at = if at.timestamp() > now_ts {
            today
                .yesterday()
                .map_err(|_| bad())?
                .to_datetime(time)
                .to_zoned(tz)
                .map_err(|_| bad())?
        } else {
            at
        };
        return Ok(to_system(at.timestamp()));
    }
    Err(bad())
}

fn zoned(t: SystemTime) -> Option<Zoned> {
    Timestamp::try_from(t).ok().map(|ts| ts.to_zoned(tz()))
}

/// `03:10:42` in local time.
pub fn clock(t: SystemTime) -> String {
    zoned(t).map_or_else(|| "?".into(), |z| z.strftime("%H:%M:%S").to_string())
}

/// `2026-12-01 03:10:42` in local time.
pub fn full(t: SystemTime) -> String {
    zoned(t).map_or_else(|| "?".into(), |z| z.strftime("%Y-%m-%d %H:%M:%S %Z").to_string())
}

/// `-1h04m`, `-12s`: how long before `now` a time is.
pub fn ago(t: SystemTime, now: SystemTime) -> String {
    let (sign, d) = match now.duration_since(t) {
        Ok(d) => ("-", d),
        Err(e) => ("+", e.duration()),
    };
    let s = d.as_secs();
    if s < 60 {
        format!("{sign}{s}s")
    } else if s < 3600 {
        format!("{sign}{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{sign}{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{sign}{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// Rounds a duration for messages.
pub fn span_text(from: SystemTime, to: SystemTime) -> String {
    let d = to.duration_since(from).unwrap_or(Duration::ZERO);
    format!(
        "{} .. {} ({})",
        full(from),
        full(to),
        humantime::format_duration(Duration::from_secs(d.as_secs()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).expect("time")
    }

    #[test]
    fn forms() {
        // SAFETY of the test: TZ is read by jiff at each call; UTC keeps the figures plain.
        let now = at("2026-12-02T03:00:00Z");
        if tz() != TimeZone::UTC {
            return;
        }
        assert_eq!(parse("now", now), Ok(now));
        assert_eq!(parse("-45m", now), Ok(at("2026-12-02T02:15:00Z")));
        assert_eq!(parse("-1h30m", now), Ok(at("2026-12-02T01:30:00Z")));
        assert_eq!(parse("02:10", now), Ok(at("2026-12-02T02:10:00Z")));
        assert_eq!(
            parse("03:10:42", now),
            Ok(at("2026-12-01T03:10:42Z")),
            "later today: yesterday's"
        );
        assert_eq!(parse("2026-12-01 03:10", now), Ok(at("2026-12-01T03:10:00Z")));
        assert_eq!(parse("2026-12-01T03:10:42Z", now), Ok(at("2026-12-01T03:10:42Z")));
        assert!(parse("yesterday-ish", now).unwrap_err().contains("is not a time"));
        assert!(parse("-lots", now).is_err());
        assert_eq!(ago(at("2026-12-02T01:56:00Z"), now), "-1h04m");
        assert_eq!(ago(at("2026-12-02T02:59:48Z"), now), "-12s");
        assert_eq!(clock(at("2026-12-01T03:10:42Z")), "03:10:42");
    }
}
