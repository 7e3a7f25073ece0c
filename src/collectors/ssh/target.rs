//! Where a host alias leads: the user's OpenSSH config (parsed by `ssh2-config`) turns an
//! alias into address, port, user, identity files and the jump chain in front of it.

use std::path::{Path, PathBuf};

use ssh2_config::{ParseRule, SshConfig};

use crate::config::{HostConfig, SshSettings};

/// One SSH endpoint after ssh-config resolution.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The name the user wrote (alias or address), for messages.
    pub alias: String,
    /// The address to connect to (HostName, else the alias).
    pub host: String,
    pub port: u16,
    pub user: String,
    /// IdentityFile entries of the ssh config (empty: use `[ssh] identity_files`).
    pub identity_files: Vec<PathBuf>,
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
}

/// The user's ssh config, loaded once.
pub struct Resolver {
    config: SshConfig,
    default_user: String,
}

impl Resolver {
    /// Loads `path`; a missing file is an empty config, a malformed one is an error.
    pub fn load(path: &Path) -> Result<Self, String> {
        let config = match std::fs::File::open(path) {
            Ok(f) => SshConfig::default()
                .parse(&mut std::io::BufReader::new(f), ParseRule::ALLOW_UNKNOWN_FIELDS)
                .map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SshConfig::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(Resolver {
            config,
            default_user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "root".to_string()),
        })
    }

    /// Resolves `[user@]host[:port]` (a ProxyJump element or a plain alias).
    pub fn endpoint(&self, spec: &str) -> Endpoint {
        let (user, rest) = match spec.rsplit_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, spec),
        };
        let (name, port) = split_port(rest);
        let params = self.config.query(name);
        Endpoint {
            alias: spec.to_string(),
            host: params.host_name.clone().unwrap_or_else(|| name.to_string()),
            port: port.or(params.port).unwrap_or(22),
            user: user
                .or_else(|| params.user.clone())
                .unwrap_or_else(|| self.default_user.clone()),
            identity_files: params.identity_file.clone().unwrap_or_default(),
        }
    }

    /// The ProxyJump chain the ssh config gives an alias: `None` when it sets none,
    /// empty for `ProxyJump none` (explicitly direct).
    fn proxy_jump(&self, alias: &str) -> Option<Vec<String>> {
        let (name, _) = split_port(alias.rsplit_once('@').map_or(alias, |(_, r)| r));
        let jumps = self.config.query(name).proxy_jump?;
        if jumps.iter().any(|j| j.eq_ignore_ascii_case("none")) {
            return Some(Vec::new());
        }
        Some(
            jumps
                .iter()
                .flat_map(|j| j.split(','))
                .map(|j| j.trim().to_string())
                .filter(|j| !j.is_empty())
                .collect(),
        )
    }

    /// The target of one configured host. The jump is, in order of precedence: the host's
    /// `jump` in `[[hosts]]`, ProxyJump of its ssh config entry, `[ssh] jump`. A jump given
    /// in lookout's config may itself be an alias with a ProxyJump (a chain).
    pub fn target(&self, host: &HostConfig, ssh: &SshSettings) -> Target {
        let endpoint = self.endpoint(&host.name);
        let from_ssh_config = self.proxy_jump(&host.name);
        let chain: Vec<String> = if let Some(j) = &host.jump {
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
