//! One simulated Linux host: counters that advance with real time and the text it prints
//! in answer to lookout's remote command, in exactly the format of
//! [`collectors::remote`](crate::collectors::remote) (its markers and file list are used
//! here, not copied).
//!
//! The host has cores that are busy to a varying degree, memory that is used and freed,
//! disks that fill (and are cleaned up when nearly full), interfaces whose counters grow,
//! and processes: a fixed base (init, kernel threads, sshd, cron, nginx) plus workers that
//! come and go with fresh pids.

use std::fmt::Write as _;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::collectors::remote::{
    DF_MARKER, END_MARKER, FILES, FORMAT_VERSION, PIDS_MARKER, PROCS_MARKER, START_MARKER,
};

const CLK_TCK: u64 = 100;
const PAGE: u64 = 4096;
const KIB: u64 = 1024;
const GIB: u64 = 1 << 30;

/// How a simulated host behaves; the same for every host of a fleet.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Processes per host (at least the fixed base of about a dozen).
    pub processes: usize,
    /// How fast a disk fills at most, in bytes per second (each host draws its own rate).
    pub fill_bps: u64,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            processes: 40,
            fill_bps: 256 * KIB,
        }
    }
}

#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    ppid: u32,
    comm: &'static str,
    cmdline: String,
    state: char,
    /// Share of one core it uses on average.
    load: f64,
    ticks: f64,
    vsize: u64,
    rss_pages: u64,
    shared_pages: u64,
    start_ticks: u64,
    /// Workers come and go; the base processes stay.
    transient: bool,
}

#[derive(Debug, Clone)]
struct Disk {
    device: &'static str,
    mount: &'static str,
    fstype: &'static str,
    total_kb: u64,
    used: f64,
    fill_bps: f64,
}

#[derive(Debug, Clone, Copy)]
struct CoreTimes {
    user: f64,
    nice: f64,
    system: f64,
    idle: f64,
    iowait: f64,
    irq: f64,
    softirq: f64,
    steal: f64,
}

#[derive(Debug, Clone)]
struct Iface {
    name: &'static str,
    rx_bytes: f64,
    tx_bytes: f64,
    rx_bps: f64,
    tx_bps: f64,
    rx_errors: u64,
    rx_drops: u64,
}

/// The state of one simulated host.
#[derive(Debug)]
pub struct HostSim {
    rng: StdRng,
    last: Instant,
    uptime: f64,
    idle_total: f64,
    /// The host's usual busyness (share of all cores) and its current one.
    base_busy: f64,
    busy: f64,
    cores: Vec<CoreTimes>,
    mem_total_kb: u64,
    mem_used_share: f64,
    swap_total_kb: u64,
    disks: Vec<Disk>,
    ifaces: Vec<Iface>,
    procs: Vec<Proc>,
    next_pid: u32,
    target_procs: usize,
    ctxt: f64,
    intr: f64,
    forks: u64,
}

impl HostSim {
    /// A host whose sizes and habits are drawn from `seed` (the same seed, the same host).
    pub fn new(seed: u64, profile: &Profile) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let ncores = [1usize, 2, 2, 4, 4, 8, 16][rng.random_range(0..7)];
        let uptime = rng.random_range(3_600.0..200.0 * 86_400.0);
        let base_busy: f64 = rng.random_range(0.02..0.7);
        let cores = (0..ncores)
            .map(|_| {
                let t = uptime * CLK_TCK as f64;
                CoreTimes {
                    user: t * base_busy * 0.7,
                    nice: t * 0.001,
                    system: t * base_busy * 0.25,
                    idle: t * (1.0 - base_busy),
                    iowait: t * 0.01,
                    irq: 0.0,
                    softirq: t * base_busy * 0.02,
                    steal: 0.0,
                }
            })
            .collect();
        let mem_gib = [2u64, 4, 8, 16, 32, 64][rng.random_range(0..6)];
        let root_kb = [20u64, 50, 100, 250][rng.random_range(0..4)] * GIB / KIB;
        let var_kb = [50u64, 200, 500, 1000][rng.random_range(0..4)] * GIB / KIB;
        let fill = profile.fill_bps as f64;
        let mut disks = vec![
            Disk {
                device: "/dev/vda1",
                mount: "/",
                fstype: "ext4",
                total_kb: root_kb,
                used: root_kb as f64 * KIB as f64 * rng.random_range(0.2..0.8),
                fill_bps: fill * rng.random_range(0.0..0.2),
            },
            Disk {
                device: "/dev/vdb1",
                mount: "/var",
                fstype: "xfs",
                total_kb: var_kb,
                used: var_kb as f64 * KIB as f64 * rng.random_range(0.1..0.9),
                fill_bps: fill * rng.random_range(0.0..1.0),
            },
            Disk {
                device: "/dev/vda15",
                mount: "/boot/efi",
                fstype: "vfat",
                total_kb: 126_678,
                used: 6_174.0 * KIB as f64,
                fill_bps: 0.0,
            },
        ];
        if rng.random_bool(0.3) {
            disks.push(Disk {
                device: "/dev/vdc",
                mount: "/srv/data",
                fstype: "ext4",
                total_kb: 2_000 * GIB / KIB,
                used: 2_000.0 * GIB as f64 * rng.random_range(0.3..0.95),
                fill_bps: fill * rng.random_range(0.0..2.0),
            });
        }
        let scale = uptime;
        let eth_rx = rng.random_range(10e3..5e6);
        let eth_tx = eth_rx * rng.random_range(0.1..2.0);
        let ifaces = vec![
            Iface {
                name: "lo",
                rx_bytes: scale * 2_000.0,
                tx_bytes: scale * 2_000.0,
                rx_bps: 2_000.0,
                tx_bps: 2_000.0,
                rx_errors: 0,
                rx_drops: 0,
            },
            Iface {
                name: "eth0",
                rx_bytes: scale * eth_rx,
                tx_bytes: scale * eth_tx,
                rx_bps: eth_rx,
                tx_bps: eth_tx,
                rx_errors: rng.random_range(0..3),
                rx_drops: rng.random_range(0..50),
            },
        ];
        let mut sim = HostSim {
            rng,
            last: Instant::now(),
            uptime,
            idle_total: uptime * ncores as f64 * (1.0 - base_busy),
            base_busy,
            busy: base_busy,
            cores,
            mem_total_kb: mem_gib * GIB / KIB,
            mem_used_share: 0.0,
            swap_total_kb: if mem_gib <= 4 { 2 * GIB / KIB } else { 0 },
            disks,
            ifaces,
            procs: Vec::new(),
            next_pid: 0,
            target_procs: profile.processes.max(12),
            ctxt: uptime * 3_000.0,
            intr: uptime * 1_500.0,
            forks: 0,
        };
        sim.mem_used_share = sim.rng.random_range(0.2..0.85);
        sim.spawn_base();
        sim
    }

    fn start_ticks(&mut self) -> u64 {
        (self.uptime * CLK_TCK as f64) as u64
    }

    fn alloc_pid(&mut self) -> u32 {
        self.next_pid = if self.next_pid >= 4_194_000 {
            300
        } else {
            self.next_pid + self.rng.random_range(1..40)
        };
        self.forks += 1;
        self.next_pid
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        ppid: u32,
        comm: &'static str,
        cmdline: String,
        load: f64,
        rss_mb: u64,
        transient: bool,
    ) -> u32 {
        let pid = if comm == "systemd" && self.procs.is_empty() {
            1
        } else {
            self.alloc_pid()
        };
        let start = if transient {
            self.start_ticks()
        } else {
            50 + u64::from(pid)
        };
        let rss_pages = rss_mb * 256;
        self.procs.push(Proc {
            pid,
            ppid,
            comm,
            cmdline,
            state: 'S',
            load,
            ticks: if transient {
                0.0
            } else {
                load * self.uptime * CLK_TCK as f64
            },
            vsize: rss_pages * PAGE * 3 + (8 << 20),
            rss_pages,
            shared_pages: rss_pages / 4,
            start_ticks: start,
            transient,
        });
        pid
    }

    fn spawn_base(&mut self) {
        self.next_pid = 1;
        self.push(0, "systemd", "/sbin/init".into(), 0.001, 12, false);
        self.next_pid = 1;
        let kthreadd = self.alloc_pid();
        self.procs.push(Proc {
            pid: kthreadd,
            ppid: 0,
            comm: "kthreadd",
            cmdline: String::new(),
            state: 'S',
            load: 0.0,
            ticks: 0.0,
            vsize: 0,
            rss_pages: 0,
            shared_pages: 0,
            start_ticks: 24,
            transient: false,
        });
        for comm in [
            "ksoftirqd/0",
            "rcu_preempt",
            "kworker/0:1H",
            "jbd2/vda1-8",
            "kswapd0",
        ] {
            let pid = self.alloc_pid();
            self.procs.push(Proc {
                pid,
                ppid: kthreadd,
                comm,
                cmdline: String::new(),
                state: 'I',
                load: 0.0005,
                ticks: 0.0005 * self.uptime * CLK_TCK as f64,
                vsize: 0,
                rss_pages: 0,
                shared_pages: 0,
                start_ticks: 30,
                transient: false,
            });
        }
        self.next_pid = 400;
        self.push(
            1,
            "systemd-journal",
            "/lib/systemd/systemd-journald".into(),
            0.002,
            40,
            false,
        );
        self.push(
            1,
            "rsyslogd",
            "/usr/sbin/rsyslogd -n -iNONE".into(),
            0.001,
            6,
            false,
        );
        self.push(1, "cron", "/usr/sbin/cron -f".into(), 0.0001, 3, false);
        self.push(
            1,
            "sshd",
            "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups".into(),
            0.0005,
            8,
            false,
        );
        let master = self.push(
            1,
            "nginx",
            "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;".into(),
            0.0001,
            2,
            false,
        );
        for _ in 0..2 {
            self.push(master, "nginx", "nginx: worker process".into(), 0.02, 9, false);
        }
        self.next_pid = 2_000;
        while self.procs.len() < self.target_procs {
            self.spawn_worker();
        }
    }

    fn spawn_worker(&mut self) {
        let load = self.rng.random_range(0.0..0.3) * self.base_busy * 2.0;
        // workers share at most about half of the memory between them
        let mem_mb = self.mem_total_kb / 1024;
        let share = self.rng.random_range(0.05..1.0) / self.target_procs as f64;
        let rss = ((mem_mb as f64 * share) as u64).max(8);
        match self.rng.random_range(0..3) {
            0 => {
                let n = self.rng.random_range(1..9);
                self.push(
                    1,
                    "python3",
                    format!("python3\0/opt/app/worker.py\0--queue\0q{n}\0"),
                    load,
                    rss,
                    true,
                );
            }
            1 => {
                self.push(
                    1,
                    "java",
                    "java\0-Xmx512m\0-jar\0/opt/svc/svc.jar\0".into(),
                    load,
                    rss,
                    true,
                );
            }
            _ => {
                self.push(
                    1,
                    "postgres",
                    "postgres: app app 10.0.0.7(51234) idle\0".into(),
                    load / 2.0,
                    rss / 2,
                    true,
                );
            }
        }
    }

    /// Moves the host's clock to now: counters advance, disks fill, processes come and go.
    pub fn advance(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        if dt <= 0.0 {
            return;
        }
        self.uptime += dt;
        let r = &mut self.rng;
        self.busy =
            (self.busy + r.random_range(-0.05..0.05) + (self.base_busy - self.busy) * 0.1).clamp(0.0, 1.0);
        let ticks = dt * CLK_TCK as f64;
        for c in &mut self.cores {
            let b = (self.busy + r.random_range(-0.1..0.1)).clamp(0.0, 1.0);
            let io = r.random_range(0.0..0.02);
            c.user += ticks * b * 0.7;
            c.system += ticks * b * 0.25;
            c.softirq += ticks * b * 0.05;
            c.iowait += ticks * io;
            c.idle += ticks * (1.0 - b - io).max(0.0);
            self.idle_total += dt * (1.0 - b - io).max(0.0);
        }
        self.mem_used_share = (self.mem_used_share + r.random_range(-0.01..0.01)).clamp(0.05, 0.97);
        for d in &mut self.disks {
            let total = d.total_kb as f64 * KIB as f64;
            d.used += d.fill_bps * dt * r.random_range(0.5..1.5);
            if d.used > total * 0.97 {
                // log rotation, a cleanup job: back to somewhere comfortable
                d.used = total * r.random_range(0.4..0.7);
            }
        }
        for i in &mut self.ifaces {
            i.rx_bytes += i.rx_bps * dt * r.random_range(0.5..1.5);
            i.tx_bytes += i.tx_bps * dt * r.random_range(0.5..1.5);
            if i.name != "lo" && r.random_bool(0.01) {
                i.rx_drops += 1;
            }
        }
        self.ctxt += dt * 3_000.0 * self.cores.len() as f64;
        self.intr += dt * 1_500.0 * self.cores.len() as f64;
        for p in &mut self.procs {
            p.ticks += p.load * ticks * r.random_range(0.5..1.5);
            p.state = if r.random_bool(p.load.min(0.9)) { 'R' } else { 'S' };
        }
        // Workers come and go: on average one in ten is replaced every ~20 s.
        let churn = (dt / 20.0).min(1.0) * 0.1;
        let before = self.procs.len();
        let rng = &mut self.rng;
        self.procs.retain(|p| !p.transient || !rng.random_bool(churn));
        for _ in self.procs.len()..before {
            self.spawn_worker();
        }
    }

    /// The answer to one request line (of `RemoteState::request`: id, flags, cpu lines,
    /// watched pids, `+` new pids): a whole sample ending with the end marker of its id, as
    /// the script of `remote::script` prints it. `shell_pid` is the pid of the (simulated)
    /// `sh` running the command, `procs` whether the command has the process part.
    pub fn sample(&mut self, request: &str, shell_pid: u32, procs: bool, out: &mut String) {
        self.advance();
        let mut words = request.split_ascii_whitespace();
        let id = words.next().unwrap_or("");
        let flags = words.next().unwrap_or("");
        let cpu_lines: usize = words.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let (disks, full) = (flags.contains('d'), flags.contains('a'));
        let mut watched: Vec<u32> = Vec::new();
        let mut new: Vec<u32> = Vec::new();
        let mut after_plus = false;
        for w in words {
            match (w, w.parse::<u32>()) {
                ("+", _) => after_plus = true,
                (_, Ok(pid)) if after_plus => new.push(pid),
                (_, Ok(pid)) => watched.push(pid),
                _ => {}
            }
        }
        let _ = writeln!(
            out,
            "{START_MARKER} {FORMAT_VERSION} {shell_pid} {CLK_TCK} {PAGE} {id}"
        );
        for file in FILES.split_ascii_whitespace() {
            if file == "/proc/mounts" && !disks {
                continue;
            }
            let _ = writeln!(out, "==> {file} <==");
            let start = out.len();
            match file {
                "/proc/stat" => {
                    self.stat(out);
                    if cpu_lines > 0 {
                        truncate_lines(out, start, |i, _| i + 1 == cpu_lines);
                    }
                }
                "/proc/meminfo" => {
                    self.meminfo(out);
                    truncate_lines(out, start, |_, l| l.starts_with("SwapFree:"));
                }
                "/proc/loadavg" => self.loadavg(out),
                "/proc/uptime" => {
                    let _ = writeln!(out, "{:.2} {:.2}", self.uptime, self.idle_total);
                }
                "/proc/net/dev" => self.net_dev(out),
                "/proc/mounts" => self.mounts(out),
                _ => {}
            }
        }
        if disks {
            let _ = writeln!(out, "{DF_MARKER}");
            self.df(out);
        }
        if procs {
            if full {
                let _ = writeln!(out, "{PROCS_MARKER}");
                self.proc_listing(shell_pid, None, out);
                out.push('\n');
            } else {
                self.proc_listing(shell_pid, Some((&watched, &new)), out);
            }
        }
        let _ = writeln!(out, "{END_MARKER} {id}");
    }

    fn stat(&self, out: &mut String) {
        let line = |out: &mut String, name: &str, c: &CoreTimes| {
            let _ = writeln!(
                out,
                "{name} {} {} {} {} {} {} {} {} 0 0",
                c.user as u64,
                c.nice as u64,
                c.system as u64,
                c.idle as u64,
                c.iowait as u64,
                c.irq as u64,
                c.softirq as u64,
                c.steal as u64
            );
        };
        let mut total = CoreTimes {
            user: 0.0,
            nice: 0.0,
            system: 0.0,
            idle: 0.0,
            iowait: 0.0,
            irq: 0.0,
            softirq: 0.0,
            steal: 0.0,
        };
        for c in &self.cores {
            total.user += c.user.floor();
            total.nice += c.nice.floor();
            total.system += c.system.floor();
            total.idle += c.idle.floor();
            total.iowait += c.iowait.floor();
            total.irq += c.irq.floor();
            total.softirq += c.softirq.floor();
            total.steal += c.steal.floor();
        }
        line(out, "cpu ", &total);
        for (i, c) in self.cores.iter().enumerate() {
            line(out, &format!("cpu{i}"), c);
        }
        // A real intr line lists every interrupt number; 64 of them make it realistically long.
        let intr = self.intr as u64;
        let _ = write!(out, "intr {intr}");
        for i in 0..64u64 {
            let v = if i % 7 == 3 { intr / (i + 2) } else { 0 };
            let _ = write!(out, " {v}");
        }
        out.push('\n');
        let boot = 1_795_000_000u64.saturating_sub(self.uptime as u64);
        let running = self.procs.iter().filter(|p| p.state == 'R').count();
        let _ = writeln!(
            out,
            "ctxt {}\nbtime {boot}\nprocesses {}\nprocs_running {}\nprocs_blocked 0\nsoftirq {} 0 {} 4 {} {} 0 370 {} 0 {}",
            self.ctxt as u64,
            self.forks + 20_000,
            running + 1,
            intr / 2,
            intr / 10,
            intr / 100,
            intr / 10,
            intr / 12,
            intr / 5
        );
    }

    fn meminfo(&self, out: &mut String) {
        let total = self.mem_total_kb;
        let used = (total as f64 * self.mem_used_share) as u64;
        let available = total - used;
        let cached = available / 2;
        let free = available - cached;
        let swap_free = self.swap_total_kb - self.swap_total_kb / 10;
        for (k, v) in [
            ("MemTotal", total),
            ("MemFree", free),
            ("MemAvailable", available),
            ("Buffers", total / 200),
            ("Cached", cached),
            ("SwapCached", 0),
            ("Active", used / 2),
            ("Inactive", cached),
            ("Active(anon)", used / 3),
            ("Inactive(anon)", used / 10),
            ("Active(file)", used / 6),
            ("Inactive(file)", cached / 2),
            ("Unevictable", 15_372),
            ("Mlocked", 14_292),
            ("SwapTotal", self.swap_total_kb),
            ("SwapFree", swap_free),
            ("Dirty", 1_644),
            ("Writeback", 0),
            ("AnonPages", used / 2),
            ("Mapped", total / 60),
            ("Shmem", total / 300),
            ("KReclaimable", total / 120),
            ("Slab", total / 100),
            ("SReclaimable", total / 120),
            ("SUnreclaim", total / 700),
            ("KernelStack", 3_284),
            ("PageTables", total / 1_700),
            ("CommitLimit", total / 2 + self.swap_total_kb),
            ("Committed_AS", used + used / 3),
            ("VmallocTotal", 34_359_738_367),
            ("VmallocUsed", 16_060),
            ("Percpu", 664),
            ("AnonHugePages", 0),
            ("HugePages_Total", 0),
            ("HugePages_Free", 0),
            ("Hugepagesize", 2_048),
            ("DirectMap4k", 30_720),
            ("DirectMap2M", total / 12),
        ] {
            if k.starts_with("HugePages_") {
                let _ = writeln!(out, "{:<16}{v:>8}", format!("{k}:"));
            } else {
                let _ = writeln!(out, "{:<16}{v:>8} kB", format!("{k}:"));
            }
        }
    }

    fn loadavg(&self, out: &mut String) {
        let l = self.busy * self.cores.len() as f64;
        let running = self.procs.iter().filter(|p| p.state == 'R').count() + 1;
        let _ = writeln!(
            out,
            "{:.2} {:.2} {:.2} {running}/{} {}",
            l,
            (l + self.base_busy * self.cores.len() as f64) / 2.0,
            self.base_busy * self.cores.len() as f64,
            self.procs.len() + 40,
            self.next_pid
        );
    }

    fn net_dev(&self, out: &mut String) {
        out.push_str("Inter-|   Receive                                                |  Transmit\n");
        out.push_str(
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
        );
        for i in &self.ifaces {
            let (rx, tx) = (i.rx_bytes as u64, i.tx_bytes as u64);
            let _ = writeln!(
                out,
                "{:>6}: {rx:>8} {:>7} {:>4} {:>4}    0     0          0         0 {tx:>8} {:>7}    0    0    0     0       0          0",
                i.name,
                rx / 800,
                i.rx_errors,
                i.rx_drops,
                tx / 800
            );
        }
    }

    fn mounts(&self, out: &mut String) {
        out.push_str(
            "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n\
             proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n\
             udev /dev devtmpfs rw,nosuid,relatime,size=4010000k,nr_inodes=1002500,mode=755 0 0\n\
             devpts /dev/pts devpts rw,nosuid,noexec,relatime,gid=5,mode=620,ptmxmode=000 0 0\n\
             tmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,size=803000k,mode=755 0 0\n",
        );
        for d in &self.disks {
            let _ = writeln!(out, "{} {} {} rw,relatime 0 0", d.device, d.mount, d.fstype);
        }
        out.push_str(
            "tmpfs /dev/shm tmpfs rw,nosuid,nodev 0 0\n\
             cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n\
             tmpfs /run/user/0 tmpfs rw,nosuid,nodev,relatime,size=803000k,mode=700 0 0\n",
        );
    }

    fn df(&self, out: &mut String) {
        out.push_str("Filesystem     1024-blocks      Used Available Capacity Mounted on\n");
        let line = |out: &mut String, fs: &str, total: u64, used: u64, mount: &str| {
            // ext4 keeps 5% for root: "available" is what users may still write.
            let avail = (total.saturating_sub(used)).saturating_sub(total / 20);
            let cap = if used + avail > 0 {
                (used * 100).div_ceil(used + avail)
            } else {
                0
            };
            let _ = writeln!(out, "{fs:<14} {total:>11} {used:>9} {avail:>9} {cap:>7}% {mount}");
        };
        let mem = self.mem_total_kb;
        line(out, "udev", mem / 2, 0, "/dev");
        line(out, "tmpfs", mem / 10, 1_200, "/run");
        for d in &self.disks {
            line(out, d.device, d.total_kb, (d.used / KIB as f64) as u64, d.mount);
        }
        line(out, "tmpfs", mem / 2, 0, "/dev/shm");
        line(out, "tmpfs", mem / 10, 0, "/run/user/0");
    }

    /// What `head -n 1 /proc/[0-9]*/stat /proc/[0-9]*/statm /proc/[0-9]*/cmdline` prints:
    /// the globs sort pids as strings, cmdline holds NULs and no newline.
    /// The process part of a sample: every process's stat, statm and cmdline as one `head`
    /// prints them (`only` None), or the pid listing, then the `read` stat and statm of the
    /// watched pids and the `head` of the new ones (`only` Some((watched, new))).
    fn proc_listing(&mut self, shell_pid: u32, only: Option<(&[u32], &[u32])>, out: &mut String) {
        let sshd_session = shell_pid.saturating_sub(1);
        let now = self.start_ticks();
        let mut all: Vec<Proc> = self.procs.clone();
        all.push(Proc {
            pid: shell_pid,
            ppid: sshd_session,
            comm: "sh",
            cmdline: "sh\0-c\0exec 2>/dev/null; ...\0".into(),
            state: 'S',
            load: 0.0,
            ticks: 1.0,
            vsize: 2_654_208,
            rss_pages: 427,
            shared_pages: 395,
            start_ticks: now,
            transient: true,
        });
        all.push(Proc {
            pid: shell_pid + 1,
            ppid: shell_pid,
            comm: "head",
            cmdline: "head\0-n\x001\0".into(),
            state: 'R',
            load: 0.0,
            ticks: 0.0,
            vsize: 5_414_912,
            rss_pages: 220,
            shared_pages: 200,
            start_ticks: now,
            transient: true,
        });
        if let Some((watched, fresh)) = only {
            // the listing is globbed before any `head` starts
            if fresh.is_empty() {
                all.pop();
            }
            let mut names: Vec<String> = all
                .iter()
                .filter(|p| p.comm != "head")
                .map(|p| p.pid.to_string())
                .collect();
            names.sort();
            let _ = writeln!(out, "{PIDS_MARKER}\n{}\n{PROCS_MARKER}", names.join(" "));
            let find = |pid: u32| all.iter().find(|p| p.pid == pid);
            for p in watched.iter().filter_map(|&pid| find(pid)) {
                let _ = writeln!(out, "==> /proc/{}/stat <==", p.pid);
                Self::stat_line(p, out);
                let _ = writeln!(out, "==> /proc/{}/statm <==", p.pid);
                Self::statm_line(p, out);
            }
            let mut first = true;
            for p in fresh.iter().filter_map(|&pid| find(pid)) {
                for file in ["stat", "statm", "cmdline"] {
                    if !first {
                        out.push('\n');
                    }
                    first = false;
                    let _ = writeln!(out, "==> /proc/{}/{file} <==", p.pid);
                    match file {
                        "stat" => Self::stat_line(p, out),
                        "statm" => Self::statm_line(p, out),
                        _ => out.push_str(&p.cmdline),
                    }
                }
            }
            if !fresh.is_empty() {
                out.push('\n');
            }
            return;
        }
        let mut names: Vec<(String, usize)> = all
            .iter()
            .enumerate()
            .map(|(i, p)| (p.pid.to_string(), i))
            .collect();
        names.sort();
        let mut first = true;
        let mut header = |out: &mut String, pid: &str, file: &str| {
            if !first {
                out.push('\n');
            }
            first = false;
            let _ = writeln!(out, "==> /proc/{pid}/{file} <==");
        };
        for (name, i) in &names {
            let p = &all[*i];
            header(out, name, "stat");
            Self::stat_line(p, out);
        }
        for (name, i) in &names {
            header(out, name, "statm");
            Self::statm_line(&all[*i], out);
        }
        for (name, i) in &names {
            header(out, name, "cmdline");
            out.push_str(&all[*i].cmdline);
        }
        out.push('\n');
    }

    /// A process's /proc/PID/stat line.
    fn stat_line(p: &Proc, out: &mut String) {
        let t = p.ticks as u64;
        let _ = writeln!(
            out,
            "{} ({}) {} {} {} {} 0 -1 4194560 {} 0 {} 0 {} {} 0 0 20 0 1 0 {} {} {} 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0",
            p.pid,
            p.comm,
            p.state,
            p.ppid,
            p.pid,
            p.pid,
            t / 3,
            t / 50,
            t * 3 / 4,
            t - t * 3 / 4,
            p.start_ticks,
            p.vsize,
            p.rss_pages
        );
    }

    /// A process's /proc/PID/statm line.
    fn statm_line(p: &Proc, out: &mut String) {
        let _ = writeln!(
            out,
            "{} {} {} 19 0 {} 0",
            p.vsize / PAGE,
            p.rss_pages,
            p.shared_pages,
            p.rss_pages / 2
        );
    }
}

/// Cuts `out` after the first line (from `start`) for which `last(index, line)` holds, as
/// the script's `read` loop stops there.
fn truncate_lines(out: &mut String, start: usize, mut last: impl FnMut(usize, &str) -> bool) {
    let mut at = start;
    let mut i = 0;
    while let Some(n) = out[at..].find('\n') {
        let end = at + n + 1;
        if last(i, &out[at..end - 1]) {
            out.truncate(end);
            return;
        }
        at = end;
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::remote::{RemoteState, Watch, parse};
    use crate::model::Metric;
    use std::sync::Arc;

    fn value(r: &[crate::model::Reading], m: Metric, inst: &str) -> Option<f64> {
        r.iter()
            .find(|x| x.metric == m && &*x.instance == inst)
            .map(|x| x.value)
    }

    #[test]
    fn samples_parse_and_change() {
        let watch = Watch {
            processes: vec![Arc::from("nginx"), Arc::from("python3"), Arc::from("sh")],
            ..Watch::default()
        };
        let profile = Profile {
            processes: 60,
            fill_bps: 10 << 20,
        };
        let mut host = HostSim::new(7, &profile);
        let mut state = RemoteState::default();
        let mut text = String::new();
        host.sample("41 da 0", 90_001, true, &mut text);
        assert!(text.ends_with("@@end 41\n"), "{text}");
        let first = parse(&text, &watch).expect("parses");
        let (r1, _) = state.complete(first, &watch);
        std::thread::sleep(std::time::Duration::from_millis(120));
        text.clear();
        host.sample("42 da 0", 90_001, true, &mut text);
        let (r2, procs) = state.complete(parse(&text, &watch).expect("parses"), &watch);
        let cpu = value(&r2, Metric::CpuUsage, "").expect("cpu% after two samples");
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        assert!(value(&r2, Metric::MemUsedPct, "").is_some());
        assert!(value(&r2, Metric::Load1, "").is_some());
        for m in ["/", "/var", "/boot/efi"] {
            assert!(value(&r2, Metric::DiskUsedPct, m).is_some(), "{m}: {r2:?}");
        }
        assert!(
            value(&r2, Metric::DiskUsedPct, "/run").is_none(),
            "tmpfs is not a disk"
        );
        let rx1 = value(&r1, Metric::NetRxBytes, "eth0").expect("eth0");
        let rx2 = value(&r2, Metric::NetRxBytes, "eth0").expect("eth0");
        assert!(rx2 > rx1, "{rx1} {rx2}");
        assert!(value(&r2, Metric::NetRxBytes, "lo").is_none());
        assert_eq!(value(&r2, Metric::ProcCount, "nginx"), Some(3.0));
        // the sampling shell and its head are left out, as on a real host
        assert_eq!(value(&r2, Metric::ProcCount, "sh"), Some(0.0));
        assert!(
            procs
                .iter()
                .any(|p| &*p.watch == "python3" || &*p.name == "nginx")
        );
    }

    #[test]
    fn workers_come_and_go_and_disks_fill() {
        let profile = Profile {
            processes: 50,
            fill_bps: 1 << 30,
        };
        let mut host = HostSim::new(3, &profile);
        let pids: Vec<u32> = host.procs.iter().map(|p| p.pid).collect();
        let used: Vec<f64> = host.disks.iter().map(|d| d.used).collect();
        for _ in 0..5 {
            host.last -= std::time::Duration::from_secs(60);
            host.advance();
        }
        let now: Vec<u32> = host.procs.iter().map(|p| p.pid).collect();
        assert_eq!(now.len(), pids.len());
        assert!(now.iter().any(|p| !pids.contains(p)), "some worker was replaced");
        assert!(host.disks.iter().zip(&used).any(|(d, u)| d.used != *u));
    }
}
