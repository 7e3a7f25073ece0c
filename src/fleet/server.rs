//! The SSH side of the simulator: one russh server configuration (one host key) shared by
//! every simulated host, one listener per host address, and per connection a handler that
//! accepts the fleet's client key and answers lookout's remote command.
//!
//! A channel runs exactly the command of [`remote::command`] (with or without the process
//! listing): every stdin line is answered with one sample after the configured latency, end
//! of input ends the "program" with exit status 0. Any other command fails with status 127,
//! as a host without that program would.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::PublicKey;
use russh::server::{self, Auth, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::sim::HostSim;
use super::{HostMode, Knobs};
use crate::collectors::remote;

/// What every connection of the fleet shares.
pub struct Shared {
    pub config: Arc<server::Config>,
    pub client_key: PublicKey,
    pub knobs: Knobs,
    /// The exact commands answered: with and without the process listing.
    pub command_procs: String,
    pub command_plain: String,
}

/// One simulated host as the server sees it.
pub struct Host {
    pub sim: Mutex<HostSim>,
    /// Its mode now: fixed, or changed by the flapper (`--flap`).
    pub mode: watch::Sender<HostMode>,
    /// Where it listens (bound again when it comes back from `down`).
    pub addr: SocketAddr,
    /// Counts requests answered (for the shell pids it hands out).
    pub sessions: std::sync::atomic::AtomicU32,
}

impl Host {
    pub fn mode(&self) -> HostMode {
        *self.mode.borrow()
    }
}

/// Accepts connections of one host as its mode says, for as long as the process runs: a
/// host that goes `down` closes its listener (connection refused) and its connections.
pub async fn serve(shared: Arc<Shared>, host: Arc<Host>, mut listener: Option<TcpListener>) {
    let mut modes = host.mode.subscribe();
    loop {
        let mode = *modes.borrow_and_update();
        if mode == HostMode::Down {
            listener = None;
            if modes.changed().await.is_err() {
                return;
            }
            continue;
        }
        let l = match &mut listener {
            Some(l) => l,
            None => match TcpListener::bind(host.addr).await {
                Ok(l) => listener.insert(l),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let socket = tokio::select! {
            accepted = l.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            changed = modes.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        match mode {
            HostMode::Up => {
                let handler = Conn {
                    shared: shared.clone(),
                    host: host.clone(),
                    channels: HashMap::new(),
                };
                let config = shared.config.clone();
                let mut modes = host.mode.subscribe();
                // a second handle on the socket, to cut it when the host goes down or resets
                let cut = socket2::SockRef::from(&socket).try_clone().ok();
                tokio::spawn(async move {
                    let run = async move {
                        if let Ok(session) = server::run_stream(config, socket, handler).await {
                            let _ = session.await;
                        }
                    };
                    tokio::select! {
                        () = run => {}
                        _ = modes.wait_for(|m| matches!(m, HostMode::Down | HostMode::Reset)) => {
                            if let Some(cut) = cut {
                                let _ = cut.set_linger(Some(Duration::ZERO));
                                let _ = cut.shutdown(std::net::Shutdown::Both);
                            }
                        }
                    }
                });
            }
            HostMode::Hung => {
                tokio::spawn(hang(socket));
            }
            HostMode::Reset => {
                // SO_LINGER 0: closing sends a RST instead of a FIN.
                let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
                drop(socket);
            }
            HostMode::Down => drop(socket),
        }
    }
}

/// Holds a connection open without ever saying anything, until the client gives up.
async fn hang(mut socket: TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    while let Ok(n) = socket.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

enum Request {
    Sample(String),
    Eof,
}

struct ChannelState {
    /// Set once the command runs; requests go to its task.
    requests: Option<mpsc::UnboundedSender<Request>>,
    partial: Vec<u8>,
}

struct Conn {
    shared: Arc<Shared>,
    host: Arc<Host>,
    channels: HashMap<ChannelId, ChannelState>,
}

/// Answers the requests of one channel in order, then ends the "program".
async fn respond(
    handle: server::Handle,
    channel: ChannelId,
    host: Arc<Host>,
    procs: bool,
    latency: Duration,
    jitter: Duration,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let shell_pid =
        100_000 + 2 * host.sessions.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 3_000_000;
    let mut modes = host.mode.subscribe();
    while let Some(r) = requests.recv().await {
        match r {
            Request::Sample(id) => {
                // a host that hangs stops answering on its open connections too
                if modes.wait_for(|m| *m != HostMode::Hung).await.is_err() {
                    return;
                }
                let delay = latency + jitter.mul_f64(rand::random_range(0.0..1.0));
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let mut text = String::with_capacity(16 * 1024);
                if let Ok(mut sim) = host.sim.lock() {
                    sim.sample(&id, shell_pid, procs, &mut text);
                }
                if handle.data(channel, text.into_bytes()).await.is_err() {
                    return;
                }
            }
            Request::Eof => break,
        }
    }
    let _ = handle.exit_status_request(channel, 0).await;
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;
}

impl server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(
            if offer.public_key.key_data() == self.shared.client_key.key_data() {
                Auth::Accept
            } else {
                Auth::reject()
            },
        )
    }

    async fn auth_publickey(&mut self, _user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        Ok(
            if key.public_key.key_data() == self.shared.client_key.key_data() {
                Auth::Accept
            } else {
                Auth::reject()
            },
        )
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(
            channel.id(),
            ChannelState {
                requests: None,
                partial: Vec::new(),
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data);
        let procs = if command == self.shared.command_procs {
            Some(true)
        } else if command == self.shared.command_plain {
            Some(false)
        } else {
            None
        };
        session.channel_success(channel)?;
        if procs.is_none()
            && let Some((nonce, checks)) = crate::collectors::checks::batch::parse_command_line(&command)
        {
            // A batch of `[[check]]`s: each answered like a plugin, after the host's latency.
            let mut out = Vec::new();
            for (i, (_, check)) in checks.iter().enumerate() {
                let (text, code) = simulated_check(Arc::as_ptr(&self.host) as u64, check);
                out.extend(crate::collectors::checks::batch::frame(
                    &nonce,
                    i,
                    code,
                    text.as_bytes(),
                    b"",
                ));
            }
            let handle = session.handle();
            let delay = self.shared.knobs.latency;
            tokio::spawn(async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let _ = handle.data(channel, out).await;
                let _ = handle.exit_status_request(channel, 0).await;
                let _ = handle.eof(channel).await;
                let _ = handle.close(channel).await;
            });
            return Ok(());
        }
        let Some(procs) = procs else {
            session.extended_data(
                channel,
                1,
                b"lookout-fleet: a simulated host runs only lookout's sample command\n".to_vec(),
            )?;
            session.exit_status_request(channel, 127)?;
            session.eof(channel)?;
            session.close(channel)?;
            return Ok(());
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let state = self.channels.entry(channel).or_insert_with(|| ChannelState {
            requests: None,
            partial: Vec::new(),
        });
        state.requests = Some(tx);
        let k = &self.shared.knobs;
        tokio::spawn(respond(
            session.handle(),
            channel,
            self.host.clone(),
            procs,
            k.latency,
            k.jitter,
            rx,
        ));
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(state) = self.channels.get_mut(&channel) else {
            return Ok(());
        };
        let Some(requests) = &state.requests else {
            return Ok(());
        };
        state.partial.extend_from_slice(data);
        while let Some(at) = state.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = state.partial.drain(..=at).collect();
            // `read -r n` strips the surrounding blanks
            let id = String::from_utf8_lossy(&line).trim().to_string();
            let _ = requests.send(Request::Sample(id));
        }
        if state.partial.len() > 4096 {
            state.partial.clear();
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(state) = self.channels.get_mut(&channel)
            && let Some(requests) = state.requests.take()
        {
            // like `while read`, a last line without a newline ends the loop unanswered
            state.partial.clear();
            let _ = requests.send(Request::Eof);
        }
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }
}

/// A simulated host's answer to a check: Nagios plugin output whose value depends on the
/// host (`seed`) and the command (steady within a run), exit status 0; a command
/// starting `exit N` exits N.
fn simulated_check(seed: u64, command: &str) -> (String, u32) {
    if let Some(code) = command.strip_prefix("exit ").and_then(|c| c.trim().parse().ok()) {
        return (String::new(), code);
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in command.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    let value = h % 1000;
    (
        format!(
            "SIM OK - {command} is {value}|value={value};900;950;0;1000 time=0.00{}s\n",
            h % 10
        ),
        0,
    )
}

/// The two commands lookout may send.
pub fn commands() -> (String, String) {
    (remote::command(true), remote::command(false))
}

#[cfg(test)]
mod tests {
    use super::simulated_check;
    use crate::collectors::checks::Format;
    use crate::collectors::checks::parse::{Exit, Outcome, judge};

    #[test]
    fn simulated_checks_read_as_plugins() {
        let (out, code) = simulated_check(7, "sim-check 3");
        let v = judge(
            Format::Nagios,
            &Outcome {
                exit: Exit::Code(code),
                stdout: out.clone().into_bytes(),
                stderr: Vec::new(),
            },
        );
        assert_eq!(v.status, 0, "{out}");
        assert_eq!(v.values.len(), 2);
        assert_eq!(v.values[0].0, "value");
        assert_eq!(simulated_check(7, "sim-check 3"), (out, 0), "steady");
        assert_eq!(simulated_check(7, "exit 2").1, 2);
    }
}
