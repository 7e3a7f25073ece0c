//! What `lookout check` shows about reaching each host: for an ssh host, the user, address,
//! port, keys and the jump chain or proxy command lookout resolved from the ssh config and
//! `[ssh]` (`web1 -> deploy@10.0.0.5:2200 via bastion (identity ~/.ssh/id_web)`), as text
//! and as the JSON of `lookout check --json` (DESIGN.md, "Command line").

use std::path::Path;

use serde::Serialize;

use crate::collectors::ssh::target::{Resolver, Target};
use crate::config::{Config, Via};
use crate::triggers::rule::Condition;

/// `lookout check --json`.
#[derive(Debug, Serialize, Default)]
pub struct Report {
    pub hosts: Vec<HostReport>,
    /// `[[check]]` commands (none yet: the table lands with the checks collector).
    pub checks: Vec<serde_json::Value>,
    pub triggers: Vec<TriggerReport>,
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct HostReport {
    pub host: String,
    pub via: &'static str,
    /// How an ssh host is reached; `null` for other hosts.
    pub ssh: Option<SshReport>,
}

#[derive(Debug, Serialize)]
pub struct SshReport {
    pub user: String,
    pub hostname: String,
    pub port: u16,
    pub identity_files: Vec<String>,
    pub certificate_files: Vec<String>,
    /// The jump hosts this host's own entry names (ProxyJump, `[[hosts]] jump` or
    /// `[ssh] jump`), as `ssh -G` prints them.
    pub proxy_jump: Vec<String>,
    /// Every hop lookout connects through, outermost first (jump hosts' own ProxyJump
    /// included).
    pub jump_chain: Vec<String>,
    pub proxy_command: Option<String>,
    pub known_hosts: Vec<String>,
    pub host_key_policy: &'static str,
    pub host_key_alias: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TriggerReport {
    pub name: String,
    pub metric: String,
    pub condition: String,
    #[serde(rename = "for")]
    pub hold: String,
    pub severity: &'static str,
}

fn via_name(via: Via) -> &'static str {
    match via {
        Via::Ssh => "ssh",
        Via::Local => "local",
        Via::Ping => "ping",
        Via::Prometheus => "prometheus",
    }
}

fn path_text(p: &Path) -> String {
    p.display().to_string()
}

/// `~/x` for paths under the home directory (how users write them).
fn short(p: &str) -> String {
    let home = directories::BaseDirs::new().map(|d| d.home_dir().display().to_string());
    match home {
        Some(h) if !h.is_empty() && h != "/" => match p.strip_prefix(&h) {
            Some(rest) if rest.starts_with('/') => format!("~{rest}"),
            _ => p.to_string(),
        },
        _ => p.to_string(),
    }
}

/// The direct ProxyJump level of a host: lookout's `[[hosts]] jump`, else the ssh
/// config's ProxyJump, else `[ssh] jump`.
fn direct_jumps(config: &Config, name: &str, jump: Option<&str>, target: &Target) -> Vec<String> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|j| j.trim().to_string())
            .filter(|j| !j.is_empty())
            .collect()
    };
    if let Some(j) = jump {
        return split(j);
    }
    let r = &target.endpoint.resolved;
    if r.proxy_jump.is_some() || r.proxy_command.is_some() {
        return r.jumps();
    }
    match &config.ssh.jump {
        Some(j) if j != name => split(j),
        _ => Vec::new(),
    }
}

/// Builds the report. An ssh config that cannot be read is one error.
pub fn report(config: &Config) -> Report {
    let mut out = Report::default();
    let resolver = if config.hosts.iter().any(|h| h.via == Via::Ssh) {
        match Resolver::for_settings(&config.ssh) {
            Ok(r) => Some(r),
            Err(e) => {
                out.errors.push(format!("cannot read the ssh config: {e}"));
                None
            }
        }
    } else {
        None
    };
    for h in &config.hosts {
        let ssh = match (&resolver, h.via) {
            (Some(r), Via::Ssh) => {
                let t = r.target(h, &config.ssh);
                if let Some(e) = t.error() {
                    out.errors.push(format!("{}: {e}", h.name));
                }
                let e = &t.endpoint;
                Some(SshReport {
                    user: e.user.clone(),
                    hostname: e.host.clone(),
                    port: e.port,
                    identity_files: e.identity_files.iter().map(|p| path_text(p)).collect(),
                    certificate_files: e.certificate_files.iter().map(|p| path_text(p)).collect(),
                    proxy_jump: direct_jumps(config, &h.name, h.jump.as_deref(), &t),
                    jump_chain: t.jumps.iter().map(|j| j.alias.clone()).collect(),
                    proxy_command: e.proxy_command.clone(),
                    known_hosts: e
                        .known_hosts
                        .iter()
                        .chain(&e.global_known_hosts)
                        .map(|p| path_text(p))
                        .collect(),
                    host_key_policy: match e.policy {
                        crate::config::HostKeyPolicy::Strict => "strict",
                        crate::config::HostKeyPolicy::AcceptNew => "accept-new",
                    },
                    host_key_alias: e.host_key_alias.clone(),
                })
            }
            _ => None,
        };
        out.hosts.push(HostReport {
            host: h.name.to_string(),
            via: via_name(h.via),
            ssh,
        });
    }
    for r in &config.triggers {
        out.triggers.push(TriggerReport {
            name: r.name.clone(),
            metric: r.metric.name().to_string(),
            condition: match r.condition {
                Condition::Above(t) => format!("above {t}"),
                Condition::Below(t) => format!("below {t}"),
            },
            hold: humantime::format_duration(r.hold).to_string(),
            severity: r.severity.as_str(),
        });
    }
    out.errors
        .extend(config.warnings.iter().map(|w| format!("warning: {w}")));
    out
}

/// The text lines of `lookout check`: one per ssh host, then its problems.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let ssh_hosts: Vec<&HostReport> = report.hosts.iter().filter(|h| h.ssh.is_some()).collect();
    if ssh_hosts.is_empty() {
        return out;
    }
    out.push_str("  ssh resolution:\n");
    for h in ssh_hosts {
        let Some(s) = &h.ssh else { continue };
        let mut line = format!("    {} -> {}@{}:{}", h.host, s.user, s.hostname, s.port);
        if !s.jump_chain.is_empty() {
            line.push_str(&format!(" via {}", s.jump_chain.join(",")));
        } else if let Some(c) = &s.proxy_command {
            line.push_str(&format!(" via ProxyCommand `{c}`"));
        }
        let ids: Vec<String> = s.identity_files.iter().map(|p| short(p)).collect();
        let mut notes = Vec::new();
        match ids.len() {
            0 => {}
            1 => notes.push(format!("identity {}", ids[0])),
            _ => notes.push(format!("identities {}", ids.join(", "))),
        }
        if !s.certificate_files.is_empty() {
            let c: Vec<String> = s.certificate_files.iter().map(|p| short(p)).collect();
            notes.push(format!("certificate {}", c.join(", ")));
        }
        if let Some(a) = &s.host_key_alias {
            notes.push(format!("host key as {a}"));
        }
        if !notes.is_empty() {
            line.push_str(&format!(" ({})", notes.join("; ")));
        }
        out.push_str(&line);
        out.push('\n');
    }
    for e in report.errors.iter().filter(|e| !e.starts_with("warning: ")) {
        out.push_str(&format!("error: {e}\n"));
    }
    out
}
