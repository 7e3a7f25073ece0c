//! Parsing one remote sample (target: under 50 µs). Figures go in docs/ssh.md.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use lookout::collectors::remote::{self, RemoteState, Watch};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/remote/{name}", env!("CARGO_MANIFEST_DIR"));
    String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).into_owned()
}

fn bench(c: &mut Criterion) {
    let plain = fixture("ubuntu-kernel3.x-synthetic.txt");
    let with_procs = fixture("debian12-kernel6.18.txt");
    let none = Watch::default();
    let watched = Watch {
        processes: ["bash", "sshd", "kthreadd"].into_iter().map(Arc::from).collect(),
        ..Watch::default()
    };
    c.bench_function("parse sample, 8 cores, 7 mounts, no processes", |b| {
        let mut state = RemoteState::default();
        b.iter(|| {
            let parsed = remote::parse(black_box(&plain), &none).unwrap_or_default();
            black_box(state.complete(parsed, &none));
        });
    });
    c.bench_function("parse sample, 2 cores, 5 processes, 3 watched names", |b| {
        let mut state = RemoteState::default();
        b.iter(|| {
            let parsed = remote::parse(black_box(&with_procs), &watched).unwrap_or_default();
            black_box(state.complete(parsed, &watched));
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
