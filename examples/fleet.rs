//! The real dashboard fed by a synthetic fleet (no collectors, no network): used to measure
//! what the dashboard writes to the terminal at steady state (scripts/term_bytes.sh) and to
//! look at a big fleet.
//!
//! `cargo run --release --example fleet -- [HOSTS] [INTERVAL_SECS]` (default 50 hosts, 2 s).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lookout::ui::demo::Fleet;
use lookout::ui::{Feeds, keymap::Keymap, theme::Theme};
use tokio::sync::{broadcast, mpsc, watch};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let hosts: usize = args.next().map_or(Ok(50), |a| a.parse())?;
    let secs: f64 = args.next().map_or(Ok(2.0), |a| a.parse())?;
    let interval = Duration::from_secs_f64(secs);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let config = lookout::config::parse("", "fleet", None).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut fleet = Fleet::new(hosts, interval);
        fleet.start = SystemTime::now();
        let (snap_tx, snap_rx) = watch::channel(Arc::new(fleet.next_round()));
        let (_events_tx, events_rx) = broadcast::channel(16);
        let (commands_tx, mut commands_rx) = mpsc::channel(16);
        let (reconnect_tx, _) = broadcast::channel(16);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if snap_tx.send(Arc::new(fleet.next_round())).is_err() {
                            break;
                        }
                    }
                    c = commands_rx.recv() => if c.is_none() { break },
                }
            }
        });
        lookout::ui::log::init();
        let feeds = Feeds {
            snapshots: snap_rx,
            events: events_rx,
            commands: commands_tx,
            reconnect: reconnect_tx,
            reloader: None,
            link: None,
            detail: None,
        };
        let theme = Theme::load("default", Theme::no_color_env()).map_err(anyhow::Error::msg)?;
        lookout::ui::run_with(&config, theme, Keymap::default(), feeds).await
    })
}
