//! The SSH collector: one persistent russh connection per host (through a shared jump
//! connection where configured), one long-running remote `sh` answering a sample per poll,
//! and reconnection with capped exponential backoff plus jitter.
//!
//! Every failure becomes a host status (`unreachable`, `timeout`, `auth_failed`,
//! `host_key_mismatch`, `error`) with a message; nothing here panics or blocks other hosts.

pub mod connect;
pub mod known_hosts;
pub mod proxy;
pub mod sshconfig;
pub mod target;

use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::ChannelMsg;
use tokio::sync::{Semaphore, broadcast, mpsc};

use super::remote::{self, RemoteState, Watch};
use crate::config::{Config, HostConfig, Via};
use crate::model::{HostName, HostStatus, Metric, Reading, Sample, Source, Update};
use connect::{Auth, ConnectError, JumpPool, Session};
use target::{Resolver, Target};

/// How samples are requested from a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollMode {
    /// One remote command per connection, asked for a sample every interval (the default:
    /// measured cheaper, see docs/ssh.md).
    Stream,
    /// A new exec channel per poll.
    ExecPerPoll,
}

/// Answer buffers shared by the host tasks. Only hosts whose answer is arriving hold one
/// (a few at a time, even at 1,000 hosts), and a sample reuses a buffer that already has
/// the room instead of allocating ~20 KB: glibc's path for such sizes was a tenth of
/// lookout's CPU at 1,000 hosts (docs/fleet.md).
#[derive(Debug, Default)]
pub struct BufferPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// Buffers kept for reuse; more are freed.
    const KEEP: usize = 64;
    /// Larger buffers (a host that once printed a lot) are freed rather than kept.
    const MAX_KEPT: usize = 256 * 1024;

    fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .ok()
            .and_then(|mut f| f.pop())
            .unwrap_or_default()
    }

    fn put(&self, mut buf: Vec<u8>) {
        if buf.capacity() > Self::MAX_KEPT {
            return;
        }
        buf.clear();
        if let Ok(mut free) = self.free.lock()
            && free.len() < Self::KEEP
        {
            free.push(buf);
        }
    }
}

/// Settings shared by every host task.
pub struct Shared {
    pub auth: Auth,
    pub jumps: JumpPool,
    pub handshakes: Semaphore,
    pub interval: Duration,
    pub poll_timeout: Duration,
    pub max_output: usize,
    pub mode: PollMode,
    pub buffers: BufferPool,
    pub check_limits: super::checks::Limits,
}

/// Backoff between reconnection attempts: 1 s doubling up to 60 s, with ±20% jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_secs(1),
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before the next attempt (jittered), doubling the one after it.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        let jitter = rand::random_range(0.8..1.2);
        d.mul_f64(jitter)
    }
    pub fn reset(&mut self) {
        self.next = self.base;
    }
}

/// Starts one task per `via = "ssh"` host. Tasks end when the engine's update channel
/// closes; the handles let a reload stop one host (src/reload.rs).
pub fn spawn_all(
    config: &Arc<Config>,
    tx: &mpsc::Sender<Update>,
    reconnect: &broadcast::Sender<HostName>,
) -> SshTasks {
    spawn_with_mode(config, tx, reconnect, PollMode::Stream)
}

/// The running host tasks and the settings they share (new hosts of a reload join them).
pub struct SshTasks {
    pub shared: Arc<Shared>,
    pub tasks: Vec<(HostName, tokio::task::AbortHandle)>,
}

/// [`spawn_all`] with an explicit poll mode (for the measurements in the tests).
pub fn spawn_with_mode(
    config: &Arc<Config>,
    tx: &mpsc::Sender<Update>,
    reconnect: &broadcast::Sender<HostName>,
    mode: PollMode,
) -> SshTasks {
    let shared = shared(config, mode);
    let hosts: Vec<&HostConfig> = config.hosts.iter().filter(|h| h.via == Via::Ssh).collect();
    let tasks = spawn_hosts(config, &shared, &hosts, tx, reconnect);
    SshTasks { shared, tasks }
}

/// The settings every host task of `config` shares.
pub fn shared(config: &Config, mode: PollMode) -> Arc<Shared> {
    let ssh = &config.ssh;
    Arc::new(Shared {
        auth: Auth {
            known_hosts: ssh.known_hosts.clone(),
            policy: ssh.host_key_policy,
            identity_files: ssh.identity_files.clone(),
            connect_timeout: ssh.connect_timeout,
        },
        jumps: JumpPool::default(),
        handshakes: Semaphore::new(ssh.max_handshakes),
        interval: config.general.interval,
        poll_timeout: ssh.poll_timeout,
        max_output: ssh.max_output,
        mode,
        buffers: BufferPool::default(),
        check_limits: super::checks::Limits {
            max_output: ssh.max_output.min(super::checks::Limits::default().max_output),
            ..super::checks::Limits::default()
        },
    })
}

/// Starts the tasks of `hosts` (reading the ssh config now, so a reload sees its edits).
pub fn spawn_hosts(
    config: &Config,
    shared: &Arc<Shared>,
    hosts: &[&HostConfig],
    tx: &mpsc::Sender<Update>,
    reconnect: &broadcast::Sender<HostName>,
) -> Vec<(HostName, tokio::task::AbortHandle)> {
    if hosts.is_empty() {
        return Vec::new();
    }
    let ssh = &config.ssh;
    let resolver = match Resolver::for_settings(ssh) {
        Ok(r) => r,
        Err(e) => {
            for h in hosts {
                let _ = tx.try_send(Update::Status {
                    host: h.name.clone(),
                    status: HostStatus::Error,
                    error: Some(format!("cannot read the ssh config: {e}")),
                });
            }
            return Vec::new();
        }
    };
    let mut tasks = Vec::with_capacity(hosts.len());
    let checks: Vec<Arc<super::checks::Check>> = config.checks.iter().cloned().map(Arc::new).collect();
    for h in hosts {
        let task = HostTask {
            name: h.name.clone(),
            target: resolver.target(h, ssh),
            watch: Watch::of(h),
            shared: shared.clone(),
            tx: tx.clone(),
            reconnect: reconnect.subscribe(),
            state: RemoteState::default(),
            checks: super::checks::for_host(&checks, &h.name),
        };
        tasks.push((h.name.clone(), tokio::spawn(task.run()).abort_handle()));
    }
    tasks
}

/// Why a polling session ended.
enum Ended {
    /// The engine is gone: stop.
    Shutdown,
    /// The user asked for a reconnect.
    Reconnect,
    Failed(ConnectError),
}

struct HostTask {
    name: HostName,
    target: Target,
    watch: Watch,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Update>,
    reconnect: broadcast::Receiver<HostName>,
    state: RemoteState,
    /// The `[[check]]`s this host runs, on exec channels of the same session.
    checks: Vec<Arc<super::checks::Check>>,
}

impl HostTask {
    async fn status(&self, status: HostStatus, error: Option<String>) -> bool {
        self.tx
            .send(Update::Status {
                host: self.name.clone(),
                status,
                error,
            })
            .await
            .is_ok()
    }

    /// Waits `delay`, or less when a reconnect for this host is asked. False on shutdown.
    async fn pause(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return !self.tx.is_closed(),
                r = self.reconnect.recv() => match r {
                    Ok(h) if h == self.name => return true,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        // No front end can ask any more; just wait out the delay.
                        sleep.as_mut().await;
                        return !self.tx.is_closed();
                    }
                },
            }
        }
    }

    async fn run(mut self) {
        let mut backoff = Backoff::default();
        if !self.status(HostStatus::Connecting, None).await {
            return;
        }
        loop {
            let connected = {
                let Ok(_permit) = self.shared.handshakes.acquire().await else {
                    return;
                };
                // Boxed: the handshake's state is larger than the polling loop's, and would
                // otherwise stay part of every host's task for its whole life.
                Box::pin(connect::connect(
                    &self.target,
                    &self.shared.auth,
                    &self.shared.jumps,
                ))
                .await
            };
            let ended = match connected {
                Ok(session) => {
                    // Checks run beside the polling loop on the same session (never in
                    // its way: the sample stream has its own channel) and stop with it.
                    let checks = super::checks::run_host(
                        self.name.clone(),
                        self.checks.clone(),
                        super::checks::Runner::Remote(&session),
                        self.shared.check_limits,
                        self.tx.clone(),
                    );
                    let mut ended = tokio::select! {
                        ended = self.poll(&session, &mut backoff) => ended,
                        _ = checks => Ended::Shutdown,
                    };
                    if let Ended::Failed(e) = &mut ended
                        && !self.target.jumps.is_empty()
                        && !e.message.starts_with("via ")
                    {
                        e.message = format!("via {}: {}", self.target.jump_name(), e.message);
                    }
                    let _ = session
                        .disconnect(russh::Disconnect::ByApplication, "", "en")
                        .await;
                    ended
                }
                Err(e) => Ended::Failed(e),
            };
            self.state.reset();
            match ended {
                Ended::Shutdown => return,
                Ended::Reconnect => {
                    backoff.reset();
                    if !self.status(HostStatus::Connecting, None).await {
                        return;
                    }
                }
                Ended::Failed(e) => {
                    let delay = backoff.next_delay();
                    let message = format!(
                        "{} (retry in {})",
                        e.message,
                        humantime::format_duration(Duration::from_secs(delay.as_secs().max(1)))
                    );
                    log::info!("{}: {}: {message}", self.name, e.status);
                    if !self.status(e.status, Some(message)).await || !self.pause(delay).await {
                        return;
                    }
                }
            }
        }
    }

    /// Polls an open session every interval until it fails.
    async fn poll(&mut self, session: &Session, backoff: &mut Backoff) -> Ended {
        let command = remote::command(!self.watch.processes.is_empty());
        let mut stream = match self.shared.mode {
            PollMode::Stream => match open_channel(session, &command).await {
                Ok(c) => Some(c),
                Err(e) => return Ended::Failed(e),
            },
            PollMode::ExecPerPoll => None,
        };
        let mut next = tokio::time::Instant::now();
        let mut request: u64 = rand::random_range(1..1_000_000);
        let mut up = false;
        loop {
            request += 1;
            let started = Instant::now();
            let buffers = &self.shared.buffers;
            let line = self.state.request(request, &self.watch);
            let answer = tokio::time::timeout(self.shared.poll_timeout, async {
                match stream.as_mut() {
                    Some(channel) => {
                        ask(channel, request, &line, self.shared.max_output, false, buffers).await
                    }
                    None => {
                        let mut channel = open_channel(session, &command).await?;
                        let r = ask(
                            &mut channel,
                            request,
                            &line,
                            self.shared.max_output,
                            true,
                            buffers,
                        )
                        .await;
                        let _ = channel.close().await;
                        r
                    }
                }
            })
            .await;
            let text = match answer {
                Ok(Ok(text)) => text,
                Ok(Err(e)) => return Ended::Failed(e),
                Err(_) => {
                    return Ended::Failed(ConnectError {
                        status: HostStatus::Timeout,
                        message: format!(
                            "no answer within {}",
                            humantime::format_duration(self.shared.poll_timeout)
                        ),
                    });
                }
            };
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            let parsed = self.state.parse(&text, &self.watch);
            // Not kept through the sleep below: a sample's text held by every host between
            // polls was a sixth of lookout's memory at 1,000 hosts (docs/fleet.md).
            self.shared.buffers.put(text.into_bytes());
            match parsed {
                Ok(parsed) => {
                    let (mut readings, processes) = self.state.complete(parsed, &self.watch);
                    readings.push(Reading::host(Metric::HostPollMs, elapsed_ms));
                    if !up {
                        up = true;
                        backoff.reset();
                        if !self.status(HostStatus::Up, None).await {
                            return Ended::Shutdown;
                        }
                    }
                    let sample = Sample {
                        host: self.name.clone(),
                        source: Source::System,
                        readings,
                        processes,
                    };
                    if self.tx.send(Update::Sample(sample)).await.is_err() {
                        return Ended::Shutdown;
                    }
                }
                Err(e) => {
                    // The connection works but the host answers nonsense: say so, keep trying.
                    up = false;
                    if !self.status(HostStatus::Error, Some(e.to_string())).await {
                        return Ended::Shutdown;
                    }
                }
            }
            next += self.shared.interval;
            let now = tokio::time::Instant::now();
            if next < now {
                next = now;
            }
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                r = wait_reconnect(&mut self.reconnect, &self.name) => return r,
            }
            if self.tx.is_closed() {
                return Ended::Shutdown;
            }
        }
    }
}

async fn wait_reconnect(rx: &mut broadcast::Receiver<HostName>, name: &HostName) -> Ended {
    loop {
        match rx.recv().await {
            Ok(h) if h == *name => return Ended::Reconnect,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

type Channel = russh::Channel<russh::client::Msg>;

async fn open_channel(session: &Session, command: &str) -> Result<Channel, ConnectError> {
    let lost = |e: russh::Error| ConnectError {
        status: HostStatus::Unreachable,
        message: format!("connection lost: {e}"),
    };
    let channel = session.channel_open_session().await.map_err(lost)?;
    channel.exec(false, command).await.map_err(lost)?;
    Ok(channel)
}

/// Sends one request line (of [`RemoteState::request`], for id `request`) and reads the
/// sample answering it (bounded by `max_output`).
async fn ask(
    channel: &mut Channel,
    request: u64,
    line: &str,
    max_output: usize,
    then_eof: bool,
    buffers: &BufferPool,
) -> Result<String, ConnectError> {
    let lost = |m: String| ConnectError {
        status: HostStatus::Unreachable,
        message: m,
    };
    channel
        .data_bytes(line.as_bytes().to_vec())
        .await
        .map_err(|e| lost(format!("connection lost: {e}")))?;
    if then_eof {
        let _ = channel.eof().await;
    }
    let end = format!("\n{} {request}\n", remote::END_MARKER);
    let mut buf = buffers.take();
    // After the end of the output, how long to wait for the exit status or signal that says
    // why (sshd sends it right after the end of output when the command dies).
    const WHY: std::time::Duration = std::time::Duration::from_millis(500);
    let ended = || lost("connection lost: the remote command ended".to_string());
    let mut eof = false;
    loop {
        let msg = if eof {
            match tokio::time::timeout(WHY, channel.wait()).await {
                Ok(m) => m,
                Err(_) => return Err(ended()),
            }
        } else {
            channel.wait().await
        };
        match msg {
            Some(ChannelMsg::Data { data }) => {
                let from = buf.len().saturating_sub(end.len());
                buf.extend_from_slice(&data);
                if let Some(at) = find(&buf[from..], end.as_bytes()) {
                    buf.truncate(from + at + end.len());
                    // No copy for valid UTF-8 (the usual case).
                    return Ok(String::from_utf8(buf)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()));
                }
                if buf.len() > max_output {
                    return Err(ConnectError {
                        status: HostStatus::Error,
                        message: format!("the host printed more than {max_output} bytes for one sample"),
                    });
                }
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                return Err(lost(format!(
                    "the remote command exited with status {exit_status}"
                )));
            }
            Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                let name = match signal_name {
                    russh::Sig::Custom(name) => name,
                    other => format!("{other:?}"),
                };
                return Err(lost(format!("the remote command was killed by signal {name}")));
            }
            Some(ChannelMsg::Eof) => eof = true,
            Some(ChannelMsg::Close) | None => return Err(ended()),
            Some(_) => {}
        }
    }
}

/// Substring search (SIMD via memchr): a byte-by-byte window compare over every ~20 KB
/// sample cost a few percent of a core at 1,000 hosts (docs/fleet.md).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let mut b = Backoff::default();
        let delays: Vec<f64> = (0..10).map(|_| b.next_delay().as_secs_f64()).collect();
        for (i, d) in delays.iter().enumerate() {
            let nominal = (1u64 << i.min(6)).min(60) as f64;
            assert!(
                *d >= nominal * 0.8 - 1e-9 && *d <= nominal * 1.2 + 1e-9,
                "{i}: {d}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1200));
    }

    #[test]
    fn finds_end_marker() {
        assert_eq!(find(b"abc\n@@end 7\n", b"\n@@end 7\n"), Some(3));
        assert_eq!(find(b"abc\n@@end 77\n", b"\n@@end 7\n"), None);
    }
}
