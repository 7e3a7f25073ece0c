//! `lookout init`: a commented starter config at the XDG path, listing the ssh config's
//! concrete hosts, written only where no file exists (an existing config is never touched).

use std::path::{Path, PathBuf};

use crate::collectors::ssh::target::Resolver;

/// The starter text for `hosts` (ssh aliases).
pub fn starter(hosts: &[String], ssh_config: &Path) -> String {
    let mut t = String::from(
        "# lookout configuration, written by `lookout init`. Check it with `lookout check`;\n\
         # every key is described in /usr/share/doc/lookout/sample.toml (or sample.toml in the\n\
         # source tree). Durations are humantime strings: \"500ms\", \"2s\", \"15m\".\n\n\
         [general]\n\
         interval = \"2s\"          # how often every host is polled\n\
         history = \"15m\"          # how much history the charts keep\n\
         # theme = \"default\"      # default | light | high-contrast | monochrome | a path\n\n\
         [ssh]\n",
    );
    t.push_str(&format!(
        "# Hosts are reached as `ssh HOST` reaches them: {} is read as OpenSSH reads it\n\
         # (Include, Match, ProxyJump, ProxyCommand, certificates). Keys set here win over it.\n\
         # config_file = \"~/.ssh/config\"\n\
         # host_key_policy = \"strict\"    # or \"accept-new\" to record keys of new hosts\n\n",
        ssh_config.display()
    ));
    if hosts.is_empty() {
        t.push_str(
            "# No concrete Host in the ssh config yet; name hosts here (aliases or addresses):\n\
             # [[hosts]]\n# names = [\"web1\", \"web2\"]\n# group = \"web\"\n\n",
        );
    } else {
        t.push_str("# The concrete Host entries of your ssh config; remove the ones not to watch.\n[[hosts]]\nnames = [\n");
        for h in hosts {
            t.push_str(&format!("    {},\n", toml_string(h)));
        }
        t.push_str("]\n# group = \"web\"      # a group name for selectors such as \"@web\"\n# ping = true        # also probe with ICMP\n\n");
    }
    t.push_str(
        "# Watch named processes and mounts on every host (cross product):\n\
         # [[watch.processes]]\n# hosts = [\"*\"]\n# names = [\"sshd\"]\n\n\
         # Without [[trigger]] tables the built-in defaults apply (disk, memory, load, host down).\n\
         # [[trigger]]\n# name = \"partition filling\"\n# metric = \"disk.used_pct\"\n# above = 90\n# for = \"1m\"\n# severity = \"warning\"\n",
    );
    t
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes the starter config to `path` (normally [`crate::config::default_path`]), creating
/// its directory; refuses when the file exists. Returns the path and the hosts listed.
pub fn run(path: Option<PathBuf>, ssh_config: &Path) -> Result<(PathBuf, usize), String> {
    let path = path.ok_or("no home directory: cannot tell where the config belongs (set XDG_CONFIG_HOME)")?;
    let hosts = Resolver::load(ssh_config)
        .map(|r| r.concrete_hosts())
        .map_err(|e| format!("cannot read the ssh config: {e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // create_new: never overwrite, also against a file appearing meanwhile.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!(
                    "{} exists; lookout init never overwrites a config",
                    path.display()
                )
            }
            _ => format!("cannot write {}: {e}", path.display()),
        })?;
    use std::io::Write;
    f.write_all(starter(&hosts, ssh_config).as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((path, hosts.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_parses_and_lists_hosts() {
        let text = starter(&["web1".into(), "db \"x\"".into()], Path::new("/x/config"));
        let c = crate::config::parse(&text, "starter.toml", None).expect("valid config");
        let names: Vec<&str> = c.hosts.iter().map(|h| &*h.name).collect();
        assert_eq!(names, ["web1", "db \"x\""]);
        let empty = starter(&[], Path::new("/x/config"));
        crate::config::parse(&empty, "starter.toml", None).expect("valid config");
    }
}
