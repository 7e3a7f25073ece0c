//! ProxyCommand: run the command with `sh -c` (as OpenSSH runs it with the user's shell)
//! and speak SSH over its stdin and stdout. The child lives as long as the stream and is
//! killed with it; what it prints on stderr is kept for the error message.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Most stderr kept from a proxy command (its last words, for the user).
const STDERR_KEEP: usize = 2048;

/// The proxy command's stdout and stdin as one duplex stream.
pub struct ProxyStream {
    stdout: ChildStdout,
    stdin: ChildStdin,
    // Dropping the stream kills the child (kill_on_drop).
    _child: Child,
}

/// The tail of a proxy command's stderr, shared with the task reading it.
#[derive(Debug, Clone, Default)]
pub struct Stderr(Arc<Mutex<Vec<u8>>>);

impl Stderr {
    /// The last line(s) it printed, trimmed; empty when silent.
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).trim().replace('\n', "; "))
            .unwrap_or_default()
    }
}

/// Starts `command` under `sh -c` with stdin and stdout piped.
pub fn spawn(command: &str) -> std::io::Result<(ProxyStream, Stderr)> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(std::io::Error::other("proxy command without pipes"));
    };
    let stderr = Stderr::default();
    if let Some(mut err) = child.stderr.take() {
        let keep = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut k) = keep.0.lock() {
                    k.extend_from_slice(&buf[..n]);
                    let over = k.len().saturating_sub(STDERR_KEEP);
                    k.drain(..over);
                }
            }
        });
    }
    Ok((
        ProxyStream {
            stdout,
            stdin,
            _child: child,
        },
        stderr,
    ))
}

impl AsyncRead for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stdin).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}
