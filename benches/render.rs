//! Drawing the overview for 1,000 hosts (target: under 2 ms per frame, DESIGN.md).
//! `frame` draws into a 160x45 buffer (what every redraw costs); `frame+diff` goes through
//! ratatui's `Terminal` with a `TestBackend` (buffer diff included); `snapshot+frame` also
//! takes a new snapshot (re-filtering and re-sorting 1,000 hosts by cpu).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use lookout::ui::app::App;
use lookout::ui::demo::Fleet;
use lookout::ui::keymap::Keymap;
use lookout::ui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

fn app(hosts: usize) -> App {
    let config = lookout::config::parse("", "bench.toml", None).expect("config");
    let snap = Fleet::warm(hosts, 30);
    let now = snap.taken_at;
    App::new(
        &config,
        Theme::load("default", false).expect("theme"),
        Keymap::default(),
        Arc::new(snap),
        now,
    )
}

fn bench(c: &mut Criterion) {
    let area = Rect::new(0, 0, 160, 45);
    let mut a = app(1000);
    let mut buf = Buffer::empty(area);
    c.bench_function("overview 1000 hosts: frame", |b| {
        b.iter(|| {
            buf.reset();
            lookout::ui::draw::render(area, &mut buf, &mut a);
            black_box(&buf);
        })
    });

    let mut term = Terminal::new(TestBackend::new(160, 45)).expect("terminal");
    c.bench_function("overview 1000 hosts: frame+diff", |b| {
        b.iter(|| {
            term.draw(|f| lookout::ui::draw::draw(f, &mut a)).expect("draw");
        })
    });

    let mut fleet = Fleet::new(1000, std::time::Duration::from_secs(2));
    let snaps: Vec<Arc<lookout::snapshot::Snapshot>> = (0..8).map(|_| Arc::new(fleet.next_round())).collect();
    a.sort = lookout::ui::app::SortColumn::Cpu;
    a.sort_desc = true;
    let mut i = 0;
    c.bench_function("overview 1000 hosts: snapshot+frame (sorted by cpu)", |b| {
        b.iter(|| {
            i = (i + 1) % snaps.len();
            a.set_snapshot(snaps[i].clone());
            buf.reset();
            lookout::ui::draw::render(area, &mut buf, &mut a);
            black_box(&buf);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
