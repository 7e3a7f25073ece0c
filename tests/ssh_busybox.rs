//! A host whose `sh` is busybox, polled over a real sshd: the remote command (`exec sh -c
//! '...'`) must work with busybox's ash as it does with dash.
//!
//! How busybox gets to run it: the test sshd's `SetEnv PATH=DIR:/usr/bin:/bin` puts a
//! directory first whose `sh` and `awk` are symlinks to /usr/bin/busybox, so the login
//! shell's `exec sh` starts busybox (as `sh`, its ash applet) and the script finds busybox's
//! awk. The test checks that it really did: among the sshd's descendants, the processes
//! running the script have /usr/bin/busybox as their executable, one of them as `awk`.

mod common;

use std::time::Duration;

use common::sshd::*;
use lookout::model::{HostStatus, Metric};

/// Kills the `sleep` it started when dropped.
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_sh_host_is_polled() {
    if !can_run() {
        return;
    }
    let busybox = std::path::Path::new("/usr/bin/busybox");
    assert!(
        busybox.exists() || std::path::Path::new("/bin/busybox").exists(),
        "busybox is not installed: apt-get install -y busybox"
    );
    let busybox = if busybox.exists() {
        busybox.to_path_buf()
    } else {
        "/bin/busybox".into()
    };
    let dir = tempfile::tempdir().expect("tmp");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    // a busybox host: its sh and its awk
    std::os::unix::fs::symlink(&busybox, bin.join("sh")).expect("symlink");
    std::os::unix::fs::symlink(&busybox, bin.join("awk")).expect("symlink");
    let key = keygen(dir.path(), "id_ed25519", "");
    let known_hosts = dir.path().join("known_hosts");
    let sshd = Sshd::start_with(
        &[public_key(&key)],
        &format!("SetEnv SHLVL=5 PATH={}:/usr/bin:/bin", bin.display()),
    );
    std::fs::write(&known_hosts, sshd.known_hosts_line() + "\n").expect("known_hosts");
    std::fs::write(
        dir.path().join("ssh_config"),
        format!(
            "Host bb\n  HostName {}\n  Port {}\n  User root\n",
            sshd.addr, sshd.port
        ),
    )
    .expect("ssh_config");
    // a process of its own to watch, found by its command line
    let tag = format!("{}.{}", 8000 + std::process::id() % 1000, std::process::id());
    let sleeper = Sleeper(
        std::process::Command::new("sleep")
            .arg(&tag)
            .spawn()
            .expect("sleep"),
    );
    let config = parse_config(
        &(config_text(
            dir.path(),
            &key,
            &known_hosts,
            "strict",
            "",
            "[[hosts]]\nnames = [\"bb\"]\n",
        ) + "[[watch.processes]]\nhosts = [\"bb\"]\nnames = [\"sleep\", \"sshd\"]\n"),
    );
    let running = lookout::runtime::start(config);
    let mut rx = running.snapshots.clone();
    // more polls than DF_EVERY: samples with and without df
    let polls = lookout::collectors::remote::DF_EVERY + 3;
    let snap = wait_for(&mut rx, Duration::from_secs(30), "rounds", |s| {
        host(s, "bb").rounds >= polls
    })
    .await;

    // the script runs under busybox: its shell, and the awk answering the requests
    let script: Vec<(String, String)> = sshd
        .processes()
        .iter()
        .filter_map(|p| {
            let cmdline =
                String::from_utf8_lossy(&std::fs::read(format!("/proc/{p}/cmdline")).ok()?).into_owned();
            let exe = std::fs::read_link(format!("/proc/{p}/exe")).ok()?;
            cmdline
                .contains("@@lookout")
                .then(|| (cmdline, exe.display().to_string()))
        })
        .collect();
    assert!(
        !script.is_empty() && script.iter().all(|(_, exe)| exe.ends_with("busybox")),
        "the script's processes: {script:?}"
    );
    assert!(
        script.iter().any(|(cmdline, _)| cmdline.starts_with("awk\0")),
        "busybox's awk answers: {script:?}"
    );

    let h = host(&snap, "bb");
    assert_eq!(h.status, HostStatus::Up, "{:?}", h.error);
    assert!(h.value(Metric::CpuUsage, "").is_some());
    assert!(h.value(Metric::MemUsedPct, "").is_some());
    assert!(h.value(Metric::DiskUsedPct, "/").is_some());
    assert!(h.value(Metric::ProcCount, "sshd").expect("sshd count") >= 1.0);
    let mine: Vec<_> = h.processes.iter().filter(|p| p.cmdline.ends_with(&tag)).collect();
    assert_eq!(mine.len(), 1, "{:?}", h.processes);
    assert_eq!(mine[0].pid, sleeper.0.id());
    assert_eq!(&*mine[0].cmdline, format!("sleep {tag}"));
    assert!(mine[0].rss_bytes > 0);
    // the script's own busybox shell is not a watched process
    assert!(h.processes.iter().all(|p| !p.cmdline.contains("@@lookout")));
    // disks stay in every sample, also those without df
    for _ in 0..3 {
        let s = wait_for(&mut rx, Duration::from_secs(5), "a round", |s| {
            host(s, "bb").rounds > h.rounds
        })
        .await;
        assert!(host(&s, "bb").value(Metric::DiskUsedPct, "/").is_some());
    }
    drop(running);
}
