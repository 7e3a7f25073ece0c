//! Wiring: starts the collectors and the engine task and hands front ends their channels.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::engine::{self, Engine, EngineChannels};
use crate::event::Event;
use crate::model::{HostName, Update};
use crate::reload::{Collectors, ReloadOutcome, Reloader};
use crate::snapshot::Snapshot;
use crate::triggers::Command;
use crate::triggers::action::{ActionRunner, ActionSettings};

/// The async runtime of the `lookout` binary (and of the fleet probe, which measures it).
/// One worker thread: collection is light (under a tenth of a core at 1,000 hosts), and a
/// second worker cost ~5% more CPU in cross-thread wake-ups there (docs/fleet.md). The front
/// end runs on the thread that calls `block_on`, so a slow terminal never stalls collection.
pub fn tokio_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

/// A running engine and its collectors.
pub struct Running {
    pub config: Arc<Config>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub events: broadcast::Sender<Event>,
    pub commands: mpsc::Sender<Command>,
    /// Hosts whose connection a front end asked to re-open.
    pub reconnect: broadcast::Sender<HostName>,
    pub engine: JoinHandle<()>,
    /// Runs the notification commands of trigger events (for every front end).
    pub actions: ActionRunner,
    updates: mpsc::Sender<Update>,
    /// Subscribed before the engine started, so the first front end misses no event.
    first_events: Option<broadcast::Receiver<Event>>,
    /// The running config and its collectors, for reloads (src/reload.rs).
    reloader: Arc<tokio::sync::Mutex<Reloader>>,
}

impl Running {
    /// A sender for extra update sources (tests, external collectors).
    pub fn updates(&self) -> mpsc::Sender<Update> {
        self.updates.clone()
    }

    /// Re-reads the config files and applies them in place, or refuses them whole (the
    /// outcome is also sent as an event). Reloads run one at a time.
    pub async fn reload(&self) -> ReloadOutcome {
        self.reloader.lock().await.reload().await
    }

    /// The reloader itself: for front ends that validate more before applying (the
    /// dashboard's key bindings) and for `serve`'s Reload request.
    pub fn reloader(&self) -> Arc<tokio::sync::Mutex<Reloader>> {
        self.reloader.clone()
    }

    /// Reloads the config on every SIGHUP from now on (the dashboard, headless runs,
    /// `serve`). Without a signal handler the process would die of SIGHUP instead.
    pub fn reload_on_sighup(&self) {
        let reloader = self.reloader.clone();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        log::info!("SIGHUP: reloading the config");
                        reloader.lock().await.reload().await;
                    }
                });
            }
            Err(e) => log::warn!("cannot watch SIGHUP, no reload on it: {e}"),
        }
    }

    /// With `[general] reload = "watch"`, reloads when the config files change (src/reload.rs);
    /// otherwise does nothing.
    pub fn watch_config(&self) {
        if self.config.general.reload == crate::config::ReloadMode::Watch {
            tokio::spawn(crate::reload::watch(self.reloader.clone(), &self.config));
        }
    }

    /// Subscribe to events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Every event since the engine started (the first call; later calls subscribe from now).
    pub fn subscribe_from_start(&mut self) -> broadcast::Receiver<Event> {
        self.first_events
            .take()
            .unwrap_or_else(|| self.events.subscribe())
    }
}

/// Starts everything the config asks for. Must be called inside a tokio runtime.
pub fn start(config: Arc<Config>) -> Running {
    start_with_clock(config, Arc::new(SystemClock))
}

pub fn start_with_clock(config: Arc<Config>, clock: Arc<dyn Clock>) -> Running {
    // Room for a few rounds of every host, so a slow engine tick never blocks collectors.
    // A Prometheus source sends a whole round (one sample per discovered host) at once: room
    // for it lets the engine take it in a few batches instead of one wake-up (and one
    // trigger and max-risk pass over every host) per 256 updates.
    let room = 4 * config.hosts.len().max(64) + 32_768 * config.prometheus.len();
    let (updates_tx, updates_rx) = mpsc::channel(room);
    let (commands_tx, commands_rx) = mpsc::channel(64);
    let (events_tx, _) = broadcast::channel(4096);
    let (reconnect_tx, _) = broadcast::channel(64);
    let engine = Engine::new(config.clone(), clock.clone());
    let (snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot::empty(config.general.interval)));

    crate::collectors::prometheus::spawn_all(&config.prometheus, &updates_tx);
    crate::alertmanager::spawn(&config, clock.clone(), &events_tx);

    let actions = ActionRunner::new(
        ActionSettings {
            timeout: config.general.action_timeout,
            max_running: config.general.max_actions,
        },
        events_tx.clone(),
        clock,
    );
    tokio::spawn(actions.clone().serve(events_tx.subscribe()));
    let first_events = Some(events_tx.subscribe());
    // Local, ping and SSH collectors, kept per host so that a reload can start and stop one.
    let collectors = Collectors::start(&config, &updates_tx, &reconnect_tx);
    let reloader = Arc::new(tokio::sync::Mutex::new(Reloader::new(
        config.clone(),
        collectors,
        commands_tx.clone(),
        updates_tx.clone(),
        reconnect_tx.clone(),
        events_tx.clone(),
    )));

    if let Some(addr) = config.metrics_addr {
        let snaps = snap_rx.clone();
        tokio::spawn(async move {
            match crate::export::serve(addr, snaps).await {
                Ok(local) => log::info!("serving metrics at http://{local}/metrics"),
                Err(e) => log::error!("cannot serve metrics on {addr}: {e}"),
            }
        });
    }

    // Start-up's code pages out of RSS once it is over (src/footprint.rs). A short-lived
    // run (a snapshot) ends before this.
    tokio::spawn(async {
        tokio::time::sleep(crate::footprint::RELEASE_AFTER).await;
        let released = crate::footprint::release_startup_text();
        log::debug!("released {} KiB of start-up code pages", released / 1024);
    });

    let engine = tokio::spawn(engine::run(
        engine,
        EngineChannels {
            updates: updates_rx,
            commands: commands_rx,
            snapshots: snap_tx,
            events: events_tx.clone(),
        },
    ));
    Running {
        config,
        snapshots: snap_rx,
        events: events_tx,
        commands: commands_tx,
        reconnect: reconnect_tx,
        engine,
        actions,
        updates: updates_tx,
        first_events,
        reloader,
    }
}
