//! Human-readable numbers shared by the table printer and the TUI.

use crate::model::Unit;

/// Bytes with a binary suffix, e.g. `4.1M`, `310K`, `12G`.
pub fn bytes(v: f64) -> String {
    const UNITS: [&str; 7] = ["B", "K", "M", "G", "T", "P", "E"];
    let mut v = v.max(0.0);
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 || v >= 100.0 {
        format!("{v:.0}{}", UNITS[i])
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

/// A value in its catalogue unit.
pub fn value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Bool => if v >= 1.0 { "yes" } else { "no" }.to_string(),
        Unit::Seconds => duration_secs(v),
        Unit::Millis => {
            if v < 10.0 {
                format!("{v:.2}ms")
            } else {
                format!("{v:.0}ms")
            }
        }
        Unit::Percent => format!("{v:.1}%"),
        Unit::Load => format!("{v:.2}"),
        Unit::Bytes => bytes(v),
        Unit::BytesPerSec => format!("{}/s", bytes(v)),
        Unit::Count => format!("{v:.0}"),
        Unit::Custom(label) => {
            let n = number(v);
            if label.is_empty() {
                n
            } else {
                format!("{n} {label}")
            }
        }
    }
}

/// A plain number as short as it can be read: integers without decimals, others with up
/// to three significant decimals (a check's value can be anything from 0.004 to 1e12).
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// `3d4h`, `5h12m`, `7m30s`, `42s`.
pub fn duration_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(512.0), "512B");
        assert_eq!(bytes(4.1 * 1024.0 * 1024.0), "4.1M");
        assert_eq!(bytes(310.0 * 1024.0), "310K");
        assert_eq!(value(Unit::Percent, 91.26), "91.3%");
        assert_eq!(duration_secs(3725.0), "1h2m");
        assert_eq!(value(Unit::Custom("jobs"), 42.0), "42 jobs");
        assert_eq!(value(Unit::Custom(""), 0.0125), "0.013");
        assert_eq!(value(Unit::Custom(""), 1234.56), "1234.6");
    }
}
