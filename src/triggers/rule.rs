//! Trigger rules: the `[[trigger]]` tables as written, validated into [`Rule`]s.

use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::config::{ConfigError, HostSelector, Locator};
use crate::model::{HostName, Metric};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerFile {
    pub name: String,
    pub metric: Spanned<String>,
    #[serde(default)]
    pub scope: Option<Scope>,
    pub hosts: Option<Vec<Spanned<String>>>,
    pub instance: Option<String>,
    pub above: Option<f64>,
    pub below: Option<f64>,
    pub clear: Option<f64>,
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub hold: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub cooldown: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub repeat: Option<Duration>,
    pub severity: Option<Severity>,
    pub run: Option<Spanned<Vec<String>>>,
    pub run_on_resolve: Option<Spanned<Vec<String>>>,
    pub bell: Option<bool>,
    /// Aggregate rule: fires when at least this many hosts breach.
    pub min_hosts: Option<usize>,
    /// Aggregate rule: fires when at least this share (%) of the selected hosts breach.
    pub min_hosts_pct: Option<f64>,
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
#[derive(Debug, Clone)]
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
        let name = crate::model::sanitize(&f.name);
        if name.is_empty() {
            errors.push(loc.error(span.clone(), "a trigger needs a non-empty `name`"));
        }
        let metric = match f.metric.get_ref().parse::<Metric>() {
            Ok(m) => Some(m),
            Err(msg) => {
                errors.push(loc.error(f.metric.span(), format!("in trigger `{name}`: {msg}")));
                None
            }
        };
        let condition = match (f.above, f.below) {
            (Some(a), None) => Some(Condition::Above(a)),
            (None, Some(b)) => Some(Condition::Below(b)),
            (Some(_), Some(_)) => {
                errors.push(loc.error(
                    span.clone(),
                    format!("trigger `{name}` has both `above` and `below`; give one"),
                ));
                None
            }
            (None, None) => {
                errors.push(loc.error(
                    span.clone(),
                    format!("trigger `{name}` needs `above` or `below` (a number)"),
                ));
                None
            }
        };
        if let (Some(c), Some(clear)) = (condition, f.clear) {
            let wrong_side = match c {
                Condition::Above(t) => clear > t,
                Condition::Below(t) => clear < t,
            };
            if wrong_side {
                errors.push(loc.error(
                    span.clone(),
                    format!(
                        "trigger `{name}`: `clear` ({clear}) must be on the safe side of the threshold ({})",
                        c.threshold()
                    ),
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
        let mut check_argv = |argv: &Option<Spanned<Vec<String>>>, key: &str| -> Vec<String> {
            let Some(argv) = argv else { return Vec::new() };
            if argv.get_ref().is_empty() || argv.get_ref()[0].trim().is_empty() {
                errors.push(loc.error(
                    argv.span(),
                    format!(
                        "trigger `{name}`: `{key}` must be a non-empty list: [\"program\", \"arg\", ...]"
                    ),
                ));
            }
            if let Some(w) = shell_placeholder_warning(argv.get_ref()) {
                let (line, col) = loc.line_col(argv.span().start);
                warnings.push(format!("{}:{line}:{col}: trigger `{name}`: {w}", loc.file));
            }
            argv.get_ref().clone()
        };
        let run = check_argv(&f.run, "run");
        let run_on_resolve = check_argv(&f.run_on_resolve, "run_on_resolve");
        let aggregate = match (f.min_hosts, f.min_hosts_pct) {
            (Some(_), Some(_)) => {
                errors.push(loc.error(
                    span.clone(),
                    format!("trigger `{name}`: give `min_hosts` or `min_hosts_pct`, not both"),
                ));
                None
            }
            (Some(n), None) => Some(Aggregate::AtLeast(n.max(1))),
            (None, Some(p)) if (0.0..=100.0).contains(&p) => Some(Aggregate::Percent(p)),
            (None, Some(p)) => {
                errors.push(loc.error(
                    span.clone(),
                    format!("trigger `{name}`: `min_hosts_pct` must be between 0 and 100, not {p}"),
                ));
                None
            }
            (None, None) => None,
        };
        if errors.len() > before {
            return None;
        }
        let (metric, condition) = (metric?, condition?);
        Some(Rule {
            clear: f.clear.unwrap_or(condition.threshold()),
            scope: f.scope.unwrap_or(if aggregate.is_some() {
                Scope::Each
            } else {
                Scope::MaxRisk
            }),
            name,
            metric,
            hosts,
            instance: f.instance,
            condition,
            hold: f.hold.unwrap_or_default(),
            cooldown: f.cooldown.unwrap_or_default(),
            repeat: f.repeat,
            severity: f.severity.unwrap_or(Severity::Warning),
            run,
            run_on_resolve,
            bell: f.bell.unwrap_or(false),
            aggregate,
        })
    }

    /// Whether an instance name matches the rule's pattern (`*` matches any run of chars).
    pub fn matches_instance(&self, instance: &str) -> bool {
        self.instance.as_deref().is_none_or(|p| glob_match(p, instance))
    }

    pub fn applies_to_host(&self, host: &str) -> bool {
        self.hosts
            .as_ref()
            .is_none_or(|hs| hs.iter().any(|h| &**h == host))
    }
}

/// A warning when a `{placeholder}` sits inside a shell's `-c` script, where a value from a
/// remote host would become code.
fn shell_placeholder_warning(argv: &[String]) -> Option<String> {
    let program = argv.first()?.rsplit('/').next()?;
    if !matches!(program, "sh" | "bash" | "dash" | "zsh" | "ksh" | "fish" | "ash") {
        return None;
    }
    let script_at = argv.iter().position(|a| a.starts_with('-') && a.contains('c'))? + 1;
    let script = argv.get(script_at)?;
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
];

/// Minimal glob: `*` matches any run of characters, everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
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
    fn warns_on_placeholder_in_shell_script() {
        let argv = ["sh", "-c", "echo {host}"].map(String::from);
        assert!(shell_placeholder_warning(&argv).is_some());
        let argv = ["sh", "-c", "echo \"$LOOKOUT_HOST\""].map(String::from);
        assert!(shell_placeholder_warning(&argv).is_none());
        let argv = ["notify-send", "{host}"].map(String::from);
        assert!(shell_placeholder_warning(&argv).is_none());
    }
}
