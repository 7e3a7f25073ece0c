//! `[[check]]` end to end on this machine: real Monitoring Plugins, a real Redis and snmpd,
//! node_exporter's real exposition text, every bad-input case, and triggers on check
//! metrics firing and resolving (with the check's message for actions).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use lookout::clock::{Clock, FakeClock};
use lookout::collectors::checks::{self, Check, Limits, Runner, parse};
use lookout::config;
use lookout::engine::Engine;
use lookout::event::EventKind;
use lookout::model::{CheckReport, Metric, Reading, Sample, Source, Update};
use lookout::triggers::state::TriggerState;

const PLUGINS: &str = "/usr/lib/nagios/plugins";

/// A child process killed (and reaped) when the test ends, also on failure.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn need(path: &str, package: &str) {
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is missing: apt-get install -y {package} (scripts/test.sh installs it)"
    );
}

/// The checks of a config with one local host.
fn config_with(checks: &str) -> Arc<config::Config> {
    let text =
        format!("[general]\ninterval = \"1s\"\n[[hosts]]\nnames = [\"here\"]\nvia = \"local\"\n{checks}");
    Arc::new(config::parse(&text, "t.toml", None).unwrap_or_else(|e| panic!("{e}")))
}

fn one_check(body: &str) -> Check {
    config_with(&format!("[[check]]\n{body}\n")).checks[0].clone()
}

async fn run_local(check: &Check) -> CheckReport {
    checks::run_once(check, Runner::Local, Limits::default()).await
}

fn values(r: &CheckReport) -> Vec<(String, f64)> {
    r.readings
        .iter()
        .skip(1)
        .map(|r| (r.instance.to_string(), r.value))
        .collect()
}

/// A plugin run directly: (exit code, perfdata values).
fn direct(cmd: &str) -> (u8, String, Vec<(String, f64)>) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (message, values) = parse::nagios(&text);
    (out.status.code().unwrap_or(3) as u8, message, values)
}

#[tokio::test]
async fn monitoring_plugins_give_their_own_status_and_perfdata() {
    need(&format!("{PLUGINS}/check_load"), "monitoring-plugins-basic");
    for (name, cmd) in [
        (
            "load",
            format!("{PLUGINS}/check_load -w 1000,1000,1000 -c 2000,2000,2000"),
        ),
        ("disk", format!("{PLUGINS}/check_disk -w 20% -c 10% -p /")),
        ("procs", format!("{PLUGINS}/check_procs -C sshd")),
        ("crit", format!("{PLUGINS}/check_dummy 2 'on fire'")),
    ] {
        let check = one_check(&format!(
            "name = \"{name}\"\ncommand = \"{cmd}\"\nformat = \"nagios\"\n"
        ));
        let report = run_local(&check).await;
        let (status, message, want) = direct(&cmd);
        assert_eq!(report.status, status, "{name}: {}", report.message);
        let got = values(&report);
        assert_eq!(
            got.iter().map(|v| &v.0).collect::<Vec<_>>(),
            want.iter().map(|v| &v.0).collect::<Vec<_>>(),
            "{name}"
        );
        for ((label, a), (_, b)) in got.iter().zip(&want) {
            // Load and disk use move a little between the two runs (other builds run here).
            let tol = (b.abs() * 0.02).max(0.5);
            assert!((a - b).abs() <= tol, "{name} {label}: {a} vs {b}");
        }
        if name == "crit" {
            assert_eq!(&*report.message, "CRITICAL: on fire");
            assert_eq!(message, "CRITICAL: on fire");
        }
        assert!(
            report.message.split(' ').next() == message.split(' ').next(),
            "{name}: {} vs {message}",
            report.message
        );
    }
}

#[tokio::test]
async fn a_redis_list_length() {
    need("/usr/bin/redis-server", "redis-server");
    let port = free_port();
    let dir = tempfile::tempdir().expect("tmp");
    let _redis = Guard(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    let cli = |args: &str| format!("redis-cli -h 127.0.0.1 -p {port} {args}");
    let mut up = false;
    for _ in 0..100 {
        if Command::new("sh")
            .arg("-c")
            .arg(cli("ping"))
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
        {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up, "redis did not start");
    let out = Command::new("sh")
        .arg("-c")
        .arg(cli("rpush jobs a b c d e"))
        .output()
        .expect("rpush");
    assert!(out.status.success());
    let check = one_check(&format!(
        "name = \"queue\"\ncommand = \"{}\"\nunit = \"jobs\"\n",
        cli("llen jobs")
    ));
    let report = run_local(&check).await;
    assert_eq!(
        (report.status, values(&report)),
        (0, vec![(String::new(), 5.0)]),
        "{}",
        report.message
    );
    // The server gone: status 3 with redis-cli's complaint, no value.
    drop(_redis);
    let report = run_local(&check).await;
    assert_eq!(report.status, 3);
    assert!(values(&report).is_empty());
    assert!(
        report.message.contains("Connection refused") || report.message.contains("exit 1"),
        "{}",
        report.message
    );
}

#[tokio::test]
async fn an_snmp_oid() {
    need("/usr/sbin/snmpd", "snmpd");
    need("/usr/bin/snmpget", "snmp");
    let port = free_port();
    let dir = tempfile::tempdir().expect("tmp");
    let conf = dir.path().join("snmpd.conf");
    std::fs::write(&conf, "rocommunity lookouttest 127.0.0.1\nsysServices 76\n").expect("conf");
    let _snmpd = Guard(
        Command::new("/usr/sbin/snmpd")
            .args(["-f", "-Lf", "/dev/null", "-C", "-c"])
            .arg(&conf)
            .arg("-p")
            .arg(dir.path().join("snmpd.pid"))
            .arg(format!("udp:127.0.0.1:{port}"))
            // Debian ships no MIB files: without these it logs hundreds of lines per start.
            .env("MIBS", "")
            .env("MIBDIRS", "/nonexistent")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("snmpd"),
    );
    // sysServices.0, numeric (Debian ships no MIB files).
    let cmd = format!("snmpget -v2c -c lookouttest -Oqv -r 0 -t 1 127.0.0.1:{port} .1.3.6.1.2.1.1.7.0");
    let check = one_check(&format!(
        "name = \"snmp\"\ncommand = \"{cmd}\"\ntimeout = \"3s\"\n"
    ));
    let mut report = run_local(&check).await;
    for _ in 0..20 {
        if report.status == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        report = run_local(&check).await;
    }
    assert_eq!(
        (report.status, values(&report)),
        (0, vec![(String::new(), 76.0)]),
        "{}",
        report.message
    );
}

#[tokio::test]
async fn prometheus_format_on_node_exporters_own_metrics() {
    need("/usr/bin/prometheus-node-exporter", "prometheus-node-exporter");
    let port = free_port();
    let _exporter = Guard(
        Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node exporter"),
    );
    let url = format!("http://127.0.0.1:{port}/metrics");
    let cmd = format!("curl -sf {url}");
    let mut text = String::new();
    for _ in 0..100 {
        let out = Command::new("sh").arg("-c").arg(&cmd).output().expect("curl");
        if out.status.success() {
            text = String::from_utf8_lossy(&out.stdout).into_owned();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        text.contains("node_exporter_build_info"),
        "no exposition text from {url}"
    );
    let check = one_check(&format!(
        "name = \"node\"\ncommand = \"{cmd}\"\nformat = \"prometheus\"\n"
    ));
    let report = run_local(&check).await;
    assert_eq!(report.status, 0, "{}", report.message);
    let got = values(&report);
    assert!(got.len() > 100, "{} series", got.len());
    let build = got
        .iter()
        .find(|v| v.0.starts_with("node_exporter_build_info{"))
        .expect("build info");
    assert_eq!(build.1, 1.0);
    assert!(build.0.contains("goversion=\""), "{}", build.0);
    // Every series of the text is there (values move between scrapes, names do not).
    let (want, _, bad) = parse::prometheus(&text);
    assert_eq!(bad, 0, "node_exporter's text is all samples and comments");
    let names = |v: &[(String, f64)]| {
        v.iter()
            .map(|x| x.0.split('{').next().unwrap_or("").to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(names(&got), names(&want));
}

#[tokio::test]
async fn bad_input_is_unknown_with_the_reason_and_leaves_nothing_running() {
    let marker = format!("lookout-bad-{}", std::process::id());
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "nosuchcommand-lookout".into(),
            "number",
            "command not found (exit 127)",
        ),
        (
            "echo '<html>garbage</html>'".into(),
            "number",
            "no number in the output: <html>garbage</html>",
        ),
        (
            "echo 'no digits'".into(),
            "number",
            "no number in the output: no digits",
        ),
        (
            "head -c 100000000 /dev/zero".into(),
            "number",
            "printed more than 1 MiB of output",
        ),
        (format!("sleep 300; : {marker}"), "number", "timed out after 1s"),
        (
            "printf '5 \\377\\376\\n'".into(),
            "number",
            "the output is not UTF-8 (byte 2)",
        ),
        (
            "printf 'OK \\033[2J\\033]0;x\\007|a=1\\n'".into(),
            "nagios",
            "the output holds control characters",
        ),
        (
            "printf 'nope\\n'; exit 9".into(),
            "nagios",
            "exit 9 is not a plugin status",
        ),
        ("echo x; exit 1".into(), "prometheus", "exit 1: x"),
    ];
    for (cmd, format, want) in cases {
        let check = one_check(&format!(
            "name = \"bad\"\ncommand = {}\nformat = \"{format}\"\ntimeout = \"1s\"\n",
            toml::Value::String(cmd.clone())
        ));
        let report = run_local(&check).await;
        assert_eq!(report.status, 3, "{cmd}: {}", report.message);
        assert!(
            report.message.starts_with(want),
            "{cmd}: {:?} does not start with {want:?}",
            report.message
        );
        assert!(
            !report.message.contains(['\x1b', '\x07', '\n']),
            "{cmd}: {:?}",
            report.message
        );
        assert_eq!(report.readings[0].value, 3.0);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let left = std::fs::read_dir("/proc").expect("proc").flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
    });
    assert!(!left, "the hung check left a process");
}

/// Engine side: reports become `check.*` metrics, max-risk lines, JSON, and trigger
/// events that carry the message; a check that fails leaves the other metrics alone.
#[test]
fn triggers_on_check_metrics_fire_and_resolve_with_the_message() {
    let cfg = config_with(
        "[[check]]\nname = \"queue\"\ncommand = \"true\"\nunit = \"jobs\"\n\
         [[check]]\nname = \"svc\"\ncommand = \"true\"\nformat = \"nagios\"\n\
         [[trigger]]\nname = \"queue long\"\nmetric = \"check.queue\"\nscope = \"each\"\nabove = 100\nclear = 50\nfor = \"2s\"\n\
         [[trigger]]\nname = \"svc bad\"\nmetric = \"check.svc.status\"\nscope = \"each\"\nabove = 1.5\nfor = \"0s\"\n",
    );
    let clock = Arc::new(FakeClock::at_epoch());
    let mut engine = Engine::new(cfg.clone(), clock.clone());
    let (queue, svc) = (&cfg.checks[0], &cfg.checks[1]);
    let report = |check: &Check, status: u8, message: &str, values: Vec<(&str, f64)>| Update::Checks {
        host: Arc::from("here"),
        reports: vec![checks::report(
            check,
            parse::Verdict {
                status,
                message: message.to_string(),
                values: values.into_iter().map(|(i, v)| (i.to_string(), v)).collect(),
            },
            Duration::from_millis(12),
        )],
    };
    let mut events = Vec::new();
    let step = |engine: &mut Engine, events: &mut Vec<_>, updates: Vec<Update>, advance: u64| {
        // The host's own samples keep it fresh (stale data holds no trigger).
        engine.apply(Update::Sample(Sample {
            host: Arc::from("here"),
            source: Source::System,
            readings: vec![Reading::host(Metric::CpuUsage, 1.0)],
            processes: Vec::new(),
        }));
        for u in updates {
            engine.apply(u);
        }
        engine.tick();
        clock.advance(Duration::from_secs(advance));
        engine.tick();
        for e in engine.drain_events() {
            if let EventKind::Trigger(t) = e.kind {
                events.push((t.trigger.clone(), t.state, t.value, t.message.clone()));
            }
        }
    };
    step(
        &mut engine,
        &mut events,
        vec![
            report(queue, 0, "150", vec![("", 150.0)]),
            report(svc, 2, "SVC CRITICAL - down", vec![("time", 0.5)]),
        ],
        1,
    );
    step(
        &mut engine,
        &mut events,
        vec![report(queue, 0, "160", vec![("", 160.0)])],
        2,
    );
    step(
        &mut engine,
        &mut events,
        vec![report(queue, 0, "170", vec![("", 170.0)])],
        0,
    );
    let firing: Vec<_> = events.iter().filter(|e| e.1 == TriggerState::Firing).collect();
    assert!(
        firing
            .iter()
            .any(|e| e.0 == "svc bad" && e.2 == Some(2.0) && e.3.as_deref() == Some("SVC CRITICAL - down")),
        "{events:?}"
    );
    assert!(
        firing
            .iter()
            .any(|e| e.0 == "queue long" && e.3.as_deref() == Some("160")),
        "{events:?}"
    );

    let snap = engine.snapshot();
    let h = snap.host("here").expect("host");
    assert_eq!(h.value(queue.metric, ""), Some(170.0));
    assert_eq!(h.value(svc.status_metric, ""), Some(2.0));
    assert_eq!(h.worst_check(), Some(2));
    assert!(
        snap.max_risk
            .iter()
            .any(|l| l.metric == queue.metric && l.value == 170.0)
    );
    assert!(
        snap.max_risk
            .iter()
            .any(|l| l.metric == svc.status_metric && l.value == 2.0)
    );
    let json = serde_json::to_value(&*snap).expect("json");
    let checks_json = &json["hosts"][0]["checks"];
    assert_eq!(checks_json[0]["name"], "queue");
    assert_eq!(checks_json[1]["name"], "svc");
    assert_eq!(checks_json[1]["status"], 2);
    assert_eq!(checks_json[1]["message"], "SVC CRITICAL - down");
    assert_eq!(checks_json[1]["duration_ms"], 12.0);
    assert_eq!(checks_json[1]["values"][0]["instance"], "time");
    assert_eq!(checks_json[1]["values"][0]["value"], 0.5);
    let metrics = json["hosts"][0]["metrics"].as_array().expect("metrics");
    assert!(
        metrics
            .iter()
            .any(|m| m["metric"] == "check.svc.status" && m["value"] == 2.0)
    );

    events.clear();
    step(
        &mut engine,
        &mut events,
        vec![
            report(queue, 0, "10", vec![("", 10.0)]),
            report(svc, 0, "SVC OK", vec![("time", 0.1)]),
        ],
        1,
    );
    let resolved: Vec<_> = events
        .iter()
        .filter(|e| e.1 == TriggerState::Resolved)
        .map(|e| (e.0.as_str(), e.3.clone()))
        .collect();
    assert!(
        resolved.contains(&("queue long", Some("10".into()))),
        "{events:?}"
    );
    assert!(
        resolved.contains(&("svc bad", Some("SVC OK".into()))),
        "{events:?}"
    );
    let _ = clock.now();
}

/// `lookout snapshot` waits for every check once (a slow one included) and `lookout check`
/// lists the checks with their hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_waits_for_every_check_and_check_lists_them() {
    let cfg = config_with(
        "[[check]]\nname = \"slow\"\ncommand = \"sleep 1; echo 5\"\ninterval = \"1m\"\ntimeout = \"5s\"\n\
         [[check]]\nname = \"sys\"\nuse = \"disk\"\n",
    );
    let report = lookout::commands::check_report(&cfg);
    assert!(report.contains("  2 checks:\n"), "{report}");
    assert!(
        report.contains("    slow: number every 1m, timeout 5s, on 1 hosts: here\n"),
        "{report}"
    );
    assert!(
        report.contains("    sys: use disk every 1s, timeout 1s, on 1 hosts: here\n"),
        "{report}"
    );
    let snap = lookout::commands::collect_snapshot(cfg, 1).await;
    let h = snap.host("here").expect("host");
    let slow = h.check("slow").expect("the slow check ran before the snapshot");
    assert_eq!(
        (slow.status, slow.readings.get(1).map(|r| r.value)),
        (0, Some(5.0))
    );
    assert!(slow.duration_ms >= 900.0, "{}", slow.duration_ms);
    assert!(h.check("sys").is_some());
    let json = serde_json::to_value(&*snap).expect("json");
    assert_eq!(json["hosts"][0]["checks"][0]["name"], "slow");
    let mut table = Vec::new();
    lookout::commands::print_table(&snap, &mut table).expect("table");
    let table = String::from_utf8_lossy(&table);
    assert!(table.contains("    check slow: OK 5\n"), "{table}");
}
