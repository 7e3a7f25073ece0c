//! Config reload, the runtime's side: re-read the files, refuse a config with errors
//! whole, else hand the engine the new config (src/engine/reload.rs keeps what did not
//! change) and start or stop only the collectors of hosts that were added, removed or
//! changed. Unchanged hosts keep their collector task, and so their SSH connection.
//!
//! Triggered by SIGHUP ([`Running::reload_on_sighup`](crate::runtime::Running)), the
//! dashboard's reload key and, for `serve`, a Reload request on its socket; each outcome
//! is also an [`EventKind::Reload`] event (the log, the headless JSON lines).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::collectors::ping::PingTarget;
use crate::collectors::ssh::{self, PollMode, Shared};
use crate::config::{Config, HostConfig, Via};
use crate::event::{Event, EventKind};
use crate::model::{HostName, Update};
use crate::triggers::{Command, ReloadRequest};

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Applied; one line per kind of change (empty: nothing changed).
    Applied(Vec<String>),
    /// Refused: the running config stays. Every error, `file:line:col: ...`.
    Refused(Vec<String>),
}

/// The collector tasks of a running config, per host.
pub struct Collectors {
    ssh_shared: Arc<Shared>,
    ssh: BTreeMap<HostName, AbortHandle>,
    local: BTreeMap<HostName, Arc<AtomicBool>>,
    /// The `[[check]]` tasks of local hosts (SSH hosts run theirs in their own task).
    local_checks: BTreeMap<HostName, AbortHandle>,
    /// The ping thread's targets and the way to stop it.
    ping: Option<(Vec<PingTarget>, oneshot::Sender<()>)>,
    mode: PollMode,
}

impl Collectors {
    /// Starts the local, ping and SSH collectors `config` asks for.
    pub fn start(
        config: &Arc<Config>,
        updates: &mpsc::Sender<Update>,
        reconnect: &broadcast::Sender<HostName>,
    ) -> Self {
        let ssh_tasks = ssh::spawn_all(config, updates, reconnect);
        let mut c = Collectors {
            ssh_shared: ssh_tasks.shared,
            ssh: ssh_tasks.tasks.into_iter().collect(),
            local: BTreeMap::new(),
            local_checks: BTreeMap::new(),
            ping: None,
            mode: PollMode::Stream,
        };
        for host in config.hosts.iter().filter(|h| h.via == Via::Local) {
            c.start_local(config, host, updates);
        }
        c.start_ping(config, updates);
        c
    }

    fn start_local(&mut self, config: &Config, host: &HostConfig, updates: &mpsc::Sender<Update>) {
        let stop = Arc::new(AtomicBool::new(false));
        crate::collectors::local::spawn_stoppable(
            host,
            config.general.interval,
            updates.clone(),
            stop.clone(),
        );
        self.local.insert(host.name.clone(), stop);
        if let Some(h) = crate::collectors::checks::spawn_local_host(config, &host.name, updates) {
            self.local_checks.insert(host.name.clone(), h);
        }
    }

    fn start_ping(&mut self, config: &Config, updates: &mpsc::Sender<Update>) {
        let targets = crate::collectors::ping::targets(config);
        if targets.is_empty() {
            return;
        }
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        crate::collectors::ping::spawn_until(
            targets.clone(),
            config.ping.clone(),
            config.general.interval,
            updates.clone(),
            async move {
                // Only an explicit stop ends it, not a dropped sender.
                if stop_rx.await.is_err() {
                    std::future::pending::<()>().await;
                }
            },
        );
        self.ping = Some((targets, stop_tx));
    }

    fn stop(&mut self, host: &HostName) {
        if let Some(h) = self.ssh.remove(host) {
            h.abort();
        }
        if let Some(flag) = self.local.remove(host) {
            flag.store(true, Ordering::Relaxed);
        }
        if let Some(h) = self.local_checks.remove(host) {
            h.abort();
        }
    }
}

/// The hosts a new config adds, drops and changes, against the running one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HostChanges {
    pub added: Vec<HostName>,
    pub removed: Vec<HostName>,
    /// In both, but watched differently (or their collector's settings changed): their
    /// collector restarts.
    pub changed: Vec<HostName>,
}

/// Compares the hosts of two configs. A host is unchanged when its own entry, the
/// settings its collector runs with (`[general] interval`, and `[ssh]` for SSH hosts) and
/// the `[[check]]`s it runs are the same.
pub fn host_changes(old: &Config, new: &Config) -> HostChanges {
    let interval_changed = old.general.interval != new.general.interval;
    let ssh_changed = old.ssh != new.ssh;
    let mut c = HostChanges::default();
    for h in &new.hosts {
        match old.hosts.iter().find(|o| o.name == h.name) {
            None => c.added.push(h.name.clone()),
            Some(o) => {
                let settings = interval_changed || (h.via == Via::Ssh && ssh_changed);
                let checks = crate::collectors::checks::fingerprint(old, &h.name)
                    != crate::collectors::checks::fingerprint(new, &h.name);
                if o != h || settings || checks {
                    c.changed.push(h.name.clone());
                }
            }
        }
    }
    c.removed = old
        .hosts
        .iter()
        .filter(|o| !new.hosts.iter().any(|h| h.name == o.name))
        .map(|o| o.name.clone())
        .collect();
    c
}

/// Settings read once at start-up: a reload that changes them says so.
fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if format!("{:?}", old.prometheus) != format!("{:?}", new.prometheus) {
        out.push("[[prometheus]]");
    }
    if format!("{:?}", old.alertmanager) != format!("{:?}", new.alertmanager) {
        out.push("[alertmanager]");
    }
    if format!("{:?}", old.keys) != format!("{:?}", new.keys) {
        out.push("[keys]");
    }
    let (a, b) = (&old.general, &new.general);
    if a.theme != b.theme || a.bell != b.bell {
        out.push("[general] theme and bell");
    }
    if a.max_actions != b.max_actions || a.action_timeout != b.action_timeout {
        out.push("[general] max_actions and action_timeout");
    }
    if a.history != b.history {
        out.push("[general] history (for hosts already watched)");
    }
    out
}

fn names(list: &[impl AsRef<str>]) -> String {
    list.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
}

/// Owns the running config and its collectors; applies reloads one at a time.
pub struct Reloader {
    config: Arc<Config>,
    collectors: Collectors,
    commands: mpsc::Sender<Command>,
    updates: mpsc::Sender<Update>,
    reconnect: broadcast::Sender<HostName>,
    events: broadcast::Sender<Event>,
}

impl Reloader {
    pub fn new(
        config: Arc<Config>,
        collectors: Collectors,
        commands: mpsc::Sender<Command>,
        updates: mpsc::Sender<Update>,
        reconnect: broadcast::Sender<HostName>,
        events: broadcast::Sender<Event>,
    ) -> Self {
        Reloader {
            config,
            collectors,
            commands,
            updates,
            reconnect,
            events,
        }
    }

    /// The config running now.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Re-reads the running config's files (the same `--config`, or the default place).
    pub async fn reload(&mut self) -> ReloadOutcome {
        match self.load() {
            Ok(new) => self.apply(new).await,
            Err(errors) => self.refuse(errors),
        }
    }

    /// The running config's files read again, with the hosts named on the command line
    /// added as at start-up; every error on failure.
    pub fn load(&self) -> Result<Config, Vec<String>> {
        let path = self.config.path.clone();
        let mut new = crate::config::load(path.as_deref())
            .map_err(|errors| errors.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let (names, all) = &self.config.command_line_hosts;
        crate::cli_hosts::add(&mut new, names, *all).map_err(|e| vec![e])?;
        new.command_line_hosts = self.config.command_line_hosts.clone();
        Ok(new)
    }

    /// Refuses a reload: the running config stays; the errors go to the log.
    pub fn refuse(&self, errors: Vec<String>) -> ReloadOutcome {
        for e in &errors {
            log::error!("config reload refused: {e}");
        }
        self.emit(false, errors.clone());
        ReloadOutcome::Refused(errors)
    }

    /// Applies a validated config in place.
    pub async fn apply(&mut self, mut new: Config) -> ReloadOutcome {
        // Set from the command line, not the file.
        new.metrics_addr = self.config.metrics_addr;
        let new = Arc::new(new);
        let hosts = host_changes(&self.config, &new);
        let (req, answer) = ReloadRequest::new(new.clone());
        if self.commands.send(Command::Reload(req)).await.is_err() {
            return self.refuse(vec!["the engine has stopped".to_string()]);
        }
        let Ok(rules) = answer.await else {
            return self.refuse(vec!["the engine has stopped".to_string()]);
        };
        // The engine knows the new hosts now: their first updates find their rows.
        for h in hosts.removed.iter().chain(&hosts.changed) {
            self.collectors.stop(h);
        }
        if self.config.ssh != new.ssh || self.config.general.interval != new.general.interval {
            self.collectors.ssh_shared = ssh::shared(&new, self.collectors.mode);
        }
        let start: Vec<&HostConfig> = new
            .hosts
            .iter()
            .filter(|h| hosts.added.contains(&h.name) || hosts.changed.contains(&h.name))
            .collect();
        let ssh_hosts: Vec<&HostConfig> = start.iter().copied().filter(|h| h.via == Via::Ssh).collect();
        let shared = self.collectors.ssh_shared.clone();
        for (name, handle) in ssh::spawn_hosts(&new, &shared, &ssh_hosts, &self.updates, &self.reconnect) {
            self.collectors.ssh.insert(name, handle);
        }
        for h in start.iter().filter(|h| h.via == Via::Local) {
            self.collectors.start_local(&new, h, &self.updates);
        }
        let targets = crate::collectors::ping::targets(&new);
        let ping_same = self
            .collectors
            .ping
            .as_ref()
            .map_or(targets.is_empty(), |(t, _)| *t == targets)
            && self.config.ping == new.ping
            && self.config.general.interval == new.general.interval;
        let mut details = Vec::new();
        if !ping_same {
            if let Some((_, stop)) = self.collectors.ping.take() {
                let _ = stop.send(());
            }
            self.collectors.start_ping(&new, &self.updates);
            details.push("ping collector restarted (targets or [ping] changed)".to_string());
        }
        for (what, list) in [
            ("hosts added", &hosts.added),
            ("hosts removed", &hosts.removed),
            ("hosts changed, their collectors restarted", &hosts.changed),
        ] {
            if !list.is_empty() {
                details.push(format!("{what}: {}", names(list)));
            }
        }
        for (what, list) in [
            ("triggers changed, restarted from ok", &rules.changed),
            ("triggers added", &rules.added),
            ("triggers removed", &rules.removed),
        ] {
            if !list.is_empty() {
                details.push(format!("{what}: {}", names(list)));
            }
        }
        let later = restart_only(&self.config, &new);
        if !later.is_empty() {
            details.push(format!("take effect at the next start: {}", later.join(", ")));
        }
        for d in &details {
            log::info!("config reloaded: {d}");
        }
        self.config = new;
        self.emit(true, details.clone());
        ReloadOutcome::Applied(details)
    }

    fn emit(&self, applied: bool, details: Vec<String>) {
        let _ = self.events.send(Event::new(
            SystemTime::now(),
            EventKind::Reload { applied, details },
        ));
    }
}

/// How often the files of a `reload = "watch"` config are looked at.
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What the files of a config look like on disk: the modification time and size of each
/// file and of each folder an include glob searches (it changes when a file is added).
type Fingerprint = Vec<(std::path::PathBuf, Option<(SystemTime, u64)>)>;

fn fingerprint(config: &Config) -> Fingerprint {
    let mut paths: Vec<std::path::PathBuf> = config.files.clone();
    paths.extend(config.include_dirs.iter().cloned());
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (p, m)
        })
        .collect()
}

/// Polls the running config's files and reloads when they change and then hold still for
/// one more look (an editor or a script writing several files is not caught midway).
/// Polling, not inotify: a handful of stat calls a second, and it works on any filesystem.
pub fn watch(
    reloader: Arc<tokio::sync::Mutex<Reloader>>,
    config: &Config,
) -> impl Future<Output = ()> + use<> {
    // Taken now, not when the task first runs: a change made meanwhile is not missed.
    let seen = fingerprint(config);
    watch_from(reloader, seen)
}

async fn watch_from(reloader: Arc<tokio::sync::Mutex<Reloader>>, mut seen: Fingerprint) {
    let mut pending: Option<Vec<_>> = None;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let config = reloader.lock().await.config().clone();
        if config.general.reload != crate::config::ReloadMode::Watch {
            return;
        }
        let now = fingerprint(&config);
        if now == seen {
            pending = None;
            continue;
        }
        if pending.as_ref() != Some(&now) {
            pending = Some(now);
            continue;
        }
        log::info!("config files changed: reloading");
        let mut r = reloader.lock().await;
        r.reload().await;
        // After a refused reload the running config's files are the ones on disk: the
        // next change is looked for from here.
        seen = fingerprint(r.config());
        pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        crate::config::parse(text, "t.toml", None).expect("valid")
    }

    #[test]
    fn a_host_whose_checks_changed_is_restarted() {
        let old = cfg(
            "[[hosts]]\nnames = [\"a\", \"b\"]\n[[check]]\nname = \"q\"\nhosts = [\"a\"]\ncommand = \"echo 1\"\n",
        );
        let new = cfg(
            "[[hosts]]\nnames = [\"a\", \"b\"]\n[[check]]\nname = \"q\"\nhosts = [\"a\"]\ncommand = \"echo 2\"\n",
        );
        let c = host_changes(&old, &new);
        assert_eq!(c.changed, [Arc::from("a")]);
        assert!(c.added.is_empty() && c.removed.is_empty());
        assert_eq!(host_changes(&old, &old), HostChanges::default());
    }

    #[test]
    fn host_changes_compare_entries_and_collector_settings() {
        let old = cfg(
            "[[hosts]]\nnames = [\"a\", \"b\", \"c\"]\n[[watch.processes]]\nhosts = [\"c\"]\nnames = [\"x\"]\n",
        );
        let new = cfg(
            "[[hosts]]\nnames = [\"b\", \"c\", \"d\"]\n[[watch.processes]]\nhosts = [\"c\"]\nnames = [\"y\"]\n",
        );
        let c = host_changes(&old, &new);
        assert_eq!(c.added, [Arc::from("d")]);
        assert_eq!(c.removed, [Arc::from("a")]);
        assert_eq!(c.changed, [Arc::from("c")]);
        let slower = cfg(
            "[ssh]\nconnect_timeout = \"3s\"\n[[hosts]]\nnames = [\"a\", \"b\", \"c\"]\n[[watch.processes]]\nhosts = [\"c\"]\nnames = [\"x\"]\n",
        );
        assert_eq!(
            host_changes(&old, &slower).changed.len(),
            3,
            "[ssh] restarts ssh hosts"
        );
        assert_eq!(host_changes(&old, &old), HostChanges::default());
    }
}
