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
    let w = watch(&["sh"]);
    let mut state = RemoteState::default();
    let request = state.request(42, &w);
    assert_eq!(request, "42 da 0\n", "the first request reads everything");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.as_bytes())
        .expect("write");
    let shell = child.id();
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n@@end 42\n"), "{text}");
    assert!(text.starts_with("@@lookout 2 "), "{text}");
    let parsed = remote::parse(&text, &w).expect("parses");
    assert!(value(&parsed.readings, Metric::DiskUsedPct, "/").is_some());
    // the script's shell is not a watched `sh` (its children are head and df; the lookout
    // scripts of other tests on this machine are)
    assert!(
        parsed.processes.iter().all(|p| p.pid != shell),
        "{:?}",
        parsed.processes
    );
}

/// The script run by one shell, answering request lines on a pipe as over SSH.
struct Shell {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Shell {
    /// `path`: the PATH the script runs with (else this process's).
    fn start(argv: &[&str], procs: bool, path: Option<&std::path::Path>) -> Shell {
        // the shell itself is found on this process's PATH
        let program = std::env::var_os("PATH")
            .and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(argv[0]))
                    .find(|p| p.exists())
            })
            .unwrap_or_else(|| argv[0].into());
        let mut command = std::process::Command::new(program);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        let mut child = command
            .args(&argv[1..])
            .arg("-c")
            .arg(remote::script(procs))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{argv:?}: {e} (apt-get install -y dash busybox)"));
        let out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        Shell { child, out }
    }

    /// Sends `request` (for id `id`) and reads the sample up to its end marker.
    fn ask(&mut self, id: u64, request: &str) -> String {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(request.as_bytes()).expect("request");
        stdin.flush().expect("flush");
        let end = format!("@@end {id}\n");
        let mut text = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self.out.read_until(b'\n', &mut line).expect("read");
            assert!(n > 0, "the shell ended: {}", String::from_utf8_lossy(&text));
            text.extend_from_slice(&line);
            if line == end.as_bytes() {
                return String::from_utf8_lossy(&text).into_owned();
            }
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `sleep` with a command line of its own, killed when dropped.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn start(tag: &str) -> Sleeper {
        Sleeper(
            std::process::Command::new("sleep")
                .arg(tag)
                .spawn()
                .expect("sleep"),
        )
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper_pids(details: &[lookout::model::ProcessDetail], tag: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = details
        .iter()
        .filter(|d| d.cmdline.ends_with(tag))
        .map(|d| d.pid)
        .collect();
    pids.sort_unstable();
    pids
}

/// Many polls of the format-2 protocol against a real shell (dash, then busybox's): each
/// request names what to read from what the earlier samples told, processes are found when
/// they start and dropped when they exit, and disks are read every few polls but reported
/// in every sample. `many`: watched by name (`sleep`, `sh`) with thirteen more sleepers, so
/// more pids are watched than the shell reads with `read` (they go to `head`); else by
/// command line, only this test's sleepers (few: `read`, when no new pid needs `head`).
fn session_over(argv: &[&str], many: bool) {
    session_over_path(argv, many, None, true);
}

/// The names of `pid`'s descendants.
fn descendant_names(pid: u32) -> Vec<String> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((pid, rest)) = stat.split_once(" (") else {
            continue;
        };
        let Some((name, rest)) = rest.rsplit_once(") ") else {
            continue;
        };
        let parent = rest.split(' ').nth(1).unwrap_or("").to_string();
        all.push((pid.to_string(), parent, name.to_string()));
    }
    let mut family = vec![pid.to_string()];
    let mut names = Vec::new();
    while let Some(p) = family.pop() {
        for (child, _, name) in all.iter().filter(|(_, parent, _)| *parent == p) {
            family.push(child.clone());
            names.push(name.clone());
        }
    }
    names
}

/// A directory of symlinks to the programs the script may start, for the PATH of a host
/// that has these only: `awk` to `awk_to`, or no awk at all.
fn host_bin(awk_to: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for tool in ["getconf", "head", "df", "sleep"] {
        let to = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool} is not installed"));
        std::os::unix::fs::symlink(to, dir.path().join(tool)).expect("symlink");
    }
    if let Some(awk) = awk_to {
        std::os::unix::fs::symlink(awk, dir.path().join("awk")).expect("symlink");
    }
    dir
}

/// `awk`: whether an awk answers (else the shell loop does).
fn session_over_path(argv: &[&str], many: bool, path: Option<&std::path::Path>, awk: bool) {
    // a tag no other process of the machine has in its command line
    static SESSIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let session = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = format!(
        "{}.{}{session}",
        7000 + std::process::id() % 1000,
        std::process::id(),
    );
    let first = Sleeper::start(&tag);
    // their command lines do not end with the tag (sessions 1 to 4: one digit); with
    // `many`, more of them than the shell reads with `read` (12), whatever else runs here
    let _more: Vec<Sleeper> = (0..if many { 13 } else { 0 })
        .map(|_| Sleeper::start(&format!("{tag}1")))
        .collect();
    let mut shell = Shell::start(argv, true, path);
    let own = format!("sleep {tag}");
    let w = if many {
        watch(&["sleep", "sh"])
    } else {
        watch(&[&own])
    };
    let mut state = RemoteState::default();
    let mut second: Option<Sleeper> = None;
    let mut seen_second_at = None;
    let polls = remote::FULL_EVERY + 5;
    for id in 0..polls {
        let request = state.request(id, &w);
        let text = shell.ask(id, &request);
        if id == 0 {
            let children = descendant_names(shell.child.id());
            assert_eq!(
                children.iter().any(|c| c == "awk"),
                awk,
                "{argv:?} with PATH {path:?}: the shell's children {children:?}"
            );
        }
        let parsed = state.parse(&text, &w).unwrap_or_else(|e| panic!("{e}: {text}"));
        let (readings, details) = state.complete(parsed, &w);
        assert!(
            value(&readings, Metric::DiskUsedPct, "/").is_some(),
            "{argv:?} poll {id} ({request:?}): disks are in every sample"
        );
        assert!(value(&readings, Metric::MemUsedPct, "").is_some());
        assert!(
            details.iter().all(|d| d.pid != shell.child.id()),
            "{argv:?}: the script's own shell is not a watched `sh`"
        );
        let own = descendant_names(shell.child.id());
        assert!(
            details
                .iter()
                .all(|d| !own.contains(&d.name.to_string()) || d.name.as_ref() == "sleep"),
            "{argv:?}: the script's own processes ({own:?}) are not watched: {details:?}"
        );
        let pids = sleeper_pids(&details, &tag);
        let want: Vec<u32> = [Some(first.0.id()), second.as_ref().map(|s| s.0.id())]
            .into_iter()
            .flatten()
            .collect();
        if id == 0 {
            assert_eq!(pids, want, "{argv:?}: the first sample reads every process");
            let d = details.iter().find(|d| d.pid == first.0.id()).expect("sleeper");
            assert_eq!(&*d.cmdline, format!("sleep {tag}"));
            assert_eq!(&*d.name, "sleep");
            assert!(d.rss_bytes > 0);
        }
        if id == 3 {
            // the request names the pids it knows are watched, and no new ones
            assert!(request.contains(&format!(" {}", first.0.id())), "{request}");
            assert!(!request.contains('d') && !request.contains('a'), "{request}");
            if many {
                assert!(request.contains(" = "), "{request}");
            }
            second = Some(Sleeper::start(&tag));
        }
        if let Some(s) = &second
            && seen_second_at.is_none()
            && pids.contains(&s.0.id())
        {
            seen_second_at = Some(id);
            assert_eq!(pids, want, "{argv:?} poll {id}");
        }
        if id == 8 {
            assert!(
                seen_second_at.is_some_and(|at| at <= 6),
                "{argv:?}: a new process is read within three polls: {seen_second_at:?}"
            );
            second = None;
        }
        if id == 9 {
            assert_eq!(pids, [first.0.id()], "{argv:?}: an exited process is gone");
        }
    }
}

#[test]
fn session_over_dash() {
    session_over(&["dash"], false);
    session_over(&["dash"], true);
}

#[test]
fn session_over_busybox_sh() {
    // Debian's busybox (scripts/test.sh installs it): its `sh` applet is ash, whose
    // builtins (read, printf, test, set) differ from dash's in the details this relies on.
    session_over(&["busybox", "sh"], false);
    session_over(&["busybox", "sh"], true);
}

#[test]
fn session_over_busybox_sh_and_awk() {
    // a busybox host: its ash runs the script and its awk answers
    let bin = host_bin(Some("/usr/bin/busybox"));
    session_over_path(&["busybox", "sh"], false, Some(bin.path()), true);
    session_over_path(&["busybox", "sh"], true, Some(bin.path()), true);
}

#[test]
fn session_over_other_awks() {
    // gawk ignores `-W interactive`; the one true awk refuses it, so the script's second
    // awk runs. Neither is installed by scripts/test.sh: each runs where it is there.
    for awk in ["/usr/bin/gawk", "/usr/bin/original-awk"] {
        if !std::path::Path::new(awk).exists() {
            eprintln!("{awk} is not installed: not tried");
            continue;
        }
        let bin = host_bin(Some(awk));
        session_over_path(&["dash"], true, Some(bin.path()), true);
    }
}

#[test]
fn session_over_a_shell_without_awk() {
    // the shell loop answers where the host has no awk
    let bin = host_bin(None);
    session_over_path(&["dash"], false, Some(bin.path()), false);
    session_over_path(&["dash"], true, Some(bin.path()), false);
    session_over_path(&["busybox", "sh"], true, Some(bin.path()), false);
}

#[test]
fn format_2_fixtures() {
    // A first (full) sample and a later one of a real session with dash (see the README
    // beside them): the later one has only the watched pids' stat and statm, no df.
    let w = watch(&["bash", "kthreadd"]);
    let full = fixture("debian12-v2-full.txt");
    let later = fixture("debian12-v2-later.txt");
    let parsed = remote::parse(&full, &w).expect("parses");
    assert!(parsed.disks_read);
    let names: Vec<&str> = parsed.processes.iter().map(|p| &*p.watch).collect();
    assert!(
        names.contains(&"bash") && names.contains(&"kthreadd"),
        "{names:?}"
    );
    // alone, the later sample has no command lines: only names match
    let alone = remote::parse(&later, &w).expect("parses");
    assert!(!alone.disks_read);
    assert!(value(&alone.readings, Metric::DiskUsedPct, "/").is_none());
    let mut state = RemoteState::default();
    let _ = state.request(1, &w);
    let parsed = state.parse(&full, &w).expect("parses");
    let (_, d1) = state.complete(parsed, &w);
    let _ = state.request(2, &w);
    let parsed = state.parse(&later, &w).expect("parses");
    let (r2, d2) = state.complete(parsed, &w);
    // the later sample keeps the command lines and disks of the first
    assert!(value(&r2, Metric::DiskUsedPct, "/").is_some());
    let cmdlines = |d: &[lookout::model::ProcessDetail]| {
        let mut c: Vec<(u32, String)> = d.iter().map(|p| (p.pid, p.cmdline.to_string())).collect();
        c.sort();
        c
    };
    assert_eq!(cmdlines(&d1), cmdlines(&d2));
    assert!(value(&r2, Metric::CpuUsage, "").is_some());
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
