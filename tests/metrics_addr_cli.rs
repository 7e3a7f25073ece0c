//! `--metrics-addr` on the real binary: served by `lookout run --headless`, refused when busy.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

#[test]
fn headless_serves_metrics() {
    let home = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["run", "--headless", "--duration", "20s", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .env("XDG_CONFIG_HOME", home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("lookout starts");
    let deadline = Instant::now() + Duration::from_secs(15);
    let page = loop {
        let body = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n")
                    .ok()?;
                let mut out = String::new();
                s.read_to_string(&mut out).ok()?;
                Some(out)
            });
        if let Some(b) = body.filter(|b| b.contains("lookout_cpu_usage_ratio{")) {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "no /metrics page from the headless runner"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("application/openmetrics-text"), "{page}");
    assert!(page.contains("lookout_hosts{status=\"up\"} 1.0"), "{page}");
}

#[test]
fn a_busy_address_is_refused_at_start() {
    let home = tempfile::tempdir().expect("tempdir");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["run", "--headless", "--duration", "5s", "--metrics-addr"])
        .arg(addr.to_string())
        .env("XDG_CONFIG_HOME", home.path())
        .output()
        .expect("lookout runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot serve metrics on {addr}")), "{err}");
}
