//! The `[[check]]` tables as written, validated into runtime [`Check`]s: names, formats,
//! host selectors, durations and built-in recipes (`use = "..."`), every problem located
//! at file:line:col.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::recipes;
use super::{Check, Format};
use crate::config::{ConfigError, HostConfig, HostSelector, Locator, Via};
use crate::model::Risk;

/// One `[[check]]` table as written (the keys are a contract: README "Checks").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckFile {
    pub name: Option<Spanned<String>>,
    pub hosts: Option<Vec<Spanned<String>>>,
    pub command: Option<Spanned<String>>,
    pub format: Option<Spanned<String>>,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub risk: Option<Spanned<String>>,
    pub unit: Option<String>,
    /// A built-in recipe (`systemd`, `tcp`, `cert`, `disk`) instead of a `command`.
    #[serde(rename = "use")]
    pub recipe: Option<Spanned<String>>,
    /// For the `tcp` and `cert` recipes.
    pub port: Option<Spanned<i64>>,
    /// For the `tcp` and `cert` recipes: where to connect, seen from the host (default
    /// `localhost`).
    pub address: Option<Spanned<String>>,
    /// For the `disk` recipe: the mount point (default `/`).
    pub path: Option<Spanned<String>>,
}

/// Longest accepted check name (it becomes part of metric names and JSON keys).
const MAX_NAME: usize = 64;

/// Whether `name` is a valid check name: `[a-z0-9_]+`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Validates the `[[check]]` tables of one file. `general_interval` is the default interval; a
/// check's timeout defaults to min(interval, 10s); `names` holds the names taken so far (in
/// files read before) with where each was given (`file:line:col`), which must stay unique.
pub fn validate(
    files: Vec<Spanned<CheckFile>>,
    general_interval: Duration,
    hosts_cfg: &[HostConfig],
    selector: &HostSelector,
    names: &mut BTreeMap<String, String>,
    loc: &Locator,
    errors: &mut Vec<ConfigError>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for f in files {
        let span = f.span();
        let f = f.into_inner();
        let before = errors.len();
        macro_rules! err {
            ($span:expr, $m:expr $(,)?) => {
                errors.push(loc.error($span, $m))
            };
        }

        let recipe = match &f.recipe {
            None => None,
            Some(r) => match recipes::find(r.get_ref()) {
                Some(rec) => Some(rec),
                None => {
                    let hint = crate::suggest::nearest(r.get_ref(), recipes::NAMES.iter().copied())
                        .map(|n| format!(" — did you mean `{n}`?"))
                        .unwrap_or_else(|| format!(" (recipes: {})", quote(recipes::NAMES)));
                    err!(
                        r.span(),
                        format!("[[check]]: unknown recipe `use = \"{}\"`{hint}", r.get_ref())
                    );
                    None
                }
            },
        };
        let name = match (&f.name, recipe) {
            (Some(n), _) => {
                let s = n.get_ref().as_str();
                if !valid_name(s) {
                    err!(
                        n.span(),
                        format!(
                            "[[check]]: invalid name `{}` (use lowercase letters, digits and `_`, at most {MAX_NAME})",
                            s.escape_default()
                        ),
                    );
                }
                s.to_string()
            }
            (None, Some(rec)) => rec.name.to_string(),
            (None, None) => {
                // An unknown recipe has had its error.
                if f.recipe.is_none() {
                    err!(span.clone(), "[[check]]: `name` is missing".to_string());
                }
                String::new()
            }
        };
        let label = if name.is_empty() {
            "[[check]]".to_string()
        } else {
            format!("check `{name}`")
        };
        if !name.is_empty() && valid_name(&name) {
            let at = f.name.as_ref().map_or(span.clone(), Spanned::span);
            let (line, col) = loc.line_col(at.start);
            match names.get(&name) {
                Some(first) => err!(
                    at,
                    format!("two checks are named `{name}` (the other at {first})")
                ),
                None => {
                    names.insert(name.clone(), format!("{}:{line}:{col}", loc.file));
                }
            }
        }

        // Recipe parameters, and where a recipe is not given, no stray ones.
        let port = match &f.port {
            Some(p) if !(1..=65535).contains(p.get_ref()) => {
                err!(
                    p.span(),
                    format!("{label}: `port` must be 1..65535, not {}", p.get_ref())
                );
                None
            }
            Some(p) => Some(*p.get_ref() as u16),
            None => None,
        };
        let address = f.address.as_ref().map(|a| (a.get_ref().clone(), a.span()));
        if let Some((a, s)) = &address
            && !recipes::safe_word(a)
        {
            err!(
                s.clone(),
                format!(
                    "{label}: `address` must be a host name or address, not `{}`",
                    a.escape_default()
                )
            );
        }
        let path = f.path.as_ref().map(|p| (p.get_ref().clone(), p.span()));
        if let Some((p, s)) = &path
            && (!p.starts_with('/') || !recipes::safe_word(p))
        {
            err!(
                s.clone(),
                format!(
                    "{label}: `path` must be an absolute mount point, not `{}`",
                    p.escape_default()
                )
            );
        }
        let params = recipes::Params {
            port,
            address: address.as_ref().map(|a| a.0.clone()),
            path: path.as_ref().map(|p| p.0.clone()),
        };

        let (command, format, risk, unit) = match (recipe, &f.command) {
            (Some(rec), Some(c)) => {
                err!(
                    c.span(),
                    format!(
                        "{label}: give either `use = \"{}\"` or `command`, not both",
                        rec.name
                    )
                );
                continue;
            }
            (Some(rec), None) => {
                if let Some(f) = &f.format {
                    err!(
                        f.span(),
                        format!("{label}: the `{}` recipe sets its own `format`", rec.name)
                    );
                }
                if errors.len() > before {
                    continue;
                }
                match (rec.command)(&params) {
                    Ok(cmd) => (cmd, rec.format, rec.risk, Some(rec.unit.to_string())),
                    Err(m) => {
                        let at = f.recipe.as_ref().map_or(span.clone(), Spanned::span);
                        err!(at, format!("{label}: {m}"));
                        continue;
                    }
                }
            }
            (None, Some(c)) => {
                let cmd = c.get_ref().trim();
                if cmd.is_empty() {
                    err!(c.span(), format!("{label}: `command` is empty"));
                } else if cmd.contains('\0') {
                    err!(c.span(), format!("{label}: `command` holds a NUL byte"));
                }
                for (key, given) in [
                    ("port", f.port.as_ref().map(Spanned::span)),
                    ("address", address.as_ref().map(|a| a.1.clone())),
                    ("path", path.as_ref().map(|p| p.1.clone())),
                ] {
                    if let Some(s) = given {
                        err!(
                            s,
                            format!("{label}: `{key}` belongs to a recipe (`use = ...`), not to a `command`")
                        );
                    }
                }
                let format = match &f.format {
                    None => Format::Number,
                    Some(s) => match Format::parse(s.get_ref()) {
                        Some(fmt) => fmt,
                        None => {
                            let hint = crate::suggest::nearest(s.get_ref(), Format::NAMES.iter().copied())
                                .map(|n| format!(" — did you mean `{n}`?"))
                                .unwrap_or_else(|| format!(" (expected one of {})", quote(Format::NAMES)));
                            err!(
                                s.span(),
                                format!("{label}: unknown format `{}`{hint}", s.get_ref().escape_default())
                            );
                            Format::Number
                        }
                    },
                };
                (cmd.to_string(), format, Risk::Higher, None)
            }
            (None, None) => {
                if f.recipe.is_none() {
                    err!(
                        span.clone(),
                        format!(
                            "{label}: give a `command` (or `use = \"{}\"`...)",
                            recipes::NAMES[0]
                        )
                    );
                }
                continue;
            }
        };
        let risk = match &f.risk {
            None => risk,
            Some(r) => match r.get_ref().as_str() {
                "higher" => Risk::Higher,
                "lower" => Risk::Lower,
                other => {
                    let hint = crate::suggest::nearest(other, ["higher", "lower"])
                        .map(|n| format!(" — did you mean `{n}`?"))
                        .unwrap_or_else(|| " (expected `higher` or `lower`)".to_string());
                    err!(
                        r.span(),
                        format!("{label}: unknown risk `{}`{hint}", other.escape_default())
                    );
                    Risk::Higher
                }
            },
        };
        let interval = f.interval.unwrap_or(general_interval);
        if interval < Duration::from_millis(100) {
            err!(
                span.clone(),
                format!("{label}: `interval` must be at least 100ms")
            );
        }
        let timeout = f.timeout.unwrap_or_else(|| interval.min(Duration::from_secs(10)));
        if timeout < Duration::from_millis(10) {
            err!(span.clone(), format!("{label}: `timeout` must be at least 10ms"));
        }
        // Ping-only hosts have no shell to run a command in: selectors pass over them.
        let mut hosts = match &f.hosts {
            Some(h) => selector.resolve(h, loc, errors),
            None => (0..hosts_cfg.len()).collect(),
        };
        hosts.retain(|&i| hosts_cfg[i].via != Via::Ping);
        if errors.len() > before {
            continue;
        }
        let unit = f.unit.or(unit).map(|u| crate::model::sanitize(&u));
        let (metric, status_metric) = match super::register(&name, format, risk, unit.as_deref()) {
            Ok(m) => m,
            Err(m) => {
                errors.push(loc.error(span.clone(), format!("{label}: {m}")));
                continue;
            }
        };
        checks.push(Check {
            name: Arc::from(name.as_str()),
            hosts: hosts.into_iter().map(|i| selector.name(i).clone()).collect(),
            command: Arc::from(command.as_str()),
            format,
            interval,
            timeout,
            risk,
            unit,
            recipe: recipe.map(|r| r.name),
            metric,
            status_metric,
        });
    }
    checks
}

fn quote(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const HOSTS: &str = "[[hosts]]\nnames = [\"web1\", \"web2\"]\ngroup = \"web\"\n[[hosts]]\nnames = [\"db1\"]\n[[hosts]]\nnames = [\"pinged\"]\nvia = \"ping\"\n";

    fn errs(checks: &str) -> Vec<String> {
        match parse(&format!("{HOSTS}{checks}"), "t.toml", None) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_check_expands_over_its_hosts_and_registers_its_metrics() {
        let c = parse(
            &format!("{HOSTS}[[check]]\nname = \"cfg_queue\"\nhosts = [\"@web\"]\ncommand = \"redis-cli llen jobs\"\ninterval = \"10s\"\nunit = \"jobs\"\n[[check]]\nname = \"cfg_all\"\ncommand = \"true\"\nformat = \"nagios\"\nrisk = \"lower\"\n[[trigger]]\nname = \"queue long\"\nmetric = \"check.cfg_queue\"\nabove = 100\n"),
            "t.toml",
            None,
        )
        .expect("valid");
        let q = &c.checks[0];
        assert_eq!(q.hosts.iter().map(|h| &**h).collect::<Vec<_>>(), ["web1", "web2"]);
        assert_eq!(q.interval, std::time::Duration::from_secs(10));
        assert_eq!(q.timeout, std::time::Duration::from_secs(10));
        assert_eq!(q.metric.name(), "check.cfg_queue");
        assert_eq!(q.status_metric.name(), "check.cfg_queue.status");
        assert_eq!(q.metric.info().unit, crate::model::Unit::Custom("jobs"));
        let all = &c.checks[1];
        // `*` passes over ping-only hosts; the timeout defaults to min(interval, 10s).
        assert_eq!(
            all.hosts.iter().map(|h| &**h).collect::<Vec<_>>(),
            ["web1", "web2", "db1"]
        );
        assert_eq!(all.timeout, std::time::Duration::from_secs(2));
        assert_eq!(all.metric.risk(), crate::model::Risk::Lower);
        assert_eq!(c.triggers[0].metric, q.metric);
    }

    #[test]
    fn bad_checks_are_located_with_hints() {
        // Every error at once: the misspelt key, and so no command.
        assert_eq!(
            errs("[[check]]\nname = \"q\"\ncomand = \"x\"\n"),
            [
                "t.toml:9:1: check `q`: give a `command` (or `use = \"systemd\"`...)",
                "unknown key `comand` in [[check]] at t.toml:11:1 — did you mean `command`?"
            ]
        );
        assert_eq!(
            errs("[[check]]\nname = \"Queue-1\"\ncommand = \"x\"\n"),
            [
                "t.toml:10:8: [[check]]: invalid name `Queue-1` (use lowercase letters, digits and `_`, at most 64)"
            ]
        );
        assert_eq!(
            errs("[[check]]\nname = \"q\"\ncommand = \"x\"\nformat = \"nagois\"\n"),
            ["t.toml:12:10: check `q`: unknown format `nagois` — did you mean `nagios`?"]
        );
        assert_eq!(
            errs("[[check]]\nname = \"q\"\ncommand = \"x\"\nhosts = [\"@webb\"]\n"),
            ["t.toml:12:10: no host is in group `webb` — did you mean `@web`?"]
        );
        assert_eq!(
            errs("[[check]]\nname = \"q\"\ncommand = \"x\"\nrisk = \"up\"\n"),
            ["t.toml:12:8: check `q`: unknown risk `up` (expected `higher` or `lower`)"]
        );
        assert_eq!(
            errs("[[check]]\nname = \"q\"\ncommand = \"x\"\n[[check]]\nname = \"q\"\ncommand = \"y\"\n"),
            ["t.toml:13:8: two checks are named `q` (the other at t.toml:10:8)"]
        );
        assert_eq!(
            errs("[[check]]\ncommand = \"x\"\n"),
            ["t.toml:9:1: [[check]]: `name` is missing"]
        );
        assert_eq!(
            errs("[[check]]\nname = \"q\"\n"),
            ["t.toml:9:1: check `q`: give a `command` (or `use = \"systemd\"`...)"]
        );
        assert_eq!(
            errs("[[check]]\nuse = \"tpc\"\nport = 80\n"),
            [
                "t.toml:10:7: [[check]]: unknown recipe `use = \"tpc\"` (recipes: `systemd`, `tcp`, `cert`, `disk`)"
            ]
        );
        assert_eq!(
            errs("[[check]]\nuse = \"tcp\"\n"),
            ["t.toml:10:7: check `tcp`: the `tcp` recipe needs a `port`"]
        );
        assert_eq!(
            errs("[[check]]\nuse = \"tcp\"\nport = 99999\n"),
            ["t.toml:11:8: check `tcp`: `port` must be 1..65535, not 99999"]
        );
        assert_eq!(
            errs("[[check]]\nuse = \"cert\"\nport = 443\naddress = \"a;reboot\"\n"),
            ["t.toml:12:11: check `cert`: `address` must be a host name or address, not `a;reboot`"]
        );
        assert_eq!(
            errs("[[check]]\nname = \"q\"\ncommand = \"x\"\nport = 1\n"),
            ["t.toml:12:8: check `q`: `port` belongs to a recipe (`use = ...`), not to a `command`"]
        );
        let e = errs("[[check]]\nname = \"q\"\ncommand = \"x\"\ntimeout = \"soon\"\n");
        assert!(e[0].starts_with("t.toml:12:11: "), "{e:?}");
        // A check named like a built-in metric's tail still gets its own `check.` names.
        assert!(
            errs("[[check]]\nuse = \"systemd\"\n[[check]]\nuse = \"disk\"\npath = \"/var\"\n").is_empty()
        );
    }
}
