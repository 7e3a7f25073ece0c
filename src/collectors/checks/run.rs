//! Running one check command: locally with `sh -c` in its own process group, or on a remote
//! host over a new exec channel of the host's existing SSH session. Both are bounded in time
//! (killed with everything they started at the timeout) and in output.

use std::process::Stdio;
use std::time::Duration;

use russh::ChannelMsg;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::parse::{Exit, Outcome};
use crate::collectors::ssh::connect::Session;

/// Most bytes of stderr kept (only its first line becomes part of a message).
pub const STDERR_LIMIT: usize = 4096;

/// How long output is still awaited after the command exited: a background child that
/// keeps the pipe open must not hold the result back.
const OUTPUT_GRACE: Duration = Duration::from_millis(200);

/// What the remote watchdog prints on stderr when it killed a check at its timeout.
const TIMEOUT_MARKER: &str = "@@lookout-check-timeout";

/// Extra time lookout waits for a remote check past its timeout: the remote watchdog kills
/// it at the timeout (rounded up to whole seconds) and reports; this covers the round trip.
const REMOTE_GRACE: Duration = Duration::from_secs(3);

/// Runs `command` with `sh -c` on this machine.
pub async fn local(command: &str, timeout: Duration, max_output: usize) -> Outcome {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills everything it started.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start sh: {e}")),
    };
    let pgid = child.id();
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        kill_group(pgid);
        return failed("no pipes to the command".to_string());
    };
    let err_task = tokio::spawn(read_bounded(stderr, STDERR_LIMIT));
    let run = async {
        let mut stdout = stdout;
        let (mut out, mut buf) = (Vec::new(), [0u8; 8192]);
        let mut status = None;
        let mut eof = false;
        // Output still on its way when the command exits gets a short grace; a background
        // child that holds the pipe open does not hold the result back.
        let grace = tokio::time::sleep(Duration::MAX);
        tokio::pin!(grace);
        while !(eof && status.is_some()) {
            tokio::select! {
                r = stdout.read(&mut buf), if !eof => match r {
                    Ok(0) | Err(_) => eof = true,
                    Ok(n) if out.len() + n > max_output => {
                        out.extend_from_slice(&buf[..max_output - out.len()]);
                        return (None, out, true);
                    }
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                },
                s = child.wait(), if status.is_none() => {
                    status = Some(s.ok());
                    grace.as_mut().reset(tokio::time::Instant::now() + OUTPUT_GRACE);
                }
                () = &mut grace => break,
            }
        }
        (status.flatten(), out, false)
    };
    let (exit, stdout) = match tokio::time::timeout(timeout, run).await {
        Ok((_, out, true)) => (Exit::TooMuchOutput(max_output), out),
        Ok((Some(status), out, false)) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(c), _) => (Exit::Code(c as u32), out),
                (None, Some(s)) => (Exit::Signal(signal_name(s)), out),
                (None, None) => (Exit::Failed("no exit status".to_string()), out),
            }
        }
        Ok((None, out, false)) => (Exit::Failed("lost the command's exit status".to_string()), out),
        Err(_) => (Exit::TimedOut(timeout), Vec::new()),
    };
    // Whatever it left running (a background child, a hung pipeline) goes with it.
    kill_group(pgid);
    let _ = child.wait().await;
    let stderr = match tokio::time::timeout(OUTPUT_GRACE, err_task).await {
        Ok(Ok((bytes, _))) => bytes,
        _ => Vec::new(),
    };
    Outcome { exit, stdout, stderr }
}

/// Reads to the end keeping at most `limit` bytes; true when there was more (then it stops
/// reading: the caller kills the writer).
async fn read_bounded(mut r: impl AsyncRead + Unpin, limit: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return (kept, false),
            Ok(n) => {
                if kept.len() + n > limit {
                    let room = limit - kept.len();
                    kept.extend_from_slice(&buf[..room]);
                    return (kept, true);
                }
                kept.extend_from_slice(&buf[..n]);
            }
        }
    }
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        // ESRCH (the group is already gone) is fine.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

fn failed(m: String) -> Outcome {
    Outcome {
        exit: Exit::Failed(m),
        stdout: Vec::new(),
        stderr: Vec::new(),
    }
}

fn signal_name(s: i32) -> String {
    match s {
        1 => "HUP".into(),
        2 => "INT".into(),
        6 => "ABRT".into(),
        9 => "KILL".into(),
        11 => "SEGV".into(),
        13 => "PIPE".into(),
        15 => "TERM".into(),
        n => n.to_string(),
    }
}

/// The POSIX sh program that runs a check on a remote host. `$1` is the timeout in whole
/// seconds, `$2` a token unique to this run, `$3` the command. The command runs with
/// `LOOKOUT_CHECK=<token>` in its environment, which every process it starts inherits; a
/// watchdog sleeps out the timeout and then stops and kills every process carrying the
/// token (found through /proc/PID/environ, so children that left the tree or their process
/// group are found too). Once it fires, the watchdog ignores the wrapper's TERM, so the
/// wrapper waits for the kill to finish and then reports the timeout (exit 124 and a marker
/// on stderr); it ignores SIGPIPE and SIGHUP, so it does its work also when lookout has gone.
/// When the command exits in time, whatever it left running in the background (a child
/// holding stdout would keep the channel open) is sent TERM with the wrapper's process
/// group, which sshd made the wrapper lead (checked in /proc first; where it does not lead
/// one, only the watchdog is stopped). Neither `setsid` nor `timeout` is needed, and job
/// control (which dash refuses without a terminal) is not used.
const WRAPPER: &str = r#"t=$1 k=$2
LOOKOUT_CHECK=$k sh -c "$3" </dev/null &
p=$!
(
trap 'kill $s 2>/dev/null; exit 0' TERM
trap '' PIPE HUP
sleep "$t" </dev/null >/dev/null 2>&1 & s=$!
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
read -r _ _ _ _ g _ </proc/$$/stat 2>/dev/null
if [ "$g" = $$ ]; then trap '' TERM; kill -TERM 0 2>/dev/null; else kill $w 2>/dev/null; fi
wait $w
if [ $? -eq 124 ]; then echo "@@lookout-check-timeout" >&2; exit 124; fi
exit $r"#;

/// `text` as one single-quoted sh word.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The exec command line of one remote run.
pub fn remote_command(command: &str, timeout: Duration, token: &str) -> String {
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    format!(
        "exec sh -c {} lookout-check {} {} {}",
        shell_quote(WRAPPER),
        secs.max(1),
        token,
        shell_quote(command)
    )
}

/// The parts of a [`remote_command`] line: (timeout in whole seconds, the command). For the
/// fleet simulator, which answers checks without a shell.
pub fn parse_remote_command(line: &str) -> Option<(u64, String)> {
    let prefix = format!("exec sh -c {} lookout-check ", shell_quote(WRAPPER));
    let rest = line.strip_prefix(&prefix)?;
    let (secs, rest) = rest.split_once(' ')?;
    let (_token, quoted) = rest.split_once(' ')?;
    let inner = quoted.strip_prefix('\'')?.strip_suffix('\'')?;
    Some((secs.parse().ok()?, inner.replace(r"'\''", "'")))
}

/// Runs `command` on the host behind `session`, on a new exec channel (the session's other
/// channels, the sample stream among them, go on undisturbed).
pub async fn remote(session: &Session, command: &str, timeout: Duration, max_output: usize) -> Outcome {
    let token = format!("{:016x}", rand::random::<u64>());
    let line = remote_command(command, timeout, &token);
    let deadline = tokio::time::Instant::now() + timeout + REMOTE_GRACE;
    let run = async {
        let mut channel = session
            .channel_open_session()
            .await
            .map_err(|e| format!("cannot open a channel: {e}"))?;
        channel
            .exec(false, line.as_bytes())
            .await
            .map_err(|e| format!("cannot start the command: {e}"))?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut exit = None;
        loop {
            // Once the exit status is in, output still on its way gets a short grace.
            let msg = if exit.is_some() {
                tokio::time::timeout(OUTPUT_GRACE, channel.wait())
                    .await
                    .unwrap_or_default()
            } else {
                channel.wait().await
            };
            match msg {
                Some(ChannelMsg::Data { data }) => {
                    if stdout.len() + data.len() > max_output {
                        let _ = channel.close().await;
                        return Ok((Exit::TooMuchOutput(max_output), stdout, stderr));
                    }
                    stdout.extend_from_slice(&data);
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    let room = STDERR_LIMIT.saturating_sub(stderr.len());
                    stderr.extend_from_slice(&data[..data.len().min(room)]);
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => exit = Some(Exit::Code(exit_status)),
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    exit = Some(Exit::Signal(format!("{signal_name:?}")));
                }
                Some(ChannelMsg::Eof) if exit.is_none() => {}
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => break,
                Some(_) => {}
            }
        }
        let _ = channel.close().await;
        let exit =
            exit.unwrap_or_else(|| Exit::Failed("the channel closed without an exit status".to_string()));
        Ok::<_, String>((exit, stdout, stderr))
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok(Ok((exit, stdout, mut stderr))) => {
            let timed_out = memchr::memmem::find(&stderr, TIMEOUT_MARKER.as_bytes());
            let exit = match timed_out {
                Some(at) => {
                    stderr.truncate(at);
                    Exit::TimedOut(timeout)
                }
                None => exit,
            };
            Outcome { exit, stdout, stderr }
        }
        Ok(Err(m)) => failed(m),
        // The channel is dropped (closed); the remote watchdog has killed the command.
        Err(_) => Outcome {
            exit: Exit::TimedOut(timeout),
            stdout: Vec::new(),
            stderr: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_sh() {
        let cmd = r#"printf '%s\n' "it's" `echo x` $HOME; echo '\'"#;
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("sh -c {} x", shell_quote(cmd)))
            .output()
            .expect("sh runs");
        let direct = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .expect("sh runs");
        assert_eq!(out.stdout, direct.stdout);
    }

    #[test]
    fn remote_command_lines_parse_back() {
        let cmd = "printf '%s' it's; echo \"x\"";
        let line = remote_command(cmd, Duration::from_millis(1500), "abc");
        assert_eq!(parse_remote_command(&line), Some((2, cmd.to_string())));
        assert_eq!(parse_remote_command("exec sh -c 'other'"), None);
    }

    #[tokio::test]
    async fn local_runs_report_exit_output_and_stderr() {
        let o = local("echo 42; echo oops >&2; exit 3", Duration::from_secs(5), 1024).await;
        assert_eq!(o.exit, Exit::Code(3));
        assert_eq!(o.stdout, b"42\n");
        assert_eq!(o.stderr, b"oops\n");
        let o = local("nosuchcommand-lookout", Duration::from_secs(5), 1024).await;
        assert_eq!(o.exit, Exit::Code(127));
        let o = local("yes", Duration::from_secs(5), 100_000).await;
        assert_eq!(o.exit, Exit::TooMuchOutput(100_000));
        assert_eq!(o.stdout.len(), 100_000);
        let o = local("kill -SEGV $$", Duration::from_secs(5), 1024).await;
        assert_eq!(o.exit, Exit::Signal("SEGV".into()));
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

    #[tokio::test]
    async fn a_hung_local_check_is_killed_with_its_children() {
        let marker = format!("lookout-hang-{}", std::process::id());
        let cmd = format!("sh -c 'sleep 300; : {marker}' & sleep 301; : {marker}");
        let started = std::time::Instant::now();
        let o = local(&cmd, Duration::from_millis(300), 1024).await;
        assert_eq!(o.exit, Exit::TimedOut(Duration::from_millis(300)));
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!running(&marker), "a process of the hung check is left");
        // A detached background child (output not held) does not outlive its check either,
        // and one that holds stdout does not hold the result back.
        for redirect in [">/dev/null 2>&1", ""] {
            let cmd = format!("sh -c 'sleep 300; : {marker}-bg' {redirect} & echo 1");
            let started = std::time::Instant::now();
            let o = local(&cmd, Duration::from_secs(5), 1024).await;
            assert_eq!((o.exit, &o.stdout[..]), (Exit::Code(0), &b"1\n"[..]), "{cmd}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{cmd}: {:?}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!running(&format!("{marker}-bg")), "{cmd}");
        }
    }

    /// Runs a remote command line with sh here the way the remote login shell would: in
    /// its own process group, as sshd gives it (the wrapper signals its group).
    fn run_wrapped(line: &str) -> std::process::Output {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .process_group(0)
            .output()
            .expect("sh runs")
    }

    #[test]
    fn the_remote_wrapper_kills_what_the_check_started_at_its_timeout() {
        // The wrapper is plain sh: run it here the way the remote login shell would.
        let marker = format!("lookout-wrap-{}", std::process::id());
        let cmd = format!("sh -c 'sleep 300; : {marker}' & (sleep 302; : {marker}) & sleep 301; : {marker}");
        let line = remote_command(&cmd, Duration::from_secs(1), "feedface");
        let started = std::time::Instant::now();
        let out = run_wrapped(&line);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains(TIMEOUT_MARKER));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!running(&marker), "a process of the hung check is left");
        // A quick command: its status and output, and no watchdog left behind.
        let out = run_wrapped(&remote_command(
            "echo hi; exit 4",
            Duration::from_secs(97),
            "0ddba11",
        ));
        assert_eq!(out.status.code(), Some(4));
        assert_eq!(out.stdout, b"hi\n");
        std::thread::sleep(Duration::from_millis(200));
        assert!(!running("lookout-check 97 0ddba11"), "the wrapper is left");
        assert!(!running("sleep 97"), "the watchdog is left");
        // A background child holding stdout: the answer comes at once, the child goes.
        let cmd = format!("sh -c 'sleep 300; : {marker}-bg' & echo 5");
        let line = remote_command(&cmd, Duration::from_secs(96), "0ddba12");
        let started = std::time::Instant::now();
        let out = run_wrapped(&line);
        assert_eq!((out.status.code(), &out.stdout[..]), (Some(0), &b"5\n"[..]));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
        assert!(!running(&format!("{marker}-bg")), "the background child is left");
        assert!(!running("sleep 96"), "the watchdog is left");
    }
}
