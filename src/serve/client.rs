//! The viewer's side: connecting (to a local socket, or through `attach HOST`'s SSH
//! channel), the handshake, and the link that feeds the dashboard: it keeps a [`Replica`]
//! of the server's state, publishes it as snapshots, relays events, sends the dashboard's
//! commands, and reconnects by itself when the server goes away, saying so on screen.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, mpsc, watch};

use super::delta::Replica;
use super::protocol::{self, ClientMsg, Hello, ServerMsg, Want, WireCommand, WireError};
use crate::config::Config;
use crate::event::Event;
use crate::model::HostName;
use crate::snapshot::Snapshot;
use crate::triggers::Command;

/// A byte stream to a server.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
pub type Stream = Pin<Box<dyn Io>>;

/// Where the server is.
#[derive(Clone)]
pub enum Target {
    /// A socket on this machine.
    Socket(PathBuf),
    /// `lookout attach HOST`: `lookout attach --stdio` run on HOST over SSH.
    Ssh(super::remote::SshTarget),
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Socket(p) => p.display().to_string(),
            Target::Ssh(s) => s.host.clone(),
        }
    }

    async fn open(&self) -> Result<Stream, String> {
        match self {
            Target::Socket(path) => match tokio::net::UnixStream::connect(path).await {
                Ok(s) => Ok(Box::pin(s)),
                Err(e) => Err(match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                        format!(
                            "no lookout server on {} ({e}); start one with `lookout serve`",
                            path.display()
                        )
                    }
                    std::io::ErrorKind::PermissionDenied => {
                        format!("{}: {e} (the socket belongs to another user)", path.display())
                    }
                    _ => format!("{}: {e}", path.display()),
                }),
            },
            Target::Ssh(s) => s.open().await,
        }
    }
}

/// An open connection after a successful handshake.
pub struct Connection {
    pub read: BufReader<tokio::io::ReadHalf<Stream>>,
    pub write: tokio::io::WriteHalf<Stream>,
    /// The name the server knows us by.
    pub user: String,
}

/// Connects and says hello; an error is a sentence for the user.
pub async fn connect(target: &Target, want: Want) -> Result<Connection, String> {
    let stream = target.open().await?;
    let (read, mut write) = tokio::io::split(stream);
    let mut read = BufReader::new(read);
    let hello = Hello {
        want: Some(want),
        ..Hello::new()
    };
    let place = target.describe();
    protocol::write_hello(&mut write, &hello)
        .await
        .map_err(|e| format!("{place}: {e}"))?;
    let answer = match tokio::time::timeout(Duration::from_secs(10), protocol::read_hello(&mut read)).await {
        Ok(Ok(a)) => a,
        Ok(Err(WireError::Closed)) => {
            return Err(format!(
                "{place}: the server closed the connection without answering"
            ));
        }
        Ok(Err(e)) => return Err(format!("{place}: not a lookout server ({e})")),
        Err(_) => return Err(format!("{place}: no answer within 10s")),
    };
    if let Some(e) = answer.error {
        return Err(format!("{place}: {e}"));
    }
    if answer.lookout_protocol != protocol::VERSION {
        return Err(format!(
            "{place}: the server ({}) speaks lookout protocol {}, this viewer ({}) protocol {}: use the same lookout version on both sides",
            answer.program.as_deref().unwrap_or("unknown"),
            answer.lookout_protocol,
            protocol::program(),
            protocol::VERSION
        ));
    }
    Ok(Connection {
        read,
        write,
        user: answer.user.unwrap_or_default(),
    })
}

/// `lookout snapshot --socket`: the server's current state, collected by nobody here.
pub async fn fetch_snapshot(target: &Target) -> anyhow::Result<Arc<Snapshot>> {
    let mut conn = connect(target, Want::Snapshot)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut buf = Vec::new();
    loop {
        match protocol::read_frame(&mut conn.read, protocol::SERVER_FRAME_LIMIT, &mut buf).await {
            Ok(ServerMsg::Full(state)) => return Ok(Replica::new(2).apply_full(state)),
            Ok(ServerMsg::Metrics(list)) => register(list),
            Ok(_) => anyhow::bail!(
                "{}: the server sent something other than a snapshot",
                target.describe()
            ),
            Err(e) => anyhow::bail!("{}: {e}", target.describe()),
        }
    }
}

/// Takes the server's run-time metrics into this process's registry.
fn register(list: Vec<protocol::WireMetric>) {
    for m in list {
        let name = m.name.clone();
        if let Err(e) = m.register() {
            log::warn!(target: "lookout", "the server's metric `{name}`: {e}");
        }
    }
}

/// `lookout run --headless --socket`: the server's events as JSON lines, until the server
/// stops (an error) or `stop` resolves.
pub async fn stream_events(
    target: &Target,
    mut out: impl std::io::Write,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut conn = connect(target, Want::Events).await.map_err(anyhow::Error::msg)?;
    let mut buf = Vec::new();
    tokio::pin!(stop);
    loop {
        let msg = tokio::select! {
            () = &mut stop => return Ok(()),
            m = protocol::read_frame::<ServerMsg>(&mut conn.read, protocol::SERVER_FRAME_LIMIT, &mut buf) => m,
        };
        match msg {
            Ok(ServerMsg::Event(json)) => {
                out.write_all(json.as_bytes())?;
                out.write_all(b"\n")?;
                out.flush()?;
            }
            Ok(ServerMsg::Notice(n)) => log::warn!("{}: {n}", target.describe()),
            Ok(_) => {}
            Err(WireError::Closed) => anyhow::bail!("{}: the server went away", target.describe()),
            Err(e) => anyhow::bail!("{}: {e}", target.describe()),
        }
    }
}

/// `lookout reload`: asks the server to re-read its config; its answer, and whether it did.
pub async fn reload(target: &Target) -> anyhow::Result<(bool, String)> {
    let mut conn = connect(target, Want::Control).await.map_err(anyhow::Error::msg)?;
    let frame = protocol::encode(&ClientMsg::Reload)?;
    conn.write.write_all(&frame).await?;
    conn.write.flush().await?;
    let mut buf = Vec::new();
    loop {
        match protocol::read_frame(&mut conn.read, protocol::SERVER_FRAME_LIMIT, &mut buf).await {
            Ok(ServerMsg::Reply { ok, text }) => return Ok((ok, text)),
            Ok(_) => {}
            Err(WireError::Closed) => anyhow::bail!(
                "{}: the server closed the connection without answering",
                target.describe()
            ),
            Err(e) => anyhow::bail!("{}: {e}", target.describe()),
        }
    }
}

/// The dashboard's feeds, served by a link to the server (see [`link`]).
pub fn attach_feeds(config: &Config, target: Target) -> crate::ui::Feeds {
    let (snap_tx, snapshots) = watch::channel(Arc::new(Snapshot::empty(config.general.interval)));
    let (events_tx, events) = broadcast::channel(1024);
    let (commands, commands_rx) = mpsc::channel(64);
    let (reconnect, reconnect_rx) = broadcast::channel(64);
    let (link_tx, link_rx) = watch::channel(Some(format!("attaching to {}…", target.describe())));
    let (detail, detail_rx) = watch::channel(None);
    let ends = LinkEnds {
        snapshots: snap_tx,
        events: events_tx,
        commands: commands_rx,
        reconnect: reconnect_rx,
        link: link_tx,
        detail: detail_rx,
        requests: 0,
    };
    tokio::spawn(link(target, config.general.history_len(), ends));
    crate::ui::Feeds {
        snapshots,
        events,
        commands,
        reconnect,
        // The reload key of an attached dashboard would reload this process, not the
        // server: `lookout reload --socket` asks the server.
        reloader: None,
        link: Some(link_rx),
        detail: Some(detail),
    }
}

struct LinkEnds {
    snapshots: watch::Sender<Arc<Snapshot>>,
    events: broadcast::Sender<Event>,
    commands: mpsc::Receiver<Command>,
    reconnect: broadcast::Receiver<HostName>,
    /// What the status line says about the link (None: attached and well).
    link: watch::Sender<Option<String>>,
    /// The host whose detail view the dashboard has open: the server sends its processes.
    detail: watch::Receiver<Option<HostName>>,
    /// Detail requests sent so far (the id of the next one).
    requests: u32,
}

/// Keeps the dashboard attached: connect, run a session, and on loss say so and retry with
/// a growing pause (1 s doubling to 10 s, back to 1 s after a session that lasted).
async fn link(target: Target, history_cap: usize, mut ends: LinkEnds) {
    let place = target.describe();
    let mut pause = Duration::from_secs(1);
    let mut replica = Replica::new(history_cap);
    loop {
        let started = Instant::now();
        let why = match connect(&target, Want::View).await {
            Ok(conn) => {
                log::info!(target: "lookout", "attached to {place} as {}", conn.user);
                let _ = ends.link.send(None);
                let why = session(conn, &mut replica, &mut ends).await;
                match why {
                    Ended::Quit => return,
                    Ended::Lost(why) => format!("lost the server at {place}: {why}"),
                }
            }
            Err(e) => e,
        };
        if started.elapsed() > Duration::from_secs(10) {
            pause = Duration::from_secs(1);
        }
        log::warn!(target: "lookout", "{why}; reconnecting in {}s", pause.as_secs());
        let _ = ends
            .link
            .send(Some(format!("{why}; reconnecting in {}s", pause.as_secs())));
        // Commands given meanwhile cannot reach anyone: drop them rather than replay them late.
        let wait = tokio::time::sleep(pause);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                c = ends.commands.recv() => if c.is_none() { return },
            }
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

enum Ended {
    /// The dashboard is gone.
    Quit,
    Lost(String),
}

async fn send(write: &mut tokio::io::WriteHalf<Stream>, msg: &ClientMsg) -> Result<(), String> {
    let frame = protocol::encode(msg).map_err(|e| e.to_string())?;
    write.write_all(&frame).await.map_err(|e| e.to_string())?;
    write.flush().await.map_err(|e| e.to_string())
}

/// Tells the server which host's processes the dashboard shows (a new request each time).
async fn ask_detail(
    write: &mut tokio::io::WriteHalf<Stream>,
    replica: &mut Replica,
    ends: &mut LinkEnds,
) -> Result<(), String> {
    let host = ends.detail.borrow_and_update().clone();
    ends.requests = ends.requests.wrapping_add(1);
    replica.set_detail(ends.requests, host.clone());
    let msg = ClientMsg::Detail {
        id: ends.requests,
        host: host.map(|h| h.to_string()),
    };
    send(write, &msg).await
}

async fn session(mut conn: Connection, replica: &mut Replica, ends: &mut LinkEnds) -> Ended {
    let mut buf = Vec::new();
    // A new server knows nothing of the detail view open before.
    let mut detail_open = true;
    if ends.detail.borrow().is_some()
        && let Err(e) = ask_detail(&mut conn.write, replica, ends).await
    {
        return Ended::Lost(e);
    }
    loop {
        tokio::select! {
            msg = protocol::read_frame::<ServerMsg>(&mut conn.read, protocol::SERVER_FRAME_LIMIT, &mut buf) => {
                let snap = match msg {
                    Ok(ServerMsg::Full(state)) => Some(replica.apply_full(state)),
                    Ok(ServerMsg::Delta(d)) => match replica.apply_delta(d) {
                        Ok(s) => Some(s),
                        Err(e) => return Ended::Lost(format!("{e}")),
                    },
                    Ok(ServerMsg::Event(json)) => {
                        match serde_json::from_str::<Event>(&json) {
                            Ok(e) => { let _ = ends.events.send(e); }
                            Err(e) => log::warn!(target: "lookout", "an event from the server could not be read: {e}"),
                        }
                        None
                    }
                    Ok(ServerMsg::Metrics(list)) => {
                        register(list);
                        None
                    }
                    Ok(ServerMsg::Processes { id, host, procs }) => match replica.apply_processes(id, &host, procs) {
                        Ok(s) => s,
                        Err(e) => return Ended::Lost(format!("{e}")),
                    },
                    Ok(ServerMsg::Reply { text, .. } | ServerMsg::Notice(text)) => {
                        log::warn!(target: "lookout", "server: {text}");
                        None
                    }
                    Err(WireError::Closed) => return Ended::Lost("the connection closed".into()),
                    Err(e) => return Ended::Lost(e.to_string()),
                };
                if let Some(s) = snap {
                    let _ = ends.snapshots.send(s);
                }
            }
            c = ends.commands.recv() => match c {
                Some(c) => if let Some(w) = WireCommand::from_command(c)
                    && let Err(e) = send(&mut conn.write, &ClientMsg::Command(w)).await {
                    return Ended::Lost(e);
                },
                None => return Ended::Quit,
            },
            d = ends.detail.changed(), if detail_open => match d {
                Ok(()) => if let Err(e) = ask_detail(&mut conn.write, replica, ends).await {
                    return Ended::Lost(e);
                },
                // The dashboard is going: its commands channel says so.
                Err(_) => detail_open = false,
            },
            h = ends.reconnect.recv() => match h {
                Ok(host) => if let Err(e) = send(&mut conn.write, &ClientMsg::Command(WireCommand::Reconnect { host: host.to_string() })).await {
                    return Ended::Lost(e);
                },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ended::Quit,
            },
        }
    }
}
