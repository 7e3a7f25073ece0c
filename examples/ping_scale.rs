//! Scale benchmark: pings N loopback addresses (127.0.0.0/8) every interval with the ping
//! collector and prints, every 10 seconds, how many probes completed and how many replies
//! came back. `scripts/ping_bench.sh` runs it and measures its CPU and memory from /proc.
//!
//! ```sh
//! cargo run --release --example ping_scale -- --targets 2000 --interval-ms 1000 --seconds 70
//! ```
//! Needs a raw ICMP socket (root or CAP_NET_RAW) or a ping_group_range that allows datagram
//! ICMP.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout::collectors::ping::{self, PingTarget};
use lookout::config::PingSettings;
use lookout::model::{Metric, Update};
use tokio::sync::mpsc;

/// The k-th loopback target: 127.1.0.1, 127.1.0.2, ... (250 per /24, all answered by `lo`).
fn address(k: usize) -> Ipv4Addr {
    let k = u32::try_from(k).unwrap_or(u32::MAX);
    Ipv4Addr::new(
        127,
        1 + (k / 62_500) as u8,
        ((k / 250) % 250) as u8,
        (k % 250 + 1) as u8,
    )
}

fn main() -> ExitCode {
    let mut targets = 2000usize;
    let mut interval_ms = 1000u64;
    let mut seconds = 70u64;
    let mut workers = 2u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--targets", Some(v)) => targets = v as usize,
            ("--interval-ms", Some(v)) => interval_ms = v,
            ("--seconds", Some(v)) => seconds = v,
            ("--workers", Some(v)) => workers = v,
            _ => {
                eprintln!("usage: ping_scale [--targets N] [--interval-ms MS] [--seconds S] [--workers N]");
                return ExitCode::from(2);
            }
        }
    }
    // Two workers by default, as the lookout binary uses; 0 for a current-thread runtime.
    let built = if workers == 0 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers as usize)
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ping_scale: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let list: Vec<PingTarget> = (0..targets)
            .map(|k| {
                let a = address(k).to_string();
                PingTarget {
                    host: Arc::from(a.as_str()),
                    address: a,
                    primary: true,
                }
            })
            .collect();
        let (tx, mut rx) = mpsc::channel(4 * targets.max(64));
        let settings = PingSettings {
            window: 20,
            down_after: 5,
            timeout: Duration::from_millis(interval_ms),
        };
        let _thread = ping::spawn(list, settings, Duration::from_millis(interval_ms), tx);
        println!("pid {} pinging {targets} loopback addresses every {interval_ms} ms for {seconds} s", std::process::id());
        let start = Instant::now();
        let end = start + Duration::from_secs(seconds);
        let mut period = Instant::now();
        let (mut samples, mut lossy, mut loss_sum, mut down) = (0u64, 0u64, 0.0f64, 0u64);
        while Instant::now() < end {
            let wait = end.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(Update::Sample(s))) => {
                    samples += 1;
                    if let Some(r) = s.readings.iter().find(|r| r.metric == Metric::PingLoss) {
                        loss_sum += r.value;
                        if r.value > 0.0 {
                            lossy += 1;
                        }
                    }
                }
                Ok(Some(Update::Status { status, .. })) => {
                    if status != lookout::model::HostStatus::Up {
                        down += 1;
                    }
                }
                Ok(Some(Update::Discovered { .. } | Update::Checks { .. })) => {}
                Ok(None) => break,
                Err(_) => {}
            }
            if period.elapsed() >= Duration::from_secs(10) {
                let secs = period.elapsed().as_secs_f64();
                println!(
                    "t={:>4.0}s probes/s {:>7.1}  mean window loss {:>5.2}%  samples with loss {lossy}  not-up statuses {down}",
                    start.elapsed().as_secs_f64(),
                    samples as f64 / secs,
                    if samples > 0 { loss_sum / samples as f64 } else { 0.0 },
                );
                (samples, lossy, loss_sum) = (0, 0, 0.0);
                period = Instant::now();
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    ExitCode::SUCCESS
}
