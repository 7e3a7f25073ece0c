//! A synthetic exposition page with node_exporter-style series for many instances, for the
//! Prometheus scale measurement (docs/prometheus.md, "Scale"). One target, scraped with
//! `honor_labels: true`, stands for N hosts: every series carries its own `instance`.
//!
//! Usage: `synth_exporter PORT INSTANCES` (listens on 127.0.0.1 only).
//! Per instance: 8 cpu, 3 load, 4 memory, 3 filesystem, 8 network, 2 time series (28).
//! Counters grow with time so rates are non-zero and differ between instances.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{SystemTime, UNIX_EPOCH};

fn page(instances: usize, now: f64) -> String {
    let mut s = String::with_capacity(instances * 28 * 100);
    let boot = 1_700_000_000.0;
    let up = now - boot;
    for (name, kind) in [
        ("node_cpu_seconds_total", "counter"),
        ("node_load1", "gauge"),
        ("node_load5", "gauge"),
        ("node_load15", "gauge"),
        ("node_memory_MemTotal_bytes", "gauge"),
        ("node_memory_MemAvailable_bytes", "gauge"),
        ("node_memory_SwapTotal_bytes", "gauge"),
        ("node_memory_SwapFree_bytes", "gauge"),
        ("node_filesystem_size_bytes", "gauge"),
        ("node_filesystem_free_bytes", "gauge"),
        ("node_filesystem_avail_bytes", "gauge"),
        ("node_network_receive_bytes_total", "counter"),
        ("node_network_transmit_bytes_total", "counter"),
        ("node_network_receive_packets_total", "counter"),
        ("node_network_transmit_packets_total", "counter"),
        ("node_network_receive_errs_total", "counter"),
        ("node_network_transmit_errs_total", "counter"),
        ("node_network_receive_drop_total", "counter"),
        ("node_network_transmit_drop_total", "counter"),
        ("node_boot_time_seconds", "gauge"),
        ("node_time_seconds", "gauge"),
    ] {
        let _ = writeln!(s, "# TYPE {name} {kind}");
        for i in 0..instances {
            let f = (i % 97) as f64 / 97.0;
            let inst = format!("host-{i:05}:9100");
            match name {
                "node_cpu_seconds_total" => {
                    for cpu in 0..2 {
                        for (mode, share) in [
                            ("idle", 0.9 - 0.5 * f),
                            ("iowait", 0.02),
                            ("user", 0.05 + 0.4 * f),
                            ("system", 0.03 + 0.08 * f),
                        ] {
                            let _ = writeln!(
                                s,
                                "{name}{{instance=\"{inst}\",job=\"node\",cpu=\"{cpu}\",mode=\"{mode}\"}} {:.2}",
                                up * share
                            );
                        }
                    }
                }
                "node_load1" | "node_load5" | "node_load15" => {
                    let _ = writeln!(s, "{name}{{instance=\"{inst}\",job=\"node\"}} {:.2}", 4.0 * f);
                }
                n if n.starts_with("node_memory") => {
                    let v = match n {
                        "node_memory_MemTotal_bytes" => 16e9,
                        "node_memory_MemAvailable_bytes" => 16e9 * (1.0 - 0.9 * f),
                        "node_memory_SwapTotal_bytes" => 2e9,
                        _ => 2e9 * (1.0 - f),
                    };
                    let _ = writeln!(s, "{name}{{instance=\"{inst}\",job=\"node\"}} {v:.0}");
                }
                n if n.starts_with("node_filesystem") => {
                    let v = match n {
                        "node_filesystem_size_bytes" => 100e9,
                        "node_filesystem_free_bytes" => 100e9 * (1.0 - f),
                        _ => 95e9 * (1.0 - f),
                    };
                    let _ = writeln!(
                        s,
                        "{name}{{instance=\"{inst}\",job=\"node\",device=\"/dev/sda1\",fstype=\"ext4\",mountpoint=\"/\"}} {v:.0}"
                    );
                }
                n if n.starts_with("node_network") => {
                    let per_s = if n.contains("bytes") {
                        1e6 * (1.0 + f)
                    } else if n.contains("packets") {
                        1e3 * (1.0 + f)
                    } else {
                        f
                    };
                    let _ = writeln!(
                        s,
                        "{name}{{instance=\"{inst}\",job=\"node\",device=\"eth0\"}} {:.0}",
                        up * per_s
                    );
                }
                "node_boot_time_seconds" => {
                    let _ = writeln!(s, "{name}{{instance=\"{inst}\",job=\"node\"}} {boot:.0}");
                }
                _ => {
                    let _ = writeln!(s, "{name}{{instance=\"{inst}\",job=\"node\"}} {now:.3}");
                }
            }
        }
    }
    s
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(9999);
    let instances: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("synth_exporter: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("synth_exporter: {instances} instances at http://127.0.0.1:{port}/metrics");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let body = page(instances, now);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body.as_bytes());
    }
}
