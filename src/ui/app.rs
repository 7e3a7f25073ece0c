//! The dashboard's state and everything keys and mice do to it. Pure: no terminal, no
//! channels — inputs come in as crossterm events and a clock value, what must happen outside
//! (quit, commands, reconnects, the bell) goes out as [`Effect`]s. Tests drive it directly.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};

use super::keymap::{Action, Keymap};
use super::selfstat::SelfUsage;
use super::theme::Theme;
use crate::config::Config;
use crate::model::{HostName, HostStatus, Metric};
use crate::snapshot::{HostView, Snapshot};
use crate::triggers::{Command, TriggerState, TriggerView};

/// The panels of the overview that can hold the keyboard focus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panel {
    Hosts,
    MaxRisk,
    Triggers,
    Log,
}

impl Panel {
    pub fn title(self) -> &'static str {
        match self {
            Panel::Hosts => "Hosts",
            Panel::MaxRisk => "Maximal risk",
            Panel::Triggers => "Triggers",
            Panel::Log => "Log",
        }
    }
}

/// A popup over the current view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    /// Choosing how long to silence the selected trigger.
    Silence {
        choice: usize,
    },
}

/// The durations the silence chooser offers.
pub const SILENCE_CHOICES: &[(&str, Duration)] = &[
    ("15m", Duration::from_secs(15 * 60)),
    ("1h", Duration::from_secs(3600)),
    ("4h", Duration::from_secs(4 * 3600)),
    ("1d", Duration::from_secs(86_400)),
];

/// Columns the host table can be sorted by (`s` cycles through them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortColumn {
    /// The order of the config file.
    Config,
    Host,
    Status,
    Cpu,
    Load,
    Mem,
    Disk,
    Rx,
    Tx,
    Ping,
    Loss,
    Trig,
}

impl SortColumn {
    pub const ALL: &'static [SortColumn] = &[
        SortColumn::Config,
        SortColumn::Host,
        SortColumn::Status,
        SortColumn::Cpu,
        SortColumn::Load,
        SortColumn::Mem,
        SortColumn::Disk,
        SortColumn::Rx,
        SortColumn::Tx,
        SortColumn::Ping,
        SortColumn::Loss,
        SortColumn::Trig,
    ];
    pub fn label(self) -> &'static str {
        match self {
            SortColumn::Config => "config order",
            SortColumn::Host => "host",
            SortColumn::Status => "status",
            SortColumn::Cpu => "cpu",
            SortColumn::Load => "load",
            SortColumn::Mem => "mem",
            SortColumn::Disk => "disk",
            SortColumn::Rx => "rx",
            SortColumn::Tx => "tx",
            SortColumn::Ping => "ping",
            SortColumn::Loss => "loss",
            SortColumn::Trig => "trig",
        }
    }
    fn next(self) -> SortColumn {
        let i = SortColumn::ALL.iter().position(|&c| c == self).unwrap_or(0);
        SortColumn::ALL[(i + 1) % SortColumn::ALL.len()]
    }
}

/// What the event loop must do on the app's behalf.
#[derive(Clone, Debug)]
pub enum Effect {
    Quit,
    Command(Command),
    Reconnect(HostName),
    /// Ring the terminal bell (a trigger with `bell` started firing).
    Bell,
}

/// Where each panel was drawn last, for mouse clicks and scrolling.
#[derive(Clone, Copy, Debug, Default)]
pub struct Areas {
    pub hosts: Rect,
    pub risk: Rect,
    pub triggers: Rect,
    pub log: Rect,
}

/// The whole state of the dashboard.
pub struct App {
    pub theme: Theme,
    pub keymap: Keymap,
    /// The snapshot on screen (frozen while paused).
    pub snap: Arc<Snapshot>,
    latest: Arc<Snapshot>,
    pub paused: bool,
    /// The time drawing uses for ages and countdowns.
    pub now: SystemTime,
    /// The host whose detail view is open.
    pub detail: Option<HostName>,
    pub overlay: Overlay,
    pub focus: Panel,
    pub show_log: bool,
    pub filter: String,
    pub filter_editing: bool,
    pub sort: SortColumn,
    pub sort_desc: bool,
    /// Indexes into `snap.hosts`: filtered and sorted.
    pub order: Vec<usize>,
    /// Indexes into `snap.triggers`, most urgent first.
    pub trigger_order: Vec<usize>,
    pub host_sel: usize,
    pub host_offset: usize,
    /// Host rows visible at the last draw (for PgUp/PgDn).
    pub host_page: usize,
    pub risk_sel: usize,
    pub risk_offset: usize,
    pub trig_sel: usize,
    pub trig_offset: usize,
    pub detail_scroll: usize,
    pub flash_on: bool,
    pub usage: SelfUsage,
    /// A one-line note in the hint bar until the next key.
    pub message: Option<String>,
    /// What the status line says about the server while `lookout attach` has lost it.
    pub link: Option<String>,
    pub effects: Vec<Effect>,
    pub areas: Areas,
    /// Whether log lines carry a time (off in snapshot tests).
    pub log_timestamps: bool,
    pub log_state: tui_logger::TuiWidgetState,
    bell_all: bool,
    bell_rules: HashSet<String>,
    /// Firing (trigger, host, instance) lines already seen, so the bell rings once.
    firing_seen: HashSet<(String, String, String)>,
}

impl App {
    pub fn new(config: &Config, theme: Theme, keymap: Keymap, snap: Arc<Snapshot>, now: SystemTime) -> Self {
        let mut app = App {
            theme,
            keymap,
            latest: snap.clone(),
            snap,
            paused: false,
            now,
            detail: None,
            overlay: Overlay::None,
            focus: Panel::Hosts,
            show_log: false,
            filter: String::new(),
            filter_editing: false,
            sort: SortColumn::Config,
            sort_desc: false,
            order: Vec::new(),
            trigger_order: Vec::new(),
            host_sel: 0,
            host_offset: 0,
            host_page: 10,
            risk_sel: 0,
            risk_offset: 0,
            trig_sel: 0,
            trig_offset: 0,
            detail_scroll: 0,
            flash_on: true,
            usage: SelfUsage::default(),
            message: None,
            link: None,
            effects: Vec::new(),
            areas: Areas::default(),
            log_timestamps: true,
            log_state: tui_logger::TuiWidgetState::new(),
            bell_all: config.general.bell,
            bell_rules: config
                .triggers
                .iter()
                .filter(|r| r.bell)
                .map(|r| r.name.clone())
                .collect(),
            firing_seen: HashSet::new(),
        };
        app.note_firing();
        app.firing_seen_reset_bells();
        app.rebuild();
        app
    }

    /// The first snapshot's firing triggers do not ring: they were firing before we looked.
    fn firing_seen_reset_bells(&mut self) {
        self.effects.retain(|e| !matches!(e, Effect::Bell));
    }

    /// A new snapshot from the engine.
    pub fn set_snapshot(&mut self, snap: Arc<Snapshot>) {
        self.latest = snap;
        self.note_firing();
        if !self.paused {
            self.snap = self.latest.clone();
            self.rebuild();
        }
    }

    /// Rings the bell (once) for each line that started firing with a bell-enabled rule.
    fn note_firing(&mut self) {
        let mut now_firing = HashSet::new();
        let mut ring = false;
        for t in &self.latest.triggers {
            if t.state != TriggerState::Firing {
                continue;
            }
            let key = (t.name.clone(), t.host.clone(), t.instance.clone());
            if !self.firing_seen.contains(&key) && (self.bell_all || self.bell_rules.contains(&t.name)) {
                ring = true;
            }
            now_firing.insert(key);
        }
        self.firing_seen = now_firing;
        if ring {
            self.effects.push(Effect::Bell);
        }
    }

    /// Whether an unacknowledged firing trigger is on screen (the flash timer runs only then).
    pub fn flashing(&self) -> bool {
        self.snap.triggers.iter().any(|t| t.state == TriggerState::Firing)
    }

    pub fn toggle_flash(&mut self) {
        self.flash_on = !self.flash_on;
    }

    pub fn selected_host(&self) -> Option<&Arc<HostView>> {
        self.order
            .get(self.host_sel)
            .and_then(|&i| self.snap.hosts.get(i))
    }

    pub fn selected_trigger(&self) -> Option<&TriggerView> {
        self.trigger_order
            .get(self.trig_sel)
            .and_then(|&i| self.snap.triggers.get(i))
    }

    pub fn detail_host(&self) -> Option<&Arc<HostView>> {
        self.detail.as_deref().and_then(|name| self.snap.host(name))
    }

    /// Number of firing (unacknowledged) triggers on a host.
    pub fn firing_on(&self, host: &str) -> usize {
        self.snap
            .triggers
            .iter()
            .filter(|t| t.host == host && t.state == TriggerState::Firing)
            .count()
    }

    /// Recomputes the filtered, sorted host order and the trigger order, keeping the
    /// selected host selected when it is still listed.
    pub fn rebuild(&mut self) {
        let keep = self.selected_host().map(|h| h.name.clone());
        let needle = self.filter.to_lowercase();
        let hosts = &self.snap.hosts;
        let mut order: Vec<usize> = (0..hosts.len())
            .filter(|&i| needle.is_empty() || matches_filter(&hosts[i], &needle))
            .collect();
        if self.sort != SortColumn::Config {
            let keys: Vec<SortKey> = (0..hosts.len()).map(|i| self.sort_key(&hosts[i])).collect();
            order.sort_by(|&a, &b| compare(&keys[a], &keys[b], self.sort_desc).then(a.cmp(&b)));
        } else if self.sort_desc {
            order.reverse();
        }
        self.order = order;
        if let Some(name) = keep
            && let Some(pos) = self.order.iter().position(|&i| hosts[i].name == name)
        {
            self.host_sel = pos;
        }
        self.host_sel = self.host_sel.min(self.order.len().saturating_sub(1));

        let mut tord: Vec<usize> = (0..self.snap.triggers.len()).collect();
        let triggers = &self.snap.triggers;
        tord.sort_by_key(|&i| {
            let t = &triggers[i];
            (
                state_rank(t.state),
                std::cmp::Reverse(t.severity),
                t.name.clone(),
                t.host.clone(),
            )
        });
        self.trigger_order = tord;
        self.trig_sel = self.trig_sel.min(self.trigger_order.len().saturating_sub(1));
        self.risk_sel = self.risk_sel.min(self.snap.max_risk.len().saturating_sub(1));
    }

    fn sort_key(&self, h: &HostView) -> SortKey {
        let worst = |m: Metric| h.worst(m).map(|r| r.value);
        let sum = |m: Metric| {
            let mut any = false;
            let s: f64 = h.values(m).inspect(|_| any = true).map(|r| r.value).sum();
            any.then_some(s)
        };
        match self.sort {
            SortColumn::Config => SortKey::Num(None),
            SortColumn::Host => SortKey::Text(h.name.to_lowercase()),
            SortColumn::Status => SortKey::Num(Some(f64::from(status_rank(h.status)))),
            SortColumn::Cpu => SortKey::Num(worst(Metric::CpuUsage)),
            SortColumn::Load => SortKey::Num(worst(Metric::LoadPerCore)),
            SortColumn::Mem => SortKey::Num(worst(Metric::MemUsedPct)),
            SortColumn::Disk => SortKey::Num(worst(Metric::DiskUsedPct)),
            SortColumn::Rx => SortKey::Num(sum(Metric::NetRxBps)),
            SortColumn::Tx => SortKey::Num(sum(Metric::NetTxBps)),
            SortColumn::Ping => SortKey::Num(worst(Metric::PingRtt)),
            SortColumn::Loss => SortKey::Num(worst(Metric::PingLoss)),
            SortColumn::Trig => SortKey::Num(Some(self.firing_on(&h.name) as f64)),
        }
    }

    /// Handles one terminal event; returns whether the screen must be redrawn.
    pub fn on_event(&mut self, ev: &crossterm::event::Event) -> bool {
        match ev {
            crossterm::event::Event::Key(k) if k.kind != KeyEventKind::Release => self.on_key(k),
            crossterm::event::Event::Mouse(m) => self.on_mouse(m),
            crossterm::event::Event::Resize(..) => true,
            _ => false,
        }
    }

    pub fn on_key(&mut self, key: &KeyEvent) -> bool {
        self.message = None;
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            self.effects.push(Effect::Quit);
            return true;
        }
        if self.filter_editing && self.filter_key(key) {
            return true;
        }
        let action = self.keymap.action(key);
        match self.overlay {
            Overlay::Help => {
                match action {
                    Some(Action::Quit) => self.effects.push(Effect::Quit),
                    Some(Action::Back | Action::Help) => self.overlay = Overlay::None,
                    _ => {}
                }
                return true;
            }
            Overlay::Silence { choice } => {
                self.silence_key(key, action, choice);
                return true;
            }
            Overlay::None => {}
        }
        match action {
            Some(a) => {
                self.act(a);
                true
            }
            None => false,
        }
    }

    /// Keys while typing a filter; returns false for keys left to the bindings (arrows).
    fn filter_key(&mut self, key: &KeyEvent) -> bool {
        match key.code {
            KeyCode::Esc => {
                self.filter.clear();
                self.filter_editing = false;
            }
            KeyCode::Enter => self.filter_editing = false,
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c)
                if !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
            {
                if self.filter.chars().count() < 64 && !c.is_control() {
                    self.filter.push(c);
                }
            }
            _ => return false,
        }
        self.host_sel = 0;
        self.host_offset = 0;
        self.rebuild();
        true
    }

    fn silence_key(&mut self, key: &KeyEvent, action: Option<Action>, choice: usize) {
        let n = SILENCE_CHOICES.len();
        let chosen = match (key.code, action) {
            (KeyCode::Char(c @ '1'..='4'), _) => Some(c as usize - '1' as usize),
            (KeyCode::Enter, _) | (_, Some(Action::Open)) => Some(choice),
            (_, Some(Action::Up)) => {
                self.overlay = Overlay::Silence {
                    choice: (choice + n - 1) % n,
                };
                None
            }
            (_, Some(Action::Down)) => {
                self.overlay = Overlay::Silence {
                    choice: (choice + 1) % n,
                };
                None
            }
            (_, Some(Action::Back | Action::Silence)) => {
                self.overlay = Overlay::None;
                None
            }
            (_, Some(Action::Quit)) => {
                self.effects.push(Effect::Quit);
                None
            }
            _ => None,
        };
        if let Some(i) = chosen
            && let Some(&(label, d)) = SILENCE_CHOICES.get(i)
        {
            self.overlay = Overlay::None;
            if let Some(t) = self.action_trigger().cloned() {
                self.effects.push(Effect::Command(Command::Silence {
                    trigger: t.name.clone(),
                    host: t.host.clone(),
                    instance: t.instance.clone(),
                    until: self.now + d,
                }));
                self.message = Some(format!("silenced {} {} for {label}", t.name, t.host));
            }
        }
    }

    /// The panels Tab cycles through.
    fn panels(&self) -> Vec<Panel> {
        let mut p = vec![Panel::Hosts, Panel::MaxRisk, Panel::Triggers];
        if self.show_log {
            p.push(Panel::Log);
        }
        p
    }

    /// The trigger `a` and `x` act on: the selected one in the trigger panel, else the most
    /// urgent firing one of the selected (or detailed) host.
    pub fn action_trigger(&self) -> Option<&TriggerView> {
        if self.detail.is_none() && self.focus == Panel::Triggers {
            return self.selected_trigger();
        }
        let host = match &self.detail {
            Some(h) => h.clone(),
            None => self.selected_host()?.name.clone(),
        };
        self.trigger_order
            .iter()
            .map(|&i| &self.snap.triggers[i])
            .find(|t| *t.host == *host && matches!(t.state, TriggerState::Firing | TriggerState::Pending))
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Up => self.step(-1),
            Action::Down => self.step(1),
            Action::PageUp => self.step(-(self.host_page.max(1) as isize)),
            Action::PageDown => self.step(self.host_page.max(1) as isize),
            Action::Top => self.step(isize::MIN / 2),
            Action::Bottom => self.step(isize::MAX / 2),
            Action::NextPanel | Action::PrevPanel if self.detail.is_none() => {
                let panels = self.panels();
                let i = panels.iter().position(|&p| p == self.focus).unwrap_or(0);
                let n = panels.len();
                let j = if action == Action::NextPanel {
                    (i + 1) % n
                } else {
                    (i + n - 1) % n
                };
                self.focus = panels[j];
            }
            Action::NextPanel | Action::PrevPanel => {}
            Action::Open => self.open(),
            Action::Back => {
                if self.detail.is_some() {
                    self.detail = None;
                    self.detail_scroll = 0;
                } else if !self.filter.is_empty() {
                    self.filter.clear();
                    self.rebuild();
                } else if self.focus != Panel::Hosts {
                    self.focus = Panel::Hosts;
                }
            }
            Action::Filter => {
                self.detail = None;
                self.focus = Panel::Hosts;
                self.filter_editing = true;
            }
            Action::Sort => {
                self.sort = self.sort.next();
                // Numbers read best worst-first; names and config order A-Z.
                self.sort_desc = !matches!(self.sort, SortColumn::Config | SortColumn::Host);
                self.rebuild();
            }
            Action::SortReverse => {
                self.sort_desc = !self.sort_desc;
                self.rebuild();
            }
            Action::Acknowledge => match self.action_trigger().cloned() {
                Some(t) => {
                    self.message = Some(format!("acknowledged {} {}", t.name, t.host));
                    self.effects.push(Effect::Command(Command::Acknowledge {
                        trigger: t.name,
                        host: t.host,
                        instance: t.instance,
                    }));
                }
                None => self.message = Some("no firing trigger here to acknowledge".into()),
            },
            Action::Silence => {
                if self.action_trigger().is_some() {
                    self.overlay = Overlay::Silence { choice: 1 };
                } else {
                    self.message = Some("no trigger here to silence".into());
                }
            }
            Action::Reconnect => {
                let host = match (&self.detail, self.focus) {
                    (Some(h), _) => Some(h.clone()),
                    (None, Panel::Triggers) => self
                        .selected_trigger()
                        .and_then(|t| self.snap.host(&t.host))
                        .map(|h| h.name.clone()),
                    (None, Panel::MaxRisk) => self.snap.max_risk.get(self.risk_sel).map(|l| l.host.clone()),
                    _ => self.selected_host().map(|h| h.name.clone()),
                };
                match host {
                    Some(h) => {
                        self.message = Some(format!("reconnecting {h}"));
                        self.effects.push(Effect::Reconnect(h));
                    }
                    None => self.message = Some("no host selected".into()),
                }
            }
            Action::Log => {
                self.show_log = !self.show_log;
                if !self.show_log && self.focus == Panel::Log {
                    self.focus = Panel::Hosts;
                }
            }
            Action::Pause => {
                self.paused = !self.paused;
                if !self.paused {
                    self.snap = self.latest.clone();
                    self.rebuild();
                }
            }
            Action::Help => self.overlay = Overlay::Help,
            Action::Quit => self.effects.push(Effect::Quit),
        }
    }

    fn open(&mut self) {
        if self.detail.is_some() {
            return;
        }
        let target = match self.focus {
            Panel::Hosts | Panel::Log => {
                if let Some(h) = self.selected_host() {
                    self.detail = Some(h.name.clone());
                    self.detail_scroll = 0;
                }
                return;
            }
            Panel::MaxRisk => self.snap.max_risk.get(self.risk_sel).map(|l| l.host.clone()),
            Panel::Triggers => self.selected_trigger().map(|t| Arc::<str>::from(t.host.as_str())),
        };
        let Some(name) = target else { return };
        self.jump_to(&name);
    }

    /// Selects a host in the table (clearing a filter that hides it) and focuses the table.
    pub fn jump_to(&mut self, name: &str) {
        let find = |app: &App| app.order.iter().position(|&i| &*app.snap.hosts[i].name == name);
        if find(self).is_none() && !self.filter.is_empty() {
            self.filter.clear();
            self.rebuild();
        }
        if let Some(pos) = find(self) {
            self.host_sel = pos;
            self.focus = Panel::Hosts;
        } else {
            self.message = Some(format!("{name} is not in the host table"));
        }
    }

    fn step(&mut self, delta: isize) {
        let moved = |sel: usize, len: usize| -> usize {
            if len == 0 {
                return 0;
            }
            (sel as isize).saturating_add(delta).clamp(0, len as isize - 1) as usize
        };
        if self.detail.is_some() {
            let len = self.detail_host().map_or(0, |h| h.processes.len());
            self.detail_scroll = moved(self.detail_scroll, len);
            return;
        }
        match self.focus {
            Panel::Hosts => self.host_sel = moved(self.host_sel, self.order.len()),
            Panel::MaxRisk => self.risk_sel = moved(self.risk_sel, self.snap.max_risk.len()),
            Panel::Triggers => self.trig_sel = moved(self.trig_sel, self.trigger_order.len()),
            Panel::Log => {
                let ev = if delta < 0 {
                    tui_logger::TuiWidgetEvent::PrevPageKey
                } else {
                    tui_logger::TuiWidgetEvent::NextPageKey
                };
                self.log_state.transition(ev);
            }
        }
    }

    pub fn on_mouse(&mut self, m: &MouseEvent) -> bool {
        if self.overlay != Overlay::None {
            return false;
        }
        let pos = Position::new(m.column, m.row);
        let a = self.areas;
        let panel = if self.detail.is_some() {
            None
        } else if a.hosts.contains(pos) {
            Some(Panel::Hosts)
        } else if a.risk.contains(pos) {
            Some(Panel::MaxRisk)
        } else if a.triggers.contains(pos) {
            Some(Panel::Triggers)
        } else if a.log.contains(pos) {
            Some(Panel::Log)
        } else {
            None
        };
        match m.kind {
            MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => {
                let delta = if m.kind == MouseEventKind::ScrollDown {
                    3
                } else {
                    -3
                };
                if let Some(p) = panel {
                    self.focus = p;
                }
                self.step(delta);
                true
            }
            MouseEventKind::Down(MouseButton::Left) => {
                let Some(p) = panel else { return false };
                self.focus = p;
                // Rows start below the border (and the header in the host table).
                let (area, first, offset) = match p {
                    Panel::Hosts => (a.hosts, 2, self.host_offset),
                    Panel::MaxRisk => (a.risk, 1, self.risk_offset),
                    Panel::Triggers => (a.triggers, 1, self.trig_offset),
                    Panel::Log => return true,
                };
                if let Some(row) = (m.row - area.y).checked_sub(first) {
                    let i = offset + row as usize;
                    match p {
                        Panel::Hosts if i < self.order.len() => self.host_sel = i,
                        Panel::MaxRisk if i < self.snap.max_risk.len() => self.risk_sel = i,
                        Panel::Triggers if i < self.trigger_order.len() => self.trig_sel = i,
                        _ => {}
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// Removes and returns the effects produced so far.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }
}

fn matches_filter(h: &HostView, needle: &str) -> bool {
    contains_ci(&h.name, needle)
        || h.group.as_deref().is_some_and(|g| contains_ci(g, needle))
        || contains_ci(h.status.as_str(), needle)
}

fn contains_ci(hay: &str, needle_lower: &str) -> bool {
    if hay.is_ascii() && needle_lower.is_ascii() {
        hay.as_bytes()
            .windows(needle_lower.len().max(1))
            .any(|w| w.eq_ignore_ascii_case(needle_lower.as_bytes()))
            || needle_lower.is_empty()
    } else {
        hay.to_lowercase().contains(needle_lower)
    }
}

enum SortKey {
    Num(Option<f64>),
    Text(String),
}

/// Missing values sort last whatever the direction.
fn compare(a: &SortKey, b: &SortKey, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let ord = match (a, b) {
        (SortKey::Num(Some(x)), SortKey::Num(Some(y))) => x.total_cmp(y),
        (SortKey::Num(None), SortKey::Num(None)) => Ordering::Equal,
        (SortKey::Num(None), _) => return Ordering::Greater,
        (_, SortKey::Num(None)) => return Ordering::Less,
        (SortKey::Text(x), SortKey::Text(y)) => x.cmp(y),
        _ => Ordering::Equal,
    };
    if desc { ord.reverse() } else { ord }
}

/// Worse statuses rank higher.
pub fn status_rank(s: HostStatus) -> u8 {
    match s {
        HostStatus::Up => 0,
        HostStatus::Connecting => 1,
        HostStatus::Timeout => 2,
        HostStatus::Unreachable => 3,
        HostStatus::Error => 4,
        HostStatus::AuthFailed => 5,
        HostStatus::HostKeyMismatch => 6,
    }
}

/// The trigger panel's order: what needs a person first.
fn state_rank(s: TriggerState) -> u8 {
    match s {
        TriggerState::Firing => 0,
        TriggerState::Pending => 1,
        TriggerState::Acknowledged => 2,
        TriggerState::Silenced => 3,
        TriggerState::Resolved => 4,
        TriggerState::Ok => 5,
    }
}
