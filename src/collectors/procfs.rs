//! Pure parsers for Linux /proc text shared by the local and remote collectors.
//! They never panic: malformed lines are skipped.

/// Jiffies a CPU spent in each state (one `cpu` line of /proc/stat).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    pub fn total(&self) -> u64 {
        self.user
            .saturating_add(self.nice)
            .saturating_add(self.system)
            .saturating_add(self.idle)
            .saturating_add(self.iowait)
            .saturating_add(self.irq)
            .saturating_add(self.softirq)
            .saturating_add(self.steal)
    }
    fn idle_all(&self) -> u64 {
        self.idle.saturating_add(self.iowait)
    }
}

/// Busy and iowait percentages between two readings of the same CPU; `None` when the
/// counters did not advance (or went backwards: a reboot).
pub fn cpu_percent(prev: &CpuTimes, cur: &CpuTimes) -> Option<(f64, f64)> {
    let total = cur.total().checked_sub(prev.total())?;
    if total == 0 {
        return None;
    }
    let idle = cur.idle_all().saturating_sub(prev.idle_all());
    let iowait = cur.iowait.saturating_sub(prev.iowait);
    let t = total as f64;
    let busy = (t - idle as f64).max(0.0) / t * 100.0;
    Some((
        busy.clamp(0.0, 100.0),
        (iowait as f64 / t * 100.0).clamp(0.0, 100.0),
    ))
}

/// The first `N` leading numeric fields (fewer when a field is not a number or the line
/// ends: the count says how many), without allocating: these parsers run for every sample of
/// every host.
fn leading_numbers<'a, const N: usize>(fields: impl Iterator<Item = &'a str>) -> (usize, [u64; N]) {
    let mut out = [0u64; N];
    let mut n = 0;
    for f in fields.take(N) {
        let Ok(v) = f.parse() else { break };
        out[n] = v;
        n += 1;
    }
    (n, out)
}

/// The `cpu` (total) line and the `cpuN` lines of /proc/stat, in order.
pub fn parse_stat_cpus(text: &str) -> (Option<CpuTimes>, Vec<(u32, CpuTimes)>) {
    let mut total = None;
    let mut cores = Vec::with_capacity(16);
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(label) = fields.next() else { continue };
        let Some(rest) = label.strip_prefix("cpu") else {
            continue;
        };
        let (n, nums) = leading_numbers::<8>(fields);
        if n < 4 {
            continue;
        }
        let at = |i: usize| nums[i];
        let t = CpuTimes {
            user: at(0),
            nice: at(1),
            system: at(2),
            idle: at(3),
            iowait: at(4),
            irq: at(5),
            softirq: at(6),
            steal: at(7),
        };
        if rest.is_empty() {
            total = Some(t);
        } else if let Ok(n) = rest.parse::<u32>() {
            cores.push((n, t));
        }
    }
    (total, cores)
}

/// One interface of /proc/net/dev.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetDev {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_drops: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_drops: u64,
}

impl NetDev {
    /// The eight counters of this interface as catalogue readings.
    pub fn push_readings(&self, instance: &std::sync::Arc<str>, out: &mut Vec<crate::model::Reading>) {
        use crate::model::{Metric, Reading};
        for (metric, value) in [
            (Metric::NetRxBytes, self.rx_bytes),
            (Metric::NetTxBytes, self.tx_bytes),
            (Metric::NetRxPackets, self.rx_packets),
            (Metric::NetTxPackets, self.tx_packets),
            (Metric::NetRxErrors, self.rx_errors),
            (Metric::NetTxErrors, self.tx_errors),
            (Metric::NetRxDrops, self.rx_drops),
            (Metric::NetTxDrops, self.tx_drops),
        ] {
            out.push(Reading::new(metric, instance.clone(), value as f64));
        }
    }
}

/// Parses /proc/net/dev (the two header lines are skipped by shape, not by position).
pub fn parse_net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            if name.is_empty() || name.contains('|') {
                return None;
            }
            let (count, n) = leading_numbers::<16>(rest.split_ascii_whitespace());
            if count < 16 {
                return None;
            }
            Some(NetDev {
                name: crate::model::sanitize(name),
                rx_bytes: n[0],
                rx_packets: n[1],
                rx_errors: n[2],
                rx_drops: n[3],
                tx_bytes: n[8],
                tx_packets: n[9],
                tx_errors: n[10],
                tx_drops: n[11],
            })
        })
        .collect()
}

/// The command name of a /proc/PID/stat line and the fields after it: the name is in
/// parentheses and may hold any character, `)` too, so it ends at the line's last `)`.
/// (memchr: a reverse substring search over every process of every sample was a fiftieth
/// of lookout's CPU at 1,000 hosts.)
pub fn stat_name(stat: &str) -> Option<(&str, &str)> {
    let open = memchr::memchr(b'(', stat.as_bytes())?;
    let close = memchr::memrchr(b')', stat.as_bytes())?;
    if close <= open {
        return None;
    }
    let rest = stat[close + 1..].strip_prefix(' ')?;
    Some((&stat[open + 1..close], rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names_with_parentheses_and_spaces() {
        assert_eq!(stat_name("12 (nginx) S 1 12"), Some(("nginx", "S 1 12")));
        assert_eq!(stat_name("7 (a) b) (c)) R 1"), Some(("a) b) (c)", "R 1")));
        assert_eq!(stat_name("7 (x y) S"), Some(("x y", "S")));
        assert_eq!(stat_name("7 )oops( S"), None);
        assert_eq!(stat_name("7 (trunc"), None);
        assert_eq!(stat_name("7 (x)"), None);
    }

    #[test]
    fn cpu_lines() {
        let text = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0\ncpu1 50 0 50 350 50 0 0 0\nintr 1 2\n";
        let (total, cores) = parse_stat_cpus(text);
        let total = total.expect("total");
        assert_eq!(total.total(), 1000);
        assert_eq!(cores.len(), 2);
        let later = CpuTimes {
            user: 300,
            idle: 1400,
            iowait: 200,
            ..total
        };
        let (busy, iowait) = cpu_percent(&total, &later).expect("advanced");
        // 1000 more jiffies: 200 user, 700 idle, 100 iowait
        assert!((busy - 20.0).abs() < 1e-9, "{busy}");
        assert!((iowait - 10.0).abs() < 1e-9);
        assert_eq!(cpu_percent(&later, &total), None);
    }

    #[test]
    fn net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\n  eth0: 18446744073709551615 10 1 2 0 0 0 0 500 5 3 4 0 0 0 0\n";
        let devs = parse_net_dev(text);
        assert_eq!(devs.len(), 2);
        assert_eq!(devs[1].name, "eth0");
        assert_eq!(devs[1].rx_bytes, u64::MAX);
        assert_eq!(
            (
                devs[1].rx_errors,
                devs[1].rx_drops,
                devs[1].tx_errors,
                devs[1].tx_drops
            ),
            (1, 2, 3, 4)
        );
    }
}
