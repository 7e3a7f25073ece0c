//! The user's ssh_config read the way OpenSSH 9 reads it, so that whatever `ssh HOST`
//! reaches, lookout reaches the same way: `Host` and `Match` blocks in file order, the first
//! value of a keyword wins (`IdentityFile` and `CertificateFile` accumulate), `Include`
//! (globs, relative to ~/.ssh, nested, conditional inside a block), negated patterns,
//! `%` tokens and `~`.
//!
//! This module only parses and resolves; [`super::target`] turns the result into endpoints
//! and applies lookout's own `[ssh]` keys on top. It replaces the `ssh2-config` crate, which
//! knew neither `Match` nor tokens nor most of the keywords below.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Deepest `Include` nesting, as OpenSSH (`READCONF_MAX_DEPTH`).
const MAX_DEPTH: usize = 16;

/// One line of a config file that matters to lookout, with where it came from.
#[derive(Debug, Clone)]
struct Line {
    file: std::sync::Arc<str>,
    number: usize,
    /// Keyword, lowercased.
    keyword: String,
    /// Arguments split as OpenSSH splits them (quotes removed).
    args: Vec<String>,
    /// The raw rest of the line (ProxyCommand takes it whole).
    rest: String,
}

/// A parsed config: every line of every included file in reading order. `Include` is kept
/// as a line and expanded at resolution time, as OpenSSH does (an `Include` inside a block
/// that does not apply reads nothing).
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    lines: Vec<Line>,
    /// The directory relative `Include` paths start from (~/.ssh).
    ssh_dir: PathBuf,
    home: PathBuf,
    /// Files read, with their lines, so each is read once per load.
    files: std::collections::HashMap<PathBuf, Vec<Line>>,
}

/// The settings OpenSSH would use for one host, before lookout's own `[ssh]` keys.
/// Values are as ssh_config gives them (`~` and tokens unexpanded, as `ssh -G` prints them);
/// [`Resolved::expand`] turns a path or command into what is used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The name asked for (`%n`).
    pub original: String,
    /// HostName (with `%h` expanded), else the name asked for; lowercased, as OpenSSH does.
    pub hostname: String,
    pub user: String,
    pub port: u16,
    /// IdentityFile entries in order; empty: none given.
    pub identity_files: Vec<String>,
    pub certificate_files: Vec<String>,
    /// ProxyJump as written; `Some("none")` when explicitly direct.
    pub proxy_jump: Option<String>,
    /// ProxyCommand as written; `None` also for `ProxyCommand none`.
    pub proxy_command: Option<String>,
    pub identities_only: bool,
    pub identity_agent: Option<String>,
    pub user_known_hosts: Vec<String>,
    pub global_known_hosts: Vec<String>,
    pub strict_host_key_checking: Option<String>,
    pub host_key_alias: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub server_alive_interval: Option<Duration>,
    pub server_alive_count_max: Option<u32>,
    /// Problems that make the host unusable as configured (e.g. `Match exec`).
    pub errors: Vec<String>,
}

/// Who is asking: the local user and the names tokens need.
#[derive(Debug, Clone)]
pub struct Local {
    pub user: String,
    pub home: PathBuf,
    pub uid: u32,
    pub hostname: String,
}

impl Local {
    pub fn current() -> Self {
        let home = directories::BaseDirs::new()
            .map(|d| d.home_dir().to_path_buf())
            .unwrap_or_else(|| PathBuf::from("/"));
        Local {
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "root".to_string()),
            home,
            uid: rustix::process::getuid().as_raw(),
            hostname: sysinfo::System::host_name().unwrap_or_default(),
        }
    }
}

/// Splits an argument string as OpenSSH's `argv_split`: whitespace separates, double or
/// single quotes group, a backslash escapes a quote or backslash, an unquoted `#` at the
/// start of a word ends the line.
fn split_args(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        if first == '#' {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            if quote.is_none() && c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '\\' => match chars.peek() {
                    Some(&n) if n == '"' || n == '\'' || n == '\\' => {
                        word.push(n);
                        chars.next();
                    }
                    _ => word.push('\\'),
                },
                '"' | '\'' if quote.is_none() => quote = Some(c),
                c if Some(c) == quote => quote = None,
                c => word.push(c),
            }
        }
        if quote.is_some() {
            return Err("unterminated quote".to_string());
        }
        out.push(word);
    }
    Ok(out)
}

/// `keyword value`, `keyword=value` or `keyword = value` -> (keyword, rest).
fn split_keyword(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = &line[..end];
    let mut rest = line[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    Some((keyword, rest))
}

/// OpenSSH's `match_pattern`: `*` any run, `?` one character; case-sensitive.
pub fn wildcard(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            ti += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// OpenSSH's `match_pattern_list`: Some(true) when a positive pattern matches and no
/// negated one does, Some(false) when a negated one matches, None when nothing matches.
fn pattern_list(text: &str, patterns: &[&str], lower: bool) -> Option<bool> {
    let text = if lower {
        text.to_lowercase()
    } else {
        text.to_string()
    };
    let mut got = None;
    for p in patterns {
        let (neg, p) = match p.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, *p),
        };
        let p = if lower { p.to_lowercase() } else { p.to_string() };
        if wildcard(&text, &p) {
            if neg {
                return Some(false);
            }
            got = Some(true);
        }
    }
    got
}

/// Whether a `Host` line's patterns select `host`.
fn host_matches(host: &str, patterns: &[String]) -> bool {
    let p: Vec<&str> = patterns.iter().map(String::as_str).collect();
    pattern_list(host, &p, false) == Some(true)
}

/// A comma-separated pattern list of a `Match` criterion.
fn list_matches(text: &str, list: &str, lower: bool) -> bool {
    let p: Vec<&str> = list.split(',').collect();
    pattern_list(text, &p, lower) == Some(true)
}

/// `~` and `~/...` against the home directory.
pub fn tilde(path: &str, home: &Path) -> String {
    if path == "~" {
        return home.display().to_string();
    }
    match path.strip_prefix("~/") {
        Some(rest) => home.join(rest).display().to_string(),
        None => path.to_string(),
    }
}

impl SshConfig {
    /// Reads `path` (a missing file is an empty config). Included files are read when a
    /// host's resolution reaches their `Include`.
    pub fn load(path: &Path, local: &Local) -> Result<Self, String> {
        let mut config = SshConfig {
            lines: Vec::new(),
            ssh_dir: local.home.join(".ssh"),
            home: local.home.clone(),
            files: std::collections::HashMap::new(),
        };
        config.lines = match std::fs::read_to_string(path) {
            Ok(text) => parse_file(&path.display().to_string(), &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        // Read every reachable include once, so resolving a host does no I/O.
        let mut pending: Vec<Line> = config.lines.clone();
        let mut depth = 0;
        while !pending.is_empty() && depth < MAX_DEPTH {
            let mut next = Vec::new();
            for line in pending.iter().filter(|l| l.keyword == "include") {
                for file in config.include_paths(line) {
                    if config.files.contains_key(&file) {
                        continue;
                    }
                    let lines = match std::fs::read_to_string(&file) {
                        Ok(text) => parse_file(&file.display().to_string(), &text)?,
                        // OpenSSH skips includes it cannot read.
                        Err(_) => Vec::new(),
                    };
                    next.extend(lines.iter().cloned());
                    config.files.insert(file, lines);
                }
            }
            pending = next;
            depth += 1;
        }
        Ok(config)
    }

    /// The files an `Include` line names, glob-expanded and sorted, relative ones under
    /// ~/.ssh.
    fn include_paths(&self, line: &Line) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for arg in &line.args {
            let arg = tilde(arg, &self.home);
            let full = if Path::new(&arg).is_absolute() {
                PathBuf::from(arg)
            } else {
                self.ssh_dir.join(arg)
            };
            let mut found: Vec<PathBuf> = glob::glob(&full.display().to_string())
                .map(|paths| paths.filter_map(Result::ok).collect())
                .unwrap_or_default();
            found.sort();
            out.extend(found);
        }
        out
    }

    /// Every concrete `Host` name (no wildcard, no negation) in file order, including
    /// those of included files.
    pub fn concrete_hosts(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let visit = |lines: &[Line], out: &mut Vec<String>| {
            for l in lines.iter().filter(|l| l.keyword == "host") {
                for a in &l.args {
                    if !a.contains(['*', '?', '!']) && !out.contains(a) {
                        out.push(a.clone());
                    }
                }
            }
        };
        visit(&self.lines, &mut out);
        let mut files: Vec<&PathBuf> = self.files.keys().collect();
        files.sort();
        for f in files {
            visit(&self.files[f], &mut out);
        }
        out
    }

    /// What OpenSSH would use for `host`. `user` and `port` are the command line's
    /// (`user@host`, `host:port`), which win over the file.
    pub fn resolve(&self, host: &str, user: Option<&str>, port: Option<u16>, local: &Local) -> Resolved {
        let mut r = Resolved {
            original: host.to_string(),
            ..Resolved::default()
        };
        let mut st = State {
            user: user.map(String::from),
            port,
            hostname: None,
            command_set: false,
            identities_only_set: false,
        };
        let mut active = true;
        self.apply(&self.lines, host, local, &mut r, &mut st, &mut active, 0, false);
        r.user = st.user.unwrap_or_else(|| local.user.clone());
        r.port = st.port.unwrap_or(22);
        r.hostname = st
            .hostname
            .map_or_else(|| host.to_string(), |h| expand_hostname(&h, host))
            .to_lowercase();
        r
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        lines: &[Line],
        host: &str,
        local: &Local,
        r: &mut Resolved,
        st: &mut State,
        active: &mut bool,
        depth: usize,
        never_match: bool,
    ) {
        for l in lines {
            match l.keyword.as_str() {
                "host" => *active = !never_match && host_matches(host, &l.args),
                "match" => {
                    *active = !never_match
                        && match self.match_line(l, host, local, st) {
                            Ok(m) => m,
                            Err(e) => {
                                r.errors.push(format!("{}:{}: {e}", l.file, l.number));
                                false
                            }
                        }
                }
                "include" => {
                    if depth + 1 >= MAX_DEPTH {
                        r.errors
                            .push(format!("{}:{}: Include nested too deeply", l.file, l.number));
                        continue;
                    }
                    let outer = *active;
                    for file in self.include_paths(l) {
                        if let Some(inner) = self.files.get(&file) {
                            self.apply(
                                inner,
                                host,
                                local,
                                r,
                                st,
                                active,
                                depth + 1,
                                never_match || !outer,
                            );
                        }
                    }
                    *active = outer;
                }
                _ if *active => set(l, r, st),
                _ => {}
            }
        }
    }

    fn match_line(&self, l: &Line, host: &str, local: &Local, st: &State) -> Result<bool, String> {
        let mut args = l.args.iter();
        let mut result = true;
        let mut any = false;
        while let Some(criterion) = args.next() {
            any = true;
            let (negate, name) = match criterion.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, criterion.as_str()),
            };
            let name = name.to_lowercase();
            let mut value = || {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("Match {name} needs an argument"))
            };
            let hit = match name.as_str() {
                "all" => true,
                "host" => {
                    let current = st
                        .hostname
                        .as_deref()
                        .map_or_else(|| host.to_string(), |h| expand_hostname(h, host));
                    list_matches(&current, &value()?, true)
                }
                "originalhost" => list_matches(host, &value()?, true),
                "user" => {
                    let user = st.user.clone().unwrap_or_else(|| local.user.clone());
                    list_matches(&user, &value()?, false)
                }
                "localuser" => list_matches(&local.user, &value()?, false),
                "exec" => {
                    return Err(format!(
                        "`Match exec` is not supported: lookout does not run commands to read its ssh config (`{}`); give this host its own `Host` block",
                        value()?
                    ));
                }
                "canonical" | "final" | "localnetwork" | "tagged" => {
                    return Err(format!(
                        "`Match {name}` is not supported by lookout (it does not canonicalize host names)"
                    ));
                }
                other => return Err(format!("unknown Match criterion `{other}`")),
            };
            if hit == negate {
                result = false;
            }
        }
        if !any {
            return Err("Match needs a criterion (e.g. `Match all`)".to_string());
        }
        Ok(result)
    }
}

/// What earlier lines set that later `Match` lines look at.
struct State {
    user: Option<String>,
    port: Option<u16>,
    hostname: Option<String>,
    /// A ProxyCommand (also `none`) was given.
    command_set: bool,
    identities_only_set: bool,
}

fn expand_hostname(h: &str, host: &str) -> String {
    let mut out = String::new();
    let mut chars = h.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('h') => out.push_str(host),
                Some('%') => out.push('%'),
                Some(o) => {
                    out.push('%');
                    out.push(o);
                }
                None => out.push('%'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Applies one active line: the first value of each keyword wins.
fn set(l: &Line, r: &mut Resolved, st: &mut State) {
    let first = l.args.first().cloned();
    let bad = |r: &mut Resolved, what: &str| {
        r.errors.push(format!(
            "{}:{}: bad {} value `{}`",
            l.file,
            l.number,
            what,
            l.rest.trim()
        ));
    };
    let seconds = |s: &str| -> Option<Duration> {
        if let Ok(n) = s.parse::<u64>() {
            return Some(Duration::from_secs(n));
        }
        humantime::parse_duration(s).ok()
    };
    match l.keyword.as_str() {
        "hostname" if st.hostname.is_none() => {
            st.hostname = first;
        }
        "user" if st.user.is_none() => {
            st.user = first;
        }
        "port" if st.port.is_none() => match first.as_deref().map(str::parse::<u16>) {
            Some(Ok(p)) if p > 0 => st.port = Some(p),
            _ => bad(r, "Port"),
        },
        "identityfile" => r.identity_files.extend(first),
        "certificatefile" => r.certificate_files.extend(first),
        // As OpenSSH 9.2 has it: a ProxyJump host blocks later ProxyJump and ProxyCommand
        // lines, `ProxyJump none` only later ProxyJump lines; any ProxyCommand (also `none`)
        // blocks both.
        "proxyjump" if r.proxy_jump.is_none() && !st.command_set => {
            r.proxy_jump = first;
        }
        "proxycommand" => {
            let jumped = r.proxy_jump.as_deref().is_some_and(|j| j != "none");
            if !st.command_set && !jumped {
                st.command_set = true;
                let cmd = l.rest.trim().to_string();
                if cmd != "none" {
                    r.proxy_command = Some(cmd);
                }
            }
        }
        "identitiesonly" if !st.identities_only_set => {
            st.identities_only_set = true;
            r.identities_only = first.is_some_and(|v| v.eq_ignore_ascii_case("yes"));
        }
        "identityagent" if r.identity_agent.is_none() => {
            r.identity_agent = first;
        }
        "userknownhostsfile" if r.user_known_hosts.is_empty() => {
            r.user_known_hosts.clone_from(&l.args);
        }
        "globalknownhostsfile" if r.global_known_hosts.is_empty() => {
            r.global_known_hosts.clone_from(&l.args);
        }
        "stricthostkeychecking" if r.strict_host_key_checking.is_none() => {
            r.strict_host_key_checking = first.map(|v| v.to_lowercase());
        }
        "hostkeyalias" if r.host_key_alias.is_none() => {
            r.host_key_alias = first;
        }
        "connecttimeout" if r.connect_timeout.is_none() => match first.as_deref().and_then(seconds) {
            Some(d) => r.connect_timeout = Some(d),
            None if first.as_deref() == Some("none") => {}
            None => bad(r, "ConnectTimeout"),
        },
        "serveraliveinterval" if r.server_alive_interval.is_none() => {
            match first.as_deref().and_then(seconds) {
                Some(d) => r.server_alive_interval = Some(d),
                None => bad(r, "ServerAliveInterval"),
            }
        }
        "serveralivecountmax" if r.server_alive_count_max.is_none() => {
            match first.as_deref().map(str::parse::<u32>) {
                Some(Ok(n)) => r.server_alive_count_max = Some(n),
                _ => bad(r, "ServerAliveCountMax"),
            }
        }
        _ => {}
    }
}

impl Resolved {
    /// The proxy jump chain as written (`None` when direct or `none`).
    pub fn jumps(&self) -> Vec<String> {
        match self.proxy_jump.as_deref() {
            None | Some("none") => Vec::new(),
            Some(j) => j
                .split(',')
                .map(|s| s.trim())
                .map(|s| s.strip_prefix("ssh://").unwrap_or(s).to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    /// Expands `~` and the `%` tokens OpenSSH knows in paths and commands
    /// (`%% %C %d %h %i %k %L %l %n %p %r %u`). An unknown token is an error.
    pub fn expand(&self, s: &str, local: &Local) -> Result<String, String> {
        let s = tilde(s, &local.home);
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('h') => out.push_str(&self.hostname),
                Some('p') => out.push_str(&self.port.to_string()),
                Some('r') => out.push_str(&self.user),
                Some('n') => out.push_str(&self.original),
                Some('u') => out.push_str(&local.user),
                Some('d') => out.push_str(&local.home.display().to_string()),
                Some('i') => out.push_str(&local.uid.to_string()),
                Some('L') => out.push_str(local.hostname.split('.').next().unwrap_or("")),
                Some('l') => out.push_str(&local.hostname),
                Some('k') => out.push_str(self.host_key_alias.as_deref().unwrap_or(&self.hostname)),
                Some(o) => return Err(format!("unknown token %{o} in `{s}`")),
                None => return Err(format!("a lone % at the end of `{s}`")),
            }
        }
        Ok(out)
    }
}

fn parse_file(file: &str, text: &str) -> Result<Vec<Line>, String> {
    let name: std::sync::Arc<str> = std::sync::Arc::from(file);
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let Some((keyword, rest)) = split_keyword(raw) else {
            continue;
        };
        let keyword = keyword.to_lowercase();
        let args = split_args(rest).map_err(|e| format!("{file}:{}: {e}", i + 1))?;
        if matches!(keyword.as_str(), "host" | "match" | "include") && args.is_empty() {
            return Err(format!("{file}:{}: {keyword} needs an argument", i + 1));
        }
        out.push(Line {
            file: name.clone(),
            number: i + 1,
            keyword,
            args,
            rest: rest.to_string(),
        });
    }
    Ok(out)
}
