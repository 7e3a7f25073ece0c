//! The output parsers of checks: the first number (`number`), Nagios plugin output with
//! perfdata (`nagios`) and Prometheus exposition text (`prometheus`), and the verdict on one
//! run (status, message, values) from its exit and output. Pure functions: output is
//! untrusted and none of this may panic.

use std::time::Duration;

use super::Format;

/// How one run of a check ended, as the runner saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The command exited with this status.
    Code(u32),
    /// The command was killed by a signal it did not get from lookout.
    Signal(String),
    /// Still running at the timeout: killed with everything it started.
    TimedOut(Duration),
    /// Printed more than the limit: killed.
    TooMuchOutput(usize),
    /// Could not be started or followed (spawn error, connection lost).
    Failed(String),
}

/// What one run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub exit: Exit,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Nagios states, which every format's status uses.
pub const OK: u8 = 0;
pub const UNKNOWN: u8 = 3;

/// Longest message kept (characters).
pub const MAX_MESSAGE: usize = 200;
/// Most values one run may report (a Prometheus endpoint can print thousands of series).
pub const MAX_VALUES: usize = 2000;

/// The verdict on one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub status: u8,
    /// One line, sanitized and bounded.
    pub message: String,
    /// (instance, value) in output order.
    pub values: Vec<(String, f64)>,
}

/// Judges one run: status, message and values from its exit and output.
pub fn judge(format: Format, outcome: &Outcome) -> Verdict {
    let unknown = |message: String| Verdict {
        status: UNKNOWN,
        message: bound(&message),
        values: Vec::new(),
    };
    let stderr_line = first_line(&String::from_utf8_lossy(&outcome.stderr));
    let with_stderr = |m: String| {
        if stderr_line.is_empty() {
            m
        } else {
            format!("{m}: {stderr_line}")
        }
    };
    let code = match &outcome.exit {
        Exit::Code(c) => *c,
        Exit::Signal(s) => return unknown(with_stderr(format!("killed by signal {s}"))),
        Exit::TimedOut(t) => {
            return unknown(format!("timed out after {}", humantime::format_duration(*t)));
        }
        Exit::TooMuchOutput(n) => return unknown(format!("printed more than {} of output", bytes(*n))),
        Exit::Failed(m) => return unknown(format!("could not run: {m}")),
    };
    if code == 127 {
        return unknown(with_stderr("command not found (exit 127)".to_string()));
    }
    if code == 126 {
        return unknown(with_stderr("command not executable (exit 126)".to_string()));
    }
    let (text, utf8_error) = match std::str::from_utf8(&outcome.stdout) {
        Ok(t) => (std::borrow::Cow::Borrowed(t), None),
        Err(e) => (String::from_utf8_lossy(&outcome.stdout), Some(e.valid_up_to())),
    };
    let mut v = match format {
        Format::Number => number_verdict(code, &text),
        Format::Nagios => nagios_verdict(code, &text),
        Format::Prometheus => prometheus_verdict(code, &text),
    };
    if v.message.is_empty() && !stderr_line.is_empty() {
        v.message = stderr_line.clone();
    }
    if let Some(at) = utf8_error {
        v.status = UNKNOWN;
        v.message = format!("the output is not UTF-8 (byte {at}): {}", v.message);
    } else if has_escapes(first_raw_line(&text)) {
        v.status = UNKNOWN;
        v.message = format!("the output holds control characters: {}", v.message);
    }
    v.message = bound(&v.message);
    v
}

fn number_verdict(code: u32, text: &str) -> Verdict {
    let message = first_line(text);
    match first_number(text) {
        Some(x) if code == 0 => Verdict {
            status: OK,
            message,
            values: vec![(String::new(), x)],
        },
        Some(x) => Verdict {
            status: UNKNOWN,
            message: format!("exit {code}: {message}"),
            values: vec![(String::new(), x)],
        },
        None if code != 0 => Verdict {
            status: UNKNOWN,
            message: format!("exit {code}: {message}"),
            values: Vec::new(),
        },
        None if text.trim().is_empty() => Verdict {
            status: UNKNOWN,
            message: "no output (expected a number)".to_string(),
            values: Vec::new(),
        },
        None => Verdict {
            status: UNKNOWN,
            message: format!("no number in the output: {message}"),
            values: Vec::new(),
        },
    }
}

fn nagios_verdict(code: u32, text: &str) -> Verdict {
    let status = if code <= 3 { code as u8 } else { UNKNOWN };
    let (message, values) = nagios(text);
    let message = if code > 3 {
        format!("exit {code} is not a plugin status: {message}")
    } else if message.is_empty() {
        "no output".to_string()
    } else {
        message
    };
    Verdict {
        status,
        message,
        values,
    }
}

fn prometheus_verdict(code: u32, text: &str) -> Verdict {
    let (values, total, bad) = prometheus(text);
    let message = first_line(text);
    let (status, message) = if code != 0 {
        (UNKNOWN, format!("exit {code}: {message}"))
    } else if values.is_empty() && bad > 0 {
        (UNKNOWN, format!("no exposition line in the output: {message}"))
    } else if values.is_empty() {
        (UNKNOWN, "no samples in the output".to_string())
    } else if total > values.len() {
        (OK, format!("{total} samples (the first {} kept)", values.len()))
    } else {
        (OK, format!("{total} samples"))
    };
    Verdict {
        status,
        message,
        values,
    }
}

/// The first number in `text`: an optional sign (only where it does not follow a word
/// character), digits with an optional fraction and exponent.
pub fn first_number(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let starts = b[i].is_ascii_digit() || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit));
        if starts {
            let mut start = i;
            if i > 0 && (b[i - 1] == b'-' || b[i - 1] == b'+') && (i < 2 || !b[i - 2].is_ascii_alphanumeric())
            {
                start = i - 1;
            }
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j < b.len() && b[j] == b'.' {
                j += 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
            }
            if j < b.len() && (b[j] == b'e' || b[j] == b'E') {
                let mut k = j + 1;
                if k < b.len() && (b[k] == b'+' || b[k] == b'-') {
                    k += 1;
                }
                if k < b.len() && b[k].is_ascii_digit() {
                    while k < b.len() && b[k].is_ascii_digit() {
                        k += 1;
                    }
                    j = k;
                }
            }
            return text[start..j].parse::<f64>().ok().filter(|x| x.is_finite());
        }
        i += 1;
    }
    None
}

/// Nagios plugin output: the text of the first line before `|` is the message; perfdata
/// follows `|` on the first line and after the first `|` of the long text (plugin
/// guidelines). Returns (message, (label, value in base units)).
pub fn nagios(text: &str) -> (String, Vec<(String, f64)>) {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    let (message, mut perf) = match first.split_once('|') {
        Some((m, p)) => (m, p.to_string()),
        None => (first, String::new()),
    };
    let mut in_perf = false;
    for line in lines {
        if in_perf {
            perf.push(' ');
            perf.push_str(line);
        } else if let Some((_, p)) = line.split_once('|') {
            in_perf = true;
            perf.push(' ');
            perf.push_str(p);
        }
    }
    (crate::model::sanitize(message), perfdata(&perf))
}

/// `'label'=value[UOM];warn;crit;min;max ...`: one value per label, normalised to base
/// units (seconds, bytes); `U` (undetermined) and malformed items are skipped.
pub fn perfdata(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() && out.len() < MAX_VALUES {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        // The label: quoted ('' is a quote inside) or up to `=`.
        let mut label = String::new();
        if b[i] == b'\'' {
            i += 1;
            loop {
                match text[i..].find('\'') {
                    Some(q) => {
                        label.push_str(&text[i..i + q]);
                        i += q + 1;
                        if b.get(i) == Some(&b'\'') {
                            label.push('\'');
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    None => {
                        i = b.len();
                        break;
                    }
                }
            }
        } else {
            let end = text[i..]
                .find(|c: char| c == '=' || c.is_ascii_whitespace())
                .map_or(b.len(), |e| i + e);
            label.push_str(&text[i..end]);
            i = end;
        }
        let item_end = text[i..]
            .find(|c: char| c.is_ascii_whitespace())
            .map_or(b.len(), |e| i + e);
        let item = &text[i..item_end];
        i = item_end;
        let Some(rest) = item.strip_prefix('=') else {
            continue;
        };
        let value = rest.split(';').next().unwrap_or("");
        let label = crate::model::sanitize(&label);
        if label.is_empty() {
            continue;
        }
        if let Some(v) = value_with_uom(value) {
            out.push((label, v));
        }
    }
    out
}

/// `12.5ms` -> 0.0125; `3KB` -> 3072; `U` -> None.
fn value_with_uom(text: &str) -> Option<f64> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(text.len());
    // An `e` can only be part of the number when digits follow it (not `1e` + ...).
    let (mut num, mut uom) = text.split_at(end);
    if num.ends_with(['e', 'E']) {
        num = &text[..end - 1];
        uom = &text[end - 1..];
    }
    let x: f64 = num.parse().ok().filter(|x: &f64| x.is_finite())?;
    let factor = match uom {
        "" | "%" | "c" | "s" | "B" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        // An unknown unit: the number as printed.
        _ => 1.0,
    };
    Some(x * factor)
}

/// Prometheus exposition text: one value per sample line, instance = the series as written
/// (`name{labels}`, spaces outside quotes removed). Returns (values, finite samples seen,
/// lines that were neither samples nor comments).
pub fn prometheus(text: &str) -> (Vec<(String, f64)>, usize, usize) {
    let mut out = Vec::new();
    let (mut total, mut bad) = (0, 0);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match sample_line(line) {
            // NaN and infinities are not values (a summary with no observations yet).
            Some((_, value)) if !value.is_finite() => {}
            Some((series, value)) => {
                total += 1;
                if out.len() < MAX_VALUES {
                    out.push((crate::model::sanitize(&series), value));
                }
            }
            None => bad += 1,
        }
    }
    (out, total, bad)
}

/// `name{a="x",b="y"} 1.5 [timestamp]` -> (`name{a="x",b="y"}`, 1.5).
fn sample_line(line: &str) -> Option<(String, f64)> {
    let name_end = line.find(|c: char| c == '{' || c.is_ascii_whitespace())?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        || name.as_bytes()[0].is_ascii_digit()
    {
        return None;
    }
    let mut series = name.to_string();
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        // Up to the closing brace outside quotes (label values may hold `}` and `\"`).
        let b = rest.as_bytes();
        let (mut i, mut quoted) = (1, false);
        while i < b.len() {
            match b[i] {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b'}' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let labels = &rest[..=i];
        // Whitespace outside quotes is not part of the series' identity.
        let mut q = false;
        let mut prev_backslash = false;
        for c in labels.chars() {
            if c == '"' && !(q && prev_backslash) {
                q = !q;
            }
            prev_backslash = q && c == '\\' && !prev_backslash;
            if q || !c.is_whitespace() {
                series.push(c);
            }
        }
        rest = &rest[i + 1..];
    }
    let value = rest.split_ascii_whitespace().next()?;
    let x = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some((series, x))
}

/// The first line of `text`, sanitized and bounded.
pub fn first_line(text: &str) -> String {
    bound(&crate::model::sanitize(first_raw_line(text)))
}

fn first_raw_line(text: &str) -> &str {
    text.trim_start_matches(['\n', '\r']).lines().next().unwrap_or("")
}

/// Escape sequences and other control characters (a tab is fine).
fn has_escapes(line: &str) -> bool {
    line.chars().any(|c| c.is_control() && c != '\t' && c != '\r')
}

/// At most [`MAX_MESSAGE`] characters, cut on a character boundary.
fn bound(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(code: u32, out: &str) -> Outcome {
        Outcome {
            exit: Exit::Code(code),
            stdout: out.as_bytes().to_vec(),
            stderr: Vec::new(),
        }
    }

    #[test]
    fn first_numbers() {
        assert_eq!(first_number("42\n"), Some(42.0));
        assert_eq!(first_number("(integer) 17"), Some(17.0));
        assert_eq!(first_number("temp: -3.5C"), Some(-3.5));
        assert_eq!(
            first_number("a-3"),
            Some(3.0),
            "a dash after a word is not a sign"
        );
        assert_eq!(first_number("1.5e3 x"), Some(1500.0));
        assert_eq!(first_number("7e"), Some(7.0));
        assert_eq!(first_number(".5"), Some(0.5));
        assert_eq!(first_number("no digits here"), None);
        assert_eq!(first_number(""), None);
        assert_eq!(first_number("9".repeat(400).as_str()), None, "not finite");
    }

    #[test]
    fn number_format_statuses() {
        let v = judge(Format::Number, &run(0, "12\n"));
        assert_eq!((v.status, v.values), (0, vec![(String::new(), 12.0)]));
        let v = judge(Format::Number, &run(0, "garbage\n"));
        assert_eq!(v.status, 3);
        assert_eq!(v.message, "no number in the output: garbage");
        let v = judge(Format::Number, &run(1, "5"));
        assert_eq!(v.status, 3);
        assert_eq!(v.message, "exit 1: 5");
        let v = judge(Format::Number, &run(0, ""));
        assert_eq!(v.message, "no output (expected a number)");
        let mut o = run(127, "");
        o.stderr = b"sh: 1: nosuch: not found\n".to_vec();
        let v = judge(Format::Number, &o);
        assert_eq!(
            (v.status, v.message.as_str()),
            (3, "command not found (exit 127): sh: 1: nosuch: not found")
        );
    }

    #[test]
    fn nagios_output_and_perfdata() {
        let out = "LOAD OK - total load average: 5.38, 3.30, 1.49|load1=5.380;1000.000;2000.000;0; load5=3.300;1000.000;2000.000;0; load15=1.490;1000.000;2000.000;0; \n";
        let v = judge(Format::Nagios, &run(0, out));
        assert_eq!(v.status, 0);
        assert_eq!(v.message, "LOAD OK - total load average: 5.38, 3.30, 1.49");
        assert_eq!(
            v.values,
            vec![
                ("load1".into(), 5.38),
                ("load5".into(), 3.3),
                ("load15".into(), 1.49)
            ]
        );
        // quoted labels, units, U, long text with more perfdata
        let out = "DISK WARNING - free space: / 1024 MB|'/ free'=1024MB;;;0;2048 'it''s'=5ms time=12us bad x=U\nlong text\nmore | c=3c pct=50%\n 'size'=2KB\n";
        let v = judge(Format::Nagios, &run(1, out));
        assert_eq!(v.status, 1);
        assert_eq!(v.message, "DISK WARNING - free space: / 1024 MB");
        assert_eq!(
            v.values,
            vec![
                ("/ free".into(), 1024.0 * 1024.0 * 1024.0),
                ("it's".into(), 0.005),
                ("time".into(), 12e-6),
                ("c".into(), 3.0),
                ("pct".into(), 50.0),
                ("size".into(), 2048.0),
            ]
        );
        let v = judge(Format::Nagios, &run(2, "CRIT\n"));
        assert_eq!((v.status, v.values.len()), (2, 0));
        let v = judge(Format::Nagios, &run(7, "weird\n"));
        assert_eq!(
            (v.status, v.message.as_str()),
            (3, "exit 7 is not a plugin status: weird")
        );
        // malformed perfdata never panics
        for junk in [
            "|'", "|'a", "|=", "|a=", "|a=;;;", "|'a'", "|''=1", "|a=1e", "|a=-", "| = = =",
        ] {
            let _ = judge(Format::Nagios, &run(0, junk));
        }
        assert_eq!(perfdata("a=1e b=2"), vec![("a".into(), 1.0), ("b".into(), 2.0)]);
    }

    #[test]
    fn prometheus_text() {
        let text = "# HELP x y\n# TYPE up gauge\nup 1\nhttp_requests_total{code=\"200\", path=\"/a b}\"} 1027 1395066363000\nbad line here\nnan_metric NaN\nlat{q=\"0.5\"} +Inf\nq_len{a=\"x\\\"y\"} 3\n";
        let v = judge(Format::Prometheus, &run(0, text));
        assert_eq!(v.status, 0);
        assert_eq!(
            v.values,
            vec![
                ("up".into(), 1.0),
                ("http_requests_total{code=\"200\",path=\"/a b}\"}".into(), 1027.0),
                ("q_len{a=\"x\\\"y\"}".into(), 3.0),
            ]
        );
        assert_eq!(v.message, "3 samples");
        let v = judge(Format::Prometheus, &run(0, "<html>not metrics</html>\n"));
        assert_eq!(v.status, 3);
        assert!(v.message.starts_with("no exposition line"), "{}", v.message);
        for junk in ["a{", "a{\"", "{}", "a{b=\"}", "1a 2", "a b"] {
            let _ = prometheus(junk);
        }
    }

    #[test]
    fn hostile_output_is_unknown_with_a_reason() {
        let o = Outcome {
            exit: Exit::Code(0),
            stdout: b"5 \xff\xfe\n".to_vec(),
            stderr: Vec::new(),
        };
        let v = judge(Format::Number, &o);
        assert_eq!(v.status, 3);
        assert!(
            v.message.starts_with("the output is not UTF-8 (byte 2)"),
            "{}",
            v.message
        );
        let v = judge(Format::Nagios, &run(0, "OK \x1b[2J\x1b]0;pwned\x07 fine|a=1\n"));
        assert_eq!(v.status, 3);
        assert!(!v.message.contains('\x1b'), "{}", v.message);
        assert!(
            v.message.starts_with("the output holds control characters"),
            "{}",
            v.message
        );
        let long = "x".repeat(10_000);
        assert!(judge(Format::Nagios, &run(0, &long)).message.chars().count() <= MAX_MESSAGE + 1);
        let v = judge(
            Format::Number,
            &Outcome {
                exit: Exit::TimedOut(Duration::from_secs(5)),
                stdout: Vec::new(),
                stderr: Vec::new(),
            },
        );
        assert_eq!((v.status, v.message.as_str()), (3, "timed out after 5s"));
        let v = judge(
            Format::Number,
            &Outcome {
                exit: Exit::TooMuchOutput(1 << 20),
                stdout: Vec::new(),
                stderr: Vec::new(),
            },
        );
        assert_eq!(v.message, "printed more than 1 MiB of output");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*", b in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            for f in [Format::Number, Format::Nagios, Format::Prometheus] {
                let _ = judge(f, &run(0, &s));
                let _ = judge(f, &Outcome { exit: Exit::Code(1), stdout: b.clone(), stderr: b.clone() });
            }
        }
    }
}
