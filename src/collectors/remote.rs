//! What lookout runs on a remote host, and the pure parser that turns its output into the
//! same catalogue readings the local collector emits.
//!
//! # The remote command
//!
//! [`command`] is one POSIX `sh` script started once per SSH session. It reads a request
//! line on stdin (a request id, then what to read: [`script`] says how it is made up and
//! [`RemoteState::request`] makes it) and answers each line with one *sample* tagged with
//! that id; it exits at end of input. The collector
//! either keeps it running and writes a request every interval (streaming, the default), or
//! starts it per poll with a single request followed by EOF (exec per poll); both modes see
//! exactly the same output, and the script keeps no state between requests (the jump host
//! does). Everything printed on stderr is discarded.
//!
//! What a sample costs the host is processes started (`df`, `head`) and system calls: where
//! the host has an awk (any POSIX awk: mawk, gawk, busybox's, the one true awk), a single
//! awk started with the session answers every request and reads each file with one
//! `read`; on a host without awk, shell builtins do (the shell's `read` takes one system
//! call per byte, 95% of that loop's calls). Either way the script asks for `df` every
//! [`DF_EVERY`] polls only (the
//! last disk readings are repeated in between), and reads a process's command line once,
//! when its pid is in a second listing (keyed by pid and start time, all processes again every
//! [`FULL_EVERY`] polls); on other polls it reads only the watched pids' stat and statm.
//!
//! # The sample format (a contract: the fleet simulator emulates it)
//!
//! ```text
//! @@lookout 2 <shell pid> <CLK_TCK> <PAGESIZE> <request id>
//! ==> /proc/stat <==
//! ...the file (its cpu lines, unless asked for all)...
//! ==> /proc/meminfo <==
//! ...the file, up to SwapFree...
//! (then /proc/loadavg, /proc/uptime, /proc/net/dev the same way)
//! ==> /proc/mounts <==         (mounts and df only when the request has flag `d`)
//! ...
//! @@df
//! ...the output of `df -P -k`...
//! @@pids                       (only when processes are watched, and not read in full:
//! 1 2 17 ...                    the host's pids, one line)
//! @@procs                       (only when processes are watched on this host)
//! ==> /proc/<pid>/stat <==      (first line of /proc/<pid>/stat and statm of the watched
//! ==> /proc/<pid>/statm <==      pids; then, as one `head` prints them, stat, statm and
//! ...                            cmdline (NUL-separated) of the new pids; or with flag
//!                                `a` of every process: all stat, all statm, all cmdline)
//! @@end <request id>
//! ```
//!
//! Format 1 (still parsed: the fixtures hold it) had every file every time, read by one
//! `head` (whose `==> FILE <==` headers format 2 keeps), and every process in full.
//! Section order does not matter to the parser, unknown sections are
//! ignored, and empty lines are insignificant. A line `@@end <request id>` ends a sample: the
//! reader waits for the id it asked for, so output that merely looks like an end marker (a
//! process command line holding `@@end`) cannot shift later samples.
//! `<shell pid>` lets the parser leave the script's own processes (the shell and its
//! children) out of the watched processes, as the local collector leaves itself out.
//!
//! # Parsing
//!
//! [`parse`] is pure and never panics on any input: it needs the `@@lookout` line and
//! /proc/stat (anything else missing only drops the metrics it would give). Percentages that
//! need two samples (cpu, per-process cpu) come from [`RemoteState`], which keeps the
//! previous counters of one host. Every string taken from the output (interface, mount and
//! process names, command lines) goes through [`sanitize`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::procfs::{self, CpuTimes};
use crate::model::{Interner, Metric, ProcessDetail, Reading, sanitize};

/// Version of the sample format in the `@@lookout` line.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest format [`parse`] still reads (1: every file of every process in each sample,
/// always with `df`).
pub const OLDEST_FORMAT: u32 = 1;

/// The line that ends one sample.
pub const END_MARKER: &str = "@@end";

/// The line that starts one sample (followed by version, shell pid, CLK_TCK, PAGESIZE, id).
pub const START_MARKER: &str = "@@lookout";

/// The section holding the output of `df -P -k`.
pub const DF_MARKER: &str = "@@df";

/// The section holding the watched processes' /proc files.
pub const PROCS_MARKER: &str = "@@procs";

/// The section listing the host's pids (the entries of /proc), one line.
pub const PIDS_MARKER: &str = "@@pids";

/// The /proc files of the format-1 script (read by `head` in every sample, in this order);
/// the fleet simulator prints them in this order too.
pub const FILES: &str = "/proc/stat /proc/meminfo /proc/loadavg /proc/uptime /proc/net/dev /proc/mounts";

/// Every how many polls a sample carries `df` and /proc/mounts: disk usage moves slowly,
/// and `df` is a process started on the host (most of a sample's cost there).
pub const DF_EVERY: u64 = 10;

/// Every how many polls the watched host reads every process's files again, so a process
/// that exec'd another program or a pid reused between two listings is seen within this
/// many polls (otherwise a pid's command line is read once, when it is in a second listing).
pub const FULL_EVERY: u64 = 30;

/// The shell script (without the outer `sh -c` quoting) answering each stdin line with a
/// sample. It contains no single quote, so it can be wrapped in single quotes as is.
///
/// A request line is `ID FLAGS CPU_LINES READ... [+ NEW...] [= HEAD...]` (see
/// [`RemoteState::request`]);
/// a line holding only `ID` asks for the host's files without disks or processes.
/// One awk answers every request where the host has awk (reading each file with one
/// system call), else shell builtins (`read` loops); either way the sample is gathered in
/// one variable, so it costs the host no process at all on most polls (only `df` and the
/// per-process `head` are started) and reaches sshd in one write.
/// - FLAGS: `d` adds /proc/mounts and `df -P -k`; `a` reads the stat, statm and cmdline
///   of every process (with one `head`) instead of the lists that follow; `-` neither.
/// - CPU_LINES: how many lines of /proc/stat to read (its cpu lines; 0 for all): the line
///   after them (interrupt counts) is most of the file.
/// - READ: pids whose stat and statm are read with `read`; NEW: pids whose stat, statm
///   and cmdline are read with one `head` (command lines hold NULs, which `read` drops);
///   HEAD: pids whose stat and statm are read by that `head` in the shell loop (whose
///   `read` takes a system call per byte, so it is cheaper than starting `head` for a few
///   pids only); awk reads them itself.
pub fn script(watch_processes: bool) -> String {
    // Where the host has an awk, it answers: awk reads a file with one system call where the
    // shell's `read` takes one per byte (95% of the shell loop's system calls). `-W
    // interactive` makes mawk read its requests line by line instead of waiting for 4 KiB;
    // the other awks ignore it or refuse it (then the second awk runs, without it). The shell loop
    // stays for hosts without awk.
    let awk = escape_for_double_quotes(&awk_program(watch_processes));
    let vars = "-v P=$$ -v T=${t:-100} -v G=${p:-4096}";
    // (only a refusal, status 2, runs the second: an awk killed mid-session ends it)
    let run_awk =
        format!("{{ awk -W interactive {vars} \"$a\" || {{ [ $? -eq 2 ] && awk {vars} \"$a\"; }}; }}");
    // With processes watched, a shell in front lists the pids (a glob: awk cannot list a
    // directory) and passes each request on with the listing after an `@`.
    let front = if watch_processes {
        format!(
            "while IFS= read -r r; do set -- [0-9]*; printf \"%s @ %s\\n\" \"$r\" \"$*\"; done | {run_awk}"
        )
    } else {
        run_awk
    };
    format!(
        "exec 2>/dev/null; t=$(getconf CLK_TCK); p=$(getconf PAGESIZE); cd /proc; \
         if command -v awk >/dev/null; then a=\"{awk}\"; {front}; else {shell}; fi",
        shell = shell_loop(watch_processes)
    )
}

/// `text` made safe inside a double-quoted shell word. The awk program holds no backslash
/// (fish, as a login shell, turns `\\` into `\` even inside single quotes).
fn escape_for_double_quotes(text: &str) -> String {
    debug_assert!(!text.contains('\\') && !text.contains('`') && !text.contains('\''));
    text.replace('"', "\\\"").replace('$', "\\$")
}

/// The awk program answering requests, with the shell loop's output byte for byte. A
/// request's fields: ID FLAGS CPU_LINES READ... [+ NEW...] [= HEAD...] [@ PIDS...] (the
/// listing added by the shell in front). `df` and the command lines of new pids (which hold
/// NULs that busybox's awk drops) still come from `df` and `head` (given each new pid's
/// stat and statm too, so it always has several files and prints their names); every other
/// file is read by awk itself, so pids after `=` are read like those before `+`.
/// POSIX awk only, no backslash (see [`escape_for_double_quotes`]) and no `!`.
fn awk_program(watch_processes: bool) -> String {
    let procs = if watch_processes {
        format!(
            "if (f ~ /a/) {{ out(s \"{PROCS_MARKER}\" e); \
             system(\"exec head -n 1 /proc/[0-9]*/stat /proc/[0-9]*/statm /proc/[0-9]*/cmdline\"); s = e }} \
             else {{ m = 0; l = \"\"; q = \"\"; x = \"\"; \
             i = index($0, \"@ \"); if (i) l = substr($0, i + 2); \
             for (i = k; i <= NF; i++) {{ \
             if ($i == \"@\") break; if ($i == \"+\") m = 1; else if ($i == \"=\") m = 2; \
             else if (m == 1) x = x \" /proc/\" $i \"/stat /proc/\" $i \"/statm /proc/\" $i \"/cmdline\"; \
             else if (one(\"/proc/\" $i \"/stat\")) one(\"/proc/\" $i \"/statm\") }} \
             s = s \"{PIDS_MARKER}\" e l e \"{PROCS_MARKER}\" e q; \
             if (length(x)) {{ out(s); system(\"exec head -n 1\" x); s = e }} }} "
        )
    } else {
        String::new()
    };
    format!(
        "function rd(f, n,   l, i) {{ s = s \"==> \" f \" <==\" e; i = 0; \
         while ((getline l < f) > 0) {{ s = s l e; if (++i == n) break }} close(f) }} \
         function one(f,   l, r) {{ r = (getline l < f) > 0; close(f); \
         if (r) q = q \"==> \" f \" <==\" e l e; return r }} \
         function out(t) {{ printf \"%s\", t; fflush(); s = \"\" }} \
         BEGIN {{ e = sprintf(\"%c\", 10) }} \
         {{ n = $1; f = $2; c = $3; k = 4; \
         if (f == \"@\") {{ f = \"\"; c = 0; k = 2 }} else if (c == \"@\") {{ c = 0; k = 3 }} \
         s = \"{START_MARKER} {FORMAT_VERSION} \" P \" \" T \" \" G \" \" n e; \
         rd(\"/proc/stat\", c + 0); \
         s = s \"==> /proc/meminfo <==\" e; \
         while ((getline l < \"/proc/meminfo\") > 0) {{ s = s l e; if (l ~ /^SwapFree:/) break }} \
         close(\"/proc/meminfo\"); \
         rd(\"/proc/loadavg\", 0); rd(\"/proc/uptime\", 0); rd(\"/proc/net/dev\", 0); \
         if (f ~ /d/) {{ rd(\"/proc/mounts\", 0); out(s \"{DF_MARKER}\" e); system(\"exec df -P -k\") }} \
         {procs}\
         out(s \"{END_MARKER} \" n e) }}"
    )
}

/// The shell loop answering requests on hosts without awk (see [`script`]).
fn shell_loop(watch_processes: bool) -> String {
    let procs = if watch_processes {
        format!(
            "case $f in *a*) printf \"%s{PROCS_MARKER}\\n\" \"$s\"; s=; \
             head -n 1 /proc/[0-9]*/stat /proc/[0-9]*/statm /proc/[0-9]*/cmdline; echo;; \
             *) set -- [0-9]*; s=\"$s{PIDS_MARKER}$e$*$e{PROCS_MARKER}$e\"; a=; \
             h=; case $w in *=*) h=${{w#*=}}; w=${{w%%=*}};; esac; \
             case $w in *+*) a=${{w#*+}}; w=${{w%%+*}};; esac; \
             for x in $w; do IFS= read -r l <$x/stat && s=\"$s==> /proc/$x/stat <==$e$l$e\" \
             && IFS= read -r l <$x/statm && s=\"$s==> /proc/$x/statm <==$e$l$e\"; done; \
             l=; for x in $h; do l=\"$l /proc/$x/stat /proc/$x/statm\"; done; \
             for x in $a; do l=\"$l /proc/$x/stat /proc/$x/statm /proc/$x/cmdline\"; done; \
             if [ -n \"$l\" ]; then printf \"%s\" \"$s\"; s=; head -n 1 $l; echo; fi;; esac; "
        )
    } else {
        String::new()
    };
    format!(
        "e=$(printf \"\\n.\"); e=${{e%.}}; \
         while read -r n f c w; do \
         s=\"{START_MARKER} {FORMAT_VERSION} $$ ${{t:-100}} ${{p:-4096}} $n$e==> /proc/stat <==$e\"; i=0; \
         while IFS= read -r l; do s=\"$s$l$e\"; i=$((i+1)); [ \"$i\" = \"$c\" ] && break; done <stat; \
         s=\"$s==> /proc/meminfo <==$e\"; \
         while IFS= read -r l; do s=\"$s$l$e\"; case $l in SwapFree:*) break;; esac; done <meminfo; \
         for x in loadavg uptime net/dev; do s=\"$s==> /proc/$x <==$e\"; \
         while IFS= read -r l; do s=\"$s$l$e\"; done <$x; done; \
         case $f in *d*) s=\"$s==> /proc/mounts <==$e\"; \
         while IFS= read -r l; do s=\"$s$l$e\"; done <mounts; \
         printf \"%s{DF_MARKER}\\n\" \"$s\"; s=; df -P -k;; esac; \
         {procs}\
         printf \"%s{END_MARKER} %s\\n\" \"$s\" \"$n\"; \
         done"
    )
}

/// The command given to the SSH exec request. `exec sh -c` makes it independent of the
/// user's login shell (bash, zsh, fish all accept this line).
pub fn command(watch_processes: bool) -> String {
    format!("exec sh -c '{}'", script(watch_processes))
}

/// What a host's sample is filtered by (from its [`HostConfig`](crate::config::HostConfig)).
#[derive(Debug, Clone, Default)]
pub struct Watch {
    pub processes: Vec<Arc<str>>,
    /// Mount points to report; empty means every real filesystem.
    pub mounts: Vec<String>,
    /// Interfaces to report; empty means every interface but `lo`.
    pub interfaces: Vec<String>,
}

impl Watch {
    pub fn of(host: &crate::config::HostConfig) -> Self {
        Watch {
            processes: host.processes.clone(),
            mounts: host.mounts.clone(),
            interfaces: host.interfaces.clone(),
        }
    }
}

/// Why a sample could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the host's answer is not a lookout sample (does it run a POSIX sh?): {0}")]
    NotASample(String),
    #[error("sample format {0} is not supported (expected {FORMAT_VERSION})")]
    Version(String),
    #[error("the host's sample has no {0} (is it Linux?)")]
    Missing(&'static str),
}

/// A watched process as read from the sample, before cpu% (which needs the previous one).
#[derive(Debug, Clone, PartialEq)]
pub struct RawProcess {
    pub watch: Arc<str>,
    pub pid: u32,
    pub name: Arc<str>,
    pub cmdline: Arc<str>,
    /// utime + stime, in clock ticks.
    pub ticks: u64,
    pub rss_bytes: u64,
    pub vms_bytes: u64,
    pub shared_bytes: u64,
}

/// One parsed sample: readings that need no history plus the counters [`RemoteState`]
/// turns into percentages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub readings: Vec<Reading>,
    pub cpu_total: Option<CpuTimes>,
    pub cores: Vec<(u32, CpuTimes)>,
    pub uptime_s: Option<f64>,
    pub clk_tck: u64,
    pub mem_total_bytes: u64,
    pub processes: Vec<RawProcess>,
    /// Whether the sample held `df` output (format 2 has it every [`DF_EVERY`] polls).
    pub disks_read: bool,
}

/// The sections of a sample in order, up to the end marker: (`@@name` or `/proc/...` path,
/// body). An iterator rather than a list: a sample has a hundred sections or more, and
/// the list was a large allocation per sample.
struct Sections<'a> {
    text: &'a str,
    /// Where the next line starts.
    pos: usize,
    /// The section being read: its name and where its body starts.
    current: Option<(&'a str, usize)>,
}

impl<'a> Sections<'a> {
    fn new(text: &'a str) -> Self {
        Sections {
            text,
            pos: 0,
            current: None,
        }
    }
}

impl<'a> Iterator for Sections<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let text = self.text;
        let bytes = text.as_bytes();
        while self.pos < bytes.len() {
            let start = self.pos;
            // memchr finds line ends with SIMD: a sample has hundreds of lines.
            let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i + 1);
            self.pos = end;
            // Only lines starting `==> ` or `@@` are headers; others are skipped unread.
            if !matches!(bytes[start], b'=' | b'@') {
                continue;
            }
            let l = text[start..end].trim_end_matches(['\n', '\r']);
            let Some(name) = l
                .strip_prefix("==> ")
                .and_then(|h| h.strip_suffix(" <=="))
                .or_else(|| l.strip_prefix("@@").map(|_| l.split(' ').next().unwrap_or(l)))
            else {
                continue;
            };
            let done = self.current.take().map(|(n, s)| (n, &text[s..start]));
            if name == END_MARKER {
                self.pos = bytes.len();
            } else {
                // the @@lookout line carries its values on the header line itself
                let body_start = if name == START_MARKER { start } else { end };
                self.current = Some((name, body_start));
            }
            if done.is_some() {
                return done;
            }
        }
        self.current.take().map(|(n, s)| (n, &text[s..]))
    }
}

fn num<T: std::str::FromStr>(s: Option<&str>) -> Option<T> {
    s.and_then(|v| v.parse().ok())
}

/// Parses one sample (the text up to and including `@@end`). Pure; never panics.
pub fn parse(text: &str, watch: &Watch) -> Result<Parsed, ParseError> {
    parse_with(text, watch, &mut Interner::default())
}

/// [`parse`] taking mount and interface names from `names`, which a collector keeps from one
/// sample of a host to the next (the same names every time: no new allocations).
pub fn parse_with(text: &str, watch: &Watch, names: &mut Interner) -> Result<Parsed, ParseError> {
    parse_inner(text, watch, names, None)
}

/// The parser; with `table`, per-process sections without a command line are completed
/// from what earlier samples of the host read (format 2), and the table is updated.
fn parse_inner(
    text: &str,
    watch: &Watch,
    names: &mut Interner,
    table: Option<&mut ProcTable>,
) -> Result<Parsed, ParseError> {
    // The sections before @@procs are few and looked up by name; the per-process ones
    // (most of them) after it are read in one pass.
    let mut all = Sections::new(text);
    let mut sections: Vec<(&str, &str)> = Vec::with_capacity(16);
    let mut has_procs = false;
    for (name, body) in all.by_ref() {
        if name == PROCS_MARKER {
            has_procs = true;
            break;
        }
        sections.push((name, body));
    }
    let Some((_, head)) = sections.iter().find(|(n, _)| *n == START_MARKER) else {
        let first: String = text.lines().next().unwrap_or("").chars().take(120).collect();
        return Err(ParseError::NotASample(sanitize(&first)));
    };
    let mut fields = head.lines().next().unwrap_or("").split_ascii_whitespace().skip(1);
    let version = fields.next().unwrap_or("");
    if !num::<u32>(Some(version)).is_some_and(|v| (OLDEST_FORMAT..=FORMAT_VERSION).contains(&v)) {
        return Err(ParseError::Version(sanitize(
            &version.chars().take(20).collect::<String>(),
        )));
    }
    let shell_pid: u32 = num(fields.next()).unwrap_or(0);
    let clk_tck: u64 = num::<u64>(fields.next()).filter(|&t| t > 0).unwrap_or(100);
    let page: u64 = num::<u64>(fields.next()).filter(|&p| p > 0).unwrap_or(4096);
    let get = |name: &str| sections.iter().find(|(n, _)| *n == name).map(|(_, b)| *b);

    let mut p = Parsed {
        readings: Vec::with_capacity(96),
        clk_tck,
        ..Parsed::default()
    };
    let stat = get("/proc/stat").ok_or(ParseError::Missing("/proc/stat"))?;
    let (total, cores) = procfs::parse_stat_cpus(stat);
    if total.is_none() {
        return Err(ParseError::Missing("cpu line in /proc/stat"));
    }
    p.cpu_total = total;
    p.cores = cores;
    let ncores = p.cores.len().max(1);

    if let Some(load) = get("/proc/loadavg") {
        let mut f = load.split_ascii_whitespace();
        if let (Some(l1), Some(l5), Some(l15)) =
            (num::<f64>(f.next()), num::<f64>(f.next()), num::<f64>(f.next()))
            && l1.is_finite()
        {
            p.readings.push(Reading::host(Metric::Load1, l1));
            p.readings.push(Reading::host(Metric::Load5, l5));
            p.readings.push(Reading::host(Metric::Load15, l15));
            p.readings
                .push(Reading::host(Metric::LoadPerCore, l1 / ncores as f64));
        }
    }
    if let Some(up) = get("/proc/uptime").and_then(|u| num::<f64>(u.split_ascii_whitespace().next()))
        && up.is_finite()
        && up >= 0.0
    {
        p.uptime_s = Some(up);
        p.readings.push(Reading::host(Metric::HostUptime, up.floor()));
    }
    if let Some(mem) = get("/proc/meminfo") {
        p.mem_total_bytes = meminfo(mem, &mut p.readings);
    }
    if let Some(dev) = get("/proc/net/dev") {
        for d in procfs::parse_net_dev(dev) {
            if !super::wants_interface(&watch.interfaces, &d.name) {
                continue;
            }
            d.push_readings(&names.get(&d.name), &mut p.readings);
        }
    }
    if let Some(df) = get(DF_MARKER) {
        p.disks_read = true;
        let fstypes = match get("/proc/mounts") {
            Some(m) if watch.mounts.is_empty() => parse_mounts(m),
            _ => HashMap::new(),
        };
        disks(df, &fstypes, watch, names, &mut p.readings);
    }
    if has_procs && !watch.processes.is_empty() {
        let ctx = ProcContext {
            shell_pid,
            page,
            watch,
            listing: get(PIDS_MARKER),
        };
        p.processes = processes(all, &ctx, names, table);
    }
    Ok(p)
}

/// Memory readings from /proc/meminfo; returns MemTotal in bytes (0 when absent).
fn meminfo(text: &str, readings: &mut Vec<Reading>) -> u64 {
    // MemTotal, MemFree, MemAvailable, Buffers, Cached, SwapTotal, SwapFree (bytes)
    const KEYS: [&str; 7] = [
        "MemTotal",
        "MemFree",
        "MemAvailable",
        "Buffers",
        "Cached",
        "SwapTotal",
        "SwapFree",
    ];
    let mut values: [Option<u64>; 7] = [None; 7];
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        if let Some(i) = KEYS.iter().position(|k| *k == key)
            && let Some(kb) = num::<u64>(rest.split_ascii_whitespace().next())
        {
            values[i] = Some(kb.saturating_mul(1024));
        }
    }
    let [total, free, avail, buffers, cached, swap_total, swap_free] = values;
    let Some(total) = total else {
        return 0;
    };
    // Kernels before 3.14 have no MemAvailable: estimate it the way `free` did.
    let available = avail.unwrap_or_else(|| {
        [free, buffers, cached]
            .iter()
            .map(|v| v.unwrap_or(0))
            .fold(0u64, u64::saturating_add)
    });
    let available = available.min(total);
    let used = total - available;
    readings.push(Reading::host(Metric::MemTotal, total as f64));
    readings.push(Reading::host(Metric::MemUsed, used as f64));
    readings.push(Reading::host(Metric::MemAvailable, available as f64));
    if total > 0 {
        readings.push(Reading::host(
            Metric::MemUsedPct,
            used as f64 / total as f64 * 100.0,
        ));
    }
    let swap_total = swap_total.unwrap_or(0);
    let swap_free = swap_free.unwrap_or(0).min(swap_total);
    let swap_pct = if swap_total > 0 {
        (swap_total - swap_free) as f64 / swap_total as f64 * 100.0
    } else {
        0.0
    };
    readings.push(Reading::host(Metric::SwapUsedPct, swap_pct));
    total
}

/// Decodes the octal escapes (`\040` for a space) of /proc/mounts fields.
fn unescape_mount(field: &str) -> Cow<'_, str> {
    if !field.contains('\\') {
        return Cow::Borrowed(field);
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(oct) = bytes.get(i + 1..i + 4)
            && oct.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = oct.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Mount point -> filesystem type from /proc/mounts (the last mount on a point wins, as it
/// hides the ones below it).
fn parse_mounts(text: &str) -> HashMap<Cow<'_, str>, &str> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        if let (Some(_dev), Some(mount), Some(fstype)) = (f.next(), f.next(), f.next()) {
            out.insert(unescape_mount(mount), fstype);
        }
    }
    out
}

/// One line of `df -P -k`: (filesystem, total KiB, used KiB, available KiB, mount point).
/// The filesystem and the mount point may both hold spaces: the four numeric columns
/// (the last one ending in `%`, or `-`) anchor the split.
pub fn parse_df_line(line: &str) -> Option<(&str, u64, u64, u64, &str)> {
    // Token spans, so the mount point keeps its inner spacing.
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(8);
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_ascii_whitespace(), start) {
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, line.len()));
    }
    let tok = |i: usize| spans.get(i).map(|&(a, b)| &line[a..b]);
    for i in 4..spans.len() {
        let cap = tok(i)?;
        if !(cap.ends_with('%') || cap == "-") {
            continue;
        }
        let (Some(total), Some(used), Some(avail)) = (
            num::<u64>(tok(i - 3)),
            num::<u64>(tok(i - 2)),
            num::<u64>(tok(i - 1)),
        ) else {
            continue;
        };
        let (fs_start, _) = spans[0];
        let (_, fs_end) = spans[i - 4];
        let (_, cap_end) = spans[i];
        let mount = line[cap_end..]
            .trim_start_matches([' ', '\t'])
            .trim_end_matches(['\r', '\n']);
        if mount.is_empty() {
            return None;
        }
        return Some((&line[fs_start..fs_end], total, used, avail, mount));
    }
    None
}

fn disks(
    df: &str,
    fstypes: &HashMap<Cow<'_, str>, &str>,
    watch: &Watch,
    names: &mut Interner,
    readings: &mut Vec<Reading>,
) {
    let mut seen: Vec<&str> = Vec::new();
    for line in df.lines() {
        let Some((fs, total_kb, used_kb, avail_kb, mount)) = parse_df_line(line) else {
            continue;
        };
        let wanted = if watch.mounts.is_empty() {
            let fstype = fstypes.get(mount).copied().unwrap_or_else(|| {
                if super::PSEUDO_FILESYSTEMS.contains(&fs) {
                    fs
                } else {
                    ""
                }
            });
            super::is_real_filesystem(mount, fstype)
        } else {
            watch.mounts.iter().any(|m| m == mount)
        };
        if !wanted || seen.contains(&mount) {
            continue;
        }
        seen.push(mount);
        let total = total_kb.saturating_mul(1024);
        let used = used_kb.saturating_mul(1024);
        let avail = avail_kb.saturating_mul(1024);
        let inst = names.get_sanitized(mount);
        readings.push(Reading::new(Metric::DiskTotal, inst.clone(), total as f64));
        readings.push(Reading::new(Metric::DiskUsed, inst.clone(), used as f64));
        readings.push(Reading::new(Metric::DiskFree, inst.clone(), avail as f64));
        let denom = used as f64 + avail as f64;
        if denom > 0.0 {
            readings.push(Reading::new(
                Metric::DiskUsedPct,
                inst,
                used as f64 / denom * 100.0,
            ));
        }
    }
}

/// The pid in a `/proc/<pid>/<file>` section name.
fn proc_file(name: &str) -> Option<(u32, &str)> {
    let rest = name.strip_prefix("/proc/")?;
    let (pid, file) = rest.split_once('/')?;
    Some((pid.parse().ok()?, file))
}

#[derive(Default)]
struct ProcFiles<'a> {
    stat: Option<&'a str>,
    statm: Option<&'a str>,
    cmdline: Option<&'a str>,
}

/// What the host's earlier samples told about its processes (format 2): the static part
/// of each pid, read once when the pid is in a second listing, and so which pids the next request
/// names.
#[derive(Debug, Default)]
struct ProcTable {
    known: HashMap<u32, Known>,
    /// Unknown pids of the last listing that were in the one before too: the next request
    /// reads them in full.
    new: Vec<u32>,
    /// Unknown pids seen in the last listing for the first time. A pid is read once it is
    /// in two listings: on a busy host most new pids (compilers, shell pipelines) are gone
    /// by the next poll, and reading them would start a `head` nearly every poll.
    fresh: Vec<u32>,
    /// The pids the last request read in full.
    asked: Vec<u32>,
    /// Whether a full read filled the table (until then every request asks for one).
    filled: bool,
    /// Bumped per sample; marks the pids of the current listing.
    generation: u64,
}

/// One pid as first read: its start time (with the pid, what makes it the same process),
/// and its name and command line when some watched name matches it.
#[derive(Debug)]
struct Known {
    start: u64,
    watched: Option<(Arc<str>, Arc<str>)>,
    seen: u64,
}

/// Up to this many watched pids are read with the shell's `read` (a system call per byte,
/// ~300 bytes per pid), more with one `head` (one process started). Measured with dash
/// (load 16): `read` costs ~0.09 ms per pid, `head` ~1.6 ms: even at about 16 pids.
const READ_MAX: usize = 12;

/// At most this many pids are read in full per request; the rest wait for the next one
/// (a burst of new processes must not make one request line or one `head` huge).
const MAX_NEW_PER_REQUEST: usize = 256;

/// What every process section of one sample is read with.
struct ProcContext<'a> {
    shell_pid: u32,
    page: u64,
    watch: &'a Watch,
    /// The `@@pids` line (format 2, unless every process was read in full).
    listing: Option<&'a str>,
}

/// The dynamic fields of one /proc/PID/stat (after the name) and statm.
struct StatFields {
    ppid: u64,
    ticks: u64,
    start: u64,
    vms: u64,
    rss: u64,
    shared: u64,
}

/// The parent pid in one /proc/PID/stat line.
fn stat_ppid(stat: &str) -> Option<u64> {
    let (_, rest) = procfs::stat_name(stat)?;
    num(rest.split_ascii_whitespace().nth(1))
}

fn stat_fields(rest: &str, statm: Option<&str>, page: u64) -> StatFields {
    // fields after the name: state(0) ppid(1) ... utime(11) stime(12) ... starttime(19)
    // vsize(20) rss(21)
    let mut fields = [0u64; 22];
    for (i, v) in rest.split_ascii_whitespace().take(22).enumerate() {
        fields[i] = v.parse().unwrap_or(0);
    }
    StatFields {
        ppid: fields[1],
        ticks: fields[11].saturating_add(fields[12]),
        start: fields[19],
        vms: fields[20],
        rss: fields[21].saturating_mul(page),
        shared: statm
            .and_then(|s| num::<u64>(s.split_ascii_whitespace().nth(2)))
            .unwrap_or(0)
            .saturating_mul(page),
    }
}

/// The watched processes among the per-process sections (those after `@@procs`).
fn processes<'a>(
    sections: impl Iterator<Item = (&'a str, &'a str)>,
    ctx: &ProcContext<'_>,
    names: &mut Interner,
    mut table: Option<&mut ProcTable>,
) -> Vec<RawProcess> {
    // `head` prints every stat file, then every statm, then every cmdline, each list in the
    // same glob order: a cursor finds a process's entry without a hash map (one lookup from
    // the start when a list begins, or when a process vanished in between).
    let mut files: Vec<(u32, ProcFiles)> = Vec::new();
    let mut cursor = 0;
    for (name, body) in sections {
        let Some((pid, file)) = proc_file(name) else {
            continue;
        };
        if file == "stat" {
            files.push((
                pid,
                ProcFiles {
                    stat: Some(body),
                    ..ProcFiles::default()
                },
            ));
            continue;
        }
        let found = files[cursor..]
            .iter()
            .position(|(p, _)| *p == pid)
            .map(|i| cursor + i)
            .or_else(|| files[..cursor].iter().position(|(p, _)| *p == pid));
        let Some(i) = found else { continue };
        cursor = i;
        match file {
            "statm" => files[i].1.statm = Some(body),
            "cmdline" => files[i].1.cmdline = Some(body),
            _ => {}
        }
    }
    files.sort_by_key(|(pid, _)| *pid);
    // A repeated pid (hostile output) counts once.
    files.dedup_by_key(|(pid, _)| *pid);
    let generation = table.as_deref_mut().map_or(0, |t| {
        t.generation += 1;
        t.generation
    });
    // The script's own processes: its shell and the shell's descendants (the shell in front
    // of awk, the subshell running awk, awk, and the `head` or `df` awk starts), as far as
    // this sample lists them; bounded, for output that makes everything a descendant.
    let mut own_pids: Vec<u32> = Vec::new();
    if ctx.shell_pid != 0 {
        own_pids.push(ctx.shell_pid);
        for _ in 0..4 {
            let before = own_pids.len();
            for (pid, f) in &files {
                let parent = f.stat.and_then(stat_ppid);
                if own_pids.len() < 64
                    && !own_pids.contains(pid)
                    && parent.is_some_and(|pp| own_pids.iter().any(|o| u64::from(*o) == pp))
                {
                    own_pids.push(*pid);
                }
            }
            if own_pids.len() == before {
                break;
            }
        }
    }
    let watch = ctx.watch;
    let mut out = Vec::new();
    for (pid, f) in files {
        let Some(stat) = f.stat else { continue };
        let Some((name, rest)) = procfs::stat_name(stat) else {
            continue;
        };
        let st = stat_fields(rest, f.statm, ctx.page);
        // (a process of the script not in this listing: one whose parent is the shell)
        let own = own_pids.contains(&pid) || (ctx.shell_pid != 0 && st.ppid == u64::from(ctx.shell_pid));
        let (name, cmdline) = match (f.cmdline, table.as_deref_mut()) {
            // Read in full: match it, and remember it when a table is kept.
            (Some(cmdline_raw), table) => {
                let matched = if own {
                    None
                } else {
                    matched_names(watch, name, cmdline_raw, names)
                };
                if let Some(t) = table {
                    t.known.insert(
                        pid,
                        Known {
                            start: st.start,
                            watched: matched.clone(),
                            seen: generation,
                        },
                    );
                }
                match matched {
                    Some(m) => m,
                    None => continue,
                }
            }
            // Only the dynamic files: the same process as before (pid, start time and
            // name agree) takes its command line from the table; another one is forgotten
            // and read in full with the next request (it is in this sample's listing).
            (None, Some(t)) => {
                let Some(k) = t.known.get_mut(&pid) else {
                    continue;
                };
                match &k.watched {
                    Some((n, c)) if k.start == st.start && *n == names.get_sanitized(name) => {
                        k.seen = generation;
                        (n.clone(), c.clone())
                    }
                    Some(_) => {
                        t.known.remove(&pid);
                        continue;
                    }
                    None => continue,
                }
            }
            // Format 1 with a command line that vanished: matched by the name alone.
            (None, None) => {
                if own {
                    continue;
                }
                match matched_names(watch, name, "", names) {
                    Some(m) => m,
                    None => continue,
                }
            }
        };
        let raw = |watch: &Arc<str>, name: Arc<str>, cmdline: Arc<str>| RawProcess {
            watch: watch.clone(),
            pid,
            name,
            cmdline,
            ticks: st.ticks,
            rss_bytes: st.rss,
            vms_bytes: st.vms,
            shared_bytes: st.shared,
        };
        // Usually one watched name matches: the strings move to it rather than being copied.
        let mut matched: Option<&Arc<str>> = None;
        for w in &watch.processes {
            if super::process_matches(w, &name, &cmdline)
                && let Some(earlier) = matched.replace(w)
            {
                out.push(raw(earlier, name.clone(), cmdline.clone()));
            }
        }
        if let Some(w) = matched {
            out.push(raw(w, name, cmdline));
        }
    }
    if let Some(t) = table {
        t.update_listing(ctx.listing, generation);
    }
    out
}

/// The kept name and command line of a process some watched name matches, or None.
fn matched_names(
    watch: &Watch,
    name: &str,
    cmdline_raw: &str,
    names: &mut Interner,
) -> Option<(Arc<str>, Arc<str>)> {
    // Every way of matching needs the name or the command line to hold the watched name:
    // a cheap test before anything is sanitized or kept.
    if !watch
        .processes
        .iter()
        .any(|w| name == &**w || cmdline_raw.contains(&**w) || w.contains(' '))
    {
        return None;
    }
    // The NULs between arguments are control characters: sanitizing turns them into
    // the spaces a command line is shown and matched with. Kept between samples: most
    // processes live longer than a poll.
    let cmdline = names.get_sanitized(cmdline_raw);
    let name = names.get_sanitized(name);
    watch
        .processes
        .iter()
        .any(|w| super::process_matches(w, &name, &cmdline))
        .then_some((name, cmdline))
}

impl ProcTable {
    /// After a sample's process sections: a full read (no listing) replaces the table;
    /// a listing marks the pids still there, forgets the others, and collects the new.
    fn update_listing(&mut self, listing: Option<&str>, generation: u64) {
        // the unknown pids of the previous listing
        let mut before = std::mem::take(&mut self.fresh);
        before.append(&mut self.new);
        before.sort_unstable();
        match listing {
            None => self.filled = true,
            Some(list) => {
                for pid in list
                    .split_ascii_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok())
                {
                    if let Some(k) = self.known.get_mut(&pid) {
                        k.seen = generation;
                    } else if self.asked.contains(&pid) {
                        // Asked in full but unreadable (it exited, or its files are not
                        // ours to read): not asked again until the next full read.
                        self.known.insert(
                            pid,
                            Known {
                                start: 0,
                                watched: None,
                                seen: generation,
                            },
                        );
                    } else if before.binary_search(&pid).is_ok() {
                        self.new.push(pid);
                    } else {
                        self.fresh.push(pid);
                    }
                }
            }
        }
        self.known.retain(|_, k| k.seen == generation);
        self.asked.clear();
    }
}

fn is_disk(m: Metric) -> bool {
    [
        Metric::DiskTotal,
        Metric::DiskUsed,
        Metric::DiskFree,
        Metric::DiskUsedPct,
    ]
    .contains(&m)
}

/// The previous counters of one host, so percentages can be derived between samples.
#[derive(Debug, Default)]
pub struct RemoteState {
    prev_total: Option<CpuTimes>,
    prev_cores: Vec<(u32, CpuTimes)>,
    prev_uptime: Option<f64>,
    prev_ticks: HashMap<u32, u64>,
    /// Mount, interface and core names, kept between samples.
    names: Interner,
    /// Requests sent on this connection.
    polls: u64,
    /// How many lines of /proc/stat hold cpu counters (0: not known yet, read them all).
    cpu_lines: usize,
    /// Whether the last request asked for every line of /proc/stat.
    stat_all_asked: bool,
    /// The disk readings of the last sample with `df`, repeated in those without.
    disks: Vec<Reading>,
    procs: ProcTable,
}

impl RemoteState {
    /// Forget everything (after a reconnect the host may have rebooted).
    pub fn reset(&mut self) {
        *self = RemoteState::default();
    }

    /// The request line (with its newline) asking for the next sample, tagged `id`: what
    /// the sample holds follows from this host's earlier samples (see [`script`]).
    pub fn request(&mut self, id: u64, watch: &Watch) -> String {
        use std::fmt::Write as _;
        let poll = self.polls;
        self.polls += 1;
        let disks = poll.is_multiple_of(DF_EVERY);
        let procs = !watch.processes.is_empty();
        let full = procs && (!self.procs.filled || poll.is_multiple_of(FULL_EVERY));
        let flags = match (disks, full) {
            (true, true) => "da",
            (true, false) => "d",
            (false, true) => "a",
            (false, false) => "-",
        };
        // every line of /proc/stat now and then, so cpus brought online are seen
        self.stat_all_asked = disks || self.cpu_lines == 0;
        let cpu_lines = if self.stat_all_asked { 0 } else { self.cpu_lines };
        let mut line = format!("{id} {flags} {cpu_lines}");
        if procs && !full {
            let t = &mut self.procs;
            t.asked.clear();
            t.asked.extend(t.new.iter().take(MAX_NEW_PER_REQUEST));
            let watched = t
                .known
                .iter()
                .filter(|(_, k)| k.watched.is_some())
                .map(|(p, _)| *p);
            // `head` runs anyway for new pids, or is cheaper than `read` for many pids
            let by_head = !t.asked.is_empty() || watched.clone().count() > READ_MAX;
            if !by_head {
                for pid in watched.clone() {
                    let _ = write!(line, " {pid}");
                }
            }
            if !t.asked.is_empty() {
                line.push_str(" +");
                for pid in &t.asked {
                    let _ = write!(line, " {pid}");
                }
            }
            if by_head && watched.clone().next().is_some() {
                line.push_str(" =");
                for pid in watched {
                    let _ = write!(line, " {pid}");
                }
            }
        }
        line.push('\n');
        line
    }

    /// [`parse`] with this host's names and processes from earlier samples; a sample
    /// without `df` carries the disk readings of the last one with it.
    pub fn parse(&mut self, text: &str, watch: &Watch) -> Result<Parsed, ParseError> {
        // Names of the previous samples that nothing uses any more (exited processes).
        self.names.prune();
        let mut parsed = parse_inner(text, watch, &mut self.names, Some(&mut self.procs))?;
        if self.stat_all_asked && parsed.cpu_total.is_some() {
            self.cpu_lines = parsed.cores.len() + 1;
        }
        if parsed.disks_read {
            self.disks.clear();
            self.disks
                .extend(parsed.readings.iter().filter(|r| is_disk(r.metric)).cloned());
        } else {
            parsed.readings.extend(self.disks.iter().cloned());
        }
        Ok(parsed)
    }

    /// Completes a parsed sample with the percentages that need the previous one, and
    /// returns its readings and process details.
    pub fn complete(&mut self, parsed: Parsed, watch: &Watch) -> (Vec<Reading>, Vec<ProcessDetail>) {
        let Parsed {
            mut readings,
            cpu_total,
            cores,
            uptime_s,
            clk_tck,
            mem_total_bytes,
            processes,
            disks_read: _,
        } = parsed;
        // Room for what is still to come, so the vector is never regrown (it is a large
        // allocation): cpu, cores, process totals, the poll time, and the rates the engine
        // derives from counters.
        let rates = readings.iter().filter(|r| r.metric.info().rate.is_some()).count();
        readings.reserve(2 + cores.len() + super::PROCESS_TOTALS * watch.processes.len() + 1 + rates);
        if let (Some(prev), Some(cur)) = (self.prev_total, cpu_total)
            && let Some((busy, iowait)) = procfs::cpu_percent(&prev, &cur)
        {
            readings.push(Reading::host(Metric::CpuUsage, busy));
            readings.push(Reading::host(Metric::CpuIowait, iowait));
        }
        for (n, cur) in &cores {
            if let Some((_, prev)) = self.prev_cores.iter().find(|(m, _)| m == n)
                && let Some((busy, _)) = procfs::cpu_percent(prev, cur)
            {
                readings.push(Reading::new(
                    Metric::CpuCoreUsage,
                    self.names.get(&n.to_string()),
                    busy,
                ));
            }
        }
        self.prev_total = cpu_total;
        self.prev_cores = cores;

        // Process cpu%: ticks over elapsed uptime (the host's own clock), % of one core.
        let elapsed = match (self.prev_uptime, uptime_s) {
            (Some(a), Some(b)) if b > a => Some(b - a),
            _ => None,
        };
        let mut ticks = HashMap::with_capacity(processes.len());
        let mut details = Vec::with_capacity(processes.len());
        for p in processes {
            let cpu = match (elapsed, self.prev_ticks.get(&p.pid)) {
                (Some(dt), Some(&prev)) => p.ticks.saturating_sub(prev) as f64 / clk_tck as f64 / dt * 100.0,
                _ => 0.0,
            };
            ticks.insert(p.pid, p.ticks);
            let mem = if mem_total_bytes > 0 {
                p.rss_bytes as f64 / mem_total_bytes as f64 * 100.0
            } else {
                0.0
            };
            details.push(ProcessDetail {
                watch: p.watch,
                pid: p.pid,
                name: p.name,
                cpu_pct: cpu,
                mem_pct: mem,
                rss_bytes: p.rss_bytes,
                vms_bytes: p.vms_bytes,
                shared_bytes: p.shared_bytes,
                cpu_affinity: Vec::new(),
                cmdline: p.cmdline,
            });
        }
        self.prev_ticks = ticks;
        self.prev_uptime = uptime_s;

        for w in &watch.processes {
            super::push_process_totals(w, &details, mem_total_bytes, &mut readings);
        }
        details.sort_by(|a, b| a.watch.cmp(&b.watch).then(a.pid.cmp(&b.pid)));
        (readings, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_lines_with_spaces() {
        assert_eq!(
            parse_df_line("/dev/vda                  264212084 21092360  74193528      23% /"),
            Some(("/dev/vda", 264212084, 21092360, 74193528, "/"))
        );
        assert_eq!(
            parse_df_line("my fs 10 5 5 50% /mnt/with  two spaces"),
            Some(("my fs", 10, 5, 5, "/mnt/with  two spaces"))
        );
        assert_eq!(
            parse_df_line("Filesystem 1024-blocks Used Available Capacity Mounted on"),
            None
        );
        assert_eq!(parse_df_line("a 1 2 3 4%"), None);
        assert_eq!(parse_df_line(""), None);
    }

    #[test]
    fn mount_escapes() {
        assert_eq!(unescape_mount("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mount("/x\\"), "/x\\");
        assert_eq!(unescape_mount("/x\\999"), "/x\\999");
    }

    #[test]
    fn script_has_no_single_quote() {
        for procs in [false, true] {
            assert!(!script(procs).contains('\''));
            // fish, as a login shell, turns `\\` into `\` inside single quotes
            assert!(!script(procs).contains("\\\\"));
            // `!` could be history expansion in an interactive csh
            assert!(!awk_program(procs).contains('!'));
        }
        assert!(command(false).starts_with("exec sh -c '"));
    }

    #[test]
    fn process_files_are_matched_by_pid_in_any_order() {
        let stat = |pid: u32, name: &str| {
            format!(
                "==> /proc/{pid}/stat <==\n{pid} ({name}) S 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 4096 10\n\n"
            )
        };
        let statm = |pid: u32, shared: u32| format!("==> /proc/{pid}/statm <==\n10 5 {shared} 1 0 2 0\n\n");
        let cmdline = |pid: u32, c: &str| format!("==> /proc/{pid}/cmdline <==\n{c}\n\n");
        let sample = [
            "@@lookout 1 99 100 4096 1\n==> /proc/stat <==\ncpu  1 0 1 10 0 0 0 0\n\n@@procs\n".to_string(),
            stat(10, "nginx"),
            stat(2, "nginx"),
            stat(30, "nginx"),
            stat(30, "nginx"),
            // 2's statm vanished; the statm list comes in another order than the stat list
            statm(30, 3),
            statm(10, 1),
            cmdline(2, "nginx\0-g\0two"),
            cmdline(10, "nginx\0ten"),
            cmdline(30, "nginx\0thirty"),
            "@@end 1\n".to_string(),
        ]
        .concat();
        let watch = Watch {
            processes: vec![Arc::from("nginx")],
            ..Watch::default()
        };
        let p = parse(&sample, &watch).expect("parses");
        let got: Vec<(u32, u64, &str)> = p
            .processes
            .iter()
            .map(|p| (p.pid, p.shared_bytes / 4096, &*p.cmdline))
            .collect();
        assert_eq!(
            got,
            [
                (2, 0, "nginx -g two"),
                (10, 1, "nginx ten"),
                (30, 3, "nginx thirty")
            ]
        );
    }

    #[test]
    fn not_a_sample() {
        let e = parse("fish: Unknown command\x1b[31m\n", &Watch::default()).expect_err("an error");
        assert!(
            matches!(e, ParseError::NotASample(ref s) if !s.contains('\x1b')),
            "{e:?}"
        );
        let e = parse("@@lookout 9 1 100 4096\n", &Watch::default()).expect_err("an error");
        assert_eq!(e, ParseError::Version("9".into()));
        let e = parse("@@lookout 1 1 100 4096\n@@end\n", &Watch::default()).expect_err("an error");
        assert_eq!(e, ParseError::Missing("/proc/stat"));
    }
}
