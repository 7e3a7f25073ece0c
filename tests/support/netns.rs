//! Network namespaces as ping targets, torn down by `Drop` even when a test fails.
//!
//! Every test reserves its own /24 of 10.204.0.0/16 by adding `unreachable 10.204.X.0/24`
//! in the root namespace *before* any address exists, so no probe can leave the machine;
//! the route add is atomic, so two runs (or two tests) never share a /24 or a name.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs a command, panicking with its output when it fails.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command and ignores its result (cleanup).
fn run_quietly(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A namespace, optionally joined to the root namespace by a veth pair.
pub struct TestNet {
    /// Third octet of the reserved 10.204.X.0/24.
    pub x: u8,
    pub ns: String,
    route: Option<String>,
    veth_root: Option<String>,
    /// Processes started in the namespace (killed first on drop).
    children: Vec<Child>,
}

impl TestNet {
    /// Reserves a /24 (unreachable route first), creates a namespace with `lo` up and a veth
    /// pair: 10.204.X.1/30 on the root side, 10.204.X.2/30 inside.
    pub fn with_veth() -> TestNet {
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let start = (pid.wrapping_mul(7).wrapping_add(n * 13) % 250) as u8;
        let mut net = None;
        for i in 0..250u16 {
            let x = ((u16::from(start) + i) % 250 + 1) as u8;
            let route = format!("10.204.{x}.0/24");
            let ok = Command::new("ip")
                .args(["route", "add", "unreachable", &route])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                net = Some(TestNet {
                    x,
                    ns: format!("lkping-{pid}-{n}"),
                    route: Some(route),
                    veth_root: None,
                    children: Vec::new(),
                });
                break;
            }
        }
        let mut net = net.expect("a free /24 in 10.204.0.0/16");
        run(&["ip", "netns", "add", &net.ns]);
        let root = format!("lkp{}r{}", net.x, n % 100);
        let peer = format!("lkp{}n{}", net.x, n % 100);
        run(&["ip", "link", "add", &root, "type", "veth", "peer", "name", &peer]);
        net.veth_root = Some(root.clone());
        run(&["ip", "link", "set", &peer, "netns", &net.ns]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("10.204.{}.1/30", net.x),
            "dev",
            &root,
        ]);
        run(&["ip", "link", "set", &root, "up"]);
        net.exec(&[
            "ip",
            "addr",
            "add",
            &format!("10.204.{}.2/30", net.x),
            "dev",
            &peer,
        ]);
        net.exec(&["ip", "link", "set", &peer, "up"]);
        net.exec(&["ip", "link", "set", "lo", "up"]);
        net
    }

    /// A namespace with only `lo` (up) and no link to the outside.
    pub fn isolated() -> TestNet {
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let net = TestNet {
            x: 0,
            ns: format!("lkping-{pid}-{n}"),
            route: None,
            veth_root: None,
            children: Vec::new(),
        };
        run(&["ip", "netns", "add", &net.ns]);
        net.exec(&["ip", "link", "set", "lo", "up"]);
        net
    }

    /// The namespace's address (veth side inside).
    pub fn inside(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 204, self.x, 2)
    }

    /// An address of the reserved /24 that has no route (the unreachable route covers it).
    pub fn unrouted(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 204, self.x, 200)
    }

    /// Runs a command inside the namespace, panicking when it fails.
    pub fn exec(&self, args: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", &self.ns];
        full.extend_from_slice(args);
        run(&full);
    }

    /// A command that will run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    /// Keeps a child process to kill when the namespace goes.
    pub fn adopt(&mut self, child: Child) -> &mut Child {
        self.children.push(child);
        let last = self.children.len() - 1;
        &mut self.children[last]
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The root-side veth explicitly: `ip netns del` tears down asynchronously.
        if let Some(veth) = &self.veth_root {
            run_quietly(&["ip", "link", "del", veth]);
        }
        run_quietly(&["ip", "netns", "del", &self.ns]);
        if let Some(route) = &self.route {
            run_quietly(&["ip", "route", "del", "unreachable", route]);
        }
    }
}
