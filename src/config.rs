//! Configuration: the TOML file as written (serde types that reject unknown keys), then
//! validated into the runtime [`Config`] the rest of lookout uses.
//!
//! Every error names the file, line and column, says what was expected and, for a misspelt
//! key, suggests the nearest valid one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::model::HostName;
use crate::triggers::rule::{Rule, TriggerFile};

mod include;
mod tolerant;
pub use include::{MAX_DEPTH, SourceFile};

// ---------------------------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// More files to read (globs relative to this file; see `config/include.rs`).
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    #[serde(default)]
    pub general: GeneralFile,
    #[serde(default)]
    pub ssh: SshFile,
    #[serde(default)]
    pub ping: PingFile,
    #[serde(default)]
    pub hosts: Vec<HostsFile>,
    #[serde(default)]
    pub watch: WatchFile,
    /// Prometheus servers whose targets become hosts (docs/prometheus.md).
    #[serde(default)]
    pub prometheus: Vec<crate::collectors::prometheus::PrometheusFile>,
    #[serde(default)]
    pub alertmanager: crate::alertmanager::AlertmanagerFile,
    /// Recording to disk (docs/record.md).
    #[serde(default)]
    pub record: crate::record::RecordFile,
    #[serde(default, rename = "trigger")]
    pub triggers: Vec<Spanned<TriggerFile>>,
    /// Commands whose answers become metrics (`collectors::checks`).
    #[serde(default, rename = "check")]
    pub checks: Vec<Spanned<crate::collectors::checks::config::CheckFile>>,
    /// Key bindings: action name -> key or list of keys (validated by the UI).
    #[serde(default)]
    pub keys: BTreeMap<Spanned<String>, Spanned<KeyList>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum KeyList {
    One(String),
    Many(Vec<String>),
}

impl KeyList {
    pub fn keys(&self) -> Vec<&str> {
        match self {
            KeyList::One(k) => vec![k.as_str()],
            KeyList::Many(ks) => ks.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneralFile {
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub history: Option<Duration>,
    pub theme: Option<String>,
    /// Ring the terminal bell when a trigger starts firing.
    pub bell: Option<bool>,
    /// Most notification commands running at once.
    pub max_actions: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub action_timeout: Option<Duration>,
    /// `"watch"`: reload when a config file changes (besides SIGHUP and the reload key).
    pub reload: Option<ReloadMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadMode {
    /// On SIGHUP, the dashboard's reload key or `lookout reload` only.
    #[default]
    Manual,
    /// Also when the files change (polled; src/reload.rs).
    Watch,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshFile {
    pub config_file: Option<String>,
    pub known_hosts: Option<String>,
    pub host_key_policy: Option<HostKeyPolicy>,
    pub jump: Option<String>,
    /// Identity files tried after the agent when the ssh config names none.
    pub identity_files: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub poll_timeout: Option<Duration>,
    /// Most SSH handshakes in flight at once.
    pub max_handshakes: Option<usize>,
    /// Largest output accepted from one poll, in bytes.
    pub max_output: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    Strict,
    AcceptNew,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingFile {
    /// How many recent probes the rtt/jitter/loss window holds.
    pub window: Option<usize>,
    /// Consecutive losses after which a ping-only host is `unreachable`.
    pub down_after: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsFile {
    pub names: Vec<Spanned<String>>,
    pub group: Option<String>,
    #[serde(default)]
    pub via: Via,
    #[serde(default)]
    pub ping: bool,
    /// Jump host for these hosts (overrides `[ssh] jump` and ProxyJump).
    pub jump: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    #[default]
    Ssh,
    Local,
    Ping,
    /// Discovered through a `[[prometheus]]` source (never written in `[[hosts]]`).
    #[serde(skip_deserializing)]
    Prometheus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchFile {
    #[serde(default)]
    pub processes: Vec<WatchProcesses>,
    #[serde(default)]
    pub disks: Vec<WatchDisks>,
    #[serde(default)]
    pub interfaces: Vec<WatchInterfaces>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchProcesses {
    pub hosts: Vec<Spanned<String>>,
    pub names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchDisks {
    pub hosts: Vec<Spanned<String>>,
    pub mounts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchInterfaces {
    pub hosts: Vec<Spanned<String>>,
    pub names: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// The runtime configuration.

#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; `None` for the built-in default.
    pub path: Option<PathBuf>,
    /// Every file read: the main one and those it includes (what a reload re-reads).
    pub files: Vec<PathBuf>,
    /// The folders `include` globs search (`reload = "watch"` looks for new files there).
    pub include_dirs: Vec<PathBuf>,
    pub general: General,
    pub ssh: SshSettings,
    pub ping: PingSettings,
    pub hosts: Vec<HostConfig>,
    pub prometheus: Vec<crate::collectors::prometheus::PrometheusSource>,
    pub alertmanager: crate::alertmanager::AlertmanagerSettings,
    /// `[record]` (`--no-record` turns `enabled` off).
    pub record: crate::record::RecordSettings,
    /// Hosts named on the command line and `--all-ssh-hosts` (src/cli_hosts.rs), kept so
    /// that a reload adds them to the re-read config again.
    pub command_line_hosts: (Vec<String>, bool),
    /// `--metrics-addr`: where `/metrics` is served (set from the command line).
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub triggers: Vec<Rule>,
    /// `[[check]]` tables, validated (their metrics registered).
    pub checks: Vec<crate::collectors::checks::Check>,
    /// Whether the rules are the built-in defaults (no `[[trigger]]` in the file).
    pub default_triggers: bool,
    pub keys: BTreeMap<Spanned<String>, Spanned<KeyList>>,
    /// The file's text, kept so later checks (key bindings) can point at lines.
    pub source_text: Arc<str>,
    /// Non-fatal findings (`lookout check` prints them).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct General {
    pub interval: Duration,
    pub history: Duration,
    pub theme: String,
    pub bell: bool,
    pub max_actions: usize,
    pub action_timeout: Duration,
    pub reload: ReloadMode,
}

impl General {
    /// Samples each history ring holds.
    pub fn history_len(&self) -> usize {
        let n = self.history.as_secs_f64() / self.interval.as_secs_f64().max(0.001);
        (n.ceil() as usize).clamp(2, 100_000)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SshSettings {
    pub config_file: PathBuf,
    pub known_hosts: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    pub jump: Option<String>,
    pub identity_files: Vec<PathBuf>,
    pub connect_timeout: Duration,
    pub poll_timeout: Duration,
    pub max_handshakes: usize,
    pub max_output: usize,
    /// Which of the keys above the file set: those win over the ssh config's keywords.
    pub explicit: SshExplicit,
}

/// The `[ssh]` keys a user wrote (the rest are defaults, which the ssh config overrides).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SshExplicit {
    pub known_hosts: bool,
    pub host_key_policy: bool,
    pub identity_files: bool,
    pub connect_timeout: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PingSettings {
    pub window: usize,
    pub down_after: u32,
    pub timeout: Duration,
}

/// One watched host after cross-product expansion.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    pub name: HostName,
    pub group: Option<String>,
    pub via: Via,
    pub ping: bool,
    pub jump: Option<String>,
    /// Watched process names (matched against the process name or its command line).
    pub processes: Vec<Arc<str>>,
    /// Watched mount points; empty means every real filesystem.
    pub mounts: Vec<String>,
    /// Watched interfaces; empty means every non-loopback interface.
    pub interfaces: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// A configuration problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// Whether the message already says where (`... at file:line:col — did you mean ...`).
    pub located: bool,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.located {
            f.write_str(&self.message)
        } else if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

/// All the errors found in one file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

/// Turns byte offsets of one file into `file:line:col` errors.
pub struct Locator<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Locator<'_> {
    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        (line, col)
    }

    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.line_col(span.start);
        ConfigError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
            located: false,
        }
    }

    /// The table header in force at `offset` (`[general]`, `[[hosts]]`), for messages.
    /// On a header line itself, the key is the header's last part, so the parent table is
    /// meant (`None` for the top level).
    fn table_at(&self, offset: usize) -> Option<String> {
        let offset = offset.min(self.text.len());
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        let line = self.text[line_start..line_end].trim();
        if let Some(header) = parse_header(line) {
            let (double, name) = header;
            let parent = name.rsplit_once('.').map(|(p, _)| p.trim().to_string())?;
            return Some(if double {
                format!("[[{parent}]]")
            } else {
                format!("[{parent}]")
            });
        }
        self.text[..line_start].lines().rev().find_map(|l| {
            parse_header(l.trim()).map(|(double, name)| {
                if double {
                    format!("[[{name}]]")
                } else {
                    format!("[{name}]")
                }
            })
        })
    }

    /// The `key` of a `key = value` line holding `offset`, when the offset is in the value.
    fn key_at(&self, offset: usize) -> Option<String> {
        let offset = offset.min(self.text.len());
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let (key, _) = self.text[line_start..offset].split_once('=')?;
        let key = key.trim();
        (!key.is_empty() && !key.contains(['[', '"', '\''])).then(|| key.to_string())
    }

    /// Rewrites one of toml's messages into ours (nearest key for an unknown one).
    fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let span = err.span().unwrap_or(0..0);
        let message = err.message().trim().to_string();
        let table = self.table_at(span.start);
        let Some(rest) = message.strip_prefix("unknown field `") else {
            let mut e = self.error(span.clone(), message.clone());
            if let Some(key) = self.key_at(span.start) {
                let place = table.map(|t| format!(" in {t}")).unwrap_or_default();
                e.message = format!("`{key}`{place}: {message}");
            }
            return e;
        };
        let (key, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let expected: Vec<&str> = tail
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        let table = table.unwrap_or_else(|| "the top level".to_string());
        let (line, col) = self.line_col(span.start);
        let mut m = format!("unknown key `{key}` in {table} at {}:{line}:{col}", self.file);
        match crate::suggest::nearest(key, expected.iter().copied()) {
            Some(near) => m.push_str(&format!(" — did you mean `{near}`?")),
            None if !expected.is_empty() => {
                m.push_str(&format!(" — expected one of {}", quote_list(&expected)))
            }
            None => {}
        }
        ConfigError {
            located: true,
            ..self.error(span, m)
        }
    }
}

/// `[name]` -> (false, name); `[[name]]` -> (true, name).
fn parse_header(line: &str) -> Option<(bool, String)> {
    if let Some(inner) = line.strip_prefix("[[") {
        return inner.split("]]").next().map(|n| (true, n.trim().to_string()));
    }
    let inner = line.strip_prefix('[')?;
    inner.split(']').next().map(|n| (false, n.trim().to_string()))
}

fn quote_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Loading.

/// Where the config comes from when `--config` is not given.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| directories::BaseDirs::new().map(|d| d.home_dir().join(".config")))?;
    Some(base.join("lookout").join("config.toml"))
}

/// Loads `--config FILE`, else the default location if that file exists, else the built-in
/// default that watches the local host.
pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigErrors> {
    let path = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => default_path().filter(|p| p.exists()),
    };
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigErrors(vec![ConfigError {
                    file: path.display().to_string(),
                    line: 0,
                    column: 0,
                    message: format!("cannot read the config file: {e}"),
                    located: false,
                }])
            })?;
            parse(&text, &path.display().to_string(), Some(path))
        }
        None => parse("", "<built-in default>", None),
    }
}

/// Parses and validates one config text and the files it includes (relative to `path`'s
/// directory, else to `file`'s). `file` is the name used in messages. Every error found is
/// reported, in file order and then position.
pub fn parse(text: &str, file: &str, path: Option<PathBuf>) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut glob_dirs = Vec::new();
    let files = include::gather(
        text,
        file,
        path.as_deref(),
        &mut errors,
        &mut warnings,
        &mut glob_dirs,
    );
    let order: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    let mut config = validate(files, path, &mut errors, warnings);
    config.include_dirs = glob_dirs;
    if errors.is_empty() {
        Ok(config)
    } else {
        let rank = |e: &ConfigError| order.iter().position(|n| *n == e.file).unwrap_or(usize::MAX);
        errors.sort_by_key(|e| (rank(e), e.line, e.column));
        errors.dedup();
        Err(ConfigErrors(errors))
    }
}

pub(crate) fn expand_path(p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/")
        && let Some(home) = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf())
    {
        return home.join(rest);
    }
    PathBuf::from(p)
}

/// The name the local host takes in the built-in default configuration.
pub fn local_host_name() -> String {
    sysinfo::System::host_name()
        .ok()
        .map(|h| crate::model::sanitize(&h))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn validate(
    mut files: Vec<SourceFile>,
    path: Option<PathBuf>,
    errors: &mut Vec<ConfigError>,
    mut warnings: Vec<String>,
) -> Config {
    // The settings tables come from the main file (included files cannot hold them).
    let main = &mut files[0].raw;
    let g = std::mem::take(&mut main.general);
    let s = std::mem::take(&mut main.ssh);
    let raw_ping = std::mem::take(&mut main.ping);
    let raw_alertmanager = std::mem::take(&mut main.alertmanager);
    let keys = std::mem::take(&mut main.keys);
    let raw_record = std::mem::take(&mut main.record);
    let main_loc = files[0].locator();
    let interval = g.interval.unwrap_or(Duration::from_secs(2));
    if interval < Duration::from_millis(100) {
        errors.push(main_loc.error(0..0, "[general] interval must be at least 100ms"));
    }
    let record = crate::record::RecordSettings::from_file(raw_record, &main_loc, errors);
    let general = General {
        interval: interval.max(Duration::from_millis(100)),
        history: g.history.unwrap_or(Duration::from_secs(15 * 60)),
        theme: g.theme.unwrap_or_else(|| "default".to_string()),
        bell: g.bell.unwrap_or(false),
        max_actions: g.max_actions.unwrap_or(8).max(1),
        action_timeout: g.action_timeout.unwrap_or(Duration::from_secs(30)),
        reload: g.reload.unwrap_or_default(),
    };
    let explicit = SshExplicit {
        known_hosts: s.known_hosts.is_some(),
        host_key_policy: s.host_key_policy.is_some(),
        identity_files: s.identity_files.is_some(),
        connect_timeout: s.connect_timeout.is_some(),
    };
    let ssh = SshSettings {
        explicit,
        config_file: expand_path(s.config_file.as_deref().unwrap_or("~/.ssh/config")),
        known_hosts: expand_path(s.known_hosts.as_deref().unwrap_or("~/.ssh/known_hosts")),
        host_key_policy: s.host_key_policy.unwrap_or(HostKeyPolicy::Strict),
        jump: s.jump,
        identity_files: s
            .identity_files
            .unwrap_or_else(|| {
                ["~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"]
                    .map(String::from)
                    .to_vec()
            })
            .iter()
            .map(|p| expand_path(p))
            .collect(),
        connect_timeout: s.connect_timeout.unwrap_or(Duration::from_secs(10)),
        poll_timeout: s.poll_timeout.unwrap_or(interval.max(Duration::from_secs(5))),
        max_handshakes: s.max_handshakes.unwrap_or(64).max(1),
        max_output: s.max_output.unwrap_or(4 << 20),
    };
    let ping = PingSettings {
        window: raw_ping.window.unwrap_or(20).max(1),
        down_after: raw_ping.down_after.unwrap_or(5).max(1),
        timeout: raw_ping.timeout.unwrap_or(Duration::from_secs(1)),
    };

    // Hosts, in file order (the main file, then included files in the order read); a name
    // listed twice is an error naming both places.
    let mut hosts: Vec<HostConfig> = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for f in &files {
        let loc = f.locator();
        for entry in &f.raw.hosts {
            for name in &entry.names {
                let n = name.get_ref().trim();
                if n.is_empty() || n.starts_with('@') || n == "*" || n.chars().any(char::is_control) {
                    errors.push(loc.error(name.span(), format!("invalid host name `{n}`")));
                    continue;
                }
                let (line, col) = loc.line_col(name.span().start);
                let here = format!("{}:{line}:{col}", loc.file);
                if let Some(first) = seen.get(n) {
                    errors.push(loc.error(
                        name.span(),
                        format!("host `{n}` is listed twice (first at {first})"),
                    ));
                    continue;
                }
                seen.insert(n.to_string(), here);
                hosts.push(HostConfig {
                    name: Arc::from(n),
                    group: entry.group.clone(),
                    via: entry.via,
                    ping: entry.ping || entry.via == Via::Ping,
                    jump: entry.jump.clone(),
                    processes: Vec::new(),
                    mounts: Vec::new(),
                    interfaces: Vec::new(),
                });
            }
        }
    }
    let no_hosts = files
        .iter()
        .all(|f| f.raw.hosts.is_empty() && f.raw.prometheus.is_empty());
    if no_hosts {
        hosts.push(HostConfig {
            name: Arc::from(local_host_name()),
            group: None,
            via: Via::Local,
            ping: false,
            jump: None,
            processes: Vec::new(),
            mounts: Vec::new(),
            interfaces: Vec::new(),
        });
    }

    // Cross products: every selected host x every listed name (ping-only hosts have no
    // processes, disks or interfaces to watch, so `*` and groups pass over them).
    let selector = HostSelector::new(&hosts);
    let pinged_only: Vec<bool> = hosts.iter().map(|h| h.via == Via::Ping).collect();
    let selected = |sel: &[Spanned<String>], loc: &Locator, errors: &mut Vec<ConfigError>| -> Vec<usize> {
        let mut v = selector.resolve(sel, loc, errors);
        v.retain(|&i| !pinged_only[i]);
        v
    };
    for f in &files {
        let loc = f.locator();
        for w in &f.raw.watch.processes {
            for i in selected(&w.hosts, &loc, errors) {
                for n in &w.names {
                    push_unique(&mut hosts[i].processes, Arc::from(n.as_str()));
                }
            }
        }
        for w in &f.raw.watch.disks {
            for i in selected(&w.hosts, &loc, errors) {
                for m in &w.mounts {
                    push_unique(&mut hosts[i].mounts, m.clone());
                }
            }
        }
        for w in &f.raw.watch.interfaces {
            for i in selected(&w.hosts, &loc, errors) {
                for n in &w.names {
                    push_unique(&mut hosts[i].interfaces, n.clone());
                }
            }
        }
    }

    let mut prometheus = Vec::new();
    let mut sources = 0;
    for f in &mut files {
        let loc = Locator {
            file: &f.name,
            text: &f.text,
        };
        for p in std::mem::take(&mut f.raw.prometheus) {
            prometheus.extend(crate::collectors::prometheus::PrometheusSource::from_file(
                p, sources, interval, &loc, errors,
            ));
            sources += 1;
        }
    }
    let alertmanager = crate::alertmanager::AlertmanagerSettings::from_file(&raw_alertmanager);

    // Before the triggers: a rule may read `check.<name>` metrics.
    let mut checks = Vec::new();
    let mut check_names = BTreeMap::new();
    for f in &mut files {
        let loc = Locator {
            file: &f.name,
            text: &f.text,
        };
        checks.extend(crate::collectors::checks::config::validate(
            std::mem::take(&mut f.raw.checks),
            interval,
            &hosts,
            &selector,
            &mut check_names,
            &loc,
            errors,
        ));
    }

    let default_triggers = files.iter().all(|f| f.raw.triggers.is_empty());
    let triggers = if default_triggers {
        crate::triggers::rule::default_rules()
    } else {
        // name -> where it was first defined
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut rules = Vec::new();
        for f in &mut files {
            let loc = Locator {
                file: &f.name,
                text: &f.text,
            };
            for t in std::mem::take(&mut f.raw.triggers) {
                let span = t.span();
                let name_span = t.get_ref().name.as_ref().map_or(span.clone(), Spanned::span);
                let Some(rule) =
                    Rule::from_file(t.into_inner(), span, &loc, &selector, errors, &mut warnings)
                else {
                    continue;
                };
                let (line, col) = loc.line_col(name_span.start);
                let here = format!("{}:{line}:{col}", loc.file);
                match names.get(&rule.name) {
                    Some(first) => errors.push(loc.error(
                        name_span,
                        format!("two triggers are named `{}` (the other at {first})", rule.name),
                    )),
                    None => {
                        names.insert(rule.name.clone(), here);
                        rules.push(rule);
                    }
                }
            }
        }
        rules
    };

    Config {
        path,
        files: files.iter().filter_map(|f| f.path.clone()).collect(),
        include_dirs: Vec::new(),
        general,
        ssh,
        ping,
        hosts,
        prometheus,
        alertmanager,
        record,
        command_line_hosts: (Vec::new(), false),
        metrics_addr: None,
        triggers,
        checks,
        default_triggers,
        keys,
        source_text: files[0].text.clone(),
        warnings,
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, item: T) {
    if !v.contains(&item) {
        v.push(item);
    }
}

/// Resolves `*`, `@group` and host-name selectors against the configured hosts.
pub struct HostSelector {
    names: Vec<HostName>,
    groups: Vec<Option<String>>,
}

impl HostSelector {
    pub fn new(hosts: &[HostConfig]) -> Self {
        HostSelector {
            names: hosts.iter().map(|h| h.name.clone()).collect(),
            groups: hosts.iter().map(|h| h.group.clone()).collect(),
        }
    }

    /// Indexes of the hosts the selectors name; unknown names and groups are errors.
    pub fn resolve(
        &self,
        selectors: &[Spanned<String>],
        loc: &Locator,
        errors: &mut Vec<ConfigError>,
    ) -> Vec<usize> {
        let mut out = Vec::new();
        for sel in selectors {
            let s = sel.get_ref().as_str();
            let matched: Vec<usize> = if s == "*" {
                (0..self.names.len()).collect()
            } else if let Some(group) = s.strip_prefix('@') {
                let m: Vec<usize> = (0..self.names.len())
                    .filter(|&i| self.groups[i].as_deref() == Some(group))
                    .collect();
                if m.is_empty() {
                    let known: BTreeSet<&str> = self.groups.iter().flatten().map(String::as_str).collect();
                    let hint = match crate::suggest::nearest(group, known.iter().copied()) {
                        Some(n) => format!(" — did you mean `@{n}`?"),
                        None if known.is_empty() => " (no [[hosts]] entry sets `group`)".to_string(),
                        None => format!(
                            " (groups: {})",
                            known
                                .iter()
                                .map(|g| format!("`@{g}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    errors.push(loc.error(sel.span(), format!("no host is in group `{group}`{hint}")));
                }
                m
            } else {
                let m: Vec<usize> = (0..self.names.len()).filter(|&i| &*self.names[i] == s).collect();
                if m.is_empty() {
                    let hint = crate::suggest::nearest(s, self.names.iter().map(|n| &**n))
                        .map(|n| format!(" — did you mean `{n}`?"))
                        .unwrap_or_default();
                    errors.push(loc.error(
                        sel.span(),
                        format!("unknown host `{s}` (not in any [[hosts]] names){hint}"),
                    ));
                }
                m
            };
            for i in matched {
                push_unique(&mut out, i);
            }
        }
        out
    }

    pub fn name(&self, i: usize) -> &HostName {
        &self.names[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        match parse(text, "t.toml", None) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn empty_config_watches_local_host() {
        let c = parse("", "t.toml", None).expect("valid");
        assert_eq!(c.hosts.len(), 1);
        assert_eq!(c.hosts[0].via, Via::Local);
        assert_eq!(c.general.interval, Duration::from_secs(2));
        assert_eq!(c.general.history_len(), 450);
        assert!(c.default_triggers);
    }

    #[test]
    fn misspelt_key_names_nearest() {
        let e = errs("[general]\nintervall = \"2s\"\n");
        assert_eq!(
            e,
            vec!["unknown key `intervall` in [general] at t.toml:2:1 — did you mean `interval`?"]
        );
    }

    #[test]
    fn cross_product_expands() {
        let c = parse(
            r#"
[[hosts]]
names = ["alpha", "beta", "delta"]
group = "web"
[[hosts]]
names = ["db1"]
group = "db"
[[watch.processes]]
hosts = ["@web", "db1"]
names = ["httpd", "sshd"]
[[watch.disks]]
hosts = ["*"]
mounts = ["/", "/var"]
"#,
            "t.toml",
            None,
        )
        .expect("valid");
        assert_eq!(c.hosts.len(), 4);
        for h in &c.hosts {
            assert_eq!(
                h.processes.iter().map(|p| &**p).collect::<Vec<_>>(),
                ["httpd", "sshd"]
            );
            assert_eq!(h.mounts, ["/", "/var"]);
        }
    }

    #[test]
    fn unknown_selectors_are_errors() {
        let e = errs(
            "[[hosts]]\nnames = [\"alpha\"]\ngroup = \"web\"\n[[watch.disks]]\nhosts = [\"@webb\", \"alpah\"]\nmounts = [\"/\"]\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            e[0],
            "t.toml:5:10: no host is in group `webb` — did you mean `@web`?"
        );
        assert_eq!(
            e[1],
            "t.toml:5:19: unknown host `alpah` (not in any [[hosts]] names) — did you mean `alpha`?"
        );
    }

    #[test]
    fn bad_duration_is_located() {
        let e = errs("[general]\ninterval = \"soon\"\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("t.toml:2:12: "), "{}", e[0]);
    }
}
