//! Where a host alias leads: the user's OpenSSH config ([`super::sshconfig`]) turns an
//! alias into address, port, user, keys, host key files and the jump chain or proxy command
//! in front of it; lookout's own `[ssh]` keys, where the user set them, win over it.

use std::path::PathBuf;
use std::time::Duration;

use super::sshconfig::{Local, Resolved, SshConfig};
use crate::config::{HostConfig, HostKeyPolicy, SshSettings};

/// Which agent authenticates (IdentityAgent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agent {
    /// `$SSH_AUTH_SOCK` (the default, also for `IdentityAgent SSH_AUTH_SOCK`).
    Env,
    /// `IdentityAgent none`.
    Off,
    Socket(PathBuf),
}

/// One SSH endpoint after ssh-config resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The name the user wrote (alias or address), for messages.
    pub alias: String,
    /// The address to connect to (HostName, else the alias).
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Key files to try after the agent, in order (expanded).
    pub identity_files: Vec<PathBuf>,
    /// Certificates to offer (CertificateFile, expanded); a `-cert.pub` beside a key is
    /// found at connect time.
    pub certificate_files: Vec<PathBuf>,
    /// IdentitiesOnly: only agent keys that match an identity file are offered.
    pub identities_only: bool,
    pub agent: Agent,
    /// Where the host key is looked up; new keys are recorded in the first.
    pub known_hosts: Vec<PathBuf>,
    /// Read-only host key files (GlobalKnownHostsFile).
    pub global_known_hosts: Vec<PathBuf>,
    pub policy: HostKeyPolicy,
    /// The name the host key is filed under instead of the address (HostKeyAlias).
    pub host_key_alias: Option<String>,
    /// ProxyCommand with its tokens expanded: SSH is spoken over its stdin/stdout.
    pub proxy_command: Option<String>,
    pub connect_timeout: Option<Duration>,
    /// ServerAliveInterval and ServerAliveCountMax.
    pub keepalive: Option<(Duration, u32)>,
    /// Why this endpoint cannot be used as configured (shown as the host's error).
    pub error: Option<String>,
    /// The ssh config's view, as `ssh -G` would print it (for `lookout check`).
    pub resolved: Resolved,
}

impl Endpoint {
    /// `host` or `[host]:port`, the form known_hosts and messages use.
    pub fn host_port(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

/// A host and the jump hosts in front of it, outermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub endpoint: Endpoint,
    pub jumps: Vec<Endpoint>,
}

impl Target {
    /// A name for the jump chain, e.g. `bastion` or `outer,inner` (empty when direct).
    pub fn jump_name(&self) -> String {
        self.jumps
            .iter()
            .map(|j| j.alias.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The first resolution problem of the host or a jump in front of it.
    pub fn error(&self) -> Option<String> {
        self.jumps
            .iter()
            .chain(std::iter::once(&self.endpoint))
            .find_map(|e| e.error.clone())
    }
}

/// The user's ssh config, loaded once, with lookout's `[ssh]` keys to apply on top.
pub struct Resolver {
    config: SshConfig,
    local: Local,
    ssh: Option<SshSettings>,
}

impl Resolver {
    /// Loads `path`; a missing file is an empty config, a malformed one is an error.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        Self::load_with(path, Local::current())
    }

    /// [`Resolver::load`] for another local user (home directory, names): for the fuzz
    /// targets, which keep every file they read in a scratch directory.
    #[doc(hidden)]
    pub fn load_with(path: &std::path::Path, local: Local) -> Result<Self, String> {
        Ok(Resolver {
            config: SshConfig::load(path, &local)?,
            local,
            ssh: None,
        })
    }

    /// Loads `[ssh] config_file` and applies the other `[ssh]` keys to every endpoint.
    pub fn for_settings(ssh: &SshSettings) -> Result<Self, String> {
        let mut r = Self::load(&ssh.config_file)?;
        r.ssh = Some(ssh.clone());
        Ok(r)
    }

    /// Every concrete `Host` name of the ssh config (wildcard-only blocks skipped).
    pub fn concrete_hosts(&self) -> Vec<String> {
        self.config.concrete_hosts()
    }

    /// Resolves `[user@]host[:port]` (a ProxyJump element or a plain alias).
    pub fn endpoint(&self, spec: &str) -> Endpoint {
        let spec_body = spec.strip_prefix("ssh://").unwrap_or(spec);
        let (user, rest) = match spec_body.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, spec_body),
        };
        let (name, port) = split_port(rest);
        let r = self.config.resolve(name, user, port, &self.local);
        let expand_errors = std::cell::RefCell::new(Vec::new());
        let expand = |s: &str| match r.expand(s, &self.local) {
            Ok(v) => v,
            Err(e) => {
                expand_errors.borrow_mut().push(e);
                s.to_string()
            }
        };
        let mut errors = r.errors.clone();
        let ssh = self.ssh.as_ref();
        let explicit = ssh.map(|s| s.explicit).unwrap_or_default();
        let default_ids = || {
            ssh.map(|s| s.identity_files.clone()).unwrap_or_else(|| {
                ["id_ed25519", "id_ecdsa", "id_rsa"]
                    .iter()
                    .map(|f| self.local.home.join(".ssh").join(f))
                    .collect()
            })
        };
        let identity_files: Vec<PathBuf> = if explicit.identity_files || r.identity_files.is_empty() {
            default_ids()
        } else {
            r.identity_files
                .iter()
                .map(|f| PathBuf::from(expand(f)))
                .collect()
        };
        let certificate_files = r
            .certificate_files
            .iter()
            .map(|f| PathBuf::from(expand(f)))
            .collect();
        let lookout_kh = ssh.map_or_else(
            || self.local.home.join(".ssh/known_hosts"),
            |s| s.known_hosts.clone(),
        );
        let (known_hosts, global_known_hosts) = if explicit.known_hosts {
            (vec![lookout_kh], Vec::new())
        } else {
            let user = if r.user_known_hosts.is_empty() {
                vec![lookout_kh]
            } else {
                r.user_known_hosts
                    .iter()
                    .filter(|f| f.as_str() != "none")
                    .map(|f| PathBuf::from(expand(f)))
                    .collect()
            };
            let global = if r.global_known_hosts.is_empty() {
                vec![PathBuf::from("/etc/ssh/ssh_known_hosts")]
            } else {
                r.global_known_hosts
                    .iter()
                    .filter(|f| f.as_str() != "none")
                    .map(|f| PathBuf::from(expand(f)))
                    .collect()
            };
            (user, global)
        };
        let lookout_policy = ssh.map_or(HostKeyPolicy::Strict, |s| s.host_key_policy);
        let policy = if explicit.host_key_policy {
            lookout_policy
        } else {
            match r.strict_host_key_checking.as_deref() {
                Some("yes") | Some("ask") => HostKeyPolicy::Strict,
                Some("accept-new") => HostKeyPolicy::AcceptNew,
                Some("no") | Some("off") => {
                    errors.push(
                        "StrictHostKeyChecking no is refused: lookout never trusts a host key it has not verified (use accept-new to record new hosts)".to_string(),
                    );
                    HostKeyPolicy::Strict
                }
                Some(other) => {
                    errors.push(format!("bad StrictHostKeyChecking value `{other}`"));
                    HostKeyPolicy::Strict
                }
                None => lookout_policy,
            }
        };
        let agent = match r.identity_agent.as_deref() {
            None | Some("SSH_AUTH_SOCK") => Agent::Env,
            Some("none") => Agent::Off,
            Some(v) => match v.strip_prefix('$') {
                Some(var) => std::env::var_os(var).map_or(Agent::Off, |p| Agent::Socket(p.into())),
                None => Agent::Socket(PathBuf::from(expand(v))),
            },
        };
        let proxy_command = r.proxy_command.as_deref().map(expand);
        errors.extend(expand_errors.take());
        let connect_timeout = if explicit.connect_timeout {
            None
        } else {
            r.connect_timeout
        };
        let keepalive = r
            .server_alive_interval
            .filter(|d| !d.is_zero())
            .map(|d| (d, r.server_alive_count_max.unwrap_or(3)));
        Endpoint {
            alias: spec.to_string(),
            host: r.hostname.clone(),
            port: r.port,
            user: r.user.clone(),
            identity_files,
            certificate_files,
            identities_only: r.identities_only,
            agent,
            known_hosts,
            global_known_hosts,
            policy,
            host_key_alias: r.host_key_alias.clone(),
            proxy_command,
            connect_timeout,
            keepalive,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
            resolved: r,
        }
    }

    /// The ProxyJump chain the ssh config gives an alias: `None` when it sets none,
    /// empty for `ProxyJump none` or a ProxyCommand (explicitly not jumped).
    fn proxy_jump(&self, alias: &str) -> Option<Vec<String>> {
        let e = self.endpoint(alias);
        if e.resolved.proxy_command.is_some() {
            return Some(Vec::new());
        }
        e.resolved.proxy_jump.as_ref()?;
        Some(e.resolved.jumps())
    }

    /// The target of one configured host. The jump is, in order of precedence: the host's
    /// `jump` in `[[hosts]]`, ProxyJump (or ProxyCommand) of its ssh config entry,
    /// `[ssh] jump`. A jump given in lookout's config may itself be an alias with a
    /// ProxyJump (a chain).
    pub fn target(&self, host: &HostConfig, ssh: &SshSettings) -> Target {
        let mut endpoint = self.endpoint(&host.name);
        let from_ssh_config = self.proxy_jump(&host.name);
        let chain: Vec<String> = if let Some(j) = &host.jump {
            // lookout's jump replaces a ProxyCommand too.
            endpoint.proxy_command = None;
            self.chain_of(j)
        } else if let Some(chain) = from_ssh_config {
            if chain.is_empty() {
                chain
            } else {
                self.chain_of(&chain.join(","))
            }
        } else if let Some(j) = &ssh.jump {
            if j == &*host.name {
                Vec::new()
            } else {
                self.chain_of(j)
            }
        } else {
            Vec::new()
        };
        Target {
            endpoint,
            jumps: chain.iter().map(|j| self.endpoint(j)).collect(),
        }
    }

    /// A jump host and the jumps in front of it (outermost first), at most 8 deep.
    fn chain_of(&self, jump: &str) -> Vec<String> {
        let mut chain: Vec<String> = jump
            .split(',')
            .map(|j| j.trim().to_string())
            .filter(|j| !j.is_empty())
            .collect();
        for _ in 0..8 {
            let Some(first) = chain.first() else { break };
            let before = self.proxy_jump(first).unwrap_or_default();
            if before.is_empty() || before.iter().any(|b| chain.contains(b)) {
                break;
            }
            chain.splice(0..0, before);
        }
        chain
    }
}

/// `host:port` -> (host, Some(port)); IPv6 literals in brackets are understood.
fn split_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[')
        && let Some((h, p)) = rest.split_once(']')
    {
        return (h, p.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (s, None),
        },
        _ => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn resolver(text: &str) -> Resolver {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(text.as_bytes()).expect("write");
        Resolver::load(f.path()).expect("parses")
    }

    #[test]
    fn aliases_and_chains() {
        let r = resolver(
            "Host web-*\n  User deploy\n  ProxyJump inner\n\nHost web-1\n  HostName 127.0.0.5\n  Port 2200\n  IdentityFile /keys/web\n\nHost inner\n  HostName 127.0.0.9\n  ProxyJump outer\n\nHost outer\n  HostName 127.0.0.8\n  User jumper\n  Port 2022\n\nHost direct\n  ProxyJump none\n",
        );
        let e = r.endpoint("web-1");
        assert_eq!(
            (e.host.as_str(), e.port, e.user.as_str()),
            ("127.0.0.5", 2200, "deploy")
        );
        assert_eq!(e.identity_files, [PathBuf::from("/keys/web")]);
        let e = r.endpoint("admin@127.0.0.1:2201");
        assert_eq!(
            (e.host.as_str(), e.port, e.user.as_str()),
            ("127.0.0.1", 2201, "admin")
        );
        assert_eq!(split_port("[::1]:22"), ("::1", Some(22)));
        assert_eq!(split_port("::1"), ("::1", None));

        let ssh = crate::config::parse("", "t", None).expect("default").ssh;
        let host = |name: &str, jump: Option<&str>| HostConfig {
            name: name.into(),
            group: None,
            via: crate::config::Via::Ssh,
            ping: false,
            jump: jump.map(String::from),
            processes: vec![],
            mounts: vec![],
            interfaces: vec![],
        };
        let t = r.target(&host("web-1", None), &ssh);
        assert_eq!(
            t.jumps.iter().map(|j| j.host.as_str()).collect::<Vec<_>>(),
            ["127.0.0.8", "127.0.0.9"]
        );
        assert_eq!(t.jumps[0].user, "jumper");
        assert_eq!(t.jump_name(), "outer,inner");
        // [[hosts]] jump wins over ProxyJump; ProxyJump none is direct
        let t = r.target(&host("web-1", Some("outer")), &ssh);
        assert_eq!(t.jump_name(), "outer");
        assert!(r.target(&host("direct", None), &ssh).jumps.is_empty());
        let mut with_default = ssh.clone();
        with_default.jump = Some("outer".into());
        assert_eq!(r.target(&host("direct", None), &with_default).jump_name(), "");
        assert_eq!(r.target(&host("other", None), &with_default).jump_name(), "outer");
        // the default jump host itself is reached directly
        assert_eq!(r.target(&host("outer", None), &with_default).jump_name(), "");
    }
}
