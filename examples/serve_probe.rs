//! A measuring viewer for scripts/bench-serve.sh: attaches to a `lookout serve` like the
//! dashboard does (full state, then deltas applied to a replica) and prints, every second,
//! the bytes and frames it received and how far behind the server each state arrived
//! (receipt time minus the snapshot's `taken_at`; same machine, same clock). At the end, a
//! `summary` line for the steady state (every second after the first) and a `parts` line:
//! where the bytes of the steady state's deltas went (each part re-encoded on its own).
//! With HOST it opens that host's detail view, as a dashboard does, and is sent its
//! processes too (`procs` in the parts).
//!
//!   cargo run --release --example serve_probe -- SOCKET SECONDS [HOST]

use std::time::{Duration, Instant, SystemTime};

use lookout::serve::client::{self, Target};
use lookout::serve::delta::Replica;
use lookout::serve::protocol::{self, ClientMsg, Delta, ServerMsg, Want};
use tokio::io::AsyncWriteExt;

/// Bytes of the steady state's deltas by what they carried.
#[derive(Default)]
struct Parts {
    /// Hosts' positions, last update and rounds, and status and error when they changed.
    header: usize,
    system: usize,
    ping: usize,
    external: usize,
    /// New hosts, whole.
    added: usize,
    /// The detail host's processes (frames of their own).
    procs: usize,
    checks: usize,
    max_risk: usize,
    triggers: usize,
    /// Frames other than deltas (events, metrics, full states after a skip).
    other: usize,
    hosts: usize,
    deltas: usize,
}

fn size<T: serde::Serialize>(v: &T) -> usize {
    postcard::to_allocvec(v).map_or(0, |b| b.len())
}

impl Parts {
    fn count(&mut self, d: &Delta<'_>, frame: usize) {
        let before = self.sum();
        self.deltas += 1;
        self.hosts += d.hosts.len();
        for h in &d.hosts {
            let (s, p, e, c) = (size(&h.system), size(&h.ping), size(&h.external), size(&h.checks));
            self.system += s;
            self.ping += p;
            self.external += e;
            self.checks += c;
            self.header += size(h) - s - p - e - c;
        }
        self.added += size(&d.added);
        self.max_risk += size(&d.max_risk);
        self.triggers += size(&d.triggers);
        // The frame's length, the header of the delta and the removed list.
        self.other += frame.saturating_sub(self.sum() - before);
    }

    fn sum(&self) -> usize {
        self.header
            + self.system
            + self.ping
            + self.external
            + self.added
            + self.procs
            + self.checks
            + self.max_risk
            + self.triggers
            + self.other
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let socket = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: serve_probe SOCKET SECONDS"))?;
    let seconds: u64 = args.next().map_or(Ok(30), |s| s.parse())?;
    let detail = args.next();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut conn = client::connect(&Target::Socket(socket.into()), Want::View)
            .await
            .map_err(anyhow::Error::msg)?;
        let mut replica = Replica::new(2);
        if let Some(host) = detail {
            replica.set_detail(1, Some(host.as_str().into()));
            let ask = protocol::encode(&ClientMsg::Detail { id: 1, host: Some(host) })?;
            conn.write.write_all(&ask).await?;
        }
        let mut buf = Vec::new();
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut second = Instant::now() + Duration::from_secs(1);
        let (mut bytes, mut frames, mut states) = (0usize, 0usize, 0usize);
        let mut lags: Vec<f64> = Vec::new();
        let (mut all_bytes, mut all_secs, mut all_lags) = (0usize, 0u64, Vec::new());
        let mut parts = Parts::default();
        while Instant::now() < end {
            let msg = tokio::time::timeout_at(
                second.into(),
                protocol::read_frame::<ServerMsg>(&mut conn.read, protocol::SERVER_FRAME_LIMIT, &mut buf),
            )
            .await;
            match msg {
                Ok(Ok(m)) => {
                    let frame = buf.len() + 4;
                    bytes += frame;
                    frames += 1;
                    let snap = match m {
                        ServerMsg::Full(s) => {
                            if all_secs > 0 {
                                parts.other += frame;
                            }
                            Some(replica.apply_full(s))
                        }
                        ServerMsg::Delta(d) => {
                            if all_secs > 0 {
                                parts.count(&d, frame);
                            }
                            Some(replica.apply_delta(d)?)
                        }
                        ServerMsg::Processes { id, host, procs } => {
                            if all_secs > 0 {
                                parts.procs += size(&procs);
                            }
                            replica.apply_processes(id, &host, procs)?
                        }
                        ServerMsg::Metrics(list) => {
                            for m in list {
                                let _ = m.register();
                            }
                            None
                        }
                        _ => {
                            if all_secs > 0 {
                                parts.other += frame;
                            }
                            None
                        }
                    };
                    if let Some(s) = snap {
                        states += 1;
                        let lag = SystemTime::now()
                            .duration_since(s.taken_at)
                            .unwrap_or_default();
                        lags.push(lag.as_secs_f64() * 1000.0);
                    }
                }
                Ok(Err(e)) => anyhow::bail!("{e}"),
                Err(_) => {}
            }
            if Instant::now() >= second {
                let max = lags.iter().copied().fold(0.0, f64::max);
                let mean = if lags.is_empty() {
                    0.0
                } else {
                    lags.iter().sum::<f64>() / lags.len() as f64
                };
                println!(
                    "t={all_secs} bytes={bytes} frames={frames} states={states} lag_mean_ms={mean:.1} lag_max_ms={max:.1}"
                );
                // The first second carries the full state; steady state is the rest.
                if all_secs > 0 {
                    all_bytes += bytes;
                    all_lags.append(&mut lags);
                }
                lags.clear();
                all_secs += 1;
                (bytes, frames, states) = (0, 0, 0);
                second += Duration::from_secs(1);
            }
        }
        all_lags.sort_by(f64::total_cmp);
        let p = |q: f64| {
            all_lags
                .get(((all_lags.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let secs = all_secs.saturating_sub(1).max(1) as usize;
        println!(
            "summary bytes_per_s={} lag_p50_ms={:.1} lag_p99_ms={:.1} lag_max_ms={:.1} hosts={}",
            all_bytes / secs,
            p(0.5),
            p(0.99),
            p(1.0),
            replica.snapshot().map_or(0, |s| s.hosts.len())
        );
        let per_s = |n: usize| n / secs;
        println!(
            "parts per_s: header={} system={} ping={} external={} added={} procs={} checks={} max_risk={} triggers={} other={} hosts_per_s={} deltas_per_s={}",
            per_s(parts.header),
            per_s(parts.system),
            per_s(parts.ping),
            per_s(parts.external),
            per_s(parts.added),
            per_s(parts.procs),
            per_s(parts.checks),
            per_s(parts.max_risk),
            per_s(parts.triggers),
            per_s(parts.other),
            per_s(parts.hosts),
            per_s(parts.deltas),
        );
        Ok(())
    })
}
