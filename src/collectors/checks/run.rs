//! Running one check command on this machine with `sh -c` in its own process group, bounded
//! in time (killed with everything it started at the timeout) and in output. Remote hosts
//! run their checks in batches ([`super::batch`]).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::parse::{Exit, Outcome};

/// Most bytes of stderr kept (only its first line becomes part of a message).
pub const STDERR_LIMIT: usize = 4096;

/// How long output is still awaited after the command exited: a background child that
/// keeps the pipe open must not hold the result back.
const OUTPUT_GRACE: Duration = Duration::from_millis(200);

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

/// `text` as one single-quoted sh word.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
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
}
