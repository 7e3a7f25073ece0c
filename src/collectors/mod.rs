//! Collectors measure hosts and send [`Update`](crate::model::Update)s to the engine; they
//! never touch the UI or the triggers. Errors become host status, never a crash.

pub mod checks;
pub mod local;
pub mod ping;
pub mod procfs;
pub mod prometheus;
pub mod remote;
pub mod ssh;

/// Whether a process is one of a watched name: its name is the watched name, or its
/// `argv[0]` is (by basename, or as a daemon title such as `sshd: alice`), or — for a watched
/// name holding a space or a slash — its command line contains it.
pub fn process_matches(watch: &str, name: &str, cmdline: &str) -> bool {
    if name == watch {
        return true;
    }
    let argv0 = cmdline.split_ascii_whitespace().next().unwrap_or("");
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    if base == watch || base.strip_prefix(watch).is_some_and(|rest| rest.starts_with(':')) {
        return true;
    }
    (watch.contains(' ') || watch.contains('/')) && cmdline.contains(watch)
}

/// How many readings [`push_process_totals`] adds per watched name.
pub const PROCESS_TOTALS: usize = 6;

/// The per-name totals of the watched processes (count, cpu %, mem %, rss, vms, shared)
/// from their per-process detail: the same aggregation for local and remote hosts.
pub fn push_process_totals(
    watch: &std::sync::Arc<str>,
    details: &[crate::model::ProcessDetail],
    mem_total_bytes: u64,
    out: &mut Vec<crate::model::Reading>,
) {
    use crate::model::{Metric, Reading};
    let (mut count, mut cpu, mut rss, mut vms, mut shared) = (0u64, 0.0f64, 0u64, 0u64, 0u64);
    for d in details.iter().filter(|d| d.watch == *watch) {
        count += 1;
        cpu += d.cpu_pct;
        rss = rss.saturating_add(d.rss_bytes);
        vms = vms.saturating_add(d.vms_bytes);
        shared = shared.saturating_add(d.shared_bytes);
    }
    let mem = if mem_total_bytes > 0 {
        rss as f64 / mem_total_bytes as f64 * 100.0
    } else {
        0.0
    };
    let totals: [(Metric, f64); PROCESS_TOTALS] = [
        (Metric::ProcCount, count as f64),
        (Metric::ProcCpu, cpu),
        (Metric::ProcMem, mem),
        (Metric::ProcRss, rss as f64),
        (Metric::ProcVms, vms as f64),
        (Metric::ProcShared, shared as f64),
    ];
    for (metric, value) in totals {
        out.push(Reading::new(metric, watch.clone(), value));
    }
}

/// Whether an interface is reported: the watched ones, or every non-loopback one when the
/// host watches none.
pub fn wants_interface(watched: &[String], name: &str) -> bool {
    if watched.is_empty() {
        name != "lo"
    } else {
        watched.iter().any(|w| w == name)
    }
}

/// Pseudo filesystems that are never "real" disks.
pub const PSEUDO_FILESYSTEMS: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "tmpfs",
    "cgroup",
    "cgroup2",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "autofs",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "binfmt_misc",
    "nsfs",
    "ramfs",
    "squashfs",
    "efivarfs",
    "rpc_pipefs",
    "nfsd",
    "overlay",
    "selinuxfs",
    "fuse.gvfsd-fuse",
    "fuse.portal",
    "fuse.lxcfs",
];

/// Whether a mount counts as a real filesystem for the default disk list (`/` always does).
pub fn is_real_filesystem(mount: &str, fstype: &str) -> bool {
    mount == "/" || !PSEUDO_FILESYSTEMS.contains(&fstype)
}

#[cfg(test)]
mod tests {
    use super::process_matches;

    #[test]
    fn matching() {
        assert!(process_matches("sshd", "sshd", "/usr/sbin/sshd -D"));
        assert!(process_matches("sshd", "sshd", "sshd: root@pts/0"));
        assert!(process_matches("myapp", "sleep", "myapp 100"));
        assert!(process_matches("sshd", "sshd-session", "sshd: alice [priv]"));
        assert!(!process_matches("sshd", "grep", "grep sshd"));
        assert!(process_matches(
            "/opt/app/run",
            "python3",
            "python3 /opt/app/run --x"
        ));
    }
}
