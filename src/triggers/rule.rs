//! Trigger rules: the `[[trigger]]` tables as written, validated into [`Rule`]s.

use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::config::{ConfigError, HostSelector, Locator};
use crate::model::{HostName, Metric};

/// One `[[trigger]]` table as written. Values whose type users get wrong are taken loosely
/// and checked in [`Rule::from_file`], so every problem gets its own located message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerFile {
    pub name: Option<Spanned<String>>,
    pub metric: Option<Spanned<String>>,
    pub scope: Option<Spanned<toml::Value>>,
    pub hosts: Option<Vec<Spanned<String>>>,
    pub instance: Option<String>,
    pub above: Option<Spanned<toml::Value>>,
    pub below: Option<Spanned<toml::Value>>,
    pub clear: Option<Spanned<toml::Value>>,
    #[serde(rename = "for")]
    pub hold: Option<Spanned<toml::Value>>,
    pub cooldown: Option<Spanned<toml::Value>>,
    pub repeat: Option<Spanned<toml::Value>>,
    pub severity: Option<Spanned<toml::Value>>,
    pub run: Option<Spanned<toml::Value>>,
    pub run_on_resolve: Option<Spanned<toml::Value>>,
    pub bell: Option<bool>,
    /// Aggregate rule: fires when at least this many hosts breach.
    pub min_hosts: Option<Spanned<toml::Value>>,
    /// Aggregate rule: fires when at least this share (%) of the selected hosts breach.
    pub min_hosts_pct: Option<Spanned<toml::Value>>,
    /// Alertmanager base URLs that receive this rule's firing and resolved alerts.
    pub alertmanager: Option<Vec<Spanned<String>>>,
}

/// "a string (\"90%\")", "a boolean", ... for type errors.
fn describe(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(i) => format!("the number {i}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("the boolean {b}"),
        toml::Value::Datetime(d) => format!("the date {d}"),
        toml::Value::Array(_) => "a list".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

/// Checks the loosely typed keys of one table, collecting located errors.
struct Checker<'a, 'b> {
    name: &'a str,
    loc: &'a Locator<'b>,
    errors: &'a mut Vec<ConfigError>,
}

impl Checker<'_, '_> {
    fn error(&mut self, span: Range<usize>, msg: impl std::fmt::Display) {
        let e = self.loc.error(span, format!("trigger `{}`: {msg}", self.name));
        self.errors.push(e);
    }

    fn number(&mut self, key: &str, v: &Option<Spanned<toml::Value>>) -> Option<f64> {
        let v = v.as_ref()?;
        match v.get_ref() {
            toml::Value::Integer(i) => Some(*i as f64),
            toml::Value::Float(f) if f.is_finite() => Some(*f),
            other => {
                self.error(
                    v.span(),
                    format!("`{key}` must be a number, not {}", describe(other)),
                );
                None
            }
        }
    }

    fn duration(&mut self, key: &str, v: &Option<Spanned<toml::Value>>) -> Option<Duration> {
        let v = v.as_ref()?;
        let hint = "a duration such as \"30s\", \"5m\" or \"1h 30m\"";
        match v.get_ref() {
            toml::Value::String(s) => match humantime::parse_duration(s.trim()) {
                Ok(d) => Some(d),
                Err(_) => {
                    self.error(v.span(), format!("`{key}` must be {hint}, not {s:?}"));
                    None
                }
            },
            other => {
                self.error(
                    v.span(),
                    format!("`{key}` must be {hint}, not {}", describe(other)),
                );
                None
            }
        }
    }

    /// One of a fixed set of words, with the nearest for a misspelling.
    fn word<'w>(
        &mut self,
        key: &str,
        v: &Option<Spanned<toml::Value>>,
        words: &[&'w str],
    ) -> Option<&'w str> {
        let v = v.as_ref()?;
        let quoted: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
        let expected = match quoted.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => quoted.join(""),
        };
        match v.get_ref() {
            toml::Value::String(s) => {
                if let Some(w) = words.iter().find(|w| **w == s.as_str()) {
                    return Some(*w);
                }
                let hint = crate::suggest::nearest(s, words.iter().copied())
                    .map(|n| format!(" — did you mean `{n}`?"))
                    .unwrap_or_default();
                self.error(
                    v.span(),
                    format!("unknown {key} `{s}`: expected {expected}{hint}"),
                );
                None
            }
            other => {
                self.error(
                    v.span(),
                    format!("`{key}` must be {expected}, not {}", describe(other)),
                );
                None
            }
        }
    }

    fn argv(&mut self, key: &str, v: &Option<Spanned<toml::Value>>) -> Option<Vec<String>> {
        let v = v.as_ref()?;
        let shape = "a non-empty list: [\"program\", \"arg\", ...]";
        let toml::Value::Array(items) = v.get_ref() else {
            self.error(
                v.span(),
                format!("`{key}` must be {shape}, not {}", describe(v.get_ref())),
            );
            return None;
        };
        let mut argv = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                toml::Value::String(s) => argv.push(s.clone()),
                other => {
                    self.error(
                        v.span(),
                        format!(
                            "`{key}` must be a list of strings; item {} is {}",
                            i + 1,
                            describe(other)
                        ),
                    );
                    return None;
                }
            }
        }
        if argv.first().is_none_or(|p| p.trim().is_empty()) {
            self.error(v.span(), format!("`{key}` must be {shape}"));
            return None;
        }
        Some(argv)
    }
}

/// Where a rule looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// The one maximal-risk line of the metric across the selected hosts.
    MaxRisk,
    /// Every selected (host, instance) on its own.
    Each,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// The comparison a rule makes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    Above(f64),
    Below(f64),
}

impl Condition {
    pub fn threshold(self) -> f64 {
        match self {
            Condition::Above(t) | Condition::Below(t) => t,
        }
    }
    /// Whether `value` breaches the threshold.
    pub fn breached(self, value: f64) -> bool {
        match self {
            Condition::Above(t) => value > t,
            Condition::Below(t) => value < t,
        }
    }
    /// Whether `value` is back past the clear level (hysteresis).
    pub fn cleared(self, value: f64, clear: f64) -> bool {
        match self {
            Condition::Above(_) => value <= clear,
            Condition::Below(_) => value >= clear,
        }
    }
}

/// How many breaching hosts an aggregate rule needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregate {
    AtLeast(usize),
    Percent(f64),
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub metric: Metric,
    pub scope: Scope,
    /// The hosts the rule looks at; `None` means all.
    pub hosts: Option<Vec<HostName>>,
    /// A glob (`*` wildcards) the instance must match.
    pub instance: Option<String>,
    pub condition: Condition,
    pub clear: f64,
    pub hold: Duration,
    pub cooldown: Duration,
    pub repeat: Option<Duration>,
    pub severity: Severity,
    pub run: Vec<String>,
    pub run_on_resolve: Vec<String>,
    pub bell: bool,
    pub aggregate: Option<Aggregate>,
    /// Alertmanager base URLs (`http://host:9093`) that receive firing and resolved alerts.
    pub alertmanager: Vec<String>,
}

impl Rule {
    /// Validates one table; pushes every problem found onto `errors`.
    pub fn from_file(
        f: TriggerFile,
        span: Range<usize>,
        loc: &Locator,
        selector: &HostSelector,
        errors: &mut Vec<ConfigError>,
        warnings: &mut Vec<String>,
    ) -> Option<Rule> {
        let before = errors.len();
        let name = f
            .name
            .as_ref()
            .map(|n| crate::model::sanitize(n.get_ref()))
            .unwrap_or_default();
        // Table-level problems point at the name (or the table when it has none).
        let at = f.name.as_ref().map_or(span.clone(), Spanned::span);
        if name.is_empty() {
            errors.push(loc.error(at.clone(), "a trigger needs a non-empty `name`"));
        }
        let mut c = Checker {
            name: &name,
            loc,
            errors,
        };
        let metric = match &f.metric {
            None => {
                c.error(at.clone(), "needs a `metric`, e.g. metric = \"disk.used_pct\"");
                None
            }
            Some(m) => match m.get_ref().parse::<Metric>() {
                Ok(m) => Some(m),
                Err(msg) => {
                    c.error(m.span(), msg);
                    None
                }
            },
        };
        let scope = c.word("scope", &f.scope, &["max-risk", "each"]).map(|w| match w {
            "each" => Scope::Each,
            _ => Scope::MaxRisk,
        });
        let severity = c
            .word("severity", &f.severity, &["info", "warning", "critical"])
            .map(|w| match w {
                "info" => Severity::Info,
                "critical" => Severity::Critical,
                _ => Severity::Warning,
            });
        let above = c.number("above", &f.above);
        let below = c.number("below", &f.below);
        let clear = c.number("clear", &f.clear);
        let hold = c.duration("for", &f.hold);
        let cooldown = c.duration("cooldown", &f.cooldown);
        let repeat = c.duration("repeat", &f.repeat);
        if repeat.is_some_and(|r| r.is_zero()) {
            c.error(
                f.repeat.as_ref().map_or(at.clone(), Spanned::span),
                "`repeat` must be longer than 0s",
            );
        }
        let condition = match (above, below, &f.above, &f.below) {
            (Some(a), None, _, None) => Some(Condition::Above(a)),
            (None, Some(b), None, _) => Some(Condition::Below(b)),
            (_, _, Some(_), Some(b)) => {
                c.error(b.span(), "has both `above` and `below`; give one");
                None
            }
            (_, _, None, None) => {
                c.error(at.clone(), "needs `above` or `below` (a number)");
                None
            }
            _ => None,
        };
        if let (Some(cond), Some(clear)) = (condition, clear) {
            let wrong_side = match cond {
                Condition::Above(t) => clear > t,
                Condition::Below(t) => clear < t,
            };
            if wrong_side {
                let side = if matches!(cond, Condition::Above(_)) {
                    "at or below"
                } else {
                    "at or above"
                };
                c.error(
                    f.clear.as_ref().map_or(at.clone(), Spanned::span),
                    format!(
                        "`clear` ({clear}) must be {side} the threshold ({})",
                        cond.threshold()
                    ),
                );
            }
        }
        let run = c.argv("run", &f.run).unwrap_or_default();
        let run_on_resolve = c.argv("run_on_resolve", &f.run_on_resolve).unwrap_or_default();
        let min_hosts = match f.min_hosts.as_ref() {
            None => None,
            Some(v) => match v.get_ref() {
                toml::Value::Integer(n) if *n >= 1 => Some(usize::try_from(*n).unwrap_or(usize::MAX)),
                other => {
                    c.error(
                        v.span(),
                        format!(
                            "`min_hosts` must be a whole number of at least 1, not {}",
                            describe(other)
                        ),
                    );
                    None
                }
            },
        };
        let min_hosts_pct = c.number("min_hosts_pct", &f.min_hosts_pct);
        let aggregate = match (min_hosts, min_hosts_pct) {
            (Some(_), Some(_)) => {
                c.error(at.clone(), "give `min_hosts` or `min_hosts_pct`, not both");
                None
            }
            (Some(n), None) => Some(Aggregate::AtLeast(n)),
            (None, Some(p)) if p > 0.0 && p <= 100.0 => Some(Aggregate::Percent(p)),
            (None, Some(p)) => {
                c.error(
                    f.min_hosts_pct.as_ref().map_or(at.clone(), Spanned::span),
                    format!("`min_hosts_pct` must be more than 0 and at most 100, not {p}"),
                );
                None
            }
            (None, None) => None,
        };
        if aggregate.is_some() && scope == Some(Scope::MaxRisk) {
            c.error(
                f.scope.as_ref().map_or(at.clone(), Spanned::span),
                "an aggregate rule (`min_hosts`, `min_hosts_pct`) counts hosts; it cannot have scope = \"max-risk\"",
            );
        }
        for (key, argv) in [("run", &f.run), ("run_on_resolve", &f.run_on_resolve)] {
            let Some(v) = argv else { continue };
            let toml::Value::Array(items) = v.get_ref() else {
                continue;
            };
            let args: Vec<String> = items
                .iter()
                .filter_map(|i| i.as_str().map(String::from))
                .collect();
            let (line, col) = loc.line_col(v.span().start);
            for w in argv_warnings(&args) {
                warnings.push(format!(
                    "{}:{line}:{col}: trigger `{name}`: `{key}`: {w}",
                    loc.file
                ));
            }
        }
        let hosts = f.hosts.as_ref().map(|sels| {
            selector
                .resolve(sels, loc, errors)
                .into_iter()
                .map(|i| selector.name(i).clone())
                .collect::<Vec<_>>()
        });
        let alertmanager =
            crate::alertmanager::validate_urls(f.alertmanager.as_deref().unwrap_or_default(), loc, errors);
        if errors.len() > before {
            return None;
        }
        let (metric, condition) = (metric?, condition?);
        Some(Rule {
            clear: clear.unwrap_or(condition.threshold()),
            scope: scope.unwrap_or(if aggregate.is_some() {
                Scope::Each
            } else {
                Scope::MaxRisk
            }),
            name,
            metric,
            hosts,
            instance: f.instance,
            condition,
            hold: hold.unwrap_or_default(),
            cooldown: cooldown.unwrap_or_default(),
            repeat,
            severity: severity.unwrap_or(Severity::Warning),
            run,
            run_on_resolve,
            bell: f.bell.unwrap_or(false),
            aggregate,
            alertmanager,
        })
    }

    /// Whether an instance name matches the rule's pattern (`*` matches any run of chars).
    pub fn matches_instance(&self, instance: &str) -> bool {
        self.instance.as_deref().is_none_or(|p| glob_match(p, instance))
    }

    /// Whether two rules judge alike, apart from which hosts their selectors resolve to (a
    /// host added to `@web` on reload does not make `hosts = ["@web"]` a new rule).
    pub fn same_rule(&self, other: &Rule) -> bool {
        let mut a = self.clone();
        a.hosts.clone_from(&other.hosts);
        a == *other
    }

    pub fn applies_to_host(&self, host: &str) -> bool {
        self.hosts
            .as_ref()
            .is_none_or(|hs| hs.iter().any(|h| &**h == host))
    }
}

/// Warnings about an action's argv: a `{placeholder}` inside a shell's `-c` script (where
/// a value from a remote host would become code) and unknown `{placeholders}`.
pub fn argv_warnings(argv: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(w) = shell_placeholder_warning(argv) {
        out.push(w);
    }
    for arg in argv {
        let mut rest = arg.as_str();
        while let Some(open) = rest.find('{') {
            rest = &rest[open + 1..];
            let Some(close) = rest.find('}') else { break };
            let word = &rest[..close];
            let is_word = !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if is_word && !PLACEHOLDERS.contains(&word) {
                let hint = crate::suggest::nearest(word, PLACEHOLDERS.iter().copied())
                    .map(|n| format!(" — did you mean {{{n}}}?"))
                    .unwrap_or_default();
                out.push(format!(
                    "unknown placeholder {{{word}}} is passed as written{hint}"
                ));
            }
        }
    }
    out
}

/// The shell and its script, when an argv runs a shell's `-c` (also through `env`).
fn shell_script(argv: &[String]) -> Option<&str> {
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    let mut i = 0;
    if argv.first().is_some_and(|p| base(p) == "env") {
        i = 1;
        while argv.get(i).is_some_and(|a| a.starts_with('-') || a.contains('=')) {
            i += 1;
        }
    }
    let program = base(argv.get(i)?);
    if !matches!(
        program.as_str(),
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "fish" | "ash" | "busybox"
    ) {
        return None;
    }
    // The script is the first argument after an option cluster holding `c` (-c, -ec, -lc).
    let flags = argv[i + 1..]
        .iter()
        .position(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('c'))?;
    argv.get(i + 1 + flags + 1).map(String::as_str)
}

fn shell_placeholder_warning(argv: &[String]) -> Option<String> {
    let script = shell_script(argv)?;
    let has_placeholder = PLACEHOLDERS.iter().any(|p| script.contains(&format!("{{{p}}}")));
    has_placeholder.then(|| {
        "a {placeholder} inside a shell's -c script lets a remote value become code; \
         use the environment instead, e.g. [\"sh\", \"-c\", \"echo \\\"$LOOKOUT_HOST\\\"\"]"
            .to_string()
    })
}

/// The placeholders an action's argv may hold (also exported as `LOOKOUT_<NAME>`).
pub const PLACEHOLDERS: &[&str] = &[
    "trigger",
    "host",
    "instance",
    "metric",
    "value",
    "threshold",
    "severity",
    "state",
    "since",
    // A check's message, for rules on `check.*` metrics (empty otherwise).
    "message",
];

/// Minimal glob: `*` matches any run of characters, everything else literally. Does not
/// allocate (it runs for every series on every tick).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts = parts.peekable();
    if parts.peek().is_none() {
        return rest.is_empty();
    }
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Rules used when the config defines none.
pub fn default_rules() -> Vec<Rule> {
    let rule = |name: &str, metric, scope, condition, clear, hold_s, severity| Rule {
        name: name.to_string(),
        metric,
        scope,
        hosts: None,
        instance: None,
        condition,
        clear,
        hold: Duration::from_secs(hold_s),
        cooldown: Duration::from_secs(15 * 60),
        repeat: None,
        severity,
        run: Vec::new(),
        run_on_resolve: Vec::new(),
        bell: false,
        aggregate: None,
        alertmanager: Vec::new(),
    };
    vec![
        rule(
            "disk nearly full",
            Metric::DiskUsedPct,
            Scope::Each,
            Condition::Above(90.0),
            85.0,
            60,
            Severity::Warning,
        ),
        rule(
            "memory exhausted",
            Metric::MemUsedPct,
            Scope::Each,
            Condition::Above(95.0),
            90.0,
            60,
            Severity::Critical,
        ),
        rule(
            "host down",
            Metric::HostUp,
            Scope::Each,
            Condition::Below(1.0),
            1.0,
            30,
            Severity::Critical,
        ),
        rule(
            "load per core high",
            Metric::LoadPerCore,
            Scope::Each,
            Condition::Above(2.0),
            1.5,
            300,
            Severity::Warning,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("/var*", "/var/log"));
        assert!(glob_match("eth*0", "eth10"));
        assert!(!glob_match("eth*0", "eth1"));
        assert!(glob_match("httpd", "httpd"));
    }

    #[test]
    fn argv_warnings_cover_env_shells_and_unknown_placeholders() {
        let v = |a: &[&str]| argv_warnings(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            v(&["/usr/bin/env", "LANG=C", "bash", "-ec", "echo {instance}"]).len(),
            1
        );
        assert!(v(&["sh", "-c", "echo \"$LOOKOUT_HOST\"", "sh", "{host}"]).is_empty());
        let w = v(&["notify-send", "{hots}", "{\"json\": 1}"]);
        assert_eq!(
            w,
            ["unknown placeholder {hots} is passed as written — did you mean {host}?"]
        );
    }

    #[test]
    fn glob_edges() {
        assert!(glob_match("a*a", "aa"));
        assert!(!glob_match("a*a", "a"));
        assert!(glob_match("*x*", "axb"));
        assert!(!glob_match("httpd", "httpd2"));
        assert!(glob_match("", ""));
    }

    #[test]
    fn warns_on_placeholder_in_shell_script() {
        let argv = ["sh", "-c", "echo {host}"].map(String::from);
        assert!(shell_placeholder_warning(&argv).is_some());
        let argv = ["sh", "-c", "echo \"$LOOKOUT_HOST\""].map(String::from);
        assert!(shell_placeholder_warning(&argv).is_none());
        let argv = ["notify-send", "{host}"].map(String::from);
        assert!(shell_placeholder_warning(&argv).is_none());
    }
}
