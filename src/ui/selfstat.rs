//! lookout's own CPU and memory use for the status bar, read cheaply from /proc/self (two
//! small reads, about once a second).

use std::time::Instant;

/// CPU % of one core and resident memory, as the status bar shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SelfUsage {
    pub cpu_pct: f64,
    pub rss_bytes: u64,
}

/// Keeps the previous CPU reading to turn the counter into a percentage.
pub struct SelfStat {
    last: Option<(Instant, u64)>,
    ticks_per_sec: f64,
    page_size: u64,
    buf: String,
}

impl Default for SelfStat {
    fn default() -> Self {
        SelfStat {
            last: None,
            ticks_per_sec: rustix::param::clock_ticks_per_second() as f64,
            page_size: rustix::param::page_size() as u64,
            buf: String::with_capacity(512),
        }
    }
}

impl SelfStat {
    /// Reads /proc/self; None where there is no /proc.
    pub fn sample(&mut self) -> Option<SelfUsage> {
        use std::io::Read;
        self.buf.clear();
        std::fs::File::open("/proc/self/stat")
            .ok()?
            .read_to_string(&mut self.buf)
            .ok()?;
        let ticks = parse_stat_ticks(&self.buf)?;
        self.buf.clear();
        std::fs::File::open("/proc/self/statm")
            .ok()?
            .read_to_string(&mut self.buf)
            .ok()?;
        let rss_pages: u64 = self.buf.split_whitespace().nth(1)?.parse().ok()?;
        let now = Instant::now();
        let cpu_pct = match self.last {
            Some((t, prev)) => {
                let dt = now.duration_since(t).as_secs_f64();
                if dt > 0.0 {
                    ticks.saturating_sub(prev) as f64 / self.ticks_per_sec / dt * 100.0
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, ticks));
        Some(SelfUsage {
            cpu_pct,
            rss_bytes: rss_pages * self.page_size,
        })
    }
}

/// utime + stime from the text of /proc/PID/stat (fields 14 and 15, counted after the
/// parenthesised command name, which may itself hold spaces and parentheses).
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = crate::collectors::procfs::stat_name(stat)?;
    let mut fields = rest.split_whitespace();
    // After ")": state is field 3, so utime (14) is the 12th field here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let stat = "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 500 0 0 0 17 5 0 0 20 0 3 0 100 1000 200";
        assert_eq!(parse_stat_ticks(stat), Some(22));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let mut s = SelfStat::default();
        let u = s.sample().expect("/proc/self is readable");
        assert!(u.rss_bytes > 0);
    }
}
