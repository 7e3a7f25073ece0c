//! Hosts named on the command line: `lookout web1 'db*'` and `--all-ssh-hosts` turn ssh
//! aliases (a pattern matches the concrete `Host` names of the ssh config) into watched
//! hosts, so that whatever `ssh HOST` reaches, `lookout HOST` watches with no config at all.

use std::sync::Arc;

use crate::collectors::ssh::sshconfig::wildcard;
use crate::collectors::ssh::target::Resolver;
use crate::config::{Config, HostConfig, Via};

/// Adds the named hosts to `config`. Without a config file the built-in local host makes
/// way for them; with one they are added to its hosts (a name it already has is kept once).
pub fn add(config: &mut Config, names: &[String], all_ssh_hosts: bool) -> Result<(), String> {
    if names.is_empty() && !all_ssh_hosts {
        return Ok(());
    }
    let resolver =
        Resolver::for_settings(&config.ssh).map_err(|e| format!("cannot read the ssh config: {e}"))?;
    let concrete = resolver.concrete_hosts();
    let file = config.ssh.config_file.display().to_string();
    let mut chosen: Vec<String> = Vec::new();
    let push = |n: &str, chosen: &mut Vec<String>| {
        if !chosen.iter().any(|c| c == n) {
            chosen.push(n.to_string());
        }
    };
    if all_ssh_hosts {
        if concrete.is_empty() {
            return Err(format!("--all-ssh-hosts: {file} names no concrete Host"));
        }
        for h in &concrete {
            push(h, &mut chosen);
        }
    }
    for name in names {
        let name = name.trim();
        if name.is_empty() || name.chars().any(char::is_control) || name.starts_with('-') {
            return Err(format!("invalid host name `{name}`"));
        }
        if name.contains(['*', '?']) {
            let matched: Vec<&String> = concrete.iter().filter(|h| wildcard(h, name)).collect();
            if matched.is_empty() {
                return Err(format!("no Host in {file} matches `{name}`"));
            }
            for h in matched {
                push(h, &mut chosen);
            }
        } else {
            push(name, &mut chosen);
        }
    }
    if config.path.is_none() {
        config.hosts.retain(|h| h.via != Via::Local);
    }
    for name in chosen {
        if config.hosts.iter().any(|h| *h.name == *name) {
            continue;
        }
        config.hosts.push(HostConfig {
            name: Arc::from(name.as_str()),
            group: None,
            via: Via::Ssh,
            ping: false,
            jump: None,
            processes: Vec::new(),
            mounts: Vec::new(),
            interfaces: Vec::new(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_pick_concrete_hosts_and_replace_the_local_host() {
        let dir = tempfile::tempdir().expect("tmp");
        let ssh = dir.path().join("config");
        std::fs::write(
            &ssh,
            "Host web1 web2\n  User u\nHost db1 db-*\nHost *\n  Port 22\n",
        )
        .expect("write");
        let text = format!("[ssh]\nconfig_file = \"{}\"\n", ssh.display());
        let mut config = crate::config::parse(&text, "t", None).expect("parses");
        assert_eq!(config.hosts.len(), 1);
        add(
            &mut config,
            &["db*".into(), "web2".into(), "10.1.2.3".into()],
            false,
        )
        .expect("adds");
        let names: Vec<&str> = config.hosts.iter().map(|h| &*h.name).collect();
        assert_eq!(names, ["db1", "web2", "10.1.2.3"]);
        let err = add(&mut config, &["zz*".into()], false).expect_err("no match");
        assert!(err.contains("no Host in") && err.contains("zz*"), "{err}");
        let mut config = crate::config::parse(&text, "t", None).expect("parses");
        add(&mut config, &[], true).expect("all");
        let names: Vec<&str> = config.hosts.iter().map(|h| &*h.name).collect();
        assert_eq!(names, ["web1", "web2", "db1"]);
    }
}
