//! The remote sample parser on real and synthetic fixtures, and on hostile input.

use std::sync::Arc;

use lookout::collectors::remote::{self, ParseError, RemoteState, Watch};
use lookout::model::{Metric, Reading};
use proptest::prelude::*;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/remote/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    String::from_utf8_lossy(&bytes).into_owned()
}

fn value(readings: &[Reading], metric: Metric, instance: &str) -> Option<f64> {
    readings
        .iter()
        .find(|r| r.metric == metric && &*r.instance == instance)
        .map(|r| r.value)
}

fn instances(readings: &[Reading], metric: Metric) -> Vec<String> {
    readings
        .iter()
        .filter(|r| r.metric == metric)
        .map(|r| r.instance.to_string())
        .collect()
}

fn watch(processes: &[&str]) -> Watch {
    Watch {
        processes: processes.iter().map(|p| Arc::from(*p)).collect(),
        ..Watch::default()
    }
}

#[test]
fn this_machine() {
    let text = fixture("debian12-kernel6.18.txt");
    let w = watch(&["bash", "sh", "kthreadd"]);
    let parsed = remote::parse(&text, &w).expect("parses");
    let r = &parsed.readings;
    assert_eq!(parsed.cores.len(), 2);
    assert!(value(r, Metric::MemTotal, "").expect("mem") > 1e9);
    let used_pct = value(r, Metric::MemUsedPct, "").expect("mem%");
    assert!((0.0..=100.0).contains(&used_pct));
    assert!(value(r, Metric::Load1, "").is_some());
    assert!(value(r, Metric::LoadPerCore, "").is_some());
    assert!(value(r, Metric::HostUptime, "").expect("uptime") > 0.0);
    // tmpfs, devtmpfs and the like are left out; / is in
    let mounts = instances(r, Metric::DiskUsedPct);
    assert_eq!(mounts, ["/"], "{mounts:?}");
    // lo is left out by default
    assert_eq!(instances(r, Metric::NetRxBytes), ["ifb0", "ifb1", "eth0"]);
    // the script's own shell is not a watched `sh`
    let names: Vec<(&str, u32)> = parsed.processes.iter().map(|p| (&*p.watch, p.pid)).collect();
    assert!(names.iter().any(|(w, _)| *w == "bash"), "{names:?}");
    assert!(names.iter().any(|(w, _)| *w == "kthreadd"), "{names:?}");
    assert!(!names.iter().any(|(w, _)| *w == "sh"), "{names:?}");
    let bash = parsed
        .processes
        .iter()
        .find(|p| &*p.watch == "bash")
        .expect("bash");
    assert_eq!(&*bash.cmdline, "bash /dev/fd/3");
    assert_eq!(bash.rss_bytes, 1005 * 4096);
    assert_eq!(bash.shared_bytes, 781 * 4096);
    assert_eq!(bash.vms_bytes, 5414912);

    let mut state = RemoteState::default();
    let (readings, details) = state.complete(parsed, &w);
    // one sample: no cpu% yet, but every watched name has a count
    assert!(value(&readings, Metric::CpuUsage, "").is_none());
    assert_eq!(value(&readings, Metric::ProcCount, "sh"), Some(0.0));
    assert_eq!(value(&readings, Metric::ProcCount, "bash"), Some(1.0));
    assert_eq!(details.len(), 2);
}

#[test]
fn network_namespace() {
    let parsed = remote::parse(&fixture("netns-kernel6.18.txt"), &Watch::default()).expect("parses");
    assert!(instances(&parsed.readings, Metric::NetRxBytes).is_empty());
    let w = Watch {
        interfaces: vec!["lo".into()],
        ..Watch::default()
    };
    let parsed = remote::parse(&fixture("netns-kernel6.18.txt"), &w).expect("parses");
    assert_eq!(value(&parsed.readings, Metric::NetRxBytes, "lo"), Some(0.0));
    assert!(parsed.processes.is_empty());
}

#[test]
fn older_kernel_odd_mounts_huge_counters() {
    let text = fixture("ubuntu-kernel3.x-synthetic.txt");
    let parsed = remote::parse(&text, &Watch::default()).expect("parses");
    let r = &parsed.readings;
    assert_eq!(parsed.cores.len(), 8);
    // no MemAvailable: MemFree + Buffers + Cached
    let total = value(r, Metric::MemTotal, "").expect("total");
    assert_eq!(total, 3742148.0 * 1024.0);
    let avail = value(r, Metric::MemAvailable, "").expect("available");
    assert_eq!(avail, (225472.0 + 22040.0 + 930888.0) * 1024.0);
    let swap = value(r, Metric::SwapUsedPct, "").expect("swap");
    assert!((swap - (4194300.0 - 3155360.0) / 4194300.0 * 100.0).abs() < 1e-9);
    assert_eq!(value(r, Metric::Load15, ""), Some(0.39));
    assert_eq!(value(r, Metric::LoadPerCore, ""), Some(0.21 / 8.0));
    assert_eq!(value(r, Metric::HostUptime, ""), Some(1234567.0));
    // tmpfs and overlay out; the bind mount, the space and the empty filesystem in
    assert_eq!(
        instances(r, Metric::DiskTotal),
        ["/", "/srv/bind", "/mnt/backup disk", "/data"]
    );
    assert_eq!(
        instances(r, Metric::DiskUsedPct),
        ["/", "/srv/bind", "/mnt/backup disk"]
    );
    let pct = value(r, Metric::DiskUsedPct, "/").expect("/");
    assert!((pct - 399281316.0 / (399281316.0 + 56000000.0) * 100.0).abs() < 1e-9);
    assert_eq!(
        value(r, Metric::DiskFree, "/mnt/backup disk"),
        Some(9007199254740992.0 * 1024.0)
    );
    // counters near 2^64 survive as f64
    assert_eq!(value(r, Metric::NetRxPackets, "eth0"), Some(u64::MAX as f64));
    assert_eq!(value(r, Metric::NetTxErrors, "eth0"), Some(5.0));
    assert_eq!(value(r, Metric::NetTxDrops, "eth0"), Some(6.0));
    assert_eq!(instances(r, Metric::NetRxBytes), ["eth0", "docker0"]);

    let watched = Watch {
        mounts: vec![
            "/run".into(),
            "/var/lib/docker/overlay2/abc/merged".into(),
            "/nope".into(),
        ],
        ..Watch::default()
    };
    let parsed = remote::parse(&text, &watched).expect("parses");
    assert_eq!(
        instances(&parsed.readings, Metric::DiskTotal),
        ["/run", "/var/lib/docker/overlay2/abc/merged"]
    );
}

/// Replaces the /proc/stat section of a sample.
fn with_stat(text: &str, stat: &str) -> String {
    let start = text.find("==> /proc/stat <==\n").expect("stat") + "==> /proc/stat <==\n".len();
    let end = text[start..].find("\n==>").expect("next") + start;
    format!("{}{stat}{}", &text[..start], &text[end..])
}

fn with_uptime(text: &str, uptime: &str) -> String {
    let start = text.find("==> /proc/uptime <==\n").expect("uptime") + "==> /proc/uptime <==\n".len();
    let end = text[start..].find("\n==>").expect("next") + start;
    format!("{}{uptime}{}", &text[..start], &text[end..])
}

#[test]
fn cpu_percentages_need_two_samples() {
    let base = fixture("debian12-kernel6.18.txt");
    let first = with_stat(
        &base,
        "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0\ncpu1 50 0 50 350 50 0 0 0 0 0\n",
    );
    let second = with_stat(
        &base,
        "cpu  300 0 100 1400 200 0 0 0 0 0\ncpu0 250 0 50 400 50 0 0 0 0 0\ncpu1 50 0 50 1000 150 0 0 0 0 0\n",
    );
    let first = with_uptime(&first, "100.00 1.0\n");
    // 2 s later; the bash process (utime 2 + stime 6 = 8 ticks) used 50 more ticks
    let second = with_uptime(&second, "102.00 1.0\n").replace(
        "10148 (bash) S 10147 10148 10148 0 -1 4194560 7553 100622 2 55 2 6 ",
        "10148 (bash) S 10147 10148 10148 0 -1 4194560 7553 100622 2 55 22 36 ",
    );
    let w = watch(&["bash"]);
    let mut state = RemoteState::default();
    let (r1, _) = state.complete(remote::parse(&first, &w).expect("first"), &w);
    assert!(value(&r1, Metric::CpuUsage, "").is_none());
    let (r2, d2) = state.complete(remote::parse(&second, &w).expect("second"), &w);
    // 1000 jiffies: 200 user, 700 idle, 100 iowait
    assert!((value(&r2, Metric::CpuUsage, "").expect("cpu") - 20.0).abs() < 1e-9);
    assert!((value(&r2, Metric::CpuIowait, "").expect("iowait") - 10.0).abs() < 1e-9);
    assert!((value(&r2, Metric::CpuCoreUsage, "0").expect("core 0") - 80.0).abs() < 1e-9);
    assert!((value(&r2, Metric::CpuCoreUsage, "1").expect("core 1") - 0.0).abs() < 1e-9);
    // 50 ticks at 100 Hz over 2 s = 25% of a core
    assert!((value(&r2, Metric::ProcCpu, "bash").expect("proc cpu") - 25.0).abs() < 1e-9);
    assert!((d2[0].cpu_pct - 25.0).abs() < 1e-9);
    // after a reset (reconnect), no stale baseline
    state.reset();
    let (r3, _) = state.complete(remote::parse(&second, &w).expect("again"), &w);
    assert!(value(&r3, Metric::CpuUsage, "").is_none());
}

#[test]
fn hostile_process_names_are_sanitized() {
    let text =
        fixture("debian12-kernel6.18.txt").replace("10148 (bash) S", "10148 (ba\x1b]0;pwned\x07sh) x) S");
    let text = text.replace("bash\0/dev/fd/3\0", "/usr/bin/evil\0\x1b[2J\x1b[31m\n\r--flag\0");
    let w = watch(&["ba"]);
    // the hostile process still parses (its name is up to the LAST ')') and loses its escapes
    let w2 = Watch {
        processes: vec![Arc::from("evil")],
        ..w
    };
    let parsed = remote::parse(&text, &w2).expect("parses");
    let p = parsed
        .processes
        .iter()
        .find(|p| p.pid == 10148)
        .expect("found by argv0");
    assert!(!p.name.chars().any(char::is_control), "{:?}", p.name);
    assert!(!p.cmdline.chars().any(char::is_control), "{:?}", p.cmdline);
    assert!(p.name.starts_with("ba ]0;pwned sh) x"), "{:?}", p.name);
    // an interface name with escapes
    let text = fixture("netns-kernel6.18.txt").replace("    lo:", "  e\x1b[1mth:");
    let parsed = remote::parse(
        &text,
        &Watch {
            interfaces: vec![],
            ..Watch::default()
        },
    )
    .expect("parses");
    for r in &parsed.readings {
        assert!(!r.instance.chars().any(char::is_control), "{:?}", r.instance);
    }
}

#[test]
fn garbage_and_truncation_give_errors_not_panics() {
    assert!(matches!(
        remote::parse("", &Watch::default()),
        Err(ParseError::NotASample(_))
    ));
    assert!(matches!(
        remote::parse("Last login: yesterday\nWelcome!\n", &Watch::default()),
        Err(ParseError::NotASample(_))
    ));
    let e = remote::parse(
        "@@lookout 1 1 100 4096\n==> /proc/stat <==\nintr 1 2 3\n@@end\n",
        &Watch::default(),
    )
    .expect_err("no cpu line");
    assert_eq!(
        e.to_string(),
        "the host's sample has no cpu line in /proc/stat (is it Linux?)"
    );
    // every prefix of real samples parses or fails cleanly
    let w = watch(&["bash", "kthreadd"]);
    for name in ["debian12-kernel6.18.txt", "ubuntu-kernel3.x-synthetic.txt"] {
        let text = fixture(name);
        let mut state = RemoteState::default();
        for cut in (0..text.len()).filter(|i| text.is_char_boundary(*i)).step_by(7) {
            if let Ok(p) = remote::parse(&text[..cut], &w) {
                state.complete(p, &w);
            }
        }
    }
}

#[test]
fn sample_of_this_machine_matches_the_script() {
    // Running the real script locally gives a sample the parser accepts.
    use std::io::Write;
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(remote::script(true))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sh runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"42\n")
        .expect("write");
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n@@end 42\n"), "{text}");
    assert!(text.starts_with("@@lookout 1 "), "{text}");
    let w = watch(&["sh"]);
    let parsed = remote::parse(&text, &w).expect("parses");
    assert!(value(&parsed.readings, Metric::DiskUsedPct, "/").is_some());
    // neither the script's shell nor its children count as a watched `sh`
    assert!(
        parsed.processes.iter().all(|p| !p.cmdline.contains("@@lookout")),
        "{:?}",
        parsed.processes
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC*") {
        let w = watch(&["sh", "a b", "/x"]);
        if let Ok(p) = remote::parse(&text, &w) {
            RemoteState::default().complete(p, &w);
        }
    }

    #[test]
    fn never_panics_on_mutated_samples(
        cut in 0usize..7000,
        insert in "[\\x00-\\x7f@=<> %()/0-9\n]{0,40}",
    ) {
        let text = fixture("debian12-kernel6.18.txt");
        let mut cut = cut.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let mutated = format!("@@lookout 1 5 0 0\n{}{}{}", &text[..cut], insert, &text[cut..]);
        let w = watch(&["bash", "sh"]);
        let mut state = RemoteState::default();
        for _ in 0..2 {
            if let Ok(p) = remote::parse(&mutated, &w) {
                let (readings, details) = state.complete(p, &w);
                for r in &readings {
                    prop_assert!(!r.instance.chars().any(char::is_control));
                }
                for d in &details {
                    prop_assert!(!d.name.chars().any(char::is_control));
                    prop_assert!(!d.cmdline.chars().any(char::is_control));
                }
            }
        }
    }
}
