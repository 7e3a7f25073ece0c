//! Snapshot tests of every view (ratatui `TestBackend` + insta) and scripted key presses.
//! Time, input and data are injected, so every frame is deterministic.

use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

use super::app::{App, Effect, Overlay, Panel, SortColumn};
use super::demo::Fleet;
use super::keymap::Keymap;
use super::selfstat::SelfUsage;
use super::theme::Theme;
use crate::config::Config;
use crate::model::{HostStatus, Metric, Reading};
use crate::snapshot::{HostView, Snapshot};
use crate::triggers::rule::Severity;
use crate::triggers::{Command, TriggerState, TriggerView};

fn config(text: &str) -> Config {
    crate::config::parse(text, "t.toml", None).expect("valid config")
}

fn app_for(snap: Snapshot, theme: &str) -> App {
    let now = snap.taken_at + Duration::from_millis(1200);
    let mut app = App::new(
        &config(""),
        Theme::load(theme, false).expect("theme"),
        Keymap::default(),
        Arc::new(snap),
        now,
    );
    app.log_timestamps = false;
    app.usage = SelfUsage {
        cpu_pct: 0.1,
        rss_bytes: 6 * 1024 * 1024,
    };
    app
}

fn render(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    t.draw(|f| super::draw::draw(f, app)).expect("draw");
    t
}

fn key(app: &mut App, code: KeyCode) {
    let mods = match code {
        KeyCode::Char(c) if c.is_ascii_uppercase() => KeyModifiers::SHIFT,
        _ => KeyModifiers::NONE,
    };
    app.on_key(&KeyEvent::new(code, mods));
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

/// Rows `ys` as runs of equal style: `[fg bg +mods]"text"`, for asserting colours.
fn styled_rows(buf: &Buffer, ys: std::ops::Range<u16>, xs: std::ops::Range<u16>) -> String {
    let mut out = String::new();
    for y in ys {
        let mut run = String::new();
        let mut style = None;
        for x in xs.clone() {
            let c = &buf[(x, y)];
            let s = (c.fg, c.bg, c.modifier);
            if style != Some(s) {
                if let Some((fg, bg, m)) = style {
                    out.push_str(&format!("[{fg} {bg} {m:?}]{run:?} "));
                }
                run.clear();
                style = Some(s);
            }
            run.push_str(c.symbol());
        }
        if let Some((fg, bg, m)) = style {
            out.push_str(&format!("[{fg} {bg} {m:?}]{run:?}"));
        }
        out.push('\n');
    }
    out
}

fn down(h: &HostView, status: HostStatus, error: Option<&str>) -> Arc<HostView> {
    let mut v = h.clone();
    v.status = status;
    v.error = error.map(String::from);
    v.up = Reading::host(Metric::HostUp, 0.0);
    v.system = Arc::default();
    v.ping = Arc::default();
    v.processes = Arc::default();
    Arc::new(v)
}

fn with_trouble(mut snap: Snapshot) -> Snapshot {
    snap.hosts[1] = down(
        &snap.hosts[1],
        HostStatus::Unreachable,
        Some("via bastion: connection refused (retry in 8s)"),
    );
    snap.hosts[2] = down(&snap.hosts[2], HostStatus::Connecting, None);
    snap.hosts[5] = down(
        &snap.hosts[5],
        HostStatus::AuthFailed,
        Some("no key was accepted for root"),
    );
    snap.max_risk = super::demo::max_risk(&snap.hosts);
    snap
}

fn trigger(
    name: &str,
    state: TriggerState,
    severity: Severity,
    host: &str,
    instance: &str,
    value: f64,
    snap: &Snapshot,
) -> TriggerView {
    TriggerView {
        name: name.into(),
        state,
        severity,
        metric: Metric::DiskUsedPct,
        host: host.into(),
        instance: instance.into(),
        value: Some(value),
        threshold: 70.0,
        since: snap.taken_at - Duration::from_secs(125),
        fires_at: (state == TriggerState::Pending).then(|| snap.taken_at + Duration::from_secs(41)),
        silenced_until: (state == TriggerState::Silenced).then(|| snap.taken_at + Duration::from_secs(3600)),
        by: None,
    }
}

fn with_triggers(mut snap: Snapshot) -> Snapshot {
    let t = vec![
        trigger(
            "load high",
            TriggerState::Pending,
            Severity::Warning,
            "web01",
            "",
            1.84,
            &snap,
        ),
        trigger(
            "partition filling",
            TriggerState::Firing,
            Severity::Critical,
            "db01",
            "/var",
            91.3,
            &snap,
        ),
        trigger(
            "mem exhausted",
            TriggerState::Acknowledged,
            Severity::Warning,
            "cache01",
            "",
            95.0,
            &snap,
        ),
        trigger(
            "httpd down",
            TriggerState::Silenced,
            Severity::Critical,
            "web02",
            "httpd",
            0.0,
            &snap,
        ),
    ];
    snap.triggers = t;
    snap
}

#[test]
fn overview_many_hosts() {
    let mut app = app_for(Fleet::warm(40, 12), "default");
    insta::assert_snapshot!(render(&mut app, 160, 45).backend());
}

#[test]
fn overview_with_down_hosts_and_errors() {
    let mut app = app_for(with_trouble(Fleet::warm(12, 12)), "default");
    let t = render(&mut app, 160, 45);
    insta::assert_snapshot!(t.backend());
    // The unreachable host's status is critical and its error in the error style.
    let theme = Theme::load("default", false).expect("theme");
    let buf = t.backend().buffer();
    let row = (0..160).map(|x| buf[(x, 4)].symbol()).collect::<String>();
    assert!(
        row.contains("unreachable via bastion: connection refused"),
        "{row}"
    );
    let byte = row.find("via bastion").expect("error text");
    let x = row[..byte].chars().count() as u16;
    assert_eq!(buf[(x, 4)].fg, theme.error.fg.expect("error colour"));
}

#[test]
fn overview_80x24() {
    let mut app = app_for(with_triggers(with_trouble(Fleet::warm(12, 12))), "default");
    insta::assert_snapshot!(render(&mut app, 80, 24).backend());
}

#[test]
fn too_small() {
    let mut app = app_for(Fleet::warm(3, 2), "default");
    insta::assert_snapshot!(render(&mut app, 60, 20).backend());
}

#[test]
fn host_detail() {
    let mut app = app_for(Fleet::warm(8, 30), "default");
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.detail.as_deref(), Some("db01"));
    insta::assert_snapshot!(render(&mut app, 160, 45).backend());
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.detail, None);
}

#[test]
fn host_detail_of_a_down_host() {
    let mut app = app_for(with_trouble(Fleet::warm(8, 30)), "default");
    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!(render(&mut app, 100, 30).backend());
}

#[test]
fn help_overlay() {
    let mut app = app_for(Fleet::warm(8, 4), "default");
    key(&mut app, KeyCode::Char('?'));
    assert_eq!(app.overlay, Overlay::Help);
    insta::assert_snapshot!(render(&mut app, 100, 36).backend());
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn help_follows_rebound_keys() {
    let c = config("[keys]\nquit = [\"Q\", \"ctrl-q\"]\nhelp = \"h\"\n");
    let mut app = App::new(
        &c,
        Theme::load("default", false).expect("theme"),
        Keymap::from_config(&c).expect("keys"),
        Arc::new(Fleet::warm(2, 2)),
        super::demo::epoch(),
    );
    key(&mut app, KeyCode::Char('h'));
    let lines: Vec<String> = super::help::help_lines(&app)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(" Q/Ctrl-q") && l.ends_with("quit")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(" h ") && l.ends_with("this help")),
        "{lines:?}"
    );
}

#[test]
fn filter_active() {
    let mut app = app_for(Fleet::warm(20, 4), "default");
    key(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "db");
    assert_eq!(app.order.len(), 5);
    insta::assert_snapshot!(render(&mut app, 120, 30).backend());
    key(&mut app, KeyCode::Enter);
    assert!(!app.filter_editing);
    assert_eq!(app.filter, "db");
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.filter, "");
    assert_eq!(app.order.len(), 20);
    // Esc while typing clears too.
    key(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "zz");
    assert!(app.order.is_empty());
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.order.len(), 20);
}

#[test]
fn firing_trigger_flashes() {
    let mut app = app_for(with_triggers(Fleet::warm(8, 4)), "default");
    assert!(app.flashing());
    let theme = Theme::load("default", false).expect("theme");
    app.flash_on = true;
    let on = render(&mut app, 160, 45);
    insta::assert_snapshot!("flash_on", on.backend());
    let row = 31; // the first trigger line: the firing one
    let on_styles = styled_rows(on.backend().buffer(), row..row + 4, 81..159);
    insta::assert_snapshot!("flash_on_styles", on_styles);
    assert_eq!(
        on.backend().buffer()[(90, row)].bg,
        theme.flash_on.bg.expect("bg")
    );
    app.toggle_flash();
    let off = render(&mut app, 160, 45);
    let off_styles = styled_rows(off.backend().buffer(), row..row + 4, 81..159);
    insta::assert_snapshot!("flash_off_styles", off_styles);
    assert_ne!(on_styles, off_styles);
    assert_eq!(
        off.backend().buffer()[(90, row)].fg,
        theme.flash_off.fg.expect("fg")
    );
}

#[test]
fn each_theme_renders_the_same_text() {
    let mut texts = Vec::new();
    for (name, _) in super::theme::BUILTIN {
        let mut app = app_for(with_triggers(with_trouble(Fleet::warm(6, 4))), name);
        let t = render(&mut app, 100, 30);
        insta::assert_snapshot!(
            format!("theme_{name}_styles"),
            styled_rows(t.backend().buffer(), 0..8, 0..100)
        );
        texts.push(t.backend().to_string());
    }
    assert!(
        texts.windows(2).all(|w| w[0] == w[1]),
        "themes change only styles"
    );
}

#[test]
fn acknowledge_and_silence_send_commands() {
    let mut app = app_for(with_triggers(Fleet::warm(8, 4)), "default");
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Panel::Triggers);
    key(&mut app, KeyCode::Char('a'));
    match app.take_effects().as_slice() {
        [
            Effect::Command(Command::Acknowledge {
                trigger,
                host,
                instance,
            }),
        ] => {
            assert_eq!(
                (trigger.as_str(), host.as_str(), instance.as_str()),
                ("partition filling", "db01", "/var")
            );
        }
        other => panic!("{other:?}"),
    }
    key(&mut app, KeyCode::Char('x'));
    assert_eq!(app.overlay, Overlay::Silence { choice: 1 });
    insta::assert_snapshot!("silence_chooser", render(&mut app, 100, 30).backend());
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Enter);
    match app.take_effects().as_slice() {
        [Effect::Command(Command::Silence { trigger, until, .. })] => {
            assert_eq!(trigger, "partition filling");
            assert_eq!(*until, app.now + Duration::from_secs(4 * 3600));
        }
        other => panic!("{other:?}"),
    }
    // Enter on a trigger jumps to its host.
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.focus, Panel::Hosts);
    assert_eq!(
        app.selected_host().map(|h| h.name.to_string()),
        Some("db01".into())
    );
}

#[test]
fn max_risk_enter_jumps_to_host_even_through_a_filter() {
    let mut app = app_for(Fleet::warm(20, 4), "default");
    key(&mut app, KeyCode::Char('/'));
    type_text(&mut app, "web");
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.focus, Panel::MaxRisk);
    let line = app
        .snap
        .max_risk
        .iter()
        .position(|l| !l.host.starts_with("web"))
        .expect("a non-web line");
    for _ in 0..line {
        key(&mut app, KeyCode::Char('j'));
    }
    let target = app.snap.max_risk[line].host.clone();
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.filter, "", "the filter hid the host, so it was cleared");
    assert_eq!(app.selected_host().map(|h| h.name.clone()), Some(target));
}

#[test]
fn reconnect_pause_sort_and_quit() {
    let mut app = app_for(Fleet::warm(8, 4), "default");
    key(&mut app, KeyCode::Char('G'));
    key(&mut app, KeyCode::Char('r'));
    match app.take_effects().as_slice() {
        [Effect::Reconnect(h)] => assert_eq!(&**h, "batch02"),
        other => panic!("{other:?}"),
    }
    key(&mut app, KeyCode::Char('s'));
    assert_eq!((app.sort, app.sort_desc), (SortColumn::Host, false));
    key(&mut app, KeyCode::Char('s'));
    key(&mut app, KeyCode::Char('s'));
    assert_eq!((app.sort, app.sort_desc), (SortColumn::Cpu, true));
    let cpus: Vec<f64> = app
        .order
        .iter()
        .map(|&i| app.snap.hosts[i].value(Metric::CpuUsage, "").unwrap_or(0.0))
        .collect();
    assert!(cpus.windows(2).all(|w| w[0] >= w[1]), "{cpus:?}");
    assert_eq!(
        app.selected_host().map(|h| h.name.to_string()),
        Some("batch02".into()),
        "selection follows the host"
    );
    key(&mut app, KeyCode::Char('S'));
    assert!(!app.sort_desc);

    key(&mut app, KeyCode::Char('p'));
    let seq = app.snap.seq;
    app.set_snapshot(Arc::new(Fleet::warm(8, 9)));
    assert_eq!(app.snap.seq, seq, "paused: the screen keeps its snapshot");
    assert!(render(&mut app, 120, 30).backend().to_string().contains("PAUSED"));
    key(&mut app, KeyCode::Char('p'));
    assert_eq!(app.snap.seq, 9);

    key(&mut app, KeyCode::Char('q'));
    assert!(matches!(app.take_effects().as_slice(), [Effect::Quit]));
    app.on_key(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(matches!(app.take_effects().as_slice(), [Effect::Quit]));
}

#[test]
fn bell_rings_once_per_new_firing_line() {
    let c = config("[general]\nbell = true\n");
    let base = Fleet::warm(4, 2);
    let mut app = App::new(
        &c,
        Theme::load("default", false).expect("theme"),
        Keymap::default(),
        Arc::new(base.clone()),
        base.taken_at,
    );
    let snap = with_triggers(base);
    app.set_snapshot(Arc::new(snap.clone()));
    assert!(matches!(app.take_effects().as_slice(), [Effect::Bell]));
    app.set_snapshot(Arc::new(snap.clone()));
    assert!(app.take_effects().is_empty(), "still firing: no second bell");
    // Without `bell` anywhere, nothing rings.
    let mut quiet = app_for(Fleet::warm(4, 2), "default");
    quiet.set_snapshot(Arc::new(snap));
    assert!(quiet.take_effects().is_empty());
}

#[test]
fn mouse_click_selects_and_wheel_scrolls() {
    let mut app = app_for(Fleet::warm(30, 4), "default");
    render(&mut app, 160, 45);
    let click = MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 10,
        row: 5,
        modifiers: KeyModifiers::NONE,
    };
    assert!(app.on_mouse(&click));
    assert_eq!(app.host_sel, 2);
    let wheel = MouseEvent {
        kind: MouseEventKind::ScrollDown,
        ..click
    };
    app.on_mouse(&wheel);
    assert_eq!(app.host_sel, 5);
}

#[test]
fn log_panel_shows_events() {
    super::log::init();
    let e = crate::event::Event::new(
        super::demo::epoch(),
        crate::event::EventKind::HostStatus {
            host: Arc::from("db02"),
            status: HostStatus::Unreachable,
            error: Some("connection refused".into()),
        },
    );
    super::log::record_event(&e);
    let mut app = app_for(Fleet::warm(4, 2), "default");
    key(&mut app, KeyCode::Char('l'));
    assert!(app.show_log);
    let t = render(&mut app, 100, 30);
    let text = t.backend().to_string();
    assert!(text.contains("db02: unreachable: connection refused"), "{text}");
}

#[test]
fn only_visible_rows_are_built() {
    // 1,000 hosts in a 45-line terminal: the table draws a page, not the fleet.
    let mut app = app_for(Fleet::warm(1000, 3), "default");
    key(&mut app, KeyCode::PageDown);
    render(&mut app, 160, 45);
    assert!(app.host_page < 40);
    key(&mut app, KeyCode::Char('G'));
    let t = render(&mut app, 160, 45);
    assert!(t.backend().to_string().contains("batch250"));
}

/// Hosts 0 and 1 of `snap` with check reports: OK on the first, CRITICAL on the second.
fn with_checks(mut snap: Snapshot) -> Snapshot {
    let cfg = config(
        "[[hosts]]\nnames = [\"a\"]\n[[check]]\nname = \"ui_queue\"\ncommand = \"true\"\nunit = \"jobs\"\n\
         [[check]]\nname = \"ui_svc\"\ncommand = \"true\"\nformat = \"nagios\"\n",
    );
    let report = |i: usize, status: u8, message: &str, values: Vec<(&str, f64)>| {
        Arc::new(crate::collectors::checks::report(
            &cfg.checks[i],
            crate::collectors::checks::parse::Verdict {
                status,
                message: message.into(),
                values: values.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            },
            Duration::from_millis(15),
        ))
    };
    for (k, (status, message)) in [(0u8, "SVC OK - fine"), (2, "SVC CRITICAL - down")]
        .into_iter()
        .enumerate()
    {
        let mut h = HostView::clone(&snap.hosts[k]);
        h.checks = Arc::new(vec![
            report(0, 0, "12", vec![("", 12.0)]),
            report(1, status, message, vec![("time", 0.25)]),
        ]);
        snap.hosts[k] = Arc::new(h);
    }
    snap
}

fn rows(t: &Terminal<TestBackend>) -> Vec<String> {
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect())
        .collect()
}

#[test]
fn checks_in_the_overview_and_the_detail_view() {
    // Without checks there is no `chk` column (the other snapshots stay as they were).
    let mut app = app_for(Fleet::warm(8, 12), "default");
    assert!(
        !rows(&render(&mut app, 160, 45))
            .iter()
            .any(|r| r.contains(" chk "))
    );

    let mut app = app_for(with_checks(Fleet::warm(8, 12)), "default");
    let screen = rows(&render(&mut app, 160, 45));
    let header = screen
        .iter()
        .find(|r| r.contains("host") && r.contains("trig"))
        .expect("header");
    assert!(header.contains(" chk "), "{header}");
    // In characters: the selection marker before a row is wider in bytes.
    let col = header[..header.find(" chk ").expect("chk")].chars().count() + 1;
    let cell_at = |row: &str| row.chars().skip(col).take(4).collect::<String>();
    let first = screen.iter().position(|r| r == header).expect("header row") + 1;
    assert_eq!(cell_at(&screen[first]), "ok  ");
    assert_eq!(cell_at(&screen[first + 1]), "crit");
    assert_eq!(cell_at(&screen[first + 2]), "-   ");

    key(&mut app, KeyCode::Char('j'));
    key(&mut app, KeyCode::Enter);
    let screen = rows(&render(&mut app, 160, 45));
    assert!(
        screen.iter().any(|r| r.contains("Checks (2)")),
        "{}",
        screen.join("\n")
    );
    let svc = screen.iter().find(|r| r.contains("ui_svc")).expect("svc row");
    assert!(
        svc.contains("CRITICAL") && svc.contains("SVC CRITICAL - down") && svc.contains("15ms"),
        "{svc}"
    );
    assert!(svc.contains("time=0.25"), "{svc}");
    let queue = screen.iter().find(|r| r.contains("ui_queue")).expect("queue row");
    assert!(queue.contains("OK") && queue.contains("12"), "{queue}");
    // The processes panel is still there below.
    assert!(screen.iter().any(|r| r.contains("Watched processes")));
}
