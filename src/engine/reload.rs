//! The engine's side of a config reload: the new config is applied in place. Hosts that
//! stay keep their state and history, hosts that go are dropped, new ones start
//! `connecting`; trigger rules that did not change keep their lines (see
//! [`TriggerSet::reload`](crate::triggers::TriggerSet::reload)).
//!
//! Starting and stopping collectors is the runtime's (src/reload.rs); it calls this first,
//! so the first update of a new host finds its row.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::{Engine, HostState};
use crate::config::Config;
use crate::model::HostName;
use crate::triggers::state::RuleChanges;

impl Engine {
    /// Applies a validated config; returns what became of each trigger rule.
    pub fn reload(&mut self, config: Arc<Config>) -> RuleChanges {
        let cap = config.general.history_len();
        let before: Vec<HostState> = std::mem::take(&mut self.hosts);
        let configured = |c: &Config, name: &HostName| c.hosts.iter().any(|h| h.name == *name);
        // Hosts found at run time (Prometheus targets) stay, in their order, after the
        // configured ones: their source reports them again or they go stale.
        let discovered: Vec<HostName> = before
            .iter()
            .map(|h| h.view.name.clone())
            .filter(|n| !configured(&self.config, n) && !configured(&config, n))
            .collect();
        let mut old: FxHashMap<HostName, HostState> =
            before.into_iter().map(|h| (h.view.name.clone(), h)).collect();
        let mut hosts = Vec::with_capacity(config.hosts.len() + discovered.len());
        for h in &config.hosts {
            let state = match old.remove(&h.name) {
                Some(mut s) if s.view.via == h.via => {
                    if s.view.group != h.group {
                        let mut view = crate::snapshot::HostView::clone(&s.view);
                        view.group.clone_from(&h.group);
                        s.view = Arc::new(view);
                    }
                    s
                }
                // New, or watched another way now: a fresh row.
                _ => HostState::new(h.name.clone(), h.group.clone(), h.via, cap),
            };
            hosts.push(state);
        }
        hosts.extend(discovered.iter().filter_map(|n| old.remove(n)));
        self.index = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.view.name.clone(), i))
            .collect();
        self.hosts = hosts;
        let changes = self
            .triggers
            .reload(config.triggers.clone(), config.general.interval);
        self.config = config;
        self.dirty = true;
        self.max_risk = None;
        self.last = None;
        changes
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::FakeClock;
    use crate::model::{HostStatus, Metric, Reading, Sample, Source, Update};
    use crate::triggers::{Command, TriggerState};

    fn config(hosts: &str, load_above: u32) -> Arc<Config> {
        let text = format!(
            "[general]\ninterval = \"1s\"\n[[hosts]]\nnames = [{hosts}]\n\
             [[trigger]]\nname = \"cpu hot\"\nmetric = \"cpu.usage_pct\"\nscope = \"each\"\nabove = 90\n\
             [[trigger]]\nname = \"load high\"\nmetric = \"load.1\"\nscope = \"each\"\nabove = {load_above}\nfor = \"10s\"\n"
        );
        Arc::new(crate::config::parse(&text, "t.toml", None).expect("valid"))
    }

    fn feed(e: &mut Engine, host: &str, cpu: f64, load: f64) {
        e.apply(Update::Status {
            host: Arc::from(host),
            status: HostStatus::Up,
            error: None,
        });
        e.apply(Update::Sample(Sample {
            host: Arc::from(host),
            source: Source::System,
            readings: vec![
                Reading::host(Metric::CpuUsage, cpu),
                Reading::host(Metric::Load1, load),
            ],
            processes: Vec::new(),
        }));
    }

    fn states(e: &mut Engine) -> Vec<String> {
        e.snapshot()
            .triggers
            .iter()
            .map(|t| format!("{} @{}: {}", t.name, t.host, t.state))
            .collect()
    }

    #[test]
    fn unchanged_rules_and_hosts_keep_their_state() {
        let clock = Arc::new(FakeClock::at_epoch());
        let mut e = Engine::new(config("\"a\", \"b\", \"c\"", 2), clock.clone());
        feed(&mut e, "a", 50.0, 0.5);
        feed(&mut e, "b", 95.0, 3.0);
        feed(&mut e, "c", 95.0, 0.5);
        e.tick();
        e.command(&Command::Acknowledge {
            trigger: "cpu hot".into(),
            host: "c".into(),
            instance: String::new(),
        });
        clock.advance(Duration::from_secs(1));
        feed(&mut e, "a", 50.0, 0.5);
        feed(&mut e, "b", 95.0, 3.0);
        feed(&mut e, "c", 95.0, 0.5);
        e.tick();
        assert_eq!(
            states(&mut e),
            [
                "cpu hot @b: firing",
                "cpu hot @c: acknowledged",
                "load high @b: pending"
            ]
        );
        let before = e
            .snapshot()
            .host("c")
            .map(|h| h.history(Metric::CpuUsage, "", 10));

        // a goes, d comes, c moves to the front; "load high" gets a new threshold
        let changes = e.reload(config("\"c\", \"b\", \"d\"", 5));
        assert_eq!(changes.kept, ["cpu hot"]);
        assert_eq!(changes.changed, ["load high"]);
        e.tick();
        assert_eq!(states(&mut e), ["cpu hot @b: firing", "cpu hot @c: acknowledged"]);
        let snap = e.snapshot();
        let names: Vec<&str> = snap.hosts.iter().map(|h| &*h.name).collect();
        assert_eq!(names, ["c", "b", "d"]);
        assert_eq!(snap.host("d").map(|h| h.status), Some(HostStatus::Connecting));
        assert_eq!(
            snap.host("c").map(|h| h.history(Metric::CpuUsage, "", 10)),
            before,
            "history kept"
        );
        // the kept lines still follow their hosts: c recovers, b's line stays
        clock.advance(Duration::from_secs(1));
        feed(&mut e, "c", 10.0, 0.5);
        feed(&mut e, "b", 95.0, 3.0);
        e.tick();
        let st = states(&mut e);
        assert!(st.contains(&"cpu hot @c: resolved".to_string()), "{st:?}");
        assert!(st.contains(&"cpu hot @b: firing".to_string()), "{st:?}");
        assert_eq!(
            e.triggers()
                .views()
                .iter()
                .filter(|v| v.state == TriggerState::Pending)
                .count(),
            0
        );
    }
}
