//! Running several checks of one remote host on one exec channel of its SSH session.
//!
//! A channel per check run cost lookout (and the host's sshd) a channel open, an exec
//! request, and a close each: at 20 checks on 1,000 hosts, 2,000 channels a second and most
//! of what checks added to lookout's CPU. A batch starts every check that is due at once in
//! one POSIX sh program: each runs in parallel with its own timeout watchdog, its output
//! goes to files in a private directory (so parallel checks cannot interleave, and
//! `ulimit -f` bounds it), and each result is framed on stdout as soon as its check ends:
//!
//! ```text
//! @@lookout-result NONCE INDEX EXIT TIMEDOUT\n<stdout>\n@@lookout-stderr NONCE\n<stderr>\n@@lookout-end NONCE\n
//! ```
//!
//! NONCE is random per batch. A check could read it (it is in the batch's argv) and forge
//! its siblings' results, but those are its own host's results, which that host controls
//! anyway; framing errors end the batch, never lookout.

use std::time::Duration;

use russh::ChannelMsg;

use super::parse::{Exit, Outcome};
use super::run::{STDERR_LIMIT, shell_quote};
use crate::collectors::ssh::connect::Session;

/// Extra time lookout waits for a remote batch past its longest timeout: the remote
/// watchdogs kill at the timeout (rounded up to whole seconds) and report; this covers the
/// round trip.
const REMOTE_GRACE: Duration = Duration::from_secs(3);

/// The POSIX sh program of a batch. `$1` is the nonce, `$2` the output limit in 512-byte
/// blocks, then one (timeout in whole seconds, token, command) triple per check.
///
/// Each check runs with `LOOKOUT_CHECK=<token>` in its environment, which every process it
/// starts inherits; its watchdog sleeps out the timeout and then stops and kills every
/// process carrying the token (found through /proc/PID/environ, so children that left the
/// tree or their process group are found too), and reports the timeout (124). Watchdogs
/// ignore SIGPIPE and SIGHUP and the framing loop ignores SIGPIPE, so the timeouts are kept
/// and the directory removed also when lookout has gone. Once every check has ended,
/// whatever they left running in the background is sent TERM with the batch's process
/// group, which sshd made the batch lead (checked in /proc first). Neither `setsid`,
/// `timeout` nor job control is used (dash refuses job control without a terminal); the
/// only programs it runs besides the checks are `mkdir`, `sleep`, `cat` (for non-empty
/// output), `rm`, and `grep` at a timeout.
pub const BATCH: &str = r#"n=$1 b=$2
shift 2
d=${TMPDIR:-/tmp}/lookout-checks-$n
if ! mkdir -m 700 "$d" 2>/dev/null; then
d=$HOME/.lookout-checks-$n
mkdir -m 700 "$d" 2>/dev/null || { echo "@@lookout-batch $n cannot create a directory for check output in ${TMPDIR:-/tmp} or $HOME"; exit 125; }
fi
trap 'rm -rf "$d"' EXIT
{
i=0
while [ $# -ge 3 ]; do
(
k=$2
ulimit -f "$b" 2>/dev/null
LOOKOUT_CHECK=$k sh -c "$3" </dev/null >"$d/$i.o" 2>"$d/$i.e" &
p=$!
(
trap 'kill $s 2>/dev/null; exit 0' TERM
trap '' PIPE HUP
sleep "$1" </dev/null >/dev/null 2>&1 & s=$!
wait $s
trap '' TERM
for sig in STOP KILL KILL; do
for f in $(grep -l -F "LOOKOUT_CHECK=$k" /proc/[0-9]*/environ 2>/dev/null); do
q=${f#/proc/}; kill -$sig ${q%/environ} 2>/dev/null
done
done
exit 124
) </dev/null >/dev/null 2>&1 &
w=$!
wait $p; r=$?
kill $w 2>/dev/null
wait $w; x=$?
echo "$i $r $x"
) &
shift 3
i=$((i+1))
done
wait
} | {
trap '' PIPE
while read -r i r x; do
printf '@@lookout-result %s %s %s %s\n' "$n" "$i" "$r" "$x"
[ -s "$d/$i.o" ] && cat "$d/$i.o"
printf '\n@@lookout-stderr %s\n' "$n"
[ -s "$d/$i.e" ] && cat "$d/$i.e"
printf '\n@@lookout-end %s\n' "$n"
done
}
read -r _ _ _ _ g _ </proc/$$/stat 2>/dev/null
if [ "$g" = $$ ]; then trap '' TERM; kill -TERM 0 2>/dev/null; fi
exit 0"#;

/// What the watchdog's exit status is when it killed a check.
const TIMED_OUT: u32 = 124;

/// One check of a batch: its command and timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: String,
    pub timeout: Duration,
}

/// Whole seconds, rounded up, at least one (what `sleep` in the watchdog gets).
fn whole_seconds(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// The 512-byte blocks `ulimit -f` allows: enough for `max_output` and one byte more, so
/// that output past the limit is seen as such.
fn blocks(max_output: usize) -> usize {
    max_output / 512 + 1
}

/// The exec command line of a batch.
pub fn command_line(nonce: &str, runs: &[Run], max_output: usize) -> String {
    let mut line = format!(
        "exec sh -c {} lookout-checks {nonce} {}",
        shell_quote(BATCH),
        blocks(max_output)
    );
    for (i, run) in runs.iter().enumerate() {
        line.push_str(&format!(
            " {} {nonce}{i:02x} {}",
            whole_seconds(run.timeout),
            shell_quote(&run.command)
        ));
    }
    line
}

/// The parts of a [`command_line`]: the nonce and each run's (timeout in whole seconds,
/// command). For the fleet simulator, which answers checks without a shell.
pub fn parse_command_line(line: &str) -> Option<(String, Vec<(u64, String)>)> {
    let prefix = format!("exec sh -c {} lookout-checks ", shell_quote(BATCH));
    let mut rest = line.strip_prefix(&prefix)?;
    let (nonce, after) = rest.split_once(' ')?;
    let (_blocks, after) = after.split_once(' ').unwrap_or((after, ""));
    rest = after;
    let mut runs = Vec::new();
    while !rest.is_empty() {
        let (secs, after) = rest.split_once(' ')?;
        let (_token, after) = after.split_once(' ')?;
        let (word, after) = first_quoted_word(after)?;
        runs.push((secs.parse().ok()?, word));
        rest = after.strip_prefix(' ').unwrap_or(after);
    }
    Some((nonce.to_string(), runs))
}

/// The first single-quoted sh word of `text` (as [`shell_quote`] writes them) and the rest.
fn first_quoted_word(text: &str) -> Option<(String, &str)> {
    let mut word = String::new();
    let mut rest = text.strip_prefix('\'')?;
    loop {
        let end = rest.find('\'')?;
        word.push_str(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix(r"\''") {
            Some(more) => {
                word.push('\'');
                rest = more;
            }
            None => return Some((word, rest)),
        }
    }
}

/// The framed answer to one check, as the simulator (or a test) writes it.
pub fn frame(nonce: &str, index: usize, code: u32, stdout: &[u8], stderr: &[u8]) -> Vec<u8> {
    let mut out = format!("@@lookout-result {nonce} {index} {code} 0\n").into_bytes();
    out.extend_from_slice(stdout);
    out.extend_from_slice(format!("\n@@lookout-stderr {nonce}\n").as_bytes());
    out.extend_from_slice(stderr);
    out.extend_from_slice(format!("\n@@lookout-end {nonce}\n").as_bytes());
    out
}

/// Where the reader is in the framed stream.
#[derive(Debug)]
enum State {
    /// Between results: the next line should be a header (other lines, from a login
    /// script say, are skipped).
    Header,
    /// Reading a result's stdout (up to the stderr marker), then its stderr.
    Stdout {
        index: usize,
        code: u32,
        timed_out: bool,
    },
    Stderr {
        index: usize,
        code: u32,
        timed_out: bool,
        stdout: Vec<u8>,
    },
}

/// Reads a batch's framed stdout incrementally, bounded: no result's output may pass the
/// limit by more than `ulimit -f`'s rounding, and lines outside results are dropped.
#[derive(Debug)]
pub struct Reader {
    nonce: String,
    timeouts: Vec<Duration>,
    max_output: usize,
    buf: Vec<u8>,
    /// How far `buf` was already searched for the current marker.
    scanned: usize,
    state: State,
}

/// Why a batch's answer cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken(pub String);

impl Reader {
    pub fn new(nonce: &str, timeouts: Vec<Duration>, max_output: usize) -> Reader {
        Reader {
            nonce: nonce.to_string(),
            timeouts,
            max_output,
            buf: Vec::new(),
            scanned: 0,
            state: State::Header,
        }
    }

    /// Most bytes a section may hold before its end marker: what `ulimit -f` lets through.
    fn section_limit(&self) -> usize {
        blocks(self.max_output) * 512 + 1
    }

    /// Feeds bytes from the channel; returns the results completed by them.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<(usize, Outcome)>, Broken> {
        self.buf.extend_from_slice(data);
        let mut done = Vec::new();
        loop {
            match std::mem::replace(&mut self.state, State::Header) {
                State::Header => {
                    let Some(end) = memchr::memchr(b'\n', &self.buf) else {
                        if self.buf.len() > 4096 {
                            // A long line that is not ours: drop it (keep the tail, which
                            // might begin a header).
                            let keep = self.buf.len() - 64;
                            self.buf.drain(..keep);
                        }
                        return Ok(done);
                    };
                    let line: Vec<u8> = self.buf.drain(..=end).collect();
                    let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    self.state = self.header(&line)?;
                }
                State::Stdout {
                    index,
                    code,
                    timed_out,
                } => {
                    let marker = format!("\n@@lookout-stderr {}\n", self.nonce);
                    match self.take_section(&marker)? {
                        Some(stdout) => {
                            self.state = State::Stderr {
                                index,
                                code,
                                timed_out,
                                stdout,
                            }
                        }
                        None => {
                            self.state = State::Stdout {
                                index,
                                code,
                                timed_out,
                            };
                            return Ok(done);
                        }
                    }
                }
                State::Stderr {
                    index,
                    code,
                    timed_out,
                    stdout,
                } => {
                    let marker = format!("\n@@lookout-end {}\n", self.nonce);
                    match self.take_section(&marker)? {
                        Some(mut stderr) => {
                            stderr.truncate(STDERR_LIMIT);
                            done.push((index, self.outcome(index, code, timed_out, stdout, stderr)));
                        }
                        None => {
                            self.state = State::Stderr {
                                index,
                                code,
                                timed_out,
                                stdout,
                            };
                            return Ok(done);
                        }
                    }
                }
            }
        }
    }

    /// The state after a line between results.
    fn header(&self, line: &str) -> Result<State, Broken> {
        let mut words = line.split(' ');
        match (words.next(), words.next()) {
            (Some("@@lookout-result"), Some(n)) if n == self.nonce => {}
            (Some("@@lookout-batch"), Some(n)) if n == self.nonce => {
                let why: Vec<&str> = words.collect();
                return Err(Broken(why.join(" ")));
            }
            _ => return Ok(State::Header),
        }
        let mut num = || words.next().and_then(|w| w.parse::<u32>().ok());
        match (num(), num(), num()) {
            (Some(index), Some(code), Some(watchdog)) if (index as usize) < self.timeouts.len() => {
                Ok(State::Stdout {
                    index: index as usize,
                    code,
                    timed_out: watchdog == TIMED_OUT,
                })
            }
            _ => Err(Broken(format!("a malformed result line from the host: {line:?}"))),
        }
    }

    /// The bytes up to `marker` (without it), or None while it has not arrived.
    fn take_section(&mut self, marker: &str) -> Result<Option<Vec<u8>>, Broken> {
        let from = self.scanned.saturating_sub(marker.len());
        match memchr::memmem::find(&self.buf[from..], marker.as_bytes()) {
            Some(at) => {
                let at = from + at;
                let section = self.buf[..at].to_vec();
                self.buf.drain(..at + marker.len());
                self.scanned = 0;
                Ok(Some(section))
            }
            None if self.buf.len() > self.section_limit() + marker.len() => Err(Broken(format!(
                "a check printed more than {} bytes past the host's limit",
                self.max_output
            ))),
            None => {
                self.scanned = self.buf.len();
                Ok(None)
            }
        }
    }

    fn outcome(
        &self,
        index: usize,
        code: u32,
        timed_out: bool,
        mut stdout: Vec<u8>,
        stderr: Vec<u8>,
    ) -> Outcome {
        let exit = if timed_out {
            stdout.clear();
            Exit::TimedOut(self.timeouts[index])
        } else if stdout.len() > self.max_output {
            stdout.truncate(self.max_output);
            Exit::TooMuchOutput(self.max_output)
        } else {
            Exit::Code(code)
        };
        Outcome { exit, stdout, stderr }
    }
}

/// Runs `runs` on the host behind `session` on one new exec channel (the session's other
/// channels, the sample stream among them, go on undisturbed). `done` gets each check's
/// outcome as soon as it ends, with its index in `runs`; every run gets exactly one.
pub async fn remote(
    session: &Session,
    runs: &[Run],
    max_output: usize,
    mut done: impl FnMut(usize, Outcome),
) {
    let nonce = format!("{:016x}", rand::random::<u64>());
    let line = command_line(&nonce, runs, max_output);
    let longest = runs.iter().map(|r| r.timeout).max().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + longest + REMOTE_GRACE;
    let mut reported = vec![false; runs.len()];
    let mut reader = Reader::new(&nonce, runs.iter().map(|r| r.timeout).collect(), max_output);
    // Why the batch ended before every check answered (when it did).
    let run = async {
        let mut channel = match session.channel_open_session().await {
            Ok(c) => c,
            Err(e) => return format!("cannot open a channel: {e}"),
        };
        if let Err(e) = channel.exec(false, line.as_bytes()).await {
            return format!("cannot start the checks: {e}");
        }
        let mut status = None;
        let mut stderr = Vec::new();
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Data { data }) => match reader.feed(&data) {
                    Ok(results) => {
                        for (i, outcome) in results {
                            if !std::mem::replace(&mut reported[i], true) {
                                done(i, outcome);
                            }
                        }
                    }
                    Err(Broken(why)) => {
                        let _ = channel.close().await;
                        return why;
                    }
                },
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    let room = STDERR_LIMIT.saturating_sub(stderr.len());
                    stderr.extend_from_slice(&data[..data.len().min(room)]);
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => break,
                Some(_) => {}
            }
        }
        let _ = channel.close().await;
        let stderr = String::from_utf8_lossy(&stderr);
        let first = stderr.lines().next().unwrap_or_default();
        match status {
            Some(s) if !first.is_empty() => format!("the host ended the checks (exit {s}): {first}"),
            Some(s) => format!("the host ended the checks without this one's answer (exit {s})"),
            None => "the channel closed before this check's answer".to_string(),
        }
    };
    // Past the deadline the channel is dropped (closed); the remote watchdogs have killed
    // the checks by then.
    let ended = tokio::time::timeout_at(deadline, run).await.ok();
    for (i, run) in runs.iter().enumerate() {
        if !reported[i] {
            let exit = match &ended {
                Some(why) => Exit::Failed(why.clone()),
                None => Exit::TimedOut(run.timeout),
            };
            done(
                i,
                Outcome {
                    exit,
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(specs: &[(&str, u64)]) -> Vec<Run> {
        specs
            .iter()
            .map(|(c, ms)| Run {
                command: c.to_string(),
                timeout: Duration::from_millis(*ms),
            })
            .collect()
    }

    #[test]
    fn command_lines_parse_back() {
        let r = runs(&[("printf '%s' it's; echo \"x\"", 1500), ("echo 'a' 'b'", 10_000)]);
        let line = command_line("00ff", &r, 1 << 20);
        let (nonce, parsed) = parse_command_line(&line).expect("parses");
        assert_eq!(nonce, "00ff");
        assert_eq!(
            parsed,
            vec![(2, r[0].command.clone()), (10, r[1].command.clone())]
        );
        assert_eq!(parse_command_line("exec sh -c 'other'"), None);
    }

    #[test]
    fn the_reader_splits_results_fed_in_any_pieces() {
        let mut stream = b"motd from .bashrc\n".to_vec();
        stream.extend(frame("ab", 1, 2, b"CRIT - x|a=1\n", b"warn\n"));
        stream.extend(frame("ab", 0, 0, b"42", b""));
        // A header of another nonce is not ours.
        stream.extend(b"@@lookout-result zz 0 0 0\n");
        for piece in [1, 2, 7, 1000] {
            let mut r = Reader::new("ab", vec![Duration::from_secs(1); 2], 1024);
            let mut got = Vec::new();
            for chunk in stream.chunks(piece) {
                got.extend(r.feed(chunk).expect("well formed"));
            }
            assert_eq!(got.len(), 2, "pieces of {piece}");
            assert_eq!(got[0].0, 1);
            assert_eq!(got[0].1.exit, Exit::Code(2));
            assert_eq!(got[0].1.stdout, b"CRIT - x|a=1\n");
            assert_eq!(got[0].1.stderr, b"warn\n");
            assert_eq!((got[1].0, &got[1].1.stdout[..]), (0, &b"42"[..]));
        }
    }

    #[test]
    fn the_reader_bounds_output_and_reports_broken_batches() {
        let mut r = Reader::new("ab", vec![Duration::from_secs(1)], 1024);
        let big = vec![b'x'; 1500];
        let got = r.feed(&frame("ab", 0, 153, &big, b"")).expect("within ulimit");
        assert_eq!(got[0].1.exit, Exit::TooMuchOutput(1024));
        assert_eq!(got[0].1.stdout.len(), 1024);
        // Past what `ulimit -f` lets through without a marker: broken, not buffered on.
        let mut r = Reader::new("ab", vec![Duration::from_secs(1)], 1024);
        assert!(r.feed(b"@@lookout-result ab 0 0 0\n").is_ok());
        assert!(r.feed(&vec![b'y'; 4000]).is_err());
        // An index out of range, and the batch's own failure line.
        let mut r = Reader::new("ab", vec![Duration::from_secs(1)], 1024);
        assert!(r.feed(b"@@lookout-result ab 5 0 0\n").is_err());
        let mut r = Reader::new("ab", vec![Duration::from_secs(1)], 1024);
        assert_eq!(
            r.feed(b"@@lookout-batch ab cannot create a directory\n"),
            Err(Broken("cannot create a directory".to_string()))
        );
        // A timed-out check.
        let mut r = Reader::new("ab", vec![Duration::from_millis(1500)], 1024);
        let got = r.feed(b"@@lookout-result ab 0 137 124\n\n@@lookout-stderr ab\n\n@@lookout-end ab\n");
        assert_eq!(
            got.expect("ok")[0].1.exit,
            Exit::TimedOut(Duration::from_millis(1500))
        );
    }

    /// Whether a process with this marker in its command line still runs.
    fn running(marker: &str) -> bool {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
            })
    }

    /// Runs a batch line with `shell` (a program and its first arguments) here the way the
    /// remote login shell would: in its own process group, as sshd gives it (the batch
    /// signals its group), and reads it back in index order.
    fn run_batch(shell: &[&str], r: &[Run], max_output: usize) -> (Vec<Outcome>, Duration) {
        use std::os::unix::process::CommandExt;
        let nonce = format!("{:08x}", rand::random::<u32>());
        let started = std::time::Instant::now();
        let out = std::process::Command::new(shell[0])
            .args(&shell[1..])
            .arg("-c")
            .arg(command_line(&nonce, r, max_output))
            .process_group(0)
            .output()
            .expect("shell runs");
        let took = started.elapsed();
        let mut reader = Reader::new(&nonce, r.iter().map(|r| r.timeout).collect(), max_output);
        let mut got = reader.feed(&out.stdout).expect("well formed");
        assert_eq!(got.len(), r.len(), "{}", String::from_utf8_lossy(&out.stderr));
        got.sort_by_key(|(i, _)| *i);
        (got.into_iter().map(|(_, o)| o).collect(), took)
    }

    /// The shells a remote host may have: sh, dash, bash, busybox's.
    fn shells() -> Vec<Vec<&'static str>> {
        let mut found = vec![vec!["sh"]];
        for s in ["dash", "bash", "busybox"] {
            if std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {s}"))
                .output()
                .is_ok_and(|o| o.status.success())
            {
                found.push(if s == "busybox" { vec![s, "sh"] } else { vec![s] });
            } else {
                println!("skipping {s}: not installed");
            }
        }
        found
    }

    #[test]
    fn a_batch_runs_its_checks_in_parallel_each_with_its_timeout() {
        for shell in shells() {
            let shell_name = shell.join("-");
            let marker = format!("lookout-batch-{}-{shell_name}", std::process::id());
            let r = runs(&[
                ("echo 42; echo oops >&2; exit 3", 93_000),
                (
                    &format!(
                        "sh -c 'sleep 300; : {marker}' & (sleep 302; : {marker}) & sleep 301; : {marker}"
                    ),
                    1000,
                ),
                ("nosuchcommand-lookout", 93_000),
                ("head -c 100000 /dev/zero", 93_000),
                (&format!("sh -c 'sleep 303; : {marker}-bg' & echo 7"), 93_000),
                ("printf 'no newline'", 93_000),
            ]);
            let (o, took) = run_batch(&shell, &r, 4096);
            let shell = shell_name;
            assert!(took < Duration::from_secs(5), "{shell}: {took:?}");
            assert_eq!(
                (&o[0].exit, &o[0].stdout[..], &o[0].stderr[..]),
                (&Exit::Code(3), &b"42\n"[..], &b"oops\n"[..]),
                "{shell}"
            );
            assert_eq!(o[1].exit, Exit::TimedOut(Duration::from_secs(1)), "{shell}");
            assert_eq!(o[2].exit, Exit::Code(127), "{shell}");
            assert_eq!(o[3].exit, Exit::TooMuchOutput(4096), "{shell}");
            assert_eq!(
                (&o[4].exit, &o[4].stdout[..]),
                (&Exit::Code(0), &b"7\n"[..]),
                "{shell}"
            );
            assert_eq!(o[5].stdout, b"no newline", "{shell}");
            std::thread::sleep(Duration::from_millis(300));
            assert!(!running(&marker), "{shell}: a process of a check is left");
            assert!(!running("sleep 93"), "{shell}: a watchdog is left");
        }
    }
}
